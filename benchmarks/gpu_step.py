"""What a training step costs: the student's step rate (supervised, online KD, cached KD) in fp32 and bf16, peak
memory, and the data loader's RGB training clips/s per worker on frames in the official EPIC-KITCHENS-100 layout.

Presets: ``swin-t`` (the paper's sizes: Video Swin-T student and RGB/flow/audio teachers at 16x224x224, the STLT
base layout teacher; the default on a CUDA GPU) and ``tiny`` (the mini-kitchens models at 8x48x48; the default on
CPU). The four teachers form a ``MultimodalTeacherEnsemble`` with random weights. Each step is the trainer's
``compute_loss`` + backward + gradient clipping + AdamW step on one batch already on the device; bf16 runs the
student under ``torch.autocast`` and the teachers cast to bf16 (what ``train.py --mixed_precision bf16`` does),
losses in float32. Median over ``--steps`` timed steps after ``--warmup``. Peak memory: ``max_memory_allocated`` on
a GPU, the growth of the resident set size on CPU.

The loader: ``mmkd_hf.data.load_dataset("epic-kitchens-100", ...)`` on a small tree written here (``annotations/``
beside ``EPIC-KITCHENS/<P>/rgb_frames``, 256x456 JPEGs at ``swin-t``), training mode, uint8 clips, through a
``DataLoader`` with the collator, for each of ``--workers``, both ways: the items resize and colour-jitter
(``loader_side_clips_per_s``, CPU training's path) or only decode and cut the source box, leaving resize and jitter to
the device (``device_path_clips_per_s``, ``train.py --augment_on_device``, the default on CUDA); ``clips_per_s`` is the
path ``train.py`` takes on this machine. The device path's own cost, ``apply_device_augmentation`` on one batch on the
device, is timed too. The ratio loader / bf16 online-KD step rate (loader at the largest worker count; the step plus
the device augmentation when that path is used) should be >= 1.5 on a 1-GPU, 16-core machine: the step then never
waits for data.

    python benchmarks/gpu_step.py                       # swin-t on a GPU (a few minutes), tiny on CPU (< 1 min)
    python benchmarks/gpu_step.py --preset tiny --steps 3

Writes ``benchmarks/results/gpu_step_<device>_<preset>.json`` (e.g. ``gpu_step_cpu_tiny.json``).
"""

from __future__ import annotations

import argparse
import copy
import csv
import gc
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from accelerate.utils import send_to_device
from torchvision.io import encode_jpeg

import mmkd_hf  # noqa: F401  (registers the models)
from mmkd_hf import (
    MultimodalTeacherEnsemble,
    STLTConfig,
    STLTForVideoClassification,
    VideoSwinConfig,
    VideoSwinForVideoClassification,
)
from mmkd_hf.data import MultimodalCollator, load_dataset
from mmkd_hf.data.device_augmentation import apply_device_augmentation, augmentation_on_device
from mmkd_hf.data.memory import dataloader_worker_init
from mmkd_hf.distillation import (
    DistillationTrainer,
    DistillationTrainingArguments,
    SupervisedTrainer,
    SupervisedTrainingArguments,
)
from mmkd_hf.distillation.presets import get_preset, stlt_config_kwargs, video_swin_config_kwargs
from mmkd_hf.utils import atomic_write_json

HEADS = {"verb": 97, "noun": 300}  # EPIC-KITCHENS-100
PRESETS = {"swin-t": "base", "tiny": "tiny"}  # benchmark preset -> model preset of the package
FRAME_SIZE = {"swin-t": (256, 456), "tiny": (64, 114)}  # source JPEG (H, W): EPIC's for swin-t
MODES = ("supervised", "online KD", "cached KD")
MAX_BOXES = 4


def build_models(preset: str, frames: int) -> tuple[VideoSwinForVideoClassification, MultimodalTeacherEnsemble]:
    model_preset = get_preset(PRESETS[preset])
    student = VideoSwinForVideoClassification(VideoSwinConfig(
        **video_swin_config_kwargs(model_preset, "student", "rgb", HEADS)))
    teachers = {modality: VideoSwinForVideoClassification(VideoSwinConfig(
        **video_swin_config_kwargs(model_preset, "teacher", modality, HEADS))) for modality in ("rgb", "flow", "audio")}
    teachers["layout"] = STLTForVideoClassification(STLTConfig(
        **{**stlt_config_kwargs(model_preset, HEADS, num_frames=frames), "max_boxes": MAX_BOXES}))
    return student, MultimodalTeacherEnsemble.from_teachers(teachers)


