"""Distillation: losses, teacher weighting, training arguments, trainers and the teacher-logit cache."""

from .arguments import (
    DistillationArguments,
    DistillationTrainingArguments,
    SupervisedTrainingArguments,
    parse_teacher_paths,
)
from .cache import CachedLogitsDataset, load_cached_logits, precompute_teacher_logits, with_cached_logits
from .losses import (
    distillation_loss,
    kd_loss,
    multi_head_ce_loss,
    multi_head_kd_loss,
    teacher_student_agreement,
)
from .trainer import DistillationTrainer, SupervisedTrainer, compute_multi_head_metrics, load_teacher_ensemble
from ..models.ensemble.modeling_ensemble import select_model_inputs
from .weighting import (
    FullDatasetWeightAccumulator,
    check_held_out_split,
    combine_teacher_logits,
    full_dataset_weights,
    load_held_out_split,
    make_held_out_split,
    per_sample_weights,
    save_held_out_split,
    uniform_weights,
)

__all__ = [
    "CachedLogitsDataset",
    "DistillationTrainer",
    "SupervisedTrainer",
    "compute_multi_head_metrics",
    "load_cached_logits",
    "load_teacher_ensemble",
    "precompute_teacher_logits",
    "with_cached_logits",
    "DistillationArguments",
    "DistillationTrainingArguments",
    "FullDatasetWeightAccumulator",
    "SupervisedTrainingArguments",
    "check_held_out_split",
    "combine_teacher_logits",
    "distillation_loss",
    "full_dataset_weights",
    "kd_loss",
    "load_held_out_split",
    "make_held_out_split",
    "multi_head_ce_loss",
    "multi_head_kd_loss",
    "parse_teacher_paths",
    "per_sample_weights",
    "save_held_out_split",
    "select_model_inputs",
    "teacher_student_agreement",
    "uniform_weights",
]
