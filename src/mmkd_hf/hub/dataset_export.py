"""``mmkd-hf export-dataset``: a dataset folder that ``datasets.load_dataset`` reads with no code of ours.

The folder holds one row per segment, with every modality embedded as data ``datasets`` decodes itself, in
Parquet shards ``data/<split>-0000i-of-0000N.parquet`` (the layout of ``Dataset.push_to_hub``) and a
``README.md`` whose YAML declares ``configs`` / ``data_files`` per split, the features, the splits and their
sizes, the licence and, for mini-kitchens, the generator's settings::

    from datasets import load_dataset
    ds = load_dataset("OUT", split="validation")   # or the repo id once the folder is on the Hub

Columns: ``segment_id``, ``participant_id``, ``video_id``, ``narration``, ``start_frame``, ``stop_frame``,
``start_seconds``, ``stop_seconds``, ``fps``; labels ``verb``, ``noun`` (and ``action`` = ``verb * num_nouns +
noun``) as ``ClassLabel``; ``rgb``: the segment's JPEG frames (``List(Image())``, every frame from
``start_frame`` to ``stop_frame``); ``flow_u`` / ``flow_v``: the JPEG optical-flow frames covering the segment
(flow runs at half the RGB rate, as in EPIC-KITCHENS-100); ``audio``: the segment's sound as WAV bytes
(``Audio()``); ``boxes``: per RGB frame the hand-object detections (``boxes`` [N, 4] as fractions x1, y1, x2,
y2, ``scores``, ``categories``, ``sides``, ``states``), unfiltered.

Supported: mini-kitchens and EPIC-KITCHENS-100 (the EPIC layout). EPIC-KITCHENS-100 may not be re-hosted: its
folder is written the same way for a lab's own storage or a private repo, and its card says so.

Usage::

    mmkd-hf export-dataset --dataset mini-kitchens --data-dir DIR --out OUT [--split train,validation]
        [--max-shard-size 500MB]
"""

from __future__ import annotations

import argparse
import io
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
from ..data.decoding import read_audio
from ..data.hub_dataset import EXPORT_FORMAT_VERSION, shard_name
from ..data.sampling import rgb_to_flow_index
from ..data.builders import read_mini_kitchens_marker
from ..utils import ForeignFolderError, output_directory
from .cards import render_dataset_card

COMMAND = "mmkd-hf export-dataset"
#: Datasets in the EPIC layout that can be exported.
EXPORTABLE = ("mini-kitchens", "epic-kitchens-100")
#: Datasets whose licence forbids re-hosting: exported for local or private use only.
NOT_REHOSTABLE = {"epic-kitchens-100": "EPIC-KITCHENS-100 (CC BY-NC 4.0)"}
#: Above this many (verb, noun) pairs, ``action`` is a plain integer instead of a ClassLabel.
MAX_ACTION_NAMES = 10_000


class ExportError(ValueError):
    """An export that cannot proceed, with a one-line message meant for the user."""


def export_features(verbs: Sequence[str], nouns: Sequence[str]) -> datasets.Features:
    """The features of an exported dataset (``audio`` is cast to ``Audio()`` after writing the rows)."""
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
        "segment_id": datasets.Value("string"),
        "participant_id": datasets.Value("string"),
        "video_id": datasets.Value("string"),
        "narration": datasets.Value("string"),
        "start_frame": datasets.Value("int64"),
        "stop_frame": datasets.Value("int64"),
        "start_seconds": datasets.Value("float64"),
        "stop_seconds": datasets.Value("float64"),
        "fps": datasets.Value("float64"),
        "verb": datasets.ClassLabel(names=list(verbs)),
        "noun": datasets.ClassLabel(names=list(nouns)),
        "action": action,
        "rgb": frames,
        "flow_u": frames,
        "flow_v": frames,
        "audio": {"bytes": datasets.Value("binary"), "path": datasets.Value("string")},
        "boxes": datasets.List(detections),
    })


def _wav_bytes(samples: np.ndarray, sample_rate: int) -> bytes:
    """16-bit mono PCM WAV of a float waveform in [-1, 1]."""
    pcm = (np.clip(samples, -1.0, 1.0) * 32767.0).astype("<i2")
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(int(sample_rate))
        out.writeframes(pcm.tobytes())
    return buffer.getvalue()


def _frame_bytes(store, numbers: Sequence[int]) -> list[dict[str, Any]]:
    return [{"bytes": store.read_bytes(int(n)), "path": f"frame_{int(n):010d}.jpg"} for n in numbers]


def _segment_rows(reader, metadata: datasets.Dataset, num_nouns: int) -> Iterator[dict[str, Any]]:
    """The exported rows of one split, read through the dataset's own reader (folders, tars, videos)."""
    keep_all = LayoutConfig(hand_threshold=0.0, object_threshold=0.0)
    for row in metadata:
        start, stop = int(row["start_frame"]), int(row["stop_frame"])
        fps = reader.fps(row)
        numbers = np.arange(start, stop + 1)
        rgb = _frame_bytes(reader._rgb_store(row), numbers)
        u_store, v_store = reader._flow_stores(row)
        flow_numbers = np.unique(rgb_to_flow_index(numbers, u_store.num_frames()))
        start_s, stop_s = (start - 1) / fps, stop / fps
        clip = read_audio(reader._audio_path(row), start_s, stop_s)
        verb, noun = int(row["verb_class"]), int(row["noun_class"])
        yield {
            "segment_id": str(row["segment_id"]), "participant_id": row["participant_id"],
            "video_id": row["video_id"], "narration": row.get("narration") or "",
            "start_frame": start, "stop_frame": stop, "start_seconds": start_s, "stop_seconds": stop_s, "fps": fps,
            "verb": verb, "noun": noun, "action": verb * num_nouns + noun if verb >= 0 and noun >= 0 else -1,
            "rgb": rgb, "flow_u": _frame_bytes(u_store, flow_numbers), "flow_v": _frame_bytes(v_store, flow_numbers),
            "audio": {"bytes": _wav_bytes(clip.samples, clip.sample_rate), "path": f"{row['segment_id']}.wav"},
            "boxes": [{key: value.tolist() for key, value in frame.items()}
                      for frame in reader.read_boxes(row, numbers, keep_all)],
        }


