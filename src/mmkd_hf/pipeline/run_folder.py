"""The run folder: identity (config hash), completion markers, timings, the held-out split, Trainer checkpoints.

Layout (``<output_dir>/<run_name>/``)::

    config.json, config.sha256      the run's options and its data's fingerprint (a folder holding a different
                                    run, or the same run on other data, is refused)
    run_settings.json               the resolved data settings (mmkd_hf.data.RunSettings), read by the Space,
                                    `mmkd-hf push` and `mmkd-hf evaluate`
    held_out_split.json             train indices of the teachers and of the held-out split (made once, reused)
    stages/<unit>.done              atomic completion markers (teacher-rgb, ..., ensemble, student, ..., evaluate)
    teacher-rgb/ teacher-flow/ teacher-audio/ teacher-layout/ ensemble/ student/ baseline-rgb/ omnivore/
                                    one ``save_pretrained`` folder per model (``AutoModel.from_pretrained`` loads it)
    checkpoints/<unit>/checkpoint-N Trainer checkpoints (``--resume`` continues from the last one)
    tensorboard/<unit>/             TensorBoard logs
    timings.json                    wall time per unit (kept across invocations)
    skipped_samples.jsonl           samples skipped with --skip_bad_samples (sample id, file, reason)
    results.json, results.md        validation metrics of every model, the config, the seed and the timings
"""

from __future__ import annotations

import hashlib
import importlib
import json
import logging
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from filelock import FileLock
from transformers.trainer import TRAINER_STATE_NAME
from transformers.trainer_utils import get_last_checkpoint, sort_checkpoints

from ..data.hub_dataset import exported_fingerprint, exported_source
from ..data.registry import DATASETS as DATASET_SPECS
from ..distillation.weighting import check_held_out_split, make_held_out_split, save_held_out_split
from ..synthetic import generation_request, read_marker
from ..synthetic.writer import describe_generation
from ..utils import atomic_write_json, atomic_write_text, discard_directory
from .arguments import PipelineConfig
from .runtime import barrier, is_main


logger = logging.getLogger(__name__)


class RunConflictError(RuntimeError):
    """The output folder holds a different run (different options or data); nothing was overwritten."""


#: The log of the samples skipped with ``--skip_bad_samples`` (one JSON object per line), in the run folder.
SKIP_LOG_FILE = "skipped_samples.jsonl"

#: Files larger than this enter a data fingerprint by their size, first and last MiB (a full read of several GB of
#: Something-Else boxes at every start would cost minutes); smaller files by their whole content.
FULL_HASH_LIMIT = 64 * 2**20


def _file_digest(path: Path) -> str:
    h = hashlib.sha256()
    size = path.stat().st_size
    with open(path, "rb") as handle:
        if size <= FULL_HASH_LIMIT:
            for block in iter(lambda: handle.read(2**20), b""):
                h.update(block)
        else:
            h.update(f"size {size}|".encode())
            h.update(handle.read(2**20))
            handle.seek(size - 2**20)
            h.update(handle.read(2**20))
    return h.hexdigest()


