"""Settings of the per-item multimodal transform: augmentation, audio, layout and the transform as a whole.

Defaults follow the authors' public code (github.com/gorjanradevski/multimodal-distillation):
augmentation from ``src/utils/data_utils.py``, audio from ``src/modelling/dataset_audio.py``, boxes from
``src/modelling/dataset_layout.py``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

__all__ = [
    "MODALITIES",
    "TOLERABLE_MODALITIES",
    "FRAMES_DTYPES",
    "PAD_BOX",
    "AugmentationConfig",
    "AugmentationParams",
    "AudioConfig",
    "LayoutConfig",
    "TransformConfig",
]

MODALITIES = ("rgb", "flow", "audio", "layout")
#: modalities a sample may lack (``TransformConfig.tolerate_missing``): the sample is kept, marked absent in
#: ``modality_present`` and zero-filled, and the ensemble leaves that teacher out for it
TOLERABLE_MODALITIES = ("audio", "layout")
#: the dtypes ``pixel_values`` / ``flow_values`` can be delivered in (``TransformConfig.frames_dtype``)
FRAMES_DTYPES = {"float32": torch.float32, "uint8": torch.uint8}
PAD_BOX = (0.0, 0.0, 1e-9, 1e-9)  # the original's padding box (src/modelling/dataset_layout.py)

@dataclass(frozen=True)
class AugmentationConfig:
    """Spatial/colour augmentation settings (train defaults of the original ``src/utils/data_utils.py``)."""

    crop_size: int = 224
    scale_range: tuple[float, float] = (1.15, 1.43)
    color_jitter: bool = True
    brightness: tuple[float, float] = (0.75, 1.25)
    contrast: tuple[float, float] = (0.75, 1.25)
    saturation: tuple[float, float] = (0.75, 1.25)
    hue: tuple[float, float] = (-0.1, 0.1)
    horizontal_flip: bool = False
    flip_probability: float = 0.5
    num_crops: int = 1  # evaluation only: 1 (centre) or 3 (left, centre, right)

    def __post_init__(self):
        if self.num_crops not in (1, 3):
            raise ValueError(f"num_crops must be 1 or 3, got {self.num_crops}")
        if self.crop_size < 1:
            raise ValueError(f"crop_size must be >= 1, got {self.crop_size}")


@dataclass(frozen=True)
class AugmentationParams:
    """Geometry and colour parameters drawn once per item.

    Attributes:
        frame_size: (H, W) the parameters were drawn for (aspect ratio reference).
        resize: (h, w) after resizing the short side.
        crops: list of (top, left, height, width) in the resized frame (1 in training, C in evaluation).
        flip: horizontal flip.
        jitter: None or (order, brightness, contrast, saturation, hue) with order a permutation of 0..3.
    """

    frame_size: tuple[int, int]
    resize: tuple[int, int]
    crops: tuple[tuple[int, int, int, int], ...]
    flip: bool = False
    jitter: tuple[tuple[int, ...], float, float, float, float] | None = None


@dataclass(frozen=True)
class AudioConfig:
    """Log-mel settings (the original ``src/modelling/dataset_audio.py``, with an explicit sample rate). W = 1 + floor(window * sr / hop)."""

    sample_rate: int = 16000
    window_seconds: float = 1.116
    n_fft: int = 1024
    win_length: int = 160
    hop_length: int = 80
    n_mels: int = 128
    output_size: tuple[int, int] | None = (224, 224)  # see resize_spectrogram; None keeps F x W
    pad_outside_segment: bool = True  # zero the waveform outside the action segment (original)
    time_mask: int = 0  # train-time: max masked columns (0 = off; the original used 80, p = 0.5)
    freq_mask: int = 0  # train-time: max masked mel bins (0 = off; the original used 80)
    mask_probability: float = 0.5


@dataclass(frozen=True)
class LayoutConfig:
    """Box settings: padding size, detector thresholds (EPIC), whether boxes follow the crop."""

    max_boxes: int = 14
    hand_threshold: float = 0.5
    object_threshold: float = 0.5
    follow_crop: bool = True


@dataclass(frozen=True)
class TransformConfig:
    """Everything the transform needs besides the dataset reader."""

    modalities: tuple[str, ...] = ("rgb",)
    train: bool = False
    num_frames: int = 16
    sampler: str = "uniform"
    stride: int = 2
    num_clips: int = 1
    augmentation: AugmentationConfig = field(default_factory=AugmentationConfig)
    audio: AudioConfig = field(default_factory=AudioConfig)
    layout: LayoutConfig = field(default_factory=LayoutConfig)
    seed: int = 0
    skip_bad_samples: bool = False
    max_replacements: int = 10
    skip_log_path: str | None = None
    frames_dtype: str = "float32"  # "float32" (0-1) or "uint8" (0-255) for pixel_values and flow_values
    #: modalities whose missing or unreadable source marks the sample (``modality_present``) instead of failing it
    tolerate_missing: tuple[str, ...] = ()

    def __post_init__(self):
        unknown = [m for m in self.modalities if m not in MODALITIES]
        if unknown or not self.modalities:
            raise ValueError(f"modalities must be a non-empty subset of {MODALITIES}, got {self.modalities}")
        intolerable = [m for m in self.tolerate_missing if m not in TOLERABLE_MODALITIES]
        if intolerable:
            raise ValueError(f"tolerate_missing must be a subset of {TOLERABLE_MODALITIES}, got {self.tolerate_missing}")
        if self.frames_dtype not in FRAMES_DTYPES:
            raise ValueError(f"frames_dtype must be one of {sorted(FRAMES_DTYPES)}, got {self.frames_dtype!r}")

    @property
    def torch_frames_dtype(self) -> torch.dtype:
        return FRAMES_DTYPES[self.frames_dtype]

    @property
    def num_views(self) -> int:
        if self.train:
            return 1
        return self.num_clips * self.augmentation.num_crops

