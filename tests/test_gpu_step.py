"""The GPU path, checked on CPU: ``benchmarks/gpu_step.py`` at the tiny preset, bf16 mixed precision in the
distillation trainer (teachers cast to bf16, losses in float32), the pipeline's options for it and persistent
DataLoader workers."""

from __future__ import annotations

import json

import pytest
import torch
from transformers import AutoModel

from conftest import load_benchmark
from mmkd_hf.distillation import DistillationTrainer, DistillationTrainingArguments
from mmkd_hf.pipeline import (
    MINI_KITCHENS_SCALES,
    EpochSeededDataset,
    PipelineConfig,
    RunFolder,
    Runner,
    main,
    parse_config,
    stages,
)
from mmkd_hf.synthetic import ensure_mini_kitchens


def test_gpu_step_benchmark_writes_every_mode_and_precision(tmp_path):
    gpu_step = load_benchmark("gpu_step")
    output = tmp_path / "gpu_step.json"
    assert gpu_step.main(["--preset", "tiny", "--steps", "1", "--warmup", "0", "--workers", "0",
                          "--loader_clips", "4", "--output", str(output)]) == 0
    result = json.loads(output.read_text())
    assert set(result) == {"benchmark", "setup", "rows", "loader", "loader_over_step"}
    assert result["setup"]["preset"] == "tiny" and result["setup"]["num_frames"] == 8
    assert [(row["mode"], row["precision"]) for row in result["rows"]] == [
        (mode, precision) for precision in ("fp32", "bf16") for mode in ("supervised", "online KD", "cached KD")]
    for row in result["rows"]:
        assert set(row) == {"mode", "precision", "median_step_s", "steps_per_s", "clips_per_s", "peak_memory_mb"}
        assert row["steps_per_s"] > 0 and row["clips_per_s"] == pytest.approx(4 * row["steps_per_s"], rel=0.01)
    assert [entry["workers"] for entry in result["loader"]] == [0]
    assert result["loader"][0]["clips_per_s"] > 0
    assert result["loader_over_step"]["precision"] == "bf16" and result["loader_over_step"]["ratio"] > 0


def _tiny_student_and_ensemble():
    gpu_step = load_benchmark("gpu_step")
    torch.manual_seed(0)
    student, ensemble = gpu_step.build_models("tiny", 8)
    return gpu_step, student, ensemble


def test_bf16_distillation_casts_the_teachers_and_computes_losses_in_float32(tmp_path):
    gpu_step, student, ensemble = _tiny_student_and_ensemble()
    batch = gpu_step.make_batch(2, 8, 48, torch.device("cpu"))
    trainer = DistillationTrainer(model=student, teacher=ensemble, args=DistillationTrainingArguments(
        output_dir=str(tmp_path), report_to="none", use_cpu=True, bf16=True))
    assert trainer.accelerator.mixed_precision == "bf16"
    assert {p.dtype for p in trainer.teacher.parameters()} == {torch.bfloat16}
    student.train()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = trainer.compute_loss(student, batch)
    assert loss.dtype == torch.float32 and torch.isfinite(loss)
    loss.backward()
    assert all(p.grad is not None and p.grad.dtype == torch.float32 for p in student.parameters() if p.requires_grad)


def test_fp32_distillation_leaves_the_teachers_in_float32(tmp_path):
    _, student, ensemble = _tiny_student_and_ensemble()
    trainer = DistillationTrainer(model=student, teacher=ensemble, args=DistillationTrainingArguments(
        output_dir=str(tmp_path), report_to="none", use_cpu=True))
    assert {p.dtype for p in trainer.teacher.parameters()} == {torch.float32}


def test_mixed_precision_comes_from_accelerate_launch_and_enters_the_identity(monkeypatch):
    monkeypatch.delenv("ACCELERATE_MIXED_PRECISION", raising=False)
    plain = parse_config([])
    assert plain.mixed_precision == "no" and "mixed_precision" not in plain.identity()
    monkeypatch.setenv("ACCELERATE_MIXED_PRECISION", "bf16")  # what `accelerate launch --mixed_precision bf16` sets
    launched = parse_config([])
    assert launched.mixed_precision == "bf16" and launched.identity()["mixed_precision"] == "bf16"
    assert launched.identity_hash() != plain.identity_hash()
    assert parse_config(["--mixed_precision", "bf16"]).mixed_precision == "bf16"
    with pytest.raises(ValueError, match="contradicts accelerate's setting 'bf16'"):
        parse_config(["--mixed_precision", "no"])
    monkeypatch.setenv("ACCELERATE_MIXED_PRECISION", "fp16")
    with pytest.raises(ValueError, match="mixed_precision: expected one of"):
        parse_config([])


