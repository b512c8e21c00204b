"""Compute profile (tiny models) and the export formats."""

from __future__ import annotations

import json
import zipfile

import numpy as np
import pytest
import torch

from mmkd_hf.evaluation.exports import (
    make_epic_submission,
    read_epic_results,
    read_predictions_parquet,
    write_epic_results,
    write_epic_submission,
    write_metrics_json,
    write_predictions_parquet,
)
from mmkd_hf.evaluation.profile import (
    ClipSpec,
    count_flops,
    ensemble_pipeline,
    flow_input,
    run_profile,
    synthetic_clip,
)

TINY_SWIN = {"embed_dim": 16, "depths": (1, 1, 1, 1), "num_heads": (1, 1, 1, 1), "window_size": (2, 2, 2)}
SPEC = ClipSpec(num_frames=4, image_size=32, source_size=(48, 64))


def test_flow_input_sees_the_motion():
    rng = np.random.default_rng(0)
    base = rng.integers(0, 256, (48, 64, 3), dtype=np.uint8)
    base = np.repeat(np.repeat(base[::4, ::4], 4, 0), 4, 1)  # smooth enough for Farneback
    moving = np.stack([np.roll(base, shift=i, axis=1) for i in range(8)])  # 1 px/frame to the right
    static = np.stack([base] * 8)
    flow_moving, flow_static = flow_input(moving, SPEC), flow_input(static, SPEC)
    assert flow_moving.shape == (1, 4, 2, 32, 32)
    centre = (slice(None), slice(None), 0, slice(8, 24), slice(8, 24))
    assert flow_static[centre].mean().item() == pytest.approx(128 / 255, abs=0.01)  # 128 = no motion
    assert flow_moving[centre].mean().item() > 128 / 255 + 0.01  # +u: rightward motion


def test_ensemble_inputs_follow_the_batch_contract():
    batch = ensemble_pipeline(synthetic_clip(SPEC), SPEC)
    assert batch["pixel_values"].shape == (1, 4, 3, 32, 32)
    assert 0.0 <= batch["pixel_values"].min() and batch["pixel_values"].max() <= 1.0
    assert batch["audio_values"].shape[:3] == (1, 4, 1)
    assert batch["layout_mask"].sum().item() == 4 * SPEC.boxes_per_frame
    assert set(batch["layout_categories"][batch["layout_mask"]].tolist()) == {1, 2}


def test_run_profile_tiny_models():
    overrides = {"swin": TINY_SWIN, "heads": {"verb": 5, "noun": 6}}
    result = run_profile(spec=SPEC, modalities=("rgb", "flow"), repeats=1, isolate=False, overrides=overrides)
    student, ensemble = result["student"], result["ensemble"]
    assert ensemble["teachers"] == ["rgb", "flow"]
    # two Swins of the student's architecture (the flow one embeds 2 channels, not 3): about twice the
    # parameters and twice the network FLOPs
    assert ensemble["parameters"] == pytest.approx(2 * student["parameters"], rel=0.01)
    assert result["ensemble_over_student"]["gflops_per_view"] == pytest.approx(2.0, rel=0.05)
    assert student["gflops_per_view"] > 0 and ensemble["preprocess_ms_per_view"] > 0
    from mmkd_hf import VideoSwinConfig, VideoSwinForVideoClassification

    model = VideoSwinForVideoClassification(VideoSwinConfig(num_frames=4, image_size=32, heads={"verb": 5, "noun": 6}, **TINY_SWIN))
    assert count_flops(model, {"pixel_values": torch.rand(1, 4, 3, 32, 32)}) / 1e9 == pytest.approx(student["gflops_per_view"])


# -------------------------------------------------------------------------------------------- exports
def test_predictions_parquet_round_trip(tmp_path):
    scores = {"verb": np.random.default_rng(0).normal(size=(3, 4))}
    write_predictions_parquet(tmp_path / "p.parquet", ["a", "b", "c"], scores, {"verb": [0, 3, 1]}, {"participant_id": ["P1"] * 3})
    ids, read_scores, labels = read_predictions_parquet(tmp_path / "p.parquet")
    assert ids == ["a", "b", "c"]
    np.testing.assert_allclose(read_scores["verb"], scores["verb"], rtol=1e-6)
    assert labels["verb"].tolist() == [0, 3, 1]
    with pytest.raises(ValueError, match="unique"):
        write_predictions_parquet(tmp_path / "q.parquet", ["a", "a"], {"verb": np.zeros((2, 2))})
    with pytest.raises(ValueError, match="expected 3"):
        write_predictions_parquet(tmp_path / "q.parquet", ["a", "b", "c"], {"verb": np.zeros((2, 2))})


def test_metrics_json_is_strict(tmp_path):
    write_metrics_json(tmp_path / "m.json", {"a": float("nan"), "b": np.float32(1.5), "c": np.arange(2), "d": None})
    assert json.loads((tmp_path / "m.json").read_text()) == {"a": None, "b": 1.5, "c": [0, 1], "d": None}


def test_epic_results_and_submission(tmp_path):
    rng = np.random.default_rng(0)
    verb, noun = rng.normal(size=(2, 97)), rng.normal(size=(2, 300))
    ids = ["P01_101_0", "P01_101_1"]
    write_epic_results(tmp_path / "r.pt", ids, verb, noun)
    loaded = read_epic_results(tmp_path / "r.pt")
    assert list(loaded["narration_id"]) == ids
    np.testing.assert_allclose(loaded["noun_output"], noun.astype(np.float32))
    with pytest.raises(ValueError, match="expected 97 classes"):
        write_epic_results(tmp_path / "r.pt", ids, verb[:, :96], noun)
    with pytest.raises(ValueError, match=".pt or .pkl"):
        write_epic_results(tmp_path / "r.npy", ids, verb, noun)

    submission = make_epic_submission(ids, verb, noun, sls_pt=1, sls_tl=3, sls_td=3, top_k=100)
    assert {k: submission[k] for k in ("version", "challenge", "sls_pt", "sls_tl", "sls_td")} == {
        "version": "0.2", "challenge": "action_recognition", "sls_pt": 1, "sls_tl": 3, "sls_td": 3}
    nouns = submission["results"]["P01_101_1"]["noun"]
    assert len(nouns) == 100 and len(submission["results"]["P01_101_1"]["verb"]) == 97
    best = int(np.argmax(noun[1]))
    assert next(iter(nouns)) == str(best) and nouns[str(best)] == pytest.approx(noun[1, best])
    write_epic_submission(tmp_path / "s.zip", submission)
    assert json.loads(zipfile.ZipFile(tmp_path / "s.zip").read("test.json")) == json.loads(json.dumps(submission))
    with pytest.raises(ValueError, match="sls_td"):
        make_epic_submission(ids, verb, noun, sls_td=6)
