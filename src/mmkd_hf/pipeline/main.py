"""The entry point of ``train.py`` / ``mmkd-hf train``: parse the options, prepare the data, run the stages."""

from __future__ import annotations

import errno
import sys
import time
from collections.abc import Sequence
from typing import Any

from ..data.errors import DataFormatError, SampleDecodeError
from ..distillation.trainer import NonFiniteLossError
from ..utils import ForeignFolderError
from .arguments import PipelineConfig, parse_config
from .data_adapter import PipelineData, data_source, prepare_dataset
from .run_folder import (
    SKIP_LOG_FILE,
    RunConflictError,
    RunFolder,
    check_overwrite_target,
    data_fingerprint,
    load_or_make_held_out_split,
)
from .runtime import SimulatedInterruption, StepBudget, banner, barrier, configure_cpu_processes, info, process_state
from .lanes import STAGE_UNITS, UnitFailedError, resolved_lanes, run_units
from .stages import MissingUnitsError, Runner

RESUME_EXIT_CODE = 75  # EX_TEMPFAIL: the run stopped early on purpose (--stop-after-steps) and can be resumed
#: The stages each ``--stage`` runs, in order.
STAGE_PLAN = {
    "all": ("teachers", "weights", "distill", "baselines", "evaluate"),
    "teachers": ("teachers",),
    "weights": ("weights",),
    "distill": ("distill",),
    "baselines": ("baselines",),
    "evaluate": ("evaluate",),
}


def run_pipeline(config: PipelineConfig) -> dict[str, Any]:
    """Run the stages selected by ``config.stage``; returns the evaluation results (empty without ``evaluate``)."""
    configure_cpu_processes()
    state = process_state()
    folder = RunFolder(config.run_dir)
    if config.overwrite:
        check_overwrite_target(config)  # every process raises the same error, before anything is deleted
        barrier()
        if state.is_main_process and folder.path.exists():
            folder.discard()
    barrier()
    folder.check_identity(config)  # every process raises the same error
    barrier()
    banner(f"run {folder.path} · dataset {config.dataset} · preset {config.preset_name} · "
           f"teachers {','.join(config.teacher_list)} · {state.num_processes} process(es)")

    started = time.time()
    with state.main_process_first():
        prepare_dataset(config)
    # the data joins the run's identity by its content, not its path: a finished run pointed at other data
    # refuses before anything is reused or rewritten (a run recorded without a fingerprint accepts and records it)
    fingerprint = data_fingerprint(config.dataset, data_source(config), config.annotations_dir)
    folder.check_data(fingerprint, data_source(config))
    barrier()
    if state.is_main_process and not (config.unit_list and folder.config_file.exists()):
        # (a process of --parallel_units leaves the run's config.json as the command that started it wrote it)
        folder.path.mkdir(parents=True, exist_ok=True)
        folder.write_identity(config, fingerprint)
    barrier()
    if state.is_main_process and not folder.is_done("dataset"):
        folder.add_timing("dataset", time.time() - started)
        folder.mark_done("dataset")
    barrier()

    data = PipelineData(config)
    if state.is_main_process:  # the resolved data settings, for everything that later reads this run's data
        data.settings.save(folder.path)
    barrier()
    runner = Runner(config=config, folder=folder, data=data,
                    stop_budget=StepBudget(config.stop_after_steps) if config.stop_after_steps else None)
    stages = STAGE_PLAN[config.stage]
    units = config.unit_list
    if units or any(s in stages for s in ("teachers", "weights")):
        runner.held_out = load_or_make_held_out_split(folder, config, data.train_ids())
    if units:  # one unit (or a few) of the run, e.g. a process started by --parallel_units
        for unit in units:
            run_unit(runner, unit)
        return {}
    lanes = resolved_lanes(config)
    if lanes > 1 and state.num_processes == 1 and len(STAGE_UNITS[config.stage]) > 1:
        run_units(config, folder, STAGE_UNITS[config.stage], lanes)
        stages = tuple(s for s in stages if s == "evaluate")
    results: dict[str, Any] = {}
    for stage in stages:
        if stage == "teachers":
            for modality in config.teacher_list:
                runner.run_teacher(modality)
        elif stage == "weights":
            runner.run_ensemble()
        elif stage == "distill":
            runner.run_student()
        elif stage == "baselines":
            if "baseline-rgb" in config.baseline_list:
                runner.run_baseline_rgb()
            if "omnivore" in config.baseline_list:
                runner.run_omnivore()
        elif stage == "evaluate":
            results = runner.run_evaluate()
    if state.is_main_process and "evaluate" in stages:
        info(f"results: {folder.path / 'results.json'} and {folder.path / 'results.md'}")
        print((folder.path / "results.md").read_text(encoding="utf-8"), flush=True)
    return results


