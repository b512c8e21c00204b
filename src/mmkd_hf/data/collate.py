"""Collator for items of :class:`~mmkd_hf.data.transforms.MultimodalTransform` (batch contract keys)."""

from __future__ import annotations

import logging
from typing import Any, Iterable, Sequence

import torch

from .device_augmentation import DEFERRED_KEY, FRAME_KEYS, collate_deferred
from .memory import batch_buffer

logger = logging.getLogger(__name__)

__all__ = ["MultimodalCollator", "PRESENCE_KEY", "TENSOR_KEYS"]

TENSOR_KEYS = (
    "pixel_values",
    "flow_values",
    "audio_values",
    "layout_boxes",
    "layout_categories",
    "layout_scores",
    "layout_sides",
    "layout_states",
    "layout_mask",
)
_DICT_KEYS = ("labels", "teacher_logits")
#: ``{modality: bool}`` per item -> ``{modality: BoolTensor[B]}``; False = the sample lacks that modality (its inputs
#: are zero-filled). Items without the key, or without a modality in it, count as present.
PRESENCE_KEY = "modality_present"


class MultimodalCollator:
    """Stack any subset of the batch-contract keys.

    Args:
        keys: keys to keep (tensor keys, ``labels``, ``teacher_logits``); None keeps every key present.
            ``segment_id`` is always kept as a list of str.

    Items that are ``None`` or carry a ``skip_reason`` (bad samples with ``skip_bad_samples=True``) are
    dropped and logged. Shapes that differ between items raise a ``ValueError`` naming both samples.
    ``modality_present`` (``{modality: bool}`` per item) becomes ``{modality: BoolTensor[B]}``; an item without it
    counts as having every modality. ``augment_on_device`` (items that defer their resize and colour jitter) becomes
    the batch's padded source boxes and parameters (:func:`~mmkd_hf.data.device_augmentation.collate_deferred`).
    """

    def __init__(self, keys: Iterable[str] | None = None):
        self.keys = None if keys is None else tuple(keys)
        self.dropped = 0

    def __call__(self, items: Sequence[dict[str, Any] | None]) -> dict[str, Any]:
        good = []
        for item in items:
            if item is None or item.get("skip_reason"):
                self.dropped += 1
                if item is not None:
                    logger.warning("dropping bad sample %s: %s", item.get("segment_id"), item.get("skip_reason"))
                continue
            good.append(item)
        if not good:
            raise ValueError(f"every sample of this batch was bad ({len(items)} dropped); see the skip report")
        ids = [str(item.get("segment_id", f"<item {i}>")) for i, item in enumerate(good)]
        present = [k for k in good[0] if k not in ("segment_id", "skip_reason", PRESENCE_KEY)]
        wanted = [k for k in present if self.keys is None or k in self.keys
                  or (k == DEFERRED_KEY and any(f in self.keys for f in FRAME_KEYS))]  # holds the frames to come
        batch: dict[str, Any] = {}
        if any(item.get(PRESENCE_KEY) for item in good) and (self.keys is None or PRESENCE_KEY in self.keys):
            batch[PRESENCE_KEY] = _stack_presence([item.get(PRESENCE_KEY) or {} for item in good])
        for key in wanted:
            missing = [ids[i] for i, item in enumerate(good) if key not in item or item[key] is None]
            if missing:
                raise ValueError(f"key {key!r} is present in sample {ids[0]!r} but missing in {missing[:5]}")
            if key == DEFERRED_KEY:  # training items that left resize + colour jitter to the device
                batch[key] = collate_deferred([item[key] for item in good])
            elif key in _DICT_KEYS:
                batch[key] = self._stack_dict(key, [item[key] for item in good], ids)
            else:
                batch[key] = self._stack(key, [item[key] for item in good], ids)
        batch["segment_id"] = ids
        return batch

    @staticmethod
    def _stack(key: str, values: list, ids: list[str]) -> torch.Tensor:
        tensors = [v if isinstance(v, torch.Tensor) else torch.as_tensor(v) for v in values]
        reference = tensors[0].shape
        for tensor, sample in zip(tensors, ids):
            if tensor.shape != reference:
                raise ValueError(f"{key}: sample {sample!r} has shape {tuple(tensor.shape)}, expected "
                                 f"{tuple(reference)} (as sample {ids[0]!r})")
        adjacent = _adjacent_view(tensors)
        if adjacent is not None:
            return adjacent  # the items were written side by side into one batch buffer: no copy
        # Inside a DataLoader worker: straight into shared memory, so the batch is not copied a second
        # time when it is sent to the main process; in the main process a big batch reuses a freed buffer.
        out = batch_buffer((len(tensors), *reference), tensors[0].dtype)
        return torch.stack(tensors, out=out)

    @staticmethod
    def _stack_dict(key: str, values: list[dict], ids: list[str]) -> dict[str, torch.Tensor]:
        heads = list(values[0])
        out = {}
        for head in heads:
            column = []
            for value, sample in zip(values, ids):
                if head not in value:
                    raise ValueError(f"{key}: sample {sample!r} lacks head {head!r} (sample {ids[0]!r} has it)")
                column.append(value[head])
            if key == "labels":
                out[head] = torch.as_tensor([int(v) for v in column], dtype=torch.long)
            else:
                out[head] = MultimodalCollator._stack(f"{key}.{head}", column, ids).float()
        return out


def _stack_presence(values: list[dict]) -> dict[str, torch.Tensor]:
    modalities: list[str] = []
    for value in values:
        modalities += [m for m in value if m not in modalities]
    return {m: torch.tensor([bool(value.get(m, True)) for value in values], dtype=torch.bool) for m in modalities}


def _adjacent_view(tensors: Sequence[torch.Tensor]) -> torch.Tensor | None:
    """``torch.stack(tensors)`` as a view, when the tensors already lie back to back in one storage.

    True for the items of one ``MultimodalTransform`` batch (each written into its slot of one batch
    buffer): the result shares their memory instead of copying it. Anything else (other storages, gaps,
    other order, non-contiguous items) returns None.
    """
    first = tensors[0]
    if len(tensors) < 2 or not first.is_contiguous() or first.numel() == 0:
        return None
    storage = first.untyped_storage()
    base, step = first.storage_offset(), first.numel()
    for i, tensor in enumerate(tensors):
        if (tensor.dtype != first.dtype or tensor.device != first.device or not tensor.is_contiguous()
                or tensor.untyped_storage().data_ptr() != storage.data_ptr()
                or tensor.storage_offset() != base + i * step):
            return None
    return first.new_empty(0).set_(storage, base, (len(tensors), *first.shape))
