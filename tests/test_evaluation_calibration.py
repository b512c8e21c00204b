"""Calibration metrics, temperature scaling, reliability diagram, and multi-view reduction."""

from __future__ import annotations


import numpy as np
import pytest
import torch

from mmkd_hf.evaluation.calibration import (
    apply_temperature,
    calibration_metrics,
    fit_temperature,
    plot_reliability_diagram,
    reliability_bins,
    temperature_scaling_report,
)
from mmkd_hf.evaluation.multiview import fold_views, reduce_views, select_views, unfold_views, view_index


def test_ece_hand_example_with_upper_inclusive_bins():
    probs = np.array([[0.9, 0.1], [0.9, 0.1], [0.6, 0.4], [0.55, 0.45]])
    labels = np.array([0, 1, 0, 1])
    result = calibration_metrics(probs, labels, scores_are="probs")
    # 0.6 lies on an edge and belongs to (0.5333, 0.6] with 0.55: mean conf .575, acc .5 -> gap .075;
    # bin (0.8667, 0.9333]: conf .9, acc .5 -> gap .4; ECE = .5 * .075 + .5 * .4
    assert result["ece"] == pytest.approx(100 * (0.5 * 0.075 + 0.5 * 0.4))
    assert result["mce"] == pytest.approx(40.0)
    assert result["nll"] == pytest.approx(-np.mean(np.log([0.9, 0.1, 0.6, 0.45])))
    assert result["brier"] == pytest.approx((0.02 + 1.62 + 0.32 + 0.605) / 4)
    bins = reliability_bins(probs.max(1), probs.argmax(1) == labels)
    assert bins["count"].tolist() == [0] * 8 + [2] + [0] * 4 + [2] + [0]


def test_ece_from_logits_and_perfect_calibration():
    logits = np.log(np.array([[0.75, 0.25]] * 4))
    result = calibration_metrics(logits, [0, 0, 0, 1])  # confidence .75, accuracy .75
    assert result["ece"] == pytest.approx(0.0, abs=1e-9)
    assert result["accuracy"] == 75.0


def test_calibration_rejects_bad_input():
    with pytest.raises(ValueError, match="not probability"):
        calibration_metrics(np.array([[0.5, 0.6]]), [0], scores_are="probs")
    with pytest.raises(ValueError, match="non-finite"):
        calibration_metrics(np.array([[np.nan, 0.6]]), [0])


def test_temperature_scaling_recovers_a_known_temperature():
    rng = np.random.default_rng(0)
    calibrated = rng.normal(scale=2.0, size=(4000, 10))
    probs = np.exp(calibrated) / np.exp(calibrated).sum(1, keepdims=True)
    labels = np.array([rng.choice(10, p=p) for p in probs])
    overconfident = calibrated * 3.0
    assert fit_temperature(overconfident[:2000], labels[:2000]) == pytest.approx(3.0, rel=0.15)
    report = temperature_scaling_report(overconfident[:2000], labels[:2000], overconfident[2000:], labels[2000:])
    assert report["after"]["nll"] < report["before"]["nll"]
    assert report["after"]["ece"] < report["before"]["ece"]
    assert report["after"]["accuracy"] == report["before"]["accuracy"]  # T does not change the argmax
    with pytest.raises(ValueError):
        apply_temperature(overconfident, 0.0)


def test_reliability_diagram_png(tmp_path):
    rng = np.random.default_rng(0)
    path = plot_reliability_diagram(
        {"verb": (rng.normal(size=(30, 5)), rng.integers(0, 5, 30)), "noun": (rng.normal(size=(30, 7)), rng.integers(0, 7, 30))},
        tmp_path / "reliability.png",
    )
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert [p.name for p in tmp_path.iterdir()] == ["reliability.png"]  # no temp file left


# --------------------------------------------------------------------------------------- multi-view
def test_reduce_views_logits_and_probs():
    logits = torch.tensor([[[2.0, 0.0], [0.0, 4.0]]])  # one video, two views
    torch.testing.assert_close(reduce_views(logits), torch.tensor([[1.0, 2.0]]))
    mean_probs = (torch.softmax(logits[0, 0], -1) + torch.softmax(logits[0, 1], -1)) / 2
    reduced = reduce_views({"verb": logits}, mode="probs")["verb"]
    torch.testing.assert_close(torch.softmax(reduced, -1)[0], mean_probs)
    two_d = torch.randn(3, 5)
    assert reduce_views(two_d) is two_d
    with pytest.raises(ValueError, match="mode"):
        reduce_views(logits, mode="median")
    with pytest.raises(ValueError, match="NaN"):
        reduce_views(torch.full((1, 2, 3), float("nan")))


def test_fold_unfold_and_clip_major_selection():
    x = torch.arange(2 * 6 * 1).reshape(2, 6, 1).float()
    torch.testing.assert_close(unfold_views(fold_views(x), 6), x)
    with pytest.raises(ValueError, match="not a multiple of 3"):
        unfold_views(torch.zeros(7, 4), 3)
    # 2 clips x 3 crops: view v = clip * 3 + crop
    assert view_index(1, 2, 3) == 5
    selected = select_views(x, 2, 3, use_clips=[1], use_crops=[1])
    assert selected[0, 0, 0].item() == x[0, 4, 0].item()
    assert select_views(x, 2, 3, use_crops=[1]).shape == (2, 2, 1)
    with pytest.raises(ValueError, match="expected"):
        select_views(x, 4, 3)
