"""Training augmentation on the accelerator: the loader decodes and cuts each item's source box, the batch is resized
and colour-jittered on the device (``train.py --augment_on_device``).

With :attr:`MultimodalTransform.augment_on_device <mmkd_hf.data.transforms.MultimodalTransform>` set, a training item
carries no ``pixel_values`` / ``flow_values``; its ``augment_on_device`` entry holds the uncut decoded frames' source
box (a view: the region :func:`~mmkd_hf.data.augmentation.apply_to_frames` would resize) and the item's drawn
parameters (flip, colour-jitter steps). :class:`~mmkd_hf.data.collate.MultimodalCollator` pads the boxes of a batch
into one uint8 tensor (:func:`collate_deferred`), and :func:`apply_device_augmentation`, called by the trainers on the
batch once it is on the device, writes ``pixel_values`` / ``flow_values`` exactly as the loader-side path would.

Same result as the loader-side path, by construction rather than approximately: both steps are integer emulations of
the CPU kernels that path uses, written with torch ops that run on any device.

* Resize: antialiased bilinear of uint8 images as ``torch.nn.functional.interpolate(..., antialias=True)`` computes it
  on the CPU (Pillow's algorithm, ``aten/src/ATen/native/cpu/UpSampleKernel.cpp``): triangle-filter weights per output
  pixel, quantised to int16 with the largest precision that fits, a horizontal then a vertical pass in integers, each
  rounded and saturated to uint8. Here each pass is a sum over filter taps of gathered columns (rows), per item with its
  own box size, so one batch holds boxes of different sizes. A flip reverses the horizontal taps.
* Colour jitter: the composed affine maps of :func:`~mmkd_hf.data.augmentation.color_jitter_uint8`, with contrast's
  frame means taken on the device, applied as ``cv2.transform`` applies them to uint8 pixels
  (``modules/core/src/matmul.simd.hpp``): a diagonal map in float32 rounded half to even, any other in 10-bit fixed
  point.

The float64 matrix products may differ from NumPy's in the last bit, so a pixel can rarely differ by one unit; the test
suite checks at most 1/255 against the loader-side path over many random draws (in practice almost all pixels are
equal).
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import numpy as np
import torch

from .augmentation import _GREY_VECTOR, cut_source_box, jitter_plan
from .configs import AugmentationParams
from .memory import batch_buffer

__all__ = ["DEFERRED_KEY", "FRAME_KEYS", "defer_item", "collate_deferred", "apply_device_augmentation",
           "augmentation_on_device", "deferred_shapes", "resize_boxes_uint8", "color_jitter_batch"]

#: the batch key of deferred augmentation (items and batches)
DEFERRED_KEY = "augment_on_device"
#: the frame keys whose resize (and, for RGB, colour jitter) can be deferred
FRAME_KEYS = ("pixel_values", "flow_values")
_FLT_EPSILON = float(np.finfo(np.float32).eps)
_BITS = 10  # cv2.transform's fixed point for uint8 3-channel images


# ---------------------------------------------------------------------------------------------------------- loader side
def defer_item(frames: Mapping[str, tuple[torch.Tensor, str]], params: AugmentationParams, float_output: bool
               ) -> dict[str, Any]:
    """One training item's ``augment_on_device`` entry: per frame key, the source box of ``frames[key] = (uint8
    [T, C, H, W], kind)`` (a view) and, for the batch, the crop size, the flip, the colour-jitter steps of ``params``
    (RGB only) and whether the output is float32 in [0, 1] (else uint8)."""
    if len(params.crops) != 1:
        raise ValueError(f"augmentation on the device takes one crop per item (training), got {len(params.crops)}")
    _, _, crop_h, crop_w = params.crops[0]
    steps = np.tile(np.eye(3), (4, 1, 1))
    active = np.zeros(4, bool)
    clamp = np.zeros(4, bool)
    contrast = np.full(4, np.nan)  # the factor at the contrast step, NaN elsewhere
    if params.jitter is not None:
        for position, (op, step, needs_clamp) in enumerate(jitter_plan(params.jitter)):
            steps[position], active[position], clamp[position] = step, True, needs_clamp
            if op == 1:
                contrast[position] = params.jitter[2]
    entry: dict[str, Any] = {"size": (int(crop_h), int(crop_w)), "float_output": bool(float_output),
                             "flip": bool(params.flip), "jitter_steps": torch.from_numpy(steps),
                             "jitter_active": torch.from_numpy(active), "jitter_clamp": torch.from_numpy(clamp),
                             "jitter_contrast": torch.from_numpy(contrast)}
    for key, (values, kind) in frames.items():
        if key not in FRAME_KEYS or values.dtype != torch.uint8 or values.ndim != 4:
            raise ValueError(f"{key}: expected uint8 [T, C, H, W] frames to defer, got {values.dtype} "
                             f"{tuple(values.shape)}")
        entry[key] = cut_source_box(values, params)
        entry[f"{key}_kind"] = kind
    return entry


def collate_deferred(entries: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """The batch's ``augment_on_device`` entry from its items': each frame key's boxes padded (zeros) into one uint8
    ``[B, T, C, H_max, W_max]`` tensor (channels-last storage when the decoder's frames are, so every row is one copy),
    their sizes in ``<key>_box`` (int64 ``[B, 2]``), the flips and jitter steps stacked; ``size``, ``float_output``
    ``jitter_any`` and ``<key>_kind`` stay plain Python values (needed on the host, without a device sync)."""
    first = entries[0]
    batch: dict[str, Any] = {"size": tuple(first["size"]), "float_output": bool(first["float_output"]),
                             "flip": torch.tensor([bool(e["flip"]) for e in entries])}
    for name in ("jitter_steps", "jitter_active", "jitter_clamp", "jitter_contrast"):
        batch[name] = torch.stack([e[name] for e in entries])
    batch["jitter_any"] = bool(batch["jitter_active"].any())  # on the host: no device sync to skip the jitter
    for entry in entries[1:]:
        if tuple(entry["size"]) != batch["size"] or bool(entry["float_output"]) != batch["float_output"]:
            raise ValueError(f"augment_on_device: the items of one batch must share the crop size and output type, "
                             f"got {batch['size']} and {tuple(entry['size'])}")
    for key in FRAME_KEYS:
        if key not in first:
            continue
        boxes = [e[key] for e in entries]
        t, c = boxes[0].shape[:2]
        if any(tuple(b.shape[:2]) != (t, c) for b in boxes):
            raise ValueError(f"augment_on_device: {key} items differ in frames or channels: "
                             f"{[tuple(b.shape) for b in boxes]}")
        height = max(int(b.shape[2]) for b in boxes)
        width = max(int(b.shape[3]) for b in boxes)
        channels_last = c > 1 and boxes[0].stride(1) == 1
        n = len(boxes)
        if channels_last:
            storage = batch_buffer((n, t, height, width, c), torch.uint8)
            frames = storage.permute(0, 1, 4, 2, 3)
        else:
            frames = batch_buffer((n, t, c, height, width), torch.uint8)
        for i, box in enumerate(boxes):
            h, w = box.shape[2:]
            frames[i, :, :, :h, :w].copy_(box)
            frames[i, :, :, h:, :].zero_()
            frames[i, :, :, :h, w:].zero_()
        batch[key] = frames
        batch[f"{key}_box"] = torch.tensor([tuple(b.shape[2:]) for b in boxes], dtype=torch.int64)
        batch[f"{key}_kind"] = str(first[f"{key}_kind"])
    return batch


# ---------------------------------------------------------------------------------------------------------- device side
def _antialias_taps(in_sizes: torch.Tensor, out_size: int, max_in: int, flip: torch.Tensor | None = None):
    """Per item ``b`` with ``in_sizes[b]`` input pixels: the source index and int weight of each of ``K`` taps per
    output pixel (``[B, out, K]`` each, zero weight past the filter) and the weights' precision in bits ``[B]``.

    Pillow's antialiased bilinear filter as torch's uint8 CPU kernel computes it (float64 weights normalised per
    output pixel, then ``trunc(0.5 + w * 2**p)`` with the largest ``p < 22`` for which the biggest weight stays
    below 2**15). ``flip``: reverse the output order of the flagged items (a horizontal flip after the resize)."""
    device = in_sizes.device
    n = in_sizes.to(torch.float64)[:, None]  # [B, 1]
    scale = n / out_size
    support = scale.clamp(min=1.0)
    inverse = 1.0 / support
    taps = int(math.ceil(2.0 * max(max_in / out_size, 1.0))) + 2
    centre = (torch.arange(out_size, dtype=torch.float64, device=device)[None] + 0.5) * scale  # [B, out]
    first = torch.trunc(centre - support + 0.5).clamp(min=0.0)
    count = torch.minimum(torch.trunc(centre + support + 0.5), n) - first
    weights, total = [], torch.zeros_like(centre)
    for k in range(taps):
        x = ((first + k) - centre + 0.5) * inverse
        w = torch.where((k < count) & (x.abs() < 1.0), 1.0 - x.abs(), torch.zeros_like(x))
        weights.append(w)
        total = total + w  # in tap order, as the C loop sums them
    weights = torch.stack(weights, dim=-1)  # [B, out, K]
    weights = torch.where(total[..., None] != 0, weights / total[..., None], weights)
    biggest = weights.flatten(1).amax(dim=1)  # [B]
    bits = torch.arange(22, dtype=torch.float64, device=device)
    fits = torch.trunc(0.5 + biggest[:, None] * torch.pow(2.0, bits + 1)) >= 2 ** 15
    precision = torch.where(fits.any(dim=1), fits.to(torch.int64).argmax(dim=1), torch.full_like(biggest, 22,
                                                                                                   dtype=torch.int64))
    scaled = weights * torch.pow(2.0, precision.to(torch.float64))[:, None, None]
    int_weights = torch.where(scaled < 0, torch.trunc(scaled - 0.5), torch.trunc(scaled + 0.5)).to(torch.int32)
    index = (first[..., None] + torch.arange(taps, dtype=torch.float64, device=device)).to(torch.int64)
    index = torch.where(int_weights != 0, index, torch.zeros_like(index)).clamp(max=max_in - 1)
    if flip is not None:
        flipped = flip.to(device)[:, None, None]
        index = torch.where(flipped, index.flip(1), index)
        int_weights = torch.where(flipped, int_weights.flip(1), int_weights)
    return index, int_weights, precision.to(torch.int32)


def _filter_pass(values: torch.Tensor, dim: int, index: torch.Tensor, weights: torch.Tensor,
                 precision: torch.Tensor) -> torch.Tensor:
    """One separable pass over ``dim`` (2 = rows, 3 = columns) of int32 ``[B, N, H, W]``: sum of taps, rounded
    right shift by the item's precision, saturated to [0, 255] (still int32)."""
    b, n, h, w = values.shape
    out_len = index.shape[1]
    shape = (b, n, out_len, w) if dim == 2 else (b, n, h, out_len)
    acc = torch.zeros(shape, dtype=torch.int32, device=values.device)
    for k in range(index.shape[2]):
        if dim == 2:
            idx = index[:, None, :, k, None].expand(b, n, out_len, w)
            wk = weights[:, None, :, k, None]
        else:
            idx = index[:, None, None, :, k].expand(b, n, h, out_len)
            wk = weights[:, None, None, :, k]
        acc += torch.gather(values, dim, idx) * wk
    shift = precision.view(b, 1, 1, 1)
    acc += torch.bitwise_left_shift(torch.ones_like(shift), shift - 1)
    return torch.bitwise_right_shift(acc, shift).clamp_(0, 255)


def resize_boxes_uint8(frames: torch.Tensor, boxes: torch.Tensor, size: tuple[int, int],
                       flip: torch.Tensor | None = None) -> torch.Tensor:
    """Antialiased bilinear resize of each item's box ``frames[b, :, :, :h_b, :w_b]`` (uint8 ``[B, T, C, H, W]``,
    ``boxes`` int64 ``[B, 2]``) to ``size``, then the flagged items flipped horizontally: uint8 ``[B, T, C, *size]``,
    equal to torchvision's ``resize(..., antialias=True)`` of each uint8 box on the CPU."""
    if frames.dtype != torch.uint8 or frames.ndim != 5:
        raise ValueError(f"expected uint8 [B, T, C, H, W] frames, got {frames.dtype} {tuple(frames.shape)}")
    b, t, c, height, width = frames.shape
    out_h, out_w = int(size[0]), int(size[1])
    boxes = boxes.to(frames.device)
    values = frames.to(torch.int32, memory_format=torch.contiguous_format).view(b, t * c, height, width)
    index, weights, precision = _antialias_taps(boxes[:, 1], out_w, width, flip)
    values = _filter_pass(values, 3, index, weights, precision)  # horizontal first, as the CPU kernel
    index, weights, precision = _antialias_taps(boxes[:, 0], out_h, height)
    values = _filter_pass(values, 2, index, weights, precision)
    return values.to(torch.uint8).view(b, t, c, out_h, out_w)


def _affine_uint8(frames: torch.Tensor, matrices: torch.Tensor) -> torch.Tensor:
    """``cv2.transform`` of uint8 RGB ``[B, T, 3, H, W]`` by per-frame ``[B, T, 3, 4]`` maps: the matrix in float32;
    a diagonal one applied in float32 and rounded half to even, any other in 10-bit fixed point
    (``(sum(round(m * 1024) * x) + round(o * 1024) + 512) >> 10``), saturated to [0, 255]."""
    m = matrices.to(torch.float32)
    linear, offset = m[..., :3], m[..., 3]
    off_diagonal = linear * (1 - torch.eye(3, dtype=m.dtype, device=m.device))
    diagonal = (off_diagonal.abs() <= _FLT_EPSILON).flatten(-2).all(dim=-1)  # [B, T]
    x = frames.to(torch.float32)
    scale = torch.diagonal(linear, dim1=-2, dim2=-1)[..., None, None]  # [B, T, 3, 1, 1]
    float_path = torch.round(x * scale + offset[..., None, None]).clamp_(0, 255)
    fixed_linear = torch.round(linear * float(1 << _BITS)).to(torch.int32)
    fixed_offset = torch.round(offset * float(1 << _BITS)).to(torch.int32) + (1 << (_BITS - 1))
    xi = frames.to(torch.int32)
    channels = []
    for row in range(3):
        acc = fixed_offset[..., row, None, None] + xi[:, :, 0] * fixed_linear[..., row, 0, None, None]
        acc = acc + xi[:, :, 1] * fixed_linear[..., row, 1, None, None]
        acc = acc + xi[:, :, 2] * fixed_linear[..., row, 2, None, None]
        channels.append(torch.bitwise_right_shift(acc, _BITS))
    fixed_path = torch.stack(channels, dim=2).clamp_(0, 255).to(torch.float32)
    return torch.where(diagonal[..., None, None, None], float_path, fixed_path).to(torch.uint8)


def color_jitter_batch(frames: torch.Tensor, steps: torch.Tensor, active: torch.Tensor, clamp: torch.Tensor,
                       contrast: torch.Tensor) -> torch.Tensor:
    """:func:`~mmkd_hf.data.augmentation.color_jitter_uint8` of every item of uint8 RGB ``[B, T, 3, H, W]`` at once,
    from the items' plans (``steps`` float64 ``[B, 4, 3, 3]``, ``active`` / ``clamp`` bool ``[B, 4]``, ``contrast``
    float64 ``[B, 4]``: the factor where the step is contrast, else NaN). Items without jitter pass unchanged."""
    b, t = frames.shape[:2]
    device = frames.device
    steps, active, clamp, contrast = (v.to(device) for v in (steps, active, clamp, contrast))
    is_contrast = ~torch.isnan(contrast)
    identity = torch.eye(3, 4, dtype=torch.float64, device=device).expand(b, t, 3, 4)
    pending = identity.clone()
    dirty = torch.zeros(b, dtype=torch.bool, device=device)
    grey = torch.tensor(_GREY_VECTOR, dtype=torch.float64, device=device)
    pixels = frames.shape[-1] * frames.shape[-2]
    for position in range(steps.shape[1]):
        on = active[:, position]
        offset = torch.zeros(b, t, 3, dtype=torch.float64, device=device)
        # contrast blends with each frame's mean grey of the values so far (no host sync: computed for every item)
        means = frames.sum(dim=(-2, -1), dtype=torch.int64).to(torch.float64) * (1.0 / pixels)  # as cv2.mean
        means = (pending[..., :3] @ means[..., None])[..., 0] + pending[..., 3]
        contrast_offset = (1.0 - contrast[:, position, None]) * (means @ grey)  # [B, T]
        offset = torch.where(is_contrast[:, position, None, None], contrast_offset[..., None], offset)
        step = steps[:, position, None]  # [B, 1, 3, 3]
        composed = torch.cat([step @ pending[..., :3], (step @ pending[..., 3:]) + offset[..., None]], dim=-1)
        pending = torch.where(on[:, None, None, None], composed, pending)
        dirty = dirty | on
        apply = on & clamp[:, position]
        frames = torch.where(apply[:, None, None, None, None], _affine_uint8(frames, pending), frames)
        pending = torch.where(apply[:, None, None, None], identity, pending)
        dirty = dirty & ~apply
    return torch.where(dirty[:, None, None, None, None], _affine_uint8(frames, pending), frames)


def deferred_shapes(batch: Mapping[str, Any]) -> dict[str, tuple[int, ...]]:
    """The shapes :func:`apply_device_augmentation` will give the frame keys of ``batch`` (none without deferred
    augmentation)."""
    deferred = batch.get(DEFERRED_KEY) if isinstance(batch, Mapping) else None
    if not deferred:
        return {}
    return {key: (*deferred[key].shape[:3], *deferred["size"]) for key in FRAME_KEYS if key in deferred}


def apply_device_augmentation(batch: Mapping[str, Any]) -> Mapping[str, Any]:
    """Finish the augmentation of a batch whose items deferred it, on the device its tensors are on: resize each box to
    the crop size, flip, colour-jitter RGB, negate a flipped flow's u (``255 - u``), then uint8 or float32 / 255 as the
    loader would have delivered. Returns a new dict with ``pixel_values`` / ``flow_values`` and without
    ``augment_on_device``; a batch without that key is returned as it is."""
    deferred = batch.get(DEFERRED_KEY) if isinstance(batch, Mapping) else None
    if deferred is None:
        return batch
    out = {key: value for key, value in batch.items() if key != DEFERRED_KEY}
    flip = deferred["flip"]
    for key in FRAME_KEYS:
        if key not in deferred:
            continue
        frames = resize_boxes_uint8(deferred[key], deferred[f"{key}_box"], deferred["size"], flip)
        kind = deferred.get(f"{key}_kind")
        if kind == "rgb" and frames.shape[2] == 3 and deferred.get("jitter_any", True):
            frames = color_jitter_batch(frames, deferred["jitter_steps"], deferred["jitter_active"],
                                        deferred["jitter_clamp"], deferred["jitter_contrast"])
        elif kind == "flow":
            flipped = flip.to(frames.device)[:, None, None, None]
            u = frames[:, :, 0]
            frames[:, :, 0] = torch.where(flipped, 255 - u, u)
        frames = frames.contiguous()
        if deferred["float_output"]:
            frames = frames.to(torch.float32).div_(255.0)
        out[key] = frames
    return out


@contextlib.contextmanager
def augmentation_on_device(transforms: Sequence[Any], enabled: bool = True) -> Iterator[None]:
    """Within the block, the given :class:`~mmkd_hf.data.transforms.MultimodalTransform`\\ s defer their training
    resize and colour jitter to the device (``augment_on_device``); their setting is restored afterwards. DataLoader
    workers started inside the block keep the setting for their lifetime."""
    before = [getattr(t, "augment_on_device", False) for t in transforms]
    try:
        for transform in transforms:
            transform.augment_on_device = bool(enabled)
        yield
    finally:
        for transform, value in zip(transforms, before):
            transform.augment_on_device = value
