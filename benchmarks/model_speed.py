"""Model size, FLOPs and forward latency of the paper's networks.

Measures, for batch 1 in eval mode (fp32, ``torch.inference_mode``):

* Video Swin-T (ours, ``VideoSwinForVideoClassification`` with the SSv2 head) at 16 x 224 x 224:
  parameters, GFLOPs (``torch.utils.flop_counter.FlopCounterMode``; multiply-add = 2 FLOPs) and the median
  forward latency, against torchvision's ``swin3d_t`` (same architecture) timed in the same run;
* STLT (``STLTForVideoClassification`` with ``STLTConfig`` defaults) at 16 frames x 14 boxes.

FLOPs are counted with SDPA forced to its math backend and the ``nn.TransformerEncoder`` fast path off, so
attention matmuls are counted the same way as torchvision's explicit ``matmul``s (the CPU flash kernel and
the fused encoder kernel have no FLOP formula registered).

Usage::

    OMP_NUM_THREADS=2 python benchmarks/model_speed.py --threads 2 --repeats 7

Prints a table and writes ``benchmarks/results/model_speed.json``.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
from pathlib import Path

import torch

from mmkd_hf.evaluation.profile import count_call_flops
from mmkd_hf.models.video_swin.configuration_video_swin import VideoSwinConfig
from mmkd_hf.models.video_swin.convert_torchvision import video_swin_from_torchvision
from mmkd_hf.utils import atomic_write_json

RESULTS = Path(__file__).resolve().parent / "results" / "model_speed.json"


def count_parameters(module: torch.nn.Module) -> int:
    return sum(parameter.numel() for parameter in module.parameters())


def count_gflops(forward) -> float:
    """GFLOPs of one call of ``forward()`` (attention counted through SDPA's math backend)."""
    return count_call_flops(forward) / 1e9


def median_latency_ms(forward, warmup: int, repeats: int, device: torch.device) -> tuple[float, list[float]]:
    """Median and all timings (ms) of ``forward()`` after ``warmup`` untimed calls."""
    timings = []
    with torch.inference_mode():
        for _ in range(warmup):
            forward()
        for _ in range(repeats):
            if device.type == "cuda":
                torch.cuda.synchronize()
            start = time.perf_counter()
            forward()
            if device.type == "cuda":
                torch.cuda.synchronize()
            timings.append((time.perf_counter() - start) * 1e3)
    return statistics.median(timings), timings


def video_swin_rows(args, device: torch.device) -> tuple[list[dict], dict]:
    from torchvision.models.video import swin3d_t

    torch.manual_seed(0)
    reference = swin3d_t(weights=None).eval().to(device)
    ours = video_swin_from_torchvision(reference, heads={"action": 174}).eval().to(device)
    reference.head = torch.nn.Linear(768, 174).to(device)  # same head size, so parameter counts compare
    frames = torch.rand(1, args.frames, 3, args.size, args.size, device=device)  # [B, T, C, H, W] in [0, 1]
    video = frames.transpose(1, 2).contiguous()  # torchvision: [B, C, T, H, W]

    # Sanity check that both compute the same network. torchvision does not normalise inside forward,
    # so it gets the clip normalised the way ours does it internally.
    normalised = ours.backbone.normalize(frames).transpose(1, 2).contiguous()
    head, reference.head = reference.head, torch.nn.Identity()
    with torch.inference_mode():
        max_abs_diff = (reference(normalised) - ours.backbone(frames).pooler_output).abs().max().item()
    reference.head = head

    shape = f"1x{args.frames}x3x{args.size}x{args.size}"
    ours_gflops = count_gflops(lambda: ours(frames))
    reference_gflops = count_gflops(lambda: reference(video))
    # Alternate the two models call by call so that load changes hit both alike; the ratio is the median
    # of the per-pair ratios.
    with torch.inference_mode():
        for _ in range(args.warmup):
            ours(frames)
            reference(video)
    ours_all, reference_all = [], []
    for _ in range(args.repeats * args.rounds):
        ours_all += median_latency_ms(lambda: ours(frames), 0, 1, device)[1]
        reference_all += median_latency_ms(lambda: reference(video), 0, 1, device)[1]
    timings = {"ours": statistics.median(ours_all), "torchvision": statistics.median(reference_all)}
    pair_ratio = statistics.median(a / b for a, b in zip(ours_all, reference_all))
    rows = [
        {
            "model": "Video Swin-T (mmkd_hf, SSv2 head)",
            "input": shape,
            "params": count_parameters(ours),
            "backbone_params": count_parameters(ours.backbone),
            "gflops": round(ours_gflops, 2),
            "latency_ms": round(timings["ours"], 1),
            "latency_all_ms": [round(t, 1) for t in ours_all],
        },
        {
            "model": "torchvision swin3d_t (174-class head)",
            "input": shape,
            "params": count_parameters(reference),
            "backbone_params": count_parameters(reference) - count_parameters(reference.head),
            "gflops": round(reference_gflops, 2),
            "latency_ms": round(timings["torchvision"], 1),
            "latency_all_ms": [round(t, 1) for t in reference_all],
        },
    ]
    summary = {
        "latency_ratio_ours_over_torchvision": round(timings["ours"] / timings["torchvision"], 3),
        "latency_ratio_median_of_pairs": round(pair_ratio, 3),
        "pooled_feature_max_abs_diff": max_abs_diff,
    }
    return rows, summary


def stlt_rows(args, device: torch.device) -> list[dict]:
    try:
        from mmkd_hf.models.stlt.configuration_stlt import STLTConfig
        from mmkd_hf.models.stlt.modeling_stlt import STLTForVideoClassification
    except ImportError as error:  # the STLT helper's files are not there yet
        print(f"STLT skipped: cannot import mmkd_hf.models.stlt ({error}).")
        return []
    torch.manual_seed(0)
    model = STLTForVideoClassification(STLTConfig()).eval().to(device)
    frames, boxes = args.frames, 14
    generator = torch.Generator().manual_seed(0)
    corners = torch.rand(1, frames, boxes, 2, 2, generator=generator).sort(dim=-2).values
    layout = {
        "layout_boxes": corners.transpose(-1, -2).reshape(1, frames, boxes, 4).to(device),
        "layout_categories": torch.randint(1, 3, (1, frames, boxes), generator=generator).to(device),
        "layout_scores": torch.rand(1, frames, boxes, generator=generator).to(device),
        "layout_sides": torch.randint(0, 3, (1, frames, boxes), generator=generator).to(device),
        "layout_states": torch.randint(0, 6, (1, frames, boxes), generator=generator).to(device),
        "layout_mask": torch.ones(1, frames, boxes, dtype=torch.bool, device=device),
    }
    latency, timings = median_latency_ms(lambda: model(**layout), args.warmup, args.repeats * args.rounds, device)
    return [
        {
            "model": "STLT (STLTConfig defaults)",
            "input": f"1x{frames} frames x {boxes} boxes",
            "params": count_parameters(model),
            "backbone_params": None,
            "gflops": round(count_gflops(lambda: model(**layout)), 2),
            "latency_ms": round(latency, 1),
            "latency_all_ms": [round(t, 1) for t in timings],
        }
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--threads", type=int, default=2, help="torch intra-op threads (CPU)")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5, help="timed calls per round (median over all)")
    parser.add_argument("--rounds", type=int, default=2, help="rounds of --repeats timed calls per model")
    parser.add_argument("--frames", type=int, default=16)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)

    load_before = os.getloadavg()
    rows, summary = video_swin_rows(args, device)
    rows += stlt_rows(args, device)
    load_after = os.getloadavg()

    header = f"{'model':40s} {'input':26s} {'params':>12s} {'GFLOPs':>8s} {'latency ms':>11s}"
    print(header)
    print("-" * len(header))
    for row in rows:
        print(
            f"{row['model']:40s} {row['input']:26s} {row['params']:12,d} {row['gflops']:8.2f} "
            f"{row['latency_ms']:11.1f}"
        )
    print(
        f"latency ratio ours / torchvision: {summary['latency_ratio_ours_over_torchvision']:.3f} (ratio of medians), "
        f"{summary['latency_ratio_median_of_pairs']:.3f} (median of back-to-back pairs)"
    )
    print(f"pooled features max |ours - torchvision|: {summary['pooled_feature_max_abs_diff']:.2e}")
    print(f"load average before/after: {load_before[0]:.2f} / {load_after[0]:.2f}")

    args.output.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(
        args.output,
        {
            "rows": rows,
            **summary,
            "settings": {
                "device": str(device),
                "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor()
                or platform.machine(),
                "threads": args.threads,
                "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS"),
                "cpu_count": os.cpu_count(),
                "warmup": args.warmup,
                "repeats": args.repeats,
                "rounds": args.rounds,
                "torch": torch.__version__,
                "load_average_before_after": [round(load_before[0], 2), round(load_after[0], 2)],
            },
        },
    )
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
