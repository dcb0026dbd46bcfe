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
from .writer import Batch, Cells, EndRun, LogArtifact, Op, StartRun

if TYPE_CHECKING:
    from ..store import Store

log = logging.getLogger(__name__)

__all__ = ["Journal", "recover_journals"]

_HOST = socket.gethostname().replace("-", "_") or "host"


def _encode(op: Op) -> dict[str, Any] | None:
    if isinstance(op, (StartRun, Batch, EndRun, LogArtifact)):
        return {"op": type(op).__name__, **dataclasses.asdict(op)}
    if isinstance(op, Cells):
        return {"op": "Cells", "run_id": op.run_id,
                "records": [dataclasses.asdict(r) for r in op.records]}
    return None  # UpdateRun: environment facts are re-derivable, not worth journaling


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


class Journal:
    """The append-only journal of one capture session (kernel thread only)."""

    def __init__(self, directory: Path, run_key: str) -> None:
        self.path = Path(directory) / f"{_HOST}-{os.getpid()}-{run_key}.jsonl"
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


def _replay(path: Path, store: Store) -> int:
    ops: list[Op] = []
    with open(path, encoding="utf-8", errors="surrogatepass") as fh:
        for line in fh:
            try:
                op = _decode(json.loads(line))
            except (ValueError, TypeError, KeyError):
                continue  # a line cut short by the crash
            if op is not None:
                ops.append(op)
    added = 0
    runs: set[str] = set()
    ended: set[str] = set()
    for op in ops:
        if isinstance(op, StartRun):
            if not store.run_exists(op.run_id):
                store.create_run(run_id=op.run_id, **op.kwargs)
            runs.add(op.run_id)
        elif isinstance(op, Cells):
            if store.run_exists(op.run_id):
                from .writer import _prepare

                _prepare(op)
                added += len(store.record_cells(op.run_id, op.records, skip_existing=True))
                runs.add(op.run_id)
        elif isinstance(op, Batch):
            if store.run_exists(op.run_id):
                store.log_batch(op.run_id, params=op.params, metrics=op.metrics, tags=op.tags,
                                skip_existing=True)
        elif isinstance(op, EndRun):
            if store.run_exists(op.run_id):
                store.end_run(op.run_id, op.status, op.end_time, only_if_running=True)
                ended.add(op.run_id)
        elif isinstance(op, LogArtifact) and store.run_exists(op.run_id) and os.path.isfile(op.path):
            store.log_artifact(op.run_id, op.path, kind=op.kind, cell_seq=op.cell_seq)
    for run_id in runs - ended:
        # the process died while the run was open
        store.end_run(run_id, "failed", only_if_running=True)
    return added