def data_fingerprint(dataset: str, data_dir: str | os.PathLike, annotations_dir: str | os.PathLike | None = None
                     ) -> dict[str, Any]:
    """What identifies the data a run trains and evaluates on, independent of where it lies (a moved dataset keeps
    its fingerprint): the content of its annotation files (the builder's ``annotation_files``: labels, splits,
    class lists) and, for a mini-kitchens generation, its seed, settings and format (its ``.complete`` marker).
    Returns ``{"sha256": ..., "description": ...}``. A dataset written by ``mmkd-hf export-dataset`` (its folder or
    ``hf://datasets/<repo>``) is identified by its card (the shards' digests), the same for the folder and its Hub
    copy."""
    exported = exported_source(data_dir)
    if exported is not None:
        return exported_fingerprint(exported)
    root = Path(data_dir)
    spec = DATASET_SPECS[dataset]
    module = importlib.import_module(f"mmkd_hf.data.builders.{spec.module}")
    locate = getattr(module, spec.files_fingerprint)
    files = locate(root) if annotations_dir is None else locate(root, annotations_dir)
    found = {str(key): Path(path) for key, path in (files.items() if isinstance(files, dict) else enumerate(files))
             if path is not None}
    h = hashlib.sha256(dataset.encode())
    for key in sorted(found):
        h.update(f"|{key}|{found[key].name}|{_file_digest(found[key])}".encode())
    description = f"{len(found)} annotation file(s)"
    marker = read_marker(root) if dataset == "mini-kitchens" else None
    if marker is not None:
        seed, config = generation_request(marker)
        version = marker.get("format_version")
        h.update(json.dumps({"format_version": version, "seed": marker.get("seed"), "config": marker.get("config")},
                            sort_keys=True, default=str).encode())
        description = f"mini-kitchens generation ({describe_generation(seed, config, version)}), {description}"
    return {"sha256": h.hexdigest(), "description": description}


def check_overwrite_target(config: PipelineConfig) -> None:
    """``--overwrite`` deletes the run folder: refuse when it is, or contains, the output folder or the working
    directory (e.g. ``--run_name .``), or when it is not empty and holds no mmkd-hf run."""
    run_dir = config.run_dir.resolve()
    protected = {"--output_dir": Path(config.output_dir).resolve(), "the working directory": Path.cwd().resolve()}
    for what, path in protected.items():
        if path == run_dir or run_dir in path.parents:
            raise RunConflictError(
                f"--overwrite refused: the run folder {run_dir} (--run_name {config.resolved_run_name!r}) is or "
                f"contains {what} {path}; nothing was deleted: choose a --run_name that names a folder inside "
                f"--output_dir"
            )
    folder = RunFolder(config.run_dir)
    if folder.path.is_dir() and any(folder.path.iterdir()) and not folder.hash_file.is_file():
        raise RunConflictError(
            f"--overwrite refused: {folder.path} is not empty and holds no mmkd-hf run (no config.sha256); nothing "
            f"was deleted: choose another --run_name / --output_dir"
        )
    if folder.path.exists() and not folder.path.is_dir():
        raise RunConflictError(f"--overwrite refused: {folder.path} is a file; nothing was deleted")


