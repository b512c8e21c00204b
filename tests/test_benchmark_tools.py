"""The benchmark helpers that reuse run folders (benchmarks/distillation_sweep.py)."""

import importlib.util
import json
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def sweep():
    """benchmarks/distillation_sweep.py as a module (it puts src/ and benchmarks/ on sys.path itself)."""
    spec = importlib.util.spec_from_file_location("distillation_sweep", REPO / "benchmarks" / "distillation_sweep.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _fake_run(root: Path, units: list[str]) -> Path:
    (root / "stages").mkdir(parents=True)
    (root / "held_out_split.json").write_text(json.dumps({"ids": ["a"]}))
    for unit in ["dataset", *units]:
        if unit != "dataset":
            (root / unit).mkdir()
            (root / unit / "config.json").write_text(json.dumps({"unit": unit}))
        (root / "stages" / f"{unit}.done").write_text("{}")
    return root


def test_clone_run_copies_only_the_units_the_base_trained(sweep, tmp_path):
    """A base with a subset of teachers (``--teachers rgb,flow``) has no audio/layout units: a variant's clone
    copies what exists instead of failing on the missing ones."""
    source = _fake_run(tmp_path / "base", ["teacher-rgb", "teacher-flow", "baseline-rgb"])
    target = tmp_path / "variant"
    argv = ["--run_name", "variant", "--output_dir", str(tmp_path), "--teachers", "rgb,flow", "--temperature", "2"]
    units = sweep.reused_units({"name": "T2", "args": ["--temperature", "2"]})
    assert "teacher-audio" in units and "baseline-rgb" in units
    sweep.clone_run(source, target, units, argv)
    assert json.loads((target / "teacher-flow" / "config.json").read_text()) == {"unit": "teacher-flow"}
    assert (target / "stages" / "teacher-rgb.done").exists() and (target / "stages" / "baseline-rgb.done").exists()
    assert not (target / "teacher-audio").exists() and not (target / "stages" / "teacher-audio.done").exists()
    assert (target / "held_out_split.json").read_text() == (source / "held_out_split.json").read_text()
    assert (target / "config.json").exists()  # the variant's identity, so train.py accepts the folder


def test_variant_may_not_change_a_reused_teacher(sweep):
    with pytest.raises(ValueError, match="teacher_epochs"):
        sweep.reused_units({"name": "bad", "args": ["--teacher_epochs", "36"]})
