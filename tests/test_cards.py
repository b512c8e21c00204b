"""Model and dataset cards: metadata, model-index from results, the "not evaluated" case, bad input."""

from __future__ import annotations

import json

import pytest
from huggingface_hub import ModelCard

from helpers_hub import save_tiny_student, tiny_config

RESULT = {"heads": {"verb": {"top1": 41.25, "top5": 80.0, "ece": 5.5}, "noun": {"top1": 30.0, "ece": float("nan")}},
          "action": {"top1": 20.5}, "modalities": ["rgb"], "num_views": 6}
RUN_CONFIG = {"dataset": "epic-kitchens-100", "teachers": "rgb,flow,audio,layout", "temperature": 2.0,
              "kd_weight": 1.0, "student_epochs": 12.0, "teacher_epochs": 12.0, "seed": 42}


@pytest.fixture(scope="module")
def student_dir(tmp_path_factory):
    return save_tiny_student(tmp_path_factory.mktemp("card") / "student")


def test_student_card_metadata_and_model_index(student_dir):
    from mmkd_hf.hub.cards import PAPER_BIBTEX, render_model_card

    teachers = [{"name": "teacher-rgb", "repo_id": "alice/mmkd-teacher-rgb", "revision": "a" * 40},
                {"name": "teacher-flow", "repo_id": "alice/mmkd-teacher-flow", "revision": "b" * 40}]
    card = render_model_card("student", student_dir, {"models": {"student": RESULT}}, unit="student",
                             repo_id="alice/mmkd-student", run_config=RUN_CONFIG, teachers=teachers)
    data = card.data
    assert data.library_name == "transformers" and data.pipeline_tag == "video-classification"
    assert {"knowledge-distillation", "egocentric", "video-classification", "epic-kitchens-100"} <= set(data.tags)
    assert data.license == "cc-by-nc-4.0"  # inherited from EPIC-KITCHENS-100
    assert data.base_model == ["alice/mmkd-teacher-rgb", "alice/mmkd-teacher-flow"]
    metrics = {(r.metric_config, r.metric_name): r.metric_value for r in data.eval_results}
    assert metrics[("verb", "verb top-1 accuracy (6 views)")] == 41.25
    assert metrics[("verb", "verb expected calibration error (6 views)")] == 5.5
    assert metrics[("action", "action top-1 accuracy (6 views)")] == 20.5
    assert ("noun", "noun expected calibration error (6 views)") not in metrics  # NaN is not reported
    assert all(r.dataset_name == "EPIC-KITCHENS-100" and r.task_type == "video-classification" for r in data.eval_results)
    text = card.text
    assert "| verb | top-1 accuracy | 41.25 |" in text and "with 6 view(s)" in text
    assert "a" * 40 in text and "alice/mmkd-teacher-flow" in text
    assert "| temperature | 2.0 |" in text and "| teacher epochs |" not in text  # the student's recipe only
    assert PAPER_BIBTEX in text and "Not evaluated" not in text
    # The rendered README parses back with the same metadata (valid YAML + model-index).
    reparsed = ModelCard(str(card))
    assert reparsed.data.to_dict()["model-index"][0]["name"] == "mmkd-student"


def test_card_without_results_says_not_evaluated(student_dir, tmp_path):
    from mmkd_hf.hub.cards import write_model_card

    # The call the training pipeline makes when it saves a model (before the evaluation stage).
    path = write_model_card(student_dir, unit="teacher-rgb", role="teacher-rgb", dataset="mini-kitchens",
                            run_config=RUN_CONFIG, info={"role": "teacher-rgb"})
    card = ModelCard.load(path)
    assert "Not evaluated" in card.text and "`teacher-rgb`" in card.text
    assert card.data.eval_results is None and "model-index" not in card.data.to_dict()
    assert "teacher" in card.data.tags and card.data.base_model is None
    assert "| teacher epochs | 12.0 |" in card.text and "| temperature |" not in card.text
    assert "synthetic" in card.text  # mini-kitchens models say they are demos
    assert not list(student_dir.glob(".README.md.*"))  # atomic write left no temporary file


