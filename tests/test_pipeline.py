"""The train.py pipeline (mmkd_hf.pipeline): options, run folder, omnivore inputs, end-to-end on a tiny
mini-kitchens, output-folder conflicts and resume after a simulated crash."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from mmkd_hf import pipeline
from mmkd_hf.distillation.arguments import DistillationArguments, DistillationTrainingArguments
from mmkd_hf.pipeline import (
    RESUME_EXIT_CODE,
    EpochSeededDataset,
    OmnivoreDataset,
    PipelineConfig,
    RunConflictError,
    RunFolder,
    audio_as_rgb,
    flow_as_rgb,
    last_valid_checkpoint,
    load_config_file,
    main,
    parse_config,
)

TINY = [
    "--preset", "test", "--mini_kitchens_scale", "tiny", "--teacher_batch_size", "4", "--student_batch_size", "4",
    "--eval_batch_size", "8", "--report_to", "none", "--write_model_cards", "false",
    "--baselines", "baseline-rgb,omnivore",
]


# --------------------------------------------------------------------------------------------------- options
def test_defaults_describe_the_main_job():
    config = parse_config([])
    assert config.dataset == "mini-kitchens" and config.stage == "all"
    assert config.teacher_list == ("rgb", "flow", "audio", "layout")
    assert config.preset_name == "tiny" and config.run_dir == Path("outputs/mini-kitchens-tiny-seed42")


def test_config_file_then_command_line_override(tmp_path):
    path = tmp_path / "c.json"
    path.write_text(json.dumps({"seed": 7, "teachers": "layout,rgb", "temperature": 3.0}))
    config = parse_config(["--config", str(path), "--temperature", "4"])
    assert config.seed == 7 and config.temperature == 4.0
    assert config.teacher_list == ("rgb", "layout")  # canonical order
    yaml_path = tmp_path / "c.yaml"
    yaml_path.write_text("seed: 9\nstage: distill\n")
    assert parse_config(["--config", str(yaml_path)]).stage == "distill"


def test_one_parser_reads_the_file_then_the_command_line(tmp_path):
    """Every argument group goes through the one HfArgumentParser: a JSON file sets options of several groups and
    the command line overrides it; the earlier option name ``weighting`` still works in files and on the command
    line."""
    path = tmp_path / "run.json"
    path.write_text(json.dumps({"dataset": "mini-kitchens", "frames_dtype": "float32", "student_epochs": 3,
                                "held_out_fraction": 0.3, "ce_weight": 0.0, "weighting": "uniform", "kd_weight": 0.5}))
    config = parse_config(["--config", str(path), "--ce_weight", "0.25", "--student_epochs", "5"])
    assert (config.frames_dtype, config.held_out_fraction, config.kd_weight) == ("float32", 0.3, 0.5)  # file
    assert (config.ce_weight, config.student_epochs) == (0.25, 5.0)  # command line wins
    assert config.weighting_scheme == "uniform"
    assert parse_config(["--config", str(path), "--weighting", "per-sample"]).weighting_scheme == "per-sample"
    groups = pipeline.build_parser().parse_args_into_dataclasses(args=["--temperature", "2"], look_for_args_file=False)
    assert [type(g) for g in groups] == list(pipeline.ARGUMENT_GROUPS)


def test_distillation_settings_reach_the_student_unchanged(tmp_path):
    """The distillation recipe has one default per setting (DistillationArguments, which the student's
    DistillationTrainingArguments inherit) and reaches the student's Trainer arguments as parsed."""
    defaults = parse_config([])
    for f in dataclasses.fields(DistillationArguments):
        trainer_default = DistillationTrainingArguments.__dataclass_fields__[f.name].default
        assert getattr(defaults, f.name) == f.default == trainer_default, f.name
    assert (defaults.ce_weight, defaults.weighting_scheme) == (1.0, "full-dataset")
    config = parse_config(["--temperature", "3", "--ce_weight", "0.5", "--weighting", "per-sample",
                           "--combine_space", "probs", "--weights_temperature", "0.7", "--kd_weight", "0.9",
                           "--output_dir", str(tmp_path)])
    runner = pipeline.Runner(config=config, folder=RunFolder(tmp_path / "run"), data=None)
    args = runner.distillation_training_arguments("student")
    assert isinstance(args, DistillationTrainingArguments)
    for f in dataclasses.fields(DistillationArguments):
        assert getattr(args, f.name) == getattr(config, f.name), f.name
    assert (args.temperature, args.ce_weight, args.weighting_scheme) == (3.0, 0.5, "per-sample")
    assert (args.learning_rate, args.teacher_mode) == (config.student_learning_rate, "online")


