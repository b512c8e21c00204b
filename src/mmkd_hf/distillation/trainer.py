"""``transformers.Trainer`` subclasses for multi-head video models: supervised (teachers, baselines) and
distillation from a frozen multimodal teacher ensemble (``src/train.py`` and ``src/patient_distill.py`` of
the authors' public code, github.com/gorjanradevski/multimodal-distillation).

Batches follow the design.md contract: one dict holding every modality, ``labels`` as a dict of per-head tensors,
optionally ``teacher_logits`` (cached mode) and ``segment_id``. The trainers pick each model's own inputs with
:func:`~mmkd_hf.models.ensemble.modeling_ensemble.select_model_inputs`, so the student never sees flow, audio,
layout, cached logits or ids, and ``remove_unused_columns`` must stay ``False`` (the arguments' default). A batch whose
items deferred their resize and colour jitter (``augment_on_device``, see :mod:`mmkd_hf.data.device_augmentation`) is
finished on the device in ``_prepare_inputs``, before any model (student or teacher) sees it.

Teacher placement (following TRL's distillation trainers and timm's ``DistillationTeacher``): the ensemble is
frozen, in eval mode, and prepared with ``accelerator.prepare_model(teacher, evaluation_mode=True)``: moved to the
device, mixed precision / ``torch.compile`` applied as configured (under bf16 mixed precision the teacher is cast to
bf16 too: it only infers; the losses are computed in float32), but **never wrapped in DDP** (it has no gradients
to synchronise). Under FSDP ``prepare_model`` leaves it off-device (TRL #6573), so it is moved explicitly; it is then a
full replica per process. Under DeepSpeed it is likewise a full replica (ZeRO does not shard it; ZeRO-3 sharding of a
very large teacher would need a DeepSpeed inference engine, as TRL's ``prepare_deepspeed``; the teachers of this
project are small enough).
"""

from __future__ import annotations

import math
from collections import defaultdict
from typing import Any, Mapping

import numpy as np
import torch
from torch import nn
from transformers import AutoModel, Trainer
from transformers.trainer_pt_utils import nested_detach
from transformers.trainer_utils import get_last_checkpoint

from ..data.device_augmentation import DEFERRED_KEY, apply_device_augmentation, deferred_shapes
from ..models.ensemble.modeling_ensemble import MultimodalTeacherEnsemble, select_model_inputs
from .arguments import DistillationTrainingArguments, parse_teacher_paths
from .losses import distillation_loss, multi_head_ce_loss, teacher_student_agreement


def _logits_of(outputs: Any) -> dict[str, torch.Tensor]:
    logits = outputs["logits"] if isinstance(outputs, Mapping) else outputs.logits
    if not isinstance(logits, Mapping):
        raise ValueError(f"expected the model to return dict logits (one tensor per head), got {type(logits).__name__}")
    return dict(logits)


class NonFiniteLossError(FloatingPointError):
    """Training stopped at the first non-finite loss or gradient norm, before the optimizer applied it."""


