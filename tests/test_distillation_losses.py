"""Distillation losses and teacher weighting schemes against closed forms and hand computations."""

from __future__ import annotations

import json
import math

import pytest
import torch

from mmkd_hf.distillation import (
    FullDatasetWeightAccumulator,
    check_held_out_split,
    combine_teacher_logits,
    distillation_loss,
    full_dataset_weights,
    kd_loss,
    load_held_out_split,
    make_held_out_split,
    multi_head_ce_loss,
    multi_head_kd_loss,
    per_sample_weights,
    save_held_out_split,
    teacher_student_agreement,
    uniform_weights,
)
from mmkd_hf.distillation.weighting import per_teacher_cross_entropy


def manual_kl(teacher_logits, student_logits, temperature):
    """mean_b Σ_c p_c (log p_c - log q_c), written out with Python floats."""
    total = 0.0
    for t_row, s_row in zip(teacher_logits.tolist(), student_logits.tolist()):
        t_exp = [math.exp(v / temperature) for v in t_row]
        s_exp = [math.exp(v / temperature) for v in s_row]
        p = [v / sum(t_exp) for v in t_exp]
        q = [v / sum(s_exp) for v in s_exp]
        total += sum(pc * (math.log(pc) - math.log(qc)) for pc, qc in zip(p, q))
    return total / len(teacher_logits)


# ---------------------------------------------------------------------------------------------------------------- losses


@pytest.mark.parametrize("temperature", [1.0, 2.0, 4.0])
def test_kd_loss_matches_manual_kl_times_t_squared(temperature):
    torch.manual_seed(0)
    student, teacher = torch.randn(5, 7), torch.randn(5, 7) * 3
    expected = temperature**2 * manual_kl(teacher, student, temperature)
    assert kd_loss(student, teacher, temperature).item() == pytest.approx(expected, rel=1e-5)


def test_kd_loss_zero_for_identical_and_positive_otherwise():
    logits = torch.randn(4, 6)
    assert kd_loss(logits, logits.clone(), 2.0).item() == pytest.approx(0.0, abs=1e-6)
    assert kd_loss(logits, logits + 5.0, 2.0).item() == pytest.approx(0.0, abs=1e-6)  # shift-invariant
    assert kd_loss(logits, torch.randn(4, 6), 2.0).item() > 0


def test_kd_loss_accepts_probabilities_and_log_probabilities():
    torch.manual_seed(1)
    student, teacher = torch.randn(3, 5), torch.randn(3, 5)
    reference = kd_loss(student, teacher, 3.0)
    probs = teacher.softmax(-1)
    assert kd_loss(student, probs, 3.0, teacher_input="probs").item() == pytest.approx(reference.item(), rel=1e-5)
    log_probs = teacher.log_softmax(-1)
    assert kd_loss(student, log_probs, 3.0).item() == pytest.approx(reference.item(), rel=1e-5)


def test_kd_loss_folds_views_into_batch():
    student, teacher = torch.randn(2, 3, 5), torch.randn(2, 3, 5)
    flat = kd_loss(student.reshape(6, 5), teacher.reshape(6, 5), 2.0)
    assert kd_loss(student, teacher, 2.0).item() == pytest.approx(flat.item(), rel=1e-6)


def test_kd_loss_errors():
    with pytest.raises(ValueError, match="shape"):
        kd_loss(torch.randn(2, 5), torch.randn(2, 6))
    with pytest.raises(ValueError, match="temperature"):
        kd_loss(torch.randn(2, 5), torch.randn(2, 5), 0.0)


def test_multi_head_kd_is_mean_over_student_heads_and_names_bad_head():
    torch.manual_seed(2)
    student = {"verb": torch.randn(4, 3), "noun": torch.randn(4, 5)}
    teacher = {"verb": torch.randn(4, 3), "noun": torch.randn(4, 5), "action": torch.randn(4, 9)}
    expected = (kd_loss(student["verb"], teacher["verb"], 2.0) + kd_loss(student["noun"], teacher["noun"], 2.0)) / 2
    assert multi_head_kd_loss(student, teacher, 2.0).item() == pytest.approx(expected.item(), rel=1e-6)

    bad = dict(teacher, noun=teacher["noun"].clone())
    bad["noun"][1, 2] = float("nan")
    with pytest.raises(ValueError, match="noun"):
        multi_head_kd_loss(student, bad, 2.0)
    bad["noun"][1, 2] = float("inf")
    with pytest.raises(ValueError, match="noun"):
        multi_head_kd_loss(student, bad, 2.0)
    with pytest.raises(ValueError, match="verb"):
        multi_head_kd_loss(student, {"verb": torch.randn(4, 4), "noun": teacher["noun"]})
    with pytest.raises(ValueError, match="lacks head"):
        multi_head_kd_loss(student, {"verb": teacher["verb"]})


