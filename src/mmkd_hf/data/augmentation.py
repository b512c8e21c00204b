"""Per-item augmentation of uint8 frames: parameters drawn once per item, applied to RGB and flow alike.

Train defaults follow the authors' public code (``src/utils/data_utils.py`` of
github.com/gorjanradevski/multimodal-distillation): short side resized to ``crop * U(1.15, 1.43)``, random crop,
colour jitter (brightness/contrast/saturation 0.75-1.25, hue +-0.1 in a random order), flip off (SSv2 has
left/right classes). Evaluation: short side resized to the crop size, centre crop, or 3 crops along the long side.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torchvision.transforms.v2 import functional as VF

try:
    import cv2 as _cv2
except ImportError:  # pragma: no cover - OpenCV is a dependency; torch copies are the fallback
    _cv2 = None

from .configs import FRAMES_DTYPES, AugmentationConfig, AugmentationParams

__all__ = ["sample_augmentation", "color_jitter_uint8", "jitter_plan", "apply_to_frames", "cut_source_box"]


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


def jitter_plan(jitter) -> list[tuple[int, np.ndarray, bool]]:
    """The colour jitter's steps in the drawn order: ``(op, 3x3 float64 RGB matrix, clamp after it)`` with op 0
    brightness, 1 contrast, 2 saturation, 3 hue (a zero hue is no step). Contrast's offset, ``(1 - factor)`` times
    the frame's mean grey, depends on the frames and is added by the caller (:func:`color_jitter_uint8` here,
    :mod:`.device_augmentation` on the accelerator)."""
    order, brightness, contrast, saturation, hue = jitter
    plan = []
    for op in order:
        if op == 0:
            step, clamp = np.eye(3) * brightness, brightness > 1.0
        elif op == 1:
            step, clamp = np.eye(3) * contrast, contrast > 1.0
        elif op == 2:
            step, clamp = saturation * np.eye(3) + (1.0 - saturation) * _GREY_ROWS, saturation > 1.0
        elif hue != 0.0:
            step, clamp = _hue_matrix(hue).double().numpy(), True
        else:
            continue
        plan.append((int(op), step, bool(clamp)))
    return plan


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
    contrast = jitter[2]
    t = frames.shape[0]
    identity = np.eye(3, 4)
    pending, per_frame, dirty = np.tile(identity, (t, 1, 1)), False, False
    for op, step, clamp in jitter_plan(jitter):
        offset = np.zeros((t, 3))
        if op == 1:
            means = _channel_means(hwc)  # of the frames as they are now; then through the pending map
            means = np.einsum("tij,tj->ti", pending[:, :, :3], means) + pending[:, :, 3]
            offset[:] = ((1.0 - contrast) * (means @ _GREY_VECTOR))[:, None]
            per_frame = True
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


def cut_source_box(frames: torch.Tensor, params: AugmentationParams, crop_index: int = 0) -> torch.Tensor:
    """The source box of crop ``crop_index`` in frames ``[T, C, H, W]``, as a view (no copy): the region that
    :func:`apply_to_frames` resizes to the crop size (flow stored at another resolution gets its own box)."""
    _, _, in_h, in_w = frames.shape
    top, left, height, width = _source_box(params.crops[crop_index], params, in_h, in_w)
    return frames[:, :, top:top + height, left:left + width]


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