def make_batch(batch_size: int, frames: int, size: int, device: torch.device) -> dict:
    """One collated batch of every modality, uint8 frames as the loader delivers them, on ``device``."""
    b, t, n = batch_size, frames, MAX_BOXES
    batch = {
        "pixel_values": torch.randint(0, 256, (b, t, 3, size, size), dtype=torch.uint8),
        "flow_values": torch.randint(0, 256, (b, t, 2, size, size), dtype=torch.uint8),
        "audio_values": torch.randn(b, t, 1, size, size),
        "layout_boxes": torch.rand(b, t, n, 4),
        "layout_categories": torch.randint(1, 3, (b, t, n)),
        "layout_scores": torch.rand(b, t, n),
        "layout_sides": torch.randint(0, 3, (b, t, n)),
        "layout_states": torch.randint(0, 6, (b, t, n)),
        "layout_mask": torch.ones(b, t, n, dtype=torch.bool),
        "labels": {head: torch.randint(0, c, (b,)) for head, c in HEADS.items()},
    }
    return send_to_device(batch, device)


def resident_mb() -> float:
    """Current resident set size of this process in MiB (Linux ``/proc``; 0 elsewhere)."""
    try:
        with open("/proc/self/statm") as handle:
            return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (OSError, ValueError):
        return 0.0


