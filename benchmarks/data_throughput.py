"""Data-pipeline throughput: clips/s from EPIC-layout frame folders vs a raw JPEG-decode ceiling.

Writes a synthetic EPIC-layout folder (256-px short side JPEGs, half-rate u/v flow) to a temporary
directory, then measures, for 16-frame 224x224 clips:

* the pipeline (``mmkd_hf.data.load_dataset`` + ``MultimodalCollator`` in a ``DataLoader``) with 0 and 2
  workers, RGB and RGB+flow, in training mode (random resize/crop + colour jitter) and evaluation mode;
* the ceiling: decoding the same number of JPEGs per clip in a tight loop (``torchvision.io.decode_jpeg``
  on a batch of byte tensors, one thread, no augmentation).

Prints a table with ratio = pipeline / ceiling (target >= 0.7) and writes
``benchmarks/results/data_throughput.json``. Usage: ``python benchmarks/data_throughput.py [--clips N]``.
"""

from __future__ import annotations

import argparse
import csv
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torchvision.io import ImageReadMode, decode_jpeg, encode_jpeg

from mmkd_hf.data import MultimodalCollator, load_dataset
from mmkd_hf.utils import atomic_write_json

HEIGHT, WIDTH = 256, 456
NUM_FRAMES = 16


def _smooth_image(rng: np.random.Generator, channels: int) -> torch.Tensor:
    low = rng.integers(0, 255, size=(channels, HEIGHT // 16, WIDTH // 16)).astype(np.float32)
    img = torch.nn.functional.interpolate(torch.from_numpy(low)[None], size=(HEIGHT, WIDTH), mode="bicubic")[0]
    img = img + torch.from_numpy(rng.normal(0, 8, size=(channels, HEIGHT, WIDTH)).astype(np.float32))
    return img.clamp(0, 255).to(torch.uint8)


def write_dataset(root: Path, videos: int = 2, frames: int = 160, seed: int = 0) -> list[tuple[str, str, int, int]]:
    rng = np.random.default_rng(seed)
    base_rgb = [_smooth_image(rng, 3) for _ in range(4)]
    base_flow = [_smooth_image(rng, 1) for _ in range(4)]
    segments = []
    for v in range(videos):
        participant, video = f"P{v + 1:02d}", f"P{v + 1:02d}_01"
        rgb_dir = root / participant / "rgb_frames" / video
        rgb_dir.mkdir(parents=True)
        for i in range(1, frames + 1):
            img = torch.roll(base_rgb[i % 4], shifts=i, dims=2)
            (rgb_dir / f"frame_{i:010d}.jpg").write_bytes(encode_jpeg(img, quality=90).numpy().tobytes())
        for comp in ("u", "v"):
            d = root / participant / "flow_frames" / video / comp
            d.mkdir(parents=True)
            for i in range(1, frames // 2 + 1):
                img = torch.roll(base_flow[i % 4], shifts=i, dims=1)
                (d / f"frame_{i:010d}.jpg").write_bytes(encode_jpeg(img, quality=90).numpy().tobytes())
        for s in range(0, frames - 40, 20):
            segments.append((f"{video}_{s}", video, s + 1, s + 40))
    with open(root / "EPIC_100_verb_classes.csv", "w", newline="") as fh:
        csv.writer(fh).writerows([["id", "key"], [0, "take"]])
    with open(root / "EPIC_100_noun_classes.csv", "w", newline="") as fh:
        csv.writer(fh).writerows([["id", "key"], [0, "cup"]])
    with open(root / "EPIC_100_video_info.csv", "w", newline="") as fh:
        csv.writer(fh).writerows([["video_id", "duration", "fps", "resolution"]] +
                                 [[f"P{v + 1:02d}_01", frames / 60, 60.0, f"{WIDTH}x{HEIGHT}"] for v in range(videos)])
    header = ["narration_id", "participant_id", "video_id", "start_timestamp", "stop_timestamp", "start_frame",
              "stop_frame", "verb_class", "noun_class"]
    with open(root / "EPIC_100_train.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(header)
        for sid, video, start, stop in segments:
            w.writerow([sid, video[:3], video, "00:00:00.00", "00:00:01.00", start, stop, 0, 0])
    return segments


def ceiling(root: Path, segments, clips: int, with_flow: bool) -> float:
    """Clips/s for decoding the same number of JPEGs per clip, no augmentation, one thread."""
    rng = np.random.default_rng(1)
    blobs_per_clip = []
    for k in range(clips):
        sid, video, start, stop = segments[k % len(segments)]
        numbers = np.sort(rng.integers(start, stop + 1, NUM_FRAMES))
        base = root / video[:3]
        rgb = [(base / "rgb_frames" / video / f"frame_{n:010d}.jpg").read_bytes() for n in numbers]
        flow = []
        if with_flow:
            for comp in ("u", "v"):
                flow += [(base / "flow_frames" / video / comp / f"frame_{(n + 1) // 2:010d}.jpg").read_bytes() for n in numbers]
        blobs_per_clip.append((rgb, flow))
    start_t = time.perf_counter()
    for rgb, flow in blobs_per_clip:
        decode_jpeg([torch.frombuffer(bytearray(b), dtype=torch.uint8) for b in rgb], mode=ImageReadMode.RGB)
        if flow:
            decode_jpeg([torch.frombuffer(bytearray(b), dtype=torch.uint8) for b in flow], mode=ImageReadMode.GRAY)
    return clips / (time.perf_counter() - start_t)


def pipeline(root: Path, cache: Path, modalities, train: bool, workers: int, clips: int) -> float:
    ds = load_dataset("epic-kitchens-100", root, "train", modalities, cache, num_frames=NUM_FRAMES, crop_size=224,
                      train=train, sampler="uniform")
    indices = [i % len(ds) for i in range(clips)]
    loader = torch.utils.data.DataLoader(torch.utils.data.Subset(ds, indices), batch_size=4, num_workers=workers,
                                         collate_fn=MultimodalCollator(), persistent_workers=False)
    iterator = iter(loader)
    first = next(iterator)  # exclude worker start-up and the first decode from the timing
    count = 0
    start_t = time.perf_counter()
    for batch in iterator:
        count += batch["pixel_values"].shape[0]
    elapsed = time.perf_counter() - start_t
    del first
    return count / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=int, default=48)
    parser.add_argument("--out", default=str(Path(__file__).resolve().parent / "results" / "data_throughput.json"))
    args = parser.parse_args()
    torch.set_num_threads(1)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        root, cache = Path(tmp) / "epic", Path(tmp) / "cache"
        segments = write_dataset(root)
        ceilings = {False: ceiling(root, segments, args.clips, False), True: ceiling(root, segments, args.clips, True)}
        for modalities in (("rgb",), ("rgb", "flow")):
            with_flow = "flow" in modalities
            for train in (True, False):
                for workers in (0, 2):
                    rate = pipeline(root, cache, list(modalities), train, workers, args.clips)
                    rows.append({"modalities": "+".join(modalities), "mode": "train" if train else "eval",
                                 "workers": workers, "clips_per_s": round(rate, 2),
                                 "ceiling_clips_per_s": round(ceilings[with_flow], 2),
                                 "ratio": round(rate / ceilings[with_flow], 3)})
                    r = rows[-1]
                    print(f"{r['modalities']:>9} {r['mode']:>5} workers={workers}  {r['clips_per_s']:7.2f} clips/s  "
                          f"ceiling {r['ceiling_clips_per_s']:7.2f}  ratio {r['ratio']:.2f}", flush=True)
    result = {
        "benchmark": "data_throughput",
        "clip": f"{NUM_FRAMES} frames, 224x224 crop from {WIDTH}x{HEIGHT} JPEGs",
        "ceiling": "torchvision.io.decode_jpeg of the same number of JPEGs per clip, 1 thread, no augmentation",
        "target_ratio": 0.7,
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "torch": torch.__version__,
                    "python": sys.version.split()[0], "torch_threads": torch.get_num_threads()},
        "rows": rows,
    }
    atomic_write_json(args.out, result)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