class RunFolder:
    """Files of one run folder (see the module docstring); only the main process writes."""

    def __init__(self, path: Path):
        self.path = Path(path)

    # paths
    @property
    def config_file(self) -> Path:
        return self.path / "config.json"

    @property
    def hash_file(self) -> Path:
        return self.path / "config.sha256"

    @property
    def split_file(self) -> Path:
        return self.path / "held_out_split.json"

    @property
    def timings_file(self) -> Path:
        return self.path / "timings.json"

    def model_dir(self, unit: str) -> Path:
        return self.path / unit

    def checkpoint_dir(self, unit: str) -> Path:
        return self.path / "checkpoints" / unit

    def tensorboard_dir(self, unit: str) -> Path:
        return self.path / "tensorboard" / unit

    @property
    def skip_log(self) -> Path:
        """``skipped_samples.jsonl``: one JSON line per sample skipped with ``--skip_bad_samples``."""
        return self.path / SKIP_LOG_FILE

    def marker(self, unit: str) -> Path:
        return self.path / "stages" / f"{unit}.done"

    # identity
    def check_identity(self, config: PipelineConfig) -> None:
        """Raise :class:`RunConflictError` when the folder holds another run (a different config hash)."""
        if not self.path.exists() or not any(self.path.iterdir()):
            return
        if not self.hash_file.exists():
            raise RunConflictError(
                f"output folder {self.path} is not empty and holds no mmkd-hf run (no config.sha256): refusing to "
                f"write into it. Choose another --run-name / --output-dir, or pass --overwrite to delete it."
            )
        stored_hash = self.hash_file.read_text(encoding="utf-8").strip()
        if stored_hash == config.identity_hash():
            return
        try:
            stored = json.loads(self.config_file.read_text(encoding="utf-8")).get("identity", {})
        except (OSError, json.JSONDecodeError):
            stored = {}
        current = config.identity()
        diff = {k: (stored.get(k), current.get(k)) for k in sorted(set(stored) | set(current))
                if stored.get(k) != current.get(k)}
        details = ", ".join(f"{k}: stored {a!r} vs given {b!r}" for k, (a, b) in diff.items()) or "unknown fields"
        raise RunConflictError(
            f"output folder {self.path} already holds a different run ({details}). Nothing was overwritten: choose "
            f"another --run-name / --output-dir, or pass --overwrite to replace it."
        )

    def stored_data_fingerprint(self) -> dict[str, Any] | None:
        """The data fingerprint recorded in ``config.json`` (None for a new folder or a run written before data
        fingerprints were recorded)."""
        try:
            stored = json.loads(self.config_file.read_text(encoding="utf-8")).get("data_fingerprint")
        except (OSError, json.JSONDecodeError, AttributeError):
            return None
        return stored if isinstance(stored, dict) and stored.get("sha256") else None

    def check_data(self, fingerprint: dict[str, Any], data_dir: str | os.PathLike) -> None:
        """Raise :class:`RunConflictError` when the run was made on other data than ``fingerprint`` describes. A
        run without a recorded fingerprint (written by an earlier version) is accepted: its data is unknown."""
        stored = self.stored_data_fingerprint()
        if stored is None or stored["sha256"] == fingerprint["sha256"]:
            return
        raise RunConflictError(
            f"run folder {self.path} was made on other data: recorded {stored.get('description')} "
            f"[{stored['sha256'][:12]}], --data_dir {data_dir} holds {fingerprint['description']} "
            f"[{fingerprint['sha256'][:12]}]. Nothing was rewritten: pass another --run_name for a new run on this "
            f"data, or --overwrite to replace this one."
        )

    def write_identity(self, config: PipelineConfig, data_fingerprint: dict[str, Any] | None = None) -> None:
        """Write ``config.json`` (options, identity, data fingerprint) and ``config.sha256``; a fingerprint already
        recorded is kept when none is given."""
        fingerprint = data_fingerprint or self.stored_data_fingerprint()
        payload = {"identity": config.identity(), "config": config.to_dict(), "config_hash": config.identity_hash()}
        if fingerprint is not None:
            payload["data_fingerprint"] = fingerprint
        atomic_write_json(self.config_file, payload)
        atomic_write_text(self.hash_file, config.identity_hash() + "\n")

    def discard(self) -> None:
        """Delete the run folder (``--overwrite``): renamed away in one step, then removed."""
        discard_directory(self.path)

    # markers
    def is_done(self, unit: str) -> bool:
        return self.marker(unit).exists()

    def mark_done(self, unit: str, **info: Any) -> None:
        atomic_write_json(self.marker(unit), {"unit": unit, "finished": time.strftime("%Y-%m-%dT%H:%M:%S"), **info})

    # timings
    def read_timings(self) -> dict[str, float]:
        if not self.timings_file.exists():
            return {}
        return json.loads(self.timings_file.read_text(encoding="utf-8"))

    def add_timing(self, unit: str, seconds: float) -> None:
        # units trained side by side (--parallel_units) finish in separate processes: one writer at a time
        with FileLock(str(self.timings_file.with_name(f".{self.timings_file.name}.lock"))):
            timings = self.read_timings()
            timings[unit] = round(timings.get(unit, 0.0) + float(seconds), 3)
            atomic_write_json(self.timings_file, timings)


#: Weight files one of which a complete Trainer checkpoint holds (safetensors or torch, single or sharded).
CHECKPOINT_WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin", "model.safetensors.index.json",
                           "pytorch_model.bin.index.json")