def _write_split(dataset: datasets.Dataset, folder: Path, split: str, max_shard_bytes: int) -> tuple[int, int]:
    """Parquet shards of ``dataset`` under ``folder/data``; returns (number of shards, bytes written)."""
    num_shards = max(1, math.ceil(dataset.data.nbytes / max_shard_bytes))
    written = 0
    for index in range(num_shards):
        path = folder / "data" / shard_name(split, index, num_shards)
        dataset.shard(num_shards, index, contiguous=True).to_parquet(str(path))
        written += path.stat().st_size
    return num_shards, written


def _card(dataset: str, splits: dict[str, datasets.Dataset], sizes: dict[str, tuple[int, int]],
          features: datasets.Features, data_dir: Path) -> str:
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
    provenance: dict[str, Any] = {"exporter": COMMAND, "format_version": EXPORT_FORMAT_VERSION, "dataset": dataset}
    marker = read_mini_kitchens_marker(data_dir) if dataset == "mini-kitchens" else None
    if marker:
        provenance["generator"] = {key: marker[key] for key in ("seed", "format_version", "config", "scale", "counts")
                                   if key in marker}
    metadata["mmkd_hf"] = provenance
    first = next(iter(splits))
    body = card.text.rstrip() + (
        "\n\n## This folder\n\n"
        "One row per segment with its labels (`ClassLabel`), ids, timing and every modality embedded: `rgb` "
        "(JPEG frames), `flow_u` / `flow_v` (JPEG optical flow at half the RGB rate), `audio` (WAV), `boxes` "
        "(hand-object detections per RGB frame). Parquet shards: "
        + ", ".join(f"{split}: {table.num_rows} rows in {sizes[split][0]} shard(s)" for split, table in splits.items())
        + ".\n\n```python\nfrom datasets import load_dataset\n\n"
        f"ds = load_dataset(\"<this folder or repo id>\", split=\"{first}\")\n```\n\n"
        "Decoding `audio` needs `torchcodec` (`pip install \"datasets[audio]\"`); without it, "
        "`ds.cast_column(\"audio\", Audio(decode=False))` gives the WAV bytes.\n")
    if dataset in NOT_REHOSTABLE:
        body += (f"\n## Licence: do not re-host\n\n{NOT_REHOSTABLE[dataset]} may not be re-distributed. This folder "
                 "is for your own storage or a private repo of your lab, for users who accepted the dataset's "
                 "licence; do not push it to a public repo.\n")
    front = yaml.safe_dump(metadata, sort_keys=False, allow_unicode=True)
    return f"---\n{front}---\n\n{body.lstrip()}"


def export_dataset(dataset: str, data_dir: str | os.PathLike, out: str | os.PathLike, *,
                   splits: Sequence[str] | None = None, max_shard_size: str | int = "500MB",
                   annotations_dir: str | os.PathLike | None = None, log=print) -> Path:
    """Writes the Hub-ready folder ``out`` (atomically; a foreign non-empty ``out`` is refused).

    Raises:
        ExportError: unsupported dataset, unknown split. ForeignFolderError: ``out`` is someone else's folder.
    """
    if dataset not in EXPORTABLE:
        raise ExportError(f"{dataset!r} cannot be exported (supported: {', '.join(EXPORTABLE)})")
    max_shard_bytes = convert_file_size_to_int(max_shard_size)
    if max_shard_bytes <= 0:
        raise ExportError(f"--max-shard-size must be positive, got {max_shard_size!r}")
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
    features = export_features(verbs, nouns)
    exported: dict[str, datasets.Dataset] = {}
    sizes: dict[str, tuple[int, int]] = {}
    with output_directory(out, COMMAND) as stage, tempfile.TemporaryDirectory(prefix="mmkd-export-") as cache:
        (stage / "data").mkdir()
        for split in wanted:
            reader = make_reader(dataset, metadata[split])
            table = datasets.Dataset.from_generator(
                _segment_rows, features=features, cache_dir=cache, keep_in_memory=False,
                gen_kwargs={"reader": reader, "metadata": metadata[split], "num_nouns": len(nouns)},
                split=datasets.NamedSplit(split))
            table = table.cast_column("audio", datasets.Audio())
            sizes[split] = _write_split(table, stage, split, max_shard_bytes)
            exported[split] = table
            log(f"[export] {split}: {table.num_rows} segments in {sizes[split][0]} shard(s), "
                f"{sizes[split][1] / 1e6:.1f} MB")
        final_features = next(iter(exported.values())).features
        (stage / "README.md").write_text(_card(dataset, exported, sizes, final_features, data_dir), encoding="utf-8")
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
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(list(sys.argv[1:] if argv is None else argv))
    splits = [s.strip() for s in args.split.split(",") if s.strip()] if args.split else None
    try:
        out = export_dataset(args.dataset, args.data_dir, args.out, splits=splits, max_shard_size=args.max_shard_size,
                             annotations_dir=args.annotations_dir)
    except (ExportError, ForeignFolderError, FileNotFoundError, ValueError) as err:
        print(f"{COMMAND}: error: {str(err).removeprefix(f'{COMMAND}: ')}", file=sys.stderr)
        return 2
    print(f"[export] done: {out}")
    return 0


__all__ = ["ExportError", "export_dataset", "export_features", "main"]
