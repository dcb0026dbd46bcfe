"""Pipelines as the panel sees them: definitions under the root, and the state of each step of
a pipeline run, derived from the store.

Definitions are found by a bounded scan of the server root (``pipeline.yaml``/``pipeline.yml``
and ``*.pipeline.yaml``; hidden directories, ``node_modules`` and ``.nbmlops`` skipped) and,
for tagged notebooks, through the ``nbmlops.pipeline_path`` tag of recorded pipeline runs. A
definition is loaded with the core's :func:`~nbmlops.pipeline.load.load_pipeline` and checked
like ``nbmlops pipeline validate``; the result is cached until a file it was read from changes.

A step's state comes from its child runs (tag ``nbmlops.step``, else the run name
``PIPELINE/STEP``): the newest attempt decides (``running``, ``ran``, ``cached`` when tagged
``nbmlops.cached_from``, ``failed``, ``cancelled``); a failed attempt that will be retried keeps
the step ``running``. A step without a run is ``pending`` while the pipeline runs, and
``skipped`` (``cancelled`` when the pipeline was cancelled) once it ended or an upstream step
failed: the runner records no run for those.
"""

from __future__ import annotations

import ast
import json
import logging
import os
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import InvalidArgumentError, PipelineError
from ..store import Run
from .paths import relative_to_root

log = logging.getLogger(__name__)

__all__ = [
    "DEFINITION_SUFFIXES",
    "Definition",
    "DefinitionCache",
    "ScanResult",
    "StepStatus",
    "is_definition_name",
    "relative_message",
    "scan_definitions",
    "step_statuses",
]

#: Files the scan lists (``*.pipeline.yaml`` too); a tagged notebook is listed once it ran.
DEFINITION_NAMES = ("pipeline.yaml", "pipeline.yml")
DEFINITION_SUFFIXES = (".yaml", ".yml", ".ipynb")
SKIP_DIRS = frozenset({"node_modules", "__pycache__", "site-packages", ".nbmlops"})
MAX_DEPTH = 4
MAX_DEFINITIONS = 200
MAX_DIRS = 5000
#: Step states of the API (``skipped``: the step has no run and never will in this pipeline run).
STEP_STATES = ("pending", "running", "ran", "cached", "failed", "cancelled", "skipped")
_NOT_RUN_UPSTREAM = ("failed", "skipped", "cancelled")


def is_definition_name(name: str) -> bool:
    low = name.lower()
    return low in DEFINITION_NAMES or low.endswith((".pipeline.yaml", ".pipeline.yml"))


@dataclass(frozen=True)
class ScanResult:
    files: list[Path]
    #: a bound (depth is not one: deeper files are simply not looked at) cut the scan short
    truncated: bool


def scan_definitions(
    root: Path, *, max_depth: int = MAX_DEPTH, max_files: int = MAX_DEFINITIONS,
    max_dirs: int = MAX_DIRS,
) -> ScanResult:
    """Pipeline definition files under ``root`` (real paths, sorted), at most ``max_depth``
    directories deep; symlinked directories are not followed, symlinked files leading out of
    the root are left out."""
    real_root = Path(os.path.realpath(root))
    found: list[Path] = []
    stack: list[tuple[Path, int]] = [(real_root, 0)]
    dirs = 0
    truncated = False
    while stack:
        here, depth = stack.pop()
        dirs += 1
        if dirs > max_dirs:
            truncated = True
            break
        try:
            entries = sorted(os.scandir(here), key=lambda e: e.name)
        except OSError:
            continue
        subdirs: list[Path] = []
        for entry in entries:
            name = entry.name
            try:
                if entry.is_dir(follow_symlinks=False):
                    if depth < max_depth and not name.startswith(".") and name not in SKIP_DIRS:
                        subdirs.append(Path(entry.path))
                    continue
                if not is_definition_name(name) or not entry.is_file():
                    continue
            except OSError:
                continue
            real = Path(os.path.realpath(entry.path))
            if relative_to_root(real_root, real) is None:
                continue  # a symlink out of the root
            if len(found) >= max_files:
                truncated = True
                stack.clear()
                break
            found.append(real)
        stack.extend((d, depth + 1) for d in reversed(subdirs))
    return ScanResult(sorted(set(found)), truncated)


