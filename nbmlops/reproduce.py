"""Reproduce a recorded run: re-run it with its recorded notebook content, params and inputs,
then compare what came out with what the run recorded.

A run made by ``nbmlops run`` / papermill (source ``papermill``) is re-run from its executed copy
under ``.nbmlops/runs/<run-id>/`` (so an edited source notebook does not change what runs; the
edit is reported); without that copy, from its source notebook, whose hash must match the
recorded one. A pipeline run (source ``pipeline``, one child run per step) is re-run through
:class:`~nbmlops.pipeline.runner.PipelineRunner` with every step forced, from the definition in
its tag ``nbmlops.pipeline_path``; its step notebooks must match the recorded hashes.

Before anything runs, :func:`check` compares what was recorded with what is there now: notebook
content, the fingerprints of the files the run read (artifact edges ``read`` whose first use in
the run was a read, not a file the run wrote itself), files that are gone, package versions and
the Python version. :func:`reproduce` refuses with :class:`DriftError` (nothing recorded) unless
``allow_drift``. The reproduction is a new run tagged ``nbmlops.reproduces=<original id>``; the
original is never written to. The comparison covers metrics (``numpy.isclose`` semantics:
``|new - old| <= atol + rtol * |old|``), written files by fingerprint and every cell's status.

Core module: no click, no ``_format``; the CLI (``nbmlops reproduce``) renders the report.
"""

from __future__ import annotations

import hashlib
import logging
import os
import platform
import shutil
import uuid
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import InvalidArgumentError, NbmlopsError, NotFoundError
from .redact import environment_advice, secrets_in

if TYPE_CHECKING:
    from .store import Store
    from .store.entities import CellExecution, Run

log = logging.getLogger(__name__)

__all__ = [
    "REPRODUCES_TAG",
    "Drift",
    "Difference",
    "DriftError",
    "ReproductionPlan",
    "ReproductionReport",
    "check",
    "reproduce",
    "metric_close",
]

#: tag of a reproduction run: the id of the run it reproduces
REPRODUCES_TAG = "nbmlops.reproduces"
_NOTEBOOK_SOURCES = ("papermill", "schedule")


@dataclass(frozen=True)
class Drift:
    """One difference between what a run recorded and what is there now.

    ``kind``: ``notebook`` (content hash), ``input`` (a read file's fingerprint), ``missing``
    (a read file or notebook that is gone), ``package`` (version; ``current`` None: uninstalled;
    ``recorded`` None: installed since, not blocking), ``python``, ``pipeline`` (steps or params
    of the definition), ``secret`` (a cell held a secret, stored redacted: ``note`` names the
    environment variable it must come from; not blocking). ``blocking`` items make :func:`reproduce` refuse without ``allow_drift``.
    """

    kind: str
    name: str
    recorded: str | None
    current: str | None
    step: str | None = None
    blocking: bool = True
    note: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Difference:
    """One output of the reproduction that differs from the original's.

    ``kind``: ``metric``, ``file`` (fingerprint; None where one side did not write it),
    ``cell`` (status, with the error name), ``status`` (of a run or step)."""

    kind: str
    name: str
    original: Any
    reproduced: Any
    step: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class DriftError(NbmlopsError):
    """A reproduction refused because inputs, notebooks or packages changed since the run."""

    exit_code = 1

    def __init__(self, message: str, drift: Sequence[Drift], run_id: str) -> None:
        super().__init__(message)
        self.drift = list(drift)
        self.run_id = run_id


@dataclass
class _Unit:
    """A notebook execution of the original run: the run itself, or one pipeline step."""

    step: str | None
    run: Run  # as recorded (a cached step's child run has no cells)
    executed: Run  # the run whose kernel actually executed it (``nbmlops.cached_from`` followed)
    cells: list[CellExecution]


@dataclass
class ReproductionPlan:
    """What :func:`check` found: the original run, what would run, and the drift."""

    run: Run
    kind: str  # notebook | pipeline
    units: list[_Unit]
    drift: list[Drift]
    #: notebook runs: the notebook JSON to execute (recorded copy) or None (the source file),
    #: its params
    notebook: dict[str, Any] | None = None
    notebook_file: Path | None = None
    params: dict[str, Any] = field(default_factory=dict)
    pipeline_path: Path | None = None

    @property
    def blocking(self) -> list[Drift]:
        return [d for d in self.drift if d.blocking]


