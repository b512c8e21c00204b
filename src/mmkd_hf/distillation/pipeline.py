"""The whole pipeline behind ``train.py``: teachers -> ensemble weights -> distilled student -> baselines -> evaluation.

``accelerate launch train.py`` with no arguments runs the embedded mini-kitchens default end to end on CPU or GPU,
under one process or several (DDP). Every option is a field of :class:`PipelineConfig`; ``--config FILE`` (JSON or
YAML) sets any of them and the command line overrides the file.

Run folder (``<output_dir>/<run_name>/``)::

    config.json, config.sha256      the run's options (a folder holding a different run is refused)
    held_out_split.json             train indices of the teachers and of the held-out split (made once, reused)
    stages/<unit>.done              atomic completion markers (teacher-rgb, ..., ensemble, student, ..., evaluate)
    teacher-rgb/ teacher-flow/ teacher-audio/ teacher-layout/ ensemble/ student/ baseline-rgb/ omnivore/
                                    one ``save_pretrained`` folder per model (``AutoModel.from_pretrained`` loads it)
    checkpoints/<unit>/checkpoint-N Trainer checkpoints (``--resume`` continues from the last one)
    tensorboard/<unit>/             TensorBoard logs
    timings.json                    wall time per unit (kept across invocations)
    results.json, results.md        validation metrics of every model, the config, the seed and the timings

Units of work and the ``--stage`` that runs them: ``teachers`` (teacher-<modality> per teacher), ``weights``
(ensemble), ``distill`` (student), ``baselines`` (baseline-rgb, omnivore), ``evaluate``. A unit whose marker exists
is reused, so ``--stage distill`` reuses the teachers and the ensemble of an earlier invocation.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import inspect
import json
import math
import os
import random
import shutil
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Optional

import numpy as np
import torch
from torch import nn

from ..models.video_swin.video_processing_video_swin import VideoSwinVideoProcessor
from ..utils import atomic_directory, atomic_write_json, atomic_write_text
from .presets import (
    DEFAULT_PRESET_BY_DATASET,
    PRESETS,
    ModelPreset,
    get_preset,
    stlt_config_kwargs,
    video_swin_config_kwargs,
)

DATASETS = ("mini-kitchens", "epic-kitchens-100", "something-something-v2", "something-else")
STAGES = ("all", "teachers", "weights", "distill", "baselines", "evaluate")
TEACHER_MODALITIES = ("rgb", "flow", "audio", "layout")
#: Teachers a dataset can feed (its modalities), also the default of ``--teachers``.
DATASET_TEACHERS = {
    "mini-kitchens": ("rgb", "flow", "audio", "layout"),
    "epic-kitchens-100": ("rgb", "flow", "audio", "layout"),
    "something-something-v2": ("rgb",),
    "something-else": ("rgb", "layout"),
}
#: Modalities the omnivore baseline trains on, per dataset (those it has; evaluation is always on RGB).
OMNIVORE_MODALITIES = ("rgb", "flow", "audio")
BASELINES = ("baseline-rgb", "omnivore")
#: Options that do not change what a run computes; they are left out of the run's identity (config hash).
OPERATIONAL_FIELDS = frozenset(
    {
        "config",
        "data_dir",
        "output_dir",
        "run_name",
        "stage",
        "resume",
        "overwrite",
        "stop_after_steps",
        "num_workers",
        "logging_steps",
        "report_to",
        "save_steps",
        "save_total_limit",
        "eval_batch_size",
        "write_model_cards",
    }
)
RESUME_EXIT_CODE = 75  # EX_TEMPFAIL: the run stopped early on purpose (--stop-after-steps) and can be resumed
DEFAULT_MINI_KITCHENS_DIR = Path(".cache") / "mini-kitchens"


def _help(text: str) -> dict[str, str]:
    return {"help": text}


@dataclass
class PipelineConfig:
    """Every option of the pipeline (``train.py --help``); also the keys of a ``--config`` JSON/YAML file."""

    # --- run -------------------------------------------------------------------------------------------------------
    config: Optional[str] = field(
        default=None,
        metadata=_help("JSON or YAML file with any of these options (keys = option names with underscores); "
                       "options given on the command line override the file."),
    )
    dataset: str = field(
        default="mini-kitchens",
        metadata={"help": "Dataset to train and evaluate on.", "choices": list(DATASETS)},
    )
    data_dir: Optional[str] = field(
        default=None,
        metadata=_help("Dataset root. mini-kitchens: made there when missing (default .cache/mini-kitchens); "
                       "the real datasets need it (their official download layout)."),
    )
    output_dir: str = field(default="outputs", metadata=_help("Parent folder of the run folders."))
    run_name: Optional[str] = field(
        default=None, metadata=_help("Run folder name under --output-dir (default: <dataset>-<preset>-seed<seed>).")
    )
    stage: str = field(
        default="all",
        metadata={"help": "What to run: all, or one stage (earlier stages' saved outputs are reused).",
                  "choices": list(STAGES)},
    )
    teachers: Optional[str] = field(
        default=None,
        metadata=_help("Comma-separated teachers among rgb,flow,audio,layout (default: every modality the "
                       "dataset has: mini-kitchens/EPIC rgb,flow,audio,layout; SSv2 rgb; Something-Else rgb,layout)."),
    )
    seed: int = field(default=42, metadata=_help("Seed of everything: model init, data order, augmentations."))
    resume: bool = field(
        default=False,
        metadata=_help("Continue an interrupted run from the last Trainer checkpoint of the unit it was in."),
    )
    overwrite: bool = field(
        default=False, metadata=_help("Delete the run folder first (a fresh run; also allowed when it held another run).")
    )
    deterministic: bool = field(
        default=True,
        metadata=_help("Full determinism (torch.use_deterministic_algorithms, seeded per-item augmentation), so a "
                       "resumed run ends with the same metrics as an uninterrupted one."),
    )

    # --- data and model sizes --------------------------------------------------------------------------------------
    preset: Optional[str] = field(
        default=None,
        metadata={"help": "Model sizes: " + "; ".join(f"{p.name} = {p.description}" for p in PRESETS.values())
                  + " (default: tiny for mini-kitchens, base otherwise).", "choices": list(PRESETS)},
    )
    num_frames: Optional[int] = field(default=None, metadata=_help("Frames per clip (default: the preset's)."))
    image_size: Optional[int] = field(default=None, metadata=_help("Frame side after cropping (default: the preset's)."))
    frame_sampler: Optional[str] = field(
        default=None,
        metadata={"help": "Frame sampler: 'uniform' (num_frames spread over the whole segment) or 'stride' "
                          "(num_frames frame_stride apart at a random offset in training, centred in evaluation: "
                          "a clip may cover part of a long segment). Default: the dataset's (EPIC stride, others "
                          "and mini-kitchens uniform).", "choices": ["uniform", "stride"]},
    )
    frame_stride: Optional[int] = field(
        default=None, metadata=_help("Frame interval of the stride sampler (default: the dataset's).")
    )
    mini_kitchens_scale: str = field(
        default="default",
        metadata=_help("Size of the generated mini-kitchens dataset: 'default' (main job / benchmark) or 'tiny' "
                       "(tests: a few videos)."),
    )
    max_train_samples: Optional[int] = field(
        default=None, metadata=_help("Use only the first N training samples (debugging and tests).")
    )
    max_eval_samples: Optional[int] = field(
        default=None, metadata=_help("Use only the first N validation samples (debugging and tests).")
    )
    held_out_fraction: float = field(
        default=0.2,
        metadata=_help("Fraction of the training set held out from the teachers, on which the full-dataset "
                       "ensemble weights are fit. The student and baselines train on the whole training set."),
    )
    num_workers: int = field(default=0, metadata=_help("DataLoader worker processes."))

    # --- optimisation (spec section 5 defaults scaled to the tiny models) -----------------------------------------------
    teacher_epochs: float = field(default=24.0, metadata=_help(
        "Training epochs of every teacher (mini-kitchens: with 12, the audio teacher stayed on its initial loss "
        "plateau in 2 of 8 seeds)."))
    teacher_batch_size: int = field(default=16, metadata=_help("Per-process batch size of the teachers."))
    teacher_learning_rate: float = field(default=1e-3, metadata=_help("Peak AdamW learning rate of the teachers."))
    layout_learning_rate: Optional[float] = field(
        default=None, metadata=_help("Peak learning rate of the STLT layout teacher (default: --teacher-learning-rate).")
    )
    student_epochs: float = field(default=12.0, metadata=_help("Training epochs of the student (and of both baselines)."))
    student_batch_size: int = field(default=16, metadata=_help("Per-process batch size of the student and baselines."))
    student_learning_rate: float = field(default=1e-3, metadata=_help("Peak AdamW learning rate of the student/baselines."))
    baseline_epochs: Optional[float] = field(
        default=None, metadata=_help("Epochs of baseline-rgb and omnivore (default: --student-epochs, the same schedule).")
    )
    weight_decay: float = field(default=0.02, metadata=_help("AdamW weight decay (spec: 0.02)."))
    warmup_ratio: float = field(default=0.1, metadata=_help("Linear warm-up as a fraction of the steps, then linear decay to 0."))
    max_grad_norm: float = field(default=5.0, metadata=_help("Gradient clipping norm (spec: 5.0)."))
    max_steps: int = field(
        default=-1, metadata=_help("If > 0: optimizer steps per training unit, overriding the epochs (tests).")
    )
    eval_batch_size: int = field(default=32, metadata=_help("Per-process batch size of evaluation and weight fitting."))

    # --- distillation ----------------------------------------------------------------------------------------------
    weighting: str = field(
        default="full-dataset",
        metadata={"help": "Teacher weighting of the ensemble: uniform, per-sample (softmin of each teacher's CE on "
                          "the label) or full-dataset (fixed weights fit on the held-out split).",
                  "choices": ["uniform", "per-sample", "full-dataset"]},
    )
    weights_temperature: float = field(default=1.0, metadata=_help("Temperature τ_w of the weighting softmin."))
    combine_space: str = field(
        default="logits",
        metadata={"help": "Combine teachers in logit space (the paper) or probability space.",
                  "choices": ["logits", "probs"]},
    )
    calibrate_ensemble: bool = field(
        default=True,
        metadata=_help("Temperature-scale the ensemble per head on the held-out split (after the weights), so its "
                       "targets carry calibrated confidence before the distillation temperature softens them."),
    )
    temperature: float = field(default=1.0, metadata=_help("Distillation temperature T (the paper's default: 1)."))
    kd_weight: float = field(default=1.0, metadata=_help("Weight of the T²·KL distillation term."))
    ce_weight: float = field(
        default=1.0,
        metadata=_help("Weight of the student's cross-entropy on the labels (the paper's code: 0, pure distillation; "
                       "1 keeps the label signal for heads the teachers do not know, see docs/training.md)."),
    )

    # --- logging, checkpoints, debugging ------------------------------------------------------------------------------
    logging_steps: int = field(default=10, metadata=_help("Log the losses every N optimizer steps."))
    report_to: str = field(default="tensorboard", metadata=_help("Trainer loggers (comma-separated, or 'none')."))
    save_steps: int = field(
        default=0, metadata=_help("Trainer checkpoint every N steps (0: at the end of every epoch); --resume uses them.")
    )
    save_total_limit: int = field(default=2, metadata=_help("Trainer checkpoints kept per unit."))
    write_model_cards: bool = field(default=True, metadata=_help("Write a Hub model card (README.md) into each model folder."))
    stop_after_steps: int = field(
        default=0, metadata={"help": argparse.SUPPRESS}  # debug: simulate a crash after N optimizer steps
    )

    def __post_init__(self) -> None:
        if self.dataset not in DATASETS:
            raise ValueError(f"dataset: expected one of {list(DATASETS)}, given {self.dataset!r}")
        if self.stage not in STAGES:
            raise ValueError(f"stage: expected one of {list(STAGES)}, given {self.stage!r}")
        if self.preset is not None and self.preset not in PRESETS:
            raise ValueError(f"preset: expected one of {sorted(PRESETS)}, given {self.preset!r}")
        if self.weighting not in ("uniform", "per-sample", "full-dataset"):
            raise ValueError(f"weighting: expected uniform, per-sample or full-dataset, given {self.weighting!r}")
        if self.combine_space not in ("logits", "probs"):
            raise ValueError(f"combine_space: expected logits or probs, given {self.combine_space!r}")
        if not 0.0 < self.held_out_fraction < 1.0:
            raise ValueError(f"held_out_fraction: expected a value in (0, 1), given {self.held_out_fraction}")
        if self.frame_sampler not in (None, "uniform", "stride"):
            raise ValueError(f"frame_sampler: expected uniform or stride, given {self.frame_sampler!r}")
        if self.frame_stride is not None and self.frame_stride < 1:
            raise ValueError(f"frame_stride: expected >= 1, given {self.frame_stride}")
        if self.mini_kitchens_scale not in ("default", "tiny"):
            raise ValueError(f"mini_kitchens_scale: expected 'default' or 'tiny', given {self.mini_kitchens_scale!r}")
        for name in ("teacher_batch_size", "student_batch_size", "eval_batch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name}: expected >= 1, given {getattr(self, name)}")
        for name in ("temperature", "weights_temperature"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name}: expected > 0, given {getattr(self, name)}")
        teachers = self.teacher_list
        allowed = DATASET_TEACHERS[self.dataset]
        unknown = [t for t in teachers if t not in allowed]
        if unknown:
            raise ValueError(
                f"teachers: {unknown} not available for {self.dataset} (it has {list(allowed)}); given {self.teachers!r}"
            )
        if not teachers:
            raise ValueError("teachers: at least one teacher is needed")

    # --- derived values -------------------------------------------------------------------------------------------------
    @property
    def teacher_list(self) -> tuple[str, ...]:
        """The teachers in canonical order (rgb, flow, audio, layout)."""
        if self.teachers is None:
            return DATASET_TEACHERS[self.dataset]
        given = [t.strip() for t in str(self.teachers).split(",") if t.strip()]
        bad = [t for t in given if t not in TEACHER_MODALITIES]
        if bad:
            raise ValueError(f"teachers: unknown {bad}; expected a subset of {list(TEACHER_MODALITIES)}")
        return tuple(t for t in TEACHER_MODALITIES if t in given)

    @property
    def preset_name(self) -> str:
        return self.preset or DEFAULT_PRESET_BY_DATASET[self.dataset]

    @property
    def model_preset(self) -> ModelPreset:
        return get_preset(self.preset_name)

    @property
    def frames(self) -> int:
        return int(self.num_frames or self.model_preset.num_frames)

    @property
    def size(self) -> int:
        return int(self.image_size or self.model_preset.image_size)

    @property
    def resolved_run_name(self) -> str:
        return self.run_name or f"{self.dataset}-{self.preset_name}-seed{self.seed}"

    @property
    def run_dir(self) -> Path:
        return Path(self.output_dir) / self.resolved_run_name

    @property
    def resolved_data_dir(self) -> Path:
        if self.data_dir:
            return Path(self.data_dir)
        if self.dataset == "mini-kitchens":
            suffix = "" if self.mini_kitchens_scale == "default" else f"-{self.mini_kitchens_scale}"
            return DEFAULT_MINI_KITCHENS_DIR.with_name(DEFAULT_MINI_KITCHENS_DIR.name + suffix)
        raise ValueError(f"--data-dir is required for {self.dataset} (see docs/training.md for the expected layout)")

    def identity(self) -> dict[str, Any]:
        """The options that define what the run computes (hashed to recognise the run folder)."""
        values = {f.name: getattr(self, f.name) for f in fields(self) if f.name not in OPERATIONAL_FIELDS}
        values["teachers"] = ",".join(self.teacher_list)
        values["preset"] = self.preset_name
        values["num_frames"] = self.frames
        values["image_size"] = self.size
        return values

    def identity_hash(self) -> str:
        blob = json.dumps(self.identity(), sort_keys=True, default=str).encode()
        return hashlib.sha256(blob).hexdigest()


# =====================================================================================================================
# Command line
# =====================================================================================================================


def load_config_file(path: str | os.PathLike) -> dict[str, Any]:
    """Read a JSON or YAML options file into a dict; unknown keys raise ``ValueError`` naming the file and key."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"--config: no such file {path}")
    text = path.read_text(encoding="utf-8")
    if path.suffix.lower() in (".yaml", ".yml"):
        import yaml

        values = yaml.safe_load(text) or {}
    else:
        try:
            values = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ValueError(f"--config {path}: not valid JSON ({exc})") from None
    if not isinstance(values, dict):
        raise ValueError(f"--config {path}: expected a mapping of option -> value, got {type(values).__name__}")
    values = {str(k).replace("-", "_"): v for k, v in values.items()}
    known = {f.name for f in fields(PipelineConfig)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ValueError(f"--config {path}: unknown option(s) {unknown}; see `train.py --help` for the valid ones")
    values.pop("config", None)
    return values


def build_parser():
    """The ``HfArgumentParser`` over :class:`PipelineConfig` (``train.py --help``)."""
    from transformers import HfArgumentParser

    parser = HfArgumentParser(PipelineConfig, description=__doc__.split("\n\n")[0],
                              formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.prog = "train.py"
    return parser


def parse_config(argv: Sequence[str] | None = None) -> PipelineConfig:
    """Parse ``argv`` (with an optional ``--config FILE`` whose values the command line overrides)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--config", default=None)
    known, _ = pre.parse_known_args(argv)
    parser = build_parser()
    if known.config:
        parser.set_defaults(**load_config_file(known.config))
    (config,) = parser.parse_args_into_dataclasses(args=argv, look_for_args_file=False)
    return config


# =====================================================================================================================
# Processes, logging, determinism
# =====================================================================================================================


def _cpu_only() -> bool:
    return not torch.cuda.is_available()


def _configure_cpu_processes() -> None:
    """Under several processes without CUDA (``accelerate launch --multi_gpu`` on a CPU machine), make accelerate
    and the Trainer use gloo DDP on the CPU: without this they would each run alone (and all write files)."""
    if _cpu_only() and int(os.environ.get("WORLD_SIZE", "1")) > 1:
        os.environ.setdefault("ACCELERATE_USE_CPU", "true")


def _state():
    from accelerate import PartialState

    return PartialState(cpu=_cpu_only())


def _is_main() -> bool:
    return _state().is_main_process


def _barrier() -> None:
    _state().wait_for_everyone()


def _banner(text: str) -> None:
    if _is_main():
        line = "=" * max(60, len(text) + 8)
        print(f"\n{line}\n==  {text}\n{line}", flush=True)


def _info(text: str) -> None:
    if _is_main():
        print(f"[mmkd-hf] {text}", flush=True)


def seed_everything(seed: int) -> None:
    """Seed python, numpy and torch (every device)."""
    from transformers import set_seed

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


class EpochSeededDataset(torch.utils.data.Dataset):
    """Wrap a dataset so that item ``i`` of epoch ``e`` is drawn with its own RNG seed derived from (seed, e, i).

    The Trainer's data order is seeded too, so with this wrapper a run is reproducible sample by sample, and a
    run resumed mid-epoch sees exactly the batches (and augmentations) of the uninterrupted run.
    """

    def __init__(self, dataset, seed: int):
        self.dataset = dataset
        self.seed = int(seed)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)
        if hasattr(self.dataset, "set_epoch"):
            self.dataset.set_epoch(epoch)

    def __len__(self) -> int:
        return len(self.dataset)

    def item_seed(self, index: int) -> int:
        return int(np.random.SeedSequence([self.seed, self.epoch, int(index)]).generate_state(1)[0])

    def __getitem__(self, index: int):
        for transform in find_transforms(self.dataset):
            if hasattr(transform, "reset_draw_counter"):
                # mmkd_hf.data's train RNG also counts accesses; reset it so an item's draw depends on
                # (seed, epoch, index) only (the torch seed set below), as a resumed run needs.
                transform.reset_draw_counter()
        with isolated_rng(self.item_seed(index)):
            return self.dataset[index]

    def __getitems__(self, indices: list[int]) -> list:
        """A whole batch at once (what a ``DataLoader`` asks for): through the wrapped dataset's own
        ``__getitems__`` when it is one ``mmkd_hf.data`` dataset, so its frames are written straight into one batch
        buffer (no copy in the collator), each row still drawn with its own (seed, epoch, index) seed; the items
        equal ``[self[i] for i in indices]``. Other datasets (e.g. ``OmnivoreDataset``) are fetched item by item."""
        getitems = getattr(self.dataset, "__getitems__", None)
        transforms = find_transforms(self.dataset)
        if getitems is None or len(transforms) != 1 or not hasattr(transforms[0], "seeded_rows"):
            return [self[i] for i in indices]
        with transforms[0].seeded_rows([self.item_seed(i) for i in indices]):
            return getitems(list(indices))


class SimulatedInterruption(RuntimeError):
    """Raised by ``--stop-after-steps`` to imitate a crash (tests of ``--resume``)."""


def _trainer_callbacks(dataset: EpochSeededDataset | None, stop_counter: "_StepBudget | None") -> list:
    from transformers import TrainerCallback

    class EpochToDataset(TrainerCallback):
        """Give the training dataset the epoch number, so per-item augmentation seeds change every epoch."""

        def on_epoch_begin(self, args, state, control, **kwargs):
            if dataset is not None:
                dataset.set_epoch(int(math.floor(state.epoch + 1e-9)))

    class StopAfterSteps(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            if stop_counter is not None and stop_counter.tick():
                raise SimulatedInterruption(
                    f"--stop-after-steps {stop_counter.limit}: stopped on purpose at global step {state.global_step}"
                )

    return [EpochToDataset(), StopAfterSteps()]


class _StepBudget:
    """Counts optimizer steps across all units of one invocation (for ``--stop-after-steps``)."""

    def __init__(self, limit: int):
        self.limit = int(limit)
        self.steps = 0

    def tick(self) -> bool:
        self.steps += 1
        return self.limit > 0 and self.steps >= self.limit


@contextlib.contextmanager
def _env(**values: str) -> Iterator[None]:
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


# =====================================================================================================================
# Run folder: identity, markers, timings
# =====================================================================================================================


class RunConflictError(RuntimeError):
    """The output folder holds a different run (different options); nothing was overwritten."""


class RunFolder:
    """Files of one run folder (see the module docstring); only the main process writes."""

    def __init__(self, path: Path):
        self.path = Path(path)

    # paths
    @property
    def config_file(self) -> Path:
        return self.path / "config.json"

    @property
    def hash_file(self) -> Path:
        return self.path / "config.sha256"

    @property
    def split_file(self) -> Path:
        return self.path / "held_out_split.json"

    @property
    def timings_file(self) -> Path:
        return self.path / "timings.json"

    def model_dir(self, unit: str) -> Path:
        return self.path / unit

    def checkpoint_dir(self, unit: str) -> Path:
        return self.path / "checkpoints" / unit

    def tensorboard_dir(self, unit: str) -> Path:
        return self.path / "tensorboard" / unit

    def marker(self, unit: str) -> Path:
        return self.path / "stages" / f"{unit}.done"

    # identity
    def check_identity(self, config: PipelineConfig) -> None:
        """Raise :class:`RunConflictError` when the folder holds another run (a different config hash)."""
        if not self.path.exists() or not any(self.path.iterdir()):
            return
        if not self.hash_file.exists():
            raise RunConflictError(
                f"output folder {self.path} is not empty and holds no mmkd-hf run (no config.sha256): refusing to "
                f"write into it. Choose another --run-name / --output-dir, or pass --overwrite to delete it."
            )
        stored_hash = self.hash_file.read_text(encoding="utf-8").strip()
        if stored_hash == config.identity_hash():
            return
        try:
            stored = json.loads(self.config_file.read_text(encoding="utf-8")).get("identity", {})
        except (OSError, json.JSONDecodeError):
            stored = {}
        current = config.identity()
        diff = {k: (stored.get(k), current.get(k)) for k in sorted(set(stored) | set(current))
                if stored.get(k) != current.get(k)}
        details = ", ".join(f"{k}: stored {a!r} vs given {b!r}" for k, (a, b) in diff.items()) or "unknown fields"
        raise RunConflictError(
            f"output folder {self.path} already holds a different run ({details}). Nothing was overwritten: choose "
            f"another --run-name / --output-dir, or pass --overwrite to replace it."
        )

    def write_identity(self, config: PipelineConfig) -> None:
        atomic_write_json(
            self.config_file,
            {"identity": config.identity(), "config": asdict(config), "config_hash": config.identity_hash()},
        )
        atomic_write_text(self.hash_file, config.identity_hash() + "\n")

    # markers
    def is_done(self, unit: str) -> bool:
        return self.marker(unit).exists()

    def mark_done(self, unit: str, **info: Any) -> None:
        atomic_write_json(self.marker(unit), {"unit": unit, "finished": time.strftime("%Y-%m-%dT%H:%M:%S"), **info})

    # timings
    def read_timings(self) -> dict[str, float]:
        if not self.timings_file.exists():
            return {}
        return json.loads(self.timings_file.read_text(encoding="utf-8"))

    def add_timing(self, unit: str, seconds: float) -> None:
        timings = self.read_timings()
        timings[unit] = round(timings.get(unit, 0.0) + float(seconds), 3)
        atomic_write_json(self.timings_file, timings)


def last_valid_checkpoint(folder: Path) -> Path | None:
    """The newest ``checkpoint-N`` under ``folder`` that is complete (its ``trainer_state.json``, written last by
    the Trainer, exists); a checkpoint cut short by a crash is skipped."""
    if not folder.is_dir():
        return None
    candidates = []
    for child in folder.iterdir():
        if child.is_dir() and child.name.startswith("checkpoint-") and child.name.split("-")[-1].isdigit():
            if (child / "trainer_state.json").is_file():
                candidates.append((int(child.name.split("-")[-1]), child))
    return max(candidates)[1] if candidates else None


# =====================================================================================================================
# Data (adapter over mmkd_hf.data)
# =====================================================================================================================




#: ``--mini-kitchens-scale``: overrides of helper D's ``MiniKitchensConfig`` (``default`` = its defaults).
MINI_KITCHENS_SCALES: dict[str, dict[str, Any]] = {
    "default": {},
    "tiny": {"videos_per_seen_participant": 2, "validation_videos_per_seen_participant": 1,
             "videos_per_unseen_participant": 1, "segments_per_video": 6, "height": 32, "width": 32,
             "min_segment_frames": 8, "max_segment_frames": 12},
}


def find_transforms(dataset) -> list[Any]:
    """The ``MultimodalTransform``s behind a dataset of ``mmkd_hf.data`` wrapped in ``Subset`` / pipeline wrappers."""
    found, stack = [], [dataset]
    while stack:
        current = stack.pop()
        if current is None:
            continue
        transform = getattr(current, "mmkd_transform", None)
        if transform is not None:
            found.append(transform)
            continue
        stack.append(getattr(current, "dataset", None))
        stack.extend(getattr(current, "datasets", {}).values() if isinstance(getattr(current, "datasets", None), dict)
                     else getattr(current, "datasets", None) or [])
    return found


class PipelineData:
    """Datasets of one run (``mmkd_hf.data.load_dataset``): train (augmented), train without augmentation
    (weight fitting), validation; plus the dataset's heads and class names."""

    def __init__(self, config: PipelineConfig):
        self.config = config
        self.data_dir = config.resolved_data_dir
        self._cache: dict[tuple, Any] = {}
        self.heads, self.head_labels = heads_from_features(self._load("train", ("rgb",), False).features)

    def _load(self, split: str, modalities: Sequence[str], train: bool):
        from ..data import AudioConfig, load_dataset

        cfg = self.config
        return load_dataset(
            cfg.dataset,
            data_dir=str(self.data_dir),
            split=split,
            modalities=tuple(modalities),
            num_frames=cfg.frames,
            train=train,
            crop_size=cfg.size,
            sampler=cfg.frame_sampler,
            stride=cfg.frame_stride,
            audio=AudioConfig(**{**dict(cfg.model_preset.audio), "output_size": (cfg.size, cfg.size)}),
            seed=cfg.seed,
            frames_dtype="uint8",  # RGB/flow as 0-255 bytes: 4x less to move; the models divide by 255
        )

    def dataset(self, split: str, modalities: Sequence[str], train: bool):
        """The ``split`` dataset with the given modalities (augmented when ``train``), cut to max_*_samples."""
        key = (split, tuple(sorted(modalities)), bool(train))
        if key not in self._cache:
            dataset = self._load(split, sorted(modalities), train)
            limit = self.config.max_train_samples if split == "train" else self.config.max_eval_samples
            if limit is not None and limit < len(dataset):
                dataset = torch.utils.data.Subset(dataset, range(limit))
            self._cache[key] = dataset
        return self._cache[key]

    def collator(self):
        from ..data import MultimodalCollator

        return MultimodalCollator()

    def train_ids(self) -> list[str]:
        """Segment ids of the (possibly ``--max-train-samples``-cut) training split, in dataset order."""
        from ..data import load_dataset

        metadata = load_dataset(self.config.dataset, data_dir=str(self.data_dir), split="train", decode=False)
        if "segment_id" not in metadata.column_names:
            raise ValueError(f"the training split of {self.config.dataset} has no segment_id column")
        ids = [str(i) for i in metadata["segment_id"]]
        limit = self.config.max_train_samples
        return ids[:limit] if limit is not None else ids


def heads_from_features(features) -> tuple[dict[str, int], dict[str, list[str]]]:
    """``({head: num_classes}, {head: class names})`` from a dataset's ``ClassLabel`` columns: ``verb_class`` and
    ``noun_class`` give the EPIC heads ``verb``/``noun``; a single ``label``/``action_class`` gives ``action``."""
    import datasets

    heads: dict[str, int] = {}
    labels: dict[str, list[str]] = {}
    for name, feature in features.items():
        if not isinstance(feature, datasets.ClassLabel):
            continue
        head = name[: -len("_class")] if name.endswith("_class") else ("action" if name == "label" else name)
        heads[head] = int(feature.num_classes)
        labels[head] = list(feature.names)
    if not heads:
        raise ValueError(f"the dataset has no ClassLabel column to derive the heads from; features: {list(features)}")
    return heads, labels


def prepare_dataset(config: PipelineConfig) -> None:
    """Make the embedded mini-kitchens dataset when it is missing (real datasets must exist)."""
    root = config.resolved_data_dir
    if config.dataset != "mini-kitchens":
        if not root.exists():
            raise FileNotFoundError(f"--data-dir {root} does not exist (dataset {config.dataset})")
        return
    from ..data.builders.mini_kitchens import ensure_mini_kitchens

    ensure_mini_kitchens(root, seed=0, **MINI_KITCHENS_SCALES[config.mini_kitchens_scale])


# =====================================================================================================================
# Models
# =====================================================================================================================


def build_teacher(config: PipelineConfig, modality: str, heads, head_labels) -> nn.Module:
    """A randomly initialised teacher for ``modality`` (Video Swin for rgb/flow/audio, STLT for layout)."""
    preset = config.model_preset
    if modality == "layout":
        from ..models import STLTConfig, STLTForVideoClassification

        return STLTForVideoClassification(STLTConfig(**stlt_config_kwargs(preset, heads, head_labels, config.frames)))
    from ..models import VideoSwinConfig, VideoSwinForVideoClassification

    kwargs = video_swin_config_kwargs(preset, "teacher", modality, heads, head_labels, config.frames, config.size)
    return VideoSwinForVideoClassification(VideoSwinConfig(**kwargs))


def build_student(config: PipelineConfig, heads, head_labels) -> nn.Module:
    """A randomly initialised RGB Video Swin with the student's architecture (student and both baselines)."""
    from ..models import VideoSwinConfig, VideoSwinForVideoClassification

    kwargs = video_swin_config_kwargs(config.model_preset, "student", "rgb", heads, head_labels,
                                      config.frames, config.size)
    return VideoSwinForVideoClassification(VideoSwinConfig(**kwargs))


def flow_as_rgb(flow: torch.Tensor) -> torch.Tensor:
    """Map flow ``[..., 2, H, W]`` (u, v) to the RGB input format ``[..., 3, H, W]`` by appending an all-zero
    third channel: the original code's ``Image.merge("RGB", [u, v, zeros])`` (spec section 3.2)."""
    if flow.shape[-3] != 2:
        raise ValueError(f"flow_as_rgb: expected 2 channels (u, v) at dim -3, got shape {tuple(flow.shape)}")
    return torch.cat([flow, torch.zeros_like(flow[..., :1, :, :])], dim=-3)


def audio_as_rgb(audio: torch.Tensor, size: tuple[int, int] | None = None) -> torch.Tensor:
    """Map log-mel frames ``[B, T, 1, F, W]`` (dB) to the RGB input format ``[B, T, 3, H, W]``.

    The spectrogram is repeated on 3 channels (the original audio checkpoints' convention), resized bilinearly to
    ``size`` (the frame size) when it differs, and affinely mapped so that the RGB model's own ImageNet
    normalisation turns it into the audio model's normalised input ``(dB - mean) / std`` (spec section 3.3):
    ``rgb_c = mean_c + std_c * (dB - audio_mean) / audio_std``.
    """
    from ..models.video_swin.configuration_video_swin import (
        AUDIO_DB_MEAN,
        AUDIO_DB_STD,
        IMAGENET_MEAN,
        IMAGENET_STD,
    )

    if audio.ndim != 5 or audio.shape[2] != 1:
        raise ValueError(f"audio_as_rgb: expected [B, T, 1, F, W], got shape {tuple(audio.shape)}")
    b, t = audio.shape[:2]
    if size is not None and tuple(size) != tuple(audio.shape[-2:]):
        flat = audio.reshape(b * t, 1, *audio.shape[-2:])
        audio = torch.nn.functional.interpolate(flat, size=tuple(size), mode="bilinear", align_corners=False)
        audio = audio.reshape(b, t, 1, *size)
    z = (audio - AUDIO_DB_MEAN) / AUDIO_DB_STD
    mean = torch.tensor(IMAGENET_MEAN, dtype=audio.dtype, device=audio.device).view(1, 1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, dtype=audio.dtype, device=audio.device).view(1, 1, 3, 1, 1)
    return mean + std * z


class OmnivoreDataset(torch.utils.data.Dataset):
    """Training data of the omnivore baseline: one RGB network fed RGB, flow and audio clips in turn.

    Item ``i`` of epoch ``e`` is clip ``i`` in modality ``modalities[(i + e) % M]`` (every clip is seen in every
    modality across epochs, and every batch mixes them), mapped to the RGB input format: flow by
    :func:`flow_as_rgb`, audio by :func:`audio_as_rgb`. Only that modality is decoded, so an epoch costs about
    what an RGB epoch does. Items carry ``pixel_values`` (float: uint8 frames are divided by 255, as the model
    would, so that one batch can mix them with spectrograms), ``labels`` and ``segment_id``.
    """

    def __init__(self, datasets: Mapping[str, Any], frame_size: tuple[int, int]):
        if not datasets:
            raise ValueError("OmnivoreDataset needs at least one modality")
        lengths = {m: len(d) for m, d in datasets.items()}
        if len(set(lengths.values())) != 1:
            raise ValueError(f"OmnivoreDataset: the modalities' datasets differ in length: {lengths}")
        self.datasets = dict(datasets)
        self.modalities = tuple(datasets)
        self.frame_size = tuple(frame_size)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(next(iter(self.datasets.values())))

    def modality_of(self, index: int) -> str:
        return self.modalities[(int(index) + self.epoch) % len(self.modalities)]

    def __getitem__(self, index: int) -> dict[str, Any]:
        modality = self.modality_of(index)
        item = dict(self.datasets[modality][index])
        if modality == "rgb":
            values = item.pop("pixel_values")
        elif modality == "flow":
            values = flow_as_rgb(item.pop("flow_values"))
        else:
            values = audio_as_rgb(item.pop("audio_values").unsqueeze(0), self.frame_size)[0]
        if values.dtype == torch.uint8:
            values = values.float().div_(255.0)
        return {"pixel_values": values, "labels": item["labels"], "segment_id": item.get("segment_id")}


# =====================================================================================================================
# Training units
# =====================================================================================================================


@dataclass
class Runner:
    """Runs the units of one invocation; holds the config, the run folder and the data."""

    config: PipelineConfig
    folder: RunFolder
    data: PipelineData
    held_out: dict[str, list[int]] = field(default_factory=dict)
    stop_budget: _StepBudget | None = None

    # -- helpers ---------------------------------------------------------------------------------------------------
    def training_arguments(self, unit: str, epochs: float, batch_size: int, learning_rate: float, seed_offset: int,
                           args_class=None, **extra):
        from .arguments import SupervisedTrainingArguments

        cfg = self.config
        args_class = args_class or SupervisedTrainingArguments
        report_to = [] if cfg.report_to in ("", "none") else [r.strip() for r in cfg.report_to.split(",") if r.strip()]
        save_kwargs: dict[str, Any]
        if cfg.save_steps > 0:
            save_kwargs = {"save_strategy": "steps", "save_steps": cfg.save_steps}
        else:
            save_kwargs = {"save_strategy": "epoch"}
        return args_class(
            output_dir=str(self.folder.checkpoint_dir(unit)),
            num_train_epochs=float(epochs),
            max_steps=int(cfg.max_steps),
            per_device_train_batch_size=int(batch_size),
            per_device_eval_batch_size=int(cfg.eval_batch_size),
            learning_rate=float(learning_rate),
            weight_decay=float(cfg.weight_decay),
            adam_beta1=0.9,
            adam_beta2=0.999,
            adam_epsilon=1e-8,
            lr_scheduler_type="linear",
            warmup_steps=float(cfg.warmup_ratio),
            max_grad_norm=float(cfg.max_grad_norm),
            logging_steps=int(cfg.logging_steps),
            save_total_limit=int(cfg.save_total_limit),
            report_to=report_to,
            seed=int(cfg.seed + seed_offset),
            data_seed=int(cfg.seed + seed_offset),
            full_determinism=bool(cfg.deterministic),
            dataloader_num_workers=int(cfg.num_workers),
            dataloader_pin_memory=not _cpu_only(),
            use_cpu=_cpu_only(),
            remove_unused_columns=False,
            label_names=["labels"],
            eval_strategy="no",
            ddp_find_unused_parameters=False,
            disable_tqdm=False,
            **save_kwargs,
            **extra,
        )

    def resume_checkpoint(self, unit: str) -> str | None:
        """Last Trainer checkpoint of ``unit`` with ``--resume``; without it, leftovers of an interrupted unit are an
        error (they would be silently ignored otherwise)."""
        checkpoint = last_valid_checkpoint(self.folder.checkpoint_dir(unit))
        if checkpoint is None:
            return None
        if self.config.resume:
            _info(f"{unit}: resuming from {checkpoint}")
            return str(checkpoint)
        raise RunConflictError(
            f"{unit} was interrupted earlier (checkpoint {checkpoint} exists): pass --resume to continue it, or "
            f"--overwrite to start the whole run again."
        )

    def train_unit(self, unit: str, model: nn.Module, train_dataset, *, epochs: float, batch_size: int,
                   learning_rate: float, seed_offset: int, trainer_factory, args_class=None, extra_args=None,
                   extra_callbacks=()) -> nn.Module:
        """Train ``model`` with a Trainer built by ``trainer_factory(model, args, dataset, collator, callbacks)``."""
        seeded = EpochSeededDataset(train_dataset, seed=self.config.seed + seed_offset)
        args = self.training_arguments(unit, epochs, batch_size, learning_rate, seed_offset, args_class,
                                       **(extra_args or {}))
        callbacks = _trainer_callbacks(seeded, self.stop_budget) + list(extra_callbacks)
        checkpoint = self.resume_checkpoint(unit)
        deterministic_before = torch.are_deterministic_algorithms_enabled()
        try:
            with _env(TENSORBOARD_LOGGING_DIR=str(self.folder.tensorboard_dir(unit))):
                trainer = trainer_factory(model, args, seeded, self.data.collator(), callbacks)
                trainer.train(resume_from_checkpoint=checkpoint)
        finally:  # full_determinism switches it on process-wide; leave the caller's setting as it was
            torch.use_deterministic_algorithms(deterministic_before)
        return trainer

    def save_model(self, unit: str, model: nn.Module, card_info: Mapping[str, Any] | None = None) -> None:
        """Save ``model`` into ``<run>/<unit>/`` atomically (main process), with a model card when available."""
        model = _unwrap(model)
        if _is_main():
            with atomic_directory(self.folder.model_dir(unit)) as tmp:
                model.save_pretrained(tmp)
                if getattr(model.config, "input_key", None) == "pixel_values":
                    # RGB Video Swin models: the video processor makes pipeline("video-classification", folder) work.
                    VideoSwinVideoProcessor.from_model_config(model.config).save_pretrained(tmp)
                if self.config.write_model_cards:
                    _maybe_write_card(tmp, unit, self.config, card_info or {})
        _barrier()

    def finish(self, unit: str, started: float, **info: Any) -> None:
        if _is_main():
            self.folder.add_timing(unit, time.time() - started)
            self.folder.mark_done(unit, **info)
            checkpoints = self.folder.checkpoint_dir(unit)
            if checkpoints.exists():  # keep the logs, drop the bulky checkpoints of a finished unit
                for child in checkpoints.iterdir():
                    if child.name.startswith("checkpoint-"):
                        shutil.rmtree(child, ignore_errors=True)
        _barrier()

    def teacher_train_indices(self) -> list[int]:
        return list(self.held_out["teacher_indices"])

    # -- units -----------------------------------------------------------------------------------------------------
    def run_teacher(self, modality: str) -> None:
        unit = f"teacher-{modality}"
        if self.folder.is_done(unit):
            _info(f"{unit}: done earlier, reusing {self.folder.model_dir(unit)}")
            return
        _banner(f"stage teachers: {unit}")
        started = time.time()
        cfg = self.config
        seed_offset = 1 + TEACHER_MODALITIES.index(modality)
        seed_everything(cfg.seed + seed_offset)
        model = build_teacher(cfg, modality, self.data.heads, self.data.head_labels)
        train = torch.utils.data.Subset(self.data.dataset("train", [modality], train=True), self.teacher_train_indices())
        lr = cfg.layout_learning_rate if (modality == "layout" and cfg.layout_learning_rate) else cfg.teacher_learning_rate
        trainer = self.train_unit(unit, model, train, epochs=cfg.teacher_epochs, batch_size=cfg.teacher_batch_size,
                                  learning_rate=lr, seed_offset=seed_offset, trainer_factory=_supervised_trainer)
        self.save_model(unit, trainer.model, {"role": "teacher", "modality": modality})
        self.finish(unit, started)

    def run_ensemble(self) -> None:
        unit = "ensemble"
        if self.folder.is_done(unit):
            _info(f"{unit}: done earlier, reusing {self.folder.model_dir(unit)}")
            return
        self._require([f"teacher-{m}" for m in self.config.teacher_list], "weights")
        _banner(f"stage weights: ensemble ({self.config.weighting}) of {', '.join(self.config.teacher_list)}")
        started = time.time()
        from transformers import AutoModel

        from ..models import MultimodalTeacherEnsemble

        cfg = self.config
        teachers = {m: AutoModel.from_pretrained(self.folder.model_dir(f"teacher-{m}")) for m in cfg.teacher_list}
        ensemble = MultimodalTeacherEnsemble.from_teachers(
            teachers,
            heads=self.data.heads,
            weighting=cfg.weighting,
            weights_temperature=cfg.weights_temperature,
            combine_space=cfg.combine_space,
            held_out_split_file=self.folder.split_file.name,
        )
        info: dict[str, Any] = {}
        if cfg.weighting == "full-dataset" or cfg.calibrate_ensemble:
            from accelerate import Accelerator

            accelerator = Accelerator()
            # Un-augmented views of the held-out part of the train split; each process takes a strided shard and
            # the ensemble sums the per-teacher losses (gathers the logits, for calibration) across processes.
            indices = list(self.held_out["held_out_indices"])[accelerator.process_index::accelerator.num_processes]
            held_out = torch.utils.data.Subset(self.data.dataset("train", cfg.teacher_list, train=False), indices)
            loader = torch.utils.data.DataLoader(held_out, batch_size=cfg.eval_batch_size, shuffle=False,
                                                 collate_fn=self.data.collator(), num_workers=cfg.num_workers)
            ensemble.to(accelerator.device)
            # one pass of the teachers over the held-out split serves both fits
            held_out_logits = ensemble.collect_held_out_logits(_progress(loader, "teachers on the held-out split"),
                                                               accelerator=accelerator)
            if cfg.weighting == "full-dataset":
                weights = ensemble.fit_full_dataset_weights(held_out=held_out_logits, accelerator=accelerator)
                info["weights"] = {head: [round(float(w), 6) for w in value] for head, value in weights.items()}
                _info(f"full-dataset weights (teacher order {list(cfg.teacher_list)}): {info['weights']}")
            if cfg.calibrate_ensemble:
                temperatures = ensemble.fit_calibration(held_out=held_out_logits, accelerator=accelerator)
                info["calibration_temperatures"] = {head: round(float(t), 4) for head, t in temperatures.items()}
                _info(f"ensemble calibration temperatures: {info['calibration_temperatures']}")
        self.save_model(unit, ensemble.cpu(), {"role": "ensemble", "teachers": list(cfg.teacher_list),
                                               "weighting": cfg.weighting, **info})
        self.finish(unit, started, **info)

    def run_student(self) -> None:
        unit = "student"
        if self.folder.is_done(unit):
            _info(f"{unit}: done earlier, reusing {self.folder.model_dir(unit)}")
            return
        self._require(["ensemble"], "distill")
        _banner("stage distill: RGB student <- teacher ensemble (online)")
        started = time.time()
        from transformers import AutoModel

        from .arguments import DistillationTrainingArguments

        cfg = self.config
        seed_everything(cfg.seed + 10)
        student = build_student(cfg, self.data.heads, self.data.head_labels)
        ensemble = AutoModel.from_pretrained(self.folder.model_dir("ensemble"))
        modalities = sorted(set(cfg.teacher_list) | {"rgb"})
        train = self.data.dataset("train", modalities, train=True)
        extra = _distillation_argument_values(DistillationTrainingArguments, cfg)

        def factory(model, args, dataset, collator, callbacks):
            return _distillation_trainer(model, ensemble, args, dataset, collator, callbacks)

        trainer = self.train_unit(unit, student, train, epochs=cfg.student_epochs, batch_size=cfg.student_batch_size,
                                  learning_rate=cfg.student_learning_rate, seed_offset=10, trainer_factory=factory,
                                  args_class=DistillationTrainingArguments, extra_args=extra)
        self.save_model(unit, trainer.model, {"role": "student", "teachers": list(cfg.teacher_list)})
        self.finish(unit, started)

    def run_baseline_rgb(self) -> None:
        unit = "baseline-rgb"
        if self.folder.is_done(unit):
            _info(f"{unit}: done earlier, reusing {self.folder.model_dir(unit)}")
            return
        _banner("stage baselines: baseline-rgb (student architecture, labels only)")
        started = time.time()
        cfg = self.config
        seed_everything(cfg.seed + 10)  # same init and data order as the student: only the targets differ
        model = build_student(cfg, self.data.heads, self.data.head_labels)
        train = self.data.dataset("train", ["rgb"], train=True)
        epochs = cfg.baseline_epochs if cfg.baseline_epochs is not None else cfg.student_epochs
        trainer = self.train_unit(unit, model, train, epochs=epochs, batch_size=cfg.student_batch_size,
                                  learning_rate=cfg.student_learning_rate, seed_offset=10,
                                  trainer_factory=_supervised_trainer)
        self.save_model(unit, trainer.model, {"role": "baseline-rgb"})
        self.finish(unit, started)

    def run_omnivore(self) -> None:
        unit = "omnivore"
        if self.folder.is_done(unit):
            _info(f"{unit}: done earlier, reusing {self.folder.model_dir(unit)}")
            return
        cfg = self.config
        modalities = [m for m in OMNIVORE_MODALITIES if m in DATASET_TEACHERS[cfg.dataset]]
        _banner(f"stage baselines: omnivore (one network, {'/'.join(modalities)} clips in turn, evaluated on RGB)")
        started = time.time()
        seed_everything(cfg.seed + 10)
        model = build_student(cfg, self.data.heads, self.data.head_labels)
        train = OmnivoreDataset({m: self.data.dataset("train", [m], train=True) for m in modalities},
                                frame_size=(cfg.size, cfg.size))
        epochs = cfg.baseline_epochs if cfg.baseline_epochs is not None else cfg.student_epochs
        trainer = self.train_unit(unit, model, train, epochs=epochs, batch_size=cfg.student_batch_size,
                                  learning_rate=cfg.student_learning_rate, seed_offset=10,
                                  trainer_factory=_supervised_trainer)
        self.save_model(unit, trainer.model, {"role": "omnivore", "modalities": modalities})
        self.finish(unit, started)

    def run_evaluate(self) -> dict[str, Any]:
        _banner("stage evaluate: every model on the validation split")
        started = time.time()
        from transformers import AutoModel

        cfg = self.config
        results: dict[str, Any] = {}
        for unit in self.model_units():
            folder = self.folder.model_dir(unit)
            if not folder.exists():
                _info(f"evaluate: {unit} not trained yet, skipped")
                continue
            model = AutoModel.from_pretrained(folder)
            modalities = _model_modalities(unit, cfg)
            dataset = self.data.dataset("validation", modalities, train=False)
            results[unit] = _evaluate(model, dataset, self.data.collator(), cfg, unit,
                                      self.folder.path / "eval" / unit)
            results[unit]["modalities"] = list(modalities)
            results[unit]["parameters"] = int(sum(p.numel() for p in model.parameters()))
        if _is_main():
            self.folder.add_timing("evaluate", time.time() - started)
            payload = write_results(self.folder, cfg, results, self.data.heads)
            if cfg.write_model_cards:  # refresh each card with the model's validation metrics
                for unit in results:
                    _maybe_write_card(self.folder.model_dir(unit), unit, cfg, {"role": unit, "results": payload})
            self.folder.mark_done("evaluate")
        _barrier()
        return results

    def model_units(self) -> list[str]:
        teachers = [f"teacher-{m}" for m in self.config.teacher_list]
        return teachers + ["ensemble", "student", *BASELINES]

    def _require(self, units: Sequence[str], stage: str) -> None:
        missing = [u for u in units if not self.folder.is_done(u)]
        if missing:
            raise RuntimeError(
                f"stage {stage!r} needs {missing} from earlier stages, not found in {self.folder.path}; run them first "
                f"(e.g. --stage all, or --stage teachers / weights)."
            )


def _model_modalities(unit: str, config: PipelineConfig) -> tuple[str, ...]:
    if unit.startswith("teacher-"):
        return (unit.split("-", 1)[1],)
    if unit == "ensemble":
        return tuple(config.teacher_list)
    return ("rgb",)


def _unwrap(model: nn.Module) -> nn.Module:
    while hasattr(model, "module") and isinstance(model.module, nn.Module):
        model = model.module
    return model


def _progress(iterable, desc: str):
    from tqdm.auto import tqdm

    return tqdm(iterable, desc=desc, disable=not _is_main())


# --- trainer factories (adapters over mmkd_hf.distillation.trainer) ---------------------------------------------------


def _supervised_trainer(model, args, dataset, collator, callbacks):
    from .trainer import SupervisedTrainer

    return SupervisedTrainer(model=model, args=args, train_dataset=dataset, data_collator=collator, callbacks=callbacks)


def _distillation_trainer(model, teacher, args, dataset, collator, callbacks):
    from .trainer import DistillationTrainer

    return DistillationTrainer(model=model, teacher=teacher, args=args, train_dataset=dataset,
                               data_collator=collator, callbacks=callbacks)


def _distillation_argument_values(args_class, config: PipelineConfig) -> dict[str, Any]:
    """The distillation fields of :class:`PipelineConfig` under the names ``args_class`` uses."""
    names = {f.name for f in fields(args_class)}
    wanted = {
        "temperature": config.temperature,
        "kd_weight": config.kd_weight,
        "ce_weight": config.ce_weight,
        "weighting_scheme": config.weighting,
        "weights_temperature": config.weights_temperature,
        "combine_space": config.combine_space,
        "teacher_mode": "online",
    }
    return {k: v for k, v in wanted.items() if k in names}


def _maybe_write_card(folder: Path, unit: str, config: PipelineConfig, info: Mapping[str, Any]) -> None:
    try:
        from ..hub.cards import write_model_card
    except ImportError:
        return
    try:
        params = inspect.signature(write_model_card).parameters
        kwargs = {"unit": unit, "role": info.get("role", unit), "dataset": config.dataset, "run_config": asdict(config),
                  "info": dict(info)}
        if not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
            kwargs = {k: v for k, v in kwargs.items() if k in params}
        write_model_card(folder, **kwargs)
    except Exception as exc:  # a card is documentation: never lose a trained model over it
        _info(f"model card for {unit} not written: {type(exc).__name__}: {exc}")


# =====================================================================================================================
# Evaluation and results
# =====================================================================================================================


def _evaluate(model, dataset, collator, config: PipelineConfig, unit: str, output_dir: Path | None) -> dict[str, Any]:
    """Validation metrics of one model (``mmkd_hf.evaluation.run.evaluate_model``): per head top-1/top-5 and ECE
    (15 bins), EPIC action accuracy for verb+noun heads; gathered across processes with ``gather_for_metrics``."""
    from ..evaluation.run import evaluate_model

    result = evaluate_model(model, dataset, collator=collator, batch_size=config.eval_batch_size,
                            num_workers=config.num_workers, desc=f"evaluate {unit}", num_bins=15,
                            output_dir=output_dir, progress=True)
    return _jsonable(result)


def _jsonable(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (np.floating, np.integer, np.bool_)):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, torch.Tensor):
        return value.tolist()
    return value


def write_results(folder: RunFolder, config: PipelineConfig, results: Mapping[str, Any], heads) -> dict[str, Any]:
    """Write ``results.json`` and ``results.md`` of the run."""
    timings = folder.read_timings()
    payload = {
        "run": {"name": config.resolved_run_name, "dataset": config.dataset, "seed": config.seed,
                "preset": config.preset_name, "config_hash": config.identity_hash(),
                "num_processes": _state().num_processes},
        "config": asdict(config),
        "timings_s": {**timings, "total": round(sum(timings.values()), 3)},
        "models": dict(results),
    }
    atomic_write_json(folder.path / "results.json", payload)
    atomic_write_text(folder.path / "results.md", results_markdown(payload, list(heads)))
    return payload


def results_markdown(payload: Mapping[str, Any], heads: Sequence[str]) -> str:
    """A Markdown table of every model's metrics, then the timings."""
    run = payload["run"]
    lines = [f"# Results: {run['name']}", "",
             f"dataset {run['dataset']} · preset {run['preset']} · seed {run['seed']} · "
             f"{run['num_processes']} process(es) · config {run['config_hash'][:12]}", ""]
    head_cols = []
    for head in heads:
        head_cols += [f"{head} top-1", f"{head} top-5", f"{head} ECE"]
    has_action = any(_metric(r, "action", "top1") is not None for r in payload["models"].values())
    cols = ["model", "inputs"] + (["action top-1"] if has_action else []) + head_cols
    lines += ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for name, result in payload["models"].items():
        row = [name, "+".join(result.get("modalities", []))]
        if has_action:
            row.append(_fmt(_metric(result, "action", "top1")))
        for head in heads:
            row += [_fmt(_metric(result, head, "top1")), _fmt(_metric(result, head, "top5")),
                    _fmt(_metric(result, head, "ece"))]
        lines.append("| " + " | ".join(row) + " |")
    lines += ["", "Accuracies and ECE (15 bins) in %, on the validation split.", "", "## Wall time per unit (s)", "",
              "| unit | seconds |", "|---|---|"]
    lines += [f"| {k} | {v:.1f} |" for k, v in payload["timings_s"].items()]
    return "\n".join(lines) + "\n"


def _metric(result: Mapping[str, Any], head: str, name: str):
    value = result.get("heads", {}).get(head, {}).get(name)
    if value is None and head == "action":
        value = result.get("action", {}).get(name)
    return value


def _fmt(value) -> str:
    return "–" if value is None else f"{float(value):.2f}"


# =====================================================================================================================
# Held-out split
# =====================================================================================================================


def load_or_make_held_out_split(folder: RunFolder, config: PipelineConfig, train_ids: Sequence[str]) -> dict[str, Any]:
    """The run's held-out split (teachers never train on it): made by the main process and saved on first use,
    read back afterwards (also after ``--resume``). Returns the saved JSON plus ``teacher_indices`` /
    ``held_out_indices``, positions in the training split."""
    from .weighting import check_held_out_split, make_held_out_split, save_held_out_split

    if _is_main() and not folder.split_file.exists():
        teacher_ids, held_out_ids = make_held_out_split(train_ids, config.held_out_fraction, seed=config.seed)
        save_held_out_split(folder.split_file, teacher_ids, held_out_ids, seed=config.seed,
                            fraction=config.held_out_fraction, dataset=config.dataset)
    _barrier()
    split = json.loads(folder.split_file.read_text(encoding="utf-8"))
    teacher_ids, held_out_ids = split["teacher_train_ids"], split["held_out_ids"]
    check_held_out_split(teacher_ids, held_out_ids)
    position = {sample_id: i for i, sample_id in enumerate(train_ids)}
    missing = [i for i in list(teacher_ids) + list(held_out_ids) if i not in position]
    if missing:
        raise ValueError(f"{folder.split_file}: {len(missing)} sample id(s) are not in the training split, e.g. "
                         f"{missing[:3]}; the split belongs to other data")
    split["teacher_indices"] = sorted(position[i] for i in teacher_ids)
    split["held_out_indices"] = sorted(position[i] for i in held_out_ids)
    return split


# =====================================================================================================================
# main
# =====================================================================================================================


def _units_for_stage(stage: str) -> tuple[str, ...]:
    return {
        "all": ("teachers", "weights", "distill", "baselines", "evaluate"),
        "teachers": ("teachers",),
        "weights": ("weights",),
        "distill": ("distill",),
        "baselines": ("baselines",),
        "evaluate": ("evaluate",),
    }[stage]


def run_pipeline(config: PipelineConfig) -> dict[str, Any]:
    """Run the stages selected by ``config.stage``; returns the evaluation results (empty without ``evaluate``)."""
    _configure_cpu_processes()
    state = _state()
    folder = RunFolder(config.run_dir)
    if config.overwrite and state.is_main_process and folder.path.exists():
        shutil.rmtree(folder.path)
    _barrier()
    folder.check_identity(config)  # every process raises the same error
    _barrier()
    if state.is_main_process:
        folder.path.mkdir(parents=True, exist_ok=True)
        folder.write_identity(config)
    _banner(f"run {folder.path} · dataset {config.dataset} · preset {config.preset_name} · "
            f"teachers {','.join(config.teacher_list)} · {state.num_processes} process(es)")

    started = time.time()
    with state.main_process_first():
        prepare_dataset(config)
    if state.is_main_process and not folder.is_done("dataset"):
        folder.add_timing("dataset", time.time() - started)
        folder.mark_done("dataset")
    _barrier()

    data = PipelineData(config)
    runner = Runner(config=config, folder=folder, data=data,
                    stop_budget=_StepBudget(config.stop_after_steps) if config.stop_after_steps else None)
    stages = _units_for_stage(config.stage)
    if any(s in stages for s in ("teachers", "weights")):
        runner.held_out = load_or_make_held_out_split(folder, config, data.train_ids())
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
            runner.run_baseline_rgb()
            runner.run_omnivore()
        elif stage == "evaluate":
            results = runner.run_evaluate()
    if state.is_main_process and "evaluate" in stages:
        _info(f"results: {folder.path / 'results.json'} and {folder.path / 'results.md'}")
        print((folder.path / "results.md").read_text(encoding="utf-8"), flush=True)
    return results


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
    except RunConflictError as exc:
        print(f"train.py: error: {exc}", file=sys.stderr)
        return 2
    return 0


__all__ = [
    "PipelineConfig",
    "RunConflictError",
    "RunFolder",
    "SimulatedInterruption",
    "audio_as_rgb",
    "build_parser",
    "flow_as_rgb",
    "load_config_file",
    "main",
    "parse_config",
    "run_pipeline",
]
