"""Augmentation on the device (``train.py --augment_on_device``): the loader decodes and cuts the source box, the batch
is resized and colour-jittered by torch ops on the device. Checked here with the CPU as the device: same random
parameters and the same pixels as the loader-side path (at most 1/255 apart), in the items, the DataLoader batches and
the trainers' inputs."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torchvision.transforms.v2 import functional as VF

sys.path.insert(0, str(Path(__file__).resolve().parent))
from conftest import load_benchmark  # noqa: E402
from test_ensemble import FRAMES, SIZE, make_batch, tiny_swin  # noqa: E402

from mmkd_hf import MultimodalTeacherEnsemble  # noqa: E402
from mmkd_hf.data import AugmentationConfig, MultimodalCollator, load_dataset, sample_augmentation  # noqa: E402
from mmkd_hf.data.augmentation import apply_to_frames  # noqa: E402
from mmkd_hf.data.device_augmentation import (  # noqa: E402
    DEFERRED_KEY,
    apply_device_augmentation,
    augmentation_on_device,
    collate_deferred,
    defer_item,
    resize_boxes_uint8,
)
from mmkd_hf.distillation import DistillationTrainingArguments, SupervisedTrainingArguments  # noqa: E402
from mmkd_hf.distillation.trainer import DistillationTrainer, SupervisedTrainer  # noqa: E402
from mmkd_hf.pipeline.arguments import PipelineConfig  # noqa: E402
from mmkd_hf.pipeline.data_adapter import EpochSeededDataset, find_transforms  # noqa: E402


def _smooth(rng: np.random.Generator, t: int, c: int, h: int, w: int) -> torch.Tensor:
    """Natural-looking uint8 frames [T, C, H, W]: bicubic-upsampled noise plus fine grain."""
    low = torch.from_numpy(rng.integers(0, 256, (t, c, h // 8 + 2, w // 8 + 2)).astype(np.float32))
    img = torch.nn.functional.interpolate(low, size=(h, w), mode="bicubic")
    return (img + torch.from_numpy(rng.normal(0, 12, img.shape).astype(np.float32))).clamp(0, 255).to(torch.uint8)


def _compare(got: torch.Tensor, want: torch.Tensor) -> tuple[int, int]:
    diff = (got.to(torch.int32) - want.to(torch.int32)).abs()
    return int(diff.max()), int((diff > 0).sum())


@pytest.mark.parametrize("box", [(200, 201), (179, 180), (256, 256), (256, 292), (300, 410), (224, 190)])
def test_resize_is_torchvision_uint8_resize_bit_for_bit(box):
    """Up- and downscaling, square or not: the integer emulation equals the CPU uint8 antialiased kernel."""
    rng = np.random.default_rng(sum(box))
    frames = _smooth(rng, 2, 3, 300, 410).contiguous(memory_format=torch.channels_last)
    h, w = box
    want = VF.resize(frames[:, :, :h, :w], [224, 224], antialias=True)
    got = resize_boxes_uint8(frames[None], torch.tensor([[h, w]]), (224, 224))[0]
    assert torch.equal(got, want)
    flipped = resize_boxes_uint8(frames[None], torch.tensor([[h, w]]), (224, 224), flip=torch.tensor([True]))[0]
    assert torch.equal(flipped, want.flip(-1))


def test_device_path_equals_the_loader_path_on_random_items():
    """Many random draws (resize scale, crop, flip, jitter order and factors) on items of different frame sizes in one
    batch, RGB and half-resolution flow: the device path is within 1/255 of ``apply_to_frames`` everywhere."""
    rng = np.random.default_rng(0)
    worst, differing, total = 0, 0, 0
    for trial in range(24):
        crop = int(rng.choice([32, 48, 56]))
        cfg = AugmentationConfig(crop_size=crop, horizontal_flip=True, flip_probability=0.5)
        entries, want_rgb, want_flow = [], [], []
        for _ in range(3):
            h, w = [(48, 86), (64, 64), (80, 60), (50, 90)][int(rng.integers(0, 4))]
            rgb = _smooth(rng, 3, 3, h, w).contiguous(memory_format=torch.channels_last)  # as decoded
            flow = _smooth(rng, 3, 2, h // 2, w // 2)
            params = sample_augmentation(rng, (h, w), cfg, True)
            want_rgb.append(apply_to_frames(rgb, params, "rgb", dtype=torch.uint8)[0])
            want_flow.append(apply_to_frames(flow, params, "flow", dtype=torch.uint8)[0])
            entries.append(defer_item({"pixel_values": (rgb, "rgb"), "flow_values": (flow, "flow")}, params, False))
        batch = apply_device_augmentation({DEFERRED_KEY: collate_deferred(entries), "segment_id": ["a", "b", "c"]})
        assert DEFERRED_KEY not in batch and batch["segment_id"] == ["a", "b", "c"]
        for key, want in (("pixel_values", want_rgb), ("flow_values", want_flow)):
            assert batch[key].dtype == torch.uint8 and batch[key].shape == torch.stack(want).shape
            most, count = _compare(batch[key], torch.stack(want))
            worst, differing, total = max(worst, most), differing + count, total + batch[key].numel()
    assert worst <= 1
    assert differing <= 1e-4 * total  # in practice (almost) bit-identical


def test_float_output_is_uint8_over_255_and_no_jitter_passes_through():
    rng = np.random.default_rng(1)
    cfg = AugmentationConfig(crop_size=32, color_jitter=False)
    rgb = _smooth(rng, 2, 3, 48, 64).contiguous(memory_format=torch.channels_last)
    params = sample_augmentation(rng, (48, 64), cfg, True)
    assert params.jitter is None
    batch = apply_device_augmentation({DEFERRED_KEY: collate_deferred([defer_item({"pixel_values": (rgb, "rgb")},
                                                                                   params, True)])})
    want = apply_to_frames(rgb, params, "rgb", dtype=torch.float32)
    assert batch["pixel_values"].dtype == torch.float32 and torch.equal(batch["pixel_values"], want)


@pytest.mark.parametrize("frames_dtype", ["uint8", "float32"])
def test_dataset_batches_same_seed_same_crop_flip_and_jitter(tiny_epic, data_cache, frames_dtype):
    """Through ``load_dataset`` + ``EpochSeededDataset`` + the collator in a DataLoader: with the same seed, the
    deferred batches become the loader-side batches (frames within 1/255, boxes and labels equal)."""
    ds = load_dataset("epic-kitchens-100", tiny_epic, "train", ["rgb", "flow", "layout"], data_cache, num_frames=4,
                      crop_size=32, train=True, seed=5, frames_dtype=frames_dtype)

    def batches(on_device: bool) -> list[dict]:
        seeded = EpochSeededDataset(ds, seed=11)
        seeded.set_epoch(1)
        loader = torch.utils.data.DataLoader(seeded, batch_size=3, collate_fn=MultimodalCollator())
        with augmentation_on_device(find_transforms(ds), on_device):
            raw = list(loader)
        assert all((DEFERRED_KEY in batch) == on_device and ("pixel_values" in batch) != on_device for batch in raw)
        return [apply_device_augmentation(batch) for batch in raw]

    loader_side, device_side = batches(False), batches(True)
    assert not find_transforms(ds)[0].augment_on_device  # restored after the block
    for want, got in zip(loader_side, device_side):
        assert set(got) == set(want)
        for key in ("pixel_values", "flow_values"):
            assert got[key].dtype == want[key].dtype and got[key].shape == want[key].shape
            assert (got[key].double() - want[key].double()).abs().max() * (255 if frames_dtype == "float32" else 1) \
                <= 1 + 1e-6
        assert torch.equal(got["layout_boxes"], want["layout_boxes"])  # the same crop and flip moved the boxes
        assert all(torch.equal(got["labels"][h], want["labels"][h]) for h in want["labels"])
    # another epoch draws other augmentations: the comparison above is not trivially true
    other = EpochSeededDataset(ds, seed=11)
    other.set_epoch(2)
    first = MultimodalCollator()([other[i] for i in range(3)])
    assert not torch.equal(first["pixel_values"], loader_side[0]["pixel_values"])


def test_evaluation_items_are_never_deferred(tiny_epic, data_cache):
    ds = load_dataset("epic-kitchens-100", tiny_epic, "validation", ["rgb"], data_cache, num_frames=4, crop_size=32)
    with augmentation_on_device(find_transforms(ds)):
        item = ds[0]
    assert DEFERRED_KEY not in item and item["pixel_values"].shape == (4, 3, 32, 32)


def _deferred_batch(seed: int = 0, size: int = SIZE) -> dict:
    """A batch of 2 deferred items (RGB + flow) with make_batch's labels."""
    rng = np.random.default_rng(seed)
    cfg = AugmentationConfig(crop_size=size, horizontal_flip=True)
    entries = []
    for _ in range(2):
        rgb = _smooth(rng, FRAMES, 3, 40, 56).contiguous(memory_format=torch.channels_last)
        flow = _smooth(rng, FRAMES, 2, 20, 28)
        params = sample_augmentation(rng, (40, 56), cfg, True)
        entries.append(defer_item({"pixel_values": (rgb, "rgb"), "flow_values": (flow, "flow")}, params, False))
    labels = make_batch(2, seed)["labels"]
    return {DEFERRED_KEY: collate_deferred(entries), "labels": labels, "segment_id": ["x", "y"]}