@dataclass(frozen=True)
class ReproductionReport:
    original_run_id: str
    run_id: str
    kind: str
    status: str
    reproducible: bool
    drift: list[Drift]
    differences: list[Difference]
    #: how many of each were compared: metrics, files, cells, steps
    compared: dict[str, int]
    rtol: float
    atol: float
    notebooks: list[str]

    def to_dict(self) -> dict[str, Any]:
        return {
            "original_run_id": self.original_run_id, "run_id": self.run_id, "kind": self.kind,
            "status": self.status, "reproducible": self.reproducible,
            "drift": [d.to_dict() for d in self.drift],
            "differences": [d.to_dict() for d in self.differences],
            "compared": dict(self.compared), "rtol": self.rtol, "atol": self.atol,
            "notebooks": list(self.notebooks),
        }


def metric_close(reproduced: float, original: float, *, rtol: float, atol: float) -> bool:
    """``numpy.isclose(reproduced, original, rtol, atol)``: ``|a - b| <= atol + rtol * |b|``."""
    return abs(reproduced - original) <= atol + rtol * abs(original)


# -- what was recorded ------------------------------------------------------------------------


def _executed(store: Store, run: Run) -> Run:
    """The run that executed ``run``'s notebook: ``run`` itself, or the run a cached step
    reused (followed through chains of cached steps)."""
    seen = {run.id}
    while run.tags.get("nbmlops.cached_from"):
        try:
            nxt = store.get_run(run.tags["nbmlops.cached_from"])
        except NotFoundError:
            break
        if nxt.id in seen:
            break
        seen.add(nxt.id)
        run = nxt
    return run


def _children(store: Store, parent_id: str) -> dict[str, Run]:
    """Step name -> the last attempt's child run of a pipeline run."""
    runs = store.list_runs(parent_run_id=parent_id, order_by="start_time", descending=False,
                           limit=10_000).runs
    out: dict[str, Run] = {}
    for r in runs:
        step = r.tags.get("nbmlops.step")
        if step:
            out[step] = r  # later attempts start later and win
    return out


def _units(store: Store, run: Run) -> list[_Unit]:
    if run.source == "pipeline":
        units = []
        for step, child in _children(store, run.id).items():
            executed = _executed(store, child)
            units.append(_Unit(step, child, executed, store.cell_executions(executed.id)))
        return sorted(units, key=lambda u: u.executed.start_time)
    return [_Unit(None, run, run, store.cell_executions(run.id))]


def _is_local_path(uri: str) -> bool:
    return os.path.isabs(uri)


def _inputs(units: Sequence[_Unit]) -> dict[str, tuple[str, str | None]]:
    """uri -> (fingerprint, step) of the files the run read before it wrote them itself."""
    written: set[str] = set()
    inputs: dict[str, tuple[str, str | None]] = {}
    for unit in units:
        for cell in unit.cells:
            for art in cell.reads:
                if art.uri not in written and art.uri not in inputs and _is_local_path(art.uri):
                    inputs[art.uri] = (art.fingerprint, unit.step)
            written.update(a.uri for a in cell.writes)
    return inputs


def _input_drift(units: Sequence[_Unit]) -> list[Drift]:
    from .fingerprint import fingerprint_file

    out = []
    for uri, (recorded, step) in _inputs(units).items():
        now = fingerprint_file(uri)
        if now is None:
            out.append(Drift("missing", uri, recorded or None, None, step))
        elif recorded and now[0] != recorded:
            out.append(Drift("input", uri, recorded, now[0], step))
    return out


def _package_drift(units: Sequence[_Unit]) -> list[Drift]:
    from .environment import installed_packages

    env = next((u.executed.environment for u in units if u.executed.environment), None)
    if not env:
        return []
    out = []
    python = env.get("python")
    if python and python != platform.python_version():
        out.append(Drift("python", "python", str(python), platform.python_version()))
    recorded = env.get("packages") or {}
    if not isinstance(recorded, dict):
        return out
    current = installed_packages()
    for name in sorted(set(recorded) | set(current)):
        old, new = recorded.get(name), current.get(name)
        if old == new:
            continue
        if old is None:
            out.append(Drift("package", name, None, new, blocking=False,
                             note="installed since the run"))
        else:
            out.append(Drift("package", name, str(old), new))
    return out


