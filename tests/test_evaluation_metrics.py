"""Accuracy metrics: hand-computed cases, the official EPIC-100 definitions, real EPIC-100 labels, bad input."""

from __future__ import annotations

import csv
import math
import warnings
from pathlib import Path

import numpy as np
import pytest

from mmkd_hf.evaluation.metrics import (
    action_id_from_verb_noun,
    align_to_ids,
    binomial_standard_error,
    compute_action_scores,
    distillation_diagnostics,
    epic_action_recognition_metrics,
    evaluate_epic_predictions,
    load_epic_annotations,
    rank_top_n,
    something_something_metrics,
    top_k_accuracy,
)

EPIC_DIR = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "epic-kitchens-100-annotations"


# ------------------------------------------------------------------------------------------ top-k
def test_top_k_hand_case_and_standard_error():
    scores = np.array([[0.1, 0.7, 0.2], [0.5, 0.3, 0.2], [0.2, 0.3, 0.5], [0.3, 0.4, 0.3]])
    labels = np.array([1, 1, 2, 0])
    result = top_k_accuracy(scores, labels, ks=(1, 2))
    # top-1: right, wrong, right, wrong -> 50 %; top-2: rows 0,1,2 right, row 3 (0.4, then tie 0.3/0.3 ->
    # lower index 0) right -> 100 %.
    assert result["top1_acc"] == pytest.approx(50.0)
    assert result["top1_acc_se"] == pytest.approx(math.sqrt(50 * 50 / 4))
    assert result["top2_acc"] == pytest.approx(100.0)
    assert result["top2_acc_se"] == 0.0
    assert result["num_samples"] == 4


def test_ties_go_to_the_lower_class_index():
    scores = np.array([[1.0, 1.0, 0.0], [0.0, 1.0, 1.0]])
    result = top_k_accuracy(scores, [1, 2], ks=(1, 2))
    assert result["top1_acc"] == 0.0  # both tied rows pick the lower index (0, then 1)
    assert result["top2_acc"] == 100.0
    assert top_k_accuracy(scores, [0, 1], ks=(1,))["top1_acc"] == 100.0


def test_rank_top_n_matches_stable_argsort_with_ties():
    rng = np.random.default_rng(3)
    values = np.round(rng.normal(size=(40, 300)), 1)  # many ties
    values[0] = 0.0
    expected = np.argsort(-values, axis=1, kind="stable")[:, :100]
    np.testing.assert_array_equal(rank_top_n(values, 100), expected)


def test_k_larger_than_class_count_is_always_right():
    assert top_k_accuracy([[0.0, 1.0]], [0], ks=(1, 5))["top5_acc"] == 100.0


def test_something_something_metrics_accepts_torch():
    torch = pytest.importorskip("torch")
    logits = torch.tensor([[3.0, 1.0, 0.0, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0, 0.0, 5.0]])
    result = something_something_metrics(logits, torch.tensor([1, 5]), num_classes=6)
    assert result["top1_acc"] == 50.0 and result["top5_acc"] == 100.0


def test_binomial_standard_error():
    assert binomial_standard_error(30.0, 100) == pytest.approx(math.sqrt(30 * 70 / 100))
    assert math.isnan(binomial_standard_error(30.0, 0))


# ------------------------------------------------------------------------------- EPIC action scores
def _logits(probs):
    return np.log(np.asarray(probs, dtype=np.float64))


def test_action_top5_ranking_hand_example():
    verb = _logits([[0.5, 0.3, 0.2]])
    noun = _logits([[0.7, 0.3]])
    # products: (0,0) .35, (1,0) .21, (0,1) .15, (2,0) .14, (1,1) .09, (2,1) .06
    ids, probs = compute_action_scores(verb, noun, top_n=100)
    np.testing.assert_array_equal(ids[0], [0, 1000, 1, 2000, 1001, 2001])
    np.testing.assert_allclose(probs[0], [0.35, 0.21, 0.15, 0.14, 0.09, 0.06])
    for (v, n), top1, top5 in [((0, 0), 100, 100), ((2, 0), 0, 100), ((1, 1), 0, 100), ((2, 1), 0, 0)]:
        result = epic_action_recognition_metrics(verb, noun, [v], [n])
        assert result["all_action_accuracy_at_1"] == top1, (v, n)
        assert result["all_action_accuracy_at_5"] == top5, (v, n)


