"""A copy of an exact-label mini-kitchens generation whose *training* narrations confuse the two verbs (and
optionally the two nouns) of a pair.

    mmkd-hf make-mini-dataset --out .cache/mini-kitchens-noise0 --narration-noise 0
    python benchmarks/noisy_narrations.py .cache/mini-kitchens-noise0 .cache/mk-verbflip30 --rate 0.3 --seed 0
    python benchmarks/distillation_gain.py --seeds 5 --output-dir outputs/kd-verbflip30 -- --data_dir .cache/mk-verbflip30

(the verb-only rows of docs/training.md, "Which labels make distillation pay?": 76 of the 300 training
narrations confused). The generator itself adds the same noise (`mmkd-hf make-mini-dataset --narration-noise
VERB_RATE,NOUN_RATE`, the same draws for generation seed 0 and `--seed 0` here); with `--rate 0.3 --noun-rate 0.3`
this copy has the training narrations of the default generation.

Mini-kitchens verbs come in pairs that differ only in direction (take/put, push/pull, open/close, shake/stir:
ids 2k and 2k+1), and nouns in pairs of the same shape (plate/bowl, box/sponge, bottle/jar, board/tray,
cheese/pizza: ids 2k and 2k+1). With probability ``--rate`` a training segment's narration names the other verb of
its pair, as an annotator who misjudges the direction would, and with probability ``--noun-rate`` (drawn
independently) the other noun of its pair, as one who mistakes a plate for a bowl would; the pixels, flow, audio
and boxes still show the true action, and the validation narrations stay exact. The labels are then noisy *given
every modality*, which is what lets a teacher ensemble's soft targets carry less noise than the labels
(docs/training.md, "Does distillation pay"). The verb draws come first, so the same seed confuses the same verbs
with or without noun noise.

The copy hard-links every file (copies where links are impossible) and rewrites only EPIC_100_train.csv.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import sys
from pathlib import Path


sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from mmkd_hf.synthetic.narration_noise import confuse_pairs  # noqa: E402
from mmkd_hf.utils import atomic_directory  # noqa: E402


def _link_or_copy(src: str, dst: str) -> None:
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def _class_keys(path: Path) -> dict[int, str]:
    with open(path, newline="") as fh:
        return {int(r["id"]): r["key"] for r in csv.DictReader(fh)}


#: written into every copy: how it was made (a copy is reused only when it matches)
PROVENANCE_FILE = "noisy_narrations.json"


def make_noisy_copy(source: Path, target: Path, verb_rate: float, noun_rate: float = 0.0, seed: int = 0) -> dict:
    """Write the noisy copy of ``source`` at ``target`` (assembled beside it and renamed into place, so an interrupted
    call leaves no half-made copy); returns its provenance (also saved as ``target/noisy_narrations.json``)."""
    source, target = Path(source), Path(target)
    if not (source / "EPIC_100_train.csv").is_file():
        raise FileNotFoundError(f"{source} holds no EPIC_100_train.csv: not a mini-kitchens folder")
    if target.exists():
        raise FileExistsError(f"{target} exists: choose a new folder")
    marker = source / ".complete"
    config = json.loads(marker.read_text()).get("config", {}) if marker.is_file() else {}
    if config.get("narration_verb_noise") or config.get("narration_noun_noise"):
        raise FileExistsError(f"{source} already has noisy training narrations (its .complete marker): start from an "
                              f"exact-label generation (mmkd-hf make-mini-dataset --narration-noise 0)")
    with atomic_directory(target) as staging:  # assembled beside target, renamed into place when complete
        shutil.copytree(source, staging, copy_function=_link_or_copy, dirs_exist_ok=True)
        train_csv = staging / "EPIC_100_train.csv"
        with open(train_csv, newline="") as fh:
            rows = list(csv.DictReader(fh))
        verb_keys = _class_keys(staging / "EPIC_100_verb_classes.csv")
        noun_keys = _class_keys(staging / "EPIC_100_noun_classes.csv")
        verbs, nouns = confuse_pairs(rows, verb_keys, verb_rate, seed, noun_keys, noun_rate)
        train_csv.unlink()  # a hard link to the source's file: replace it, never write through it
        with open(train_csv, "w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
        provenance = {"source": str(source), "verb_rate": verb_rate, "noun_rate": noun_rate, "seed": seed,
                      "training_narrations": len(rows), "verbs_confused": verbs, "nouns_confused": nouns}
        (staging / PROVENANCE_FILE).write_text(json.dumps(provenance, indent=1) + "\n")
    return provenance


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source", help="a generated mini-kitchens folder (mmkd-hf make-mini-dataset)")
    parser.add_argument("target", help="the noisy copy (must not exist)")
    parser.add_argument("--rate", "--verb-rate", dest="rate", type=float, default=0.3,
                        help="probability that a training narration names the other verb of its pair")
    parser.add_argument("--noun-rate", type=float, default=0.0,
                        help="probability (drawn independently) that it names the other noun of its pair")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    try:
        made = make_noisy_copy(Path(args.source), Path(args.target), args.rate, args.noun_rate, args.seed)
    except (FileNotFoundError, FileExistsError) as error:
        raise SystemExit(str(error)) from None
    print(f"{args.target}: of {made['training_narrations']} training narrations, {made['verbs_confused']} name the "
          f"other verb of their pair and {made['nouns_confused']} the other noun of theirs")
    return 0


if __name__ == "__main__":
    sys.exit(main())