def _notebook_drift(path: str | None, recorded: str | None, *, blocking: bool,
                    step: str | None = None, note: str | None = None) -> list[Drift]:
    from .environment import notebook_hash

    if not path:
        return []
    if not os.path.exists(path):
        return [Drift("missing", path, recorded, None, step, blocking, note)]
    now = notebook_hash(path)
    if recorded and now != recorded:
        return [Drift("notebook", path, recorded, now, step, blocking, note)]
    return []


def _recorded_copy(store: Store, run: Run, cells: Sequence[CellExecution]
                   ) -> tuple[dict[str, Any], Path] | None:
    """The executed copy ``nbmlops run`` kept of ``run`` (``.nbmlops/runs/<id>/*.ipynb``) when
    its code cells are the ones the run recorded; as JSON cleaned of outputs, ready to execute.

    Read with ``json``, not nbformat, whose import costs seconds where jsonschema's format
    checkers are installed: a refusal should not wait for it."""
    import json

    run_dir = store.location.runs_dir / run.id
    if not run_dir.is_dir():
        return None
    # a cell whose secret was redacted in the store matches by its original source's hash
    recorded = {c.cell_id: (c.source, c.source_hash) for c in cells if c.cell_id}
    for path in sorted(run_dir.glob("*.ipynb")):
        try:
            nb = json.loads(path.read_text(encoding="utf-8"))
            if nb["metadata"].get("nbmlops", {}).get("run_id") != run.id:
                continue
            by_id = {c.get("id"): c for c in nb["cells"]}
            for cell in nb["cells"]:
                if isinstance(cell.get("source"), list):
                    cell["source"] = "".join(cell["source"])
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            continue  # not a notebook we can use
        intact = all(
            cid in by_id and (
                by_id[cid].get("source") == src
                or _sha256(by_id[cid].get("source")) == digest
                or "injected-parameters" in by_id[cid].get("metadata", {}).get("tags", []))
            for cid, (src, digest) in recorded.items()
        )
        if not intact:
            log.info("executed copy %s differs from the cells run %s recorded", path, run.id)
            continue
        for cell in nb["cells"]:
            meta = cell.get("metadata", {})
            meta.pop("papermill", None)
            meta.pop("execution", None)
            if cell.get("cell_type") == "code":
                cell["outputs"] = []
                cell["execution_count"] = None
        return nb, path
    return None


def _sha256(source: Any) -> str | None:
    if not isinstance(source, str):
        return None
    return hashlib.sha256(source.encode("utf-8", "surrogatepass")).hexdigest()


def _secret_notes(units: Sequence[_Unit]) -> list[Drift]:
    """Cells whose source held a secret (stored redacted): the value must come from the
    environment when the notebook runs elsewhere. Not blocking."""
    notes = []
    for unit in units:
        for c in unit.cells:
            names = secrets_in(c.source)
            if names:
                notes.append(Drift("secret", _cell_label(c), None, None, unit.step, blocking=False,
                                   note=environment_advice(names)))
    return notes


def _source_params(path: Path, run: Run) -> dict[str, Any]:
    """The params to inject when re-running the source notebook: the run's recorded values of
    the parameters its ``parameters`` cell declares, coerced to the declared types."""
    from .params import check_parameters, declared_parameters, read_notebook_light

    nb = read_notebook_light(path)
    declared = declared_parameters(nb) or {}
    params = {k: v for k, v in run.params.items() if k in declared}
    return check_parameters(nb, params, label=path.name) if params else {}


def _param_text(value: Any) -> str:
    return value if isinstance(value, str) else repr(value)