class _MultiHeadTrainerMixin:
    """Input selection, student-only evaluation and the stop at the first non-finite loss or gradient norm, shared
    by both trainers."""

    def _stop_non_finite(self, what: str, value: Any) -> None:
        """Raise :class:`NonFiniteLossError` naming the unit, the optimizer step and the last good checkpoint."""
        unit = getattr(self.args, "run_name", None) or self.args.output_dir
        checkpoint = None
        try:
            checkpoint = get_last_checkpoint(str(self.args.output_dir))
        except (FileNotFoundError, OSError):
            pass
        raise NonFiniteLossError(
            f"{unit}: {what} is {value} at optimizer step {self.state.global_step + 1}; training stopped before "
            f"applying it (last good checkpoint: {checkpoint or 'none'}). Lower the learning rate or check the data "
            f"and the loss settings."
        )

    def training_step(self, model: nn.Module, inputs: dict[str, Any], num_items_in_batch=None) -> torch.Tensor:
        loss = super().training_step(model, inputs, num_items_in_batch)
        if not bool(torch.isfinite(loss).all()):  # the Trainer reads this value on the host every step anyway
            self._stop_non_finite("the training loss", float(loss.detach().float().mean()))
        return loss

    def _get_grad_norm(self, model, grad_norm=None):
        grad_norm = super()._get_grad_norm(model, grad_norm=grad_norm)
        # with a fp16 loss scaler an infinite norm is routine (the step is skipped and the scale lowered)
        if grad_norm is not None and getattr(self.accelerator, "scaler", None) is None:
            value = float(grad_norm)
            if not math.isfinite(value):
                self._stop_non_finite("the gradient norm", value)
        return grad_norm

    def _prepare_inputs(self, inputs: dict[str, Any]) -> dict[str, Any]:
        """Move the batch to the device, then finish its augmentation there when its items deferred it
        (``train.py --augment_on_device``: resize + colour jitter of the whole batch on the accelerator; see
        :mod:`mmkd_hf.data.device_augmentation`). Every model of the step (student and online teachers) reads the
        clips made here."""
        return apply_device_augmentation(super()._prepare_inputs(inputs))

    def floating_point_ops(self, inputs: dict[str, Any]) -> int:
        """The Trainer's estimate, on the clip sizes the model will see (a deferred batch has no frames yet)."""
        shapes = deferred_shapes(inputs)
        if shapes:
            placeholders = {key: torch.empty(shape, device="meta") for key, shape in shapes.items()}
            inputs = {**{k: v for k, v in inputs.items() if k != DEFERRED_KEY}, **placeholders}
        return super().floating_point_ops(inputs)

    def _unwrapped_config(self, model: nn.Module):
        return self.accelerator.unwrap_model(model).config

    def _model_inputs(self, model: nn.Module, inputs: Mapping[str, Any]) -> dict[str, Any]:
        return select_model_inputs(inputs, self._unwrapped_config(model), model_name="student")

    def prediction_step(
        self,
        model: nn.Module,
        inputs: dict[str, Any],
        prediction_loss_only: bool,
        ignore_keys: list[str] | None = None,
    ):
        """Evaluate the trained model only (never the teacher): CE over heads as the loss, dict logits/labels."""
        inputs = self._prepare_inputs(inputs)
        labels = inputs.get("labels")
        with torch.no_grad(), self.compute_loss_context_manager():
            outputs = model(**self._model_inputs(model, inputs))
            logits = _logits_of(outputs)
            loss = multi_head_ce_loss(logits, labels).detach() if labels is not None else None
        if prediction_loss_only:
            return (loss, None, None)
        return (loss, nested_detach(logits), nested_detach(labels) if labels is not None else None)