def _trainer_args(tmp_path, cls, **extra):
    return cls(output_dir=str(tmp_path / "run"), per_device_train_batch_size=2, max_steps=1, save_strategy="no",
               report_to="none", use_cpu=True, **extra)


def test_trainers_finish_the_batch_and_teachers_see_the_students_clip(tmp_path):
    batch = _deferred_batch()
    want = apply_device_augmentation(batch)
    student = tiny_swin("rgb", seed=9)
    teachers = {"rgb": tiny_swin("rgb", seed=1), "flow": tiny_swin("flow", seed=2)}
    ensemble = MultimodalTeacherEnsemble.from_teachers(teachers)
    seen: dict[str, list[torch.Tensor]] = {"student": [], "rgb": [], "flow": []}

    def recorder(name):
        def hook(module, args, kwargs):
            seen[name].append(kwargs["pixel_values"])
        return hook

    trainer = DistillationTrainer(model=student, teacher=ensemble,
                                  args=_trainer_args(tmp_path, DistillationTrainingArguments))
    student.register_forward_pre_hook(recorder("student"), with_kwargs=True)
    for name, teacher in trainer.teacher.teachers.items():
        teacher.register_forward_pre_hook(recorder(name), with_kwargs=True)
    prepared = trainer._prepare_inputs(batch)
    assert DEFERRED_KEY not in prepared
    assert torch.equal(prepared["pixel_values"], want["pixel_values"])
    assert torch.equal(prepared["flow_values"], want["flow_values"])
    loss = trainer.compute_loss(student, prepared)
    assert torch.isfinite(loss)
    assert torch.equal(seen["student"][0], want["pixel_values"]) and torch.equal(seen["rgb"][0], want["pixel_values"])
    assert torch.equal(seen["flow"][0], want["flow_values"])
    assert trainer.floating_point_ops(batch) == trainer.floating_point_ops(dict(want))  # counted on the model's clips

    supervised = SupervisedTrainer(model=tiny_swin("rgb", seed=3),
                                   args=_trainer_args(tmp_path, SupervisedTrainingArguments))
    assert torch.equal(supervised._prepare_inputs(_deferred_batch())["pixel_values"], want["pixel_values"])
    plain = make_batch(2)
    assert torch.equal(supervised._prepare_inputs(plain)["pixel_values"], plain["pixel_values"])  # nothing to do


