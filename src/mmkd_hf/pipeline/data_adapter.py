"""The run's data, over ``mmkd_hf.data``: datasets per split and modalities, heads, per-item seeding.

The resolved data settings (:class:`~mmkd_hf.data.RunSettings`) are made here once from the configuration; the
pipeline loads every dataset through them and saves them into the run folder, where the Space, ``mmkd-hf push`` and
``mmkd-hf evaluate`` read them back.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from typing import Any

import datasets
import numpy as np
import torch

from ..data import AudioConfig, MultimodalCollator, RunSettings, load_dataset
from ..data.errors import DataFormatError
from ..data.hub_dataset import ExportedDatasetError, exported_fingerprint, exported_source, hub_dataset_source
from ..synthetic import MINI_KITCHENS_SCALES, ensure_mini_kitchens
from ..synthetic.narration_noise import parse_narration_noise
from .arguments import PipelineConfig
from .run_folder import SKIP_LOG_FILE
from .runtime import is_main, isolated_rng


def find_transforms(dataset) -> list[Any]:
    """The ``MultimodalTransform``s behind a dataset of ``mmkd_hf.data`` wrapped in ``Subset`` / pipeline wrappers."""
    found, stack = [], [dataset]
    while stack:
        current = stack.pop()
        if current is None:
            continue
        transform = getattr(current, "mmkd_transform", None)
        if transform is not None:
            found.append(transform)
            continue
        stack.append(getattr(current, "dataset", None))
        stack.extend(getattr(current, "datasets", {}).values() if isinstance(getattr(current, "datasets", None), dict)
                     else getattr(current, "datasets", None) or [])
    return found


class EpochSeededDataset(torch.utils.data.Dataset):
    """Wrap a dataset so that item ``i`` of epoch ``e`` is drawn with its own RNG seed derived from (seed, e, i).

    The Trainer's data order is seeded too, so with this wrapper a run is reproducible sample by sample, and a
    run resumed mid-epoch sees exactly the batches (and augmentations) of the uninterrupted run.

    The epoch lives in shared memory: persistent DataLoader workers (which keep their copy of the dataset from one
    epoch to the next) read the epoch the main process set, and pass it on to the wrapped dataset's ``set_epoch``.
    """

    def __init__(self, dataset, seed: int):
        self.dataset = dataset
        self.seed = int(seed)
        self._shared_epoch = torch.zeros((), dtype=torch.int64).share_memory_()
        self._seen_epoch = 0

    @property
    def epoch(self) -> int:
        return int(self._shared_epoch)

    def set_epoch(self, epoch: int) -> None:
        self._shared_epoch.fill_(int(epoch))
        self._seen_epoch = int(epoch)
        if hasattr(self.dataset, "set_epoch"):
            self.dataset.set_epoch(epoch)

    def _sync_epoch(self) -> None:
        """Give the wrapped dataset the shared epoch when it changed (in a persistent worker: since the last item)."""
        epoch = self.epoch
        if epoch != self._seen_epoch:
            self._seen_epoch = epoch
            if hasattr(self.dataset, "set_epoch"):
                self.dataset.set_epoch(epoch)

    def __len__(self) -> int:
        return len(self.dataset)

    def item_seed(self, index: int) -> int:
        return int(np.random.SeedSequence([self.seed, self.epoch, int(index)]).generate_state(1)[0])

    def __getitem__(self, index: int):
        self._sync_epoch()
        for transform in find_transforms(self.dataset):
            if hasattr(transform, "reset_draw_counter"):
                # mmkd_hf.data's train RNG also counts accesses; reset it so an item's draw depends on
                # (seed, epoch, index) only (the torch seed set below), as a resumed run needs.
                transform.reset_draw_counter()
        with isolated_rng(self.item_seed(index)):
            return self.dataset[index]

    def __getitems__(self, indices: list[int]) -> list:
        """A whole batch at once (what a ``DataLoader`` asks for): through the wrapped dataset's own
        ``__getitems__`` when it is one ``mmkd_hf.data`` dataset, so its frames are written straight into one batch
        buffer (no copy in the collator), each row still drawn with its own (seed, epoch, index) seed; the items
        equal ``[self[i] for i in indices]``. Other datasets (e.g. ``OmnivoreDataset``) are fetched item by item."""
        self._sync_epoch()
        getitems = getattr(self.dataset, "__getitems__", None)
        transforms = find_transforms(self.dataset)
        if getitems is None or len(transforms) != 1 or not hasattr(transforms[0], "seeded_rows"):
            return [self[i] for i in indices]
        with transforms[0].seeded_rows([self.item_seed(i) for i in indices]):
            return getitems(list(indices))


def dataset_load_kwargs(config: PipelineConfig) -> dict[str, Any]:
    """The keyword arguments of ``mmkd_hf.data.load_dataset`` a run uses (besides name, folder, split, modalities and
    train mode), JSON-ready: the spectrogram is resized to the frame size, so one network can take it as frames."""
    audio = AudioConfig(**{**dict(config.model_preset.audio), "output_size": (config.size, config.size)})
    kwargs = {
        "num_frames": config.frames,
        "crop_size": config.size,
        "sampler": config.frame_sampler,
        "stride": config.frame_stride,
        "audio": dataclasses.asdict(audio),
        "seed": config.seed,
        "frames_dtype": config.frames_dtype,
    }
    if config.annotations_dir:  # only when given: settings saved before the option read the same
        kwargs["annotations_dir"] = str(config.annotations_dir)
    if config.skip_bad_samples:  # likewise
        kwargs["skip_bad_samples"] = True
    return kwargs


def heads_from_features(features) -> tuple[dict[str, int], dict[str, list[str]]]:
    """``({head: num_classes}, {head: class names})`` from a dataset's ``ClassLabel`` columns: ``verb_class`` and
    ``noun_class`` give the EPIC heads ``verb``/``noun``; a single ``label``/``action_class`` gives ``action``."""
    heads: dict[str, int] = {}
    labels: dict[str, list[str]] = {}
    for name, feature in features.items():
        if not isinstance(feature, datasets.ClassLabel):
            continue
        head = name[: -len("_class")] if name.endswith("_class") else ("action" if name == "label" else name)
        heads[head] = int(feature.num_classes)
        labels[head] = list(feature.names)
    if not heads:
        raise ValueError(f"the dataset has no ClassLabel column to derive the heads from; features: {list(features)}")
    return heads, labels


class PipelineData:
    """Datasets of one run: train (augmented), train without augmentation (weight fitting), validation; plus the
    dataset's heads and class names. ``settings`` (a :class:`~mmkd_hf.data.RunSettings`) is how they are loaded."""

    def __init__(self, config: PipelineConfig):
        self.config = config
        self.data_dir = data_source(config)
        self.settings = RunSettings(dataset=config.dataset, data_dir=str(self.data_dir),
                                    load_kwargs=dataset_load_kwargs(config))
        self._cache: dict[tuple, Any] = {}
        #: per cached dataset with segments dropped for missing files: the split positions of the rows it kept
        self._kept_positions: dict[tuple, list[int]] = {}
        self._logged_drops: set[tuple[str, str, str]] = set()
        self.skip_log = config.run_dir / SKIP_LOG_FILE
        self.heads, self.head_labels = heads_from_features(self._load("train", ("rgb",), False).features)
        self.settings.heads, self.settings.head_labels = dict(self.heads), dict(self.head_labels)

    def _load(self, split: str, modalities: Sequence[str], train: bool):
        if not self.config.skip_bad_samples:
            try:
                return self.settings.load_dataset(split, modalities=tuple(modalities), train=train)
            except DataFormatError as error:  # say how to skip them with train.py's own option
                raise DataFormatError(error.path, error.reason.replace("skip_bad_samples=True", "--skip_bad_samples"),
                                      error.sample_id) from None
        self.skip_log.parent.mkdir(parents=True, exist_ok=True)
        dataset = self.settings.load_dataset(split, modalities=tuple(modalities), train=train,
                                             skip_log_path=str(self.skip_log))
        self._log_dropped(split, getattr(dataset, "mmkd_source_report", None))
        return dataset

    def _log_dropped(self, split: str, report) -> None:
        """Append the segments dropped at load for missing files to the run's skip log (main process, once each)."""
        if report is None or not report.count or not is_main():
            return
        ids = dict(zip(report.bad_rows, report.segment_ids)) if len(report.segment_ids) == report.count else {}
        lines = []
        for entry in report.missing:
            for row in entry.rows:
                sample_id = str(ids.get(row, f"{split}[{row}]"))
                if (split, sample_id, entry.modality) in self._logged_drops:
                    continue
                self._logged_drops.add((split, sample_id, entry.modality))
                lines.append(json.dumps({"sample_id": sample_id, "path": report.layout.get(entry.modality, report.root),
                                         "reason": f"{entry.modality} of {entry.video_id}: {entry.reason} (dropped at "
                                                   f"load, split {split})"}))
        if lines:
            with open(self.skip_log, "a", encoding="utf-8") as handle:
                handle.write("\n".join(lines) + "\n")

    def dataset(self, split: str, modalities: Sequence[str], train: bool):
        """The ``split`` dataset with the given modalities (augmented when ``train``), cut to max_*_samples."""
        key = (split, tuple(sorted(modalities)), bool(train))
        if key not in self._cache:
            dataset = self._load(split, sorted(modalities), train)
            report = getattr(dataset, "mmkd_source_report", None)
            if report is not None and report.count:
                bad = set(report.bad_rows)
                self._kept_positions[key] = [i for i in range(report.total) if i not in bad]
            limit = self.config.max_train_samples if split == "train" else self.config.max_eval_samples
            if limit is not None and limit < len(dataset):
                dataset = torch.utils.data.Subset(dataset, range(limit))
            self._cache[key] = dataset
        return self._cache[key]

    def subset(self, split: str, modalities: Sequence[str], train: bool, positions: Sequence[int]):
        """The rows at ``positions`` of the whole split (e.g. the held-out split's indices) of :meth:`dataset`:
        with ``--skip_bad_samples``, segments dropped for missing files are left out and the others keep their
        identity (never shifted onto a neighbour's position)."""
        dataset = self.dataset(split, modalities, train)
        kept = self._kept_positions.get((split, tuple(sorted(modalities)), bool(train)))
        if kept is not None:
            position = {original: i for i, original in enumerate(kept)}
            positions = [position[p] for p in positions if p in position]
        return torch.utils.data.Subset(dataset, list(positions))

    def collator(self) -> MultimodalCollator:
        return MultimodalCollator()

    def train_ids(self) -> list[str]:
        """Segment ids of the (possibly ``--max-train-samples``-cut) training split, in dataset order."""
        metadata = load_dataset(self.config.dataset, data_dir=str(self.data_dir), split="train", decode=False,
                                annotations_dir=self.settings.load_kwargs.get("annotations_dir"))
        if "segment_id" not in metadata.column_names:
            raise ValueError(f"the training split of {self.config.dataset} has no segment_id column")
        ids = [str(i) for i in metadata["segment_id"]]
        limit = self.config.max_train_samples
        return ids[:limit] if limit is not None else ids