def test_action_ties_follow_verb_rank_then_noun_rank():
    verb = np.array([[2.0, 1.0, 1.0]])  # verbs 1 and 2 tie exactly -> verb 1 ranks first
    noun = np.array([[0.0, 0.0]])  # nouns tie -> noun 0 first
    ids, _ = compute_action_scores(verb, noun)
    np.testing.assert_array_equal(ids[0], [0, 1, 1000, 1001, 2000, 2001])


def test_action_top_n_restricts_nouns():
    # the true noun is ranked 3rd of 4, outside a top_n of 2: the action can never be right
    verb = np.array([[5.0, 0.0]])
    noun = np.array([[4.0, 3.0, 2.0, 1.0]])
    ids, probs = compute_action_scores(verb, noun, top_n=2)
    np.testing.assert_array_equal(ids[0], [0, 1])
    # softmax over the two kept nouns only: p(noun 0) = e^4 / (e^4 + e^3)
    verb_p = 1 / (1 + math.exp(-5))
    assert probs[0, 0] == pytest.approx(verb_p * math.exp(4) / (math.exp(4) + math.exp(3)))
    result = epic_action_recognition_metrics(verb, noun, [0], [2], ks=(1, 2), top_n=2)
    assert result["all_noun_accuracy_at_1"] == 0.0 and result["all_action_accuracy_at_2"] == 0.0


def test_action_top1_equals_verb_and_noun_without_ties():
    rng = np.random.default_rng(0)
    verb, noun = rng.normal(size=(200, 7)), rng.normal(size=(200, 12))
    verb_labels, noun_labels = rng.integers(0, 7, 200), rng.integers(0, 12, 200)
    result = epic_action_recognition_metrics(verb, noun, verb_labels, noun_labels)
    both = (verb.argmax(1) == verb_labels) & (noun.argmax(1) == noun_labels)
    assert result["all_action_accuracy_at_1"] == pytest.approx(100 * both.mean())


def test_tail_subsets_hand_case():
    # 4 segments, 3 verbs x 3 nouns, tail verb {2}, tail noun {1}
    verb_labels = np.array([0, 2, 1, 2])
    noun_labels = np.array([0, 0, 1, 1])
    predicted_verbs = np.array([0, 2, 0, 1])  # right, right, wrong, wrong
    predicted_nouns = np.array([0, 1, 1, 1])  # right, wrong, right, right
    verb = np.eye(3)[predicted_verbs] * 5
    noun = np.eye(3)[predicted_nouns] * 5
    result = epic_action_recognition_metrics(
        verb, noun, verb_labels, noun_labels, tail_verbs=[2], tail_nouns=[1], ks=(1,)
    )
    # tail verb subset = segments {1, 3}: verb right on 1 only -> 50 %
    assert result["tail_verb_num_samples"] == 2
    assert result["tail_verb_accuracy_at_1"] == 50.0
    # tail noun subset = {2, 3}: noun right on both -> 100 %
    assert result["tail_noun_accuracy_at_1"] == 100.0
    # tail action subset = verb tail OR noun tail = {1, 2, 3}; action right on none -> 0 %
    assert result["tail_action_num_samples"] == 3
    assert result["tail_action_accuracy_at_1"] == 0.0
    assert result["all_action_accuracy_at_1"] == 25.0  # only segment 0


def test_tail_only_subset_equals_all():
    rng = np.random.default_rng(1)
    verb, noun = rng.normal(size=(50, 5)), rng.normal(size=(50, 6))
    verb_labels, noun_labels = rng.integers(0, 5, 50), rng.integers(0, 6, 50)
    result = epic_action_recognition_metrics(
        verb, noun, verb_labels, noun_labels, tail_verbs=range(5), tail_nouns=range(6)
    )
    for task in ("verb", "noun", "action"):
        for k in (1, 5):
            assert result[f"tail_{task}_accuracy_at_{k}"] == result[f"all_{task}_accuracy_at_{k}"]


def test_empty_unseen_subset_warns_and_gives_none():
    verb, noun = np.eye(3) * 4, np.eye(3) * 4
    with pytest.warns(UserWarning, match="no unseen"):
        result = epic_action_recognition_metrics(
            verb, noun, [0, 1, 2], [0, 1, 2], participant_ids=["P01"] * 3, unseen_participants=["P18"]
        )
    assert result["unseen_verb_accuracy_at_1"] is None
    assert result["unseen_action_num_samples"] == 0
    assert result["all_action_accuracy_at_1"] == 100.0


