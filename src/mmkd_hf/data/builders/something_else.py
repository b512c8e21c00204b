"""Something-Else (compositional action recognition with boxes): builder + reader.

Files (github.com/joaanna/something_else layout; each looked up in ``annotations_dir`` when given, in
``data_dir``, ``data_dir/dataset_splits/<variant>``, ``data_dir/<variant>`` and ``data_dir/annotations``):

* split lists ``train.json``, ``validation.json`` (and optionally ``test.json``): SSv2 entries
  (``id``, ``template``, ``placeholders``, ...); the builder config name picks the variant folder
  (default ``compositional``).
* ``labels.json`` or ``compositional_labels.json``: template without brackets -> class id.
* boxes: ``bounding_box_annotations.json`` and/or ``bounding_box_smthsmth_part*.json``:
  ``{video_id: [{"name": "<id>/0001.jpg", "labels": [{"box2d": {x1, y1, x2, y2}, "category",
  "standard_category"}, ...]}, ...]}`` with pixel coordinates.

Boxes are stored per box (frame number from ``name``, pixel corners, hand flag, categories). At access
they are cleaned as ``fix_box`` of the original ``src/modelling/dataset_proto.py`` (swap x1 > x2 / y1 > y2, clamp to the image, at least 1 px)
and normalised by the frame size read from the first JPEG's header. The annotation list may be a frame
shorter or longer than the frame folder (real data): frames without annotations have no boxes and
annotations past the last frame are ignored. Ground-truth boxes get score 1.0, side/state 0 (unknown).
Frames are read like SSv2 (``frames/<id>/%04d.jpg``, 1-based).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

import datasets
import numpy as np

from ..decoding import FileDecodeError
from ..detections import CATEGORY_HAND, CATEGORY_OBJECT, check_boxes
from ..errors import DataFormatError, SampleDecodeError
from ..configs import LayoutConfig
from ..source_check import MissingSource
from .common import LocalDataBuilderMixin, find_file, read_json
from .something_something_v2 import SomethingReader, read_label_map, ssv2_features, video_entries

__all__ = ["SomethingElse", "SomethingElseReader", "CARD_INFO", "annotation_files", "fix_box"]

CARD_INFO = {
    "pretty_name": "Something-Else (compositional split of Something-Something v2 with boxes)",
    "description": (
        "Something-Else: per-frame ground-truth boxes (hands and the objects filling the template's "
        "placeholders) for Something-Something v2 videos, with compositional splits in which the verb-noun "
        "combinations of training and testing do not overlap. This loader yields video metadata with boxes "
        "and decodes frames lazily. Video content is Something-Something v2 (research use only)."
    ),
    "citation": (
        "@inproceedings{CVPR2020_SomethingElse,\n"
        "  title={Something-Else: Compositional Action Recognition with Spatial-Temporal Interaction Networks},\n"
        "  author={Materzynska, Joanna and Xiao, Tete and Herzig, Roei and Xu, Huijuan and Wang, Xiaolong and "
        "Darrell, Trevor},\n  booktitle={CVPR},\n  year={2020}\n}"
    ),
    "homepage": "https://github.com/joaanna/something_else",
    "license": "other",
    "license_name": "Annotations: MIT (joaanna/something_else); videos: Something-Something v2 terms "
                    "(Qualcomm, academic research only)",
}

SPLITS = {"train": "train.json", "validation": "validation.json", "test": "test.json"}
LABEL_NAMES = ["labels.json", "compositional_labels.json"]


def _subdirs(variant: str) -> tuple[str, ...]:
    return ("", f"dataset_splits/{variant}", variant, "annotations")


def _box_files(root: Path, subdirs: Sequence[str] = ("", "annotations")) -> list[Path]:
    files: list[Path] = []
    for sub in subdirs:
        folder = root / sub if sub else root
        if folder.is_dir():
            files += sorted(folder.glob("bounding_box_annotations*.json"))
            files += sorted(folder.glob("bounding_box_smthsmth*.json"))
    return files


def annotation_files(data_dir: str | os.PathLike, annotations_dir: str | os.PathLike | None = None,
                     variant: str = "compositional") -> dict[str, Path | None]:
    """Split lists, labels and box files (None when absent); ``annotations_dir`` is searched before ``data_dir``."""
    roots = [Path(data_dir)]
    if annotations_dir is not None:
        if not Path(annotations_dir).is_dir():
            raise DataFormatError(annotations_dir, "annotations folder not found (annotations_dir / --annotations-dir)")
        roots.insert(0, Path(annotations_dir))

    def first(names: list[str]) -> Path | None:
        return next((f for f in (find_file(r, names, _subdirs(variant)) for r in roots) if f is not None), None)

    found: dict[str, Path | None] = {s: first([n]) for s, n in SPLITS.items()}
    found["labels"] = first(LABEL_NAMES)
    boxes = next((b for b in (_box_files(r) for r in roots) if b), [])
    for i, p in enumerate(boxes):
        found[f"boxes_{i}"] = p
    return found


def fix_box(box: np.ndarray, height: int, width: int) -> np.ndarray:
    """``fix_box`` of the original ``src/modelling/dataset_proto.py`` on pixel boxes ``[n, 4]``: swap, clamp to the image, width/height >= 1 px."""
    b = np.asarray(box, dtype=np.float64).reshape(-1, 4).copy()
    b = np.maximum(b, 0.0)
    x1, x2 = np.minimum(b[:, 0], b[:, 2]), np.maximum(b[:, 0], b[:, 2])
    y1, y2 = np.minimum(b[:, 1], b[:, 3]), np.maximum(b[:, 1], b[:, 3])
    x1, x2 = np.minimum(x1, width - 1), np.minimum(x2, width - 1)
    y1, y2 = np.minimum(y1, height - 1), np.minimum(y2, height - 1)
    x2 = np.maximum(x2, x1 + 1)
    y2 = np.maximum(y2, y1 + 1)
    x1 = np.minimum(x1, x2 - 1)
    y1 = np.minimum(y1, y2 - 1)
    return np.stack([x1, y1, x2, y2], axis=1)


def _frame_number(name: str, path: Path, vid: str) -> int:
    stem = os.path.splitext(os.path.basename(str(name)))[0]
    digits = "".join(ch for ch in stem if ch.isdigit())
    if not digits:
        raise DataFormatError(path, f"frame name {name!r}: expected '<id>/NNNN.jpg'", vid)
    return int(digits)


def _compact_boxes(frames: list, path: Path, vid: str) -> dict:
    numbers, xyxy, hand, category, standard = [], [], [], [], []
    if not isinstance(frames, list):
        raise DataFormatError(path, f"expected a list of frames, got {type(frames).__name__}", vid)
    for k, frame in enumerate(frames):
        number = _frame_number(frame["name"], path, vid) if isinstance(frame, dict) and "name" in frame else k + 1
        for label in (frame.get("labels") or []) if isinstance(frame, dict) else []:
            box = label.get("box2d") or {}
            try:
                coords = [float(box[c]) for c in ("x1", "y1", "x2", "y2")]
            except (KeyError, TypeError, ValueError):
                raise DataFormatError(path, f"frame {number}: box2d needs numeric x1, y1, x2, y2, got {box!r}", vid) from None
            cat = str(label.get("category", ""))
            std = str(label.get("standard_category", ""))
            numbers.append(number)
            xyxy.append(coords)
            hand.append("hand" in cat.lower() or std == "hand")
            category.append(cat)
            standard.append(std)
    return {"box_frame": numbers, "box_xyxy": xyxy, "box_is_hand": hand, "box_category": category,
            "box_standard_category": standard, "annotated_frames": len(frames), "has_boxes": True}


@dataclass
class SomethingElseConfig(datasets.BuilderConfig):
    """``name`` = split variant folder (``compositional``, ``shuffled``, ``one_class_compositional``...);
    ``annotations_dir`` = the annotation files' folder when they are not inside ``data_dir``."""

    annotations_dir: Optional[str] = None


