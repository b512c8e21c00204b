"""Distillation losses as pure functions over per-head logit dicts (``DistillationCriterion`` in
``src/modelling/distiller.py`` of the authors' public code, github.com/gorjanradevski/multimodal-distillation).

Every function takes ``dict[str, Tensor]`` keyed by head (``verb``, ``noun``, ``action``), with ``[B, C]`` tensors
(any extra leading dimensions, e.g. views ``[B, V, C]``, are folded into the batch). The student's heads define
which heads enter a loss; a teacher or label dict may hold extra heads, which are ignored.

The knowledge-distillation term is the one of Hinton et al. and of the original code::

    L_KD = T² · mean_b KL(softmax(t_b / T) ‖ softmax(s_b / T))

computed with ``kl_div(log_softmax(s/T), log_softmax(t/T), reduction="batchmean", log_target=True)``. Log-probabilities
are valid logits (softmax(log p) = p), so an ensemble that returns log-probabilities (probability-space combination)
goes through the same function unchanged; plain probabilities need ``teacher_input="probs"``.

A sample for which no teacher saw its modality (``has_teacher[b]`` False, see ``modality_present`` in
``docs/design.md``) has no teacher target: its ground-truth label stands in for the teacher, so its KD term is
``CE(student_b, y_b)`` (``KL(onehot(y) ‖ softmax(s))`` at temperature 1). With the default ``kd_weight=1,
ce_weight=0`` such a sample is trained with the label-only (supervised) loss.
"""

from __future__ import annotations

from typing import Literal, Mapping

import torch
import torch.nn.functional as F

from ..models.video_swin.modeling_video_swin import multi_head_cross_entropy

#: ``L_GT`` of ``DistillationCriterion`` (``src/modelling/distiller.py`` of the original): the mean over heads of the
#: (head-weighted) cross-entropy of the view-averaged logits; one implementation with the models' own loss.
multi_head_ce_loss = multi_head_cross_entropy

TeacherInput = Literal["logits", "probs"]

_PROBABILITY_FLOOR = 1e-12


def _check_same_shape(student: torch.Tensor, teacher: torch.Tensor, head: str | None = None) -> None:
    if student.shape != teacher.shape:
        where = f" for head {head!r}" if head is not None else ""
        raise ValueError(
            f"Student and teacher logits differ in shape{where}: student {tuple(student.shape)}, "
            f"teacher {tuple(teacher.shape)}. Do the teacher's class counts match the student's?"
        )


def check_finite(tensor: torch.Tensor, name: str) -> None:
    """Raise ``ValueError`` naming ``name`` when ``tensor`` holds NaN or ±inf."""
    if not bool(torch.isfinite(tensor).all()):
        num_bad = int((~torch.isfinite(tensor)).sum())
        raise ValueError(f"{name} holds {num_bad} non-finite value(s) (NaN or inf); refusing to distil from it.")


def _teacher_log_probs(teacher: torch.Tensor, temperature: float, teacher_input: TeacherInput) -> torch.Tensor:
    if teacher_input == "logits":
        return F.log_softmax(teacher / temperature, dim=-1)
    if teacher_input == "probs":
        logits = torch.log(teacher.clamp_min(_PROBABILITY_FLOOR))
        return F.log_softmax(logits / temperature, dim=-1)
    raise ValueError(f"teacher_input must be 'logits' or 'probs', got {teacher_input!r}")


def kd_loss(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    temperature: float = 1.0,
    teacher_input: TeacherInput = "logits",
    name: str = "teacher logits",
) -> torch.Tensor:
    """``T² · mean_b KL(softmax(teacher/T) ‖ softmax(student/T))`` for one head.

    Args:
        student_logits: ``[B, C]`` (or ``[..., C]``; leading dimensions are folded into the batch).
        teacher_logits: same shape: logits or log-probabilities (``teacher_input="logits"``), or probabilities
            (``teacher_input="probs"``; they are turned into log-probabilities first, then softened by ``T``).
        temperature: softening temperature ``T`` (> 0); the loss is multiplied by ``T²`` so gradient magnitudes do
            not shrink as ``T`` grows.
        teacher_input: what ``teacher_logits`` holds.
        name: names the teacher tensor in error messages.

    Returns:
        A scalar tensor.

    Raises:
        ValueError: on a shape mismatch, a non-positive temperature or non-finite teacher values.
    """
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    _check_same_shape(student_logits, teacher_logits)
    check_finite(teacher_logits, name)
    num_classes = student_logits.shape[-1]
    student_log_probs = F.log_softmax(student_logits.reshape(-1, num_classes) / temperature, dim=-1)
    teacher_log_probs = _teacher_log_probs(
        teacher_logits.reshape(-1, num_classes).to(student_log_probs.dtype), temperature, teacher_input
    )
    kl = F.kl_div(student_log_probs, teacher_log_probs, reduction="batchmean", log_target=True)
    return kl * temperature**2


def _student_heads(student_logits: Mapping[str, torch.Tensor], other: Mapping, other_name: str) -> list[str]:
    if not student_logits:
        raise ValueError("student logits dict is empty: the student has no heads")
    missing = [head for head in student_logits if head not in other]
    if missing:
        raise ValueError(
            f"{other_name} lacks head(s) {missing}: expected every student head {list(student_logits)}, "
            f"given {list(other)}"
        )
    return list(student_logits)