def run_unit(runner: Runner, unit: str) -> None:
    """Train one unit of the run (``--units``); the units it depends on must be done."""
    if unit.startswith("teacher-"):
        runner.run_teacher(unit.split("-", 1)[1])
    elif unit == "ensemble":
        runner.run_ensemble()
    elif unit == "student":
        runner.run_student()
    elif unit == "baseline-rgb":
        runner.run_baseline_rgb()
    elif unit == "omnivore":
        runner.run_omnivore()
    else:
        raise ValueError(f"units: unknown unit {unit!r}")


def data_error_message(exc: BaseException, config: PipelineConfig) -> str | None:
    """One line for a sample or data file that could not be read, also when a DataLoader worker raised it (torch
    re-raises it there as a ``RuntimeError`` holding the worker's traceback); None for any other error."""
    kind, text = type(exc).__name__, str(exc)
    if isinstance(exc, RuntimeError):
        kind = next((name for name in ("SampleDecodeError", "DataFormatError")
                     if text.startswith(f"Caught {name} in DataLoader worker")), None)
        if kind is None:
            return None
        text = text.rstrip().splitlines()[-1].split(f"{kind}: ", 1)[-1]  # the worker's own message
    if kind == "SampleDecodeError" and not config.skip_bad_samples:
        text += ("; pass --skip_bad_samples to replace such samples by the next good one (each is logged in "
                 f"{config.run_dir / SKIP_LOG_FILE} and counted in results.json)")
    return text


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``train.py`` / ``mmkd-hf train``; returns the exit code."""
    try:
        config = parse_config(argv)
    except (ValueError, FileNotFoundError) as exc:
        print(f"train.py: error: {exc}", file=sys.stderr)
        return 2
    try:
        run_pipeline(config)
    except SimulatedInterruption as exc:
        print(f"train.py: {exc}; continue with --resume", file=sys.stderr)
        return RESUME_EXIT_CODE
    except (RunConflictError, ForeignFolderError, MissingUnitsError) as exc:
        print(f"train.py: error: {exc}", file=sys.stderr)
        return 2
    except NonFiniteLossError as exc:
        print(f"train.py: error: {exc}", file=sys.stderr)
        return 1
    except UnitFailedError as exc:
        print(f"train.py: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except FileNotFoundError as exc:  # a dataset folder or file named by the options is missing
        print(f"train.py: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        if exc.errno != errno.ENOSPC:
            raise
        print(f"train.py: error: the disk is full ({exc.filename or config.run_dir}); free space, then run the same "
              "command with --resume (finished units and complete checkpoints are kept)", file=sys.stderr)
        return 1
    except (SampleDecodeError, DataFormatError, RuntimeError) as exc:
        message = data_error_message(exc, config)
        if message is None:
            raise
        print(f"train.py: error: {message}", file=sys.stderr)
        return 1
    return 0


__all__ = ["RESUME_EXIT_CODE", "STAGE_PLAN", "main", "run_pipeline", "run_unit"]