def _pipeline_drift(plan: ReproductionPlan) -> None:
    from .pipeline.load import load_pipeline
    from .pipeline.runner import INJECTED, resolve_step_params

    path = plan.pipeline_path
    if path is None or not path.exists():
        plan.drift.append(Drift("missing", str(path or "pipeline definition"), "recorded", None))
        return
    try:
        pipe = load_pipeline(path)
    except NbmlopsError as exc:
        plan.drift.append(Drift("pipeline", str(path), "loads", None, note=str(exc)))
        return
    recorded_steps = {u.step for u in plan.units if u.step}
    for name in sorted(recorded_steps - set(pipe.steps)):
        plan.drift.append(Drift("pipeline", f"step {name}", "recorded", None, name,
                                note="no longer in the definition"))
    for name in sorted(set(pipe.steps) - recorded_steps):
        plan.drift.append(Drift("pipeline", f"step {name}", None, "added", name,
                                note="not in the recorded run"))
    try:
        resolved = resolve_step_params(pipe, plan.params)
    except NbmlopsError as exc:
        plan.drift.append(Drift("pipeline", "params", "recorded", None, note=str(exc)))
        resolved = {}
    for unit in plan.units:
        for key, value in resolved.get(unit.step or "", {}).items():
            if key in INJECTED:
                continue
            old = unit.executed.params.get(key)
            if old is not None and old != _param_text(value):
                plan.drift.append(Drift("pipeline", f"param {key}", old, _param_text(value),
                                        unit.step))


def check(store: Store, run_id: str) -> ReproductionPlan:
    """Look at run ``run_id`` and at what is there now; record nothing.

    Raises :class:`NotFoundError` (unknown run) and :class:`InvalidArgumentError` (a run that
    cannot be re-run: interactive, still running, a pipeline's step)."""
    run = store.get_run(run_id)
    if run.status == "running":
        raise InvalidArgumentError(f"run {run.id[:8]} is still running; reproduce it once it ended")
    if run.source == "pipeline" and run.parent_run_id:
        raise InvalidArgumentError(
            f"run {run.id[:8]} is step {run.tags.get('nbmlops.step', '?')} of pipeline run "
            f"{run.parent_run_id[:8]}: reproduce the pipeline run "
            f"(nbmlops reproduce {run.parent_run_id[:8]})"
        )
    if run.source == "pipeline":
        plan = ReproductionPlan(run, "pipeline", _units(store, run), [])
        path = run.tags.get("nbmlops.pipeline_path") or run.notebook_path
        plan.pipeline_path = Path(path) if path else None
        plan.params = dict(run.params)
        _pipeline_drift(plan)
        seen: set[str] = set()
        for unit in plan.units:
            nb_path = unit.executed.notebook_path
            if nb_path and nb_path not in seen:
                seen.add(nb_path)
                plan.drift += _notebook_drift(nb_path, unit.executed.notebook_hash,
                                              blocking=True, step=unit.step)
    elif run.source in _NOTEBOOK_SOURCES:
        plan = ReproductionPlan(run, "notebook", _units(store, run), [])
        copy = _recorded_copy(store, run, plan.units[0].cells)
        if copy is not None:
            plan.notebook, plan.notebook_file = copy
            meta = copy[0]["metadata"]
            plan.params = dict(meta.get("papermill", {}).get("parameters") or {})
            meta.pop("papermill", None)
            meta.pop("nbmlops", None)
            note = f"the recorded copy {plan.notebook_file} is re-run"
            plan.drift += _notebook_drift(run.notebook_path, run.notebook_hash, blocking=False,
                                          note=note)
        else:
            plan.drift += _notebook_drift(run.notebook_path, run.notebook_hash, blocking=True,
                                          note="no executed copy kept: the source is re-run")
            if run.notebook_path and os.path.exists(run.notebook_path):
                plan.notebook_file = Path(run.notebook_path)
                plan.params = _source_params(plan.notebook_file, run)
            if not run.notebook_path:
                raise InvalidArgumentError(
                    f"run {run.id[:8]} recorded no notebook and no executed copy is kept: "
                    "nothing to re-run"
                )
    else:
        raise InvalidArgumentError(
            f"run {run.id[:8]} is an interactive session ({run.source}); reproduce takes runs of "
            "`nbmlops run`, papermill or `nbmlops pipeline run` (make one with `%mlops export`)"
        )
    plan.drift += _input_drift(plan.units)
    plan.drift += _package_drift(plan.units)
    plan.drift += _secret_notes(plan.units)
    return plan


# -- running it again -------------------------------------------------------------------------


