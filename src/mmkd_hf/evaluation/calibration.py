"""Calibration metrics (ECE, MCE, NLL, Brier), reliability diagrams and temperature scaling.

ECE follows the original code (``src/utils/calibration.py`` of the authors' public code,
github.com/gorjanradevski/multimodal-distillation, itself from gpleiss/temperature_scaling): confidence = max
softmax probability of the view-reduced scores, 15 equal-width bins with edges ``linspace(0, 1, 16)``,
a sample belongs to bin ``(lower, upper]``, and ``ECE = sum_b |mean_conf_b - acc_b| * n_b / n``.
MCE is the largest ``|mean_conf_b - acc_b|`` over non-empty bins. ECE and MCE are percentages (×100,
as the original reports them); NLL is the mean negative log-likelihood in nats; Brier is the mean
over samples of ``sum_c (p_c - y_c)^2`` (range [0, 2]).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from ..utils import save_figure
from .metrics import softmax, to_numpy, validate_labels, validate_scores

DEFAULT_NUM_BINS = 15

__all__ = [
    "DEFAULT_NUM_BINS",
    "apply_temperature",
    "calibration_metrics",
    "fit_temperature",
    "negative_log_likelihood",
    "plot_reliability_diagram",
    "reliability_bins",
    "scores_to_probabilities",
    "temperature_scaling_report",
]


def scores_to_probabilities(scores: Any, scores_are: str = "logits", num_classes: int | None = None) -> np.ndarray:
    """``[N, C]`` probabilities from logits (softmax) or from probabilities (checked, returned as is)."""
    array = validate_scores(scores, num_classes=num_classes)
    if scores_are == "logits":
        return softmax(array)
    if scores_are == "probs":
        if (array < 0).any() or not np.allclose(array.sum(axis=1), 1.0, atol=1e-4):
            raise ValueError("scores_are='probs' but the rows are not probability distributions (>= 0, sum 1)")
        return array
    raise ValueError(f"scores_are must be 'logits' or 'probs', got {scores_are!r}")


def reliability_bins(confidences: Any, correct: Any, num_bins: int = DEFAULT_NUM_BINS) -> dict[str, np.ndarray]:
    """Per-bin statistics with ``(lower, upper]`` membership.

    Returns:
        ``lower``, ``upper``, ``count`` (int), ``mean_confidence`` and ``accuracy`` (NaN for empty bins),
        each of length ``num_bins``.
    """
    confidences = np.asarray(confidences, dtype=np.float64)
    correct = np.asarray(correct, dtype=np.float64)
    edges = np.linspace(0.0, 1.0, num_bins + 1)
    lower, upper = edges[:-1], edges[1:]
    members = (confidences[None, :] > lower[:, None]) & (confidences[None, :] <= upper[:, None])
    count = members.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_confidence = (members * confidences[None, :]).sum(axis=1) / count
        accuracy = (members * correct[None, :]).sum(axis=1) / count
    return {"lower": lower, "upper": upper, "count": count, "mean_confidence": mean_confidence, "accuracy": accuracy}


def negative_log_likelihood(scores: Any, labels: Any, *, scores_are: str = "logits", num_classes: int | None = None) -> float:
    """Mean negative log-likelihood of the true class in nats (natural log): ``-mean_i log p_i[y_i]``.

    ``scores`` are ``[N, C]`` logits (log-softmax, computed stably) or probabilities (``scores_are="probs"``; a
    zero probability of the true class counts as ``-log(1e-300)``, not infinity); ``labels`` are ``[N]`` class ids.
    """
    array = validate_scores(scores, num_classes=num_classes)
    labels = validate_labels(labels, array.shape[0], array.shape[1])
    rows = np.arange(array.shape[0])
    if scores_are == "logits":
        shifted = array - array.max(axis=1, keepdims=True)
        log_probs = shifted[rows, labels] - np.log(np.exp(shifted).sum(axis=1))
    else:
        probs = scores_to_probabilities(array, scores_are, num_classes)
        log_probs = np.log(np.clip(probs[rows, labels], 1e-300, None))
    return float(-log_probs.mean())


def calibration_metrics(
    scores: Any, labels: Any, *, scores_are: str = "logits", num_bins: int = DEFAULT_NUM_BINS, num_classes: int | None = None
) -> dict[str, float]:
    """ECE and MCE (%), NLL (nats) and Brier score of one head's ``[N, C]`` scores."""
    probs = scores_to_probabilities(scores, scores_are, num_classes)
    labels = validate_labels(labels, probs.shape[0], probs.shape[1])
    n = probs.shape[0]
    confidences = probs.max(axis=1)
    correct = probs.argmax(axis=1) == labels
    bins = reliability_bins(confidences, correct, num_bins)
    filled = bins["count"] > 0
    gaps = np.abs(bins["mean_confidence"][filled] - bins["accuracy"][filled])
    ece = float((gaps * bins["count"][filled] / n).sum())
    mce = float(gaps.max()) if gaps.size else 0.0
    nll = negative_log_likelihood(scores if scores_are == "logits" else probs, labels, scores_are=scores_are)
    one_hot = np.zeros_like(probs)
    one_hot[np.arange(n), labels] = 1.0
    brier = float(((probs - one_hot) ** 2).sum(axis=1).mean())
    return {
        "ece": 100.0 * ece,
        "mce": 100.0 * mce,
        "nll": nll,
        "brier": brier,
        "mean_confidence": 100.0 * float(confidences.mean()),
        "accuracy": 100.0 * float(correct.mean()),
        "num_samples": int(n),
        "num_bins": int(num_bins),
    }