def test_ensemble_and_baseline_cards(tmp_path):
    from mmkd_hf import MultimodalTeacherEnsemble, MultimodalTeacherEnsembleConfig
    from mmkd_hf.hub.cards import render_model_card

    config = MultimodalTeacherEnsembleConfig(teachers={"rgb": tiny_config().to_dict(), "flow": tiny_config(
        modality="flow").to_dict()}, heads={"verb": 5, "noun": 7})
    MultimodalTeacherEnsemble(config).save_pretrained(tmp_path / "ensemble")
    card = render_model_card("ensemble", tmp_path / "ensemble", None, run_config=RUN_CONFIG,
                             teachers=[{"name": "teacher-rgb", "repo_id": "alice/mmkd-teacher-rgb"}])
    assert "weighted ensemble of 2 teachers (rgb, flow)" in card.text
    assert "ensemble(**batch)" in card.text and card.data.base_model == ["alice/mmkd-teacher-rgb"]
    baseline_dir = save_tiny_student(tmp_path / "baseline-rgb")
    baseline = render_model_card("baseline", baseline_dir, RESULT, unit="baseline-rgb")
    assert "without distillation" in baseline.text and baseline.data.base_model is None


def test_metrics_json_flat_form_and_bad_input(student_dir, tmp_path):
    from mmkd_hf.hub.cards import kind_from_unit, metric_rows, render_model_card

    rows = metric_rows({"metrics": {"verb": {"top1": 12.0}}}["metrics"])
    assert rows == [{"head": "verb", "key": "top1", "metric": "top-1 accuracy", "value": 12.0}]
    card = render_model_card("student", student_dir, {"metrics": {"verb": {"top1": 12.0}}})
    assert card.data.eval_results[0].metric_value == 12.0
    with pytest.raises(ValueError, match="kind must be one of"):
        render_model_card("teacherz", student_dir)
    with pytest.raises(FileNotFoundError, match="has no config.json"):
        render_model_card("student", tmp_path)
    with pytest.raises(ValueError, match="unknown model unit"):
        kind_from_unit("checkpoints")
    assert [kind_from_unit(u) for u in ("teacher-audio", "omnivore", "baseline-rgb", "ensemble")] == [
        "teacher", "baseline", "baseline", "ensemble"]


def test_dataset_card(tmp_path):
    import datasets
    from huggingface_hub import DatasetCard

    from mmkd_hf.hub.cards import render_dataset_card

    splits = datasets.DatasetDict({
        "train": datasets.Dataset.from_dict({"segment_id": ["a", "b"], "verb_class": [0, 1]}),
        "validation": datasets.Dataset.from_dict({"segment_id": ["c"], "verb_class": [1]}),
    })
    card = render_dataset_card("epic-kitchens-100", repo_id="alice/mmkd-epic-kitchens-100", splits=splits)
    meta = card.data.to_dict()
    assert meta["license"] == "cc-by-nc-4.0" and meta["task_categories"] == ["video-classification"]
    assert meta["configs"][0]["data_files"][1] == {"split": "validation", "path": "data/validation-*.parquet"}
    assert "Damen" in card.text  # EPIC citation from the data layer
    assert 'load_dataset("alice/mmkd-epic-kitchens-100", split="train")' in card.text
    assert "train: 2 rows" in card.text
    assert DatasetCard(str(card)).data.to_dict() == meta
    # Row counts only (no features): the built-in template.
    counts = render_dataset_card("mini-kitchens", repo_id="a/b", splits={"train": 7})
    assert "| train | 7 |" in counts.text and counts.data.to_dict()["configs"][0]["data_files"][0]["split"] == "train"


def test_dataset_card_without_a_repo():
    from mmkd_hf.hub.cards import render_dataset_card

    card = render_dataset_card("something-something-v2")
    assert "Qualcomm" in card.text and "## This repository" not in card.text and not card.data.to_dict().get("configs")
