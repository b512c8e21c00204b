"""The units of work of a run and the :class:`Runner` that trains, fits, saves and evaluates them.

Units and the ``--stage`` that runs them: ``teachers`` (teacher-<modality> per teacher), ``weights`` (ensemble),
``distill`` (student), ``baselines`` (baseline-rgb, omnivore), ``evaluate``. A unit whose completion marker exists
is reused, so ``--stage distill`` reuses the teachers and the ensemble of an earlier invocation.
"""

from __future__ import annotations

import dataclasses
import shutil
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from accelerate import Accelerator
from torch import nn
from transformers import AutoModel

from ..data.device_augmentation import augmentation_on_device
from ..distillation.arguments import DistillationTrainingArguments, SupervisedTrainingArguments
from ..distillation.cache import precompute_teacher_logits, with_cached_logits
from ..distillation.ensemble_fitting import collect_held_out_logits, fit_calibration, fit_full_dataset_weights
from ..distillation.trainer import DistillationTrainer, NonFiniteLossError, SupervisedTrainer
from ..hub.cards import write_model_card
from ..models import MultimodalTeacherEnsemble, VideoSwinVideoProcessor
from ..utils import atomic_directory
from .arguments import DATASET_TEACHERS, TEACHER_MODALITIES, PipelineConfig
from .data_adapter import EpochSeededDataset, PipelineData, find_transforms
from .model_builders import build_student, build_teacher
from .omnivore import OMNIVORE_MODALITIES, OmnivoreDataset
from .results import evaluate, write_results
from .run_folder import RunConflictError, RunFolder, last_valid_checkpoint
from .runtime import (
    StepBudget,
    banner,
    barrier,
    cpu_only,
    environment,
    info,
    is_main,
    progress,
    seed_everything,
    tf32_setting,
    trainer_callbacks,
    unwrap_model,
)

BASELINES = ("baseline-rgb", "omnivore")
#: folder of the run that holds the ensemble's cached logits on the training clips (``--teacher_mode cached``)
TEACHER_LOGITS_DIR = "teacher-logits"
#: Units trained longer than this many epochs checkpoint this many times in all instead of at every epoch end.
MAX_EPOCH_CHECKPOINTS = 24
#: Offsets of the seed per unit: the student and both baselines share theirs (same init and data order).
STUDENT_SEED_OFFSET = 10


class MissingUnitsError(RuntimeError):
    """A stage or unit needs units that are not done; the message says which and what to run first."""


def model_modalities(unit: str, config: PipelineConfig) -> tuple[str, ...]:
    """The inputs of a unit's model: its modality for a teacher, every teacher's for the ensemble, else RGB."""
    if unit.startswith("teacher-"):
        return (unit.split("-", 1)[1],)
    if unit == "ensemble":
        return tuple(config.teacher_list)
    return ("rgb",)


def supervised_trainer(model, args, dataset, collator, callbacks) -> SupervisedTrainer:
    return SupervisedTrainer(model=model, args=args, train_dataset=dataset, data_collator=collator, callbacks=callbacks)


def write_card(folder: Path, unit: str, config: PipelineConfig, card_info: Mapping[str, Any]) -> None:
    """Write the Hub model card of a saved model; a failure is reported, never fatal (the model matters more)."""
    try:
        write_model_card(folder, unit=unit, role=card_info.get("role", unit), dataset=config.dataset,
                         run_config=config.to_dict(), info=dict(card_info))
    except Exception as exc:  # noqa: BLE001 - a card is documentation: never lose a trained model over it
        info(f"model card for {unit} not written: {type(exc).__name__}: {exc}")