def test_multi_head_ce_with_head_weights_matches_manual():
    logits = {"verb": torch.tensor([[2.0, 0.0], [0.0, 1.0]]), "noun": torch.tensor([[0.0, 0.0, 3.0], [1.0, 1.0, 1.0]])}
    labels = {"verb": torch.tensor([0, 0]), "noun": torch.tensor([2, 1]), "action": torch.tensor([5, 6])}

    def ce(row, label):
        return -(row[label] - math.log(sum(math.exp(v) for v in row)))

    verb = (ce([2.0, 0.0], 0) + ce([0.0, 1.0], 0)) / 2
    noun = (ce([0.0, 0.0, 3.0], 2) + ce([1.0, 1.0, 1.0], 1)) / 2
    assert multi_head_ce_loss(logits, labels).item() == pytest.approx((verb + noun) / 2, rel=1e-6)
    weighted = multi_head_ce_loss(logits, labels, head_weights={"verb": 2.0, "noun": 0.5})
    assert weighted.item() == pytest.approx((2.0 * verb + 0.5 * noun) / 2, rel=1e-6)
    with pytest.raises(ValueError, match="labels lack heads"):
        multi_head_ce_loss(logits, {"verb": labels["verb"]})


def test_distillation_loss_combines_parts_and_grads_flow_to_student_only():
    torch.manual_seed(3)
    student = {"action": torch.randn(4, 6, requires_grad=True)}
    teacher = {"action": torch.randn(4, 6)}
    labels = {"action": torch.tensor([0, 1, 2, 3])}
    total, parts = distillation_loss(student, teacher, labels, temperature=2.0, kd_weight=0.7, ce_weight=0.3)
    assert set(parts) == {"kd", "ce"}
    assert total.item() == pytest.approx(0.7 * parts["kd"].item() + 0.3 * parts["ce"].item(), rel=1e-6)
    total.backward()
    assert student["action"].grad is not None and student["action"].grad.abs().sum() > 0

    pure, pure_parts = distillation_loss(student, teacher, labels, temperature=2.0)
    assert pure.item() == pytest.approx(pure_parts["kd"].item(), rel=1e-6)  # ce logged but weight 0
    without_labels, parts_no_labels = distillation_loss(student, teacher, None)
    assert "ce" not in parts_no_labels and torch.isfinite(without_labels)
    with pytest.raises(ValueError, match="no labels"):
        distillation_loss(student, teacher, None, ce_weight=1.0)


def test_teacher_student_agreement():
    student = {"verb": torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 0.0]])}
    teacher = {"verb": torch.tensor([[2.0, 0.0], [3.0, 1.0], [0.0, 1.0], [5.0, 0.0]])}
    assert teacher_student_agreement(student, teacher)["verb"].item() == pytest.approx(0.5)


# ------------------------------------------------------------------------------------------------------------- weighting


def test_uniform_weights():
    assert torch.allclose(uniform_weights(4), torch.full((4,), 0.25))
    with pytest.raises(ValueError):
        uniform_weights(0)


def test_per_teacher_cross_entropy_gathers_each_teachers_label_probability():
    torch.manual_seed(4)
    logits = torch.randn(3, 2, 5)
    labels = torch.tensor([4, 0, 2])
    losses = per_teacher_cross_entropy(logits, labels)
    for b in range(3):
        for t in range(2):
            expected = torch.nn.functional.cross_entropy(logits[b, t][None], labels[b][None])
            assert losses[b, t].item() == pytest.approx(expected.item(), rel=1e-6)


def test_per_sample_weights_closed_form():
    # Teacher 0 gives the label probability 0.5, teacher 1 gives 0.25 -> with τ_w=1 the weights ∝ (0.5, 0.25).
    logits = torch.log(torch.tensor([[[0.5, 0.5, 0.0 + 1e-30], [0.25, 0.75, 1e-30]]]))
    labels = torch.tensor([0])
    weights = per_sample_weights(logits, labels, temperature=1.0)
    assert torch.allclose(weights, torch.tensor([[2 / 3, 1 / 3]]), atol=1e-6)
    # τ_w = 2: softmin(ℓ/2) ∝ p^(1/2) -> (sqrt(.5), sqrt(.25)) normalised.
    expected = torch.tensor([math.sqrt(0.5), 0.5])
    assert torch.allclose(per_sample_weights(logits, labels, 2.0)[0], expected / expected.sum(), atol=1e-6)
    # rows sum to 1 for random input, and a better teacher gets more weight per sample
    random_logits = torch.randn(6, 3, 4)
    random_labels = torch.randint(0, 4, (6,))
    weights = per_sample_weights(random_logits, random_labels)
    assert torch.allclose(weights.sum(1), torch.ones(6))
    ce = per_teacher_cross_entropy(random_logits, random_labels)
    assert torch.equal(weights.argmax(1), ce.argmin(1))


def test_full_dataset_weights_closed_form():
    losses = torch.tensor([1.0, 2.0, 3.0])
    expected = torch.tensor([math.exp(-1.0), math.exp(-2.0), math.exp(-3.0)])
    assert torch.allclose(full_dataset_weights(losses, 1.0), expected / expected.sum(), atol=1e-6)
    expected_t = torch.tensor([math.exp(-0.5), math.exp(-1.0), math.exp(-1.5)])
    assert torch.allclose(full_dataset_weights(losses, 2.0), expected_t / expected_t.sum(), atol=1e-6)


