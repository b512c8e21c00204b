"""MultimodalTeacherEnsemble with tiny real teachers: routing, weighting, freezing, faults and save/load."""

from __future__ import annotations

import pytest
import torch
from torch.utils.data import DataLoader
from transformers import AutoModel

from mmkd_hf import (
    MultimodalTeacherEnsemble,
    STLTConfig,
    STLTForVideoClassification,
    VideoSwinConfig,
    VideoSwinForVideoClassification,
)
from mmkd_hf.distillation.ensemble_fitting import collect_held_out_logits, fit_calibration, fit_full_dataset_weights
from mmkd_hf.distillation.weighting import per_sample_weights, per_teacher_cross_entropy
from mmkd_hf.models.ensemble.modeling_ensemble import select_model_inputs

HEADS = {"verb": 5, "noun": 7}
FRAMES, SIZE, BOXES = 4, 32, 3


def tiny_swin(modality: str, heads=HEADS, seed: int = 0) -> VideoSwinForVideoClassification:
    torch.manual_seed(seed)
    config = VideoSwinConfig(
        embed_dim=16, depths=(1, 1, 1, 1), num_heads=(1, 1, 1, 1), window_size=(2, 4, 4), num_frames=FRAMES,
        image_size=SIZE, modality=modality, heads=dict(heads), drop_path_rate=0.0,
    )
    return VideoSwinForVideoClassification(config).eval()


def tiny_stlt(heads=HEADS, seed: int = 0) -> STLTForVideoClassification:
    torch.manual_seed(seed)
    config = STLTConfig(
        hidden_size=32, num_attention_heads=2, num_spatial_layers=1, num_temporal_layers=1, intermediate_size=64,
        num_frames=FRAMES, max_boxes=BOXES, heads=dict(heads),
    )
    return STLTForVideoClassification(config).eval()


def make_batch(batch_size: int = 3, seed: int = 0) -> dict:
    generator = torch.Generator().manual_seed(seed)
    shape = (batch_size, FRAMES)
    return {
        "pixel_values": torch.rand(*shape, 3, SIZE, SIZE, generator=generator),
        "flow_values": torch.rand(*shape, 2, SIZE, SIZE, generator=generator),
        "audio_values": torch.rand(*shape, 1, SIZE, SIZE, generator=generator),
        "layout_boxes": torch.rand(*shape, BOXES, 4, generator=generator),
        "layout_categories": torch.randint(1, 3, (*shape, BOXES), generator=generator),
        "layout_scores": torch.rand(*shape, BOXES, generator=generator),
        "layout_sides": torch.randint(0, 3, (*shape, BOXES), generator=generator),
        "layout_states": torch.randint(0, 6, (*shape, BOXES), generator=generator),
        "layout_mask": torch.ones(*shape, BOXES, dtype=torch.bool),
        "labels": {
            "verb": torch.randint(0, HEADS["verb"], (batch_size,), generator=generator),
            "noun": torch.randint(0, HEADS["noun"], (batch_size,), generator=generator),
            "action": torch.randint(0, 30, (batch_size,), generator=generator),
        },
        "segment_id": [f"seg{seed}_{i}" for i in range(batch_size)],
    }


@pytest.fixture(scope="module")
def teachers():
    return {
        "rgb": tiny_swin("rgb", seed=1),
        "flow": tiny_swin("flow", seed=2),
        "audio": tiny_swin("audio", seed=3),
        "layout": tiny_stlt(seed=4),
    }


@pytest.fixture(scope="module")
def ensemble(teachers):
    return MultimodalTeacherEnsemble.from_teachers(teachers)


def test_each_teacher_gets_its_modality_and_uniform_is_mean_of_logits(ensemble, teachers):
    batch = make_batch()
    output = ensemble(**batch)
    with torch.no_grad():
        direct = {
            "rgb": teachers["rgb"](pixel_values=batch["pixel_values"]).logits,
            "flow": teachers["flow"](pixel_values=batch["flow_values"]).logits,
            "audio": teachers["audio"](pixel_values=batch["audio_values"]).logits,
            "layout": teachers["layout"](**{k: v for k, v in batch.items() if k.startswith("layout_")}).logits,
        }
    for modality, logits in direct.items():
        for head in HEADS:
            assert torch.allclose(output.teacher_logits[modality][head], logits[head], atol=1e-5), modality
    for head in HEADS:
        mean = torch.stack([direct[m][head] for m in ensemble.config.teacher_order]).mean(0)
        assert torch.allclose(output.logits[head], mean, atol=1e-5)
        assert torch.allclose(output.weights[head], torch.full((4,), 0.25))


