"""Views versus accuracy and latency: how much do fewer views (clips × crops) cost, and what do they save?

Python API::

    from mmkd_hf.evaluation import views_report
    rows = views_report(student, dataset, collator, views=((1, 1), (1, 3), (2, 3)))
    rows[0]["heads"]["verb"]["top1"], rows[0]["latency_s"]      # 1x1: accuracy (%) and seconds per video

``dataset`` is a dataset of :func:`mmkd_hf.data.load_dataset` (or a ``torch.utils.data.Subset`` of one),
re-made here with each setting's views, or a function ``(clips, crops) -> dataset``. For every
(clips, crops) setting the model is evaluated on the whole dataset (accuracy, ECE, NLL per head, the EPIC
action accuracy for verb + noun models) and its latency is measured on one video: the model forward on a
batch of 1 holding that many views, after ``warmup`` untimed calls, the median of ``runs`` timed calls, at
the current ``torch.get_num_threads()`` (set it, or ``OMP_NUM_THREADS``, beforehand to measure another
thread count). Decoding and preprocessing are not part of the latency.

CLI: ``mmkd-hf evaluate --model RUN/student --teacher RUN/ensemble --views-report`` writes
``views_report.md`` (one table: every model × every setting) and ``views_report.json``.
"""

from __future__ import annotations

import dataclasses
import statistics
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from accelerate.utils import send_to_device

from .exports import write_metrics_json
from .multiview import num_views
from .reports import views_latency_markdown, write_views_report
from .run import evaluate_model, model_inputs

__all__ = [
    "DEFAULT_GRID",
    "DEFAULT_REPORT_VIEWS",
    "dataset_with_views",
    "evaluate_views_grid",
    "measure_latency",
    "parse_views",
    "single_video_batch",
    "views_report",
    "write_views_latency_report",
]

#: the views-vs-accuracy grid of ``mmkd-hf evaluate --views-grid``
DEFAULT_GRID = ((1, 1), (2, 1), (4, 1), (4, 3))
#: the settings of :func:`views_report` (``mmkd-hf evaluate --views-report``): 1, 3 and 6 views
DEFAULT_REPORT_VIEWS = ((1, 1), (1, 3), (2, 3))

DatasetOrFactory = Any  # a dataset of mmkd_hf.data.load_dataset (or a Subset of one), or (clips, crops) -> dataset


def parse_views(text: str) -> list[tuple[int, int]]:
    """``"1x1,1x3,2x3"`` -> ``[(1, 1), (1, 3), (2, 3)]`` (clips × crops)."""
    grid = []
    for item in text.split(","):
        item = item.strip().lower()
        if not item:
            continue
        try:
            clips, crops = (int(x) for x in item.split("x"))
        except ValueError:
            raise ValueError(f"views settings look like 2x3 (clips x crops), got {item!r}") from None
        grid.append((clips, crops))
    return grid


# ------------------------------------------------------------------------------------------ datasets
def dataset_with_views(dataset: DatasetOrFactory, clips: int, crops: int):
    """``dataset`` with ``clips × crops`` views per video.

    Args:
        dataset: a function ``(clips, crops) -> dataset`` (called), or an evaluation dataset of
            :func:`mmkd_hf.data.load_dataset` (possibly inside ``Subset``\\ s, which are kept): its decoding transform
            is re-made with the new ``num_clips`` / ``num_crops``, everything else (frames, crop size, modalities,
            seed) unchanged.

    Raises:
        TypeError: for any other dataset (its views cannot be changed from outside: pass a function instead).
        ValueError: for a training-mode dataset (one random clip, no views) or an invalid setting.
    """
    num_views(clips, crops)
    if callable(dataset) and not hasattr(dataset, "__getitem__"):
        return dataset(clips, crops)
    if isinstance(dataset, torch.utils.data.Subset):
        return torch.utils.data.Subset(dataset_with_views(dataset.dataset, clips, crops), dataset.indices)
    transform = getattr(dataset, "mmkd_transform", None)
    if transform is None or not hasattr(dataset, "with_transform"):
        raise TypeError(
            f"cannot change the views of a {type(dataset).__name__}: pass a dataset of mmkd_hf.data.load_dataset "
            "or a function (clips, crops) -> dataset with that many views"
        )
    config = transform.config
    if config.train:
        raise ValueError("the dataset is in training mode (one random clip per video): load it with train=False")
    config = dataclasses.replace(config, num_clips=clips,
                                 augmentation=dataclasses.replace(config.augmentation, num_crops=crops))
    remade = type(transform)(transform.reader, config, source=transform.source)
    out = dataset.with_transform(remade)
    out.mmkd_transform = remade
    out.mmkd_source_report = getattr(dataset, "mmkd_source_report", None)
    return out


