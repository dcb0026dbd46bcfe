"""The ASGI service behind ``nbmlops serve``: a Starlette app run by uvicorn.

Routes (``docs/serving.md``): ``POST /v1/models/NAME/predict[?proba=1]``, ``GET /health``,
``GET /v1/models/NAME``, ``GET /metrics``. The event loop parses and checks requests and never
touches the store or the disk: predictions run on the micro-batching thread
(:mod:`.batcher`), alias polls and model loads on a thread of their own (:mod:`.models`), the
prediction log and the heartbeat on theirs. Every error answer is JSON ``{"error", "problems"}``;
an unexpected error is logged with its traceback and answered 500 without it.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import math
import os
import re
import time
import uuid
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ..config import StoreLocation
from .batcher import Answer, Job, MicroBatcher, PredictionFailed
from .heartbeat import INTERVAL, heartbeat_path, remove_heartbeat, write_heartbeat
from .inputs import BadRequest, check_columns, parse_json, to_columns
from .metrics import Metrics
from .models import ArmState, Follower, Loaded
from .options import ServeOptions

log = logging.getLogger(__name__)

__all__ = ["Service", "create_app", "app_from_env", "OPTIONS_ENV"]

#: the environment variable that hands the options to ``--workers N`` processes
OPTIONS_ENV = "NBMLOPS_SERVE_OPTIONS"
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
_TRUE = {"1", "true", "yes", "on"}


def _json(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    try:
        body = json.dumps(data, allow_nan=False, separators=(",", ":"))
    except ValueError:  # a NaN/inf prediction: strict JSON has no such number
        body = json.dumps(_finite(data), separators=(",", ":"))
    return Response(body, status_code=status, media_type="application/json", headers=headers)


def _finite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, list):
        return [_finite(v) for v in value]
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    return value


def _bucket(request_id: str, total: int) -> int:
    digest = hashlib.blake2b(request_id.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") % total


class Service:
    """One process's serving state: arms, batchers, follower, prediction log, heartbeat."""

    def __init__(self, options: ServeOptions, preloaded: dict[int, Loaded] | None = None) -> None:
        self.options = options
        self.name = options.model
        preloaded = preloaded or {}
        self.arms = [ArmState(a, preloaded.get(i)) for i, a in enumerate(options.arms)]
        self.primaries = [s for s in self.arms if s.arm.role == "primary"]
        self.shadow = next((s for s in self.arms if s.arm.role == "shadow"), None)
        self.total_weight = sum(s.arm.weight for s in self.primaries)
        self.metrics = Metrics()
        self.directory = Path(options.predictions_dir or ".") / self.name
        self.writer: Any = None
        if options.log:
            from ..monitoring.predlog import PredictionLogWriter

            self.writer = PredictionLogWriter(self.directory)
        self.batcher = MicroBatcher("primary", max_rows=options.max_batch_rows,
                                    on_done=self._after, on_batch=self._log_batch)
        self.shadow_batcher = (MicroBatcher("shadow", max_rows=options.max_batch_rows,
                                            max_pending=50_000, on_done=self._after,
                                            on_batch=self._log_batch)
                               if self.shadow is not None else None)
        self.follower = Follower(self.name, self.arms, self._open_store)
        self.follower.on_swap = self._swapped
        self.pool = ThreadPoolExecutor(1, thread_name_prefix="nbmlops-follow")
        self.started_at = time.time()
        self.requests = 0
        self.errors = 0
        self.log_sample = max(0.0, min(1.0, options.log_sample))
        self._tasks: list[asyncio.Task[None]] = []
        self._heartbeat = heartbeat_path(self.directory)
        self._one_arm_reported = False
        self._set_version_gauges()

    # -- store and following ------------------------------------------------------------------

    def _open_store(self) -> Any:
        from ..store import Store

        o = self.options
        loc = StoreLocation(url=o.store_url or "", artifact_root=_artifact_root(o.artifact_root),
                            store_dir=Path(o.store_dir) if o.store_dir else None)
        return Store(loc, upgrade=False, lock_wait_ms=1000)

    def _swapped(self, state: ArmState, old: Loaded | None, new: Loaded) -> None:
        if old is not None:
            self.metrics.swaps.labels(self.name, state.alias).inc()
        self._set_version_gauges()
        self._report_single_version()

    def _set_version_gauges(self) -> None:
        for s in self.arms:
            if s.current is not None:
                self.metrics.version.labels(self.name, s.alias, s.arm.role).set(s.current.number)

    def _report_single_version(self) -> None:
        """Log once when every arm serves the same version (a promote ended the experiment)."""
        if len(self.arms) < 2:
            return
        numbers = {s.current.number for s in self.arms if s.current is not None}
        one = len(numbers) == 1 and all(s.current is not None for s in self.arms)
        if one and not self._one_arm_reported:
            first = self.primaries[0]
            others = ", ".join(f"@{s.alias}" for s in self.arms[1:] if s is not first)
            log.info("%s@%s and %s point at the same version v%d: answering every request as "
                     "@%s, scoring it once", self.name, first.alias, others, numbers.pop(),
                     first.alias)
        self._one_arm_reported = one

    # -- routing ------------------------------------------------------------------------------

    def route(self, request_id: str) -> ArmState | None:
        prim = self.primaries
        first = prim[0]
        if len(prim) == 1:
            return first if first.current is not None else None
        ready = [s for s in prim if s.current is not None]
        if not ready:
            return None
        if len({s.current.number for s in ready if s.current}) == 1:
            return ready[0]  # one version behind every alias: serve one, log it once
        b = _bucket(request_id, self.total_weight)
        for s in prim:
            if b < s.arm.weight:
                return s if s.current is not None else ready[0]
            b -= s.arm.weight
        return ready[0]

    # -- after a prediction (batch thread) ----------------------------------------------------

    def _after(self, job: Job, answer: Answer | None) -> None:
        if answer is None:
            return
        self.metrics.rows.labels(self.name, job.alias, str(job.loaded.number), job.role).inc(job.rows)

    def _log_batch(self, jobs: list[Job], answers: list[Answer]) -> None:
        """One prediction-log entry per predicted batch (after every request was answered)."""
        if self.writer is None:
            return
        logged = [(j, a) for j, a in zip(jobs, answers, strict=True) if j.log]
        if not logged:
            return
        if len(logged) == 1:
            job, answer = logged[0]
            ok = self.writer.append(
                request_id=job.request_id, ts=job.ts, model=self.name, version=job.loaded.number,
                alias=job.alias, role=job.role, latency_ms=job.latency_ms, inputs=job.cols,
                predictions=answer.predictions, proba=answer.proba)
        else:
            def each(value: Any) -> list[Any]:
                return [value(j) for j, _ in logged for _r in range(j.rows)]

            with_proba = any(a.proba is not None for _, a in logged)
            names = list(logged[0][0].cols)
            ok = self.writer.append_rows(
                request_ids=each(lambda j: j.request_id),
                rows=[r for j, _ in logged for r in range(j.rows)],
                ts=each(lambda j: j.ts), model=self.name, version=logged[0][0].loaded.number,
                aliases=each(lambda j: j.alias), roles=each(lambda j: j.role),
                latency_ms=each(lambda j: j.latency_ms),
                inputs={n: [v for j, _ in logged for v in j.cols.get(n, [None] * j.rows)]
                        for n in names},
                predictions=[p for _, a in logged for p in a.predictions],
                proba=(_proba_rows(logged) if with_proba else None))
        if not ok:
            self.metrics.log_dropped.labels(self.name).inc(sum(j.rows for j, _ in logged))

    # -- lifecycle ----------------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def lifespan(self, app: Starlette) -> AsyncIterator[None]:
        self.batcher.start()
        if self.shadow_batcher is not None:
            self.shadow_batcher.start()
        if self.writer is not None:
            self.writer.start()
        self._tasks = [asyncio.create_task(self._follow_loop()),
                       asyncio.create_task(self._heartbeat_loop())]
        self._report_single_version()
        try:
            yield
        finally:
            for t in self._tasks:
                t.cancel()
            for t in self._tasks:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await t
            self.batcher.stop()
            if self.shadow_batcher is not None:
                self.shadow_batcher.stop()
            if self.writer is not None:
                await asyncio.get_running_loop().run_in_executor(None, self.writer.close)
            remove_heartbeat(self._heartbeat)
            self.pool.shutdown(wait=False)
            self.follower.close()

    async def _follow_loop(self) -> None:
        loop = asyncio.get_running_loop()
        preloaded = all(s.current is not None for s in self.arms)
        if preloaded:
            await asyncio.sleep(self.options.poll)
        while True:
            try:
                await loop.run_in_executor(self.pool, self.follower.poll)
            except Exception:  # noqa: BLE001 - the loop must outlive any poll
                log.exception("alias poll failed")
            await asyncio.sleep(self.options.poll)

    def heartbeat(self) -> dict[str, Any]:
        o = self.options
        w = self.writer
        return {
            "model": self.name, "pid": os.getpid(), "host": __import__("socket").gethostname(),
            "port": o.port, "url": f"http://{o.host}:{o.port}", "started_at": self.started_at,
            "updated_at": time.time(), "routes": [s.route() for s in self.arms],
            "requests": self.requests, "errors": self.errors,
            "log": {"written": w.written if w else 0, "dropped": w.dropped if w else 0,
                    "pending": w.pending if w else 0},
        }

    async def _heartbeat_loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            try:
                await loop.run_in_executor(None, write_heartbeat, self._heartbeat, self.heartbeat())
            except Exception as exc:  # noqa: BLE001 - a full disk must not stop the service
                log.warning("heartbeat not written: %s", exc)
            await asyncio.sleep(INTERVAL)

    # -- handlers -----------------------------------------------------------------------------

    def _wrong_model(self, name: str) -> Response:
        return _json({"error": f"no model {name!r} here: this service serves {self.name!r}",
                      "problems": []}, 404)

    async def predict(self, request: Request) -> Response:
        t0 = time.perf_counter()
        ts = time.time()
        rid = request.headers.get("x-request-id")
        if rid is None:
            rid = uuid.uuid4().hex
        headers = {"X-Request-ID": rid if _REQUEST_ID.match(rid) else ""}
        name = request.path_params["name"]
        alias, version = "", ""
        try:
            if name != self.name:
                return self._wrong_model(name)
            if not _REQUEST_ID.match(rid):
                raise BadRequest(400, "X-Request-ID must be 1 to 128 letters, digits or . _ : -")
            media = request.headers.get("content-type", "").split(";")[0].strip().lower()
            if media != "application/json" and not media.endswith("+json"):
                raise BadRequest(415, f"send JSON with Content-Type: application/json (got "
                                 f"{media or 'no content type'!r})")
            body = await self._read_body(request)
            cols, rows = to_columns(parse_json(body), self.options.max_rows)
            state = self.route(rid)
            loaded = state.current if state is not None else None
            if state is None or loaded is None:
                raise BadRequest(503, f"no version of {self.name!r} is loaded yet")
            alias, version = state.alias, str(loaded.number)
            if not loaded.specs:
                raise BadRequest(422, f"{loaded.version.uri} has no input column names in its "
                                 "signature, so JSON columns cannot be matched to its features")
            checked = check_columns(cols, loaded.specs)
            want_proba = request.query_params.get("proba", "").lower() in _TRUE
            if want_proba and not loaded.has_proba:
                raise BadRequest(422, f"{loaded.version.uri} has no predict_proba",
                                 ["ask without ?proba=1"])
            sample = self.log_sample >= 1.0 or (self.log_sample > 0 and
                                               (uuid.uuid4().int % 10_000) < self.log_sample * 10_000)
            job = Job(loaded=loaded, cols=checked, rows=rows, proba=want_proba, request_id=rid,
                      ts=ts, t0=t0, alias=state.alias, role="primary", log=sample)
            answer = await self.batcher.submit(job)
        except BadRequest as exc:
            self._count(exc.status, alias, version, t0, kind=f"http_{exc.status}")
            return _json(exc.body(), exc.status, headers)
        except PredictionFailed:
            self._count(500, alias, version, t0, kind="predict_failed")
            return _json({"error": f"the model failed to predict (request {rid}); the service "
                          "log has the details", "problems": []}, 500, headers)
        out: dict[str, Any] = {"model": self.name, "version": answer.loaded.number,
                               "alias": state.alias, "request_id": rid,
                               "predictions": answer.predictions}
        if want_proba:
            out["probabilities"] = answer.proba
            out["classes"] = answer.loaded.classes
        self._shadow(job, answer)
        self._count(200, alias, version, t0)
        return _json(out, 200, headers)

    def _shadow(self, job: Job, answer: Answer) -> None:
        sh = self.shadow
        if sh is None or self.shadow_batcher is None:
            return
        cur = sh.current
        if cur is None or cur.number == answer.loaded.number:
            return  # the same version as the answer: scored once
        try:
            cols = job.cols if cur.specs == job.loaded.specs else check_columns(job.cols, cur.specs)
        except BadRequest:
            self.metrics.errors.labels(self.name, "shadow_input").inc()
            return
        self.shadow_batcher.offer(Job(
            loaded=cur, cols=cols, rows=job.rows, proba=False, request_id=job.request_id,
            ts=job.ts, t0=time.perf_counter(), alias=sh.alias, role="shadow", log=job.log))

    def _count(self, status: int, alias: str, version: str, t0: float, kind: str | None = None
               ) -> None:
        self.requests += 1
        m = self.metrics
        m.requests.labels(self.name, alias, version, str(status)).inc()
        m.latency.labels(self.name, alias).observe(time.perf_counter() - t0)
        if kind is not None:
            self.errors += 1
            m.errors.labels(self.name, kind).inc()

    async def _read_body(self, request: Request) -> bytes:
        """The body, read as it streams in: refused (413) as soon as it passes the bound, so a
        50 MB upload is never held in memory."""
        limit = self.options.max_body
        declared = request.headers.get("content-length")
        if declared is not None:
            if not declared.isdigit():
                raise BadRequest(400, f"bad Content-Length {declared!r}")
            if int(declared) > limit:
                raise BadRequest(413, f"the body is too large: {int(declared)} bytes (at most "
                                 f"{limit})", [f"send at most {self.options.max_rows} rows and "
                                               f"{limit} bytes per request"])
        chunks: list[bytes] = []
        size = 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise BadRequest(413, f"the body is too large: more than {limit} bytes",
                                 [f"send at most {self.options.max_rows} rows and {limit} bytes "
                                  "per request"])
            chunks.append(chunk)
        return b"".join(chunks)

    async def health(self, request: Request) -> Response:
        ready = all(s.current is not None for s in self.primaries)
        body: dict[str, Any] = {"status": "ok" if ready else "unavailable", "model": self.name,
                "routes": [s.route() for s in self.arms]}
        problems = [f"{self.name}{s.arm.label}: {s.problem}" for s in self.arms if s.problem]
        if problems:
            body["problems"] = problems
        return _json(body, 200 if ready else 503)

    async def info(self, request: Request) -> Response:
        name = request.path_params["name"]
        if name != self.name:
            return self._wrong_model(name)
        routes = []
        for s in self.arms:
            r = s.route()
            cur = s.current
            if cur is not None:
                v = cur.version
                r.update(uri=v.uri, digest=v.digest, model_class=v.model_class,
                         run_id=v.run_id, loaded_at=cur.loaded_at)
            if s.problem:
                r["problem"] = s.problem
            routes.append(r)
        main = self.primaries[0]
        cur = main.current
        body: dict[str, Any] = {
            "model": self.name, "alias": main.alias, "version": cur.number if cur else None,
            "signature": cur.version.signature if cur else None,
            "run_id": cur.version.run_id if cur else None,
            "classes": cur.classes if cur else None, "routes": routes,
            "log": ({"directory": str(self.directory), "sample": self.log_sample,
                     "written": self.writer.written, "dropped": self.writer.dropped,
                     "pending": self.writer.pending} if self.writer is not None else None),
            "started_at": self.started_at, "requests": self.requests, "errors": self.errors,
            "batches": {"count": self.batcher.batches, "requests": self.batcher.batched_jobs,
                        "busy_s": round(self.batcher.busy_s, 3)},
        }
        return _json(body)

    async def metrics_route(self, request: Request) -> Response:
        data, ctype = self.metrics.render()
        return Response(data, media_type=ctype.split(";")[0],
                        headers={"Content-Type": ctype})


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    return _json({"error": exc.detail, "problems": []}, exc.status_code)


