"""Monitoring of served models: the prediction log (``predlog``) and drift/performance checks
against the training data (``monitor``). Core: no UI imports; pandas/pyarrow imported lazily."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from nbmlops.monitoring.monitor import MonitorReport, monitor
    from nbmlops.monitoring.predlog import PredictionLogWriter, read_predictions, write_labels

__all__ = ["MonitorReport", "PredictionLogWriter", "monitor", "read_predictions", "write_labels"]

_WHERE = {
    "MonitorReport": "nbmlops.monitoring.monitor",
    "monitor": "nbmlops.monitoring.monitor",
    "PredictionLogWriter": "nbmlops.monitoring.predlog",
    "read_predictions": "nbmlops.monitoring.predlog",
    "write_labels": "nbmlops.monitoring.predlog",
}


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'nbmlops.monitoring' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module), name)