class SupervisedTrainer(_MultiHeadTrainerMixin, Trainer):
    """Cross-entropy over the model's heads (as the original ``src/train.py``) on its own modality; for teachers and baselines.

    The model reads ``batch[config.input_key]`` (renamed to ``pixel_values``) or the ``layout_*`` keys; every other
    key is dropped. ``head_weights`` (optional ``{head: weight}``) scales each head's CE as ``ACTION_WEIGHTS``.
    """

    def __init__(self, *args, head_weights: Mapping[str, float] | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.head_weights = dict(head_weights) if head_weights else None
        self.loss_is_scaled_for_ga = False  # per-batch mean: Trainer divides by accumulation steps

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        labels = inputs.get("labels")
        if labels is None:
            raise ValueError("supervised training needs 'labels' (a dict of per-head tensors) in every batch")
        outputs = model(**self._model_inputs(model, inputs))
        loss = multi_head_ce_loss(_logits_of(outputs), labels, self.head_weights)
        return (loss, outputs) if return_outputs else loss


class DistillationTrainer(_MultiHeadTrainerMixin, Trainer):
    """Distils a frozen :class:`MultimodalTeacherEnsemble` into a student (``DistillationCriterion`` of the original
    ``src/modelling/distiller.py``).

    ``loss = kd_weight · T² · KL(softmax(ensemble/T) ‖ softmax(student/T)) + ce_weight · CE(student, labels)``,
    averaged over the student's heads. Missing modalities (the batch's ``modality_present``, or ``teacher_present``
    of a cache): the ensemble leaves absent teachers out per sample and renormalises the others' weights; a
    sample with no teacher present takes its label as the KD target (label-only loss with the default weights;
    :func:`~mmkd_hf.distillation.losses.masked_multi_head_kd_loss`), and the share of such samples is logged as
    ``samples_without_teacher``. The KD and CE parts and the top-1 teacher–student agreement per head are
    averaged over the steps between two training logs and added to them (``kd_loss``, ``ce_loss``,
    ``agreement_<head>``; per process).

    Args:
        model: the student (its ``config.input_key`` picks its input, normally ``pixel_values``).
        args: :class:`DistillationTrainingArguments`.
        teacher: the ensemble (``teacher_mode="online"``); ``None`` in ``cached`` mode, where each batch carries
            ``teacher_logits`` (see :mod:`mmkd_hf.distillation.cache`).
        **kwargs: everything else of ``transformers.Trainer``.
    """

    def __init__(
        self,
        model=None,
        args: DistillationTrainingArguments | None = None,
        teacher: MultimodalTeacherEnsemble | None = None,
        **kwargs,
    ):
        if args is None or not isinstance(args, DistillationTrainingArguments):
            raise ValueError("DistillationTrainer needs args=DistillationTrainingArguments(...)")
        super().__init__(model=model, args=args, **kwargs)
        self.loss_is_scaled_for_ga = False  # per-batch mean: Trainer divides by accumulation steps
        self._distillation_sums: dict[str, torch.Tensor] = defaultdict(lambda: torch.zeros((), dtype=torch.float64))
        self._distillation_steps = 0
        if args.teacher_mode == "online":
            if teacher is None:
                raise ValueError("teacher_mode='online' needs a teacher ensemble (teacher=...)")
            self.teacher = self._prepare_teacher(teacher)
        else:
            self.teacher = None

    def _prepare_teacher(self, teacher: nn.Module) -> nn.Module:
        if hasattr(teacher, "freeze"):
            teacher.freeze()
        else:
            teacher.requires_grad_(False)
            teacher.eval()
        if self.accelerator.mixed_precision == "bf16":
            # inference only: the frozen teachers run in bf16 (half the memory and bandwidth); the losses upcast
            teacher.to(torch.bfloat16)
        teacher = self.accelerator.prepare_model(teacher, evaluation_mode=True)
        # FSDP: prepare_model skips device placement in evaluation mode; place the (unsharded) teacher ourselves.
        teacher.to(self.accelerator.device)
        if isinstance(teacher, nn.parallel.DistributedDataParallel):  # pragma: no cover - guard
            raise RuntimeError("the teacher must not be wrapped in DistributedDataParallel")
        return teacher

    def _teacher_logits(self, inputs: Mapping[str, Any]) -> tuple[dict[str, torch.Tensor], torch.Tensor | None]:
        """The ensemble's per-head logits and, when some modality was marked missing, ``has_teacher`` (bool
        ``[B]``: at least one teacher present), else None."""
        if self.args.teacher_mode == "cached":
            cached = inputs.get("teacher_logits")
            if cached is None:
                raise ValueError(
                    "teacher_mode='cached' but the batch has no 'teacher_logits'; wrap the training dataset with "
                    "mmkd_hf.distillation.cache.with_cached_logits"
                )
            present = inputs.get("teacher_present")
            return dict(cached), None if present is None else present.reshape(len(present), -1).any(dim=1)
        with torch.no_grad():
            output = self.teacher(**inputs)
        present = getattr(output, "teacher_present", None)
        return dict(output.logits), None if present is None else present.any(dim=1)

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        outputs = model(**self._model_inputs(model, inputs))
        # the losses in float32, whatever precision the models ran in (bf16 autocast, bf16 teachers)
        student_logits = {head: value.float() for head, value in _logits_of(outputs).items()}
        teacher_logits, has_teacher = self._teacher_logits(inputs)
        teacher_logits = {head: value.float() for head, value in teacher_logits.items()}
        if has_teacher is not None and bool(has_teacher.all()):
            has_teacher = None  # every sample has a teacher: the unmasked loss, exactly
        labels = inputs.get("labels")
        loss, parts = distillation_loss(
            student_logits,
            teacher_logits,
            labels,
            temperature=self.args.temperature,
            kd_weight=self.args.kd_weight,
            ce_weight=self.args.ce_weight,
            has_teacher=has_teacher,
        )
        if model.training:
            extra = {}
            if has_teacher is not None:
                extra["samples_without_teacher"] = (~has_teacher).float().mean()
                student_logits = {head: value[has_teacher] for head, value in student_logits.items()}
                teacher_logits = {head: value[has_teacher] for head, value in teacher_logits.items()}
            agreement = teacher_student_agreement(student_logits, teacher_logits) if len(
                next(iter(student_logits.values()))) else {}
            self._record(parts, agreement, extra)
        return (loss, outputs) if return_outputs else loss

    def _record(
        self,
        parts: Mapping[str, torch.Tensor],
        agreement: Mapping[str, torch.Tensor],
        extra: Mapping[str, torch.Tensor] | None = None,
    ) -> None:
        values = {f"{name}_loss": value for name, value in parts.items()}
        values.update(extra or {})
        values.update({f"agreement_{head}": value for head, value in agreement.items()})
        if agreement:
            values["agreement"] = torch.stack(list(agreement.values())).mean()
        for name, value in values.items():
            # Kept on device; converted once per log (no host sync per step).
            self._distillation_sums[name] = self._distillation_sums[name].to(value.device) + value.detach().double()
        self._distillation_steps += 1

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        """Add the averaged KD / CE parts and agreement to training logs (those that carry ``loss``)."""
        if "loss" in logs and self._distillation_steps:
            for name, total in self._distillation_sums.items():
                logs[name] = round(float(total) / self._distillation_steps, 6)
            self._distillation_sums.clear()
            self._distillation_steps = 0
        super().log(logs, start_time)


def load_teacher_ensemble(args: DistillationTrainingArguments, **from_pretrained_kwargs) -> MultimodalTeacherEnsemble:
    """The ensemble named by ``args.teacher_source`` (saved ensemble folder / repo id) or ``args.teacher_paths``
    (``modality=folder`` single teachers, combined with ``args.weighting_scheme``/``weights_temperature``/
    ``combine_space``). A saved ensemble keeps its fitted weights; the arguments' combination settings override
    its config."""
    if args.teacher_source:
        ensemble = AutoModel.from_pretrained(args.teacher_source, **from_pretrained_kwargs)
        if not isinstance(ensemble, MultimodalTeacherEnsemble):
            raise ValueError(f"{args.teacher_source}: not a MultimodalTeacherEnsemble (got {type(ensemble).__name__})")
        ensemble.config.weighting = args.weighting_scheme
        ensemble.config.weights_temperature = args.weights_temperature
        ensemble.config.combine_space = args.combine_space
        return ensemble
    if args.teacher_paths:
        teachers = {
            modality: AutoModel.from_pretrained(path, **from_pretrained_kwargs)
            for modality, path in parse_teacher_paths(args.teacher_paths).items()
        }
        return MultimodalTeacherEnsemble.from_teachers(
            teachers,
            weighting=args.weighting_scheme,
            weights_temperature=args.weights_temperature,
            combine_space=args.combine_space,
        )
    raise ValueError("set teacher_source (a saved ensemble) or teacher_paths (modality=folder entries)")


def compute_multi_head_metrics(eval_pred) -> dict[str, float]:
    """``compute_metrics`` for dict logits/labels: top-1 per head, plus ``top1_action`` = verb ∧ noun correct
    when the model has verb and noun heads but no action head (EPIC convention). Views ``[N, V, C]`` are averaged."""
    predictions, label_ids = eval_pred.predictions, eval_pred.label_ids
    if not isinstance(predictions, Mapping) or not isinstance(label_ids, Mapping):
        raise ValueError("compute_multi_head_metrics expects dict predictions and dict labels")
    metrics: dict[str, float] = {}
    correct: dict[str, np.ndarray] = {}
    for head, logits in predictions.items():
        if head not in label_ids:
            continue
        logits = np.asarray(logits)
        if logits.ndim == 3:
            logits = logits.mean(axis=1)
        correct[head] = logits.argmax(-1) == np.asarray(label_ids[head])
        metrics[f"top1_{head}"] = float(correct[head].mean())
    if "action" not in correct and "verb" in correct and "noun" in correct:
        metrics["top1_action"] = float((correct["verb"] & correct["noun"]).mean())
    return metrics


__all__ = [
    "DistillationTrainer",
    "NonFiniteLossError",
    "SupervisedTrainer",
    "compute_multi_head_metrics",
    "load_teacher_ensemble",
]
