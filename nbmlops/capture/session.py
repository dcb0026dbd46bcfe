"""The capture session: IPython hooks that turn each cell execution into a lineage record.

``pre_run_cell`` notes the time, the cell's names (AST) and a cheap snapshot of the namespace
(name -> object id); ``post_run_cell`` diffs the namespace, works out variables defined and used
and the cells they came from, fitted estimators and metrics, and hands one
:class:`~nbmlops.store.CellRecord` to the background writer. Both hooks accept ``*args`` and
never raise: an internal failure is counted and shown once as a short warning, and the user's
cell result, output and exception are left exactly as they were.
"""

from __future__ import annotations

import functools
import logging
import math
import os
import sys
import time
import types
import uuid
from collections import Counter
from dataclasses import dataclass, field
from itertools import compress
from operator import ne
from pathlib import Path
from typing import TYPE_CHECKING, Any

from traitlets import Bool, Int, Unicode
from traitlets.config import Configurable

from ..config import StoreLocation, resolve_location
from ..errors import InvalidArgumentError
from ..redact import redact_cell, redact_source, secret_warning
from ..store.entities import RUN_SOURCES, ArtifactIO, CellRecord, Estimator, MetricValue
from .analysis import CellNames, analyze_cell
from .instrument import Instrumentation, splice_traceback
from .journal import Journal
from .writer import (
    BackgroundWriter,
    Batch,
    Cells,
    EndRun,
    JournalOnlyWriter,
    LogArtifact,
    Op,
    RecordValidation,
    StartRun,
    UpdateRun,
    in_thread,
)
from .writerproc import ProcessWriter

if TYPE_CHECKING:
    from collections.abc import Callable

    from ..store import Store

log = logging.getLogger(__name__)

__all__ = ["CaptureSession", "active_session"]

_SHELL_ATTR = "_nbmlops_session"
#: Names IPython puts in every namespace; never user variables.
_IGNORED_NAMES = frozenset({"In", "Out", "get_ipython", "exit", "quit", "open"})
_MAX_PARAM_REPR = 500


def active_session() -> CaptureSession | None:
    """The capture session of the running IPython shell, if any (never imports IPython)."""
    ipython = sys.modules.get("IPython")
    if ipython is None:
        return None
    shell = ipython.get_ipython()
    return getattr(shell, _SHELL_ATTR, None) if shell is not None else None


def _jsonable(value: Any, depth: int = 0) -> Any:
    """A JSON-safe, size-capped rendering of an estimator hyper-parameter."""
    if value is None or isinstance(value, (bool, int, str)):
        return value if not isinstance(value, str) or len(value) <= _MAX_PARAM_REPR else value[:_MAX_PARAM_REPR]
    if isinstance(value, float):
        return value if math.isfinite(value) else repr(value)
    if depth < 2 and isinstance(value, (list, tuple)) and len(value) <= 50:
        return [_jsonable(v, depth + 1) for v in value]
    if depth < 2 and isinstance(value, dict) and len(value) <= 50:
        return {str(k): _jsonable(v, depth + 1) for k, v in value.items()}
    text = repr(value)
    return text if len(text) <= _MAX_PARAM_REPR else text[:_MAX_PARAM_REPR] + "..."


def _is_estimator(obj: Any) -> bool:
    try:
        cls = type(obj)
        return not isinstance(obj, type) and hasattr(cls, "fit") and hasattr(cls, "get_params")
    except Exception:  # noqa: BLE001
        return False


def _fitted_signature(obj: Any, depth: int = 0) -> tuple[int, ...]:
    """Object ids of the fitted attributes (``coef_``, ``classes_``...): changes on every fit.

    Meta-estimators that keep no fitted attribute of their own (``Pipeline``) are judged by
    their last step. Empty means "not fitted".
    """
    try:
        sig = tuple(
            id(v) for k, v in vars(obj).items() if k.endswith("_") and not k.startswith("_")
        )
        if not sig and depth < 3:
            steps = getattr(obj, "steps", None)
            if isinstance(steps, list) and steps and isinstance(steps[-1], tuple):
                sig = _fitted_signature(steps[-1][-1], depth + 1)
        return sig
    except Exception:  # noqa: BLE001 - objects without a usable __dict__ are not estimators
        return ()


