"""``mmkd-hf export-dataset``: a dataset folder that ``datasets.load_dataset`` reads with no code of ours.

The folder holds one row per segment, with every modality embedded as data ``datasets`` decodes itself, in
Parquet shards ``data/<split>-0000i-of-0000N.parquet`` (the layout of ``Dataset.push_to_hub``) and a
``README.md`` whose YAML declares ``configs`` / ``data_files`` per split, the features, the splits and their
sizes, the licence and, for mini-kitchens, the generator's settings::

    from datasets import load_dataset
    ds = load_dataset("OUT", split="validation")   # or the repo id once the folder is on the Hub

Columns (format 2): ``index`` (position in the split's annotation file), ``segment_id``, ``participant_id``,
``video_id``, ``narration``, ``start_frame``, ``stop_frame``, ``start_seconds``, ``stop_seconds``, ``fps`` (rate of
the frame numbering), ``height``, ``width`` (the video's frame size); labels ``verb``, ``noun`` (and ``action`` =
``verb * num_nouns + noun``) as ``ClassLabel``; the EPIC-KITCHENS-100 evaluation flags ``unseen_participant``,
``tail_verb``, ``tail_noun``; ``rgb``: the segment's JPEG frames (``List(Image())``, every frame
from ``start_frame`` to ``stop_frame``); ``flow_u`` / ``flow_v``: the JPEG optical-flow frames covering the segment,
flow frames ``flow_start_frame``, ``flow_start_frame + 1``, ... (flow runs at half the RGB rate, as in
EPIC-KITCHENS-100); ``audio``: the segment's sound with a margin of ``--audio-margin`` seconds on each side, as
plain features (``array`` of mono samples at ``sampling_rate``, the first one at ``start_seconds`` of the video:
int16 PCM for 16-bit ``.wav`` sources, float32 otherwise; the card's ``mmkd_hf.audio_format`` says which), so rows
decode with no audio library; ``boxes``: per RGB frame the hand-object detections (``boxes``
[N, 4] as fractions x1, y1, x2, y2, ``scores``, ``categories``, ``sides``, ``states``), unfiltered. A segment whose
video has no audio track or detections file has ``audio`` / ``boxes`` null.

The frames are the source's own JPEG bytes and the audio the decoded samples, so :mod:`mmkd_hf.data` turns the rows
into the same training items as the source folder (see :mod:`mmkd_hf.data.hub_dataset`).

Supported: mini-kitchens and EPIC-KITCHENS-100 (the EPIC layout). EPIC-KITCHENS-100 may not be re-hosted: its
folder is written the same way for a lab's own storage or a private repo, and its card says so.

Usage::

    mmkd-hf export-dataset --dataset mini-kitchens --data-dir DIR --out OUT [--split train,validation]
        [--max-shard-size 500MB] [--audio-margin 0.65] [--audio-format auto|int16|float32]
"""

from __future__ import annotations

import argparse
import hashlib
import math
import os
import sys
import tempfile
import wave
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import datasets
import numpy as np
import yaml
from datasets.utils.py_utils import convert_file_size_to_int

from ..data import LayoutConfig, build_metadata, make_reader
from ..data.decoding import VideoFrames, read_audio
from ..data.errors import FileDecodeError, SampleDecodeError
from ..data.hub_dataset import DEFAULT_AUDIO_MARGIN_S, EXPORT_FORMAT_VERSION, EXPORTER, shard_name
from ..data.sampling import rgb_to_flow_index
from ..data.builders import read_mini_kitchens_marker
from ..utils import ForeignFolderError, output_directory
from .cards import render_dataset_card

COMMAND = EXPORTER
#: Datasets in the EPIC layout that can be exported.
EXPORTABLE = ("mini-kitchens", "epic-kitchens-100")
#: Datasets whose licence forbids re-hosting: exported for local or private use only.
NOT_REHOSTABLE = {"epic-kitchens-100": "EPIC-KITCHENS-100 (CC BY-NC 4.0)"}
#: How the audio samples are stored (``auto``: int16 for 16-bit PCM ``.wav`` sources, else float32).
AUDIO_FORMATS = ("auto", "int16", "float32")
#: Above this many (verb, noun) pairs, ``action`` is a plain integer instead of a ClassLabel.
MAX_ACTION_NAMES = 10_000


