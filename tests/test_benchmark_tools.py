"""The benchmark helpers: distillation_sweep.py (reused run folders), noisy_narrations.py (noisy copies) and
distillation_gain.py (regimes, the verdict)."""

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


def test_noisy_narrations_swap_the_verbs_and_nouns_of_a_pair(tmp_path):
    module = load_benchmark("noisy_narrations")
    keys = {0: "take", 1: "put", 6: "shake", 7: "stir"}
    nouns = {0: "plate", 1: "bowl"}
    rows = [{"narration_id": str(i), "verb_class": str(v), "verb": keys[v], "noun": "plate", "noun_class": "0",
             "narration": f"{keys[v]} plate", "all_nouns": "['plate']", "all_noun_classes": "[0]"}
            for i, v in enumerate([0, 1, 7, 6])]
    assert module.confuse_pairs([dict(r) for r in rows], keys, 0.0, seed=0) == (0, 0)
    flipped = [dict(r) for r in rows]
    assert module.confuse_pairs(flipped, keys, 1.0, seed=0) == (4, 0)
    assert [r["verb_class"] for r in flipped] == ["1", "0", "6", "7"]
    assert [r["narration"] for r in flipped] == ["put plate", "take plate", "shake plate", "stir plate"]
    both = [dict(r) for r in rows]
    assert module.confuse_pairs(both, keys, 1.0, seed=0, noun_keys=nouns, noun_rate=1.0) == (4, 4)
    assert {(r["noun"], r["noun_class"], r["all_nouns"], r["all_noun_classes"]) for r in both} == {
        ("bowl", "1", "['bowl']", "[1]")}
    assert [r["narration"] for r in both] == ["put bowl", "take bowl", "shake bowl", "stir bowl"]
    some, with_nouns = [dict(r) for r in rows * 50], [dict(r) for r in rows * 50]
    count, _ = module.confuse_pairs(some, keys, 0.3, seed=1)
    assert 35 <= count <= 85 and count == sum(a["verb_class"] != b["verb_class"] for a, b in zip(some, rows * 50))
    # noun noise is drawn after the verbs: the same seed confuses the same verbs with or without it
    _, noun_count = module.confuse_pairs(with_nouns, keys, 0.3, seed=1, noun_keys=nouns, noun_rate=0.3)
    assert [r["verb_class"] for r in with_nouns] == [r["verb_class"] for r in some]
    assert 35 <= noun_count <= 85 and noun_count == sum(r["noun_class"] == "1" for r in with_nouns)
    with pytest.raises(ValueError, match="verb rate"):
        module.confuse_pairs(rows, keys, 1.5, seed=0)
    with pytest.raises(ValueError, match="noun_keys"):
        module.confuse_pairs(rows, keys, 0.1, seed=0, noun_rate=0.2)
    with pytest.raises(ValueError, match="no pair partner"):
        module.confuse_pairs([dict(rows[0], noun_class="3")], keys, 0.0, seed=0, noun_keys=nouns, noun_rate=1.0)


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


def test_the_noisy_narrations_regime_makes_its_copy_once_and_refuses_another(tmp_path, monkeypatch):
    gain = load_benchmark("distillation_gain")
    monkeypatch.setattr(gain, "ensure_mini_kitchens", lambda path, seed: None)  # the folder is made below
    cache = tmp_path / "cache"
    cache.mkdir()
    _tiny_epic_folder(cache / "mini-kitchens")
    assert gain.regime_options("default", cache) == []
    options = gain.regime_options("noisy-narrations", cache)
    copy = cache / "mk-flip30-both"
    assert options == ["--data_dir", str(copy), "--student_epochs", "144"]
    made = json.loads((copy / "noisy_narrations.json").read_text())
    assert (made["verb_rate"], made["noun_rate"], made["seed"]) == (0.3, 0.3, 0)
    (copy / "marker").write_text("kept")
    assert gain.regime_options("noisy-narrations", cache) == options and (copy / "marker").exists()  # reused
    (copy / "noisy_narrations.json").write_text(json.dumps(dict(made, noun_rate=0.0)))
    with pytest.raises(SystemExit, match="was not made with"):
        gain.regime_options("noisy-narrations", cache)


_FAKE_TRAIN = '''
import json, sys
from pathlib import Path
argv = sys.argv[2:]  # sys.argv[1] is train.py
value = lambda name: argv[argv.index(name) + 1]
seed, run = int(value("--seed")), Path(value("--output_dir")) / value("--run_name")
run.mkdir(parents=True, exist_ok=True)
def model(action, ece):
    return {"heads": {h: {"top1": action + 20, "ece": ece} for h in ("verb", "noun")}, "action": {"top1": action}}
(run / "argv.json").write_text(json.dumps(argv))
(run / "results.json").write_text(json.dumps({"models": {"student": model(34.0 + seed, 11.0),
                                                          "baseline-rgb": model(28.0, 22.0)}}))
'''


def test_distillation_gain_runs_the_regime_with_its_options_and_its_own_folders(tmp_path, monkeypatch):
    """main() end to end with a stand-in for train.py: the regime's --data_dir and schedule reach every seed's
    command line, its run folders and result default to per-regime paths, and the verdict is computed."""
    gain = load_benchmark("distillation_gain")
    monkeypatch.setattr(gain, "REPO", tmp_path)
    monkeypatch.setattr(gain, "ensure_mini_kitchens", lambda path, seed: None)
    (tmp_path / ".cache").mkdir()
    _tiny_epic_folder(tmp_path / ".cache" / "mini-kitchens")
    fake = tmp_path / "fake_train.py"
    fake.write_text(_FAKE_TRAIN)
    assert gain.main(["--regime", "noisy-narrations", "--seeds", "2", "--launcher", f"{sys.executable} {fake}",
                      "--", "--temperature", "2"]) == 0
    runs = tmp_path / "outputs" / "benchmarks-noisy-narrations"
    for seed in (0, 1):
        argv = json.loads((runs / f"distillation-gain-seed{seed}" / "argv.json").read_text())
        assert argv[argv.index("--data_dir") + 1] == str(tmp_path / ".cache" / "mk-flip30-both")
        assert argv[argv.index("--student_epochs") + 1] == "144" and argv[-2:] == ["--temperature", "2"]
    result = json.loads((tmp_path / "benchmarks" / "results" / "distillation_gain_noisy_narrations.json").read_text())
    verdict = result["student_vs_baseline_rgb"]
    assert result["regime"] == "noisy-narrations" and verdict["meets_target"]
    assert verdict["action_top1_gain"]["values"] == [6.0, 7.0] and verdict["ece_change"]["mean"] == -11.0
    with pytest.raises(SystemExit):  # the regime brings its own data
        gain.main(["--regime", "noisy-narrations", "--", "--data_dir", "elsewhere"])
