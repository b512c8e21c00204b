"""Human-readable reports: the views-vs-accuracy table/plot and a metrics summary in Markdown."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from mmkd_hf.utils import atomic_write_text, save_figure

__all__ = [
    "metrics_markdown",
    "plot_views_vs_accuracy",
    "views_latency_markdown",
    "views_table_markdown",
    "write_views_report",
]


def _fmt(value: Any, digits: int = 2) -> str:
    if value is None:
        return "–"
    try:
        return f"{float(value):.{digits}f}"
    except (TypeError, ValueError):
        return str(value)


def views_table_markdown(rows: Sequence[Mapping[str, Any]]) -> str:
    """Markdown table of a views grid.

    Args:
        rows: one dict per configuration with ``clips``, ``crops``, ``views``, ``latency_ms_per_video``,
            ``latency_ms_per_view`` and ``heads: {head: {"top1", "top5", "ece"}}`` (plus optional
            ``action: {"top1", "top5"}``).
    """
    if not rows:
        return "(no views evaluated)\n"
    heads = list(rows[0].get("heads", {}))
    has_action = any(row.get("action") for row in rows)
    columns = ["views (clips×crops)"]
    if has_action:
        columns += ["action top-1", "action top-5"]
    for head in heads:
        columns += [f"{head} top-1", f"{head} top-5", f"{head} ECE"]
    columns += ["ms / video", "ms / view"]
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for row in rows:
        cells = [f"{row['views']} ({row['clips']}×{row['crops']})"]
        if has_action:
            action = row.get("action") or {}
            cells += [_fmt(action.get("top1")), _fmt(action.get("top5"))]
        for head in heads:
            metrics = row.get("heads", {}).get(head, {})
            cells += [_fmt(metrics.get("top1")), _fmt(metrics.get("top5")), _fmt(metrics.get("ece"))]
        cells += [_fmt(row.get("latency_ms_per_video"), 1), _fmt(row.get("latency_ms_per_view"), 1)]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n\nAccuracies and ECE (15 bins) in %; latency is model forward time only.\n"


def views_latency_markdown(reports: Mapping[str, Sequence[Mapping[str, Any]]]) -> str:
    """One Markdown table of accuracy, ECE, NLL and latency per model and views setting.

    Args:
        reports: ``{model name: rows}``, rows as :func:`mmkd_hf.evaluation.views.views_report` returns them
            (``clips``, ``crops``, ``views``, ``heads: {head: {"top1", "ece", "nll"}}``, optional
            ``action: {"top1"}``, ``latency_s``, ``threads``, ``device``).
    """
    rows = [(name, row) for name, model_rows in reports.items() for row in model_rows]
    if not rows:
        return "(no views evaluated)\n"
    heads = list(dict.fromkeys(head for _, row in rows for head in row.get("heads", {})))
    has_action = any(row.get("action") for _, row in rows)
    columns = ["model", "views (clips×crops)"] + (["action top-1"] if has_action else [])
    for head in heads:
        columns += [f"{head} top-1", f"{head} ECE", f"{head} NLL"]
    columns += ["latency / video (ms)", "latency / view (ms)"]
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for name, row in rows:
        cells = [str(name), f"{row['views']} ({row['clips']}×{row['crops']})"]
        if has_action:
            cells.append(_fmt((row.get("action") or {}).get("top1")))
        for head in heads:
            metrics = row.get("heads", {}).get(head, {})
            cells += [_fmt(metrics.get("top1")), _fmt(metrics.get("ece")), _fmt(metrics.get("nll"), 3)]
        latency = row.get("latency_s")
        cells += [_fmt(None if latency is None else 1000.0 * latency, 1),
                  _fmt(None if latency is None else 1000.0 * latency / max(int(row["views"]), 1), 1)]
        lines.append("| " + " | ".join(cells) + " |")
    settings = sorted({(str(row.get("device", "?")), row.get("threads"), row.get("latency_runs")) for _, row in rows},
                      key=str)
    where = "; ".join(f"{device}, {threads} torch thread(s), median of {runs} runs" for device, threads, runs in settings)
    return "\n".join(lines) + (
        "\n\nAccuracies and ECE (15 bins) in %, NLL in nats. Latency: one model forward on a batch of 1 video with "
        f"that many views, after a warm-up ({where}); decoding and preprocessing excluded.\n"
    )


def plot_views_vs_accuracy(rows: Sequence[Mapping[str, Any]], path: str | Path, title: str | None = None) -> Path:
    """Accuracy / ECE / latency against the number of views (PNG, written atomically)."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    if not rows:
        raise ValueError("plot_views_vs_accuracy needs at least one row")
    views = list(range(len(rows)))  # evenly spaced categories: 1, 2, 4, 12 views would crowd on a linear axis
    labels = [f"{row['clips']}×{row['crops']}\n({row['views']} views)" for row in rows]
    figure, (acc_axis, ece_axis, lat_axis) = plt.subplots(1, 3, figsize=(13, 4))
    series = {}
    if any(row.get("action") for row in rows):
        series["action"] = [(row.get("action") or {}).get("top1") for row in rows]
    for head in rows[0].get("heads", {}):
        series[head] = [row["heads"].get(head, {}).get("top1") for row in rows]
    for name, values in series.items():
        acc_axis.plot(views, [float("nan") if v is None else v for v in values], marker="o", label=f"{name} top-1")
    for head in rows[0].get("heads", {}):
        ece_axis.plot(views, [row["heads"].get(head, {}).get("ece", float("nan")) for row in rows], marker="o", label=head)
    lat_axis.plot(views, [row.get("latency_ms_per_video", float("nan")) for row in rows], marker="o")
    for axis, ylabel in ((acc_axis, "top-1 accuracy (%)"), (ece_axis, "ECE (%)"), (lat_axis, "ms per video")):
        axis.set_xticks(views)
        axis.set_xticklabels(labels)
        axis.set_xlabel("clips×crops")
        axis.set_ylabel(ylabel)
        axis.grid(alpha=0.3)
    acc_axis.legend()
    ece_axis.legend()
    return save_figure(figure, path, title)


