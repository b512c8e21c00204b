"""Offline `evaluate` metric modules shipped with the package.

    import evaluate, mmkd_hf.metrics
    epic = evaluate.load(mmkd_hf.metrics.EPIC_ACTION_RECOGNITION)

The plain functions behind them live in :mod:`mmkd_hf.evaluation.metrics` and
:mod:`mmkd_hf.evaluation.calibration`.
"""

from .evaluation import CALIBRATION_ERROR, EPIC_ACTION_RECOGNITION, METRIC_MODULES, TOP_K_ACCURACY

__all__ = ["CALIBRATION_ERROR", "EPIC_ACTION_RECOGNITION", "METRIC_MODULES", "TOP_K_ACCURACY"]
