"""The run folder: identity (config hash), completion markers, timings, the held-out split, Trainer checkpoints.

Layout (``<output_dir>/<run_name>/``)::

    config.json, config.sha256      the run's options (a folder holding a different run is refused)
    run_settings.json               the resolved data settings (mmkd_hf.data.RunSettings), read by the Space,
                                    `mmkd-hf push` and `mmkd-hf evaluate`
    held_out_split.json             train indices of the teachers and of the held-out split (made once, reused)
    stages/<unit>.done              atomic completion markers (teacher-rgb, ..., ensemble, student, ..., evaluate)
    teacher-rgb/ teacher-flow/ teacher-audio/ teacher-layout/ ensemble/ student/ baseline-rgb/ omnivore/
                                    one ``save_pretrained`` folder per model (``AutoModel.from_pretrained`` loads it)
    checkpoints/<unit>/checkpoint-N Trainer checkpoints (``--resume`` continues from the last one)
    tensorboard/<unit>/             TensorBoard logs
    timings.json                    wall time per unit (kept across invocations)
    results.json, results.md        validation metrics of every model, the config, the seed and the timings
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from transformers.trainer import TRAINER_STATE_NAME
from transformers.trainer_utils import get_last_checkpoint, sort_checkpoints

from ..distillation.weighting import check_held_out_split, make_held_out_split, save_held_out_split
from ..utils import atomic_write_json, atomic_write_text
from .arguments import PipelineConfig
from .runtime import barrier, is_main


class RunConflictError(RuntimeError):
    """The output folder holds a different run (different options); nothing was overwritten."""


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

    def write_identity(self, config: PipelineConfig) -> None:
        atomic_write_json(
            self.config_file,
            {"identity": config.identity(), "config": config.to_dict(), "config_hash": config.identity_hash()},
        )
        atomic_write_text(self.hash_file, config.identity_hash() + "\n")

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
        timings = self.read_timings()
        timings[unit] = round(timings.get(unit, 0.0) + float(seconds), 3)
        atomic_write_json(self.timings_file, timings)


def last_valid_checkpoint(folder: Path) -> Path | None:
    """The newest ``checkpoint-N`` under ``folder`` that is complete (its ``trainer_state.json``, written last by
    the Trainer, exists); a checkpoint cut short by a crash is skipped."""
    folder = Path(folder)
    if not folder.is_dir() or get_last_checkpoint(str(folder)) is None:
        return None
    complete = [Path(c) for c in sort_checkpoints(str(folder)) if (Path(c) / TRAINER_STATE_NAME).is_file()]
    return complete[-1] if complete else None


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


__all__ = ["RunConflictError", "RunFolder", "last_valid_checkpoint", "load_or_make_held_out_split"]
