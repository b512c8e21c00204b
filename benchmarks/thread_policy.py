"""How many threads, and how should they wait? The main job's training step on this machine, idle and beside one
CPU-bound process, for each thread count and OpenMP wait policy.

    python benchmarks/thread_policy.py                  # every setting, idle and busy, about 4 minutes on 2 cores
    python benchmarks/thread_policy.py --steps 10 --threads 1 2 --policies default PASSIVE

Each setting runs in a fresh process (OpenMP reads ``OMP_NUM_THREADS`` and ``OMP_WAIT_POLICY`` once, when torch
loads): it builds the main job's student (the ``tiny`` preset: Video Swin, 8 x 48 x 48 clips, verb and noun
heads) and times full training steps (forward, backward, AdamW) on a fixed batch of 16 clips; the median step
is reported. "busy" runs the same measurement while one other process spins on a core, as on a shared machine.
"2 x 1" is two single-threaded processes at once (``train.py --parallel_units 2``), counted as the steps both
make per second. The question the table answers: with which setting does a busy machine cost the job at most
its share (on 2 cores, one busy process should leave about 2/3 of the idle rate), without giving up speed when
the machine is idle?

Writes benchmarks/results/thread_policy.json (settings, machine, load average before and after).
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

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

CHILD = r"""
import json, statistics, sys, time
import torch
from mmkd_hf.distillation.presets import get_preset
from mmkd_hf.pipeline.arguments import parse_config
from mmkd_hf.pipeline.model_builders import build_student

steps, warmup = int(sys.argv[1]), int(sys.argv[2])
config = parse_config([])
torch.manual_seed(0)
heads = {"verb": 8, "noun": 10}
model = build_student(config, heads, {h: [str(i) for i in range(n)] for h, n in heads.items()}).train()
optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
batch = {"pixel_values": torch.randint(0, 256, (16, config.frames, 3, config.size, config.size), dtype=torch.uint8),
         "labels": {h: torch.randint(0, n, (16,)) for h, n in heads.items()}}
times = []
for step in range(warmup + steps):
    start = time.perf_counter()
    out = model(pixel_values=batch["pixel_values"], labels=batch["labels"])
    out.loss.backward()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    if step >= warmup:
        times.append(time.perf_counter() - start)
print(json.dumps({"median_s": statistics.median(times), "times_s": times, "threads": torch.get_num_threads()}))
"""


def measure(threads: int, policy: str, busy: bool, steps: int, warmup: int, processes: int = 1) -> dict:
    """Median step of ``processes`` identical training processes run at once (1: one process alone); with
    ``processes`` > 1 the step rate of the machine is ``processes / median``."""
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "PYTHONPATH": str(REPO / "src")}
    env.pop("OMP_WAIT_POLICY", None)
    if policy != "default":
        env["OMP_WAIT_POLICY"] = policy
    spinner = subprocess.Popen([sys.executable, "-c", "while True: pass"]) if busy else None
    try:
        children = [subprocess.Popen([sys.executable, "-c", CHILD, str(steps), str(warmup)], env=env,
                                     stdout=subprocess.PIPE, text=True) for _ in range(processes)]
        outputs = [child.communicate()[0] for child in children]
        if any(child.returncode for child in children):
            raise RuntimeError(f"a measurement process failed (threads {threads}, policy {policy})")
    finally:
        if spinner is not None:
            spinner.kill()
            spinner.wait()
    results = [json.loads(out.strip().splitlines()[-1]) for out in outputs]
    median = statistics.median(r["median_s"] for r in results)
    return {"median_s": median, "processes": processes, "steps_per_s": processes / median,
            "per_process": results}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--policies", nargs="+", default=["default", "PASSIVE"],
                        help="OMP_WAIT_POLICY values (default = unset: the OpenMP runtime's own)")
    parser.add_argument("--steps", type=int, default=15)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "thread_policy.json"))
    args = parser.parse_args(argv)
    from mmkd_hf.utils import atomic_write_json

    load_before = os.getloadavg()
    rows = []
    settings = [(threads, policy, 1) for threads in args.threads for policy in args.policies]
    cores = os.cpu_count() or 1
    if cores > 1:  # one single-threaded process per core (train.py --parallel_units)
        settings.append((1, "default", cores))
    for threads, policy, processes in settings:
        for busy in (False, True):
            result = measure(threads, policy, busy, args.steps, args.warmup, processes)
            rows.append({"threads": threads, "wait_policy": policy, "busy": busy, **result})
            print(f"{processes} process(es) x {threads} thread(s), OMP_WAIT_POLICY {policy:8s}, "
                  f"{'beside a busy process' if busy else 'idle'}: {1000 * result['median_s']:.0f} ms/step, "
                  f"{result['steps_per_s']:.2f} steps/s", flush=True)
    def rate(threads, policy, processes, busy):
        return next(r["steps_per_s"] for r in rows if (r["threads"], r["wait_policy"], r["processes"], r["busy"])
                    == (threads, policy, processes, busy))

    best_idle = max(r["steps_per_s"] for r in rows if not r["busy"])
    lines = ["| processes x threads | OMP_WAIT_POLICY | idle steps/s | beside a busy process, steps/s | busy / idle "
             "| idle / best idle |", "|---|---|---:|---:|---:|---:|"]
    for threads, policy, processes in settings:
        quiet, busy = rate(threads, policy, processes, False), rate(threads, policy, processes, True)
        lines.append(f"| {processes} x {threads} | {policy} | {quiet:.2f} | {busy:.2f} | {busy / quiet:.2f} | "
                     f"{quiet / best_idle:.2f} |")
    table = "\n".join(lines)
    print(table)
    atomic_write_json(args.out, {
        "benchmark": "thread_policy", "cores": os.cpu_count(), "steps": args.steps, "warmup": args.warmup,
        "load_average_before": [round(x, 2) for x in load_before],
        "load_average_after": [round(x, 2) for x in os.getloadavg()],
        "rows": rows, "table": table,
    })
    print(f"written {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
