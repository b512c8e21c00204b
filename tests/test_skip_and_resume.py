"""train.py --skip_bad_samples (a corrupt sample is skipped, logged in the run folder and counted in results.json;
without the option one clear error) and --resume falling back to the newest complete checkpoint."""

from __future__ import annotations

import json
import logging
import re
import shutil
from pathlib import Path

import pytest

from mmkd_hf import pipeline
from mmkd_hf.data import load_dataset
from mmkd_hf.distillation.weighting import make_held_out_split
from mmkd_hf.pipeline import last_valid_checkpoint, main, parse_config
from mmkd_hf.pipeline.run_folder import checkpoint_problem

TINY = [
    "--preset", "test", "--mini_kitchens_scale", "tiny", "--teacher_batch_size", "4", "--student_batch_size", "4",
    "--eval_batch_size", "8", "--report_to", "none", "--write_model_cards", "false",
]


# ------------------------------------------------------------------------------------------------ --resume
def _checkpoint(folder: Path, step: int, *, state: str | None = '{"global_step": 1}', weights: bytes = b"w" * 8,
                optimizer: bytes | None = b"o" * 8) -> Path:
    path = folder / f"checkpoint-{step}"
    path.mkdir(parents=True)
    if state is not None:
        (path / "trainer_state.json").write_text(state)
    (path / "model.safetensors").write_bytes(weights)
    if optimizer is not None:
        (path / "optimizer.pt").write_bytes(optimizer)
    return path


def test_resume_falls_back_to_the_newest_complete_checkpoint(tmp_path, caplog):
    good = _checkpoint(tmp_path, 2)
    _checkpoint(tmp_path, 4, state="")  # 0-byte trainer_state.json (disk full while saving)
    with caplog.at_level(logging.WARNING):
        assert last_valid_checkpoint(tmp_path) == good
    assert "checkpoint-4" in caplog.text and str(good) in caplog.text and "unreadable" in caplog.text
    _checkpoint(tmp_path, 6, weights=b"")  # empty weights
    _checkpoint(tmp_path, 8, optimizer=b"")  # empty optimizer state
    _checkpoint(tmp_path, 10, state="[1, 2")  # cut JSON
    _checkpoint(tmp_path, 12, state=None)  # crashed before the state was written
    assert last_valid_checkpoint(tmp_path) == good
    assert "empty" in checkpoint_problem(tmp_path / "checkpoint-6")
    assert "optimizer.pt" in checkpoint_problem(tmp_path / "checkpoint-8")
    assert checkpoint_problem(good) is None
    newest = _checkpoint(tmp_path, 14)
    assert last_valid_checkpoint(tmp_path) == newest
    shutil.rmtree(good), shutil.rmtree(newest)
    assert last_valid_checkpoint(tmp_path) is None  # none complete: training starts over
    assert last_valid_checkpoint(tmp_path / "absent") is None


# ------------------------------------------------------------------------------------------- --skip_bad_samples
def test_skip_bad_samples_is_in_the_identity_only_when_set():
    plain = parse_config([])
    assert "skip_bad_samples" not in plain.identity()
    skipping = parse_config(["--skip_bad_samples"])
    assert skipping.skip_bad_samples and skipping.identity()["skip_bad_samples"] is True
    assert skipping.identity_hash() != plain.identity_hash()
    assert pipeline.dataset_load_kwargs(skipping)["skip_bad_samples"] is True
    assert "skip_bad_samples" not in pipeline.dataset_load_kwargs(plain)


@pytest.fixture(scope="module")
def corrupt_data(tmp_path_factory):
    """A tiny mini-kitchens whose one training segment (one the rgb teacher trains on) has corrupt frame files."""
    from mmkd_hf.synthetic import ensure_mini_kitchens

    root = tmp_path_factory.mktemp("mini") / "mini-kitchens-tiny"
    ensure_mini_kitchens(root, seed=0, **pipeline.MINI_KITCHENS_SCALES["tiny"])
    metadata = load_dataset("mini-kitchens", data_dir=str(root), split="train", decode=False)
    teacher_ids, _ = make_held_out_split([str(i) for i in metadata["segment_id"]], 0.2, seed=42)
    row = next(r for r in metadata if r["segment_id"] == teacher_ids[0])
    folder = root / row["participant_id"] / "rgb_frames" / row["video_id"]
    for number in range(row["start_frame"], row["stop_frame"] + 1):
        (folder / f"frame_{number:010d}.jpg").write_bytes(b"not a jpeg")
    return root, row["segment_id"], len(metadata) - round(0.2 * len(metadata))


