"""Multi-view evaluation with the official metrics, calibration and exports (the Python API of ``mmkd-hf evaluate``).

Python API::

    from mmkd_hf.evaluation.run import evaluate_model
    result = evaluate_model(model, dataset, batch_size=8, output_dir="eval/")

The command line lives in :mod:`mmkd_hf.evaluation.cli`; views versus accuracy and latency in
:mod:`mmkd_hf.evaluation.views`.

The model sees batches of the data pipeline (``mmkd_hf.data.load_dataset``). A model with
``config.input_key`` gets that key (``layout`` = every ``layout_*`` key); a model without one (the
teacher ensemble) gets the whole batch. Logits ``[B, V, C]`` are reduced over views by
:func:`~mmkd_hf.evaluation.multiview.reduce_views`. Under several processes the per-process results
are gathered with ``accelerator.gather_for_metrics`` (the padding duplicates of the last batch are
dropped), metrics are computed and files written on the main process only.
"""

from __future__ import annotations

import logging
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from accelerate.utils import send_to_device

from .. import models as _models  # noqa: F401  (registers the configs/models with the Auto classes)
from ..data import MultimodalCollator
from ..models.ensemble.modeling_ensemble import model_input_key, select_model_inputs
from ..utils import atomic_write_text

from .calibration import apply_temperature, calibration_metrics, fit_temperature, plot_reliability_diagram
from .exports import make_epic_submission, write_epic_results, write_epic_submission, write_metrics_json, write_predictions_parquet
from .metrics import (
    EpicAnnotations,
    epic_action_recognition_metrics,
    per_head_distillation_diagnostics,
    top_k_accuracy,
)
from .multiview import reduce_views
from .reports import metrics_markdown

logger = logging.getLogger(__name__)

__all__ = ["Predictions", "evaluate_model", "model_inputs", "model_modalities", "predict", "score_predictions"]

_NON_INPUT_KEYS = {"labels", "segment_id", "teacher_logits", "_eval_index"}
_MODALITY_OF_KEY = {"pixel_values": "rgb", "flow_values": "flow", "audio_values": "audio", "layout": "layout"}
_EPIC_METADATA = ("segment_id", "participant_id", "tail_verb", "tail_noun", "unseen_participant")


# ----------------------------------------------------------------------------------------- inputs
def model_inputs(model: torch.nn.Module, batch: Mapping[str, Any]) -> dict[str, Any]:
    """The keyword arguments ``model`` takes from a collated batch (design.md model contract).

    The teacher ensemble (a config with ``teachers``) gets the whole batch and routes it itself, including
    ``modality_present`` (samples lacking audio or detections: the ensemble leaves those teachers out per sample and
    renormalises the others; a sample with no teacher present scores as all-zero logits, i.e. chance); any other
    model gets its own input through :func:`~mmkd_hf.models.ensemble.modeling_ensemble.select_model_inputs`.
    """
    config = getattr(model, "config", None)
    if getattr(config, "teachers", None):
        inputs = {k: v for k, v in batch.items() if k not in _NON_INPUT_KEYS}
        if getattr(config, "weighting", None) == "per-sample" and batch.get("labels") is not None:
            inputs["labels"] = batch["labels"]  # the per-sample ensemble weights need the ground truth
        return inputs
    return select_model_inputs(batch, config, model_name=type(model).__name__)


def model_modalities(model: torch.nn.Module) -> list[str]:
    """Dataset modalities a model needs: from ``config.input_key``, or the ensemble's ``config.teachers``."""
    config = model.config
    teachers = getattr(config, "teachers", None)
    if teachers:
        return sorted(teachers)
    key = model_input_key(config)
    if key in _MODALITY_OF_KEY:
        return [_MODALITY_OF_KEY[key]]
    raise ValueError(f"cannot tell which modalities {type(model).__name__} reads (no config.input_key or teachers)")


class _Indexed(torch.utils.data.Dataset):
    """Pairs each item with its dataset index so predictions can be matched to metadata after gathering."""

    def __init__(self, dataset):
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int):
        return index, self.dataset[index]


class _IndexedCollate:
    def __init__(self, collator: Callable | None):
        if collator is None:
            collator = MultimodalCollator()
        self.collator = collator
        self.dropped: list[int] = []

    def __call__(self, pairs):
        good = [(i, item) for i, item in pairs if item is not None and not item.get("skip_reason")]
        self.dropped += [i for i, item in pairs if item is None or item.get("skip_reason")]
        if not good:
            return None
        batch = self.collator([item for _, item in good])
        batch["_eval_index"] = torch.tensor([i for i, _ in good], dtype=torch.long)
        return batch


