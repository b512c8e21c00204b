"""Per-item consistent multimodal transforms (spec §4.4-4.8, done right).

For every item the frame indices and the augmentation parameters are drawn **once** and applied to
every modality:

* RGB: resize (short side), crop(s), optional horizontal flip, colour jitter; float in [0, 1], or uint8
  0-255 with ``frames_dtype="uint8"`` (4x fewer bytes to move; the models divide by 255).
* Flow: the same geometry (resized to the RGB frame size first, so flow and RGB grids coincide);
  a horizontal flip negates u, i.e. ``u -> 1 - u`` in the [0, 1] JPEG encoding (0.5 = no motion);
  no colour jitter. Flow magnitudes are not rescaled by the resize (as the original).
* Boxes: scaled, cropped, flipped with the pixels, clipped to the crop; a box that leaves the crop is
  masked out. Then the highest-scoring ``max_boxes`` are kept and the rest is padded.
* Audio: no geometry; log-mel windows centred on the sampled frames (explicit 16 kHz, the video's own
  fps); optional train-time time/frequency masking is applied **in dB space** (fix of spec §9.10), the
  masked bins take the item's mean dB value.

Train defaults follow spec §4.5: short side resized to ``crop * U(1.15, 1.43)``, random crop, colour
jitter (brightness/contrast/saturation 0.75-1.25, hue ±0.1 in a random order), flip **off** (SSv2 has
left/right classes). Evaluation: short side resized to the crop size, centre crop, or 3 crops along the
long side (left, centre, right).

Outputs follow the batch contract of ``docs/design.md``. With ``num_clips * num_crops > 1`` (evaluation
multi-view) every modality gets a leading views dim ``V`` (clip-major: ``v = clip * num_crops + crop``);
layout tensors get it too (``[V, T, N, ...]``), audio is repeated over crops.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import sys
import threading
from dataclasses import dataclass, field, replace
from typing import Any, Iterator, Sequence

import numpy as np
import torch
import torch.nn.functional as TF
from torchvision.transforms.v2 import functional as VF

try:
    import cv2 as _cv2
except ImportError:  # pragma: no cover - OpenCV is a dependency; torch copies are the fallback
    _cv2 = None

from .decoding import read_audio
from .errors import FileDecodeError, SampleDecodeError
from .sampling import frame_to_seconds, sample_indices

logger = logging.getLogger(__name__)

__all__ = [
    "AugmentationConfig",
    "AugmentationParams",
    "AudioConfig",
    "LayoutConfig",
    "PipelineConfig",
    "sample_augmentation",
    "apply_to_frames",
    "color_jitter_uint8",
    "transform_boxes",
    "pad_layout",
    "log_mel_windows",
    "mask_spectrogram",
    "MultimodalTransform",
    "SampleReader",
    "MODALITIES",
    "dataloader_worker_init",
    "keep_freed_memory",
    "batch_buffer",
]

MODALITIES = ("rgb", "flow", "audio", "layout")
#: the dtypes ``pixel_values`` / ``flow_values`` can be delivered in (``PipelineConfig.frames_dtype``)
FRAMES_DTYPES = {"float32": torch.float32, "uint8": torch.uint8}
PAD_BOX = (0.0, 0.0, 1e-9, 1e-9)  # the original's padding box (spec §4.7)


# ----------------------------------------------------------------------------------------------- configs
@dataclass(frozen=True)
class AugmentationConfig:
    """Spatial/colour augmentation settings (train defaults from spec §4.5)."""

    crop_size: int = 224
    scale_range: tuple[float, float] = (1.15, 1.43)
    color_jitter: bool = True
    brightness: tuple[float, float] = (0.75, 1.25)
    contrast: tuple[float, float] = (0.75, 1.25)
    saturation: tuple[float, float] = (0.75, 1.25)
    hue: tuple[float, float] = (-0.1, 0.1)
    horizontal_flip: bool = False
    flip_probability: float = 0.5
    num_crops: int = 1  # evaluation only: 1 (centre) or 3 (left, centre, right)

    def __post_init__(self):
        if self.num_crops not in (1, 3):
            raise ValueError(f"num_crops must be 1 or 3, got {self.num_crops}")
        if self.crop_size < 1:
            raise ValueError(f"crop_size must be >= 1, got {self.crop_size}")


@dataclass(frozen=True)
class AugmentationParams:
    """Geometry and colour parameters drawn once per item.

    Attributes:
        frame_size: (H, W) the parameters were drawn for (aspect ratio reference).
        resize: (h, w) after resizing the short side.
        crops: list of (top, left, height, width) in the resized frame (1 in training, C in evaluation).
        flip: horizontal flip.
        jitter: None or (order, brightness, contrast, saturation, hue) with order a permutation of 0..3.
    """

    frame_size: tuple[int, int]
    resize: tuple[int, int]
    crops: tuple[tuple[int, int, int, int], ...]
    flip: bool = False
    jitter: tuple[tuple[int, ...], float, float, float, float] | None = None


@dataclass(frozen=True)
class AudioConfig:
    """Log-mel settings (spec §3.3 with an explicit sample rate). W = 1 + floor(window * sr / hop)."""

    sample_rate: int = 16000
    window_seconds: float = 1.116
    n_fft: int = 1024
    win_length: int = 160
    hop_length: int = 80
    n_mels: int = 128
    output_size: tuple[int, int] | None = (224, 224)  # see resize_spectrogram; None keeps F x W
    pad_outside_segment: bool = True  # zero the waveform outside the action segment (original)
    time_mask: int = 0  # train-time: max masked columns (0 = off; the original used 80, p = 0.5)
    freq_mask: int = 0  # train-time: max masked mel bins (0 = off; the original used 80)
    mask_probability: float = 0.5


@dataclass(frozen=True)
class LayoutConfig:
    """Box settings: padding size, detector thresholds (EPIC), whether boxes follow the crop."""

    max_boxes: int = 14
    hand_threshold: float = 0.5
    object_threshold: float = 0.5
    follow_crop: bool = True


@dataclass(frozen=True)
class PipelineConfig:
    """Everything the transform needs besides the dataset reader."""

    modalities: tuple[str, ...] = ("rgb",)
    train: bool = False
    num_frames: int = 16
    sampler: str = "uniform"
    stride: int = 2
    num_clips: int = 1
    augmentation: AugmentationConfig = field(default_factory=AugmentationConfig)
    audio: AudioConfig = field(default_factory=AudioConfig)
    layout: LayoutConfig = field(default_factory=LayoutConfig)
    seed: int = 0
    skip_bad_samples: bool = False
    max_replacements: int = 10
    skip_log_path: str | None = None
    frames_dtype: str = "float32"  # "float32" (0-1) or "uint8" (0-255) for pixel_values and flow_values

    def __post_init__(self):
        unknown = [m for m in self.modalities if m not in MODALITIES]
        if unknown or not self.modalities:
            raise ValueError(f"modalities must be a non-empty subset of {MODALITIES}, got {self.modalities}")
        if self.frames_dtype not in FRAMES_DTYPES:
            raise ValueError(f"frames_dtype must be one of {sorted(FRAMES_DTYPES)}, got {self.frames_dtype!r}")

    @property
    def torch_frames_dtype(self) -> torch.dtype:
        return FRAMES_DTYPES[self.frames_dtype]

    @property
    def num_views(self) -> int:
        if self.train:
            return 1
        return self.num_clips * self.augmentation.num_crops


# ------------------------------------------------------------------------------------------ augmentation
def _resized_size(frame_size: tuple[int, int], short: int) -> tuple[int, int]:
    h, w = frame_size
    if h <= w:
        return short, max(short, int(round(w * short / h)))
    return max(short, int(round(h * short / w))), short


def sample_augmentation(
    rng: np.random.Generator, frame_size: tuple[int, int], config: AugmentationConfig, train: bool
) -> AugmentationParams:
    """Draw the per-item augmentation parameters for frames of ``frame_size`` = (H, W)."""
    crop = config.crop_size
    if train:
        short = int(round(crop * rng.uniform(*config.scale_range)))
    else:
        short = crop
    rh, rw = _resized_size(frame_size, max(short, crop))
    if train:
        top = int(rng.integers(0, rh - crop + 1))
        left = int(rng.integers(0, rw - crop + 1))
        crops = ((top, left, crop, crop),)
        flip = bool(config.horizontal_flip and rng.random() < config.flip_probability)
        jitter = None
        if config.color_jitter:
            jitter = (
                tuple(int(i) for i in rng.permutation(4)),
                float(rng.uniform(*config.brightness)),
                float(rng.uniform(*config.contrast)),
                float(rng.uniform(*config.saturation)),
                float(rng.uniform(*config.hue)),
            )
    else:
        flip, jitter = False, None
        centre = (int(round((rh - crop) / 2.0)), int(round((rw - crop) / 2.0)))
        if config.num_crops == 1:
            crops = ((centre[0], centre[1], crop, crop),)
        elif rw >= rh:  # left, centre, right along the width
            step = (rw - crop) // 2
            crops = tuple((centre[0], off, crop, crop) for off in (0, step, 2 * step))
        else:  # top, centre, bottom
            step = (rh - crop) // 2
            crops = tuple((off, centre[1], crop, crop) for off in (0, step, 2 * step))
    return AugmentationParams(tuple(frame_size), (rh, rw), crops, flip, jitter)


_YIQ = torch.tensor([[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]])
_YIQ_INV = torch.linalg.inv(_YIQ)
_GREY = (0.299, 0.587, 0.114)


def _hue_matrix(hue: float) -> torch.Tensor:
    """3x3 RGB -> RGB matrix rotating the chroma (I, Q) plane of YIQ by ``2 pi hue``."""
    theta = 2.0 * math.pi * hue
    rot = torch.tensor([[1.0, 0.0, 0.0], [0.0, math.cos(theta), -math.sin(theta)],
                        [0.0, math.sin(theta), math.cos(theta)]])
    return _YIQ_INV @ rot @ _YIQ


def _channel_means(hwc: torch.Tensor) -> np.ndarray:
    """Per-frame channel means ``[T, 3]`` (float64) of uint8 frames ``[T, H, W, 3]``."""
    if _cv2 is None:
        return hwc.double().mean(dim=(1, 2)).numpy()
    frames = hwc.numpy()
    return np.array([_cv2.mean(frame)[:3] for frame in frames])


def _apply_affine(hwc: torch.Tensor, matrices: np.ndarray, per_frame: bool) -> None:
    """In place on uint8 ``[T, H, W, 3]``: ``x -> M[:, :3] x + M[:, 3]`` per pixel, rounded and saturated to
    [0, 255] (i.e. clamped). ``matrices`` is ``[T, 3, 4]``; all frames share ``matrices[0]`` unless ``per_frame``."""
    t, h, w, _ = hwc.shape
    if _cv2 is None:
        m = torch.from_numpy(matrices if per_frame else np.broadcast_to(matrices[:1], matrices.shape).copy())
        out = torch.einsum("thwc,tdc->thwd", hwc.double(), m[:, :, :3]) + m[:, None, None, :, 3]
        hwc.copy_(out.round_().clamp_(0, 255))
        return
    frames = hwc.numpy()
    groups = [(frames[i], matrices[i]) for i in range(t)] if per_frame else [(frames.reshape(t * h, w, 3), matrices[0])]
    for image, matrix in groups:
        written = _cv2.transform(image, matrix, dst=image)
        if written.ctypes.data != image.ctypes.data:  # OpenCV allocated a new array: copy it
            np.copyto(image, written)


_GREY_VECTOR = np.array(_GREY)
_GREY_ROWS = np.tile(_GREY_VECTOR, (3, 1))  # every output channel = the pixel's grey


def color_jitter_uint8(frames: torch.Tensor, jitter) -> torch.Tensor:
    """Colour jitter of uint8 RGB frames ``[T, 3, H, W]`` stored channels-last, in place (returns ``frames``).

    ``jitter`` is ``(order, brightness, contrast, saturation, hue)`` as drawn by :func:`sample_augmentation`.
    The steps run in the drawn order with torchvision's formulas: brightness blends with black, contrast with
    the frame's mean grey, saturation with the pixel's grey; hue rotates the chroma plane of YIQ (a linear
    stand-in for torchvision's HSV hue shift). Every step is an affine map of the RGB values, so consecutive
    steps are composed into one ``3 x 4`` matrix and applied in one pass (``cv2.transform``, saturating), and a
    pass is made only where the result must be clamped to [0, 255] before the next step: after brightness,
    contrast or saturation factors above 1 (a blend with a factor <= 1 is a convex combination and cannot
    leave the range) and after a hue rotation. Contrast uses each frame's mean grey of the values reached so
    far (the mean of an affine map is the map of the means). Equal to the step-by-step float blends up to the
    rounding to integers at each pass (at most a few units of 1/255).
    """
    if frames.dtype != torch.uint8 or frames.ndim != 4 or frames.shape[1] != 3:
        raise ValueError(f"expected uint8 [T, 3, H, W] frames, got {frames.dtype} {tuple(frames.shape)}")
    hwc = frames.permute(0, 2, 3, 1)
    if not hwc.is_contiguous():
        raise ValueError("colour jitter needs channels-last frames (frames.permute(0, 2, 3, 1) contiguous)")
    order, brightness, contrast, saturation, hue = jitter
    t = frames.shape[0]
    identity = np.eye(3, 4)
    pending, per_frame, dirty = np.tile(identity, (t, 1, 1)), False, False
    for op in order:
        offset = np.zeros((t, 3))
        if op == 0:
            step, clamp = np.eye(3) * brightness, brightness > 1.0
        elif op == 1:
            means = _channel_means(hwc)  # of the frames as they are now; then through the pending map
            means = np.einsum("tij,tj->ti", pending[:, :, :3], means) + pending[:, :, 3]
            offset[:] = ((1.0 - contrast) * (means @ _GREY_VECTOR))[:, None]
            step, clamp, per_frame = np.eye(3) * contrast, contrast > 1.0, True
        elif op == 2:
            step, clamp = saturation * np.eye(3) + (1.0 - saturation) * _GREY_ROWS, saturation > 1.0
        elif hue != 0.0:
            step, clamp = _hue_matrix(hue).double().numpy(), True
        else:
            continue
        pending = np.concatenate([step @ pending[:, :, :3], (step @ pending[:, :, 3:]) + offset[:, :, None]], axis=-1)
        dirty = True
        if clamp:
            _apply_affine(hwc, pending, per_frame)
            pending, per_frame, dirty = np.tile(identity, (t, 1, 1)), False, False
    if dirty:
        _apply_affine(hwc, pending, per_frame)
    return frames


def _source_box(crop: tuple[int, int, int, int], params: AugmentationParams, in_h: int, in_w: int):
    """The crop box of the resized frame mapped to the input frame: (top, left, height, width)."""
    top, left, height, width = crop
    sy, sx = in_h / params.resize[0], in_w / params.resize[1]
    src_top, src_left = int(round(top * sy)), int(round(left * sx))
    src_h = max(1, min(in_h - src_top, int(round(height * sy))))
    src_w = max(1, min(in_w - src_left, int(round(width * sx))))
    return src_top, src_left, src_h, src_w


def _pack_planes(frames: torch.Tensor) -> torch.Tensor:
    """uint8 ``[T, C, H, W]`` (C != 3) -> channels-last ``[ceil(T*C/3), 3, H, W]`` holding its planes in order.

    Plane ``p = t * C + c`` goes to image ``p // 3``, channel ``p % 3`` (the last image is zero-padded):
    uint8 antialiased resizing has a fast kernel for 3-channel channels-last images only, and resizing
    treats every plane on its own, so packing changes nothing but the speed. OpenCV's ``merge``
    interleaves the planes (15x faster than a strided torch copy).
    """
    t, c, h, w = frames.shape
    planes = frames.contiguous().view(t * c, h, w)
    n = t * c
    full, rest = divmod(n, 3)
    packed = torch.empty((full + (rest > 0), 3, h, w), dtype=torch.uint8, memory_format=torch.channels_last)
    if _cv2 is None:
        if full:
            packed[:full].copy_(planes[: 3 * full].view(full, 3, h, w))
        if rest:
            packed[full, :rest].copy_(planes[3 * full:])
            packed[full, rest:].zero_()
        return packed
    planes_np, packed_np = planes.numpy(), packed.permute(0, 2, 3, 1).numpy()
    zero = np.zeros((h, w), np.uint8) if rest else None
    for i in range(len(packed_np)):
        sources = [planes_np[p] if p < n else zero for p in range(3 * i, 3 * i + 3)]
        written = _cv2.merge(sources, packed_np[i])
        if written.ctypes.data != packed_np[i].ctypes.data:  # OpenCV allocated a new array: copy it
            np.copyto(packed_np[i], written)
    return packed


def _split_planes(images: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
    """uint8 channels-last images ``[N, 3, h, w]`` -> their ``3N`` colour planes, contiguous ``[3N, h, w]``.

    OpenCV's ``split`` de-interleaves 10x faster than a strided torch copy (same bytes). ``out``: an optional
    contiguous uint8 ``[3N, h, w]`` to write the planes into (e.g. a batch slot); returned.
    """
    n, _, h, w = images.shape
    planes = torch.empty((3 * n, h, w), dtype=torch.uint8) if out is None else out
    hwc = images.permute(0, 2, 3, 1)
    if _cv2 is None or not hwc.is_contiguous():
        planes.view(n, 3, h, w).copy_(images)
        return planes
    hwc_np, planes_np = hwc.numpy(), planes.numpy()
    for i in range(n):
        targets = [planes_np[3 * i], planes_np[3 * i + 1], planes_np[3 * i + 2]]
        written = _cv2.split(hwc_np[i], targets)
        for target, result in zip(targets, written):
            if result.ctypes.data != target.ctypes.data:  # OpenCV allocated a new array: copy it
                np.copyto(target, result)
    return planes


def apply_to_frames(
    frames: torch.Tensor, params: AugmentationParams, kind: str = "rgb", out: torch.Tensor | None = None,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """Apply ``params`` to uint8 frames ``[T, C, H, W]``; returns ``[num_crops, T, C, h, w]``: float32 in
    [0, 1] (``dtype=torch.float32``) or the same values times 255 as uint8 (``dtype=torch.uint8``: a quarter
    of the bytes to move between processes and to the accelerator; the models divide by 255 themselves).

    ``kind="flow"``: no colour jitter, and a horizontal flip maps u (channel 0) to ``1 - u`` (``255 - u``).
    Each crop is cut from the source frames (its box scaled from ``params.resize`` to the input size, so
    flow stored at another resolution shares the RGB geometry) and resized once to the crop size
    (``resized_crop``, antialiased: cheaper than resizing the whole frame first; sub-pixel rounding only).

    Args:
        out: optional contiguous float32 or uint8 ``[num_crops, T, C, h, w]`` to write the result into (e.g. a
            slot of a batch buffer); returned. Its dtype wins over ``dtype``.

    Speed: all of it runs on uint8 channels-last images (the layout the decoder produces; other channel
    counts are packed three planes per image for the fast resize kernel): resize, flip, colour jitter
    (:func:`color_jitter_uint8`, one saturating pass per clamp), then the split into colour planes; float
    output is converted once at the end.
    """
    if frames.dtype != torch.uint8 or frames.ndim != 4:
        raise ValueError(f"expected uint8 [T, C, H, W] frames, got {frames.dtype} {tuple(frames.shape)}")
    t, channels, in_h, in_w = frames.shape
    if channels == 3:
        source = frames.contiguous(memory_format=torch.channels_last)  # no copy for decoded frames
    else:
        source = _pack_planes(frames)
    sizes = {(h, w) for _, _, h, w in params.crops}
    if len(sizes) != 1:
        raise ValueError(f"all crops must have one size, got {sorted(sizes)}")
    (out_h, out_w), = sizes
    shape = (len(params.crops), t, channels, out_h, out_w)
    if out is None:
        if dtype not in FRAMES_DTYPES.values():
            raise ValueError(f"dtype must be torch.float32 or torch.uint8, got {dtype}")
        out = torch.empty(shape, dtype=dtype)
    elif tuple(out.shape) != shape or out.dtype not in FRAMES_DTYPES.values() or not out.is_contiguous():
        raise ValueError(f"out must be a contiguous float32 or uint8 tensor of shape {shape}, got {out.dtype} "
                         f"{tuple(out.shape)}")
    jitter = params.jitter if kind == "rgb" and channels == 3 else None
    for index, crop in enumerate(params.crops):
        src_top, src_left, src_h, src_w = _source_box(crop, params, in_h, in_w)
        resized = VF.resized_crop(source, src_top, src_left, src_h, src_w, [out_h, out_w], antialias=True)
        if params.flip:
            resized = resized.flip(-1)
        if params.flip or jitter is not None:
            resized = resized.contiguous(memory_format=torch.channels_last)
        if jitter is not None and resized.untyped_storage().data_ptr() == source.untyped_storage().data_ptr():
            resized = resized.clone(memory_format=torch.channels_last)  # a no-op resize returned the input
        if jitter is not None:
            color_jitter_uint8(resized, jitter)
        clip = out[index]
        if out.dtype == torch.uint8 and channels == 3 and kind != "flow":  # the planes are the result: split into it
            _split_planes(resized, out=clip.view(t * channels, out_h, out_w))
            continue
        planes = _split_planes(resized)
        if kind == "flow" and params.flip:
            planes[: t * channels].view(t, channels, out_h, out_w)[:, 0].bitwise_not_()  # u -> 255 - u (in [0, 1]: 1 - u)
        clip.view(t * channels, out_h, out_w).copy_(planes[: t * channels])
        if out.dtype != torch.uint8:
            clip.div_(255.0)
    return out


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


# ----------------------------------------------------------------------------------------------- audio
_MEL_CACHE: dict[tuple, Any] = {}


def _mel(config: AudioConfig):
    import torchaudio

    key = (config.sample_rate, config.n_fft, config.win_length, config.hop_length, config.n_mels)
    if key not in _MEL_CACHE:
        _MEL_CACHE[key] = torchaudio.transforms.MelSpectrogram(
            sample_rate=config.sample_rate, n_fft=config.n_fft, win_length=config.win_length,
            hop_length=config.hop_length, n_mels=config.n_mels, center=True, pad_mode="reflect", power=2.0)
    return _MEL_CACHE[key]


def log_mel_windows(
    samples: np.ndarray,
    sample_rate: int,
    clip_start_s: float,
    centres_s: np.ndarray,
    config: AudioConfig,
    valid_range_s: tuple[float, float] | None = None,
) -> torch.Tensor:
    """Log-mel (dB) spectrogram windows centred on ``centres_s``; returns float ``[T, 1, F, W]``.

    Args:
        samples: mono waveform starting at ``clip_start_s`` seconds, at ``sample_rate``.
        centres_s: window centres in seconds (one per sampled frame).
        valid_range_s: zero the waveform outside this range (the action segment), or None.

    Audio that is missing (before 0 s, past the end of the file, outside ``valid_range_s``) is zeros,
    which gives -100 dB: a silent or short recording is zero-padded, not an error.
    """
    import torchaudio

    wave = torch.as_tensor(np.asarray(samples, np.float32))
    sr = config.sample_rate
    if sample_rate != sr and wave.numel() > 0:
        wave = torchaudio.functional.resample(wave, orig_freq=int(sample_rate), new_freq=sr)
    length = int(config.window_seconds * sr)
    centres = np.round((np.asarray(centres_s, np.float64) - clip_start_s) * sr).astype(np.int64)
    lefts = centres - length // 2
    # pad the waveform so every window lies inside it
    pad_left = int(max(0, -lefts.min())) if len(lefts) else 0
    pad_right = int(max(0, lefts.max() + length - wave.numel())) if len(lefts) else 0
    padded = TF.pad(wave, (pad_left, pad_right))
    if valid_range_s is not None:
        lo = int(round((valid_range_s[0] - clip_start_s) * sr)) + pad_left
        hi = int(round((valid_range_s[1] - clip_start_s) * sr)) + pad_left
        padded[: max(0, lo)] = 0.0
        padded[max(0, hi):] = 0.0
    idx = torch.from_numpy(lefts + pad_left)[:, None] + torch.arange(length)[None, :]
    windows = padded[idx]  # [T, L]
    spec = _mel(config)(windows).unsqueeze(1)  # power, [T, 1, n_mels, W]
    if config.output_size is not None:
        spec = resize_spectrogram(spec, tuple(config.output_size))
    return 10.0 * torch.log10(torch.clamp(spec, min=1e-10))  # AmplitudeToDB(power, top_db=None)


def resize_spectrogram(spec: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Resize power spectrograms ``[N, C, F, W]`` to ``size`` = (F', W'), one axis at a time.

    An axis that grows (or keeps its size) is resized with nearest neighbours, as the original code does
    for its 128 x 224 -> 224 x 224 spectrograms (nearest neighbours commute with the dB conversion, so
    resizing before it changes nothing there). An axis that shrinks is area-averaged in power, like a
    coarser mel filterbank: nearest neighbours would keep only some of the rows, and a tone whose energy
    lies in the dropped mel bins would vanish (128 mel bins -> 48 rows keeps 3 bins in 8).
    """
    for axis, target in ((2, int(size[0])), (3, int(size[1]))):
        current = spec.shape[axis]
        if current == target:
            continue
        shape = [target if a == axis else spec.shape[a] for a in (2, 3)]
        spec = TF.interpolate(spec, size=tuple(shape), mode="area" if target < current else "nearest")
    return spec


def mask_spectrogram(spec_db: torch.Tensor, rng: np.random.Generator, config: AudioConfig) -> torch.Tensor:
    """Train-time SpecAugment in dB space: per window, p = ``mask_probability`` each for a time and a
    frequency mask of width U[0, max). Masked bins take the item's mean dB value (not -100 dB)."""
    if config.time_mask <= 0 and config.freq_mask <= 0:
        return spec_db
    out = spec_db.clone()
    fill = float(spec_db.mean())
    f_size, w_size = out.shape[-2], out.shape[-1]
    for t in range(out.shape[0]):
        if config.time_mask > 0 and rng.random() < config.mask_probability:
            width = int(rng.integers(0, min(config.time_mask, w_size) + 1))
            start = int(rng.integers(0, w_size - width + 1))
            out[t, ..., start: start + width] = fill
        if config.freq_mask > 0 and rng.random() < config.mask_probability:
            width = int(rng.integers(0, min(config.freq_mask, f_size) + 1))
            start = int(rng.integers(0, f_size - width + 1))
            out[t, ..., start: start + width, :] = fill
    return out


# ------------------------------------------------------------------------------------------ the reader
class SampleReader:
    """Dataset-specific access to one metadata row (implemented by each builder module).

    Frame numbers are 1-based absolute numbers of the video.
    """

    #: default sampler for this dataset ("uniform" or "stride")
    default_sampler = "uniform"

    def sample_id(self, row: dict) -> str:
        raise NotImplementedError

    def segment(self, row: dict) -> tuple[int, int]:
        """(first frame number, number of frames) of the segment."""
        raise NotImplementedError

    def frame_size(self, row: dict) -> tuple[int, int]:
        """(H, W) of the video's frames (aspect reference when no pixels are decoded)."""
        raise NotImplementedError

    def read_rgb(self, row: dict, numbers: np.ndarray) -> torch.Tensor:
        raise SampleDecodeError(self.sample_id(row), None, "RGB is not available for this dataset")

    def read_flow(self, row: dict, numbers: np.ndarray) -> torch.Tensor:
        """uint8 [N, 2, H, W] (u, v) for the given RGB frame numbers."""
        raise SampleDecodeError(self.sample_id(row), None, "optical flow is not available for this dataset")

    def read_audio_windows(self, row: dict, numbers: np.ndarray, config: AudioConfig) -> torch.Tensor:
        raise SampleDecodeError(self.sample_id(row), None, "audio is not available for this dataset")

    def read_boxes(self, row: dict, numbers: np.ndarray, config: LayoutConfig) -> list[dict[str, np.ndarray]]:
        """Per frame: dict of unpadded ``boxes`` (fractions of the full frame), categories, scores, ..."""
        raise SampleDecodeError(self.sample_id(row), None, "boxes are not available for this dataset")

    def labels(self, row: dict) -> dict[str, int]:
        return {}

    def fps(self, row: dict) -> float:
        return float(row.get("fps") or 0.0)


def audio_windows_for_segment(
    path: str, fps: float, segment_first: int, segment_last: int, numbers: np.ndarray, config: AudioConfig
) -> torch.Tensor:
    """Read one segment's audio (with half a window of context) and build the windows for ``numbers``."""
    centres = frame_to_seconds(numbers, fps)
    seg_start = float(frame_to_seconds(segment_first, fps))
    seg_stop = float(frame_to_seconds(segment_last + 1, fps))
    half = config.window_seconds / 2.0 + 0.05
    read_from = max(0.0, min(seg_start, float(centres.min())) - half)
    read_to = max(seg_stop, float(centres.max())) + half
    clip = read_audio(path, read_from, read_to)
    valid = (seg_start, seg_stop) if config.pad_outside_segment else None
    return log_mel_windows(clip.samples, clip.sample_rate, clip.start_s, centres, config, valid)


# ----------------------------------------------------------------------------------------- the transform
class MultimodalTransform:
    """Callable for ``datasets.Dataset.with_transform``: metadata rows in, batch-contract tensors out.

    Args:
        reader: the dataset's :class:`SampleReader`.
        config: the :class:`PipelineConfig`.
        source: the untransformed dataset, used with ``skip_bad_samples`` to replace a bad sample by the
            next good row (rows must carry an ``index`` column).
    """

    def __init__(self, reader: SampleReader, config: PipelineConfig, source=None):
        self.reader = reader
        self.config = config
        self.source = source
        self.skipped: list[dict[str, str]] = []
        self._draws = 0
        self._pending_row_seeds: list[int] | None = None
        self._row_seed: int | None = None

    # ---- rng: deterministic in evaluation, fresh per access (and per worker/epoch) in training
    def reset_draw_counter(self) -> None:
        """Forget how many training items were drawn: the next draw of row ``i`` then depends only on the seed,
        ``i`` and torch's current seed (the pipeline's ``EpochSeededDataset`` calls this per item, after seeding
        torch from ``(seed, epoch, index)``, so a resumed run redraws the same augmentations)."""
        self._draws = 0

    def _rng(self, row: dict) -> np.random.Generator:
        index = int(row.get("index", 0) or 0)
        if not self.config.train:
            return np.random.default_rng([self.config.seed, index])
        self._draws += 1
        base = torch.initial_seed() if self._row_seed is None else self._row_seed
        return np.random.default_rng([self.config.seed, base % (2**63), index, self._draws])

    @contextlib.contextmanager
    def seeded_rows(self, seeds: Sequence[int]) -> Iterator[None]:
        """Within the block, the next call's rows are drawn with their own seeds: row ``i`` exactly as if it were
        fetched alone after ``torch.manual_seed(seeds[i])`` and :meth:`reset_draw_counter` (how the pipeline's
        ``EpochSeededDataset`` seeds single items), so a batch fetched at once (``Dataset.__getitems__``, whose
        frames go straight into one batch buffer) equals the same items fetched one by one."""
        self._pending_row_seeds = [int(s) for s in seeds]
        try:
            yield
        finally:
            self._pending_row_seeds = None

    def __call__(self, batch: dict[str, list]) -> dict[str, list]:
        _configure_worker_once()
        n = len(next(iter(batch.values())))
        seeds, self._pending_row_seeds = self._pending_row_seeds, None
        if seeds is not None and len(seeds) != n:
            raise ValueError(f"seeded_rows() was given {len(seeds)} seeds for a call with {n} rows")
        slots = self._batch_slots(n)
        items = []
        try:
            for i in range(n):
                if seeds is not None:
                    self._row_seed = seeds[i]
                    self.reset_draw_counter()
                items.append(self.process_row({k: v[i] for k, v in batch.items()}, slots[i]))
        finally:
            self._row_seed = None
        keys: list[str] = []
        for item in items:
            for k in item:
                if k not in keys:
                    keys.append(k)
        return {k: [item.get(k) for item in items] for k in keys}

    def _batch_slots(self, n: int) -> list[dict[str, torch.Tensor]]:
        """Per row, the slots of one batch buffer per frame modality that its pixels are written into.

        A ``DataLoader`` asks for a whole batch at once (``Dataset.__getitems__``): the items' frames then
        lie side by side in one buffer (in shared memory inside a worker) and :class:`MultimodalCollator`
        returns that buffer as the batch without copying it.
        """
        cfg = self.config
        channels = {"pixel_values": 3 if "rgb" in cfg.modalities else 0,
                    "flow_values": 2 if "flow" in cfg.modalities else 0}
        if n < 2 or not any(channels.values()):
            return [{} for _ in range(n)]
        views = (cfg.num_views,) if cfg.num_views > 1 else ()
        size = cfg.augmentation.crop_size
        buffers = {key: batch_buffer((n, *views, cfg.num_frames, c, size, size), cfg.torch_frames_dtype)
                   for key, c in channels.items() if c}
        return [{key: buffer[i] for key, buffer in buffers.items()} for i in range(n)]

    def process_row(self, row: dict, slots: dict[str, torch.Tensor] | None = None) -> dict[str, Any]:
        """One item; with ``skip_bad_samples`` a bad row is logged, counted and replaced.

        ``slots``: optional tensors (by output key) the item's frames are written into when their shape and
        dtype match.
        """
        try:
            return self._process(row, slots)
        except (SampleDecodeError, FileDecodeError) as exc:
            error = self._as_sample_error(row, exc)
            if not self.config.skip_bad_samples:
                raise error from None
            self._record_skip(error)
        if self.source is not None and "index" in row:
            size = len(self.source)
            for step in range(1, self.config.max_replacements + 1):
                candidate = self.source[(int(row["index"]) + step) % size]
                try:
                    return self._process(candidate, slots)
                except (SampleDecodeError, FileDecodeError) as exc:
                    self._record_skip(self._as_sample_error(candidate, exc))
            raise SampleDecodeError(self.reader.sample_id(row), None,
                                    f"it and the next {self.config.max_replacements} samples are bad")
        return {"segment_id": self.reader.sample_id(row), "skip_reason": self.skipped[-1]["reason"]}

    def _as_sample_error(self, row: dict, exc: Exception) -> SampleDecodeError:
        if isinstance(exc, SampleDecodeError):
            return exc
        return SampleDecodeError(self.reader.sample_id(row), exc.path, exc.reason)

    def _record_skip(self, error: SampleDecodeError) -> None:
        entry = {"sample_id": error.sample_id, "path": error.path or "", "reason": error.reason}
        self.skipped.append(entry)
        logger.warning("skipping bad sample %s", error)
        if self.config.skip_log_path:
            with open(self.config.skip_log_path, "a", encoding="utf-8") as fh:  # one short line: atomic append
                fh.write(json.dumps(entry) + "\n")

    def skip_report(self) -> dict[str, Any]:
        """Skipped samples seen by this process (and by workers, when ``skip_log_path`` is set)."""
        entries = list(self.skipped)
        if self.config.skip_log_path and os.path.exists(self.config.skip_log_path):
            with open(self.config.skip_log_path, encoding="utf-8") as fh:
                logged = [json.loads(line) for line in fh if line.strip()]
            entries = logged if len(logged) >= len(entries) else entries
        return {"count": len(entries), "samples": entries}

    # ---- the pipeline
    def _process(self, row: dict, slots: dict[str, torch.Tensor] | None = None) -> dict[str, Any]:
        cfg = self.config
        reader = self.reader
        sample_id = reader.sample_id(row)
        rng = self._rng(row)
        first, length = reader.segment(row)
        if length < 1:
            raise SampleDecodeError(sample_id, None, f"segment has {length} frames (expected >= 1)")
        rel = sample_indices(cfg.sampler, length, cfg.num_frames, cfg.train, rng,
                             num_clips=1 if cfg.train else cfg.num_clips, stride=cfg.stride)  # [K, T]
        numbers = rel + first  # absolute 1-based frame numbers
        k, t = numbers.shape
        flat = numbers.reshape(-1)
        out: dict[str, Any] = {"segment_id": sample_id}
        views = cfg.num_views > 1
        mods = cfg.modalities

        rgb = reader.read_rgb(row, flat) if "rgb" in mods else None
        flow = reader.read_flow(row, flat) if "flow" in mods else None
        if rgb is not None:
            frame_size = tuple(rgb.shape[-2:])
        elif flow is not None:
            frame_size = tuple(flow.shape[-2:])
        else:
            frame_size = tuple(reader.frame_size(row))
        params = sample_augmentation(rng, frame_size, cfg.augmentation, cfg.train)
        n_crops = len(params.crops)

        def arrange(per_clip: list[torch.Tensor]) -> torch.Tensor:
            # per_clip[k]: [C, T, ...] -> [K*C, T, ...] clip-major, or [T, ...] without views (no copy)
            stacked = per_clip[0] if len(per_clip) == 1 else torch.cat(per_clip, dim=0)
            return stacked if views else stacked[0]

        def frames_out(frames: torch.Tensor, kind: str, key: str) -> torch.Tensor:
            clips = frames.reshape(k, t, *frames.shape[1:])
            crop_h, crop_w = params.crops[0][2:]
            shape = (k * n_crops, t, frames.shape[1], crop_h, crop_w)
            slot = (slots or {}).get(key)
            dtype = cfg.torch_frames_dtype
            if (slot is None or tuple(slot.shape) != (shape if views else shape[1:]) or slot.dtype != dtype
                    or (not views and k * n_crops != 1)):
                return arrange([apply_to_frames(clips[i], params, kind, dtype=dtype) for i in range(k)])
            full = slot if views else slot.unsqueeze(0)  # [K*C, T, ...] clip-major
            for i in range(k):
                apply_to_frames(clips[i], params, kind, out=full[i * n_crops: (i + 1) * n_crops])
            return slot

        if rgb is not None:
            out["pixel_values"] = frames_out(rgb, "rgb", "pixel_values")
        if flow is not None:
            out["flow_values"] = frames_out(flow, "flow", "flow_values")
        if "audio" in mods:
            per_clip = []
            for i in range(k):
                spec = reader.read_audio_windows(row, numbers[i], cfg.audio)
                if cfg.train:
                    spec = mask_spectrogram(spec, rng, cfg.audio)
                per_clip.append(spec.unsqueeze(0).expand(n_crops, *spec.shape))
            out["audio_values"] = arrange(per_clip).contiguous()
        if "layout" in mods:
            frames = reader.read_boxes(row, flat, cfg.layout)
            per_clip = []
            for i in range(k):
                clip_frames = frames[i * t: (i + 1) * t]
                per_crop = [self._layout_for_crop(clip_frames, params, c) for c in range(n_crops)]
                per_clip.append(per_crop)
            for key in per_clip[0][0]:
                stacked = torch.stack([crop[key] for clip in per_clip for crop in clip])
                out[key] = stacked if views else stacked[0]
        labels = reader.labels(row)
        if labels:
            out["labels"] = labels
        return out

    def _layout_for_crop(self, frames: list[dict[str, np.ndarray]], params: AugmentationParams, crop: int):
        lcfg = self.config.layout
        moved = []
        for fr in frames:
            if lcfg.follow_crop and len(fr["scores"]):
                boxes, inside = transform_boxes(fr["boxes"], params, crop)
                fr = {key: (boxes if key == "boxes" else value)[inside] for key, value in fr.items()}
            moved.append(fr)
        return pad_layout(moved, lcfg.max_boxes)


def with_overrides(config: PipelineConfig, **changes) -> PipelineConfig:
    """``dataclasses.replace`` for the pipeline config (kept for callers that build variants)."""
    return replace(config, **changes)


class _StoragePool:
    """Recycles the storages of batch buffers in the main process, so a new batch touches no fresh pages.

    A 16 x 3 x 224 x 224 float batch of 4 is 38 MB: freshly ``mmap``-ed memory pays a page fault per 4 KiB
    (~16 ms for such a batch here, more than the copy itself). A storage is handed out again only when
    nothing else references it (its use count is 1, the pool's own reference): a batch the caller still
    holds is never overwritten. At most ``max_buffers`` storages, ``max_bytes`` in all, are kept; tensors
    under ``min_bytes`` are plain allocations.
    """

    def __init__(self, max_buffers: int = 6, max_bytes: int = 512 << 20, min_bytes: int = 1 << 20):
        self.max_buffers = max_buffers
        self.min_bytes = min_bytes
        self.max_bytes = max_bytes
        self._storages: list[torch.UntypedStorage] = []
        self._lock = threading.Lock()
        self._use_count = getattr(torch._C, "_storage_Use_Count", None)

    def tensor(self, shape: tuple[int, ...], dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """A contiguous tensor of ``shape`` (uninitialised) on a recycled or new storage."""
        nbytes = math.prod(shape) * torch.empty((), dtype=dtype).element_size()
        if nbytes < self.min_bytes or self._use_count is None:
            return torch.empty(shape, dtype=dtype)
        with self._lock:
            storage = None
            for candidate in self._storages:
                if candidate.nbytes() == nbytes and self._use_count(candidate._cdata) == 1:
                    storage = candidate
                    break
            if storage is None:
                storage = torch.UntypedStorage(nbytes)
                kept = sum(s.nbytes() for s in self._storages)
                if len(self._storages) < self.max_buffers and kept + nbytes <= self.max_bytes:
                    self._storages.append(storage)
            return torch.empty(0, dtype=dtype).set_(storage, 0, shape)


_BATCH_POOL = _StoragePool()


def batch_buffer(shape: tuple[int, ...], dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """An uninitialised contiguous tensor for a whole batch.

    Inside a ``DataLoader`` worker it lives in shared memory (as ``default_collate`` does), so sending the
    batch to the main process copies nothing; in the main process it comes from a pool of recycled
    storages (:class:`_StoragePool`).
    """
    if torch.utils.data.get_worker_info() is not None:
        numel = math.prod(shape)
        storage = torch.empty(0, dtype=dtype)._typed_storage()._new_shared(numel)
        return torch.empty(0, dtype=dtype).set_(storage._untyped_storage, 0, shape)
    return _BATCH_POOL.tensor(tuple(shape), dtype)


def keep_freed_memory(mmap_threshold: int = 32 << 20, trim_threshold: int = 256 << 20) -> bool:
    """Let glibc's malloc keep freed clip-sized blocks for reuse instead of returning them to the OS.

    Every item allocates several multi-MB tensors (a 16 x 3 x 224 x 224 float clip is 9.6 MB); with
    glibc's defaults such blocks are often ``mmap``-ed and unmapped again, and every reuse pays page
    faults (measured: a few ms per clip, 10-20 % of the item time). Raising ``M_MMAP_THRESHOLD`` (max 32 MiB)
    and ``M_TRIM_THRESHOLD`` keeps them in the heap. Affects the calling process only; a no-op returning
    False where glibc's ``mallopt`` is unavailable.
    """
    if not sys.platform.startswith("linux"):
        return False
    import ctypes

    try:
        libc = ctypes.CDLL("libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    m_trim_threshold, m_mmap_threshold = -1, -3
    return bool(mallopt(m_mmap_threshold, int(mmap_threshold)) and mallopt(m_trim_threshold, int(trim_threshold)))


_CONFIGURED_WORKER_PID: int | None = None


def _configure_worker_once() -> None:
    """Inside a ``DataLoader`` worker, apply :func:`dataloader_worker_init` once per process, so every loader
    (the Trainer's too, which takes no ``worker_init_fn`` from us) gets one compute thread per worker."""
    global _CONFIGURED_WORKER_PID
    if _CONFIGURED_WORKER_PID == os.getpid():
        return
    info = torch.utils.data.get_worker_info()
    if info is None:
        return
    dataloader_worker_init(info.id)
    _CONFIGURED_WORKER_PID = os.getpid()


def dataloader_worker_init(worker_id: int) -> None:
    """``DataLoader(worker_init_fn=dataloader_worker_init)``: one compute thread per worker process, and
    freed clip buffers kept for reuse (:func:`keep_freed_memory`).

    With ``num_workers`` workers on a machine with few cores, intra-op threads inside each worker
    (torch, OpenCV) oversubscribe the CPU; decoding and augmentation of one item are fast enough on
    one thread and the workers provide the parallelism.
    """
    del worker_id
    torch.set_num_threads(1)
    cv2 = sys.modules.get("cv2")
    if cv2 is not None:
        cv2.setNumThreads(1)
    keep_freed_memory()
