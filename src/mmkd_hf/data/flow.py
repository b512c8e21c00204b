"""Optical flow in the EPIC-KITCHENS-100 frame format: frame pairs, JPEG quantisation, Farneback flow.

EPIC-KITCHENS-100 stores optical flow at half the RGB rate as two grayscale JPEGs per flow frame
(``flow_frames/<video>/{u,v}/frame_%010d.jpg``). Flow frame ``k`` (1-based) holds the motion from RGB frame
``a = b - 2`` to ``b = min(2k + 1, N)`` (``a`` clamped to >= 1), i.e. flow frame ``ceil(rgb / 2)`` covers RGB
frame ``rgb``; a video of N RGB frames has ``ceil(N / 2)`` flow frames. Each component is quantised as
``value = clip(round(128 + d * 128 / B), 0, 255)`` for a displacement ``d`` in pixels and a bound ``B``
(128 = no motion), as EPIC's TV-L1 export quantises a bounded range.

:func:`compute_flow` computes such flow frames from RGB frames with OpenCV's Farneback algorithm (TV-L1 is
not in OpenCV's main package, and torchvision's RAFT needs pretrained weights); the mini-kitchens generator
and ``mmkd-hf profile`` both use it.
"""

from __future__ import annotations

from typing import Sequence

import cv2
import numpy as np

__all__ = ["flow_pair_for", "encode_flow_component", "decode_flow_component", "compute_flow"]


def flow_pair_for(flow_index: int, num_rgb_frames: int) -> tuple[int, int]:
    """RGB frames (1-based) whose motion flow frame ``flow_index`` (1-based) stores: ``(a, b)``."""
    b = min(2 * flow_index + 1, num_rgb_frames)
    a = max(1, b - 2)
    return a, b


def encode_flow_component(d: np.ndarray, bound: float) -> np.ndarray:
    """Quantise a displacement map (pixels) to uint8 with 128 = no motion and +-bound -> 0 / 255."""
    return np.clip(np.rint(128.0 + d * (128.0 / bound)), 0, 255).astype(np.uint8)


def decode_flow_component(q: np.ndarray, bound: float) -> np.ndarray:
    """Inverse of :func:`encode_flow_component` (up to quantisation): displacements in pixels."""
    return (q.astype(np.float32) - 128.0) * (bound / 128.0)


def compute_flow(frames: Sequence[np.ndarray], bound: float) -> list[tuple[np.ndarray, np.ndarray]]:
    """Farneback optical flow of RGB frames (uint8 ``HxWx3``) at half the RGB rate, quantised to (u, v) uint8
    images: one pair per flow frame, ``ceil(len(frames) / 2)`` in all (pairs from :func:`flow_pair_for`)."""
    grays = [cv2.cvtColor(f, cv2.COLOR_RGB2GRAY) for f in frames]
    n = len(grays)
    out = []
    for k in range(1, (n + 1) // 2 + 1):
        a, b = flow_pair_for(k, n)
        if a == b or np.array_equal(grays[a - 1], grays[b - 1]):  # Farneback is not exactly 0 on equal frames
            flow = np.zeros(grays[0].shape + (2,), np.float32)
        else:
            flow = cv2.calcOpticalFlowFarneback(grays[a - 1], grays[b - 1], None, 0.5, 2, 7, 3, 5, 1.1, 0)
        out.append((encode_flow_component(flow[..., 0], bound), encode_flow_component(flow[..., 1], bound)))
    return out