@dataclass
class Runner:
    """Runs the units of one invocation; holds the config, the run folder and the data."""

    config: PipelineConfig
    folder: RunFolder
    data: PipelineData
    held_out: dict[str, list[int]] = field(default_factory=dict)
    stop_budget: StepBudget | None = None

    # -- building blocks -----------------------------------------------------------------------------------------------
    def training_arguments(self, unit: str, epochs: float, batch_size: int, learning_rate: float, seed_offset: int,
                           args_class: type[SupervisedTrainingArguments] = SupervisedTrainingArguments, **extra):
        """The Trainer arguments of a unit; ``extra`` adds fields of ``args_class`` (e.g. the distillation recipe)."""
        cfg = self.config
        report_to = [] if cfg.report_to in ("", "none") else [r.strip() for r in cfg.report_to.split(",") if r.strip()]
        if cfg.save_steps > 0:
            save_kwargs: dict[str, Any] = {"save_strategy": "steps", "save_steps": cfg.save_steps}
        elif epochs > MAX_EPOCH_CHECKPOINTS:  # a long schedule: a checkpoint every 1/24 of the unit, not every epoch
            save_kwargs = {"save_strategy": "steps", "save_steps": 1.0 / MAX_EPOCH_CHECKPOINTS}
        else:
            save_kwargs = {"save_strategy": "epoch"}
        # on a GPU: batches leave pinned memory with non_blocking copies (accelerate's DataLoader wrapper)
        device_kwargs: dict[str, Any] = {} if cpu_only() else {"accelerator_config": {"non_blocking": True}}
        return args_class(
            output_dir=str(self.folder.checkpoint_dir(unit)),
            num_train_epochs=float(epochs),
            max_steps=int(cfg.max_steps),
            per_device_train_batch_size=int(batch_size),
            per_device_eval_batch_size=int(cfg.eval_batch_size),
            learning_rate=float(learning_rate),
            weight_decay=float(cfg.weight_decay),
            adam_beta1=0.9,
            adam_beta2=0.999,
            adam_epsilon=1e-8,
            lr_scheduler_type="linear",
            warmup_steps=float(cfg.warmup_ratio),
            max_grad_norm=float(cfg.max_grad_norm),
            logging_steps=int(cfg.logging_steps),
            save_total_limit=int(cfg.save_total_limit),
            report_to=report_to,
            seed=int(cfg.seed + seed_offset),
            data_seed=int(cfg.seed + seed_offset),
            full_determinism=bool(cfg.deterministic),
            dataloader_num_workers=int(cfg.num_workers),
            dataloader_pin_memory=not cpu_only(),
            dataloader_persistent_workers=int(cfg.num_workers) > 0,
            bf16=cfg.mixed_precision == "bf16",
            tf32=tf32_setting(),
            use_cpu=cpu_only(),
            remove_unused_columns=False,
            label_names=["labels"],
            eval_strategy="no",
            ddp_find_unused_parameters=False,
            disable_tqdm=False,
            **save_kwargs,
            **device_kwargs,
            **extra,
        )

    def distillation_training_arguments(self, unit: str, **mode: Any) -> DistillationTrainingArguments:
        """The student's Trainer arguments: the schedule, plus the run's distillation recipe as parsed (one object,
        :class:`~mmkd_hf.distillation.arguments.DistillationArguments`, copied whole) and ``mode`` (how the
        teachers' targets arrive: ``teacher_mode`` and, when cached, ``cached_logits_path``)."""
        cfg = self.config
        return self.training_arguments(unit, cfg.student_epochs, cfg.student_batch_size, cfg.student_learning_rate,
                                       STUDENT_SEED_OFFSET, DistillationTrainingArguments,
                                       **(mode or {"teacher_mode": "online"}), **dataclasses.asdict(cfg.distillation))

    def resume_checkpoint(self, unit: str) -> str | None:
        """Last Trainer checkpoint of ``unit`` with ``--resume``; without it, leftovers of an interrupted unit are an
        error (they would be silently ignored otherwise)."""
        checkpoint = last_valid_checkpoint(self.folder.checkpoint_dir(unit))
        if checkpoint is None:
            return None
        if self.config.resume:
            info(f"{unit}: resuming from {checkpoint}")
            return str(checkpoint)
        raise RunConflictError(
            f"{unit} was interrupted earlier (checkpoint {checkpoint} exists): pass --resume to continue it, or "
            f"--overwrite to start the whole run again."
        )

    def train_unit(self, unit: str, model: nn.Module, train_dataset, args, *, seed_offset: int,
                   trainer_factory=supervised_trainer, extra_callbacks=()):
        """Train ``model`` with a Trainer built by ``trainer_factory(model, args, dataset, collator, callbacks)``."""
        seeded = EpochSeededDataset(train_dataset, seed=self.config.seed + seed_offset)
        callbacks = trainer_callbacks(seeded, self.stop_budget) + list(extra_callbacks)
        checkpoint = self.resume_checkpoint(unit)
        bare = unwrap_model(model)
        if self.config.gradient_checkpointing and getattr(bare, "supports_gradient_checkpointing", False):
            bare.activation_checkpointing_enable()  # the Video Swin units (not the STLT layout teacher)
        deterministic_before = torch.are_deterministic_algorithms_enabled()
        on_device = self.augments_on_device(train_dataset)
        if on_device:
            info(f"{unit}: training clips resized and colour-jittered on the device (--augment_on_device "
                 f"{self.config.augment_on_device})")
        try:
            with environment(TENSORBOARD_LOGGING_DIR=str(self.folder.tensorboard_dir(unit))), \
                    augmentation_on_device(find_transforms(train_dataset), on_device):
                trainer = trainer_factory(model, args, seeded, self.data.collator(), callbacks)
                trainer.train(resume_from_checkpoint=checkpoint)
        finally:  # full_determinism switches it on process-wide; leave the caller's setting as it was
            torch.use_deterministic_algorithms(deterministic_before)
        return trainer

    def augments_on_device(self, train_dataset) -> bool:
        """``--augment_on_device``: on, off, or auto (on with CUDA), for units that train on RGB or flow frames. Never
        for the omnivore baseline, whose items map flow and audio to RGB frames in the loader."""
        setting = self.config.augment_on_device
        wanted = setting == "on" or (setting == "auto" and not cpu_only())
        frames = any(m in ("rgb", "flow") for t in find_transforms(train_dataset) for m in t.config.modalities)
        return wanted and frames and not isinstance(train_dataset, OmnivoreDataset)

    def save_model(self, unit: str, model: nn.Module, card_info: Mapping[str, Any] | None = None) -> None:
        """Save ``model`` into ``<run>/<unit>/`` atomically (main process), with a model card; a model with
        non-finite weights is never saved (so never marked done)."""
        model = unwrap_model(model)
        broken = [name for name, tensor in model.state_dict().items()
                  if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all())]
        if broken:
            raise NonFiniteLossError(f"{unit}: {len(broken)} weight tensor(s) are not finite (e.g. {broken[0]}); the "
                                     f"model was not saved nor marked done")
        if is_main():
            with atomic_directory(self.folder.model_dir(unit)) as tmp:
                model.save_pretrained(tmp)
                if getattr(model.config, "input_key", None) == "pixel_values":
                    # RGB Video Swin models: the saved video processor lets
                    # pipeline("mmkd-video-classification", folder) read video files.
                    VideoSwinVideoProcessor.from_model_config(model.config).save_pretrained(tmp)
                if self.config.write_model_cards:
                    write_card(tmp, unit, self.config, card_info or {})
        barrier()

    def finish(self, unit: str, started: float, **details: Any) -> None:
        if is_main():
            self.folder.add_timing(unit, time.time() - started)
            self.folder.mark_done(unit, **details)
            checkpoints = self.folder.checkpoint_dir(unit)
            if checkpoints.exists():  # keep the logs, drop the bulky checkpoints of a finished unit
                for child in checkpoints.iterdir():
                    if child.name.startswith("checkpoint-"):
                        shutil.rmtree(child, ignore_errors=True)
        barrier()

    def done_earlier(self, unit: str) -> bool:
        if self.folder.is_done(unit):
            info(f"{unit}: done earlier, reusing {self.folder.model_dir(unit)}")
            return True
        return False

    def baseline_epochs(self) -> float:
        cfg = self.config
        return cfg.baseline_epochs if cfg.baseline_epochs is not None else cfg.student_epochs

    # -- units -----------------------------------------------------------------------------------------------------
    def run_teacher(self, modality: str) -> None:
        unit = f"teacher-{modality}"
        if self.done_earlier(unit):
            return
        banner(f"stage teachers: {unit}")
        started = time.time()
        cfg = self.config
        seed_offset = 1 + TEACHER_MODALITIES.index(modality)
        seed_everything(cfg.seed + seed_offset)
        model = build_teacher(cfg, modality, self.data.heads, self.data.head_labels)
        train = self.data.subset("train", [modality], True, self.held_out["teacher_indices"])
        lr = cfg.teacher_learning_rate
        if modality == "layout" and cfg.layout_learning_rate:
            lr = cfg.layout_learning_rate
        args = self.training_arguments(unit, cfg.teacher_epochs, cfg.teacher_batch_size, lr, seed_offset)
        trainer = self.train_unit(unit, model, train, args, seed_offset=seed_offset)
        self.save_model(unit, trainer.model, {"role": "teacher", "modality": modality})
        self.finish(unit, started)

    def run_ensemble(self) -> None:
        unit = "ensemble"
        if self.done_earlier(unit):
            return
        cfg = self.config
        self._require([f"teacher-{m}" for m in cfg.teacher_list], "weights")
        banner(f"stage weights: ensemble ({cfg.weighting_scheme}) of {', '.join(cfg.teacher_list)}")
        started = time.time()
        teachers = {m: AutoModel.from_pretrained(self.folder.model_dir(f"teacher-{m}")) for m in cfg.teacher_list}
        ensemble = MultimodalTeacherEnsemble.from_teachers(
            teachers,
            heads=self.data.heads,
            weighting=cfg.weighting_scheme,
            weights_temperature=cfg.weights_temperature,
            combine_space=cfg.combine_space,
            held_out_split_file=self.folder.split_file.name,
        )
        details: dict[str, Any] = {}
        if cfg.weighting_scheme == "full-dataset" or cfg.calibrate_ensemble:
            accelerator = Accelerator()
            # Un-augmented views of the held-out part of the train split; each process takes a strided shard and
            # the fits sum the per-teacher losses (gather the logits, for calibration) across processes.
            indices = list(self.held_out["held_out_indices"])[accelerator.process_index::accelerator.num_processes]
            held_out = self.data.subset("train", cfg.teacher_list, False, indices)
            loader = torch.utils.data.DataLoader(held_out, batch_size=cfg.eval_batch_size, shuffle=False,
                                                 collate_fn=self.data.collator(), num_workers=cfg.num_workers)
            ensemble.to(accelerator.device)
            # one pass of the teachers over the held-out split serves both fits
            held_out_logits = collect_held_out_logits(ensemble, progress(loader, "teachers on the held-out split"),
                                                      accelerator=accelerator)
            if cfg.weighting_scheme == "full-dataset":
                weights = fit_full_dataset_weights(ensemble, held_out_logits, accelerator=accelerator)
                details["weights"] = {head: [round(float(w), 6) for w in value] for head, value in weights.items()}
                info(f"full-dataset weights (teacher order {list(cfg.teacher_list)}): {details['weights']}")
            if cfg.calibrate_ensemble:
                temperatures = fit_calibration(ensemble, held_out_logits, accelerator=accelerator)
                details["calibration_temperatures"] = {head: round(float(t), 4) for head, t in temperatures.items()}
                info(f"ensemble calibration temperatures: {details['calibration_temperatures']}")
        self.save_model(unit, ensemble.cpu(), {"role": "ensemble", "teachers": list(cfg.teacher_list),
                                               "weighting": cfg.weighting_scheme, **details})
        self.finish(unit, started, **details)

    def run_student(self) -> None:
        unit = "student"
        if self.done_earlier(unit):
            return
        self._require(["ensemble"], "distill")
        cfg = self.config
        banner(f"stage distill: RGB student <- teacher ensemble ({cfg.teacher_mode} targets)")
        started = time.time()
        ensemble = AutoModel.from_pretrained(self.folder.model_dir("ensemble"))
        if cfg.teacher_mode == "cached":
            cache_dir = self.cache_teacher_logits(ensemble)
            train = with_cached_logits(self.data.dataset("train", ["rgb"], train=True), cache_dir)
            teacher, mode = None, {"teacher_mode": "cached", "cached_logits_path": str(cache_dir)}
        else:
            modalities = sorted(set(cfg.teacher_list) | {"rgb"})
            train = self.data.dataset("train", modalities, train=True)
            teacher, mode = ensemble, {"teacher_mode": "online"}
        seed_everything(cfg.seed + STUDENT_SEED_OFFSET)
        student = build_student(cfg, self.data.heads, self.data.head_labels)

        def distillation_trainer(model, args, dataset, collator, callbacks) -> DistillationTrainer:
            return DistillationTrainer(model=model, teacher=teacher, args=args, train_dataset=dataset,
                                       data_collator=collator, callbacks=callbacks)

        trainer = self.train_unit(unit, student, train, self.distillation_training_arguments(unit, **mode),
                                  seed_offset=STUDENT_SEED_OFFSET, trainer_factory=distillation_trainer)
        self.save_model(unit, trainer.model, {"role": "student", "teachers": list(cfg.teacher_list),
                                              "teacher_mode": cfg.teacher_mode})
        self.finish(unit, started)

    def cache_teacher_logits(self, ensemble: nn.Module) -> Path:
        """The ensemble's logits on every training clip (un-augmented views), in ``<run>/teacher-logits/``
        (:func:`~mmkd_hf.distillation.cache.precompute_teacher_logits`: resumable, shards split over processes)."""
        cfg = self.config
        cache_dir = self.folder.path / TEACHER_LOGITS_DIR
        accelerator = Accelerator()
        dataset = self.data.dataset("train", sorted(cfg.teacher_list), train=False)
        precompute_teacher_logits(ensemble.to(accelerator.device), dataset, cache_dir, batch_size=cfg.eval_batch_size,
                                  accelerator=accelerator, collate_fn=self.data.collator(), progress=is_main())
        ensemble.cpu()
        return cache_dir

    def run_baseline_rgb(self) -> None:
        unit = "baseline-rgb"
        if self.done_earlier(unit):
            return
        banner("stage baselines: baseline-rgb (student architecture, labels only)")
        started = time.time()
        cfg = self.config
        # same init and data order as the student: only the targets differ
        seed_everything(cfg.seed + STUDENT_SEED_OFFSET)
        model = build_student(cfg, self.data.heads, self.data.head_labels)
        train = self.data.dataset("train", ["rgb"], train=True)
        args = self.training_arguments(unit, self.baseline_epochs(), cfg.student_batch_size, cfg.student_learning_rate,
                                       STUDENT_SEED_OFFSET)
        trainer = self.train_unit(unit, model, train, args, seed_offset=STUDENT_SEED_OFFSET)
        self.save_model(unit, trainer.model, {"role": "baseline-rgb"})
        self.finish(unit, started)

    def run_omnivore(self) -> None:
        unit = "omnivore"
        if self.done_earlier(unit):
            return
        cfg = self.config
        modalities = [m for m in OMNIVORE_MODALITIES if m in DATASET_TEACHERS[cfg.dataset]]
        banner(f"stage baselines: omnivore (one network, {'/'.join(modalities)} clips in turn, evaluated on RGB)")
        started = time.time()
        seed_everything(cfg.seed + STUDENT_SEED_OFFSET)
        model = build_student(cfg, self.data.heads, self.data.head_labels)
        train = OmnivoreDataset({m: self.data.dataset("train", [m], train=True) for m in modalities},
                                frame_size=(cfg.size, cfg.size))
        args = self.training_arguments(unit, self.baseline_epochs(), cfg.student_batch_size, cfg.student_learning_rate,
                                       STUDENT_SEED_OFFSET)
        trainer = self.train_unit(unit, model, train, args, seed_offset=STUDENT_SEED_OFFSET)
        self.save_model(unit, trainer.model, {"role": "omnivore", "modalities": modalities})
        self.finish(unit, started)

    def run_evaluate(self) -> dict[str, Any]:
        banner("stage evaluate: every model on the validation split")
        started = time.time()
        cfg = self.config
        results: dict[str, Any] = {}
        for unit in self.model_units():
            folder = self.folder.model_dir(unit)
            if not folder.exists():
                info(f"evaluate: {unit} not trained yet, skipped")
                continue
            model = AutoModel.from_pretrained(folder)
            modalities = model_modalities(unit, cfg)
            dataset = self.data.dataset("validation", modalities, train=False)
            results[unit] = evaluate(model, dataset, self.data.collator(), cfg, unit, self.folder.path / "eval" / unit)
            results[unit]["modalities"] = list(modalities)
            results[unit]["parameters"] = int(sum(p.numel() for p in model.parameters()))
        if is_main():
            self.folder.add_timing("evaluate", time.time() - started)
            payload = write_results(self.folder, cfg, results, self.data.heads)
            if cfg.write_model_cards:  # refresh each card with the model's validation metrics
                for unit in results:
                    write_card(self.folder.model_dir(unit), unit, cfg, {"role": unit, "results": payload})
            self.folder.mark_done("evaluate")
        barrier()
        return results

    def model_units(self) -> list[str]:
        teachers = [f"teacher-{m}" for m in self.config.teacher_list]
        return teachers + ["ensemble", "student", *BASELINES]

    def _require(self, units: Sequence[str], stage: str) -> None:
        missing = [u for u in units if not self.folder.is_done(u)]
        if missing:
            raise MissingUnitsError(
                f"stage {stage!r} needs {missing} from earlier stages, not found in {self.folder.path}; run them first "
                f"(e.g. --stage all, or --stage teachers / weights)."
            )


__all__ = ["BASELINES", "MissingUnitsError", "Runner", "model_modalities"]