#: values that are code, not data: their variable edges do not make data lineage
_CODE_TYPES = (
    types.ModuleType, types.FunctionType, types.BuiltinFunctionType, types.MethodType, type,
    functools.partial,
)


#: the namespace's names and the ids of their values, in the namespace's order
_Snapshot = tuple[list[str], list[int]]

_PARAMETER_TAGS = frozenset({"parameters", "injected-parameters"})


def _param_value(value: Any) -> Any:
    """Numbers and strings as they are; containers as (capped) JSON-like text."""
    if isinstance(value, (bool, int, float, str)) or value is None:
        return value if not isinstance(value, str) else value[:_MAX_PARAM_REPR]
    return repr(_jsonable(value))[:_MAX_PARAM_REPR]


def _as_number(value: Any) -> float | None:
    try:
        if isinstance(value, bool):
            return None
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


@dataclass
class _CellState:
    is_parameters: bool
    seq: int
    source: str
    start: float
    t0: float
    cell_id: str | None
    names: CellNames
    pre_ids: _Snapshot
    #: fitted-state signatures, by object id, of the estimators the cell mentions
    est_pre: dict[int, tuple[int, ...]]
    io: list[ArtifactIO] = field(default_factory=list)
    metrics: list[tuple[str, Any]] = field(default_factory=list)
    params: dict[str, Any] = field(default_factory=dict)
    tags: dict[str, Any] = field(default_factory=dict)
    explicit_metrics: list[MetricValue] = field(default_factory=list)


