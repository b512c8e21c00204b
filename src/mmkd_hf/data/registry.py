"""Dataset names -> builder, reader and defaults; the ``load_dataset`` entry point."""

from __future__ import annotations

import importlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import datasets

from .transforms import (
    AudioConfig,
    AugmentationConfig,
    LayoutConfig,
    MultimodalTransform,
    PipelineConfig,
    SampleReader,
)

__all__ = ["DATASETS", "load_dataset", "build_metadata", "make_reader", "make_transform", "dataset_card_info"]


@dataclass(frozen=True)
class DatasetSpec:
    module: str
    builder: str
    reader: str
    sampler: str
    stride: int
    files_fingerprint: str  # name of the module function that lists the annotation files


DATASETS: dict[str, DatasetSpec] = {
    "epic-kitchens-100": DatasetSpec("epic_kitchens_100", "EpicKitchens100", "EpicKitchensReader", "stride", 8,
                                     "annotation_files"),
    "mini-kitchens": DatasetSpec("epic_kitchens_100", "EpicKitchens100", "EpicKitchensReader", "uniform", 2,
                                 "annotation_files"),
    "something-something-v2": DatasetSpec("something_something_v2", "SomethingSomethingV2", "SomethingReader",
                                          "uniform", 2, "annotation_files"),
    "something-else": DatasetSpec("something_else", "SomethingElse", "SomethingElseReader", "uniform", 2,
                                  "annotation_files"),
}

DEFAULT_MINI_KITCHENS_DIR = Path(os.environ.get("MMKD_HF_HOME", Path.home() / ".cache" / "mmkd_hf")) / "mini-kitchens"


def _spec(name: str) -> DatasetSpec:
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; expected one of {sorted(DATASETS)}")
    return DATASETS[name]


def _module(spec: DatasetSpec):
    return importlib.import_module(f"mmkd_hf.data.builders.{spec.module}")


def dataset_card_info(name: str) -> dict[str, str]:
    """Description/citation/licence shared by the builder's ``DatasetInfo`` and the hub card."""
    if name == "mini-kitchens":
        from .builders import MINI_KITCHENS_CARD_INFO

        return dict(MINI_KITCHENS_CARD_INFO)
    return dict(_module(_spec(name)).CARD_INFO)


def _resolve_data_dir(name: str, data_dir, seed: int) -> Path:
    if name == "mini-kitchens":
        target = Path(data_dir) if data_dir else DEFAULT_MINI_KITCHENS_DIR
        # helper D's generator, imported lazily
        from .builders.mini_kitchens import ensure_mini_kitchens, generation_request, read_marker

        marker = read_marker(target)
        if marker is not None:
            # a generation: re-check it against the current generator (FORMAT_VERSION, parameters) with its
            # own seed and sizes, so stale content is regenerated instead of silently reused. ``seed`` is the
            # per-item RNG seed of load_dataset, not the generation's: it must not replace the data.
            gen_seed, gen_config = generation_request(marker)
            target = Path(ensure_mini_kitchens(target, gen_seed, config=gen_config))
        elif not (target.exists() and any(target.glob("EPIC_100_*.csv"))):
            target = Path(ensure_mini_kitchens(target, seed))
        return target.resolve()
    if data_dir is None:
        raise ValueError(f"load_dataset({name!r}) needs data_dir=")
    path = Path(data_dir).expanduser()
    if not path.is_dir():
        raise FileNotFoundError(f"data_dir {path} does not exist")
    return path.resolve()


def build_metadata(name: str, data_dir=None, cache_dir=None, seed: int = 0) -> datasets.DatasetDict:
    """Prepare (or reuse from the cache) every split's metadata of dataset ``name``."""
    from .builders.common import files_fingerprint

    spec = _spec(name)
    module = _module(spec)
    root = _resolve_data_dir(name, data_dir, seed)
    files = getattr(module, spec.files_fingerprint)(root)
    fingerprint = files_fingerprint(files.values() if isinstance(files, dict) else files, extra=name)
    builder_cls = getattr(module, spec.builder)
    builder = builder_cls(cache_dir=None if cache_dir is None else str(cache_dir), data_dir=str(root),
                          hash=fingerprint)
    try:
        builder.download_and_prepare()
    except datasets.exceptions.DatasetGenerationError as exc:  # surface our clear error, not the wrapper
        cause = exc.__cause__
        if isinstance(cause, (ValueError, FileNotFoundError)):
            raise cause from None
        raise
    return builder.as_dataset()