def test_bad_options_are_named(tmp_path):
    path = tmp_path / "c.json"
    path.write_text(json.dumps({"sead": 7}))
    with pytest.raises(ValueError, match="sead"):
        load_config_file(path)
    with pytest.raises(ValueError, match="audio"):
        PipelineConfig(dataset="something-else", teachers="rgb,audio")
    assert main(["--config", str(path)]) == 2


def test_identity_ignores_operational_options():
    a = PipelineConfig(seed=1)
    assert a.identity_hash() == PipelineConfig(seed=1, stage="evaluate", resume=True, num_workers=3).identity_hash()
    assert a.identity_hash() != PipelineConfig(seed=2).identity_hash()


# -------------------------------------------------------------------------------------------- run folder
def test_run_folder_refuses_a_different_run(tmp_path):
    folder = RunFolder(tmp_path / "run")
    folder.path.mkdir()
    folder.write_identity(PipelineConfig(seed=1))
    folder.check_identity(PipelineConfig(seed=1, stage="evaluate"))  # same run: fine
    with pytest.raises(RunConflictError, match="seed: stored 1 vs given 2"):
        folder.check_identity(PipelineConfig(seed=2))
    stranger = RunFolder(tmp_path / "stranger")
    stranger.path.mkdir()
    (stranger.path / "notes.txt").write_text("mine")
    with pytest.raises(RunConflictError, match="holds no mmkd-hf run"):
        stranger.check_identity(PipelineConfig())


def test_last_valid_checkpoint_skips_incomplete(tmp_path):
    assert last_valid_checkpoint(tmp_path / "missing") is None
    for step in (2, 4, 6):
        (tmp_path / f"checkpoint-{step}").mkdir()
    for step in (2, 4):
        (tmp_path / f"checkpoint-{step}" / "trainer_state.json").write_text("{}")
        (tmp_path / f"checkpoint-{step}" / "model.safetensors").write_bytes(b"weights")
    assert last_valid_checkpoint(tmp_path).name == "checkpoint-4"  # checkpoint-6 was cut short


# ---------------------------------------------------------------------------------- inputs and determinism
def test_flow_and_audio_map_to_the_rgb_format():
    flow = torch.rand(2, 4, 2, 8, 8)
    rgb = flow_as_rgb(flow)
    assert rgb.shape == (2, 4, 3, 8, 8) and torch.equal(rgb[:, :, :2], flow) and rgb[:, :, 2].abs().sum() == 0
    audio = torch.randn(2, 4, 1, 16, 12) * 20 - 30
    mapped = audio_as_rgb(audio, (8, 8))
    assert mapped.shape == (2, 4, 3, 8, 8)
    same_size = audio_as_rgb(audio)
    # after the RGB model's ImageNet normalisation, every channel equals the audio model's normalised input
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 1, 3, 1, 1)
    expected = ((audio - -28.1125) / 16.5627).expand(-1, -1, 3, -1, -1)
    torch.testing.assert_close((same_size - mean) / std, expected, rtol=1e-4, atol=1e-4)
    with pytest.raises(ValueError, match="2 channels"):
        flow_as_rgb(torch.rand(1, 4, 3, 8, 8))


class _Items(torch.utils.data.Dataset):
    def __init__(self, key):
        self.key = key

    def __len__(self):
        return 6

    def __getitem__(self, index):
        return {self.key: torch.rand(4, {"pixel_values": 3, "flow_values": 2, "audio_values": 1}[self.key], 8, 8),
                "labels": {"verb": index}, "segment_id": f"s{index}"}


def test_omnivore_rotates_modalities_per_item_and_epoch():
    keys = [("rgb", "pixel_values"), ("flow", "flow_values"), ("audio", "audio_values")]
    data = OmnivoreDataset({m: _Items(k) for m, k in keys}, (8, 8))
    assert [data.modality_of(i) for i in range(4)] == ["rgb", "flow", "audio", "rgb"]
    data.set_epoch(1)
    assert [data.modality_of(i) for i in range(3)] == ["flow", "audio", "rgb"]
    for i in range(3):
        item = data[i]
        assert item["pixel_values"].shape == (4, 3, 8, 8) and item["labels"] == {"verb": i}


