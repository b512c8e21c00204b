"""What do the ensemble's targets add to the labels? Scores a finished run on its own *training* split.

    python benchmarks/distillation_targets.py outputs/mini-kitchens-tiny-seed42

For the two parts of the training split (the teachers' part and the held-out part the ensemble was fit on), with the
augmented views the student trains on and with un-augmented views, per head:

* the ensemble's top-1 agreement with the label and the mean probability it gives the label (1.0 = the targets are
  the one-hot labels, and distillation can teach nothing the labels do not);
* the training top-1 of the student and of baseline-rgb (far below 100 % = they under-fit their training clips, so
  they are limited by fitting, not by the noise of the targets).

Prints a Markdown table and writes ``<run>/distillation_targets.json`` (or ``--out``). docs/training.md quotes it.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from pathlib import Path

import torch
from transformers import AutoModel

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

import mmkd_hf  # noqa: E402,F401  (registers the models with the Auto classes)
from mmkd_hf.data import MultimodalCollator, RunSettings, load_dataset  # noqa: E402
from mmkd_hf.utils import atomic_write_json  # noqa: E402


@torch.no_grad()
def score(run: Path, batch_size: int = 32) -> list[dict]:
    torch.manual_seed(0)  # the augmented views' draws follow torch's seed: the same table every time
    settings = RunSettings.from_run_dir(run)  # the run's resolved data settings
    teachers = json.loads((run / "config.json").read_text())["identity"]["teachers"].split(",")
    train_ids = load_dataset(settings.dataset, data_dir=settings.data_dir, split="train", decode=False)["segment_id"]
    split = json.loads((run / "held_out_split.json").read_text())
    position = {str(sample_id): i for i, sample_id in enumerate(train_ids)}
    parts = {"teachers' part": [position[i] for i in split["teacher_train_ids"]],
             "held-out part": [position[i] for i in split["held_out_ids"]]}
    ensemble = AutoModel.from_pretrained(run / "ensemble").eval()
    students = {unit: AutoModel.from_pretrained(run / unit).eval() for unit in ("student", "baseline-rgb")
                if (run / unit).exists()}
    modalities = sorted(set(teachers) | {"rgb"})
    rows = []
    for augmented in (True, False):
        dataset = settings.load_dataset("train", modalities=modalities, train=augmented)
        for part, indices in parts.items():
            loader = torch.utils.data.DataLoader(torch.utils.data.Subset(dataset, indices), batch_size=batch_size,
                                                 collate_fn=MultimodalCollator())
            sums: dict[str, float] = defaultdict(float)
            count = 0
            for batch in loader:
                labels = batch["labels"]
                for head, logits in ensemble(**batch).logits.items():
                    probs = logits.float().softmax(-1)
                    sums[f"ensemble {head} agreement"] += float((probs.argmax(-1) == labels[head]).sum())
                    sums[f"ensemble {head} p(label)"] += float(probs.gather(-1, labels[head][:, None]).sum())
                for unit, model in students.items():
                    for head, logits in model(pixel_values=batch["pixel_values"]).logits.items():
                        sums[f"{unit} {head} train top-1"] += float((logits.argmax(-1) == labels[head]).sum())
                count += len(next(iter(labels.values())))
            rows.append({"views": "augmented" if augmented else "un-augmented", "part": part, "clips": count,
                         **{k: round(100.0 * v / count, 1) for k, v in sums.items()}})
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", help="a finished train.py run folder (ensemble/, student/, baseline-rgb/)")
    parser.add_argument("--out", help="JSON output (default: <run>/distillation_targets.json)")
    args = parser.parse_args(argv)
    run = Path(args.run)
    rows = score(run)
    columns = [k for k in rows[0] if k not in ("views", "part", "clips")]
    print("| views | part | clips | " + " | ".join(columns) + " |")
    print("|---|---|---:|" + "---:|" * len(columns))
    for row in rows:
        print(f"| {row['views']} | {row['part']} | {row['clips']} | " + " | ".join(f"{row[c]:.1f}" for c in columns) + " |")
    out = Path(args.out) if args.out else run / "distillation_targets.json"
    atomic_write_json(out, {"benchmark": "distillation_targets", "run": str(run), "unit": "%", "rows": rows})
    print(f"written {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
