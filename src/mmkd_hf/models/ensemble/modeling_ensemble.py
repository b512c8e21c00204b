"""The multimodal teacher ensemble as a ``transformers`` model (``TeacherEnsemble`` in ``src/modelling/distiller.py``
of the authors' public code, github.com/gorjanradevski/multimodal-distillation; Radevski et al., ICCV 2023).

The ensemble holds one frozen teacher per modality, gives each teacher the inputs of its modality (batch key
``config.input_key`` of the teacher; ``"layout"`` means every ``layout_*`` key) and combines their logits per head
with uniform, per-sample or full-dataset weights, in logit space (as the paper) or probability space. It only
combines: the full-dataset weights and the calibration temperature are fitted by
:mod:`mmkd_hf.distillation.ensemble_fitting` and stored here (weight buffers, config).

This file travels as Hub remote code, so it imports torch and transformers only; the weighting maths lives here
and :mod:`mmkd_hf.distillation.weighting` re-exports it. The caller moves batches to the ensemble's device.
Teachers are built with the Auto classes from their config dicts, so the ensemble imports no other model folder; the teacher model types must be registered (importing
``mmkd_hf`` registers this package's models).

Missing modalities: a batch may carry ``modality_present = {modality: BoolTensor[B]}`` (False = the sample lacks
that modality; its inputs are zero-filled). An absent teacher's weight is removed for that sample and the other
weights are renormalised to sum to 1 (uniform, per-sample and full-dataset weighting alike); its logits never enter
the combination. A sample with no teacher present gets all-zero combined logits and ``teacher_present`` all False:
the distillation loss falls back to the label for it. A batch without the key is all present (unchanged maths).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

import torch
import torch.nn.functional as F
from torch import nn
from transformers import AutoModel, PreTrainedModel
from transformers.models.auto.configuration_auto import CONFIG_MAPPING
from transformers.utils import ModelOutput

from .configuration_ensemble import MultimodalTeacherEnsembleConfig

LAYOUT_INPUT = "layout"
LAYOUT_PREFIX = "layout_"
DEFAULT_INPUT_KEY = "pixel_values"
#: the batch key marking, per modality, which samples have it (``{modality: BoolTensor[B]}``; absent = all present)
PRESENCE_KEY = "modality_present"
#: the modality name of each input key, to find a teacher's presence flags when its name is not a modality
MODALITY_OF_INPUT_KEY = {"pixel_values": "rgb", "flow_values": "flow", "audio_values": "audio", LAYOUT_INPUT: "layout"}


# --------------------------------------------------------------------------------------------------------------------
# Input routing (the one router of the package: the ensemble, the trainers and the evaluation use it)
# --------------------------------------------------------------------------------------------------------------------


def model_input_key(config: Any) -> str:
    """The batch key that feeds a model: ``config.input_key`` (``pixel_values``/``flow_values``/``audio_values``/
    ``layout``), or ``layout`` for an STLT config without one, else ``pixel_values``."""
    key = getattr(config, "input_key", None)
    if key:
        return str(key)
    if "stlt" in str(getattr(config, "model_type", "")).lower():
        return LAYOUT_INPUT
    return DEFAULT_INPUT_KEY


def select_model_inputs(
    batch: Mapping[str, Any], config: Any, include_labels: bool = False, model_name: str = "model"
) -> dict[str, Any]:
    """The keyword arguments a model takes from a collated batch (design.md batch contract).

    A Video Swin model reads ``batch[config.input_key]`` as ``pixel_values`` (so a flow teacher gets
    ``flow_values``, an audio teacher ``audio_values``); a layout model (``input_key == "layout"``) gets every
    ``layout_*`` key. Everything else (other modalities, ``teacher_logits``, ``segment_id``) is dropped.

    Args:
        batch: the collated batch.
        config: the model's config.
        include_labels: also pass ``batch["labels"]`` when present.
        model_name: names the model in error messages (e.g. ``"teacher 'flow'"``).

    Raises:
        ValueError: the batch lacks the model's input key.
    """
    key = model_input_key(config)
    if key == LAYOUT_INPUT:
        inputs = {name: value for name, value in batch.items() if name.startswith(LAYOUT_PREFIX)}
        if "layout_boxes" not in inputs:
            raise ValueError(
                f"{model_name} reads the layout inputs (layout_* keys, at least 'layout_boxes'), absent from the "
                f"batch; batch keys: {sorted(batch)}"
            )
    else:
        if key not in batch or batch[key] is None:
            raise ValueError(
                f"{model_name} reads batch key {key!r} (config.input_key), absent from the batch; "
                f"batch keys: {sorted(batch)}"
            )
        inputs = {"pixel_values": batch[key]}
    if include_labels and batch.get("labels") is not None:
        inputs["labels"] = batch["labels"]
    return inputs


# --------------------------------------------------------------------------------------------------------------------
# Weighting schemes (pure)
# --------------------------------------------------------------------------------------------------------------------


def uniform_weights(num_teachers: int, device: torch.device | None = None, dtype=torch.float32) -> torch.Tensor:
    """``[N]`` weights ``1/N``."""
    if num_teachers < 1:
        raise ValueError(f"need at least one teacher, given {num_teachers}")
    return torch.full((num_teachers,), 1.0 / num_teachers, device=device, dtype=dtype)


def per_teacher_cross_entropy(teacher_logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """``ℓ_{b,t} = CE(Z_{b,t}, y_b)`` for stacked logits ``Z [B, N, C]`` and labels ``[B]`` -> ``[B, N]``.

    Gather-based (no ``repeat_interleave``): ``-log_softmax(Z)[b, t, y_b]``. Logits with views ``[B, N, V, C]``
    are averaged over views first.
    """
    if teacher_logits.dim() == 4:
        teacher_logits = teacher_logits.mean(dim=2)
    if teacher_logits.dim() != 3:
        raise ValueError(f"teacher logits must be [B, N, C], given shape {tuple(teacher_logits.shape)}")
    batch_size, num_teachers, _ = teacher_logits.shape
    if labels.shape != (batch_size,):
        raise ValueError(f"labels must be [B]=[{batch_size}], given shape {tuple(labels.shape)}")
    log_probs = F.log_softmax(teacher_logits.float(), dim=-1)
    index = labels.long().view(batch_size, 1, 1).expand(batch_size, num_teachers, 1)
    return -log_probs.gather(-1, index).squeeze(-1)


def per_sample_weights(
    teacher_logits: torch.Tensor, labels: torch.Tensor, temperature: float = 1.0, present: torch.Tensor | None = None
) -> torch.Tensor:
    """``w_{b,·} = softmin(ℓ_{b,·} / τ_w)`` over teachers -> ``[B, N]`` (rows sum to 1).

    With ``present`` (bool ``[B, N]``) the softmin runs over each sample's present teachers only (an absent
    teacher's weight is 0; a sample with none present gets an all-zero row)."""
    if temperature <= 0:
        raise ValueError(f"weights temperature must be > 0, given {temperature}")
    losses = per_teacher_cross_entropy(teacher_logits, labels) / temperature
    if present is None:
        return F.softmin(losses, dim=1)
    present = present.to(losses.device, torch.bool)
    weights = F.softmin(losses.masked_fill(~present, float("inf")).masked_fill(~present.any(1, keepdim=True), 0.0), dim=1)
    return renormalise_weights(weights, present)


