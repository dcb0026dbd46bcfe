"""The DAG runner: steps in topological order, independent steps in parallel, cached, retried.

Every step runs through papermill with the ``nbmlops`` engine, so its cells are recorded exactly
like an interactive session's. A pipeline run is a parent run (``source=pipeline``) with one
child run per step attempt (tags ``nbmlops.pipeline``, ``nbmlops.step``, ``nbmlops.attempt``,
``nbmlops.cache_key``). Executed notebooks are kept under ``.nbmlops/runs/<run-id>/``.

**Caching.** A step's cache key hashes its notebook's code (cell sources, kernel), its resolved
params, the content fingerprints of its declared ``inputs`` and the outputs of the steps it
depends on. After a successful run the key and the step's outputs (declared files and saved
variables, with fingerprints) go to the store's ``step_cache``. A later run with the same key
is skipped when those outputs are still on disk with the same fingerprints; its child run is
recorded as finished with the tag ``nbmlops.cached_from``. ``force`` re-runs all or named steps.

**Failure.** By default the first failed step (after its retries) stops new steps from starting;
steps already running finish. ``keep_going`` runs every step that does not depend on a failed
one. Retries wait ``retry_delay * 2**(attempt-1)`` seconds (capped at 60). A step's ``timeout``
bounds each attempt: its kernel is interrupted, then killed. :meth:`PipelineRunner.cancel`
(Ctrl-C, SIGTERM) interrupts every running kernel, kills those still alive after a grace
period, and records the running step runs and the pipeline run as ``cancelled``.

**One step at a time.** :class:`StepRunner` runs a single step of a pipeline run whose steps
are separate orchestrator tasks (``nbmlops pipeline step``/``finish``, see
``docs/orchestrators.md``) with the same attempt and cache code, so the lineage looks like a
local run's: one parent run, one child run per step attempt.
"""

from __future__ import annotations

import glob
import hashlib
import json
import logging
import os
import signal
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..config import StoreLocation, resolve_location
from ..errors import NbmlopsError, ParameterError, PipelineError
from .spec import INJECTED_PARAMETERS, Pipeline, Step, StepValidation

if TYPE_CHECKING:
    from ..store import Store

log = logging.getLogger(__name__)

__all__ = [
    "PipelineRunner",
    "StepRunner",
    "pipeline_run_id",
    "PipelineResult",
    "StepResult",
    "STEP_STATES",
    "resolve_step_params",
    "notebook_code_hash",
    "local_module_hashes",
]

#: pending -> running -> ran | cached | failed | cancelled; skipped when an upstream step failed
STEP_STATES = ("pending", "running", "ran", "cached", "failed", "skipped", "cancelled")
INJECTED = INJECTED_PARAMETERS
_GLOB_CHARS = set("*?[")
CACHE_VERSION = 2
#: seconds a cancelled or timed-out kernel gets to stop after its interrupt before it is killed
#: (``NBMLOPS_KILL_GRACE`` overrides it: a loaded machine may need longer to unwind a cell)
KILL_GRACE = 5.0


def kill_grace() -> float:
    """The grace of :data:`KILL_GRACE`, or ``NBMLOPS_KILL_GRACE`` when it is a number >= 0."""
    raw = os.environ.get("NBMLOPS_KILL_GRACE")
    if raw:
        try:
            value = float(raw)
        except ValueError:
            value = -1.0
        if value >= 0 and value != float("inf"):
            return value
        log.warning("NBMLOPS_KILL_GRACE=%r is not a number of seconds >= 0; using %s s", raw, KILL_GRACE)
    return KILL_GRACE


@dataclass
class StepResult:
    name: str
    state: str = "pending"
    run_id: str | None = None
    attempts: int = 0
    started: float | None = None
    duration: float = 0.0
    error: str | None = None
    failed_cell_index: int | None = None
    output_notebook: Path | None = None
    cached_from: str | None = None
    cache_key: str | None = None
    #: {"files": {path: fingerprint}, "variables": {name: {"path": ..., "fingerprint": ...}}}
    outputs: dict[str, Any] = field(default_factory=dict)
    #: a ``validate:`` check with ``on_fail: fail`` failed (not retried: the data decides)
    validation_failed: bool = False
    #: the ``gate:`` decision (:meth:`GateDecision.to_dict`) when the step has a gate and ran
    gate: dict[str, Any] | None = None


@dataclass
class PipelineResult:
    run_id: str
    pipeline: str
    status: str  # finished | failed | cancelled
    steps: dict[str, StepResult]
    duration: float

    @property
    def failed_step(self) -> StepResult | None:
        return next((s for s in self.steps.values() if s.state == "failed"), None)


def notebook_code_hash(nb: Any) -> str:
    """What a step executes: kernel and code cell sources (outputs, ids, metadata ignored)."""
    h = hashlib.sha256()
    h.update(str(nb.metadata.get("kernelspec", {}).get("name", "")).encode())
    for cell in nb.cells:
        if cell.get("cell_type") == "code":
            tags = sorted(cell.get("metadata", {}).get("tags", []))
            h.update(b"\0cell\0" + json.dumps(tags).encode() + b"\0" + cell.get("source", "").encode())
    return h.hexdigest()


def _read_notebook(step: Step) -> Any:
    """The notebook a step executes (cells and metadata; not validated by nbformat here)."""
    from ..errors import InvalidArgumentError
    from ..params import read_notebook_light

    if step.notebook_node is not None:
        return step.notebook_node
    try:
        return read_notebook_light(step.notebook)
    except InvalidArgumentError as exc:
        raise PipelineError(f"step {step.name}: {exc}") from exc


def check_gates(pipeline: Pipeline) -> None:
    """Refuse a ``gate:`` rule the gate cannot apply (an unknown metric, a bad margin) before
    anything runs, with the block's position (imports scikit-learn: only for gated pipelines)."""
    gated = [s for s in pipeline.steps.values() if s.gate is not None]
    if not gated:
        return
    from ..registry.gate import parse_rule

    for step in gated:
        assert step.gate is not None
        try:
            parse_rule(step.gate.rule, check_metric=False)
        except NbmlopsError as exc:
            raise PipelineError(f"{step.gate.location}: steps.{step.name}.gate: "
                                f"{str(exc).removeprefix('gate: ')}") from None