def test_option_is_checked_and_not_part_of_the_run_identity():
    base = PipelineConfig()
    assert base.augment_on_device == "auto"
    assert PipelineConfig(augment_on_device="on").identity_hash() == base.identity_hash()
    with pytest.raises(ValueError, match="augment_on_device"):
        PipelineConfig(augment_on_device="gpu")


def test_train_py_on_and_off_train_the_same_teacher(tmp_path, monkeypatch):
    """``train.py --augment_on_device on`` (the CPU as the device) trains the RGB teacher to the weights that the
    loader-side path (``off``, the CPU default) gives: same clips, same steps."""
    from safetensors.torch import load_file

    import mmkd_hf.distillation.trainer as trainer_module
    from mmkd_hf.pipeline import MINI_KITCHENS_SCALES, main
    from mmkd_hf.synthetic import ensure_mini_kitchens

    deferred_batches = []

    def counting(batch):
        deferred_batches.append(DEFERRED_KEY in batch)
        return apply_device_augmentation(batch)

    monkeypatch.setattr(trainer_module, "apply_device_augmentation", counting)
    data = ensure_mini_kitchens(tmp_path / "mini", seed=0, **MINI_KITCHENS_SCALES["tiny"])
    common = ["--preset", "test", "--mini_kitchens_scale", "tiny", "--teacher_batch_size", "4", "--report_to", "none",
              "--write_model_cards", "false", "--data_dir", str(data), "--output_dir", str(tmp_path), "--teachers",
              "rgb", "--max_steps", "2", "--stage", "teachers", "--parallel_units", "1"]  # in this process
    weights = {}
    for setting in ("off", "on"):
        deferred_batches.clear()
        assert main(common + ["--run_name", setting, "--augment_on_device", setting]) == 0
        weights[setting] = load_file(tmp_path / setting / "teacher-rgb" / "model.safetensors")
        assert len(deferred_batches) == 2 and all(deferred_batches) == (setting == "on")  # the 2 training steps
    for key, value in weights["off"].items():
        torch.testing.assert_close(weights["on"][key], value, rtol=1e-4, atol=1e-5, msg=key)


def test_throughput_benchmark_times_both_loaders(tiny_epic, data_cache):
    throughput = load_benchmark("data_throughput")
    for augmentation in ("loader", "device"):
        rate = throughput.pipeline(tiny_epic, data_cache, ["rgb", "flow"], True, 0, 3, 1, "uint8", augmentation)
        assert rate > 0
