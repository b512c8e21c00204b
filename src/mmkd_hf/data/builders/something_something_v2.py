"""Something-Something v2: a ``datasets`` builder of video metadata + a lazy frame reader.

Files (in ``annotations_dir`` when given, else ``data_dir``, ``data_dir/annotations`` or ``data_dir/labels``):
``something-something-v2-{train,validation,test}.json`` (lists of ``{"id", "label", "template",
"placeholders"}``; the test list has ids only) and ``something-something-v2-labels.json`` (template without
brackets -> class id as a string); inside a ``labels/`` folder (or ``annotations_dir``) the short names
``train.json``, ``validation.json``, ``test.json`` and ``labels.json`` are read too. Class =
``labels[template.replace("[", "").replace("]", "")]``.

Pixels at access: a frame folder ``frames/<id>/`` or ``<id>/`` (1-based ``%04d.jpg``, ``%05d.jpg``,
``img_%05d.jpg`` or ``frame_%010d.jpg``), else the video ``videos/<id>.webm``,
``20bn-something-something-v2/<id>.webm`` or ``<id>.webm`` (PyAV). The clip length is the number of
frames, counted lazily at first access. SSv2 videos run at 12 fps.
"""

from __future__ import annotations

import os
import re
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

import datasets
import numpy as np
import torch

from ..decoding import FileDecodeError, FolderFrames, FrameStore, VideoFrames, jpeg_size
from ..errors import DataFormatError, SampleDecodeError
from ..source_check import MissingSource
from ..transforms import SampleReader
from .common import LocalDataBuilderMixin, find_file, read_json

__all__ = ["SomethingSomethingV2", "SomethingReader", "CARD_INFO", "annotation_files", "template_to_class",
           "read_label_map", "ssv2_features"]

CARD_INFO = {
    "pretty_name": "Something-Something v2",
    "description": (
        "Something-Something v2: 220,847 short videos (12 fps) of people performing 174 template actions "
        "with everyday objects (e.g. 'Putting [something] into [something]'); fine-grained, object-agnostic, "
        "with left/right and pretending classes. This loader yields video metadata and decodes frames lazily."
    ),
    "citation": (
        "@inproceedings{goyal2017something,\n"
        "  title={The \"something something\" video database for learning and evaluating visual common sense},\n"
        "  author={Goyal, Raghav and Ebrahimi Kahou, Samira and Michalski, Vincent and Materzynska, Joanna and "
        "Westphal, Susanne and Kim, Heuna and Haenel, Valentin and Fruend, Ingo and Yianilos, Peter and "
        "Mueller-Freitag, Moritz and others},\n"
        "  booktitle={ICCV},\n  year={2017}\n}"
    ),
    "homepage": "https://www.qualcomm.com/developer/software/something-something-v-2-dataset",
    "license": "other",
    "license_name": "Something-Something v2 licence terms (Qualcomm, formerly TwentyBN): free for academic "
                    "research only; commercial use requires a licence from Qualcomm",
}

SPLIT_NAMES = {"train": "something-something-v2-train.json", "validation": "something-something-v2-validation.json",
               "test": "something-something-v2-test.json"}
LABELS_NAME = "something-something-v2-labels.json"
SUBDIRS = ("", "annotations", "labels")
#: names inside the download's ``labels/`` folder
SHORT_NAMES = {"train": "train.json", "validation": "validation.json", "test": "test.json", "labels": "labels.json"}
FRAME_PATTERNS = ("%04d.jpg", "%05d.jpg", "img_%05d.jpg", "frame_%010d.jpg", "%06d.jpg")


def annotation_files(data_dir: str | os.PathLike, annotations_dir: str | os.PathLike | None = None
                     ) -> dict[str, Path | None]:
    """The split lists and the labels file (None when absent); see the module docstring for where."""
    if annotations_dir is not None:
        root, subdirs, short_subdirs = Path(annotations_dir), ("",), ("",)
        if not root.is_dir():
            raise DataFormatError(root, "annotations folder not found (annotations_dir / --annotations-dir)")
    else:
        root, subdirs, short_subdirs = Path(data_dir), SUBDIRS, ("labels",)
    long_names = {**SPLIT_NAMES, "labels": LABELS_NAME}
    return {key: find_file(root, [name], subdirs) or find_file(root, [SHORT_NAMES[key]], short_subdirs)
            for key, name in long_names.items()}


def template_to_class(template: str) -> str:
    """The labels-file key of a template: brackets removed (``re.sub("[\\[\\]]", "", t)``)."""
    return re.sub(r"[\[\]]", "", template)


