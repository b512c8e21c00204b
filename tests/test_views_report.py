"""Views versus accuracy and latency: ``mmkd_hf.evaluation.views_report``, its table and ``--views-report``."""

from __future__ import annotations

import json
import time
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from mmkd_hf.evaluation import negative_log_likelihood, views_report
from mmkd_hf.evaluation.multiview import reduce_views
from mmkd_hf.evaluation.reports import views_latency_markdown
from mmkd_hf.evaluation.run import predict
from mmkd_hf.evaluation.views import dataset_with_views, measure_latency, parse_views, write_views_latency_report
from test_evaluation_run import synthetic_dataset, tiny_model


class SleepyModel(torch.nn.Module):
    """Reads ``pixel_values``, sleeps a known time per call and counts its calls."""

    def __init__(self, seconds: float):
        super().__init__()
        self.config = SimpleNamespace(input_key="pixel_values", heads={"verb": 2})
        self.seconds, self.calls, self.modes = seconds, 0, []

    def forward(self, pixel_values):
        self.calls += 1
        self.modes.append(self.training)
        time.sleep(self.seconds)
        return {"logits": {"verb": torch.zeros(pixel_values.shape[0], 2)}}


def test_measure_latency_times_only_the_runs_after_the_warmup():
    model = SleepyModel(0.02).train()
    latency = measure_latency(model, {"pixel_values": torch.zeros(1, 3, 2), "segment_id": ["x"]}, warmup=2, runs=3)
    assert model.calls == 5 and model.modes == [False] * 5 and model.training  # eval while timed, mode restored
    assert 0.02 <= latency["latency_s_min"] <= latency["latency_s"] < 0.5
    assert latency["latency_runs"] == 3 and latency["threads"] == torch.get_num_threads()
    assert latency["device"] == "cpu"
    with pytest.raises(ValueError, match="runs >= 1"):
        measure_latency(model, {"pixel_values": torch.zeros(1)}, runs=0)


def test_views_report_rows_match_an_independent_computation():
    model = tiny_model()
    views = ((1, 1), (1, 3), (2, 3))
    rows = views_report(model, lambda clips, crops: synthetic_dataset(6, clips, crops), views=views,
                        batch_size=4, warmup=1, runs=2, name="student")
    assert [(r["clips"], r["crops"], r["views"]) for r in rows] == [(1, 1, 1), (1, 3, 3), (2, 3, 6)]
    for row, (clips, crops) in zip(rows, views):
        assert row["model"] == "student" and row["num_samples"] == 6 and row["latency_runs"] == 2
        assert row["latency_s"] > 0 and row["latency_s_per_view"] == pytest.approx(row["latency_s"] / (clips * crops))
        assert set(row["heads"]) == {"verb", "noun"} and row["action"] is not None
        # the same numbers from the model's own logits on that many views
        predictions = predict(model, synthetic_dataset(6, clips, crops), batch_size=3)
        scores = reduce_views(predictions["logits"])
        for head in ("verb", "noun"):
            labels = predictions["labels"][head]
            expected_nll = negative_log_likelihood(scores[head].numpy(), labels)
            assert row["heads"][head]["nll"] == pytest.approx(expected_nll, rel=1e-5)
            top1 = 100.0 * float(np.mean(scores[head].numpy().argmax(1) == labels))
            assert row["heads"][head]["top1"] == pytest.approx(top1)
    # more views give the model different inputs: the rows are not copies of each other
    assert len({round(r["heads"]["verb"]["nll"], 6) for r in rows}) == 3


def test_dataset_with_views_remakes_a_load_dataset_split(tiny_epic, data_cache):
    from mmkd_hf.data import load_dataset

    dataset = load_dataset("epic-kitchens-100", tiny_epic, "validation", ["rgb"], data_cache, num_frames=4,
                           crop_size=32, train=False)
    assert dataset[0]["pixel_values"].dim() == 4  # one view: no views dimension
    six = dataset_with_views(dataset, 2, 3)
    assert tuple(six[0]["pixel_values"].shape[:2]) == (6, 4)
    assert dataset[0]["pixel_values"].dim() == 4  # the original is left as it was
    subset = dataset_with_views(torch.utils.data.Subset(dataset, [1]), 1, 3)
    assert isinstance(subset, torch.utils.data.Subset) and len(subset) == 1
    assert subset[0]["segment_id"] == dataset[1]["segment_id"] and subset[0]["pixel_values"].shape[0] == 3
    crops = subset[0]["pixel_values"]  # three different crops of the same clip
    assert not torch.equal(crops[0], crops[1]) and not torch.equal(crops[1], crops[2])
    with pytest.raises(TypeError, match="function \\(clips, crops\\)"):
        dataset_with_views([{"pixel_values": torch.zeros(1)}], 1, 3)
    training = load_dataset("epic-kitchens-100", tiny_epic, "validation", ["rgb"], data_cache, num_frames=4,
                            crop_size=32, train=True)
    with pytest.raises(ValueError, match="train=False"):
        dataset_with_views(training, 1, 3)
    with pytest.raises(ValueError, match="views must be"):
        dataset_with_views(dataset, 1, 4)


