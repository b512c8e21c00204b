"""Does distillation pay off? The distilled RGB student vs `baseline-rgb` (same network, init, data order and
schedule, labels only) on mini-kitchens, over several seeds, beside `omnivore`, every teacher and the ensemble.

    python benchmarks/distillation_gain.py --seeds 3 --parallel 2    # the main job's defaults, seeds 0, 1, 2
    python benchmarks/distillation_gain.py --seeds 3 -- --temperature 4   # extra train.py options after --
    python benchmarks/distillation_gain.py --regime exact-labels --seeds 3   # the previous main job (exact labels, 12 epochs)

Each seed is one full `train.py` run in its own run folder under --output-dir, **trained from scratch**: the
benchmark creates the folder and writes `<run>.benchmark.json` beside it (code version, machine, command). An
interrupted benchmark continues its own folders; a run folder it did not create is refused unless
`--reuse-runs`, and then the JSON and the printed table say that trained units were reused.

It checks the paper's three claims, student − baseline-rgb per seed, then mean ± std over seeds, and a paired
bootstrap interval (`mmkd_hf.evaluation.metrics.paired_bootstrap_difference`: validation clips and seeds
resampled, both models scored on the same clips):

1. accuracy: action, verb and noun top-1 (target: action >= +3 points with the interval above 0);
2. calibration: ECE (15 bins) and NLL, mean over the heads (target: lower);
3. fewer views: the drop in action top-1 from 2x3 views (clips x crops) to 1x1 (target: smaller for the student).

Prints Markdown tables and writes benchmarks/results/distillation_gain.json (or distillation_gain_<regime>.json).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _machine import cpu_model  # noqa: E402
from mmkd_hf.evaluation.exports import read_predictions_parquet  # noqa: E402
from mmkd_hf.evaluation.metrics import paired_bootstrap_difference, top_k_correct  # noqa: E402
from mmkd_hf.pipeline.arguments import parse_config  # noqa: E402
from mmkd_hf.pipeline.data_adapter import prepare_dataset  # noqa: E402
from mmkd_hf.utils import atomic_write_json  # noqa: E402

MODELS = ("student", "baseline-rgb", "omnivore", "ensemble", "teacher-rgb", "teacher-flow", "teacher-audio",
          "teacher-layout")
TARGET_GAIN = 3.0

#: ``--regime``: the train.py options of each regime (the data folder follows from ``--narration_noise``)
REGIMES: dict[str, list[str]] = {
    # the main job's defaults (training narrations noisy in the verb and the noun, 0.3 each, as EPIC-KITCHENS
    # narrations can be; student and baselines 144 epochs; cached teacher logits), with the omnivore baseline too
    "default": ["--baselines", "baseline-rgb,omnivore"],
    # the main job before narration noise: exact labels, student and baselines 12 epochs, online teachers
    "exact-labels": ["--narration_noise", "0", "--student_epochs", "12", "--teacher_mode", "online",
                     "--baselines", "baseline-rgb,omnivore"],
}


def code_version() -> str:
    """``git describe`` of the repository (``+dirty`` when it has uncommitted changes), or ``unknown``."""
    try:
        return subprocess.run(["git", "describe", "--always", "--dirty=+dirty"], cwd=REPO, capture_output=True,
                              text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def machine() -> dict:
    """What the timings ran on: CPU model, cores, load average, torch version."""
    import platform

    import torch

    return {"cpu": cpu_model(), "cores": os.cpu_count(), "load_average": [round(x, 2) for x in os.getloadavg()],
            "torch": torch.__version__, "python": platform.python_version()}


def seed_command(seed: int, output_dir: Path, extra: list[str], launcher: list[str]) -> tuple[list[str], Path]:
    run_name = f"distillation-gain-seed{seed}"
    command = launcher + [str(REPO / "train.py"), "--seed", str(seed), "--run_name", run_name,
                          "--output_dir", str(output_dir), *extra]
    return command, output_dir / run_name


def portable(value):
    """``value`` with the repository's absolute path made relative (commands and paths in the committed JSON)."""
    if isinstance(value, str):
        return value.replace(str(REPO) + os.sep, "").replace(str(REPO), ".")
    if isinstance(value, list):
        return [portable(v) for v in value]
    if isinstance(value, dict):
        return {k: portable(v) for k, v in value.items()}
    return value


