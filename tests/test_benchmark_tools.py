"""The benchmark helpers: distillation_sweep.py (reused run folders), noisy_narrations.py (noisy copies) and
distillation_gain.py (regimes, provenance, the three claims)."""

import json
import sys
from pathlib import Path

import pytest
from conftest import load_benchmark


@pytest.fixture(scope="module")
def sweep():
    return load_benchmark("distillation_sweep")


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


def test_variant_reuse_list_keeps_only_the_omnivore_baseline(sweep):
    """A variant that changes the student schedule retrains both baselines, unless it asks to keep omnivore (which
    the student − baseline-rgb comparison does not use); baseline-rgb or a teacher option cannot be kept that way."""
    longer = {"name": "long", "args": ["--student_epochs", "144"]}
    assert "omnivore" not in sweep.reused_units(longer) and "baseline-rgb" not in sweep.reused_units(longer)
    kept = sweep.reused_units({**longer, "reuse": ["omnivore"]})
    assert "omnivore" in kept and "baseline-rgb" not in kept and "teacher-rgb" in kept
    with pytest.raises(ValueError, match="baseline-rgb"):
        sweep.reused_units({**longer, "reuse": ["baseline-rgb"]})


def test_variant_may_not_change_a_reused_teacher(sweep):
    with pytest.raises(ValueError, match="teacher_epochs"):
        sweep.reused_units({"name": "bad", "args": ["--teacher_epochs", "36"]})


def _predictions(run: Path, model: str, ids, verb_pred, noun_pred, verb_label, noun_label) -> None:
    import numpy as np

    from mmkd_hf.evaluation.exports import write_predictions_parquet

    folder = run / "eval" / model
    folder.mkdir(parents=True, exist_ok=True)
    write_predictions_parquet(folder / "predictions.parquet", ids,
                              {"verb": np.eye(3)[verb_pred], "noun": np.eye(4)[noun_pred]},
                              {"verb": verb_label, "noun": noun_label})


def test_paired_action_difference_reads_the_runs_predictions(sweep, tmp_path):
    """Action = verb and noun right; clips matched by id whatever the row order; one row per run; runs without
    predictions give no interval; runs evaluated on other clips are refused."""
    action_correct = load_benchmark("distillation_gain").action_correct
    runs = [tmp_path / "seed0", tmp_path / "seed1"]
    for run in runs:
        # student: every clip right
        _predictions(run, "student", ["c", "a", "b", "d"], [0, 1, 2, 0], [3, 2, 1, 0], [0, 1, 2, 0], [3, 2, 1, 0])
        # baseline, rows in another order: d wrong verb, a wrong noun, b and c right
        _predictions(run, "baseline-rgb", ["d", "b", "a", "c"], [1, 2, 1, 0], [0, 1, 0, 3], [0, 2, 1, 0], [0, 1, 2, 3])
    ids, correct = action_correct(runs[0] / "eval" / "baseline-rgb" / "predictions.parquet")
    assert ids == ["a", "b", "c", "d"] and correct.tolist() == [False, True, True, False]
    result = sweep.paired_action_difference(runs)
    assert result["runs"] == 2 and result["samples"] == 4
    assert result["difference"] == pytest.approx(50.0) and result["discordant"] == pytest.approx(50.0)
    assert sweep.paired_action_difference([tmp_path / "missing"]) == {}
    _predictions(tmp_path / "other", "student", ["x", "y"], [0, 0], [0, 0], [0, 0], [0, 0])
    _predictions(tmp_path / "other", "baseline-rgb", ["x", "y"], [0, 0], [0, 0], [0, 0], [0, 0])
    with pytest.raises(ValueError, match="same samples"):
        sweep.paired_action_difference([runs[0], tmp_path / "other"])


def _tiny_epic_folder(root, verbs=(0, 1, 6), nouns=(0, 1, 0)):
    root.mkdir()
    with open(root / "EPIC_100_verb_classes.csv", "w") as fh:
        fh.write("id,key\n0,take\n1,put\n6,shake\n7,stir\n")
    with open(root / "EPIC_100_noun_classes.csv", "w") as fh:
        fh.write("id,key\n0,plate\n1,bowl\n")
    verb_keys, noun_keys = {0: "take", 1: "put", 6: "shake"}, {0: "plate", 1: "bowl"}
    with open(root / "EPIC_100_train.csv", "w") as fh:
        fh.write("narration_id,narration,verb,verb_class,noun,noun_class,all_nouns,all_noun_classes\n")
        for i, (v, n) in enumerate(zip(verbs, nouns)):
            fh.write(f"P01_01_{i},{verb_keys[v]} {noun_keys[n]},{verb_keys[v]},{v},{noun_keys[n]},{n},"
                     f"\"['{noun_keys[n]}']\",[{n}]\n")
    (root / "EPIC_100_validation.csv").write_text("narration_id\nP01_02_0\n")
    return root