def resolve_step_params(
    pipeline: Pipeline, overrides: Mapping[str, Any] | None = None
) -> dict[str, dict[str, Any]]:
    """Each step's parameters: pipeline params (with ``overrides``) that its notebook declares,
    then the step's own params; checked and coerced against the notebook's ``parameters`` cell.

    Raises :class:`ParameterError` for an override no step declares and for a step param its
    notebook does not declare."""
    from ..params import check_parameters, coerce_value, declared_parameters

    notebooks = {name: _read_notebook(step) for name, step in pipeline.steps.items()}
    declared = {name: declared_parameters(nb) or {} for name, nb in notebooks.items()}
    overrides = dict(overrides or {})
    known = set(pipeline.params) | {p for d in declared.values() for p in d if p not in INJECTED}
    for key in overrides:
        if key not in known:
            import difflib

            hint = difflib.get_close_matches(key, sorted(known), n=1)
            raise ParameterError(
                f"pipeline {pipeline.name} has no parameter {key!r}"
                + (f" (did you mean {hint[0]!r}?)" if hint else "")
                + f"; its parameters: {', '.join(sorted(known)) or 'none'}"
            )
    pipeline_params = dict(pipeline.params)
    for key, value in overrides.items():
        if key in pipeline.params and isinstance(value, str) and not isinstance(pipeline.params[key], str):
            from ..params import ParamInfo

            typed = pipeline.params[key]
            info = ParamInfo(key, repr(typed), type(typed).__name__ if typed is not None else None)
            value = coerce_value(key, value, info)
        pipeline_params[key] = value
    out: dict[str, dict[str, Any]] = {}
    for name, step in pipeline.steps.items():
        decl = declared[name]
        merged = {k: v for k, v in pipeline_params.items() if k in decl}
        merged.update(step.params)
        if not merged:
            out[name] = {}
            continue
        label = f"step {name} ({step.notebook.name})"
        try:
            out[name] = check_parameters(notebooks[name], merged, label=label)
        except ParameterError as exc:
            where = pipeline.locate(f"steps.{name}.params.{exc.param}", f"params.{exc.param}",
                                    f"steps.{name}")
            if where is None:
                raise
            raise ParameterError(f"{where}: {exc}", param=exc.param) from None
    return out


def _expand(root: Path, patterns: Iterable[str]) -> tuple[dict[str, Path], list[str]]:
    """Relative path -> absolute path of files matching ``patterns``; and patterns that match
    nothing."""
    found: dict[str, Path] = {}
    missing: list[str] = []
    for pattern in patterns:
        if _GLOB_CHARS & set(pattern):
            hits = sorted(glob.glob(str(root / pattern), recursive=True))
            files = [Path(h) for h in hits if os.path.isfile(h)]
        else:
            p = root / pattern
            files = [p] if p.is_file() else []
        if not files:
            missing.append(pattern)
        for f in files:
            found[os.path.relpath(f, root)] = f
    return found, missing