class SomethingElse(LocalDataBuilderMixin, datasets.GeneratorBasedBuilder):
    """Video metadata with ground-truth boxes (Something-Else)."""

    VERSION = datasets.Version("1.0.0")
    BUILDER_CONFIG_CLASS = SomethingElseConfig
    BUILDER_CONFIGS = [SomethingElseConfig(name="compositional")]
    DEFAULT_CONFIG_NAME = "compositional"
    CARD = CARD_INFO

    def _info(self) -> datasets.DatasetInfo:
        files = annotation_files(self._data_dir(), self.config.annotations_dir, self.config.name)
        if files["labels"] is None:
            where = [str(p) for p in (self.config.annotations_dir, self._data_dir()) if p is not None]
            raise FileNotFoundError(f"Something-Else labels ({LABEL_NAMES}) not found under {where} (nor their "
                                    f"dataset_splits/{self.config.name}/ or annotations/ folders)")
        features = ssv2_features(read_label_map(files["labels"]))
        features.update({
            "box_frame": datasets.List(datasets.Value("int32")),
            "box_xyxy": datasets.List(datasets.List(datasets.Value("float32"), length=4)),
            "box_is_hand": datasets.List(datasets.Value("bool")),
            "box_category": datasets.List(datasets.Value("string")),
            "box_standard_category": datasets.List(datasets.Value("string")),
            "annotated_frames": datasets.Value("int32"),
            "has_boxes": datasets.Value("bool"),
        })
        return datasets.DatasetInfo(description=CARD_INFO["description"], citation=CARD_INFO["citation"],
                                    homepage=CARD_INFO["homepage"], license=CARD_INFO["license"],
                                    features=datasets.Features(features))

    def _split_generators(self, dl_manager):
        root = self._data_dir()
        files = annotation_files(root, self.config.annotations_dir, self.config.name)
        splits = [s for s in SPLITS if files[s] is not None]
        if not splits:
            raise FileNotFoundError(f"no Something-Else split lists {list(SPLITS.values())} under {root}")
        box_files = [v for k, v in files.items() if k.startswith("boxes_")]
        if not box_files:
            raise FileNotFoundError(f"no bounding_box_annotations*.json / bounding_box_smthsmth_part*.json under {root}")
        return [datasets.SplitGenerator(name=s, gen_kwargs={"path": files[s], "split": s, "box_files": box_files})
                for s in splits]

    def _generate_examples(self, path: Path, split: str, box_files: list[Path]):
        root = self._data_dir()
        names = self.info.features["action"].names
        class_index = {n: i for i, n in enumerate(names)}
        rows = list(video_entries(path, class_index, split != "test", root))
        wanted = {vid for vid, _ in rows}
        boxes: dict[str, dict] = {}
        for box_file in box_files:  # one file in memory at a time; keep only this split's videos
            data = read_json(box_file)
            if not isinstance(data, dict):
                raise DataFormatError(box_file, f"expected {{video_id: [frames]}}, got {type(data).__name__}")
            for vid in wanted.intersection(data):
                boxes[vid] = _compact_boxes(data[vid], box_file, vid)
            del data
        empty = {"box_frame": [], "box_xyxy": [], "box_is_hand": [], "box_category": [], "box_standard_category": [],
                 "annotated_frames": 0, "has_boxes": False}
        for vid, row in rows:
            row.update(boxes.get(vid, empty))
            yield vid, row


