"""The offline `evaluate` modules give the same numbers as the plain functions."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

evaluate = pytest.importorskip("evaluate")

from mmkd_hf.evaluation import CALIBRATION_ERROR, EPIC_ACTION_RECOGNITION, METRIC_MODULES, TOP_K_ACCURACY  # noqa: E402
from mmkd_hf.evaluation.calibration import calibration_metrics  # noqa: E402
from mmkd_hf.evaluation.metrics import epic_action_recognition_metrics, top_k_accuracy  # noqa: E402

EPIC_DIR = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "epic-kitchens-100-annotations"


@pytest.fixture(autouse=True)
def offline(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_EVALUATE_OFFLINE", "1")
    monkeypatch.setattr(evaluate.config, "HF_EVALUATE_OFFLINE", True, raising=False)


def test_module_paths_exist():
    assert set(METRIC_MODULES) == {"epic_action_recognition", "top_k_accuracy", "calibration_error"}
    for path in METRIC_MODULES.values():
        assert Path(path).is_file() and path.endswith(".py")


def test_top_k_and_calibration_modules_equal_plain_functions():
    rng = np.random.default_rng(0)
    scores, labels = rng.normal(size=(40, 6)), rng.integers(0, 6, 40)
    top_k = evaluate.load(TOP_K_ACCURACY)
    # add_batch accumulates like a streaming evaluation
    top_k.add_batch(predictions=scores[:25].tolist(), references=labels[:25].tolist())
    top_k.add_batch(predictions=scores[25:].tolist(), references=labels[25:].tolist())
    assert top_k.compute(ks=(1, 3)) == pytest.approx(top_k_accuracy(scores, labels, ks=(1, 3)))
    calibration = evaluate.load(CALIBRATION_ERROR)
    got = calibration.compute(predictions=scores.tolist(), references=labels.tolist())
    assert got == pytest.approx(calibration_metrics(scores, labels))


def test_epic_module_equals_plain_function_with_official_files():
    if not EPIC_DIR.is_dir():
        pytest.skip("../shared/data/epic-kitchens-100-annotations is absent")
    rng = np.random.default_rng(1)
    n = 60
    verb, noun = rng.normal(size=(n, 97)), rng.normal(size=(n, 300))
    verb_labels, noun_labels = rng.integers(0, 97, n), rng.integers(0, 300, n)
    verb[np.arange(n)[:30], verb_labels[:30]] += 5
    noun[np.arange(n)[:40], noun_labels[:40]] += 5
    participants = ["P18" if i % 3 == 0 else "P01" for i in range(n)]
    metric = evaluate.load(EPIC_ACTION_RECOGNITION)
    got = metric.compute(
        verb_predictions=verb.tolist(),
        noun_predictions=noun.tolist(),
        verb_references=verb_labels.tolist(),
        noun_references=noun_labels.tolist(),
        participant_ids=participants,
        annotations_dir=str(EPIC_DIR),
        num_verbs=97,
        num_nouns=300,
    )
    tail_verbs = [int(x) for x in (EPIC_DIR / "EPIC_100_tail_verbs.csv").read_text().split()[1:]]
    tail_nouns = [int(x) for x in (EPIC_DIR / "EPIC_100_tail_nouns.csv").read_text().split()[1:]]
    unseen = (EPIC_DIR / "EPIC_100_unseen_participant_ids_validation.csv").read_text().split()[1:]
    expected = epic_action_recognition_metrics(
        verb, noun, verb_labels, noun_labels, participant_ids=participants,
        tail_verbs=tail_verbs, tail_nouns=tail_nouns, unseen_participants=unseen,
    )
    assert got.keys() == expected.keys()
    assert got == pytest.approx(expected)
    assert got["unseen_verb_num_samples"] == 20


def test_epic_module_without_participants_and_bad_class_count():
    metric = evaluate.load(EPIC_ACTION_RECOGNITION)
    got = metric.compute(
        verb_predictions=[[2.0, 0.0, 0.0]], noun_predictions=[[0.0, 3.0]], verb_references=[0],
        noun_references=[1], participant_ids=[""],
    )
    assert got["all_action_accuracy_at_1"] == 100.0
    assert not any(key.startswith("unseen") for key in got)
    with pytest.raises(ValueError, match="expected 97 classes"):
        evaluate.load(EPIC_ACTION_RECOGNITION).compute(
            verb_predictions=[[2.0, 0.0, 0.0]], noun_predictions=[[0.0, 3.0]], verb_references=[0],
            noun_references=[1], participant_ids=[""], num_verbs=97,
        )