def renormalise_weights(weights: torch.Tensor, present: torch.Tensor) -> torch.Tensor:
    """Remove absent teachers' weights per sample and renormalise the rest to sum to 1 -> ``[B, N]``.

    ``weights``: ``[N]`` or ``[B, N]``; ``present``: bool ``[B, N]``. A sample with every teacher present keeps its
    weights exactly; a sample with none present gets an all-zero row. E.g. weights ``(0.2, 0.3, 0.5)`` with the third
    teacher absent give ``(0.4, 0.6, 0)``.
    """
    present = present.to(weights.device, torch.bool)
    if present.dim() != 2:
        raise ValueError(f"teacher presence must be [B, N], given shape {tuple(present.shape)}")
    full = weights.expand(present.shape) if weights.dim() == 1 else weights
    if tuple(full.shape) != tuple(present.shape):
        raise ValueError(f"weights of shape {tuple(weights.shape)} do not match presence {tuple(present.shape)}")
    kept = torch.where(present, full, torch.zeros_like(full))
    total = kept.sum(dim=1, keepdim=True)
    renormalised = torch.where(total > 0, kept / total.clamp_min(torch.finfo(kept.dtype).tiny), torch.zeros_like(kept))
    return torch.where(present.all(dim=1, keepdim=True), full, renormalised)


