"""``mmkd-hf evaluate``: multi-view evaluation with the official metrics, calibration and exports.

CLI::

    mmkd-hf evaluate --model runs/x/student --dataset mini-kitchens --split validation --clips 4 --crops 3
    mmkd-hf evaluate --model runs/x/student --teacher runs/x/ensemble --views-grid '' --views-report

The Python API is :func:`mmkd_hf.evaluation.run.evaluate_model` (one evaluation),
:func:`mmkd_hf.evaluation.views.views_report` (accuracy and latency per views setting) and
:func:`mmkd_hf.evaluation.views.evaluate_views_grid`.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from contextlib import nullcontext
from pathlib import Path

import torch
from accelerate import PartialState
from transformers import AutoModel

from .. import models as _models  # noqa: F401  (registers the configs/models with the Auto classes)
from ..data import RunSettings, load_dataset
from ..utils import ForeignFolderError, check_output_folder, output_directory

from .exports import write_metrics_json
from .metrics import load_epic_annotations
from .multiview import num_views
from .run import evaluate_model, model_modalities
from .views import evaluate_views_grid, parse_views, views_report, write_views_latency_report

__all__ = ["apply_run_settings", "build_parser", "main"]

#: load_dataset arguments the command sets itself (the run's values of the others are kept)
_SET_BY_THE_COMMAND = {"data_dir", "split", "modalities", "train", "num_frames", "num_clips", "num_crops", "crop_size",
                       "seed", "frames_dtype", "annotations_dir", "decode"}


# -------------------------------------------------------------------------------------------- CLI
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mmkd-hf evaluate", description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True, help="saved model folder or Hub id (AutoModel.from_pretrained)")
    parser.add_argument("--dataset", default=None, help="dataset name of mmkd_hf.data.load_dataset (e.g. epic-kitchens-100); "
                        "default: the run's, when --model lies in a run folder (its run_settings.json)")
    parser.add_argument("--data-dir", default=None, help="dataset folder (default: the run's, like --dataset)")
    parser.add_argument("--split", default="validation")
    parser.add_argument("--clips", type=int, default=1, help="temporal clips per video (1-10)")
    parser.add_argument("--crops", type=int, default=1, help="spatial crops per clip (1-3)")
    parser.add_argument("--average", choices=["logits", "probs"], default="logits", help="view averaging")
    parser.add_argument("--output-dir", default=None, help="default: <model folder>/eval-<split>-<K>x<C>; new, empty "
                        "or an earlier output of mmkd-hf evaluate (replaced); any other non-empty folder is refused")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--num-workers", type=int, default=0)
    parser.add_argument("--num-frames", type=int, default=None, help="frames per clip (default: the model's)")
    parser.add_argument("--crop-size", type=int, default=None, help="crop size (default: the model's image_size)")
    parser.add_argument("--max-samples", type=int, default=None, help="evaluate the first N videos only")
    parser.add_argument("--annotations-dir", default=None, help="annotation files' folder when not inside --data-dir "
                        "(EPIC: a clone of epic-kitchens-100-annotations, also read for the tail/unseen lists; "
                        "default: the run's)")
    parser.add_argument("--temperature-split", default=None, help="fit temperature scaling on this split")
    parser.add_argument("--temperature-holdout", type=float, default=None, help="fit T on this fraction of the evaluated split")
    parser.add_argument("--teacher", default=None, help="teacher/ensemble model for agreement and KL diagnostics")
    parser.add_argument("--views-grid", default="1x1,2x1,4x1,4x3", help="views-vs-accuracy grid ('' to skip)")
    parser.add_argument("--views-report", nargs="*", default=None, metavar="MODEL",
                        help="also write views_report.md/.json: accuracy, ECE, NLL and batch-1 latency per video of "
                        "--model, --teacher and these further model folders at each --report-views setting")
    parser.add_argument("--report-views", default="1x1,1x3,2x3", help="clips x crops settings of --views-report")
    parser.add_argument("--latency-runs", type=int, default=5, help="timed forwards per latency (median reported)")
    parser.add_argument("--latency-warmup", type=int, default=1, help="untimed forwards before timing")
    parser.add_argument("--sls-pt", type=int, default=2, choices=range(6), help="EPIC submission: pre-training supervision level")
    parser.add_argument("--sls-tl", type=int, default=3, choices=range(6), help="EPIC submission: training-label supervision level")
    parser.add_argument("--sls-td", type=int, default=4, choices=range(6), help="EPIC submission: training-data supervision level")
    parser.add_argument("--seed", type=int, default=0)
    return parser


def apply_run_settings(args: argparse.Namespace, parser: argparse.ArgumentParser) -> argparse.Namespace:
    """``--dataset`` / ``--data-dir`` default to the run's settings when ``--model`` lies in a run folder."""
    settings = None
    if Path(args.model).is_dir():
        try:
            settings = RunSettings.from_run_dir(args.model)
        except (FileNotFoundError, ValueError):
            settings = None
    args.load_kwargs = {}  # the run's decoding settings (audio spectrogram, sampler, stride...) when it is the run's data
    if settings is not None and args.dataset in (None, settings.dataset):
        args.dataset = settings.dataset
        args.data_dir = args.data_dir or settings.data_dir
        args.annotations_dir = args.annotations_dir or settings.load_kwargs.get("annotations_dir")
        args.load_kwargs = {k: v for k, v in settings.dataset_kwargs().items() if k not in _SET_BY_THE_COMMAND}
    if args.dataset is None:
        parser.error(f"--dataset is required: {args.model} is not inside a run folder with run_settings.json")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = apply_run_settings(parser.parse_args(argv), parser)
    num_views(args.clips, args.crops)
    try:
        grid = parse_views(args.views_grid) if args.views_grid else []
        report_views = parse_views(args.report_views) if args.views_report is not None else []
        for clips, crops in grid + report_views:
            num_views(clips, crops)
    except ValueError as error:
        parser.error(str(error))
    if args.latency_runs < 1 or args.latency_warmup < 0:
        parser.error("--latency-runs must be >= 1 and --latency-warmup >= 0")
    output_dir = Path(args.output_dir) if args.output_dir else (
        (Path(args.model) if Path(args.model).is_dir() else Path("eval")) / f"eval-{args.split}-{args.clips}x{args.crops}")
    try:
        check_output_folder(output_dir, "evaluate")
    except ForeignFolderError as error:
        print(f"mmkd-hf evaluate: error: {error}", file=sys.stderr)
        return 2
    model = AutoModel.from_pretrained(args.model)
    teacher = AutoModel.from_pretrained(args.teacher) if args.teacher else None
    report_models, seen = {}, set()  # name -> model of --views-report: --model, --teacher, then the listed folders
    if args.views_report is not None:
        for path, loaded in [(args.model, model), (args.teacher, teacher)] + [(p, None) for p in args.views_report]:
            if not path or str(Path(path).resolve()) in seen:
                continue
            seen.add(str(Path(path).resolve()))
            name = Path(path).name if Path(path).name not in report_models else path
            report_models[name] = loaded if loaded is not None else AutoModel.from_pretrained(path)
    modalities = sorted(set(model_modalities(model)) | set(model_modalities(teacher) if teacher is not None else []))
    config = model.config
    num_frames = args.num_frames or getattr(config, "num_frames", None) or 16
    crop_size = args.crop_size or getattr(config, "image_size", None) or 224

    def make_dataset(clips: int, crops: int, split: str = args.split, modalities: Sequence[str] = modalities):
        dataset = load_dataset(args.dataset, data_dir=args.data_dir, split=split, modalities=modalities, train=False,
                               num_frames=num_frames, num_clips=clips, num_crops=crops, crop_size=crop_size, seed=args.seed,
                               frames_dtype="uint8",  # the models divide by 255; a 3x3-view clip stays 4x smaller
                               annotations_dir=args.annotations_dir, **getattr(args, "load_kwargs", {}))
        if args.max_samples is not None and args.max_samples < len(dataset):
            dataset = torch.utils.data.Subset(dataset, range(args.max_samples))
        return dataset

    epic = args.dataset in ("epic-kitchens-100", "mini-kitchens")
    annotations = load_epic_annotations(args.annotations_dir, args.split) if args.annotations_dir and epic else None
    common = dict(batch_size=args.batch_size, num_workers=args.num_workers, average=args.average, seed=args.seed)
    # written into a temporary sibling that replaces output_dir at the end (an interrupted run leaves the earlier
    # outputs); the file paths recorded in metrics.json name output_dir
    writer = PartialState().is_main_process  # the other processes of `accelerate launch` write nothing
    with output_directory(output_dir, "evaluate") if writer else nullcontext(None) as staging:
        result = evaluate_model(
            model, make_dataset(args.clips, args.crops), args.clips, args.crops, output_dir=staging, epic_annotations=annotations,
            temperature_dataset=make_dataset(args.clips, args.crops, args.temperature_split) if args.temperature_split else None,
            temperature_holdout=args.temperature_holdout, teacher=teacher,
            submission_levels={"sls_pt": args.sls_pt, "sls_tl": args.sls_tl, "sls_td": args.sls_td},
            progress=True, **common,
        )
        title = f"{args.model} on {args.dataset}/{args.split}"
        if grid:
            evaluate_views_grid(model, make_dataset, grid, output_dir=staging if writer else None, title=title,
                                epic_annotations=annotations, **common)
        files = {}
        if report_models:
            reports = {}
            for name, report_model in report_models.items():
                needs = model_modalities(report_model)
                reports[name] = views_report(
                    report_model, lambda k, c, needs=needs: make_dataset(k, c, modalities=needs), views=report_views,
                    batch_size=args.batch_size, num_workers=args.num_workers, average=args.average,
                    warmup=args.latency_warmup, runs=args.latency_runs, epic_annotations=annotations, name=name)
            if writer:
                written = write_views_latency_report(reports, staging, f"Views versus accuracy and latency: {args.dataset}/{args.split}")
                files = {"views_report": written["table"], "views_report_json": written["json"]}
        metrics_file = staging / "metrics.json" if writer else None
        if metrics_file is not None and metrics_file.is_file():
            metrics = json.loads(metrics_file.read_text(encoding="utf-8"))
            metrics["files"] = {key: str(output_dir / Path(path).name)
                                for key, path in {**metrics.get("files", {}), **files}.items()}
            write_metrics_json(metrics_file, metrics)
    print((output_dir / "metrics.md").read_text() if (output_dir / "metrics.md").exists() else result)
    if (output_dir / "views_report.md").exists() and report_models:
        print((output_dir / "views_report.md").read_text())
    print(f"outputs in {output_dir}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