def make_reader(name: str, dataset: datasets.Dataset) -> SampleReader:
    """The dataset's reader, configured from the dataset's features (class counts)."""
    spec = _spec(name)
    module = _module(spec)
    return getattr(module, spec.reader).from_features(dataset.features) if hasattr(
        getattr(module, spec.reader), "from_features") else getattr(module, spec.reader)()


def make_transform(
    name: str,
    dataset: datasets.Dataset,
    config: PipelineConfig,
) -> MultimodalTransform:
    return MultimodalTransform(make_reader(name, dataset), config, source=dataset)


def load_dataset(
    name: str,
    data_dir: str | os.PathLike | None = None,
    split: str = "train",
    modalities: Sequence[str] = ("rgb",),
    cache_dir: str | os.PathLike | None = None,
    num_frames: int = 16,
    train: bool | None = None,
    sampler: str | None = None,
    stride: int | None = None,
    num_clips: int = 1,
    num_crops: int = 1,
    crop_size: int = 224,
    augmentation: AugmentationConfig | None = None,
    audio: AudioConfig | None = None,
    layout: LayoutConfig | None = None,
    seed: int = 0,
    skip_bad_samples: bool = False,
    skip_log_path: str | os.PathLike | None = None,
    decode: bool = True,
    frames_dtype: str = "float32",
) -> datasets.Dataset:
    """Load one split of a dataset as Arrow-backed metadata with a lazy decoding transform.

    Args:
        name: ``"epic-kitchens-100"``, ``"mini-kitchens"``, ``"something-something-v2"`` or ``"something-else"``.
        data_dir: the dataset folder (official layout). For ``"mini-kitchens"`` it is generated there
            (default ``~/.cache/mmkd_hf/mini-kitchens``) when missing.
        split: ``"train"``, ``"validation"`` or ``"test"`` (EPIC test has no labels).
        modalities: subset of ``("rgb", "flow", "audio", "layout")``.
        cache_dir: ``datasets`` cache for the prepared metadata.
        num_frames: frames per clip (T).
        train: training-mode sampling/augmentation; defaults to ``split == "train"``.
        sampler: ``"uniform"`` or ``"stride"``; defaults per dataset (EPIC stride 8, others uniform).
        stride: frame interval of the stride sampler.
        num_clips, num_crops: evaluation views (V = clips x crops, clip-major).
        crop_size: output H = W (ignored when ``augmentation`` is given).
        augmentation, audio, layout: full configs (defaults: spec §4.5 / §3.3 / §4.7).
        seed: base seed of the per-item RNG.
        skip_bad_samples: replace a bad sample by the next good one and record it instead of raising.
        skip_log_path: JSONL file where skipped samples are appended (shared by DataLoader workers).
        decode: False returns the metadata only (no transform).
        frames_dtype: ``"float32"`` (``pixel_values`` / ``flow_values`` in [0, 1]) or ``"uint8"`` (0-255: a
            quarter of the bytes through DataLoader workers and to the accelerator; the package's models
            accept both and divide uint8 by 255 themselves).

    Returns:
        ``datasets.Dataset`` whose items are batch-contract dicts (see ``docs/design.md``); the transform
        is available as ``dataset.mmkd_transform`` for ``skip_report()``.
    """
    spec = _spec(name)
    splits = build_metadata(name, data_dir, cache_dir, seed)
    if split not in splits:
        raise ValueError(f"split {split!r} not available for {name}; found {sorted(splits)}")
    dataset = splits[split]
    if not decode:
        return dataset
    is_train = (split == "train") if train is None else bool(train)
    aug = augmentation or AugmentationConfig(crop_size=crop_size, num_crops=num_crops)
    config = PipelineConfig(
        modalities=tuple(modalities), train=is_train, num_frames=num_frames, sampler=sampler or spec.sampler,
        stride=stride or spec.stride, num_clips=num_clips, augmentation=aug, audio=audio or AudioConfig(),
        layout=layout or LayoutConfig(), seed=seed, skip_bad_samples=skip_bad_samples,
        skip_log_path=None if skip_log_path is None else str(skip_log_path), frames_dtype=frames_dtype)
    transform = make_transform(name, dataset, config)
    transformed = dataset.with_transform(transform)
    transformed.mmkd_transform = transform
    return transformed


