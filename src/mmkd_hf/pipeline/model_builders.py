"""The models of a run, sized by its preset: the teachers, the student and the baselines.

Without ``--init_from`` every model starts from random weights. With it, every Video Swin of the run (the RGB,
flow and audio teachers, the student and both baselines) starts its backbone from the same pretrained weights
(the paper: Kinetics-400 Video Swin-T) with freshly initialised heads, as the authors' ``SwinModel`` does
(src/modelling/models.py of github.com/gorjanradevski/multimodal-distillation). Their flow and audio teachers
keep the 3-channel RGB patch embedding: flow is fed as (u, v, 0) and the log-mel spectrogram repeated on 3
channels (src/modelling/dataset_video.py and src/modelling/dataset_audio.py), so a pretrained flow/audio teacher
has 3 input channels and adapts the 2-channel flow / 1-channel audio clips of this package itself.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Mapping, Sequence
from typing import Any

from torch import nn

from ..distillation.presets import stlt_config_kwargs, video_swin_config_kwargs
from ..models import STLTConfig, STLTForVideoClassification, VideoSwinConfig, VideoSwinForVideoClassification
from ..models.convert_backbone import (
    ARCHITECTURE_FIELDS,
    BackboneCheckpointError,
    BackboneWeights,
    describe_architecture,
    load_backbone_weights,
    read_pretrained_backbone,
)
from .arguments import PipelineConfig

#: Input channels of a Video Swin started from RGB-pretrained weights (flow and audio are adapted to them).
PRETRAINED_NUM_CHANNELS = 3


@functools.lru_cache(maxsize=1)
def _pretrained_backbone(source: str, modified: float | None) -> BackboneWeights:
    # One read for the six Video Swins of a run (keyed by the file's modification time).
    return read_pretrained_backbone(source)


def pretrained_backbone(source: str | os.PathLike) -> BackboneWeights:
    """The backbone weights of ``--init_from`` (a checkpoint file, a model folder or a Hub repo id)."""
    source = os.fspath(source)
    modified = os.path.getmtime(source) if os.path.exists(source) else None
    return _pretrained_backbone(source, modified)


def _video_swin(config: PipelineConfig, role: str, modality: str, heads: Mapping[str, int],
                head_labels: Mapping[str, Sequence[str]]) -> VideoSwinForVideoClassification:
    kwargs = video_swin_config_kwargs(config.model_preset, role, modality, heads, head_labels, config.frames,
                                      config.size)
    if not config.init_from:
        return VideoSwinForVideoClassification(VideoSwinConfig(**kwargs))
    weights = pretrained_backbone(config.init_from)
    model = VideoSwinForVideoClassification(VideoSwinConfig(**kwargs, num_channels=PRETRAINED_NUM_CHANNELS))
    check_architecture(weights, model.config, f"the {modality} {role} of preset {config.preset_name!r}")
    load_backbone_weights(model.backbone, weights)
    return model


def check_architecture(weights: BackboneWeights, model_config: VideoSwinConfig, what: str) -> None:
    """Raises a one-line ``BackboneCheckpointError`` when ``weights`` do not fit ``model_config``'s architecture."""
    wanted: dict[str, Any] = {name: getattr(model_config, name) for name in ARCHITECTURE_FIELDS}
    differing = [name for name in ARCHITECTURE_FIELDS
                 if _normalised(wanted[name]) != _normalised(weights.architecture.get(name))]
    if differing:
        raise BackboneCheckpointError(
            f"--init_from {weights.source}: its Video Swin ({describe_architecture(weights.architecture)}) does not "
            f"fit {what} ({describe_architecture({name: wanted[name] for name in differing})}); use the preset of "
            "the checkpoint's size (--preset base for Video Swin-T) or a checkpoint of the preset's size"
        )


def _normalised(value: Any) -> Any:
    if isinstance(value, (list, tuple)):
        return tuple(int(item) for item in value)
    if isinstance(value, float):
        return round(value, 6)
    return value


def build_teacher(config: PipelineConfig, modality: str, heads: Mapping[str, int],
                  head_labels: Mapping[str, Sequence[str]]) -> nn.Module:
    """The teacher for ``modality`` (Video Swin for rgb/flow/audio, from ``--init_from`` when set; STLT for layout)."""
    preset = config.model_preset
    if modality == "layout":
        return STLTForVideoClassification(STLTConfig(**stlt_config_kwargs(preset, heads, head_labels, config.frames)))
    return _video_swin(config, "teacher", modality, heads, head_labels)


def build_student(config: PipelineConfig, heads: Mapping[str, int],
                  head_labels: Mapping[str, Sequence[str]]) -> nn.Module:
    """An RGB Video Swin with the student's architecture (student and both baselines), from ``--init_from`` when set."""
    return _video_swin(config, "student", "rgb", heads, head_labels)


__all__ = ["PRETRAINED_NUM_CHANNELS", "build_student", "build_teacher", "check_architecture", "pretrained_backbone"]