def _head_logits(output: Any, model: torch.nn.Module) -> dict[str, torch.Tensor]:
    logits = output.logits if hasattr(output, "logits") else output["logits"] if isinstance(output, Mapping) else output
    if torch.is_tensor(logits):
        heads = list(getattr(model.config, "heads", None) or {"action": None})
        if len(heads) != 1:
            raise ValueError(f"model returned one logits tensor but config.heads has {heads}")
        return {heads[0]: logits}
    return dict(logits)


# ---------------------------------------------------------------------------------------- predict
class Predictions(dict):
    """``index`` [N] (dataset order), ``logits`` {head: [N, V, C] or [N, C]}, ``labels`` {head: [N]},
    plus ``forward_seconds`` (summed over processes' main loops) and ``num_views``."""


@torch.no_grad()
def predict(
    model: torch.nn.Module,
    dataset,
    *,
    collator: Callable | None = None,
    batch_size: int = 8,
    num_workers: int = 0,
    accelerator=None,
    desc: str = "evaluate",
    progress: bool = False,
) -> Predictions:
    """Run ``model`` over ``dataset`` and gather per-view logits and labels from every process."""
    from accelerate import Accelerator

    accelerator = accelerator or Accelerator()
    collate = _IndexedCollate(collator)
    loader = torch.utils.data.DataLoader(
        _Indexed(dataset), batch_size=batch_size, shuffle=False, num_workers=num_workers, collate_fn=collate
    )
    loader = accelerator.prepare_data_loader(loader) if hasattr(accelerator, "prepare_data_loader") else accelerator.prepare(loader)
    model = model.to(accelerator.device)
    was_training = model.training
    model.eval()
    indices, labels, logits = [], {}, {}
    forward_seconds, local_videos, num_views = 0.0, 0, 1
    iterator = loader
    if progress and accelerator.is_main_process:
        from tqdm.auto import tqdm

        iterator = tqdm(loader, desc=desc)
    for batch in iterator:
        if batch is None:
            continue
        batch = send_to_device(batch, accelerator.device, non_blocking=True)
        inputs = model_inputs(model, batch)
        if accelerator.device.type == "cuda":
            torch.cuda.synchronize(accelerator.device)
        started = time.perf_counter()
        output = model(**inputs)
        if accelerator.device.type == "cuda":
            torch.cuda.synchronize(accelerator.device)
        forward_seconds += time.perf_counter() - started
        head_logits = {head: value.float() for head, value in _head_logits(output, model).items()}
        first = next(iter(head_logits.values()))
        local_videos += first.shape[0]
        num_views = first.shape[1] if first.dim() == 3 else 1
        payload = {"index": batch["_eval_index"], "logits": head_logits}
        if batch.get("labels") is not None:
            payload["labels"] = dict(batch["labels"])
        gathered = accelerator.gather_for_metrics(payload)
        indices.append(gathered["index"].cpu())
        for head, value in gathered["logits"].items():
            logits.setdefault(head, []).append(value.cpu())
        for head, value in gathered.get("labels", {}).items():
            labels.setdefault(head, []).append(value.cpu())
    model.train(was_training)
    if not indices:
        raise ValueError(f"{desc}: the dataset produced no sample to evaluate (all {len(collate.dropped)} dropped?)")
    index = torch.cat(indices)
    order = torch.argsort(index)
    if torch.unique(index).numel() != index.numel():
        raise ValueError(f"{desc}: duplicated samples after gathering ({index.numel()} rows, {torch.unique(index).numel()} unique)")
    timing = torch.tensor([forward_seconds, float(local_videos)], device=accelerator.device)
    timing = accelerator.reduce(timing, reduction="sum") if accelerator.num_processes > 1 else timing
    return Predictions(
        index=index[order].numpy(),
        logits={head: torch.cat(values)[order] for head, values in logits.items()},
        labels={head: torch.cat(values)[order].numpy() for head, values in labels.items()},
        forward_seconds=float(timing[0]) / max(accelerator.num_processes, 1),
        num_videos_timed=int(timing[1]),
        num_processes=accelerator.num_processes,
        num_views=num_views,
        dropped=list(collate.dropped),
    )


