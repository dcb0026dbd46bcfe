"""Engine creation, schema checks and the one managed-session helper.

SQLite is opened in WAL mode with foreign keys and a busy timeout; write transactions start with
``BEGIN IMMEDIATE`` so that two writers queue on the busy timeout instead of failing on a lock
upgrade. Driver errors are mapped to :mod:`nbmlops.errors` here and nowhere else.
"""

from __future__ import annotations

import logging
import os
import random
import re
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import Engine, create_engine, event, inspect
from sqlalchemy.exc import (
    DatabaseError,
    DBAPIError,
    IntegrityError,
    OperationalError,
    SQLAlchemyError,
)
from sqlalchemy.orm import Session, sessionmaker

from ..config import StoreLocation
from ..errors import (
    InvalidArgumentError,
    StoreCorruptError,
    StoreUnavailableError,
    StoreVersionError,
)

log = logging.getLogger(__name__)

T = TypeVar("T")

SQLITE_MAGIC = b"SQLite format 3\x00"
_WRITE_OPTION = "nbmlops_write"


def busy_timeout_ms() -> int:
    """Milliseconds a SQLite writer waits for a lock (``NBMLOPS_BUSY_TIMEOUT_MS``)."""
    try:
        return max(0, int(os.environ.get("NBMLOPS_BUSY_TIMEOUT_MS", "15000")))
    except ValueError:
        return 15000


#: SQLite files this process has stores open on, with how many. POSIX advisory locks belong to
#: the process, and close() of *any* descriptor of a file drops all of them: reading the header of
#: a file this process already has a SQLite connection to would silently release that
#: connection's locks, so another process closing its connection would take itself for the
#: last user and delete the WAL under us (SQLite's "how to corrupt" §2.2). So the header is
#: read only while no store of this process has the file open.
_OPEN_FILES: dict[str, int] = {}
_OPEN_LOCK = threading.Lock()


def _file_key(path: Path) -> str:
    return os.path.realpath(path)


def sqlite_opened(path: Path) -> None:
    """A store of this process opened ``path`` (pair with :func:`sqlite_closed`)."""
    key = _file_key(path)
    with _OPEN_LOCK:
        _OPEN_FILES[key] = _OPEN_FILES.get(key, 0) + 1


def sqlite_closed(path: Path) -> None:
    key = _file_key(path)
    with _OPEN_LOCK:
        left = _OPEN_FILES.get(key, 0) - 1
        if left > 0:
            _OPEN_FILES[key] = left
        else:
            _OPEN_FILES.pop(key, None)


def _check_sqlite_file(path: Path) -> None:
    """Refuse a file that exists but is not SQLite, before SQLAlchemy touches it."""
    with _OPEN_LOCK:
        if _OPEN_FILES.get(_file_key(path)):
            return  # ours and open: it is SQLite, and an open()/close() would drop our locks
    if not path.exists():
        parent = path.parent
        try:
            parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreUnavailableError(f"cannot create the store directory {parent}: {exc}") from exc
        return
    if path.is_dir():
        raise StoreCorruptError(f"store file {path} is a directory, not a SQLite database")
    try:
        with open(path, "rb") as fh:
            head = fh.read(len(SQLITE_MAGIC))
    except OSError as exc:
        raise StoreUnavailableError(f"cannot read the store file {path}: {exc}") from exc
    if head and head != SQLITE_MAGIC:
        raise StoreCorruptError(
            f"store file {path} is not a SQLite database (corrupt or foreign file); "
            "nbmlops left it untouched. Move it aside or point NBMLOPS_STORE_URL elsewhere."
        )


