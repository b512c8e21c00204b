"""Cached teacher logits: run the ensemble once over a dataset and store its per-head logits (``mmkd-hf
precompute``), then train with ``teacher_mode="cached"`` without any teacher forward.

When is each mode right?

- **online** (default): the ensemble runs every step on the *same augmented clip* as the student (same frames, same
  crop; "consistent teaching", Beyer et al., "A good teacher is patient and consistent"). Correct with any
  augmentation; costs a teacher forward per step.
- **cached**: logits are computed once on deterministic, **un-augmented** views (eval transform). The student then
  trains on augmented clips whose teacher targets belong to a different view, so cached targets are exact only when
  training uses the same deterministic views (no train-time augmentation/random sampling); otherwise they are an
  approximation that trades consistency for speed. Per-sample weighting is baked in at caching time (it uses labels).

On disk (``output_dir``)::

    cache_info.json             heads, class counts, teacher order, combine space, num samples, shard size, complete
    shard-00000.parquet ...     columns segment_id (string), logits_<head> (fixed-size list<float32>) and
                                teacher_present (fixed-size list<bool>, teacher order)

``teacher_present`` records which teachers saw each sample (a sample lacking audio or detections is marked by the
data transform, see ``modality_present`` in ``docs/design.md``): the cached logits already combine only the present
teachers with renormalised weights, and a sample with no teacher present trains on its label (the trainer reads
``teacher_present``). A cache written without the column counts every teacher as present.

Shards cover consecutive dataset indices; each is written atomically and skipped when present, so an interrupted
run resumes. A non-empty ``output_dir`` without ``cache_info.json`` (not a cache) is refused, never written into. Under several processes, shard ``k`` is computed by process ``k % num_processes`` (every sample once,
no padding duplicates, no gather needed); the main process marks the cache complete after all have finished.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch
from accelerate.utils import send_to_device
from torch.utils.data import DataLoader, Dataset, Subset

from .. import models  # noqa: F401  (registers the models with the Auto classes)
from ..data.collate import MultimodalCollator
from ..data.registry import load_dataset
from ..utils import ForeignFolderError, atomic_path, atomic_write_json, check_output_folder

CACHE_INFO = "cache_info.json"
CACHE_FORMAT = "mmkd-teacher-logits/1"


def _shard_path(output_dir: Path, shard: int) -> Path:
    return output_dir / f"shard-{shard:05d}.parquet"


def _cache_info(ensemble, num_samples: int, shard_size: int) -> dict[str, Any]:
    config = ensemble.config
    return {
        "format": CACHE_FORMAT,
        "heads": dict(config.heads),
        "head_order": list(config.heads),
        "teacher_order": list(config.teachers),
        "weighting": config.weighting,
        "combine_space": config.combine_space,
        "num_samples": int(num_samples),
        "shard_size": int(shard_size),
        "num_shards": -(-int(num_samples) // int(shard_size)),
    }


def _check_compatible(path: Path, existing: Mapping[str, Any], wanted: Mapping[str, Any]) -> None:
    for key in ("format", "heads", "teacher_order", "weighting", "combine_space", "num_samples", "shard_size"):
        if existing.get(key) != wanted.get(key):
            raise ValueError(
                f"{path}: holds a different cache ({key}: existing {existing.get(key)!r}, requested "
                f"{wanted.get(key)!r}); use another output_dir (nothing was overwritten)"
            )


@torch.no_grad()
def _shard_table(ensemble, dataset: Dataset, indices: range, batch_size: int, collate_fn, heads) -> pa.Table:
    loader = DataLoader(Subset(dataset, list(indices)), batch_size=batch_size, shuffle=False, collate_fn=collate_fn)
    ids: list[str] = []
    logits: dict[str, list[np.ndarray]] = {head: [] for head in heads}
    present: list[np.ndarray] = []
    num_teachers = len(ensemble.config.teachers)
    for batch in loader:
        if "segment_id" not in batch:
            raise ValueError("precompute needs 'segment_id' in every batch (items must carry their segment id)")
        output = ensemble(**send_to_device(batch, ensemble.device))
        for head in heads:
            head_logits = output.logits[head].float()
            if not bool(torch.isfinite(head_logits).all()):
                raise ValueError(f"teacher ensemble produced non-finite logits for head {head!r} in {batch['segment_id']}")
            logits[head].append(head_logits.cpu().numpy())
        batch_present = getattr(output, "teacher_present", None)
        if batch_present is None:
            batch_present = torch.ones(len(batch["segment_id"]), num_teachers, dtype=torch.bool)
        present.append(batch_present.cpu().numpy().astype(bool))
        ids.extend(str(segment) for segment in batch["segment_id"])
    columns = {"segment_id": pa.array(ids, type=pa.string())}
    columns["teacher_present"] = pa.FixedSizeListArray.from_arrays(
        pa.array(np.concatenate(present).reshape(-1), type=pa.bool_()), num_teachers)
    for head, num_classes in heads.items():
        values = np.concatenate(logits[head]).astype(np.float32)
        if values.ndim != 2 or values.shape[1] != num_classes:
            raise ValueError(f"head {head!r}: expected [N, {num_classes}] logits, got {values.shape} (views?)")
        columns[f"logits_{head}"] = pa.FixedSizeListArray.from_arrays(pa.array(values.reshape(-1)), num_classes)
    return pa.table(columns)


def precompute_teacher_logits(
    ensemble,
    dataset: Dataset,
    output_dir: str | os.PathLike,
    batch_size: int = 8,
    shard_size: int = 256,
    accelerator=None,
    collate_fn: Callable | None = None,
    progress: bool = True,
) -> Path:
    """Write the ensemble's per-head logits for every item of ``dataset`` (see the module docstring).

    Args:
        ensemble: a :class:`~mmkd_hf.models.ensemble.modeling_ensemble.MultimodalTeacherEnsemble` on its device.
        dataset: items in the batch contract with ``segment_id``, built with the **eval** transform
            (deterministic, un-augmented, one view).
        output_dir: cache folder; an existing compatible cache is resumed, an incompatible one raises, and a
            non-empty folder that is not a cache raises ``ForeignFolderError`` (nothing written).
        batch_size, shard_size: samples per forward / per shard file.
        accelerator: ``accelerate.Accelerator`` for several processes (shards are split round-robin).
        collate_fn: batch collator (default: :class:`mmkd_hf.data.collate.MultimodalCollator`).

    Returns:
        ``output_dir``.
    """
    if batch_size < 1 or shard_size < 1:
        raise ValueError(f"batch_size and shard_size must be >= 1, given {batch_size}, {shard_size}")
    if collate_fn is None:

        collate_fn = MultimodalCollator()
    output_dir = Path(output_dir)
    if not any(output_dir.glob("shard-*.parquet")):  # shards of an interrupted run are resumed
        check_output_folder(output_dir, "precompute", own_files=(CACHE_INFO,))
    if accelerator is not None:
        accelerator.wait_for_everyone()  # every process checked before the main one creates anything
    output_dir.mkdir(parents=True, exist_ok=True)
    info = _cache_info(ensemble, len(dataset), shard_size)
    info_path = output_dir / CACHE_INFO
    is_main = accelerator is None or accelerator.is_main_process
    if info_path.exists():
        _check_compatible(output_dir, json.loads(info_path.read_text(encoding="utf-8")), info)
    elif is_main:
        atomic_write_json(info_path, {**info, "complete": False})
    if accelerator is not None:
        accelerator.wait_for_everyone()

    rank = 0 if accelerator is None else accelerator.process_index
    world = 1 if accelerator is None else accelerator.num_processes
    ensemble.train(False)
    my_shards = [shard for shard in range(info["num_shards"]) if shard % world == rank]
    todo = [shard for shard in my_shards if not _shard_path(output_dir, shard).exists()]
    iterator = todo
    if progress and is_main and todo:
        from tqdm.auto import tqdm

        iterator = tqdm(todo, desc="precompute teacher logits (shards)")
    for shard in iterator:
        indices = range(shard * shard_size, min((shard + 1) * shard_size, len(dataset)))
        table = _shard_table(ensemble, dataset, indices, batch_size, collate_fn, info["heads"])
        with atomic_path(_shard_path(output_dir, shard)) as tmp:
            pq.write_table(table, tmp)

    if accelerator is not None:
        accelerator.wait_for_everyone()
    if is_main:
        missing = [s for s in range(info["num_shards"]) if not _shard_path(output_dir, s).exists()]
        if missing:
            raise RuntimeError(f"{output_dir}: shards {missing[:5]} are missing after precompute")
        atomic_write_json(info_path, {**info, "complete": True})
    if accelerator is not None:
        accelerator.wait_for_everyone()
    return output_dir


def load_cached_logits(output_dir: str | os.PathLike) -> dict[str, dict[str, np.ndarray]]:
    """Read a complete cache -> ``{segment_id: {head: float32 [C]}}``.

    Raises:
        ValueError: not a cache, an incomplete cache, a missing shard or duplicated segment ids.
    """
    return read_cache(output_dir)[0]


def load_cached_teacher_presence(output_dir: str | os.PathLike) -> dict[str, np.ndarray]:
    """Read a complete cache's presence flags -> ``{segment_id: bool [N]}`` (teacher order; all True for a cache
    written without them)."""
    return read_cache(output_dir)[1]


def read_cache(output_dir: str | os.PathLike) -> tuple[dict[str, dict[str, np.ndarray]], dict[str, np.ndarray]]:
    """Read a complete cache -> ``(logits, presence)``: ``{segment_id: {head: float32 [C]}}`` and
    ``{segment_id: bool [N]}``.

    Raises:
        ValueError: not a cache, an incomplete cache, a missing shard or duplicated segment ids.
    """
    output_dir = Path(output_dir)
    info_path = output_dir / CACHE_INFO
    if not info_path.exists():
        raise ValueError(f"{output_dir}: no {CACHE_INFO}; run `mmkd-hf precompute` first")
    info = json.loads(info_path.read_text(encoding="utf-8"))
    if info.get("format") != CACHE_FORMAT:
        raise ValueError(f"{info_path}: not a teacher-logit cache (format {info.get('format')!r})")
    if not info.get("complete"):
        raise ValueError(f"{output_dir}: the cache is incomplete (interrupted precompute?); rerun precompute to resume")
    heads = info["head_order"]
    num_teachers = len(info.get("teacher_order") or [])
    cache: dict[str, dict[str, np.ndarray]] = {}
    presence: dict[str, np.ndarray] = {}
    for shard in range(info["num_shards"]):
        path = _shard_path(output_dir, shard)
        if not path.exists():
            raise ValueError(f"{path}: shard missing from a cache marked complete")
        table = pq.read_table(path)
        ids = table.column("segment_id").to_pylist()
        arrays = {
            head: np.array(table.column(f"logits_{head}").combine_chunks().flatten(), dtype=np.float32).reshape(
                len(ids), info["heads"][head]
            )
            for head in heads
        }
        if "teacher_present" in table.column_names:
            flags = np.array(table.column("teacher_present").combine_chunks().flatten(), dtype=bool).reshape(len(ids), -1)
        else:
            flags = np.ones((len(ids), num_teachers), dtype=bool)
        for row, segment_id in enumerate(ids):
            if segment_id in cache:
                raise ValueError(f"{path}: segment id {segment_id!r} appears twice in the cache")
            cache[segment_id] = {head: arrays[head][row] for head in heads}
            presence[segment_id] = flags[row]
    return cache, presence


class CachedLogitsDataset(Dataset):
    """Wraps a dataset so each item also carries ``teacher_logits = {head: FloatTensor[C]}`` (by ``segment_id``)
    and, given ``presence``, ``teacher_present`` (BoolTensor ``[N]``, teacher order)."""

    def __init__(
        self,
        dataset: Dataset,
        cache: Mapping[str, Mapping[str, np.ndarray]],
        presence: Mapping[str, np.ndarray] | None = None,
    ):
        self.dataset = dataset
        self.cache = cache
        self.presence = presence

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> dict[str, Any]:
        return add_cached_logits(self.dataset[index], self.cache, self.presence)

    def __getitems__(self, indices: list[int]) -> list[dict[str, Any]]:
        """A whole batch through the wrapped dataset's own ``__getitems__`` when it has one (``mmkd_hf.data``
        datasets write a batch's frames straight into one buffer), else item by item."""
        getitems = getattr(self.dataset, "__getitems__", None)
        items = getitems(list(indices)) if getitems is not None else [self.dataset[i] for i in indices]
        return [add_cached_logits(item, self.cache, self.presence) for item in items]


