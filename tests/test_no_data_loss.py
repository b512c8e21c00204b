"""Nothing lost, nothing silently wrong: a finished run pointed at other data refuses, commands never delete or
write into folders they did not write, numeric options are checked where they enter, and training stops at the
first non-finite loss without marking the model done."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_ensemble import tiny_swin  # noqa: E402

from mmkd_hf import pipeline  # noqa: E402
from mmkd_hf.distillation import DistillationTrainingArguments, SupervisedTrainingArguments  # noqa: E402
from mmkd_hf.distillation.cache import precompute_teacher_logits  # noqa: E402
from mmkd_hf.distillation.trainer import NonFiniteLossError, SupervisedTrainer  # noqa: E402
from mmkd_hf.models import convert_original  # noqa: E402
from mmkd_hf.pipeline import main, parse_config  # noqa: E402
from mmkd_hf.synthetic import ensure_mini_kitchens, make_dataset, read_marker  # noqa: E402
from mmkd_hf.utils import (  # noqa: E402
    OUTPUT_MARKER,
    ForeignFolderError,
    check_number,
    discard_directory,
    output_directory,
)

TINY = [
    "--preset", "test", "--mini_kitchens_scale", "tiny", "--teacher_batch_size", "4", "--student_batch_size", "4",
    "--eval_batch_size", "8", "--report_to", "none", "--write_model_cards", "false", "--teachers", "rgb",
]


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("data") / "mini-kitchens-tiny"
    return ensure_mini_kitchens(root, seed=0, **pipeline.MINI_KITCHENS_SCALES["tiny"])


@pytest.fixture(scope="module")
def finished_run(tiny_data, tmp_path_factory) -> tuple[list[str], Path]:
    """A finished one-teacher run (teacher-rgb trained for 1 step, then evaluated): its arguments and folder."""
    out = tmp_path_factory.mktemp("runs")
    args = TINY + ["--output_dir", str(out), "--run_name", "r", "--max_steps", "1"]
    assert main(args + ["--data_dir", str(tiny_data), "--stage", "teachers"]) == 0
    assert main(args + ["--data_dir", str(tiny_data), "--stage", "evaluate"]) == 0
    return args, out / "r"


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


# ------------------------------------------------------------------------------------- run identity: the data
def test_finished_run_on_other_data_refuses_and_rewrites_nothing(finished_run, tiny_data, tmp_path, capsys):
    args, run = finished_run
    assert json.loads((run / "config.json").read_text())["data_fingerprint"]["sha256"]
    other = tmp_path / "relabelled"
    shutil.copytree(tiny_data, other)
    (other / ".complete").unlink()  # a hand-made variant in the EPIC layout: other validation labels
    csv = other / "EPIC_100_validation.csv"
    lines = csv.read_text().splitlines()
    header, first = lines[0].split(","), lines[1].split(",")
    first[header.index("verb_class")] = str((int(first[header.index("verb_class")]) + 1) % 8)
    csv.write_text("\n".join([lines[0], ",".join(first), *lines[2:]]) + "\n")
    before = _snapshot(run)
    capsys.readouterr()
    assert main(args + ["--data_dir", str(other)]) == 2
    error = capsys.readouterr().err.strip()
    assert "other data" in error and str(other) in error and "--run_name" in error and "--overwrite" in error
    assert len(error.splitlines()) == 1
    assert _snapshot(run) == before  # results.json and everything else byte-identical


def test_moved_data_and_runs_without_a_fingerprint_still_resume(finished_run, tiny_data, tmp_path):
    args, run = finished_run
    moved = tmp_path / "moved"
    shutil.copytree(tiny_data, moved)  # same data elsewhere: same fingerprint
    assert main(args + ["--data_dir", str(moved), "--stage", "evaluate"]) == 0
    config_file = run / "config.json"
    config = json.loads(config_file.read_text())
    fingerprint = config.pop("data_fingerprint")
    config_file.write_text(json.dumps(config))  # as written before data fingerprints were recorded
    assert main(args + ["--data_dir", str(tiny_data), "--stage", "evaluate"]) == 0
    assert json.loads(config_file.read_text())["data_fingerprint"] == fingerprint  # accepted and recorded


def test_train_never_regenerates_data_made_with_other_settings(tmp_path, capsys):
    other_seed = ensure_mini_kitchens(tmp_path / "seed1", seed=1, **pipeline.MINI_KITCHENS_SCALES["tiny"])
    marker = (other_seed / ".complete").read_bytes()
    args = TINY + ["--output_dir", str(tmp_path / "out"), "--data_dir", str(other_seed), "--stage", "teachers"]
    capsys.readouterr()
    assert main(args) == 2
    error = capsys.readouterr().err.strip()
    assert "seed 1" in error and "seed 0" in error and "nothing was regenerated" in error
    assert (other_seed / ".complete").read_bytes() == marker and read_marker(other_seed)["seed"] == 1
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").rglob("*.done"))


# ------------------------------------------------------------------------- folders the package did not write
def test_overwrite_refuses_the_output_folder_itself_and_the_working_directory(tmp_path, monkeypatch, capsys):
    (tmp_path / "thesis.tex").write_text("mine")
    assert main(TINY + ["--output_dir", str(tmp_path), "--run_name", ".", "--overwrite"]) == 2
    assert "--overwrite refused" in capsys.readouterr().err
    assert (tmp_path / "thesis.tex").read_text() == "mine"
    run = tmp_path / "run"
    (run / "sub").mkdir(parents=True)
    (run / "config.sha256").write_text("x\n")  # even an mmkd-hf run folder: not while it holds the working dir
    monkeypatch.chdir(run / "sub")
    assert main(TINY + ["--output_dir", str(tmp_path), "--run_name", "run", "--overwrite"]) == 2
    assert "working directory" in capsys.readouterr().err and run.is_dir()
    monkeypatch.chdir(tmp_path)
    stranger = tmp_path / "stranger"
    stranger.mkdir()
    (stranger / "notes.txt").write_text("mine")
    assert main(TINY + ["--output_dir", str(tmp_path), "--run_name", "stranger", "--overwrite"]) == 2
    assert "holds no mmkd-hf run" in capsys.readouterr().err
    assert (stranger / "notes.txt").read_text() == "mine"


def test_convert_original_refuses_a_folder_it_did_not_write(tmp_path, capsys):
    from test_convert_original import SSV2_STLT_YAML, STLT_TINY, tiny_stlt, to_original_layout, write_experiment

    checkpoint, config = write_experiment(tmp_path / "exp", to_original_layout(tiny_stlt()), SSV2_STLT_YAML)
    out = tmp_path / "thesis"
    (out / "figures").mkdir(parents=True)
    (out / "thesis.tex").write_text("mine")
    assert convert_original.main(["--checkpoint", str(checkpoint), "--config", str(config), "--out", str(out)]) == 1
    assert "not an earlier output of convert-original" in capsys.readouterr().err
    assert (out / "thesis.tex").read_text() == "mine" and (out / "figures").is_dir()
    # its own earlier output is replaced
    converted = tmp_path / "converted"
    convert_original.convert_original_checkpoint(checkpoint, config, converted, config_overrides=STLT_TINY)
    assert (converted / OUTPUT_MARKER).is_file()
    convert_original.convert_original_checkpoint(checkpoint, config, converted, config_overrides=STLT_TINY)
    assert (converted / "model.safetensors").is_file()


def test_make_mini_dataset_refuses_a_foreign_folder(tmp_path, capsys):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "thesis.tex").write_text("mine")
    assert make_dataset.main(["--out", str(out)]) == 2
    error = capsys.readouterr().err.strip()
    assert "not a mini-kitchens generation" in error and len(error.splitlines()) == 1
    assert [p.name for p in out.iterdir()] == ["thesis.tex"]


def test_evaluate_and_precompute_refuse_a_foreign_folder(tmp_path, capsys):
    from mmkd_hf.evaluation import cli as evaluation_run

    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    assert evaluation_run.main(["--model", str(tmp_path / "model"), "--dataset", "mini-kitchens",
                                "--output-dir", str(foreign)]) == 2
    assert "not an earlier output of evaluate" in capsys.readouterr().err
    with pytest.raises(ForeignFolderError, match="precompute"):
        precompute_teacher_logits(None, [], foreign)
    assert [p.name for p in foreign.iterdir()] == ["notes.txt"]


def test_evaluate_replaces_its_own_output_and_records_final_paths(finished_run, tmp_path):
    from mmkd_hf.evaluation import cli as evaluation_run

    _, run = finished_run
    out = tmp_path / "eval"
    argv = ["--model", str(run / "teacher-rgb"), "--output-dir", str(out), "--views-grid", "", "--max-samples", "4"]
    assert evaluation_run.main(argv) == 0
    assert evaluation_run.main(argv) == 0  # its own earlier output: replaced
    files = json.loads((out / "metrics.json").read_text())["files"]
    assert files and all(Path(path).parent == out and Path(path).exists() for path in files.values())
    assert (out / OUTPUT_MARKER).is_file() and not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_discard_directory_removes_the_whole_folder_and_nothing_beside_it(tmp_path):
    (tmp_path / "run" / "sub").mkdir(parents=True)
    (tmp_path / "run" / "sub" / "f").write_text("x")
    (tmp_path / "neighbour").write_text("kept")
    discard_directory(tmp_path / "run")
    assert [p.name for p in tmp_path.iterdir()] == ["neighbour"]


def test_output_directory_replaces_only_its_own_output(tmp_path):
    out = tmp_path / "out"
    with output_directory(out, "a-command") as staging:
        (staging / "result.txt").write_text("1")
    with output_directory(out, "a-command") as staging:  # its own: replaced as a whole
        (staging / "result.txt").write_text("2")
    assert (out / "result.txt").read_text() == "2"
    with pytest.raises(ForeignFolderError, match="another-command"):
        with output_directory(out, "another-command"):
            pass
    with pytest.raises(RuntimeError):
        with output_directory(out, "a-command") as staging:
            (staging / "result.txt").write_text("3")
            raise RuntimeError("interrupted")
    assert (out / "result.txt").read_text() == "2"  # an interrupted write leaves the earlier output


# ---------------------------------------------------------------------------------------- numbers at the door
@pytest.mark.parametrize("option, value, message", [
    ("--temperature", "nan", "temperature: expected a finite value > 0, given nan"),
    ("--kd_weight", "nan", "kd_weight: expected a finite value >= 0, given nan"),
    ("--max_grad_norm", "nan", "max_grad_norm: expected a finite value >= 0, given nan"),
    ("--student_epochs", "-1", "student_epochs: expected a finite value > 0, given -1"),
    ("--teacher_learning_rate", "-1e-3", "teacher_learning_rate: expected a finite value > 0, given -0.001"),
    ("--warmup_ratio", "inf", "warmup_ratio: expected a finite value >= 0 and < 1, given inf"),
    ("--held_out_fraction", "1", "held_out_fraction: expected a finite value > 0 and < 1, given 1"),
    ("--logging_steps", "0", "logging_steps: expected an integer >= 1, given 0"),
])
def test_bad_numbers_are_refused_at_parse_time(option, value, message, capsys):
    assert main([option, value]) == 2
    assert message in capsys.readouterr().err
    with pytest.raises(ValueError, match=message.split(":")[0]):
        parse_config([option, value])


def test_trainer_arguments_check_their_numbers(tmp_path):
    common = dict(output_dir=str(tmp_path), report_to="none", use_cpu=True)
    with pytest.raises(ValueError, match="temperature: expected a finite value > 0, given nan"):
        DistillationTrainingArguments(temperature=float("nan"), **common)
    with pytest.raises(ValueError, match="learning_rate: expected a finite value >= 0, given -0.001"):
        SupervisedTrainingArguments(learning_rate=-1e-3, **common)
    with pytest.raises(ValueError, match="max_grad_norm"):
        DistillationTrainingArguments(max_grad_norm=float("inf"), **common)
    check_number("x", 3, low=1, integer=True)
    with pytest.raises(ValueError, match=r"x: expected an integer >= 1, given 2.5"):
        check_number("x", 2.5, low=1, integer=True)


# ----------------------------------------------------------------------------------------- non-finite losses
def _nan_after(model: torch.nn.Module, calls: int) -> torch.nn.Module:
    """Make ``model``'s logits NaN from its ``calls``-th training forward on."""
    seen = {"n": 0}

    def hook(module, args, output):
        if module.training:
            seen["n"] += 1
            if seen["n"] >= calls:
                for head in output.logits:
                    output.logits[head] = output.logits[head] * float("nan")
        return output

    model.register_forward_hook(hook)
    return model