def checkpoint_problem(checkpoint: Path) -> str | None:
    """Why the Trainer checkpoint folder ``checkpoint`` cannot be resumed from, or None when it is complete: its
    ``trainer_state.json`` (written last by the Trainer) must parse as a JSON object, a weight file must be
    non-empty, and an optimizer/scheduler state, when present, must be non-empty."""
    checkpoint = Path(checkpoint)
    state = checkpoint / TRAINER_STATE_NAME
    try:
        parsed = json.loads(state.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return f"no {TRAINER_STATE_NAME}"
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        return f"{TRAINER_STATE_NAME} unreadable ({type(error).__name__})"
    if not isinstance(parsed, dict):
        return f"{TRAINER_STATE_NAME} is not a JSON object"
    weights = [checkpoint / name for name in CHECKPOINT_WEIGHT_FILES if (checkpoint / name).is_file()]
    if not weights:
        return "no model weights"
    empty = [p.name for p in weights if p.stat().st_size == 0]
    empty += [name for name in ("optimizer.pt", "scheduler.pt")
              if (checkpoint / name).is_file() and (checkpoint / name).stat().st_size == 0]
    if empty:
        return f"empty file(s) {empty}"
    return None


def last_valid_checkpoint(folder: Path) -> Path | None:
    """The newest ``checkpoint-N`` under ``folder`` that is complete (see :func:`checkpoint_problem`): a
    checkpoint cut short by a crash or a full disk (e.g. a 0-byte ``trainer_state.json``) is skipped, with a
    warning naming it and the checkpoint used instead."""
    folder = Path(folder)
    if not folder.is_dir() or get_last_checkpoint(str(folder)) is None:
        return None
    skipped: list[str] = []
    for candidate in reversed([Path(c) for c in sort_checkpoints(str(folder))]):
        problem = checkpoint_problem(candidate)
        if problem is None:
            if skipped:
                logger.warning("incomplete checkpoint(s) skipped: %s; falling back to %s", "; ".join(skipped),
                               candidate)
            return candidate
        skipped.append(f"{candidate.name} ({problem})")
    if skipped:
        logger.warning("no complete checkpoint in %s: %s", folder, "; ".join(skipped))
    return None


def load_or_make_held_out_split(folder: RunFolder, config: PipelineConfig, train_ids: Sequence[str]) -> dict[str, Any]:
    """The run's held-out split (teachers never train on it): made by the main process and saved on first use,
    read back afterwards (also after ``--resume``). Returns the saved JSON plus ``teacher_indices`` /
    ``held_out_indices``, positions in the training split."""
    if is_main() and not folder.split_file.exists():
        teacher_ids, held_out_ids = make_held_out_split(train_ids, config.held_out_fraction, seed=config.seed)
        save_held_out_split(folder.split_file, teacher_ids, held_out_ids, seed=config.seed,
                            fraction=config.held_out_fraction, dataset=config.dataset)
    barrier()
    split = json.loads(folder.split_file.read_text(encoding="utf-8"))
    teacher_ids, held_out_ids = split["teacher_train_ids"], split["held_out_ids"]
    check_held_out_split(teacher_ids, held_out_ids)
    position = {sample_id: i for i, sample_id in enumerate(train_ids)}
    missing = [i for i in list(teacher_ids) + list(held_out_ids) if i not in position]
    if missing:
        raise ValueError(f"{folder.split_file}: {len(missing)} sample id(s) are not in the training split, e.g. "
                         f"{missing[:3]}; the split belongs to other data")
    split["teacher_indices"] = sorted(position[i] for i in teacher_ids)
    split["held_out_indices"] = sorted(position[i] for i in held_out_ids)
    return split


__all__ = [
    "RunConflictError",
    "RunFolder",
    "SKIP_LOG_FILE",
    "check_overwrite_target",
    "checkpoint_problem",
    "data_fingerprint",
    "last_valid_checkpoint",
    "load_or_make_held_out_split",
]
