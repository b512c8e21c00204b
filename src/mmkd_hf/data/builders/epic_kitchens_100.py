"""EPIC-KITCHENS-100 action recognition: a ``datasets`` builder of segment metadata + a lazy reader.

``data_dir`` is the folder the official downloader wrote (holding ``EPIC-KITCHENS/<P>/``) or the folder holding
the participant folders ``<P>/`` directly. The annotation CSVs come from their own repository
(github.com/epic-kitchens/epic-kitchens-100-annotations): they are looked up in ``annotations_dir`` when given,
else in ``data_dir``, ``data_dir/annotations`` or ``data_dir/epic-kitchens-100-annotations`` (see
:func:`resolve_layout`).

Annotation files: ``EPIC_100_train.csv``,
``EPIC_100_validation.csv``, ``EPIC_100_test_timestamps.csv`` (no labels; each split is produced when its
CSV exists), ``EPIC_100_{verb,noun}_classes.csv`` (class names), ``EPIC_100_video_info.csv`` (each
video's own fps and resolution) and, when present, ``EPIC_100_unseen_participant_ids_*.csv`` and
``EPIC_100_tail_{verbs,nouns}.csv`` (flags passed through for evaluation).

Rows are metadata only; nothing under the participant folders is read while preparing. At access the
reader looks for, in this order (paths relative to the participants' folder, ``<P>`` participant, ``<V>``
video id, frame numbers 1-based):

* RGB: ``<P>/rgb_frames/<V>/frame_%010d.jpg``, ``rgb_frames/<P>/<V>/...``, the un-extracted
  ``<P>/rgb_frames/<V>.tar`` (indexed once, members read at random), or ``<P>/videos/<V>.MP4`` (PyAV).
* Flow: ``<P>/flow_frames/<V>/{u,v}/frame_%010d.jpg`` (or ``flow_frames/<P>/<V>/...``, or
  ``<P>/flow_frames/<V>.tar`` with members ``u/…``, ``v/…``). Flow is at half the RGB rate: RGB frame
  ``i`` uses flow frame ``min(max(ceil(i / 2), 1), n_flow)`` (see :mod:`mmkd_hf.data.sampling`).
* Audio: ``<P>/videos/<V>.wav`` (or ``<P>/audio/<V>.wav``), else the audio track of ``<P>/videos/<V>.MP4``.
  Frame ``i`` is at ``(i - 1) / frame_rate`` seconds, where ``frame_rate`` is the rate of the CSV's frame
  numbering, estimated per video from ``start_frame / start_timestamp`` (60.0 for every real EPIC-100
  video, whatever its native ``fps`` in ``EPIC_100_video_info.csv``, which is kept in the ``fps`` column);
  videos with no row after 5 s use the video_info fps.
* Hand-object detections: ``<P>/hand-objects/<V>.pkl`` (or ``hand-objects/<P>/<V>.pkl``): the official
  pickled list of serialised protobuf ``Detections``, element ``i - 1`` for frame ``i``; frames past the
  end of the list have no detections.

Labels: ``verb``, ``noun`` and ``action = verb * num_nouns + noun`` (a fixed pairing, independent of the
split); the test split has no labels (-1).
"""

from __future__ import annotations

import ast
import math
import os
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

import datasets
import numpy as np
import torch

from ..audio import audio_windows_for_segment, warn_once
from ..configs import AudioConfig, LayoutConfig
from ..decoding import (
    FileDecodeError,
    FolderFrames,
    FrameStore,
    TarFrames,
    VideoFrames,
    last_frame_number,
    tar_problem,
    video_stream_frames,
)
from ..detections import DetectionThresholds, frame_layout, load_video_detections
from ..errors import DataFormatError, SampleDecodeError
from ..sampling import rgb_to_flow_index
from ..source_check import MissingSource
from ..transforms import SampleReader
from .common import (
    LocalDataBuilderMixin,
    find_file,
    parse_float,
    parse_int,
    read_csv_rows,
    require_file,
    verb_noun_labels,
)

__all__ = ["EpicKitchens100", "EpicKitchensConfig", "EpicKitchensReader", "EpicLayout", "CARD_INFO",
           "annotation_files", "resolve_layout"]

