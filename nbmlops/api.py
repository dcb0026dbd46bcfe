"""Explicit logging calls for notebook code: ``nbmlops.log_param(...)`` and friends.

They write into the current capture session's run (attached to the executing cell). Outside
a session they raise :class:`~nbmlops.errors.InvalidArgumentError` with the fix.
"""

from __future__ import annotations

import os
from typing import Any

from .errors import InvalidArgumentError

__all__ = ["log_param", "log_params", "log_metric", "log_metrics", "log_artifact", "set_tag", "set_tags",
           "drift_report"]


def _session() -> Any:
    from .capture.session import active_session

    session = active_session()
    if session is None or session.run_id is None:
        raise InvalidArgumentError(
            "no nbmlops run is active in this kernel: run `%load_ext nbmlops` (or `%mlops start`)"
        )
    return session


def log_param(key: str, value: Any) -> None:
    """Record one parameter of the current run (values of secret-looking keys are redacted)."""
    _session().log_params({str(key): value})


def log_params(params: dict[str, Any]) -> None:
    _session().log_params({str(k): v for k, v in params.items()})


def log_metric(key: str, value: float, step: int | None = None) -> None:
    """Record a metric value; repeated calls build its history (``step`` 0, 1, 2...)."""
    _session().log_metric(str(key), value, step)


def log_metrics(metrics: dict[str, float], step: int | None = None) -> None:
    session = _session()
    for k, v in metrics.items():
        session.log_metric(str(k), v, step)


def set_tag(key: str, value: Any) -> None:
    _session().set_tags({str(key): value})


def set_tags(tags: dict[str, Any]) -> None:
    _session().set_tags({str(k): v for k, v in tags.items()})


def log_artifact(path: str | os.PathLike[str], kind: str = "file") -> None:
    """Copy a file into the store's content-addressed artifact directory, linked to this cell."""
    _session().log_artifact(path, kind)


def drift_report(target: str, window: str | None = None, *,
                 reference: str | os.PathLike[str] | None = None,
                 threshold: float | None = None, min_rows: int = 1, record: bool = True,
                 store: Any = None) -> Any:
    """Drift, prediction drift and performance of a served model's logged traffic against its
    training data (``target``: ``NAME@ALIAS``, ``NAME/VERSION`` or ``NAME``; ``window``: ``"1h"``,
    ``"30m"``, ``"10000"`` rows, None for everything logged). Returns a
    :class:`~nbmlops.monitoring.monitor.MonitorReport`: a notebook shows it with per-feature
    histograms (reference vs current); ``.text()``, ``.to_dict()``, ``.save_html(path)``.
    Recorded in the store unless ``record=False``."""
    from .monitoring.monitor import monitor

    if store is None:
        from .query import default_store

        store = default_store()
    return monitor(store, target, window=window, reference=reference, threshold=threshold,
                   min_rows=min_rows, record=record, source="notebook")
