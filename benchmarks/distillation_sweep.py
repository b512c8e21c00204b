"""Distillation recipe variants on mini-kitchens, several seeds: student − baseline-rgb per variant.

    python benchmarks/distillation_sweep.py                               # benchmarks/sweeps/distillation_variants.json
    python benchmarks/distillation_sweep.py --seeds 3 --parallel 8 --no-deterministic --workers 2   # on a GPU box

For each seed and each *base* (a set of `train.py` options), one full run is made. Each *variant* adds options to
a base and reuses the base run's units that those options cannot change (teachers, and the baselines too when the
variant leaves the student's schedule alone), so a variant costs an ensemble fit, a distillation and an evaluation.
A variant whose options would change a reused unit is refused. Prints a Markdown table (mean ± std over seeds of the
per-seed difference student − baseline-rgb) and writes benchmarks/results/distillation_sweep.json. docs/training.md
reports the sweep run on an H200 (`--no-deterministic`: cuDNN/cuBLAS are then not bit-reproducible).
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import time
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from mmkd_hf.pipeline import RunFolder, parse_config  # noqa: E402
from mmkd_hf.utils import atomic_write_json  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from distillation_gain import model_summary, paired_action_difference  # noqa: E402

TEACHER_UNITS = ("teacher-rgb", "teacher-flow", "teacher-audio", "teacher-layout")
BASELINE_UNITS = ("baseline-rgb", "omnivore")
#: options that change what a reused unit would be (a variant may not set them)
TEACHER_OPTIONS = ("--seed", "--dataset", "--data_dir", "--preset", "--num_frames", "--image_size", "--frame_sampler",
                   "--frame_stride", "--frames_dtype", "--mini_kitchens_scale", "--max_train_samples",
                   "--held_out_fraction", "--teacher_epochs", "--teacher_batch_size", "--teacher_learning_rate",
                   "--layout_learning_rate", "--weight_decay", "--warmup_ratio", "--max_grad_norm", "--max_steps",
                   "--teachers")
BASELINE_OPTIONS = TEACHER_OPTIONS + ("--student_epochs", "--student_batch_size", "--student_learning_rate",
                                      "--baseline_epochs")


#: base units a variant may keep although its options change them (``"reuse": [...]`` in the spec): only the
#: omnivore baseline, which the student − baseline-rgb comparison does not use (its row then shows the base's schedule)
OPTIONAL_REUSE = ("omnivore",)


def reused_units(variant: dict) -> tuple[str, ...]:
    """The base run's units a variant reuses: teachers always, baselines unless it changes the student schedule,
    plus the units of ``OPTIONAL_REUSE`` the variant lists under ``"reuse"`` (to save their training time)."""
    args = variant.get("args", [])
    options = {a.split("=", 1)[0].replace("-", "_").replace("__", "--", 1) for a in args if a.startswith("--")}
    clash = sorted(options & set(TEACHER_OPTIONS))
    if clash:
        raise ValueError(f"variant {variant['name']!r} sets {clash}, which change the teachers it reuses; make it a base")
    extra = tuple(variant.get("reuse", []))
    refused = sorted(set(extra) - set(OPTIONAL_REUSE))
    if refused:
        raise ValueError(f"variant {variant['name']!r}: \"reuse\" may list only {list(OPTIONAL_REUSE)}, not {refused}")
    units = TEACHER_UNITS + (() if options & set(BASELINE_OPTIONS) else BASELINE_UNITS)
    return units + tuple(u for u in extra if u not in units)


def clone_run(source: Path, target: Path, units: tuple[str, ...], argv: list[str]) -> None:
    """A run folder for ``argv`` holding copies of ``units`` of ``source`` (and its held-out split)."""
    if target.exists():
        shutil.rmtree(target)
    (target / "stages").mkdir(parents=True)
    shutil.copy(source / "held_out_split.json", target / "held_out_split.json")
    for unit in ("dataset", *units):
        done = source / "stages" / f"{unit}.done"
        if not done.exists():  # a unit the base does not train (e.g. a teacher outside its --teachers)
            continue
        if (source / unit).exists():
            shutil.copytree(source / unit, target / unit)
        shutil.copy(done, target / "stages" / f"{unit}.done")
    RunFolder(target).write_identity(parse_config(argv))


def per_model(results: dict) -> dict[str, dict[str, float]]:
    """Action top-1, per-head top-1 and mean ECE of every model of a results.json."""
    return {model: model_summary(metrics) for model, metrics in results["models"].items()}


def mean_std(values: list[float]) -> str:
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.fmean(values):+.1f} ± {std:.1f}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--spec", default=str(REPO / "benchmarks" / "sweeps" / "distillation_variants.json"))
    parser.add_argument("--seeds", type=int, default=3, help="seeds 0 .. N-1")
    parser.add_argument("--output-dir", default=str(REPO / "outputs" / "sweep"), help="parent of the run folders")
    parser.add_argument("--result", default=str(REPO / "benchmarks" / "results" / "distillation_sweep.json"))
    parser.add_argument("--parallel", type=int, default=1, help="runs at the same time")
    parser.add_argument("--workers", type=int, default=0, help="DataLoader workers per run")
    parser.add_argument("--no-deterministic", action="store_true", help="pass --deterministic false (GPU)")
    args = parser.parse_args()

    spec = json.loads(Path(args.spec).read_text())
    output_dir = Path(args.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    common = ["--output_dir", str(output_dir), "--report_to", "none", "--write_model_cards", "false",
              "--num_workers", str(args.workers)] + (["--deterministic", "false"] if args.no_deterministic else [])
    seeds = list(range(args.seeds))
    for variant in spec["variants"]:
        reused_units(variant)  # refuse a bad spec before anything runs

    def run(name: str, argv: list[str]) -> dict:
        started = time.time()
        with open(output_dir / f"{name}.log", "w") as log:
            code = subprocess.call([sys.executable, str(REPO / "train.py"), *argv], cwd=REPO, stdout=log,
                                   stderr=subprocess.STDOUT)
        if code != 0:
            raise RuntimeError(f"{name} failed (exit {code}); see {output_dir / f'{name}.log'}")
        print(f"[sweep] {name}: {time.time() - started:.0f} s", flush=True)
        return per_model(json.loads((output_dir / name / "results.json").read_text()))

    def base_argv(base: str, seed: int, name: str) -> list[str]:
        return ["--run_name", name, "--seed", str(seed), *common, *spec["bases"][base]]

    results: dict[str, dict[int, dict]] = {}
    with ThreadPoolExecutor(max(1, args.parallel)) as pool:
        bases: dict[tuple[str, int], Future] = {
            (base, seed): pool.submit(run, f"{base}-seed{seed}", base_argv(base, seed, f"{base}-seed{seed}"))
            for base in spec["bases"] for seed in seeds
        }

        def variant_job(variant: dict, seed: int) -> dict:
            bases[(variant["base"], seed)].result()
            name = f"{variant['base']}-{variant['name']}-seed{seed}"
            argv = base_argv(variant["base"], seed, name) + list(variant.get("args", []))
            clone_run(output_dir / f"{variant['base']}-seed{seed}", output_dir / name, reused_units(variant), argv)
            return run(name, argv)

        variants = {(f"{v['base']}-{v['name']}", seed): pool.submit(variant_job, v, seed)
                    for v in spec["variants"] for seed in seeds}
        for (base, seed), future in bases.items():
            results.setdefault(base, {})[seed] = future.result()
        for (name, seed), future in variants.items():
            results.setdefault(name, {})[seed] = future.result()

    rows = []
    print("\n| run | ensemble action | ensemble ECE | student action | baseline action | Δ action | Δ action, 95 % "
          "paired bootstrap | Δ mean ECE |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for name, by_seed in results.items():
        runs = [by_seed[s] for s in seeds]
        delta = [r["student"]["action_top1"] - r["baseline-rgb"]["action_top1"] for r in runs]
        delta_ece = [r["student"]["ece"] - r["baseline-rgb"]["ece"] for r in runs]
        # the validation clips and the seeds resampled (see distillation_gain.py)
        paired = paired_action_difference([output_dir / f"{name}-seed{s}" for s in seeds])
        row = {"run": name, "seeds": seeds, "delta_action": delta, "delta_ece": delta_ece,
               "delta_action_paired_bootstrap": paired, "per_seed": {str(s): by_seed[s] for s in seeds}}
        rows.append(row)
        cells = [mean_std([r[m][k] for r in runs]).lstrip("+") for m, k in
                 (("ensemble", "action_top1"), ("ensemble", "ece"), ("student", "action_top1"), ("baseline-rgb", "action_top1"))]
        interval = f"[{paired['low']:+.1f}, {paired['high']:+.1f}]" if paired else "–"
        print(f"| {name} | {' | '.join(cells)} | {mean_std(delta)} | {interval} | {mean_std(delta_ece)} |")
    atomic_write_json(Path(args.result), {"spec": spec, "common_args": common, "rows": rows})
    print(f"\nwritten {args.result}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