def multi_head_kd_loss(
    student_logits: Mapping[str, torch.Tensor],
    teacher_logits: Mapping[str, torch.Tensor],
    temperature: float = 1.0,
    teacher_input: TeacherInput = "logits",
) -> torch.Tensor:
    """Mean over the student's heads of :func:`kd_loss` (not weighted by head weights, as the original).

    Raises:
        ValueError: a student head missing from the teacher, shape mismatch or non-finite teacher logits (the
            message names the head).
    """
    heads = _student_heads(student_logits, teacher_logits, "teacher logits")
    losses = []
    for head in heads:
        _check_same_shape(student_logits[head], teacher_logits[head], head)
        losses.append(
            kd_loss(student_logits[head], teacher_logits[head], temperature, teacher_input, f"teacher logits of head {head!r}")
        )
    return torch.stack(losses).mean()


def masked_multi_head_kd_loss(
    student_logits: Mapping[str, torch.Tensor],
    teacher_logits: Mapping[str, torch.Tensor],
    has_teacher: torch.Tensor,
    labels: Mapping[str, torch.Tensor] | None,
    temperature: float = 1.0,
    teacher_input: TeacherInput = "logits",
) -> torch.Tensor:
    """:func:`multi_head_kd_loss` where samples without a teacher (``has_teacher`` bool ``[B]`` False) take their
    label as the target: per head, ``mean_b [has_b · T²·KL(t_b/T ‖ s_b/T) + (1 - has_b) · CE(s_b, y_b)]``.

    With ``has_teacher`` all True it equals :func:`multi_head_kd_loss`. Teacher logits of samples without a
    teacher are not read (they may be anything).

    Raises:
        ValueError: a sample without a teacher and no labels, or any error of :func:`multi_head_kd_loss`.
    """
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    heads = _student_heads(student_logits, teacher_logits, "teacher logits")
    losses = []
    for head in heads:
        student, teacher = student_logits[head], teacher_logits[head]
        _check_same_shape(student, teacher, head)
        batch_size, num_classes = student.shape[0], student.shape[-1]
        has = has_teacher.to(student.device, torch.bool).reshape(-1)
        if has.shape[0] != batch_size:
            raise ValueError(f"has_teacher has {has.shape[0]} flags for a batch of {batch_size}")
        rows = has.view(-1, *([1] * (teacher.dim() - 1)))
        check_finite(teacher[has], f"teacher logits of head {head!r}")
        teacher = torch.where(rows, teacher, torch.zeros_like(teacher))
        student_log_probs = F.log_softmax(student.reshape(-1, num_classes) / temperature, dim=-1)
        teacher_log_probs = _teacher_log_probs(
            teacher.reshape(-1, num_classes).to(student_log_probs.dtype), temperature, teacher_input
        )
        kl = F.kl_div(student_log_probs, teacher_log_probs, reduction="none", log_target=True).sum(-1)
        per_sample = kl.view(batch_size, -1).mean(dim=1) * temperature**2
        if not bool(has.all()):
            if labels is None or head not in labels:
                raise ValueError(
                    f"{int((~has).sum())} sample(s) have no teacher (every teacher's modality is missing) and no "
                    f"label for head {head!r} to fall back to"
                )
            view_mean = student.mean(dim=1) if student.dim() == 3 else student
            ce = F.cross_entropy(view_mean, labels[head].to(student.device).long(), reduction="none")
            per_sample = torch.where(has, per_sample, ce)
        losses.append(per_sample.mean())
    return torch.stack(losses).mean()


def distillation_loss(
    student_logits: Mapping[str, torch.Tensor],
    teacher_logits: Mapping[str, torch.Tensor],
    labels: Mapping[str, torch.Tensor] | None,
    temperature: float = 1.0,
    kd_weight: float = 1.0,
    ce_weight: float = 0.0,
    teacher_input: TeacherInput = "logits",
    head_weights: Mapping[str, float] | None = None,
    has_teacher: torch.Tensor | None = None,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """``kd_weight · L_KD + ce_weight · L_CE`` (``DistillationCriterion`` of the original ``distiller.py``).

    The cross-entropy part is computed (for logging) whenever labels are given, even with ``ce_weight == 0``.
    ``has_teacher`` (bool ``[B]``, optional): samples marked False have no teacher; their label replaces the
    teacher target in ``L_KD`` (:func:`masked_multi_head_kd_loss`). None: every sample has a teacher.

    Returns:
        ``(total, {"kd": L_KD, "ce": L_CE})``; the parts are detached, ``ce`` is absent without labels.

    Raises:
        ValueError: ``ce_weight > 0`` without labels, or any error of :func:`multi_head_kd_loss`.
    """
    if has_teacher is None:
        kd = multi_head_kd_loss(student_logits, teacher_logits, temperature, teacher_input)
    else:
        kd = masked_multi_head_kd_loss(student_logits, teacher_logits, has_teacher, labels, temperature, teacher_input)
    total = kd_weight * kd
    parts = {"kd": kd.detach()}
    if labels is not None:
        ce = multi_head_ce_loss(student_logits, labels, head_weights)
        parts["ce"] = ce.detach()
        if ce_weight:
            total = total + ce_weight * ce
    elif ce_weight:
        raise ValueError(f"ce_weight is {ce_weight} but no labels were given")
    return total, parts


@torch.no_grad()
def teacher_student_agreement(
    student_logits: Mapping[str, torch.Tensor], teacher_logits: Mapping[str, torch.Tensor]
) -> dict[str, torch.Tensor]:
    """Fraction of samples whose top-1 class is the same for student and teacher, per student head."""
    heads = _student_heads(student_logits, teacher_logits, "teacher logits")
    agreement = {}
    for head in heads:
        _check_same_shape(student_logits[head], teacher_logits[head], head)
        same = student_logits[head].argmax(dim=-1) == teacher_logits[head].argmax(dim=-1)
        agreement[head] = same.float().mean()
    return agreement
