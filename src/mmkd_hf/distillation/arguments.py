"""Training arguments for teachers/baselines (:class:`SupervisedTrainingArguments`) and for distillation
(:class:`DistillationTrainingArguments`), both ``transformers.TrainingArguments`` subclasses, so
``HfArgumentParser`` turns every field (with its help text) into a command-line option.

Defaults follow the original recipe (spec §5): AdamW, learning rate 1e-4, weight decay 0.02, linear warm-up for the
first 10 % of the steps (3 of 30 epochs) then linear decay, gradient clipping at 5.0. Batches carry dict labels
and teacher-only keys, so ``remove_unused_columns=False`` and ``label_names=["labels"]``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from transformers import TrainingArguments

WEIGHTING_SCHEMES = ("uniform", "per-sample", "full-dataset")
COMBINE_SPACES = ("logits", "probs")
TEACHER_MODES = ("online", "cached")


@dataclass
class SupervisedTrainingArguments(TrainingArguments):
    """``TrainingArguments`` with the original recipe's defaults (spec §5), for teachers and baselines.

    > Overridden defaults

    learning_rate 1e-4, weight_decay 0.02, warmup_steps 0.1 (a ratio: 3 warm-up epochs of 30), max_grad_norm 5.0,
    lr_scheduler_type "linear", remove_unused_columns False (batches hold dict labels and other modalities'
    keys; the trainers pick each model's inputs), label_names ["labels"] (one dict of per-head label tensors).
    """

    learning_rate: float = field(default=1e-4, metadata={"help": "AdamW learning rate (spec §5: 1e-4)."})
    weight_decay: float = field(default=0.02, metadata={"help": "AdamW weight decay (released configs: 0.02)."})
    warmup_steps: float = field(
        default=0.1,
        metadata={
            "help": "Linear warm-up: steps (integer) or a ratio of all steps in [0, 1) (default 0.1 = 3 of 30 "
            "epochs, as the released configs)."
        },
    )
    max_grad_norm: float = field(default=5.0, metadata={"help": "Gradient-norm clipping (spec §5 CLIP_VAL: 5.0)."})
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


@dataclass
class DistillationTrainingArguments(SupervisedTrainingArguments):
    """Arguments of :class:`~mmkd_hf.distillation.trainer.DistillationTrainer` (spec §6).

    > Parameters that control the distillation loss

    temperature: KD softening temperature ``T`` (loss scaled by ``T²``). Default 1.0, the original code's default
        (the paper's per-experiment values live in model-zoo configs that were never released); tune it.
    kd_weight, ce_weight: ``loss = kd_weight · L_KD + ce_weight · L_CE`` (spec defaults 1.0 / 0.0: pure
        distillation).

    > Parameters that control the teacher ensemble

    weighting_scheme, weights_temperature, combine_space: see
        :class:`~mmkd_hf.models.ensemble.configuration_ensemble.MultimodalTeacherEnsembleConfig`.
    teacher_source: a saved ensemble folder or Hub repo id; teacher_paths: alternatively ``modality=folder``
        entries of single teachers to assemble into an ensemble.
    teacher_mode: ``online`` (teacher forward every step on the same augmented clip as the student; default) or
        ``cached`` (pre-computed logits in ``cached_logits_path``; exact only without train-time augmentation).
    """

    temperature: float = field(
        default=1.0,
        metadata={
            "help": "KD softening temperature T; the KD term is T^2 * KL(softmax(teacher/T) || softmax(student/T)). "
            "Default 1.0 = the original code's default."
        },
    )
    kd_weight: float = field(default=1.0, metadata={"help": "Weight of the distillation (KL) term (spec: 1.0)."})
    ce_weight: float = field(
        default=0.0, metadata={"help": "Weight of the cross-entropy-to-labels term (spec: 0.0, pure distillation)."}
    )
    weighting_scheme: str = field(
        default="uniform",
        metadata={
            "help": "How teachers are weighted per head: uniform | per-sample (softmin of each teacher's CE on the "
            "label) | full-dataset (fixed weights fit on a held-out split).",
            "choices": list(WEIGHTING_SCHEMES),
        },
    )
    weights_temperature: float = field(
        default=1.0, metadata={"help": "Softmin temperature of the teacher weights (spec: 1.0)."}
    )
    combine_space: str = field(
        default="logits",
        metadata={
            "help": "Combine teachers as a weighted sum of logits (as the paper) or of probabilities.",
            "choices": list(COMBINE_SPACES),
        },
    )
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
        super().__post_init__()
        _check_choice("weighting_scheme", self.weighting_scheme, WEIGHTING_SCHEMES)
        _check_choice("combine_space", self.combine_space, COMBINE_SPACES)
        _check_choice("teacher_mode", self.teacher_mode, TEACHER_MODES)
        if self.temperature <= 0:
            raise ValueError(f"temperature must be > 0, given {self.temperature}")
        if self.weights_temperature <= 0:
            raise ValueError(f"weights_temperature must be > 0, given {self.weights_temperature}")
        if self.kd_weight < 0 or self.ce_weight < 0 or self.kd_weight + self.ce_weight == 0:
            raise ValueError(
                f"kd_weight and ce_weight must be >= 0 and not both 0, given {self.kd_weight}, {self.ce_weight}"
            )
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
    "DistillationTrainingArguments",
    "SupervisedTrainingArguments",
    "TEACHER_MODES",
    "WEIGHTING_SCHEMES",
    "parse_teacher_paths",
]
