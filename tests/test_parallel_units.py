"""``--parallel_units``: units of one run trained side by side in their own processes give the same models as one
after the other; ``--units`` trains chosen units; a failing unit is one error naming it and its log."""

from __future__ import annotations

import json

import pytest
import torch
from transformers import AutoModel

from mmkd_hf import pipeline
from mmkd_hf.pipeline import main, parse_config
from mmkd_hf.pipeline.lanes import dependencies, resolved_lanes

TINY = [
    "--preset", "test", "--mini_kitchens_scale", "tiny", "--teacher_batch_size", "4", "--student_batch_size", "4",
    "--eval_batch_size", "8", "--report_to", "none", "--write_model_cards", "false", "--max_steps", "2",
    "--teachers", "rgb,flow", "--baselines", "baseline-rgb,omnivore",
]
UNITS = ["teacher-rgb", "teacher-flow", "ensemble", "student", "baseline-rgb", "omnivore"]


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory):
    from mmkd_hf.synthetic import ensure_mini_kitchens

    root = tmp_path_factory.mktemp("mini") / "mini-kitchens-tiny"
    ensure_mini_kitchens(root, seed=0, **pipeline.MINI_KITCHENS_SCALES["tiny"])
    return root


def test_lanes_options_and_dependencies():
    assert dependencies("ensemble", ("rgb", "flow")) == ("teacher-rgb", "teacher-flow")
    assert dependencies("student", ("rgb",)) == ("ensemble",) and dependencies("omnivore", ("rgb",)) == ()
    assert resolved_lanes(parse_config(["--parallel_units", "3"])) == 3
    assert resolved_lanes(parse_config(["--parallel_units", "1"])) == 1
    assert resolved_lanes(parse_config(["--max_steps", "5"])) == 1  # a short run: one process
    assert parse_config([]).baseline_list == ("baseline-rgb",)  # the main job leaves omnivore out
    assert parse_config(["--baselines", "omnivore,baseline-rgb"]).baseline_list == ("baseline-rgb", "omnivore")
    with pytest.raises(ValueError, match="baselines: unknown"):
        parse_config(["--baselines", "resnet"])
    # operational: the same run whatever the number of lanes
    assert parse_config(["--parallel_units", "2"]).identity_hash() == parse_config([]).identity_hash()
    with pytest.raises(ValueError, match="units: unknown"):
        parse_config(["--units", "teacher-smell"])


@pytest.mark.slow
def test_units_side_by_side_equal_units_one_after_the_other(tiny_data, tmp_path, monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    torch.set_num_threads(1)  # the sequential run with the thread count of the side-by-side processes
    args = TINY + ["--data_dir", str(tiny_data), "--output_dir", str(tmp_path)]
    assert main(args + ["--run_name", "seq", "--parallel_units", "1"]) == 0
    assert main(args + ["--run_name", "par", "--parallel_units", "2"]) == 0
    for unit in UNITS:
        sequential = AutoModel.from_pretrained(tmp_path / "seq" / unit).state_dict()
        side_by_side = AutoModel.from_pretrained(tmp_path / "par" / unit).state_dict()
        for name, tensor in sequential.items():
            assert torch.equal(tensor, side_by_side[name]), (unit, name)
        assert (tmp_path / "par" / "logs" / f"{unit}.log").is_file()
    timings = json.loads((tmp_path / "par" / "timings.json").read_text())
    assert set(UNITS) <= set(timings)  # no timing lost to two units finishing together
    results = json.loads((tmp_path / "par" / "results.json").read_text())
    assert list(results["models"]) == UNITS


@pytest.mark.slow
def test_units_train_only_what_is_asked_and_a_failure_names_the_unit(tiny_data, tmp_path, capsys):
    args = TINY + ["--data_dir", str(tiny_data), "--output_dir", str(tmp_path), "--run_name", "r"]
    assert main(args + ["--units", "baseline-rgb"]) == 0
    run = tmp_path / "r"
    assert (run / "baseline-rgb").is_dir() and not (run / "teacher-rgb").exists()
    capsys.readouterr()
    assert main(args + ["--units", "student"]) == 2  # the ensemble is not there yet: one line saying so
    assert "needs ['ensemble']" in capsys.readouterr().err
    # a unit that fails in its own process: one line naming it and its log, the other units kept
    (run / "checkpoints" / "teacher-flow" / "checkpoint-1").mkdir(parents=True)
    (run / "checkpoints" / "teacher-flow" / "checkpoint-1" / "model.safetensors").write_bytes(b"weights")
    (run / "checkpoints" / "teacher-flow" / "checkpoint-1" / "trainer_state.json").write_text("{}")
    capsys.readouterr()
    code = main(args + ["--parallel_units", "2", "--stage", "teachers"])  # an interrupted unit needs --resume
    err = capsys.readouterr().err
    assert code == 2 and "teacher-flow" in err and "logs/teacher-flow.log" in err and "--resume" in err
    assert (run / "teacher-rgb").is_dir() and not (run / "teacher-flow").exists()
