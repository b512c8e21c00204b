"""train.py under two DDP processes on CPU (gloo): `accelerate launch --multi_gpu --num_processes 2` on the tiny
test config; the main process alone writes the run folder, and the saved models load with AutoModel."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_two_process_run_writes_loadable_models(tmp_path):
    from transformers import AutoModel

    import mmkd_hf  # noqa: F401  (registers the Auto classes)

    accelerate = Path(sys.executable).parent / "accelerate"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    command = [
        str(accelerate), "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
        "--mixed_precision", "no", "--dynamo_backend", "no", str(REPO / "train.py"),
        "--config", str(REPO / "configs" / "tiny-test.json"),
        "--data_dir", str(tmp_path / "mini-kitchens-tiny"), "--output_dir", str(tmp_path / "outputs"),
        "--report_to", "none", "--calibrate_ensemble", "true",
    ]
    done = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-5000:]

    run = tmp_path / "outputs" / "tiny-test"
    results = json.loads((run / "results.json").read_text())
    assert results["run"]["num_processes"] == 2
    assert set(results["models"]) == {"teacher-rgb", "teacher-flow", "teacher-audio", "teacher-layout", "ensemble",
                                      "student", "baseline-rgb", "omnivore"}
    # gather_for_metrics: every validation clip counted exactly once across the two processes
    num_validation = json.loads((tmp_path / "mini-kitchens-tiny" / ".complete").read_text())["segments"]["validation"]
    counts = {unit: metrics["num_samples"] for unit, metrics in results["models"].items()}
    assert set(counts.values()) == {num_validation}, counts
    # the calibration temperatures are fit on the logits gathered from both processes' shards of the held-out split
    ensemble = AutoModel.from_pretrained(run / "ensemble")
    temperatures = ensemble.config.calibration_temperatures
    assert set(temperatures) == {"verb", "noun"} and all(t > 0 for t in temperatures.values())
    marker = json.loads((run / "stages" / "ensemble.done").read_text())
    assert marker["calibration_temperatures"] == {h: round(t, 4) for h, t in temperatures.items()}
    # ... and equal a one-process fit of the same teachers on the same held-out split (each sample counted once)
    import torch

    from mmkd_hf import pipeline
    from mmkd_hf.distillation.ensemble_fitting import fit_calibration, fit_full_dataset_weights
    from mmkd_hf.models import MultimodalTeacherEnsemble

    config = pipeline.parse_config(command[command.index("--config"):])
    data = pipeline.PipelineData(config)
    split = pipeline.load_or_make_held_out_split(pipeline.RunFolder(run), config, data.train_ids())
    held_out = torch.utils.data.Subset(data.dataset("train", config.teacher_list, train=False),
                                       split["held_out_indices"])
    loader = torch.utils.data.DataLoader(held_out, batch_size=3, collate_fn=data.collator())
    single = MultimodalTeacherEnsemble.from_teachers(
        {m: AutoModel.from_pretrained(run / f"teacher-{m}") for m in config.teacher_list}, heads=data.heads)
    weights = fit_full_dataset_weights(single, loader)
    for head, value in ensemble.teacher_weights().items():
        assert torch.allclose(value, weights[head], atol=1e-5), (head, value, weights[head])
    assert fit_calibration(single, loader) == pytest.approx(temperatures, rel=1e-4)
    student = AutoModel.from_pretrained(run / "student")
    assert student.config.heads == {"verb": 8, "noun": 10}
    assert not list(run.glob("**/*.tmp")), "a temporary file was left behind"
