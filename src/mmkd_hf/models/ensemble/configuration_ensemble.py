"""Configuration of the multimodal teacher ensemble."""

from __future__ import annotations

from typing import Any

from transformers import PreTrainedConfig

WEIGHTING_SCHEMES = ("uniform", "per-sample", "full-dataset")
COMBINE_SPACES = ("logits", "probs")


def _ordered(name: str, mapping: dict, order: list[str] | None) -> dict:
    if order is None:
        return mapping
    if sorted(order) != sorted(mapping):
        raise ValueError(f"{name} order {list(order)} does not list the same keys as {name} {sorted(mapping)}")
    return {key: mapping[key] for key in order}


class MultimodalTeacherEnsembleConfig(PreTrainedConfig):
    """Configuration of :class:`MultimodalTeacherEnsemble`.

    Args:
        teachers: ``{modality: teacher_config_dict}`` in teacher order (the ``N`` axis of the weights), each dict a
            ``config.to_dict()`` of a registered model (it carries ``model_type``), e.g. ``{"rgb": {...}, "flow":
            {...}, "audio": {...}, "layout": {...}}``.
        heads: the student's heads, ``{head: num_classes}``; every teacher must have exactly these heads.
        weighting: ``"uniform"``, ``"per-sample"`` (softmin of each teacher's CE on the label; needs labels at
            forward time) or ``"full-dataset"`` (fixed weights fit on a held-out split).
        weights_temperature: ``τ_w`` of the softmin (default 1.0, as the original).
        combine_space: ``"logits"`` (weighted sum of logits, as the paper) or ``"probs"`` (weighted sum of
            probabilities, returned as log-probabilities).
        held_out_split_file: where the held-out split used for the full-dataset fit is saved (recorded for
            provenance; optional).
        calibration_temperatures: ``{head: T_c}``: the combined logits of ``head`` are divided by ``T_c`` (temperature
            scaling of the ensemble, fit on the held-out split by :func:`mmkd_hf.distillation.ensemble_fitting.fit_calibration`).
            Absent heads are not rescaled. A weighted mean of teachers that disagree is under-confident; this
            restores calibrated confidence before the targets are softened by the distillation temperature.
        teacher_order, head_order: the orders of ``teachers`` and ``heads``. ``config.json`` is written with sorted
            keys, which would reorder them (and the teacher axis of the weights); these lists are filled in and
            saved automatically and restore the order on load.
    """

    model_type = "mmkd_teacher_ensemble"

    def __init__(
        self,
        teachers: dict[str, dict[str, Any]] | None = None,
        heads: dict[str, int] | None = None,
        weighting: str = "uniform",
        weights_temperature: float = 1.0,
        combine_space: str = "logits",
        held_out_split_file: str | None = None,
        calibration_temperatures: dict[str, float] | None = None,
        teacher_order: list[str] | None = None,
        head_order: list[str] | None = None,
        **kwargs,
    ):
        teachers = _ordered("teachers", dict(teachers or {}), teacher_order)
        heads = _ordered("heads", dict(heads or {}), head_order)
        for modality, teacher_config in teachers.items():
            if not isinstance(teacher_config, dict) or "model_type" not in teacher_config:
                raise ValueError(
                    f"teacher {modality!r}: expected a config dict with a 'model_type' (config.to_dict()), "
                    f"given {type(teacher_config).__name__}"
                )
        if weighting not in WEIGHTING_SCHEMES:
            raise ValueError(f"weighting must be one of {WEIGHTING_SCHEMES}, given {weighting!r}")
        if combine_space not in COMBINE_SPACES:
            raise ValueError(f"combine_space must be one of {COMBINE_SPACES}, given {combine_space!r}")
        if weights_temperature <= 0:
            raise ValueError(f"weights_temperature must be > 0, given {weights_temperature}")
        heads = {str(head): int(count) for head, count in heads.items()}
        for head in heads:
            if not head.isidentifier():
                raise ValueError(f"head names must be Python identifiers (they name buffers), given {head!r}")
        self.teachers = teachers
        self.heads = heads
        self.weighting = weighting
        self.weights_temperature = float(weights_temperature)
        self.combine_space = combine_space
        self.held_out_split_file = held_out_split_file
        calibration_temperatures = {str(h): float(t) for h, t in dict(calibration_temperatures or {}).items()}
        unknown = [h for h in calibration_temperatures if h not in heads]
        if unknown:
            raise ValueError(f"calibration_temperatures names unknown head(s) {unknown}; heads are {list(heads)}")
        bad = {h: t for h, t in calibration_temperatures.items() if not (t > 0 and t < float("inf"))}
        if bad:
            raise ValueError(f"calibration_temperatures must be finite and > 0, given {bad}")
        self.calibration_temperatures = calibration_temperatures
        self.teacher_order = list(teachers)
        self.head_order = list(heads)
        super().__init__(**kwargs)


__all__ = ["MultimodalTeacherEnsembleConfig", "WEIGHTING_SCHEMES", "COMBINE_SPACES"]
