"""Calibration error (ECE, MCE in %), NLL and Brier score, as an offline ``evaluate`` module.

Wraps :func:`mmkd_hf.evaluation.calibration.calibration_metrics`: 15 equal-width ``(lower, upper]``
bins over the max softmax probability (``src/utils/calibration.py`` of the authors' public code).
"""

import datasets
import evaluate
from mmkd_hf.evaluation.calibration import calibration_metrics

_DESCRIPTION = "Expected/maximum calibration error (15 equal-width bins), NLL and Brier score."

_KWARGS_DESCRIPTION = """
Args:
    predictions: per-sample class scores, one list of C floats each.
    references: per-sample ground-truth class ids.
    scores_are: "logits" (default) or "probs".
    num_bins: number of equal-width confidence bins (default 15).
Returns:
    ece, mce (percent), nll (nats), brier, mean_confidence, accuracy (percent), num_samples, num_bins.
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class CalibrationError(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation="",
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features(
                {"predictions": datasets.Sequence(datasets.Value("float64")), "references": datasets.Value("int64")}
            ),
        )

    def _compute(self, predictions, references, scores_are="logits", num_bins=15):
        return calibration_metrics(predictions, references, scores_are=scores_are, num_bins=num_bins)