CARD_INFO = {
    "pretty_name": "EPIC-KITCHENS-100 (action recognition)",
    "description": (
        "EPIC-KITCHENS-100: 100 hours of unscripted egocentric video of 45 kitchens (37 participants), "
        "annotated with 89,977 action segments labelled by a verb (97 classes) and a noun (300 classes). "
        "This loader yields segment metadata (ids, frame range, per-video fps, labels) and decodes RGB "
        "frames, TV-L1 optical flow, audio and hand-object detections lazily."
    ),
    "citation": (
        "@article{Damen2022RESCALING,\n"
        "  title={Rescaling Egocentric Vision: Collection, Pipeline and Challenges for EPIC-KITCHENS-100},\n"
        "  author={Damen, Dima and Doughty, Hazel and Farinella, Giovanni Maria and Furnari, Antonino and "
        "Ma, Jian and Kazakos, Evangelos and Moltisanti, Davide and Munro, Jonathan and Perrett, Toby and "
        "Price, Will and Wray, Michael},\n"
        "  journal={International Journal of Computer Vision (IJCV)},\n"
        "  volume={130},\n  pages={33--55},\n  year={2022}\n}"
    ),
    "homepage": "https://epic-kitchens.github.io/",
    "license": "cc-by-nc-4.0",
    "license_name": "Creative Commons Attribution-NonCommercial 4.0 International",
}

SPLIT_FILES = {
    "train": ["EPIC_100_train.csv"],
    "validation": ["EPIC_100_validation.csv"],
    "test": ["EPIC_100_test_timestamps.csv"],
}
SEGMENT_COLUMNS = ["narration_id", "participant_id", "video_id", "start_timestamp", "stop_timestamp",
                   "start_frame", "stop_frame"]
LABEL_COLUMNS = ["verb_class", "noun_class"]


#: the folder of participant folders in the official download
DOWNLOAD_FOLDER = "EPIC-KITCHENS"
#: where the annotations are looked for under ``data_dir`` when ``annotations_dir`` is not given
ANNOTATION_SUBDIRS = ("", "annotations", "epic-kitchens-100-annotations")
ANNOTATIONS_REPOSITORY = "github.com/epic-kitchens/epic-kitchens-100-annotations"
#: annotation files without which nothing can be read
REQUIRED_FILES = ("EPIC_100_verb_classes.csv", "EPIC_100_noun_classes.csv", "EPIC_100_video_info.csv")
#: the participant sub-folders of the download
MEDIA_FOLDERS = ("rgb_frames", "flow_frames", "videos", "hand-objects")


@dataclass(frozen=True)
class EpicLayout:
    """Where the parts of an EPIC-KITCHENS-100 copy are: ``annotations`` holds the ``EPIC_100_*.csv`` files,
    ``media`` the participant folders ``<P>/{rgb_frames,flow_frames,videos,hand-objects}``."""

    annotations: Path
    media: Path


def _has_participants(folder: Path) -> bool:
    try:
        children = [c for c in folder.iterdir() if c.is_dir()]
    except OSError:
        return False
    return any((c / sub).is_dir() for c in children for sub in MEDIA_FOLDERS) or any(
        (folder / sub).is_dir() for sub in ("rgb_frames", "flow_frames"))