def test_gradient_checkpointing_enters_the_identity_only_when_set(monkeypatch):
    monkeypatch.delenv("ACCELERATE_MIXED_PRECISION", raising=False)
    assert "gradient_checkpointing" not in PipelineConfig().identity()
    on = parse_config(["--gradient_checkpointing"])
    assert on.gradient_checkpointing and on.identity()["gradient_checkpointing"] is True


def test_training_arguments_follow_the_precision_and_the_workers(tmp_path, monkeypatch):
    monkeypatch.delenv("ACCELERATE_MIXED_PRECISION", raising=False)
    config = parse_config(["--mixed_precision", "bf16", "--num_workers", "2", "--report_to", "none",
                           "--output_dir", str(tmp_path)])
    runner = Runner(config=config, folder=RunFolder(tmp_path / "run"), data=None)
    args = runner.training_arguments("teacher-rgb", 1, 2, 1e-3, 1)
    assert args.bf16 and args.mixed_precision == "bf16"
    assert args.dataloader_persistent_workers and args.dataloader_num_workers == 2
    assert args.dataloader_pin_memory == torch.cuda.is_available()
    plain = Runner(config=parse_config(["--report_to", "none"]), folder=RunFolder(tmp_path / "run2"), data=None)
    args = plain.training_arguments("teacher-rgb", 1, 2, 1e-3, 1)
    assert not args.bf16 and not args.dataloader_persistent_workers


def test_a_bf16_run_with_gradient_checkpointing_trains_every_unit(tmp_path, monkeypatch):
    """``accelerate launch --mixed_precision bf16 train.py --gradient_checkpointing`` on the tiny dataset (CPU)."""
    data = tmp_path / "mini-kitchens-tiny"
    ensure_mini_kitchens(data, seed=0, **MINI_KITCHENS_SCALES["tiny"])
    monkeypatch.setenv("ACCELERATE_MIXED_PRECISION", "bf16")
    args = ["--preset", "test", "--mini_kitchens_scale", "tiny", "--teacher_batch_size", "4", "--student_batch_size",
            "4", "--eval_batch_size", "8", "--report_to", "none", "--write_model_cards", "false", "--teachers",
            "rgb,layout", "--gradient_checkpointing", "--data_dir", str(data), "--output_dir", str(tmp_path / "runs"),
            "--run_name", "r", "--max_steps", "2"]
    assert main(args) == 0
    run = tmp_path / "runs" / "r"
    config = json.loads((run / "config.json").read_text())
    assert "bf16" in json.dumps(config) and "gradient_checkpointing" in json.dumps(config)
    results = json.loads((run / "results.json").read_text())
    assert {"teacher-rgb", "teacher-layout", "ensemble", "student", "baseline-rgb"} <= set(results["models"])
    student = AutoModel.from_pretrained(run / "student")
    assert {p.dtype for p in student.parameters()} == {torch.float32}  # bf16 autocast keeps float32 weights
    assert all(torch.isfinite(p).all() for p in student.parameters())


class _EpochItems(torch.utils.data.Dataset):
    """Items that show the (per-item seeded) random draw and the epoch the dataset was given."""

    def __init__(self):
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return 4

    def __getitem__(self, index: int):
        return {"draw": torch.rand(()), "epoch": torch.tensor(self.epoch)}


def test_persistent_workers_see_every_epoch():
    """Persistent DataLoader workers keep their copy of the dataset: the epoch reaches them through shared memory,
    so each epoch's items (draws and the wrapped dataset's epoch) equal those of a fresh in-process loader."""
    def epochs(num_workers: int) -> list[list[tuple[float, int]]]:
        dataset = EpochSeededDataset(_EpochItems(), seed=7)
        loader = torch.utils.data.DataLoader(dataset, batch_size=2, num_workers=num_workers,
                                             persistent_workers=num_workers > 0)
        seen = []
        for epoch in range(3):
            dataset.set_epoch(epoch)
            seen.append([(round(float(d), 6), int(e)) for batch in loader
                         for d, e in zip(batch["draw"], batch["epoch"])])
        return seen

    in_process, persistent = epochs(0), epochs(1)
    assert persistent == in_process
    assert [e for _, e in persistent[2]] == [2, 2, 2, 2] and persistent[0] != persistent[1]


def test_training_arguments_on_a_gpu_pin_memory_and_copy_without_blocking(tmp_path, monkeypatch):
    """The CUDA branch of the arguments, built on any machine (the Trainer is not started)."""
    monkeypatch.delenv("ACCELERATE_MIXED_PRECISION", raising=False)
    monkeypatch.setattr(stages, "cpu_only", lambda: False)
    runner = Runner(config=parse_config(["--report_to", "none"]), folder=RunFolder(tmp_path / "run"), data=None)
    args = runner.training_arguments("student", 1, 2, 1e-3, 10)
    assert args.dataloader_pin_memory and args.accelerator_config.non_blocking
