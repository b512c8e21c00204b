"""Evaluation: official metrics, calibration, multi-view reduction, views versus latency, exports and compute profiles.

The metrics also exist as offline ``evaluate`` modules; load one with its file path::

    import evaluate
    from mmkd_hf.evaluation import EPIC_ACTION_RECOGNITION
    metric = evaluate.load(EPIC_ACTION_RECOGNITION)
"""

from __future__ import annotations

from pathlib import Path

from .calibration import calibration_metrics, fit_temperature, negative_log_likelihood, temperature_scaling_report
from .metrics import (
    distillation_diagnostics,
    epic_action_recognition_metrics,
    something_something_metrics,
    top_k_accuracy,
)
from .multiview import fold_views, reduce_views, unfold_views
from .run import evaluate_model
from .views import dataset_with_views, evaluate_views_grid, measure_latency, views_report

_MODULE_DIR = Path(__file__).resolve().parent / "metric_modules"

#: Paths of the offline ``evaluate`` metric modules (``evaluate.load(path)``).
EPIC_ACTION_RECOGNITION = str(_MODULE_DIR / "epic_action_recognition.py")
TOP_K_ACCURACY = str(_MODULE_DIR / "top_k_accuracy.py")
CALIBRATION_ERROR = str(_MODULE_DIR / "calibration_error.py")
METRIC_MODULES = {
    "epic_action_recognition": EPIC_ACTION_RECOGNITION,
    "top_k_accuracy": TOP_K_ACCURACY,
    "calibration_error": CALIBRATION_ERROR,
}

__all__ = [
    "CALIBRATION_ERROR",
    "EPIC_ACTION_RECOGNITION",
    "METRIC_MODULES",
    "TOP_K_ACCURACY",
    "calibration_metrics",
    "dataset_with_views",
    "distillation_diagnostics",
    "epic_action_recognition_metrics",
    "evaluate_model",
    "evaluate_views_grid",
    "fit_temperature",
    "fold_views",
    "measure_latency",
    "negative_log_likelihood",
    "reduce_views",
    "something_something_metrics",
    "temperature_scaling_report",
    "top_k_accuracy",
    "unfold_views",
    "views_report",
]
