"""``RunSettings``: the data settings a training run saves and later readers load back."""

from __future__ import annotations

import json

import pytest

from mmkd_hf.data import AudioConfig, RunSettings


def _settings(data_dir) -> RunSettings:
    return RunSettings(
        dataset="epic-kitchens-100",
        data_dir=str(data_dir),
        load_kwargs={"num_frames": 4, "crop_size": 32, "sampler": "uniform", "stride": 2,
                     "audio": {"sample_rate": 8000, "output_size": [16, 16]}, "seed": 0, "frames_dtype": "uint8"},
        heads={"verb": 3, "noun": 4},
        head_labels={"verb": ["take", "put", "open"], "noun": ["cup", "plate", "knife", "door"]},
    )


def test_round_trip_from_run_and_model_folder(tmp_path):
    settings = _settings(tmp_path / "data")
    path = settings.save(tmp_path / "run")
    assert path.name == "run_settings.json"
    assert json.loads(path.read_text())["heads"] == {"verb": 3, "noun": 4}
    assert RunSettings.from_run_dir(tmp_path / "run") == settings
    (tmp_path / "run" / "student").mkdir()
    assert RunSettings.from_run_dir(tmp_path / "run" / "student") == settings
    audio = settings.dataset_kwargs()["audio"]
    assert isinstance(audio, AudioConfig) and audio.sample_rate == 8000 and audio.output_size == (16, 16)


def test_missing_file_is_a_one_line_error(tmp_path):
    with pytest.raises(FileNotFoundError) as error:
        RunSettings.from_run_dir(tmp_path)
    message = str(error.value)
    assert "run_settings.json" in message and "\n" not in message


def test_invalid_file_names_the_file(tmp_path):
    (tmp_path / "run_settings.json").write_text("{not json")
    with pytest.raises(ValueError, match="run_settings.json"):
        RunSettings.from_run_dir(tmp_path)


def test_load_dataset_uses_the_run_settings(tiny_epic, tmp_path):
    settings = _settings(tiny_epic)
    settings.save(tmp_path)
    dataset = RunSettings.from_run_dir(tmp_path).load_dataset("validation", modalities=("rgb",))
    item = dataset[0]
    assert len(dataset) == 2
    assert tuple(item["pixel_values"].shape) == (4, 3, 32, 32)
    assert item["pixel_values"].dtype.is_floating_point is False  # frames_dtype="uint8" came from the settings


def test_evaluate_cli_defaults_dataset_from_the_run(tmp_path, capsys):
    from mmkd_hf.evaluation.cli import apply_run_settings, build_parser

    _settings(tmp_path / "data").save(tmp_path / "run")
    (tmp_path / "run" / "student").mkdir()
    parser = build_parser()
    args = apply_run_settings(parser.parse_args(["--model", str(tmp_path / "run" / "student")]), parser)
    assert (args.dataset, args.data_dir) == ("epic-kitchens-100", str(tmp_path / "data"))
    explicit = parser.parse_args(["--model", str(tmp_path / "run" / "student"), "--dataset", "mini-kitchens"])
    assert (apply_run_settings(explicit, parser).dataset, explicit.data_dir) == ("mini-kitchens", None)
    (tmp_path / "alone").mkdir()
    with pytest.raises(SystemExit):
        apply_run_settings(parser.parse_args(["--model", str(tmp_path / "alone")]), parser)
    assert "--dataset is required" in capsys.readouterr().err
