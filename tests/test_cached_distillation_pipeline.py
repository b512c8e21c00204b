"""train.py's default distillation reads the ensemble's cached logits (``--teacher_mode cached``); ``online`` runs the
teachers every step. Both train the same student network from the same start; only the targets differ."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from transformers import AutoModel

from mmkd_hf import pipeline
from mmkd_hf.distillation.cache import read_cache
from mmkd_hf.pipeline import PipelineData, main, parse_config

TINY = [
    "--preset", "test", "--mini_kitchens_scale", "tiny", "--teacher_batch_size", "4", "--student_batch_size", "4",
    "--eval_batch_size", "8", "--report_to", "none", "--write_model_cards", "false", "--max_steps", "2",
]


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory):
    from mmkd_hf.synthetic import ensure_mini_kitchens

    root = tmp_path_factory.mktemp("mini") / "mini-kitchens-tiny"
    ensure_mini_kitchens(root, seed=0, **pipeline.MINI_KITCHENS_SCALES["tiny"])
    return root


def _state(folder: Path) -> dict[str, torch.Tensor]:
    return AutoModel.from_pretrained(folder).state_dict()


@pytest.mark.slow
def test_cached_targets_are_the_ensemble_on_unaugmented_training_clips(tiny_data, tmp_path):
    args = TINY + ["--data_dir", str(tiny_data), "--output_dir", str(tmp_path)]
    assert main(args + ["--run_name", "cached"]) == 0
    run = tmp_path / "cached"
    logits, presence = read_cache(run / "teacher-logits")
    config = parse_config(args + ["--run_name", "cached"])
    data = PipelineData(config)
    train_ids = data.train_ids()
    assert sorted(logits) == sorted(train_ids) and all(flags.all() for flags in presence.values())
    ensemble = AutoModel.from_pretrained(run / "ensemble").eval()
    item = data.dataset("train", list(config.teacher_list), train=False)[0]
    batch = data.collator()([item])
    with torch.no_grad():
        expected = ensemble(**batch).logits
    for head in ("verb", "noun"):
        np.testing.assert_allclose(logits[str(item["segment_id"])][head], expected[head][0].numpy(), atol=1e-5)

    assert main(args + ["--run_name", "online", "--teacher_mode", "online"]) == 0
    online = tmp_path / "online"
    assert not (online / "teacher-logits").exists()
    # same teachers, same baseline (identical seeds and data), different targets -> a different student
    for unit in ("ensemble", "baseline-rgb"):
        for name, tensor in _state(run / unit).items():
            assert torch.equal(tensor, _state(online / unit)[name]), (unit, name)
    cached_student, online_student = _state(run / "student"), _state(online / "student")
    assert any(not torch.equal(cached_student[k], online_student[k]) for k in cached_student)
