"""Hand-object detections of a mini-kitchens video in the official EPIC-KITCHENS-100 format (a pickled list of
serialised protobuf ``Detections``, element k = RGB frame k+1; schema in ``mmkd_hf.data.detections``).

Detections give clean trajectories and contact states, and the object box's aspect ratio hints the shape;
true boxes score >= 0.6, false positives < 0.5 (kept, as in the official files); in the clips where the
detector struggles there are many misses, large jitter and contact errors.
"""

from __future__ import annotations

import os
from typing import Any, Sequence

import numpy as np

from mmkd_hf.data.detections import Detections, write_video_detections

from .scene import NO_CONTACT, PORTABLE_OBJECT, STATIONARY_OBJECT, MiniKitchensConfig

def _frac_box(box: tuple[float, float, float, float], W: int, H: int) -> tuple[float, float, float, float] | None:
    x1, y1, x2, y2 = max(box[0], 0.0), max(box[1], 0.0), min(box[2], float(W)), min(box[3], float(H))
    if x2 - x1 < 0.5 or y2 - y1 < 0.5:
        return None
    return x1 / W, y1 / H, x2 / W, y2 / H


def frame_detections(
    msg_cls: Any, video_id: str, frame_number: int, geom: dict[str, Any] | None, low_light: bool,
    cfg: MiniKitchensConfig, rng: np.random.Generator, failure: bool = False,
) -> bytes:
    """One frame's ``Detections``: true hands/objects score >= 0.6 (kept by the usual 0.5 thresholds), false
    positives score < 0.5. ``failure`` (a clip where the detector struggles): many misses, large jitter."""
    W, H = cfg.width, cfg.height
    det = msg_cls(video_id=video_id, frame_number=frame_number)
    jitter = (3.5 if failure else 0.8) * W / 64.0

    def noisy(box: tuple[float, float, float, float]) -> tuple[float, float, float, float]:
        d = rng.normal(0, jitter, 4)
        return box[0] + d[0], box[1] + d[1], box[2] + d[2], box[3] + d[3]

    miss = 0.45 if failure else (0.12 if low_light else 0.05)
    if geom is not None:
        hand_box = _frac_box(noisy(geom["boxes"]["hand"]), W, H)
        if hand_box is not None and rng.random() > miss:
            h = det.hands.add()
            h.bbox.left, h.bbox.top, h.bbox.right, h.bbox.bottom = hand_box
            h.score = float(np.clip(rng.normal(0.75 if low_light else 0.92, 0.06), 0.6, 0.999))
            state = geom["contact"]
            if rng.random() < (0.3 if failure else 0.08):  # contact-state classifier errors
                state = int(rng.choice([NO_CONTACT, PORTABLE_OBJECT, STATIONARY_OBJECT]))
            h.state = state
            h.side = geom["side"] if rng.random() > 0.05 else 1 - geom["side"]
            if state != NO_CONTACT:
                h.object_offset.x = float((geom["object_centre"][0] - geom["hand_centre"][0]) / W)
                h.object_offset.y = float((geom["object_centre"][1] - geom["hand_centre"][1]) / H)
        for name in ("object", "lid"):
            if name in geom["boxes"] and rng.random() > miss:
                box = _frac_box(noisy(geom["boxes"][name]), W, H)
                if box is not None:
                    o = det.objects.add()
                    o.bbox.left, o.bbox.top, o.bbox.right, o.bbox.bottom = box
                    o.score = float(np.clip(rng.normal(0.72 if low_light else 0.85, 0.08), 0.6, 0.999))
    # low-score false positives (the official files keep objects >= 0.01 and hands >= 0.1)
    for _ in range(int(rng.poisson(2.5 if failure else 1.2))):
        cx, cy, bw, bh = rng.uniform(0, 1), rng.uniform(0, 1), rng.uniform(0.05, 0.3), rng.uniform(0.05, 0.3)
        o = det.objects.add()
        o.bbox.left, o.bbox.top = max(0.0, cx - bw / 2), max(0.0, cy - bh / 2)
        o.bbox.right, o.bbox.bottom = min(1.0, cx + bw / 2), min(1.0, cy + bh / 2)
        o.score = float(rng.uniform(0.01, 0.35))
    if rng.random() < 0.1:
        cx, cy = rng.uniform(0.1, 0.9), rng.uniform(0.4, 1.0)
        h = det.hands.add()
        h.bbox.left, h.bbox.top, h.bbox.right, h.bbox.bottom = max(0.0, cx - 0.07), max(0.0, cy - 0.06), min(1.0, cx + 0.07), min(1.0, cy + 0.06)
        h.score = float(rng.uniform(0.1, 0.4))
        h.state = NO_CONTACT
        h.side = int(rng.integers(2))
    return det.SerializeToString(deterministic=True)


def write_detections(
    path: str | os.PathLike, video_id: str, geoms: Sequence[dict[str, Any] | None],
    conditions: Sequence[tuple[bool, bool]], cfg: MiniKitchensConfig, rng: np.random.Generator,
) -> None:
    """Write a video's ``hand-objects/<video>.pkl``: one ``Detections`` per RGB frame from its ground-truth
    geometry (None between segments) and its ``(low light, detector failure)`` conditions."""
    frames = [
        frame_detections(Detections, video_id, i, geom, low, cfg, rng, failure)
        for i, (geom, (low, failure)) in enumerate(zip(geoms, conditions), start=1)
    ]
    write_video_detections(path, frames)