def test_trainer_stops_at_the_first_nan_loss(tmp_path):
    from test_distillation_trainer import ListDataset, collate, make_items

    model = _nan_after(tiny_swin("rgb", seed=3), calls=3)
    args = SupervisedTrainingArguments(output_dir=str(tmp_path / "unit"), per_device_train_batch_size=2, max_steps=6,
                                       save_strategy="steps", save_steps=1, report_to="none", use_cpu=True,
                                       warmup_steps=0, logging_steps=1)
    trainer = SupervisedTrainer(model=model, args=args, train_dataset=ListDataset(make_items(12)),
                                data_collator=collate)
    with pytest.raises(NonFiniteLossError, match=r"unit: the training loss is nan at optimizer step 3.*checkpoint-2"):
        trainer.train()
    assert trainer.state.global_step == 2  # the NaN step was never applied
    assert all(bool(torch.isfinite(p).all()) for p in model.parameters())


def test_pipeline_never_marks_a_nan_model_done(tiny_data, tmp_path, monkeypatch, capsys):
    build = pipeline.stages.build_teacher
    monkeypatch.setattr(pipeline.stages, "build_teacher", lambda *a, **k: _nan_after(build(*a, **k), calls=2))
    args = TINY + ["--data_dir", str(tiny_data), "--output_dir", str(tmp_path), "--run_name", "r", "--max_steps", "3",
                   "--stage", "teachers"]
    assert main(args) == 1
    error = capsys.readouterr().err
    assert "teacher-rgb" in error and "optimizer step 2" in error
    assert not (tmp_path / "r" / "stages" / "teacher-rgb.done").exists()
    assert not (tmp_path / "r" / "teacher-rgb").exists()


def test_missing_dataset_folder_is_one_line_and_leaves_no_run_folder(tmp_path, capsys):
    missing = tmp_path / "EPIC-KITCHENS"
    code = main(["--dataset", "epic-kitchens-100", "--data_dir", str(missing), "--output_dir", str(tmp_path / "out"),
                 "--init_from", "none"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert len(err) == 1 and str(missing) in err[0] and "does not exist" in err[0]
    assert not any((tmp_path / "out").rglob("config.json"))


def test_disk_full_is_one_line_that_says_to_resume(tmp_path, monkeypatch, capsys):
    import errno

    def full(config):
        raise OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "out" / "x"))

    monkeypatch.setattr(sys.modules["mmkd_hf.pipeline.main"], "run_pipeline", full)
    code = main(["--output_dir", str(tmp_path / "out")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1 and len(err) == 1 and "disk is full" in err[0] and "--resume" in err[0]