# ---------------------------------------------------------------------------------------- metadata
def dataset_metadata(dataset, indices: Sequence[int], columns: Sequence[str] = _EPIC_METADATA) -> dict[str, list]:
    """Metadata columns of the given dataset rows (``datasets.Dataset``, possibly inside ``Subset``s).

    Columns the dataset lacks are left out; a dataset without columns gives ``{}``.
    """
    import datasets

    base, rows = dataset, [int(i) for i in indices]
    while isinstance(base, torch.utils.data.Subset):
        rows = [int(base.indices[i]) for i in rows]
        base = base.dataset
    if not isinstance(base, datasets.Dataset):
        metadata = getattr(base, "metadata", None)
        if isinstance(metadata, Mapping):
            return {c: [metadata[c][i] for i in rows] for c in columns if c in metadata}
        return {}
    raw = base.with_format(None)
    present = [c for c in columns if c in raw.column_names]
    if not present:
        return {}
    selected = raw.select_columns(present).select(rows)
    return {c: list(selected[c]) for c in present}


def dataset_heads(dataset) -> dict[str, int] | None:
    """Class count per head the dataset defines (``dataset.heads`` or its ClassLabel features)."""
    import datasets

    heads = getattr(dataset, "heads", None)
    if heads:
        return dict(heads)
    base = dataset
    while isinstance(base, torch.utils.data.Subset):
        heads = getattr(base, "heads", None)
        if heads:
            return dict(heads)
        base = base.dataset
    heads = getattr(base, "heads", None)
    if heads:
        return dict(heads)
    features = getattr(base, "features", None)
    if not isinstance(features, datasets.Features):
        return None
    found = {}
    for head, column in (("verb", "verb_class"), ("noun", "noun_class"), ("action", "label"), ("action", "action_class")):
        feature = features.get(column)
        if isinstance(feature, datasets.ClassLabel) and head not in found:
            found[head] = feature.num_classes
    return found or None


# ---------------------------------------------------------------------------------------- scoring
def score_predictions(
    scores: Mapping[str, Any],
    labels: Mapping[str, np.ndarray],
    *,
    metadata: Mapping[str, Sequence] | None = None,
    epic_annotations: EpicAnnotations | None = None,
    expected_heads: Mapping[str, int] | None = None,
    num_bins: int = 15,
) -> dict[str, Any]:
    """Metrics of view-reduced ``scores`` ``{head: [N, C]}``: per-head top-1/top-5 (+SE) and calibration,
    plus the EPIC-KITCHENS-100 block when both ``verb`` and ``noun`` heads are labelled."""
    result: dict[str, Any] = {"heads": {}}
    for head, head_scores in scores.items():
        num_classes = (expected_heads or {}).get(head)
        if head not in labels:
            continue
        accuracy = top_k_accuracy(head_scores, labels[head], ks=(1, 5), num_classes=num_classes)
        calibration = calibration_metrics(head_scores, labels[head], num_bins=num_bins)
        result["heads"][head] = {
            "top1": accuracy["top1_acc"],
            "top1_se": accuracy["top1_acc_se"],
            "top5": accuracy["top5_acc"],
            "top5_se": accuracy["top5_acc_se"],
            **{k: calibration[k] for k in ("ece", "mce", "nll", "brier", "mean_confidence")},
        }
    if expected_heads:
        missing = [h for h in scores if h in labels and h not in expected_heads]
        if missing:
            raise ValueError(f"model heads {missing} are not heads of the dataset ({dict(expected_heads)})")
    if "verb" in scores and "noun" in scores and "verb" in labels and "noun" in labels:
        metadata = metadata or {}
        kwargs: dict[str, Any] = {}
        if epic_annotations is not None:
            kwargs.update(tail_verbs=epic_annotations.tail_verbs, tail_nouns=epic_annotations.tail_nouns,
                          unseen_participants=epic_annotations.unseen_participants)
            if "participant_id" in metadata:
                kwargs["participant_ids"] = metadata["participant_id"]
        else:
            if "tail_verb" in metadata and "tail_noun" in metadata:
                kwargs.update(tail_verb_mask=metadata["tail_verb"], tail_noun_mask=metadata["tail_noun"])
            if "unseen_participant" in metadata:
                kwargs["unseen_mask"] = metadata["unseen_participant"]
        epic = epic_action_recognition_metrics(
            scores["verb"], scores["noun"], labels["verb"], labels["noun"],
            num_verbs=(expected_heads or {}).get("verb"), num_nouns=(expected_heads or {}).get("noun"), **kwargs,
        )
        result["epic"] = epic
        result["action"] = {
            "top1": epic["all_action_accuracy_at_1"], "top1_se": epic["all_action_accuracy_at_1_se"],
            "top5": epic["all_action_accuracy_at_5"], "top5_se": epic["all_action_accuracy_at_5_se"],
        }
    return result


