"""The mini-kitchens clips in the Something-Something v2 and Something-Else formats (one template per verb).

``mmkd-hf make-mini-dataset --out DIR --export-ssv2 DIR2`` writes them; ``mmkd_hf.data.load_dataset`` reads
them back with the ``something-something-v2`` and ``something-else`` builders.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
from pathlib import Path
from typing import Any

from mmkd_hf.utils import atomic_write_json

from .scene import VERBS
from .writer import GT_BOXES_FILE

def _read_csv_rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def export_ssv2(epic_root: str | os.PathLike, out_dir: str | os.PathLike) -> Path:
    """Export the mini-kitchens clips in the Something-Something v2 + Something-Else formats.

    Writes ``<id>/NNNN.jpg`` frame folders (1-based, 4 digits), ``something-something-v2-{train,validation}.json``,
    ``something-something-v2-labels.json`` (one template per verb), ``bounding_box_annotations.json``
    (ground-truth boxes in pixels from ``mini_kitchens_gt_boxes.json``: hand, object and lid) and the
    Something-Else compositional split files under ``dataset_splits/compositional/``; ``id_map.json``
    maps each SSv2 id to its EPIC ``narration_id``. Returns ``out_dir``.
    """
    epic_root, out_dir = Path(epic_root), Path(out_dir)
    gt_path = epic_root / GT_BOXES_FILE
    if not gt_path.is_file():
        raise FileNotFoundError(f"{gt_path}: ground-truth boxes missing; is {epic_root} a mini-kitchens generation?")
    gt_boxes = json.loads(gt_path.read_text(encoding="utf-8"))
    out_dir.mkdir(parents=True, exist_ok=True)
    info = {r["video_id"]: r for r in _read_csv_rows(epic_root / "EPIC_100_video_info.csv")}
    labels = {VERBS[i][3].replace("[", "").replace("]", ""): str(i) for i in range(len(VERBS))}
    entries: dict[str, list[dict[str, Any]]] = {"train": [], "validation": []}
    boxes_json: dict[str, Any] = {}
    id_map: dict[str, str] = {}
    next_id = 1
    for split in ("train", "validation"):
        for row in _read_csv_rows(epic_root / f"EPIC_100_{split}.csv"):
            vid = str(next_id)
            next_id += 1
            id_map[vid] = row["narration_id"]
            verb, noun = int(row["verb_class"]), row["noun"]
            template = VERBS[verb][3]
            entries[split].append({
                "id": vid, "label": template.replace("[something]", noun), "template": template,
                "placeholders": [noun],
            })
            res = info[row["video_id"]]["resolution"]
            width, height = (int(v) for v in res.split("x"))
            src = epic_root / row["participant_id"] / "rgb_frames" / row["video_id"]
            dst = out_dir / vid
            dst.mkdir(exist_ok=True)
            frames = []
            for j, fno in enumerate(range(int(row["start_frame"]), int(row["stop_frame"]) + 1), start=1):
                shutil.copyfile(src / f"frame_{fno:010d}.jpg", dst / f"{j:04d}.jpg")
                labels_ = []
                geom = gt_boxes[row["video_id"]][fno - 1] or {}
                for name, (x1, y1, x2, y2) in geom.items():
                    cat = "hand" if name == "hand" else (noun if name == "object" else f"{noun} lid")
                    std = "hand" if name == "hand" else ("0000" if name == "object" else "0001")
                    labels_.append({
                        "box2d": {"x1": float(max(0.0, x1)), "y1": float(max(0.0, y1)),
                                  "x2": float(min(width, x2)), "y2": float(min(height, y2))},
                        "gt_annotation": "object hand" if name == "hand" else f"object {std[-1]}",
                        "category": cat, "standard_category": std,
                    })
                frames.append({
                    "name": f"{vid}/{j:04d}.jpg", "labels": labels_, "gt_placeholders": [noun],
                    "nr_instances": len(labels_),
                })
            boxes_json[vid] = frames
    atomic_write_json(out_dir / "something-something-v2-labels.json", labels)
    for split, items in entries.items():
        atomic_write_json(out_dir / f"something-something-v2-{split}.json", items)
    comp = out_dir / "dataset_splits" / "compositional"
    comp.mkdir(parents=True, exist_ok=True)
    atomic_write_json(comp / "labels.json", {k: int(v) for k, v in labels.items()})
    for split, items in entries.items():
        atomic_write_json(comp / f"{split}.json", [dict(e, new_placeholdes=e["placeholders"]) for e in items])
    atomic_write_json(out_dir / "bounding_box_annotations.json", boxes_json, indent=None)
    atomic_write_json(out_dir / "id_map.json", id_map)
    return out_dir
