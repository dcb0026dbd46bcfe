"""The crash journal: what the writer has not committed yet survives the kernel dying.

Every operation the session hands to the background writer is first appended, as one JSON line,
to ``<journal dir>/<host>-<pid>-<run>.jsonl`` (an ``O_APPEND`` write into the OS page cache: a few
microseconds, no fsync). The session truncates the file whenever the writer has caught up and
deletes it at a clean exit. A journal whose process is gone is replayed into the store by the next
writer that opens it (or by the executor that saw the kernel die) — idempotently — and its run,
if it never ended, is marked ``failed``. So a crash loses at most the cell in flight.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import socket
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..store.entities import ArtifactIO, CellRecord, Estimator, MetricValue
from .writer import (
    Batch,
    Cells,
    EndRun,
    LogArtifact,
    Op,
    RecordValidation,
    StartRun,
    UpdateRun,
    _one_line,
    _transient,
    apply_batch,
)

if TYPE_CHECKING:
    from ..store import Store

log = logging.getLogger(__name__)

__all__ = ["Journal", "JournalFollower", "recover_journals", "journal_name"]

#: one encoder for every line (``json.dumps`` with options builds a new one per call)
_ENCODER = json.JSONEncoder(default=str, separators=(",", ":"))
_HOST = socket.gethostname().replace("-", "_") or "host"


def _encode(op: Op) -> dict[str, Any] | None:
    if isinstance(op, (StartRun, Batch, EndRun, LogArtifact, RecordValidation)):
        return {"op": type(op).__name__, **dataclasses.asdict(op)}
    if isinstance(op, Cells):
        return {"op": "Cells", "run_id": op.run_id, "records": [_record_dict(r) for r in op.records]}
    if isinstance(op, UpdateRun) and op.ready:
        return {"op": "UpdateRun", "run_id": op.run_id, "fields": op.fields.result()}
    return None  # facts still being collected: journaled by whoever waits for them


def _record_dict(r: CellRecord) -> dict[str, Any]:
    """A cell record as JSON-ready data (``asdict`` without its deep copies: hot path)."""
    data = dict(vars(r))
    data["io"] = [vars(io) for io in r.io]
    data["estimators"] = [vars(e) for e in r.estimators]
    data["metrics"] = [vars(m) for m in r.metrics]
    return data


def _decode(data: dict[str, Any]) -> Op | None:
    kind = data.pop("op", None)
    if kind == "StartRun":
        return StartRun(data["run_id"], data["kwargs"])
    if kind == "Batch":
        return Batch(data["run_id"], data.get("params") or {},
                     [MetricValue(**m) for m in data.get("metrics") or []], data.get("tags") or {})
    if kind == "EndRun":
        return EndRun(data["run_id"], data["status"], data["end_time"])
    if kind == "LogArtifact":
        return LogArtifact(data["run_id"], data["path"], data["kind"], data.get("cell_seq"))
    if kind == "RecordValidation":
        return RecordValidation(**data)
    if kind == "UpdateRun":
        return UpdateRun.done(data["run_id"], data.get("fields") or {})
    if kind == "Cells":
        records = []
        for r in data["records"]:
            r["io"] = [ArtifactIO(**io) for io in r.get("io", [])]
            r["estimators"] = [Estimator(**e) for e in r.get("estimators", [])]
            r["metrics"] = [MetricValue(**m) for m in r.get("metrics", [])]
            r["var_sources"] = {k: int(v) for k, v in r.get("var_sources", {}).items()}
            records.append(CellRecord(**r))
        return Cells(data["run_id"], records)
    return None


def journal_name(run_key: str, pid: int | None = None) -> str:
    """``<host>-<pid>-<key>.jsonl``: the pid is the process whose death makes it replayable."""
    return f"{_HOST}-{pid if pid is not None else os.getpid()}-{run_key}.jsonl"


class Journal:
    """The append-only journal of one capture session.

    Appends never raise. A write the file system refuses (disk full) or cuts short keeps the
    unwritten bytes in memory, in order, and writes them before the next line (or at
    :meth:`retry`), so a reader following the file never sees a torn line followed by more.
    """

    def __init__(self, directory: Path, run_key: str, *, path: Path | None = None,
                 max_backlog: int = 50_000_000) -> None:
        self.path = path if path is not None else Path(directory) / journal_name(run_key)
        self._fd: int | None = None
        self.enabled = True
        #: complete lines handed to the journal (written or still in the backlog)
        self.lines = 0
        #: bytes not written yet (a refused or short write), oldest first
        self._backlog: list[bytes] = []
        self._backlog_bytes = 0
        self.max_backlog = max_backlog
        #: lines dropped because the backlog outgrew ``max_backlog`` (disk full for long)
        self.dropped = 0
        #: the last write error while bytes wait in the backlog, else None
        self.problem: str | None = None
        self._lock = threading.Lock()

    def _open(self) -> int | None:
        if self._fd is None and self.enabled:
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                self._fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
            except OSError as exc:
                log.debug("journal disabled: %s", exc)
                self.enabled = False
        return self._fd

    def append(self, op: Op) -> bool:
        """Append ``op`` as one line; False when it has no journal form (facts not ready)."""
        data = _encode(op)
        if data is None:
            return False
        fd = self._open()
        if fd is None:
            return False
        line = (_ENCODER.encode(data) + "\n").encode("utf-8", "surrogatepass")
        with self._lock:
            self.lines += 1
            if self._backlog:
                self._backlog.append(line)
                self._backlog_bytes += len(line)
                self._write_backlog(fd)
                return True
            try:
                written = os.write(fd, line)
            except OSError as exc:
                written = 0
                self.problem = f"cannot write the capture journal {self.path}: {exc.strerror or exc}"
                log.debug("journal write failed: %s", exc)
            if written < len(line):
                self._backlog.append(line[written:])
                self._backlog_bytes += len(line) - written
                self._trim_backlog()
        return True

    def _write_backlog(self, fd: int) -> None:
        """Write what waits, oldest first (called with the lock held)."""
        while self._backlog:
            chunk = self._backlog[0]
            try:
                written = os.write(fd, chunk)
            except OSError as exc:
                self.problem = f"cannot write the capture journal {self.path}: {exc.strerror or exc}"
                break
            self._backlog_bytes -= written
            if written < len(chunk):
                self._backlog[0] = chunk[written:]
                break
            self._backlog.pop(0)
        if not self._backlog:
            self.problem = None
        else:
            self._trim_backlog()

    def _trim_backlog(self) -> None:
        # keep the first chunk (it may be the rest of a line already partly on disk)
        while self._backlog_bytes > self.max_backlog and len(self._backlog) > 1:
            self._backlog_bytes -= len(self._backlog.pop(1))
            self.dropped += 1

    def retry(self) -> bool:
        """Write the backlog now; True when nothing waits any more."""
        with self._lock:
            if self._backlog and self._fd is not None:
                self._write_backlog(self._fd)
            return not self._backlog

    @property
    def backlog(self) -> int:
        return len(self._backlog)

    def truncate(self) -> None:
        """Everything appended so far is committed: start empty."""
        if self._fd is not None and not self._backlog:
            try:
                os.ftruncate(self._fd, 0)
            except OSError:
                pass

    def close(self, *, delete: bool) -> None:
        self.retry()
        if self._fd is not None:
            try:
                os.close(self._fd)
            except OSError:
                pass
            self._fd = None
        if delete:
            try:
                self.path.unlink()
            except OSError:
                pass


def _owner_alive(path: Path) -> bool:
    host, _, rest = path.stem.partition("-")
    pid_text = rest.partition("-")[0]
    if host != _HOST or not pid_text.isdigit():
        return host != _HOST  # another machine's journal: not ours to judge
    pid = int(pid_text)
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def recover_journals(directory: Path, store: Store) -> int:
    """Replay the journals of dead processes into ``store``; return the cell records added."""
    if not directory.is_dir():
        return 0
    added = 0
    for path in sorted(directory.glob("*.jsonl")):
        if _owner_alive(path):
            continue
        try:
            added += _replay(path, store)
        except Exception as exc:  # noqa: BLE001 - keep the file for a later attempt
            log.warning("could not replay nbmlops journal %s: %s", path, exc)
            continue
        try:
            path.unlink()
        except OSError:
            pass
    return added


def _read_ops(path: Path, offset: int = 0) -> tuple[list[Op], int]:
    """Decode the complete lines from ``offset``; return the ops and the offset after them."""
    ops, end, _lines = _read_lines(path, offset)
    return ops, end


def _read_lines(path: Path, offset: int = 0) -> tuple[list[Op], int, int]:
    """:func:`_read_ops` plus the number of complete lines read (undecodable ones included)."""
    with open(path, "rb") as fh:
        fh.seek(offset)
        data = fh.read()
    end = data.rfind(b"\n") + 1  # a last line without newline is still being written (or cut)
    ops: list[Op] = []
    lines = data[:end].splitlines()
    for line in lines:
        try:
            op = _decode(json.loads(line.decode("utf-8", "surrogatepass")))
        except (ValueError, TypeError, KeyError):
            continue  # a line cut short by a crash
        if op is not None:
            ops.append(op)
    return ops, offset + end, len(lines)


def _unended(ops: list[Op]) -> set[str]:
    """Runs that the operations start and do not end."""
    started = {op.run_id for op in ops if isinstance(op, StartRun)}
    return started - {op.run_id for op in ops if isinstance(op, EndRun)}


def _fail(run_ids: set[str], store: Store) -> None:
    """Runs whose process died while they were open: mark them failed."""
    for run_id in sorted(run_ids):
        if store.run_exists(run_id):
            store.end_run(run_id, "failed", only_if_running=True)


def _replay(path: Path, store: Store) -> int:
    ops, _ = _read_ops(path)
    added = apply_batch(store, ops, idempotent=True)
    _fail(_unended(ops), store)
    return added


def _records(op: Op) -> int:
    return len(op.records) if isinstance(op, Cells) else 1


class JournalFollower:
    """Writes a journal into the store while another process (a kernel) appends to it.

    Used by the executor for headless kernels (:meth:`start`: a thread that steps once a
    second) and by the writer process of interactive kernels (:mod:`nbmlops.capture.writerproc`,
    which calls :meth:`step` itself). The kernel only journals: no SQLAlchemy, no writer
    thread competing for its GIL. Operations the store refuses as invalid (not a store
    outage) are dropped and counted in :attr:`rejected`; an outage keeps them for the next step.
    """

    def __init__(self, path: Path, open_store: Any, *, interval: float = 1.0) -> None:
        self.path = path
        self._open_store = open_store
        self._store: Store | None = None
        self._offset = 0
        #: read from the journal, not yet in the store
        self._pending: list[Op] = []
        self._pending_lines = 0
        #: runs started and not (yet) ended in the journal
        self._open_runs: set[str] = set()
        self.interval = interval
        self.problem: str | None = None
        self.written = 0
        #: journal lines fully handled (written, or rejected by the store)
        self.lines_done = 0
        self.rejected = 0
        self.rejection: str | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="nbmlops-follower", daemon=True)

    def start(self) -> JournalFollower:
        self._thread.start()
        return self

    @property
    def store(self) -> Store | None:
        return self._store

    def open_store(self) -> bool:
        """Open the store now (SQLAlchemy's import and the schema check overlap the kernel's
        start instead of following it); False while it is unavailable."""
        try:
            if self._store is None:
                self._store = self._open_store()
            return True
        except Exception as exc:  # noqa: BLE001 - step retries and reports
            self.problem = _one_line(exc)
            log.debug("journal follower: store not open yet", exc_info=True)
            return False

    def _loop(self) -> None:
        self.open_store()
        while not self._stop.wait(self.interval):
            self.step()

    @property
    def caught_up(self) -> bool:
        return not self._pending

    def step(self) -> bool:
        """Read what is new and write it; False while the store is away (kept for later)."""
        try:
            if self.path.exists():
                new, self._offset, lines = _read_lines(self.path, self._offset)
                self._pending.extend(new)
                self._pending_lines += lines
            if self._pending:
                if self._store is None:
                    self._store = self._open_store()
                try:
                    self.written += apply_batch(self._store, self._pending, idempotent=True)
                except Exception as exc:  # noqa: BLE001
                    if _transient(exc):
                        raise
                    self._apply_one_by_one()
                self._note_runs(self._pending)
                self._pending = []
            self.lines_done += self._pending_lines
            self._pending_lines = 0
            self.problem = None
            return True
        except Exception as exc:  # noqa: BLE001 - keep the journal; report, retry next step
            self.problem = _one_line(exc)
            log.debug("journal follower failed", exc_info=True)
            return False

    def _apply_one_by_one(self) -> None:
        """A batch the store refused: write what it takes, drop (and count) what it refuses."""
        assert self._store is not None
        for i, op in enumerate(self._pending):
            try:
                self.written += apply_batch(self._store, [op], idempotent=True)
            except Exception as exc:  # noqa: BLE001
                if _transient(exc):
                    self._note_runs(self._pending[:i])
                    self._pending = self._pending[i:]
                    raise
                self.rejected += _records(op)
                self.rejection = _one_line(exc)
                log.warning("nbmlops dropped a record the store refused: %s", self.rejection)

    def _note_runs(self, ops: list[Op]) -> None:
        self._open_runs |= {op.run_id for op in ops if isinstance(op, StartRun)}
        self._open_runs -= {op.run_id for op in ops if isinstance(op, EndRun)}

    def fail_open_runs(self) -> None:
        """The kernel died: its runs still open are failed runs."""
        if self._store is not None:
            _fail(self._open_runs, self._store)
            self._open_runs = set()

    def finish(self, *, kernel_died: bool = False) -> bool:
        """Stop following, write the rest; on success delete the journal. False if it is kept."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=30)
        ok = self.step()
        if ok:
            try:
                if kernel_died:
                    self.fail_open_runs()
                self.path.unlink(missing_ok=True)
            except Exception as exc:  # noqa: BLE001
                self.problem = str(exc)
                ok = False
        self.close()
        return ok

    def close(self) -> None:
        if self._store is not None:
            self._store.close()
            self._store = None