class PipelineRunner:
    """Runs one pipeline once. Not reusable; create one per run."""

    def __init__(
        self,
        pipeline: Pipeline,
        *,
        store_url: str | None = None,
        jobs: int | None = None,
        keep_going: bool = False,
        force: bool | Iterable[str] = False,
        params: Mapping[str, Any] | None = None,
        retry_delay: float = 1.0,
        kernel_name: str | None = None,
        source: str = "pipeline",
        run_tags: Mapping[str, str] | None = None,
        on_event: Callable[[str, StepResult], None] | None = None,
        run_id: str | None = None,
        gates: bool = True,
    ) -> None:
        self.pipeline = pipeline
        #: False: ``gate:`` blocks register and promote nothing (a reproduction must not move
        #: an alias); the step run is tagged ``nbmlops.gate.NAME = skipped: ...``
        self.gates = gates
        self.order = pipeline.topological_order()
        self.location: StoreLocation = resolve_location(store_url, start=pipeline.root)
        self.jobs = max(1, jobs or os.cpu_count() or 1)
        self.keep_going = keep_going
        if force is True:
            self.force = set(pipeline.steps)
        elif force is False:
            self.force = set()
        else:
            self.force = set(force)
            unknown = self.force - set(pipeline.steps)
            if unknown:
                raise PipelineError(
                    f"--force names no step of {pipeline.name}: {', '.join(sorted(unknown))} "
                    f"(steps: {', '.join(pipeline.steps)})"
                )
        self.step_params = resolve_step_params(pipeline, params)
        self.params = {**pipeline.params, **(params or {})}
        self.retry_delay = retry_delay
        self.kernel_name = kernel_name
        self.source = source
        self.run_tags = dict(run_tags or {})
        self.on_event = on_event
        self.results = {name: StepResult(name) for name in self.order}
        if run_id is not None and (len(run_id) != 32 or not all(c in "0123456789abcdef" for c in run_id)):
            raise PipelineError(f"run id must be 32 lowercase hex characters, not {run_id!r}")
        self.run_id = run_id or uuid.uuid4().hex
        self._cancel = threading.Event()
        self._lock = threading.Lock()
        self._kernels: dict[str, int] = {}  # step name -> kernel pid
        self._timeouts: dict[str, threading.Event] = {}  # step name -> set when it timed out
        self._started = time.monotonic()
        self._failed_once = False
        self._store: Store | None = None

    # -- public ---------------------------------------------------------------------------------

    def cancel(self) -> None:
        """Stop: no new step starts; running kernels are interrupted, then killed."""
        if self._cancel.is_set():
            self._kill_all(signal.SIGKILL)  # asked twice: do not wait
            return
        self._cancel.set()
        self._kill_all(signal.SIGINT)
        timer = threading.Timer(kill_grace(), self._kill_all, args=(signal.SIGKILL,))
        timer.daemon = True
        timer.start()

    @property
    def cancelled(self) -> bool:
        return self._cancel.is_set()

    @property
    def store(self) -> Store:
        """The run's one store connection, shared by the scheduler and the step threads
        (SQLAlchemy's engine is thread-safe; every call is its own short transaction)."""
        with self._lock:
            if self._store is None:
                from ..store import Store

                self._store = Store(self.location)
            return self._store

    def run(self) -> PipelineResult:
        check_gates(self.pipeline)
        self._pin_models()
        if self.gates and any(s.gate is not None for s in self.pipeline.steps.values()):
            from ..registry.gate import warm_imports

            threading.Thread(target=warm_imports, name="nbmlops-gate-imports", daemon=True).start()
        self._create_run()
        try:
            self._schedule()
        except BaseException:
            self.cancel()
            raise
        finally:
            status = self._final_status()
            self._record_end(status)
            self.close()
        return PipelineResult(
            self.run_id, self.pipeline.name, status, dict(self.results),
            time.monotonic() - self._started,
        )

    def close(self) -> None:
        """Close the store connection (the next use opens it again)."""
        with self._lock:
            store, self._store = self._store, None
        if store is not None:
            store.close()

    def _pin_models(self) -> None:
        """Step params naming a registered model by alias (``models:/wine@champion``) become
        the version it points at now (``models:/wine/3``): that version is what the step is
        given, recorded with its params and keyed in its cache, so a later alias move re-runs
        the step and a reproduction gets the same version. An unknown model, alias or version
        stops the run before anything starts."""
        if not any(isinstance(v, str) and v.startswith("models:/")
                   for params in self.step_params.values() for v in params.values()):
            return
        from ..registry.service import pin_model_uris

        pinned: dict[str, str] = {}
        for name, params in self.step_params.items():
            try:
                self.step_params[name], more = pin_model_uris(self.store, params)
            except NbmlopsError as exc:
                raise PipelineError(f"step {name}: {exc}") from None
            pinned.update(more)
        self.run_tags.update({f"nbmlops.model.{uri[len('models:/'):]}": version
                              for uri, version in pinned.items()})

    def _create_run(self) -> None:
        """Record the pipeline run (status ``running``)."""
        self.location.runs_dir.mkdir(parents=True, exist_ok=True)
        self.store.create_run(
            run_id=self.run_id, name=self.pipeline.name, source=self.source,
            notebook_path=str(self.pipeline.path), params=self.params,
            tags={
                "nbmlops.pipeline": self.pipeline.name,
                "nbmlops.pipeline_path": str(self.pipeline.path),
                "nbmlops.steps": str(len(self.order)),
                **self.run_tags,
            },
        )

    def _record_end(self, status: str) -> None:
        """End the pipeline run: ``status``, the step counts and every step's final state."""
        try:
            counts = {s: sum(r.state == s for r in self.results.values()) for s in STEP_STATES}
            tags = {f"nbmlops.steps_{state}": str(n) for state, n in counts.items() if n}
            # every step's final state, also of steps that never got a run
            tags.update({f"nbmlops.step_state.{name}": r.state
                         for name, r in self.results.items()})
            self.store.log_batch(self.run_id, tags=tags)
            self.store.end_run(self.run_id, status)
        except NbmlopsError as exc:
            log.warning("could not record the end of pipeline run %s: %s", self.run_id, exc)

    # -- scheduling -----------------------------------------------------------------------------

    def _final_status(self) -> str:
        states = {r.state for r in self.results.values()}
        if self._cancel.is_set() or "cancelled" in states:
            return "cancelled"
        if "failed" in states or "skipped" in states or "pending" in states or "running" in states:
            return "failed"
        return "finished"

    def _emit(self, event: str, result: StepResult) -> None:
        if self.on_event is not None:
            try:
                self.on_event(event, result)
            except Exception:
                log.debug("progress callback failed", exc_info=True)

    def _schedule(self) -> None:
        pending = list(self.order)
        running: dict[Future[None], str] = {}
        with ThreadPoolExecutor(max_workers=self.jobs, thread_name_prefix="nbmlops-step") as pool:
            while pending or running:
                try:
                    self._schedule_once(pool, pending, running)
                except KeyboardInterrupt:
                    log.warning("interrupted: stopping the pipeline (again to kill the kernels)")
                    self.cancel()
                except BaseException:
                    # stop the running steps now: leaving the pool waits for them to finish
                    self.cancel()
                    raise

    def _schedule_once(
        self, pool: ThreadPoolExecutor, pending: list[str], running: dict[Future[None], str]
    ) -> None:
        """Start what can start, then wait a little for running steps."""
        progressed = False
        for name in list(pending):
            step = self.pipeline.steps[name]
            dep_states = [self.results[d].state for d in step.depends_on]
            if any(s in ("failed", "skipped", "cancelled") for s in dep_states):
                bad = next(d for d in step.depends_on
                           if self.results[d].state in ("failed", "skipped", "cancelled"))
                self._skip(name, f"upstream step {bad} did not succeed")
                pending.remove(name)
                progressed = True
                continue
            if self._cancel.is_set() or (self._failed_once and not self.keep_going):
                continue
            if not all(s in ("ran", "cached") for s in dep_states):
                continue
            if len(running) >= self.jobs:
                break
            pending.remove(name)
            progressed = True
            if self._try_cache(step):
                continue
            res = self.results[name]
            res.state, res.started = "running", time.time()
            self._emit("start", res)
            running[pool.submit(self._run_step, step)] = name
        if not running:
            if pending and not progressed:
                reason = ("cancelled" if self._cancel.is_set()
                          else "not started after an earlier failure")
                for name in pending:
                    self._skip(name, reason)
                pending.clear()
            return
        done, _ = wait(list(running), timeout=0.25, return_when=FIRST_COMPLETED)
        for fut in done:
            name = running.pop(fut)
            exc = fut.exception()
            res = self.results[name]
            if exc is not None:
                res.state = "failed"
                res.error = f"nbmlops error: {exc}"
                log.debug("step %s crashed", name, exc_info=exc)
            if res.state == "failed":
                self._failed_once = True
            self._emit("end", res)
        if not done:
            self._emit("tick", self.results[self.order[0]])

    def _skip(self, name: str, reason: str) -> None:
        res = self.results[name]
        res.state = "cancelled" if self._cancel.is_set() else "skipped"
        res.error = reason
        self._emit("end", res)

    # -- caching --------------------------------------------------------------------------------

    def _cache_key(self, step: Step) -> str:
        params = {k: v for k, v in self.step_params[step.name].items() if k not in INJECTED}
        models = [i for i in step.inputs if i.startswith("models:/")]
        files, missing = _expand(self.pipeline.root, [i for i in step.inputs if i not in models])
        nb = _read_notebook(step)
        # the steps whose outputs this one consumes: its dependencies, and (tagged form) every
        # step it loads a variable from, which may be further up than a direct dependency
        upstream = sorted(set(step.depends_on) | set(step.variables_in.values()))
        payload = {
            "v": CACHE_VERSION,
            "pipeline": self.pipeline.name,
            "step": step.name,
            "kernel": self.kernel_name or nb.metadata.get("kernelspec", {}).get("name"),
            "notebook": notebook_code_hash(nb),
            # local modules the notebook imports (helper.py next to it): their code counts
            "modules": local_module_hashes(nb, self.pipeline.root),
            "params": json.dumps(params, sort_keys=True, default=repr),
            "inputs": {rel: _fp(str(p)) for rel, p in sorted(files.items())},
            "inputs_missing": sorted(missing),
            "models": self._model_digests(models),
            "upstream": {dep: _output_fingerprints(self.results[dep].outputs) for dep in upstream},
        }
        return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()

    def _model_digests(self, uris: list[str]) -> dict[str, str]:
        """``inputs:`` naming registered models: each one's current version digest, so the
        step re-runs when an alias moves (an unknown name or alias: no cache key)."""
        if not uris:
            return {}
        from ..registry.service import resolve_model_uri

        return {uri: resolve_model_uri(self.store, uri).digest for uri in sorted(uris)}

    def _try_cache(self, step: Step) -> bool:
        """Reuse an earlier identical run of ``step``; True when it did."""

        res = self.results[step.name]
        try:
            res.cache_key = self._cache_key(step)
        except (OSError, NbmlopsError) as exc:
            log.info("step %s: no cache key (%s)", step.name, exc)
            return False
        if not step.cache or step.name in self.force:
            return False
        try:
            return self._reuse(step, res)
        except NbmlopsError as exc:  # a store that is locked or away: run the step instead
            log.warning("step %s: cache not consulted (%s); running it", step.name, exc)
            return False

    def _reuse(self, step: Step, res: StepResult) -> bool:
        assert res.cache_key is not None
        store = self.store
        for old_run, outputs in store.find_step_cache(res.cache_key):
            if not _outputs_intact(self.pipeline.root, outputs):
                continue
            run_id = uuid.uuid4().hex
            store.create_run(
                run_id=run_id, name=f"{self.pipeline.name}/{step.name}", source=self.source,
                notebook_path=str(step.notebook), parent_run_id=self.run_id,
                params={k: v for k, v in self.step_params[step.name].items() if k not in INJECTED},
                tags={**self._step_tags(step, 0), "nbmlops.cached_from": old_run},
            )
            store.end_run(run_id, "finished")
            res.state, res.run_id, res.cached_from, res.outputs = "cached", run_id, old_run, outputs
            res.started = time.time()
            error = self._validate(step, "after", run_id)
            if error is not None:
                res.state, res.error, res.validation_failed = "failed", error, True
                self._failed_once = True
                self._mark(run_id, "failed")
            self._emit("end", res)
            return True
        return False

    def _step_tags(self, step: Step, attempt: int) -> dict[str, str]:
        tags = {
            "nbmlops.pipeline": self.pipeline.name,
            "nbmlops.pipeline_run": self.run_id,
            "nbmlops.step": step.name,
        }
        if attempt:
            tags["nbmlops.attempt"] = str(attempt)
        if self.results[step.name].cache_key:
            tags["nbmlops.cache_key"] = self.results[step.name].cache_key or ""
        return tags

    # -- execution ------------------------------------------------------------------------------

    def _run_step(self, step: Step, first: int = 1, last: int | None = None) -> None:
        """Attempts ``first`` to ``last`` (default: ``1`` to ``retries + 1``) of ``step`` until
        one succeeds; sets the step's final state."""
        res = self.results[step.name]
        last = step.retries + 1 if last is None else last
        error = self._validate(step, "before", self.run_id)
        if error is not None:  # bad input: the step does not start
            res.state, res.error, res.validation_failed = "failed", error, True
            return
        for attempt in range(first, last + 1):
            res.attempts = attempt
            if attempt > 1:
                self._emit("retry", res)
            outcome = self._attempt(step, attempt)
            if outcome == "failed":
                self._tag(res.run_id, {"nbmlops.error": _one_line(res.error or "failed")})
            if outcome != "failed" or self._cancel.is_set() or attempt >= last or \
                    res.validation_failed:
                res.state = outcome
                break
            # to be retried: the step stays "running", so the steps that depend on it wait
            # (the scheduler skips the dependents of a "failed" step)
            delay = min(self.retry_delay * 2 ** (attempt - 1), 60.0)
            if self._cancel.wait(delay):
                res.state = "cancelled"  # between attempts: the last attempt stays failed
                return
        if self._cancel.is_set() and res.state in ("failed", "running"):
            res.state = "cancelled"
            self._mark(res.run_id, "cancelled")

    def _attempt(self, step: Step, attempt: int) -> str:
        """Run ``step`` once; return ``ran`` or ``failed`` (``res.error`` says why). The caller
        sets the step's state: a failed attempt that will be retried leaves it ``running``."""
        t0 = time.monotonic()  # the attempt's wall time, papermill's first import included
        from ..execute import execute_notebook

        res = self.results[step.name]
        run_id = uuid.uuid4().hex
        run_dir = self.location.runs_dir / run_id
        params = dict(self.step_params[step.name])
        if step.notebook_node is not None:
            params["nbmlops_inputs"] = {
                var: self.results[producer].outputs.get("variables", {}).get(var, {}).get("path")
                for var, producer in step.variables_in.items()
            }
            params["nbmlops_output_dir"] = str(run_dir / "vars")
        timed_out = threading.Event()
        timer = None
        if step.timeout:
            timer = threading.Timer(step.timeout, self._time_out, args=(step.name, timed_out))
            timer.daemon = True
            timer.start()
        res.run_id = run_id
        result = None
        with self._lock:
            self._timeouts[step.name] = timed_out
        try:
            result = execute_notebook(
                step.notebook_node if step.notebook_node is not None else step.notebook,
                run_dir / f"{step.name}.ipynb",
                cwd=self.pipeline.root,
                run_name=f"{self.pipeline.name}/{step.name}",
                source=self.source,
                parent_run_id=self.run_id,
                timeout=None,
                kernel_name=self.kernel_name,
                store_url=self.location.url,
                parameters=params,
                check_parameters=False,
                run_id=run_id,
                notebook_path=step.notebook,
                # sets and dicts of str pickle in the same order every run: saved variables
                # keep their fingerprints, so unchanged outputs keep downstream steps cached
                env={"PYTHONHASHSEED": os.environ.get("PYTHONHASHSEED", "0")},
                tags=self._step_tags(step, attempt),
                on_kernel=lambda pid: self._register(step.name, pid),
            )
        except Exception as exc:  # noqa: BLE001 - e.g. the kernel died before it replied
            res.error = str(exc) if isinstance(exc, NbmlopsError) else f"{type(exc).__name__}: {exc}"
            log.debug("step %s: execution failed", step.name, exc_info=True)
        finally:
            if timer is not None:
                timer.cancel()
            with self._lock:
                self._kernels.pop(step.name, None)
                self._timeouts.pop(step.name, None)
        res.duration = time.monotonic() - t0
        res.output_notebook = result.output_path if result is not None else None
        res.failed_cell_index = result.failed_cell_index if result is not None else None
        if timed_out.is_set():
            res.error = f"timed out after {step.timeout:g} s (timeout: {step.timeout:g})"
            self._mark(run_id, "failed")
            return "failed"
        if result is None:
            self._mark(run_id, "failed")
            return "failed"
        if result.status != "finished":
            res.error = result.error or "failed"
            return "failed"
        try:
            res.outputs = self._collect_outputs(step, run_dir)
        except PipelineError as exc:
            res.error = str(exc)
            self._mark(run_id, "failed")
            return "failed"
        error = self._validate(step, "after", run_id)
        if error is None:
            error = self._gate(step, res, run_id)
        if error is not None:  # before the cache: a failed output is not reused
            res.error, res.validation_failed = error, True
            self._mark(run_id, "failed")
            return "failed"
        error = self._store_outputs(step, run_id)
        if error is not None:
            res.error = error
            self._mark(run_id, "failed")
            return "failed"
        res.error = None
        if res.cache_key and step.cache:
            try:
                self.store.record_step_cache(
                    res.cache_key, run_id, pipeline=self.pipeline.name, step=step.name,
                    outputs=res.outputs,
                )
            except NbmlopsError as exc:
                log.warning("step %s: not cached: %s", step.name, exc)
        return "ran"

    def _gate(self, step: Step, res: StepResult, run_id: str) -> str | None:
        """The step's ``gate:``, after it ran: register the model it wrote as a version linked
        to the step's run, score it against the alias holder on the held-out data and promote
        it or not (:func:`nbmlops.registry.gate.gate`). The decision is a tag
        ``nbmlops.gate.NAME`` of the step run. Returns an error when the gate could not decide,
        or when it rejected the candidate and ``on_reject`` is ``fail``."""
        g = step.gate
        if g is None:
            return None
        if not self.gates:
            self._tag(run_id, {f"nbmlops.gate.{g.name}": "skipped: gates are off for this run"})
            return None
        from ..registry.gate import gate

        root = self.pipeline.root
        try:
            decision = gate(
                str(root / g.model), name=g.name, data=str(root / g.data), target=g.target,
                run_id=run_id, store=self.store,
                reason=f"gate of pipeline {self.pipeline.name} step {step.name}", **g.rule,
            )
        except NbmlopsError as exc:
            return f"step {step.name}: {exc}"
        res.gate = decision.to_dict()
        summary = f"{decision.decision}: {_one_line(str(decision).splitlines()[0], 200)}"
        self._tag(run_id, {f"nbmlops.gate.{g.name}": summary})
        if not decision.promoted and g.on_reject == "fail":
            return f"step {step.name}: {g.name} v{decision.candidate_version} rejected by the " \
                   f"gate ({'; '.join(decision.reasons)})"
        return None

    def _validate(self, step: Step, when: str, run_id: str) -> str | None:
        """Run the step's ``validate:`` checks of one phase (``before``: inputs, recorded in
        the pipeline run; ``after``: outputs, recorded in the step's run). Returns the error of
        the first failing ``on_fail: fail`` check, None when the step may go on. Each check's
        outcome is also a tag ``nbmlops.validation.STEP.PATH`` of the run it is recorded in."""
        checks = [v for v in step.validations if v.when == when]
        if not checks:
            return None
        from ..validation import validate

        error: str | None = None
        tags: dict[str, str] = {}
        for check in checks:
            outcome = self._validate_one(validate, step, check, run_id)
            verdict = outcome if outcome is None else f"{check.on_fail}: {outcome}"
            tags[f"nbmlops.validation.{step.name}.{check.path}"] = \
                "passed" if verdict is None else _one_line(verdict, 250)
            if outcome is not None:
                if check.on_fail == "fail":
                    error = error or outcome
                else:
                    log.warning("step %s: %s (on_fail: warn)", step.name, outcome)
        self._tag(run_id, tags)
        if error is not None:
            self._tag(run_id, {"nbmlops.error": _one_line(error)})
        return error

    def _validate_one(self, validate: Callable[..., Any], step: Step, check: StepValidation,
                      run_id: str) -> str | None:
        root = self.pipeline.root
        against = check.against if check.against.startswith("artifact:") else \
            str(root / check.against)
        where = f"step {step.name}: validate {check.path} against {check.against}"
        try:
            result = validate(str(root / check.path), against, thresholds=check.thresholds,
                              allow_extra_columns=not check.strict_columns, store=self.store,
                              run_id=run_id, label=check.path)
        except NbmlopsError as exc:
            return f"{where}: {exc}"
        if result.passed:
            return None
        shown = "; ".join(f"{v['column']} {v['check']} (expected {v['expected']}, observed "
                          f"{v['observed']})" for v in result.violation_records[:5])
        n = len(result.violation_records)
        more = f"; and {n - 5} more" if n > 5 else ""
        return f"{where}: {n} violation{'s' if n != 1 else ''}: {shown}{more}"

    def _collect_outputs(self, step: Step, run_dir: Path) -> dict[str, Any]:
        files, missing = _expand(self.pipeline.root, step.outputs)
        if missing:
            raise PipelineError(
                f"step {step.name} finished but did not write its declared output(s): "
                f"{', '.join(missing)}"
            )
        variables: dict[str, dict[str, str | None]] = {}
        if step.variables_out:
            from .varsio import find_saved

            saved = find_saved(run_dir / "vars")
            lost = [v for v in step.variables_out if v not in saved]
            if lost:
                raise PipelineError(
                    f"step {step.name} did not save variable(s) {', '.join(lost)} for later steps"
                )
            variables = {
                name: {"path": str(path), "fingerprint": _fp(str(path))}
                for name, path in saved.items() if name in step.variables_out
            }
        found = {rel: _fp(str(p)) for rel, p in files.items()}
        # files the step's cells were seen writing count as outputs too: a cached step whose
        # file was deleted or changed since re-runs, declared in `outputs:` or not
        for rel, fp in self._written_files(run_dir.name).items():
            found.setdefault(rel, fp)
        return {"files": dict(sorted(found.items())), "variables": variables}

    def _store_outputs(self, step: Step, run_id: str) -> str | None:
        """Put the step's declared output files into the store's artifact store (a directory
        or object storage, content-addressed: unchanged files are not written again), linked
        to the step's run. Returns the error when they could not be stored."""
        files, _missing = _expand(self.pipeline.root, step.outputs)
        try:
            for path in files.values():
                if path.is_file():
                    self.store.log_artifact(run_id, path, kind="output")
        except NbmlopsError as exc:
            return f"outputs not stored: {exc}"
        return None

    def _written_files(self, run_id: str) -> dict[str, str]:
        """Files under the pipeline root that run ``run_id`` wrote (as capture recorded them)
        and that are still there, with their fingerprints now."""
        root = self.pipeline.root.resolve()
        private = self.location.runs_dir.resolve()
        out: dict[str, str] = {}
        try:
            uris = {a.uri for ce in self.store.cell_executions(run_id) for a in ce.writes}
        except NbmlopsError as exc:
            log.info("outputs of run %s not read from the store: %s", run_id, exc)
            return out
        for uri in sorted(uris):
            path = Path(uri)
            if not path.is_absolute():
                continue
            real = path.resolve()
            if private in real.parents or (root not in real.parents):
                continue
            fp = _fp(str(real))
            if fp is not None:
                out[real.relative_to(root).as_posix()] = fp
        return out

    def _register(self, step_name: str, pid: int) -> None:
        with self._lock:
            self._kernels[step_name] = pid
            timed_out = self._timeouts.get(step_name)
        if self._cancel.is_set() or (timed_out is not None and timed_out.is_set()):
            # cancelled, or out of time, while this kernel started: nothing of the step ran
            # yet, and an idle kernel ignores an interrupt
            _signal(pid, signal.SIGKILL)

    def _time_out(self, step_name: str, flag: threading.Event) -> None:
        flag.set()
        with self._lock:
            pid = self._kernels.get(step_name)
        if pid is None:
            return
        _signal(pid, signal.SIGINT)

        def kill() -> None:
            with self._lock:
                still = self._kernels.get(step_name) == pid
            if still:
                _signal(pid, signal.SIGKILL)

        t = threading.Timer(kill_grace(), kill)
        t.daemon = True
        t.start()

    def _kill_all(self, sig: int) -> None:
        with self._lock:
            pids = list(self._kernels.values())
        for pid in pids:
            _signal(pid, sig)

    def _tag(self, run_id: str | None, tags: Mapping[str, str]) -> None:
        if run_id is None:
            return
        try:
            store = self.store
            if store.run_exists(run_id):
                store.log_batch(run_id, tags=tags)
        except NbmlopsError as exc:
            log.warning("could not tag run %s: %s", run_id, exc)

    def _mark(self, run_id: str | None, status: str) -> None:
        if run_id is None:
            return
        try:
            store = self.store
            if store.run_exists(run_id):
                store.end_run(run_id, status)
        except NbmlopsError as exc:
            log.warning("could not mark run %s %s: %s", run_id, status, exc)