def _temperature_block(fit: Mapping[str, tuple], scores: Mapping[str, Any], labels: Mapping[str, np.ndarray], num_bins: int) -> dict[str, Any]:
    block = {}
    for head, (fit_scores, fit_labels) in fit.items():
        if head not in scores or head not in labels:
            continue
        temperature = fit_temperature(fit_scores, fit_labels)
        block[head] = {
            "temperature": temperature,
            "before": calibration_metrics(scores[head], labels[head], num_bins=num_bins),
            "after": calibration_metrics(apply_temperature(scores[head], temperature), labels[head], num_bins=num_bins),
        }
    return block


# --------------------------------------------------------------------------------------- evaluate
def evaluate_model(
    model: torch.nn.Module,
    dataset,
    num_clips: int | None = None,
    num_crops: int | None = None,
    *,
    collator: Callable | None = None,
    batch_size: int = 8,
    num_workers: int = 0,
    average: str = "logits",
    output_dir: str | Path | None = None,
    accelerator=None,
    desc: str = "evaluate",
    num_bins: int = 15,
    epic_annotations: EpicAnnotations | None = None,
    temperature_dataset=None,
    temperature_holdout: float | None = None,
    teacher: torch.nn.Module | None = None,
    epic_exports: bool | None = None,
    submission_levels: Mapping[str, int] | None = None,
    seed: int = 0,
    progress: bool = False,
) -> dict[str, Any]:
    """Evaluate ``model`` on ``dataset`` (its views are whatever the dataset yields).

    Args:
        model: a package model (``logits`` dict per head, ``[B, V, C]`` for multi-view input).
        dataset: a dataset of batch-contract items (``mmkd_hf.data.load_dataset`` or a ``Subset`` of it).
        num_clips / num_crops: the dataset's views (recorded in the result; checked against the logits).
        collator: batch collator (default ``MultimodalCollator``).
        average: ``"logits"`` (original) or ``"probs"`` view averaging.
        output_dir: when given, write ``predictions.parquet``, ``metrics.json``, ``reliability.png`` (and
            the EPIC exports for verb+noun models with ``segment_id`` metadata).
        accelerator: an ``accelerate.Accelerator`` (default: a new one).
        epic_annotations: official tail/unseen lists (default: the dataset's ``tail_*`` /
            ``unseen_participant`` columns).
        temperature_dataset: held-out dataset to fit temperature scaling on (reported before/after).
        temperature_holdout: alternatively, fit T on this seeded fraction of ``dataset`` and report
            before/after on the rest.
        teacher: a teacher (e.g. the ensemble) to compare with: top-1 agreement and mean KL per head.
        epic_exports: force/skip the EPIC files (default: when the heads are verb+noun).
        submission_levels: ``{"sls_pt", "sls_tl", "sls_td"}`` of the challenge JSON.

    Returns:
        ``{"heads": {head: {top1, top1_se, top5, top5_se, ece, mce, nll, brier, ...}}, "action": {...},
        "epic": {official keys}, "num_samples", "views": {...}, "latency_ms_per_video", ...}`` (the same
        dict on every process).
    """
    from accelerate import Accelerator

    accelerator = accelerator or Accelerator()
    predictions = predict(model, dataset, collator=collator, batch_size=batch_size, num_workers=num_workers,
                          accelerator=accelerator, desc=desc, progress=progress)
    scores = {head: value.numpy() for head, value in reduce_views(predictions["logits"], average).items()}
    labels = predictions["labels"]
    indices = predictions["index"]
    metadata = dataset_metadata(dataset, indices)
    expected_heads = dataset_heads(dataset)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = score_predictions(scores, labels, metadata=metadata, epic_annotations=epic_annotations,
                                   expected_heads=expected_heads, num_bins=num_bins)
    result["warnings"] = sorted({str(w.message) for w in caught})
    for message in result["warnings"]:
        logger.warning("%s: %s", desc, message)
    num_views = predictions["num_views"]
    if num_clips is not None and num_crops is not None and num_clips * num_crops != num_views:
        raise ValueError(f"{desc}: expected {num_clips}x{num_crops}={num_clips * num_crops} views per video, the model returned {num_views}")
    latency = 1000.0 * predictions["forward_seconds"] / max(predictions["num_videos_timed"], 1) * predictions["num_processes"]
    result.update(
        model=getattr(getattr(model, "config", None), "name_or_path", "") or type(model).__name__,
        num_samples=int(indices.size),
        num_dropped=len(predictions["dropped"]),
        views={"clips": num_clips, "crops": num_crops, "num_views": num_views, "average": average},
        latency_ms_per_video=latency,
        latency_ms_per_view=latency / max(num_views, 1),
        device=str(accelerator.device),
    )
    if temperature_dataset is not None:
        fit_predictions = predict(model, temperature_dataset, collator=collator, batch_size=batch_size,
                                  num_workers=num_workers, accelerator=accelerator, desc=f"{desc} (temperature fit)")
        fit_scores = reduce_views(fit_predictions["logits"], average)
        fit = {h: (fit_scores[h].numpy(), fit_predictions["labels"][h]) for h in fit_scores if h in fit_predictions["labels"]}
        result["temperature_scaling"] = _temperature_block(fit, scores, labels, num_bins)
    elif temperature_holdout:
        if not 0 < temperature_holdout < 1:
            raise ValueError(f"temperature_holdout must be in (0, 1), got {temperature_holdout}")
        rng = np.random.default_rng(seed)
        permutation = rng.permutation(indices.size)
        cut = int(round(temperature_holdout * indices.size))
        if cut < 1 or cut >= indices.size:
            raise ValueError(f"temperature_holdout={temperature_holdout} leaves an empty fit or report split of {indices.size} samples")
        fit_rows, report_rows = permutation[:cut], permutation[cut:]
        fit = {h: (scores[h][fit_rows], labels[h][fit_rows]) for h in scores if h in labels}
        result["temperature_scaling"] = _temperature_block(
            fit, {h: s[report_rows] for h, s in scores.items()}, {h: l[report_rows] for h, l in labels.items()}, num_bins
        )
        result["temperature_scaling"]["holdout_fraction"] = temperature_holdout
    if teacher is not None:
        teacher_predictions = predict(teacher, dataset, collator=collator, batch_size=batch_size,
                                      num_workers=num_workers, accelerator=accelerator, desc=f"{desc} (teacher)")
        if not np.array_equal(teacher_predictions["index"], indices):
            raise ValueError("teacher and student predictions cover different samples")
        teacher_scores = reduce_views(teacher_predictions["logits"], average)
        result["distillation"] = per_head_distillation_diagnostics(scores, {h: v.numpy() for h, v in teacher_scores.items()})

    ids = metadata.get("segment_id") or [str(i) for i in indices]
    if output_dir is not None and accelerator.is_main_process:
        result["files"] = write_outputs(
            Path(output_dir), result, ids, scores, labels, metadata,
            epic_exports=epic_exports, submission_levels=submission_levels, num_bins=num_bins,
        )
    accelerator.wait_for_everyone()
    return result