def combine_teacher_logits(
    teacher_logits: torch.Tensor, weights: torch.Tensor, space: str = "logits", present: torch.Tensor | None = None
) -> torch.Tensor:
    """Combine stacked teacher logits ``Z [B, N, C]`` (or ``[B, N, V, C]``) with weights ``[N]`` or ``[B, N]``.

    - ``space="logits"``: ``Σ_t w_t · Z_t`` (the paper's ensemble; returns logits);
    - ``space="probs"``: ``log Σ_t w_t · softmax(Z_t)`` (a mixture of the teachers' distributions), returned as
      **log-probabilities** so the KD loss treats it like logits (``softmax(log p) = p``; at KD temperature ``T``
      the mixture itself is softened, not each teacher).

    ``present`` (bool ``[B, N]``, optional): the weights are renormalised over the present teachers
    (:func:`renormalise_weights`) and absent teachers' logits are ignored (even when not finite); a sample with no
    teacher present combines to all-zero logits.
    """
    if present is not None:
        present = present.to(teacher_logits.device, torch.bool)
        weights = renormalise_weights(weights.to(teacher_logits.device), present)
        mask = present.view(*present.shape, *([1] * (teacher_logits.dim() - 2)))
        teacher_logits = torch.where(mask, teacher_logits, torch.zeros_like(teacher_logits))
        combined = combine_teacher_logits(teacher_logits, weights, space)
        any_present = present.any(dim=1).view(-1, *([1] * (combined.dim() - 1)))
        return torch.where(any_present, combined, torch.zeros_like(combined))

    if teacher_logits.dim() < 3:
        raise ValueError(f"teacher logits must be [B, N, C], given shape {tuple(teacher_logits.shape)}")
    batch_size, num_teachers = teacher_logits.shape[:2]
    trailing = [1] * (teacher_logits.dim() - 2)
    if weights.dim() == 1 and weights.shape[0] == num_teachers:
        weights = weights.view(1, num_teachers, *trailing)
    elif weights.dim() == 2 and tuple(weights.shape) == (batch_size, num_teachers):
        weights = weights.view(batch_size, num_teachers, *trailing)
    else:
        raise ValueError(
            f"weights must be [N]=[{num_teachers}] or [B, N]=[{batch_size}, {num_teachers}], "
            f"given shape {tuple(weights.shape)}"
        )
    weights = weights.to(teacher_logits.device, teacher_logits.dtype)
    if space == "logits":
        return (weights * teacher_logits).sum(dim=1)
    if space == "probs":
        log_probs = F.log_softmax(teacher_logits, dim=-1)
        return torch.logsumexp(log_probs + torch.log(weights), dim=1)
    raise ValueError(f"space must be 'logits' or 'probs', given {space!r}")


# --------------------------------------------------------------------------------------------------------------------
# The model
# --------------------------------------------------------------------------------------------------------------------


@dataclass
class EnsembleOutput(ModelOutput):
    """Output of :class:`MultimodalTeacherEnsemble`.

    Attributes:
        logits: per head, the combined teachers (log-probabilities when ``combine_space="probs"``).
        teacher_logits: per modality, per head, each teacher's logits.
        weights: per head, the teacher weights used: ``[N]`` or ``[B, N]`` (per-sample, or renormalised for
            missing modalities), in teacher order.
        teacher_present: bool ``[B, N]`` (teacher order) when the batch marked missing modalities, else None (all
            present). A row without any True has no teacher: its combined logits are zeros.
    """

    logits: dict[str, torch.Tensor] | None = None
    teacher_logits: dict[str, dict[str, torch.Tensor]] | None = None
    weights: dict[str, torch.Tensor] | None = None
    teacher_present: torch.Tensor | None = None


def _teacher_config_from_dict(modality: str, config_dict: Mapping[str, Any]):
    config_dict = dict(config_dict)
    model_type = config_dict.get("model_type")
    if model_type not in CONFIG_MAPPING:
        raise ValueError(
            f"teacher {modality!r}: model_type {model_type!r} is not registered with AutoConfig "
            "(import mmkd_hf first, or register the teacher's config)"
        )
    return CONFIG_MAPPING[model_type].from_dict(config_dict)