class ExportError(ValueError):
    """An export that cannot proceed, with a one-line message meant for the user."""


def export_features(verbs: Sequence[str], nouns: Sequence[str], audio_format: str = "float32") -> datasets.Features:
    """The features of an exported dataset (format :data:`~mmkd_hf.data.hub_dataset.EXPORT_FORMAT_VERSION`)."""
    frames = datasets.List(datasets.Image())
    detections = {
        "boxes": datasets.List(datasets.List(datasets.Value("float32"), length=4)),
        "scores": datasets.List(datasets.Value("float32")),
        "categories": datasets.List(datasets.Value("int64")),
        "sides": datasets.List(datasets.Value("int64")),
        "states": datasets.List(datasets.Value("int64")),
    }
    pairs = len(verbs) * len(nouns)
    action = (datasets.ClassLabel(names=[f"{v} {n}" for v in verbs for n in nouns]) if pairs <= MAX_ACTION_NAMES
              else datasets.Value("int64"))
    return datasets.Features({
        "index": datasets.Value("int64"),
        "segment_id": datasets.Value("string"),
        "participant_id": datasets.Value("string"),
        "video_id": datasets.Value("string"),
        "narration": datasets.Value("string"),
        "start_frame": datasets.Value("int64"),
        "stop_frame": datasets.Value("int64"),
        "start_seconds": datasets.Value("float64"),
        "stop_seconds": datasets.Value("float64"),
        "fps": datasets.Value("float64"),
        "height": datasets.Value("int64"),
        "width": datasets.Value("int64"),
        "verb": datasets.ClassLabel(names=list(verbs)),
        "noun": datasets.ClassLabel(names=list(nouns)),
        "action": action,
        "unseen_participant": datasets.Value("bool"),
        "tail_verb": datasets.Value("bool"),
        "tail_noun": datasets.Value("bool"),
        "rgb": frames,
        "flow_start_frame": datasets.Value("int64"),
        "flow_u": frames,
        "flow_v": frames,
        "audio": {"array": datasets.List(datasets.Value(audio_format)), "sampling_rate": datasets.Value("int64"),
                  "start_seconds": datasets.Value("float64")},
        "boxes": datasets.List(detections),
    })


def _frame_bytes(store, numbers: Sequence[int], segment_id: str) -> list[dict[str, Any]]:
    if isinstance(store, VideoFrames):
        raise ExportError(f"segment {segment_id!r}: its frames are in the video file {store.path}; export reads JPEG "
                          "frames: extract them first (rgb_frames/<video>/frame_%010d.jpg)")
    return [{"bytes": store.read_bytes(int(n)), "path": f"frame_{int(n):010d}.jpg"} for n in numbers]


def _audio_format(reader, metadata: datasets.Dataset) -> str:
    """``int16`` when the first segment's audio is a mono 16-bit PCM ``.wav`` (its samples are kept exactly as int16 PCM,
    half the bytes of float32), else ``float32`` (decoded tracks of video files)."""
    for row in metadata.select(range(min(1, len(metadata)))):
        try:
            source = reader.audio_source(row)
        except FileDecodeError:
            return "float32"
        if Path(source).suffix.lower() == ".wav":
            try:
                with wave.open(str(source), "rb") as handle:
                    return "int16" if handle.getsampwidth() == 2 and handle.getnchannels() == 1 else "float32"
            except (wave.Error, EOFError, OSError):
                return "float32"
    return "float32"


def _segment_audio(reader, row, start_s: float, stop_s: float, margin_s: float, audio_format: str
                   ) -> dict[str, Any] | None:
    """The segment's samples from ``margin_s`` before to ``margin_s`` after it (clamped to the track), as read by
    :func:`~mmkd_hf.data.decoding.read_audio` (int16 PCM = samples x 32768, exactly); None when the video has no
    audio file (a segment kept without audio, as a tolerated missing modality)."""
    try:
        source = reader.audio_source(row)
    except FileDecodeError:
        return None
    clip = read_audio(source, start_s - margin_s, stop_s + margin_s)
    samples = np.asarray(clip.samples, np.float32)
    if audio_format == "int16":
        pcm = samples.astype(np.float64) * 32768.0
        if not (np.array_equal(pcm, np.round(pcm)) and (pcm.size == 0 or (pcm.min() >= -32768 and pcm.max() <= 32767))):
            raise ExportError(f"the audio of video {row['video_id']} ({source}) is not 16-bit PCM like the first "
                              "segment's: export with --audio-format float32")
        samples = pcm.astype(np.int16)
    return {"array": samples, "sampling_rate": int(clip.sample_rate), "start_seconds": float(clip.start_s)}


