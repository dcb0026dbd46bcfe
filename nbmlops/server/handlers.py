"""Tornado handlers of the REST API under ``/nbmlops/api/``: parse, delegate, answer JSON.

Each handler parses its query (and a POST its JSON body) on the event loop (cheap, strict) and
hands the service a closure that runs in the extension's thread pool, so store and file access
never blocks the server. Errors are mapped to statuses once, in :meth:`NbmlopsHandler.fail`.
POST handlers take Jupyter's XSRF token like every Jupyter POST (tornado checks it before the
handler runs; token-authenticated scripts are exempt, as everywhere in Jupyter Server).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from concurrent.futures import Executor
from typing import Any

import tornado.web
from jupyter_server.auth.decorator import authorized
from jupyter_server.base.handlers import APIHandler
from tornado.ioloop import IOLoop

from .._format import json_safe
from ..errors import NbmlopsError, NotFoundError
from ..store.entities import RUN_SOURCES, RUN_STATUSES
from .errmap import error_code, http_status
from .models import ModelService, alias_arg, model_name, reason_arg, version_arg
from .monitoring import MAX_MINUTES, MonitoringService
from .params import QueryArgs, json_body, param_values, run_id_arg
from .schedules import MAX_HISTORY, ScheduleService, schedule_name, user_name
from .service import RunQuery, StoreService

log = logging.getLogger(__name__)

__all__ = ["AUTH_RESOURCE", "API_PREFIX", "route_table"]

#: The resource name authorizers see for every nbmlops endpoint.
AUTH_RESOURCE = "nbmlops"
API_PREFIX = "nbmlops/api"
#: Columns a run listing sorts on (the store's sort keys).
SORT_KEYS = ("start_time", "end_time", "name", "status", "notebook")
MAX_PAGE = 500
MAX_COMPARE = 20
Work = Callable[[], Any]


class NbmlopsHandler(APIHandler):
    """Base of every nbmlops handler: authenticated, authorized, JSON in and out."""

    auth_resource = AUTH_RESOURCE
    allowed_args: tuple[str, ...] = ()

    def initialize(  # type: ignore[override]
        self, service: StoreService, executor: Executor, schedules: ScheduleService | None = None,
        models: ModelService | None = None, monitoring: MonitoringService | None = None,
    ) -> None:
        self.service = service
        self.executor = executor
        self._schedules = schedules
        self._models = models
        self._monitoring = monitoring

    @property
    def schedules(self) -> ScheduleService:
        assert self._schedules is not None, "route without the schedule service"
        return self._schedules

    @property
    def models(self) -> ModelService:
        assert self._models is not None, "route without the model service"
        return self._models

    @property
    def monitoring(self) -> MonitoringService:
        assert self._monitoring is not None, "route without the monitoring service"
        return self._monitoring

    def args(self) -> QueryArgs:
        return QueryArgs(self.request.query_arguments, self.allowed_args)

    def plan(self, *path_args: str) -> Work:
        """Parse the request and return the work to run in the pool (override)."""
        raise NotFoundError("no such nbmlops endpoint")

    @tornado.web.authenticated
    @authorized
    async def get(self, *path_args: str) -> None:
        await self.answer(path_args)

    async def answer(self, path_args: tuple[str, ...], status: int = 200) -> None:
        """Plan on the event loop, work in the pool, answer JSON (errors mapped by ``fail``)."""
        started = time.perf_counter()
        try:
            work = self.plan(*path_args)
            result = await IOLoop.current().run_in_executor(self.executor, work)
        except Exception as exc:  # noqa: BLE001 - every failure becomes a JSON answer
            self.fail(exc)
            return
        elapsed_ms = (time.perf_counter() - started) * 1000.0
        self.set_header("Server-Timing", f"nbmlops;dur={elapsed_ms:.2f}")
        self.write_json(result, status)

    def write_json(self, value: Any, status: int = 200) -> None:
        self.set_status(status)
        self.set_header("Content-Type", "application/json; charset=UTF-8")
        self.set_header("Cache-Control", "no-store")
        self.finish(json.dumps(json_safe(value), ensure_ascii=False, allow_nan=False,
                               separators=(",", ":"), default=str))

    def fail(self, exc: BaseException) -> None:
        status, code = http_status(exc), error_code(exc)
        if isinstance(exc, NbmlopsError):
            message = str(exc)
            if status >= 500:
                log.warning("nbmlops API %s: %s", self.request.path, message)
        else:
            log.exception("nbmlops API %s failed", self.request.path)
            message = f"internal error in the nbmlops server extension ({type(exc).__name__}); see the server log"
        self.write_json({"message": message, "code": code, "status": status}, status)


class StatusHandler(NbmlopsHandler):
    allowed_args = ("path",)

    def plan(self) -> Work:  # type: ignore[override]
        path = self.args().text("path")
        return lambda: self.service.status(path)


class RunsHandler(NbmlopsHandler):
    allowed_args = ("path", "notebook", "experiment", "status", "source", "search", "sort",
                    "order", "limit", "offset")

    def plan(self) -> Work:  # type: ignore[override]
        a = self.args()
        query = RunQuery(
            notebook=a.text("notebook"),
            experiment=a.text("experiment"),
            status=a.choice("status", RUN_STATUSES),
            source=a.choice("source", RUN_SOURCES),
            search=a.text("search"),
            sort=a.choice("sort", SORT_KEYS, "start_time") or "start_time",
            descending=a.choice("order", ("asc", "desc"), "desc") == "desc",
            limit=a.integer("limit", 50, 1, MAX_PAGE) or 50,
            offset=a.integer("offset", 0, 0, 10**9) or 0,
        )
        path = a.text("path")
        return lambda: self.service.runs(query, path)


class RunHandler(NbmlopsHandler):
    allowed_args = ("path",)

    def plan(self, run_id: str) -> Work:  # type: ignore[override]
        path = self.args().text("path")
        return lambda: self.service.run(run_id, path)


class CellsHandler(NbmlopsHandler):
    allowed_args = ("path", "since_seq")

    def plan(self, run_id: str) -> Work:  # type: ignore[override]
        a = self.args()
        since = a.integer("since_seq", None, -1, 2**62)
        path = a.text("path")
        return lambda: self.service.cells(run_id, since, path)


class NotebookRunHandler(NbmlopsHandler):
    allowed_args = ("path", "run_id", "since_seq")

    def plan(self) -> Work:  # type: ignore[override]
        a = self.args()
        path = a.text("path")
        if not path:
            raise_bad("path is required: the notebook's path relative to the server root")
        run_id = a.text("run_id")
        since = a.integer("since_seq", None, -1, 2**62)
        assert path is not None
        return lambda: self.service.notebook_run(path, run_id=run_id, since_seq=since)


class LineageHandler(NbmlopsHandler):
    allowed_args = ("path", "target", "direction", "depth", "run_id", "include_code")

    def plan(self) -> Work:  # type: ignore[override]
        a = self.args()
        target = a.text("target")
        if not target:
            raise_bad("target is required: a file path relative to the server root, "
                      "artifact:ID or cell:ID")
        assert target is not None
        direction = a.choice("direction", ("upstream", "downstream", "both"), "upstream")
        depth = a.integer("depth", 50, 1, 200)
        run_id = a.text("run_id")
        include_code = a.flag("include_code")
        path = a.text("path")
        return lambda: self.service.lineage(
            target, direction=direction or "upstream", depth=depth or 50, run_id=run_id,
            include_code=include_code, path=path,
        )


class CompareHandler(NbmlopsHandler):
    allowed_args = ("path", "ids")

    def plan(self) -> Work:  # type: ignore[override]
        a = self.args()
        ids = a.id_list("ids", most=MAX_COMPARE)
        path = a.text("path")
        return lambda: self.service.compare(ids, path)


class PipelinesHandler(NbmlopsHandler):
    def plan(self) -> Work:  # type: ignore[override]
        self.args()  # no parameters: refuse unknown ones
        return self.service.pipelines


class PipelineRunHandler(NbmlopsHandler):
    allowed_args = ("path",)

    def plan(self, run_id: str) -> Work:  # type: ignore[override]
        rid = run_id_arg(run_id)
        path = self.args().text("path")
        return lambda: self.service.pipeline_run(rid, path)


class NbmlopsActionHandler(NbmlopsHandler):
    """A POST endpoint (an action): JSON body in, ``202 Accepted`` (or ``done_status``) and JSON
    out."""

    SUPPORTED_METHODS = ("POST",)  # type: ignore[assignment]
    #: 202: the action goes on after the answer; 200: it is done
    done_status = 202

    @tornado.web.authenticated
    @authorized
    async def post(self, *path_args: str) -> None:
        await self.answer(path_args, self.done_status)

    def body(self, allowed: tuple[str, ...], required: tuple[str, ...] = ()) -> dict[str, Any]:
        return json_body(self.request.body, allowed, required)


class StartPipelineHandler(NbmlopsActionHandler):
    def plan(self) -> Work:  # type: ignore[override]
        self.args()
        body = self.body(("path", "params"), ("path",))
        path = body["path"]
        if not isinstance(path, str):
            raise_bad("path must be a string: the definition's path relative to the server root")
        params = param_values(body.get("params"))
        return lambda: self.service.start_pipeline(path, params)


class CancelPipelineRunHandler(NbmlopsActionHandler):
    def plan(self, run_id: str) -> Work:  # type: ignore[override]
        self.args()
        self.body(())
        rid = run_id_arg(run_id)
        return lambda: self.service.cancel_pipeline_run(rid)


class SchedulesHandler(NbmlopsHandler):
    def plan(self) -> Work:  # type: ignore[override]
        self.args()  # no parameters: refuse unknown ones
        return self.schedules.schedules


class ScheduleHistoryHandler(NbmlopsHandler):
    allowed_args = ("limit",)

    def plan(self, name: str) -> Work:  # type: ignore[override]
        limit = self.args().integer("limit", 50, 1, MAX_HISTORY) or 50
        checked = schedule_name(name)
        return lambda: self.schedules.history(checked, limit)


class FireScheduleHandler(NbmlopsActionHandler):
    """Start a run of the schedule now (code execution, like ``pipelines/run``)."""

    def plan(self, name: str) -> Work:  # type: ignore[override]
        self.args()
        self.body(())
        checked = schedule_name(name)
        by = user_name(self.current_user)
        return lambda: self.schedules.fire(checked, by)


class PauseScheduleHandler(NbmlopsActionHandler):
    """``pause`` or ``resume``: done when answered (200), the schedule as it is now."""

    done_status = 200

    def plan(self, name: str, action: str) -> Work:  # type: ignore[override]
        self.args()
        self.body(())
        checked = schedule_name(name)
        if action == "pause":
            return lambda: self.schedules.pause(checked)
        return lambda: self.schedules.resume(checked)


class ModelsHandler(NbmlopsHandler):
    def plan(self) -> Work:  # type: ignore[override]
        self.args()  # no parameters: refuse unknown ones
        return self.models.models


class ModelHandler(NbmlopsHandler):
    def plan(self, name: str) -> Work:  # type: ignore[override]
        self.args()
        checked = model_name(name)
        return lambda: self.models.model(checked)


class PromoteModelHandler(NbmlopsActionHandler):
    """Point an alias (default ``champion``) at a version: done when answered (200)."""

    done_status = 200

    def plan(self, name: str) -> Work:  # type: ignore[override]
        self.args()
        checked = model_name(name)
        body = self.body(("version", "alias", "reason"), ("version",))
        version = version_arg(body["version"])
        alias = alias_arg(body.get("alias"))
        reason = reason_arg(body.get("reason"))
        by = user_name(self.current_user)  # the audit log names the Jupyter user
        return lambda: self.models.promote(checked, version, alias, reason, by)


class RollbackModelHandler(NbmlopsActionHandler):
    """Move an alias back to the version it pointed at before: done when answered (200)."""

    done_status = 200

    def plan(self, name: str) -> Work:  # type: ignore[override]
        self.args()
        checked = model_name(name)
        body = self.body(("alias", "reason"))
        alias = alias_arg(body.get("alias"))
        reason = reason_arg(body.get("reason"))
        by = user_name(self.current_user)
        return lambda: self.models.rollback(checked, alias, reason, by)


class MonitoringHandler(NbmlopsHandler):
    """Served models: service heartbeats and models with a prediction log."""

    def plan(self) -> Work:  # type: ignore[override]
        self.args()  # no parameters: refuse unknown ones
        return self.monitoring.served


class MonitoringModelHandler(NbmlopsHandler):
    """One served model: request rate, drift per feature over time, drift-trigger fires."""

    allowed_args = ("minutes",)

    def plan(self, name: str) -> Work:  # type: ignore[override]
        minutes = self.args().integer("minutes", 60, 1, MAX_MINUTES) or 60
        checked = model_name(name)
        return lambda: self.monitoring.model(checked, minutes)


class NotFoundHandler(NbmlopsHandler):
    """Any other path under the API prefix: a JSON 404 (still authenticated)."""

    def plan(self, rest: str = "") -> Work:  # type: ignore[override]
        raise NotFoundError(f"no nbmlops endpoint {rest!r}; see docs/server-api.md")


def raise_bad(message: str) -> None:
    from ..errors import InvalidArgumentError

    raise InvalidArgumentError(message)


def route_table(
    service: StoreService, executor: Executor, schedules: ScheduleService,
    models: ModelService | None = None, monitoring: MonitoringService | None = None,
) -> list[tuple[str, type, dict[str, Any]]]:
    """URL patterns (without the base URL) and their handlers."""
    kw: dict[str, Any] = {"service": service, "executor": executor, "schedules": schedules,
                          "models": models if models is not None else ModelService(service),
                          "monitoring": (monitoring if monitoring is not None
                                         else MonitoringService(service))}
    run_id = r"([^/]+)"
    name = r"([^/]+)"  # checked by the handler: a bad name is a 400, not a 404
    return [
        (rf"/{API_PREFIX}/status", StatusHandler, kw),
        (rf"/{API_PREFIX}/runs", RunsHandler, kw),
        (rf"/{API_PREFIX}/runs/{run_id}", RunHandler, kw),
        (rf"/{API_PREFIX}/runs/{run_id}/cells", CellsHandler, kw),
        (rf"/{API_PREFIX}/notebook-run", NotebookRunHandler, kw),
        (rf"/{API_PREFIX}/lineage", LineageHandler, kw),
        (rf"/{API_PREFIX}/compare", CompareHandler, kw),
        (rf"/{API_PREFIX}/pipelines", PipelinesHandler, kw),
        (rf"/{API_PREFIX}/pipelines/run", StartPipelineHandler, kw),
        (rf"/{API_PREFIX}/pipeline-runs/{run_id}", PipelineRunHandler, kw),
        (rf"/{API_PREFIX}/pipeline-runs/{run_id}/cancel", CancelPipelineRunHandler, kw),
        (rf"/{API_PREFIX}/schedules", SchedulesHandler, kw),
        (rf"/{API_PREFIX}/schedules/{name}/history", ScheduleHistoryHandler, kw),
        (rf"/{API_PREFIX}/schedules/{name}/fire", FireScheduleHandler, kw),
        (rf"/{API_PREFIX}/schedules/{name}/(pause|resume)", PauseScheduleHandler, kw),
        (rf"/{API_PREFIX}/models", ModelsHandler, kw),
        (rf"/{API_PREFIX}/models/{name}", ModelHandler, kw),
        (rf"/{API_PREFIX}/models/{name}/promote", PromoteModelHandler, kw),
        (rf"/{API_PREFIX}/models/{name}/rollback", RollbackModelHandler, kw),
        (rf"/{API_PREFIX}/monitoring", MonitoringHandler, kw),
        (rf"/{API_PREFIX}/monitoring/{name}", MonitoringModelHandler, kw),
        (rf"/{API_PREFIX}/(.*)", NotFoundHandler, kw),
    ]
