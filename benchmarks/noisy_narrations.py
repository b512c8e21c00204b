"""A mini-kitchens copy whose *training* narrations confuse the two verbs of a pair (a data variant for sweeps).

    python benchmarks/noisy_narrations.py .cache/mini-kitchens .cache/mk-verbflip30 --rate 0.3 --seed 0
    python benchmarks/distillation_gain.py --seeds 5 --output-dir outputs/kd-verbflip30 -- --data_dir .cache/mk-verbflip30

(the session-5 rows of docs/training.md: 76 of the 300 training narrations confused).

Mini-kitchens verbs come in pairs that differ only in direction (take/put, push/pull, open/close, shake/stir:
ids 2k and 2k+1). With probability ``--rate`` a training segment's narration names the other verb of its pair, as an
annotator who misjudges the direction would; the pixels, flow, audio and boxes still show the true action, and the
validation narrations stay exact. The labels are then noisy *given every modality*, which is what lets a teacher
ensemble's soft targets carry less noise than the labels (docs/training.md, "Does distillation pay").

The copy hard-links every file (copies where links are impossible) and rewrites only EPIC_100_train.csv.
"""

from __future__ import annotations

import argparse
import csv
import os
import shutil
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from mmkd_hf.utils import atomic_path  # noqa: E402


def _link_or_copy(src: str, dst: str) -> None:
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def confuse_verb_pairs(rows: list[dict[str, str]], verb_keys: dict[int, str], rate: float, seed: int) -> int:
    """In place: each row's verb becomes the other verb of its pair with probability ``rate``; returns how many."""
    if not 0.0 <= rate <= 1.0:
        raise ValueError(f"rate must be in [0, 1], got {rate}")
    flips = np.random.default_rng(seed).random(len(rows)) < rate
    for row, flip in zip(rows, flips):
        if flip:
            verb = int(row["verb_class"]) ^ 1
            if verb not in verb_keys:
                raise ValueError(f"{row.get('narration_id')}: verb {row['verb_class']} has no pair partner {verb}")
            row["verb_class"], row["verb"] = str(verb), verb_keys[verb]
            row["narration"] = f"{verb_keys[verb]} {row['noun']}"
    return int(flips.sum())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source", help="a generated mini-kitchens folder (mmkd-hf make-mini-dataset)")
    parser.add_argument("target", help="the noisy copy (must not exist)")
    parser.add_argument("--rate", type=float, default=0.3, help="probability that a training narration is confused")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    source, target = Path(args.source), Path(args.target)
    if not (source / "EPIC_100_train.csv").is_file():
        raise SystemExit(f"{source} holds no EPIC_100_train.csv: not a mini-kitchens folder")
    if target.exists():
        raise SystemExit(f"{target} exists: choose a new folder")
    shutil.copytree(source, target, copy_function=_link_or_copy)
    train_csv = target / "EPIC_100_train.csv"
    with open(train_csv, newline="") as fh:
        rows = list(csv.DictReader(fh))
    with open(target / "EPIC_100_verb_classes.csv", newline="") as fh:
        verb_keys = {int(r["id"]): r["key"] for r in csv.DictReader(fh)}
    flipped = confuse_verb_pairs(rows, verb_keys, args.rate, args.seed)
    train_csv.unlink()  # a hard link to the source's file: replace it, never write through it
    with atomic_path(train_csv) as tmp, open(tmp, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    print(f"{target}: {flipped} of {len(rows)} training narrations name the other verb of their pair")
    return 0


if __name__ == "__main__":
    sys.exit(main())