def add_cached_logits(
    item: dict[str, Any],
    cache: Mapping[str, Mapping[str, np.ndarray]],
    presence: Mapping[str, np.ndarray] | None = None,
) -> dict[str, Any]:
    """Return ``item`` with ``teacher_logits`` looked up by its ``segment_id`` (ValueError naming a missing id), and
    ``teacher_present`` when ``presence`` is given."""
    if item is None or item.get("skip_reason"):
        return item
    segment_id = str(item.get("segment_id"))
    if segment_id not in cache:
        raise ValueError(f"segment {segment_id!r} has no cached teacher logits; was the cache built on this split?")
    item = dict(item)
    item["teacher_logits"] = {head: torch.from_numpy(np.array(values)) for head, values in cache[segment_id].items()}
    if presence is not None and segment_id in presence:
        item["teacher_present"] = torch.from_numpy(np.array(presence[segment_id], dtype=bool))
    return item


def with_cached_logits(dataset: Dataset, cache_dir: str | os.PathLike) -> CachedLogitsDataset:
    """``CachedLogitsDataset(dataset, *read_cache(cache_dir))``: items carry ``teacher_logits`` and
    ``teacher_present``."""
    return CachedLogitsDataset(dataset, *read_cache(cache_dir))


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mmkd-hf precompute",
        description="Run a saved teacher ensemble once over a dataset split (deterministic eval views) and cache "
        "its per-head logits for teacher_mode=cached distillation. Resumable; run under `accelerate launch` for "
        "several processes.",
    )
    parser.add_argument("--teacher", required=True, help="saved MultimodalTeacherEnsemble folder or Hub repo id")
    parser.add_argument("--dataset", default="mini-kitchens", help="dataset name (see mmkd_hf.data.registry)")
    parser.add_argument("--data_dir", default=None, help="dataset folder (default: the dataset's default)")
    parser.add_argument("--split", default="train", help="split to cache (default: train)")
    parser.add_argument("--output_dir", required=True, help="cache folder (resumed when it already holds shards)")
    parser.add_argument("--batch_size", type=int, default=8, help="samples per teacher forward")
    parser.add_argument("--shard_size", type=int, default=256, help="samples per shard file")
    parser.add_argument("--num_frames", type=int, default=16, help="frames per clip")
    parser.add_argument("--crop_size", type=int, default=224, help="spatial size of the (center-cropped) views")
    parser.add_argument("--seed", type=int, default=0, help="dataset seed")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """``mmkd-hf precompute``."""
    args = _parser().parse_args(argv)
    from accelerate import Accelerator
    from transformers import AutoModel


    accelerator = Accelerator()
    ensemble = AutoModel.from_pretrained(args.teacher).to(accelerator.device)
    dataset = load_dataset(
        args.dataset, data_dir=args.data_dir, split=args.split, modalities=tuple(ensemble.config.teachers),
        num_frames=args.num_frames, crop_size=args.crop_size, train=False, seed=args.seed, frames_dtype="uint8",
    )
    try:
        path = precompute_teacher_logits(
            ensemble, dataset, args.output_dir, args.batch_size, args.shard_size, accelerator=accelerator
        )
    except ForeignFolderError as error:
        print(f"mmkd-hf precompute: error: {error}", file=sys.stderr)
        return 2
    if accelerator.is_main_process:
        print(f"cached teacher logits of {len(dataset)} samples in {path}")
    return 0


__all__ = [
    "CachedLogitsDataset",
    "add_cached_logits",
    "load_cached_logits",
    "load_cached_teacher_presence",
    "read_cache",
    "main",
    "precompute_teacher_logits",
    "with_cached_logits",
]