#: tags of a pipeline run whose steps an orchestrator runs (``nbmlops pipeline step``)
ORCHESTRATOR_TAG = "nbmlops.orchestrator"
ORCHESTRATOR_RUN_TAG = "nbmlops.orchestrator_run"
_RUN_ID_NAMESPACE = uuid.UUID("5b0e3c1e-8c1f-5d7a-9a43-6e626d6c6f70")


def pipeline_run_id(parent_key: str) -> str:
    """The id of the pipeline run an orchestrator's run key stands for: the same key always
    gives the same id (a UUID5 as 32 hex characters), so every task of one orchestrator run
    (an Airflow DAG run, a Kubeflow pipeline job) records its step under the same parent."""
    if not parent_key or not parent_key.strip():
        raise PipelineError("the parent key of a pipeline run must not be empty")
    return uuid.uuid5(_RUN_ID_NAMESPACE, parent_key).hex


class StepRunner(PipelineRunner):
    """One step of a pipeline run whose steps run as separate processes, one per orchestrator
    task (``nbmlops pipeline step``), possibly on different machines; then the end of that
    pipeline run (``nbmlops pipeline finish``).

    The pipeline run's id comes from ``parent_key`` (:func:`pipeline_run_id`); the first step
    to start records it (``source=pipeline``, the same name, params and tags as
    :meth:`PipelineRunner.run`, plus ``nbmlops.orchestrator_run`` = the key). A step runs
    exactly once per call (:meth:`run_step`: one attempt, or a cache hit; the orchestrator does
    the retries, numbered on from the attempts already recorded) through the same code as a local
    run, so its child run, tags, cache key and ``step_cache`` record are the same.

    Steps hand their outputs (declared files, saved variables of the tagged-notebook form) to
    later steps through ``.nbmlops/runs/<pipeline-run-id>/steps/<STEP>.json``, written after
    each step; the files themselves stay where the step wrote them. Every process must therefore
    see the same project directory and ``.nbmlops/runs/`` (a shared filesystem) and the same
    store.
    """

    def __init__(
        self,
        pipeline: Pipeline,
        *,
        parent_key: str,
        orchestrator: str | None = None,
        store_url: str | None = None,
        params: Mapping[str, Any] | None = None,
        force: bool | Iterable[str] = False,
        kernel_name: str | None = None,
        on_event: Callable[[str, StepResult], None] | None = None,
    ) -> None:
        tags = {ORCHESTRATOR_RUN_TAG: parent_key}
        if orchestrator:
            tags[ORCHESTRATOR_TAG] = orchestrator
        super().__init__(
            pipeline, store_url=store_url, jobs=1, force=force, params=params,
            kernel_name=kernel_name, run_tags=tags, on_event=on_event,
            run_id=pipeline_run_id(parent_key),
        )
        self.parent_key = parent_key

    @property
    def state_dir(self) -> Path:
        """Where each step's result (state, run, outputs) is left for the steps after it."""
        return self.location.runs_dir / self.run_id / "steps"

    def run_step(self, name: str) -> StepResult:
        """Run step ``name`` once (or reuse a cached run) as a child of the pipeline run; its
        upstream steps must have finished in this pipeline run. Returns its result (state
        ``ran``, ``cached``, ``failed`` or ``cancelled``)."""
        step = self._step(name)
        res = self.results[name]
        check_gates(self.pipeline)
        self._pin_models()
        try:
            self._load_upstream(step)
            self._ensure_run()
            res.started = time.time()
            if not self._try_cache(step):
                res.state = "running"
                attempt = self._attempts_recorded(name) + 1
                self._run_step(step, attempt, attempt)
            self._save_state(res)
        finally:
            self.close()
        return res

    def finish(self) -> PipelineResult:
        """End the pipeline run from its step runs: each step's state is that of its latest
        child run (``skipped`` when it has none, ``failed`` when its process ended without
        recording an end); the run gets the same status and tags as after a local run."""
        try:
            self._ensure_run()
            store = self.store
            started = store.get_run(self.run_id).start_time
            children = store.list_runs(parent_run_id=self.run_id, order_by="start_time",
                                       descending=False, limit=10_000).runs
            for name in self.order:
                runs = [r for r in children if r.tags.get("nbmlops.step") == name]
                res = self.results[name]
                if not runs:
                    res.state, res.error = "skipped", "did not run"
                    continue
                last = runs[-1]
                res.run_id = last.id
                res.attempts = max((int(r.tags.get("nbmlops.attempt", "0") or 0) for r in runs),
                                   default=0)
                res.cached_from = last.tags.get("nbmlops.cached_from")
                res.cache_key = last.tags.get("nbmlops.cache_key")
                res.started = last.start_time
                res.duration = max(0.0, (last.end_time or time.time()) - last.start_time)
                res.error = last.tags.get("nbmlops.error")
                notebook = self.location.runs_dir / last.id / f"{name}.ipynb"
                res.output_notebook = notebook if notebook.exists() else None
                if last.status == "finished":
                    res.state = "cached" if res.cached_from else "ran"
                elif last.status == "running":
                    # the task is over (finish runs after every step task), its process is not
                    res.state = "failed"
                    res.error = res.error or "the step's process ended without recording its end"
                    self._tag(last.id, {"nbmlops.error": res.error})
                    self._mark(last.id, "failed")
                elif last.status == "cancelled":
                    res.state = "cancelled"
                else:
                    res.state = "failed"
                    res.error = res.error or f"step run {last.status}"
            status = self._final_status()
            self._record_end(status)
        finally:
            self.close()
        return PipelineResult(self.run_id, self.pipeline.name, status, dict(self.results),
                              max(0.0, time.time() - started))

    # -- helpers ------------------------------------------------------------------------------

    def _step(self, name: str) -> Step:
        if name not in self.pipeline.steps:
            import difflib

            hint = difflib.get_close_matches(name, list(self.pipeline.steps), n=1)
            raise PipelineError(
                f"pipeline {self.pipeline.name} has no step {name!r}"
                + (f" (did you mean {hint[0]!r}?)" if hint else "")
                + f"; its steps: {', '.join(self.pipeline.steps)}"
            )
        return self.pipeline.steps[name]

    def _ensure_run(self) -> None:
        """Record the pipeline run unless a step of it already did (steps may race here)."""
        store = self.store
        if not store.run_exists(self.run_id):
            try:
                self._create_run()
            except NbmlopsError:
                if not store.run_exists(self.run_id):
                    raise
        self.location.runs_dir.mkdir(parents=True, exist_ok=True)
        owner = store.get_run(self.run_id).tags.get("nbmlops.pipeline")
        if owner != self.pipeline.name:
            raise PipelineError(
                f"run {self.run_id[:8]} (key {self.parent_key!r}) belongs to pipeline {owner!r}, "
                f"not {self.pipeline.name!r}"
            )

    def _attempts_recorded(self, name: str) -> int:
        """The highest attempt number of step ``name`` recorded in this pipeline run."""
        runs = self.store.list_runs(parent_run_id=self.run_id, limit=10_000).runs
        return max((int(r.tags.get("nbmlops.attempt", "0") or 0) for r in runs
                    if r.tags.get("nbmlops.step") == name), default=0)

    def _load_upstream(self, step: Step) -> None:
        """The results of the steps ``step`` depends on or loads variables from."""
        for dep in sorted(set(step.depends_on) | set(step.variables_in.values())):
            path = self.state_dir / f"{dep}.json"
            try:
                data = json.loads(path.read_text())
            except (OSError, ValueError):
                data = {}
            if data.get("state") not in ("ran", "cached"):
                raise PipelineError(
                    f"step {step.name} cannot run: step {dep} has not "
                    + ("finished" if not data else f"succeeded (it {data.get('state')})")
                    + f" in pipeline run {self.run_id[:8]} (key {self.parent_key!r}; "
                    f"no {path} with a successful result)"
                )
            res = self.results[dep]
            res.state, res.run_id = data["state"], data.get("run_id")
            res.cache_key, res.cached_from = data.get("cache_key"), data.get("cached_from")
            res.outputs = data.get("outputs") or {}

    def _save_state(self, res: StepResult) -> None:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        data = {
            "step": res.name, "state": res.state, "run_id": res.run_id,
            "attempts": res.attempts, "cache_key": res.cache_key,
            "cached_from": res.cached_from, "error": res.error, "outputs": res.outputs,
        }
        target = self.state_dir / f"{res.name}.json"
        tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(data, indent=1, sort_keys=True, default=str))
        os.replace(tmp, target)