def test_unseen_subset_hand_case():
    verb = np.eye(3)[[0, 0, 2]] * 4  # third segment's verb wrong
    noun = np.eye(3)[[0, 1, 2]] * 4
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        result = epic_action_recognition_metrics(
            verb, noun, [0, 1, 1], [0, 1, 2], participant_ids=["P01", "P18", "P18"], unseen_participants=["P18", "P32"]
        )
    assert result["unseen_verb_num_samples"] == 2
    assert result["unseen_verb_accuracy_at_1"] == 0.0
    assert result["unseen_noun_accuracy_at_1"] == 100.0


# -------------------------------------------------------------------------------------- bad inputs
def test_bad_inputs_raise_clear_errors():
    good = np.zeros((2, 3))
    with pytest.raises(ValueError, match="non-finite"):
        top_k_accuracy(np.array([[0.0, np.nan, 1.0], [0, 0, 1]]), [0, 1])
    with pytest.raises(ValueError, match="expected 4 classes"):
        top_k_accuracy(good, [0, 1], num_classes=4)
    with pytest.raises(ValueError, match="outside"):
        top_k_accuracy(good, [0, 3])
    with pytest.raises(ValueError, match="expected 2 labels"):
        top_k_accuracy(good, [0, 1, 2])
    with pytest.raises(ValueError, match="reduce the views"):
        top_k_accuracy(np.zeros((2, 4, 3)), [0, 1])
    with pytest.raises(ValueError, match="expected 97 classes"):
        epic_action_recognition_metrics(np.zeros((2, 96)), np.zeros((2, 300)), [0, 0], [0, 0], num_verbs=97)
    with pytest.raises(ValueError, match="no label"):
        align_to_ids(["P01_1", "P01_9"], ["P01_1", "P01_2"])
    with pytest.raises(ValueError, match="duplicated prediction"):
        align_to_ids(["P01_1", "P01_1"], ["P01_1"])
    with pytest.raises(ValueError, match="have no prediction"):
        align_to_ids(["P01_1"], ["P01_1", "P01_2"], require_all=True)
    np.testing.assert_array_equal(align_to_ids(["b", "a"], ["a", "b", "c"]), [1, 0])


def test_distillation_diagnostics_hand_case():
    student = np.array([[2.0, 0.0], [0.0, 2.0]])
    teacher = np.array([[1.0, 0.0], [1.0, 0.0]])
    result = distillation_diagnostics(student, teacher)
    assert result["top1_agreement"] == 50.0
    p = np.array([math.exp(1) / (1 + math.exp(1)), 1 / (1 + math.exp(1))])
    q_same = np.array([math.exp(2) / (1 + math.exp(2)), 1 / (1 + math.exp(2))])
    kl = (p * np.log(p / q_same)).sum() + (p * np.log(p / q_same[::-1])).sum()
    assert result["mean_kl_teacher_student"] == pytest.approx(kl / 2)
    assert distillation_diagnostics(teacher, teacher)["mean_kl_teacher_student"] == pytest.approx(0.0)


# ------------------------------------------------------------------------------ real EPIC-100 labels
@pytest.fixture(scope="module")
def epic():
    if not (EPIC_DIR / "EPIC_100_validation.csv").is_file():
        pytest.skip("../shared/data/epic-kitchens-100-annotations is absent")
    return load_epic_annotations(EPIC_DIR, "validation")


def _read_ids(path, column):
    with open(path, newline="") as handle:
        return [row[column] for row in csv.DictReader(handle)]