def read_label_map(path: Path) -> list[str]:
    """Class names ordered by id from a ``{template: id}`` JSON (ids as int or str, must be 0..N-1)."""
    raw = read_json(path)
    if not isinstance(raw, dict):
        raise DataFormatError(path, f"expected a JSON object {{template: id}}, got {type(raw).__name__}")
    by_id: dict[int, str] = {}
    for template, value in raw.items():
        try:
            idx = int(value)
        except (TypeError, ValueError):
            raise DataFormatError(path, f"class id of {template!r}: expected an integer, got {value!r}") from None
        if idx in by_id:
            raise DataFormatError(path, f"class id {idx} used twice ({by_id[idx]!r}, {template!r})")
        by_id[idx] = template
    if sorted(by_id) != list(range(len(by_id))):
        raise DataFormatError(path, f"class ids must be 0..{len(by_id) - 1} without gaps")
    return [by_id[i] for i in range(len(by_id))]


def ssv2_features(class_names: list[str]) -> dict:
    return {
        "index": datasets.Value("int64"),
        "segment_id": datasets.Value("string"),
        "video_id": datasets.Value("string"),
        "template": datasets.Value("string"),
        "label_text": datasets.Value("string"),
        "placeholders": datasets.List(datasets.Value("string")),
        "action": datasets.ClassLabel(names=class_names),
        "fps": datasets.Value("float64"),
        "data_root": datasets.Value("string"),
    }


def video_entries(path: Path, class_index: dict[str, int], labelled: bool, root: Path):
    """Yield (id, row) for an SSv2-format list file (shared with Something-Else)."""
    entries = read_json(path)
    if not isinstance(entries, list):
        raise DataFormatError(path, f"expected a JSON list of videos, got {type(entries).__name__}")
    seen = set()
    for index, entry in enumerate(entries):
        if not isinstance(entry, dict) or "id" not in entry:
            raise DataFormatError(path, f"entry {index}: expected an object with an 'id', got {str(entry)[:80]!r}")
        vid = str(entry["id"])
        if vid in seen:
            raise DataFormatError(path, "duplicate video id", vid)
        seen.add(vid)
        template = entry.get("template", "")
        action = -1
        if labelled:
            if not template:
                raise DataFormatError(path, "missing 'template' (needed for the class)", vid)
            key = template_to_class(template)
            if key not in class_index:
                raise DataFormatError(path, f"template {key!r} is not in the class list", vid)
            action = class_index[key]
        yield vid, {
            "index": index,
            "segment_id": vid,
            "video_id": vid,
            "template": template,
            "label_text": entry.get("label", ""),
            "placeholders": [str(p) for p in entry.get("placeholders", []) or []],
            "action": action,
            "fps": 12.0,
            "data_root": str(root),
        }


@dataclass
class SomethingSomethingV2Config(datasets.BuilderConfig):
    """``data_dir`` = the videos' (or frame folders') root; ``annotations_dir`` = the label files' folder when
    they are not inside ``data_dir``."""

    annotations_dir: Optional[str] = None


class SomethingSomethingV2(LocalDataBuilderMixin, datasets.GeneratorBasedBuilder):
    """Video-level metadata of Something-Something v2."""

    VERSION = datasets.Version("1.0.0")
    BUILDER_CONFIG_CLASS = SomethingSomethingV2Config
    CARD = CARD_INFO

    def _files(self) -> dict[str, Path | None]:
        return annotation_files(self._data_dir(), self.config.annotations_dir)

    def _info(self) -> datasets.DatasetInfo:
        labels = self._files()["labels"]
        if labels is None:
            where = self.config.annotations_dir or self._data_dir()
            raise FileNotFoundError(f"Something-Something v2 labels file not found; looked for {LABELS_NAME} in "
                                    f"{where} (and annotations/, labels/) and labels/labels.json")
        return datasets.DatasetInfo(description=CARD_INFO["description"], citation=CARD_INFO["citation"],
                                    homepage=CARD_INFO["homepage"], license=CARD_INFO["license"],
                                    features=datasets.Features(ssv2_features(read_label_map(labels))))

    def _split_generators(self, dl_manager):
        files = self._files()
        splits = [s for s in SPLIT_NAMES if files[s] is not None]
        if not splits:
            where = self.config.annotations_dir or self._data_dir()
            raise FileNotFoundError(f"no {list(SPLIT_NAMES.values())} in {where} (or annotations/, labels/)")
        return [datasets.SplitGenerator(name=s, gen_kwargs={"path": files[s], "split": s}) for s in splits]

    def _generate_examples(self, path: Path, split: str):
        names = self.info.features["action"].names
        class_index = {n: i for i, n in enumerate(names)}
        yield from video_entries(path, class_index, split != "test", self._data_dir())