def write_views_report(rows: Sequence[Mapping[str, Any]], output_dir: str | Path, title: str | None = None) -> dict[str, str]:
    """Write ``views_vs_accuracy.md`` and ``views_vs_accuracy.png`` in ``output_dir``."""
    output_dir = Path(output_dir)
    table = output_dir / "views_vs_accuracy.md"
    atomic_write_text(table, (f"# {title}\n\n" if title else "") + views_table_markdown(rows))
    plot = plot_views_vs_accuracy(rows, output_dir / "views_vs_accuracy.png", title)
    return {"table": str(table), "plot": str(plot)}


def metrics_markdown(result: Mapping[str, Any]) -> str:
    """A short Markdown summary of one :func:`~mmkd_hf.evaluation.run.evaluate_model` result."""
    lines = [f"# Evaluation: {result.get('model', '')}", ""]
    views = result.get("views", {})
    lines.append(
        f"{result.get('num_samples')} videos · {views.get('clips')}×{views.get('crops')} views · "
        f"average {views.get('average')}"
    )
    lines += ["", "| head | top-1 | top-5 | ECE | MCE | NLL | Brier |", "|---|---|---|---|---|---|---|"]
    for head, metrics in result.get("heads", {}).items():
        top1 = f"{_fmt(metrics.get('top1'))} ± {_fmt(metrics.get('top1_se'))}"
        top5 = f"{_fmt(metrics.get('top5'))} ± {_fmt(metrics.get('top5_se'))}"
        lines.append(
            f"| {head} | {top1} | {top5} | {_fmt(metrics.get('ece'))} | {_fmt(metrics.get('mce'))} | "
            f"{_fmt(metrics.get('nll'), 3)} | {_fmt(metrics.get('brier'), 3)} |"
        )
    epic = result.get("epic")
    if epic:
        lines += ["", "EPIC-KITCHENS-100 (official definitions):", "", "| subset | verb@1 | noun@1 | action@1 | action@5 |", "|---|---|---|---|---|"]
        for split in ("all", "tail", "unseen"):
            if f"{split}_verb_accuracy_at_1" in epic:
                lines.append(
                    f"| {split} | {_fmt(epic.get(f'{split}_verb_accuracy_at_1'))} | {_fmt(epic.get(f'{split}_noun_accuracy_at_1'))} | "
                    f"{_fmt(epic.get(f'{split}_action_accuracy_at_1'))} | {_fmt(epic.get(f'{split}_action_accuracy_at_5'))} |"
                )
    return "\n".join(lines) + "\n"
