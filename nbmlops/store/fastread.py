"""A read path for ``nbmlops runs ls`` that does not import SQLAlchemy.

Importing SQLAlchemy, its ORM and the store's models costs about half a second, twenty times
what listing a page of 10,000 runs costs in SQL. :func:`list_runs_fast` answers exactly what
:meth:`Store.list_runs <nbmlops.store.store.Store.list_runs>` answers, with the same SQL, through
the plain DB-API drivers (the standard library's ``sqlite3``; psycopg for PostgreSQL).

It only reads, and only in the simple case. It returns ``None`` -- "open the full
:class:`~nbmlops.store.Store`" -- whenever opening the store could do more than read or could
answer differently:

* the URL is not a SQLite file (``sqlite:///PATH`` without options) or a PostgreSQL URL whose
  driver is at hand (``postgresql+psycopg://``, or ``postgresql://`` with psycopg2 installed);
* the database file is missing (the full path says so), is not in WAL mode (opening puts it in
  WAL mode), or its schema version is not :data:`SCHEMA_HEAD` (opening migrates or refuses it);
* a crash journal of a process that died waits to be replayed (opening replays it);
* an argument is one :meth:`Store.list_runs` refuses (it raises the error);
* anything at all goes wrong (connection, driver, SQL): the full path then reports it.

``NBMLOPS_NO_FASTREAD=1`` turns it off (the CLI then always opens the full store).
"""

from __future__ import annotations

import json
import logging
import os
from collections import defaultdict
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .entities import RUN_STATUSES, Run, RunPage

if TYPE_CHECKING:
    from ..config import StoreLocation

log = logging.getLogger(__name__)

__all__ = ["SCHEMA_HEAD", "enabled", "list_runs_fast"]

#: The newest migration revision, as ``nbmlops.store.engine.SCHEMA_HEAD`` knows it (a test keeps
#: the two and the migrations directory in step). Repeated here so that this module needs no
#: SQLAlchemy or Alembic to check a store's version.
SCHEMA_HEAD = "0005"

#: ``sort key -> column`` as in ``nbmlops.store.store.RUN_SORT_KEYS`` (a test keeps them equal)
SORT_COLUMNS = {
    "start_time": "start_time",
    "end_time": "end_time",
    "name": "name",
    "status": "status",
    "notebook": "notebook_path",
}

_CHUNK = 500  # ids per IN (...) list, like the store's chunks()


#: seconds the fast path waits for a PostgreSQL connection before leaving it to the full store
FAST_CONNECT_TIMEOUT = 2


def enabled() -> bool:
    """False when ``NBMLOPS_NO_FASTREAD`` is set to anything but ``0`` or empty."""
    return os.environ.get("NBMLOPS_NO_FASTREAD", "").strip() in ("", "0")


