"""Monitoring of served models: the prediction log (``predlog``), drift/performance checks
against the training data (``monitor``) and their reports (``report``). Core: no UI imports;
pandas/pyarrow/scikit-learn are imported when a function needs them, not here.

``nbmlops.monitoring.monitor`` is the function (imported here, so the submodule of the same
name never shadows it); the module is ``nbmlops.monitoring.monitor`` in ``sys.modules``."""

from __future__ import annotations

from .monitor import MonitorReport, monitor, parse_window
from .predlog import PredictionLogWriter, read_labels, read_predictions, write_labels

__all__ = ["MonitorReport", "PredictionLogWriter", "monitor", "parse_window", "read_labels",
           "read_predictions", "write_labels"]
