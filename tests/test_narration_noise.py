"""Narration noise of the mini-kitchens generator (training narrations that name the other verb or noun of a pair)
and the options that reach it from train.py."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from mmkd_hf.pipeline import parse_config
from mmkd_hf.synthetic import NOUNS, VERBS, writer
from mmkd_hf.synthetic.make_dataset import main as make_dataset_main
from mmkd_hf.synthetic.narration_noise import confuse_pairs, parse_narration_noise

from conftest import MINI_KITCHENS_TINY

SMALL = dict(MINI_KITCHENS_TINY, segments_per_video=3)
VERB_KEYS = {i: v[0] for i, v in enumerate(VERBS)}
NOUN_KEYS = {i: n[0] for i, n in enumerate(NOUNS)}


def _rows(n: int) -> list[dict]:
    return [{"narration_id": f"x_{i}", "verb": VERB_KEYS[i % 8], "verb_class": i % 8, "noun": NOUN_KEYS[i % 10],
             "noun_class": i % 10, "narration": "", "all_nouns": str([NOUN_KEYS[i % 10]]),
             "all_noun_classes": str([i % 10])} for i in range(n)]


def test_confusions_go_to_the_pair_partner_and_verb_draws_ignore_the_noun_rate():
    rows = _rows(40)
    assert confuse_pairs(rows, VERB_KEYS, 1.0, seed=0, noun_keys=NOUN_KEYS, noun_rate=1.0) == (40, 40)
    for i, row in enumerate(rows):
        assert row["verb_class"] == (i % 8) ^ 1 and row["verb"] == VERB_KEYS[(i % 8) ^ 1]
        assert row["noun_class"] == (i % 10) ^ 1 and row["all_noun_classes"] == str([(i % 10) ^ 1])
        assert row["narration"] == f"{row['verb']} {row['noun']}"
    verb_only, both = _rows(200), _rows(200)
    verbs, nouns = confuse_pairs(verb_only, VERB_KEYS, 0.3, seed=5)
    assert nouns == 0 and 30 < verbs < 90
    confuse_pairs(both, VERB_KEYS, 0.3, seed=5, noun_keys=NOUN_KEYS, noun_rate=0.3)
    assert [r["verb_class"] for r in verb_only] == [r["verb_class"] for r in both]
    untouched = _rows(10)
    assert confuse_pairs(untouched, VERB_KEYS, 0.0, seed=0) == (0, 0) and untouched == _rows(10)
    with pytest.raises(ValueError, match="verb rate"):
        confuse_pairs(_rows(2), VERB_KEYS, 1.5, seed=0)


def test_rates_parse_as_both_heads_or_verb_then_noun():
    assert parse_narration_noise("0.3") == (0.3, 0.3)
    assert parse_narration_noise("0.2,0") == (0.2, 0.0)
    assert parse_narration_noise(0) == (0.0, 0.0)
    for bad in ("x", "0.1,0.2,0.3", "2"):
        with pytest.raises(ValueError, match="narration noise"):
            parse_narration_noise(bad)


def _csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def test_the_generator_confuses_training_narrations_only(tmp_path):
    exact = writer.generate_mini_kitchens(tmp_path / "exact", seed=1, narration_verb_noise=0.0,
                                          narration_noun_noise=0.0, **SMALL)
    noisy = writer.generate_mini_kitchens(tmp_path / "noisy", seed=1, narration_verb_noise=1.0,
                                          narration_noun_noise=0.0, **SMALL)
    for name in ("EPIC_100_validation.csv", "EPIC_100_verb_classes.csv", "EPIC_100_tail_verbs.csv"):
        assert (exact / name).read_bytes() == (noisy / name).read_bytes()
    frame = next(p.relative_to(exact) for p in exact.rglob("*.jpg"))
    assert (exact / frame).read_bytes() == (noisy / frame).read_bytes()  # the pixels show the true action
    clean, confused = _csv(exact / "EPIC_100_train.csv"), _csv(noisy / "EPIC_100_train.csv")
    assert [int(r["verb_class"]) ^ 1 for r in clean] == [int(r["verb_class"]) for r in confused]
    assert [r["noun_class"] for r in clean] == [r["noun_class"] for r in confused]
    marker = json.loads((noisy / writer.COMPLETE_MARKER).read_text())
    assert marker["config"]["narration_verb_noise"] == 1.0 and marker["format_version"] == writer.FORMAT_VERSION
    assert marker["training_narrations_confused"] == {"verb": len(clean), "noun": 0}


def test_make_mini_dataset_flag_and_a_generation_with_other_noise_is_refused(tmp_path, capsys):
    out = tmp_path / "mk"
    assert make_dataset_main(["--out", str(out), "--seed", "2", "--segments-per-video", "2", "--size", "32",
                              "--narration-noise", "0.5,0"]) == 0
    assert "training narrations naming the other verb / noun" in capsys.readouterr().out
    config = json.loads((out / writer.COMPLETE_MARKER).read_text())["config"]
    assert (config["narration_verb_noise"], config["narration_noun_noise"]) == (0.5, 0.0)
    with pytest.raises(SystemExit):
        make_dataset_main(["--out", str(out), "--narration-noise", "abc"])
    # train.py's prepare stage never replaces a generation made with other settings: one line naming both
    with pytest.raises(writer.ForeignFolderError, match="narration noise 0.5/0") as caught:
        writer.ensure_mini_kitchens(out, seed=2, replace_other_settings=False, segments_per_video=2, height=32, width=32)
    assert "\n" not in str(caught.value)


def test_train_options_spell_the_noise_once_and_give_exact_labels_their_own_folder():
    default = parse_config([])
    assert default.narration_noise == "0.3" and default.resolved_data_dir == Path(".cache/mini-kitchens")
    assert parse_config(["--narration_noise", "0.30,0.3"]).identity_hash() == default.identity_hash()
    exact = parse_config(["--narration_noise", "0"])
    assert exact.resolved_data_dir == Path(".cache/mini-kitchens-noise0")
    assert parse_config(["--narration_noise", "0.3,0"]).resolved_data_dir == Path(".cache/mini-kitchens-noise0.3-0")
    # exact labels with online teachers: the options added with narration noise leave a run's identity as before
    old_style = parse_config(["--narration_noise", "0", "--teacher_mode", "online"]).identity()
    assert "narration_noise" not in old_style and "teacher_mode" not in old_style
    assert "narration_noise" in default.identity() and default.teacher_mode == "cached"
    with pytest.raises(ValueError, match="narration noise"):
        parse_config(["--narration_noise", "1.5"])