class MultimodalTeacherEnsemble(PreTrainedModel):
    """Frozen per-modality teachers combined per head (``TeacherEnsemble`` of the original ``distiller.py``).

    The teachers stay in eval mode with ``requires_grad=False`` whatever ``.train()`` is called with. The teacher
    weights are persistent buffers ``teacher_weights_<head>`` (``[N]``, teacher order = ``config.teachers`` order),
    so ``save_pretrained`` / ``from_pretrained`` round-trip fitted full-dataset weights.

    Build it from trained teachers with :meth:`from_teachers`, or from a saved folder with ``from_pretrained``.
    """

    config_class = MultimodalTeacherEnsembleConfig
    base_model_prefix = "ensemble"
    main_input_name = "pixel_values"
    supports_gradient_checkpointing = False
    _supports_sdpa = True
    _supports_flash_attn = True

    def __init__(self, config: MultimodalTeacherEnsembleConfig):
        super().__init__(config)
        if not config.teachers:
            raise ValueError("the ensemble config has no teachers")
        if not config.heads:
            raise ValueError("the ensemble config has no heads")
        self.teachers = nn.ModuleDict(
            {
                modality: AutoModel.from_config(_teacher_config_from_dict(modality, teacher_dict))
                for modality, teacher_dict in config.teachers.items()
            }
        )
        for modality, teacher in self.teachers.items():
            check_teacher_heads(modality, getattr(teacher.config, "heads", None), config.heads)
        for head in config.heads:
            self.register_buffer(f"teacher_weights_{head}", uniform_weights(len(config.teachers)), persistent=True)
        self.post_init()
        self.freeze()

    # -- construction -------------------------------------------------------------------------------------------------

    @classmethod
    def from_teachers(
        cls,
        teachers: Mapping[str, PreTrainedModel],
        heads: Mapping[str, int] | None = None,
        weighting: str = "uniform",
        weights_temperature: float = 1.0,
        combine_space: str = "logits",
        held_out_split_file: str | None = None,
    ) -> "MultimodalTeacherEnsemble":
        """Build the ensemble from trained teachers ``{modality: model}`` (their weights are copied).

        Args:
            teachers: ``{modality: teacher}``; the order is the teacher order of the weights.
            heads: the student's ``{head: num_classes}``; defaults to the first teacher's heads.

        Raises:
            ValueError: a teacher whose heads or class counts differ from ``heads`` (names the teacher and head).
        """
        if not teachers:
            raise ValueError("from_teachers needs at least one teacher")
        first = next(iter(teachers.values()))
        heads = dict(heads if heads is not None else getattr(first.config, "heads", {}) or {})
        for modality, teacher in teachers.items():
            check_teacher_heads(modality, getattr(teacher.config, "heads", None), heads)
        config = MultimodalTeacherEnsembleConfig(
            teachers={modality: teacher.config.to_dict() for modality, teacher in teachers.items()},
            heads=heads,
            weighting=weighting,
            weights_temperature=weights_temperature,
            combine_space=combine_space,
            held_out_split_file=held_out_split_file,
        )
        ensemble = cls(config)
        for modality, teacher in teachers.items():
            ensemble.teachers[modality].load_state_dict(teacher.state_dict(), strict=True)
        return ensemble

    @classmethod
    def from_pretrained(cls, *args, **kwargs) -> "MultimodalTeacherEnsemble":
        """``PreTrainedModel.from_pretrained``, then freeze again (loading re-creates the parameters)."""
        model = super().from_pretrained(*args, **kwargs)
        model.freeze()
        return model

    def freeze(self) -> "MultimodalTeacherEnsemble":
        """``requires_grad=False`` on every parameter and eval mode everywhere."""
        self.requires_grad_(False)
        return self.train(False)

    def _init_weights(self, module: nn.Module) -> None:
        # The teachers initialise themselves (each is a PreTrainedModel); the ensemble owns only the weight buffers.
        if module is self:
            for head in self.config.heads:
                getattr(self, f"teacher_weights_{head}").fill_(1.0 / len(self.config.teachers))

    # -- state -----------------------------------------------------------------------------------------------------

    def train(self, mode: bool = True) -> "MultimodalTeacherEnsemble":
        """The ensemble is inference-only: ``train(True)`` is accepted but every module stays in eval mode."""
        super().train(False)
        return self

    @property
    def modalities(self) -> list[str]:
        return list(self.config.teachers)

    def teacher_weights(self) -> dict[str, torch.Tensor]:
        """The stored (uniform or fitted full-dataset) weights per head, ``[N]`` each."""
        return {head: getattr(self, f"teacher_weights_{head}") for head in self.config.heads}

    def set_teacher_weights(self, weights: Mapping[str, torch.Tensor]) -> None:
        """Overwrite the stored weights (one ``[N]`` tensor per head, non-negative, summing to 1)."""
        num_teachers = len(self.config.teachers)
        for head in self.config.heads:
            if head not in weights:
                raise ValueError(f"weights lack head {head!r}; expected heads {list(self.config.heads)}")
            value = torch.as_tensor(weights[head], dtype=torch.float32)
            if value.shape != (num_teachers,):
                raise ValueError(f"weights of head {head!r} must be [{num_teachers}], given {tuple(value.shape)}")
            if not bool(torch.isfinite(value).all()) or bool((value < 0).any()):
                raise ValueError(f"weights of head {head!r} must be finite and non-negative, given {value.tolist()}")
            getattr(self, f"teacher_weights_{head}").copy_(value)

    # -- forward ---------------------------------------------------------------------------------------------------

    def teacher_forward(self, batch: Mapping[str, Any]) -> dict[str, dict[str, torch.Tensor]]:
        """Each teacher's logits on its modality's inputs: ``{modality: {head: Tensor}}``."""
        teacher_logits = {}
        for modality, teacher in self.teachers.items():
            inputs = select_model_inputs(batch, teacher.config, model_name=f"teacher {modality!r}")
            outputs = teacher(**inputs)
            logits = outputs["logits"] if isinstance(outputs, Mapping) else outputs.logits
            missing = [head for head in self.config.heads if head not in logits]
            if missing:
                raise ValueError(f"teacher {modality!r} returned no logits for head(s) {missing}")
            teacher_logits[modality] = {head: logits[head] for head in self.config.heads}
        return teacher_logits

    def teacher_presence(
        self, modality_present: Mapping[str, torch.Tensor] | torch.Tensor | None, batch_size: int | None = None
    ) -> torch.Tensor | None:
        """The batch's ``modality_present`` as bool ``[B, N]`` in teacher order, or None (every teacher present).

        A teacher's flags are found under its name, else under its input's modality (``audio_values`` ->
        ``audio``); a teacher whose modality is not marked is present for every sample. A ``[B, N]`` tensor is
        returned as it is (checked)."""
        if modality_present is None:
            return None
        num_teachers = len(self.config.teachers)
        if isinstance(modality_present, torch.Tensor):
            if modality_present.dim() != 2 or modality_present.shape[1] != num_teachers:
                raise ValueError(f"teacher presence must be [B, {num_teachers}], given {tuple(modality_present.shape)}")
            return modality_present.to(torch.bool)
        columns = []
        for modality, teacher in self.teachers.items():
            flags = modality_present.get(modality)
            if flags is None:
                flags = modality_present.get(MODALITY_OF_INPUT_KEY.get(model_input_key(teacher.config), ""))
            columns.append(flags)
        if all(flags is None for flags in columns):
            return None
        if batch_size is None:
            batch_size = next(len(flags) for flags in columns if flags is not None)
        device = next(flags.device for flags in columns if isinstance(flags, torch.Tensor)) if any(
            isinstance(flags, torch.Tensor) for flags in columns) else None
        stacked = []
        for modality, flags in zip(self.config.teachers, columns):
            flags = torch.ones(batch_size, dtype=torch.bool, device=device) if flags is None else torch.as_tensor(
                flags, dtype=torch.bool, device=device).reshape(-1)
            if flags.shape[0] != batch_size:
                raise ValueError(f"{PRESENCE_KEY}[{modality!r}] has {flags.shape[0]} flags for a batch of {batch_size}")
            stacked.append(flags)
        return torch.stack(stacked, dim=1)

    def _weights_for_head(
        self,
        head: str,
        stacked: torch.Tensor,
        labels: Mapping[str, torch.Tensor] | None,
        present: torch.Tensor | None = None,
    ) -> torch.Tensor:
        if self.config.weighting == "per-sample":
            if labels is None or head not in labels:
                raise ValueError(
                    f"per-sample weighting needs labels[{head!r}] at forward time (the teachers' CE on the "
                    "ground-truth label sets each sample's weights); call forward(labels=...)"
                )
            return per_sample_weights(stacked, labels[head].to(stacked.device), self.config.weights_temperature,
                                      present)
        if self.config.weighting == "uniform":
            # Fitted full-dataset weights may still sit in the buffers: "uniform" means uniform regardless.
            weights = uniform_weights(stacked.shape[1], device=stacked.device, dtype=stacked.dtype)
        else:
            weights = getattr(self, f"teacher_weights_{head}")
        return weights if present is None else renormalise_weights(weights.to(stacked.device), present)

    def combine(
        self,
        teacher_logits: Mapping[str, Mapping[str, torch.Tensor]],
        labels: Mapping[str, torch.Tensor] | None = None,
        present: Mapping[str, torch.Tensor] | torch.Tensor | None = None,
    ) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        """Combine per-teacher logits into per-head ensemble logits; returns ``(logits, weights)``.

        ``present``: the batch's ``modality_present`` (``{modality: BoolTensor[B]}``) or bool ``[B, N]``; absent
        teachers are left out per sample and the other weights renormalised (see :func:`renormalise_weights`)."""
        combined, used_weights = {}, {}
        for head in self.config.heads:
            stacked = torch.stack([teacher_logits[modality][head] for modality in self.config.teachers], dim=1)
            if present is not None and not isinstance(present, torch.Tensor):
                present = self.teacher_presence(present, stacked.shape[0])
            head_present = None if present is None else self.teacher_presence(present).to(stacked.device)
            weights = self._weights_for_head(head, stacked, labels, head_present)
            combined[head] = combine_teacher_logits(stacked, weights, self.config.combine_space, head_present)
            calibration = (self.config.calibration_temperatures or {}).get(head)
            if calibration is not None:
                combined[head] = combined[head] / calibration
            used_weights[head] = weights
        return combined, used_weights

    @torch.no_grad()
    def forward(
        self,
        labels: Mapping[str, torch.Tensor] | None = None,
        modality_present: Mapping[str, torch.Tensor] | None = None,
        **batch: Any,
    ) -> EnsembleOutput:
        """Run every teacher on its modality and combine per head.

        Args:
            labels: ``{head: LongTensor[B]}``; required for ``per-sample`` weighting, unused otherwise.
            modality_present: ``{modality: BoolTensor[B]}`` (the batch's mark of missing modalities); absent
                teachers are left out per sample and the others' weights renormalised. None: all present.
            **batch: the collated batch (design.md); each teacher takes its own keys, the rest is ignored.

        Raises:
            ValueError: a configured teacher's input key is absent from the batch (names teacher and key), or
                per-sample weighting without labels.
        """
        teacher_logits = self.teacher_forward(batch)
        present = None
        if modality_present is not None:
            first = next(iter(next(iter(teacher_logits.values())).values()))
            present = self.teacher_presence(modality_present, first.shape[0])
            present = None if present is None else present.to(first.device)
        logits, weights = self.combine(teacher_logits, labels, present)
        return EnsembleOutput(logits=logits, teacher_logits=teacher_logits, weights=weights, teacher_present=present)

