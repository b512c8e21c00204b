"""Dataset names -> builder, reader and defaults; the ``load_dataset`` entry point."""

from __future__ import annotations

import importlib
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import datasets

from .builders import MINI_KITCHENS_CARD_INFO, MINI_KITCHENS_FORMAT_VERSION, read_mini_kitchens_marker
from .builders.common import files_fingerprint
from .configs import TOLERABLE_MODALITIES, AudioConfig, AugmentationConfig, LayoutConfig, TransformConfig
from .errors import DataFormatError
from .hub_dataset import exported_source, open_exported
from .source_check import SourceReport, check_sources
from .transforms import MultimodalTransform, SampleReader

logger = logging.getLogger(__name__)

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


def _spec(name: str) -> DatasetSpec:
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; expected one of {sorted(DATASETS)}")
    return DATASETS[name]


def _module(spec: DatasetSpec):
    return importlib.import_module(f"mmkd_hf.data.builders.{spec.module}")


def dataset_card_info(name: str) -> dict[str, str]:
    """Description/citation/licence shared by the builder's ``DatasetInfo`` and the hub card."""
    if name == "mini-kitchens":
        return dict(MINI_KITCHENS_CARD_INFO)
    return dict(_module(_spec(name)).CARD_INFO)


def _check_mini_kitchens(path: Path) -> None:
    """Raise a one-line :class:`DataFormatError` unless ``path`` holds a current mini-kitchens generation (its
    ``.complete`` marker at this version's format) or, without a marker, a folder in the EPIC layout (a copy or
    a hand-made variant). Reading never generates: the error says how to."""
    make = f"`mmkd-hf make-mini-dataset --out {path}` (or run train.py, whose prepare stage generates it)"
    marker = read_mini_kitchens_marker(path)
    if marker is None:
        if path.is_dir() and any(path.glob("EPIC_100_*.csv")):
            return
        raise DataFormatError(path, f"no complete mini-kitchens dataset here; generate it with {make}")
    version = marker.get("format_version")
    if version != MINI_KITCHENS_FORMAT_VERSION:
        raise DataFormatError(path, f"stale mini-kitchens generation (format {version}, this version reads format "
                                    f"{MINI_KITCHENS_FORMAT_VERSION}); regenerate it with {make}")


def _resolve_data_dir(name: str, data_dir) -> Path:
    if data_dir is None:
        hint = " (a folder made by `mmkd-hf make-mini-dataset --out DIR`)" if name == "mini-kitchens" else ""
        raise ValueError(f"load_dataset({name!r}) needs data_dir={hint}")
    path = Path(data_dir).expanduser()
    if name == "mini-kitchens":
        _check_mini_kitchens(path)
    elif not path.is_dir():
        raise FileNotFoundError(f"data_dir {path} does not exist")
    return path.resolve()


