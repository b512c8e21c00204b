"""Training arguments for teachers/baselines (:class:`SupervisedTrainingArguments`) and for distillation
(:class:`DistillationTrainingArguments`), both ``transformers.TrainingArguments`` subclasses, so
``HfArgumentParser`` turns every field (with its help text) into a command-line option. The distillation recipe
itself (:class:`DistillationArguments`: temperature, loss weights, teacher weighting) is a separate dataclass that
:class:`DistillationTrainingArguments` inherits and ``train.py`` parses directly, so each setting has one default.

Defaults follow the authors' training recipe (github.com/gorjanradevski/multimodal-distillation, ``src/train.py``): AdamW, learning rate 1e-4, weight decay 0.02, linear warm-up for the
first 10 % of the steps (3 of 30 epochs) then linear decay, gradient clipping at 5.0. Batches carry dict labels
and teacher-only keys, so ``remove_unused_columns=False`` and ``label_names=["labels"]``.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields

from transformers import TrainingArguments

from ..utils import check_number

WEIGHTING_SCHEMES = ("uniform", "per-sample", "full-dataset")
COMBINE_SPACES = ("logits", "probs")
TEACHER_MODES = ("online", "cached")


@dataclass
class SupervisedTrainingArguments(TrainingArguments):
    """``TrainingArguments`` with the authors' training defaults (``src/train.py``), for teachers and baselines.

    > Overridden defaults

    learning_rate 1e-4, weight_decay 0.02, warmup_steps 0.1 (a ratio: 3 warm-up epochs of 30), max_grad_norm 5.0,
    lr_scheduler_type "linear", remove_unused_columns False (batches hold dict labels and other modalities'
    keys; the trainers pick each model's inputs), label_names ["labels"] (one dict of per-head label tensors).
    """

    learning_rate: float = field(default=1e-4, metadata={"help": "AdamW learning rate (the authors' src/train.py: 1e-4)."})
    weight_decay: float = field(default=0.02, metadata={"help": "AdamW weight decay (released configs: 0.02)."})
    warmup_steps: float = field(
        default=0.1,
        metadata={
            "help": "Linear warm-up: steps (integer) or a ratio of all steps in [0, 1) (default 0.1 = 3 of 30 "
            "epochs, as the released configs)."
        },
    )
    max_grad_norm: float = field(default=5.0, metadata={"help": "Gradient-norm clipping (the authors' CLIP_VAL: 5.0)."})
    remove_unused_columns: bool = field(
        default=False,
        metadata={
            "help": "Keep every batch key (dict labels, teacher-only modalities); the trainers select each "
            "model's inputs themselves. Leave False."
        },
    )
    label_names: list[str] | None = field(
        default_factory=lambda: ["labels"],
        metadata={"help": "Batch keys holding labels; `labels` is a dict of per-head LongTensors."},
    )

    def __post_init__(self):
        check_number("learning_rate", self.learning_rate, low=0)
        check_number("weight_decay", self.weight_decay, low=0)
        check_number("warmup_steps", self.warmup_steps, low=0)
        check_number("max_grad_norm", self.max_grad_norm, low=0)  # 0: no clipping
        check_number("num_train_epochs", self.num_train_epochs, low=0)
        super().__post_init__()


@dataclass
class DistillationArguments:
    """The distillation recipe: loss weights, temperature and how the teacher ensemble combines its teachers.

    Parsed directly by ``train.py`` (:mod:`mmkd_hf.pipeline`) and inherited by :class:`DistillationTrainingArguments`,
    so every setting has one default, defined here. The defaults are the package's measured recipe (docs/training.md);
    the values of the authors' code (github.com/gorjanradevski/multimodal-distillation, src/modelling/distiller.py,
    DistillationCriterion) are given in each help text.

    > Parameters

    temperature: KD softening temperature ``T`` (loss scaled by ``T²``).
    kd_weight, ce_weight: ``loss = kd_weight · L_KD + ce_weight · L_CE``.
    weighting_scheme, weights_temperature, combine_space: see
        :class:`~mmkd_hf.models.ensemble.configuration_ensemble.MultimodalTeacherEnsembleConfig`.
    """

    temperature: float = field(
        default=1.0,
        metadata={
            "help": "KD softening temperature T; the KD term is T^2 * KL(softmax(teacher/T) || softmax(student/T)). "
            "Default 1.0 = the authors' code's default (the paper's per-experiment values were never released)."
        },
    )
    kd_weight: float = field(
        default=1.0, metadata={"help": "Weight of the distillation (KL) term (the authors' code: 1.0)."}
    )
    ce_weight: float = field(
        default=1.0,
        metadata={
            "help": "Weight of the cross-entropy-to-labels term. The authors' code uses 0.0 (pure distillation); "
            "1.0 keeps the label signal for heads the teachers do not know (see docs/training.md)."
        },
    )
    weighting_scheme: str = field(
        default="full-dataset",
        metadata={
            "help": "How teachers are weighted per head: uniform | per-sample (softmin of each teacher's CE on the "
            "label) | full-dataset (fixed weights fit on a held-out split; an ensemble whose weights were never "
            "fit keeps uniform ones).",
            "choices": list(WEIGHTING_SCHEMES),
            "aliases": ["--weighting"],
        },
    )
    weights_temperature: float = field(
        default=1.0, metadata={"help": "Softmin temperature of the teacher weights (the authors' code: 1.0)."}
    )
    combine_space: str = field(
        default="logits",
        metadata={
            "help": "Combine teachers as a weighted sum of logits (as the paper) or of probabilities.",
            "choices": list(COMBINE_SPACES),
        },
    )

    def __post_init__(self):
        _check_choice("weighting_scheme", self.weighting_scheme, WEIGHTING_SCHEMES)
        _check_choice("combine_space", self.combine_space, COMBINE_SPACES)
        check_number("temperature", self.temperature, low=0, low_inclusive=False)
        check_number("weights_temperature", self.weights_temperature, low=0, low_inclusive=False)
        check_number("kd_weight", self.kd_weight, low=0)
        check_number("ce_weight", self.ce_weight, low=0)
        if self.kd_weight + self.ce_weight == 0:
            raise ValueError(
                f"kd_weight and ce_weight must be >= 0 and not both 0, given {self.kd_weight}, {self.ce_weight}"
            )
        parent = getattr(super(), "__post_init__", None)  # cooperative: further argument groups of a subclass
        if parent is not None:
            parent()

    def distillation_arguments(self) -> "DistillationArguments":
        """These settings alone, as a :class:`DistillationArguments` (e.g. of a larger configuration object)."""
        return DistillationArguments(**{f.name: getattr(self, f.name) for f in fields(DistillationArguments)})


@dataclass
class DistillationTrainingArguments(SupervisedTrainingArguments, DistillationArguments):
    """Arguments of :class:`~mmkd_hf.distillation.trainer.DistillationTrainer` (the authors' ``src/modelling/distiller.py``, ``src/patient_distill.py``).

    > Parameters that control the distillation loss and the teacher ensemble

    temperature, kd_weight, ce_weight, weighting_scheme, weights_temperature, combine_space: inherited from
        :class:`DistillationArguments` (one default each, shared with ``train.py``).

    > Parameters that name the teachers

    teacher_source: a saved ensemble folder or Hub repo id; teacher_paths: alternatively ``modality=folder``
        entries of single teachers to assemble into an ensemble.
    teacher_mode: ``online`` (teacher forward every step on the same augmented clip as the student; default) or
        ``cached`` (pre-computed logits in ``cached_logits_path``; exact only without train-time augmentation).
    """

    teacher_source: str | None = field(
        default=None,
        metadata={"help": "Saved MultimodalTeacherEnsemble folder or Hub repo id (online mode)."},
    )
    teacher_paths: list[str] | None = field(
        default=None,
        metadata={
            "help": "Instead of teacher_source: single-teacher folders as modality=path entries, e.g. "
            "rgb=out/rgb flow=out/flow audio=out/audio layout=out/layout."
        },
    )
    teacher_mode: str = field(
        default="online",
        metadata={
            "help": "online: run the teachers every step on the student's augmented clip (consistent teaching; "
            "default). cached: read pre-computed teacher logits (mmkd-hf precompute); exact only without "
            "train-time augmentation.",
            "choices": list(TEACHER_MODES),
        },
    )
    cached_logits_path: str | None = field(
        default=None, metadata={"help": "Folder written by `mmkd-hf precompute` (required with teacher_mode=cached)."}
    )

    def __post_init__(self):
        super().__post_init__()  # TrainingArguments
        DistillationArguments.__post_init__(self)
        _check_choice("teacher_mode", self.teacher_mode, TEACHER_MODES)
        if self.teacher_mode == "cached" and not self.cached_logits_path:
            raise ValueError("teacher_mode='cached' needs cached_logits_path (a folder written by mmkd-hf precompute)")
        if self.teacher_paths:
            parse_teacher_paths(self.teacher_paths)


def _check_choice(name: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ValueError(f"{name} must be one of {list(choices)}, given {value!r}")


def parse_teacher_paths(entries: list[str]) -> dict[str, str]:
    """``["rgb=out/rgb", "flow=out/flow"]`` -> ``{"rgb": "out/rgb", "flow": "out/flow"}`` (order kept)."""
    paths: dict[str, str] = {}
    for entry in entries:
        modality, sep, path = entry.partition("=")
        if not sep or not modality.strip() or not path.strip():
            raise ValueError(f"teacher_paths entries must look like modality=path, given {entry!r}")
        if modality in paths:
            raise ValueError(f"teacher_paths names modality {modality!r} twice")
        paths[modality.strip()] = path.strip()
    return paths


__all__ = [
    "COMBINE_SPACES",
    "DistillationArguments",
    "DistillationTrainingArguments",
    "SupervisedTrainingArguments",
    "TEACHER_MODES",
    "WEIGHTING_SCHEMES",
    "parse_teacher_paths",
]
