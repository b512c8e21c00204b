"""The resolved data settings of a training run, saved as ``<run>/run_settings.json``.

A training run writes them once; everything that later needs the run's data (the Space, ``mmkd-hf push``,
``mmkd-hf evaluate``) reads them back here instead of rebuilding the training configuration::

    from mmkd_hf.data import RunSettings
    settings = RunSettings.from_run_dir("runs/mini")          # or a model folder inside the run
    validation = settings.load_dataset("validation", modalities=("rgb",))
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import datasets

from ..utils import atomic_write_json
from .configs import AudioConfig
from .registry import load_dataset as _load_dataset

__all__ = ["RUN_SETTINGS_FILE", "RunSettings"]

RUN_SETTINGS_FILE = "run_settings.json"


@dataclass
class RunSettings:
    """What a run trained and evaluated on.

    Attributes:
        dataset: registry name, e.g. ``"mini-kitchens"`` or ``"epic-kitchens-100"``.
        data_dir: the dataset folder.
        load_kwargs: the other keyword arguments of :func:`mmkd_hf.data.load_dataset` (``num_frames``,
            ``crop_size``, ``sampler``, ``stride``, ``audio`` as a dict of :class:`AudioConfig` fields, ``seed``,
            ``frames_dtype``; when the annotation files are not inside ``data_dir``, ``annotations_dir``; with
            ``train.py --skip_bad_samples``, ``skip_bad_samples``); split,
            modalities and train mode are chosen per call.
        heads: head name -> number of classes, e.g. ``{"verb": 97, "noun": 300}``.
        head_labels: head name -> class names in label-id order.
    """

    dataset: str
    data_dir: str
    load_kwargs: dict[str, Any] = field(default_factory=dict)
    heads: dict[str, int] = field(default_factory=dict)
    head_labels: dict[str, list[str]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def save(self, run_dir: str | os.PathLike) -> Path:
        """Write ``<run_dir>/run_settings.json`` atomically and return its path."""
        path = Path(run_dir) / RUN_SETTINGS_FILE
        atomic_write_json(path, self.to_dict())
        return path

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "RunSettings":
        names = {f.name for f in dataclasses.fields(cls)}
        missing = sorted(n for n in ("dataset", "data_dir") if n not in data)
        if missing:
            raise ValueError(f"run settings lack {missing}")
        return cls(**{k: v for k, v in data.items() if k in names})

    @classmethod
    def from_run_dir(cls, path: str | os.PathLike) -> "RunSettings":
        """Read the settings of the run at ``path`` (the run folder or a model folder inside it)."""
        start = Path(path).resolve()
        candidates = [start, *start.parents][:3]  # run/, run/<model>/, run/<group>/<model>/
        for folder in candidates:
            file = folder / RUN_SETTINGS_FILE
            if file.is_file():
                break
        else:
            raise FileNotFoundError(
                f"no {RUN_SETTINGS_FILE} in {start} or its parent run folder; pass a run folder written by "
                "train.py (its prepare stage writes this file) or give the dataset explicitly"
            )
        try:
            return cls.from_dict(json.loads(file.read_text(encoding="utf-8")))
        except (json.JSONDecodeError, TypeError, ValueError) as error:
            raise ValueError(
                f"{file} is not valid run settings ({error}); rerun train.py's prepare stage to rewrite it"
            ) from None

    def dataset_kwargs(self) -> dict[str, Any]:
        """``load_kwargs`` with ``audio`` rebuilt as an :class:`AudioConfig`."""
        kwargs = dict(self.load_kwargs)
        audio = kwargs.get("audio")
        if isinstance(audio, dict):
            audio = dict(audio)
            if isinstance(audio.get("output_size"), list):
                audio["output_size"] = tuple(audio["output_size"])
            kwargs["audio"] = AudioConfig(**audio)
        return kwargs

    def load_dataset(
        self, split: str = "validation", modalities: Sequence[str] = ("rgb",), train: bool = False, **overrides: Any
    ) -> datasets.Dataset:
        """Load one split of the run's dataset with the run's decoding settings; ``overrides`` replace or add
        keyword arguments of :func:`mmkd_hf.data.load_dataset` for this call (e.g. ``skip_log_path``)."""
        return _load_dataset(
            self.dataset,
            data_dir=self.data_dir,
            split=split,
            modalities=tuple(modalities),
            train=train,
            **{**self.dataset_kwargs(), **overrides},
        )
