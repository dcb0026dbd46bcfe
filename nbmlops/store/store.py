"""The store API: the only code in nbmlops that reads or writes the lineage database.

Convenience calls are built on two batch primitives: :meth:`Store.log_batch` (params, metrics,
tags) and :meth:`Store.record_cells` (everything capture learned about cell executions). Public
methods validate and redact; ``_``-prefixed helpers do the work inside one transaction.
"""

from __future__ import annotations

import hashlib
import logging
import math
import os
import time
import uuid
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import and_, bindparam, func, insert, or_, select
from sqlalchemy.orm import Session

from ..config import StoreLocation, resolve_location
from ..errors import AmbiguousIdError, InvalidArgumentError, NotFoundError
from ..redact import clip, redact_mapping
from .artifacts import ArtifactStore
from .engine import (
    SessionManager,
    ensure_schema,
    insert_ignore,
    make_engine,
    sqlite_closed,
    sqlite_opened,
)
from .entities import (
    RUN_SOURCES,
    RUN_STATUSES,
    Artifact,
    ArtifactIO,
    CellExecution,
    CellRecord,
    Comparison,
    Estimator,
    LineageGraph,
    MetricValue,
    Run,
    RunPage,
)

if TYPE_CHECKING:
    from .monitoring import MonitorRepo
    from .registry import RegistryRepo
    from .schedules import ScheduleRepo
    from .validations import ValidationRepo
from .models import (
    ArtifactEdgeRow,
    ArtifactRow,
    CellExecutionRow,
    CellSourceRow,
    EstimatorRow,
    ExperimentRow,
    MetricRow,
    ParamRow,
    RunRow,
    StepCacheRow,
    TagRow,
    VariableEdgeRow,
)
from .rows import (
    artifact_row_id,
    artifact_row_ids,
    cell_ids_by_seq,
    chunks,
    insert_ignore_rows,
    insert_rows,
    table_of,
)

log = logging.getLogger(__name__)

__all__ = ["Store", "open_store", "source_hash", "RUN_SORT_KEYS"]

DEFAULT_EXPERIMENT = "Default"
#: Columns ``list_runs`` may sort on.
RUN_SORT_KEYS = {
    "start_time": RunRow.start_time,
    "end_time": RunRow.end_time,
    "name": RunRow.name,
    "status": RunRow.status,
    "notebook": RunRow.notebook_path,
}


def source_hash(source: str) -> str:
    return hashlib.sha256(source.encode("utf-8", "surrogatepass")).hexdigest()


def _like_literal(text: str) -> str:
    """``text`` for a LIKE pattern that matches it literally (``%``, ``_`` and ``\\`` escaped)."""
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _to_artifact(row: ArtifactRow) -> Artifact:
    return Artifact(
        id=row.id,
        uri=row.uri,
        kind=row.kind,
        fingerprint=row.fingerprint,
        size=row.size,
        schema=row.schema,
        stored_path=row.stored_path,
    )