def relative_message(message: str, root: Path) -> str:
    """A core error message with the server root's absolute prefix removed from its paths."""
    for prefix in dict.fromkeys([str(root), os.path.realpath(root)]):
        message = message.replace(prefix.rstrip(os.sep) + os.sep, "")
    return message


def _text(value: Any) -> str:
    """A parameter value as a form shows it (and ``-p NAME VALUE`` reads it back)."""
    if isinstance(value, str):
        return value
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    try:
        return json.dumps(value, ensure_ascii=False)
    except (TypeError, ValueError):
        return repr(value)


def _literal_text(source: str) -> str:
    """The default of a declared parameter (Python source) as form text."""
    try:
        return _text(ast.literal_eval(source))
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return source


@dataclass
class ParamEntry:
    name: str
    default: str
    type: str | None
    source: str  # "pipeline" | "notebook"
    help: str = ""
    steps: list[str] = field(default_factory=list)


@dataclass
class Definition:
    """One loaded, checked definition: the core's ``Pipeline`` and what the panel shows of it."""

    pipeline: Any  # nbmlops.pipeline.spec.Pipeline
    levels: dict[str, int]
    params: list[ParamEntry]


def _stat(path: Path) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_mtime_ns, st.st_size


class DefinitionCache:
    """Loaded definitions by real path, reused while the definition file and the notebooks it
    names are unchanged (mtime and size). Failures are not cached."""

    def __init__(self, maxsize: int = 256) -> None:
        self._maxsize = maxsize
        self._items: OrderedDict[Path, tuple[tuple[Any, ...], Definition]] = OrderedDict()
        self._lock = threading.Lock()

    def load(self, path: Path) -> Definition:
        """Load and check ``path`` (raises :class:`PipelineError` or
        :class:`~nbmlops.errors.ParameterError` with the core's message)."""
        with self._lock:
            hit = self._items.get(path)
        if hit is not None and self._signature(path, hit[1]) == hit[0]:
            with self._lock:
                self._items.move_to_end(path)
            return hit[1]
        definition = _load(path)
        signature = self._signature(path, definition)
        with self._lock:
            self._items[path] = (signature, definition)
            self._items.move_to_end(path)
            while len(self._items) > self._maxsize:
                self._items.popitem(last=False)
        return definition

    @staticmethod
    def _signature(path: Path, definition: Definition) -> tuple[Any, ...]:
        notebooks = sorted({s.notebook for s in definition.pipeline.steps.values()})
        return (_stat(path), *(_stat(nb) for nb in notebooks))


def _load(path: Path) -> Definition:
    from ..params import declared_parameters
    from ..pipeline.load import load_pipeline
    from ..pipeline.runner import INJECTED, resolve_step_params

    try:
        pipe = load_pipeline(path)
        pipe.topological_order()  # a cycle among `after:` tags is found here
        resolve_step_params(pipe)  # every step's own params against its notebook
    except InvalidArgumentError:  # PipelineError, ParameterError
        raise
    except Exception as exc:  # noqa: BLE001 - a definition the core could not read at all
        log.debug("pipeline %s does not load", path, exc_info=True)
        raise PipelineError(f"{path}: cannot load: {type(exc).__name__}: {exc}") from exc
    levels = {name: i for i, level in enumerate(pipe.levels()) for name in level}
    params: dict[str, ParamEntry] = {}
    for name, value in pipe.params.items():
        params[name] = ParamEntry(name, _text(value), None if value is None else type(value).__name__,
                                  "pipeline")
    for step in pipe.steps.values():
        try:
            declared = declared_parameters(
                step.notebook_node if step.notebook_node is not None else step.notebook) or {}
        except Exception:  # noqa: BLE001 - parameters are a convenience of the form
            log.debug("parameters of %s not read", step.notebook, exc_info=True)
            declared = {}
        for pname, info in declared.items():
            if pname in INJECTED or pname in step.params:
                continue  # the step's own value wins: an override does not reach it
            entry = params.get(pname)
            if entry is None:
                entry = params[pname] = ParamEntry(pname, _literal_text(info.default),
                                                   info.type_name, "notebook", info.help)
            entry.steps.append(step.name)
    return Definition(pipe, levels, list(params.values()))


# -- step status of a pipeline run -----------------------------------------------------------


