"""Frame samplers (``src/utils/samplers.py`` of the authors' public code, github.com/gorjanradevski/multimodal-distillation,
with the original's bugs fixed). Pure functions; the RNG is passed in.

All samplers return **0-based indices relative to the segment start**, shaped ``[num_clips, num_frames]``
(clip-major, the order of the views dimension). Callers add the segment's first frame number.

* :func:`uniform_segment_indices` — the STLT / SSv2 rule: the segment is cut into ``num_frames`` equal
  parts; training draws one frame at random inside each part, evaluation takes its centre. With
  ``num_clips = K > 1`` (evaluation only) clip ``k`` takes position ``(k + 1) / (K + 1)`` inside each part,
  so the clips interleave over the whole segment (the original spread K·T frames instead).
* :func:`stride_indices` — mmaction ``SampleFrames`` (EPIC): ``num_frames`` frames ``stride`` apart.
  Training draws one random offset (``num_clips`` is ignored in training; the original
  ``GeneralSampler`` used its test-time clip count in training too); evaluation
  spreads K clip offsets evenly. Indices past the segment end are replaced by the last valid index of
  that clip ("repeat last"), so a segment shorter than the clip is allowed and repeats frames.

Helpers map RGB frame numbers to the other modalities:

* :func:`rgb_to_flow_index` — EPIC TV-L1 flow is stored at half the RGB rate. With 1-based RGB frame
  number ``i`` and ``n_flow`` flow frames the flow frame is ``min(max(ceil(i / 2), 1), n_flow)``
  (1-based), the convention of the EPIC download scripts / TSN ``convert_rgb_to_flow_frame_idxs``.
* :func:`frame_to_seconds` — frame ``i`` (1-based) of a video at ``fps`` starts at ``(i - 1) / fps`` s.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = [
    "uniform_segment_indices",
    "stride_indices",
    "sample_indices",
    "rgb_to_flow_index",
    "frame_to_seconds",
]


def _check(length: int, num_frames: int, num_clips: int) -> None:
    if length < 1:
        raise ValueError(f"segment length must be >= 1 frame, got {length}")
    if num_frames < 1:
        raise ValueError(f"num_frames must be >= 1, got {num_frames}")
    if num_clips < 1:
        raise ValueError(f"num_clips must be >= 1, got {num_clips}")


def uniform_segment_indices(
    length: int, num_frames: int, train: bool, rng: np.random.Generator | None = None, num_clips: int = 1
) -> np.ndarray:
    """Segment-based sampling (SSv2 / Something-Else / STLT).

    Args:
        length: number of frames in the segment (L).
        num_frames: frames per clip (T).
        train: random position inside each part if True, deterministic otherwise.
        rng: numpy Generator, required when ``train``.
        num_clips: temporal views (evaluation only; training always returns one clip).

    Returns:
        int64 array ``[K, T]`` of 0-based indices in ``[0, L - 1]``.
    """
    _check(length, num_frames, num_clips)
    part = (length - 1) / num_frames
    starts = np.round(part * np.arange(num_frames)).astype(np.int64)
    ends = np.round(part * np.arange(1, num_frames + 1)).astype(np.int64)
    if train:
        if rng is None:
            raise ValueError("uniform_segment_indices(train=True) needs an rng")
        return rng.integers(starts, ends + 1)[None, :].astype(np.int64)
    positions = (np.arange(num_clips) + 1.0) / (num_clips + 1.0)  # 0.5 for one clip: the centre
    indices = np.floor(starts[None, :] + positions[:, None] * (ends - starts)[None, :]).astype(np.int64)
    return np.clip(indices, 0, length - 1)


def stride_indices(
    length: int,
    num_frames: int,
    stride: int,
    train: bool,
    rng: np.random.Generator | None = None,
    num_clips: int = 1,
) -> np.ndarray:
    """Stride-based sampling (mmaction ``SampleFrames``, the EPIC sampler of the original).

    Args:
        length: number of frames in the segment (L).
        num_frames: frames per clip (T).
        stride: frame interval (S).
        train: random offset if True; evenly spread deterministic offsets otherwise.
        rng: numpy Generator, required when ``train``.
        num_clips: temporal views, used in evaluation only.

    Returns:
        int64 array ``[K, T]`` of 0-based indices in ``[0, L - 1]`` (K = 1 in training).
    """
    _check(length, num_frames, num_clips)
    if stride < 1:
        raise ValueError(f"stride must be >= 1, got {stride}")
    span = num_frames * stride
    if train:
        if rng is None:
            raise ValueError("stride_indices(train=True) needs an rng")
        room = length - span + 1
        offsets = np.array([int(rng.integers(room)) if room > 0 else 0])
    else:
        avg = (length - span + 1) / num_clips
        if length > span - 1:
            offsets = (np.arange(num_clips) * avg + avg / 2.0).astype(np.int64)
        else:
            offsets = np.zeros(num_clips, dtype=np.int64)
    indices = offsets[:, None] + np.arange(num_frames)[None, :] * stride
    valid = indices < length
    last_valid = np.where(valid, indices, -1).max(axis=1, keepdims=True)
    last_valid = np.where(last_valid < 0, length - 1, last_valid)
    return np.where(valid, indices, last_valid).astype(np.int64)


def sample_indices(
    sampler: str,
    length: int,
    num_frames: int,
    train: bool,
    rng: np.random.Generator | None,
    num_clips: int = 1,
    stride: int = 8,
) -> np.ndarray:
    """Dispatch on ``sampler`` (``"uniform"`` or ``"stride"``); see the module docstring."""
    if sampler == "uniform":
        return uniform_segment_indices(length, num_frames, train, rng, num_clips if not train else 1)
    if sampler == "stride":
        return stride_indices(length, num_frames, stride, train, rng, num_clips)
    raise ValueError(f"unknown sampler {sampler!r}: expected 'uniform' or 'stride'")


def rgb_to_flow_index(rgb_frame: np.ndarray | int, num_flow_frames: int) -> np.ndarray:
    """Map 1-based RGB frame numbers to 1-based flow frame numbers (flow at half the RGB rate)."""
    if num_flow_frames < 1:
        raise ValueError(f"num_flow_frames must be >= 1, got {num_flow_frames}")
    rgb = np.asarray(rgb_frame, dtype=np.int64)
    flow = np.ceil(rgb / 2.0).astype(np.int64)
    return np.clip(flow, 1, num_flow_frames)


def frame_to_seconds(frame_number: np.ndarray | int, fps: float) -> np.ndarray:
    """Start time in seconds of the 1-based ``frame_number`` of a video at ``fps``."""
    if not fps or fps <= 0 or math.isnan(fps):
        raise ValueError(f"fps must be positive, got {fps}")
    return (np.asarray(frame_number, dtype=np.float64) - 1.0) / float(fps)
