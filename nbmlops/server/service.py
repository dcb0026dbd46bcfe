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
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .._version import __version__
from ..config import StoreLocation, resolve_location
from ..errors import InvalidArgumentError, StoreUnavailableError
from ..fingerprint import FileFingerprintCache
from ..store import Run, Store
from . import views
from .errmap import StoreMissingError, error_code
from .paths import relative_to_root, resolve_in_root
from .stale import stale_markers

log = logging.getLogger(__name__)

__all__ = ["RunQuery", "StoreService"]


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
    ) -> None:
        self.root = Path(os.path.realpath(root_dir))
        #: The root as configured (kernels' notebook paths may keep its symlinks).
        self.root_as_given = Path(os.path.abspath(root_dir))
        self.store_url = store_url or None
        self.artifact_url = artifact_url or None
        self.check_files = check_files
        self._stores: dict[str, Store] = {}
        self._lock = threading.Lock()
        self._fingerprints = FileFingerprintCache(maxsize=1024)

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
        opened = Store(loc)  # raises StoreUnavailableError/StoreVersionError/StoreCorruptError
        with self._lock:
            store = self._stores.setdefault(key, opened)
        if store is not opened:
            opened.close()
        log.info("nbmlops: opened store %s", loc.describe())
        return store

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
        return {
            "run_id": rid,
            "cells": [views.cell_view(c, self.root_path, marks.get(c.seq)) for c in new],
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
        found: list[Run] = []
        for candidate in dict.fromkeys([str(real), str(self.root_as_given / rel)]):
            found.extend(store.list_runs(notebook=candidate, limit=1).runs)
        if not found:
            return {"notebook": notebook, "run": None, "cells": [], "last_seq": -1,
                    "marks": {}, "new_run": run_id is not None}
        latest = max(found, key=lambda r: (r.start_time, r.id))
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