@pytest.mark.real_data
def test_real_labels_perfect_and_wrong_scores(epic):
    labels = epic.labels
    n = len(labels)
    verb_labels, noun_labels = labels["verb_class"].to_numpy(), labels["noun_class"].to_numpy()
    ids = labels["narration_id"].tolist()
    perfect = evaluate_epic_predictions(ids, np.eye(97)[verb_labels] * 10, np.eye(300)[noun_labels] * 10, epic, num_verbs=97, num_nouns=300)
    for split in ("all", "tail", "unseen"):
        for task in ("verb", "noun", "action"):
            assert perfect[f"{split}_{task}_accuracy_at_1"] == 100.0, (split, task)
    # independent subset sizes from the CSVs
    tail_verbs = {int(v) for v in _read_ids(EPIC_DIR / "EPIC_100_tail_verbs.csv", "verb")}
    tail_nouns = {int(v) for v in _read_ids(EPIC_DIR / "EPIC_100_tail_nouns.csv", "noun")}
    unseen = set(_read_ids(EPIC_DIR / "EPIC_100_unseen_participant_ids_validation.csv", "participant_id"))
    rows = list(csv.DictReader(open(EPIC_DIR / "EPIC_100_validation.csv", newline="")))
    assert perfect["all_verb_num_samples"] == n == len(rows)
    assert perfect["tail_verb_num_samples"] == sum(int(r["verb_class"]) in tail_verbs for r in rows)
    assert perfect["tail_action_num_samples"] == sum(
        int(r["verb_class"]) in tail_verbs or int(r["noun_class"]) in tail_nouns for r in rows
    )
    assert perfect["unseen_noun_num_samples"] == sum(r["participant_id"] in unseen for r in rows) > 0

    # scores favouring a wrong class, the true class pushed below every other: 0 % at 1 and 5
    def wrong(labels_, classes):
        scores = np.zeros((n, classes))
        scores[np.arange(n), (labels_ + 1) % classes] = 10
        scores[np.arange(n), labels_] = -10
        return scores

    shuffled = np.random.default_rng(0).permutation(n)  # predictions in another order than the CSV
    bad = evaluate_epic_predictions(
        [ids[i] for i in shuffled], wrong(verb_labels, 97)[shuffled], wrong(noun_labels, 300)[shuffled], epic
    )
    for split in ("all", "tail", "unseen"):
        for task in ("verb", "noun", "action"):
            for k in (1, 5):
                assert bad[f"{split}_{task}_accuracy_at_{k}"] == 0.0


@pytest.mark.real_data
def test_real_labels_random_scores_match_independent_computation(epic):
    labels = epic.labels
    n = len(labels)
    verb_labels, noun_labels = labels["verb_class"].to_numpy(), labels["noun_class"].to_numpy()
    rng = np.random.default_rng(1234)
    verb, noun = rng.normal(size=(n, 97)), rng.normal(size=(n, 300))
    result = evaluate_epic_predictions(labels["narration_id"].tolist(), verb, noun, epic)
    verb_top1 = verb.argmax(1) == verb_labels
    assert result["all_verb_accuracy_at_1"] == pytest.approx(100 * verb_top1.mean())
    assert abs(result["all_verb_accuracy_at_1"] - 100 / 97) < 4 * result["all_verb_accuracy_at_1_se"] + 0.2
    noun_top5 = (np.argsort(-noun, axis=1)[:, :5] == noun_labels[:, None]).any(1)
    assert result["all_noun_accuracy_at_5"] == pytest.approx(100 * noun_top5.mean())
    tail = np.isin(verb_labels, epic.tail_verbs) | np.isin(noun_labels, epic.tail_nouns)
    action_top1 = verb_top1 & (noun.argmax(1) == noun_labels)
    assert result["tail_action_accuracy_at_1"] == pytest.approx(100 * action_top1[tail].mean())
    # action top-5 against a brute-force ranking of all 97 x 300 pairs by full-softmax products
    # (the top-5 pairs always use top-5 verbs and nouns, so the top-100 cut cannot change them)
    subset = rng.choice(n, 300, replace=False)
    verb_p = np.exp(verb[subset]) / np.exp(verb[subset]).sum(1, keepdims=True)
    noun_p = np.exp(noun[subset]) / np.exp(noun[subset]).sum(1, keepdims=True)
    pairs = (verb_p[:, :, None] * noun_p[:, None, :]).reshape(len(subset), -1)
    best5 = np.argsort(-pairs, axis=1)[:, :5]
    expected = (best5 == (verb_labels[subset] * 300 + noun_labels[subset])[:, None]).any(1)
    sub = epic_action_recognition_metrics(verb[subset], noun[subset], verb_labels[subset], noun_labels[subset])
    assert sub["all_action_accuracy_at_5"] == pytest.approx(100 * expected.mean())
    assert action_id_from_verb_noun(3, 7) == 3007


# ------------------------------------------------------------------------------- paired bootstrap (benchmarks)
def test_paired_bootstrap_difference_limits_and_errors():
    from mmkd_hf.evaluation.metrics import paired_bootstrap_difference

    rng = np.random.default_rng(0)
    same = rng.random((3, 50)) < 0.4
    result = paired_bootstrap_difference(same, same, num_resamples=500)
    assert result["difference"] == result["low"] == result["high"] == 0.0
    assert result["probability_not_better"] == 1.0 and result["discordant"] == 0.0
    always = paired_bootstrap_difference(np.ones((2, 10), bool), np.zeros((2, 10), bool), num_resamples=200)
    assert always["difference"] == always["low"] == always["high"] == 100.0 and always["probability_not_better"] == 0.0
    with pytest.raises(ValueError, match="one shape"):
        paired_bootstrap_difference(np.ones((2, 10), bool), np.ones((2, 11), bool))
    with pytest.raises(ValueError, match="confidence"):
        paired_bootstrap_difference(same, same, confidence=1.0)


