"""Validation metrics of the run's models and the run's ``results.json`` / ``results.md``."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from torch import nn

from ..evaluation.run import evaluate_model
from ..utils import atomic_write_json, atomic_write_text, to_jsonable
from .arguments import PipelineConfig
from .run_folder import RunFolder
from .runtime import process_state


def evaluate(model: nn.Module, dataset, collator, config: PipelineConfig, unit: str,
             output_dir: Path | None) -> dict[str, Any]:
    """Validation metrics of one model (``mmkd_hf.evaluation.run.evaluate_model``): per head top-1/top-5, ECE
    (15 bins) and NLL, EPIC action accuracy for verb+noun heads; gathered across processes with ``gather_for_metrics``."""
    result = evaluate_model(model, dataset, collator=collator, batch_size=config.eval_batch_size,
                            num_workers=config.num_workers, desc=f"evaluate {unit}", num_bins=15,
                            output_dir=output_dir, progress=True)
    return to_jsonable(result)


def write_results(folder: RunFolder, config: PipelineConfig, results: Mapping[str, Any], heads) -> dict[str, Any]:
    """Write ``results.json`` and ``results.md`` of the run."""
    timings = folder.read_timings()
    payload = {
        "run": {"name": config.resolved_run_name, "dataset": config.dataset, "seed": config.seed,
                "preset": config.preset_name, "config_hash": config.identity_hash(),
                "num_processes": process_state().num_processes},
        "config": config.to_dict(),
        "timings_s": {**timings, "total": round(sum(timings.values()), 3)},
        "models": dict(results),
    }
    if config.skip_bad_samples or folder.skip_log.is_file():
        payload["skipped_samples"] = skip_summary(folder.skip_log)
    atomic_write_json(folder.path / "results.json", payload)
    atomic_write_text(folder.path / "results.md", results_markdown(payload, list(heads)))
    return payload


def skip_summary(log: Path) -> dict[str, Any]:
    """What ``--skip_bad_samples`` skipped, from the run's skip log: ``count`` (distinct samples replaced or dropped),
    ``events`` (their lines: a corrupt sample is met again every epoch and by every model that reads it), the first
    sample ids, the log's file name and, when a teacher tolerates a missing modality, ``missing_modalities``
    (modality -> distinct samples kept without it; their log lines carry a ``modality``)."""
    entries = []
    if log.is_file():
        for line in log.read_text(encoding="utf-8").splitlines():
            if not line.strip():
                continue
            try:
                entries.append(json.loads(line))
            except json.JSONDecodeError:  # a line cut by a crash: counted, not fatal
                entries.append({"sample_id": "?", "reason": "unreadable log line"})
    skipped = [e for e in entries if "modality" not in e]
    missing: dict[str, set[str]] = {}
    for mark in entries:
        if "modality" in mark:
            missing.setdefault(str(mark["modality"]), set()).add(str(mark.get("sample_id")))
    samples = list(dict.fromkeys(str(e.get("sample_id")) for e in skipped))
    summary = {"count": len(samples), "events": len(skipped), "samples": samples[:20], "log": log.name}
    if missing:
        summary["missing_modalities"] = {modality: len(ids) for modality, ids in sorted(missing.items())}
    return summary


def results_markdown(payload: Mapping[str, Any], heads: Sequence[str]) -> str:
    """A Markdown table of every model's metrics, then the timings."""
    run = payload["run"]
    lines = [f"# Results: {run['name']}", "",
             f"dataset {run['dataset']} · preset {run['preset']} · seed {run['seed']} · "
             f"{run['num_processes']} process(es) · config {run['config_hash'][:12]}", ""]
    head_cols = []
    for head in heads:
        head_cols += [f"{head} top-1", f"{head} top-5", f"{head} ECE", f"{head} NLL"]
    has_action = any(_metric(r, "action", "top1") is not None for r in payload["models"].values())
    cols = ["model", "inputs"] + (["action top-1"] if has_action else []) + head_cols
    lines += ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for name, result in payload["models"].items():
        row = [name, "+".join(result.get("modalities", []))]
        if has_action:
            row.append(_format(_metric(result, "action", "top1")))
        for head in heads:
            row += [_format(_metric(result, head, "top1")), _format(_metric(result, head, "top5")),
                    _format(_metric(result, head, "ece")), _format(_metric(result, head, "nll"), 3)]
        lines.append("| " + " | ".join(row) + " |")
    lines += ["", "Accuracies and ECE (15 bins) in %, NLL in nats, on the validation split.", "", "## Time per unit (s)", "",
              "| unit | seconds |", "|---|---|"]
    lines += [f"| {'total (sum of the units; units trained side by side overlap)' if k == 'total' else k} | {v:.1f} |"
              for k, v in payload["timings_s"].items()]
    skipped = payload.get("skipped_samples")
    if skipped is not None:
        lines += ["", f"Samples skipped (--skip_bad_samples): {skipped['count']} ({skipped['events']} time(s)); "
                      f"see {skipped['log']}."]
    return "\n".join(lines) + "\n"


def _metric(result: Mapping[str, Any], head: str, name: str):
    value = result.get("heads", {}).get(head, {}).get(name)
    if value is None and head == "action":
        value = result.get("action", {}).get(name)
    return value


def _format(value, digits: int = 2) -> str:
    return "–" if value is None else f"{float(value):.{digits}f}"


__all__ = ["evaluate", "results_markdown", "skip_summary", "write_results"]
