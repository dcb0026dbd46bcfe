"""Monitoring checks of served models, as the store keeps them.

Reached as :attr:`Store.monitoring <nbmlops.store.Store.monitoring>`. One row per check
(``nbmlops monitor``, ``nbmlops.drift_report``, a drift trigger's poll): the figures lists and
triggers filter on, plus the whole report as JSON for the panel's drift-over-time chart.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from ..errors import InvalidArgumentError, NotFoundError
from .engine import SessionManager
from .entities import MonitorResult
from .models import MonitorResultRow

__all__ = ["MonitorRepo"]


def _result(row: MonitorResultRow) -> MonitorResult:
    return MonitorResult(
        id=row.id, model=row.model, alias=row.alias, version=row.version,
        created_at=row.created_at, source=row.source, window=row.window_spec, rows=row.rows,
        labeled_rows=row.labeled_rows, score=row.score, drifted=bool(row.drifted),
        threshold=row.threshold, report=dict(row.report or {}),
    )


def _json_safe(value: Any) -> Any:
    """JSON without NaN/Infinity (PostgreSQL's json type refuses them): non-finite -> None."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    return value


class MonitorRepo:
    """The store's ``monitor_results`` table."""

    def __init__(self, sessions: SessionManager) -> None:
        self._sessions = sessions

    def record(
        self,
        *,
        model: str,
        version: int,
        score: float,
        drifted: bool,
        rows: int,
        labeled_rows: int = 0,
        alias: str | None = None,
        source: str = "cli",
        window: str | None = None,
        threshold: float | None = None,
        report: Mapping[str, Any] | None = None,
        created_at: float | None = None,
    ) -> MonitorResult:
        """Record one check; returns it with its id."""
        if not model:
            raise InvalidArgumentError("a monitor result needs a model name")
        score = float(score)
        if not math.isfinite(score):
            score = 0.0

        def work(s: Session) -> MonitorResult:
            row = MonitorResultRow(
                model=model, alias=alias or None, version=int(version),
                created_at=time.time() if created_at is None else float(created_at),
                source=(source or "cli")[:255], window_spec=window, rows=int(rows),
                labeled_rows=int(labeled_rows), score=score, drifted=bool(drifted),
                threshold=None if threshold is None else float(threshold),
                report=_json_safe(dict(report or {})),
            )
            s.add(row)
            s.flush()
            return _result(row)

        return self._sessions.write(work)

    def list(
        self,
        model: str | None = None,
        *,
        limit: int = 50,
        version: int | None = None,
        since: float | None = None,
        with_report: bool = True,
    ) -> list[MonitorResult]:
        """Checks, newest first; ``with_report=False`` leaves the (large) report out."""
        if limit < 1:
            raise InvalidArgumentError(f"limit must be a positive integer, got {limit}")
        with self._sessions.read() as s:
            query = select(MonitorResultRow)
            if model is not None:
                query = query.where(MonitorResultRow.model == model)
            if version is not None:
                query = query.where(MonitorResultRow.version == int(version))
            if since is not None:
                query = query.where(MonitorResultRow.created_at >= float(since))
            if not with_report:
                from sqlalchemy.orm import defer

                query = query.options(defer(MonitorResultRow.report))
            rows = s.scalars(query.order_by(MonitorResultRow.id.desc()).limit(limit))
            if with_report:
                return [_result(r) for r in rows]
            out = []
            for r in rows:
                out.append(MonitorResult(
                    id=r.id, model=r.model, alias=r.alias, version=r.version,
                    created_at=r.created_at, source=r.source, window=r.window_spec, rows=r.rows,
                    labeled_rows=r.labeled_rows, score=r.score, drifted=bool(r.drifted),
                    threshold=r.threshold, report={}))
            return out

    def get(self, result_id: int) -> MonitorResult:
        with self._sessions.read() as s:
            row = s.get(MonitorResultRow, int(result_id))
            if row is None:
                raise NotFoundError(f"no monitor result {result_id}")
            return _result(row)
