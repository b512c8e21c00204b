"""Evaluation outputs: ``predictions.parquet``, ``metrics.json`` and the EPIC-KITCHENS-100 exports.

Every file is written atomically (a temporary file renamed into place).

EPIC-KITCHENS-100 formats (from the official ``C1-Action-Recognition`` repository):

* results file for ``evaluate.py`` / ``create_submission.py``: ``torch.save`` (``.pt``) or ``pickle``
  (``.pkl``) of the **list format** ``[{"verb_output": float32[97], "noun_output": float32[300],
  "narration_id": str}, ...]`` — the format the official ``load_results`` reads;
* challenge submission: JSON ``{"version": "0.2", "challenge": "action_recognition", "sls_pt",
  "sls_tl", "sls_td", "results": {narration_id: {"verb": {"0": score, ...}, "noun": {...}}}}``, zipped
  as ``test.json`` for upload. The official tool writes every class score; ``top_k`` can cut each head
  to its best classes. The supervision levels default to the official tool's defaults (pre-training 2,
  training labels 3, training data 4); see github.com/epic-kitchens/sls for their meaning.
"""

from __future__ import annotations

import json
import pickle
import zipfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..utils import atomic_path, atomic_write_text, to_jsonable

from .metrics import rank_top_n, to_numpy, validate_scores

__all__ = [
    "SUBMISSION_VERSION",
    "make_epic_submission",
    "read_epic_results",
    "read_predictions_parquet",
    "write_epic_results",
    "write_epic_submission",
    "write_metrics_json",
    "write_predictions_parquet",
]

SUBMISSION_VERSION = "0.2"
DEFAULT_SLS = {"sls_pt": 2, "sls_tl": 3, "sls_td": 4}


# ------------------------------------------------------------------------------------ predictions
def write_predictions_parquet(
    path: str | Path,
    ids: Sequence[str],
    scores: Mapping[str, Any],
    labels: Mapping[str, Any] | None = None,
    extra_columns: Mapping[str, Sequence[Any]] | None = None,
) -> Path:
    """One row per video: ``id``, ``<head>_scores`` (list<float32>), ``<head>_label`` (int64, -1 unknown).

    Args:
        path: output ``.parquet``.
        ids: video / segment ids, unique.
        scores: ``{head: [N, C]}`` view-reduced scores.
        labels: ``{head: [N]}`` ground truth (heads may be missing).
        extra_columns: more per-video columns (e.g. ``participant_id``).
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    ids = [str(i) for i in ids]
    if len(set(ids)) != len(ids):
        raise ValueError("write_predictions_parquet: ids must be unique")
    columns: dict[str, Any] = {"id": pa.array(ids, type=pa.string())}
    for head, head_scores in scores.items():
        array = validate_scores(head_scores, f"scores[{head!r}]").astype(np.float32)
        if array.shape[0] != len(ids):
            raise ValueError(f"scores[{head!r}] has {array.shape[0]} rows, expected {len(ids)} (one per id)")
        flat = pa.array(array.reshape(-1), type=pa.float32())
        columns[f"{head}_scores"] = pa.FixedSizeListArray.from_arrays(flat, array.shape[1]).cast(pa.list_(pa.float32()))
    for head, head_labels in (labels or {}).items():
        values = np.asarray(to_numpy(head_labels), dtype=np.int64)
        if values.shape != (len(ids),):
            raise ValueError(f"labels[{head!r}] has shape {values.shape}, expected ({len(ids)},)")
        columns[f"{head}_label"] = pa.array(values, type=pa.int64())
    for name, values in (extra_columns or {}).items():
        if len(values) != len(ids):
            raise ValueError(f"column {name!r} has {len(values)} values, expected {len(ids)}")
        columns[name] = pa.array(list(values))
    table = pa.table(columns)
    path = Path(path)
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp)
    return path


def read_predictions_parquet(path: str | Path) -> tuple[list[str], dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Inverse of :func:`write_predictions_parquet`: ``(ids, {head: scores [N, C]}, {head: labels [N]})``."""
    import pyarrow.parquet as pq

    table = pq.read_table(path)
    ids = [str(i) for i in table.column("id").to_pylist()]
    scores, labels = {}, {}
    for name in table.column_names:
        if name.endswith("_scores"):
            scores[name[: -len("_scores")]] = np.asarray(table.column(name).to_pylist(), dtype=np.float32)
        elif name.endswith("_label"):
            labels[name[: -len("_label")]] = table.column(name).to_numpy()
    return ids, scores, labels


# ---------------------------------------------------------------------------------------- metrics
def write_metrics_json(path: str | Path, metrics: Mapping[str, Any]) -> Path:
    """Write ``metrics`` as strict JSON (NaN -> null) atomically."""
    path = Path(path)
    atomic_write_text(path, json.dumps(to_jsonable(metrics), indent=2, allow_nan=False) + "\n")
    return path