class CaptureSession(Configurable):
    """Records the cell executions of one IPython shell as runs in a lineage store."""

    store_url = Unicode(
        None, allow_none=True, config=True,
        help="SQLAlchemy URL of the store (default: NBMLOPS_STORE_URL, else the project's .nbmlops/).",
    )
    experiment = Unicode(None, allow_none=True, config=True, help="Experiment of new runs.")
    capture_io = Bool(True, config=True, help="Record files read/written via pandas, open, joblib, pickle.")
    capture_metrics = Bool(True, config=True, help="Record sklearn.metrics results and estimator.score.")
    capture_estimators = Bool(True, config=True, help="Record fitted scikit-learn estimators.")
    max_pending = Int(20_000, config=True, help="Operations kept in memory while the store is unavailable.")
    flush_timeout = Int(10, config=True, help="Seconds to wait for pending writes at exit.")

    def __init__(self, shell: Any, *, source: str = "interactive", **kwargs: Any) -> None:
        super().__init__(parent=shell, **kwargs)
        self.shell = shell
        self.source = source
        self.user_ns: dict[str, Any] = shell.user_ns
        self.run_id: str | None = None
        self.run_name: str | None = None
        self.run_experiment: str | None = None
        self.state = "stopped"
        self.cells_recorded = 0
        #: seconds spent in this run's pre/post_run_cell hooks (the overhead users feel)
        self.hook_seconds = 0.0
        self.internal_errors: Counter[str] = Counter()
        self._warned_internal = False
        self._warned_rejection = False
        self._warned_secret = False
        self._announced_problem: str | None = None
        self._cell: _CellState | None = None
        self._last_definer: dict[str, int] = {}
        self._metric_steps: Counter[str] = Counter()
        self._excluded = set(getattr(shell, "user_ns_hidden", {}) or ()) | _IGNORED_NAMES
        #: the namespace snapshot taken after the last recorded cell, reused as the next
        #: cell's "before" (nothing but cells changes the namespace in between, as a rule)
        self._last_snapshot: _Snapshot | None = None
        self._location: StoreLocation | None = None
        self._journal: Journal | None = None
        self._writer: BackgroundWriter | JournalOnlyWriter | ProcessWriter
        external = os.environ.get("NBMLOPS_JOURNAL")
        if external:
            # headless: the process that started this kernel writes the store from the journal
            self._journal = Journal(Path(external).parent, "", path=Path(external))
            self._writer = JournalOnlyWriter(self._journal)
        elif os.environ.get("NBMLOPS_CAPTURE_WRITER", "process") == "thread":
            self._writer = BackgroundWriter(self._open_store, max_pending=self.max_pending)
        else:
            # interactive: a writer process follows the journal (nbmlops.capture.writerproc)
            self._writer = ProcessWriter(lambda: self._journal, lambda: self.location)
        self._external = bool(external)
        self._reader: Store | None = None
        self._parameter_cells = set(filter(None, os.environ.get("NBMLOPS_PARAMETER_CELLS", "").split(",")))
        self._instrumentation = Instrumentation(self, self.user_ns)
        self._registered = False
        self._pending_artifacts: list[LogArtifact | RecordValidation] = []
        #: the last cell's record, built and journaled once the kernel has sent the cell's
        #: reply (see :meth:`_post_run_cell`); anything that reads or writes after it settles
        #: it first, so order is kept
        self._deferred: list[Callable[[], None]] = []
        self._pid = os.getpid()

    # -- lifecycle ------------------------------------------------------------------------------

    @property
    def location(self) -> StoreLocation:
        if self._location is None:
            self._location = resolve_location(self.store_url or None)
        return self._location

    def _open_store(self) -> Store:
        """Open the store (writer thread) and replay journals that dead kernels left behind."""
        from ..store import Store
        from .journal import recover_journals

        store = Store(self.location)
        try:
            recovered = recover_journals(self.location.journal_dir, store)
            if recovered:
                log.info("recovered %d cell records from crashed sessions", recovered)
        except Exception:  # noqa: BLE001 - recovery is best effort, never blocks capture
            log.debug("journal recovery failed", exc_info=True)
        return store

    def _submit(self, op: Op) -> None:
        """Journal the operation (crash safety), then queue it for the writer."""
        if self._deferred:
            self._settle()
        journal = self._journal
        if journal is not None:
            writer = self._writer
            if type(writer) is BackgroundWriter and writer.pending == 0:
                journal.truncate()
            journal.append(op)
        self._writer.submit(op)

    def store(self) -> Store:
        """The session's store for reading (after writing what is pending, briefly)."""
        # the writer process may still be starting (a fresh interpreter importing SQLAlchemy):
        # wait for it, unless it already reported the store away
        self._settle()
        self._writer.flush(timeout=2.0 if self._writer.problem else 15.0)
        existing = self._writer.store()
        if existing is not None:
            return existing
        if self._reader is None:
            self._reader = self._open_store()
        if self._external and self.run_id is not None:
            self._wait_for_follower(self._reader, self.run_id, timeout=3.0)
        return self._reader

    def _wait_for_follower(self, store: Store, run_id: str, timeout: float) -> None:
        """Headless: the launching process writes about once a second; give it that time."""
        from ..errors import NbmlopsError

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if store.run_exists(run_id) and (store.get_run(run_id).cell_count or 0) >= self.cells_recorded:
                    return
            except NbmlopsError:
                return
            time.sleep(0.1)

    def register(self) -> None:
        if self._registered:
            return
        events = self.shell.events
        events.register("pre_run_cell", self.pre_run_cell)
        events.register("post_run_cell", self.post_run_cell)
        if self.capture_io or self.capture_metrics:
            self._instrumentation.install()
            self._wrap_showtraceback()
        setattr(self.shell, _SHELL_ATTR, self)
        # so that `%config CaptureSession.capture_io = False` reaches this session
        configurables = getattr(self.shell, "configurables", None)
        if isinstance(configurables, list):
            configurables.append(self)
        import atexit

        atexit.register(self.close)
        self._registered = True

    def _wrap_showtraceback(self) -> None:
        """Keep tracebacks exactly as without nbmlops: splice our wrapper frames out first."""
        original = self.shell.showtraceback
        codes = self._instrumentation.wrapper_codes

        def showtraceback(*args: Any, **kwargs: Any) -> Any:
            try:
                exc_tuple = kwargs.get("exc_tuple") or (args[0] if args else None)
                exc = exc_tuple[1] if exc_tuple else sys.exc_info()[1]
                splice_traceback(exc, codes)
            except Exception:  # noqa: BLE001
                pass
            return original(*args, **kwargs)

        self.shell.showtraceback = showtraceback

    def close(self) -> None:
        """End the run, write what is pending, remove every hook and wrapper."""
        if not self._registered or os.getpid() != self._pid:
            # (a process forked from the kernel exiting: the run and its writer are the kernel's)
            return
        self._registered = False
        try:
            self._settle()
            self.stop()
        finally:
            events = self.shell.events
            for name, cb in (("pre_run_cell", self.pre_run_cell), ("post_run_cell", self.post_run_cell)):
                try:
                    events.unregister(name, cb)
                except ValueError:
                    pass
            self._instrumentation.uninstall()
            if "showtraceback" in vars(self.shell):
                del self.shell.showtraceback
            if getattr(self.shell, _SHELL_ATTR, None) is self:
                delattr(self.shell, _SHELL_ATTR)
            configurables = getattr(self.shell, "configurables", None)
            if isinstance(configurables, list) and self in configurables:
                configurables.remove(self)
            ok = self._writer.close(timeout=float(self.flush_timeout))
            if self._journal is not None:
                self._journal.close(delete=ok and not self._external and self._writer.pending == 0)
            if self._reader is not None:
                self._reader.close()
                self._reader = None
            if not ok and self._writer.pending:
                print(
                    f"nbmlops: {self._writer.pending} record(s) could not be written to the store "
                    f"({self._writer.problem or 'timed out'})",
                    file=sys.stderr,
                )

    def start(
        self,
        name: str | None = None,
        *,
        experiment: str | None = None,
        tags: dict[str, str] | None = None,
        params: dict[str, Any] | None = None,
        source: str | None = None,
        parent_run_id: str | None = None,
        run_id: str | None = None,
    ) -> str:
        """Start a new run (ending the current one) and record from now on."""
        from ..environment import find_notebook_path

        if self.run_id is not None:
            self.stop()
        source = source or self.source
        if source not in RUN_SOURCES:
            self._warn(f"unknown run source {source!r}; recording as 'interactive'")
            source = "interactive"
        notebook = find_notebook_path(self.user_ns)
        default_name = (
            Path(notebook).stem if notebook else f"ipython-{time.strftime('%Y%m%d-%H%M%S')}"
        )
        self.run_id = run_id or uuid.uuid4().hex
        self.run_name = name or default_name
        self.run_experiment = experiment or self.experiment or None
        self._last_definer.clear()
        self._metric_steps.clear()
        self.cells_recorded = 0
        self.hook_seconds = 0.0
        kwargs: dict[str, Any] = {
            "name": self.run_name,
            "experiment": self.run_experiment,
            "source": source,
            "notebook_path": notebook,
            "tags": dict(tags or {}),
            "params": dict(params or {}),
            "parent_run_id": parent_run_id,
            "start_time": time.time(),
        }
        cwd = os.getcwd()

        def collect() -> dict[str, Any]:
            from ..environment import collect_environment, git_state, notebook_hash

            commit, dirty = git_state(Path(notebook).parent if notebook else cwd)
            return {
                "environment": collect_environment(),
                "git_commit": commit,
                "git_dirty": dirty,
                "notebook_hash": notebook_hash(notebook),
            }

        if self._journal is None:
            self._journal = Journal(self.location.journal_dir, self.run_id)
            if type(self._writer) is ProcessWriter and self._journal._open() is None:
                # no journal, no writer process: write from a thread in this kernel instead. The
                # journal lives beside the store, so the store is most likely unusable too: try
                # it at once (not after the cells) so that the warning comes early
                self._writer = BackgroundWriter(self._open_store, max_pending=self.max_pending,
                                                quiet=0.0, max_delay=0.5)
        self._submit(StartRun(self.run_id, kwargs))
        self._submit(UpdateRun(self.run_id, in_thread(collect)))
        self.state = "recording"
        return self.run_id

    def stop(self, status: str = "finished") -> str | None:
        """End the current run; nothing is recorded until :meth:`start`."""
        rid = self.run_id
        if rid is None:
            return None
        # what capture cost this run, measured in its own hooks: published, not guessed
        self._submit(Batch(rid, tags={
            "nbmlops.capture_ms": f"{self.hook_seconds * 1e3:.1f}",
            "nbmlops.capture_ms_per_cell": f"{self._hook_ms_per_cell():.3f}",
        }))
        self._submit(EndRun(rid, status, time.time()))
        self.run_id = None
        self.state = "stopped"
        self._cell = None
        return rid

    def _hook_ms_per_cell(self) -> float:
        return self.hook_seconds * 1e3 / max(1, self.cells_recorded)

    def pause(self) -> None:
        if self.run_id is None:
            raise InvalidArgumentError("no run is active: %mlops start first")
        self.state = "paused"
        self._cell = None

    def resume(self) -> None:
        if self.run_id is None:
            raise InvalidArgumentError("no run is active: %mlops start first")
        self.state = "recording"

    def flush(self, timeout: float = 10.0) -> bool:
        self._settle()
        return self._writer.flush(timeout)

    def status(self) -> dict[str, Any]:
        self._settle()
        loc = self.location
        return {
            "state": self.state,
            "run_id": self.run_id,
            "run_name": self.run_name,
            "experiment": self.run_experiment,
            "cells_recorded": self.cells_recorded,
            "store": loc.describe(),
            "pending_writes": self._writer.pending,
            "store_problem": self._writer.problem,
            "dropped_records": self._writer.dropped + self._writer.rejected
            + (self._journal.dropped if self._journal is not None else 0),
            "internal_errors": sum(self.internal_errors.values()),
            "capture_ms_per_cell": round(self._hook_ms_per_cell(), 3),
        }

    # -- explicit logging API -------------------------------------------------------------------

    def _require_run(self) -> str:
        if self.run_id is None:
            raise InvalidArgumentError("no nbmlops run is active: run %mlops start")
        return self.run_id

    def log_params(self, params: dict[str, Any]) -> None:
        rid = self._require_run()
        if self._cell is not None:
            self._cell.params.update(params)
        else:
            self._submit(Batch(rid, params=dict(params)))

    def log_metric(self, key: str, value: Any, step: int | None = None) -> None:
        rid = self._require_run()
        number = _as_number(value)
        if number is None:
            raise InvalidArgumentError(f"metric {key!r} must be a finite number, not {value!r}")
        if step is None:
            step = self._metric_steps[key]
        self._metric_steps[key] = max(self._metric_steps[key], step + 1)
        metric = MetricValue(key, number, step, time.time())
        if self._cell is not None:
            self._cell.explicit_metrics.append(metric)
        else:
            self._submit(Batch(rid, metrics=[metric]))

    def set_tags(self, tags: dict[str, Any]) -> None:
        rid = self._require_run()
        if self._cell is not None:
            self._cell.tags.update(tags)
        else:
            self._submit(Batch(rid, tags=dict(tags)))

    def log_artifact(self, path: str | os.PathLike[str], kind: str = "file") -> None:
        rid = self._require_run()
        p = Path(path)
        if not p.is_file():
            raise InvalidArgumentError(f"log_artifact: no file {p}")
        seq = self._cell.seq if self._cell is not None else None
        if self._cell is not None:
            # written after the cell's record, so that it can link to the cell
            self._pending_artifacts.append(LogArtifact(rid, str(p.resolve()), kind, seq))
        else:
            self._submit(LogArtifact(rid, str(p.resolve()), kind, None))

    def record_validation(self, op: RecordValidation) -> str:
        """Queue a validation's record for this run and the executing cell (written after the
        cell's own record, so that it links to it); returns where it goes, for the result."""
        rid = self._require_run()
        op.run_id = rid
        op.cell_seq = self._cell.seq if self._cell is not None else None
        if self._cell is not None:
            self._pending_artifacts.append(op)
            return f"run {rid[:8]} cell {op.cell_seq}"
        self._submit(op)
        return f"run {rid[:8]}"

    # -- Tracker protocol (called by the instrumentation wrappers) -------------------------------

    @property
    def cell_active(self) -> bool:
        return self._cell is not None

    def is_user_frame(self, frame: Any) -> bool:
        return frame is not None and frame.f_globals is self.user_ns

    def on_io(self, io: ArtifactIO) -> None:
        cell = self._cell
        if cell is not None and self.capture_io:
            cell.io.append(io)

    def on_metric(self, name: str, value: Any) -> None:
        cell = self._cell
        if cell is not None and self.capture_metrics:
            cell.metrics.append((name, value))

    def on_internal_error(self, where: str, exc: BaseException) -> None:
        self.internal_errors[where] += 1
        log.debug("nbmlops internal error in %s", where, exc_info=exc)
        if not self._warned_internal:
            self._warned_internal = True
            self._warn(
                f"could not record {where} ({type(exc).__name__}: {exc}); your notebook is "
                "unaffected. Further problems are counted silently: see %mlops status"
            )

    def _warn(self, message: str) -> None:
        try:
            print(f"nbmlops warning: {message}", file=sys.stderr)
        except Exception:  # noqa: BLE001
            pass

    # -- IPython hooks --------------------------------------------------------------------------

    def _snapshot(self) -> _Snapshot:
        """The namespace's names and ``id(value)`` of each, in order: built at C speed (no
        bytecode per name), touches no value. Hidden and IPython names are filtered later,
        from the few names that changed."""
        ns = self.user_ns
        return list(ns), list(map(id, ns.values()))

    def _is_user_name(self, name: str) -> bool:
        return name[:1] != "_" and name not in self._excluded

    def pre_run_cell(self, *args: Any) -> None:
        if self._deferred:
            self._settle()  # the previous cell's record first (its callback has not run yet)
        started = time.perf_counter()
        try:
            self._writer.activity(True)
            self._pre_run_cell(args)
        finally:
            self.hook_seconds += time.perf_counter() - started

    def _pre_run_cell(self, args: tuple[Any, ...]) -> None:
        try:
            self._cell = None
            # taken, not shared: any path below that records nothing leaves no stale snapshot
            last, self._last_snapshot = self._last_snapshot, None
            if self.state != "recording" or self.run_id is None:
                return
            info = args[0] if args else None
            raw = getattr(info, "raw_cell", None) or ""
            if _is_mlops_magic_only(raw):
                return
            # IPython 9 hands over the transformed source; older versions need the transform
            source = getattr(info, "transformed_cell", None)
            if source is None:
                try:
                    source = self.shell.transform_cell(raw)
                except Exception:  # noqa: BLE001 - IPython will report it itself
                    source = raw
            names = analyze_cell(source)
            ns = self.user_ns
            est_pre: dict[int, tuple[int, ...]] = {}
            if self.capture_estimators:
                for name in names.used | names.mutated | {f for f, _ in names.fits}:
                    obj = ns.get(name)
                    if obj is not None and _is_estimator(obj):
                        est_pre[id(obj)] = _fitted_signature(obj)
            self._pending_artifacts = []
            meta = getattr(info, "cell_meta", None)
            tags = meta.get("tags") if isinstance(meta, dict) else None
            cell_id = getattr(info, "cell_id", None)
            # tags arrive with the request on IPython 9; older ones get the ids from the launcher
            is_parameters = (isinstance(tags, list) and bool(_PARAMETER_TAGS & set(tags))) or (
                cell_id is not None and cell_id in self._parameter_cells
            )
            self._cell = _CellState(
                is_parameters=is_parameters,
                seq=self.cells_recorded,
                source=raw,
                start=time.time(),
                t0=time.perf_counter(),
                cell_id=cell_id,
                names=names,
                pre_ids=last if last is not None else self._snapshot(),
                est_pre=est_pre,
            )
        except Exception as exc:  # noqa: BLE001
            self._cell = None
            self.on_internal_error("pre_run_cell", exc)

    def post_run_cell(self, *args: Any) -> None:
        started = time.perf_counter()
        try:
            self._post_run_cell(args)
        finally:
            self._writer.activity(False)
            self.hook_seconds += time.perf_counter() - started

    def _post_run_cell(self, args: tuple[Any, ...]) -> None:
        cell = self._cell
        self._cell = None
        try:
            rid = self.run_id
            if cell is None or rid is None:
                return
            duration = time.perf_counter() - cell.t0
            result = args[0] if args else None
            # secrets written in the cell never leave the kernel: the record holds the redacted
            # source and the original's hash (cache and staleness compare hashes); the warning
            # is printed now, while the cell's output is still open
            redacted = redact_cell(cell.source)
            if redacted[2] and not self._warned_secret:
                self._warned_secret = True
                count = getattr(result, "execution_count", None)
                self._warn(secret_warning(f"[{count}]" if count is not None else f"#{cell.seq + 1}",
                                          redacted[2]))

            def record() -> None:
                self._record(cell, result, rid, duration, redacted)

            if not self._defer(record):
                record()
        except Exception as exc:  # noqa: BLE001
            self.on_internal_error("post_run_cell", exc)
        try:
            self._announce_store_state()
        except Exception:  # noqa: BLE001
            pass

    def _defer(self, record: Callable[[], None]) -> bool:
        """Build and journal the record once the kernel has replied, off the cell's latency.

        ipykernel runs a cell inside its asyncio event loop and sends the reply in the same
        loop turn as this hook; a callback scheduled now runs right after the reply, before the
        next request is read. Without a running loop (terminal IPython, ``InteractiveShell``)
        the record is made at once. The next cell, a read, a flush or a close settles a record
        still waiting first, so nothing is reordered or lost: a kernel killed in the instant
        between the reply and the callback loses that one cell, as if killed inside it.
        """
        aio = sys.modules.get("asyncio")  # never imported here: no asyncio, no running loop
        if aio is None:
            return False
        try:
            loop = aio.get_running_loop()
        except RuntimeError:
            return False
        self._deferred.append(record)
        loop.call_soon(self._settle)
        return True

    def _settle(self) -> None:
        """Make the records still waiting (at most one, as a rule), oldest first."""
        while True:
            try:
                record = self._deferred.pop(0)  # atomic: a settle from another thread is safe
            except IndexError:
                return
            started = time.perf_counter()
            try:
                record()
            except Exception as exc:  # noqa: BLE001
                self.on_internal_error("post_run_cell", exc)
            finally:
                self.hook_seconds += time.perf_counter() - started

    def _record(self, cell: _CellState, result: Any, rid: str, duration: float,
                redacted: tuple[str, str | None, list[str]]) -> None:
        error = None
        if result is not None:
            error = getattr(result, "error_before_exec", None) or getattr(result, "error_in_exec", None)
        status = "error" if error is not None else "ok"
        ns = self.user_ns
        post_ids = self._snapshot()
        self._last_snapshot = post_ids
        pre_ids = cell.pre_ids
        names = cell.names
        changed, added, removed = _diff(pre_ids, post_ids)
        user = self._is_user_name
        changed = {n for n in changed if user(n)}
        removed = {n for n in removed if user(n)}
        defined = changed | {n for n in names.stored | names.mutated if n in ns and user(n)}
        # bound before the cell: bound now and not added by it, or removed by it
        used = {n for n in names.used | names.mutated
                if user(n) and ((n in ns and n not in added) or n in removed)}
        var_sources = {n: self._last_definer[n] for n in used if n in self._last_definer}
        code_vars = sorted(n for n in var_sources if isinstance(ns.get(n), _CODE_TYPES))
        for n in defined:
            self._last_definer[n] = cell.seq
        for n in removed:
            self._last_definer.pop(n, None)

        estimators: list[Estimator] = []
        if self.capture_estimators:
            fit_args = dict(names.fits)
            existed: set[int] | None = None
            loaded_model = any(io.direction == "read" and io.kind == "model" for io in cell.io)
            for name in sorted(defined | set(fit_args)):
                obj = ns.get(name)
                if obj is None or not _is_estimator(obj):
                    continue
                sig = _fitted_signature(obj)
                if not sig:
                    continue
                if name not in fit_args:
                    before = cell.est_pre.get(id(obj))
                    if before is not None:
                        if sig == before:
                            continue  # the same fitted model under another name: no fit here
                    else:
                        if existed is None:
                            existed = set(pre_ids[1])
                        if id(obj) in existed or loaded_model:
                            continue  # an alias of an older object, or a model loaded from disk
                try:
                    params = {k: _jsonable(v) for k, v in obj.get_params(deep=False).items()}
                except Exception:  # noqa: BLE001 - odd estimators
                    params = {}
                fitted_on = [a for a in fit_args.get(name, []) if a in ns]
                estimators.append(Estimator(name, type(obj).__name__, params, fitted_on))

        if cell.is_parameters:
            # the papermill `parameters` cell (and papermill's injected one): its literals are
            # the run's parameters
            for name in sorted(names.stored):
                value = ns.get(name)
                if isinstance(value, (bool, int, float, str, type(None), list, tuple, dict)):
                    cell.params.setdefault(name, _param_value(value))

        metrics = list(cell.explicit_metrics)
        if cell.metrics:
            targets: dict[str, list[str]] = {}
            for target, fname in names.call_assignments:
                targets.setdefault(fname, []).append(target)
            for fname, value in cell.metrics:
                number = _as_number(value)
                if number is None:
                    continue
                queue = targets.get(fname)
                key = queue.pop(0) if queue else fname
                step = self._metric_steps[key]
                self._metric_steps[key] = step + 1
                metrics.append(MetricValue(key, number, step, time.time()))

        source, original_hash, _secrets = redacted
        record = CellRecord(
            seq=cell.seq,
            source=source,
            source_hash=original_hash,
            start_time=cell.start,
            duration=duration,
            status=status,
            cell_id=cell.cell_id,
            execution_count=getattr(result, "execution_count", None),
            error_name=type(error).__name__ if error is not None else None,
            error_value=redact_source(str(error))[0] if error is not None else None,
            vars_defined=sorted(defined),
            vars_used=sorted(used),
            var_sources=var_sources,
            code_vars=code_vars,
            io=_dedupe_io(cell.io),
            estimators=estimators,
            metrics=metrics,
            params=cell.params,
            tags=cell.tags,
        )
        self.cells_recorded += 1
        self._submit(Cells(rid, [record]))
        for op in self._pending_artifacts:
            self._submit(op)
        self._pending_artifacts = []

    def _announce_store_state(self) -> None:
        rejection = self._writer.rejection
        if rejection and not self._warned_rejection:
            self._warned_rejection = True
            self._warn(
                f"the lineage store refused a record ({rejection}); it was dropped. Your notebook "
                "is unaffected; see %mlops status for the count."
            )
        problem = self._writer.problem
        if problem and self._announced_problem is None:
            self._announced_problem = problem
            self._warn(
                f"the lineage store is unavailable ({problem}). Your notebook is unaffected; "
                "records are kept in memory and written when the store is back."
            )
        elif problem is None and self._announced_problem is not None:
            self._announced_problem = None
            self._warn("the lineage store is available again; records kept in memory are being written.")


