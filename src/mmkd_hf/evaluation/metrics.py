"""Accuracy metrics as plain numpy functions: top-k with binomial standard errors, the official
EPIC-KITCHENS-100 action-recognition metrics, and student-teacher distillation diagnostics.

Conventions (all functions):

* ``scores`` are ``[N, C]`` arrays (numpy or torch) of logits or probabilities for N videos; views
  must already be reduced (:func:`mmkd_hf.evaluation.multiview.reduce_views`).
* Accuracies are percentages in ``[0, 100]``; ``*_se`` is the binomial standard error
  ``sqrt(p (100 - p) / n)`` in percentage points (``evaluate_verbose`` of the original
  ``src/utils/evaluation.py``).
* Ranking is deterministic: classes are sorted by descending score and **ties go to the lower class
  index** (the ``argmax`` convention). The official EPIC script uses numpy's unstable ``argsort`` whose
  tie order is unspecified; on untied scores both agree.

EPIC-KITCHENS-100 (read from the official ``C1-Action-Recognition`` evaluation, ``evaluate.py`` and
``utils/{metrics,scoring,actions}.py``):

* action id = ``verb * 1000 + noun``;
* action scores: each segment's verb and noun scores are cut to their top 100, each cut is
  softmaxed, every (verb, noun) pair of the two cuts is scored by the product of the two
  probabilities, and the 100 best pairs form the action ranking. A ground-truth action outside those
  100 pairs is wrong at every k. Top-1 action therefore equals "verb top-1 and noun top-1 both right"
  whenever there are no ties;
* subsets: ``all``; ``tail`` where the **verb** subset is the segments whose ground-truth verb is a tail
  verb, the **noun** subset those with a tail noun, and the **action** subset those whose verb **or**
  noun is tail (``tail_verb_mask | tail_noun_mask`` in the official code); ``unseen``: segments of the
  participants in ``EPIC_100_unseen_participant_ids_<split>.csv``. Rankings are computed once over all
  segments and then masked;
* the official script reports top-1 and top-5 for ``all`` and only top-1 for ``tail``/``unseen``; this
  module also gives top-5 for the subsets (extra keys, same names). Keys follow the official
  ``{split}_{task}_accuracy_at_{k}``.
* an empty subset (no unseen participant in the predictions, no tail class) gives a warning and
  ``None`` values, as the official code warns and drops the ``unseen`` block.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

ACTION_VERB_MULTIPLIER = 1000
EPIC_ACTION_TOP_N = 100
DEFAULT_KS = (1, 5)

__all__ = [
    "ACTION_VERB_MULTIPLIER",
    "EpicAnnotations",
    "action_id_from_verb_noun",
    "align_to_ids",
    "binomial_standard_error",
    "compute_action_scores",
    "distillation_diagnostics",
    "epic_action_recognition_metrics",
    "evaluate_epic_predictions",
    "load_epic_annotations",
    "paired_bootstrap_difference",
    "rank_top_n",
    "softmax",
    "something_something_metrics",
    "to_numpy",
    "top_k_accuracy",
    "top_k_correct",
]


# ----------------------------------------------------------------------------------------- inputs
def to_numpy(array: Any) -> np.ndarray:
    """Return ``array`` (numpy, torch tensor, list) as a numpy array, detached and on the CPU."""
    if hasattr(array, "detach"):
        array = array.detach().float().cpu().numpy() if array.is_floating_point() else array.detach().cpu().numpy()
    return np.asarray(array)


def validate_scores(scores: Any, name: str = "scores", num_classes: int | None = None) -> np.ndarray:
    """Check a ``[N, C]`` score matrix and return it as float64.

    Raises:
        ValueError: wrong rank, no sample, NaN/inf values, or ``C != num_classes``.
    """
    array = to_numpy(scores)
    if array.ndim != 2:
        raise ValueError(
            f"{name}: expected a 2-D [num_samples, num_classes] array, got shape {tuple(array.shape)}"
            + (" (reduce the views first with reduce_views)" if array.ndim == 3 else "")
        )
    if array.shape[0] == 0:
        raise ValueError(f"{name}: expected at least one sample, got shape {tuple(array.shape)}")
    if num_classes is not None and array.shape[1] != num_classes:
        raise ValueError(
            f"{name}: expected {num_classes} classes (the dataset's), got {array.shape[1]} "
            f"(shape {tuple(array.shape)})"
        )
    array = array.astype(np.float64, copy=False)
    finite = np.isfinite(array)
    if not finite.all():
        bad_rows = np.flatnonzero(~finite.all(axis=1))
        raise ValueError(
            f"{name}: {int((~finite).sum())} non-finite (NaN/inf) values in {len(bad_rows)} samples, "
            f"first sample indices {bad_rows[:5].tolist()}"
        )
    return array


def validate_labels(labels: Any, num_samples: int, num_classes: int, name: str = "labels") -> np.ndarray:
    """Check a ``[N]`` integer label vector against the score matrix it goes with."""
    array = to_numpy(labels)
    if array.ndim != 1:
        raise ValueError(f"{name}: expected a 1-D vector of class ids, got shape {tuple(array.shape)}")
    if array.shape[0] != num_samples:
        raise ValueError(f"{name}: expected {num_samples} labels (one per prediction), got {array.shape[0]}")
    if array.dtype.kind not in "iu":
        if array.dtype.kind == "f" and np.all(np.isfinite(array)) and np.all(array == np.round(array)):
            array = array.astype(np.int64)
        else:
            raise ValueError(f"{name}: expected integer class ids, got dtype {array.dtype}")
    array = array.astype(np.int64, copy=False)
    bad = (array < 0) | (array >= num_classes)
    if bad.any():
        index = int(np.flatnonzero(bad)[0])
        raise ValueError(
            f"{name}: class id {int(array[index])} at sample {index} is outside [0, {num_classes}) "
            f"({int(bad.sum())} such labels); the scores have {num_classes} classes"
        )
    return array


def align_to_ids(prediction_ids: Sequence[str], label_ids: Sequence[str], *, require_all: bool = False) -> np.ndarray:
    """Return, for each prediction id, the row of ``label_ids`` holding its label.

    Args:
        prediction_ids: ids of the predictions (e.g. EPIC ``narration_id``), unique.
        label_ids: ids of the ground-truth rows, unique.
        require_all: also fail when some labelled id has no prediction.

    Raises:
        ValueError: duplicated ids, prediction ids without a label, or (``require_all``) labels without
            a prediction; the message lists the first offending ids.
    """
    prediction_ids = [str(i) for i in prediction_ids]
    label_ids = [str(i) for i in label_ids]
    for what, ids in (("prediction", prediction_ids), ("label", label_ids)):
        if len(set(ids)) != len(ids):
            seen: set[str] = set()
            duplicates = [i for i in ids if i in seen or seen.add(i)]
            raise ValueError(f"duplicated {what} ids, e.g. {duplicates[:5]}")
    position = {identifier: row for row, identifier in enumerate(label_ids)}
    missing = [i for i in prediction_ids if i not in position]
    if missing:
        raise ValueError(
            f"{len(missing)} of {len(prediction_ids)} prediction ids have no label, e.g. {missing[:5]}"
        )
    if require_all and len(prediction_ids) != len(label_ids):
        predicted = set(prediction_ids)
        unpredicted = [i for i in label_ids if i not in predicted]
        raise ValueError(f"{len(unpredicted)} labelled ids have no prediction, e.g. {unpredicted[:5]}")
    return np.array([position[i] for i in prediction_ids], dtype=np.int64)


# ---------------------------------------------------------------------------------------- ranking
def softmax(scores: np.ndarray, axis: int = -1) -> np.ndarray:
    """Numerically stable softmax (float64)."""
    scores = np.asarray(scores, dtype=np.float64)
    shifted = scores - scores.max(axis=axis, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=axis, keepdims=True)


def rank_top_n(values: np.ndarray, n: int) -> np.ndarray:
    """Indices of the ``n`` largest values per row, best first, ties broken by the lower index.

    Uses ``argpartition`` and falls back to a full stable sort for the rare rows whose ``n``-th value
    is tied with values outside the selection, so the result always equals
    ``np.argsort(-values, kind="stable")[:, :n]``.
    """
    values = np.asarray(values)
    rows, columns = values.shape
    n = min(n, columns)
    if n >= columns or columns <= 64:
        return np.argsort(-values, axis=1, kind="stable")[:, :n]
    selected = np.argpartition(-values, n - 1, axis=1)[:, :n]
    selected_values = np.take_along_axis(values, selected, axis=1)
    order = np.lexsort((selected, -selected_values), axis=-1)
    top = np.take_along_axis(selected, order, axis=1)
    top_values = np.take_along_axis(selected_values, order, axis=1)
    threshold = top_values[:, -1:]
    ties_total = (values == threshold).sum(axis=1)
    ties_selected = (top_values == threshold).sum(axis=1)
    for row in np.flatnonzero(ties_total != ties_selected):
        top[row] = np.argsort(-values[row], kind="stable")[:n]
    return top


def top_k_correct(scores: Any, labels: Any, ks: Iterable[int] = DEFAULT_KS, num_classes: int | None = None) -> dict[int, np.ndarray]:
    """Per-sample correctness flags ``{k: bool[N]}``: is the label among the k best-scored classes."""
    scores = validate_scores(scores, num_classes=num_classes)
    labels = validate_labels(labels, scores.shape[0], scores.shape[1])
    ks = _check_ks(ks)
    top = rank_top_n(scores, max(ks))
    hits = top == labels[:, None]
    return {k: hits[:, :k].any(axis=1) for k in ks}


def binomial_standard_error(accuracy_percent: float, num_samples: int) -> float:
    """Binomial standard error of an accuracy in percentage points: ``sqrt(p (100 - p) / n)``."""
    if num_samples <= 0:
        return float("nan")
    return math.sqrt(accuracy_percent * (100.0 - accuracy_percent) / num_samples)


def paired_bootstrap_difference(
    correct_a: Any, correct_b: Any, num_resamples: int = 10000, confidence: float = 0.95, seed: int = 0
) -> dict[str, float]:
    """How sure is "model A beats model B"? A paired, two-level bootstrap of an accuracy difference.

    Args:
        correct_a, correct_b: ``[runs, samples]`` booleans, whether A (B) is right on each evaluation sample, for
            several training runs (seeds) evaluated on the **same** samples (one row per run, same column order).
        num_resamples: bootstrap draws. Each draws runs with replacement and, independently, samples with
            replacement (the same samples for A and B and for every run: the pairing), and takes the mean
            difference, so both sources of noise, the training seed and the evaluation set, are in the interval.
        confidence: two-sided level of the percentile interval.
        seed: of the resampling.

    Returns:
        ``difference`` (percentage points, A - B, mean over runs and samples), ``low`` / ``high`` (the percentile
        interval), ``probability_not_better`` (fraction of draws with a difference <= 0), ``runs``, ``samples`` and
        ``discordant`` (% of run-sample pairs where exactly one of A and B is right: the only ones that count).
    """
    a = np.asarray(to_numpy(correct_a), dtype=bool)
    b = np.asarray(to_numpy(correct_b), dtype=bool)
    if a.ndim == 1:
        a, b = a[None], b[None]
    if a.shape != b.shape or a.ndim != 2 or a.size == 0:
        raise ValueError(f"correct_a and correct_b must be [runs, samples] of one shape, got {a.shape} and {b.shape}")
    if not 0.0 < confidence < 1.0 or num_resamples < 1:
        raise ValueError(f"need 0 < confidence < 1 and num_resamples >= 1, got {confidence}, {num_resamples}")
    diff = a.astype(np.float64) - b.astype(np.float64)  # [R, N] in {-1, 0, 1}
    runs, samples = diff.shape
    rng = np.random.default_rng(seed)
    draws = np.empty(num_resamples)
    for start in range(0, num_resamples, 256):  # in chunks: [chunk, R, N] index arrays stay small
        k = min(256, num_resamples - start)
        run_idx = rng.integers(0, runs, size=(k, runs))
        sample_idx = rng.integers(0, samples, size=(k, samples))
        picked = diff[run_idx[:, :, None], sample_idx[:, None, :]]  # [k, R, N]
        draws[start:start + k] = picked.mean(axis=(1, 2))
    tail = (1.0 - confidence) / 2.0
    low, high = np.quantile(draws, [tail, 1.0 - tail])
    return {
        "difference": 100.0 * float(diff.mean()),
        "low": 100.0 * float(low),
        "high": 100.0 * float(high),
        "probability_not_better": float(np.mean(draws <= 0.0)),
        "confidence": confidence,
        "runs": runs,
        "samples": samples,
        "discordant": 100.0 * float(np.mean(a != b)),
    }


def _summarise(flags: np.ndarray, prefix: str) -> dict[str, float]:
    accuracy = 100.0 * float(np.mean(flags))
    return {prefix: accuracy, f"{prefix}_se": binomial_standard_error(accuracy, int(flags.size))}


def _check_ks(ks: Iterable[int]) -> tuple[int, ...]:
    ks = tuple(int(k) for k in ([ks] if isinstance(ks, int) else ks))
    if not ks or any(k < 1 for k in ks):
        raise ValueError(f"ks must be positive integers, got {ks}")
    return ks


def top_k_accuracy(scores: Any, labels: Any, ks: Iterable[int] = DEFAULT_KS, num_classes: int | None = None) -> dict[str, float]:
    """Top-k accuracies (%) with binomial standard errors.

    Returns:
        ``{"top1_acc", "top1_acc_se", "top5_acc", "top5_acc_se", ..., "num_samples"}``. A ``k`` at least
        the number of classes gives 100 %.
    """
    flags = top_k_correct(scores, labels, ks, num_classes=num_classes)
    result: dict[str, float] = {}
    for k, correct in flags.items():
        result.update(_summarise(correct, f"top{k}_acc"))
    result["num_samples"] = int(next(iter(flags.values())).size)
    return result


def something_something_metrics(scores: Any, labels: Any, num_classes: int | None = None) -> dict[str, float]:
    """Something-Something v2 / Something-Else metrics: top-1 and top-5 of the ``action`` head."""
    return top_k_accuracy(scores, labels, ks=(1, 5), num_classes=num_classes)


# ------------------------------------------------------------------------------------------ EPIC
def action_id_from_verb_noun(verb: Any, noun: Any) -> Any:
    """EPIC action id of a (verb, noun) pair: ``verb * 1000 + noun`` (official convention)."""
    return np.asarray(verb, dtype=np.int64) * ACTION_VERB_MULTIPLIER + np.asarray(noun, dtype=np.int64)


def compute_action_scores(
    verb_scores: Any, noun_scores: Any, top_n: int = EPIC_ACTION_TOP_N
) -> tuple[np.ndarray, np.ndarray]:
    """Rank (verb, noun) pairs as the official EPIC-KITCHENS-100 evaluation does.

    Args:
        verb_scores: ``[N, V]`` verb scores (logits or probabilities; the top ``top_n`` are softmaxed).
        noun_scores: ``[N, M]`` noun scores.
        top_n: how many verbs, nouns and resulting pairs to keep (100 officially).

    Returns:
        ``(action_ids [N, top_n'], action_probs [N, top_n'])`` best first, ``top_n' = min(top_n,
        pairs)``. Ties between pairs keep the (verb rank, noun rank) order.
    """
    verb_scores = validate_scores(verb_scores, "verb_scores")
    noun_scores = validate_scores(noun_scores, "noun_scores")
    if verb_scores.shape[0] != noun_scores.shape[0]:
        raise ValueError(
            f"verb_scores has {verb_scores.shape[0]} samples but noun_scores has {noun_scores.shape[0]}"
        )
    top_verbs = rank_top_n(verb_scores, top_n)
    top_nouns = rank_top_n(noun_scores, top_n)
    verb_probs = softmax(np.take_along_axis(verb_scores, top_verbs, axis=1))
    noun_probs = softmax(np.take_along_axis(noun_scores, top_nouns, axis=1))
    num_verbs, num_nouns = top_verbs.shape[1], top_nouns.shape[1]
    keep = min(top_n, num_verbs * num_nouns)
    # The pair of verb rank i and noun rank j is beaten or tied by every (i' <= i, j' <= j) pair, all of
    # which come first in flattened (i * num_nouns + j) order, so only pairs with (i+1)(j+1) <= top_n can
    # reach the top ``top_n``: ~480 candidates instead of 10,000, kept in flattened order for ties.
    verb_rank, noun_rank = np.divmod(np.arange(num_verbs * num_nouns), num_nouns)
    candidate = (verb_rank + 1) * (noun_rank + 1) <= max(top_n, 1)
    verb_rank, noun_rank = verb_rank[candidate], noun_rank[candidate]
    pair_probs = verb_probs[:, verb_rank] * noun_probs[:, noun_rank]
    best = rank_top_n(pair_probs, keep)
    ids = action_id_from_verb_noun(
        np.take_along_axis(top_verbs, verb_rank[best], axis=1),
        np.take_along_axis(top_nouns, noun_rank[best], axis=1),
    )
    probs = np.take_along_axis(pair_probs, best, axis=1)
    return ids, probs


def _subset_block(
    name: str, task: str, mask: np.ndarray, hits: np.ndarray, ks: tuple[int, ...]
) -> dict[str, Any]:
    out: dict[str, Any] = {f"{name}_{task}_num_samples": int(mask.sum())}
    for k in ks:
        key = f"{name}_{task}_accuracy_at_{k}"
        if mask.sum() == 0:
            out[key] = None
            out[f"{key}_se"] = None
        else:
            out.update(_summarise(hits[mask, :k].any(axis=1), key))
    return out


def epic_action_recognition_metrics(
    verb_scores: Any,
    noun_scores: Any,
    verb_labels: Any,
    noun_labels: Any,
    *,
    participant_ids: Sequence[str] | None = None,
    tail_verbs: Iterable[int] = (),
    tail_nouns: Iterable[int] = (),
    unseen_participants: Iterable[str] = (),
    num_verbs: int | None = None,
    num_nouns: int | None = None,
    ks: Iterable[int] = DEFAULT_KS,
    top_n: int = EPIC_ACTION_TOP_N,
    tail_verb_mask: Any = None,
    tail_noun_mask: Any = None,
    unseen_mask: Any = None,
) -> dict[str, Any]:
    """EPIC-KITCHENS-100 action recognition metrics, the official way (see the module docstring).

    Args:
        verb_scores / noun_scores: ``[N, 97]`` / ``[N, 300]`` view-reduced scores.
        verb_labels / noun_labels: ``[N]`` ground-truth class ids.
        participant_ids: ``[N]`` participant of each segment (e.g. ``"P01"``); ``None`` skips ``unseen``.
        tail_verbs / tail_nouns: tail class ids (``EPIC_100_tail_{verbs,nouns}.csv``); empty skips
            ``tail``.
        unseen_participants: ids from ``EPIC_100_unseen_participant_ids_<split>.csv``.
        num_verbs / num_nouns: expected class counts (the dataset's); checked when given.
        ks: k values (1 and 5 officially).
        top_n: action ranking depth (100 officially).
        tail_verb_mask / tail_noun_mask / unseen_mask: per-segment booleans that replace the class and
            participant lists (e.g. the ``tail_verb`` / ``unseen_participant`` columns of the dataset).

    Returns:
        A flat dict: ``{split}_{task}_accuracy_at_{k}`` (%) and ``..._se`` for split in all/tail/unseen
        and task in verb/noun/action, plus ``{split}_{task}_num_samples``. Empty subsets hold ``None``.
    """
    ks = _check_ks(ks)
    verb_scores = validate_scores(verb_scores, "verb_scores", num_verbs)
    noun_scores = validate_scores(noun_scores, "noun_scores", num_nouns)
    if verb_scores.shape[0] != noun_scores.shape[0]:
        raise ValueError(
            f"verb_scores has {verb_scores.shape[0]} samples but noun_scores has {noun_scores.shape[0]}"
        )
    n = verb_scores.shape[0]
    verb_labels = validate_labels(verb_labels, n, verb_scores.shape[1], "verb_labels")
    noun_labels = validate_labels(noun_labels, n, noun_scores.shape[1], "noun_labels")
    max_k = max(ks)
    if max_k > top_n:
        raise ValueError(f"k={max_k} exceeds the action ranking depth top_n={top_n}")

    hits = {
        "verb": rank_top_n(verb_scores, max_k) == verb_labels[:, None],
        "noun": rank_top_n(noun_scores, max_k) == noun_labels[:, None],
    }
    action_ids, _ = compute_action_scores(verb_scores, noun_scores, top_n=top_n)
    action_labels = action_id_from_verb_noun(verb_labels, noun_labels)
    hits["action"] = action_ids[:, :max_k] == action_labels[:, None]
    hits = {task: _pad_hits(h, max_k) for task, h in hits.items()}

    everything = np.ones(n, dtype=bool)
    result: dict[str, Any] = {}
    for task in ("verb", "noun", "action"):
        result.update(_subset_block("all", task, everything, hits[task], ks))

    def as_mask(mask: Any, name: str) -> np.ndarray:
        mask = np.asarray(to_numpy(mask), dtype=bool)
        if mask.shape != (n,):
            raise ValueError(f"{name}: expected {n} booleans (one per prediction), got shape {mask.shape}")
        return mask

    tail_verbs = np.asarray(sorted({int(v) for v in tail_verbs}), dtype=np.int64)
    tail_nouns = np.asarray(sorted({int(v) for v in tail_nouns}), dtype=np.int64)
    if tail_verb_mask is not None or tail_noun_mask is not None or tail_verbs.size or tail_nouns.size:
        verb_mask = as_mask(tail_verb_mask, "tail_verb_mask") if tail_verb_mask is not None else np.isin(verb_labels, tail_verbs)
        noun_mask = as_mask(tail_noun_mask, "tail_noun_mask") if tail_noun_mask is not None else np.isin(noun_labels, tail_nouns)
        masks = {"verb": verb_mask, "noun": noun_mask, "action": verb_mask | noun_mask}
        for task, mask in masks.items():
            if not mask.any():
                warnings.warn(f"EPIC metrics: no segment has a tail {task}; tail_{task} accuracies are None")
            result.update(_subset_block("tail", task, mask, hits[task], ks))

    if unseen_mask is not None:
        unseen = as_mask(unseen_mask, "unseen_mask")
    elif participant_ids is not None:
        participant_ids = np.asarray([str(p) for p in participant_ids])
        if participant_ids.shape[0] != n:
            raise ValueError(f"participant_ids: expected {n} ids (one per prediction), got {participant_ids.shape[0]}")
        unseen = np.isin(participant_ids, np.asarray([str(p) for p in unseen_participants]))
    else:
        unseen = None
    if unseen is not None:
        if not unseen.any():
            warnings.warn("EPIC metrics: there are no unseen-participant segments to evaluate; unseen accuracies are None")
        for task in ("verb", "noun", "action"):
            result.update(_subset_block("unseen", task, unseen, hits[task], ks))
    return result


def _pad_hits(hits: np.ndarray, width: int) -> np.ndarray:
    if hits.shape[1] >= width:
        return hits
    return np.pad(hits, ((0, 0), (0, width - hits.shape[1])), constant_values=False)


class EpicAnnotations:
    """The official EPIC-KITCHENS-100 label files needed by the metrics.

    Attributes:
        labels: DataFrame indexed by ``narration_id`` with ``participant_id``, ``verb_class``,
            ``noun_class`` (``None`` when no label CSV was given).
        tail_verbs / tail_nouns: tail class ids.
        unseen_participants: unseen participant ids of the split.
    """

    def __init__(self, labels, tail_verbs, tail_nouns, unseen_participants):
        self.labels = labels
        self.tail_verbs = list(tail_verbs)
        self.tail_nouns = list(tail_nouns)
        self.unseen_participants = list(unseen_participants)


def _read_id_column(path: Path, column: str, as_int: bool) -> list:
    import pandas as pd

    frame = pd.read_csv(path)
    if column not in frame.columns:
        raise ValueError(f"{path}: expected a '{column}' header column, found {list(frame.columns)}")
    values = frame[column].dropna()
    return [int(v) for v in values] if as_int else [str(v) for v in values]


def load_epic_annotations(annotations_dir: str | Path, split: str = "validation", labels_csv: str | Path | None = None) -> EpicAnnotations:
    """Read the tail lists, the unseen participants and (when present) the split's label CSV.

    Args:
        annotations_dir: a clone of ``epic-kitchens-100-annotations``.
        split: ``validation`` or ``test`` (names the unseen-participant file and the label CSV).
        labels_csv: explicit label CSV; default ``EPIC_100_<split>.csv`` in ``annotations_dir`` if it exists.
    """
    import pandas as pd

    root = Path(annotations_dir)
    required = {
        "tail verbs": root / "EPIC_100_tail_verbs.csv",
        "tail nouns": root / "EPIC_100_tail_nouns.csv",
        "unseen participants": root / f"EPIC_100_unseen_participant_ids_{split}.csv",
    }
    for what, path in required.items():
        if not path.is_file():
            raise FileNotFoundError(f"EPIC {what} file not found: {path}")
    labels_path = Path(labels_csv) if labels_csv is not None else root / f"EPIC_100_{split}.csv"
    labels = None
    if labels_path.is_file():
        labels = pd.read_csv(labels_path)
        for column in ("narration_id", "participant_id", "verb_class", "noun_class"):
            if column not in labels.columns:
                raise ValueError(f"{labels_path}: missing column '{column}'")
        labels = labels.set_index("narration_id", drop=False)
    elif labels_csv is not None:
        raise FileNotFoundError(f"EPIC label CSV not found: {labels_path}")
    return EpicAnnotations(
        labels=labels,
        tail_verbs=_read_id_column(required["tail verbs"], "verb", True),
        tail_nouns=_read_id_column(required["tail nouns"], "noun", True),
        unseen_participants=_read_id_column(required["unseen participants"], "participant_id", False),
    )


def evaluate_epic_predictions(
    narration_ids: Sequence[str],
    verb_scores: Any,
    noun_scores: Any,
    annotations: EpicAnnotations,
    *,
    require_all: bool = False,
    **kwargs: Any,
) -> dict[str, Any]:
    """Official metrics for predictions keyed by ``narration_id`` against the annotation label CSV.

    Like the official script, the labels of the predicted ids are looked up (``labels.loc[ids]``);
    an id without a label raises ``ValueError``. ``require_all`` also requires every label to be predicted.
    """
    if annotations.labels is None:
        raise ValueError("evaluate_epic_predictions needs annotations with a label CSV")
    labels = annotations.labels
    rows = align_to_ids(narration_ids, labels["narration_id"].astype(str).tolist(), require_all=require_all)
    selected = labels.iloc[rows]
    return epic_action_recognition_metrics(
        verb_scores,
        noun_scores,
        selected["verb_class"].to_numpy(),
        selected["noun_class"].to_numpy(),
        participant_ids=selected["participant_id"].astype(str).tolist(),
        tail_verbs=annotations.tail_verbs,
        tail_nouns=annotations.tail_nouns,
        unseen_participants=annotations.unseen_participants,
        **kwargs,
    )


# ---------------------------------------------------------------------------------- distillation
def distillation_diagnostics(student_logits: Any, teacher_logits: Any, temperature: float = 1.0) -> dict[str, float]:
    """Student-teacher agreement for one head.

    Returns:
        ``top1_agreement`` (% of samples whose argmax agrees, ties to the lower index) and
        ``mean_kl_teacher_student`` = mean over samples of ``KL(softmax(t/T) || softmax(s/T))`` in nats.
    """
    student = validate_scores(student_logits, "student_logits")
    teacher = validate_scores(teacher_logits, "teacher_logits", student.shape[1])
    if student.shape[0] != teacher.shape[0]:
        raise ValueError(f"student has {student.shape[0]} samples but teacher has {teacher.shape[0]}")
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    agreement = 100.0 * float(np.mean(student.argmax(axis=1) == teacher.argmax(axis=1)))
    log_p_teacher = _log_softmax(teacher / temperature)
    log_p_student = _log_softmax(student / temperature)
    kl = (np.exp(log_p_teacher) * (log_p_teacher - log_p_student)).sum(axis=1)
    return {"top1_agreement": agreement, "mean_kl_teacher_student": float(kl.mean()), "num_samples": int(student.shape[0])}


def _log_softmax(scores: np.ndarray) -> np.ndarray:
    shifted = scores - scores.max(axis=1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))


def per_head_distillation_diagnostics(student: Mapping[str, Any], teacher: Mapping[str, Any], temperature: float = 1.0) -> dict[str, dict[str, float]]:
    """:func:`distillation_diagnostics` for every head the two dicts share."""
    shared = [head for head in student if head in teacher]
    if not shared:
        raise ValueError(f"no common head: student {list(student)}, teacher {list(teacher)}")
    return {head: distillation_diagnostics(student[head], teacher[head], temperature) for head in shared}
