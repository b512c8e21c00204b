"""DistillationTrainer / SupervisedTrainer on tiny real models and a tiny synthetic dataset."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch
from transformers import HfArgumentParser

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_ensemble import HEADS, make_batch, tiny_stlt, tiny_swin  # noqa: E402

from mmkd_hf import MultimodalTeacherEnsemble  # noqa: E402
from mmkd_hf.distillation import DistillationTrainingArguments, SupervisedTrainingArguments  # noqa: E402
from mmkd_hf.distillation.trainer import (  # noqa: E402
    DistillationTrainer,
    SupervisedTrainer,
    compute_multi_head_metrics,
)


class ListDataset(torch.utils.data.Dataset):
    def __init__(self, items):
        self.items = items

    def __len__(self):
        return len(self.items)

    def __getitem__(self, index):
        return self.items[index]


def make_items(num_items: int, seed: int = 0) -> list[dict]:
    batch = make_batch(num_items, seed)
    items = []
    for i in range(num_items):
        item = {k: v[i] for k, v in batch.items() if isinstance(v, torch.Tensor)}
        item["labels"] = {head: batch["labels"][head][i] for head in batch["labels"]}
        item["segment_id"] = batch["segment_id"][i]
        items.append(item)
    return items


def collate(items: list[dict]) -> dict:
    batch = {}
    for key, value in items[0].items():
        if isinstance(value, torch.Tensor):
            batch[key] = torch.stack([item[key] for item in items])
        elif isinstance(value, dict):
            batch[key] = {name: torch.stack([torch.as_tensor(item[key][name]) for item in items]) for name in value}
        else:
            batch[key] = [item[key] for item in items]
    return batch


def record_student_kwargs(student) -> list[set]:
    seen: list[set] = []

    def hook(module, args, kwargs):
        seen.append(set(kwargs))

    student.register_forward_pre_hook(hook, with_kwargs=True)
    return seen


def arguments(tmp_path, cls=DistillationTrainingArguments, **overrides):
    values = dict(
        output_dir=str(tmp_path / "run"), per_device_train_batch_size=4, per_device_eval_batch_size=4, max_steps=4,
        logging_steps=2, save_strategy="no", report_to="none", use_cpu=True, learning_rate=5e-3, warmup_steps=0,
        dataloader_num_workers=0, seed=0,
    )
    values.update(overrides)
    return cls(**values)


@pytest.fixture(scope="module")
def ensemble():
    teachers = {"rgb": tiny_swin("rgb", seed=1), "flow": tiny_swin("flow", seed=2), "layout": tiny_stlt(seed=4)}
    return MultimodalTeacherEnsemble.from_teachers(teachers)


def test_online_distillation_trains_student_only(tmp_path, ensemble):
    student = tiny_swin("rgb", seed=9)
    seen = record_student_kwargs(student)
    teacher_before = {k: v.clone() for k, v in ensemble.state_dict().items()}
    student_before = {k: v.clone() for k, v in student.state_dict().items()}
    trainer = DistillationTrainer(
        model=student, args=arguments(tmp_path, ce_weight=0.5, temperature=2.0), teacher=ensemble,
        # one batch of 4 seen at every step: the KD loss on it must go down
        train_dataset=ListDataset(make_items(4)), eval_dataset=ListDataset(make_items(8, seed=1)),
        data_collator=collate, compute_metrics=compute_multi_head_metrics,
    )
    assert not isinstance(trainer.teacher, torch.nn.parallel.DistributedDataParallel)
    result = trainer.train()
    assert torch.isfinite(torch.tensor(result.training_loss))

    train_logs = [entry for entry in trainer.state.log_history if "loss" in entry]
    assert len(train_logs) == 2
    for entry in train_logs:
        assert {"kd_loss", "ce_loss", "agreement", "agreement_verb", "agreement_noun"} <= set(entry)
        assert entry["kd_loss"] >= 0 and 0 <= entry["agreement"] <= 1
    assert train_logs[-1]["kd_loss"] < train_logs[0]["kd_loss"]

    assert all(torch.equal(teacher_before[k], v) for k, v in ensemble.state_dict().items())
    assert not any(p.requires_grad for p in ensemble.parameters()) and not ensemble.training
    assert any(not torch.equal(student_before[k], v) for k, v in student.state_dict().items())
    assert seen and all(kwargs == {"pixel_values"} for kwargs in seen)  # never flow/layout/labels/ids

    metrics = trainer.evaluate()
    assert {"eval_loss", "eval_top1_verb", "eval_top1_noun", "eval_top1_action"} <= set(metrics)
    assert all(kwargs == {"pixel_values"} for kwargs in seen)


def test_cached_mode_matches_online_loss(tmp_path, ensemble):
    student = tiny_swin("rgb", seed=9).eval()
    batch = collate(make_items(4, seed=3))
    online = DistillationTrainer(model=student, args=arguments(tmp_path, temperature=3.0), teacher=ensemble)
    loss_online = online.compute_loss(student, batch, num_items_in_batch=torch.tensor(4))
    with torch.no_grad():
        cached_batch = dict(batch, teacher_logits=ensemble(**batch).logits)
    cached_args = arguments(tmp_path, temperature=3.0, teacher_mode="cached", cached_logits_path=str(tmp_path))
    cached = DistillationTrainer(model=student, args=cached_args)
    assert cached.teacher is None
    loss_cached = cached.compute_loss(student, cached_batch, num_items_in_batch=None)
    assert loss_cached.item() == pytest.approx(loss_online.item(), rel=1e-5)
    with pytest.raises(ValueError, match="teacher_logits"):
        cached.compute_loss(student, batch)


def test_nan_teacher_logits_raise(tmp_path, ensemble):
    student = tiny_swin("rgb", seed=9)
    args = arguments(tmp_path, teacher_mode="cached", cached_logits_path=str(tmp_path))
    trainer = DistillationTrainer(model=student, args=args)
    batch = collate(make_items(2))
    batch["teacher_logits"] = {"verb": torch.randn(2, 5), "noun": torch.full((2, 7), float("nan"))}
    with pytest.raises(ValueError, match="noun"):
        trainer.compute_loss(student, batch)


def test_online_mode_requires_teacher(tmp_path):
    with pytest.raises(ValueError, match="teacher"):
        DistillationTrainer(model=tiny_swin("rgb"), args=arguments(tmp_path))


def test_supervised_trainer_feeds_flow_as_pixel_values(tmp_path):
    flow_teacher = tiny_swin("flow", seed=5)
    seen = []
    flow_teacher.register_forward_pre_hook(
        lambda module, args, kwargs: seen.append((set(kwargs), kwargs["pixel_values"].shape[2])), with_kwargs=True
    )
    trainer = SupervisedTrainer(
        model=flow_teacher, args=arguments(tmp_path, cls=SupervisedTrainingArguments, max_steps=2),
        train_dataset=ListDataset(make_items(8)), data_collator=collate,
    )
    before = {k: v.clone() for k, v in flow_teacher.state_dict().items()}
    trainer.train()
    assert seen and all(keys == {"pixel_values"} and channels == 2 for keys, channels in seen)
    assert any(not torch.equal(before[k], v) for k, v in flow_teacher.state_dict().items())


def test_arguments_cli_help_and_parse(tmp_path):
    parser = HfArgumentParser(DistillationTrainingArguments)
    help_text = parser.format_help()
    for option in ("--temperature", "--kd_weight", "--ce_weight", "--weighting_scheme", "--weights_temperature",
                   "--teacher_source", "--teacher_paths", "--combine_space", "--teacher_mode", "--cached_logits_path"):
        assert option in help_text
    (args,) = parser.parse_args_into_dataclasses(
        ["--output_dir", str(tmp_path), "--temperature", "4", "--weighting_scheme", "full-dataset",
         "--teacher_paths", "rgb=a", "flow=b", "--ce_weight", "0.5"]
    )
    assert (args.temperature, args.weighting_scheme, args.teacher_paths, args.ce_weight) == (
        4.0, "full-dataset", ["rgb=a", "flow=b"], 0.5)
    assert (args.learning_rate, args.weight_decay, args.max_grad_norm, args.kd_weight) == (1e-4, 0.02, 5.0, 1.0)
    assert args.remove_unused_columns is False and args.label_names == ["labels"]
    with pytest.raises(ValueError, match="cached_logits_path"):
        DistillationTrainingArguments(output_dir=str(tmp_path), teacher_mode="cached")
    with pytest.raises(ValueError, match="weighting_scheme"):
        DistillationTrainingArguments(output_dir=str(tmp_path), weighting_scheme="best")
    with pytest.raises(ValueError, match="modality=path"):
        DistillationTrainingArguments(output_dir=str(tmp_path), teacher_paths=["rgb"])