def test_epoch_seeded_items_repeat_exactly_and_change_with_the_epoch():
    data = EpochSeededDataset(_Items("pixel_values"), seed=3)
    outer = torch.random.get_rng_state()
    first = data[2]["pixel_values"]
    assert torch.equal(torch.random.get_rng_state(), outer)  # the model's RNG stream is untouched
    assert torch.equal(data[2]["pixel_values"], first)
    data.set_epoch(1)
    assert not torch.equal(data[2]["pixel_values"], first)


def test_epoch_seeded_batches_are_fetched_at_once_and_equal_single_items(tiny_epic, data_cache):
    """A DataLoader asks the training wrapper for whole batches: they come from the dataset's own ``__getitems__``
    (frames written into one batch buffer) and hold exactly the items fetched one by one, augmentations included,
    in any order and epoch; a dataset without ``__getitems__`` falls back to single items."""
    from mmkd_hf.data import MultimodalCollator, load_dataset

    ds = load_dataset("epic-kitchens-100", tiny_epic, "train", ["rgb", "flow"], data_cache, num_frames=4,
                      crop_size=32, train=True, frames_dtype="uint8")
    data = EpochSeededDataset(torch.utils.data.Subset(ds, [2, 0, 1]), seed=5)
    for epoch in (0, 1):
        data.set_epoch(epoch)
        outer = torch.random.get_rng_state()
        batch = data.__getitems__([2, 0, 1])
        assert torch.equal(torch.random.get_rng_state(), outer)
        singles = [data[i] for i in (2, 0, 1)]
        for got, want in zip(batch, singles):
            assert got["segment_id"] == want["segment_id"]
            for key in ("pixel_values", "flow_values"):
                assert torch.equal(got[key], want[key]), (epoch, key, got["segment_id"])
        # one buffer behind the batch's frames: the collator hands it on without a copy
        assert len({item["pixel_values"].untyped_storage().data_ptr() for item in batch}) == 1
    loader = torch.utils.data.DataLoader(data, batch_size=3, collate_fn=MultimodalCollator(), shuffle=False)
    first = next(iter(loader))
    assert torch.equal(first["pixel_values"], torch.stack([data[i]["pixel_values"] for i in range(3)]))
    plain = EpochSeededDataset(_Items("pixel_values"), seed=3)
    assert [item["segment_id"] for item in plain.__getitems__([1, 0])] == ["s1", "s0"]


# ------------------------------------------------------------------------------------------ end to end
@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory):
    from mmkd_hf.synthetic import ensure_mini_kitchens

    root = tmp_path_factory.mktemp("mini") / "mini-kitchens-tiny"
    ensure_mini_kitchens(root, seed=0, **pipeline.MINI_KITCHENS_SCALES["tiny"])
    return root


def test_frame_sampler_options_reach_the_data_pipeline(tiny_data):
    uniform = pipeline.PipelineData(parse_config(TINY + ["--data_dir", str(tiny_data)]))
    strided = pipeline.PipelineData(parse_config(TINY + ["--data_dir", str(tiny_data), "--frame_sampler", "stride",
                                                         "--frame_stride", "1"]))
    (default_transform,) = pipeline.find_transforms(uniform.dataset("validation", ["rgb"], train=False))
    (stride_transform,) = pipeline.find_transforms(strided.dataset("validation", ["rgb"], train=False))
    assert default_transform.config.sampler == "uniform"  # mini-kitchens' default
    assert (stride_transform.config.sampler, stride_transform.config.stride) == ("stride", 1)
    # 4 consecutive frames from the middle of the segment instead of 4 spread over all of it
    first = strided.dataset("validation", ["rgb"], train=False)[0]["pixel_values"]
    assert not torch.equal(first, uniform.dataset("validation", ["rgb"], train=False)[0]["pixel_values"])
    with pytest.raises(ValueError, match="frame_stride"):
        parse_config(["--frame_stride", "0"])


def _read_results(run_dir: Path) -> dict:
    return json.loads((run_dir / "results.json").read_text())