def build_metadata(name: str, data_dir=None, cache_dir=None, annotations_dir=None) -> datasets.DatasetDict:
    """Prepare (or reuse from the cache) every split's metadata of dataset ``name``.

    ``annotations_dir``: the annotation files' folder when it is not inside ``data_dir`` (e.g. a clone of
    github.com/epic-kitchens/epic-kitchens-100-annotations beside the EPIC-KITCHENS-100 download)."""
    spec = _spec(name)
    module = _module(spec)
    root = _resolve_data_dir(name, data_dir)
    if annotations_dir is not None:
        annotations_dir = str(Path(annotations_dir).expanduser().resolve())
    files = getattr(module, spec.files_fingerprint)(root, annotations_dir)  # raises the layout's one-line errors
    fingerprint = files_fingerprint(files.values() if isinstance(files, dict) else files, extra=name)
    builder_cls = getattr(module, spec.builder)
    extra = {} if annotations_dir is None else {"annotations_dir": annotations_dir}
    builder = builder_cls(cache_dir=None if cache_dir is None else str(cache_dir), data_dir=str(root),
                          hash=fingerprint, **extra)
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
    config: TransformConfig,
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
    annotations_dir: str | os.PathLike | None = None,
    tolerate_missing: Sequence[str] | None = None,
    streaming: bool = False,
) -> datasets.Dataset:
    """Load one split of a dataset as Arrow-backed metadata with a lazy decoding transform.

    Args:
        name: ``"epic-kitchens-100"``, ``"mini-kitchens"``, ``"something-something-v2"`` or ``"something-else"``.
        data_dir: the dataset folder as downloaded: for EPIC-KITCHENS-100 the folder the official downloader wrote
            (holding ``EPIC-KITCHENS/<P>/``) or the folder of the participant folders. ``"mini-kitchens"`` is only
            read: generate it first with ``mmkd-hf make-mini-dataset --out DIR`` (train.py's prepare stage does it
            for its runs).
        split: ``"train"``, ``"validation"`` or ``"test"`` (EPIC test has no labels).
        modalities: subset of ``("rgb", "flow", "audio", "layout")``.
        cache_dir: ``datasets`` cache for the prepared metadata.
        num_frames: frames per clip (T).
        train: training-mode sampling/augmentation; defaults to ``split == "train"``.
        sampler: ``"uniform"`` or ``"stride"``; defaults per dataset (EPIC stride 8, others uniform).
        stride: frame interval of the stride sampler.
        num_clips, num_crops: evaluation views (V = clips x crops, clip-major).
        crop_size: output H = W (ignored when ``augmentation`` is given).
        augmentation, audio, layout: full configs (defaults: those of the authors' code,
            github.com/gorjanradevski/multimodal-distillation: src/utils/data_utils.py,
            src/modelling/dataset_audio.py, src/modelling/dataset_layout.py).
        seed: base seed of the per-item RNG.
        skip_bad_samples: drop the segments whose files are missing (see below) and replace a sample that fails
            to decode by the next good one, recording it, instead of raising.
        skip_log_path: JSONL file where skipped samples are appended (shared by DataLoader workers).
        decode: False returns the metadata only (no transform).
        frames_dtype: ``"float32"`` (``pixel_values`` / ``flow_values`` in [0, 1]) or ``"uint8"`` (0-255: a
            quarter of the bytes through DataLoader workers and to the accelerator; the package's models
            accept both and divide uint8 by 255 themselves).
        annotations_dir: the annotation files' folder when it is not inside ``data_dir`` (EPIC-KITCHENS-100: a clone
            of github.com/epic-kitchens/epic-kitchens-100-annotations; default: ``data_dir``,
            ``data_dir/annotations`` or ``data_dir/epic-kitchens-100-annotations``).
        tolerate_missing: modalities (of ``("audio", "layout")``) a segment may lack: it is kept, its inputs of that
            modality are zero-filled and ``item["modality_present"][modality]`` is False, so a teacher ensemble
            leaves that teacher out for it (real EPIC videos lack audio or detections here and there). Default:
            the requested audio and layout when more than one modality is requested (a distillation or ensemble
            load), none for a single-modality load (training one teacher on zero-filled inputs would be wrong).
        streaming: read the split as a ``datasets.IterableDataset`` (exported datasets only, see below).

    ``data_dir`` may also be a dataset written by ``mmkd-hf export-dataset``: its folder (recognised by its card) or
    its Hub copy, ``hf://datasets/<owner>/<name>[@<revision>]``. The items are then those of the folder it was
    exported from (same frames, audio samples, boxes, labels and per-item augmentation); see
    :mod:`mmkd_hf.data.hub_dataset`.

    Before returning (unless ``decode=False``), every segment's files are checked for every requested modality
    (frame folder, ``.tar`` or video reaching the segment's last frame, detections, audio source), a few file-system
    calls per video: missing files raise one :class:`DataFormatError` with the count per modality, the first videos
    and the expected paths; with ``skip_bad_samples`` those segments are dropped instead (logged, and reported as
    ``dataset.mmkd_source_report``, a :class:`~mmkd_hf.data.source_check.SourceReport`, or None). Missing files of a
    tolerated modality neither raise nor drop: they are logged and listed in the report's ``tolerated_missing``.

    Returns:
        ``datasets.Dataset`` whose items are batch-contract dicts (see ``docs/design.md``); the transform
        is available as ``dataset.mmkd_transform`` for ``skip_report()``.
    """
    spec = _spec(name)
    exported = exported_source(data_dir)
    if exported is not None:  # written by `mmkd-hf export-dataset` (its folder or its Hub copy)
        dataset, reader = open_exported(name, exported, split, streaming=streaming, cache_dir=cache_dir)
    elif streaming:
        raise ValueError(f"streaming=True reads datasets written by `mmkd-hf export-dataset`; {data_dir} is a "
                         "dataset folder (read it without streaming, or export it)")
    else:
        splits = build_metadata(name, data_dir, cache_dir, annotations_dir=annotations_dir)
        if split not in splits:
            raise ValueError(f"split {split!r} not available for {name}; found {sorted(splits)}")
        dataset = splits[split]
        reader = make_reader(name, dataset)
    if not decode:
        return dataset
    if tolerate_missing is None:
        tolerate_missing = [m for m in TOLERABLE_MODALITIES if m in modalities] if len(set(modalities)) > 1 else []
    tolerate = tuple(m for m in tolerate_missing if m in modalities)
    report = None if exported is not None else check_sources(reader, dataset, modalities, tolerate=tolerate)
    if report is not None and report.missing:
        dataset = _drop_missing(dataset, report, split, skip_bad_samples)
    if report is not None and report.tolerated_missing:
        logger.warning("kept %d of %d %s segments without some of their %s files (marked absent; the other "
                       "modalities' teachers teach them): %s", report.marked_count, report.total, split,
                       "/".join(report.tolerated_per_modality()), report.summary())
    is_train = (split == "train") if train is None else bool(train)
    aug = augmentation or AugmentationConfig(crop_size=crop_size, num_crops=num_crops)
    config = TransformConfig(
        modalities=tuple(modalities), train=is_train, num_frames=num_frames, sampler=sampler or spec.sampler,
        stride=stride or spec.stride, num_clips=num_clips, augmentation=aug, audio=audio or AudioConfig(),
        layout=layout or LayoutConfig(), seed=seed, skip_bad_samples=skip_bad_samples,
        skip_log_path=None if skip_log_path is None else str(skip_log_path), frames_dtype=frames_dtype,
        tolerate_missing=tolerate)
    transform = MultimodalTransform(reader, config, source=None if streaming else dataset)
    if streaming:
        transformed = dataset.map(transform, batched=True, batch_size=1, remove_columns=dataset.column_names)
    else:
        transformed = dataset.with_transform(transform)
    transformed.mmkd_transform = transform
    transformed.mmkd_source_report = report
    return transformed


def _drop_missing(dataset: datasets.Dataset, report: SourceReport, split: str, skip: bool) -> datasets.Dataset:
    """Raise the report as one error, or (``skip``) drop its segments and log how many."""
    if not skip:
        raise DataFormatError(report.root, f"split {split!r}: {report.summary()}; put the files there or pass "
                                           "skip_bad_samples=True to drop these segments")
    if report.count == len(dataset):
        raise DataFormatError(report.root, f"split {split!r}: every segment lacks its files, nothing left to read: "
                                           f"{report.summary()}")
    logger.warning("dropped %d of %d %s segments whose files are missing: %s", report.count, len(dataset), split,
                   report.summary())
    bad = set(report.bad_rows)
    return dataset.select([i for i in range(len(dataset)) if i not in bad])

