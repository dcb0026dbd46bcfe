"""The server's read service: which store to use, opening it safely, answering API questions.

Handlers call these methods in a worker thread (never on the event loop). The service resolves
the store the way a kernel in the same place would (``NBMLOPS_STORE_URL``, else the nearest
``.nbmlops/`` walking up from the notebook's or the root's directory), opens each store once,
and never caches a failure: a missing or locked store is reported and tried again on the next
request, so the panel recovers by itself when the store appears.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .._version import __version__
from ..config import StoreLocation, resolve_location
from ..errors import (
    InvalidArgumentError,
    NbmlopsError,
    NotFoundError,
    StoreError,
    StoreUnavailableError,
    StoreVersionError,
)
from ..fingerprint import FileFingerprintCache
from ..store import Run, Store
from ..store.entities import Validation
from . import views
from .errmap import ConflictError, StoreMissingError, error_code
from .launcher import PipelineLauncher, tail_lines
from .paths import relative_to_root, resolve_in_root
from .pipelines import (
    DEFINITION_SUFFIXES,
    Definition,
    DefinitionCache,
    latest_parent_runs,
    relative_message,
    scan_definitions,
    step_statuses,
)
from .stale import stale_markers

log = logging.getLogger(__name__)

__all__ = ["RunQuery", "StoreService"]


#: How long a read waits for another process's migration of a new store (seconds).
CREATION_WAIT_S = 15.0


@dataclass(frozen=True)
class RunQuery:
    """Filters, sort and page of a run listing (already validated by the handler)."""

    notebook: str | None = None
    experiment: str | None = None
    status: str | None = None
    source: str | None = None
    search: str | None = None
    sort: str = "start_time"
    descending: bool = True
    limit: int = 50
    offset: int = 0


class StoreService:
    """Opens stores on demand and answers the REST API's questions with JSON-ready dicts."""

    def __init__(
        self,
        root_dir: str | os.PathLike[str],
        *,
        store_url: str | None = None,
        artifact_url: str | None = None,
        check_files: bool = True,
        max_pipeline_runs: int = 4,
        lock_wait_ms: int | None = 1000,
    ) -> None:
        self.root = Path(os.path.realpath(root_dir))
        #: lock wait of the stores this service opens (a locked store is reported fast)
        self.lock_wait_ms = lock_wait_ms
        #: The root as configured (kernels' notebook paths may keep its symlinks).
        self.root_as_given = Path(os.path.abspath(root_dir))
        self.store_url = store_url or None
        self.artifact_url = artifact_url or None
        self.check_files = check_files
        self._stores: dict[str, Store] = {}
        self._lock = threading.Lock()
        self._fingerprints = FileFingerprintCache(maxsize=1024)
        self.definitions = DefinitionCache()
        self.launcher = PipelineLauncher(store_url=self.store_url, artifact_url=self.artifact_url,
                                         max_running=max_pipeline_runs)
        #: failed step run id -> its failing cell (a failed run does not change any more)
        self._step_errors: OrderedDict[str, dict[str, Any] | None] = OrderedDict()

    # -- stores ---------------------------------------------------------------------------------

    def location(self, path: str | None = None) -> StoreLocation:
        """The store a kernel running ``path`` (a notebook or directory under the root) would use."""
        start = self.root
        if path:
            p = resolve_in_root(self.root, path)
            start = p if p.is_dir() else p.parent
            if not start.is_dir():  # a notebook not saved yet: its directory may not exist either
                start = self.root
        return resolve_location(self.store_url, self.artifact_url, start)

    def store(self, path: str | None = None) -> Store:
        """The open store for ``path``; opened now if needed. Raises when missing or unusable."""
        loc = self.location(path)
        key = f"{loc.url}|{loc.artifact_root}"
        db = loc.sqlite_path
        with self._lock:
            store = self._stores.get(key)
            if store is not None and db is not None and not db.exists():
                # the store was deleted under us: forget it, report it missing
                self._stores.pop(key, None)
                store.close()
                store = None
            if store is not None:
                return store
        if db is not None and not db.exists():
            raise StoreMissingError(self._missing_message(loc))
        # never upgraded from here: the server does not write the store; an older schema is
        # reported (store_version) until a kernel or `nbmlops init` upgrades it
        opened = self._open(loc)
        with self._lock:
            store = self._stores.setdefault(key, opened)
        if store is not opened:
            opened.close()
        log.info("nbmlops: opened store %s", loc.describe())
        return store

    def _open(self, loc: StoreLocation) -> Store:
        """Open ``loc`` without upgrading; a store another process is creating is waited for.

        A new SQLite file has no tables until its creator's migration commits (ensure_schema
        waits for a migration holding the lock; the creator may not have taken it yet). Such a
        store is never kept: it would answer "no such table" and report revision "empty"."""
        start = time.monotonic()
        deadline = start + (self.lock_wait_ms or 0) / 1000.0
        while True:
            try:
                # raises StoreUnavailableError/StoreVersionError/StoreCorruptError
                opened = Store(loc, upgrade=False, lock_wait_ms=self.lock_wait_ms)
            except StoreUnavailableError as exc:
                # a file of at most its header page, locked: its creator is migrating it (a
                # loaded machine may take seconds); any other lock is reported after lock_wait
                db = loc.sqlite_path
                creating = db is not None and db.exists() and db.stat().st_size <= 4096
                if not (creating and "locked" in str(exc)
                        and time.monotonic() < start + CREATION_WAIT_S):
                    raise
                time.sleep(0.05)
                continue
            if opened.schema_revision != "empty":
                return opened
            opened.close()
            if time.monotonic() >= deadline:
                raise StoreUnavailableError(
                    f"the store {self.display_path(loc.describe())} is being created; "
                    "this panel picks it up by itself")
            time.sleep(0.05)

    def _missing_message(self, loc: StoreLocation) -> str:
        where = self.display_path(str(loc.store_dir or loc.describe()))
        return (
            f"No nbmlops store yet at {where}. Run `%load_ext nbmlops` in a notebook (or "
            "`nbmlops init` in the project directory); this panel picks it up by itself."
        )

    def display_path(self, path: str) -> str:
        rel = relative_to_root(self.root, path)
        return path if rel is None else (rel or ".")

    def root_path(self, path: str | None) -> str | None:
        return relative_to_root(self.root, path)

    def close(self) -> None:
        with self._lock:
            stores = list(self._stores.values())
            self._stores.clear()
        for s in stores:
            s.close()

    # -- API questions --------------------------------------------------------------------------

    def status(self, path: str | None = None) -> dict[str, Any]:
        loc = self.location(path)
        out: dict[str, Any] = {
            "ok": False,
            "code": None,
            "message": None,
            "version": __version__,
            "api_version": views.API_VERSION,
            "store": {
                "location": self.display_path(loc.describe()) if loc.sqlite_path else loc.describe(),
                "backend": loc.url.split(":", 1)[0].split("+", 1)[0],
                "revision": None,
            },
        }
        try:
            store = self.store(path)
            store.experiments()  # one cheap read: the store answers
        except StoreMissingError as exc:
            out.update(code="store_missing", message=str(exc))
        except StoreUnavailableError as exc:
            out.update(code="store_unavailable", message=str(exc))
        except Exception as exc:  # noqa: BLE001 - status reports every failure as text
            out.update(code=error_code(exc), message=str(exc))
        else:
            out["ok"] = True
            out["store"]["revision"] = store.schema_revision
        return out

    def runs(self, query: RunQuery, path: str | None = None) -> dict[str, Any]:
        # a notebook filter matches a stored path exactly or by its trailing path components
        page = self.store(path).list_runs(
            notebook=query.notebook,
            experiment=query.experiment,
            status=query.status,
            source=query.source,
            search=query.search,
            order_by=query.sort,
            descending=query.descending,
            limit=query.limit,
            offset=query.offset,
        )
        return {
            "runs": [views.run_summary(r, self.root_path) for r in page.runs],
            "total": page.total,
            "limit": page.limit,
            "offset": page.offset,
        }

    def run(self, run_id: str, path: str | None = None) -> dict[str, Any]:
        return views.run_detail(self.store(path).get_run(run_id), self.root_path)

    def cells(
        self, run_id: str, since_seq: int | None = None, path: str | None = None
    ) -> dict[str, Any]:
        store = self.store(path)
        rid = store.resolve_run_id(run_id)
        return self._cells(store, rid, since_seq)

    def _cells(self, store: Store, rid: str, since_seq: int | None) -> dict[str, Any]:
        new = store.cell_executions(rid, since_seq=since_seq)
        if since_seq is not None and not new:
            # nothing new: earlier markers can only change through a file on disk
            return {"run_id": rid, "cells": [], "last_seq": since_seq, "marks": None}
        everything = new if since_seq is None else store.cell_executions(rid)
        marks = stale_markers(everything, self._disk_check if self.check_files else None)
        # validations travel with their cell (recorded while it ran, before its cell record)
        checked: dict[int, list[Validation]] = {}
        if new:
            first = new[0].seq
            for v in store.validations.for_run(rid):
                if v.cell_seq is not None and v.cell_seq >= first:
                    checked.setdefault(v.cell_seq, []).append(v)
        return {
            "run_id": rid,
            "cells": [views.cell_view(c, self.root_path, marks.get(c.seq), checked.get(c.seq, ()))
                      for c in new],
            "last_seq": max((c.seq for c in everything),
                            default=since_seq if since_seq is not None else -1),
            "marks": {
                str(seq): {"stale": [dict(r, path=self.root_path(r.get("uri"))) for r in m["stale"]],
                           "superseded_by": m["superseded_by"]}
                for seq, m in marks.items()
            },
        }

    def _disk_check(self, uri: str) -> tuple[str | None, str | None] | None:
        """The fingerprint a recorded file has now (``None`` if gone); skip files outside the root."""
        rel = relative_to_root(self.root, uri)
        if rel is None:
            return None
        try:
            real = resolve_in_root(self.root, rel)
        except Exception:  # noqa: BLE001 - a symlink out of the root: not ours to look at
            return None
        got = self._fingerprints.fingerprint(real)
        return (got[0] if got else None), rel

    def notebook_run(
        self,
        notebook: str,
        *,
        run_id: str | None = None,
        since_seq: int | None = None,
    ) -> dict[str, Any]:
        """The latest run of a notebook, with its cells (only the new ones when the run is known)."""
        real = resolve_in_root(self.root, notebook)
        store = self.store(notebook)
        rel = real.relative_to(self.root)
        latest = store.latest_run([str(real), str(self.root_as_given / rel)])
        if latest is None:
            return {"notebook": notebook, "run": None, "cells": [], "last_seq": -1,
                    "marks": {}, "new_run": run_id is not None}
        same = run_id is not None and run_id == latest.id
        cells = self._cells(store, latest.id, since_seq if same else None)
        return {
            "notebook": notebook,
            "run": views.run_summary(latest, self.root_path),
            "cells": cells["cells"],
            "last_seq": cells["last_seq"],
            "marks": cells["marks"],
            "new_run": not same,
        }

    def lineage(
        self,
        target: str,
        *,
        direction: str = "upstream",
        depth: int = 50,
        run_id: str | None = None,
        include_code: bool = False,
        path: str | None = None,
    ) -> dict[str, Any]:
        store = self.store(path)
        kind, _, rest = target.partition(":")
        if kind in ("artifact", "cell") and rest.isdigit():
            resolved = target
        elif run_id is not None and target.isidentifier() and not (self.root / target).exists():
            resolved = target  # a variable of that run
        else:
            resolved = str(resolve_in_root(self.root, target))
        graph = store.lineage(resolved, run_id=run_id, direction=direction, max_depth=depth,
                              include_code=include_code)
        return views.lineage_view(graph, self.root_path)

    def compare(self, run_ids: Sequence[str], path: str | None = None) -> dict[str, Any]:
        if len(run_ids) < 2:
            raise InvalidArgumentError("compare needs at least two run ids (ids=A,B)")
        return views.comparison_view(self.store(path).compare(list(run_ids)), self.root_path)

    # -- pipelines ------------------------------------------------------------------------------

    #: pipeline runs (parents and steps) read at once to find each definition's latest run
    RECENT_PIPELINE_RUNS = 500

    def pipelines(self) -> dict[str, Any]:
        """Pipeline definitions under the root with their latest run (see ``docs/server-api.md``)."""
        scan = scan_definitions(self.root)
        files: dict[Path, None] = dict.fromkeys(scan.files)
        store_message: str | None = None
        recent: dict[str, dict[str, Run]] = {}  # store key -> definition path -> latest run
        complete: dict[str, bool] = {}  # store key -> every pipeline run was read
        stores: dict[str, Store | None] = {}

        def store_for(rel: str | None) -> tuple[str, Store | None]:
            nonlocal store_message
            loc = self.location(rel)
            key = f"{loc.url}|{loc.artifact_root}"
            if key not in stores:
                try:
                    store: Store | None = self.store(rel)
                except StoreMissingError:
                    store = None
                except NbmlopsError as exc:
                    store, store_message = None, store_message or str(exc)
                stores[key] = store
                if store is not None:
                    try:
                        page = store.list_runs(source="pipeline", limit=self.RECENT_PIPELINE_RUNS)
                    except NbmlopsError as exc:
                        store_message = store_message or str(exc)
                        stores[key] = None
                    else:
                        recent[key] = latest_parent_runs(page.runs)
                        complete[key] = page.total <= len(page.runs)
            return key, stores[key]

        # tagged notebooks (and definitions the scan did not reach) known from recorded runs
        root_key, _ = store_for(None)
        for tagged in recent.get(root_key, {}):
            real = self._definition_in_root(tagged)
            if real is not None:
                files.setdefault(real, None)
        out = []
        for real in sorted(files, key=lambda p: p.relative_to(self.root).as_posix()):
            rel = real.relative_to(self.root).as_posix()
            key, store = store_for(rel)
            latest = recent.get(key, {}).get(str(real))
            if latest is None and store is not None and not complete.get(key, True):
                latest = self._latest_pipeline_run(store, real)
            definition, error = self._definition(real)
            name = definition.pipeline.name if definition is not None else _fallback_name(real)
            kind = "notebook" if real.suffix.lower() == ".ipynb" else "yaml"
            out.append(views.pipeline_view(rel, kind, self.root_path, name=name,
                                           definition=definition, error=error, latest=latest))
        return {"pipelines": out, "truncated": scan.truncated, "store_message": store_message}

    def _definition_in_root(self, recorded: str) -> Path | None:
        """A recorded definition path when it is a definition file inside the root, else None."""
        rel = relative_to_root(self.root, recorded)
        if not rel or not rel.lower().endswith(DEFINITION_SUFFIXES):
            return None
        try:
            real = resolve_in_root(self.root, rel)
        except NbmlopsError:
            return None
        return real if real.is_file() else None

    def _latest_pipeline_run(self, store: Store, real: Path) -> Run | None:
        found = store.list_runs(notebook=str(real), source="pipeline", limit=50).runs
        return latest_parent_runs(found).get(str(real))

    def _definition(self, real: Path) -> tuple[Definition | None, str | None]:
        try:
            return self.definitions.load(real), None
        except InvalidArgumentError as exc:
            return None, relative_message(str(exc), self.root)

    def start_pipeline(self, path: str, params: Mapping[str, str]) -> dict[str, Any]:
        """Check the definition and the params, then start ``nbmlops pipeline run``."""
        from ..pipeline.runner import resolve_step_params

        real = resolve_in_root(self.root, path)
        rel = real.relative_to(self.root).as_posix()
        if not real.exists():
            raise NotFoundError(f"no such file {rel!r}")
        if not real.is_file() or real.suffix.lower() not in DEFINITION_SUFFIXES:
            raise InvalidArgumentError(
                f"{rel!r} is not a pipeline definition (a .yaml/.yml file or a tagged .ipynb)")
        try:
            definition = self.definitions.load(real)
            resolve_step_params(definition.pipeline, dict(params))
        except InvalidArgumentError as exc:  # PipelineError, ParameterError: 400 with the message
            raise type(exc)(relative_message(str(exc), self.root)) from exc
        run_id = uuid.uuid4().hex
        launch = self.launcher.start(real, rel, definition.pipeline.name, run_id, params,
                                     self.location(rel).runs_dir)
        return {"run_id": launch.run_id, "status": "starting", "pipeline": launch.pipeline,
                "path": rel, "log": self.root_path(str(launch.log_path))}

    def cancel_pipeline_run(self, run_id: str) -> dict[str, Any]:
        launch = self.launcher.get(run_id)
        if launch is None:
            # not ours: say whether it is over already (409) or running elsewhere (404)
            try:
                store = self.store(None)
                run = store.get_run(store.resolve_run_id(run_id))
            except NbmlopsError:
                run = None
            if run is not None and run.status != "running":
                raise ConflictError(f"pipeline run {run.id} has finished already ({run.status})")
        launch = self.launcher.cancel(run_id)
        return {"run_id": launch.run_id, "status": "cancelling"}

    def pipeline_run(self, run_id: str, path: str | None = None) -> dict[str, Any]:
        """A pipeline run and the state of each of its steps."""
        launch = self.launcher.get(run_id)
        store_path = launch.path if launch is not None else path
        store: Store | None = None
        parent: Run | None = None
        children: list[Run] = []
        try:
            store = self.store(store_path)
            parent = store.get_run(store.resolve_run_id(run_id))
            if parent.parent_run_id is None and "nbmlops.pipeline" in parent.tags:
                children = store.list_runs(parent_run_id=parent.id, descending=False,
                                           limit=10_000).runs
        except (StoreMissingError, NotFoundError):  # the launched run has not created it yet
            if launch is None:
                raise
        except StoreError as exc:
            # a run launched from here may be creating or migrating its store right now (a
            # fresh store is locked, then empty, for a moment): it is starting, not an error
            if launch is None or not launch.running or isinstance(exc, StoreVersionError):
                raise
            log.debug("store of launched run %s not readable yet: %s", run_id, exc)
            store = None
        if parent is not None and (parent.parent_run_id is not None
                                   or "nbmlops.pipeline" not in parent.tags):
            raise NotFoundError(f"run {parent.id} is not a pipeline run")
        definition_error: str | None = None
        definition: Definition | None = None
        real = launch.definition if launch is not None else (
            self._definition_in_root(parent.tags.get("nbmlops.pipeline_path", ""))
            if parent is not None else None)
        if real is not None:
            definition, definition_error = self._definition(real)
        elif parent is not None:
            definition_error = ("the definition is not (or no longer) a file under the Jupyter root: "
                                "the steps are those its runs recorded")
        if parent is None:
            assert launch is not None
            status = ("starting" if launch.running
                      else "cancelled" if launch.cancel_requested else "failed")
        else:
            status = parent.status
            if status == "running" and launch is not None and not launch.running:
                status = "abandoned"  # the process is gone without ending the run
        name = (parent.tags.get("nbmlops.pipeline") or parent.name if parent is not None
                else launch.pipeline if launch is not None else None)
        steps = step_statuses(definition, None if status == "starting" else status, name,
                              children, lambda rid: self._step_error(store, rid))
        tail = None
        if launch is not None and not launch.running and launch.exit_code != 0:
            tail = tail_lines(launch.log_path)
        pipeline_path = (launch.path if launch is not None
                         else self.root_path(parent.tags.get("nbmlops.pipeline_path"))
                         if parent is not None else None)
        return {
            "run_id": parent.id if parent is not None else run_id,
            "pipeline": name,
            "path": pipeline_path,
            "status": status,
            "done": status not in ("starting", "running"),
            "run": views.run_summary(parent, self.root_path) if parent is not None else None,
            "steps": [views.pipeline_step_status(s, self.root_path) for s in steps],
            "definition_error": definition_error,
            "launcher": views.launcher_view(launch, self.root_path, tail),
        }

    def _step_error(self, store: Store | None, run_id: str) -> dict[str, Any] | None:
        if store is None:
            return None
        if run_id in self._step_errors:
            return self._step_errors[run_id]
        failed = [c for c in store.cell_executions(run_id) if c.status != "ok"]
        if not failed:
            return None  # not cached: its last cell may still be on its way to the store
        error = views.step_error(failed[-1])
        with self._lock:
            self._step_errors[run_id] = error
            while len(self._step_errors) > 512:
                self._step_errors.popitem(last=False)
        return error


def _fallback_name(path: Path) -> str:
    """A name for a definition that does not load: ``x`` of ``x.pipeline.yaml``, the directory of
    a ``pipeline.yaml``, a notebook's stem."""
    low = path.name.lower()
    for suffix in (".pipeline.yaml", ".pipeline.yml"):
        if low.endswith(suffix):
            return path.name[: -len(suffix)]
    if low in ("pipeline.yaml", "pipeline.yml"):
        return path.parent.name or "pipeline"
    return path.stem