def test_views_report_of_the_teacher_ensemble_on_every_modality(tiny_epic, data_cache):
    from test_ensemble import tiny_stlt, tiny_swin

    from mmkd_hf import MultimodalTeacherEnsemble
    from mmkd_hf.data import AudioConfig, MultimodalCollator, load_dataset

    heads = {"verb": 3, "noun": 4}  # the tiny EPIC folder's classes
    ensemble = MultimodalTeacherEnsemble.from_teachers({
        "rgb": tiny_swin("rgb", heads, 1), "flow": tiny_swin("flow", heads, 2), "audio": tiny_swin("audio", heads, 3),
        "layout": tiny_stlt(heads, 4)})
    dataset = load_dataset("epic-kitchens-100", tiny_epic, "validation", ["rgb", "flow", "audio", "layout"], data_cache,
                           num_frames=4, crop_size=32, audio=AudioConfig(output_size=(32, 32)), stride=2, train=False)
    rows = views_report(ensemble, dataset, MultimodalCollator(), runs=1, name="ensemble")
    assert [row["views"] for row in rows] == [1, 3, 6] and all(row["latency_s"] > 0 for row in rows)
    assert all(row["num_samples"] == len(dataset) and row["action"] is not None for row in rows)


def test_views_table_has_one_row_per_model_and_setting(tmp_path):
    def row(views, clips, crops, top1, latency):
        return {"clips": clips, "crops": crops, "views": views, "heads": {"verb": {"top1": top1, "ece": 5.0, "nll": 1.23456}},
                "action": None, "latency_s": latency, "latency_runs": 5, "threads": 2, "device": "cpu"}

    reports = {"student": [row(1, 1, 1, 40.0, 0.25), row(6, 2, 3, 44.0, 1.5)], "ensemble": [row(1, 1, 1, 70.0, 2.0)]}
    table = views_latency_markdown(reports)
    lines = [line for line in table.splitlines() if line.startswith("| ")]
    assert lines[0] == ("| model | views (clips×crops) | verb top-1 | verb ECE | verb NLL | latency / video (ms) | "
                        "latency / view (ms) |")
    assert lines[1:] == ["| student | 1 (1×1) | 40.00 | 5.00 | 1.235 | 250.0 | 250.0 |",
                         "| student | 6 (2×3) | 44.00 | 5.00 | 1.235 | 1500.0 | 250.0 |",
                         "| ensemble | 1 (1×1) | 70.00 | 5.00 | 1.235 | 2000.0 | 2000.0 |"]
    assert "2 torch thread(s), median of 5 runs" in table
    files = write_views_latency_report(reports, tmp_path, "views")
    assert json.loads((tmp_path / "views_report.json").read_text())["models"]["ensemble"][0]["latency_s"] == 2.0
    assert (tmp_path / "views_report.md").read_text().startswith("# views\n") and set(files) == {"table", "json"}
    assert parse_views("1x1, 1x3,2X3") == [(1, 1), (1, 3), (2, 3)]
    with pytest.raises(ValueError, match="2x3"):
        parse_views("2-3")


def test_cli_views_report(tiny_epic, tmp_path):
    from mmkd_hf import VideoSwinConfig, VideoSwinForVideoClassification
    from mmkd_hf.evaluation import cli as evaluation_run

    torch.manual_seed(0)
    config = VideoSwinConfig(embed_dim=16, depths=(1, 1, 1, 1), num_heads=(1, 1, 1, 1), window_size=(2, 2, 2),
                             num_frames=4, image_size=32, drop_path_rate=0.0, heads={"verb": 3, "noun": 4})
    VideoSwinForVideoClassification(config).save_pretrained(tmp_path / "student")
    out = tmp_path / "eval"
    argv = ["--model", str(tmp_path / "student"), "--dataset", "epic-kitchens-100", "--data-dir", str(tiny_epic),
            "--views-grid", "", "--views-report", "--report-views", "1x1,1x3", "--latency-runs", "2", "--output-dir", str(out)]
    assert evaluation_run.main(argv) == 0
    report = json.loads((out / "views_report.json").read_text())["models"]
    assert list(report) == ["student"] and [r["views"] for r in report["student"]] == [1, 3]
    assert all(r["latency_s"] > 0 and r["action"] is not None for r in report["student"])
    assert "| student | 3 (1×3) |" in (out / "views_report.md").read_text()
    files = json.loads((out / "metrics.json").read_text())["files"]
    assert files["views_report"] == str(out / "views_report.md")
    with pytest.raises(SystemExit):
        evaluation_run.main(argv[:-2] + ["--report-views", "1x9", "--output-dir", str(out)])
