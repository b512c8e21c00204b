"""Narration noise: training narrations that name the other verb or the other noun of a pair, as EPIC-KITCHENS-100's
free-form narrations sometimes do.

Mini-kitchens verbs come in pairs that differ only in direction (take/put, push/pull, open/close, shake/stir: class
ids ``2k`` and ``2k + 1``) and nouns in pairs of the same shape (plate/bowl, box/sponge, bottle/jar, board/tray,
cheese/pizza). With probability ``verb_rate`` a training narration names the other verb of its pair, as an
annotator who misjudges the direction would, and with probability ``noun_rate`` (drawn independently) the other
noun of its pair, as one who mistakes a plate for a bowl would. The pixels, flow, sound and boxes still show the
true action and the validation narrations stay exact, so the training labels are uncertain *given every
modality*: the situation in which a teacher ensemble's soft targets carry less noise than the labels (Radevski et
al., ICCV 2023, section 4; docs/training.md, "Which labels make distillation pay?").
"""

from __future__ import annotations

from typing import Any, Mapping, MutableMapping, Sequence

import numpy as np


def _flip_to_partner(row: MutableMapping[str, Any], head: str, keys: Mapping[int, str]) -> None:
    """Rename one annotation row's ``head`` (``verb`` or ``noun``) to the other class of its pair."""
    partner = int(row[f"{head}_class"]) ^ 1
    if partner not in keys:
        raise ValueError(f"{row.get('narration_id')}: {head} class {row[f'{head}_class']} has no pair partner {partner}")
    row[f"{head}_class"], row[head] = partner, keys[partner]
    if head == "noun" and "all_nouns" in row:
        row["all_nouns"], row["all_noun_classes"] = str([keys[partner]]), str([partner])
    row["narration"] = f"{row['verb']} {row['noun']}"


def confuse_pairs(rows: Sequence[MutableMapping[str, Any]], verb_keys: Mapping[int, str], verb_rate: float,
                  seed: int, noun_keys: Mapping[int, str] | None = None, noun_rate: float = 0.0) -> tuple[int, int]:
    """In place: each row's verb becomes the other verb of its pair with probability ``verb_rate`` and, drawn
    independently, its noun the other noun of its pair with probability ``noun_rate``. Returns
    ``(verbs confused, nouns confused)``.

    The draws come from ``numpy.random.default_rng(seed)``, all verb draws first, so the same seed confuses the same
    verbs with or without noun noise.
    """
    for name, rate in (("verb rate", verb_rate), ("noun rate", noun_rate)):
        if not 0.0 <= float(rate) <= 1.0:
            raise ValueError(f"narration noise: the {name} must be in [0, 1], given {rate}")
    if noun_rate > 0 and not noun_keys:
        raise ValueError("narration noise: a noun rate > 0 needs the noun classes")
    rng = np.random.default_rng(seed)
    verb_flips = rng.random(len(rows)) < verb_rate
    noun_flips = rng.random(len(rows)) < noun_rate if noun_rate > 0 else np.zeros(len(rows), dtype=bool)
    for row, verb_flip, noun_flip in zip(rows, verb_flips, noun_flips):
        if verb_flip:
            _flip_to_partner(row, "verb", verb_keys)
        if noun_flip:
            _flip_to_partner(row, "noun", noun_keys or {})
    return int(verb_flips.sum()), int(noun_flips.sum())


def parse_narration_noise(value: str | float | Sequence[float]) -> tuple[float, float]:
    """``"0.3"`` -> ``(0.3, 0.3)`` (both heads), ``"0.3,0"`` -> ``(0.3, 0.0)`` (verb, noun); ``0`` turns it off."""
    if isinstance(value, (int, float)):
        parts = [float(value)]
    elif isinstance(value, str):
        try:
            parts = [float(p) for p in value.replace(" ", "").split(",") if p != ""]
        except ValueError:
            raise ValueError(f"narration noise: expected RATE or VERB_RATE,NOUN_RATE (numbers in [0, 1]), "
                             f"given {value!r}") from None
    else:
        parts = [float(p) for p in value]
    if len(parts) == 1:
        parts = parts * 2
    if len(parts) != 2 or not all(0.0 <= p <= 1.0 for p in parts):
        raise ValueError(f"narration noise: expected RATE or VERB_RATE,NOUN_RATE with rates in [0, 1], given {value!r}")
    return parts[0], parts[1]


__all__ = ["confuse_pairs", "parse_narration_noise"]
