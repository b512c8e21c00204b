"""Teacher weighting schemes of the multimodal ensemble (``TeacherEnsemble`` in ``src/modelling/distiller.py`` of the
authors' public code, github.com/gorjanradevski/multimodal-distillation), as pure functions, and the held-out split.

For one head, the teachers' logits are stacked into ``Z ∈ R^{B×N×C}`` (batch, teachers, classes). A weight
vector ``w ∈ R^N`` (shared by the batch) or ``w ∈ R^{B×N}`` (per sample) combines them:

- ``uniform``: ``w_t = 1/N``;
- ``per-sample``: ``w_{b,·} = softmin(ℓ_{b,·} / τ_w)`` with ``ℓ_{b,t} = CE(Z_{b,t}, y_b)`` (no KD temperature);
  with ``τ_w = 1``, ``w_{b,t} ∝ p_t(y_b | x_b)``;
- ``full-dataset``: ``w_t = softmin(L̄_t / τ_w)``, ``L̄_t`` = teacher ``t``'s mean CE over a held-out split that the
  teachers never trained on. :class:`FullDatasetWeightAccumulator` sums it; its sums start at **zero** (the
  original ``src/patient_distill.py`` started them at ``1/N``) and are summed across processes.

A sample that lacks a modality (``modality_present`` in ``docs/design.md``) loses that teacher: its weight is set
to 0 for the sample and the others are renormalised to sum to 1 (:func:`renormalise_weights`; per-sample weights
take the softmin over the present teachers only). E.g. 3 teachers, uniform, teacher 2 absent: ``(1/2, 0, 1/2)``;
full-dataset ``(0.2, 0.3, 0.5)``, teacher 3 absent: ``(0.4, 0.6, 0)``.

The combining maths lives in :mod:`mmkd_hf.models.ensemble.modeling_ensemble` (model folders are self-contained,
so the ensemble cannot import this package) and the full-dataset fit in :mod:`.ensemble_fitting`; this module
re-exports both for the distillation layer.
"""

from __future__ import annotations

import json
import os
import random
from collections import Counter
from pathlib import Path
from typing import Iterable, Sequence

from ..models.ensemble.modeling_ensemble import (
    combine_teacher_logits,
    per_sample_weights,
    per_teacher_cross_entropy,
    renormalise_weights,
    uniform_weights,
)
from ..utils import atomic_write_json
from .ensemble_fitting import FullDatasetWeightAccumulator, full_dataset_weights

HELD_OUT_SPLIT_FORMAT = "mmkd-held-out-split/1"


def make_held_out_split(
    ids: Sequence[str], fraction: float, seed: int = 0
) -> tuple[list[str], list[str]]:
    """Split training-set sample ids into (teacher-train ids, held-out ids) for full-dataset weighting.

    The teachers train on the first part only; the held-out part fits the full-dataset weights (the original
    ``src/patient_distill.py`` reads such a split from ``train_indices.json``). The
    split is a seeded shuffle, deterministic for the same ids, fraction and seed (input order does not matter).

    Args:
        ids: unique sample ids (e.g. segment ids) of the training set.
        fraction: share of ids held out, in (0, 1).
        seed: shuffle seed.

    Raises:
        ValueError: duplicate ids, a fraction outside (0, 1), or a split that leaves either side empty.
    """
    ids = [str(sample_id) for sample_id in ids]
    if len(set(ids)) != len(ids):
        duplicates = sorted(sample_id for sample_id, count in Counter(ids).items() if count > 1)[:5]
        raise ValueError(f"sample ids must be unique; duplicated: {duplicates}")
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"held-out fraction must be in (0, 1), given {fraction}")
    shuffled = sorted(ids)
    random.Random(seed).shuffle(shuffled)
    num_held_out = int(round(fraction * len(shuffled)))
    if num_held_out == 0 or num_held_out == len(shuffled):
        raise ValueError(
            f"a held-out fraction of {fraction} of {len(shuffled)} samples leaves "
            f"{'no held-out' if num_held_out == 0 else 'no teacher-training'} samples"
        )
    held_out = set(shuffled[:num_held_out])
    return [i for i in ids if i not in held_out], [i for i in ids if i in held_out]


def check_held_out_split(teacher_train_ids: Iterable[str], held_out_ids: Iterable[str]) -> None:
    """Raise ``ValueError`` when the held-out ids overlap the teachers' training ids (or are empty).

    Full-dataset weights fit on samples the teachers trained on would favour the teacher that overfits most.
    """
    teacher_train = {str(i) for i in teacher_train_ids}
    held_out = [str(i) for i in held_out_ids]
    if not held_out:
        raise ValueError("the held-out split is empty")
    overlap = sorted(teacher_train.intersection(held_out))
    if overlap:
        raise ValueError(
            f"the held-out split overlaps the teachers' training split in {len(overlap)} sample(s), e.g. "
            f"{overlap[:5]}; full-dataset weights must be fit on samples the teachers never trained on"
        )


def save_held_out_split(
    path: str | os.PathLike, teacher_train_ids: Sequence[str], held_out_ids: Sequence[str], **metadata
) -> Path:
    """Check and write the split as JSON atomically: ``{"format", "teacher_train_ids", "held_out_ids", ...}``."""
    check_held_out_split(teacher_train_ids, held_out_ids)
    path = Path(path)
    atomic_write_json(
        path,
        {
            "format": HELD_OUT_SPLIT_FORMAT,
            **metadata,
            "teacher_train_ids": [str(i) for i in teacher_train_ids],
            "held_out_ids": [str(i) for i in held_out_ids],
        },
    )
    return path


def load_held_out_split(path: str | os.PathLike) -> tuple[list[str], list[str]]:
    """Read a split written by :func:`save_held_out_split` -> ``(teacher_train_ids, held_out_ids)`` (checked)."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as error:
        raise ValueError(f"{path}: cannot read the held-out split file ({error})") from error
    if not isinstance(data, dict) or data.get("format") != HELD_OUT_SPLIT_FORMAT:
        raise ValueError(f"{path}: not a held-out split file (expected format {HELD_OUT_SPLIT_FORMAT!r})")
    for key in ("teacher_train_ids", "held_out_ids"):
        if not isinstance(data.get(key), list):
            raise ValueError(f"{path}: field {key!r} must be a list of sample ids")
    check_held_out_split(data["teacher_train_ids"], data["held_out_ids"])
    return [str(i) for i in data["teacher_train_ids"]], [str(i) for i in data["held_out_ids"]]


__all__ = [
    "FullDatasetWeightAccumulator",
    "check_held_out_split",
    "load_held_out_split",
    "make_held_out_split",
    "save_held_out_split",
    "combine_teacher_logits",
    "full_dataset_weights",
    "per_sample_weights",
    "per_teacher_cross_entropy",
    "renormalise_weights",
    "uniform_weights",
]
