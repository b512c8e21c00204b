"""Data layer: ``datasets`` builders of segment metadata, lazy multimodal decoding, sampling, collation.

Entry point::

    from mmkd_hf.data import load_dataset, MultimodalCollator
    ds = load_dataset("epic-kitchens-100", data_dir=..., split="validation", modalities=["rgb", "flow", "audio"])
    batch = MultimodalCollator()([ds[0], ds[1]])

See ``docs/design.md`` for the batch contract.
"""

from .collate import MultimodalCollator
from .errors import DataFormatError, FileDecodeError, SampleDecodeError
from .registry import (
    DATASETS,
    build_metadata,
    dataset_card_info,
    load_dataset,
    make_reader,
    make_transform,
    render_dataset_card,
)
from .transforms import (
    AudioConfig,
    AugmentationConfig,
    AugmentationParams,
    LayoutConfig,
    MultimodalTransform,
    PipelineConfig,
    sample_augmentation,
)

__all__ = [
    "load_dataset",
    "build_metadata",
    "make_reader",
    "make_transform",
    "dataset_card_info",
    "render_dataset_card",
    "DATASETS",
    "MultimodalCollator",
    "MultimodalTransform",
    "PipelineConfig",
    "AugmentationConfig",
    "AugmentationParams",
    "AudioConfig",
    "LayoutConfig",
    "sample_augmentation",
    "SampleDecodeError",
    "DataFormatError",
    "FileDecodeError",
]