@pytest.mark.slow
def test_end_to_end_tiny_run_then_conflict(tiny_data, tmp_path):
    from transformers import AutoModel

    args = TINY + ["--data_dir", str(tiny_data), "--output_dir", str(tmp_path), "--run_name", "r", "--max_steps", "2"]
    assert main(args) == 0
    run = tmp_path / "r"
    results = _read_results(run)
    units = ["teacher-rgb", "teacher-flow", "teacher-audio", "teacher-layout", "ensemble", "student", "baseline-rgb",
             "omnivore"]
    assert list(results["models"]) == units
    for unit in units:
        metrics = results["models"][unit]
        assert set(metrics["heads"]) == {"verb", "noun"}
        for head in ("verb", "noun"):
            assert 0.0 <= metrics["heads"][head]["top1"] <= metrics["heads"][head]["top5"] <= 100.0
            assert 0.0 <= metrics["heads"][head]["ece"] <= 100.0
        assert 0.0 <= metrics["action"]["top1"] <= 100.0
        model = AutoModel.from_pretrained(run / unit)
        assert model.config.heads == {"verb": 8, "noun": 10}
    assert results["run"]["seed"] == 42 and results["config"]["max_steps"] == 2
    assert {"teacher-rgb", "student", "evaluate", "total"} <= set(results["timings_s"])
    # the saved student carries its video processor, so pipeline("mmkd-video-classification", folder) works on a file
    from helpers_hub import write_clip
    from transformers import pipeline as hf_pipeline

    classify = hf_pipeline("mmkd-video-classification", model=str(run / "student"))
    predictions = classify(str(write_clip(tmp_path / "c.mp4")))
    assert set(predictions) == {"verb", "noun", "action"} and predictions["verb"][0]["label"]
    # the Space finds the run's ensemble, rebuilds the run's validation clips and names the classes
    from test_space import load_space_module

    demo, status = load_space_module().load_ensemble_demo(str(run / "student"), tmp_path / "examples", count=1)
    assert demo is not None, status
    ensemble_predictions, _ = demo.predict(0)
    class_names = AutoModel.from_pretrained(run / "student").config.head_labels
    assert ensemble_predictions["verb"][0]["label"] in class_names["verb"]
    assert "| student | rgb |" in (run / "results.md").read_text()
    # the resolved data settings, written once by the pipeline, rebuild the run's validation clips
    from mmkd_hf.data import RunSettings

    settings = RunSettings.from_run_dir(run / "student")
    assert settings.heads == {"verb": 8, "noun": 10} and settings.load_kwargs["frames_dtype"] == "uint8"
    assert len(settings.load_dataset("validation")) >= 1
    split = json.loads((run / "held_out_split.json").read_text())
    assert split["held_out_ids"] and not set(split["held_out_ids"]) & set(split["teacher_train_ids"])
    ensemble = AutoModel.from_pretrained(run / "ensemble")
    for weights in ensemble.teacher_weights().values():
        assert weights.shape == (4,) and torch.isclose(weights.sum(), torch.tensor(1.0))
        assert not torch.allclose(weights, torch.full((4,), 0.25))  # fit on the held-out split, not uniform

    # the benchmark helpers read a finished run: targets vs labels on the training split, paired student - baseline
    from conftest import load_benchmark

    rows = load_benchmark("distillation_targets").score(run, batch_size=8)
    assert [(r["views"], r["part"]) for r in rows] == [(v, p) for v in ("augmented", "un-augmented")
                                                       for p in ("teachers' part", "held-out part")]
    assert rows[0]["clips"] == len(split["teacher_train_ids"]) and rows[1]["clips"] == len(split["held_out_ids"])
    for row in rows:
        for head in ("verb", "noun"):
            assert 0.0 <= row[f"ensemble {head} p(label)"] <= 100.0
            assert 0.0 <= row[f"student {head} train top-1"] <= 100.0
    paired = load_benchmark("distillation_gain").paired_action_difference([run])
    assert paired["runs"] == 1 and paired["samples"] == len(pipeline.PipelineData(parse_config(
        TINY + ["--data_dir", str(tiny_data)])).dataset("validation", ["rgb"], train=False))
    assert paired["difference"] == pytest.approx(results["models"]["student"]["action"]["top1"]
                                                 - results["models"]["baseline-rgb"]["action"]["top1"])

    # a different run into the same folder: clear error, nothing touched
    before = {p: p.stat().st_mtime_ns for p in run.rglob("*") if p.is_file()}
    assert main(args[:-1] + ["3"]) == 2
    assert {p: p.stat().st_mtime_ns for p in run.rglob("*") if p.is_file()} == before