def write_outputs(
    output_dir: Path,
    result: dict[str, Any],
    ids: Sequence[str],
    scores: Mapping[str, np.ndarray],
    labels: Mapping[str, np.ndarray],
    metadata: Mapping[str, Sequence],
    *,
    epic_exports: bool | None = None,
    submission_levels: Mapping[str, int] | None = None,
    num_bins: int = 15,
) -> dict[str, str]:
    """Write predictions.parquet, metrics.json, reliability.png (and the EPIC files) in ``output_dir``."""

    output_dir.mkdir(parents=True, exist_ok=True)
    files: dict[str, str] = {}
    extra = {"participant_id": metadata["participant_id"]} if "participant_id" in metadata else None
    files["predictions"] = str(write_predictions_parquet(output_dir / "predictions.parquet", ids, scores, labels, extra))
    labelled = {h: (scores[h], labels[h]) for h in scores if h in labels}
    if labelled:
        files["reliability"] = str(plot_reliability_diagram(labelled, output_dir / "reliability.png", num_bins=num_bins))
    is_epic = "verb" in scores and "noun" in scores
    if epic_exports or (epic_exports is None and is_epic and "segment_id" in metadata):
        if not is_epic:
            raise ValueError(f"EPIC exports need verb and noun heads, the model has {list(scores)}")
        files["epic_results"] = str(write_epic_results(output_dir / "epic_results.pt", ids, scores["verb"], scores["noun"],
                                                       num_verbs=None, num_nouns=None))
        submission = make_epic_submission(ids, scores["verb"], scores["noun"], num_verbs=None, num_nouns=None,
                                          **dict(submission_levels or {}))
        files["epic_submission"] = str(write_epic_submission(output_dir / "epic_submission.json", submission))
        files["epic_submission_zip"] = str(write_epic_submission(output_dir / "epic_submission.zip", submission))
    files["metrics"] = str(output_dir / "metrics.json")
    files["summary"] = str(output_dir / "metrics.md")
    atomic_write_text(output_dir / "metrics.md", metrics_markdown(result))
    write_metrics_json(output_dir / "metrics.json", {**result, "files": files})
    return files
