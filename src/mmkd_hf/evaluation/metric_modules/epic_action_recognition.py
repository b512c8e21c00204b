"""EPIC-KITCHENS-100 action recognition metrics, as an offline ``evaluate`` module.

Wraps :func:`mmkd_hf.evaluation.metrics.epic_action_recognition_metrics`: verb, noun and action top-1
/ top-5 overall, on tail classes and on unseen participants, with the action ranking of the official
challenge (product of the softmaxed top-100 verb and noun scores).
"""

import datasets
import evaluate
from mmkd_hf.evaluation.metrics import epic_action_recognition_metrics
from mmkd_hf.evaluation.metrics import load_epic_annotations

_DESCRIPTION = "EPIC-KITCHENS-100 action recognition accuracies (official definitions)."

_KWARGS_DESCRIPTION = """
Args:
    verb_predictions: per-segment verb scores (97 floats).
    noun_predictions: per-segment noun scores (300 floats).
    verb_references / noun_references: ground-truth class ids.
    participant_ids: participant of each segment ("" when unknown: no unseen-participant metrics).
    annotations_dir: optional clone of epic-kitchens-100-annotations; gives the tail lists and the
        unseen participants of `split` unless they are passed explicitly.
    split: "validation" (default) or "test".
    tail_verbs / tail_nouns / unseen_participants: explicit lists.
    num_verbs / num_nouns: expected class counts.
Returns:
    {split}_{task}_accuracy_at_{k} (percent), ..._se and {split}_{task}_num_samples for split in
    all/tail/unseen, task in verb/noun/action, k in (1, 5).
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class EpicActionRecognition(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation="Damen et al., Rescaling Egocentric Vision, IJCV 2022",
            inputs_description=_KWARGS_DESCRIPTION,
            reference_urls=["https://github.com/epic-kitchens/C1-Action-Recognition"],
            features=datasets.Features(
                {
                    "verb_predictions": datasets.Sequence(datasets.Value("float64")),
                    "noun_predictions": datasets.Sequence(datasets.Value("float64")),
                    "verb_references": datasets.Value("int64"),
                    "noun_references": datasets.Value("int64"),
                    "participant_ids": datasets.Value("string"),
                }
            ),
        )

    def _compute(
        self,
        verb_predictions,
        noun_predictions,
        verb_references,
        noun_references,
        participant_ids,
        annotations_dir=None,
        split="validation",
        tail_verbs=None,
        tail_nouns=None,
        unseen_participants=None,
        num_verbs=None,
        num_nouns=None,
    ):
        if annotations_dir is not None:
            annotations = load_epic_annotations(annotations_dir, split)
            tail_verbs = annotations.tail_verbs if tail_verbs is None else tail_verbs
            tail_nouns = annotations.tail_nouns if tail_nouns is None else tail_nouns
            if unseen_participants is None:
                unseen_participants = annotations.unseen_participants
        known = [p for p in participant_ids if p]
        if known and len(known) != len(participant_ids):
            raise ValueError("participant_ids: give every segment's participant or none (all empty strings)")
        return epic_action_recognition_metrics(
            verb_predictions,
            noun_predictions,
            verb_references,
            noun_references,
            participant_ids=list(participant_ids) if known else None,
            tail_verbs=tail_verbs or (),
            tail_nouns=tail_nouns or (),
            unseen_participants=unseen_participants or (),
            num_verbs=num_verbs,
            num_nouns=num_nouns,
        )