def resolve_layout(data_dir: str | os.PathLike, annotations_dir: str | os.PathLike | None = None) -> EpicLayout:
    """Find the annotation folder and the participants' folder of an EPIC-KITCHENS-100 copy.

    * participants: ``data_dir/EPIC-KITCHENS/<P>/`` (the official downloader's layout) when that folder
      exists, else ``data_dir/<P>/``;
    * annotations: ``annotations_dir`` when given, else the first of ``data_dir``, ``data_dir/annotations``,
      ``data_dir/epic-kitchens-100-annotations`` holding ``EPIC_100_*.csv`` files (and, when ``data_dir`` is the
      download's ``EPIC-KITCHENS`` folder itself, the same three places in its parent).

    Raises a one-line :class:`DataFormatError` when no annotations are found (naming every folder looked in) or
    when the annotation folder lacks the class lists / video info (naming the files and where they come from).
    """
    root = Path(data_dir)
    media = root / DOWNLOAD_FOLDER if (root / DOWNLOAD_FOLDER).is_dir() else root
    if annotations_dir is not None:
        annotations = Path(annotations_dir).expanduser()
        if not annotations.is_dir():
            raise DataFormatError(annotations, "annotations folder not found (annotations_dir / --annotations-dir: "
                                               f"a clone of {ANNOTATIONS_REPOSITORY})")
    else:
        tried = [root / sub if sub else root for sub in ANNOTATION_SUBDIRS]
        if root.name == DOWNLOAD_FOLDER:  # given the participants' folder of a download: the annotations beside it
            tried += [root.parent / sub if sub else root.parent for sub in ANNOTATION_SUBDIRS]
        found = [folder for folder in tried if folder.is_dir() and any(folder.glob("EPIC_100_*.csv"))]
        if not found:
            looked = ", ".join(str(t) for t in tried)
            if media != root or _has_participants(root):
                raise DataFormatError(root, f"participant folders found but no EPIC_100_*.csv annotations (looked in "
                                            f"{looked}); clone {ANNOTATIONS_REPOSITORY} into {root / 'annotations'} or "
                                            "pass annotations_dir= (train.py --annotations_dir, mmkd-hf evaluate "
                                            "--annotations-dir)")
            raise DataFormatError(root, f"not an EPIC-KITCHENS-100 folder: looked for the download layout "
                                        f"({root / DOWNLOAD_FOLDER}/<P>/rgb_frames, ...) or participant folders "
                                        f"<P>/rgb_frames, and for EPIC_100_*.csv annotations in {looked}")
        annotations = found[0]
    missing = [name for name in REQUIRED_FILES if not (annotations / name).is_file()]
    if missing:
        raise DataFormatError(annotations, f"annotations folder lacks {missing}: they come from the EPIC-KITCHENS-100 "
                                           f"annotations repository ({ANNOTATIONS_REPOSITORY}); copy them here or "
                                           "point annotations_dir at a clone of it")
    if not any((annotations / names[0]).is_file() for names in SPLIT_FILES.values()):
        splits = [names[0] for names in SPLIT_FILES.values()]
        raise DataFormatError(annotations, f"annotations folder has none of the split files {splits} (from "
                                           f"{ANNOTATIONS_REPOSITORY})")
    return EpicLayout(annotations=annotations.resolve(), media=media.resolve())


def annotation_files(data_dir: str | os.PathLike, annotations_dir: str | os.PathLike | None = None
                     ) -> dict[str, Path | None]:
    """Locate every annotation file the builder uses (None when absent); see :func:`resolve_layout`."""
    root = resolve_layout(data_dir, annotations_dir).annotations
    names = {
        "verb_classes": "EPIC_100_verb_classes.csv",
        "noun_classes": "EPIC_100_noun_classes.csv",
        "video_info": "EPIC_100_video_info.csv",
        "unseen_validation": "EPIC_100_unseen_participant_ids_validation.csv",
        "unseen_test": "EPIC_100_unseen_participant_ids_test.csv",
        "tail_verbs": "EPIC_100_tail_verbs.csv",
        "tail_nouns": "EPIC_100_tail_nouns.csv",
    }
    found = {key: find_file(root, [name], ("",)) for key, name in names.items()}
    for split, split_names in SPLIT_FILES.items():
        found[split] = find_file(root, split_names, ("",))
    return found


def _class_names(path: Path) -> list[str]:
    rows = list(read_csv_rows(path, ["id", "key"]))
    names: dict[int, str] = {}
    for line, row in rows:
        names[parse_int(row["id"], path, "id", None, line)] = row["key"]
    if sorted(names) != list(range(len(names))):
        raise DataFormatError(path, f"class ids must be 0..{len(names) - 1} without gaps")
    return [names[i] for i in range(len(names))]


def _id_set(path: Path | None, column: str) -> set[str]:
    if path is None:
        return set()
    return {row[column].strip() for _, row in read_csv_rows(path, [column], allow_empty=True)}


def _video_info(path: Path) -> dict[str, tuple[float, float, int, int]]:
    info = {}
    for line, row in read_csv_rows(path, ["video_id", "fps"]):
        fps = parse_float(row["fps"], path, "fps", row["video_id"], line)
        if not fps > 0:
            raise DataFormatError(path, f"line {line}, column 'fps': expected > 0, got {fps}", row["video_id"])
        width = height = -1
        resolution = (row.get("resolution") or "").lower()
        if "x" in resolution:
            w, h = resolution.split("x", 1)
            if w.strip().isdigit() and h.strip().isdigit():
                width, height = int(w), int(h)
        duration = -1.0
        if row.get("duration"):
            duration = parse_float(row["duration"], path, "duration", row["video_id"], line)
        info[row["video_id"]] = (fps, duration, width, height)
    return info


