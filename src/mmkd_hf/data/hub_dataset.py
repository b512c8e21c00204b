"""Reading a dataset written by ``mmkd-hf export-dataset`` (a local folder or a Hub repo id) with ``datasets``.

:func:`load_exported` is ``datasets.load_dataset(path_or_repo, split=split)`` with its failures turned into
one-line :class:`ExportedDatasetError` messages that name the folder or repo, the split and, for a corrupt
Parquet file, the shard; the rows it returns are checked to carry the exported features (labels as
``ClassLabel``, the ids, the timing and at least one modality column). Decoding ``datasets.Audio`` needs
``torchcodec``; without it the ``audio`` column is read undecoded (the WAV bytes) instead of failing every row.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import datasets
import pyarrow as pa
import pyarrow.parquet as pq

logger = logging.getLogger(__name__)

#: Version of the exported layout (columns and their features), recorded in the card's ``mmkd_hf`` metadata.
EXPORT_FORMAT_VERSION = 1
#: Columns every exported dataset has.
REQUIRED_COLUMNS = ("segment_id", "participant_id", "video_id", "start_frame", "stop_frame", "fps", "verb", "noun")
#: Modality columns; an exported dataset has at least one.
MODALITY_COLUMNS = ("rgb", "flow_u", "flow_v", "audio", "boxes")


class ExportedDatasetError(ValueError):
    """An exported dataset that cannot be read: missing split or features, corrupt shard (one-line message)."""


def shard_name(split: str, index: int, num_shards: int) -> str:
    """``<split>-0000i-of-0000N.parquet``, the file names of ``Dataset.push_to_hub``."""
    return f"{split}-{index:05d}-of-{num_shards:05d}.parquet"


def _local_splits(folder: Path) -> dict[str, list[Path]]:
    shards: dict[str, list[Path]] = {}
    for path in sorted((folder / "data").glob("*.parquet")):
        split = path.name.split("-", 1)[0]
        shards.setdefault(split, []).append(path)
    return shards


def _corrupt_shard(shards: dict[str, list[Path]], full: bool) -> tuple[str, Path, str] | None:
    """(split, shard, reason) of the first shard whose Parquet footer (and with ``full``, data) cannot be read."""
    for split, paths in shards.items():
        for path in paths:
            try:
                parquet = pq.ParquetFile(path)
                for group in range(parquet.num_row_groups if full else 0):
                    parquet.read_row_group(group)
            except (pa.ArrowException, OSError) as err:
                return split, path, " ".join(str(err).split())[:160]
    return None


def _corrupt_message(source: str, split: str, bad: tuple[str, Path, str]) -> str:
    bad_split, path, reason = bad
    also = "" if bad_split == split else f" (datasets prepares every split, so split {split!r} cannot be read either)"
    return (f"{source}: split {bad_split!r}: shard data/{path.name} is corrupt ({reason}){also}; "
            "export the dataset again")


def check_features(features: datasets.Features, source: str, split: str) -> None:
    """Raises :class:`ExportedDatasetError` unless ``features`` are those of an exported dataset."""
    missing = [name for name in REQUIRED_COLUMNS if name not in features]
    if missing:
        raise ExportedDatasetError(f"{source} (split {split!r}) is not a dataset exported by mmkd-hf export-dataset: "
                                   f"missing column(s) {', '.join(missing)} (found: {', '.join(features)})")
    for name in ("verb", "noun"):
        if not isinstance(features[name], datasets.ClassLabel):
            raise ExportedDatasetError(f"{source} (split {split!r}): column {name!r} is {features[name]}, "
                                       "expected a ClassLabel")
    if not any(name in features for name in MODALITY_COLUMNS):
        raise ExportedDatasetError(f"{source} (split {split!r}) has no modality column (expected one of "
                                   f"{', '.join(MODALITY_COLUMNS)})")


def load_exported(path_or_repo: str | os.PathLike, split: str, **kwargs) -> datasets.Dataset:
    """``datasets.load_dataset(path_or_repo, split=split, **kwargs)`` of an exported dataset, checked.

    Args:
        path_or_repo: The exported folder, or the repo id of its copy on the Hub.
        split: The split to read (``train``, ``validation``, ``test``).
        **kwargs: Passed to ``datasets.load_dataset`` (e.g. ``streaming=True``, ``revision``).

    Raises:
        ExportedDatasetError: the folder/repo does not exist, has no such split, holds a corrupt shard or lacks
            the exported features; the message names the folder or repo, the split and the shard.
    """
    source = str(path_or_repo)
    local = Path(source)
    shards: dict[str, list[Path]] = {}
    if local.exists():
        if not local.is_dir():
            raise ExportedDatasetError(f"{source} is a file, not an exported dataset folder")
        shards = _local_splits(local)
        if not shards:
            raise ExportedDatasetError(f"{source} holds no data/<split>-*.parquet shard: is it a folder written by "
                                       "mmkd-hf export-dataset?")
        if split not in shards:
            raise ExportedDatasetError(f"{source} has no split {split!r} (available: {', '.join(shards)})")
        bad = _corrupt_shard(shards, full=False)
        if bad:
            raise ExportedDatasetError(_corrupt_message(source, split, bad))
    try:
        dataset = datasets.load_dataset(source, split=split, **kwargs)
    except ExportedDatasetError:
        raise
    except FileNotFoundError as err:
        raise ExportedDatasetError(f"{source} (split {split!r}) not found: {' '.join(str(err).split())[:200]}") from err
    except ValueError as err:
        text = " ".join(str(err).split())
        if "split" in text.lower():
            raise ExportedDatasetError(f"{source} has no split {split!r}: {text[:200]}") from err
        raise ExportedDatasetError(f"{source} (split {split!r}) cannot be read: {text[:200]}") from err
    except Exception as err:  # datasets wraps Arrow/Parquet failures in DatasetGenerationError and others
        bad = _corrupt_shard(shards, full=True) if shards else None
        if bad:
            raise ExportedDatasetError(_corrupt_message(source, split, bad)) from err
        text = " ".join(str(err).split())
        cause = err.__cause__ or err.__context__
        detail = " ".join(str(cause).split())[:160] if cause is not None else ""
        raise ExportedDatasetError(f"{source} (split {split!r}) cannot be read ({type(err).__name__}: {text[:160]}"
                                   + (f"; {detail}" if detail else "") + "): a shard may be corrupt") from err
    if dataset.features is not None:
        check_features(dataset.features, source, split)
        audio = dataset.features.get("audio")
        if isinstance(audio, datasets.Audio) and audio.decode and not datasets.config.TORCHCODEC_AVAILABLE:
            logger.warning("%s: torchcodec is not installed, so the audio column gives the WAV bytes "
                           "({'bytes', 'path'}) instead of decoded samples (pip install \"datasets[audio]\")", source)
            dataset = dataset.cast_column("audio", datasets.Audio(decode=False))
    return dataset


__all__ = ["EXPORT_FORMAT_VERSION", "ExportedDatasetError", "check_features", "load_exported", "shard_name"]
