"""Processes, console output, seeding and the per-item isolated RNG of the pipeline.

Every process of a DDP run executes the same code; :func:`is_main` selects the one that writes files and prints.
"""

from __future__ import annotations

import contextlib
import math
import os
import random
from collections.abc import Iterable, Iterator

import numpy as np
import torch
from accelerate import PartialState
from torch import nn
from tqdm.auto import tqdm
from transformers import TrainerCallback, set_seed
from transformers.utils import is_torch_tf32_available


def cpu_only() -> bool:
    return not torch.cuda.is_available()


def tf32_setting() -> bool | None:
    """``TrainingArguments.tf32``: True (TF32 matmuls and convolutions) on a CUDA GPU that has it, else None (the
    default of the machine, left alone)."""
    if cpu_only():
        return None
    return True if is_torch_tf32_available() else None


def configure_cpu_processes() -> None:
    """Under several processes without CUDA (``accelerate launch --multi_gpu`` on a CPU machine), make accelerate
    and the Trainer use gloo DDP on the CPU: without this they would each run alone (and all write files)."""
    if cpu_only() and int(os.environ.get("WORLD_SIZE", "1")) > 1:
        os.environ.setdefault("ACCELERATE_USE_CPU", "true")


def process_state() -> PartialState:
    return PartialState(cpu=cpu_only())


def is_main() -> bool:
    return process_state().is_main_process


def barrier() -> None:
    process_state().wait_for_everyone()


def banner(text: str) -> None:
    if is_main():
        line = "=" * max(60, len(text) + 8)
        print(f"\n{line}\n==  {text}\n{line}", flush=True)


def info(text: str) -> None:
    if is_main():
        print(f"[mmkd-hf] {text}", flush=True)


def progress(iterable: Iterable, desc: str) -> Iterable:
    """``iterable`` with a progress bar on the main process."""
    return tqdm(iterable, desc=desc, disable=not is_main())


def unwrap_model(model: nn.Module) -> nn.Module:
    """The model inside DDP / accelerate wrappers."""
    while hasattr(model, "module") and isinstance(model.module, nn.Module):
        model = model.module
    return model


def seed_everything(seed: int) -> None:
    """Seed python, numpy and torch (every device)."""
    set_seed(seed)


@contextlib.contextmanager
def isolated_rng(seed: int) -> Iterator[None]:
    """Run a block with python/numpy/torch RNGs seeded to ``seed``, restoring the outer states afterwards.

    Used per dataset item, so augmentations depend only on (seed, epoch, index): the same in a resumed run,
    under any number of processes and workers, and independent of the model's own random draws (dropout).
    """
    py_state, np_state, torch_state = random.getstate(), np.random.get_state(), torch.random.get_rng_state()
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    try:
        yield
    finally:
        random.setstate(py_state)
        np.random.set_state(np_state)
        torch.random.set_rng_state(torch_state)


@contextlib.contextmanager
def environment(**values: str) -> Iterator[None]:
    """Set environment variables for a block, restoring the previous values afterwards."""
    old = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


class SimulatedInterruption(RuntimeError):
    """Raised by ``--stop-after-steps`` to imitate a crash (tests of ``--resume``)."""


class StepBudget:
    """Counts optimizer steps across all units of one invocation (for ``--stop-after-steps``)."""

    def __init__(self, limit: int):
        self.limit = int(limit)
        self.steps = 0

    def tick(self) -> bool:
        self.steps += 1
        return self.limit > 0 and self.steps >= self.limit


class EpochToDataset(TrainerCallback):
    """Give the training dataset the epoch number, so per-item augmentation seeds change every epoch."""

    def __init__(self, dataset):
        self.dataset = dataset

    def on_epoch_begin(self, args, state, control, **kwargs):
        if self.dataset is not None:
            self.dataset.set_epoch(int(math.floor(state.epoch + 1e-9)))


class StopAfterSteps(TrainerCallback):
    """Raise :class:`SimulatedInterruption` once the :class:`StepBudget` is spent."""

    def __init__(self, budget: StepBudget | None):
        self.budget = budget

    def on_step_end(self, args, state, control, **kwargs):
        if self.budget is not None and self.budget.tick():
            raise SimulatedInterruption(
                f"--stop-after-steps {self.budget.limit}: stopped on purpose at global step {state.global_step}"
            )


def trainer_callbacks(dataset, budget: StepBudget | None) -> list[TrainerCallback]:
    return [EpochToDataset(dataset), StopAfterSteps(budget)]


__all__ = [
    "SimulatedInterruption",
    "StepBudget",
    "banner",
    "barrier",
    "configure_cpu_processes",
    "cpu_only",
    "environment",
    "info",
    "is_main",
    "isolated_rng",
    "process_state",
    "progress",
    "seed_everything",
    "tf32_setting",
    "trainer_callbacks",
    "unwrap_model",
]
