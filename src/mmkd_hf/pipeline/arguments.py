"""The options of ``train.py``: argument groups parsed by one ``HfArgumentParser``, and the run's configuration.

Every option is a field of one group: :class:`RunArguments` (what to run, where, logging), :class:`DataArguments`
(dataset and clip decoding), :class:`ScheduleArguments` (optimisation), :class:`EnsembleArguments` (held-out split
and ensemble calibration) and :class:`~mmkd_hf.distillation.arguments.DistillationArguments` (the distillation
recipe, shared with :class:`~mmkd_hf.distillation.arguments.DistillationTrainingArguments`). Each setting has its
default in its group only. ``--config FILE`` (JSON or YAML, keys = option names) sets any of them and the command
line overrides the file. :class:`PipelineConfig` is all groups in one object (the run's configuration).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Optional

import yaml
from transformers import HfArgumentParser

from ..data.configs import FRAMES_DTYPES
from ..distillation.arguments import DistillationArguments
from ..distillation.presets import DEFAULT_PRESET_BY_DATASET, PRESETS, ModelPreset, get_preset
from ..models.convert_backbone import BackboneCheckpointError, check_backbone_source
from ..synthetic.narration_noise import parse_narration_noise
from ..utils import check_number

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
#: Options that do not change what a run computes; they are left out of the run's identity (config hash).
OPERATIONAL_FIELDS = frozenset(
    {
        "config",
        "data_dir",
        "hub_dataset",
        "annotations_dir",
        "output_dir",
        "run_name",
        "stage",
        "resume",
        "overwrite",
        "stop_after_steps",
        "parallel_units",
        "units",
        "baselines",
        "num_workers",
        "augment_on_device",
        "logging_steps",
        "report_to",
        "save_steps",
        "save_total_limit",
        "eval_batch_size",
        "write_model_cards",
    }
)
#: Names an option had in earlier releases -> its name now (accepted in ``--config`` files and on the command line;
#: run identities keep the earlier name, so run folders made before the rename stay valid).
RENAMED_OPTIONS = {"weighting": "weighting_scheme"}
#: Options added after the first release, with the default they were introduced with: they enter the run identity
#: only when set to another value, so run folders made before them keep their identity.
LATER_OPTIONS = {"frames_dtype": "uint8", "init_from": None, "skip_bad_samples": False, "mixed_precision": "no",
                 "gradient_checkpointing": False, "narration_noise": "0", "teacher_mode": "online"}
#: Values of ``--mixed_precision`` (``accelerate launch --mixed_precision`` sets its default).
MIXED_PRECISIONS = ("no", "bf16")
DEFAULT_MINI_KITCHENS_DIR = Path(".cache") / "mini-kitchens"
#: the trained units of a run (``--units``)
KNOWN_UNITS = ("teacher-rgb", "teacher-flow", "teacher-audio", "teacher-layout", "ensemble", "student",
               "baseline-rgb", "omnivore")
#: ``--narration_noise`` of the main job: the generator's default rates (verb and noun pairs)
NARRATION_NOISE_DEFAULT = "0.3"


def _help(text: str) -> dict[str, str]:
    return {"help": text}


@dataclass
class RunArguments:
    """What to run and where: run folder, stage, teachers, seed, model sizes, logging and checkpoints."""

    _argument_group_name = "run"  # its section of ``train.py --help``

    config: Optional[str] = field(
        default=None,
        metadata=_help("JSON or YAML file with any of these options (keys = option names with underscores); "
                       "options given on the command line override the file."),
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
    preset: Optional[str] = field(
        default=None,
        metadata={"help": "Model sizes: " + "; ".join(f"{p.name} = {p.description}" for p in PRESETS.values())
                  + " (default: tiny for mini-kitchens, base otherwise).", "choices": list(PRESETS)},
    )
    init_from: Optional[str] = field(
        default=None,
        metadata=_help("Pretrained Video Swin that every Video Swin of the run (RGB/flow/audio teachers, student, "
                       "baselines) starts its backbone from, with fresh heads: a checkpoint file (mmaction, e.g. the "
                       "Kinetics-400 swin_tiny_patch244_window877_kinetics400_1k.pth, or torchvision swin3d), a "
                       "folder written by `mmkd-hf convert-backbone`, or a Hub repo id (default: random init)."),
    )
    mixed_precision: Optional[str] = field(
        default=None,
        metadata={"help": "bf16: the trained models run under bf16 autocast (losses in float32) and the frozen "
                          "teachers in bf16 for distillation; no: float32. Default: accelerate's setting (`accelerate "
                          "launch --mixed_precision bf16` sets it), else no. Part of the run's identity when bf16.",
                  "choices": list(MIXED_PRECISIONS)},
    )
    resume: bool = field(
        default=False,
        metadata=_help("Continue an interrupted run from the last Trainer checkpoint of the unit it was in."),
    )
    overwrite: bool = field(
        default=False,
        metadata=_help("Delete the run folder first (a fresh run; also allowed when it held another run or other "
                       "data). Refused for a folder that holds no mmkd-hf run, and for a run folder that is or "
                       "contains --output_dir or the working directory (e.g. --run_name .)."),
    )
    deterministic: bool = field(
        default=True,
        metadata=_help("Full determinism (torch.use_deterministic_algorithms, seeded per-item augmentation), so a "
                       "resumed run ends with the same metrics as an uninterrupted one."),
    )
    logging_steps: int = field(default=10, metadata=_help("Log the losses every N optimizer steps."))
    report_to: str = field(default="tensorboard", metadata=_help("Trainer loggers (comma-separated, or 'none')."))
    save_steps: int = field(
        default=0, metadata=_help("Trainer checkpoint every N steps (0: at the end of every epoch, or 24 times in all "
                                  "for a unit trained longer than 24 epochs); --resume uses them.")
    )
    save_total_limit: int = field(default=2, metadata=_help("Trainer checkpoints kept per unit."))
    write_model_cards: bool = field(default=True, metadata=_help("Write a Hub model card (README.md) into each model folder."))
    baselines: str = field(
        default="baseline-rgb",
        metadata=_help("Baselines to train beside the student (comma-separated): baseline-rgb (the student's "
                       "network on labels) and/or omnivore (one network on RGB, flow and audio clips in turn). "
                       "mini-kitchens: omnivore adds about 10 minutes on 2 CPU cores at the main job's schedule, "
                       "so the main job leaves it out; the benchmarks and the real-dataset configs train both."),
    )
    parallel_units: int = field(
        default=0,
        metadata=_help("Units trained at once, each in its own process with cores/N threads, in the order their "
                       "dependencies allow (logs in <run>/logs/). 0 (auto): 2 on a CPU-only machine with 2 or more "
                       "cores and one process (1 with --max_steps), else 1. What a unit computes does not depend on it."),
    )
    units: Optional[str] = field(
        default=None,
        metadata=_help("Train only these units (comma-separated, e.g. teacher-rgb,baseline-rgb); their dependencies "
                       "must be done. --parallel_units runs each unit this way."),
    )
    stop_after_steps: int = field(
        default=0, metadata={"help": argparse.SUPPRESS}  # simulates a crash after N optimizer steps (tests of --resume)
    )

    def __post_init__(self) -> None:
        if self.stage not in STAGES:
            raise ValueError(f"stage: expected one of {list(STAGES)}, given {self.stage!r}")
        if self.preset is not None and self.preset not in PRESETS:
            raise ValueError(f"preset: expected one of {sorted(PRESETS)}, given {self.preset!r}")
        if self.init_from is not None and str(self.init_from).strip().lower() in ("", "none"):
            self.init_from = None
        if self.init_from and self.stage not in ("weights", "evaluate"):  # the stages that build Video Swins
            try:
                check_backbone_source(self.init_from)
            except BackboneCheckpointError as error:
                raise ValueError(f"init_from: {error}") from None
        launched = os.environ.get("ACCELERATE_MIXED_PRECISION")  # `accelerate launch --mixed_precision X` sets it
        if self.mixed_precision is None:
            self.mixed_precision = launched or "no"
        elif launched and launched != self.mixed_precision:  # the Trainer's accelerator would follow accelerate's
            raise ValueError(f"mixed_precision: --mixed_precision {self.mixed_precision} contradicts accelerate's "
                             f"setting {launched!r} (accelerate launch --mixed_precision / accelerate config); "
                             f"give one of them only")
        if self.mixed_precision not in MIXED_PRECISIONS:
            raise ValueError(f"mixed_precision: expected one of {list(MIXED_PRECISIONS)} (from --mixed_precision or "
                             f"accelerate's ACCELERATE_MIXED_PRECISION), given {self.mixed_precision!r}")
        check_number("seed", self.seed, low=0, high=2**32 - 1, integer=True)
        check_number("logging_steps", self.logging_steps, low=1, integer=True)
        check_number("save_steps", self.save_steps, low=0, integer=True)
        check_number("parallel_units", self.parallel_units, low=0, integer=True)
        bad = [b for b in self.baseline_list if b not in ("baseline-rgb", "omnivore")]
        if bad:
            raise ValueError(f"baselines: unknown {bad}; expected baseline-rgb and/or omnivore, given {self.baselines!r}")
        if self.units is not None:
            unknown = [u for u in self.unit_list if u not in KNOWN_UNITS]
            if unknown:
                raise ValueError(f"units: unknown {unknown}; expected some of {list(KNOWN_UNITS)}")
        check_number("save_total_limit", self.save_total_limit, low=1, integer=True)
        check_number("stop_after_steps", self.stop_after_steps, low=0, integer=True)
        _next_post_init(self, RunArguments)

    @property
    def baseline_list(self) -> tuple[str, ...]:
        """``--baselines`` as a tuple, in the order baseline-rgb, omnivore."""
        given = {b.strip() for b in str(self.baselines or "").split(",") if b.strip()}
        return tuple(b for b in ("baseline-rgb", "omnivore") if b in given) + tuple(
            sorted(given - {"baseline-rgb", "omnivore"}))

    @property
    def unit_list(self) -> tuple[str, ...]:
        """``--units`` as a tuple (empty: every unit of the stage)."""
        return tuple(u.strip() for u in str(self.units or "").split(",") if u.strip())


@dataclass
class DataArguments:
    """The dataset and how its clips are decoded (what ``mmkd_hf.data.load_dataset`` receives)."""

    _argument_group_name = "data"  # its section of ``train.py --help``

    dataset: str = field(
        default="mini-kitchens",
        metadata={"help": "Dataset to train and evaluate on.", "choices": list(DATASETS)},
    )
    data_dir: Optional[str] = field(
        default=None,
        metadata=_help(f"Dataset root. mini-kitchens: generated there when missing (default {DEFAULT_MINI_KITCHENS_DIR}, "
                       "with a -<scale> suffix for other scales; a generation made with other settings is refused, "
                       "never regenerated); the real datasets need it (their official download layout). Not part "
                       "of the run's identity (a moved dataset resumes), but the data's fingerprint is."),
    )
    annotations_dir: Optional[str] = field(
        default=None,
        metadata=_help("Folder of the annotation files when they are not inside --data_dir (EPIC-KITCHENS-100: a "
                       "clone of github.com/epic-kitchens/epic-kitchens-100-annotations; default: looked for in "
                       "--data_dir, --data_dir/annotations and --data_dir/epic-kitchens-100-annotations)."),
    )
    hub_dataset: Optional[str] = field(
        default=None,
        metadata=_help("Train on a dataset written by `mmkd-hf export-dataset` instead of --data_dir: its Hub repo id "
                       "(<owner>/<name>[@<revision>]) or its local folder (--data_dir <exported folder> does the same). "
                       "The items equal those of the folder it was exported from. Not part of the run's identity; "
                       "the export's fingerprint is."),
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
    frames_dtype: str = field(
        default="uint8",
        metadata={"help": "Type of the decoded RGB/flow frames: uint8 (0-255 bytes, a quarter of the bytes to move; "
                          "the models divide by 255 on their device) or float32 (in [0, 1]).",
                  "choices": sorted(FRAMES_DTYPES)},
    )
    augment_on_device: str = field(
        default="auto",
        metadata={"help": "Where the training clips are resized and colour-jittered: 'on' = on the accelerator, on "
                          "the whole batch before the forward pass (the loader only decodes and cuts the source "
                          "box); 'off' = in the DataLoader items; 'auto' = on with CUDA, off otherwise. Same random "
                          "parameters and the same pixels either way (at most 1/255 apart), so not part of the "
                          "run's identity.", "choices": ["auto", "on", "off"]},
    )
    narration_noise: str = field(
        default=NARRATION_NOISE_DEFAULT,
        metadata=_help("mini-kitchens: probability that a training narration names the other verb of its pair "
                       "(take/put, ...) and, after a comma (default: the same), the other noun of its pair "
                       "(plate/bowl, ...), as EPIC-KITCHENS narrations sometimes do; the validation narrations stay "
                       "exact. 0 gives exact labels (in .cache/mini-kitchens-noise0 unless --data_dir is given)."),
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
    num_workers: int = field(default=0, metadata=_help("DataLoader worker processes."))
    skip_bad_samples: bool = field(
        default=False,
        metadata=_help("Drop segments whose files are missing and replace a sample that fails to decode (corrupt "
                       "frame, truncated audio) by the next good one, instead of stopping; each one is logged in "
                       "<run>/skipped_samples.jsonl and counted in results.json. Part of the run's identity when set "
                       "(it changes which samples train)."),
    )

    def __post_init__(self) -> None:
        if self.dataset not in DATASETS:
            raise ValueError(f"dataset: expected one of {list(DATASETS)}, given {self.dataset!r}")
        if self.frame_sampler not in (None, "uniform", "stride"):
            raise ValueError(f"frame_sampler: expected uniform or stride, given {self.frame_sampler!r}")
        check_number("frame_stride", self.frame_stride, low=1, integer=True, optional=True)
        for name in ("num_frames", "image_size", "max_train_samples", "max_eval_samples"):
            check_number(name, getattr(self, name), low=1, integer=True, optional=True)
        check_number("num_workers", self.num_workers, low=0, integer=True)
        if self.frames_dtype not in FRAMES_DTYPES:
            raise ValueError(f"frames_dtype: expected one of {sorted(FRAMES_DTYPES)}, given {self.frames_dtype!r}")
        if self.augment_on_device not in ("auto", "on", "off"):
            raise ValueError(f"augment_on_device: expected auto, on or off, given {self.augment_on_device!r}")
        verb_noise, noun_noise = parse_narration_noise(self.narration_noise)
        # one spelling per setting, so "0.3", "0.30" and "0.3,0.3" are the same run
        self.narration_noise = f"{verb_noise:g}" if verb_noise == noun_noise else f"{verb_noise:g},{noun_noise:g}"
        if self.mini_kitchens_scale not in ("default", "tiny"):
            raise ValueError(f"mini_kitchens_scale: expected 'default' or 'tiny', given {self.mini_kitchens_scale!r}")
        _next_post_init(self, DataArguments)


@dataclass
class ScheduleArguments:
    """Optimisation of every trained unit (the authors' recipe, src/train.py of their code, scaled to the tiny
    models of mini-kitchens)."""

    _argument_group_name = "schedule"  # its section of ``train.py --help``

    teacher_epochs: float = field(default=24.0, metadata=_help(
        "Training epochs of every teacher (mini-kitchens: with 12, the audio teacher stayed on its initial loss "
        "plateau in 2 of 8 seeds)."))
    teacher_batch_size: int = field(default=16, metadata=_help("Per-process batch size of the teachers."))
    teacher_learning_rate: float = field(default=1e-3, metadata=_help("Peak AdamW learning rate of the teachers."))
    layout_learning_rate: Optional[float] = field(
        default=None, metadata=_help("Peak learning rate of the STLT layout teacher (default: --teacher-learning-rate).")
    )
    student_epochs: float = field(default=144.0, metadata=_help(
        "Training epochs of the student (and of both baselines). mini-kitchens: the student must fit its training "
        "clips for soft targets to pay; with 12 neither it nor baseline-rgb does (docs/training.md)."))
    student_batch_size: int = field(default=16, metadata=_help("Per-process batch size of the student and baselines."))
    student_learning_rate: float = field(default=1e-3, metadata=_help("Peak AdamW learning rate of the student/baselines."))
    baseline_epochs: Optional[float] = field(
        default=None, metadata=_help("Epochs of baseline-rgb and omnivore (default: --student-epochs, the same schedule).")
    )
    weight_decay: float = field(default=0.02, metadata=_help("AdamW weight decay (the authors' released configs: 0.02)."))
    warmup_ratio: float = field(default=0.1, metadata=_help("Linear warm-up as a fraction of the steps, then linear decay to 0."))
    max_grad_norm: float = field(default=5.0, metadata=_help("Gradient clipping norm (the authors' code: 5.0)."))
    max_steps: int = field(
        default=-1, metadata=_help("If > 0: optimizer steps per training unit, overriding the epochs (tests).")
    )
    eval_batch_size: int = field(default=32, metadata=_help("Per-process batch size of evaluation and weight fitting."))
    gradient_checkpointing: bool = field(
        default=False,
        metadata=_help("Recompute the Video Swin blocks' activations in the backward pass instead of storing them "
                       "(less memory, e.g. Swin-T at the paper's batch on one GPU, for a second forward pass). Same "
                       "mathematics; part of the run's identity when set."),
    )

    def __post_init__(self) -> None:
        for name in ("teacher_batch_size", "student_batch_size", "eval_batch_size"):
            check_number(name, getattr(self, name), low=1, integer=True)
        for name in ("teacher_epochs", "student_epochs", "baseline_epochs", "teacher_learning_rate",
                     "layout_learning_rate", "student_learning_rate"):
            check_number(name, getattr(self, name), low=0, low_inclusive=False, optional=name in (
                "baseline_epochs", "layout_learning_rate"))
        check_number("weight_decay", self.weight_decay, low=0)
        check_number("warmup_ratio", self.warmup_ratio, low=0, high=1, high_inclusive=False)
        check_number("max_grad_norm", self.max_grad_norm, low=0)  # 0: no clipping
        check_number("max_steps", self.max_steps, low=-1, integer=True)  # <= 0: the epochs decide
        _next_post_init(self, ScheduleArguments)


@dataclass
class EnsembleArguments:
    """How the teacher ensemble is fit before distillation: the held-out split and its calibration."""

    _argument_group_name = "ensemble"  # its section of ``train.py --help``

    held_out_fraction: float = field(
        default=0.2,
        metadata=_help("Fraction of the training set held out from the teachers, on which the full-dataset "
                       "ensemble weights are fit. The student and baselines train on the whole training set."),
    )
    calibrate_ensemble: bool = field(
        default=True,
        metadata=_help("Temperature-scale the ensemble per head on the held-out split (after the weights), so its "
                       "targets carry calibrated confidence before the distillation temperature softens them."),
    )
    teacher_mode: str = field(
        default="cached",
        metadata={"help": "How the student gets the ensemble's targets. cached: the ensemble runs once over the "
                          "un-augmented training clips (<run>/teacher-logits/) and a distillation step costs about a "
                          "supervised one. online: the ensemble runs every step on the student's augmented clip "
                          "(consistent views; about 2x the step on the tiny preset, every modality decoded).",
                  "choices": ["cached", "online"]},
    )

    def __post_init__(self) -> None:
        check_number("held_out_fraction", self.held_out_fraction, low=0, high=1, low_inclusive=False,
                     high_inclusive=False)
        if self.teacher_mode not in ("cached", "online"):
            raise ValueError(f"teacher_mode: expected cached or online, given {self.teacher_mode!r}")
        _next_post_init(self, EnsembleArguments)


def _next_post_init(instance: Any, group: type) -> None:
    """Run the next argument group's checks when ``instance`` combines several groups (:class:`PipelineConfig`)."""
    parent = getattr(super(group, instance), "__post_init__", None)
    if parent is not None:
        parent()