def claim_run_folder(run: Path, command: list[str], reuse: bool) -> dict:
    """The provenance of one seed's run folder: written when the benchmark creates the folder, read when it continues
    its own interrupted run; a folder it did not create is refused, or (``reuse``) recorded as reused."""
    record = run.with_name(run.name + ".benchmark.json")
    if record.exists():
        return json.loads(record.read_text())
    if run.exists() and any(run.iterdir()):
        if not reuse:
            raise SystemExit(f"{run} exists and was not created by this benchmark: its units may come from another "
                             f"run; choose another --output-dir, or pass --reuse-runs to report it as reused")
        provenance = {"created_by": "an earlier run (reused)", "reused_units": True, "command": command}
    else:
        provenance = {"created_by": "benchmarks/distillation_gain.py", "reused_units": False, "command": command,
                      "code_version": code_version(), "machine": machine(), "started": time.strftime("%Y-%m-%dT%H:%M:%S")}
    atomic_write_json(record, provenance)
    return provenance


def run_seeds(seeds: list[int], output_dir: Path, extra: list[str], launcher: list[str], parallel: int,
              reuse: bool = False) -> tuple[dict, dict]:
    """Run the pipeline for every seed, ``parallel`` at a time, each with ``cores // parallel`` threads; returns
    ``({seed: results.json}, {seed: provenance})``."""
    threads = max(1, (os.cpu_count() or 1) // max(1, parallel))
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", str(threads))}
    provenance, pending = {}, []
    for seed in seeds:
        command, run = seed_command(seed, output_dir, extra, launcher)
        provenance[seed] = claim_run_folder(run, command, reuse)
        pending.append((seed, command))
    running: list[tuple[int, subprocess.Popen, float]] = []
    while pending or running:
        while pending and len(running) < max(1, parallel):
            seed, command = pending.pop(0)
            print(f"[distillation_gain] seed {seed}: OMP_NUM_THREADS={env['OMP_NUM_THREADS']} {' '.join(command)}",
                  flush=True)
            log = open(output_dir / f"distillation-gain-seed{seed}.log", "a")
            running.append((seed, subprocess.Popen(command, cwd=REPO, stdout=log, stderr=subprocess.STDOUT, env=env),
                            time.time()))
        time.sleep(2)
        for entry in list(running):
            seed, process, started = entry
            if process.poll() is not None:
                running.remove(entry)
                if process.returncode != 0:
                    raise RuntimeError(f"seed {seed} failed (exit {process.returncode}); see "
                                       f"{output_dir / f'distillation-gain-seed{seed}.log'}")
                print(f"[distillation_gain] seed {seed}: done in {time.time() - started:.0f} s", flush=True)
    results = {seed: json.loads((seed_command(seed, output_dir, extra, launcher)[1] / "results.json").read_text())
               for seed in seeds}
    return results, provenance


def action_correct(predictions_file: Path) -> tuple[list[str], np.ndarray]:
    """Sample ids (sorted) and whether each sample's action is right: every head's top-1 equals its label
    (verb and noun for EPIC-style heads, the single head otherwise), from an evaluation's predictions.parquet."""
    ids, scores, labels = read_predictions_parquet(predictions_file)
    heads = [h for h in scores if h in labels and h != "action"] or ["action"]
    correct = np.ones(len(ids), dtype=bool)
    for head in heads:
        correct &= top_k_correct(scores[head], labels[head], ks=(1,))[1]
    order = np.argsort(ids)
    return [ids[i] for i in order], correct[order]


def paired_action_difference(run_dirs: list[Path], model_a: str = "student", model_b: str = "baseline-rgb") -> dict:
    """:func:`paired_bootstrap_difference` of the action top-1 of ``model_a`` and ``model_b`` over the run folders
    (one per seed), from their ``eval/<model>/predictions.parquet``. Empty when a folder lacks the predictions."""
    rows_a, rows_b, reference = [], [], None
    for run in run_dirs:
        files = [Path(run) / "eval" / m / "predictions.parquet" for m in (model_a, model_b)]
        if not all(f.exists() for f in files):
            return {}
        (ids_a, a), (ids_b, b) = action_correct(files[0]), action_correct(files[1])
        if ids_a != ids_b or (reference is not None and ids_a != reference):
            raise ValueError(f"{run}: the models were not evaluated on the same samples as the other runs")
        reference = ids_a
        rows_a.append(a)
        rows_b.append(b)
    return paired_bootstrap_difference(np.stack(rows_a), np.stack(rows_b))


def model_summary(result: dict) -> dict[str, float]:
    """Action top-1, per-head top-1 and the mean ECE over heads of one model."""
    heads = result.get("heads", {})
    summary = {f"{head}_top1": float(values["top1"]) for head, values in heads.items()}
    eces = [float(values["ece"]) for values in heads.values()]
    summary["ece"] = sum(eces) / len(eces)
    nlls = [float(values["nll"]) for values in heads.values() if values.get("nll") is not None]
    if len(nlls) == len(heads):
        summary["nll"] = sum(nlls) / len(nlls)
    for head, values in heads.items():
        summary[f"{head}_ece"] = float(values["ece"])
    if result.get("action", {}).get("top1") is not None:
        summary["action_top1"] = float(result["action"]["top1"])
    return summary


def mean_std(values: list[float]) -> dict[str, float]:
    return {"mean": statistics.fmean(values), "std": statistics.stdev(values) if len(values) > 1 else 0.0,
            "values": values}


def aggregate(per_seed: dict[int, dict]) -> dict[str, dict[str, dict[str, float]]]:
    table: dict[str, dict[str, dict[str, float]]] = {}
    for model in MODELS:
        rows = [model_summary(results["models"][model]) for results in per_seed.values() if model in results["models"]]
        if not rows:
            continue
        table[model] = {metric: mean_std([row[metric] for row in rows]) for metric in rows[0]}
    return table


def markdown(table: dict, seeds: list[int]) -> str:
    metrics = [m for m in ("action_top1", "verb_top1", "noun_top1", "verb_ece", "noun_ece", "ece", "nll")
               if m in table.get("student", {})]
    lines = [f"Mini-kitchens validation, mean ± std over seeds {seeds} (accuracy and ECE-15 in %, NLL in nats, "
             "mean over the verb and noun heads).", "",
             "| model | " + " | ".join(metrics) + " |", "|---|" + "---|" * len(metrics)]
    for model, values in table.items():
        cells = [(f"{values[m]['mean']:.3f} ± {values[m]['std']:.3f}" if m == "nll" else
                  f"{values[m]['mean']:.1f} ± {values[m]['std']:.1f}") if m in values else "–" for m in metrics]
        lines.append(f"| {model} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def views_action_top1(run: Path, model_name: str, views: list[tuple[int, int]]) -> dict[str, dict]:
    """Accuracy, ECE, NLL and batch-1 latency of ``run/model_name`` on the validation split at each (clips, crops)
    setting (``mmkd_hf.evaluation.views.views_report`` with the run's own data settings)."""
    import torch
    from transformers import AutoModel

    from mmkd_hf.data import MultimodalCollator, RunSettings
    from mmkd_hf.evaluation.views import views_report

    settings = RunSettings.from_run_dir(run)
    model = AutoModel.from_pretrained(run / model_name).eval()
    torch.manual_seed(0)
    rows = views_report(model, lambda clips, crops: settings.load_dataset("validation", ["rgb"], num_clips=clips,
                                                                          num_crops=crops),
                        MultimodalCollator(), views=views, progress=False, name=model_name)
    return {f"{row['clips']}x{row['crops']}": row for row in rows}


def paired(values_a: list[float], values_b: list[float]) -> dict:
    return mean_std([a - b for a, b in zip(values_a, values_b)])


def claims(per_seed: dict[int, dict], output_dir: Path, seeds: list[int], views: bool) -> dict:
    """The three claims, student - baseline-rgb per seed (see the module docstring)."""
    runs = {seed: output_dir / f"distillation-gain-seed{seed}" for seed in seeds}
    summary = {m: {s: model_summary(per_seed[s]["models"][m]) for s in seeds} for m in ("student", "baseline-rgb")}
    student, baseline = summary["student"], summary["baseline-rgb"]
    accuracy = {f"{head}_top1": paired([student[s][f"{head}_top1"] for s in seeds],
                                       [baseline[s][f"{head}_top1"] for s in seeds])
                for head in ("action", "verb", "noun") if f"{head}_top1" in student[seeds[0]]}
    accuracy["action_top1_paired_bootstrap"] = paired_action_difference([runs[s] for s in seeds])
    calibration = {
        "ece": paired([student[s]["ece"] for s in seeds], [baseline[s]["ece"] for s in seeds]),
        "nll": paired([student[s]["nll"] for s in seeds], [baseline[s]["nll"] for s in seeds]),
    }
    result = {"accuracy": accuracy, "calibration": calibration}
    gain = accuracy["action_top1"]["mean"]
    interval = accuracy["action_top1_paired_bootstrap"]
    result["accuracy_holds"] = gain >= TARGET_GAIN and bool(interval) and interval["low"] > 0
    result["calibration_holds"] = calibration["ece"]["mean"] < 0 and calibration["nll"]["mean"] < 0
    if views:
        settings = [(1, 1), (2, 3)]
        table = {m: {s: views_action_top1(runs[s], m, settings) for s in seeds} for m in ("student", "baseline-rgb")}
        drops = {m: [table[m][s]["2x3"]["action"]["top1"] - table[m][s]["1x1"]["action"]["top1"] for s in seeds]
                 for m in table}
        result["views"] = {
            "settings": ["1x1", "2x3"],
            "per_seed": {m: {str(s): table[m][s] for s in seeds} for m in table},
            "drop_2x3_to_1x1": {m: mean_std(drops[m]) for m in drops},
            "drop_difference": paired(drops["student"], drops["baseline-rgb"]),
        }
        result["views_holds"] = result["views"]["drop_difference"]["mean"] < 0
    return result


def claims_markdown(result: dict) -> str:
    def cell(entry: dict, digits: int = 1) -> str:
        return f"{entry['mean']:+.{digits}f} ± {entry['std']:.{digits}f}"

    acc, cal = result["accuracy"], result["calibration"]
    boot = acc.get("action_top1_paired_bootstrap") or {}
    lines = ["| claim | measure (student − baseline-rgb) | per seed | mean ± std | holds |", "|---|---|---|---|---|"]
    interval = f", 95 % interval [{boot['low']:+.1f}, {boot['high']:+.1f}]" if boot else ""
    for head in ("action", "verb", "noun"):
        if f"{head}_top1" in acc:
            entry = acc[f"{head}_top1"]
            extra = interval if head == "action" else ""
            holds = ("yes" if result["accuracy_holds"] else "no") if head == "action" else ""
            lines.append(f"| accuracy | {head} top-1 (points) | {', '.join(f'{v:+.1f}' for v in entry['values'])} | "
                         f"{cell(entry)}{extra} | {holds} |")
    for key, label, digits in (("ece", "mean ECE (points)", 1), ("nll", "mean NLL (nats)", 3)):
        entry = cal[key]
        holds = ("yes" if result["calibration_holds"] else "no") if key == "ece" else ""
        lines.append(f"| calibration | {label} | {', '.join(f'{v:+.{digits}f}' for v in entry['values'])} | "
                     f"{cell(entry, digits)} | {holds} |")
    if "views" in result:
        drops = result["views"]["drop_2x3_to_1x1"]
        entry = result["views"]["drop_difference"]
        lines.append(f"| fewer views | action top-1 drop from 2x3 to 1x1 views: student {drops['student']['mean']:+.1f}, "
                     f"baseline {drops['baseline-rgb']['mean']:+.1f} (difference) | "
                     f"{', '.join(f'{v:+.1f}' for v in entry['values'])} | {cell(entry)} | "
                     f"{'yes' if result['views_holds'] else 'no'} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=3, help="number of seeds (0, 1, ..., N-1)")
    parser.add_argument("--output-dir", default=None,
                        help="parent of the run folders (default outputs/benchmarks, or outputs/benchmarks-<regime>)")
    parser.add_argument("--result", default=None, help="the JSON written (default benchmarks/results/"
                        "distillation_gain.json, or distillation_gain_<regime>.json)")
    parser.add_argument("--launcher", default=f"{Path(sys.executable).parent / 'accelerate'} launch --num_processes 1 "
                        "--num_machines 1 --mixed_precision no --dynamo_backend no",
                        help="command that runs train.py")
    parser.add_argument("--parallel", type=int, default=1,
                        help="seeds run at the same time, each with cores / parallel threads")
    parser.add_argument("--regime", choices=sorted(REGIMES), default="default",
                        help="default: the main job's defaults. exact-labels: exact training narrations, student and "
                             "baselines 12 epochs, online teachers (the main job before narration noise)")
    parser.add_argument("--reuse-runs", action="store_true",
                        help="accept run folders this benchmark did not create (reported as reusing trained units)")
    parser.add_argument("--no-views", action="store_true", help="skip the fewer-views claim (2x3 vs 1x1 evaluation)")
    parser.add_argument("extra", nargs="*", help="options passed to train.py (after --)")
    args = parser.parse_args(argv)
    seeds = list(range(args.seeds))
    suffix = "" if args.regime == "default" else f"-{args.regime}"
    output_dir = Path(args.output_dir or REPO / "outputs" / f"benchmarks{suffix}")
    args.result = args.result or str(REPO / "benchmarks" / "results" / f"distillation_gain{suffix.replace('-', '_')}.json")
    output_dir.mkdir(parents=True, exist_ok=True)
    extra = REGIMES[args.regime] + list(args.extra)
    if not any(e.startswith(("--data_dir", "--data-dir")) for e in extra):
        # make the shared dataset once, before parallel runs would race to generate it
        prepare_dataset(parse_config(extra))
    started = time.time()
    per_seed, provenance = run_seeds(seeds, output_dir, extra, args.launcher.split(), args.parallel, args.reuse_runs)
    wall = time.time() - started
    table = aggregate(per_seed)
    result = claims(per_seed, output_dir, seeds, views=not args.no_views)
    reused = sorted(s for s in seeds if provenance[s].get("reused_units"))
    payload = {
        "benchmark": "distillation_gain",
        "dataset": "mini-kitchens",
        "seeds": seeds,
        "regime": args.regime,
        "train_options": portable(extra),
        "command": portable(" ".join(["python", "benchmarks/distillation_gain.py",
                                      *(argv if argv is not None else sys.argv[1:])])),
        "trained_from_scratch": not reused,
        "seeds_reusing_trained_units": reused,
        "code_version": code_version(),
        "machine": machine(),
        "runs": {seed: portable(provenance[seed]) for seed in seeds},
        "models": table,
        "claims": result,
        "wall_time_s": round(wall, 1),
        "timings_s": {seed: per_seed[seed].get("timings_s", {}) for seed in seeds},
        "config": portable(per_seed[seeds[0]].get("config", {})),
    }
    atomic_write_json(args.result, payload)
    print(markdown(table, seeds))
    print()
    print(claims_markdown(result))
    if reused:
        print(f"\nseeds {reused} reuse trained units of run folders this benchmark did not create")
    print(f"written {args.result}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