async def _server_error(request: Request, exc: Exception) -> Response:
    log.error("unexpected error on %s %s", request.method, request.url.path, exc_info=exc)
    return _json({"error": "internal error; the service log has the details", "problems": []}, 500)


def create_app(options: ServeOptions, preloaded: dict[int, Loaded] | None = None) -> Starlette:
    """The Starlette app serving ``options`` (``preloaded``: arm index -> a version already
    loaded by the CLI, so a single process does not load it twice)."""
    service = Service(options, preloaded)
    routes = [
        Route("/v1/models/{name}/predict", service.predict, methods=["POST"]),
        Route("/v1/models/{name}", service.info, methods=["GET"]),
        Route("/health", service.health, methods=["GET"]),
        Route("/metrics", service.metrics_route, methods=["GET"]),
    ]
    app = Starlette(routes=routes, lifespan=service.lifespan,
                    exception_handlers={HTTPException: _http_error, Exception: _server_error})
    app.state.service = service
    return app


def app_from_env() -> Starlette:
    """The app of one ``--workers N`` process (uvicorn factory): options from the environment."""
    from .options import ServeOptions

    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("nbmlops.serving").setLevel(logging.INFO)
    return create_app(ServeOptions.from_json(os.environ[OPTIONS_ENV]))


def _proba_rows(logged: list[tuple[Job, Answer]]) -> list[list[float] | None]:
    """Probability rows of a logged batch; None for the rows of requests that asked none."""
    out: list[list[float] | None] = []
    for job, answer in logged:
        out.extend(answer.proba if answer.proba is not None else [None] * job.rows)
    return out


def _artifact_root(root: str | None) -> Path | str:
    """A local artifact directory, or an object-store URL kept as text (docs/storage.md)."""
    return root if root and "://" in root and not root.startswith("file://") else Path(root or ".")