def reproduce(
    store: Store,
    run_id: str,
    *,
    allow_drift: bool = False,
    rtol: float = 1e-7,
    atol: float = 0.0,
    output_dir: str | os.PathLike[str] | None = None,
    on_event: Callable[[str, Any], None] | None = None,
    plan: ReproductionPlan | None = None,
) -> ReproductionReport:
    """Re-run ``run_id`` and compare; see the module docstring.

    Raises :class:`DriftError` (exit 1, nothing recorded) when something changed since the run
    and ``allow_drift`` is false. ``on_event`` gets a pipeline runner's progress events."""
    if rtol < 0 or atol < 0:
        raise InvalidArgumentError("--rtol and --atol must be >= 0")
    plan = plan or check(store, run_id)
    run = plan.run
    if plan.blocking and not allow_drift:
        n = len(plan.blocking)
        raise DriftError(
            f"run {run.id[:8]} cannot be reproduced as recorded: {n} change"
            f"{'s' if n != 1 else ''} since it ran (pass --allow-drift to run it anyway)",
            plan.drift, run.id,
        )
    new_id = uuid.uuid4().hex
    out_dir = Path(output_dir) if output_dir is not None else None
    if plan.kind == "pipeline":
        status, notebooks = _run_pipeline(store, plan, new_id, out_dir, on_event)
    else:
        status, notebooks = _run_notebook(store, plan, new_id, out_dir)
    new_run = store.get_run(new_id)
    new_units = _units(store, new_run)
    differences, compared = _compare(store, plan, new_run, new_units, rtol=rtol, atol=atol)
    reproducible = status == run.status and not differences
    tags = {"nbmlops.reproducible": "yes" if reproducible else "no",
            "nbmlops.reproduce_differences": str(len(differences))}
    if plan.blocking:
        tags["nbmlops.reproduce_drift"] = str(len(plan.blocking))
    store.log_batch(new_id, tags=tags)
    return ReproductionReport(run.id, new_id, plan.kind, status, reproducible, plan.drift,
                              differences, compared, rtol, atol, notebooks)


def _run_notebook(store: Store, plan: ReproductionPlan, new_id: str,
                  out_dir: Path | None) -> tuple[str, list[str]]:
    from .execute import execute_notebook

    run = plan.run
    origin = Path(run.notebook_path) if run.notebook_path else plan.notebook_file
    if plan.notebook is None and plan.notebook_file is None:
        raise NotFoundError(
            f"run {run.id[:8]}: neither its executed copy nor its notebook {run.notebook_path} "
            "is there any more: nothing to re-run"
        )
    assert origin is not None
    cwd = origin.parent if origin.parent.is_dir() else Path.cwd()
    tags = {REPRODUCES_TAG: run.id}
    if plan.notebook is not None and plan.notebook_file is not None:
        tags["nbmlops.reproduce_notebook"] = str(plan.notebook_file)
    what: Any = plan.notebook_file
    if plan.notebook is not None:
        import nbformat

        what = nbformat.from_dict(plan.notebook)
    result = execute_notebook(
        what,
        out_dir / origin.name if out_dir is not None else None,
        cwd=cwd, run_name=run.name, source=run.source, store_url=store.location.url,
        keep_output=True, parameters=plan.params or None, check_parameters=False,
        run_id=new_id, notebook_path=origin, tags=tags,
    )
    if plan.notebook is not None and run.notebook_hash:
        # what ran is the recorded content, whatever the source file holds now
        store.update_run(new_id, notebook_hash=run.notebook_hash)
    return result.status, [str(result.output_path)] if result.output_path else []


def _run_pipeline(store: Store, plan: ReproductionPlan, new_id: str, out_dir: Path | None,
                  on_event: Callable[[str, Any], None] | None) -> tuple[str, list[str]]:
    from .pipeline.load import load_pipeline
    from .pipeline.runner import PipelineRunner

    if plan.pipeline_path is None or not plan.pipeline_path.exists():
        raise NotFoundError(
            f"run {plan.run.id[:8]}: its pipeline definition {plan.pipeline_path} is gone: "
            "nothing to re-run"
        )
    pipe = load_pipeline(plan.pipeline_path)
    runner = PipelineRunner(
        pipe, store_url=store.location.url, force=True, params=plan.params,
        run_tags={REPRODUCES_TAG: plan.run.id}, run_id=new_id, on_event=on_event,
        gates=False,  # a reproduction registers and promotes nothing
    )
    result = runner.run()
    notebooks = []
    for name in pipe.topological_order():
        nb = result.steps[name].output_notebook
        if nb is None:
            continue
        if out_dir is not None:
            out_dir.mkdir(parents=True, exist_ok=True)
            nb = Path(shutil.copyfile(nb, out_dir / f"{name}.ipynb"))
        notebooks.append(str(nb))
    return result.status, notebooks


