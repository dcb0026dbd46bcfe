"""Schedules, triggers, their fires and the scheduler lease, as the store keeps them.

Reached as :attr:`Store.schedules <nbmlops.store.Store.schedules>`. Every method is one short
transaction; the ones the scheduler depends on for exactly-once firing (:meth:`ScheduleRepo.fire`,
the lease calls) do their check and their change in the same write transaction, which is
serialised on SQLite (``BEGIN IMMEDIATE``) and uses conditional ``UPDATE``s on PostgreSQL.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from sqlalchemy import and_, delete, func, or_, select, update
from sqlalchemy.orm import Session

from ..errors import NotFoundError, ScheduleError
from .engine import SessionManager, insert_ignore
from .entities import Schedule, ScheduleFire, SchedulerLease
from .models import RunRow, ScheduleFireRow, SchedulerLeaseRow, ScheduleRow

__all__ = ["ScheduleRepo", "ENDED_RUN_STATUSES", "OPEN_FIRE_STATUSES"]

ENDED_RUN_STATUSES = ("finished", "failed", "cancelled", "abandoned")
#: fires that are not over yet
OPEN_FIRE_STATUSES = ("queued", "started")
LEASE_NAME = "scheduler"

_SCHEDULE_FIELDS = (
    "kind", "target", "target_kind", "cron", "timezone", "watch", "params", "overlap",
    "catchup", "paused", "next_fire_at", "state",
)
_FIRE_FIELDS = ("status", "started_at", "ended_at", "run_id", "pid", "owner", "message", "reason")


def _fire(row: ScheduleFireRow, name: str, run_status: str | None, run_end: float | None) -> ScheduleFire:
    status, ended = row.status, row.ended_at
    if status == "started" and run_status in ENDED_RUN_STATUSES:
        status, ended = str(run_status), ended or run_end  # the run says how it ended
    return ScheduleFire(
        id=row.id, schedule_id=row.schedule_id, schedule=name, status=status, due_at=row.due_at,
        created_at=row.created_at, started_at=row.started_at, ended_at=ended, run_id=row.run_id,
        pid=row.pid, owner=row.owner, reason=dict(row.reason or {}), message=row.message,
    )


def _schedule(row: ScheduleRow, last: ScheduleFire | None = None) -> Schedule:
    return Schedule(
        id=row.id, name=row.name, kind=row.kind, target=row.target, target_kind=row.target_kind,
        cron=row.cron, timezone=row.timezone, watch=row.watch, params=dict(row.params or {}),
        overlap=row.overlap, catchup=row.catchup, paused=bool(row.paused),
        next_fire_at=row.next_fire_at, state=dict(row.state or {}), created_at=row.created_at,
        updated_at=row.updated_at, last_fire=last,
    )


class ScheduleRepo:
    """The store's schedule tables."""

    def __init__(self, sessions: SessionManager) -> None:
        self._sessions = sessions

    # -- schedules ------------------------------------------------------------------------------

    def add(self, name: str, **fields: Any) -> Schedule:
        """Create a schedule or trigger; :class:`ScheduleError` when ``name`` is taken."""
        unknown = set(fields) - set(_SCHEDULE_FIELDS)
        if unknown:
            raise TypeError(f"unknown schedule fields: {sorted(unknown)}")

        def work(s: Session) -> Schedule:
            taken = s.scalar(select(ScheduleRow.kind).where(ScheduleRow.name == name))
            if taken is not None:
                what = "schedule" if taken == "cron" else "trigger"
                raise ScheduleError(f"a {what} named {name!r} exists already; pick another --name "
                                    f"or remove it first (nbmlops schedule rm {name})")
            now = time.time()
            row = ScheduleRow(name=name, created_at=now, updated_at=now,
                              **{"params": {}, "state": {}, "paused": False, **fields})
            s.add(row)
            s.flush()
            return _schedule(row)

        return self._sessions.write(work)

    def get(self, name: str) -> Schedule:
        with self._sessions.read() as s:
            row = s.scalar(select(ScheduleRow).where(ScheduleRow.name == name))
            if row is None:
                raise NotFoundError(self._not_found(s, name))
            return _schedule(row, self._last_fires(s, [row])[0])

    def _not_found(self, s: Session, name: str) -> str:
        import difflib

        names = list(s.scalars(select(ScheduleRow.name).order_by(ScheduleRow.name)))
        close = difflib.get_close_matches(name, names, n=3)
        hint = f"; did you mean {', '.join(close)}?" if close else (
            "; there are none (nbmlops schedule add / nbmlops trigger add)" if not names else
            " (nbmlops schedule ls / nbmlops trigger ls list them)")
        return f"no schedule or trigger named {name!r}{hint}"

    def schedules(self, kinds: Sequence[str] | None = None) -> list[Schedule]:
        """Schedules (and/or triggers) by name, each with its newest fire."""
        query = select(ScheduleRow).order_by(ScheduleRow.name)
        if kinds:
            query = query.where(ScheduleRow.kind.in_(list(kinds)))
        with self._sessions.read() as s:
            rows = list(s.scalars(query))
            return [_schedule(r, f) for r, f in zip(rows, self._last_fires(s, rows), strict=True)]

    def _last_fires(self, s: Session, rows: Sequence[ScheduleRow]) -> list[ScheduleFire | None]:
        if not rows:
            return []
        newest = (
            select(func.max(ScheduleFireRow.id))
            .where(ScheduleFireRow.schedule_id.in_([r.id for r in rows]))
            .group_by(ScheduleFireRow.schedule_id)
        )
        query = (
            select(ScheduleFireRow, RunRow.status, RunRow.end_time)
            .outerjoin(RunRow, RunRow.id == ScheduleFireRow.run_id)
            .where(ScheduleFireRow.id.in_(newest))
        )
        names = {r.id: r.name for r in rows}
        by_schedule = {f.schedule_id: _fire(f, names[f.schedule_id], st, end)
                       for f, st, end in s.execute(query)}
        return [by_schedule.get(r.id) for r in rows]

    def update(self, name: str, **fields: Any) -> Schedule:
        unknown = set(fields) - set(_SCHEDULE_FIELDS)
        if unknown:
            raise TypeError(f"unknown schedule fields: {sorted(unknown)}")

        def work(s: Session) -> Schedule:
            row = s.scalar(select(ScheduleRow).where(ScheduleRow.name == name))
            if row is None:
                raise NotFoundError(self._not_found(s, name))
            for key, value in fields.items():
                setattr(row, key, value)
            row.updated_at = time.time()
            s.flush()
            return _schedule(row)

        return self._sessions.write(work)

    def remove(self, name: str) -> Schedule:
        """Delete a schedule and its fire history (the runs it started stay in the store)."""
        def work(s: Session) -> Schedule:
            row = s.scalar(select(ScheduleRow).where(ScheduleRow.name == name))
            if row is None:
                raise NotFoundError(self._not_found(s, name))
            gone = _schedule(row)
            s.execute(delete(ScheduleFireRow).where(ScheduleFireRow.schedule_id == row.id))
            s.delete(row)
            return gone

        return self._sessions.write(work)

    def active(self) -> list[Schedule]:
        """Every schedule and trigger that is not paused (what one scheduler tick looks at)."""
        with self._sessions.read() as s:
            return [_schedule(r) for r in s.scalars(
                select(ScheduleRow).where(ScheduleRow.paused.is_(False)).order_by(ScheduleRow.id))]

    def candidates(self, horizon: float) -> list[Schedule]:
        """What one scheduler tick must look at: active cron schedules due by ``horizon`` (an
        index range scan, however many schedules there are) and every active trigger."""
        query = (
            select(ScheduleRow)
            .where(ScheduleRow.paused.is_(False))
            .where(or_(and_(ScheduleRow.kind == "cron", ScheduleRow.next_fire_at <= horizon),
                       ScheduleRow.kind != "cron"))
            .order_by(ScheduleRow.id)
        )
        with self._sessions.read() as s:
            return [_schedule(r) for r in s.scalars(query)]

    def next_due(self) -> float | None:
        """The earliest ``next_fire_at`` of the active cron schedules."""
        with self._sessions.read() as s:
            return s.scalar(select(func.min(ScheduleRow.next_fire_at)).where(
                ScheduleRow.paused.is_(False), ScheduleRow.next_fire_at.is_not(None)))

    # -- fires ----------------------------------------------------------------------------------

    def fire_many(
        self,
        schedule_id: int,
        records: Sequence[Mapping[str, Any]],
        *,
        owner: str | None = None,
        expect_next_fire_at: float | None = None,
        next_fire_at: float | None = None,
        state: Mapping[str, Any] | None = None,
    ) -> list[int] | None:
        """Record fires (each a mapping of ``status``, ``reason`` and optionally ``due_at``,
        ``run_id``, ``message``) and move the schedule on, in one transaction.

        With ``expect_next_fire_at`` they are recorded only while the schedule's
        ``next_fire_at`` still has that value (it then becomes ``next_fire_at``): a due time is
        claimed once, whoever asks. Returns the fires' ids, or None when the claim was lost."""
        def work(s: Session) -> list[int] | None:
            now = time.time()
            changes: dict[str, Any] = {"updated_at": now}
            if next_fire_at is not None:
                changes["next_fire_at"] = next_fire_at
            if state is not None:
                changes["state"] = dict(state)
            cond = [ScheduleRow.id == schedule_id]
            if expect_next_fire_at is not None:
                cond.append(ScheduleRow.next_fire_at == expect_next_fire_at)
            claimed = s.execute(update(ScheduleRow).where(*cond).values(**changes))
            if claimed.rowcount != 1:  # type: ignore[attr-defined]
                if expect_next_fire_at is None:
                    raise NotFoundError(f"schedule {schedule_id} was removed")
                return None
            rows = []
            for rec in records:
                status = rec["status"]
                row = ScheduleFireRow(
                    schedule_id=schedule_id, status=status, due_at=rec.get("due_at"),
                    created_at=now, started_at=now if status == "started" else None,
                    ended_at=now if status == "skipped" else None, run_id=rec.get("run_id"),
                    owner=owner, reason=dict(rec.get("reason") or {}), message=rec.get("message"),
                )
                s.add(row)
                rows.append(row)
            s.flush()
            return [int(r.id) for r in rows]

        return self._sessions.write(work)

    def update_fire(self, fire_id: int, **fields: Any) -> None:
        unknown = set(fields) - set(_FIRE_FIELDS)
        if unknown:
            raise TypeError(f"unknown fire fields: {sorted(unknown)}")
        self._sessions.write(lambda s: s.execute(
            update(ScheduleFireRow).where(ScheduleFireRow.id == fire_id).values(**fields)))

    def history(self, name: str, *, limit: int = 50) -> list[ScheduleFire]:
        """The newest ``limit`` fires of schedule ``name``, newest first."""
        with self._sessions.read() as s:
            sid = s.scalar(select(ScheduleRow.id).where(ScheduleRow.name == name))
            if sid is None:
                raise NotFoundError(self._not_found(s, name))
            query = (
                select(ScheduleFireRow, RunRow.status, RunRow.end_time)
                .outerjoin(RunRow, RunRow.id == ScheduleFireRow.run_id)
                .where(ScheduleFireRow.schedule_id == sid)
                .order_by(ScheduleFireRow.id.desc()).limit(limit)
            )
            return [_fire(f, name, st, end) for f, st, end in s.execute(query)]

    def open_fires(self, schedule_ids: Iterable[int] | None = None) -> list[ScheduleFire]:
        """Fires still queued, or started with a run that has not ended (or does not exist yet),
        oldest first."""
        query = (
            select(ScheduleFireRow, ScheduleRow.name, RunRow.status, RunRow.end_time)
            .join(ScheduleRow, ScheduleRow.id == ScheduleFireRow.schedule_id)
            .outerjoin(RunRow, RunRow.id == ScheduleFireRow.run_id)
            .where(ScheduleFireRow.status.in_(OPEN_FIRE_STATUSES))
            .where(or_(RunRow.status.is_(None), RunRow.status.not_in(ENDED_RUN_STATUSES)))
            .order_by(ScheduleFireRow.id)
        )
        if schedule_ids is not None:
            query = query.where(ScheduleFireRow.schedule_id.in_(list(schedule_ids)))
        with self._sessions.read() as s:
            return [_fire(f, name, st, end) for f, name, st, end in s.execute(query)]

    def started_fires(self) -> list[tuple[ScheduleFire, str | None]]:
        """Fires whose row still says ``started``, with their run's status (None: no run)."""
        query = (
            select(ScheduleFireRow, ScheduleRow.name, RunRow.status, RunRow.end_time)
            .join(ScheduleRow, ScheduleRow.id == ScheduleFireRow.schedule_id)
            .outerjoin(RunRow, RunRow.id == ScheduleFireRow.run_id)
            .where(ScheduleFireRow.status == "started")
            .order_by(ScheduleFireRow.id)
        )
        with self._sessions.read() as s:
            return [(_fire(f, name, None, None), st) for f, name, st, _end in s.execute(query)]

    def settle_fires(self) -> int:
        """Copy the end of finished runs into their started fires; returns how many changed."""
        def work(s: Session) -> int:
            rows = s.execute(
                select(ScheduleFireRow.id, RunRow.status, RunRow.end_time)
                .join(RunRow, RunRow.id == ScheduleFireRow.run_id)
                .where(ScheduleFireRow.status == "started", RunRow.status.in_(ENDED_RUN_STATUSES))
            ).all()
            for fid, status, end in rows:
                s.execute(update(ScheduleFireRow).where(ScheduleFireRow.id == fid)
                          .values(status=status, ended_at=end))
            return len(rows)

        return self._sessions.write(work)

    def finished_runs_since(
        self, pipeline_path: str, since: float, *, limit: int = 20, newest: bool = False,
        seen: Sequence[str] = (),
    ) -> list[tuple[str, float]]:
        """``(run_id, end_time)`` of pipeline runs of ``pipeline_path`` that finished at or
        after ``since``, except the ``seen`` ones (runs that end at the same instant are not
        lost), oldest first (``newest``: newest first)."""
        order = (RunRow.end_time.desc(), RunRow.id.desc()) if newest else (
            RunRow.end_time.asc(), RunRow.id.asc())
        query = (
            select(RunRow.id, RunRow.end_time)
            .where(RunRow.source == "pipeline", RunRow.notebook_path == pipeline_path,
                   RunRow.status == "finished", RunRow.end_time >= since)
            .order_by(*order).limit(limit)
        )
        if seen:
            query = query.where(RunRow.id.not_in(list(seen)))
        with self._sessions.read() as s:
            return [(rid, float(end or 0.0)) for rid, end in s.execute(query)]

    # -- lease ----------------------------------------------------------------------------------

    def lease(self) -> SchedulerLease | None:
        with self._sessions.read() as s:
            row = s.get(SchedulerLeaseRow, LEASE_NAME)
            if row is None or row.holder is None:
                return None
            return SchedulerLease(holder=row.holder, host=row.host, pid=row.pid,
                                  acquired_at=row.acquired_at, expires_at=row.expires_at)

    def acquire_lease(
        self, holder: str, *, host: str, pid: int, ttl: float, steal_from: str | None = None
    ) -> bool:
        """Take the lease when it is free, expired, already ours, or held by ``steal_from``
        (a holder known to be dead). One conditional UPDATE decides: two schedulers racing for
        it cannot both win, on SQLite or PostgreSQL."""

        def work(s: Session) -> bool:
            now = time.time()
            insert_ignore(s, SchedulerLeaseRow, {
                "name": LEASE_NAME, "holder": None, "host": None, "pid": None,
                "acquired_at": 0.0, "expires_at": 0.0})
            free = or_(SchedulerLeaseRow.holder.is_(None), SchedulerLeaseRow.expires_at < now,
                       SchedulerLeaseRow.holder == holder)
            if steal_from is not None:
                free = or_(free, SchedulerLeaseRow.holder == steal_from)
            result = s.execute(
                update(SchedulerLeaseRow)
                .where(and_(SchedulerLeaseRow.name == LEASE_NAME, free))
                .values(holder=holder, host=host, pid=pid, acquired_at=now, expires_at=now + ttl))
            return bool(result.rowcount == 1)  # type: ignore[attr-defined]

        return self._sessions.write(work)

    def renew_lease(self, holder: str, *, ttl: float) -> bool:
        """Extend our lease; False when somebody else holds it now."""
        def work(s: Session) -> bool:
            result = s.execute(
                update(SchedulerLeaseRow)
                .where(SchedulerLeaseRow.name == LEASE_NAME, SchedulerLeaseRow.holder == holder)
                .values(expires_at=time.time() + ttl))
            return bool(result.rowcount == 1)  # type: ignore[attr-defined]

        return self._sessions.write(work)

    def release_lease(self, holder: str) -> None:
        self._sessions.write(lambda s: s.execute(
            update(SchedulerLeaseRow)
            .where(SchedulerLeaseRow.name == LEASE_NAME, SchedulerLeaseRow.holder == holder)
            .values(holder=None, host=None, pid=None, expires_at=0.0)))