def _seconds(timestamp: str) -> float | None:
    """``HH:MM:SS.ff`` -> seconds (None if unparsable)."""
    try:
        h, m, sec = str(timestamp).strip().split(":")
        return int(h) * 3600 + int(m) * 60 + float(sec)
    except (ValueError, AttributeError):
        return None


def estimate_frame_rates(rows: list[dict[str, str]], min_seconds: float = 5.0) -> dict[str, float]:
    """Per video: the rate of the CSV's frame numbering, median of ``start_frame / start_seconds``.

    The real EPIC-100 CSVs number frames at 60 per second for every video, whatever its native fps in
    ``EPIC_100_video_info.csv`` (29.97, 47.95, 59.94 and 90 fps videos all give 60.0 on the validation
    set), so times are computed with this rate. Rows starting before ``min_seconds`` are too imprecise
    and ignored; videos without a usable row fall back to the video_info fps.
    """
    ratios: dict[str, list[float]] = {}
    for row in rows:
        seconds = _seconds(row.get("start_timestamp", ""))
        try:
            frame = int(row["start_frame"])
        except (KeyError, ValueError):
            continue
        if seconds is not None and seconds >= min_seconds:
            ratios.setdefault(row["video_id"], []).append(frame / seconds)
    return {video: float(np.median(values)) for video, values in ratios.items()}


def _literal_list(value: str | None, path: Path, column: str, sample_id: str, line: int | None = None) -> list:
    if not value:
        return []
    where = f"line {line}, " if line is not None else ""
    try:
        parsed = ast.literal_eval(value)  # literals only: safe
    except (ValueError, SyntaxError, MemoryError, RecursionError):
        raise DataFormatError(path, f"{where}column {column!r}: expected a Python list literal, got {value!r}",
                              sample_id) from None
    if not isinstance(parsed, (list, tuple)):
        raise DataFormatError(path, f"{where}column {column!r}: expected a list, got {value!r}", sample_id)
    return list(parsed)


def _class_ids(values, path: Path, column: str, sample_id: str | None, line: int | None = None) -> list[int]:
    return [parse_int(value, path, column, sample_id, line) for value in values]


@dataclass
class EpicKitchensConfig(datasets.BuilderConfig):
    """``data_dir`` = the download (or participants') folder; ``annotations_dir`` = the annotation CSVs' folder
    when they are not inside ``data_dir`` (see :func:`resolve_layout`)."""

    annotations_dir: Optional[str] = None