def test_paired_bootstrap_difference_matches_the_binomial_interval():
    """One run, A right on 30 of 200 samples where B is wrong and nowhere else different: the mean difference is
    15 points with standard error sqrt(.15 * .85 / 200) = 2.5 points, so the 95 % interval is about 15 +- 4.9."""
    from mmkd_hf.evaluation.metrics import paired_bootstrap_difference

    b = np.zeros(200, bool)
    b[100:] = True
    a = b.copy()
    a[:30] = True
    result = paired_bootstrap_difference(a, b, num_resamples=4000, seed=1)
    assert result["difference"] == pytest.approx(15.0)
    assert 9.5 < result["low"] < 11.5 and 18.5 < result["high"] < 20.5
    assert result["probability_not_better"] == 0.0 and result["discordant"] == pytest.approx(15.0)
    assert paired_bootstrap_difference(a, b, num_resamples=4000, seed=1) == result  # seeded


def test_paired_bootstrap_difference_counts_the_seed_to_seed_spread():
    """Two runs whose differences cancel (+10 and -10 points) give a mean of 0 with a wider interval than two runs
    that agree on it: resampling the runs carries the training noise into the interval."""
    from mmkd_hf.evaluation.metrics import paired_bootstrap_difference

    n = 400
    base = np.zeros(n, bool)
    up, down = base.copy(), base.copy()
    up[:40] = True  # A right on 40 more samples: +10 points
    down_b = base.copy()
    down_b[:40] = True  # B right on 40 more: -10 points
    split = paired_bootstrap_difference(np.stack([up, down]), np.stack([base, down_b]), num_resamples=3000)
    agree = paired_bootstrap_difference(np.stack([up, up]), np.stack([base, base]), num_resamples=3000)
    assert split["difference"] == pytest.approx(0.0) and agree["difference"] == pytest.approx(10.0)
    assert split["high"] - split["low"] > 1.5 * (agree["high"] - agree["low"])
    assert split["low"] < -5 and split["high"] > 5  # the spread of the runs is inside


# ------------------------------------------------------------------------------------------- NLL
def test_negative_log_likelihood_hand_computed():
    from mmkd_hf.evaluation.calibration import calibration_metrics, negative_log_likelihood

    probs = np.array([[0.25, 0.75], [0.25, 0.75], [0.5, 0.5]])
    labels = [1, 0, 0]
    # -(ln 0.75 + ln 0.25 + ln 0.5) / 3 = (0.287682 + 1.386294 + 0.693147) / 3
    expected = 0.7890413
    assert negative_log_likelihood(probs, labels, scores_are="probs") == pytest.approx(expected, abs=1e-6)
    logits = np.log(probs) + np.array([[3.0], [-7.0], [100.0]])  # a per-row shift leaves the softmax unchanged
    assert negative_log_likelihood(logits, labels) == pytest.approx(expected, abs=1e-6)
    assert calibration_metrics(logits, labels)["nll"] == pytest.approx(expected, abs=1e-6)
    # far-off logits: the log-softmax stays finite and exact where softmax would underflow to 0
    assert negative_log_likelihood(np.array([[0.0, 1000.0]]), [0]) == pytest.approx(1000.0)
    with pytest.raises(ValueError):
        negative_log_likelihood(probs, [0, 1])


def test_results_markdown_reports_nll_per_head():
    from mmkd_hf.pipeline.results import results_markdown

    payload = {"run": {"name": "r", "dataset": "d", "preset": "p", "seed": 0, "num_processes": 1, "config_hash": "0" * 12},
               "timings_s": {"total": 1.0},
               "models": {"student": {"modalities": ["rgb"],
                                      "heads": {"verb": {"top1": 50.0, "top5": 90.0, "ece": 3.0, "nll": 1.23456}}}}}
    lines = results_markdown(payload, ["verb"]).splitlines()
    assert "| model | inputs | verb top-1 | verb top-5 | verb ECE | verb NLL |" in lines
    assert "| student | rgb | 50.00 | 90.00 | 3.00 | 1.235 |" in lines