def make_engine(location: StoreLocation, *, lock_wait_ms: int | None = None) -> Engine:
    """Create the SQLAlchemy engine for a store location.

    ``lock_wait_ms``: how long a SQLite statement waits for a lock (default
    :func:`busy_timeout_ms`); a reader that must answer fast (the Jupyter server) waits less."""
    url = location.url
    db_path = location.sqlite_path
    wait_ms = busy_timeout_ms() if lock_wait_ms is None else max(0, int(lock_wait_ms))
    if url.startswith("sqlite"):
        if db_path is not None:
            _check_sqlite_file(db_path)
        timeout_s = wait_ms / 1000.0
        engine = create_engine(
            url, connect_args={"timeout": timeout_s, "check_same_thread": False}
        )

        @event.listens_for(engine, "connect")
        def _on_connect(dbapi_conn: Any, _record: Any) -> None:
            # Let SQLAlchemy's "begin" event below emit BEGIN itself.
            dbapi_conn.isolation_level = None
            cur = dbapi_conn.cursor()
            try:
                cur.execute(f"PRAGMA busy_timeout = {wait_ms}")
                cur.execute("PRAGMA foreign_keys = ON")
                if db_path is not None:
                    # Per connection: changes nothing in the file. WAL mode (which is stored in
                    # the file) is set by ensure_schema once the file is known to be ours.
                    cur.execute("PRAGMA synchronous = NORMAL")
            finally:
                cur.close()

        @event.listens_for(engine, "begin")
        def _on_begin(conn: Any) -> None:
            write = conn.get_execution_options().get(_WRITE_OPTION, False)
            conn.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")

        return engine
    try:
        if url.startswith("postgresql"):
            return _postgres_engine(url)
        return create_engine(url, pool_pre_ping=True)
    except (SQLAlchemyError, ImportError) as exc:
        raise StoreUnavailableError(
            f"cannot use store {location.describe()}: {_scrub(str(exc), location)}"
        ) from exc


def _env_number(name: str, default: float) -> float:
    try:
        return float(os.environ.get(name, "") or default)
    except ValueError:
        return default


def _postgres_engine(url: str) -> Engine:
    """A PostgreSQL engine for a store that several processes share.

    Every store process (a CLI command, a capture writer, a scheduler, the server) holds a
    small pool: connections are checked before use (a restarted server costs one retry, not an
    error), recycled after 30 minutes (proxies such as PgBouncer or a cloud load balancer drop
    idle ones), reused last-in first-out (idle extras time out server-side), and a connection
    attempt gives up after ``NBMLOPS_PG_CONNECT_TIMEOUT`` seconds (default 10) instead of the
    operating system's minutes when the host does not answer."""
    connect_timeout = max(1, int(_env_number("NBMLOPS_PG_CONNECT_TIMEOUT", 10)))
    connect_args: dict[str, Any] = {"connect_timeout": connect_timeout}
    if "application_name" not in url:
        connect_args["application_name"] = "nbmlops"
    return create_engine(
        url,
        pool_pre_ping=True,
        pool_size=int(_env_number("NBMLOPS_PG_POOL_SIZE", 5)),
        max_overflow=10,
        pool_timeout=30,
        pool_recycle=1800,
        pool_use_lifo=True,
        connect_args=connect_args,
    )


_PG_REFUSED = re.compile(
    r'connection to server at "(?P<host>[^"]*)"(?: \([^)]*\))?, port (?P<port>\d+) failed: '
    r"(?P<why>[^\n]*)")
_PG_RESOLVE = re.compile(r"failed to resolve host '(?P<host>[^']*)'")


def _scrub(text: str, location: StoreLocation) -> str:
    """``text`` without the store URL's password, on one line."""
    try:
        from sqlalchemy.engine import make_url

        password = make_url(location.url).password
    except Exception:  # noqa: BLE001 - an unparsable URL: nothing to look for
        password = None
    if password:
        text = text.replace(str(password), "***")
    text = text.replace(location.url, location.describe())
    return " ".join(text.split())


def _scrub_lines(text: str, location: StoreLocation) -> str:
    """Like :func:`_scrub`, keeping line breaks (the driver's first line is its message)."""
    return "\n".join(_scrub(line, location) for line in text.splitlines())


def _server_address(location: StoreLocation) -> str:
    """``host:port`` of a server store's URL (never its user or password)."""
    try:
        from sqlalchemy.engine import make_url

        u = make_url(location.url)
    except Exception:  # noqa: BLE001
        return "the database server"
    default = {"postgresql": 5432, "mysql": 3306}.get(u.get_backend_name(), None)
    port = u.port or default
    return f"{u.host or 'localhost'}{f':{port}' if port else ''}"