# ------------------------------------------------------------------------------------------- EPIC
def _epic_arrays(narration_ids: Sequence[str], verb_scores: Any, noun_scores: Any, num_verbs: int | None, num_nouns: int | None):
    verb = validate_scores(verb_scores, "verb_scores", num_verbs).astype(np.float32)
    noun = validate_scores(noun_scores, "noun_scores", num_nouns).astype(np.float32)
    ids = [str(i) for i in narration_ids]
    if not len(ids) == verb.shape[0] == noun.shape[0]:
        raise ValueError(
            f"expected as many narration ids ({len(ids)}) as verb ({verb.shape[0]}) and noun ({noun.shape[0]}) score rows"
        )
    if len(set(ids)) != len(ids):
        raise ValueError("narration ids must be unique")
    return ids, verb, noun


def write_epic_results(
    path: str | Path, narration_ids: Sequence[str], verb_scores: Any, noun_scores: Any, *, num_verbs: int | None = 97, num_nouns: int | None = 300
) -> Path:
    """Write the official results file (list format) as ``.pt`` (``torch.save``) or ``.pkl``."""
    ids, verb, noun = _epic_arrays(narration_ids, verb_scores, noun_scores, num_verbs, num_nouns)
    records = [
        {"verb_output": verb[i], "noun_output": noun[i], "narration_id": ids[i]} for i in range(len(ids))
    ]
    path = Path(path)
    with atomic_path(path) as tmp:
        if path.suffix == ".pt":
            import torch

            torch.save(records, tmp)
        elif path.suffix == ".pkl":
            with open(tmp, "wb") as handle:
                pickle.dump(records, handle, protocol=4)
        else:
            raise ValueError(f"EPIC results file must end in .pt or .pkl, got {path.name}")
    return path


def read_epic_results(path: str | Path) -> dict[str, np.ndarray]:
    """Read a ``.pt`` results file written by :func:`write_epic_results` with a restricted loader.

    ``torch.load(weights_only=True)`` with only numpy's array-reconstruction globals allowed; returns the
    dict format ``{"verb_output": [N, 97], "noun_output": [N, 300], "narration_id": [N]}``. ``.pkl``
    files are not read (pickle cannot be restricted safely).
    """
    import torch

    path = Path(path)
    if path.suffix != ".pt":
        raise ValueError(f"read_epic_results reads .pt files only (restricted loader), got {path.name}")
    core = getattr(np, "_core", None) or np.core  # numpy >= 2 renamed numpy.core
    allowed = [core.multiarray._reconstruct, np.ndarray, np.dtype, type(np.dtype(np.float32))]
    with torch.serialization.safe_globals(allowed):
        records = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(records, Mapping):
        return {key: np.asarray(value) for key, value in records.items()}
    if not records:
        raise ValueError(f"{path}: empty results list")
    return {key: np.asarray([record[key] for record in records]) for key in records[0]}


def make_epic_submission(
    narration_ids: Sequence[str],
    verb_scores: Any,
    noun_scores: Any,
    *,
    sls_pt: int = DEFAULT_SLS["sls_pt"],
    sls_tl: int = DEFAULT_SLS["sls_tl"],
    sls_td: int = DEFAULT_SLS["sls_td"],
    top_k: int | None = None,
    num_verbs: int | None = 97,
    num_nouns: int | None = 300,
    challenge: str = "action_recognition",
) -> dict[str, Any]:
    """The challenge submission dict (see the module docstring)."""
    for name, level in (("sls_pt", sls_pt), ("sls_tl", sls_tl), ("sls_td", sls_td)):
        if not isinstance(level, (int, np.integer)) or not 0 <= int(level) <= 5:
            raise ValueError(f"{name} must be an integer supervision level in 0..5, got {level!r}")
    ids, verb, noun = _epic_arrays(narration_ids, verb_scores, noun_scores, num_verbs, num_nouns)

    def head_dict(row: np.ndarray, order: np.ndarray | None) -> dict[str, float]:
        classes = range(row.shape[0]) if order is None else order
        return {str(int(c)): float(row[c]) for c in classes}

    verb_order = rank_top_n(verb, top_k) if top_k else [None] * len(ids)
    noun_order = rank_top_n(noun, top_k) if top_k else [None] * len(ids)
    results = {
        ids[i]: {"verb": head_dict(verb[i], verb_order[i]), "noun": head_dict(noun[i], noun_order[i])}
        for i in range(len(ids))
    }
    return {
        "version": SUBMISSION_VERSION,
        "challenge": challenge,
        "sls_pt": int(sls_pt),
        "sls_tl": int(sls_tl),
        "sls_td": int(sls_td),
        "results": results,
    }


def write_epic_submission(path: str | Path, submission: Mapping[str, Any]) -> Path:
    """Write the submission as ``.json``, or as a ``.zip`` holding ``test.json`` (the upload format)."""
    path = Path(path)
    text = json.dumps(submission, allow_nan=False)
    with atomic_path(path) as tmp:
        if path.suffix == ".zip":
            with zipfile.ZipFile(tmp, mode="w", compression=zipfile.ZIP_DEFLATED, compresslevel=5) as archive:
                archive.writestr("test.json", text)
        elif path.suffix == ".json":
            tmp.write_text(text, encoding="utf-8")
        else:
            raise ValueError(f"submission file must end in .json or .zip, got {path.name}")
    return path