def test_accumulator_starts_at_zero_and_matches_mean_loss():
    torch.manual_seed(5)
    batches = [(torch.randn(4, 3, 5), torch.randint(0, 5, (4,))) for _ in range(3)]
    accumulator = FullDatasetWeightAccumulator(3)
    assert torch.equal(accumulator.loss_sum, torch.zeros(3, dtype=torch.float64)) and accumulator.count == 0
    for logits, labels in batches:
        accumulator.update(logits, labels)
    all_losses = torch.cat([per_teacher_cross_entropy(logits, labels) for logits, labels in batches])
    assert accumulator.count == 12
    assert torch.allclose(accumulator.mean_losses(), all_losses.mean(0), atol=1e-6)
    assert torch.allclose(accumulator.compute(1.0), torch.softmax(-all_losses.mean(0), 0), atol=1e-6)
    with pytest.raises(ValueError, match="empty"):
        FullDatasetWeightAccumulator(3).compute()


class FakeAccelerator:
    """Two simulated processes: reduce(sum) adds the other process's tensor."""

    device = torch.device("cpu")

    def __init__(self, other_tensor_source):
        self.other = other_tensor_source

    def reduce(self, tensor, reduction="sum"):
        assert reduction == "sum"
        return tensor + self.other()


def test_accumulator_reduce_across_two_processes_equals_single_process():
    torch.manual_seed(6)
    logits, labels = torch.randn(10, 2, 4), torch.randint(0, 4, (10,))
    single = FullDatasetWeightAccumulator(2)
    single.update(logits, labels)
    rank0, rank1 = FullDatasetWeightAccumulator(2), FullDatasetWeightAccumulator(2)
    rank0.update(logits[:6], labels[:6])
    rank1.update(logits[6:], labels[6:])
    rank1_packed = torch.cat([rank1.loss_sum, torch.tensor([float(rank1.count)], dtype=torch.float64)])
    rank0.reduce_across_processes(FakeAccelerator(lambda: rank1_packed))
    assert rank0.count == 10
    assert torch.allclose(rank0.compute(), single.compute(), atol=1e-6)
    with pytest.raises(RuntimeError):
        rank0.reduce_across_processes(FakeAccelerator(lambda: rank1_packed))


def test_combine_teacher_logits_in_logit_and_probability_space():
    logits = torch.tensor([[[1.0, 0.0], [3.0, 1.0]]])  # B=1, N=2, C=2
    weights = torch.tensor([0.25, 0.75])
    assert torch.allclose(combine_teacher_logits(logits, weights, "logits"), torch.tensor([[2.5, 0.75]]))
    mixture = 0.25 * logits[0, 0].softmax(-1) + 0.75 * logits[0, 1].softmax(-1)
    combined = combine_teacher_logits(logits, weights, "probs")
    assert torch.allclose(combined.exp(), mixture[None], atol=1e-6)
    per_sample = torch.tensor([[1.0, 0.0]])
    assert torch.allclose(combine_teacher_logits(logits, per_sample), logits[:, 0])
    with pytest.raises(ValueError, match="weights must be"):
        combine_teacher_logits(logits, torch.ones(3) / 3)


# ------------------------------------------------------------------------------------------------------- held-out split


def test_held_out_split_is_deterministic_disjoint_and_round_trips(tmp_path):
    ids = [f"P01_{i:03d}" for i in range(20)]
    train, held_out = make_held_out_split(ids, 0.25, seed=3)
    assert len(held_out) == 5 and not set(train) & set(held_out) and set(train) | set(held_out) == set(ids)
    assert make_held_out_split(list(reversed(ids)), 0.25, seed=3)[1] == sorted(held_out, key=ids[::-1].index)
    assert set(make_held_out_split(ids, 0.25, seed=4)[1]) != set(held_out)
    path = save_held_out_split(tmp_path / "split.json", train, held_out, seed=3, fraction=0.25)
    assert json.loads(path.read_text())["seed"] == 3
    assert load_held_out_split(path) == (train, held_out)


def test_held_out_split_errors(tmp_path):
    with pytest.raises(ValueError, match="overlaps"):
        check_held_out_split(["a", "b"], ["b", "c"])
    with pytest.raises(ValueError, match="unique"):
        make_held_out_split(["a", "a", "b"], 0.5)
    with pytest.raises(ValueError, match="fraction"):
        make_held_out_split(["a", "b"], 1.0)
    with pytest.raises(ValueError, match="overlaps"):
        save_held_out_split(tmp_path / "bad.json", ["a"], ["a"])
    assert not (tmp_path / "bad.json").exists()
    (tmp_path / "other.json").write_text('{"x": 1}')
    with pytest.raises(ValueError, match="not a held-out split"):
        load_held_out_split(tmp_path / "other.json")