def test_corrupt_sample_stops_with_one_error_or_is_skipped_and_counted(corrupt_data, tmp_path, capsys):
    root, segment, _ = corrupt_data
    # one full epoch of the rgb teacher: every teacher sample is read
    common = TINY + ["--data_dir", str(root), "--output_dir", str(tmp_path), "--teachers", "rgb", "--max_steps", "4"]
    assert main(common + ["--run_name", "strict", "--stage", "teachers"]) == 1
    (message,) = re.findall(r"train\.py: error: .*", capsys.readouterr().err)  # one line
    assert segment in message and "frame_" in message and "--skip_bad_samples" in message
    # the same through a DataLoader worker process
    assert main(common + ["--run_name", "strict-workers", "--stage", "teachers", "--num_workers", "1"]) == 1
    assert re.findall(r"train\.py: error: .*", capsys.readouterr().err) == [message.replace("strict", "strict-workers")]

    run = tmp_path / "skip"
    assert main(common + ["--run_name", "skip", "--stage", "teachers", "--skip_bad_samples"]) == 0
    assert main(common + ["--run_name", "skip", "--stage", "evaluate", "--skip_bad_samples"]) == 0
    logged = [json.loads(line) for line in (run / "skipped_samples.jsonl").read_text().splitlines()]
    assert logged and {e["sample_id"] for e in logged} == {segment} and "frame_" in logged[0]["path"]
    results = json.loads((run / "results.json").read_text())
    assert results["skipped_samples"]["count"] == 1 and results["skipped_samples"]["samples"] == [segment]
    assert results["skipped_samples"]["log"] == "skipped_samples.jsonl"
    assert "teacher-rgb" in results["models"]
    assert "Samples skipped" in (run / "results.md").read_text()
    assert json.loads((run / "run_settings.json").read_text())["load_kwargs"]["skip_bad_samples"] is True


def test_missing_files_are_dropped_without_shifting_the_held_out_split(corrupt_data, tmp_path):
    """With --skip_bad_samples a video whose frames are missing drops its segments; the others keep their place in
    the held-out split (the teachers never train on a held-out sample) and the drops are logged."""
    root, _, _ = corrupt_data
    copy = shutil.copytree(root, tmp_path / "data")
    metadata = load_dataset("mini-kitchens", data_dir=str(copy), split="train", decode=False)
    missing_video = metadata[len(metadata) - 1]["video_id"]
    shutil.rmtree(next(copy.glob(f"*/rgb_frames/{missing_video}")))
    config = parse_config(TINY + ["--data_dir", str(copy), "--output_dir", str(tmp_path / "out"), "--skip_bad_samples"])
    config.run_dir.mkdir(parents=True)
    data = pipeline.PipelineData(config)
    ids = data.train_ids()
    wanted = list(range(len(ids)))
    subset = data.subset("train", ["rgb"], False, wanted)
    kept = [ids[i] for i in wanted if metadata[i]["video_id"] != missing_video]
    rows = subset.dataset.with_format(None)  # metadata only (the copy still has the corrupt segment)
    assert [rows[i]["segment_id"] for i in subset.indices] == kept
    logged = [json.loads(line) for line in data.skip_log.read_text().splitlines()]
    assert {e["sample_id"] for e in logged} == set(ids) - set(kept) and "dropped at load" in logged[0]["reason"]
    strict = parse_config(TINY + ["--data_dir", str(copy)])
    with pytest.raises(ValueError, match="--skip_bad_samples"):
        pipeline.PipelineData(strict)