def data_source(config: PipelineConfig) -> str:
    """Where the run reads its data: ``hf://datasets/<owner>/<name>`` or the folder of ``--hub_dataset``, else the
    ``--data_dir`` folder (which may itself be a folder written by ``mmkd-hf export-dataset``)."""
    if getattr(config, "hub_dataset", None):
        return str(hub_dataset_source(config.hub_dataset))
    return str(config.resolved_data_dir)


def _check_exported(config: PipelineConfig) -> bool:
    """Whether the run reads an exported dataset (nothing to prepare); its card is checked here, so a folder or repo
    that is not one is a one-line error before anything else."""
    if not getattr(config, "hub_dataset", None):
        return exported_source(config.resolved_data_dir) is not None
    if config.data_dir:
        raise ExportedDatasetError(config.hub_dataset, f"give either --hub_dataset or --data_dir ({config.data_dir}), "
                                                       "not both")
    source = hub_dataset_source(config.hub_dataset)
    if source.folder is not None and not source.folder.is_dir():
        raise ExportedDatasetError(source.folder, "not a folder: --hub_dataset takes a Hub repo id or the folder "
                                                  "written by mmkd-hf export-dataset")
    exported_fingerprint(source)  # raises unless its card is an export's
    return True


def prepare_dataset(config: PipelineConfig) -> None:
    """Generate the embedded mini-kitchens dataset when it is missing (the real datasets must exist)."""
    if _check_exported(config):  # a dataset written by `mmkd-hf export-dataset`: read as it is, never generated
        return
    root = config.resolved_data_dir
    if config.dataset != "mini-kitchens":
        if not root.exists():
            raise FileNotFoundError(f"--data-dir {root} does not exist (dataset {config.dataset})")
        return
    # never replaces a folder it did not generate, nor a generation made with other settings (one-line error)
    verb_noise, noun_noise = parse_narration_noise(config.narration_noise)
    ensure_mini_kitchens(root, seed=0, replace_other_settings=False, narration_verb_noise=verb_noise,
                         narration_noun_noise=noun_noise, **MINI_KITCHENS_SCALES[config.mini_kitchens_scale])


__all__ = [
    "EpochSeededDataset",
    "MINI_KITCHENS_SCALES",
    "PipelineData",
    "data_source",
    "dataset_load_kwargs",
    "find_transforms",
    "heads_from_features",
    "prepare_dataset",
]