def time_steps(trainer, student, batch, device: torch.device, bf16: bool, warmup: int, steps: int) -> dict:
    """Median step time and peak memory of ``steps`` training steps (after ``warmup``)."""
    optimizer = torch.optim.AdamW(student.parameters(), lr=1e-5)
    student.train()
    cuda = device.type == "cuda"
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    rss_before = resident_mb()
    times = []
    for index in range(warmup + steps):
        start = time.perf_counter()
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            loss = trainer.compute_loss(student, batch)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(student.parameters(), 5.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if cuda:
            torch.cuda.synchronize()
        if index >= warmup:
            times.append(time.perf_counter() - start)
    peak = torch.cuda.max_memory_allocated() / 2**20 if cuda else resident_mb() - rss_before
    return {"median_step_s": statistics.median(times), "peak_memory_mb": round(peak, 1)}


def write_official_layout(root: Path, frame_size: tuple[int, int], videos: int = 2, frames: int = 64) -> None:
    """A small EPIC-KITCHENS-100 download: ``annotations/`` CSVs beside ``EPIC-KITCHENS/<P>/rgb_frames/<video>``."""
    rng = np.random.default_rng(0)
    height, width = frame_size
    annotations = root / "annotations"
    annotations.mkdir(parents=True)
    segments = []
    for v in range(videos):
        participant, video = f"P{v + 1:02d}", f"P{v + 1:02d}_01"
        folder = root / "EPIC-KITCHENS" / participant / "rgb_frames" / video
        folder.mkdir(parents=True)
        base = torch.from_numpy(rng.integers(0, 255, size=(3, height // 8, width // 8)).astype(np.float32))
        base = torch.nn.functional.interpolate(base[None], size=(height, width), mode="bilinear")[0].to(torch.uint8)
        for i in range(1, frames + 1):
            image = torch.roll(base, shifts=i, dims=2)
            (folder / f"frame_{i:010d}.jpg").write_bytes(encode_jpeg(image, quality=90).numpy().tobytes())
        segments += [(f"{video}_{s}", video, s + 1, s + frames // 2) for s in range(0, frames // 2, frames // 8)]

    def write(name: str, rows: list[list]) -> None:
        with open(annotations / name, "w", newline="") as handle:
            csv.writer(handle).writerows(rows)

    write("EPIC_100_verb_classes.csv", [["id", "key"], [0, "take"]])
    write("EPIC_100_noun_classes.csv", [["id", "key"], [0, "cup"]])
    write("EPIC_100_video_info.csv", [["video_id", "duration", "fps", "resolution"]]
          + [[f"P{v + 1:02d}_01", frames / 50, 50.0, f"{width}x{height}"] for v in range(videos)])
    write("EPIC_100_train.csv", [["narration_id", "participant_id", "video_id", "start_timestamp", "stop_timestamp",
                                  "start_frame", "stop_frame", "verb_class", "noun_class"]]
          + [[sid, video[:3], video, "00:00:00.00", "00:00:01.00", start, stop, 0, 0]
             for sid, video, start, stop in segments])


def training_dataset(root: Path, frames: int, size: int):
    """The RGB training split of the official-layout tree under ``root``, uint8 clips."""
    return load_dataset("epic-kitchens-100", data_dir=str(root / "download"), split="train", modalities=("rgb",),
                        cache_dir=str(root / "cache"), train=True, num_frames=frames, crop_size=size,
                        sampler="uniform", frames_dtype="uint8")


def loader_rate(root: Path, frames: int, size: int, workers: int, clips: int, batch_size: int,
                on_device: bool = False) -> float:
    """RGB training clips/s of the DataLoader (best of two epochs after a warm-up epoch); ``on_device``: the items
    decode and cut only (augmentation on the device, not timed here)."""
    dataset = training_dataset(root, frames, size)
    subset = torch.utils.data.Subset(dataset, [i % len(dataset) for i in range(clips)])
    loader = torch.utils.data.DataLoader(subset, batch_size=batch_size, num_workers=workers,
                                         collate_fn=MultimodalCollator(), persistent_workers=workers > 0,
                                         pin_memory=torch.cuda.is_available(),
                                         worker_init_fn=dataloader_worker_init if workers else None)
    best = 0.0
    with augmentation_on_device([dataset.mmkd_transform], on_device):  # the workers start inside the block
        for epoch in range(3):
            count, start = 0, time.perf_counter()
            for batch in loader:
                count += len(batch["segment_id"])
            if epoch:
                best = max(best, count / (time.perf_counter() - start))
    del loader
    return best


def device_augmentation_seconds(root: Path, frames: int, size: int, batch_size: int, device: torch.device,
                                repeats: int) -> float:
    """Median seconds of ``apply_device_augmentation`` (resize + colour jitter) on one deferred RGB batch already
    on ``device``."""
    dataset = training_dataset(root, frames, size)
    with augmentation_on_device([dataset.mmkd_transform]):
        items = [dataset[i % len(dataset)] for i in range(batch_size)]
    batch = send_to_device(MultimodalCollator()(items), device)
    times = []
    for _ in range(repeats + 1):
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        apply_device_augmentation(batch)
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return statistics.median(times[1:])


def load_average() -> str:
    try:
        return " ".join(f"{value:.2f}" for value in os.getloadavg())
    except OSError:
        return "n/a"


def main(argv=None) -> int:
    cuda = torch.cuda.is_available()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", choices=sorted(PRESETS), default="swin-t" if cuda else "tiny")
    parser.add_argument("--batch_size", type=int, default=None, help="student batch (default: 8 swin-t, 4 tiny)")
    parser.add_argument("--steps", type=int, default=10, help="timed steps per mode and precision (median)")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps first")
    parser.add_argument("--precisions", nargs="+", choices=["fp32", "bf16"], default=["fp32", "bf16"])
    parser.add_argument("--workers", type=int, nargs="+", default=None,
                        help="loader worker counts (default: 0 and min(16, CPU cores) - 1 when that is > 0)")
    parser.add_argument("--loader_clips", type=int, default=None, help="clips per loader epoch (default 64 / 16)")
    parser.add_argument("--output", default=None,
                        help="JSON file (default benchmarks/results/gpu_step_<device>_<preset>.json)")
    args = parser.parse_args(argv)
    device = torch.device("cuda" if cuda else "cpu")
    batch_size = args.batch_size or (8 if args.preset == "swin-t" else 4)
    model_preset = get_preset(PRESETS[args.preset])
    frames, size = model_preset.num_frames, model_preset.image_size
    cores = os.cpu_count() or 1
    workers = args.workers if args.workers is not None else sorted({0, max(0, min(16, cores) - 1)})
    loader_clips = args.loader_clips or (64 if args.preset == "swin-t" else 16)
    device_name = torch.cuda.get_device_name(0) if cuda else f"{platform.processor() or platform.machine()} CPU"
    output = args.output or str(Path(__file__).resolve().parent / "results"
                                / f"gpu_step_{'cuda' if cuda else 'cpu'}_{args.preset}.json")
    started = time.perf_counter()

    torch.manual_seed(0)
    student, ensemble = build_models(args.preset, frames)
    student.to(device)
    batch = make_batch(batch_size, frames, size, device)
    with torch.no_grad():
        cached_batch = dict(batch, teacher_logits=ensemble.to(device)(**batch).logits)
    ensemble.cpu()  # each online-KD trainer places its own copy; peak memory counts only what the mode holds
    tmp = tempfile.mkdtemp()
    rows = []
    for precision in args.precisions:
        bf16 = precision == "bf16"
        common = dict(output_dir=tmp, report_to="none", use_cpu=not cuda, bf16=bf16,
                      per_device_train_batch_size=batch_size)
        trainers = {
            "supervised": SupervisedTrainer(model=student, args=SupervisedTrainingArguments(**common)),
            # the trainer casts its teacher to bf16 under bf16 mixed precision: give each precision its own copy
            "online KD": DistillationTrainer(model=student, args=DistillationTrainingArguments(**common),
                                             teacher=copy.deepcopy(ensemble)),
            "cached KD": DistillationTrainer(model=student, args=DistillationTrainingArguments(
                **common, teacher_mode="cached", cached_logits_path=tmp)),
        }
        for mode in MODES:
            measured = time_steps(trainers[mode], student, cached_batch if mode == "cached KD" else batch, device,
                                  bf16, args.warmup, args.steps)
            step = measured["median_step_s"]
            rows.append({"mode": mode, "precision": precision, "median_step_s": round(step, 5),
                         "steps_per_s": round(1 / step, 3), "clips_per_s": round(batch_size / step, 2),
                         "peak_memory_mb": measured["peak_memory_mb"]})
            del trainers[mode]
            gc.collect()
            if cuda:
                torch.cuda.empty_cache()

    with tempfile.TemporaryDirectory() as data_dir:
        write_official_layout(Path(data_dir) / "download", FRAME_SIZE[args.preset])
        loader = []
        for w in workers:
            rates = {path: loader_rate(Path(data_dir), frames, size, w, loader_clips, batch_size, path == "device")
                     for path in ("loader", "device")}
            rate = rates["device" if cuda else "loader"]  # what train.py --augment_on_device auto does here
            loader.append({"workers": w, "clips_per_s": round(rate, 2),
                           "clips_per_s_per_worker": round(rate / max(1, w), 2),
                           "augmentation": "device" if cuda else "loader",
                           "loader_side_clips_per_s": round(rates["loader"], 2),
                           "device_path_clips_per_s": round(rates["device"], 2)})
        augment_s = device_augmentation_seconds(Path(data_dir), frames, size, batch_size, device, max(3, args.steps))

    memory = "peak allocated (MiB)" if cuda else "RSS growth (MiB)"
    print(f"device: {device_name}; preset {args.preset} ({frames}x{size}x{size}, batch {batch_size}); "
          f"load average {load_average()}\n")
    print(f"| mode | precision | steps/s | clips/s | {memory} |\n|---|---|---:|---:|---:|")
    for row in rows:
        print(f"| {row['mode']} | {row['precision']} | {row['steps_per_s']:.2f} | {row['clips_per_s']:.1f} | "
              f"{row['peak_memory_mb']:.0f} |")
    print("\n| loader workers | RGB training clips/s, items augment | decode + cut only (augmentation on the device) "
          "|\n|---:|---:|---:|")
    for entry in loader:
        print(f"| {entry['workers']} | {entry['loader_side_clips_per_s']:.1f} | "
              f"{entry['device_path_clips_per_s']:.1f} |")
    print(f"\naugmentation on the device (resize + colour jitter of one batch of {batch_size}): "
          f"{augment_s * 1e3:.1f} ms on {device.type}")
    online = {row["precision"]: row for row in rows if row["mode"] == "online KD"}
    reference = online.get("bf16") or next(iter(online.values()))
    default_loader = loader[-1]
    step_s = reference["median_step_s"] + (augment_s if default_loader["augmentation"] == "device" else 0.0)
    ratio = default_loader["clips_per_s"] / (batch_size / step_s)
    print(f"\nloader ({default_loader['workers']} workers, augmentation: {default_loader['augmentation']}) / "
          f"{reference['precision']} online-KD step: {ratio:.2f}x (target >= 1.5 on a 1-GPU, 16-core machine)")
    elapsed = time.perf_counter() - started
    result = {
        "benchmark": "gpu_step",
        "setup": {"preset": args.preset, "model_preset": PRESETS[args.preset], "num_frames": frames,
                  "image_size": size, "batch_size": batch_size, "steps": args.steps, "warmup": args.warmup,
                  "heads": HEADS, "device": device.type, "device_name": device_name, "cpu_cores": cores,
                  "torch_threads": torch.get_num_threads(), "torch": torch.__version__,
                  "python": sys.version.split()[0], "load_average": load_average(),
                  "student_params": sum(p.numel() for p in student.parameters()),
                  "ensemble_params": sum(p.numel() for p in ensemble.parameters()),
                  "source_frame_size": list(FRAME_SIZE[args.preset]), "loader_clips": loader_clips,
                  "peak_memory": memory, "seconds": round(elapsed, 1)},
        "rows": rows,
        "loader": loader,
        "loader_over_step": {"workers": default_loader["workers"], "precision": reference["precision"],
                             "ratio": round(ratio, 3), "target": 1.5, "augmentation": default_loader["augmentation"],
                             "device_augmentation_ms_per_batch": round(augment_s * 1e3, 3)},
    }
    atomic_write_json(output, result)
    print(f"wrote {output} ({elapsed:.0f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