def _unreachable_message(text: str, location: StoreLocation) -> str | None:
    """One line for a server that cannot be reached, naming host:port, or None."""
    if location.sqlite_path is not None or location.url.startswith("sqlite"):
        return None
    where = _server_address(location)
    first = text.strip().splitlines()[0] if text.strip() else text
    m = _PG_REFUSED.search(text)
    if m is not None:
        why = m.group("why").strip().rstrip(".")
        if "password authentication failed" in why or "does not exist" in why:
            return None  # reachable: the server said no; the driver's words say why
        return (f"cannot reach the store's PostgreSQL server at {where}: {why} (is it running "
                f"and reachable from here? store {location.describe()})")
    m2 = _PG_RESOLVE.search(text)
    if m2 is not None:
        return (f"cannot reach the store's PostgreSQL server at {where}: host name "
                f"{m2.group('host')!r} does not resolve (store {location.describe()})")
    lowered = first.lower()
    if any(k in lowered for k in ("timeout expired", "connection refused", "server closed the "
                                  "connection", "terminating connection", "could not connect",
                                  "connection is closed", "consuming input failed",
                                  "the database system is")):
        return (f"cannot reach the store's PostgreSQL server at {where}: "
                f"{first.strip().rstrip('.')} (store {location.describe()})")
    return None


def is_locked_error(exc: BaseException) -> bool:
    """A lock the transaction may retry after: SQLite busy, or PostgreSQL's deadlock and
    serialization failures (the server rolled the transaction back; running it again is safe)."""
    text = str(exc).lower()
    return ("database is locked" in text or "database is busy" in text or "sqlite_busy" in text
            or "deadlock detected" in text or "could not serialize access" in text)


def map_db_error(exc: BaseException, location: StoreLocation) -> Exception:
    """Turn a driver error into an nbmlops error that names the store."""
    where = location.describe()
    raw = str(getattr(exc, "orig", exc) or exc)
    text = _scrub(raw, location)
    if isinstance(exc, (OperationalError, DBAPIError)) and (
        isinstance(exc, OperationalError) or getattr(exc, "connection_invalidated", False)
    ):
        unreachable = _unreachable_message(_scrub_lines(raw, location), location)
        if unreachable is not None:
            return StoreUnavailableError(unreachable)
    if isinstance(exc, OperationalError):
        if is_locked_error(exc):
            return StoreUnavailableError(f"store {where} is locked by another process: {text}")
        if "readonly" in text.lower() or "unable to open" in text.lower():
            return StoreUnavailableError(f"store {where} cannot be written: {text}")
        return StoreUnavailableError(f"store {where} is unavailable: {text}")
    if isinstance(exc, IntegrityError):
        return InvalidArgumentError(f"store {where} refused an inconsistent record: {text}")
    if isinstance(exc, DatabaseError) and (
        "not a database" in text or "malformed" in text or "file is encrypted" in text
    ):
        return StoreCorruptError(
            f"store file {where} is corrupt ({text}); nbmlops left it untouched"
        )
    return StoreUnavailableError(f"store {where} failed: {text}")


class SessionManager:
    """Short transactions with commit/rollback, lock retries and error mapping."""

    def __init__(
        self, engine: Engine, location: StoreLocation, *, lock_wait_ms: int | None = None
    ) -> None:
        self.engine = engine
        self.location = location
        self.lock_wait_s = (busy_timeout_ms() if lock_wait_ms is None else lock_wait_ms) / 1000.0
        self._read = sessionmaker(bind=engine, expire_on_commit=False)
        self._write = sessionmaker(
            bind=engine.execution_options(**{_WRITE_OPTION: True}), expire_on_commit=False
        )

    @contextmanager
    def read(self) -> Iterator[Session]:
        session = self._read()
        try:
            yield session
            session.commit()
        except SQLAlchemyError as exc:
            session.rollback()
            raise map_db_error(exc, self.location) from exc
        finally:
            session.close()

    def write(self, fn: Callable[[Session], T], *, retry_for: float | None = None) -> T:
        """Run ``fn`` in one write transaction; retry while the database is locked."""
        deadline = time.monotonic() + (retry_for if retry_for is not None else self.lock_wait_s)
        attempt = 0
        while True:
            session = self._write()
            try:
                result = fn(session)
                session.commit()
                return result
            except OperationalError as exc:
                session.rollback()
                if is_locked_error(exc) and time.monotonic() < deadline:
                    attempt += 1
                    time.sleep(min(0.5, 0.01 * 2**attempt) * (0.5 + random.random()))
                    continue
                raise map_db_error(exc, self.location) from exc
            except SQLAlchemyError as exc:
                session.rollback()
                raise map_db_error(exc, self.location) from exc
            except BaseException:
                session.rollback()
                raise
            finally:
                session.close()