def check_teacher_heads(modality: str, teacher_heads: Mapping[str, int] | None, student_heads: Mapping[str, int]) -> None:
    """Raise ``ValueError`` unless a teacher has exactly the student's heads with the same class counts."""
    teacher_heads = dict(teacher_heads or {})
    student_heads = dict(student_heads)
    for head, num_classes in student_heads.items():
        if head not in teacher_heads:
            raise ValueError(
                f"teacher {modality!r} lacks head {head!r}: student heads {student_heads}, teacher heads {teacher_heads}"
            )
        if int(teacher_heads[head]) != int(num_classes):
            raise ValueError(
                f"teacher {modality!r} head {head!r} has {teacher_heads[head]} classes, the student's has {num_classes}"
            )
    extra = [head for head in teacher_heads if head not in student_heads]
    if extra:
        raise ValueError(
            f"teacher {modality!r} has head(s) {extra} that the student lacks: student heads {student_heads}, "
            f"teacher heads {teacher_heads}"
        )


__all__ = [
    "MODALITY_OF_INPUT_KEY",
    "PRESENCE_KEY",
    "EnsembleOutput",
    "MultimodalTeacherEnsemble",
    "check_teacher_heads",
    "combine_teacher_logits",
    "model_input_key",
    "per_sample_weights",
    "per_teacher_cross_entropy",
    "renormalise_weights",
    "select_model_inputs",
    "uniform_weights",
]