@pytest.mark.slow
def test_resume_after_a_crash_matches_an_uninterrupted_run(tiny_data, tmp_path):
    """Teacher training killed after 3 of 6 steps (last checkpoint at step 2, mid-epoch) and resumed ends with the
    same weights and validation metrics as an uninterrupted run with the same seed."""
    from safetensors.torch import load_file

    common = TINY + ["--data_dir", str(tiny_data), "--output_dir", str(tmp_path), "--teachers", "rgb",
                     "--max_steps", "6", "--save_steps", "2"]
    teachers_then_eval = lambda name, *extra: (  # noqa: E731
        main(common + ["--run_name", name, "--stage", "teachers", *extra]),
        main(common + ["--run_name", name, "--stage", "evaluate"]),
    )
    assert teachers_then_eval("straight") == (0, 0)
    assert main(common + ["--run_name", "crashed", "--stage", "teachers", "--stop_after_steps", "3"]) == RESUME_EXIT_CODE
    assert (tmp_path / "crashed" / "checkpoints" / "teacher-rgb" / "checkpoint-2").is_dir()
    assert not (tmp_path / "crashed" / "teacher-rgb").exists()
    # without --resume the leftovers are not silently discarded
    assert main(common + ["--run_name", "crashed", "--stage", "teachers"]) == 2
    assert teachers_then_eval("crashed", "--resume") == (0, 0)

    straight = load_file(tmp_path / "straight" / "teacher-rgb" / "model.safetensors")
    resumed = load_file(tmp_path / "crashed" / "teacher-rgb" / "model.safetensors")
    assert straight.keys() == resumed.keys()
    for key in straight:
        torch.testing.assert_close(resumed[key], straight[key], rtol=0, atol=0, msg=key)
    a = _read_results(tmp_path / "straight")["models"]["teacher-rgb"]
    b = _read_results(tmp_path / "crashed")["models"]["teacher-rgb"]
    for head in ("verb", "noun"):
        assert a["heads"][head]["top1"] == b["heads"][head]["top1"]
        assert np.isclose(a["heads"][head]["ece"], b["heads"][head]["ece"])


# ------------------------------------------------------------------------------------------ data identity
def test_run_folder_refuses_other_data_and_accepts_runs_without_a_fingerprint(tiny_data, tmp_path):
    import shutil

    from mmkd_hf.pipeline.run_folder import data_fingerprint

    fingerprint = data_fingerprint("mini-kitchens", tiny_data)
    moved = tmp_path / "moved"
    shutil.copytree(tiny_data, moved)
    assert data_fingerprint("mini-kitchens", moved) == fingerprint  # the path is not part of it
    lines = (moved / "EPIC_100_train.csv").read_text().splitlines()
    (moved / "EPIC_100_train.csv").write_text("\n".join([lines[0], lines[2], lines[1], *lines[3:]]) + "\n")
    relabelled = data_fingerprint("mini-kitchens", moved)
    assert relabelled["sha256"] != fingerprint["sha256"]
    folder = RunFolder(tmp_path / "run")
    folder.path.mkdir()
    folder.write_identity(PipelineConfig(), fingerprint)
    folder.check_data(fingerprint, tiny_data)
    with pytest.raises(RunConflictError, match="other data.*--run_name.*--overwrite"):
        folder.check_data(relabelled, moved)
    legacy = json.loads(folder.config_file.read_text())
    del legacy["data_fingerprint"]
    folder.config_file.write_text(json.dumps(legacy))
    folder.check_data(relabelled, moved)  # recorded before fingerprints existed: unknown, accepted
    folder.write_identity(PipelineConfig(), relabelled)
    assert folder.stored_data_fingerprint() == relabelled
    folder.write_identity(PipelineConfig())  # a later write keeps the recorded fingerprint
    assert folder.stored_data_fingerprint() == relabelled


def test_numeric_options_name_their_range():
    with pytest.raises(ValueError, match="temperature: expected a finite value > 0, given nan"):
        parse_config(["--temperature", "nan"])
    with pytest.raises(ValueError, match="teacher_learning_rate: expected a finite value > 0, given -0.001"):
        parse_config(["--teacher_learning_rate", "-1e-3"])
    with pytest.raises(ValueError, match="max_train_samples: expected an integer >= 1"):
        PipelineConfig(max_train_samples=0)
    assert main(["--student_epochs", "-1"]) == 2