#: The argument groups of ``train.py``, in ``--help`` order.
ARGUMENT_GROUPS = (RunArguments, DataArguments, ScheduleArguments, EnsembleArguments, DistillationArguments)


@dataclass
class PipelineConfig(DistillationArguments, EnsembleArguments, ScheduleArguments, DataArguments, RunArguments):
    """The configuration of one run: every field of the argument groups (each defined, with its default, in its
    group), the checks of each group and the values derived from them."""

    def __post_init__(self) -> None:
        super().__post_init__()  # every group's checks, in turn
        allowed = DATASET_TEACHERS[self.dataset]
        teachers = self.teacher_list
        unknown = [t for t in teachers if t not in allowed]
        if unknown:
            raise ValueError(
                f"teachers: {unknown} not available for {self.dataset} (it has {list(allowed)}); given {self.teachers!r}"
            )
        if not teachers:
            raise ValueError("teachers: at least one teacher is needed")

    @classmethod
    def from_groups(cls, *groups: Any) -> "PipelineConfig":
        """One configuration from parsed argument groups (what ``HfArgumentParser`` returns)."""
        values: dict[str, Any] = {}
        for group in groups:
            values.update({f.name: getattr(group, f.name) for f in fields(group)})
        return cls(**values)

    # --- the groups back -----------------------------------------------------------------------------------------------
    @property
    def distillation(self) -> DistillationArguments:
        """The distillation recipe alone (what the student's ``DistillationTrainingArguments`` inherit)."""
        return self.distillation_arguments()

    # --- derived values ------------------------------------------------------------------------------------------------
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
            if self.narration_noise != NARRATION_NOISE_DEFAULT:  # another generation: its own folder
                suffix += f"-noise{self.narration_noise.replace(',', '-')}"
            return DEFAULT_MINI_KITCHENS_DIR.with_name(DEFAULT_MINI_KITCHENS_DIR.name + suffix)
        raise ValueError(f"--data-dir is required for {self.dataset} (see docs/training.md for the expected layout)")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def identity(self) -> dict[str, Any]:
        """The options that define what the run computes (hashed to recognise the run folder). The data they are
        computed on joins it by content, not path: its fingerprint (:func:`~mmkd_hf.pipeline.run_folder.data_fingerprint`)
        is recorded in the run's ``config.json`` and checked on every invocation (``RunFolder.check_data``)."""
        values = {f.name: getattr(self, f.name) for f in fields(self) if f.name not in OPERATIONAL_FIELDS}
        for old_name, name in RENAMED_OPTIONS.items():
            values[old_name] = values.pop(name)
        for name, introduced_default in LATER_OPTIONS.items():
            if values[name] == introduced_default:
                del values[name]
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


