"""Boxes through the item's augmentation, and per-frame boxes padded into ``layout_*`` tensors."""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from .configs import PAD_BOX, AugmentationParams

__all__ = ["transform_boxes", "pad_layout"]


def transform_boxes(boxes: np.ndarray, params: AugmentationParams, crop_index: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Map boxes given as fractions of the full frame ``[..., 4]`` (x1, y1, x2, y2) into one crop.

    Returns:
        (boxes as fractions of the crop, clipped to [0, 1]; bool mask of boxes with positive area inside).
    """
    rh, rw = params.resize
    top, left, ch, cw = params.crops[crop_index]
    b = np.asarray(boxes, dtype=np.float64)
    x1 = (b[..., 0] * rw - left) / cw
    x2 = (b[..., 2] * rw - left) / cw
    y1 = (b[..., 1] * rh - top) / ch
    y2 = (b[..., 3] * rh - top) / ch
    x1, x2, y1, y2 = (np.clip(v, 0.0, 1.0) for v in (x1, x2, y1, y2))
    if params.flip:
        x1, x2 = 1.0 - x2, 1.0 - x1
    out = np.stack([x1, y1, x2, y2], axis=-1).astype(np.float32)
    inside = ((x2 - x1) > 1e-6) & ((y2 - y1) > 1e-6)
    return out, inside


def pad_layout(frames: Sequence[dict[str, np.ndarray]], max_boxes: int) -> dict[str, torch.Tensor]:
    """Stack per-frame box arrays into padded ``layout_*`` tensors ``[T, N]`` keeping the top scores.

    Each frame dict has ``boxes`` [n, 4], ``categories``, ``scores``, ``sides``, ``states`` [n]. Frames
    with more than ``max_boxes`` boxes keep the highest-scoring ones (stable order otherwise).
    """
    t = len(frames)
    out = {
        "layout_boxes": torch.tensor(PAD_BOX, dtype=torch.float32).repeat(t, max_boxes, 1),
        "layout_categories": torch.zeros(t, max_boxes, dtype=torch.int64),
        "layout_scores": torch.zeros(t, max_boxes, dtype=torch.float32),
        "layout_sides": torch.zeros(t, max_boxes, dtype=torch.int64),
        "layout_states": torch.zeros(t, max_boxes, dtype=torch.int64),
        "layout_mask": torch.zeros(t, max_boxes, dtype=torch.bool),
    }
    for i, fr in enumerate(frames):
        n = len(fr["scores"])
        if n == 0:
            continue
        keep = np.argsort(-fr["scores"], kind="stable")[:max_boxes]
        keep.sort()
        k = len(keep)
        out["layout_boxes"][i, :k] = torch.from_numpy(np.asarray(fr["boxes"][keep], np.float32))
        out["layout_categories"][i, :k] = torch.from_numpy(np.asarray(fr["categories"][keep], np.int64))
        out["layout_scores"][i, :k] = torch.from_numpy(np.asarray(fr["scores"][keep], np.float32))
        out["layout_sides"][i, :k] = torch.from_numpy(np.asarray(fr["sides"][keep], np.int64))
        out["layout_states"][i, :k] = torch.from_numpy(np.asarray(fr["states"][keep], np.int64))
        out["layout_mask"][i, :k] = True
    return out