def local_module_hashes(nb: Any, root: Path) -> dict[str, str]:
    """SHA-256 of the local Python modules a notebook imports, and of the local modules those
    import in turn: ``import helper`` / ``from pkg.sub import x`` resolved against ``root``
    (``helper.py``, ``pkg/__init__.py``, ``pkg/sub.py``). Installed packages are not local."""
    import ast

    def imported(source: str, package: tuple[str, ...] = ()) -> set[str]:
        """Dotted names ``source`` imports; ``package``: the package the source is in, to
        resolve relative imports (``from .values import X`` in ``helpers/__init__.py``)."""
        try:
            tree = ast.parse(source)
        except SyntaxError:  # IPython syntax (magics): read what parses line by line
            names: set[str] = set()
            for line in source.splitlines():
                if line.lstrip().startswith(("import ", "from ")):
                    names |= imported(line.strip(), package)
            return names
        found: set[str] = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                found |= {a.name for a in node.names}
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    keep = len(package) - (node.level - 1)
                    if keep < 0:
                        continue
                    base = ".".join([*package[:keep], *([node.module] if node.module else [])])
                else:
                    base = node.module or ""
                if base:
                    found.add(base)
                found |= {f"{base}.{a.name}" if base else a.name for a in node.names}
        return found

    def files_of(dotted: str) -> list[tuple[Path, tuple[str, ...]]]:
        """The local files importing ``dotted`` runs, each with the package it belongs to."""
        parts = dotted.split(".")
        out = []
        for i in range(1, len(parts) + 1):
            base = root.joinpath(*parts[:i])
            if base.with_suffix(".py").is_file():
                out.append((base.with_suffix(".py"), tuple(parts[: i - 1])))
            if (base / "__init__.py").is_file():
                out.append((base / "__init__.py", tuple(parts[:i])))
        return out

    todo = [name for cell in nb.cells if cell.get("cell_type") == "code"
            for name in imported(cell.get("source", ""))]
    hashes: dict[str, str] = {}
    seen: set[str] = set()
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        for path, package in files_of(name):
            rel = path.relative_to(root).as_posix()
            if rel in hashes:
                continue
            try:
                text = path.read_bytes()
            except OSError:
                continue
            hashes[rel] = hashlib.sha256(text).hexdigest()
            todo.extend(imported(text.decode("utf-8", "replace"), package))
    return dict(sorted(hashes.items()))


