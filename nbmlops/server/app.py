"""The Jupyter Server extension application: settings as traitlets, the route table, cleanup."""

from __future__ import annotations

import asyncio
import os
from concurrent.futures import ThreadPoolExecutor

from jupyter_server.extension.application import ExtensionApp
from traitlets import Bool, Int, Unicode, default

from .handlers import route_table
from .schedules import ScheduleService
from .service import StoreService

__all__ = ["NbmlopsServerApp"]


class NbmlopsServerApp(ExtensionApp):
    """Serves the nbmlops REST API (``/nbmlops/api/``) that the lab panel reads."""

    name = "nbmlops"
    load_other_extensions = True

    store_url = Unicode(
        None,
        allow_none=True,
        config=True,
        help="SQLAlchemy URL of the store. Default: NBMLOPS_STORE_URL, else the nearest "
        ".nbmlops/ found from the notebook's (or the server root's) directory, like a kernel.",
    )
    artifact_url = Unicode(
        None, allow_none=True, config=True,
        help="Artifact directory of the store. Default: NBMLOPS_ARTIFACT_URL, else beside the store.",
    )
    workers = Int(4, config=True, help="Threads that run store queries off the event loop.")
    check_files = Bool(
        True, config=True,
        help="Mark a cell stale when a file it read changed on disk (files under the root only).",
    )
    max_pipeline_runs = Int(
        4, config=True,
        help="Pipeline runs started from JupyterLab that may run at once (more: HTTP 429); "
        "the same bound applies, separately, to schedules fired from JupyterLab (Fire now).",
    )
    lock_wait_ms = Int(
        1000, config=True,
        help="How long a query waits while another process locks a SQLite store before the "
        "panel is told the store is locked (kernels keep their own, longer wait).",
    )

    @default("store_url")
    def _default_store_url(self) -> str | None:
        return os.environ.get("NBMLOPS_STORE_URL") or None

    @default("artifact_url")
    def _default_artifact_url(self) -> str | None:
        return os.environ.get("NBMLOPS_ARTIFACT_URL") or None

    def initialize_settings(self) -> None:
        assert self.serverapp is not None
        self.service = StoreService(
            self.serverapp.root_dir,
            store_url=self.store_url,
            artifact_url=self.artifact_url,
            check_files=self.check_files,
            max_pipeline_runs=self.max_pipeline_runs,
            lock_wait_ms=self.lock_wait_ms,
        )
        # shows and edits schedules, fires one on request; never runs the scheduler loop
        self.schedules = ScheduleService(self.service, max_fires=self.max_pipeline_runs)
        self.executor = ThreadPoolExecutor(max_workers=max(1, self.workers),
                                           thread_name_prefix="nbmlops-api")
        self.log.info("nbmlops: REST API at /nbmlops/api/ (store found from %s)",
                      self.store_url and "the configured URL" or self.serverapp.root_dir)

    def initialize_handlers(self) -> None:
        self.handlers.extend(route_table(self.service, self.executor, self.schedules))

    async def stop_extension(self) -> None:
        executor = getattr(self, "executor", None)
        if executor is not None:
            executor.shutdown(wait=False, cancel_futures=True)
        service = getattr(self, "service", None)
        schedules = getattr(self, "schedules", None)
        if service is not None:
            # pipeline runs and manual fires this server started are cancelled (and recorded
            # so), not orphaned; then the stores close
            stops = [asyncio.to_thread(service.launcher.shutdown)]
            if schedules is not None:
                stops.append(asyncio.to_thread(schedules.shutdown))
            await asyncio.gather(*stops)
            service.close()