def test_select_model_inputs_routes_keys(teachers):
    batch = make_batch()
    flow_inputs = select_model_inputs(batch, teachers["flow"].config)
    assert list(flow_inputs) == ["pixel_values"] and flow_inputs["pixel_values"] is batch["flow_values"]
    layout_inputs = select_model_inputs(batch, teachers["layout"].config, include_labels=True)
    assert set(layout_inputs) == {k for k in batch if k.startswith("layout_")} | {"labels"}
    with pytest.raises(ValueError, match="'audio_values'"):
        select_model_inputs({"pixel_values": batch["pixel_values"]}, teachers["audio"].config, model_name="x")


def test_per_sample_and_probability_space(teachers):
    batch = make_batch()
    ensemble = MultimodalTeacherEnsemble.from_teachers(
        {"rgb": teachers["rgb"], "flow": teachers["flow"]}, weighting="per-sample", combine_space="probs",
        weights_temperature=2.0,
    )
    output = ensemble(**batch)
    stacked = torch.stack([output.teacher_logits["rgb"]["noun"], output.teacher_logits["flow"]["noun"]], dim=1)
    weights = per_sample_weights(stacked, batch["labels"]["noun"], 2.0)
    assert torch.allclose(output.weights["noun"], weights)
    mixture = (weights[..., None] * stacked.softmax(-1)).sum(1)
    assert torch.allclose(output.logits["noun"].exp(), mixture, atol=1e-5)
    without_labels = {k: v for k, v in batch.items() if k != "labels"}
    with pytest.raises(ValueError, match="per-sample weighting needs labels"):
        ensemble(**without_labels)


def test_missing_modality_names_teacher_and_key(ensemble):
    batch = make_batch()
    del batch["flow_values"]
    with pytest.raises(ValueError, match=r"teacher 'flow'.*'flow_values'"):
        ensemble(**batch)
    batch = make_batch()
    del batch["layout_boxes"]
    with pytest.raises(ValueError, match="teacher 'layout'"):
        ensemble(**batch)


def test_head_and_class_count_mismatches_name_teacher_and_head(teachers):
    wrong_count = tiny_swin("flow", heads={"verb": 5, "noun": 8})
    with pytest.raises(ValueError, match=r"teacher 'flow' head 'noun' has 8 classes"):
        MultimodalTeacherEnsemble.from_teachers({"rgb": teachers["rgb"], "flow": wrong_count})
    missing_head = tiny_swin("flow", heads={"verb": 5})
    with pytest.raises(ValueError, match=r"teacher 'flow' lacks head 'noun'"):
        MultimodalTeacherEnsemble.from_teachers({"rgb": teachers["rgb"], "flow": missing_head})
    with pytest.raises(ValueError, match=r"teacher 'rgb' has head\(s\) \['noun'\]"):
        MultimodalTeacherEnsemble.from_teachers({"rgb": teachers["rgb"]}, heads={"verb": 5})


def test_teachers_are_frozen_and_stay_in_eval(ensemble):
    ensemble.train()
    assert not ensemble.training and not any(module.training for module in ensemble.modules())
    assert not any(parameter.requires_grad for parameter in ensemble.parameters())


def _held_out_items(num_items: int) -> list[dict]:
    batch = make_batch(num_items, seed=7)
    items = []
    for i in range(num_items):
        item = {k: v[i] for k, v in batch.items() if isinstance(v, torch.Tensor)}
        item["labels"] = {head: batch["labels"][head][i] for head in HEADS}
        items.append(item)
    return items


def _collate(items: list[dict]) -> dict:
    batch = {k: torch.stack([item[k] for item in items]) for k in items[0] if k != "labels"}
    batch["labels"] = {head: torch.stack([item["labels"][head] for item in items]) for head in HEADS}
    return batch