def _segment_boxes(reader, row, numbers: np.ndarray) -> list[dict[str, list]] | None:
    keep_all = LayoutConfig(hand_threshold=0.0, object_threshold=0.0)
    try:
        frames = reader.read_boxes(row, numbers, keep_all)
    except FileDecodeError as error:
        if "not found" not in error.reason:  # a corrupt file is an error, a missing one a missing modality
            raise
        return None
    return [{key: value.tolist() for key, value in frame.items()} for frame in frames]


def _segment_rows(reader, metadata: datasets.Dataset, num_nouns: int, margin_s: float, audio_format: str
                  ) -> Iterator[dict[str, Any]]:
    """The exported rows of one split, read through the dataset's reader (its public sources: frame folders or tars,
    the audio file, the detections)."""
    for row in metadata:
        segment_id = str(row["segment_id"])
        start, stop = int(row["start_frame"]), int(row["stop_frame"])
        fps = reader.fps(row)
        numbers = np.arange(start, stop + 1)
        height, width = reader.frame_size(row)
        try:
            rgb = _frame_bytes(reader.rgb_store(row), numbers, segment_id)
            u_store, v_store = reader.flow_stores(row)
            flow_numbers = np.unique(rgb_to_flow_index(numbers, u_store.num_frames()))
            flow_u, flow_v = _frame_bytes(u_store, flow_numbers, segment_id), _frame_bytes(v_store, flow_numbers,
                                                                                            segment_id)
            start_s, stop_s = (start - 1) / fps, stop / fps
            audio = _segment_audio(reader, row, start_s, stop_s, margin_s, audio_format)
            boxes = _segment_boxes(reader, row, numbers)
        except (FileDecodeError, SampleDecodeError) as error:
            raise ExportError(f"segment {segment_id!r}: {error}") from None
        verb, noun = int(row["verb_class"]), int(row["noun_class"])
        yield {
            "index": int(row["index"]), "segment_id": segment_id, "participant_id": row["participant_id"],
            "video_id": row["video_id"], "narration": row.get("narration") or "",
            "start_frame": start, "stop_frame": stop, "start_seconds": start_s, "stop_seconds": stop_s, "fps": fps,
            "height": int(height), "width": int(width),
            "verb": verb, "noun": noun, "action": verb * num_nouns + noun if verb >= 0 and noun >= 0 else -1,
            "unseen_participant": bool(row.get("unseen_participant")), "tail_verb": bool(row.get("tail_verb")),
            "tail_noun": bool(row.get("tail_noun")),
            "rgb": rgb, "flow_start_frame": int(flow_numbers[0]), "flow_u": flow_u, "flow_v": flow_v,
            "audio": audio, "boxes": boxes,
        }


def _write_split(dataset: datasets.Dataset, folder: Path, split: str, max_shard_bytes: int
                 ) -> tuple[int, int, dict[str, str]]:
    """Parquet shards of ``dataset`` under ``folder/data``; returns (number of shards, bytes written, the shards'
    SHA-256 by path in the folder)."""
    num_shards = max(1, math.ceil(dataset.data.nbytes / max_shard_bytes))
    written = 0
    digests: dict[str, str] = {}
    for index in range(num_shards):
        path = folder / "data" / shard_name(split, index, num_shards)
        dataset.shard(num_shards, index, contiguous=True).to_parquet(str(path))
        written += path.stat().st_size
        digest = hashlib.sha256()
        with open(path, "rb") as handle:
            for block in iter(lambda: handle.read(2**22), b""):
                digest.update(block)
        digests[f"data/{path.name}"] = digest.hexdigest()
    return num_shards, written, digests