class EpicKitchens100(LocalDataBuilderMixin, datasets.GeneratorBasedBuilder):
    """Segment metadata of EPIC-KITCHENS-100 (or any folder in its layout, e.g. mini-kitchens)."""

    # 1.1.0: ``data_root`` is the participants' folder (``EPIC-KITCHENS/`` of a download), not ``data_dir``
    VERSION = datasets.Version("1.1.0")
    BUILDER_CONFIG_CLASS = EpicKitchensConfig
    CARD = CARD_INFO
    DATA_DIR_HINT = "the folder the official downloader wrote, or the folder holding the EPIC_100_*.csv files"

    def _layout(self) -> EpicLayout:
        return resolve_layout(self._data_dir(), self.config.annotations_dir)

    def _info(self) -> datasets.DatasetInfo:
        root = self._layout().annotations
        verbs = _class_names(require_file(root, ["EPIC_100_verb_classes.csv"], "verb class list", ("",)))
        nouns = _class_names(require_file(root, ["EPIC_100_noun_classes.csv"], "noun class list", ("",)))
        features = datasets.Features({
            "index": datasets.Value("int64"),
            "segment_id": datasets.Value("string"),
            "participant_id": datasets.Value("string"),
            "video_id": datasets.Value("string"),
            "narration_timestamp": datasets.Value("string"),
            "start_timestamp": datasets.Value("string"),
            "stop_timestamp": datasets.Value("string"),
            "start_frame": datasets.Value("int64"),
            "stop_frame": datasets.Value("int64"),
            "fps": datasets.Value("float64"),
            "frame_rate": datasets.Value("float64"),
            "video_duration": datasets.Value("float64"),
            "width": datasets.Value("int32"),
            "height": datasets.Value("int32"),
            "narration": datasets.Value("string"),
            "verb": datasets.Value("string"),
            "noun": datasets.Value("string"),
            "verb_class": datasets.ClassLabel(names=verbs),
            "noun_class": datasets.ClassLabel(names=nouns),
            "action_class": datasets.Value("int64"),
            "all_nouns": datasets.List(datasets.Value("string")),
            "all_noun_classes": datasets.List(datasets.Value("int64")),
            "unseen_participant": datasets.Value("bool"),
            "tail_verb": datasets.Value("bool"),
            "tail_noun": datasets.Value("bool"),
            "data_root": datasets.Value("string"),
        })
        return datasets.DatasetInfo(description=CARD_INFO["description"], citation=CARD_INFO["citation"],
                                    homepage=CARD_INFO["homepage"], license=CARD_INFO["license"],
                                    features=features)

    def _split_generators(self, dl_manager):
        files = annotation_files(self._data_dir(), self.config.annotations_dir)  # resolve_layout checks them
        splits = [s for s in SPLIT_FILES if files[s] is not None]
        return [datasets.SplitGenerator(name=s, gen_kwargs={"split": s, "files": files}) for s in splits]

    def _generate_examples(self, split: str, files: dict):
        root = self._layout().media
        path: Path = files[split]
        num_verbs = self.info.features["verb_class"].num_classes
        num_nouns = self.info.features["noun_class"].num_classes
        video_info = _video_info(files["video_info"])
        unseen = _id_set(files.get(f"unseen_{split}"), "participant_id") if split != "train" else set()
        tail_verbs = set(_class_ids(_id_set(files.get("tail_verbs"), "verb"), files.get("tail_verbs"), "verb", None))
        tail_nouns = set(_class_ids(_id_set(files.get("tail_nouns"), "noun"), files.get("tail_nouns"), "noun", None))
        labelled = split != "test"
        required = SEGMENT_COLUMNS + (LABEL_COLUMNS if labelled else [])
        seen_ids: set[str] = set()
        rows = list(read_csv_rows(path, required))
        frame_rates = estimate_frame_rates([row for _, row in rows])
        for index, (line, row) in enumerate(rows):
            sid = row["narration_id"]
            if sid in seen_ids:
                raise DataFormatError(path, f"duplicate narration_id on line {line}", sid)
            seen_ids.add(sid)
            start = parse_int(row["start_frame"], path, "start_frame", sid, line)
            stop = parse_int(row["stop_frame"], path, "stop_frame", sid, line)
            if start < 1 or stop < start:
                raise DataFormatError(path, f"line {line}: expected 1 <= start_frame <= stop_frame, got "
                                            f"{start}..{stop}", sid)
            video = row["video_id"]
            if video not in video_info:
                raise DataFormatError(files["video_info"], f"video {video!r} (used by line {line} of {path.name}) "
                                                           "has no fps entry", sid)
            fps, duration, width, height = video_info[video]
            verb_class = noun_class = action = -1
            if labelled:
                verb_class = parse_int(row["verb_class"], path, "verb_class", sid, line)
                noun_class = parse_int(row["noun_class"], path, "noun_class", sid, line)
                if not 0 <= verb_class < num_verbs:
                    raise DataFormatError(path, f"verb_class {verb_class} outside the {num_verbs} verb classes", sid)
                if not 0 <= noun_class < num_nouns:
                    raise DataFormatError(path, f"noun_class {noun_class} outside the {num_nouns} noun classes", sid)
                action = verb_class * num_nouns + noun_class
            noun_classes = _literal_list(row.get("all_noun_classes"), path, "all_noun_classes", sid, line)
            all_noun_classes = _class_ids(noun_classes, path, "all_noun_classes", sid, line)
            yield sid, {
                "index": index,
                "segment_id": sid,
                "participant_id": row["participant_id"],
                "video_id": video,
                "narration_timestamp": row.get("narration_timestamp") or "",
                "start_timestamp": row["start_timestamp"],
                "stop_timestamp": row["stop_timestamp"],
                "start_frame": start,
                "stop_frame": stop,
                "fps": fps,
                "frame_rate": frame_rates.get(video, fps),
                "video_duration": duration,
                "width": width,
                "height": height,
                "narration": row.get("narration") or "",
                "verb": row.get("verb") or "",
                "noun": row.get("noun") or "",
                "verb_class": verb_class,
                "noun_class": noun_class,
                "action_class": action,
                "all_nouns": [str(x) for x in _literal_list(row.get("all_nouns"), path, "all_nouns", sid, line)],
                "all_noun_classes": all_noun_classes,
                "unseen_participant": row["participant_id"] in unseen,
                "tail_verb": verb_class in tail_verbs,
                "tail_noun": noun_class in tail_nouns,
                "data_root": str(root),
            }


