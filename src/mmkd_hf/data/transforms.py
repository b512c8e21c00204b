"""Per-item consistent multimodal transforms (the datasets of ``src/modelling/dataset_video.py``,
``dataset_audio.py``, ``dataset_layout.py`` and ``datasets.py`` in the authors' public code,
github.com/gorjanradevski/multimodal-distillation, with the augmentation shared by every modality).

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
  fps); optional train-time time/frequency masking is applied **in dB space** (the original
  ``src/modelling/dataset_audio.py`` masks the power spectrogram before the dB conversion, so masked bins
  become -100 dB); the masked bins take the item's mean dB value.

The pieces live beside this module: :mod:`.configs` (settings), :mod:`.augmentation`, :mod:`.audio`,
:mod:`.layout` and :mod:`.memory` (batch buffers, worker set-up).

A modality listed in ``TransformConfig.tolerate_missing`` (audio, layout) whose source is missing or unreadable
for a sample does not fail the sample: its tensors are zero-filled (audio) or all padding (layout), so shapes stay
fixed, ``modality_present[<modality>]`` is False, and the mark is counted in :meth:`MultimodalTransform.skip_report`.
Every item of such a transform carries ``modality_present`` (``{modality: bool}``, tolerated modalities only).

Outputs follow the batch contract of ``docs/design.md``. With ``num_clips * num_crops > 1`` (evaluation
multi-view) every modality gets a leading views dim ``V`` (clip-major: ``v = clip * num_crops + crop``);
layout tensors get it too (``[V, T, N, ...]``), audio is repeated over crops.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
from dataclasses import replace
from typing import Any, Iterator, Sequence

import numpy as np
import torch

from .augmentation import apply_to_frames, sample_augmentation
from .audio import mask_spectrogram
from .configs import AudioConfig, AugmentationParams, LayoutConfig, TransformConfig
from .detections import refused_box_count
from .device_augmentation import DEFERRED_KEY, defer_item
from .errors import FileDecodeError, SampleDecodeError
from .layout import pad_layout, transform_boxes
from .memory import batch_buffer, configure_worker_once
from .sampling import sample_indices

logger = logging.getLogger(__name__)

__all__ = ["SampleReader", "MultimodalTransform", "with_overrides"]


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



class MultimodalTransform:
    """Callable for ``datasets.Dataset.with_transform``: metadata rows in, batch-contract tensors out.

    Args:
        reader: the dataset's :class:`SampleReader`.
        config: the :class:`TransformConfig`.
        source: the untransformed dataset, used with ``skip_bad_samples`` to replace a bad sample by the
            next good row (rows must carry an ``index`` column).
    """

    def __init__(self, reader: SampleReader, config: TransformConfig, source=None):
        self.reader = reader
        self.config = config
        self.source = source
        self.skipped: list[dict[str, str]] = []
        self.marked: list[dict[str, str]] = []  # samples kept without a tolerated modality
        self._marked_once: set[tuple[str, str]] = set()
        self._draws = 0
        self._pending_row_seeds: list[int] | None = None
        self._row_seed: int | None = None
        #: training items leave the resize and colour jitter to the accelerator (see :mod:`.device_augmentation`):
        #: their ``augment_on_device`` entry holds the decoded frames' source boxes and the drawn parameters, and
        #: ``pixel_values`` / ``flow_values`` are made on the device by ``apply_device_augmentation``. Evaluation
        #: items (``config.train`` False) are unaffected.
        self.augment_on_device = False

    @property
    def defers_augmentation(self) -> bool:
        """Whether this transform's items defer their resize and colour jitter to the device."""
        return bool(self.augment_on_device and self.config.train
                    and any(m in self.config.modalities for m in ("rgb", "flow")))

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
        configure_worker_once()
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
        if n < 2 or not any(channels.values()) or self.defers_augmentation:
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
        self._log_entry(entry)

    def _record_missing(self, modality: str, sample_id: str, error: Exception) -> None:
        """Count a sample kept without ``modality`` (its source is missing or unreadable)."""
        entry = {"sample_id": sample_id, "modality": modality, "path": getattr(error, "path", None) or "",
                 "reason": getattr(error, "reason", str(error))}
        self.marked.append(entry)
        if (sample_id, modality) not in self._marked_once:
            self._marked_once.add((sample_id, modality))
            logger.warning("sample %r has no %s (%s); kept and marked absent", sample_id, modality, entry["reason"])
        self._log_entry(entry)

    def _log_entry(self, entry: dict[str, str]) -> None:
        if self.config.skip_log_path:
            with open(self.config.skip_log_path, "a", encoding="utf-8") as fh:  # one short line: atomic append
                fh.write(json.dumps(entry) + "\n")

    def skip_report(self) -> dict[str, Any]:
        """Skipped samples seen by this process (and by workers, when ``skip_log_path`` is set).

        ``count`` / ``samples``: samples replaced or dropped. ``missing_modalities``: per tolerated modality, the
        number of distinct samples kept without it (marked absent in ``modality_present``);
        ``missing_modality_samples``: those marks (one per access). ``refused_boxes``: boxes with a non-finite
        corner or score or far outside the frame, dropped in this process (see ``detections.check_boxes``)."""
        entries, marks = list(self.skipped), list(self.marked)
        if self.config.skip_log_path and os.path.exists(self.config.skip_log_path):
            with open(self.config.skip_log_path, encoding="utf-8") as fh:
                logged = [json.loads(line) for line in fh if line.strip()]
            logged_skips = [e for e in logged if "modality" not in e]
            logged_marks = [e for e in logged if "modality" in e]
            entries = logged_skips if len(logged_skips) >= len(entries) else entries
            marks = logged_marks if len(logged_marks) >= len(marks) else marks
        missing: dict[str, set[str]] = {}
        for mark in marks:
            missing.setdefault(mark["modality"], set()).add(mark["sample_id"])
        return {"count": len(entries), "samples": entries,
                "missing_modalities": {modality: len(ids) for modality, ids in sorted(missing.items())},
                "missing_modality_samples": marks,
                "refused_boxes": refused_box_count()}

    def _tolerates(self, modality: str, read_method: str) -> bool:
        """Whether a failure to read ``modality`` marks the sample instead of failing it: the modality is listed
        in ``tolerate_missing`` and the reader supports it at all (a dataset without audio is a configuration
        error, not a missing file)."""
        return (modality in self.config.tolerate_missing
                and getattr(type(self.reader), read_method) is not getattr(SampleReader, read_method))

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

        if self.defers_augmentation and (rgb is not None or flow is not None):
            # decode + cut only: the batch is resized and jittered on the device (same parameters, same pixels)
            frames = {key: (values, kind) for key, values, kind in (("pixel_values", rgb, "rgb"),
                                                                   ("flow_values", flow, "flow")) if values is not None}
            out[DEFERRED_KEY] = defer_item(frames, params, float_output=cfg.frames_dtype == "float32")
        else:
            if rgb is not None:
                out["pixel_values"] = frames_out(rgb, "rgb", "pixel_values")
            if flow is not None:
                out["flow_values"] = frames_out(flow, "flow", "flow_values")
        present = {m: True for m in cfg.tolerate_missing if m in mods}
        if "audio" in mods:
            per_clip = []
            try:
                for i in range(k):
                    spec = reader.read_audio_windows(row, numbers[i], cfg.audio)
                    if cfg.train:
                        spec = mask_spectrogram(spec, rng, cfg.audio)
                    per_clip.append(spec.unsqueeze(0).expand(n_crops, *spec.shape))
            except (SampleDecodeError, FileDecodeError) as exc:
                if not self._tolerates("audio", "read_audio_windows"):
                    raise
                self._record_missing("audio", sample_id, exc)
                present["audio"] = False
                per_clip = [torch.zeros(n_crops, t, 1, *_spectrogram_size(cfg.audio)) for _ in range(k)]
            out["audio_values"] = arrange(per_clip).contiguous()
        if "layout" in mods:
            try:
                frames = reader.read_boxes(row, flat, cfg.layout)
            except (SampleDecodeError, FileDecodeError) as exc:
                if not self._tolerates("layout", "read_boxes"):
                    raise
                self._record_missing("layout", sample_id, exc)
                present["layout"] = False
                frames = [_no_boxes() for _ in range(len(flat))]
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
        if present:
            out["modality_present"] = present
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


def _spectrogram_size(config: AudioConfig) -> tuple[int, int]:
    """(F, W) of one log-mel window (:func:`~mmkd_hf.data.audio.log_mel_windows`): ``output_size``, or the mel bins
    and ``1 + window // hop`` frames of a centred STFT."""
    if config.output_size is not None:
        return int(config.output_size[0]), int(config.output_size[1])
    return int(config.n_mels), 1 + int(config.window_seconds * config.sample_rate) // int(config.hop_length)


def _no_boxes() -> dict[str, np.ndarray]:
    """One frame without boxes (what a frame without detections gives)."""
    return {"boxes": np.zeros((0, 4), np.float32), "categories": np.zeros(0, np.int64),
            "scores": np.zeros(0, np.float32), "sides": np.zeros(0, np.int64), "states": np.zeros(0, np.int64)}


def with_overrides(config: TransformConfig, **changes) -> TransformConfig:
    """``dataclasses.replace`` for the pipeline config (kept for callers that build variants)."""
    return replace(config, **changes)