def _card(dataset: str, splits: dict[str, datasets.Dataset], sizes: dict[str, tuple[int, int]],
          features: datasets.Features, data_dir: Path, margin_s: float, audio_format: str,
          digests: dict[str, str]) -> str:
    card = render_dataset_card(dataset, splits=splits)
    metadata = card.data.to_dict()
    metadata["configs"] = [{"config_name": "default",
                            "data_files": [{"split": split, "path": f"data/{split}-*.parquet"} for split in splits]}]
    metadata["dataset_info"] = {
        "features": features._to_yaml_list(),
        "splits": [{"name": split, "num_bytes": sizes[split][1], "num_examples": table.num_rows}
                   for split, table in splits.items()],
        "dataset_size": sum(size for _, size in sizes.values()),
    }
    provenance: dict[str, Any] = {"exporter": COMMAND, "format_version": EXPORT_FORMAT_VERSION, "dataset": dataset,
                                  "audio_margin_seconds": float(margin_s), "audio_format": audio_format,
                                  "shards": dict(sorted(digests.items()))}
    marker = read_mini_kitchens_marker(data_dir) if dataset == "mini-kitchens" else None
    if marker:
        provenance["generator"] = {key: marker[key] for key in ("seed", "format_version", "config", "scale", "counts")
                                   if key in marker}
    metadata["mmkd_hf"] = provenance
    first = next(iter(splits))
    body = card.text.rstrip() + (
        "\n\n## This folder\n\n"
        "One row per segment with its labels (`ClassLabel`), ids, timing and every modality embedded: `rgb` "
        "(JPEG frames), `flow_u` / `flow_v` (JPEG optical flow at half the RGB rate, from flow frame "
        "`flow_start_frame`), `audio` (`array` of mono samples at `sampling_rate`, "
        + ("16-bit PCM: divide by 32768 for [-1, 1]" if audio_format == "int16" else "float32 in [-1, 1]")
        + ", the first at "
        f"`start_seconds` of the video, with {margin_s:g} s of context on each side of the segment), `boxes` "
        "(hand-object detections per RGB frame). Parquet shards: "
        + ", ".join(f"{split}: {table.num_rows} rows in {sizes[split][0]} shard(s)" for split, table in splits.items())
        + ".\n\n```python\nfrom datasets import load_dataset\n\n"
        f"ds = load_dataset(\"<this folder or repo id>\", split=\"{first}\")\n```\n\n"
        "Every column is a plain `datasets` feature (images decode with Pillow, audio needs no decoder). "
        "`mmkd_hf.data.load_dataset` turns the rows into the training clips of the source folder.\n")
    if dataset in NOT_REHOSTABLE:
        body += (f"\n## Licence: do not re-host\n\n{NOT_REHOSTABLE[dataset]} may not be re-distributed. This folder "
                 "is for your own storage or a private repo of your lab, for users who accepted the dataset's "
                 "licence; do not push it to a public repo.\n")
    front = yaml.safe_dump(metadata, sort_keys=False, allow_unicode=True)
    return f"---\n{front}---\n\n{body.lstrip()}"