def test_noisy_copy_rewrites_only_the_training_narrations_and_records_how(tmp_path):
    import csv

    module = load_benchmark("noisy_narrations")
    source = _tiny_epic_folder(tmp_path / "mk")
    before = (source / "EPIC_100_train.csv").read_text()
    made = module.make_noisy_copy(source, tmp_path / "noisy", verb_rate=1.0, noun_rate=1.0, seed=3)
    assert made == {"source": str(source), "verb_rate": 1.0, "noun_rate": 1.0, "seed": 3, "training_narrations": 3,
                    "verbs_confused": 3, "nouns_confused": 3}
    target = tmp_path / "noisy"
    assert json.loads((target / module.PROVENANCE_FILE).read_text()) == made
    rows = list(csv.DictReader(open(target / "EPIC_100_train.csv")))
    assert [(r["verb_class"], r["noun_class"], r["narration"]) for r in rows] == [
        ("1", "1", "put bowl"), ("0", "0", "take plate"), ("7", "1", "stir bowl")]
    assert (source / "EPIC_100_train.csv").read_text() == before  # the source is never written through its link
    assert (target / "EPIC_100_validation.csv").read_text() == (source / "EPIC_100_validation.csv").read_text()
    with pytest.raises(FileExistsError, match="exists"):
        module.make_noisy_copy(source, target, verb_rate=0.5)
    with pytest.raises(FileNotFoundError, match="not a mini-kitchens folder"):
        module.make_noisy_copy(tmp_path / "nowhere", tmp_path / "other", verb_rate=0.5)


def test_a_failed_noisy_copy_leaves_nothing_behind(tmp_path):
    module = load_benchmark("noisy_narrations")
    source = _tiny_epic_folder(tmp_path / "mk", verbs=(0, 6, 6))
    (source / "EPIC_100_verb_classes.csv").write_text("id,key\n0,take\n1,put\n6,shake\n")  # shake has no partner
    with pytest.raises(ValueError, match="no pair partner"):
        module.make_noisy_copy(source, tmp_path / "noisy", verb_rate=1.0)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mk"]


_FAKE_TRAIN = '''
import json, sys
from pathlib import Path
argv = sys.argv[2:]  # sys.argv[1] is train.py
value = lambda name: argv[argv.index(name) + 1]
seed, run = int(value("--seed")), Path(value("--output_dir")) / value("--run_name")
run.mkdir(parents=True, exist_ok=True)
def model(action, ece, nll):
    return {"heads": {h: {"top1": action + 20, "ece": ece, "nll": nll} for h in ("verb", "noun")},
            "action": {"top1": action}}
(run / "argv.json").write_text(json.dumps(argv))
(run / "results.json").write_text(json.dumps({"models": {"student": model(34.0 + seed, 11.0, 1.0),
                                                          "baseline-rgb": model(28.0, 22.0, 1.5)}}))
'''


def test_distillation_gain_trains_from_scratch_and_checks_the_claims(tmp_path, monkeypatch):
    """main() end to end with a stand-in for train.py: the regime's options reach every seed's command line, each
    seed's run folder is created by the benchmark (provenance beside it), a folder it did not create is refused
    unless --reuse-runs (and then reported as reused), and the claims are computed per seed."""
    gain = load_benchmark("distillation_gain")
    monkeypatch.setattr(gain, "REPO", tmp_path)
    monkeypatch.setattr(gain, "prepare_dataset", lambda config: None)
    fake = tmp_path / "fake_train.py"
    fake.write_text(_FAKE_TRAIN)
    launcher = ["--launcher", f"{sys.executable} {fake}"]
    assert gain.main(["--regime", "exact-labels", "--seeds", "2", "--no-views", *launcher, "--", "--temperature",
                      "2"]) == 0
    runs = tmp_path / "outputs" / "benchmarks-exact-labels"
    for seed in (0, 1):
        argv = json.loads((runs / f"distillation-gain-seed{seed}" / "argv.json").read_text())
        assert argv[argv.index("--narration_noise") + 1] == "0" and argv[-2:] == ["--temperature", "2"]
        provenance = json.loads((runs / f"distillation-gain-seed{seed}.benchmark.json").read_text())
        assert provenance["reused_units"] is False and "code_version" in provenance
    result = json.loads((tmp_path / "benchmarks" / "results" / "distillation_gain_exact_labels.json").read_text())
    claims = result["claims"]
    assert result["regime"] == "exact-labels" and result["trained_from_scratch"] is True
    assert claims["accuracy"]["action_top1"]["values"] == [6.0, 7.0]
    assert claims["calibration"]["ece"]["mean"] == -11.0 and claims["calibration"]["nll"]["mean"] == pytest.approx(-0.5)
    assert claims["calibration_holds"] and "views" not in claims
    assert str(tmp_path) not in json.dumps(result)  # commands and paths are relative to the repository
    # a run folder the benchmark did not create: refused, or reported as reused
    foreign = tmp_path / "elsewhere" / "distillation-gain-seed0"
    foreign.mkdir(parents=True)
    (foreign / "results.json").write_text("{}")
    with pytest.raises(SystemExit, match="not created by this benchmark"):
        gain.main(["--seeds", "1", "--no-views", "--output-dir", str(tmp_path / "elsewhere"), *launcher])
    assert gain.main(["--seeds", "1", "--no-views", "--reuse-runs", "--output-dir", str(tmp_path / "elsewhere"),
                      "--result", str(tmp_path / "reused.json"), *launcher]) == 0
    reused = json.loads((tmp_path / "reused.json").read_text())
    assert reused["trained_from_scratch"] is False and reused["seeds_reusing_trained_units"] == [0]
