"""Student vs full multimodal teacher ensemble: cost per view, end to end from decoded RGB frames.

The student is a Video Swin-T on RGB; the ensemble is the paper's set of teachers (Video Swin-T on RGB,
on optical flow and on audio spectrograms, plus STLT on hand-object boxes). The ensemble's timing
includes computing the optical flow (the mini-kitchens generator's OpenCV Farneback call), the log-mel
spectrogram windows (torchaudio) and parsing the boxes. Each side runs in its own process so the CPU
peak RSS is its own.

    python benchmarks/student_vs_ensemble.py [--frames 16 --size 224 --device cpu --repeats 2]

Writes benchmarks/results/student_vs_ensemble.json and prints a Markdown table.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
from pathlib import Path

import torch

from mmkd_hf.evaluation.exports import write_metrics_json
from mmkd_hf.evaluation.profile import ClipSpec, run_profile, table

RESULTS = Path(__file__).resolve().parent / "results" / "student_vs_ensemble.json"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--frames", type=int, default=16)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--teachers", default="rgb,flow,audio,layout")
    parser.add_argument("--output", default=str(RESULTS))
    args = parser.parse_args(argv)
    spec = ClipSpec(num_frames=args.frames, image_size=args.size)
    result = run_profile(spec=spec, modalities=args.teachers.split(","), device=args.device, repeats=args.repeats)
    result["machine"] = {
        "device": args.device,
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "platform": platform.platform(),
        "torch": torch.__version__,
        "gpu": torch.cuda.get_device_name(0) if args.device.startswith("cuda") else None,
    }
    print(table({"student (Swin-T RGB)": result["student"], "ensemble (" + args.teachers + ")": result["ensemble"]},
                result["ensemble_over_student"]))
    ratios = result["ensemble_over_student"]
    print(f"\nstudent is {ratios['latency_ms_per_view']:.2f}x faster end to end and needs "
          f"{ratios['gflops_per_view']:.2f}x fewer network GFLOPs per view (flow/FFT not counted) "
          f"(target >= 3x end to end: {'met' if result['target_met_3x_end_to_end'] else 'NOT met'})")
    write_metrics_json(args.output, result)
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