def _diff(pre: _Snapshot, post: _Snapshot) -> tuple[set[str], set[str], set[str]]:
    """Names (re)bound by a cell (changed, new ones included), added, and removed.

    The common case, nothing deleted (a dict keeps its order; new names come last), compares
    the two id lists element by element in C; otherwise by name.
    """
    pre_keys, pre_vals = pre
    post_keys, post_vals = post
    n = len(pre_keys)
    if len(post_keys) >= n and post_keys[:n] == pre_keys:
        added = set(post_keys[n:])
        return set(compress(pre_keys, map(ne, post_vals, pre_vals))) | added, added, set()
    before = dict(zip(pre_keys, pre_vals, strict=True))
    after = dict(zip(post_keys, post_vals, strict=True))
    changed = {k for k, v in after.items() if before.get(k) != v}
    return changed, after.keys() - before.keys(), before.keys() - after.keys()


def _dedupe_io(ios: list[ArtifactIO]) -> list[ArtifactIO]:
    seen: set[tuple[str, str]] = set()
    out = []
    for io in ios:
        key = (io.uri, io.direction)
        if key not in seen:
            seen.add(key)
            out.append(io)
    return out


def _is_mlops_magic_only(raw: str) -> bool:
    if "%" not in raw:
        return False  # the common case, without splitting the cell into lines
    lines = [ln.strip() for ln in raw.strip().splitlines() if ln.strip() and not ln.strip().startswith("#")]
    return bool(lines) and all(
        ln.startswith(("%mlops", "%load_ext nbmlops", "%reload_ext nbmlops", "%unload_ext nbmlops"))
        for ln in lines
    )

