"""Teachers that tolerate a missing modality per sample: the data marks it, the ensemble renormalises the other
teachers' weights, distillation (online and cached), ensemble fitting and evaluation follow the mark."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader

sys.path.insert(0, str(Path(__file__).resolve().parent))
from conftest import write_tiny_epic  # noqa: E402
from test_distillation_trainer import ListDataset, arguments, collate, make_items  # noqa: E402
from test_ensemble import HEADS, make_batch, tiny_stlt, tiny_swin  # noqa: E402

from mmkd_hf import MultimodalTeacherEnsemble  # noqa: E402
from mmkd_hf.data import AudioConfig, DataFormatError, MultimodalCollator, load_dataset  # noqa: E402
from mmkd_hf.distillation.cache import precompute_teacher_logits, with_cached_logits  # noqa: E402
from mmkd_hf.distillation.ensemble_fitting import (  # noqa: E402
    FullDatasetWeightAccumulator,
    collect_held_out_logits,
    fit_calibration,
    fit_full_dataset_weights,
)
from mmkd_hf.distillation.losses import distillation_loss, multi_head_kd_loss  # noqa: E402
from mmkd_hf.distillation.trainer import DistillationTrainer  # noqa: E402
from mmkd_hf.distillation.weighting import (  # noqa: E402
    combine_teacher_logits,
    per_sample_weights,
    per_teacher_cross_entropy,
    renormalise_weights,
    uniform_weights,
)
from mmkd_hf.evaluation.run import model_inputs  # noqa: E402

SMALL = dict(num_frames=4, crop_size=32, audio=AudioConfig(output_size=(32, 32)), stride=2)
TEACHERS = ("rgb", "audio", "layout")


@pytest.fixture(scope="module")
def ensemble():
    return MultimodalTeacherEnsemble.from_teachers(
        {"rgb": tiny_swin("rgb", seed=1), "audio": tiny_swin("audio", seed=3), "layout": tiny_stlt(seed=4)}
    )


def stacked_logits(seed: int = 0, batch: int = 2, teachers: int = 3, classes: int = 5) -> torch.Tensor:
    return torch.randn(batch, teachers, classes, generator=torch.Generator().manual_seed(seed))


# ----------------------------------------------------------------------------------- closed-form weights
def test_uniform_weights_renormalised_per_sample():
    present = torch.tensor([[True, False, True], [True, True, True]])
    weights = renormalise_weights(uniform_weights(3), present)
    assert torch.allclose(weights[0], torch.tensor([0.5, 0.0, 0.5]))
    assert torch.allclose(weights[1], torch.full((3,), 1 / 3))
    logits = stacked_logits()
    combined = combine_teacher_logits(logits, uniform_weights(3), "logits", present)
    assert torch.allclose(combined[0], (logits[0, 0] + logits[0, 2]) / 2, atol=1e-6)
    assert torch.allclose(combined[1], logits[1].mean(0), atol=1e-6)


def test_full_dataset_weights_renormalised_and_none_present_gives_zero_row():
    weights = torch.tensor([0.2, 0.3, 0.5])
    present = torch.tensor([[True, True, False], [True, True, True], [False, False, False]])
    out = renormalise_weights(weights, present)
    assert torch.allclose(out[0], torch.tensor([0.4, 0.6, 0.0]))
    assert torch.equal(out[1], weights)  # all present: exactly the stored weights
    assert torch.equal(out[2], torch.zeros(3))
    logits = stacked_logits(1, batch=3)
    logits[0, 2] = float("nan")  # an absent teacher's logits never enter the combination
    combined = combine_teacher_logits(logits, weights, "logits", present)
    assert torch.allclose(combined[0], 0.4 * logits[0, 0] + 0.6 * logits[0, 1], atol=1e-6)
    assert torch.allclose(combined[1], (weights[:, None] * logits[1]).sum(0), atol=1e-6)
    assert torch.equal(combined[2], torch.zeros(5))
    mixture = combine_teacher_logits(logits, weights, "probs", present)
    expected = torch.log(0.4 * logits[0, 0].softmax(-1) + 0.6 * logits[0, 1].softmax(-1))
    assert torch.isfinite(mixture).all() and torch.allclose(mixture[0], expected, atol=1e-5)


def test_per_sample_softmin_over_present_teachers_only():
    logits, labels = stacked_logits(2), torch.tensor([1, 3])
    present = torch.tensor([[True, True, False], [False, False, False]])
    weights = per_sample_weights(logits, labels, temperature=2.0, present=present)
    ce = -F.log_softmax(logits[0], -1)[:, 1]
    expected = torch.softmax(-ce[:2] / 2.0, 0)
    assert torch.allclose(weights[0, :2], expected, atol=1e-6) and weights[0, 2] == 0
    assert torch.equal(weights[1], torch.zeros(3))
    # without a mask: unchanged
    assert torch.allclose(per_sample_weights(logits, labels, 2.0),
                          torch.softmax(-per_teacher_cross_entropy(logits, labels) / 2.0, 1))


def test_ensemble_combine_with_mask_for_every_weighting(ensemble):
    teacher_logits = {m: {h: torch.randn(2, n, generator=torch.Generator().manual_seed(i + len(h)))
                          for h, n in HEADS.items()} for i, m in enumerate(TEACHERS)}
    labels = {h: torch.tensor([0, 2]) for h in HEADS}
    mask = {"audio": torch.tensor([False, True])}  # layout/rgb unmarked: present
    try:
        for weighting in ("uniform", "full-dataset", "per-sample"):
            ensemble.config.weighting = weighting
            ensemble.set_teacher_weights({h: torch.tensor([0.2, 0.3, 0.5]) for h in HEADS})
            combined, weights = ensemble.combine(teacher_logits, labels, mask)
            for head in HEADS:
                stacked = torch.stack([teacher_logits[m][head] for m in TEACHERS], 1)
                if weighting == "uniform":
                    assert torch.allclose(weights[head][0], torch.tensor([0.5, 0.0, 0.5]))
                    assert torch.allclose(weights[head][1], torch.full((3,), 1 / 3))
                elif weighting == "full-dataset":
                    assert torch.allclose(weights[head][0], torch.tensor([0.2, 0.0, 0.5]) / 0.7)
                    assert torch.allclose(weights[head][1], torch.tensor([0.2, 0.3, 0.5]))
                else:
                    ce = per_teacher_cross_entropy(stacked, labels[head])
                    assert torch.allclose(weights[head][0], torch.softmax(-ce[0, [0, 2]], 0)[[0, 0, 1]]
                                          * torch.tensor([1.0, 0.0, 1.0]), atol=1e-6)
                    assert torch.allclose(weights[head][1], torch.softmax(-ce[1], 0), atol=1e-6)
                assert torch.allclose(combined[head], (weights[head][..., None] * stacked).sum(1), atol=1e-5)
    finally:
        ensemble.config.weighting = "uniform"


def test_ensemble_forward_reads_the_batch_mask_and_batches_without_it_are_unchanged(ensemble):
    batch = make_batch(3, seed=5)
    plain = ensemble(**batch)
    assert plain.teacher_present is None and plain.weights["verb"].shape == (3,)
    marked = dict(batch, modality_present={"audio": torch.tensor([True, False, False]),
                                           "layout": torch.tensor([True, True, False])})
    marked["audio_values"] = marked["audio_values"].clone()
    marked["audio_values"][1:] = 0  # zero-filled as the data transform does
    output = ensemble(**marked)
    assert output.teacher_present.tolist() == [[True, True, True], [True, False, True], [True, False, False]]
    for head in HEADS:
        stacked = torch.stack([output.teacher_logits[m][head] for m in TEACHERS], 1)
        assert torch.allclose(output.logits[head][0], plain.logits[head][0], atol=1e-6)
        assert torch.allclose(output.logits[head][1], (stacked[1, 0] + stacked[1, 2]) / 2, atol=1e-5)
        assert torch.allclose(output.logits[head][2], stacked[2, 0], atol=1e-5)
    # evaluation routes the mark to the ensemble (and never to a single model)
    assert "modality_present" in model_inputs(ensemble, marked)
    assert set(model_inputs(tiny_swin("rgb"), marked)) == {"pixel_values"}


# ----------------------------------------------------------------------------------------------- losses
def test_loss_of_a_sample_without_teacher_is_the_label_only_loss():
    torch.manual_seed(0)
    student = {h: torch.randn(3, n) for h, n in HEADS.items()}
    teacher = {h: torch.randn(3, n) for h, n in HEADS.items()}
    labels = {h: torch.tensor([0, 1, 2]) for h in HEADS}
    teacher["verb"][2] = float("nan")  # sample 2 has no teacher: its teacher logits are never read
    has_teacher = torch.tensor([True, True, False])
    loss, parts = distillation_loss(student, teacher, labels, temperature=2.0, has_teacher=has_teacher)
    expected = []
    for head in HEADS:
        kl = [F.kl_div(F.log_softmax(student[head][b] / 2, -1), F.log_softmax(teacher[head][b] / 2, -1),
                       reduction="sum", log_target=True) * 4 for b in (0, 1)]
        ce = F.cross_entropy(student[head][2:], labels[head][2:])
        expected.append((kl[0] + kl[1] + ce) / 3)
    assert loss.item() == pytest.approx(torch.stack(expected).mean().item(), rel=1e-5)
    # a batch of samples without any teacher: exactly CE-only
    none = torch.zeros(3, dtype=torch.bool)
    loss_none, _ = distillation_loss(student, teacher, labels, temperature=2.0, has_teacher=none)
    ce_only = torch.stack([F.cross_entropy(student[h], labels[h]) for h in HEADS]).mean()
    assert loss_none.item() == pytest.approx(ce_only.item(), rel=1e-6)
    # all present: the unmasked loss
    teacher["verb"][2] = 0.0
    masked, _ = distillation_loss(student, teacher, labels, 2.0, has_teacher=torch.ones(3, dtype=torch.bool))
    assert masked.item() == pytest.approx(multi_head_kd_loss(student, teacher, 2.0).item(), rel=1e-5)
    with pytest.raises(ValueError, match="no teacher"):
        distillation_loss(student, teacher, None, has_teacher=none)


def marked_items(num_items: int, seed: int, audio: list[bool], layout: list[bool]) -> list[dict]:
    items = make_items(num_items, seed)
    for item, has_audio, has_layout in zip(items, audio, layout):
        item["modality_present"] = {"audio": torch.tensor(has_audio), "layout": torch.tensor(has_layout)}
        if not has_audio:
            item["audio_values"] = torch.zeros_like(item["audio_values"])
    return items


def test_online_and_cached_distillation_follow_the_mask(tmp_path, ensemble):
    student = tiny_swin("rgb", seed=9).eval()
    ensemble.config.weighting = "uniform"
    items = marked_items(4, 3, audio=[True, False, True, False], layout=[True, True, False, False])
    batch = collate(items)
    online = DistillationTrainer(model=student, args=arguments(tmp_path, temperature=3.0), teacher=ensemble)
    loss_online = online.compute_loss(student, batch)
    with torch.no_grad():
        output = ensemble(**batch)
        expected, _ = distillation_loss(student(pixel_values=batch["pixel_values"]).logits, output.logits,
                                        batch["labels"], temperature=3.0, kd_weight=online.args.kd_weight,
                                        ce_weight=online.args.ce_weight, has_teacher=output.teacher_present.any(1))
    assert loss_online.item() == pytest.approx(expected.item(), rel=1e-5)

    # cached: the presence is stored with the logits and read back by the trainer
    cache_dir = precompute_teacher_logits(ensemble, ListDataset(items), tmp_path / "cache", batch_size=3,
                                          shard_size=2, collate_fn=collate, progress=False)
    cached_items = [with_cached_logits(ListDataset(items), cache_dir)[i] for i in range(4)]
    assert [item["teacher_present"].tolist() for item in cached_items] == output.teacher_present.tolist()
    cached_batch = MultimodalCollator()(cached_items)
    assert cached_batch["teacher_present"].shape == (4, 3)
    cached_args = arguments(tmp_path, temperature=3.0, teacher_mode="cached", cached_logits_path=str(cache_dir))
    cached = DistillationTrainer(model=student, args=cached_args)
    assert cached.compute_loss(student, cached_batch).item() == pytest.approx(loss_online.item(), rel=1e-4)


def test_online_distillation_with_a_sample_without_any_teacher_trains(tmp_path):
    teachers = MultimodalTeacherEnsemble.from_teachers({"audio": tiny_swin("audio", seed=3), "layout": tiny_stlt(seed=4)})
    items = marked_items(4, 2, audio=[True, False, True, False], layout=[True, False, False, True])
    trainer = DistillationTrainer(model=tiny_swin("rgb", seed=9), args=arguments(tmp_path, max_steps=2, logging_steps=1),
                                  teacher=teachers, train_dataset=ListDataset(items), data_collator=collate)
    trainer.train()
    logs = [entry for entry in trainer.state.log_history if "loss" in entry]
    assert logs and all(entry["samples_without_teacher"] == pytest.approx(0.25) for entry in logs)
    assert all(torch.isfinite(torch.tensor(entry["loss"])) for entry in logs)

    # cached mode gives the same loss, the sample without a teacher included
    student = trainer.model.eval()
    batch = collate(items)
    online_loss = trainer.compute_loss(student, batch)
    cache_dir = precompute_teacher_logits(teachers, ListDataset(items), tmp_path / "cache", batch_size=4,
                                          collate_fn=collate, progress=False)
    cached_batch = MultimodalCollator()([with_cached_logits(ListDataset(items), cache_dir)[i] for i in range(4)])
    assert cached_batch["teacher_present"].any(1).tolist() == [True, False, True, True]
    cached = DistillationTrainer(model=student, args=arguments(tmp_path, teacher_mode="cached",
                                                               cached_logits_path=str(cache_dir)))
    assert cached.compute_loss(student, cached_batch).item() == pytest.approx(online_loss.item(), rel=1e-4)


# ----------------------------------------------------------------------------------------- ensemble fitting
def test_full_dataset_fit_uses_each_teachers_present_samples(ensemble):
    items = marked_items(6, 4, audio=[True, False, True, True, False, True], layout=[True] * 5 + [False])
    loader = DataLoader(items, batch_size=4, collate_fn=collate)
    held_out = collect_held_out_logits(ensemble, loader)
    assert held_out.present is not None and held_out.present[:, 1].tolist() == [True, False, True, True, False, True]
    weights = fit_full_dataset_weights(ensemble, held_out)
    for head in HEADS:
        ce = per_teacher_cross_entropy(held_out.logits[head], held_out.labels[head])
        means = torch.stack([ce[held_out.present[:, t], t].mean() for t in range(3)])
        assert torch.allclose(weights[head], torch.softmax(-means, 0), atol=1e-5)
    temperatures = fit_calibration(ensemble, held_out)
    assert set(temperatures) == set(HEADS) and all(t > 0 for t in temperatures.values())
    ensemble.config.calibration_temperatures = None
    ensemble.config.weighting = "uniform"


def test_accumulator_teacher_never_present_gets_zero_weight():
    accumulator = FullDatasetWeightAccumulator(2)
    logits, labels = stacked_logits(5, batch=4, teachers=2), torch.tensor([0, 1, 2, 3])
    accumulator.update(logits, labels, torch.tensor([[True, False]] * 4))
    assert accumulator.count == 4 and accumulator.teacher_counts.tolist() == [4.0, 0.0]
    assert accumulator.compute().tolist() == [1.0, 0.0]


# ----------------------------------------------------------------------------------------------------- data
@pytest.fixture()
def epic_without_audio(tmp_path) -> Path:
    root = write_tiny_epic(tmp_path / "epic")
    (root / "P02" / "videos" / "P02_01.wav").unlink()  # one video without its audio source
    return root


def test_transform_marks_a_segment_without_audio_and_the_batch_carries_the_mask(epic_without_audio, tmp_path):
    log = tmp_path / "skipped.jsonl"
    ds = load_dataset("epic-kitchens-100", epic_without_audio, "train", ["rgb", "audio"], tmp_path / "cache",
                      skip_log_path=log, **SMALL)
    report = ds.mmkd_source_report
    assert report.count == 0 and report.tolerated_per_modality() == {"audio": {"videos": 1, "segments": 1}}
    assert len(ds) == 3  # kept, not dropped
    items = [ds[i] for i in range(3)]
    by_id = {item["segment_id"]: item for item in items}
    assert by_id["P02_01_0"]["modality_present"] == {"audio": False}
    assert by_id["P01_01_0"]["modality_present"] == {"audio": True}
    assert torch.equal(by_id["P02_01_0"]["audio_values"], torch.zeros(4, 1, 32, 32))
    assert by_id["P01_01_0"]["audio_values"].shape == (4, 1, 32, 32)
    batch = next(iter(DataLoader(ds, batch_size=3, collate_fn=MultimodalCollator())))
    assert batch["modality_present"]["audio"].tolist() == [i != "P02_01_0" for i in batch["segment_id"]]
    assert batch["audio_values"].shape == (3, 4, 1, 32, 32)
    skip = ds.mmkd_transform.skip_report()
    assert skip["count"] == 0 and skip["missing_modalities"] == {"audio": 1}
    assert skip["missing_modality_samples"][0]["sample_id"] == "P02_01_0"


def test_missing_detections_are_marked_and_strict_loads_still_refuse(epic_without_audio, tmp_path):
    (epic_without_audio / "P01" / "hand-objects" / "P01_01.pkl").unlink()
    ds = load_dataset("epic-kitchens-100", epic_without_audio, "train", ["rgb", "audio", "layout"],
                      tmp_path / "cache", **SMALL)
    item = next(ds[i] for i in range(3) if ds[i]["segment_id"] == "P01_01_0")
    assert item["modality_present"] == {"audio": True, "layout": False} and not item["layout_mask"].any()
    assert item["layout_boxes"].shape[:1] == (4,)
    assert ds.mmkd_transform.skip_report()["missing_modalities"] == {"layout": 1}
    # a single-modality load (training the audio teacher) keeps refusing missing files
    with pytest.raises(DataFormatError, match="audio: 1 video"):
        load_dataset("epic-kitchens-100", epic_without_audio, "train", ["audio"], tmp_path / "cache", **SMALL)
    # and so does a multimodal load told to tolerate nothing
    with pytest.raises(DataFormatError, match=r"1 of 3 segments lack their files.*audio: 1 video"):
        load_dataset("epic-kitchens-100", epic_without_audio, "train", ["rgb", "audio"], tmp_path / "cache",
                     tolerate_missing=(), **SMALL)
    # missing RGB still fails the load, and the message lists the tolerated gaps too
    shutil.rmtree(epic_without_audio / "P02" / "rgb_frames")
    with pytest.raises(DataFormatError, match=r"rgb: 1 video.*audio: 1 video.*tolerated"):
        load_dataset("epic-kitchens-100", epic_without_audio, "train", ["rgb", "audio"], tmp_path / "cache", **SMALL)
