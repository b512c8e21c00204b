"""Fitting the teacher ensemble on a held-out split: full-dataset weights and a calibration temperature.

The ensemble model (:class:`~mmkd_hf.models.ensemble.modeling_ensemble.MultimodalTeacherEnsemble`) only combines
its teachers; what it combines with is fitted here and stored in the model (weight buffers, config):

1. :func:`collect_held_out_logits` runs every teacher once over the held-out split (this process's shard);
2. :func:`fit_full_dataset_weights` sets ``w = softmin(mean CE / tau_w)`` per head, the full-dataset weighting of
   ``TeacherEnsemble`` in ``src/modelling/distiller.py`` of the authors' public code
   (github.com/gorjanradevski/multimodal-distillation), with the per-teacher loss sums starting at zero (the
   original ``src/patient_distill.py`` starts them at ``1/N``);
3. :func:`fit_calibration` fits a temperature per head on the combined logits
   (:func:`mmkd_hf.evaluation.calibration.fit_temperature`).

Missing modalities (``modality_present`` in ``docs/design.md``): a teacher's mean CE is taken over the held-out
samples where it is present, and the calibration temperature is fitted on the samples with at least one teacher,
combined as in training (absent teachers left out, the others' weights renormalised).

Fitting both costs one pass over the data::

    held_out = collect_held_out_logits(ensemble, loader, accelerator)
    fit_full_dataset_weights(ensemble, held_out, accelerator)
    fit_calibration(ensemble, held_out, accelerator)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable, Mapping

import torch
import torch.nn.functional as F
from accelerate.utils import send_to_device
from torch.utils.data import DataLoader, Subset

from ..evaluation.calibration import fit_temperature
from ..models.ensemble.modeling_ensemble import PRESENCE_KEY, MultimodalTeacherEnsemble, per_teacher_cross_entropy

__all__ = [
    "FullDatasetWeightAccumulator",
    "HeldOutLogits",
    "collect_held_out_logits",
    "fit_calibration",
    "fit_full_dataset_weights",
    "full_dataset_weights",
    "gather_rows",
    "shard_dataloader",
]


def full_dataset_weights(mean_losses: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """``w = softmin(L̄ / τ_w)`` for per-teacher mean held-out losses ``L̄ [N]`` -> ``[N]``."""
    if temperature <= 0:
        raise ValueError(f"weights temperature must be > 0, given {temperature}")
    if mean_losses.dim() != 1:
        raise ValueError(f"mean losses must be [N], given shape {tuple(mean_losses.shape)}")
    return F.softmin(mean_losses.float() / temperature, dim=0)


class FullDatasetWeightAccumulator:
    """Running per-teacher CE sums over a held-out split, for one head.

    The sums start at **zero** (the original code started them at ``1/N``). Under several processes, each process
    accumulates its shard and :meth:`reduce_across_processes` sums the sums and counts over processes.

    Args:
        num_teachers: ``N``.
    """

    def __init__(self, num_teachers: int):
        if num_teachers < 1:
            raise ValueError(f"need at least one teacher, given {num_teachers}")
        self.num_teachers = num_teachers
        self.loss_sum = torch.zeros(num_teachers, dtype=torch.float64)
        self.count = 0  # samples seen
        self.teacher_counts = torch.zeros(num_teachers, dtype=torch.float64)  # samples where each teacher is present
        self._masked = False  # some update carried presence flags
        self._reduced = False

    def update(self, teacher_logits: torch.Tensor, labels: torch.Tensor, present: torch.Tensor | None = None) -> None:
        """Add the per-teacher CE of a batch: ``teacher_logits [B, N, C]``, ``labels [B]``; ``present`` (bool
        ``[B, N]``, optional): only the samples where a teacher is present count towards its mean."""
        if teacher_logits.shape[1] != self.num_teachers:
            raise ValueError(
                f"expected {self.num_teachers} teachers on dim 1, given shape {tuple(teacher_logits.shape)}"
            )
        losses = per_teacher_cross_entropy(teacher_logits.detach(), labels)
        if present is None:
            present = torch.ones_like(losses, dtype=torch.bool)
        else:
            self._masked = True
        present = present.to(losses.device, torch.bool)
        losses = torch.where(present, losses, torch.zeros_like(losses))
        self.loss_sum += losses.sum(dim=0).to("cpu", torch.float64)
        self.teacher_counts += present.sum(dim=0).to("cpu", torch.float64)
        self.count += int(losses.shape[0])

    def reduce_across_processes(
        self, accelerator, per_teacher_counts: bool | None = None
    ) -> "FullDatasetWeightAccumulator":
        """Sum loss sums and counts over processes (``accelerator.reduce(..., reduction="sum")``); call once.

        ``per_teacher_counts``: also sum each teacher's presence count (needed when some sample lacked a modality).
        Every process must pass the same value (the reduced tensors must have the same shape); None uses whether
        this process saw presence flags, which is the same everywhere only when every process saw some batch."""
        if self._reduced:
            raise RuntimeError("reduce_across_processes was already called on this accumulator")
        n = self.num_teachers
        with_counts = self._masked if per_teacher_counts is None else bool(per_teacher_counts)
        parts = [self.loss_sum] + ([self.teacher_counts] if with_counts else [])
        packed = torch.cat(parts + [torch.tensor([float(self.count)], dtype=torch.float64)])  # the count last
        packed = accelerator.reduce(packed.to(accelerator.device), reduction="sum").to("cpu", torch.float64)
        self.loss_sum = packed[:n].clone()
        self.count = int(round(float(packed[-1])))
        self.teacher_counts = packed[n: 2 * n].clone() if with_counts else torch.full_like(self.loss_sum, self.count)
        self._reduced = True
        return self

    def mean_losses(self) -> torch.Tensor:
        """Per teacher, the mean CE over the held-out samples where it is present (``inf`` for a teacher present
        in none of them: its weight becomes 0)."""
        if self.count == 0:
            raise ValueError("no held-out samples were accumulated: the held-out split is empty")
        if not bool((self.teacher_counts > 0).any()):
            raise ValueError("no teacher is present in any held-out sample (every modality missing)")
        means = torch.where(self.teacher_counts > 0, self.loss_sum / self.teacher_counts.clamp_min(1),
                            torch.full_like(self.loss_sum, float("inf")))
        return means.float()

    def compute(self, temperature: float = 1.0) -> torch.Tensor:
        """``softmin(mean loss / τ_w)`` -> ``[N]``."""
        return full_dataset_weights(self.mean_losses(), temperature)


@dataclass
class HeldOutLogits:
    """This process's share of a held-out split, as the teachers see it: per head, the stacked teacher logits
    ``[B, N, C]`` (teacher order, float32, CPU) and the labels ``[B]``; ``present``: bool ``[B, N]`` when the
    batches marked missing modalities, else None (every teacher present)."""

    logits: dict[str, torch.Tensor]
    labels: dict[str, torch.Tensor]
    present: torch.Tensor | None = None


def _distributed(accelerator) -> bool:
    return accelerator is not None and accelerator.num_processes > 1


@torch.no_grad()
def collect_held_out_logits(
    ensemble: MultimodalTeacherEnsemble, dataloader: Iterable[Mapping[str, Any]], accelerator=None
) -> HeldOutLogits:
    """Run every teacher once over this process's shard of a held-out split; keep the logits on the CPU.

    The result feeds :func:`fit_full_dataset_weights` and :func:`fit_calibration`, so fitting both costs one pass.

    Args:
        ensemble: the teacher ensemble, on its device.
        dataloader: batches of the held-out split (deterministic, un-augmented views), with ``labels``. With an
            ``accelerator`` of several processes and a plain ``torch.utils.data.DataLoader``, each process
            iterates a disjoint strided shard of its dataset (every sample counted once); any other iterable is
            taken as already sharded per process.
        accelerator: an ``accelerate.Accelerator`` or ``None`` (single process).

    Raises:
        ValueError: a batch without labels, or without a label for one of the heads.
    """
    ensemble.train(False)
    heads, teachers = ensemble.config.heads, list(ensemble.config.teachers)
    if _distributed(accelerator):
        dataloader = shard_dataloader(dataloader, accelerator.process_index, accelerator.num_processes)
    logits: dict[str, list[torch.Tensor]] = {head: [] for head in heads}
    labels: dict[str, list[torch.Tensor]] = {head: [] for head in heads}
    present: list[torch.Tensor | None] = []
    for batch in dataloader:
        if batch.get("labels") is None:
            raise ValueError("fitting on the held-out split needs labels in every held-out batch")
        batch = send_to_device(dict(batch), ensemble.device)
        batch_labels = batch.pop("labels")
        teacher_logits = ensemble.teacher_forward(batch)
        batch_size = len(next(iter(batch_labels.values())))
        batch_present = ensemble.teacher_presence(batch.get(PRESENCE_KEY), batch_size)
        present.append(None if batch_present is None else batch_present.cpu())
        for head in heads:
            if head not in batch_labels:
                raise ValueError(f"held-out batch labels lack head {head!r}; given {list(batch_labels)}")
            stacked = torch.stack([teacher_logits[m][head] for m in teachers], dim=1)
            logits[head].append(stacked.float().cpu())
            labels[head].append(batch_labels[head].cpu())
    if not any(labels.values()):  # an empty shard (e.g. fewer held-out samples than processes)
        return HeldOutLogits(logits={head: torch.empty(0, len(teachers), n) for head, n in heads.items()},
                             labels={head: torch.empty(0, dtype=torch.long) for head in heads})
    sizes = [len(v) for v in labels[next(iter(heads))]]
    held_present = None
    if any(p is not None for p in present):
        held_present = torch.cat([torch.ones(size, len(teachers), dtype=torch.bool) if p is None else p
                                  for p, size in zip(present, sizes)])
    return HeldOutLogits(logits={head: torch.cat(v) for head, v in logits.items()},
                         labels={head: torch.cat(v) for head, v in labels.items()}, present=held_present)


def _as_held_out(ensemble, held_out, accelerator) -> HeldOutLogits:
    """``held_out`` itself, or the logits collected from it when it is a dataloader."""
    if isinstance(held_out, HeldOutLogits):
        return held_out
    return collect_held_out_logits(ensemble, held_out, accelerator)


@torch.no_grad()
def fit_full_dataset_weights(
    ensemble: MultimodalTeacherEnsemble,
    held_out: HeldOutLogits | Iterable[Mapping[str, Any]],
    accelerator=None,
    set_weighting: bool = True,
) -> dict[str, torch.Tensor]:
    """Fit ``softmin(mean CE / τ_w)`` per head on a held-out split and store it in the ensemble's weight buffers.

    Args:
        ensemble: the teacher ensemble.
        held_out: this process's teacher logits from :func:`collect_held_out_logits`, or a dataloader of the
            held-out split (collected first, sharding included).
        accelerator: an ``accelerate.Accelerator`` or ``None`` (single process); the per-teacher sums are summed
            across processes.
        set_weighting: also set ``ensemble.config.weighting = "full-dataset"``.

    Returns:
        ``{head: [N] weights}`` (identical on every process).
    """
    held_out = _as_held_out(ensemble, held_out, accelerator)
    num_teachers = len(ensemble.config.teachers)
    accumulators = {head: FullDatasetWeightAccumulator(num_teachers) for head in ensemble.config.heads}
    for head, accumulator in accumulators.items():
        accumulator.update(held_out.logits[head], held_out.labels[head], held_out.present)
        if _distributed(accelerator):
            accumulator.reduce_across_processes(accelerator, per_teacher_counts=True)
    temperature = ensemble.config.weights_temperature
    ensemble.set_teacher_weights({head: acc.compute(temperature) for head, acc in accumulators.items()})
    if set_weighting:
        ensemble.config.weighting = "full-dataset"
    return {head: value.clone() for head, value in ensemble.teacher_weights().items()}


@torch.no_grad()
def fit_calibration(
    ensemble: MultimodalTeacherEnsemble,
    held_out: HeldOutLogits | Iterable[Mapping[str, Any]],
    accelerator=None,
) -> dict[str, float]:
    """Temperature-scale the ensemble's combined logits per head on a held-out split (after the weights are set).

    Combines the teachers' held-out logits with the current weighting (no calibration), gathers them across
    processes, fits ``T_c`` per head minimising the NLL of ``softmax(logits / T_c)``
    (:func:`mmkd_hf.evaluation.calibration.fit_temperature`) and stores them in
    ``ensemble.config.calibration_temperatures`` (saved with the config).

    Args:
        ensemble: the teacher ensemble.
        held_out: this process's teacher logits from :func:`collect_held_out_logits`, or a dataloader of the
            held-out split (collected first, sharding included).
        accelerator: an ``accelerate.Accelerator`` or ``None`` (single process).

    Returns:
        ``{head: T_c}``.
    """
    held_out = _as_held_out(ensemble, held_out, accelerator)
    config = ensemble.config
    teacher_logits = {m: {head: held_out.logits[head][:, i] for head in config.heads}
                      for i, m in enumerate(config.teachers)}
    previous = config.calibration_temperatures
    config.calibration_temperatures = {}
    try:
        combined, _ = ensemble.combine(teacher_logits, held_out.labels, held_out.present)
    finally:
        config.calibration_temperatures = previous
    temperatures = {}
    for head in config.heads:
        head_logits, head_labels = combined[head], held_out.labels[head]
        if held_out.present is not None:  # samples without any teacher have no ensemble prediction to calibrate
            with_teacher = held_out.present.any(dim=1)
            head_logits, head_labels = head_logits[with_teacher], head_labels[with_teacher]
        if _distributed(accelerator):
            head_logits = gather_rows(accelerator, head_logits.to(accelerator.device)).cpu()
            head_labels = gather_rows(accelerator, head_labels.to(accelerator.device)).cpu()
        if head_logits.shape[0] == 0:
            raise ValueError("ensemble calibration got no held-out samples: the held-out split is empty")
        # log-probabilities (probs space) are fine: softmax is invariant to the per-row constant
        temperatures[head] = fit_temperature(head_logits.numpy(), head_labels.numpy())
    config.calibration_temperatures = temperatures
    return dict(temperatures)


def gather_rows(accelerator, tensor: torch.Tensor) -> torch.Tensor:
    """Concatenate every process's ``tensor`` along dim 0, whatever each one's row count (shards of a split
    differ by one when it does not divide evenly; ``accelerator.gather`` needs equal shapes)."""
    count = torch.tensor([tensor.shape[0]], device=tensor.device)
    counts = accelerator.gather(count).tolist()
    padded = accelerator.pad_across_processes(tensor.contiguous(), dim=0)
    gathered = accelerator.gather(padded)
    width = padded.shape[0]
    return torch.cat([gathered[i * width: i * width + int(n)] for i, n in enumerate(counts)])


def shard_dataloader(dataloader, process_index: int, num_processes: int):
    """A DataLoader over samples ``process_index, process_index + P, ...`` of a plain DataLoader's dataset.

    Keeps batch size, collate function and workers. Returns ``dataloader`` unchanged when it is not a plain
    ``torch.utils.data.DataLoader`` (e.g. already prepared by accelerate: then it is already sharded).
    """
    if type(dataloader) is not DataLoader:
        return dataloader
    dataset = dataloader.dataset
    indices = list(range(process_index, len(dataset), num_processes))
    return DataLoader(
        Subset(dataset, indices),
        batch_size=dataloader.batch_size,
        shuffle=False,
        collate_fn=dataloader.collate_fn,
        num_workers=dataloader.num_workers,
    )
