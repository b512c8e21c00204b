"""Reading a dataset written by ``mmkd-hf export-dataset`` (a local folder or a Hub repo id) with ``datasets``.

Two ways in:

* :func:`load_exported` is ``datasets.load_dataset(path_or_repo, split=split)`` with its failures turned into
  one-line :class:`ExportedDatasetError` messages that name the folder or repo, the split and, for a corrupt Parquet
  file, the shard; the rows it returns are checked to carry the exported features.
* :func:`mmkd_hf.data.load_dataset` (``data_dir`` = the exported folder, or ``hf://datasets/<owner>/<name>``) reads
  the rows through :class:`ExportedReader` and gives **the same items** as the source folder: the frames are the
  source's own JPEG bytes decoded by the same decoder, the audio the same samples (the export keeps a margin around
  each segment for the windows of :mod:`mmkd_hf.data.audio`), the boxes the unfiltered detections thresholded as the
  detections file would be, and the per-item augmentation is drawn from the same seed and ``index``.
  :func:`open_exported` is the part that opens the split; ``streaming=True`` reads the shards without a local copy.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import datasets
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch

from .audio import log_mel_windows, warn_once
from .builders.common import verb_noun_labels
from .configs import AudioConfig, LayoutConfig
from .decoding import FrameStore
from .detections import CATEGORY_HAND
from .errors import DataFormatError, FileDecodeError
from .sampling import frame_to_seconds, rgb_to_flow_index
from .transforms import SampleReader

logger = logging.getLogger(__name__)

#: The command that writes exported datasets (recorded in their card as ``mmkd_hf.exporter``).
EXPORTER = "mmkd-hf export-dataset"
#: Version of the exported layout (columns and their features), recorded in the card's ``mmkd_hf`` metadata.
EXPORT_FORMAT_VERSION = 2
#: Seconds of audio kept on each side of a segment by default (the default 1.116 s windows need 0.608 s).
DEFAULT_AUDIO_MARGIN_S = 0.65
#: Prefix of a Hub dataset given as a data folder: ``hf://datasets/<owner>/<name>[@<revision>]``.
HUB_PREFIX = "hf://datasets/"
#: Columns every exported dataset has.
REQUIRED_COLUMNS = ("segment_id", "participant_id", "video_id", "start_frame", "stop_frame", "fps", "verb", "noun")
#: Modality columns; an exported dataset has at least one.
MODALITY_COLUMNS = ("rgb", "flow_u", "flow_v", "audio", "boxes")
#: Columns the items are made from (format 2).
ITEM_COLUMNS = ("index", "segment_id", "start_frame", "stop_frame", "fps", "height", "width", "verb", "noun", "rgb",
                "flow_start_frame", "flow_u", "flow_v", "audio", "boxes")
_REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[A-Za-z0-9][\w.-]*$")


class ExportedDatasetError(DataFormatError):
    """An exported dataset that cannot be read: missing split or features, corrupt shard, not an export (one-line
    message ``<folder or hf://datasets/repo>: <reason>`` naming the split and the shard where they matter)."""


def shard_name(split: str, index: int, num_shards: int) -> str:
    """``<split>-0000i-of-0000N.parquet``, the file names of ``Dataset.push_to_hub``."""
    return f"{split}-{index:05d}-of-{num_shards:05d}.parquet"


# ------------------------------------------------------------------------------------------------ sources
@dataclass(frozen=True)
class ExportedSource:
    """Where an exported dataset lies: a local ``folder`` or a Hub dataset ``repo_id`` (at ``revision``)."""

    folder: Path | None = None
    repo_id: str | None = None
    revision: str | None = None

    def __str__(self) -> str:
        if self.folder is not None:
            return str(self.folder)
        return f"{HUB_PREFIX}{self.repo_id}" + (f"@{self.revision}" if self.revision else "")

    @property
    def path_or_repo(self) -> str:
        """What ``datasets.load_dataset`` takes."""
        return str(self.folder) if self.folder is not None else str(self.repo_id)

    def card_metadata(self) -> dict[str, Any]:
        """The YAML front matter of the dataset's ``README.md`` (empty when it has none)."""
        from huggingface_hub.repocard import metadata_load

        if self.folder is not None:
            card = self.folder / "README.md"
            if not card.is_file():
                raise ExportedDatasetError(self.folder, f"no README.md: not a folder written by {EXPORTER}")
        else:
            card = _download_card(self)
        try:
            return metadata_load(card) or {}
        except Exception as error:  # yaml errors and the like: the card is not ours
            raise ExportedDatasetError(str(self), f"README.md has no readable YAML front matter ({error})") from None


def _download_card(source: ExportedSource) -> Path:
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import EntryNotFoundError, HfHubHTTPError, LocalEntryNotFoundError

    try:
        return Path(hf_hub_download(source.repo_id, "README.md", repo_type="dataset", revision=source.revision))
    except EntryNotFoundError:
        raise ExportedDatasetError(str(source), f"the repo has no README.md: not a dataset written by {EXPORTER}") \
            from None
    except LocalEntryNotFoundError as error:
        raise ExportedDatasetError(str(source), f"cannot reach the Hub and the card is not cached ({error})") from None
    except HfHubHTTPError as error:  # RepositoryNotFoundError, RevisionNotFoundError, gated repos are subclasses
        reason = " ".join(str(error).split())[:200]
        raise ExportedDatasetError(str(source), f"cannot read the repo ({type(error).__name__}: {reason})") from None


def _parse_hub(value: str) -> ExportedSource:
    repo_id, _, revision = value.removeprefix(HUB_PREFIX).partition("@")
    if not _REPO_ID.match(repo_id):
        raise ExportedDatasetError(value, "expected a Hub dataset repo id <owner>/<name>[@<revision>]")
    return ExportedSource(repo_id=repo_id, revision=revision or None)


def is_exported_folder(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a folder whose card says ``mmkd-hf export-dataset`` wrote it."""
    card = Path(path) / "README.md"
    if not card.is_file():
        return False
    try:
        return _provenance(ExportedSource(folder=Path(path)).card_metadata()).get("exporter") == EXPORTER
    except ExportedDatasetError:
        return False


def exported_source(data_dir: str | os.PathLike | None) -> ExportedSource | None:
    """The exported dataset a ``data_dir`` names: ``hf://datasets/<owner>/<name>[@<revision>]`` (the Hub copy) or a
    local folder written by ``mmkd-hf export-dataset`` (recognised by its card); None for any other folder."""
    if data_dir is None:
        return None
    text = str(data_dir)
    if text.startswith(HUB_PREFIX):
        return _parse_hub(text)
    return ExportedSource(folder=Path(text)) if is_exported_folder(text) else None


def hub_dataset_source(value: str) -> ExportedSource:
    """The source of ``train.py --hub_dataset``: an existing local folder, else a Hub repo id (``<owner>/<name>``,
    optionally ``@<revision>`` or with the ``hf://datasets/`` prefix)."""
    text = str(value).strip()
    if not text.startswith(HUB_PREFIX) and Path(text).expanduser().exists():
        return ExportedSource(folder=Path(text).expanduser())
    return _parse_hub(text)


def _provenance(card: dict[str, Any]) -> dict[str, Any]:
    provenance = card.get("mmkd_hf")
    return provenance if isinstance(provenance, dict) else {}


def exported_fingerprint(source: ExportedSource) -> dict[str, Any]:
    """What identifies an exported dataset wherever it lies (its folder or its Hub copy give the same): the card's
    ``mmkd_hf`` entry, which holds the dataset, the format, the audio margin, the generator's settings and every
    shard's SHA-256. Returns ``{"sha256": ..., "description": ...}`` like the pipeline's data fingerprint."""
    provenance = _provenance(source.card_metadata())
    if provenance.get("exporter") != EXPORTER:
        raise ExportedDatasetError(str(source), f"its card has no mmkd_hf entry: not a dataset written by {EXPORTER}")
    digest = hashlib.sha256(json.dumps(provenance, sort_keys=True, default=str).encode()).hexdigest()
    shards = provenance.get("shards") or {}
    return {"sha256": digest, "description": f"{provenance.get('dataset')} exported by {EXPORTER} (format "
                                             f"{provenance.get('format_version')}, {len(shards)} shard(s))"}


# ------------------------------------------------------------------------------------------------ checked reading
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


def _corrupt_message(split: str, bad: tuple[str, Path, str]) -> str:
    bad_split, path, reason = bad
    also = "" if bad_split == split else f" (datasets prepares every split, so split {split!r} cannot be read either)"
    return f"split {bad_split!r}: shard data/{path.name} is corrupt ({reason}){also}; export the dataset again"


def check_features(features: datasets.Features, source: str, split: str) -> None:
    """Raises :class:`ExportedDatasetError` unless ``features`` are those of an exported dataset."""
    missing = [name for name in REQUIRED_COLUMNS if name not in features]
    if missing:
        raise ExportedDatasetError(source, f"split {split!r}: not a dataset exported by {EXPORTER}: missing "
                                           f"column(s) {', '.join(missing)} (found: {', '.join(features)})")
    for name in ("verb", "noun"):
        if not isinstance(features[name], datasets.ClassLabel):
            raise ExportedDatasetError(source, f"split {split!r}: column {name!r} is {features[name]}, expected a "
                                               "ClassLabel")
    if not any(name in features for name in MODALITY_COLUMNS):
        raise ExportedDatasetError(source, f"split {split!r}: no modality column (expected one of "
                                           f"{', '.join(MODALITY_COLUMNS)})")


def _as_source(path_or_repo: str | os.PathLike | ExportedSource) -> ExportedSource:
    if isinstance(path_or_repo, ExportedSource):
        return path_or_repo
    text = str(path_or_repo)
    if text.startswith(HUB_PREFIX):
        return _parse_hub(text)
    if Path(text).exists() or not _REPO_ID.match(text):
        return ExportedSource(folder=Path(text))
    return ExportedSource(repo_id=text)


def load_exported(path_or_repo: str | os.PathLike | ExportedSource, split: str, **kwargs):
    """``datasets.load_dataset(path_or_repo, split=split, **kwargs)`` of an exported dataset, checked.

    Args:
        path_or_repo: The exported folder, or the repo id of its copy on the Hub (``<owner>/<name>`` or
            ``hf://datasets/<owner>/<name>[@<revision>]``).
        split: The split to read (``train``, ``validation``, ``test``).
        **kwargs: Passed to ``datasets.load_dataset`` (e.g. ``streaming=True``, ``revision``, ``features``).

    Raises:
        ExportedDatasetError: the folder/repo does not exist, has no such split, holds a corrupt shard or lacks
            the exported features; the message names the folder or repo, the split and the shard.
    """
    source = _as_source(path_or_repo)
    where = str(source)
    shards: dict[str, list[Path]] = {}
    if source.folder is not None:
        local = source.folder
        if not local.exists():
            raise ExportedDatasetError(where, "no such folder")
        if not local.is_dir():
            raise ExportedDatasetError(where, "a file, not an exported dataset folder")
        shards = _local_splits(local)
        if not shards:
            raise ExportedDatasetError(where, f"no data/<split>-*.parquet shard: is it a folder written by {EXPORTER}?")
        if split not in shards:
            raise ExportedDatasetError(where, f"the dataset has no split {split!r} (available: {', '.join(shards)})")
        bad = _corrupt_shard(shards, full=False)
        if bad:
            raise ExportedDatasetError(where, _corrupt_message(split, bad))
    elif source.revision and "revision" not in kwargs:
        kwargs["revision"] = source.revision
    try:
        dataset = datasets.load_dataset(source.path_or_repo, split=split, **kwargs)
    except ExportedDatasetError:
        raise
    except FileNotFoundError as err:
        raise ExportedDatasetError(where, f"split {split!r} not found: {' '.join(str(err).split())[:200]}") from err
    except ValueError as err:
        text = " ".join(str(err).split())
        if "split" in text.lower():
            raise ExportedDatasetError(where, f"the dataset has no split {split!r}: {text[:200]}") from err
        raise ExportedDatasetError(where, f"split {split!r} cannot be read: {text[:200]}") from err
    except Exception as err:  # datasets wraps Arrow/Parquet failures in DatasetGenerationError and others
        bad = _corrupt_shard(shards, full=True) if shards else None
        if bad:
            raise ExportedDatasetError(where, _corrupt_message(split, bad)) from err
        text = " ".join(str(err).split())
        cause = err.__cause__ or err.__context__
        detail = " ".join(str(cause).split())[:160] if cause is not None else ""
        raise ExportedDatasetError(where, f"split {split!r} cannot be read ({type(err).__name__}: {text[:160]}"
                                          + (f"; {detail}" if detail else "") + "): a shard may be corrupt") from err
    if dataset.features is not None:
        check_features(dataset.features, where, split)
    return dataset


# ------------------------------------------------------------------------------------------------ items
def _undecoded(feature):
    """``feature`` with every ``Image`` left undecoded (the reader decodes the JPEG bytes as the source folder's
    reader does)."""
    if isinstance(feature, datasets.Image):
        return datasets.Image(decode=False)
    if isinstance(feature, datasets.List):
        return datasets.List(_undecoded(feature.feature), length=feature.length)
    if isinstance(feature, dict):
        return {key: _undecoded(value) for key, value in feature.items()}
    return feature


def open_exported(name: str, source: ExportedSource, split: str, *, streaming: bool = False,
                  cache_dir: str | os.PathLike | None = None):
    """The rows of one split of an exported dataset (frames undecoded) and the :class:`ExportedReader` that makes
    items of them; the ``action`` column is left out (the pipeline derives its heads from the ``ClassLabel``
    columns, as from the source folder's ``verb_class`` / ``noun_class``).

    Raises:
        ExportedDatasetError: not an export (of ``name``, at this format), no such split, missing features, corrupt
            shard (one line naming the folder or repo, the split and the shard).
    """
    where = str(source)
    card = source.card_metadata()
    provenance = _provenance(card)
    if provenance.get("exporter") != EXPORTER:
        raise ExportedDatasetError(where, f"its card (README.md) has no mmkd_hf entry: not a dataset written by "
                                          f"{EXPORTER}")
    if provenance.get("format_version") != EXPORT_FORMAT_VERSION:
        raise ExportedDatasetError(where, f"exported at format {provenance.get('format_version')}, this version reads "
                                          f"format {EXPORT_FORMAT_VERSION}: export the dataset again")
    exported_name = provenance.get("dataset")
    if exported_name != name:
        raise ExportedDatasetError(where, f"holds an export of {exported_name!r}, not {name!r}: pass --dataset "
                                          f"{exported_name}")
    try:
        features = datasets.Features._from_yaml_list(card["dataset_info"]["features"])
    except (KeyError, TypeError, ValueError) as error:
        raise ExportedDatasetError(where, f"its card has no readable dataset_info.features ({error!r})") from None
    check_features(features, where, split)
    missing = [column for column in ITEM_COLUMNS if column not in features]
    if missing:
        raise ExportedDatasetError(where, f"split {split!r}: missing column(s) {', '.join(missing)}: export the "
                                          "dataset again")
    dataset = load_exported(source, split, features=datasets.Features(_undecoded(dict(features))),
                            streaming=streaming, **({"cache_dir": str(cache_dir)} if cache_dir else {}))
    if "action" in (dataset.column_names or []):
        dataset = dataset.remove_columns(["action"])
    reader = ExportedReader(features["verb"].num_classes, features["noun"].num_classes, source=where, split=split,
                            audio_margin=float(provenance.get("audio_margin_seconds", 0.0)),
                            audio_format=str(provenance.get("audio_format", "float32")))
    return dataset, reader


class _RowFrames(FrameStore):
    """Frames ``first, first + 1, ...`` of one exported row (``{"bytes", "path"}`` each), read like a frame folder."""

    def __init__(self, frames: Sequence[dict] | None, first: int, where: str):
        self.frames = list(frames or [])
        self.first = int(first)
        self.where = where

    def describe(self, number: int) -> str:
        return f"{self.where}#frame{number}"

    def read_bytes(self, number: int) -> bytes:
        position = int(number) - self.first
        if not 0 <= position < len(self.frames) or not (self.frames[position] or {}).get("bytes"):
            raise FileDecodeError(self.describe(number), f"frame {number} is not in the exported row (frames "
                                                         f"{self.first}..{self.num_frames()})")
        return self.frames[position]["bytes"]

    def num_frames(self) -> int:
        """The last frame number the row holds."""
        return self.first + len(self.frames) - 1


class ExportedReader(SampleReader):
    """The modalities of one exported row (see :mod:`mmkd_hf.hub.dataset_export`), read exactly as the EPIC-layout
    reader reads the source folder, so that :class:`~mmkd_hf.data.MultimodalTransform` makes the same items."""

    default_sampler = "uniform"

    def __init__(self, num_verbs: int, num_nouns: int, source: str = "<exported dataset>", split: str = "",
                 audio_margin: float = DEFAULT_AUDIO_MARGIN_S, audio_format: str = "float32"):
        self.num_verbs = int(num_verbs)
        self.num_nouns = int(num_nouns)
        self.source = source
        self.split = split
        self.audio_margin = float(audio_margin)
        self.audio_format = audio_format

    def _where(self, row: dict, modality: str) -> str:
        return f"{self.source} ({self.split}, segment {row['segment_id']}, {modality})"

    def sample_id(self, row: dict) -> str:
        return str(row["segment_id"])

    def segment(self, row: dict) -> tuple[int, int]:
        return int(row["start_frame"]), int(row["stop_frame"]) - int(row["start_frame"]) + 1

    def frame_size(self, row: dict) -> tuple[int, int]:
        h, w = int(row.get("height") or -1), int(row.get("width") or -1)
        return (h, w) if h > 0 and w > 0 else (256, 456)

    def fps(self, row: dict) -> float:
        return float(row["fps"])

    def read_rgb(self, row: dict, numbers: np.ndarray) -> torch.Tensor:
        return _RowFrames(row["rgb"], row["start_frame"], self._where(row, "rgb")).read(numbers)

    def read_flow(self, row: dict, numbers: np.ndarray) -> torch.Tensor:
        first = int(row["flow_start_frame"])
        u_store = _RowFrames(row["flow_u"], first, self._where(row, "flow_u"))
        v_store = _RowFrames(row["flow_v"], first, self._where(row, "flow_v"))
        if not u_store.frames:
            raise FileDecodeError(u_store.describe(1), "no optical flow frames")
        # the row holds the flow frames of its RGB frames, so clamping to its last one is the source's clamping
        flow_numbers = rgb_to_flow_index(numbers, u_store.num_frames())
        u = u_store.read(flow_numbers, gray=True)
        v = v_store.read(flow_numbers, gray=True)
        if u.shape != v.shape:
            raise FileDecodeError(v_store.describe(int(flow_numbers[0])),
                                  f"u/v sizes differ: {tuple(u.shape)} vs {tuple(v.shape)}")
        return torch.cat([u, v], dim=1)

    def read_audio_windows(self, row: dict, numbers: np.ndarray, config: AudioConfig) -> torch.Tensor:
        """The windows of :func:`mmkd_hf.data.audio.audio_windows_for_segment`, from the row's samples: the same
        range of samples the source's ``.wav`` gives (read as :func:`mmkd_hf.data.decoding.read_audio` reads it)."""
        audio = row.get("audio")
        where = self._where(row, "audio")
        if audio is None or audio.get("array") is None:
            raise FileDecodeError(where, "no audio (the source had no audio file for this video)")
        half = config.window_seconds / 2.0 + 0.05
        if half > self.audio_margin + 1e-9:
            raise ExportedDatasetError(self.source, f"split {self.split!r}: exported with {self.audio_margin:g} s of "
                                                    f"audio around each segment; audio windows of "
                                                    f"{config.window_seconds:g} s need {half:g} s: export again with "
                                                    f"--audio-margin {math.ceil(half * 100) / 100:g}")
        fps = self.fps(row)
        first, last = int(row["start_frame"]), int(row["stop_frame"])
        centres = frame_to_seconds(numbers, fps)
        seg_start = float(frame_to_seconds(first, fps))
        seg_stop = float(frame_to_seconds(last + 1, fps))
        read_from = max(0.0, min(seg_start, float(centres.min())) - half)
        read_to = max(seg_stop, float(centres.max())) + half
        sr = int(audio["sampling_rate"])
        samples = np.asarray(audio["array"], dtype=np.float32)
        if self.audio_format == "int16":  # 16-bit PCM, scaled as the standard library's WAV reading is
            samples /= 32768.0
        offset = int(round(float(audio["start_seconds"]) * sr))
        lo = min(max(int(round(read_from * sr)) - offset, 0), len(samples))
        hi = max(lo, min(int(round(read_to * sr)) - offset, len(samples)))
        clip, clip_start = samples[lo:hi], (offset + lo) / sr
        clip_end = clip_start + len(clip) / sr
        if len(clip) == 0 or clip_end <= seg_start:
            warn_once(f"{where}|{seg_start}", "segment %s (%.2f-%.2f s) lies wholly past the end of the audio in %s "
                      "(it ends at %.2f s): its spectrogram is silence (-100 dB)", self.sample_id(row), seg_start,
                      seg_stop, where, clip_end)
        valid = (seg_start, seg_stop) if config.pad_outside_segment else None
        return log_mel_windows(clip, sr, clip_start, centres, config, valid)

    def read_boxes(self, row: dict, numbers: np.ndarray, config: LayoutConfig) -> list[dict[str, np.ndarray]]:
        """Per frame, the detections kept by ``config``'s thresholds (hands and objects, in their stored order)."""
        frames = row.get("boxes")
        if frames is None:
            raise FileDecodeError(self._where(row, "boxes"), "no hand-object detections (the source had no "
                                                             "detections file for this video)")
        first = int(row["start_frame"])
        out = []
        for number in np.asarray(numbers).reshape(-1):
            position = int(number) - first
            frame = frames[position] if 0 <= position < len(frames) and frames[position] else {}
            scores = np.asarray(frame.get("scores") or [], np.float32)
            categories = np.asarray(frame.get("categories") or [], np.int64)
            thresholds = np.where(categories == CATEGORY_HAND, config.hand_threshold, config.object_threshold)
            keep = scores.astype(np.float64) >= thresholds
            out.append({
                "boxes": np.asarray(frame.get("boxes") or np.zeros((0, 4)), np.float32).reshape(-1, 4)[keep],
                "categories": categories[keep],
                "scores": scores[keep],
                "sides": np.asarray(frame.get("sides") or [], np.int64)[keep],
                "states": np.asarray(frame.get("states") or [], np.int64)[keep],
            })
        return out

    def labels(self, row: dict) -> dict[str, int]:
        return verb_noun_labels(self.sample_id(row), int(row["verb"]), int(row["noun"]), self.num_verbs,
                                self.num_nouns, fields=("verb", "noun"))


__all__ = [
    "DEFAULT_AUDIO_MARGIN_S",
    "EXPORTER",
    "EXPORT_FORMAT_VERSION",
    "ExportedDatasetError",
    "ExportedReader",
    "ExportedSource",
    "HUB_PREFIX",
    "check_features",
    "exported_fingerprint",
    "exported_source",
    "hub_dataset_source",
    "is_exported_folder",
    "load_exported",
    "open_exported",
    "shard_name",
]