def _like_literal(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _chunks(items: Sequence[Any]) -> Iterator[Sequence[Any]]:
    for i in range(0, len(items), _CHUNK):
        yield items[i:i + _CHUNK]


def list_runs_fast(
    location: StoreLocation,
    *,
    experiment: str | None = None,
    notebook: str | None = None,
    status: str | None = None,
    source: str | None = None,
    search: str | None = None,
    order_by: str = "start_time",
    descending: bool = True,
    limit: int = 50,
    offset: int = 0,
) -> RunPage | None:
    """``Store(location).list_runs(...)`` without SQLAlchemy, or None: use the full store."""
    if order_by not in SORT_COLUMNS or status is not None and status not in RUN_STATUSES:
        return None
    if isinstance(limit, bool) or not isinstance(limit, int) or not 0 < limit <= 10_000:
        return None
    if isinstance(offset, bool) or not isinstance(offset, int) or offset < 0:
        return None
    try:
        conn = _connect(location)
        if conn is None:
            return None
        conn_, style = conn
        try:
            if _journals_pending(location):
                return None
            return _list(conn_, style, experiment=experiment, notebook=notebook, status=status,
                         source=source, search=search, column=SORT_COLUMNS[order_by],
                         descending=descending, limit=limit, offset=offset)
        finally:
            conn_.close()
    except Exception:  # noqa: BLE001 - any surprise: the full store answers (or explains)
        log.debug("fast runs listing not used", exc_info=True)
        return None


# -- connections --------------------------------------------------------------------------------


def _connect(location: StoreLocation) -> tuple[Any, str] | None:
    """An open DB-API connection in a read transaction at the schema head, and its paramstyle
    ("qmark" for sqlite3, "format" for psycopg), or None when this store is not the simple case."""
    url = location.url
    scheme = url.partition("://")[0]
    if url.startswith("sqlite:"):
        conn = _connect_sqlite(location)
    elif scheme == "postgresql+psycopg" or scheme == "postgresql" and _has("psycopg2"):
        conn = _connect_postgres(url)
    else:
        return None
    if conn is None:
        return None
    try:
        if _at_head(conn[0]):
            return conn
    except BaseException:
        conn[0].close()
        raise
    conn[0].close()
    return None


def _has(module: str) -> bool:
    from importlib.util import find_spec

    try:
        return find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def _connect_sqlite(location: StoreLocation) -> tuple[Any, str] | None:
    import sqlite3

    path = location.sqlite_path
    if path is None or "?" in location.url or "#" in location.url:
        return None
    if not path.is_file():
        return None  # missing: the full path says where it looked
    wait_ms = _busy_timeout_ms()
    # mode=rw: never create a file; autocommit mode with explicit BEGIN like the store's sessions
    conn = sqlite3.connect(f"{Path(os.path.abspath(path)).as_uri()}?mode=rw", uri=True,
                           timeout=wait_ms / 1000.0, isolation_level=None,
                           check_same_thread=False)
    try:
        conn.execute(f"PRAGMA busy_timeout = {int(wait_ms)}")
        mode = conn.execute("PRAGMA journal_mode").fetchone()
        if not mode or str(mode[0]).lower() != "wal":
            conn.close()
            return None
        conn.execute("BEGIN")
    except BaseException:
        conn.close()
        raise
    return conn, "qmark"


def _busy_timeout_ms() -> int:
    try:
        return max(0, int(os.environ.get("NBMLOPS_BUSY_TIMEOUT_MS", "15000")))
    except ValueError:
        return 15000


def _postgres_kwargs(url: str) -> dict[str, Any] | None:
    """psycopg.connect keyword arguments for a SQLAlchemy PostgreSQL URL, as SQLAlchemy's
    psycopg dialect and ``nbmlops.store.engine._postgres_engine`` build them; None for
    anything unusual (several hosts, repeated options)."""
    from urllib.parse import parse_qsl, unquote, urlsplit

    parts = urlsplit(url)
    netloc = parts.netloc
    userinfo, at, hostport = netloc.rpartition("@")
    if "," in hostport or parts.fragment:
        return None
    kwargs: dict[str, Any] = {}
    if at:
        user, colon, password = userinfo.partition(":")
        if user:
            kwargs["user"] = unquote(user)
        if colon:
            kwargs["password"] = unquote(password)
    if parts.hostname:
        kwargs["host"] = unquote(hostport.rpartition(":")[0] if parts.port else hostport).strip("[]")
    if parts.port:
        kwargs["port"] = parts.port
    dbname = unquote(parts.path.lstrip("/"))
    if dbname:
        kwargs["dbname"] = dbname
    query = parse_qsl(parts.query, keep_blank_values=True)
    if len({k for k, _ in query}) != len(query):
        return None
    kwargs.update(dict(query))
    try:
        timeout = float(os.environ.get("NBMLOPS_PG_CONNECT_TIMEOUT", "") or 10)
    except ValueError:
        timeout = 10
    # at most 2 s here: a server that does not answer is then waited for by the full store
    # (which reports it), not twice as long
    kwargs["connect_timeout"] = max(1, min(FAST_CONNECT_TIMEOUT, int(timeout)))
    if "application_name" not in url:
        kwargs["application_name"] = "nbmlops"
    return kwargs


def _connect_postgres(url: str) -> tuple[Any, str] | None:
    kwargs = _postgres_kwargs(url)
    if kwargs is None:
        return None
    if url.startswith("postgresql+psycopg:"):
        import psycopg

        conn: Any = psycopg.connect(**kwargs)  # a transaction starts with the first statement
    else:
        import psycopg2  # type: ignore[import-untyped]

        conn = psycopg2.connect(**kwargs)
    return conn, "format"


def _at_head(conn: Any) -> bool:
    cur = conn.cursor()
    try:
        cur.execute("SELECT version_num FROM alembic_version")
        row = cur.fetchone()
    finally:
        cur.close()
    return row is not None and str(row[0]) == SCHEMA_HEAD


def _journals_pending(location: StoreLocation) -> bool:
    """True when opening the store would replay a crash journal (its process is gone)."""
    directory = location.journal_dir
    if not directory.is_dir():
        return False
    found = sorted(directory.glob("*.jsonl"))
    if not found:
        return False
    try:  # imported only when there are journals: it costs a few milliseconds
        from ..capture.journal import _owner_alive
    except ImportError:
        return True
    return not all(_owner_alive(p) for p in found)


# -- the listing --------------------------------------------------------------------------------


def _list(
    conn: Any, style: str, *, experiment: str | None, notebook: str | None, status: str | None,
    source: str | None, search: str | None, column: str, descending: bool, limit: int,
    offset: int,
) -> RunPage:
    ph = "?" if style == "qmark" else "%s"
    conds: list[str] = []
    args: list[Any] = []
    if experiment is not None:
        conds.append(f"experiments.name = {ph}")
        args.append(experiment)
    if notebook is not None:
        conds.append(f"(runs.notebook_path = {ph} OR runs.notebook_path LIKE {ph} ESCAPE '\\')")
        args += [notebook, f"%/{_like_literal(notebook)}"]
    if status is not None:
        conds.append(f"runs.status = {ph}")
        args.append(status)
    if source is not None:
        conds.append(f"runs.source = {ph}")
        args.append(source)
    if search:
        pattern = f"%{_like_literal(search)}%"
        conds.append(f"(runs.name LIKE {ph} ESCAPE '\\' OR runs.notebook_path LIKE {ph} "
                     "ESCAPE '\\')")
        args += [pattern, pattern]
    where = f" WHERE {' AND '.join(conds)}" if conds else ""
    # as the store: the count joins experiments only to filter by one
    join = " JOIN experiments ON runs.experiment_id = experiments.id"
    count_sql = f"SELECT count(*) FROM runs{join if experiment is not None else ''}{where}"
    page_sql = (
        "SELECT runs.id, runs.name, experiments.name, runs.source, runs.status, "
        "runs.start_time, runs.end_time, runs.notebook_path, runs.notebook_hash, "
        "runs.parent_run_id, runs.git_commit, runs.git_dirty, runs.environment "
        f"FROM runs{join}{where} ORDER BY runs.{column} {'DESC' if descending else 'ASC'}, "
        f"runs.id LIMIT {ph} OFFSET {ph}"
    )
    cur = conn.cursor()
    try:
        cur.execute(count_sql, args)
        total = int(cur.fetchone()[0] or 0)
        cur.execute(page_sql, [*args, limit, offset])
        rows = cur.fetchall()
        runs = _with_data(cur, ph, rows, json_text=style == "qmark")
    finally:
        cur.close()
    conn.commit()
    return RunPage(runs=runs, total=total, limit=limit, offset=offset)


def _with_data(
    cur: Any, ph: str, rows: Sequence[Sequence[Any]], *, json_text: bool
) -> list[Run]:
    """``Store._runs_with_data``: each run's params, tags, latest metrics and cell count
    (``json_text``: the driver returns JSON columns as text, as sqlite3 does)."""
    ids = [r[0] for r in rows]
    params: dict[str, dict[str, str]] = defaultdict(dict)
    tags: dict[str, dict[str, str]] = defaultdict(dict)
    metrics: dict[str, dict[str, float]] = defaultdict(dict)
    counts: dict[str, int] = {}
    for chunk in _chunks(ids):
        marks = ", ".join([ph] * len(chunk))
        cur.execute(f"SELECT run_id, key, value FROM params WHERE run_id IN ({marks})", chunk)
        for run_id, key, value in cur.fetchall():
            params[run_id][key] = value
        cur.execute(f"SELECT run_id, key, value FROM tags WHERE run_id IN ({marks})", chunk)
        for run_id, key, value in cur.fetchall():
            tags[run_id][key] = value
        # latest value per (run, key): highest step, then latest id
        cur.execute(
            "SELECT run_id, key, value FROM (SELECT run_id, key, value, row_number() OVER "
            "(PARTITION BY run_id, key ORDER BY step DESC, id DESC) AS rn FROM metrics "
            f"WHERE run_id IN ({marks})) AS latest WHERE rn = 1",
            chunk,
        )
        for run_id, key, value in cur.fetchall():
            metrics[run_id][key] = value
        cur.execute(
            f"SELECT run_id, count(*) FROM cell_executions WHERE run_id IN ({marks}) "
            "GROUP BY run_id",
            chunk,
        )
        for run_id, n in cur.fetchall():
            counts[run_id] = int(n)
    return [
        Run(
            id=r[0],
            name=r[1],
            experiment=r[2],
            source=r[3],
            status=r[4],
            start_time=r[5],
            end_time=r[6],
            notebook_path=r[7],
            notebook_hash=r[8],
            parent_run_id=r[9],
            git_commit=r[10],
            git_dirty=None if r[11] is None else bool(r[11]),
            environment=json.loads(r[12]) if json_text and r[12] is not None else r[12],
            params=params.get(r[0], {}),
            metrics=metrics.get(r[0], {}),
            tags=tags.get(r[0], {}),
            cell_count=counts.get(r[0], 0),
        )
        for r in rows
    ]
