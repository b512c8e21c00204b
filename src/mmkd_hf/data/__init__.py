"""Data layer: ``datasets`` builders of segment metadata, lazy multimodal decoding, sampling, collation.

Entry point::

    from mmkd_hf.data import load_dataset, MultimodalCollator
    ds = load_dataset("epic-kitchens-100", data_dir=..., split="validation", modalities=["rgb", "flow", "audio"])
    batch = MultimodalCollator()([ds[0], ds[1]])

See ``docs/design.md`` for the batch contract.
"""

from .collate import MultimodalCollator
from .errors import DataFormatError, FileDecodeError, SampleDecodeError
from .hub_dataset import ExportedDatasetError, load_exported
from .registry import (
    DATASETS,
    build_metadata,
    dataset_card_info,
    load_dataset,
    make_reader,
    make_transform,
)
from .run_settings import RunSettings
from .augmentation import apply_to_frames, color_jitter_uint8, sample_augmentation
from .configs import (
    FRAMES_DTYPES,
    MODALITIES,
    AudioConfig,
    AugmentationConfig,
    AugmentationParams,
    LayoutConfig,
    TransformConfig,
)
from .memory import batch_buffer, dataloader_worker_init, keep_freed_memory
from .transforms import MultimodalTransform, SampleReader, with_overrides

__all__ = [
    "load_dataset",
    "load_exported",
    "ExportedDatasetError",
    "RunSettings",
    "build_metadata",
    "make_reader",
    "make_transform",
    "dataset_card_info",
    "DATASETS",
    "MultimodalCollator",
    "MultimodalTransform",
    "SampleReader",
    "TransformConfig",
    "with_overrides",
    "MODALITIES",
    "FRAMES_DTYPES",
    "AugmentationConfig",
    "AugmentationParams",
    "AudioConfig",
    "LayoutConfig",
    "sample_augmentation",
    "apply_to_frames",
    "color_jitter_uint8",
    "batch_buffer",
    "dataloader_worker_init",
    "keep_freed_memory",
    "SampleDecodeError",
    "DataFormatError",
    "FileDecodeError",
]