def _option_names() -> set[str]:
    return {f.name for group in ARGUMENT_GROUPS for f in fields(group)}


def load_config_file(path: str | os.PathLike) -> dict[str, Any]:
    """Read a JSON or YAML options file into a dict; unknown keys raise ``ValueError`` naming the file and key."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"--config: no such file {path}")
    text = path.read_text(encoding="utf-8")
    if path.suffix.lower() in (".yaml", ".yml"):
        values = yaml.safe_load(text) or {}
    else:
        try:
            values = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ValueError(f"--config {path}: not valid JSON ({exc})") from None
    if not isinstance(values, dict):
        raise ValueError(f"--config {path}: expected a mapping of option -> value, got {type(values).__name__}")
    values = {str(k).replace("-", "_"): v for k, v in values.items()}
    values = {RENAMED_OPTIONS.get(k, k): v for k, v in values.items()}
    unknown = sorted(set(values) - _option_names())
    if unknown:
        raise ValueError(f"--config {path}: unknown option(s) {unknown}; see `train.py --help` for the valid ones")
    values.pop("config", None)
    return values


def build_parser() -> HfArgumentParser:
    """The one ``HfArgumentParser`` over every argument group (``train.py --help``)."""
    parser = HfArgumentParser(ARGUMENT_GROUPS, description=__doc__.split("\n\n")[0],
                              formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.prog = "train.py"
    # argparse reads "-1e-3" as an option name; read it as the (negative) number it is, so the value's check can
    # name the option and its range
    parser._negative_number_matcher = re.compile(r"^-(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$|^-(inf|nan)$")
    return parser


def parse_config(argv: Sequence[str] | None = None) -> PipelineConfig:
    """Parse ``argv`` (with an optional ``--config FILE`` whose values the command line overrides)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    known, _ = parser.parse_known_args(argv)
    if known.config:
        parser.set_defaults(**load_config_file(known.config))
    groups = parser.parse_args_into_dataclasses(args=argv, look_for_args_file=False)
    return PipelineConfig.from_groups(*groups)


__all__ = [
    "ARGUMENT_GROUPS",
    "DATASETS",
    "DATASET_TEACHERS",
    "DataArguments",
    "DistillationArguments",
    "EnsembleArguments",
    "MIXED_PRECISIONS",
    "OPERATIONAL_FIELDS",
    "PipelineConfig",
    "RunArguments",
    "STAGES",
    "ScheduleArguments",
    "TEACHER_MODALITIES",
    "build_parser",
    "load_config_file",
    "parse_config",
]