def export_dataset(dataset: str, data_dir: str | os.PathLike, out: str | os.PathLike, *,
                   splits: Sequence[str] | None = None, max_shard_size: str | int = "500MB",
                   annotations_dir: str | os.PathLike | None = None,
                   audio_margin: float = DEFAULT_AUDIO_MARGIN_S, audio_format: str = "auto", log=print) -> Path:
    """Writes the Hub-ready folder ``out`` (atomically; a foreign non-empty ``out`` is refused).

    ``audio_margin``: seconds of audio kept on each side of a segment; training from the export needs at least
    half an audio window plus 0.05 s (0.608 s with the default 1.116 s windows). ``audio_format``: ``int16`` (16-bit
    PCM ``.wav`` sources, kept exactly), ``float32`` (any source) or ``auto`` (int16 when the first segment's audio is
    a 16-bit ``.wav``).

    Raises:
        ExportError: unsupported dataset, unknown split, a segment whose files cannot be read (named).
        ForeignFolderError: ``out`` is someone else's folder.
    """
    if dataset not in EXPORTABLE:
        raise ExportError(f"{dataset!r} cannot be exported (supported: {', '.join(EXPORTABLE)})")
    max_shard_bytes = convert_file_size_to_int(max_shard_size)
    if max_shard_bytes <= 0:
        raise ExportError(f"--max-shard-size must be positive, got {max_shard_size!r}")
    if not (math.isfinite(float(audio_margin)) and float(audio_margin) >= 0):
        raise ExportError(f"--audio-margin must be a number of seconds >= 0, got {audio_margin!r}")
    if audio_format not in AUDIO_FORMATS:
        raise ExportError(f"--audio-format: expected one of {', '.join(AUDIO_FORMATS)}, got {audio_format!r}")
    data_dir = Path(data_dir)
    metadata = build_metadata(dataset, data_dir=data_dir,
                              **({"annotations_dir": annotations_dir} if annotations_dir else {}))
    wanted = list(splits) if splits else list(metadata)
    unknown = [split for split in wanted if split not in metadata]
    if unknown:
        raise ExportError(f"{data_dir} has no split {', '.join(map(repr, unknown))} "
                          f"(available: {', '.join(metadata)})")
    first = metadata[wanted[0]]
    verbs, nouns = first.features["verb_class"].names, first.features["noun_class"].names
    if audio_format == "auto":
        audio_format = _audio_format(make_reader(dataset, first), first)
    features = export_features(verbs, nouns, audio_format)
    exported: dict[str, datasets.Dataset] = {}
    sizes: dict[str, tuple[int, int]] = {}
    digests: dict[str, str] = {}
    with output_directory(out, COMMAND) as stage, tempfile.TemporaryDirectory(prefix="mmkd-export-") as cache:
        (stage / "data").mkdir()
        for split in wanted:
            reader = make_reader(dataset, metadata[split])
            try:
                table = datasets.Dataset.from_generator(
                    _segment_rows, features=features, cache_dir=cache, keep_in_memory=False,
                    gen_kwargs={"reader": reader, "metadata": metadata[split], "num_nouns": len(nouns),
                                "margin_s": float(audio_margin), "audio_format": audio_format},
                    split=datasets.NamedSplit(split))
            except datasets.exceptions.DatasetGenerationError as error:  # our one-line error, not the wrapper
                if isinstance(error.__cause__, ExportError):
                    raise ExportError(f"{data_dir}: split {split!r}: {error.__cause__}") from None
                raise
            num_shards, written, split_digests = _write_split(table, stage, split, max_shard_bytes)
            sizes[split] = (num_shards, written)
            digests.update(split_digests)
            exported[split] = table
            log(f"[export] {split}: {table.num_rows} segments in {sizes[split][0]} shard(s), "
                f"{sizes[split][1] / 1e6:.1f} MB")
        final_features = next(iter(exported.values())).features
        (stage / "README.md").write_text(_card(dataset, exported, sizes, final_features, data_dir,
                                                     float(audio_margin), audio_format, digests), encoding="utf-8")
        exported.clear()
    return Path(out)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=COMMAND, description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", required=True, choices=EXPORTABLE)
    parser.add_argument("--data-dir", required=True, help="the dataset folder (as for train.py --data_dir)")
    parser.add_argument("--annotations-dir", default=None, help="EPIC-KITCHENS-100 annotation folder, if separate")
    parser.add_argument("--out", required=True, help="the folder to write (new, empty, or an earlier export)")
    parser.add_argument("--split", default=None, help="comma-separated splits (default: all)")
    parser.add_argument("--max-shard-size", default="500MB", help="largest Parquet shard (default 500MB)")
    parser.add_argument("--audio-margin", type=float, default=DEFAULT_AUDIO_MARGIN_S,
                        help="seconds of audio kept on each side of a segment, for the audio windows of training "
                             f"(default {DEFAULT_AUDIO_MARGIN_S:g}; they need half a window + 0.05 s)")
    parser.add_argument("--audio-format", default="auto", choices=AUDIO_FORMATS,
                        help="samples as int16 PCM (16-bit .wav sources, exact) or float32 (any source); auto picks "
                             "int16 for 16-bit .wav audio")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(list(sys.argv[1:] if argv is None else argv))
    splits = [s.strip() for s in args.split.split(",") if s.strip()] if args.split else None
    try:
        out = export_dataset(args.dataset, args.data_dir, args.out, splits=splits, max_shard_size=args.max_shard_size,
                             annotations_dir=args.annotations_dir, audio_margin=args.audio_margin,
                             audio_format=args.audio_format)
    except (ExportError, ForeignFolderError, FileNotFoundError, ValueError) as err:
        print(f"{COMMAND}: error: {str(err).removeprefix(f'{COMMAND}: ')}", file=sys.stderr)
        return 2
    print(f"[export] done: {out}")
    return 0


__all__ = ["ExportError", "export_dataset", "export_features", "main"]