class RecordingAccelerator:
    """Simulates process ``process_index`` of two; ``reduce`` adds what the other process contributed."""

    device = torch.device("cpu")
    num_processes = 2

    def __init__(self, process_index: int, other_contributions: list | None = None):
        self.process_index = process_index
        self.sent: list[torch.Tensor] = []
        self.other = list(other_contributions or [])

    def reduce(self, tensor, reduction="sum"):
        self.sent.append(tensor.clone())
        return tensor + self.other.pop(0) if self.other else tensor


def test_fit_full_dataset_weights_closed_form_two_processes_and_round_trip(teachers, tmp_path):
    ensemble = MultimodalTeacherEnsemble.from_teachers(
        {"rgb": teachers["rgb"], "audio": teachers["audio"], "layout": teachers["layout"]}
    )
    items = _held_out_items(5)
    loader = DataLoader(items, batch_size=2, collate_fn=_collate)
    weights = fit_full_dataset_weights(ensemble, loader)
    assert ensemble.config.weighting == "full-dataset"

    full = _collate(items)
    output = ensemble(**full)
    for head in HEADS:
        stacked = torch.stack([output.teacher_logits[m][head] for m in ensemble.config.teacher_order], dim=1)
        mean_ce = per_teacher_cross_entropy(stacked, full["labels"][head]).mean(0)
        assert torch.allclose(weights[head], torch.softmax(-mean_ce, 0), atol=1e-5)
        assert torch.allclose(output.weights[head], weights[head])
        assert torch.allclose(output.logits[head], (weights[head][None, :, None] * stacked).sum(1), atol=1e-5)

    # Two processes: each fits a disjoint strided shard and the sums are reduced -> the same weights.
    rank1 = RecordingAccelerator(1)
    fit_full_dataset_weights(ensemble, loader, accelerator=rank1)
    rank0 = RecordingAccelerator(0, rank1.sent)
    two_process = fit_full_dataset_weights(ensemble, loader, accelerator=rank0)
    assert [int(t[-1]) for t in rank0.sent] == [3, 3] and [int(t[-1]) for t in rank1.sent] == [2, 2]
    for head in HEADS:
        assert torch.allclose(two_process[head], weights[head], atol=1e-5)

    ensemble.save_pretrained(tmp_path / "ensemble")
    reloaded = AutoModel.from_pretrained(tmp_path / "ensemble")
    assert isinstance(reloaded, MultimodalTeacherEnsemble)
    assert reloaded.config.weighting == "full-dataset"
    assert reloaded.config.teacher_order == ["rgb", "audio", "layout"]
    assert not any(parameter.requires_grad for parameter in reloaded.parameters()) and not reloaded.training
    for head in HEADS:
        assert torch.allclose(reloaded.teacher_weights()[head], weights[head])
        assert torch.allclose(reloaded(**full).logits[head], output.logits[head], atol=1e-5)

    # Switching a fitted ensemble back to "uniform" ignores the fitted buffers.
    reloaded.config.weighting = "uniform"
    uniform_output = reloaded(**full)
    for head in HEADS:
        stacked = torch.stack([uniform_output.teacher_logits[m][head] for m in reloaded.config.teacher_order], dim=1)
        assert torch.allclose(uniform_output.logits[head], stacked.mean(1), atol=1e-5)


def test_nan_teacher_weights_rejected(ensemble):
    with pytest.raises(ValueError, match="finite"):
        ensemble.set_teacher_weights({"verb": torch.tensor([float("nan"), 0, 0, 1.0]), "noun": torch.ones(4) / 4})


class GatheringAccelerator(RecordingAccelerator):
    """Process ``process_index`` of two for ``gather`` (equal shapes, rank order) and ``pad_across_processes``:
    ``other`` holds what the other process sends, in call order."""

    def pad_across_processes(self, tensor, dim=0):
        size = max(tensor.shape[0], self.other_rows)
        return torch.cat([tensor, tensor.new_zeros(size - tensor.shape[0], *tensor.shape[1:])])

    def gather(self, tensor):
        self.sent.append(tensor.clone())
        if not self.other:
            return tensor
        other = self.other.pop(0)
        assert other.shape == tensor.shape, "gather needs equal shapes on every process"
        parts = [tensor, other] if self.process_index == 0 else [other, tensor]
        return torch.cat(parts)


