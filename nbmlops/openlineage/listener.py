"""The store listener: what each run is as an OpenLineage job, and store events handed on.

Runs on whichever thread wrote the store (the writer process, a headless run's journal follower,
the pipeline runner), right after the commit. It does dictionary work and a ``put_nowait``;
the one store read it may make is for a run this process has not seen start (a parent run
created elsewhere, or the final params/metrics at a run's end). Nothing here imports
openlineage-python: the events are built on the emitter's thread.
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..config import find_project_dir

if TYPE_CHECKING:
    from ..store.entities import Run
    from ..store.store import Store

log = logging.getLogger(__name__)

__all__ = [
    "CELL", "NOTEBOOK", "STEP", "PIPELINE", "JobRef", "RunInfo", "LineageListener",
    "ol_run_id", "cell_run_id", "cell_job_name",
]

CELL, NOTEBOOK, STEP, PIPELINE = "CELL", "NOTEBOOK", "STEP", "PIPELINE"


def ol_run_id(run_id: str) -> str:
    """An nbmlops run id (uuid hex) as an OpenLineage run id (a UUID string). Other ids (a
    caller's own) map to a UUID5, the same one every time."""
    try:
        return str(uuid.UUID(hex=run_id))
    except ValueError:
        return str(uuid.uuid5(uuid.NAMESPACE_URL, f"nbmlops:run:{run_id}"))


def cell_run_id(run_id: str, seq: int) -> str:
    """The OpenLineage run id of cell execution ``seq`` of a run: UUID5 of the run's UUID and the
    sequence number, so every process (and a replay) names the same cell run the same way."""
    return str(uuid.uuid5(uuid.UUID(ol_run_id(run_id)), f"cell-{seq}"))


def cell_job_name(run_job: str, seq: int) -> str:
    return f"{run_job}.cell-{seq}"


@dataclass(frozen=True)
class JobRef:
    run_id: str  # OpenLineage run id
    job_name: str


@dataclass(frozen=True)
class RunInfo:
    """An nbmlops run as an OpenLineage job run."""

    run_id: str  # nbmlops run id
    ol_id: str
    job_name: str
    job_type: str  # NOTEBOOK | STEP | PIPELINE
    source_path: str | None  # the notebook (or pipeline file) the run executed
    parent: JobRef | None
    root: JobRef | None
    git_commit: str | None = None

    @property
    def ref(self) -> JobRef:
        return JobRef(self.ol_id, self.job_name)


def _job_base(path: str, project_dir: Path | None) -> str:
    """A notebook's job name: its path relative to its project (the nearest directory above it
    holding ``.nbmlops``, else the store's project), so names agree across machines; absolute
    outside any project; without ``.ipynb``."""
    p = Path(path)
    try:
        project = find_project_dir(p.parent) if p.is_absolute() else None
    except Exception:  # noqa: BLE001 - an unreadable directory: use the store's project
        project = None
    for base in (project, project_dir):
        if base is None:
            continue
        try:
            p = p.resolve().relative_to(base.resolve())
            break
        except (ValueError, OSError):
            continue
    text = p.as_posix()
    return text[: -len(".ipynb")] if text.endswith(".ipynb") else text


def run_info(run: Run, parent: RunInfo | None, project_dir: Path | None) -> RunInfo:
    tags = run.tags or {}
    if "nbmlops.steps" in tags and "nbmlops.step" not in tags:
        job_type, name = PIPELINE, run.name
    elif (parent is not None and parent.job_type == PIPELINE) or "nbmlops.step" in tags:
        job_type = STEP
        step = tags.get("nbmlops.step") or run.name.rpartition("/")[2]
        base = parent.job_name if parent is not None else (tags.get("nbmlops.pipeline") or "pipeline")
        name = f"{base}.{step}"
    else:
        job_type = NOTEBOOK
        name = _job_base(run.notebook_path, project_dir) if run.notebook_path else run.name
    root = None if parent is None else (parent.root or parent.ref)
    return RunInfo(
        run_id=run.id, ol_id=ol_run_id(run.id), job_name=name, job_type=job_type,
        source_path=run.notebook_path, parent=parent.ref if parent else None, root=root,
        git_commit=run.git_commit,
    )


class RunCache:
    """The runs this process has seen, shared by every store it opens (a pipeline run and its
    steps' runs are often written through different ``Store`` objects). Bounded, thread-safe."""

    def __init__(self, size: int = 4096) -> None:
        self._size = size
        self._items: OrderedDict[str, RunInfo] = OrderedDict()
        self._ended: OrderedDict[str, None] = OrderedDict()
        self._lock = threading.Lock()

    def first_end(self, run_id: str) -> bool:
        """True the first time this process sees ``run_id`` end (a run whose failure is recorded
        twice, by the kernel and by the launcher, gets one FAIL)."""
        with self._lock:
            if run_id in self._ended:
                return False
            self._ended[run_id] = None
            while len(self._ended) > self._size:
                self._ended.popitem(last=False)
            return True

    def get(self, run_id: str) -> RunInfo | None:
        with self._lock:
            info = self._items.get(run_id)
            if info is not None:
                self._items.move_to_end(run_id)
            return info

    def put(self, info: RunInfo) -> None:
        with self._lock:
            self._items[info.run_id] = info
            self._items.move_to_end(info.run_id)
            while len(self._items) > self._size:
                self._items.popitem(last=False)


RUNS = RunCache()

#: what the listener hands the emitter: ("start", RunInfo, Run), ("cells", RunInfo, [CellRecord]),
#: ("end", RunInfo, status, end_time, Run | None)
Item = tuple[Any, ...]


class LineageListener:
    """``Store.add_listener`` target: store events become items for the emitter's queue."""

    def __init__(self, store: Store, submit: Callable[[Item], None]) -> None:
        self._store = store
        self._submit = submit
        loc = store.location
        self._project_dir = loc.store_dir.parent if loc.store_dir is not None else None

    def __call__(self, event: str, payload: dict[str, Any]) -> None:
        info: RunInfo | None
        if event == "run_started":
            run = payload["run"]
            info = self._remember(run)
            self._submit(("start", info, run))
        elif event == "cells_recorded":
            info = self._info(payload["run_id"])
            if info is not None and payload["records"]:
                self._submit(("cells", info, list(payload["records"])))
        elif event == "run_ended":
            run_id = payload["run_id"]
            info = self._info(run_id)
            if info is None or not RUNS.first_end(run_id):
                return
            final = self._read(run_id)  # params and metrics as the run ended
            self._submit(("end", info, payload["status"], payload["end_time"], final))

    def _read(self, run_id: str) -> Run | None:
        try:
            return self._store.get_run(run_id)
        except Exception:  # noqa: BLE001 - a run we cannot read is a run we cannot describe
            log.debug("openlineage: could not read run %s", run_id, exc_info=True)
            return None

    def _remember(self, run: Run) -> RunInfo:
        parent = None
        if run.parent_run_id:
            parent = RUNS.get(run.parent_run_id)
            if parent is None:
                prun = self._read(run.parent_run_id)
                if prun is not None:
                    parent = run_info(prun, None, self._project_dir)
                    RUNS.put(parent)
        info = run_info(run, parent, self._project_dir)
        RUNS.put(info)
        return info

    def _info(self, run_id: str) -> RunInfo | None:
        info = RUNS.get(run_id)
        if info is None:
            run = self._read(run_id)
            if run is not None:
                info = self._remember(run)
        return info