def single_video_batch(dataset, collator: Callable | None = None) -> dict[str, Any]:
    """The first decodable video of ``dataset`` collated as a batch of 1 (for :func:`measure_latency`)."""
    from ..data import MultimodalCollator

    collator = collator or MultimodalCollator()
    for index in range(len(dataset)):
        item = dataset[index]
        if item is not None and not item.get("skip_reason"):
            return collator([item])
    raise ValueError(f"no decodable video among the {len(dataset)} of the dataset: nothing to time")


# ------------------------------------------------------------------------------------------- latency
@torch.no_grad()
def measure_latency(model: torch.nn.Module, batch: Mapping[str, Any], *, warmup: int = 1, runs: int = 5,
                    device: torch.device | str | None = None) -> dict[str, Any]:
    """Seconds of one ``model`` forward on ``batch`` (what the model reads of it, see ``run.model_inputs``).

    ``warmup`` untimed calls, then ``runs`` timed ones (CUDA is synchronised around each); the model runs in
    eval mode (its mode is restored) on ``device`` (default: where its parameters are) with the current
    ``torch.get_num_threads()``.

    Returns:
        ``latency_s`` (median), ``latency_s_min``, ``latency_runs``, ``threads``, ``device``.
    """
    if runs < 1 or warmup < 0:
        raise ValueError(f"measure_latency needs runs >= 1 and warmup >= 0, got runs={runs}, warmup={warmup}")
    if device is None:
        parameter = next(model.parameters(), None)
        device = parameter.device if parameter is not None else torch.device("cpu")
    device = torch.device(device)
    batch = send_to_device(dict(batch), device)
    inputs = model_inputs(model, batch)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda *_: None)
    was_training = model.training
    model.eval()
    times = []
    try:
        for call in range(warmup + runs):
            sync(device)
            started = time.perf_counter()
            model(**inputs)
            sync(device)
            if call >= warmup:
                times.append(time.perf_counter() - started)
    finally:
        model.train(was_training)
    return {"latency_s": statistics.median(times), "latency_s_min": min(times), "latency_runs": runs,
            "threads": torch.get_num_threads(), "device": str(device)}


# ---------------------------------------------------------------------------------------- the report
def _summary_row(result: Mapping[str, Any], clips: int, crops: int) -> dict[str, Any]:
    return {
        "clips": clips,
        "crops": crops,
        "views": clips * crops,
        "heads": {h: {k: m[k] for k in ("top1", "top5", "ece", "nll")} for h, m in result["heads"].items()},
        "action": {k: result["action"][k] for k in ("top1", "top5")} if "action" in result else None,
        "latency_ms_per_video": result["latency_ms_per_video"],
        "latency_ms_per_view": result["latency_ms_per_view"],
        "num_samples": result["num_samples"],
    }