def test_fit_calibration_scales_logits_by_the_nll_temperature_and_round_trips(teachers, tmp_path):
    from mmkd_hf.evaluation.calibration import fit_temperature

    ensemble = MultimodalTeacherEnsemble.from_teachers({"rgb": teachers["rgb"], "flow": teachers["flow"]})
    items = _held_out_items(25)
    full = _collate(items)
    raw = ensemble(**full).logits
    # Labels the ensemble gets right 5 times in 6: its small random logits are then under-confident (T < 1).
    for head in HEADS:
        labels = raw[head].argmax(-1)
        labels[::6] = (labels[::6] + 1) % HEADS[head]
        for i, item in enumerate(items):
            item["labels"][head] = labels[i]
    full = _collate(items)
    loader = DataLoader(items, batch_size=5, collate_fn=_collate)

    temperatures = fit_calibration(ensemble, loader)
    assert ensemble.config.calibration_temperatures == temperatures
    calibrated = ensemble(**full).logits
    for head in HEADS:
        expected = fit_temperature(raw[head].numpy(), full["labels"][head].numpy())
        assert temperatures[head] == pytest.approx(expected, rel=1e-6)
        assert temperatures[head] < 1.0
        assert torch.allclose(calibrated[head], raw[head] / temperatures[head], atol=1e-6)
        nll = torch.nn.functional.cross_entropy
        assert nll(calibrated[head], full["labels"][head]) < nll(raw[head], full["labels"][head])
    # Refitting starts from the uncalibrated logits (no compounding).
    assert fit_calibration(ensemble, loader) == pytest.approx(temperatures)

    # Two processes: each collects its strided shard (13 and 12 samples), the logits are padded, gathered and
    # trimmed -> the same temperatures.
    rank1 = GatheringAccelerator(1)
    rank1.other_rows = 13
    fit_calibration(ensemble, loader, accelerator=rank1)
    rank0 = GatheringAccelerator(0, rank1.sent)
    rank0.other_rows = 12
    two_process = fit_calibration(ensemble, loader, accelerator=rank0)
    assert [t.shape[0] for t in rank0.sent] == [1, 13, 1, 13, 1, 13, 1, 13]  # counts, padded logits, labels
    assert two_process == pytest.approx(temperatures, rel=1e-5)

    # One pass of the teachers serves both fits: with collected logits neither fit runs a teacher again.
    held_out = collect_held_out_logits(ensemble, loader)
    assert held_out.logits["verb"].shape == (25, 2, HEADS["verb"]) and torch.equal(held_out.labels["noun"],
                                                                                     full["labels"]["noun"])
    weights = fit_full_dataset_weights(ensemble, loader, set_weighting=False)
    forward = ensemble.teacher_forward
    ensemble.teacher_forward = lambda batch: pytest.fail("a teacher ran again")
    try:
        from_collected = fit_full_dataset_weights(ensemble, held_out=held_out, set_weighting=False)
        assert all(torch.allclose(from_collected[h], weights[h]) for h in HEADS)
        assert fit_calibration(ensemble, held_out=held_out) == pytest.approx(temperatures)
    finally:
        ensemble.teacher_forward = forward

    ensemble.save_pretrained(tmp_path / "calibrated")
    reloaded = AutoModel.from_pretrained(tmp_path / "calibrated")
    assert reloaded.config.calibration_temperatures == pytest.approx(temperatures)
    for head in HEADS:
        assert torch.allclose(reloaded(**full).logits[head], calibrated[head], atol=1e-5)


def test_calibration_temperatures_are_validated(teachers):
    ensemble = MultimodalTeacherEnsemble.from_teachers({"rgb": teachers["rgb"]})
    config = ensemble.config.to_dict()
    for bad, match in (({"verb": 0.0}, "finite and > 0"), ({"verb": float("inf")}, "finite and > 0"),
                       ({"action": 1.0}, "unknown head")):
        with pytest.raises(ValueError, match=match):
            type(ensemble.config).from_dict({**config, "calibration_temperatures": bad})
    with pytest.raises(ValueError, match="labels"):
        fit_calibration(ensemble, [{k: v for k, v in make_batch().items() if k != "labels"}])
    assert ensemble.config.calibration_temperatures == {}
