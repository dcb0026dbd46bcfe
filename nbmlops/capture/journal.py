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
    apply_batch,
)

if TYPE_CHECKING:
    from ..store import Store

log = logging.getLogger(__name__)

__all__ = ["Journal", "JournalFollower", "recover_journals", "journal_name"]

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
    """The append-only journal of one capture session."""

    def __init__(self, directory: Path, run_key: str, *, path: Path | None = None) -> None:
        self.path = path if path is not None else Path(directory) / journal_name(run_key)
        self._fd: int | None = None
        self.enabled = True

    def _open(self) -> int | None:
        if self._fd is None and self.enabled:
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                self._fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
            except OSError as exc:
                log.debug("journal disabled: %s", exc)
                self.enabled = False
        return self._fd

    def append(self, op: Op) -> None:
        data = _encode(op)
        if data is None:
            return
        fd = self._open()
        if fd is None:
            return
        line = json.dumps(data, default=str, separators=(",", ":")) + "\n"
        try:
            os.write(fd, line.encode("utf-8", "surrogatepass"))
        except OSError as exc:
            log.debug("journal write failed: %s", exc)

    def truncate(self) -> None:
        """Everything appended so far is committed: start empty."""
        if self._fd is not None:
            try:
                os.ftruncate(self._fd, 0)
            except OSError:
                pass

    def close(self, *, delete: bool) -> None:
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
    with open(path, "rb") as fh:
        fh.seek(offset)
        data = fh.read()
    end = data.rfind(b"\n") + 1  # a last line without newline is still being written (or cut)
    ops: list[Op] = []
    for line in data[:end].splitlines():
        try:
            op = _decode(json.loads(line.decode("utf-8", "surrogatepass")))
        except (ValueError, TypeError, KeyError):
            continue  # a line cut short by a crash
        if op is not None:
            ops.append(op)
    return ops, offset + end


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


class JournalFollower:
    """Writes a journal into the store while another process (a headless kernel) appends to it.

    Used by the executor: the kernel only journals (no SQLAlchemy, no writer thread competing
    for its GIL); this process, idle while it waits for the kernel, does the writing.
    """

    def __init__(self, path: Path, open_store: Any, *, interval: float = 1.0) -> None:
        import threading

        self.path = path
        self._open_store = open_store
        self._store: Store | None = None
        self._offset = 0
        #: read from the journal, not yet in the store
        self._pending: list[Op] = []
        #: runs started and not (yet) ended in the journal
        self._open_runs: set[str] = set()
        self.interval = interval
        self.problem: str | None = None
        self.written = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="nbmlops-follower", daemon=True)

    def start(self) -> JournalFollower:
        self._thread.start()
        return self

    def _loop(self) -> None:
        # Open the store now, while the kernel boots: importing SQLAlchemy and creating or
        # checking the schema then overlaps with the kernel's start instead of following it.
        try:
            if self._store is None:
                self._store = self._open_store()
        except Exception:  # noqa: BLE001 - _step retries and reports
            log.debug("journal follower: store not open yet", exc_info=True)
        while not self._stop.wait(self.interval):
            self._step()

    def _step(self) -> bool:
        """Read what is new and write it; False while the store refuses or is away."""
        try:
            if self.path.exists():
                new, self._offset = _read_ops(self.path, self._offset)
                self._pending.extend(new)
            if self._pending:
                if self._store is None:
                    self._store = self._open_store()
                self.written += apply_batch(self._store, self._pending, idempotent=True)
                self._open_runs |= {op.run_id for op in self._pending if isinstance(op, StartRun)}
                self._open_runs -= {op.run_id for op in self._pending if isinstance(op, EndRun)}
                self._pending = []
            self.problem = None
            return True
        except Exception as exc:  # noqa: BLE001 - keep the journal; report, retry next tick
            self.problem = f"{type(exc).__name__}: {exc}".splitlines()[0]
            log.debug("journal follower failed", exc_info=True)
            return False

    def finish(self, *, kernel_died: bool = False) -> bool:
        """Stop following, write the rest; on success delete the journal. False if it is kept."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=30)
        ok = self._step()
        if ok:
            try:
                if kernel_died and self._store is not None:
                    _fail(self._open_runs, self._store)
                self.path.unlink(missing_ok=True)
            except Exception as exc:  # noqa: BLE001
                self.problem = str(exc)
                ok = False
        if self._store is not None:
            self._store.close()
        return ok