class SomethingElseReader(SomethingReader):
    """SSv2 frames plus ground-truth boxes from the row."""

    SOURCE_LAYOUT = {**SomethingReader.SOURCE_LAYOUT,
                     "layout": "the video's frames and its boxes in bounding_box_annotations.json / "
                               "bounding_box_smthsmth*.json"}

    def missing_sources(self, dataset: datasets.Dataset, modalities: Sequence[str]) -> list[MissingSource]:
        """Videos without frames (see :class:`SomethingReader`) and, for ``layout``, without boxes."""
        missing = super().missing_sources(dataset, modalities)
        if "layout" in modalities and "has_boxes" in dataset.column_names:
            listed = {(m.modality, m.video_id) for m in missing}
            columns = dataset.select_columns(["video_id", "has_boxes"]).to_dict()
            for position, (video, has_boxes) in enumerate(zip(columns["video_id"], columns["has_boxes"])):
                if not has_boxes and ("layout", video) not in listed:
                    missing.append(MissingSource("layout", video, "no boxes in the bounding_box_*.json files",
                                                 [position]))
        return missing

    def segment(self, row: dict) -> tuple[int, int]:
        try:
            return 1, self.num_frames(row)
        except FileDecodeError:
            if not row.get("annotated_frames"):
                raise
            return 1, int(row["annotated_frames"])  # layout-only use without frames on disk

    def read_boxes(self, row: dict, numbers: np.ndarray, config: LayoutConfig) -> list[dict[str, np.ndarray]]:
        sid = self.sample_id(row)
        if not row.get("has_boxes"):
            raise SampleDecodeError(sid, None, "video has no box annotations in the bounding_box_*.json files")
        height, width = self.frame_size(row)
        frame_of_box = np.asarray(row["box_frame"], dtype=np.int64)
        xyxy = np.asarray(row["box_xyxy"], dtype=np.float64).reshape(-1, 4)
        is_hand = np.asarray(row["box_is_hand"], dtype=bool)
        scale = np.array([width, height, width, height], np.float64)
        out = []
        for n in np.asarray(numbers).reshape(-1):
            sel = np.nonzero(frame_of_box == n)[0]
            if len(sel):  # a NaN/infinite corner (e.g. "nan" in the JSON) or one far outside the frame: refused
                clipped, keep = check_boxes(xyxy[sel] / scale, where=f"video {sid} frame {int(n)}")
                sel, inside_pixels = sel[keep], clipped[keep] * scale
            if len(sel) == 0:
                out.append({"boxes": np.zeros((0, 4), np.float32), "categories": np.zeros(0, np.int64),
                            "scores": np.zeros(0, np.float32), "sides": np.zeros(0, np.int64),
                            "states": np.zeros(0, np.int64)})
                continue
            fixed = fix_box(inside_pixels, height, width) / scale
            out.append({
                "boxes": fixed.astype(np.float32),
                "categories": np.where(is_hand[sel], CATEGORY_HAND, CATEGORY_OBJECT).astype(np.int64),
                "scores": np.ones(len(sel), np.float32),
                "sides": np.zeros(len(sel), np.int64),
                "states": np.zeros(len(sel), np.int64),
            })
        return out