class SomethingReader(SampleReader):
    """Lazy frame access for SSv2-style rows (frame folders or ``.webm`` videos)."""

    default_sampler = "uniform"
    frame_dirs = ("frames", "")
    video_dirs = ("videos", "20bn-something-something-v2", "")

    def __init__(self, num_classes: int = 174):
        self.num_classes = num_classes
        self._stores: dict[tuple, FrameStore] = {}
        self._sizes: dict[tuple, tuple[int, int]] = {}

    @classmethod
    def from_features(cls, features: datasets.Features):
        return cls(features["action"].num_classes)

    def __getstate__(self):
        state = dict(self.__dict__)
        state["_stores"], state["_sizes"] = {}, {}
        return state

    def sample_id(self, row: dict) -> str:
        return str(row["segment_id"])

    def _store(self, row: dict) -> FrameStore:
        key = (row["data_root"], row["video_id"])
        if key not in self._stores:
            self._stores[key] = self._find_store(row)
        return self._stores[key]

    def _find_store(self, row: dict) -> FrameStore:
        root, vid = Path(row["data_root"]), row["video_id"]
        folders = [root / d / vid if d else root / vid for d in self.frame_dirs]
        for folder in folders:
            if folder.is_dir():
                for pattern in FRAME_PATTERNS:
                    if (folder / (pattern % 1)).is_file():
                        return FolderFrames(folder, pattern)
                raise FileDecodeError(folder / (FRAME_PATTERNS[0] % 1), "first frame not found (tried patterns "
                                                                        f"{list(FRAME_PATTERNS)})")
        videos = [(root / d / f"{vid}.webm") if d else root / f"{vid}.webm" for d in self.video_dirs]
        for video in videos:
            if video.is_file():
                return VideoFrames(video)
        raise FileDecodeError(folders[0], f"no frame folder or video found (tried {[str(p) for p in folders + videos]})")

    SOURCE_LAYOUT = {"rgb": "frames/<id>/0001.jpg, <id>/0001.jpg or 20bn-something-something-v2/<id>.webm "
                            "(or videos/<id>.webm)"}

    def missing_sources(self, dataset: datasets.Dataset, modalities: Sequence[str]) -> list[MissingSource]:
        """The videos with neither a frame folder nor a ``.webm`` (one listing of each candidate folder).
        Frames are needed for every modality (the boxes are normalised by the frame size)."""
        if not {"rgb", "layout"} & set(modalities):
            return []
        columns = dataset.select_columns(["data_root", "video_id"]).to_dict()
        listings: dict[Path, set[str]] = {}

        def names(folder: Path) -> set[str]:
            if folder not in listings:
                try:
                    listings[folder] = set(os.listdir(folder))
                except OSError:
                    listings[folder] = set()
            return listings[folder]

        rows_of: dict[tuple[str, str], list[int]] = defaultdict(list)
        for position, key in enumerate(zip(columns["data_root"], columns["video_id"])):
            rows_of[key].append(position)
        missing = []
        for (root, video), rows in rows_of.items():
            base = Path(root)
            if any(video in names(base / d if d else base) for d in self.frame_dirs) or any(
                    f"{video}.webm" in names(base / d if d else base) for d in self.video_dirs):
                continue
            for modality in [m for m in modalities if m in ("rgb", "layout")]:
                missing.append(MissingSource(modality, video, "no frame folder or .webm video", list(rows)))
        return missing

    def num_frames(self, row: dict) -> int:
        return self._store(row).num_frames()

    def segment(self, row: dict) -> tuple[int, int]:
        return 1, self.num_frames(row)

    def frame_size(self, row: dict) -> tuple[int, int]:
        key = (row["data_root"], row["video_id"])
        if key not in self._sizes:
            store = self._store(row)
            if isinstance(store, FolderFrames):
                self._sizes[key] = jpeg_size(store.describe(1))
            else:
                self._sizes[key] = tuple(store.read([1]).shape[-2:])
        return self._sizes[key]

    def read_rgb(self, row: dict, numbers: np.ndarray) -> torch.Tensor:
        return self._store(row).read(numbers)

    def labels(self, row: dict) -> dict[str, int]:
        action = int(row["action"])
        if action < 0:
            return {}
        if action >= self.num_classes:
            raise SampleDecodeError(self.sample_id(row), None, f"action {action} outside the {self.num_classes} classes")
        return {"action": action}
