"""Top-k accuracy (%) with binomial standard errors, as an offline ``evaluate`` module.

Wraps :func:`mmkd_hf.evaluation.metrics.top_k_accuracy` (ties go to the lower class index).
"""

import datasets
import evaluate
from mmkd_hf.evaluation.metrics import top_k_accuracy

_DESCRIPTION = "Top-k accuracy in percent with binomial standard errors sqrt(p(100-p)/n)."

_KWARGS_DESCRIPTION = """
Args:
    predictions: per-sample class scores (logits or probabilities), one list of C floats each.
    references: per-sample ground-truth class ids.
    ks: k values (default (1, 5)).
    num_classes: expected class count (checked when given).
Returns:
    top{k}_acc, top{k}_acc_se for each k, and num_samples.
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class TopKAccuracy(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation="",
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features(
                {"predictions": datasets.Sequence(datasets.Value("float64")), "references": datasets.Value("int64")}
            ),
        )

    def _compute(self, predictions, references, ks=(1, 5), num_classes=None):
        return top_k_accuracy(predictions, references, ks=ks, num_classes=num_classes)