# ------------------------------------------------------------------------------ temperature scaling
def apply_temperature(logits: Any, temperature: float) -> np.ndarray:
    """Logits divided by ``temperature``."""
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    return validate_scores(logits, "logits") / float(temperature)


def fit_temperature(logits: Any, labels: Any, *, bounds: tuple[float, float] = (0.05, 20.0), max_iter: int = 100) -> float:
    """Temperature T > 0 minimising the NLL of ``softmax(logits / T)`` on a held-out split.

    The NLL is smooth in ``log T``; this runs torch LBFGS on ``log T`` (strong-Wolfe line search), then
    clamps to ``bounds``. Fit on a split that is **not** the one you report on.
    """
    import torch

    logits_t = torch.as_tensor(validate_scores(logits, "logits"), dtype=torch.float64)
    labels_t = torch.as_tensor(validate_labels(labels, logits_t.shape[0], logits_t.shape[1]))
    log_t = torch.zeros((), dtype=torch.float64, requires_grad=True)
    optimizer = torch.optim.LBFGS([log_t], lr=1.0, max_iter=max_iter, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        loss = torch.nn.functional.cross_entropy(logits_t / log_t.exp(), labels_t)
        loss.backward()
        return loss

    optimizer.step(closure)
    temperature = float(log_t.detach().exp())
    if not math.isfinite(temperature):
        temperature = 1.0
    return float(min(max(temperature, bounds[0]), bounds[1]))


def temperature_scaling_report(
    fit_logits: Any, fit_labels: Any, eval_logits: Any, eval_labels: Any, *, num_bins: int = DEFAULT_NUM_BINS
) -> dict[str, Any]:
    """Fit T on (``fit_logits``, ``fit_labels``) and report calibration on the eval split before/after."""
    temperature = fit_temperature(fit_logits, fit_labels)
    before = calibration_metrics(eval_logits, eval_labels, num_bins=num_bins)
    after = calibration_metrics(apply_temperature(eval_logits, temperature), eval_labels, num_bins=num_bins)
    return {"temperature": temperature, "before": before, "after": after}


# ------------------------------------------------------------------------------------------- plots
def plot_reliability_diagram(
    per_head: Mapping[str, tuple[Any, Any]], path: str | Path, *, scores_are: str = "logits", num_bins: int = DEFAULT_NUM_BINS, title: str | None = None
) -> Path:
    """Write a reliability diagram PNG (one panel per head) atomically.

    Args:
        per_head: ``{head: (scores [N, C], labels [N])}``.
        path: output ``.png``.
        scores_are: ``logits`` or ``probs``.
    """
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    if not per_head:
        raise ValueError("plot_reliability_diagram needs at least one head")
    figure, axes = plt.subplots(1, len(per_head), figsize=(4.2 * len(per_head), 4.2), squeeze=False)
    for axis, (head, (scores, labels)) in zip(axes[0], per_head.items()):
        probs = scores_to_probabilities(scores, scores_are)
        labels = validate_labels(labels, probs.shape[0], probs.shape[1], f"{head} labels")
        stats = calibration_metrics(probs, labels, scores_are="probs", num_bins=num_bins)
        bins = reliability_bins(probs.max(axis=1), probs.argmax(axis=1) == labels, num_bins)
        width = bins["upper"] - bins["lower"]
        accuracy = np.nan_to_num(bins["accuracy"])
        axis.bar(bins["lower"], accuracy, width=width, align="edge", edgecolor="black", color="tab:blue", label="accuracy")
        gap_bottom = np.where(bins["count"] > 0, np.minimum(accuracy, np.nan_to_num(bins["mean_confidence"])), 0)
        gap_height = np.where(bins["count"] > 0, np.abs(np.nan_to_num(bins["mean_confidence"]) - accuracy), 0)
        axis.bar(bins["lower"], gap_height, bottom=gap_bottom, width=width, align="edge", color="tab:red", alpha=0.35, label="gap")
        axis.plot([0, 1], [0, 1], "k--", linewidth=1)
        axis.set_xlim(0, 1)
        axis.set_ylim(0, 1)
        axis.set_xlabel("confidence")
        axis.set_ylabel("accuracy")
        axis.set_title(f"{head}: ECE {stats['ece']:.2f}%  (n={stats['num_samples']})")
        axis.legend(loc="upper left")
    return save_figure(figure, path, title)


def to_float_logits(logits: Any) -> np.ndarray:
    """Convenience: numpy float64 copy of a tensor/array of logits."""
    return np.asarray(to_numpy(logits), dtype=np.float64)
