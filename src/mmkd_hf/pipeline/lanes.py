"""Training units side by side: ``--parallel_units N`` runs up to N units of a run at once, each in its own process
with ``cores / N`` threads, in the order their dependencies allow.

Why: the main job's networks are small, so one process with two threads on two cores leaves much of the second
core idle (OpenMP's fork/join around every small operation), and on a shared machine its threads spin at each
join while a core is taken by someone else. One single-threaded process per core keeps both cores busy and costs
a busy machine only its share (``benchmarks/thread_policy.py`` measures both). Every unit seeds itself
(``(seed, unit)``) and reads only the saved outputs of the units it depends on, so the order in which units run
does not change what they compute; each unit's log goes to ``<run>/logs/<unit>.log``.

Dependencies: every teacher before the ensemble, the ensemble before the student; ``baseline-rgb`` and
``omnivore`` depend on nothing. The longest units start first (the teachers, which gate the student, then
omnivore), and evaluation runs afterwards in the calling process.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from ..utils import atomic_write_json
from .arguments import PipelineConfig
from .run_folder import RunFolder
from .runtime import cpu_only, info, process_state

#: Units in the order they start when several are ready (the teachers gate the ensemble and the student).
UNIT_PRIORITY = ("teacher-rgb", "teacher-flow", "teacher-audio", "teacher-layout", "ensemble", "student", "omnivore",
                 "baseline-rgb")
#: ``--stage`` -> the units it trains
STAGE_UNITS = {
    "all": UNIT_PRIORITY,
    "teachers": UNIT_PRIORITY[:4],
    "weights": ("ensemble",),
    "distill": ("student",),
    "baselines": ("omnivore", "baseline-rgb"),
    "evaluate": (),
}
LOG_DIR = "logs"


class UnitFailedError(RuntimeError):
    """A unit's process failed; the message names the unit, its exit code and its log."""

    def __init__(self, message: str, exit_code: int):
        super().__init__(message)
        self.exit_code = exit_code


def dependencies(unit: str, teachers: Sequence[str]) -> tuple[str, ...]:
    if unit == "ensemble":
        return tuple(f"teacher-{m}" for m in teachers)
    if unit == "student":
        return ("ensemble",)
    return ()


def resolved_lanes(config: PipelineConfig) -> int:
    """How many units run at once: ``--parallel_units``, or with 0 (auto) 2 on a CPU-only machine with at least 2
    cores and one process, else 1 (a GPU runs one unit at a time; DDP processes share every unit). Auto also
    gives 1 for a run cut short by ``--max_steps`` (debugging, tests): there starting a process per unit (a few
    seconds each) costs more than it saves."""
    if process_state().num_processes > 1:
        return 1
    if config.parallel_units > 0:
        return int(config.parallel_units)
    if config.max_steps > 0:
        return 1
    return 2 if cpu_only() and (os.cpu_count() or 1) >= 2 else 1


def threads_per_unit(lanes: int) -> int:
    return max(1, (os.cpu_count() or 1) // max(1, lanes))


@dataclass
class _Running:
    unit: str
    process: subprocess.Popen
    started: float
    log: Path


def run_units(config: PipelineConfig, folder: RunFolder, units: Sequence[str], lanes: int) -> None:
    """Train ``units`` (those not done yet), ``lanes`` at a time, each in a child process running this pipeline with
    ``--units <unit>``; raises :class:`UnitFailedError` after the running ones finish when one fails."""
    teachers = [f"teacher-{m}" for m in config.teacher_list]
    wanted = [u for u in UNIT_PRIORITY if u in units and (not u.startswith("teacher-") or u in teachers)
              and (u not in ("baseline-rgb", "omnivore") or u in config.baseline_list)]
    todo = [u for u in wanted if not folder.is_done(u)]
    if not todo:
        return
    (folder.path / LOG_DIR).mkdir(parents=True, exist_ok=True)
    options = folder.path / LOG_DIR / "unit-options.json"
    values = {k: v for k, v in config.to_dict().items() if k not in ("config", "overwrite", "stage")}
    atomic_write_json(options, {**values, "parallel_units": 1})
    threads = threads_per_unit(lanes)
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    info(f"training {len(todo)} unit(s), {lanes} at a time with {threads} thread(s) each; logs in "
         f"{folder.path / LOG_DIR}/")
    running: list[_Running] = []
    failed: list[str] = []
    exit_code = 1
    while (todo and not failed) or running:
        ready = [u for u in todo if all(folder.is_done(d) for d in dependencies(u, config.teacher_list))]
        while ready and len(running) < lanes and not failed:
            unit = ready.pop(0)
            todo.remove(unit)
            log = folder.path / LOG_DIR / f"{unit}.log"
            command = [sys.executable, "-m", "mmkd_hf.pipeline", "--config", str(options), "--units", unit]
            with open(log, "a", encoding="utf-8") as handle:
                process = subprocess.Popen(command, stdout=handle, stderr=subprocess.STDOUT, env=env)
            running.append(_Running(unit, process, time.time(), log))
            info(f"{unit}: started (log {log})")
        if todo and not running and not ready and not failed:
            raise RuntimeError(f"units {todo} wait for units that are neither done nor running")
        time.sleep(0.5)
        for entry in list(running):
            code = entry.process.poll()
            if code is None:
                continue
            running.remove(entry)
            if code == 0 and folder.is_done(entry.unit):
                info(f"{entry.unit}: done in {time.time() - entry.started:.0f} s")
                continue
            last = _last_line(entry.log)
            failed.append(f"{entry.unit} (exit {code}, log {entry.log}{': ' + last if last else ''})")
            exit_code = code if code else 1
    if failed:
        raise UnitFailedError(f"unit(s) failed: {'; '.join(failed)}; fix the cause, then run the same command with "
                              f"--resume (finished units are kept)", exit_code)


def _last_line(log: Path) -> str:
    try:
        lines = [line.strip() for line in log.read_text(encoding="utf-8", errors="replace").splitlines() if line.strip()]
    except OSError:
        return ""
    return lines[-1][:300] if lines else ""


__all__ = ["STAGE_UNITS", "UNIT_PRIORITY", "UnitFailedError", "dependencies", "resolved_lanes", "run_units",
           "threads_per_unit"]