# -- comparing the outputs --------------------------------------------------------------------


def _written(store: Store, unit: _Unit) -> dict[str, str]:
    """Normalized uri -> last fingerprint of the files ``unit`` wrote; files in the run's own
    directory (saved variables of generated steps) are named relative to it."""
    private = (store.location.runs_dir / unit.executed.id).resolve()
    out: dict[str, str] = {}
    for cell in unit.cells:
        for art in cell.writes:
            uri = art.uri
            if _is_local_path(uri):
                p = Path(uri).resolve()
                if private == p or private in p.parents:
                    uri = "<run dir>/" + p.relative_to(private).as_posix()
            out[uri] = art.fingerprint
    return out


def _pair_cells(old: Sequence[CellExecution], new: Sequence[CellExecution]
                ) -> list[tuple[CellExecution | None, CellExecution | None]]:
    """Cells paired by cell id; the rest (papermill's injected cell gets a new id) in order."""
    new_by_id = {c.cell_id: c for c in new if c.cell_id}
    pairs: list[tuple[CellExecution | None, CellExecution | None]] = []
    used: set[int] = set()
    rest_old = []
    for c in old:
        match = new_by_id.get(c.cell_id) if c.cell_id else None
        if match is not None and match.id not in used:
            used.add(match.id)
            pairs.append((c, match))
        else:
            rest_old.append(c)
    rest_new = [c for c in new if c.id not in used]
    for i in range(max(len(rest_old), len(rest_new))):
        pairs.append((rest_old[i] if i < len(rest_old) else None,
                      rest_new[i] if i < len(rest_new) else None))
    return sorted(pairs, key=lambda pair: next(c.seq for c in pair if c is not None))


def _cell_label(c: CellExecution) -> str:
    first = next((ln for ln in c.source.splitlines() if ln.strip()), "")
    return f"cell {c.seq}: {first.strip()[:40]}"


def _cell_state(c: CellExecution | None) -> str | None:
    if c is None:
        return None
    return c.status if c.status == "ok" or not c.error_name else f"{c.status} ({c.error_name})"


def _compare(store: Store, plan: ReproductionPlan, new_run: Run, new_units: Sequence[_Unit],
             *, rtol: float, atol: float) -> tuple[list[Difference], dict[str, int]]:
    diffs: list[Difference] = []
    compared = {"metrics": 0, "files": 0, "cells": 0, "steps": 0}
    if new_run.status != plan.run.status:
        diffs.append(Difference("status", "run", plan.run.status, new_run.status))
    new_by_step = {u.step: u for u in new_units}
    for unit in plan.units:
        step = unit.step
        other = new_by_step.get(step)
        compared["steps"] += 1 if step else 0
        if other is None:
            diffs.append(Difference("status", f"step {step}", unit.run.status, None, step))
            continue
        if step and other.run.status != unit.run.status:
            diffs.append(Difference("status", f"step {step}", unit.run.status,
                                    other.run.status, step))
        for key, value in sorted(unit.executed.metrics.items()):
            compared["metrics"] += 1
            new_value = other.executed.metrics.get(key)
            if new_value is None or not metric_close(new_value, value, rtol=rtol, atol=atol):
                diffs.append(Difference("metric", key, value, new_value, step))
        for key in sorted(set(other.executed.metrics) - set(unit.executed.metrics)):
            diffs.append(Difference("metric", key, None, other.executed.metrics[key], step))
        old_files, new_files = _written(store, unit), _written(store, other)
        for uri in sorted(set(old_files) | set(new_files)):
            compared["files"] += 1
            if old_files.get(uri) != new_files.get(uri):
                diffs.append(Difference("file", uri, old_files.get(uri), new_files.get(uri), step))
        for old, new in _pair_cells(unit.cells, other.cells):
            compared["cells"] += 1
            if _cell_state(old) != _cell_state(new):
                label = _cell_label(old or new)  # type: ignore[arg-type]
                diffs.append(Difference("cell", label, _cell_state(old), _cell_state(new), step))
    return diffs, compared
