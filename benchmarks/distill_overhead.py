"""Step time of supervised student training vs online distillation vs cached-logit distillation.

Same student, same batch, same process; the three modes are interleaved step by step (so machine noise hits all
three alike) and the median over ``--steps`` steps is reported. Each step = the trainer's ``compute_loss`` +
backward + AdamW step. Target: cached <= 1.15x supervised.

    OMP_NUM_THREADS=2 python benchmarks/distill_overhead.py --steps 20

Writes ``benchmarks/results/distill_overhead.json``.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

import mmkd_hf  # noqa: F401  (registers the models)
from mmkd_hf import (
    MultimodalTeacherEnsemble,
    STLTConfig,
    STLTForVideoClassification,
    VideoSwinConfig,
    VideoSwinForVideoClassification,
)
from mmkd_hf.distillation import (
    DistillationTrainer,
    DistillationTrainingArguments,
    SupervisedTrainer,
    SupervisedTrainingArguments,
)
from mmkd_hf.utils import atomic_write_json

HEADS = {"verb": 12, "noun": 20}


def swin(modality: str, args) -> VideoSwinForVideoClassification:
    config = VideoSwinConfig(
        embed_dim=args.embed_dim, depths=(1, 1, 2, 1), num_heads=(1, 2, 4, 8), window_size=(2, 4, 4),
        num_frames=args.frames, image_size=args.size, modality=modality, heads=HEADS, drop_path_rate=0.1,
    )
    return VideoSwinForVideoClassification(config)


def make_batch(args) -> dict:
    b, t, n = args.batch_size, args.frames, 4
    return {
        "pixel_values": torch.rand(b, t, 3, args.size, args.size),
        "flow_values": torch.rand(b, t, 2, args.size, args.size),
        "audio_values": torch.rand(b, t, 1, args.size, args.size),
        "layout_boxes": torch.rand(b, t, n, 4),
        "layout_categories": torch.randint(1, 3, (b, t, n)),
        "layout_scores": torch.rand(b, t, n),
        "layout_sides": torch.randint(0, 3, (b, t, n)),
        "layout_states": torch.randint(0, 6, (b, t, n)),
        "layout_mask": torch.ones(b, t, n, dtype=torch.bool),
        "labels": {head: torch.randint(0, c, (b,)) for head, c in HEADS.items()},
        "segment_id": [f"s{i}" for i in range(b)],
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20, help="timed steps per mode (median reported)")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps per mode first")
    parser.add_argument("--batch_size", type=int, default=4)
    parser.add_argument("--frames", type=int, default=8)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--embed_dim", type=int, default=32)
    parser.add_argument("--output", default=str(Path(__file__).resolve().parent / "results" / "distill_overhead.json"))
    args = parser.parse_args(argv)

    torch.manual_seed(0)
    student = swin("rgb", args)
    teachers = {"rgb": swin("rgb", args), "flow": swin("flow", args), "audio": swin("audio", args),
                "layout": STLTForVideoClassification(STLTConfig(
                    hidden_size=64, num_attention_heads=4, num_spatial_layers=2, num_temporal_layers=2,
                    intermediate_size=128, num_frames=args.frames, max_boxes=4, heads=HEADS))}
    ensemble = MultimodalTeacherEnsemble.from_teachers(teachers)
    batch = make_batch(args)
    with torch.no_grad():
        cached_batch = dict(batch, teacher_logits=ensemble(**batch).logits)

    tmp = tempfile.mkdtemp()
    common = dict(output_dir=tmp, report_to="none", use_cpu=True, per_device_train_batch_size=args.batch_size)
    trainers = {
        "supervised": SupervisedTrainer(model=student, args=SupervisedTrainingArguments(**common)),
        "online distillation": DistillationTrainer(
            model=student, args=DistillationTrainingArguments(**common), teacher=ensemble),
        "cached distillation": DistillationTrainer(
            model=student, args=DistillationTrainingArguments(**common, teacher_mode="cached", cached_logits_path=tmp)),
    }
    batches = {"supervised": batch, "online distillation": batch, "cached distillation": cached_batch}
    optimizer = torch.optim.AdamW(student.parameters(), lr=1e-5)
    student.train()

    def step(mode: str) -> float:
        start = time.perf_counter()
        loss = trainers[mode].compute_loss(student, batches[mode])
        loss.backward()
        torch.nn.utils.clip_grad_norm_(student.parameters(), 5.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return time.perf_counter() - start

    times: dict[str, list[float]] = {mode: [] for mode in trainers}
    for i in range(args.warmup + args.steps):
        for mode in trainers:
            elapsed = step(mode)
            if i >= args.warmup:
                times[mode].append(elapsed)

    base = statistics.median(times["supervised"])
    rows = []
    for mode, values in times.items():
        median = statistics.median(values)
        rows.append({"mode": mode, "median_step_s": round(median, 5), "ratio_vs_supervised": round(median / base, 3),
                     "min_step_s": round(min(values), 5), "max_step_s": round(max(values), 5)})
    print(f"{'mode':<22}{'median step (ms)':>18}{'x supervised':>14}")
    for row in rows:
        print(f"{row['mode']:<22}{row['median_step_s'] * 1000:>18.1f}{row['ratio_vs_supervised']:>14.3f}")
    cached_ratio = rows[2]["ratio_vs_supervised"]
    print(f"cached <= 1.15x supervised: {'PASS' if cached_ratio <= 1.15 else 'FAIL'} ({cached_ratio:.3f}x)")

    result = {
        "benchmark": "distill_overhead",
        "setup": {**{k: v for k, v in vars(args).items() if k != "output"}, "heads": HEADS,
                  "student_params": sum(p.numel() for p in student.parameters()),
                  "ensemble_params": sum(p.numel() for p in ensemble.parameters()),
                  "device": "cpu", "torch_threads": torch.get_num_threads(), "python": sys.version.split()[0],
                  "machine": platform.machine()},
        "rows": rows,
        "target": "cached <= 1.15x supervised",
        "target_met": cached_ratio <= 1.15,
    }
    atomic_write_json(args.output, result)
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