# --- schema -----------------------------------------------------------------------------------


def _alembic_config() -> Any:
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(Path(__file__).with_name("migrations")))
    return cfg


_MIGRATION_LOCK_KEY = 7_027_274_101  # pg_advisory_xact_lock key: one migrator at a time


def _check_revision(conn: Any, script: Any, head: str, location: StoreLocation) -> str | None:
    """The store's revision; refuse foreign databases and stores from a newer nbmlops."""
    from alembic.runtime.migration import MigrationContext

    current = MigrationContext.configure(conn).get_current_revision()
    if current is None:
        tables = set(inspect(conn).get_table_names())
        if tables:
            raise StoreCorruptError(
                f"{location.describe()} holds tables ({', '.join(sorted(tables)[:5])}) but "
                "no nbmlops schema version; nbmlops left it untouched. "
                "Point NBMLOPS_STORE_URL at an nbmlops store or an empty database."
            )
    elif current != head:
        try:
            script.get_revision(current)
        except Exception:
            raise StoreVersionError(
                f"store {location.describe()} has schema version {current}, written by a newer "
                f"nbmlops than this one (which knows up to {head}). Upgrade nbmlops: "
                "pip install -U nbmlops. The store was left untouched."
            ) from None
    return current


def _use_wal(engine: Engine, location: StoreLocation) -> None:
    """Put a SQLite store file in WAL mode (kept in the file; a no-op when it already is).

    Only for a file known to be an nbmlops store or empty: switching the journal mode rewrites
    the file header, which a refused (foreign or newer) database must never see.
    """
    if location.sqlite_path is None:
        return
    # SQLite answers "database is locked" at once, without its busy handler, when the journal
    # mode changes while another process migrates a new store: wait for it like for any lock
    deadline = time.monotonic() + busy_timeout_ms() / 1000.0
    attempt = 0
    while True:
        raw = engine.raw_connection()  # autocommit: no journal mode change in a transaction
        try:
            cur = raw.cursor()
            try:
                mode = cur.execute("PRAGMA journal_mode = WAL").fetchone()
            finally:
                cur.close()
            break
        except sqlite3.Error as exc:  # a raw connection raises the driver's own errors
            if "locked" in str(exc).lower() and time.monotonic() < deadline:
                attempt += 1
                time.sleep(min(0.5, 0.01 * 2**attempt) * (0.5 + random.random()))
                continue
            raise StoreUnavailableError(
                f"cannot put store {location.describe()} in WAL mode: {exc}"
            ) from exc
        finally:
            raw.close()
    if mode and str(mode[0]).lower() != "wal":
        log.debug("SQLite journal mode is %s, not WAL", mode[0])


#: The newest migration revision. Only a fast path: a store at this revision opens without
#: importing Alembic; any other revision goes through Alembic (a test keeps this in step).
SCHEMA_HEAD = "0005"


def _stored_revision(engine: Engine) -> str | None:
    try:
        with engine.connect() as conn:
            value = conn.exec_driver_sql("SELECT version_num FROM alembic_version").scalar()
            return str(value) if value is not None else None
    except SQLAlchemyError:
        return None


