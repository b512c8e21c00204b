"""Multi-view helpers: fold/unfold the views dimension and reduce per-view scores to one per video.

Views are ``K`` temporal clips × ``C`` spatial crops in **clip-major** order:
``v = clip * num_crops + crop`` (docs/design.md).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch

__all__ = [
    "REDUCTION_MODES",
    "fold_views",
    "reduce_views",
    "select_views",
    "num_views",
    "unfold_views",
    "view_index",
    "views_grid",
]

REDUCTION_MODES = ("logits", "probs")


def view_index(clip: int, crop: int, num_crops: int) -> int:
    """Position of (clip, crop) in the clip-major views dimension."""
    if not 0 <= crop < num_crops:
        raise ValueError(f"crop {crop} outside [0, {num_crops})")
    return clip * num_crops + crop


def fold_views(tensor: torch.Tensor) -> torch.Tensor:
    """``[B, V, ...] -> [B * V, ...]`` (sample-major: rows ``b * V + v``)."""
    if tensor.dim() < 2:
        raise ValueError(f"fold_views expects [B, V, ...], got shape {tuple(tensor.shape)}")
    return tensor.reshape(tensor.shape[0] * tensor.shape[1], *tensor.shape[2:])


def unfold_views(tensor: torch.Tensor, num_views: int) -> torch.Tensor:
    """``[B * V, ...] -> [B, V, ...]``, the inverse of :func:`fold_views`.

    Raises:
        ValueError: when ``num_views`` does not divide the leading dimension.
    """
    if num_views < 1:
        raise ValueError(f"num_views must be >= 1, got {num_views}")
    if tensor.dim() < 1 or tensor.shape[0] % num_views:
        raise ValueError(
            f"cannot unfold {num_views} views: the batch dimension {tensor.shape[0] if tensor.dim() else None} "
            f"is not a multiple of {num_views} (shape {tuple(tensor.shape)})"
        )
    return tensor.reshape(tensor.shape[0] // num_views, num_views, *tensor.shape[1:])


def select_views(logits: torch.Tensor, num_clips: int, num_crops: int, use_clips: list[int] | None = None, use_crops: list[int] | None = None) -> torch.Tensor:
    """Keep a subset of clips/crops of ``[B, K*C, ...]`` per-view scores (clip-major order preserved)."""
    if logits.dim() < 3 or logits.shape[1] != num_clips * num_crops:
        raise ValueError(
            f"expected [B, {num_clips}*{num_crops}={num_clips * num_crops}, ...], got shape {tuple(logits.shape)}"
        )
    use_clips = list(range(num_clips)) if use_clips is None else list(use_clips)
    use_crops = list(range(num_crops)) if use_crops is None else list(use_crops)
    index = [view_index(clip, crop, num_crops) for clip in use_clips for crop in use_crops]
    if any(not 0 <= clip < num_clips for clip in use_clips):
        raise ValueError(f"clips {use_clips} outside [0, {num_clips})")
    return logits[:, index]


def _reduce_one(logits: torch.Tensor, mode: str, name: str) -> torch.Tensor:
    if not torch.is_tensor(logits):
        logits = torch.as_tensor(logits)
    if logits.dim() == 2:
        return logits
    if logits.dim() != 3:
        raise ValueError(f"{name}: expected [B, C] or [B, V, C] scores, got shape {tuple(logits.shape)}")
    if logits.shape[1] == 0:
        raise ValueError(f"{name}: no views (shape {tuple(logits.shape)})")
    if torch.isnan(logits).any():
        raise ValueError(f"{name}: NaN scores in {int(torch.isnan(logits).any(-1).any(-1).sum())} samples")
    if mode == "logits":
        return logits.float().mean(dim=1)
    probs = torch.softmax(logits.float(), dim=-1).mean(dim=1)
    return probs.clamp_min(torch.finfo(probs.dtype).tiny).log()


def reduce_views(logits: torch.Tensor | Mapping[str, torch.Tensor], mode: str = "logits") -> Any:
    """Reduce per-view scores ``[B, V, C]`` (or a dict of them) to ``[B, C]``.

    Args:
        logits: a tensor or ``{head: tensor}``; ``[B, C]`` inputs pass through unchanged.
        mode: ``"logits"`` averages raw logits (the original ``src/utils/evaluation.py``); ``"probs"`` averages
            softmax probabilities and returns their **log**, so that ``softmax(result)`` is exactly the
            mean probability and every downstream metric can treat the result as logits.

    Returns:
        A tensor or a dict of tensors ``[B, C]`` (float32).
    """
    if mode not in REDUCTION_MODES:
        raise ValueError(f"mode must be one of {REDUCTION_MODES}, got {mode!r}")
    if isinstance(logits, Mapping):
        return {head: _reduce_one(value, mode, head) for head, value in logits.items()}
    return _reduce_one(logits, mode, "logits")


def views_grid(max_clips: int, max_crops: int) -> list[tuple[int, int]]:
    """The views-vs-accuracy grid (1×1, 2×1, 4×1, 4×3 ...) that fits in ``max_clips × max_crops``."""
    grid = [(1, 1), (2, 1), (4, 1), (4, 3)]
    return [(k, c) for k, c in grid if k <= max_clips and c <= max_crops] or [(1, 1)]


def num_views(num_clips: int, num_crops: int) -> int:
    """``K * C`` with validation (1 ≤ K ≤ 10, 1 ≤ C ≤ 3)."""
    if not 1 <= num_clips <= 10 or not 1 <= num_crops <= 3:
        raise ValueError(f"views must be 1..10 clips x 1..3 crops, got {num_clips}x{num_crops}")
    return int(math.prod((num_clips, num_crops)))
