"""Read-side service functions every face (Python API, magics, CLI, server) calls.

They take an optional :class:`~nbmlops.store.Store`; without one they use the active capture
session's store, else the project's store found from the working directory.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from .store import CellExecution, Comparison, LineageGraph, Run, Store

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["default_store", "runs", "get_run", "lineage", "compare", "history", "runs_frame"]

_stores: dict[tuple[str, str], Store] = {}
_stores_lock = threading.Lock()


def default_store() -> Store:
    """The store of the active capture session, else the project's store (opened once)."""
    from .capture.session import active_session

    session = active_session()
    if session is not None:
        return session.store()
    from .config import resolve_location

    loc = resolve_location()
    key = (loc.url, str(loc.artifact_root))
    with _stores_lock:
        store = _stores.get(key)
        if store is None:
            store = _stores[key] = Store(loc)
        return store


def _current_run_id() -> str | None:
    from .capture.session import active_session

    session = active_session()
    return session.run_id if session is not None else None


def runs_frame(items: Sequence[Run]) -> pd.DataFrame:
    """One row per run; ``params.*``, ``metrics.*`` and ``tags.*`` columns like MLflow's."""
    import pandas as pd

    rows: list[dict[str, Any]] = []
    for r in items:
        row: dict[str, Any] = {
            "run_id": r.id,
            "name": r.name,
            "experiment": r.experiment,
            "status": r.status,
            "source": r.source,
            "notebook": r.notebook_path,
            "start_time": pd.to_datetime(r.start_time, unit="s", utc=True),
            "end_time": pd.to_datetime(r.end_time, unit="s", utc=True) if r.end_time else pd.NaT,
            "duration_s": r.duration,
            "cells": r.cell_count,
            "git_commit": r.git_commit,
            "parent_run_id": r.parent_run_id,
        }
        row.update({f"params.{k}": v for k, v in r.params.items()})
        row.update({f"metrics.{k}": v for k, v in r.metrics.items()})
        row.update({f"tags.{k}": v for k, v in r.tags.items()})
        rows.append(row)
    frame = pd.DataFrame(rows)
    if frame.empty:
        frame = pd.DataFrame(
            columns=["run_id", "name", "experiment", "status", "source", "notebook", "start_time",
                     "end_time", "duration_s", "cells", "git_commit", "parent_run_id"]
        )
    return frame


def runs(
    *,
    experiment: str | None = None,
    notebook: str | None = None,
    status: str | None = None,
    source: str | None = None,
    search: str | None = None,
    order_by: str = "start_time",
    descending: bool = True,
    limit: int = 100,
    offset: int = 0,
    store: Store | None = None,
) -> pd.DataFrame:
    """Runs as a pandas DataFrame, newest first, filtered and paged in SQL."""
    page = (store or default_store()).list_runs(
        experiment=experiment,
        notebook=notebook,
        status=status,
        source=source,
        search=search,
        order_by=order_by,
        descending=descending,
        limit=limit,
        offset=offset,
    )
    return runs_frame(page.runs)


def get_run(run_id: str | None = None, *, store: Store | None = None) -> Run:
    """One run by id or unique prefix; without an id, the current session's run."""
    from .errors import InvalidArgumentError

    rid = run_id or _current_run_id()
    if rid is None:
        raise InvalidArgumentError("no run id given and no capture session is active")
    return (store or default_store()).get_run(rid)


def history(run_id: str | None = None, *, store: Store | None = None) -> list[CellExecution]:
    """The cell executions of a run (default: the current session's run), in order."""
    from .errors import InvalidArgumentError

    rid = run_id or _current_run_id()
    if rid is None:
        raise InvalidArgumentError("no run id given and no capture session is active")
    return (store or default_store()).cell_executions(rid)


def lineage(
    target: str,
    *,
    run_id: str | None = None,
    direction: str = "upstream",
    store: Store | None = None,
) -> LineageGraph:
    """Lineage graph of a file path, ``artifact:ID``, ``cell:ID`` or a variable of a run."""
    return (store or default_store()).lineage(
        target, run_id=run_id or _current_run_id(), direction=direction
    )


def compare(run_ids: Sequence[str], *, store: Store | None = None) -> Comparison:
    """Params (with the differing ones named) and latest metrics of several runs side by side."""
    return (store or default_store()).compare(list(run_ids))