@dataclass
class StepStatus:
    name: str
    notebook: str | None = None  # absolute path
    depends_on: list[str] = field(default_factory=list)
    level: int = 0
    state: str = "pending"
    attempts: int = 0
    runs: list[Run] = field(default_factory=list)
    cached_from: str | None = None
    error: dict[str, Any] | None = None

    @property
    def latest(self) -> Run | None:
        return self.runs[-1] if self.runs else None


def step_name(run: Run, pipeline_name: str | None) -> str | None:
    """Which step a child run belongs to (its tag, else its name ``PIPELINE/STEP``)."""
    tagged = run.tags.get("nbmlops.step")
    if tagged:
        return tagged
    if pipeline_name and run.name.startswith(pipeline_name + "/"):
        return run.name[len(pipeline_name) + 1:]
    return None


def step_statuses(
    definition: Definition | None,
    parent_status: str | None,
    pipeline_name: str | None,
    children: Sequence[Run],
    failed_cell: Callable[[str], dict[str, Any] | None],
) -> list[StepStatus]:
    """Every step of the pipeline (the definition's, then any other a child run names) with its
    state. ``parent_status`` is the pipeline run's status (``None``: not created yet, or the
    launcher gave up: ``starting``/``failed``/``cancelled`` as computed by the caller)."""
    steps: dict[str, StepStatus] = {}
    retries: dict[str, int] = {}
    if definition is not None:
        for name, step in definition.pipeline.steps.items():
            steps[name] = StepStatus(name, str(step.notebook), list(step.depends_on),
                                     definition.levels.get(name, 0))
            retries[name] = step.retries
    extra_level = max((s.level for s in steps.values()), default=-1) + 1
    for run in sorted(children, key=lambda r: (r.start_time, r.id)):
        name = step_name(run, pipeline_name)
        if name is None:
            continue
        if name not in steps:
            steps[name] = StepStatus(name, run.notebook_path, [], extra_level)
        steps[name].runs.append(run)
    ended = parent_status not in (None, "running", "starting")
    for st in steps.values():
        latest = st.latest
        if latest is None:
            continue
        st.attempts = sum(1 for r in st.runs if "nbmlops.cached_from" not in r.tags)
        if latest.status == "running":
            st.state = "running" if not ended else "failed"
        elif latest.status == "finished":
            st.cached_from = latest.tags.get("nbmlops.cached_from")
            st.state = "cached" if st.cached_from else "ran"
        elif latest.status == "cancelled":
            st.state = "cancelled"
        else:  # failed, abandoned
            retrying = not ended and st.attempts <= retries.get(st.name, 0)
            st.state = "running" if retrying else "failed"
            if not retrying:
                st.error = failed_cell(latest.id)
    # steps without a run, in dependency order (a definition lists them in any order)
    order = _dependency_order(steps)
    for name in order:
        st = steps[name]
        if st.runs:
            continue
        upstream_bad = any(steps[d].state in _NOT_RUN_UPSTREAM for d in st.depends_on if d in steps)
        if parent_status == "cancelled":
            st.state = "cancelled"
        elif ended or upstream_bad:
            st.state = "skipped"
        else:
            st.state = "pending"
    return list(steps.values())


def _dependency_order(steps: Mapping[str, StepStatus]) -> list[str]:
    done: list[str] = []
    seen: set[str] = set()

    def visit(name: str, path: frozenset[str]) -> None:
        if name in seen or name in path or name not in steps:
            return
        for dep in steps[name].depends_on:
            visit(dep, path | {name})
        seen.add(name)
        done.append(name)

    for name in steps:
        visit(name, frozenset())
    return done


def latest_parent_runs(runs: Iterable[Run]) -> dict[str, Run]:
    """Newest pipeline run per definition (real path of its ``nbmlops.pipeline_path`` tag)."""
    out: dict[str, Run] = {}
    for run in runs:
        tagged = run.tags.get("nbmlops.pipeline_path")
        if run.parent_run_id is not None or not tagged:
            continue
        for key in dict.fromkeys([os.path.normpath(tagged), os.path.realpath(tagged)]):
            best = out.get(key)
            if best is None or (run.start_time, run.id) > (best.start_time, best.id):
                out[key] = run
    return out