def _one_line(text: str, limit: int = 500) -> str:
    line = " ".join(text.split())
    return line if len(line) <= limit else line[: limit - 1] + "…"


def _fp(path: str) -> str | None:
    """The content fingerprint of a file, or None when it is missing or unreadable."""
    from ..fingerprint import fingerprint_file

    found = fingerprint_file(path)
    return found[0] if found else None


def _signal(pid: int, sig: int) -> None:
    """Signal a kernel and the processes it started (jupyter_client makes each kernel the
    leader of its own session; a kernel sharing our process group gets only its own signal)."""
    try:
        group = os.getpgid(pid)
        if group == pid and group != os.getpgrp():
            os.killpg(group, sig)
        else:
            os.kill(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def _output_fingerprints(outputs: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "files": dict(outputs.get("files", {})),
        "variables": {k: v.get("fingerprint") for k, v in outputs.get("variables", {}).items()},
    }


def _outputs_intact(root: Path, outputs: Mapping[str, Any]) -> bool:
    """Are a cached run's outputs still on disk with the fingerprints it recorded?"""
    try:
        for rel, fp in outputs.get("files", {}).items():
            if fp is None or _fp(str(root / rel)) != fp:
                return False
        for entry in outputs.get("variables", {}).values():
            if _fp(str(entry["path"])) != entry["fingerprint"]:
                return False
    except (OSError, KeyError, TypeError):
        return False
    return True
