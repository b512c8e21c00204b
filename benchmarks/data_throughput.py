"""Data-pipeline throughput: clips/s from EPIC-layout frame folders vs a raw JPEG-decode ceiling.

Writes a synthetic EPIC-layout folder (256 x 456 JPEGs, half-rate u/v flow) to a temporary directory,
then measures, for 16-frame 224x224 clips:

* the pipeline (``mmkd_hf.data.load_dataset`` + ``MultimodalCollator`` in a ``DataLoader``, batch 4,
  ``worker_init_fn=dataloader_worker_init``) with 0 and 2 workers, delivering uint8 clips (``frames_dtype="uint8"``,
  what ``train.py`` uses: the model divides by 255 on its device) and float32 clips in [0, 1], RGB and RGB+flow,
  in training mode
  (random resize/crop + colour jitter) and evaluation mode. Each setting runs one warm-up epoch, then
  ``--repeats`` timed epochs (persistent workers; a timed epoch includes all prefetching);
* the ceiling, per modality set and mode: decoding, in a tight loop, the JPEGs the pipeline decodes for
  the same number of clips (frame numbers drawn by the same sampler in the same mode, flow frames mapped
  and de-duplicated like the pipeline), bytes already in memory, full frames, no augmentation, with every
  decoder available (torchvision ``decode_jpeg``, OpenCV ``imdecode``, Pillow, simplejpeg if installed);
  the **fastest** one is the ceiling. Like for like: 0 workers (one core) against that loop on one
  thread, 2 workers against the same loop run by 2 processes at once (the 2-core ceiling).

``--augmentation device`` adds, in training mode, the loader of the augmentation-on-device path (``train.py
--augment_on_device on``, the default on CUDA): the items only decode and cut each frame's source box, the collator pads
the boxes into one uint8 batch, and the resize + colour jitter are left to the accelerator (not timed here: they run
on the batch beside the model's step). Rows carry ``augmentation``: ``loader`` (today's items: decode, resize, crop,
flip, jitter) or ``device`` (decode + cut).

Best of the repeats for both pipeline and ceiling. Prints a table with ratio = pipeline / ceiling
(target >= 0.7) and the load average, and writes ``benchmarks/results/data_throughput.json``.
Usage: ``python benchmarks/data_throughput.py [--clips N] [--repeats R] [--modalities rgb rgb+flow]
[--modes train eval] [--workers 0 2] [--augmentation loader device]``.
"""

from __future__ import annotations

import argparse
import csv
import io
import multiprocessing
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import torch
from PIL import Image
from torchvision.io import ImageReadMode, decode_jpeg, encode_jpeg

from mmkd_hf.data import MultimodalCollator, load_dataset
from mmkd_hf.data.device_augmentation import augmentation_on_device
from mmkd_hf.data.sampling import rgb_to_flow_index, sample_indices
from mmkd_hf.data.memory import dataloader_worker_init, keep_freed_memory
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


