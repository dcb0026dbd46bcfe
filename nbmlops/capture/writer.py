"""The background writer: the kernel never waits on disk.

The capture session submits operations (start run, cell records, params/metrics, end run);
one daemon thread fingerprints the files they name and writes them to the store in short
transactions, consecutive cell records in one. When the store cannot be written (locked,
unwritable, unreachable) the operations stay queued, in order, and are retried with backoff;
the session reads :attr:`BackgroundWriter.problem` to warn the user once. The queue is bounded:
past ``max_pending`` operations the oldest cell records are dropped and counted.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import tempfile
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..errors import NbmlopsError, StoreError
from ..fingerprint import fingerprint_file
from ..store.entities import ArtifactIO, CellRecord, MetricValue

if TYPE_CHECKING:
    from ..store import Store
    from ..store.entities import Validation

log = logging.getLogger(__name__)

__all__ = ["BackgroundWriter", "StartRun", "UpdateRun", "Cells", "Batch", "EndRun", "LogArtifact",
           "RecordValidation", "record_validation", "in_thread"]


def in_thread(fn: Callable[[], dict[str, Any]]) -> Future[dict[str, Any]]:
    """Run ``fn`` in a daemon thread; its result (or ``{}`` on failure) arrives in a Future."""
    future: Future[dict[str, Any]] = Future()

    def work() -> None:
        try:
            future.set_result(fn())
        except Exception:  # noqa: BLE001 - best effort facts
            log.debug("collecting run facts failed", exc_info=True)
            future.set_result({})

    threading.Thread(target=work, name="nbmlops-facts", daemon=True).start()
    return future


@dataclass
class StartRun:
    run_id: str
    kwargs: dict[str, Any]


@dataclass
class UpdateRun:
    """Run fields computed slowly elsewhere (environment, git): written when ready, without
    holding back the cell records queued behind it."""

    run_id: str
    fields: Future[dict[str, Any]]

    @classmethod
    def done(cls, run_id: str, fields: dict[str, Any]) -> UpdateRun:
        future: Future[dict[str, Any]] = Future()
        future.set_result(fields)
        return cls(run_id, future)

    @property
    def ready(self) -> bool:
        return self.fields.done()


@dataclass
class Cells:
    run_id: str
    records: list[CellRecord]
    prepared: bool = False


@dataclass
class Batch:
    run_id: str
    params: dict[str, Any] = field(default_factory=dict)
    metrics: list[MetricValue] = field(default_factory=list)
    tags: dict[str, Any] = field(default_factory=dict)


@dataclass
class EndRun:
    run_id: str
    status: str
    end_time: float


@dataclass
class LogArtifact:
    run_id: str
    path: str
    kind: str
    cell_seq: int | None


@dataclass
class RecordValidation:
    """A data validation's outcome (``nbmlops.validate``), JSON-ready: artifacts as
    :class:`ArtifactIO` field dicts, the inferred schema as its JSON text (stored in the
    content-addressed artifact directory when applied). ``key`` makes a replay idempotent."""

    run_id: str | None
    cell_seq: int | None
    key: str
    passed: bool
    data_label: str
    reference_label: str
    violations: list[dict[str, Any]] = field(default_factory=list)
    summary: dict[str, Any] = field(default_factory=dict)
    rows: int | None = None
    data_fingerprint: str | None = None
    dataset: dict[str, Any] | None = None
    reference: dict[str, Any] | None = None
    schema_json: str | None = None


Op = StartRun | UpdateRun | Cells | Batch | EndRun | LogArtifact | RecordValidation


def _transient(exc: BaseException) -> bool:
    """Worth retrying: the store is away (locked, unwritable, corrupt until fixed), not wrong."""
    return isinstance(exc, (StoreError, OSError))


def _one_line(exc: BaseException) -> str:
    msg = str(exc) if isinstance(exc, NbmlopsError) else f"{type(exc).__name__}: {exc}"
    return (msg.splitlines()[0] if msg else "") or type(exc).__name__


def _prepare(op: Cells) -> None:
    """Fill in file fingerprints (in this thread, so that cells never wait on hashing)."""
    for rec in op.records:
        ios = []
        for io in rec.io:
            if io.fingerprint:
                ios.append(io)
                continue
            if "://" in io.uri:
                ios.append(dataclasses.replace(io, fingerprint="url"))
                continue
            fp = fingerprint_file(io.uri)
            if fp is None:
                if os.path.isdir(io.uri):
                    ios.append(dataclasses.replace(io, fingerprint="directory"))
                # a read that failed or a file already gone: nothing to link
                continue
            ios.append(dataclasses.replace(io, fingerprint=fp[0], size=fp[1]))
        rec.io = ios
    op.prepared = True


class BackgroundWriter:
    """Owns the store connection of a capture session and writes its operations in order."""

    def __init__(
        self,
        open_store: Callable[[], Store],
        *,
        max_pending: int = 20_000,
        retry_initial: float = 0.25,
        retry_max: float = 15.0,
        linger: float = 0.05,
        quiet: float = 0.2,
        max_delay: float = 10.0,
    ) -> None:
        self._open_store = open_store
        self._store: Store | None = None
        self._pending: deque[Op] = deque()
        self._cond = threading.Condition()
        self._stopping = False
        self._busy = False
        self.max_pending = max_pending
        self.retry_initial = retry_initial
        self.retry_max = retry_max
        #: Seconds the writer waits after the first new operation to write a batch at once
        #: (group commit: back-to-back cells cost one transaction, not one each).
        self.linger = linger
        #: The writer waits for the kernel to be quiet (no cell running for ``quiet`` seconds)
        #: before writing, so that "Run All" is not slowed by database work competing for the
        #: GIL; it writes anyway once the oldest pending record is ``max_delay`` seconds old.
        #: The crash journal holds whatever waits.
        self.quiet = quiet
        self.max_delay = max_delay
        self._in_cell = False
        self._last_activity = 0.0
        self._oldest_pending = 0.0
        self._flushing = 0
        #: Last failure as a one-line message, None while writes succeed.
        self.problem: str | None = None
        self.dropped = 0
        #: Records the store refused as invalid (not retried) and the last reason.
        self.rejected = 0
        self.rejection: str | None = None
        self._thread = threading.Thread(target=self._loop, name="nbmlops-writer", daemon=True)
        self._thread.start()

    # -- producer side (kernel thread) -----------------------------------------------------------

    def submit(self, op: Op) -> None:
        with self._cond:
            if len(self._pending) >= self.max_pending:
                for i, queued in enumerate(self._pending):
                    if isinstance(queued, Cells) and i > 0:
                        del self._pending[i]
                        self.dropped += len(queued.records)
                        break
            was_empty = not self._pending
            self._pending.append(op)
            if was_empty:
                # wake the writer only to start its clock: waking it for every record would
                # make it compete with the running cell for the GIL
                self._oldest_pending = time.monotonic()
                self._cond.notify_all()

    def activity(self, in_cell: bool) -> None:
        """The kernel starts (True) or finishes (False) a cell: no lock, no wake-up."""
        self._in_cell = in_cell
        self._last_activity = time.monotonic()

    def _wait_for_quiet(self) -> None:
        """Hold writes while cells run back to back (called with the condition held)."""
        while not (self._stopping or self._flushing):
            now = time.monotonic()
            due = self._oldest_pending + self.max_delay - now
            idle = now - self._last_activity
            if due <= 0 or (not self._in_cell and idle >= self.quiet):
                return
            wait = due if self._in_cell else min(due, self.quiet - idle)
            self._cond.wait(timeout=max(0.01, min(wait, self.quiet)))

    @property
    def pending(self) -> int:
        with self._cond:
            return len(self._pending) + (1 if self._busy else 0)

    def flush(self, timeout: float | None = 10.0) -> bool:
        """Wait until everything submitted so far is written; False on timeout."""
        with self._cond:
            self._flushing += 1
            self._cond.notify_all()
            try:
                return self._cond.wait_for(lambda: not self._pending and not self._busy, timeout)
            finally:
                self._flushing -= 1

    def close(self, timeout: float = 10.0) -> bool:
        """Write what is pending (up to ``timeout``), stop the thread, close the store."""
        done = self.flush(timeout)
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        self._thread.join(timeout=1.0)
        if self._store is not None:
            self._store.close()
        return done

    def store(self) -> Store | None:
        return self._store

    # -- consumer side (writer thread) -----------------------------------------------------------

    def _loop(self) -> None:
        delay = self.retry_initial
        while True:
            with self._cond:
                self._cond.wait_for(lambda: self._pending or self._stopping)
                if self._stopping and (not self._pending or self.problem):
                    return
                if self.linger and not (self._stopping or self._flushing):
                    # the crash journal holds these already: gather a few more cells
                    self._cond.wait_for(lambda: self._stopping or self._flushing > 0, self.linger)
                self._wait_for_quiet()
                batch = self._take_batch()
                if not batch:  # only facts still being collected: wait for them
                    self._cond.wait(timeout=0.05)
                    continue
                self._busy = True
            try:
                self._write(batch)
            except Exception as exc:  # noqa: BLE001 - the writer must never die
                if not _transient(exc):
                    # retrying cannot help (an inconsistent record, a bug): drop it, say so once
                    with self._cond:
                        self._busy = False
                        self.rejected += sum(len(op.records) if isinstance(op, Cells) else 1
                                             for op in batch)
                        self.rejection = _one_line(exc)
                        self._cond.notify_all()
                    log.warning("nbmlops dropped a record the store refused: %s", self.rejection,
                                exc_info=exc)
                    continue
                with self._cond:
                    # put the batch back in front, in order
                    self._pending.extendleft(reversed(batch))
                    self._busy = False
                    self.problem = _one_line(exc)
                    self._cond.notify_all()
                    log.debug("nbmlops writer failed, retrying in %.2fs", delay, exc_info=True)
                    self._cond.wait(timeout=delay)
                delay = min(self.retry_max, delay * 2)
                continue
            delay = self.retry_initial
            with self._cond:
                self._busy = False
                self.problem = None
                self._cond.notify_all()

    def _take_batch(self) -> list[Op]:
        """The next ready operation, or a run of consecutive cell records of one run."""
        index = next(
            (i for i, op in enumerate(self._pending) if not isinstance(op, UpdateRun) or op.ready),
            None,
        )
        if index is None:
            return []
        first = self._pending[index]
        del self._pending[index]
        batch: list[Op] = [first]
        if isinstance(first, Cells):
            while self._pending and isinstance(self._pending[0], Cells) and \
                    self._pending[0].run_id == first.run_id and len(batch) < 200:
                batch.append(self._pending.popleft())
        return batch

    def _write(self, batch: list[Op]) -> None:
        if self._store is None:
            self._store = self._open_store()
        apply_batch(self._store, batch)


class JournalOnlyWriter:
    """The writer of a headless kernel whose launcher writes the store (``NBMLOPS_JOURNAL``).

    Operations are already in the journal when they reach it; only run facts that finish
    later are appended when ready. Nothing here touches the store or SQLAlchemy.
    """

    pending = 0
    problem: str | None = None
    dropped = 0
    rejected = 0
    rejection: str | None = None

    def __init__(self, journal: Any) -> None:
        self._journal = journal

    def activity(self, in_cell: bool) -> None:
        pass

    def submit(self, op: Op) -> None:
        if isinstance(op, UpdateRun) and not op.ready:
            op.fields.add_done_callback(lambda _f: self._journal.append(op))

    def flush(self, timeout: float | None = None) -> bool:
        return True

    def close(self, timeout: float = 0.0) -> bool:
        return True

    def store(self) -> Store | None:
        return None


def apply_batch(store: Store, batch: list[Op], *, idempotent: bool = False) -> int:
    """Apply operations to the store (one transaction for consecutive cell records).

    ``idempotent`` makes a replay safe: runs, cell records and metric values already stored
    are skipped, and an ``EndRun`` leaves an already ended run alone. Returns the number of
    cell records written.
    """
    written = 0
    i = 0
    while i < len(batch):
        op = batch[i]
        if isinstance(op, Cells):
            records: list[CellRecord] = []
            while i < len(batch) and isinstance(batch[i], Cells) and batch[i].run_id == op.run_id:
                cells = batch[i]
                assert isinstance(cells, Cells)
                if not cells.prepared:
                    _prepare(cells)
                records.extend(cells.records)
                i += 1
            if idempotent and not store.run_exists(op.run_id):
                continue
            written += len(store.record_cells(op.run_id, records, skip_existing=idempotent))
            continue
        i += 1
        if isinstance(op, RecordValidation):
            if not (idempotent and op.run_id is not None and not store.run_exists(op.run_id)):
                record_validation(store, op, idempotent=idempotent)
        elif isinstance(op, StartRun):
            if idempotent and store.run_exists(op.run_id):
                continue
            try:
                store.create_run(run_id=op.run_id, **op.kwargs)
            except NbmlopsError as exc:
                # a retry after a commit whose answer was lost: the run may already be there
                if not store.run_exists(op.run_id):
                    raise exc from None
        elif idempotent and not store.run_exists(op.run_id):
            continue  # a replay of a run that never made it into the store
        elif isinstance(op, UpdateRun):
            fields = op.fields.result()
            if fields:
                store.update_run(op.run_id, **fields)
        elif isinstance(op, Batch):
            store.log_batch(op.run_id, params=op.params, metrics=op.metrics, tags=op.tags,
                            skip_existing=idempotent)
        elif isinstance(op, EndRun):
            store.end_run(op.run_id, op.status, op.end_time, only_if_running=idempotent)
        elif isinstance(op, LogArtifact):
            if idempotent and not os.path.isfile(op.path):
                continue
            store.log_artifact(op.run_id, op.path, kind=op.kind, cell_seq=op.cell_seq)
        else:  # pragma: no cover
            raise TypeError(f"unknown writer operation {op!r}")
    return written


def record_validation(store: Store, op: RecordValidation, *, idempotent: bool = False
                      ) -> Validation | None:
    """Store the schema JSON as a content-addressed artifact and record the validation.
    ``idempotent``: nothing when a validation with ``op.key`` is already recorded in the run."""
    if idempotent and op.run_id is not None and any(
        v.summary.get("key") == op.key for v in store.validations.for_run(op.run_id)
    ):
        return None
    schema = None
    if op.schema_json is not None:
        root = store.artifacts.root
        root.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=root, prefix=".schema-", suffix=".json")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                fh.write(op.schema_json)
            digest, stored = store.artifacts.put(tmp)
        finally:
            os.unlink(tmp)
        schema = ArtifactIO(uri=str(stored), direction="wrote", via="validate", kind="schema",
                            fingerprint=f"sha256:{digest}", size=len(op.schema_json.encode()))
    return store.validations.record(
        passed=op.passed, data_label=op.data_label, reference_label=op.reference_label,
        violations=op.violations, summary={**op.summary, "key": op.key}, rows=op.rows,
        data_fingerprint=op.data_fingerprint,
        dataset=ArtifactIO(**op.dataset) if op.dataset else None,
        reference=ArtifactIO(**op.reference) if op.reference else None,
        schema=schema, run_id=op.run_id, cell_seq=op.cell_seq,
    )