def ensure_schema(
    engine: Engine, location: StoreLocation, *, upgrade: bool = True,
    lock_wait_ms: int | None = None,
) -> str:
    """Create or upgrade the schema to head; refuse a store from a newer nbmlops.

    Several processes may open a new store at once: the migration runs in one exclusive
    transaction (``BEGIN IMMEDIATE`` on SQLite, an advisory lock on PostgreSQL) that checks the
    revision again before changing anything. Returns the revision the store is at afterwards.
    """
    if _stored_revision(engine) == SCHEMA_HEAD:
        _use_wal(engine, location)
        return SCHEMA_HEAD  # the common case, without importing Alembic (~0.1 s)
    from alembic import command
    from alembic.script import ScriptDirectory

    cfg = _alembic_config()
    script = ScriptDirectory.from_config(cfg)
    head = script.get_current_head()
    assert head is not None
    wait_s = (busy_timeout_ms() if lock_wait_ms is None else lock_wait_ms) / 1000.0
    # a new store may be being created by another process: give it a few seconds at least,
    # unless the caller asked to learn fast that the store is locked
    deadline = time.monotonic() + (max(5.0, wait_s) if lock_wait_ms is None else wait_s)
    attempt = 0
    waited = False
    while True:
        try:
            with engine.connect() as conn:
                current = _check_revision(conn, script, head, location)
            _use_wal(engine, location)  # only now: the file is ours (or empty)
            if current == head:
                return head
            if not upgrade:
                if current is None and location.sqlite_path is not None and not waited:
                    # empty: another process may be creating it (its migration holds the write
                    # lock); wait for that like for any lock (nothing is written), then look again
                    try:
                        with engine.execution_options(**{_WRITE_OPTION: True}).begin():
                            pass
                    except OperationalError as exc:
                        if is_locked_error(exc):
                            raise  # still migrating: the retry below waits on
                        return "empty"  # e.g. a read-only file: nobody can be creating it
                    waited = True
                    continue
                return current or "empty"
            with engine.execution_options(**{_WRITE_OPTION: True}).begin() as conn:
                if conn.dialect.name == "postgresql":
                    conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({_MIGRATION_LOCK_KEY})")
                current = _check_revision(conn, script, head, location)
                if current != head:
                    cfg.attributes["connection"] = conn
                    command.upgrade(cfg, "head")
                    log.info("store %s migrated from %s to %s", location.describe(), current, head)
            return head
        except OperationalError as exc:
            if is_locked_error(exc) and time.monotonic() < deadline:
                attempt += 1
                time.sleep(min(0.5, 0.01 * 2**attempt) * (0.5 + random.random()))
                continue
            raise map_db_error(exc, location) from exc
        except SQLAlchemyError as exc:
            raise map_db_error(exc, location) from exc


def insert_ignore_many(s: Session, model: type[Any], rows: list[dict[str, Any]]) -> None:
    """:func:`insert_ignore` of several rows in one statement, in the order of their first
    column's value (two writers inserting overlapping keys then lock them in the same order: on
    PostgreSQL they wait for each other instead of deadlocking)."""
    if not rows:
        return
    first = next(iter(rows[0]))
    rows = sorted(rows, key=lambda r: r[first])
    dialect = s.get_bind().dialect.name
    if dialect not in ("postgresql", "sqlite"):
        for row in rows:
            insert_ignore(s, model, row)
        return
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert  # type: ignore[assignment]
    for i in range(0, len(rows), 200):  # well inside SQLite's bound-parameter limit
        s.execute(insert(model).values(rows[i:i + 200]).on_conflict_do_nothing())


def insert_ignore(s: Session, model: type[Any], values: dict[str, Any]) -> None:
    """INSERT that does nothing when a unique key already exists (another writer won the race)."""
    dialect = s.get_bind().dialect.name
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as pg_insert

        s.execute(pg_insert(model).values(**values).on_conflict_do_nothing())
    elif dialect == "sqlite":
        from sqlalchemy.dialects.sqlite import insert as sqlite_insert

        s.execute(sqlite_insert(model).values(**values).on_conflict_do_nothing())
    else:  # other backends: a savepoint around a plain insert
        from sqlalchemy.exc import IntegrityError

        try:
            with s.begin_nested():
                s.add(model(**values))
        except IntegrityError:
            pass