EPIC_FRAME_PATTERN = "frame_%010d.jpg"


def _flow_frames_needed(stop_frame: int) -> int:
    """The flow frames a segment ending at RGB frame ``stop_frame`` needs: flow runs at half the RGB rate
    (frame ``ceil(i / 2)``); the last one may be missing (reading clamps to the last flow frame)."""
    return max(1, math.ceil(stop_frame / 2) - 1)


class EpicKitchensReader(SampleReader):
    """Lazy access to the pixels/flow/audio/boxes of one EPIC metadata row (see the module docstring)."""

    default_sampler = "stride"

    def __init__(self, num_verbs: int = 97, num_nouns: int = 300):
        self.num_verbs = num_verbs
        self.num_nouns = num_nouns
        self._stores: dict[tuple, object] = {}

    @classmethod
    def from_features(cls, features: datasets.Features) -> "EpicKitchensReader":
        return cls(features["verb_class"].num_classes, features["noun_class"].num_classes)

    def __getstate__(self):  # do not ship per-process caches to workers
        state = dict(self.__dict__)
        state["_stores"] = {}
        return state

    def sample_id(self, row: dict) -> str:
        return str(row["segment_id"])

    def segment(self, row: dict) -> tuple[int, int]:
        return int(row["start_frame"]), int(row["stop_frame"]) - int(row["start_frame"]) + 1

    def frame_size(self, row: dict) -> tuple[int, int]:
        h, w = int(row.get("height") or -1), int(row.get("width") or -1)
        return (h, w) if h > 0 and w > 0 else (256, 456)

    def fps(self, row: dict) -> float:
        """Frames per second of the CSV's frame numbering (``frame_rate``; see estimate_frame_rates)."""
        return float(row.get("frame_rate") or row["fps"])

    # ---- locating files (public: ``mmkd-hf export-dataset`` reads a row's sources through these)
    @staticmethod
    def _dirs(row: dict, kind: str) -> list[Path]:
        root, p, v = Path(row["data_root"]), row["participant_id"], row["video_id"]
        return [root / p / kind / v, root / kind / p / v]

    def rgb_store(self, row: dict) -> FrameStore:
        """The RGB frames of the row's video (frame folder, ``.tar`` or video file; cached per video).

        Raises:
            FileDecodeError: no frame folder, ``.tar`` or video file in any of the layout's places.
        """
        key = ("rgb", row["data_root"], row["video_id"])
        if key not in self._stores:
            self._stores[key] = self._find_rgb(row)
        return self._stores[key]

    def _find_rgb(self, row: dict) -> FrameStore:
        candidates = self._dirs(row, "rgb_frames")
        for folder in candidates:
            if folder.is_dir():
                return FolderFrames(folder, EPIC_FRAME_PATTERN)
        for folder in candidates:
            tar = folder.with_suffix(".tar")
            if tar.is_file():
                return TarFrames(tar, EPIC_FRAME_PATTERN)
        root, p, v = Path(row["data_root"]), row["participant_id"], row["video_id"]
        for video in (root / p / "videos" / f"{v}.MP4", root / p / "videos" / f"{v}.mp4", root / "videos" / p / f"{v}.MP4"):
            if video.is_file():
                return VideoFrames(video)
        raise FileDecodeError(candidates[0], f"RGB frames not found (also tried {candidates[1]}, "
                                             f"{candidates[0]}.tar and {root / p / 'videos' / (v + '.MP4')})")

    def flow_stores(self, row: dict) -> tuple[FrameStore, FrameStore]:
        """The ``(u, v)`` optical-flow frames of the row's video (flow frame numbering, half the RGB rate; see
        :func:`~mmkd_hf.data.sampling.rgb_to_flow_index`); cached per video.

        Raises:
            FileDecodeError: no flow folder or ``.tar``.
        """
        key = ("flow", row["data_root"], row["video_id"])
        if key not in self._stores:
            self._stores[key] = self._find_flow(row)
        return self._stores[key]

    def _find_flow(self, row: dict) -> tuple[FrameStore, FrameStore]:
        candidates = self._dirs(row, "flow_frames")
        for folder in candidates:
            if (folder / "u").is_dir():
                return FolderFrames(folder / "u", EPIC_FRAME_PATTERN), FolderFrames(folder / "v", EPIC_FRAME_PATTERN)
        for folder in candidates:
            tar = folder.with_suffix(".tar")
            if tar.is_file():
                return TarFrames(tar, EPIC_FRAME_PATTERN, "u/"), TarFrames(tar, EPIC_FRAME_PATTERN, "v/")
        raise FileDecodeError(candidates[0] / "u", f"optical flow frames not found (also tried {candidates[1]} "
                                                    f"and {candidates[0]}.tar)")

    def audio_source(self, row: dict) -> Path:
        """The file holding the row's audio (``.wav``, else the video file), as
        :func:`~mmkd_hf.data.decoding.read_audio` reads it.

        Raises:
            FileDecodeError: none of the layout's audio files exists.
        """
        root, p, v = Path(row["data_root"]), row["participant_id"], row["video_id"]
        candidates = [root / p / "videos" / f"{v}.wav", root / p / "audio" / f"{v}.wav", root / "audio" / p / f"{v}.wav",
                      root / p / "videos" / f"{v}.MP4", root / p / "videos" / f"{v}.mp4"]
        for c in candidates:
            if c.is_file():
                return c
        raise FileDecodeError(candidates[0], f"audio not found (also tried {[str(c) for c in candidates[1:]]})")

    def _detections_path(self, row: dict) -> Path:
        root, p, v = Path(row["data_root"]), row["participant_id"], row["video_id"]
        candidates = [root / p / "hand-objects" / f"{v}.pkl", root / "hand-objects" / p / f"{v}.pkl"]
        for c in candidates:
            if c.is_file():
                return c
        raise FileDecodeError(candidates[0], f"hand-object detections not found (also tried {candidates[1]})")

    # ---- checking every segment's files before training (mmkd_hf.data.source_check)
    SOURCE_LAYOUT = {
        "rgb": "<P>/rgb_frames/<video>/frame_0000000001.jpg, <P>/rgb_frames/<video>.tar or <P>/videos/<video>.MP4",
        "flow": "<P>/flow_frames/<video>/{u,v}/frame_0000000001.jpg or <P>/flow_frames/<video>.tar",
        "audio": "<P>/videos/<video>.MP4 (or <P>/videos/<video>.wav)",
        "layout": "<P>/hand-objects/<video>.pkl",
    }

    def missing_sources(self, dataset: datasets.Dataset, modalities: Sequence[str]) -> list[MissingSource]:
        """Per video and modality, the segments whose files are missing or end before their ``stop_frame``.

        Cost per video: one ``stat`` of the last frame its segments need (a listing only when that frame is
        missing), the first 512 bytes of a ``.tar`` (its frames are counted at first read), the header of a
        video file."""
        wanted = [m for m in modalities if m in self.SOURCE_LAYOUT]
        if not wanted:
            return []
        columns = dataset.select_columns(["data_root", "participant_id", "video_id", "stop_frame"]).to_dict()
        videos: dict[tuple[str, str, str], list[tuple[int, int]]] = defaultdict(list)
        for position, key in enumerate(zip(columns["data_root"], columns["participant_id"], columns["video_id"])):
            videos[key].append((position, int(columns["stop_frame"][position])))
        missing = []
        for (root, participant, video), rows in videos.items():
            row = {"data_root": root, "participant_id": participant, "video_id": video}
            for modality in wanted:
                need = _flow_frames_needed if modality == "flow" else int
                limit, reason = self._source_limit(modality, row, need(max(stop for _, stop in rows)))
                if limit is None:
                    continue
                bad = [position for position, stop in rows if need(stop) > limit]
                if bad:
                    missing.append(MissingSource(modality, video, reason, bad))
        return missing

    def _source_limit(self, modality: str, row: dict, needed: int) -> tuple[int | None, str]:
        """``(None, "")`` when the video's ``modality`` files reach frame ``needed`` (or cannot be counted
        cheaply), else ``(last usable frame, 0 if none, reason)``."""
        try:
            if modality == "audio":
                self.audio_source(row)
                return None, ""
            if modality == "layout":
                self._detections_path(row)
                return None, ""
            stores = self._find_rgb(row) if modality == "rgb" else self._find_flow(row)
        except FileDecodeError:
            what = {"rgb": "no frame folder, .tar or video", "flow": "no flow folder or .tar",
                    "audio": "no video or .wav file", "layout": "no hand-objects .pkl"}[modality]
            return 0, what
        stores = stores if isinstance(stores, tuple) else (stores,)
        first = stores[0]
        if isinstance(first, TarFrames):
            problem = tar_problem(first.path)
            return (0, f"{Path(first.path).name}: {problem}") if problem else (None, "")
        if isinstance(first, VideoFrames):
            try:
                count = video_stream_frames(first.path)
            except FileDecodeError as exc:
                return 0, f"{Path(first.path).name}: {exc.reason}"
            if count is None or count >= needed:
                return None, ""
            return count, f"{Path(first.path).name} has {count} frames, segments need up to {needed}"
        if all(os.path.exists(store.describe(needed)) for store in stores):
            return None, ""
        last = min(last_frame_number(store.folder, store.pattern) for store in stores)
        if last == 0:
            return 0, f"no frames in {stores[0].folder}"
        return last, f"frames end at {last} in {stores[0].folder}, segments need up to {needed}"

    # ---- modalities
    def read_rgb(self, row: dict, numbers: np.ndarray) -> torch.Tensor:
        return self.rgb_store(row).read(numbers)

    def read_flow(self, row: dict, numbers: np.ndarray) -> torch.Tensor:
        u_store, v_store = self.flow_stores(row)
        n_flow = u_store.num_frames()
        if n_flow < 1:
            raise FileDecodeError(u_store.describe(1), "no optical flow frames")
        flow_numbers = rgb_to_flow_index(numbers, n_flow)
        u = u_store.read(flow_numbers, gray=True)
        v = v_store.read(flow_numbers, gray=True)
        if u.shape != v.shape:
            raise FileDecodeError(v_store.describe(int(flow_numbers[0])), f"u/v sizes differ: {tuple(u.shape)} vs {tuple(v.shape)}")
        return torch.cat([u, v], dim=1)

    def _check_inside_video(self, row: dict, path: Path) -> None:
        """A segment that starts after the end of its video (``EPIC_100_video_info.csv`` duration) has no audio and
        no boxes to read: an error naming the segment, never silence and empty boxes."""
        duration = float(row.get("video_duration") or -1.0)
        start_s = (int(row["start_frame"]) - 1) / self.fps(row)
        if duration > 0 and start_s >= duration:
            raise SampleDecodeError(self.sample_id(row), path,
                                    f"segment (frames {row['start_frame']}..{row['stop_frame']}, from {start_s:.2f} s) "
                                    f"lies wholly past the end of video {row['video_id']} ({duration:.2f} s)")

    def read_audio_windows(self, row: dict, numbers: np.ndarray, config: AudioConfig) -> torch.Tensor:
        path = self.audio_source(row)
        self._check_inside_video(row, path)
        return audio_windows_for_segment(str(path), self.fps(row), int(row["start_frame"]),
                                         int(row["stop_frame"]), numbers, config, segment_id=self.sample_id(row))

    def read_boxes(self, row: dict, numbers: np.ndarray, config: LayoutConfig) -> list[dict[str, np.ndarray]]:
        path = self._detections_path(row)
        self._check_inside_video(row, path)
        frames = load_video_detections(path)
        if int(row["start_frame"]) > len(frames):  # inside the video, but not in this file: no boxes, and said
            warn_once(f"{path}|{row['start_frame']}", "segment %s (frames %s..%s) lies wholly past the end of the "
                       "detections in %s (%d frames): it has no boxes", self.sample_id(row), row["start_frame"],
                       row["stop_frame"], path, len(frames))
        thresholds = DetectionThresholds(hand=config.hand_threshold, object=config.object_threshold)
        out = []
        for n in np.asarray(numbers).reshape(-1):
            serialized = frames[n - 1] if 1 <= n <= len(frames) else None
            out.append(frame_layout(serialized, thresholds, path, frame_number=int(n)))
        return out

    def labels(self, row: dict) -> dict[str, int]:
        return verb_noun_labels(self.sample_id(row), int(row["verb_class"]), int(row["noun_class"]),
                                self.num_verbs, self.num_nouns)
