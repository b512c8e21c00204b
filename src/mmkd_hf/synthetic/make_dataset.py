"""``mmkd-hf make-mini-dataset``: generate mini-kitchens (EPIC-KITCHENS-100 layout), optionally export it in the
Something-Something v2 / Something-Else formats and measure what each modality makes learnable (``--report``).

Generation is explicit: ``mmkd_hf.data.load_dataset("mini-kitchens", data_dir=DIR)`` only reads ``DIR``.
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any, Sequence

from .narration_noise import parse_narration_noise
from .report import run_report
from .scene import MiniKitchensConfig
from .something_something_v2 import export_ssv2
from ..utils import ForeignFolderError
from .writer import ensure_mini_kitchens, generate_mini_kitchens, generation_request, read_marker


def main(argv: Sequence[str] | None = None) -> int:
    """Write mini-kitchens into ``--out`` (reusing a current generation there) and optionally report on it."""
    ap = argparse.ArgumentParser(prog="mmkd-hf make-mini-dataset", description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", required=True, help="output directory (created; only an earlier generation, recognised by its .complete marker, is "
                         "replaced: any other non-empty folder is refused)")
    ap.add_argument("--seed", type=int, default=None,
                    help="generation seed (default: the seed of the generation already in --out, else 0)")
    ap.add_argument("--force", action="store_true", help="regenerate even when a complete generation exists")
    ap.add_argument("--export-ssv2", metavar="DIR2", default=None, help="also write the SSv2/Something-Else export here")
    ap.add_argument("--report", action="store_true", help="train a tiny model per modality and print report.json")
    ap.add_argument("--report-backend", choices=("proxy", "package"), default="proxy",
                    help="proxy: fast plain-torch models; package: Video Swin / STLT through the data pipeline")
    ap.add_argument("--report-epochs", type=int, default=None,
                    help="training epochs of each report model (default: 40 proxy, 24 package = the main job's teachers)")
    ap.add_argument("--segments-per-video", type=int, default=None,
                    help="default: that of the generation already in --out, else the generator's default")
    ap.add_argument("--size", type=int, default=None,
                    help="frame height = width in pixels (default: that of the generation already in --out, else 64)")
    ap.add_argument("--narration-noise", metavar="RATE[,NOUN_RATE]", default=None,
                    help="probability that a training narration names the other verb of its pair and (second number, "
                         "default the same) the other noun of its pair, as EPIC-KITCHENS narrations sometimes do; the "
                         "validation narrations stay exact. 0 writes exact labels (default: that of the generation "
                         f"already in --out, else {MiniKitchensConfig.narration_verb_noise:g})")
    args = ap.parse_args(list(argv) if argv is not None else None)
    overrides: dict[str, Any] = {}
    if args.narration_noise is not None:
        try:
            verb_rate, noun_rate = parse_narration_noise(args.narration_noise)
        except ValueError as error:
            ap.error(f"--narration-noise: {error}")
        overrides.update(narration_verb_noise=verb_rate, narration_noun_noise=noun_rate)
    if args.segments_per_video is not None:
        overrides["segments_per_video"] = args.segments_per_video
    if args.size is not None:
        overrides["height"] = overrides["width"] = args.size
    # a generation already in --out (possibly from an older generator) is refreshed at its own seed and size
    marker = read_marker(args.out)
    seed, config = generation_request(marker) if marker is not None else (0, None)
    if args.seed is not None:
        seed = args.seed
    started = time.perf_counter()
    make = generate_mini_kitchens if args.force else ensure_mini_kitchens
    try:
        out = make(args.out, seed=seed, config=config, **overrides)
    except ForeignFolderError as error:
        print(f"mmkd-hf make-mini-dataset: error: {error}", file=sys.stderr)
        return 2
    marker = read_marker(out) or {}
    print(f"mini-kitchens at {out}: {marker.get('segments')} segments over {marker.get('num_videos')} videos "
          f"(generated in {marker.get('generation_seconds')} s; this call {time.perf_counter() - started:.1f} s)")
    confused = marker.get("training_narrations_confused") or {}
    if confused:
        print(f"training narrations naming the other verb / noun of their pair: {confused.get('verb')} / "
              f"{confused.get('noun')} (validation exact)")
    if args.export_ssv2:
        export_ssv2(out, args.export_ssv2)
        print(f"SSv2/Something-Else export at {args.export_ssv2}")
    if args.report:
        run_report(out, backend=args.report_backend, seed=seed, epochs=args.report_epochs)
    return 0