_CARD_CONTEXT = {
    "epic-kitchens-100": {
        "modalities": ["rgb", "flow", "audio", "layout"],
        "layout": "`EPIC_100_{train,validation}.csv`, `EPIC_100_test_timestamps.csv`, class CSVs and "
                  "`EPIC_100_video_info.csv` at the root (or in `annotations/`); per participant "
                  "`<P>/rgb_frames/<video>/frame_%010d.jpg` (or the `.tar`, or `<P>/videos/<video>.MP4`), "
                  "`<P>/flow_frames/<video>/{u,v}/frame_%010d.jpg` (half rate), `<P>/videos/<video>.wav` or the "
                  "MP4 audio track, `<P>/hand-objects/<video>.pkl`.",
        "splits_note": "The test split has no labels (verb/noun/action = -1). `unseen_participant`, `tail_verb` "
                       "and `tail_noun` flag the official evaluation subsets.",
        "license_note": "EPIC-KITCHENS-100 is for non-commercial use; the annotations are from "
                        "github.com/epic-kitchens/epic-kitchens-100-annotations.",
    },
    "mini-kitchens": {
        "modalities": ["rgb", "flow", "audio", "layout"],
        "layout": "Exactly the EPIC-KITCHENS-100 layout (read by the same builder).",
        "splits_note": "One participant is held out as unseen.",
        "license_note": "Synthetic data generated by mmkd-hf; contains no third-party content.",
    },
    "something-something-v2": {
        "modalities": ["rgb"],
        "layout": "`something-something-v2-{train,validation,test}.json` and `something-something-v2-labels.json`; "
                  "videos `videos/<id>.webm` or frame folders `frames/<id>/%04d.jpg` (1-based).",
        "splits_note": "The test list has ids only (no labels).",
        "license_note": "Obtain the videos from Qualcomm under their licence; this card does not redistribute them.",
    },
    "something-else": {
        "modalities": ["rgb", "layout"],
        "layout": "`train.json`/`validation.json` (compositional split, or `dataset_splits/<variant>/`), "
                  "`labels.json`, `bounding_box_annotations.json` (or `bounding_box_smthsmth_part*.json`), "
                  "frames `frames/<id>/%04d.jpg`.",
        "splits_note": "Compositional split: verb-noun combinations of train and validation do not overlap.",
        "license_note": "Box annotations under MIT; the frames are Something-Something v2 content (research only).",
    },
}


def render_dataset_card(name: str, splits: datasets.DatasetDict | None = None, template_path=None):
    """A ``huggingface_hub.DatasetCard`` from ``hub_cards/dataset_card_template.md`` for ``name``.

    Args:
        name: dataset name (see :data:`DATASETS`).
        splits: prepared splits (row counts and features); None renders without them.
        template_path: template file; defaults to ``hub_cards/dataset_card_template.md`` (shipped in the package as
            ``mmkd_hf/hub/templates/``).
    """
    from huggingface_hub import DatasetCard, DatasetCardData

    info = dataset_card_info(name)
    if template_path is None:
        template_path = Path(__file__).resolve().parents[1] / "hub" / "templates" / "dataset_card_template.md"
    first = next(iter(splits.values())) if splits else None
    data = DatasetCardData(license=info["license"], pretty_name=info["pretty_name"],
                           task_categories=["video-classification"], tags=["egocentric", "multimodal", "mmkd-hf"])
    return DatasetCard.from_template(
        data, template_path=str(template_path), dataset_name=name,
        splits={k: v.num_rows for k, v in (splits or {}).items()},
        features={k: str(v) for k, v in first.features.items()} if first is not None else {},
        **_CARD_CONTEXT[name], **info)