def ceiling_blobs(root: Path, segments, clips: int, with_flow: bool, train: bool, frames_per_video: int = 160):
    """Per clip: (RGB JPEG bytes, flow JPEG bytes) of the frames the pipeline would decode.

    Same sampler as the pipeline in that mode (random offsets in training, centres in evaluation), frame
    numbers de-duplicated like ``FrameStore.read``: the same JPEGs per clip as the pipeline decodes.
    """
    rng = np.random.default_rng(1)
    out = []
    for k in range(clips):
        sid, video, start, stop = segments[k % len(segments)]
        numbers = np.unique(sample_indices("uniform", stop - start + 1, NUM_FRAMES, train, rng)[0] + start)
        base = root / video[:3]
        rgb = [(base / "rgb_frames" / video / f"frame_{n:010d}.jpg").read_bytes() for n in numbers]
        flow = []
        if with_flow:
            flow_numbers = np.unique(rgb_to_flow_index(numbers, frames_per_video // 2))
            for comp in ("u", "v"):
                flow += [(base / "flow_frames" / video / comp / f"frame_{n:010d}.jpg").read_bytes() for n in flow_numbers]
        out.append((rgb, flow))
    return out


def _decode_torchvision(blob: bytes, gray: bool):
    return decode_jpeg(torch.frombuffer(bytearray(blob), dtype=torch.uint8),
                       mode=ImageReadMode.GRAY if gray else ImageReadMode.RGB)


def _decode_opencv(blob: bytes, gray: bool):
    return cv2.imdecode(np.frombuffer(blob, np.uint8), cv2.IMREAD_GRAYSCALE if gray else cv2.IMREAD_COLOR_RGB)


def _decode_pillow(blob: bytes, gray: bool):
    return np.asarray(Image.open(io.BytesIO(blob)).convert("L" if gray else "RGB"))


DECODERS = {"torchvision.decode_jpeg": _decode_torchvision, "cv2.imdecode": _decode_opencv, "PIL": _decode_pillow}
try:  # any other libjpeg-turbo binding that is installed competes for the ceiling too
    import simplejpeg

    DECODERS["simplejpeg"] = lambda blob, gray: simplejpeg.decode_jpeg(blob, colorspace="GRAY" if gray else "RGB")
except ImportError:
    pass


def _decode_loop(blobs_per_clip, decoder: str) -> float:
    """Seconds to decode every clip's frames with ``decoder`` (one thread)."""
    torch.set_num_threads(1)
    cv2.setNumThreads(1)
    fn = DECODERS[decoder]
    start_t = time.perf_counter()
    for rgb, flow in blobs_per_clip:
        for b in rgb:
            fn(b, False)
        for b in flow:
            fn(b, True)
    return time.perf_counter() - start_t


_BARRIER = None


def _init_pool(barrier):
    global _BARRIER
    _BARRIER = barrier


def _pool_task(args):
    blobs, decoder = args
    _BARRIER.wait()
    start_t = time.perf_counter()
    elapsed = _decode_loop(blobs, decoder)
    return start_t, start_t + elapsed


def ceiling_two_processes(blobs_per_clip, decoder: str, repeats: int) -> float:
    """Clips/s when 2 processes decode half of the clips each, started together (the 2-core ceiling)."""
    ctx = multiprocessing.get_context("fork")
    barrier = ctx.Barrier(2)
    halves = [blobs_per_clip[0::2], blobs_per_clip[1::2]]
    best = 0.0
    with ctx.Pool(2, initializer=_init_pool, initargs=(barrier,)) as pool:
        for _ in range(repeats + 1):  # the first round warms the processes up
            spans = pool.map(_pool_task, [(h, decoder) for h in halves], chunksize=1)
            wall = max(e for _, e in spans) - min(s for s, _ in spans)
            best = max(best, len(blobs_per_clip) / wall)
    return best


def measure_ceilings(blobs_per_clip, repeats: int) -> dict[str, float]:
    """Clips/s of each decoder, best of ``repeats`` (after one warm-up pass)."""
    rates = {}
    for name in DECODERS:
        _decode_loop(blobs_per_clip[:4], name)
        rates[name] = len(blobs_per_clip) / min(_decode_loop(blobs_per_clip, name) for _ in range(repeats))
    return rates


def pipeline(root: Path, cache: Path, modalities, train: bool, workers: int, clips: int, repeats: int,
             frames_dtype: str = "uint8", augmentation: str = "loader") -> float:
    """Best clips/s over ``repeats`` timed epochs (after a warm-up epoch) of the DataLoader pipeline; with
    ``augmentation="device"`` the items defer resize and colour jitter (decode + cut only)."""
    ds = load_dataset("epic-kitchens-100", root, "train", modalities, cache, num_frames=NUM_FRAMES, crop_size=224,
                      train=train, sampler="uniform", frames_dtype=frames_dtype)
    indices = [i % len(ds) for i in range(clips)]
    loader = torch.utils.data.DataLoader(torch.utils.data.Subset(ds, indices), batch_size=4, num_workers=workers,
                                         collate_fn=MultimodalCollator(), persistent_workers=workers > 0,
                                         worker_init_fn=dataloader_worker_init if workers else None)
    best = 0.0
    with augmentation_on_device([ds.mmkd_transform], augmentation == "device"):  # workers start inside the block
        for epoch in range(repeats + 1):
            count = 0
            start_t = time.perf_counter()
            for batch in loader:
                count += len(batch["segment_id"])
            elapsed = time.perf_counter() - start_t
            if epoch > 0:  # epoch 0: worker start-up, imports, file-system caches
                best = max(best, count / elapsed)
    del loader
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=int, default=48, help="clips per timed epoch / ceiling pass")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--modalities", nargs="+", default=["rgb", "rgb+flow"], choices=["rgb", "rgb+flow"])
    parser.add_argument("--modes", nargs="+", default=["train", "eval"], choices=["train", "eval"])
    parser.add_argument("--workers", nargs="+", type=int, default=[0, 2], choices=[0, 2])
    parser.add_argument("--frames-dtypes", nargs="+", default=["uint8", "float32"], choices=["uint8", "float32"],
                        help="pipeline output: uint8 (what train.py uses; the model divides by 255) and/or float32")
    parser.add_argument("--augmentation", nargs="+", default=["loader"], choices=["loader", "device"],
                        help="loader: the items resize + jitter (today's path); device: the items decode and cut only "
                             "(train.py --augment_on_device on; training mode rows only)")
    parser.add_argument("--default-malloc", action="store_true",
                        help="do not call keep_freed_memory() in the main process (workers always do)")
    parser.add_argument("--out", default=str(Path(__file__).resolve().parent / "results" / "data_throughput.json"))
    args = parser.parse_args()
    torch.set_num_threads(1)
    cv2.setNumThreads(1)
    kept = False if args.default_malloc else keep_freed_memory()
    load_before = os.getloadavg()
    rows, ceilings = [], {}
    with tempfile.TemporaryDirectory() as tmp:
        root, cache = Path(tmp) / "epic", Path(tmp) / "cache"
        segments = write_dataset(root)
        for name in args.modalities:
            modalities = tuple(name.split("+"))
            for mode in args.modes:
                train = mode == "train"
                blobs = ceiling_blobs(root, segments, args.clips, "flow" in modalities, train)
                rates = measure_ceilings(blobs, args.repeats)
                fastest = max(rates, key=rates.get)
                two = ceiling_two_processes(blobs, fastest, args.repeats) if 2 in args.workers else None
                ceil = {"jpegs_per_clip": round(sum(len(r) + len(f) for r, f in blobs) / len(blobs), 2),
                        "decoders_clips_per_s": {k: round(v, 2) for k, v in rates.items()},
                        "fastest": fastest, "clips_per_s": round(rates[fastest], 2),
                        "two_process_clips_per_s": None if two is None else round(two, 2)}
                ceilings[f"{name} {mode}"] = ceil
                print(f"ceiling {name} {mode} ({ceil['jpegs_per_clip']} JPEGs/clip): " +
                      ", ".join(f"{k} {v:.1f}" for k, v in rates.items()) + " clips/s" +
                      ("" if two is None else f"; 2 processes ({fastest}) {two:.1f}"), flush=True)
                paths = [a for a in args.augmentation if train or a == "loader"]
                for workers, frames_dtype, augmentation in [(w, d, a) for w in args.workers
                                                            for d in args.frames_dtypes for a in paths]:
                    rate = pipeline(root, cache, list(modalities), train, workers, args.clips, args.repeats,
                                    frames_dtype, augmentation)
                    # like for like: 0 workers (one core) vs the 1-thread ceiling, 2 workers vs 2 processes
                    reference = rates[fastest] if workers == 0 else two
                    row = {"modalities": name, "mode": mode, "workers": workers, "frames_dtype": frames_dtype,
                           "augmentation": augmentation,
                           "clips_per_s": round(rate, 2),
                           "ceiling": "1 thread" if workers == 0 else "2 processes",
                           "ceiling_clips_per_s": round(reference, 2), "ratio": round(rate / reference, 3),
                           "ratio_vs_1thread_ceiling": round(rate / rates[fastest], 3),
                           "loadavg_1min": round(os.getloadavg()[0], 2)}
                    rows.append(row)
                    print(f"{name:>9} {mode:>5} workers={workers} {frames_dtype:>7} {augmentation:>6}  {rate:7.2f} "
                          f"clips/s  vs {row['ceiling']} ceiling {reference:7.2f}: ratio {row['ratio']:.2f}  "
                          f"load {row['loadavg_1min']}", flush=True)
    result = {
        "benchmark": "data_throughput",
        "clip": f"{NUM_FRAMES} frames, 224x224 crop from {WIDTH}x{HEIGHT} JPEGs",
        "pipeline_decoder": "cv2.imdecode (OpenCV, libjpeg-turbo)",
        "ceiling": ("fastest of " + " / ".join(DECODERS) + " decoding the JPEGs the pipeline decodes per clip (same "
                    "sampler and mode; bytes in memory), tight loop, no augmentation; 1 thread for 0 workers, the "
                    "same loop in 2 processes for 2 workers (ratio = pipeline / that ceiling)"),
        "ceilings": ceilings,
        "target_ratio": 0.7,
        "augmentation": {"loader": "items decode, resize, crop, flip and colour-jitter (CPU training's path)",
                         "device": "items decode and cut the source box only; resize and colour jitter run on the "
                                   "batch on the accelerator (train.py --augment_on_device on; not timed here)"},
        "main_process_keep_freed_memory": kept,
        "clips_per_epoch": args.clips,
        "repeats": args.repeats,
        "loadavg_before": [round(x, 2) for x in load_before],
        "loadavg_after": [round(x, 2) for x in os.getloadavg()],
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "torch": torch.__version__,
                    "opencv": cv2.__version__, "python": sys.version.split()[0],
                    "torch_threads": torch.get_num_threads()},
        "rows": rows,
    }
    atomic_write_json(args.out, result)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