def views_report(
    model: torch.nn.Module,
    dataset: DatasetOrFactory,
    collator: Callable | None = None,
    views: Sequence[tuple[int, int]] = DEFAULT_REPORT_VIEWS,
    *,
    batch_size: int = 8,
    num_workers: int = 0,
    average: str = "logits",
    warmup: int = 1,
    runs: int = 5,
    accelerator=None,
    epic_annotations=None,
    num_bins: int = 15,
    progress: bool = False,
    name: str | None = None,
) -> list[dict[str, Any]]:
    """Accuracy, calibration and latency of ``model`` at each views setting.

    Args:
        model: a package model (the student, a teacher or the teacher ensemble).
        dataset: an evaluation dataset of :func:`mmkd_hf.data.load_dataset` (or a ``Subset`` of one; its views are
            changed per setting by :func:`dataset_with_views`), or a function ``(clips, crops) -> dataset``.
        collator: the batch collator (default ``mmkd_hf.data.MultimodalCollator()``).
        views: the ``(clips, crops)`` settings, in the order of the returned rows.
        batch_size / num_workers / average / accelerator / epic_annotations / num_bins: as for
            :func:`~mmkd_hf.evaluation.run.evaluate_model` (accuracy only; the latency is always at batch 1).
        warmup / runs: untimed and timed forwards of the latency (the median of the timed ones is reported).
        name: recorded as each row's ``model`` (default: ``config.name_or_path`` or the class name).

    Returns:
        One dict per setting: ``model``, ``clips``, ``crops``, ``views`` (clips × crops), ``heads``:
        ``{head: {"top1", "top5", "ece", "nll"}}``, ``action``: ``{"top1", "top5"}`` for verb + noun models (else
        None), ``latency_s`` (median seconds per video: one forward of a batch of 1 with ``views`` views),
        ``latency_s_per_view``, ``latency_s_min``, ``latency_runs``, ``threads``, ``device``, ``num_samples`` and
        ``average``. Accuracies and ECE are percentages, NLL in nats (natural log).
    """
    from accelerate import Accelerator

    accelerator = accelerator or Accelerator()
    label = name or getattr(getattr(model, "config", None), "name_or_path", "") or type(model).__name__
    rows = []
    for clips, crops in views:
        data = dataset_with_views(dataset, clips, crops)
        result = evaluate_model(model, data, clips, crops, collator=collator, batch_size=batch_size,
                                num_workers=num_workers, average=average, accelerator=accelerator,
                                epic_annotations=epic_annotations, num_bins=num_bins, progress=progress,
                                desc=f"{label}: views {clips}x{crops}")
        latency = measure_latency(model, single_video_batch(data, collator), warmup=warmup, runs=runs,
                                  device=accelerator.device)
        row = _summary_row(result, clips, crops)
        del row["latency_ms_per_video"], row["latency_ms_per_view"]  # batched throughput: not this report's latency
        rows.append({"model": label, **row, **latency, "latency_s_per_view": latency["latency_s"] / (clips * crops),
                     "average": average})
    return rows


def write_views_latency_report(reports: Mapping[str, Sequence[Mapping[str, Any]]], output_dir: str | Path,
                               title: str | None = None) -> dict[str, str]:
    """Write ``views_report.md`` (one table, :func:`~mmkd_hf.evaluation.reports.views_latency_markdown`) and
    ``views_report.json`` (``{"models": {name: rows}}``) of ``{model name: views_report(...) rows}``."""
    from ..utils import atomic_write_text

    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    table = output_dir / "views_report.md"
    atomic_write_text(table, (f"# {title}\n\n" if title else "") + views_latency_markdown(reports))
    data = output_dir / "views_report.json"
    write_metrics_json(data, {"models": {name: list(rows) for name, rows in reports.items()}})
    return {"table": str(table), "json": str(data)}


def evaluate_views_grid(
    model: torch.nn.Module,
    make_dataset: Callable[[int, int], Any],
    grid: Sequence[tuple[int, int]] = DEFAULT_GRID,
    *,
    output_dir: str | Path | None = None,
    title: str | None = None,
    **kwargs: Any,
) -> list[dict[str, Any]]:
    """Evaluate ``model`` for each (clips, crops) of ``grid``; writes the views-vs-accuracy table/plot.

    ``make_dataset(clips, crops)`` returns the dataset with that many views. Extra ``kwargs`` go to
    :func:`~mmkd_hf.evaluation.run.evaluate_model` (no per-configuration files are written). The latency here is
    the batched forward time per video (throughput); :func:`views_report` measures batch-1 latency.
    """

    rows = []
    for clips, crops in grid:
        result = evaluate_model(model, make_dataset(clips, crops), clips, crops, desc=f"views {clips}x{crops}", **kwargs)
        rows.append(_summary_row(result, clips, crops))
    accelerator = kwargs.get("accelerator")
    if output_dir is not None and (accelerator is None or accelerator.is_main_process):
        write_views_report(rows, output_dir, title)
        write_metrics_json(Path(output_dir) / "views_vs_accuracy.json", {"rows": rows})
    return rows
