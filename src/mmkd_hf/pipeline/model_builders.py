"""Randomly initialised models of a run, sized by its preset: the teachers, the student and the baselines."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from torch import nn

from ..distillation.presets import stlt_config_kwargs, video_swin_config_kwargs
from ..models import STLTConfig, STLTForVideoClassification, VideoSwinConfig, VideoSwinForVideoClassification
from .arguments import PipelineConfig


def build_teacher(config: PipelineConfig, modality: str, heads: Mapping[str, int],
                  head_labels: Mapping[str, Sequence[str]]) -> nn.Module:
    """A randomly initialised teacher for ``modality`` (Video Swin for rgb/flow/audio, STLT for layout)."""
    preset = config.model_preset
    if modality == "layout":
        return STLTForVideoClassification(STLTConfig(**stlt_config_kwargs(preset, heads, head_labels, config.frames)))
    kwargs = video_swin_config_kwargs(preset, "teacher", modality, heads, head_labels, config.frames, config.size)
    return VideoSwinForVideoClassification(VideoSwinConfig(**kwargs))


def build_student(config: PipelineConfig, heads: Mapping[str, int],
                  head_labels: Mapping[str, Sequence[str]]) -> nn.Module:
    """A randomly initialised RGB Video Swin with the student's architecture (student and both baselines)."""
    kwargs = video_swin_config_kwargs(config.model_preset, "student", "rgb", heads, head_labels,
                                      config.frames, config.size)
    return VideoSwinForVideoClassification(VideoSwinConfig(**kwargs))


__all__ = ["build_student", "build_teacher"]