class Store:
    """A lineage store: a SQL database (SQLite by default) plus an artifact directory."""

    def __init__(
        self, location: StoreLocation, *, upgrade: bool = True, lock_wait_ms: int | None = None
    ) -> None:
        """Open (creating or upgrading if needed) the store at ``location``.

        ``lock_wait_ms`` bounds how long a statement waits while another process holds a lock on
        a SQLite store (default ``NBMLOPS_BUSY_TIMEOUT_MS``, 15 s); then the call raises
        :class:`~nbmlops.errors.StoreUnavailableError` saying the store is locked."""
        self.location = location
        self.engine = make_engine(location, lock_wait_ms=lock_wait_ms)
        self._sqlite_path = location.sqlite_path
        if self._sqlite_path is not None:
            sqlite_opened(self._sqlite_path)  # from now on this process holds SQLite locks on it
        try:
            self.schema_revision = ensure_schema(
                self.engine, location, upgrade=upgrade, lock_wait_ms=lock_wait_ms
            )
        except BaseException:
            self.close()  # let go of a file we refused (or failed) to open
            raise
        self._sessions = SessionManager(self.engine, location, lock_wait_ms=lock_wait_ms)
        self.artifacts = ArtifactStore(location.artifact_root)
        self._experiment_ids: dict[str, int] = {}
        self._schedules: ScheduleRepo | None = None
        self._registry: RegistryRepo | None = None
        self._validations: ValidationRepo | None = None
        self._monitoring: MonitorRepo | None = None
        self._listeners: list[Callable[[str, dict[str, Any]], None]] = []
        from ..openlineage import attach_if_configured

        attach_if_configured(self)  # a few environment/file checks; openlineage is not imported

    # -- events ---------------------------------------------------------------------------------

    def add_listener(self, fn: Callable[[str, dict[str, Any]], None]) -> None:
        """Call ``fn(event, payload)`` after each successful commit of a run start (``run_started``,
        ``{"run": Run}``), a run end (``run_ended``, ``{"run_id", "status", "end_time"}``) or cell
        records (``cells_recorded``, ``{"run_id", "records": [the CellRecords written]}``).
        A listener's exception is logged, never raised."""
        self._listeners.append(fn)

    def _notify(self, event: str, payload: dict[str, Any]) -> None:
        for fn in self._listeners:
            try:
                fn(event, payload)
            except Exception:  # noqa: BLE001 - a listener never breaks a write
                log.warning("store listener %r failed on %s", fn, event, exc_info=True)

    # -- lifecycle ------------------------------------------------------------------------------

    @classmethod
    def open(
        cls,
        url: str | None = None,
        artifact_root: str | os.PathLike[str] | None = None,
        start: str | os.PathLike[str] | None = None,
    ) -> Store:
        return cls(resolve_location(url, artifact_root, start))

    @property
    def url(self) -> str:
        return self.location.url

    def close(self) -> None:
        self.engine.dispose()
        if self._sqlite_path is not None:
            sqlite_closed(self._sqlite_path)
            self._sqlite_path = None  # closing twice must not count twice

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- runs -----------------------------------------------------------------------------------

    def _experiment_id(self, session: Session, name: str) -> int:
        if name in self._experiment_ids:
            return self._experiment_ids[name]
        query = select(ExperimentRow.id).where(ExperimentRow.name == name)
        exp_id = session.scalar(query)
        if exp_id is None:
            insert_ignore(session, ExperimentRow, {"name": name, "created_at": time.time()})
            exp_id = session.scalar(query)
        assert exp_id is not None
        self._experiment_ids[name] = exp_id
        return exp_id

    def create_run(
        self,
        *,
        name: str,
        experiment: str | None = None,
        source: str = "interactive",
        notebook_path: str | None = None,
        notebook_hash: str | None = None,
        parent_run_id: str | None = None,
        git_commit: str | None = None,
        git_dirty: bool | None = None,
        environment: dict[str, Any] | None = None,
        tags: Mapping[str, Any] | None = None,
        params: Mapping[str, Any] | None = None,
        run_id: str | None = None,
        start_time: float | None = None,
    ) -> str:
        """Create a run in status ``running`` and return its id."""
        if source not in RUN_SOURCES:
            raise InvalidArgumentError(f"source must be one of {', '.join(RUN_SOURCES)}")
        rid = run_id or uuid.uuid4().hex
        exp_name = experiment or DEFAULT_EXPERIMENT

        def work(s: Session) -> str:
            # A failed attempt rolls back: forget any experiment id cached during it.
            self._experiment_ids.pop(exp_name, None)
            s.add(
                RunRow(
                    id=rid,
                    experiment_id=self._experiment_id(s, exp_name),
                    name=name,
                    source=source,
                    status="running",
                    notebook_path=notebook_path,
                    notebook_hash=notebook_hash,
                    parent_run_id=parent_run_id,
                    start_time=start_time if start_time is not None else time.time(),
                    git_commit=git_commit,
                    git_dirty=git_dirty,
                    environment=environment,
                )
            )
            s.flush()
            self._log_batch(s, rid, params=params, tags=tags)
            return rid

        self._sessions.write(work)
        if self._listeners:
            self._notify("run_started", {"run": Run(
                id=rid, name=name, experiment=exp_name, source=source, status="running",
                start_time=start_time if start_time is not None else time.time(),
                notebook_path=notebook_path, notebook_hash=notebook_hash,
                parent_run_id=parent_run_id, git_commit=git_commit, git_dirty=git_dirty,
                environment=environment, params=redact_mapping(params or {}),
                tags=redact_mapping(tags or {}),
            )})
        return rid

    def update_run(self, run_id: str, **fields: Any) -> None:
        """Change run fields (``name``, ``notebook_path``, ``notebook_hash``, ``git_*``...)."""
        allowed = {"name", "notebook_path", "notebook_hash", "git_commit", "git_dirty", "environment"}
        bad = set(fields) - allowed
        if bad:
            raise InvalidArgumentError(f"cannot update run field(s): {', '.join(sorted(bad))}")

        def work(s: Session) -> None:
            row = s.get(RunRow, run_id)
            if row is None:
                raise NotFoundError(f"no run {run_id}")
            for k, v in fields.items():
                setattr(row, k, v)

        self._sessions.write(work)

    def end_run(
        self,
        run_id: str,
        status: str = "finished",
        end_time: float | None = None,
        *,
        only_if_running: bool = False,
    ) -> None:
        """Set a run's final status (``only_if_running``: leave an already ended run alone)."""
        if status not in RUN_STATUSES or status == "running":
            raise InvalidArgumentError(f"cannot end a run with status {status!r}")

        def work(s: Session) -> float | None:
            row = s.get(RunRow, run_id)
            if row is None:
                raise NotFoundError(f"no run {run_id}")
            if only_if_running and row.status != "running":
                return None
            row.status = status
            row.end_time = end_time if end_time is not None else time.time()
            return row.end_time

        ended = self._sessions.write(work)
        if ended is not None and self._listeners:
            self._notify("run_ended", {"run_id": run_id, "status": status, "end_time": ended})

    def log_batch(
        self,
        run_id: str,
        *,
        params: Mapping[str, Any] | None = None,
        metrics: Sequence[MetricValue] | None = None,
        tags: Mapping[str, Any] | None = None,
        skip_existing: bool = False,
    ) -> None:
        """Record params, metrics and tags of a run in one transaction.

        ``skip_existing`` makes a replay idempotent: metric values already stored with the same
        key, step and timestamp are not added again (params and tags are always upserts).
        """
        for m in metrics or ():
            if not _finite(m.value):
                raise InvalidArgumentError(
                    f"metric {m.key!r} must be a finite number, not {m.value!r}"
                )

        def work(s: Session) -> None:
            todo = list(metrics or ())
            if skip_existing and todo:
                have = {
                    (key, step, ts)
                    for key, step, ts in s.execute(
                        select(MetricRow.key, MetricRow.step, MetricRow.timestamp).where(
                            MetricRow.run_id == run_id
                        )
                    )
                }
                todo = [m for m in todo if (m.key, m.step, m.timestamp) not in have]
            self._log_batch(s, run_id, params=params, metrics=todo, tags=tags)

        self._sessions.write(work)

    def _log_batch(
        self,
        s: Session,
        run_id: str,
        *,
        params: Mapping[str, Any] | None = None,
        metrics: Sequence[MetricValue] | None = None,
        tags: Mapping[str, Any] | None = None,
        cell_execution_id: int | None = None,
    ) -> None:
        for key, value in redact_mapping(params or {}).items():
            s.merge(ParamRow(run_id=run_id, key=key, value=value, cell_execution_id=cell_execution_id))
        for key, value in redact_mapping(tags or {}).items():
            s.merge(TagRow(run_id=run_id, key=key, value=value))
        if metrics:
            s.add_all(
                MetricRow(
                    run_id=run_id,
                    key=m.key,
                    value=float(m.value),
                    step=m.step,
                    timestamp=m.timestamp or time.time(),
                    cell_execution_id=cell_execution_id,
                )
                for m in metrics
            )

    # -- cell executions ------------------------------------------------------------------------

    def record_cells(
        self, run_id: str, records: Sequence[CellRecord], *, skip_existing: bool = False
    ) -> list[int]:
        """Write cell executions with their variables, I/O, models, metrics; return their ids.

        ``skip_existing`` makes a replay idempotent: records whose ``seq`` the run already has
        are left out.
        """
        if not records:
            return []

        written: list[CellRecord] = []

        def work(s: Session) -> list[int]:
            todo = list(records)
            if skip_existing:
                have = cell_ids_by_seq(s, run_id, [r.seq for r in todo])
                todo = [r for r in todo if r.seq not in have]
            written[:] = todo  # a retried attempt replaces what a rolled-back one chose
            return self._record_cells(s, run_id, todo) if todo else []

        ids = self._sessions.write(work)
        if written and self._listeners:
            self._notify("cells_recorded", {"run_id": run_id, "records": list(written)})
        return ids

    def run_exists(self, run_id: str) -> bool:
        with self._sessions.read() as s:
            return s.get(RunRow, run_id) is not None

    def _record_cells(self, s: Session, run_id: str, records: Sequence[CellRecord]) -> list[int]:
        """Insert a batch of cell records with a handful of multi-row statements: one per table
        written, whatever the batch size (Core inserts: the ORM's unit of work would cost more
        CPU than the database for rows nothing reads back)."""
        # a redacted record carries its original source's hash: cells are keyed by the code that ran
        hashes = [r.source_hash or source_hash(r.source) for r in records]
        sources = dict(zip(hashes, (r.source for r in records), strict=True))
        insert_ignore_rows(s, CellSourceRow, [  # a source stored before is left as it is
            {"hash": h, "source": src} for h, src in sources.items()])
        cells = table_of(CellExecutionRow)
        ids: dict[int, int] = {seq: cid for seq, cid in s.execute(
            insert(cells).returning(cells.c.seq, cells.c.id),  # one INSERT ... RETURNING
            [
                {
                    "run_id": run_id,
                    "seq": r.seq,
                    "cell_id": r.cell_id,
                    "execution_count": r.execution_count,
                    "source_hash": h,
                    "start_time": r.start_time,
                    "duration": r.duration,
                    "status": r.status,
                    "error_name": r.error_name,
                    "error_value": clip(r.error_value) if r.error_value else r.error_value,
                    "vars_defined": list(r.vars_defined),
                    "vars_used": list(r.vars_used),
                }
                for r, h in zip(records, hashes, strict=True)
            ],
        )}
        edges = table_of(VariableEdgeRow)
        var_rows = [
            {
                "run_id": run_id,
                "src_seq": seq,
                "dst": ids[r.seq],
                "variable": var,
                "kind": "code" if var in r.code_vars else "data",
            }
            for r in records
            for var, seq in sorted(r.var_sources.items())
        ]
        if var_rows:  # the source cell is looked up by the insert (it may be in an earlier batch)
            s.execute(
                insert(edges).from_select(
                    ["run_id", "src_cell_execution_id", "dst_cell_execution_id", "variable", "kind"],
                    select(
                        cells.c.run_id,
                        cells.c.id,
                        bindparam("dst", type_=edges.c.dst_cell_execution_id.type),
                        bindparam("variable", type_=edges.c.variable.type),
                        bindparam("kind", type_=edges.c.kind.type),
                    ).where(cells.c.run_id == bindparam("run_id"), cells.c.seq == bindparam("src_seq")),
                ),
                var_rows,
            )
        ios = [(r, io) for r in records for io in r.io]
        artifact_ids = artifact_row_ids(s, [io for _, io in ios])
        io_rows = [
            {
                "run_id": run_id,
                "cell_execution_id": ids[r.seq],
                "artifact_id": aid,
                "direction": io.direction,
                "via": io.via,
            }
            for (r, io), aid in zip(ios, artifact_ids, strict=True)
        ]
        insert_rows(s, table_of(ArtifactEdgeRow), io_rows)
        est_rows = [
            {
                "run_id": run_id,
                "cell_execution_id": ids[r.seq],
                "variable": e.variable,
                "class_name": e.class_name,
                "params": e.params,
                "fitted_on": list(e.fitted_on),
            }
            for r in records
            for e in r.estimators
        ]
        insert_rows(s, table_of(EstimatorRow), est_rows)
        now = time.time()
        metric_rows = [
            {
                "run_id": run_id,
                "key": m.key,
                "value": float(m.value),
                "step": m.step,
                "timestamp": m.timestamp or now,
                "cell_execution_id": ids[r.seq],
            }
            for r in records
            for m in r.metrics
            # a NaN score (sklearn returns them for degenerate inputs) must not cost the cell
            if _finite(m.value)
        ]
        insert_rows(s, table_of(MetricRow), metric_rows)
        for r in records:
            if r.params or r.tags:
                self._log_batch(
                    s, run_id, params=r.params, tags=r.tags, cell_execution_id=ids[r.seq]
                )
        return [ids[r.seq] for r in records]

    def log_artifact(
        self,
        run_id: str,
        path: str | os.PathLike[str],
        *,
        kind: str = "file",
        cell_seq: int | None = None,
    ) -> Artifact:
        """Copy a file into the content-addressed artifact store and link it to the run."""
        p = Path(path)
        if not p.is_file():
            raise NotFoundError(f"no file {p}")
        digest, stored = self.artifacts.put(p)
        io = ArtifactIO(
            uri=str(p.resolve()),
            direction="wrote",
            via="log_artifact",
            kind=kind,
            fingerprint=f"sha256:{digest}",
            size=p.stat().st_size,
        )

        def work(s: Session) -> Artifact:
            aid = artifact_row_id(s, io)
            art = s.get(ArtifactRow, aid)
            assert art is not None
            art.stored_path = stored
            cid = None
            if cell_seq is not None:
                cid = cell_ids_by_seq(s, run_id, [cell_seq]).get(cell_seq)
            s.add(
                ArtifactEdgeRow(
                    run_id=run_id,
                    cell_execution_id=cid,
                    artifact_id=aid,
                    direction="wrote",
                    via="log_artifact",
                )
            )
            s.flush()
            return _to_artifact(art)

        return self._sessions.write(work)

    # -- reads ----------------------------------------------------------------------------------

    def resolve_run_id(self, run_id: str) -> str:
        """Accept a full id or a unique prefix (at least 4 characters)."""
        rid = run_id.strip()
        if not rid:
            raise InvalidArgumentError("empty run id")
        with self._sessions.read() as s:
            if s.get(RunRow, rid) is not None:
                return rid
            if len(rid) < 4:
                raise NotFoundError(f"no run {rid!r} (give at least 4 characters of a run id)")
            escaped = rid.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
            found = list(
                s.scalars(
                    select(RunRow.id).where(RunRow.id.like(escaped + "%", escape="\\")).limit(3)
                )
            )
        if not found:
            raise NotFoundError(f"no run {rid!r}")
        if len(found) > 1:
            raise AmbiguousIdError(f"run id prefix {rid!r} matches several runs: {', '.join(found)}")
        return found[0]

    def _runs_with_data(self, s: Session, rows: Sequence[tuple[RunRow, str]]) -> list[Run]:
        ids = [r.id for r, _ in rows]
        params: dict[str, dict[str, str]] = defaultdict(dict)
        tags: dict[str, dict[str, str]] = defaultdict(dict)
        metrics: dict[str, dict[str, float]] = defaultdict(dict)
        counts: dict[str, int] = {}
        for chunk in chunks(ids):
            for p in s.scalars(select(ParamRow).where(ParamRow.run_id.in_(chunk))):
                params[p.run_id][p.key] = p.value
            for t in s.scalars(select(TagRow).where(TagRow.run_id.in_(chunk))):
                tags[t.run_id][t.key] = t.value
            # latest value per (run, key): highest step, then latest id
            latest = (
                select(
                    MetricRow.run_id,
                    MetricRow.key,
                    MetricRow.value,
                    func.row_number()
                    .over(
                        partition_by=(MetricRow.run_id, MetricRow.key),
                        order_by=(MetricRow.step.desc(), MetricRow.id.desc()),
                    )
                    .label("rn"),
                )
                .where(MetricRow.run_id.in_(chunk))
                .subquery()
            )
            for run_id, key, value in s.execute(
                select(latest.c.run_id, latest.c.key, latest.c.value).where(latest.c.rn == 1)
            ):
                metrics[run_id][key] = value
            for run_id, n in s.execute(
                select(CellExecutionRow.run_id, func.count())
                .where(CellExecutionRow.run_id.in_(chunk))
                .group_by(CellExecutionRow.run_id)
            ):
                counts[run_id] = n
        return [
            Run(
                id=r.id,
                name=r.name,
                experiment=exp,
                source=r.source,
                status=r.status,
                start_time=r.start_time,
                end_time=r.end_time,
                notebook_path=r.notebook_path,
                notebook_hash=r.notebook_hash,
                parent_run_id=r.parent_run_id,
                git_commit=r.git_commit,
                git_dirty=r.git_dirty,
                environment=r.environment,
                params=params.get(r.id, {}),
                metrics=metrics.get(r.id, {}),
                tags=tags.get(r.id, {}),
                cell_count=counts.get(r.id, 0),
            )
            for r, exp in rows
        ]

    def get_run(self, run_id: str) -> Run:
        rid = self.resolve_run_id(run_id)
        with self._sessions.read() as s:
            rows = s.execute(
                select(RunRow, ExperimentRow.name)
                .join(ExperimentRow, RunRow.experiment_id == ExperimentRow.id)
                .where(RunRow.id == rid)
            ).all()
            if not rows:
                raise NotFoundError(f"no run {run_id!r}")
            return self._runs_with_data(s, [(r, e) for r, e in rows])[0]

    def list_runs(
        self,
        *,
        experiment: str | None = None,
        notebook: str | None = None,
        status: str | None = None,
        source: str | None = None,
        parent_run_id: str | None = None,
        search: str | None = None,
        order_by: str = "start_time",
        descending: bool = True,
        limit: int = 50,
        offset: int = 0,
    ) -> RunPage:
        """One page of runs, filtered and sorted in SQL, with params/metrics/tags of that page."""
        if order_by not in RUN_SORT_KEYS:
            raise InvalidArgumentError(
                f"cannot sort runs by {order_by!r}; choose one of {', '.join(RUN_SORT_KEYS)}"
            )
        if not isinstance(limit, int) or not 0 < limit <= 10_000:
            raise InvalidArgumentError("limit must be a whole number from 1 to 10000")
        if not isinstance(offset, int) or offset < 0:
            raise InvalidArgumentError("offset must be a whole number >= 0")
        if status is not None and status not in RUN_STATUSES:
            raise InvalidArgumentError(f"status must be one of {', '.join(RUN_STATUSES)}")
        conds = []
        if experiment is not None:
            conds.append(ExperimentRow.name == experiment)
        if notebook is not None:
            conds.append(or_(
                RunRow.notebook_path == notebook,
                RunRow.notebook_path.like(f"%/{_like_literal(notebook)}", escape="\\"),
            ))
        if status is not None:
            conds.append(RunRow.status == status)
        if source is not None:
            conds.append(RunRow.source == source)
        if parent_run_id is not None:
            conds.append(RunRow.parent_run_id == parent_run_id)
        if search:
            pattern = f"%{_like_literal(search)}%"
            conds.append(or_(RunRow.name.like(pattern, escape="\\"),
                             RunRow.notebook_path.like(pattern, escape="\\")))
        base = select(RunRow, ExperimentRow.name).join(
            ExperimentRow, RunRow.experiment_id == ExperimentRow.id
        )
        # the count joins experiments only to filter by one: a count of runs alone is an index
        # scan on PostgreSQL (the join made it a scan of every run row, ~30 ms at 10,000 runs)
        count_q = select(func.count()).select_from(RunRow)
        if experiment is not None:
            count_q = count_q.join(ExperimentRow, RunRow.experiment_id == ExperimentRow.id)
        if conds:
            base = base.where(and_(*conds))
            count_q = count_q.where(and_(*conds))
        col = RUN_SORT_KEYS[order_by]
        base = base.order_by(col.desc() if descending else col.asc(), RunRow.id).limit(limit).offset(offset)
        with self._sessions.read() as s:
            total = s.scalar(count_q) or 0
            rows = [(r, e) for r, e in s.execute(base).all()]
            runs = self._runs_with_data(s, rows)
        return RunPage(runs=runs, total=total, limit=limit, offset=offset)

    def latest_run(self, notebook_paths: Sequence[str]) -> Run | None:
        """The newest run of a notebook recorded under any of ``notebook_paths`` (exact paths),
        or None. One indexed query without a count: what a panel polling every second needs."""
        paths = [p for p in dict.fromkeys(notebook_paths) if p]
        if not paths:
            return None
        query = (
            select(RunRow, ExperimentRow.name)
            .join(ExperimentRow, RunRow.experiment_id == ExperimentRow.id)
            .where(RunRow.notebook_path.in_(paths))
            .order_by(RunRow.start_time.desc(), RunRow.id)
            .limit(1)
        )
        with self._sessions.read() as s:
            rows = [(r, e) for r, e in s.execute(query).all()]
            return self._runs_with_data(s, rows)[0] if rows else None

    def experiments(self) -> list[str]:
        with self._sessions.read() as s:
            return list(s.scalars(select(ExperimentRow.name).order_by(ExperimentRow.name)))

    def metric_history(self, run_id: str, key: str | None = None) -> list[MetricValue]:
        rid = self.resolve_run_id(run_id)
        q = select(MetricRow, CellExecutionRow.seq).outerjoin(
            CellExecutionRow, MetricRow.cell_execution_id == CellExecutionRow.id
        ).where(MetricRow.run_id == rid)
        if key is not None:
            q = q.where(MetricRow.key == key)
        with self._sessions.read() as s:
            return [
                MetricValue(m.key, m.value, m.step, m.timestamp, seq)
                for m, seq in s.execute(q.order_by(MetricRow.key, MetricRow.step, MetricRow.id))
            ]

    def cell_executions(self, run_id: str, *, since_seq: int | None = None) -> list[CellExecution]:
        """A run's cell executions in order, each with its reads, writes, models and metrics."""
        rid = self.resolve_run_id(run_id)
        with self._sessions.read() as s:
            q = (
                select(CellExecutionRow, CellSourceRow.source)
                .join(CellSourceRow, CellExecutionRow.source_hash == CellSourceRow.hash)
                .where(CellExecutionRow.run_id == rid)
            )
            if since_seq is not None:
                q = q.where(CellExecutionRow.seq > since_seq)
            rows = s.execute(q.order_by(CellExecutionRow.seq)).all()
            return self._cells_with_data(s, rows)

    def _cells_with_data(self, s: Session, rows: Sequence[Any]) -> list[CellExecution]:
        ids = [r.id for r, _ in rows]
        reads: dict[int, list[Artifact]] = defaultdict(list)
        writes: dict[int, list[Artifact]] = defaultdict(list)
        ests: dict[int, list[Estimator]] = defaultdict(list)
        mets: dict[int, list[MetricValue]] = defaultdict(list)
        pars: dict[int, dict[str, str]] = defaultdict(dict)
        seq_of = {r.id: r.seq for r, _ in rows}
        for chunk in chunks(ids):
            for edge, art in s.execute(
                select(ArtifactEdgeRow, ArtifactRow)
                .join(ArtifactRow, ArtifactEdgeRow.artifact_id == ArtifactRow.id)
                .where(ArtifactEdgeRow.cell_execution_id.in_(chunk))
                .order_by(ArtifactEdgeRow.id)
            ):
                target = reads if edge.direction == "read" else writes
                if edge.cell_execution_id is not None:
                    target[edge.cell_execution_id].append(_to_artifact(art))
            for e in s.scalars(
                select(EstimatorRow).where(EstimatorRow.cell_execution_id.in_(chunk)).order_by(EstimatorRow.id)
            ):
                ests[e.cell_execution_id].append(
                    Estimator(e.variable, e.class_name, e.params, e.fitted_on, seq_of[e.cell_execution_id])
                )
            for m in s.scalars(
                select(MetricRow).where(MetricRow.cell_execution_id.in_(chunk)).order_by(MetricRow.id)
            ):
                assert m.cell_execution_id is not None
                mets[m.cell_execution_id].append(
                    MetricValue(m.key, m.value, m.step, m.timestamp, seq_of[m.cell_execution_id])
                )
            for p in s.scalars(select(ParamRow).where(ParamRow.cell_execution_id.in_(chunk))):
                assert p.cell_execution_id is not None
                pars[p.cell_execution_id][p.key] = p.value
        return [
            CellExecution(
                id=r.id,
                run_id=r.run_id,
                seq=r.seq,
                cell_id=r.cell_id,
                execution_count=r.execution_count,
                source=src,
                source_hash=r.source_hash,
                start_time=r.start_time,
                duration=r.duration,
                status=r.status,
                error_name=r.error_name,
                error_value=r.error_value,
                vars_defined=list(r.vars_defined or []),
                vars_used=list(r.vars_used or []),
                reads=reads.get(r.id, []),
                writes=writes.get(r.id, []),
                estimators=ests.get(r.id, []),
                metrics=mets.get(r.id, []),
                params=pars.get(r.id, {}),
            )
            for r, src in rows
        ]

    def compare(self, run_ids: Sequence[str]) -> Comparison:
        if len(run_ids) < 2:
            raise InvalidArgumentError("compare needs at least two runs")
        runs = [self.get_run(r) for r in run_ids]
        pkeys = sorted({k for r in runs for k in r.params})
        mkeys = sorted({k for r in runs for k in r.metrics})
        params = {k: [r.params.get(k) for r in runs] for k in pkeys}
        return Comparison(
            runs=runs,
            params=params,
            params_differ=[k for k, vals in params.items() if len(set(vals)) > 1],
            metrics={k: [r.metrics.get(k) for r in runs] for k in mkeys},
        )

    def find_artifacts(self, uri: str) -> list[Artifact]:
        """Every recorded version of a file (newest first); ``uri`` may be relative to cwd."""
        candidates = {uri, os.path.abspath(uri), str(Path(uri).resolve())}
        with self._sessions.read() as s:
            rows = s.scalars(
                select(ArtifactRow).where(ArtifactRow.uri.in_(candidates)).order_by(ArtifactRow.id.desc())
            )
            return [_to_artifact(r) for r in rows]

    # -- pipeline step cache --------------------------------------------------------------------

    def record_step_cache(
        self, cache_key: str, run_id: str, *, pipeline: str, step: str, outputs: Mapping[str, Any]
    ) -> None:
        """Remember that finished step run ``run_id`` had ``cache_key`` and left ``outputs``."""
        def work(s: Session) -> None:
            s.merge(StepCacheRow(
                cache_key=cache_key, run_id=run_id, pipeline=pipeline, step=step,
                outputs=dict(outputs), created_at=time.time(),
            ))

        self._sessions.write(work)

    def find_step_cache(self, cache_key: str, *, limit: int = 5) -> list[tuple[str, dict[str, Any]]]:
        """``(run_id, outputs)`` of finished runs recorded under ``cache_key``, newest first."""
        query = (
            select(StepCacheRow.run_id, StepCacheRow.outputs)
            .join(RunRow, RunRow.id == StepCacheRow.run_id)
            .where(StepCacheRow.cache_key == cache_key, RunRow.status == "finished")
            .order_by(StepCacheRow.created_at.desc())
            .limit(limit)
        )
        with self._sessions.read() as s:
            return [(rid, dict(outputs or {})) for rid, outputs in s.execute(query)]

    # -- schedules ------------------------------------------------------------------------------

    @property
    def schedules(self) -> ScheduleRepo:
        """Schedules, triggers, their fires and the scheduler lease."""
        if self._schedules is None:
            from .schedules import ScheduleRepo

            self._schedules = ScheduleRepo(self._sessions)
        return self._schedules

    # -- model registry and data validations ----------------------------------------------------

    @property
    def registry(self) -> RegistryRepo:
        """Registered models, their versions, aliases and audit events."""
        if self._registry is None:
            from .registry import RegistryRepo

            self._registry = RegistryRepo(self._sessions)
        return self._registry

    @property
    def validations(self) -> ValidationRepo:
        """Data validation results, linked to runs, cells and artifact versions."""
        if self._validations is None:
            from .validations import ValidationRepo

            self._validations = ValidationRepo(self._sessions)
        return self._validations

    @property
    def monitoring(self) -> MonitorRepo:
        """Monitoring checks of served models (drift, performance), newest first."""
        if self._monitoring is None:
            from .monitoring import MonitorRepo

            self._monitoring = MonitorRepo(self._sessions)
        return self._monitoring

    # -- lineage --------------------------------------------------------------------------------

    def lineage(
        self,
        target: str | int,
        *,
        run_id: str | None = None,
        direction: str = "upstream",
        max_depth: int = 50,
        include_code: bool = False,
    ) -> LineageGraph:
        """The lineage graph of an artifact, file path, cell execution or variable.

        ``target`` forms: ``artifact:ID``, ``cell:ID``, a file path that was read or written, or a
        variable name (needs ``run_id``: the last cell execution of that run that defined it).
        ``direction`` is ``upstream`` (where it came from), ``downstream`` (what came of it) or
        ``both``. Variables that hold code (imported modules, functions, classes) link cells
        too; ``include_code`` follows those edges as well.
        """
        if direction not in ("upstream", "downstream", "both"):
            raise InvalidArgumentError("direction must be upstream, downstream or both")
        from .lineage import LineageWalker

        with self._sessions.read() as s:
            walker = LineageWalker(s, include_code=include_code)
            root = walker.resolve(str(target), self.resolve_run_id(run_id) if run_id else None)
            return walker.walk(root, direction=direction, max_depth=max_depth)


def open_store(
    url: str | None = None,
    artifact_root: str | os.PathLike[str] | None = None,
    start: str | os.PathLike[str] | None = None,
) -> Store:
    """Open (creating or upgrading if needed) the store for this project."""
    return Store.open(url, artifact_root, start)
