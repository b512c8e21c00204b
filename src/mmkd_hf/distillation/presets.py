"""Model-size presets for the pipeline: tiny networks for the embedded mini-kitchens data and tests, and
the paper's real sizes (Video Swin-T, STLT base) for EPIC-KITCHENS-100 / Something-Something v2 / Something-Else.

A preset fixes the clip geometry (frames, frame size) and the architecture of every role:

* ``teacher``: the Video Swin of the RGB, flow and audio teachers (one network per modality);
* ``student``: the RGB Video Swin that is distilled, and the architecture of both baselines
  (``baseline-rgb`` and ``omnivore``);
* ``layout``: the STLT layout teacher.

Presets only describe architectures (keyword arguments of ``VideoSwinConfig`` / ``STLTConfig``); heads,
class names and the modality are added by :func:`video_swin_config_kwargs` / :func:`stlt_config_kwargs`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class ModelPreset:
    """Architecture and clip geometry of every model the pipeline trains.

    Attributes:
        name: Preset name (``--preset``).
        num_frames: Frames per clip for every modality (flow and audio windows follow the RGB frames).
        image_size: Side of the square frames after cropping.
        teacher: ``VideoSwinConfig`` keyword arguments of the RGB, flow and audio teachers.
        student: ``VideoSwinConfig`` keyword arguments of the student and of both baselines.
        layout: ``STLTConfig`` keyword arguments of the layout teacher.
        audio: ``mmkd_hf.data.AudioConfig`` overrides (the spectrogram is resized to the frame size anyway, so
            the tiny presets use a coarser hop: 4x cheaper to compute, same information at 48 px).
        description: One line shown by ``--help`` and written to the run's config.
    """

    name: str
    num_frames: int
    image_size: int
    teacher: Mapping[str, Any] = field(default_factory=dict)
    student: Mapping[str, Any] = field(default_factory=dict)
    layout: Mapping[str, Any] = field(default_factory=dict)
    audio: Mapping[str, Any] = field(default_factory=dict)
    description: str = ""


# Shared by the tiny presets: small windows that fit the small feature maps, light stochastic depth.
_TINY_SWIN_COMMON = {"patch_size": (2, 4, 4), "drop_path_rate": 0.1, "mlp_ratio": 2.0}
# 20 ms hop / 40 ms window instead of 5 / 10 ms: the 1.116 s window gives 56 columns, resized to the frame size.
_TINY_AUDIO = {"hop_length": 320, "win_length": 640}
_TEST_SWIN = {**_TINY_SWIN_COMMON, "embed_dim": 16, "depths": (1, 1, 1, 1), "num_heads": (1, 1, 1, 1),
              "window_size": (2, 4, 4), "drop_path_rate": 0.0}
_VIDEO_SWIN_T = {"embed_dim": 96, "depths": (2, 2, 6, 2), "num_heads": (3, 6, 12, 24), "window_size": (8, 7, 7),
                 "drop_path_rate": 0.2}

PRESETS: dict[str, ModelPreset] = {
    # Tests: the smallest network that still exercises every code path (seconds on one core).
    "test": ModelPreset(
        name="test",
        num_frames=4,
        image_size=32,
        teacher=_TEST_SWIN,
        student=_TEST_SWIN,
        layout={"hidden_size": 32, "num_attention_heads": 2, "num_spatial_layers": 1, "num_temporal_layers": 1,
                "intermediate_size": 64, "hidden_dropout": 0.0},
        audio=_TINY_AUDIO,
        description="unit tests: 4 frames of 32x32, embed 16, one block per stage",
    ),
    # The default main job on 2 CPU cores (mini-kitchens): teachers a little wider than the student.
    "tiny": ModelPreset(
        name="tiny",
        num_frames=8,
        image_size=48,
        teacher={**_TINY_SWIN_COMMON, "embed_dim": 32, "depths": (1, 1, 2, 1), "num_heads": (1, 2, 4, 8),
                 "window_size": (4, 6, 6)},
        student={**_TINY_SWIN_COMMON, "embed_dim": 24, "depths": (1, 1, 2, 1), "num_heads": (1, 2, 4, 8),
                 "window_size": (4, 6, 6)},
        layout={"hidden_size": 64, "num_attention_heads": 4, "num_spatial_layers": 2, "num_temporal_layers": 2,
                "intermediate_size": 128, "hidden_dropout": 0.1},
        audio=_TINY_AUDIO,
        description="mini-kitchens on CPU: 8 frames of 48x48, teachers embed 32, student embed 24",
    ),
    # The paper's sizes: Video Swin-T (``SwinModel``, ``src/modelling/models.py``) and the STLT of the
    # authors' code (``src/modelling/hand_models.py``).
    "base": ModelPreset(
        name="base",
        num_frames=16,
        image_size=224,
        teacher=_VIDEO_SWIN_T,
        student=_VIDEO_SWIN_T,
        layout={"hidden_size": 768, "num_attention_heads": 8, "num_spatial_layers": 6, "num_temporal_layers": 6,
                "intermediate_size": 3072, "hidden_dropout": 0.1},
        description="paper sizes: Video Swin-T teachers and student (16x224x224), STLT base",
    ),
}

#: Preset used when ``--preset`` is not given, per dataset.
DEFAULT_PRESET_BY_DATASET: dict[str, str] = {
    "mini-kitchens": "tiny",
    "epic-kitchens-100": "base",
    "something-something-v2": "base",
    "something-else": "base",
}


def get_preset(name: str) -> ModelPreset:
    """Return the preset called ``name``.

    Raises:
        ValueError: ``name`` is not a known preset (the message lists the known ones).
    """
    if name not in PRESETS:
        raise ValueError(f"unknown model preset {name!r}: expected one of {sorted(PRESETS)}")
    return PRESETS[name]


def video_swin_config_kwargs(
    preset: ModelPreset,
    role: str,
    modality: str,
    heads: Mapping[str, int],
    head_labels: Mapping[str, list[str]] | None = None,
    num_frames: int | None = None,
    image_size: int | None = None,
) -> dict[str, Any]:
    """Keyword arguments of a ``VideoSwinConfig`` for one role of the pipeline.

    Args:
        preset: The model preset.
        role: ``"teacher"`` or ``"student"`` (the baselines use the student's architecture).
        modality: ``"rgb"``, ``"flow"`` or ``"audio"``.
        heads: Ordered ``{head: num_classes}`` of the dataset.
        head_labels: Class names per head.
        num_frames: Override of the preset's frame count.
        image_size: Override of the preset's frame size.
    """
    if role not in ("teacher", "student"):
        raise ValueError(f"role must be 'teacher' or 'student', got {role!r}")
    arch = dict(preset.teacher if role == "teacher" else preset.student)
    kwargs: dict[str, Any] = {
        **arch,
        "modality": modality,
        "num_frames": int(num_frames or preset.num_frames),
        "image_size": int(image_size or preset.image_size),
        "heads": dict(heads),
    }
    if head_labels:
        kwargs["head_labels"] = {head: list(names) for head, names in head_labels.items() if head in heads}
    return kwargs


def stlt_config_kwargs(
    preset: ModelPreset,
    heads: Mapping[str, int],
    head_labels: Mapping[str, list[str]] | None = None,
    num_frames: int | None = None,
) -> dict[str, Any]:
    """Keyword arguments of an ``STLTConfig`` (the layout teacher) for the preset and the dataset's heads."""
    kwargs: dict[str, Any] = {
        **dict(preset.layout),
        "num_frames": int(num_frames or preset.num_frames),
        "heads": dict(heads),
    }
    if head_labels:
        kwargs["head_labels"] = {head: list(names) for head, names in head_labels.items() if head in heads}
    return kwargs


__all__ = [
    "DEFAULT_PRESET_BY_DATASET",
    "ModelPreset",
    "PRESETS",
    "get_preset",
    "stlt_config_kwargs",
    "video_swin_config_kwargs",
]
