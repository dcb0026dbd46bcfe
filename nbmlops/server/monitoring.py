"""Served models as the panel's Monitoring tab sees them: which models are served (service
heartbeats) or have logged traffic (a prediction log), their request rate over time, their
drift per feature over time (recorded monitor results) and the drift triggers that fired.

Read-only. Every source is on disk or in the store the server itself uses (like models and
schedules): heartbeats are ``predictions_dir/NAME/_services/*.json`` (written every 2 s by
``nbmlops serve``; one not rewritten for :data:`ALIVE_SECONDS` is a stopped service), the
prediction log is read through :func:`nbmlops.monitoring.predlog.read_predictions` with only the
few columns a rate needs, monitor results come from ``store.monitoring`` and trigger fires from
``store.schedules``. Everything is bounded (minutes, points, series, services, results, features,
fires) and runs in the extension's thread pool, never on the event loop.
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import NbmlopsError, NotFoundError
from ..registry import service as registry

if TYPE_CHECKING:
    import pandas as pd

    from ..store import Store
    from ..store.entities import Schedule
    from .service import StoreService

log = logging.getLogger(__name__)

__all__ = [
    "ALIVE_SECONDS", "MAX_MINUTES", "MAX_POINTS", "MonitoringService", "read_services",
    "route_view", "service_view",
]

#: A heartbeat older than this (seconds) is a stopped service (issue 13 contract, section 1).
ALIVE_SECONDS = 10.0
#: Longest window of the request-rate series (minutes) and most points per series.
MAX_MINUTES = 1440
MAX_POINTS = 240
#: Most models listed, heartbeats read per model, series, results, features, fires, triggers.
MAX_MODELS = 100
MAX_SERVICES = 20
MAX_SERIES = 12
MAX_RESULTS = 100
MAX_FEATURES = 40
MAX_FIRES = 50
MAX_TRIGGERS = 20
#: A heartbeat file larger than this is not a heartbeat (bytes).
MAX_HEARTBEAT_BYTES = 256 * 1024
#: Columns of the prediction log a rate needs (``row`` 0 marks each request once).
RATE_COLUMNS = ("ts", "alias", "version", "role", "row")
SERVICES_DIR = "_services"
Clock = Callable[[], float]


# -- small checks (heartbeats are files anyone may write: every field is checked) ----------------


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _num(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    number = float(value)
    return number if math.isfinite(number) else None


def _str(value: Any, most: int = 500) -> str | None:
    return value[:most] if isinstance(value, str) else None


# -- heartbeats ----------------------------------------------------------------------------------


def route_view(route: Any) -> dict[str, Any] | None:
    if not isinstance(route, Mapping):
        return None
    return {
        "alias": _str(route.get("alias"), 100) or "",
        "version": _int(route.get("version")),
        "role": _str(route.get("role"), 20) or "primary",
        "weight": _num(route.get("weight")),
    }


def service_view(beat: Mapping[str, Any], now: float) -> dict[str, Any]:
    """One heartbeat as the API shows it; ``alive`` when rewritten in the last 10 s."""
    updated = _num(beat.get("updated_at"))
    routes = beat.get("routes")
    logged = beat.get("log")
    return {
        "host": _str(beat.get("host"), 255),
        "pid": _int(beat.get("pid")),
        "port": _int(beat.get("port")),
        "url": _str(beat.get("url"), 1000),
        "started_at": _num(beat.get("started_at")),
        "updated_at": updated,
        "alive": updated is not None and now - updated <= ALIVE_SECONDS,
        "routes": [r for r in (route_view(x) for x in (routes if isinstance(routes, list)
                                                        else [])[:50]) if r is not None],
        "requests": _int(beat.get("requests")) or 0,
        "errors": _int(beat.get("errors")) or 0,
        "log": ({k: _int(logged.get(k)) for k in ("written", "dropped", "pending")}
                if isinstance(logged, Mapping) else None),
    }


def read_services(model_dir: Path, now: float) -> list[dict[str, Any]]:
    """The heartbeats of one model (newest first, at most :data:`MAX_SERVICES`); files that are
    not heartbeats (unreadable, too big, not a JSON object) are skipped."""
    folder = model_dir / SERVICES_DIR
    try:
        entries = [e for e in os.scandir(folder) if e.name.endswith(".json") and e.is_file()]
    except OSError:
        return []
    stamped: list[tuple[float, os.DirEntry[str]]] = []
    for e in entries:
        try:
            st = e.stat()
        except OSError:
            continue  # deleted meanwhile: a clean shutdown
        if st.st_size <= MAX_HEARTBEAT_BYTES:
            stamped.append((st.st_mtime, e))
    stamped.sort(key=lambda p: (-p[0], p[1].name))
    out = []
    for _, e in stamped[:MAX_SERVICES]:
        try:
            beat = json.loads(Path(e.path).read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            log.debug("nbmlops: skipping heartbeat %s: %s", e.path, exc)
            continue
        if isinstance(beat, Mapping):
            out.append(service_view(beat, now))
    out.sort(key=lambda s: (not s["alive"], -(s["updated_at"] or 0.0)))
    return out


# -- the prediction log --------------------------------------------------------------------------


def _has_log(model_dir: Path) -> bool:
    try:
        return any(e.name.startswith("part-") and e.name.endswith(".parquet")
                   for e in os.scandir(model_dir))
    except OSError:
        return False


def _read_log(model_dir: Path, **kw: Any) -> pd.DataFrame | None:
    """``read_predictions`` with only the columns asked for; None when nothing is logged."""
    if not _has_log(model_dir):
        return None
    from ..monitoring.predlog import read_predictions

    try:
        return read_predictions(model_dir, **kw)
    except NotFoundError:
        return None


def _is_request(frame: pd.DataFrame) -> Any:
    """Rows that start a request (``row`` 0), or every row when the column is missing."""
    if "row" in frame.columns:
        return frame["row"].fillna(0).to_numpy() == 0
    import numpy as np

    return np.ones(len(frame), dtype=bool)


# -- JSON shapes of monitor results and triggers -------------------------------------------------


def result_summary(r: Any) -> dict[str, Any]:
    """A recorded monitor result's headline (``MonitorSummary`` in docs/server-api.md)."""
    return {
        "id": r.id,
        "created_at": r.created_at,
        "alias": r.alias,
        "version": r.version,
        "source": r.source,
        "window": r.window,
        "rows": r.rows,
        "score": _num(r.score),
        "drifted": bool(r.drifted),
        "threshold": _num(r.threshold),
    }


def result_view(r: Any) -> dict[str, Any]:
    """A recorded monitor result with its PSI per feature (``DriftResult``)."""
    report = r.report if isinstance(r.report, Mapping) else {}
    features: dict[str, float | None] = {}
    drifted: list[str] = []
    raw = report.get("features")
    for f in raw if isinstance(raw, list) else []:
        if isinstance(f, Mapping) and isinstance(f.get("name"), str):
            features[f["name"]] = _num(f.get("psi"))
            if f.get("drifted") is True:
                drifted.append(f["name"])
    prediction = report.get("prediction")
    out = result_summary(r)
    out.update({
        "features": features,
        "drifted_features": drifted,
        "prediction_psi": _num(prediction.get("psi")) if isinstance(prediction, Mapping) else None,
    })
    return out


def trigger_view(sched: Schedule, root_path: Callable[[str | None], str | None]) -> dict[str, Any]:
    from .schedules import fire_view

    state = sched.state if isinstance(sched.state, Mapping) else {}
    raw = state.get("config")
    config: Mapping[str, Any] = raw if isinstance(raw, Mapping) else {}
    episode = state.get("episode")
    return {
        "name": sched.name,
        "watch": sched.watch,
        "target": sched.target,
        "target_path": root_path(sched.target),
        "paused": sched.paused,
        "threshold": _num(config.get("threshold")),
        "window": config.get("window") if isinstance(config.get("window"), str | int) else None,
        "min_rows": _int(config.get("min_rows")),
        "episode": dict(episode) if isinstance(episode, Mapping) else None,
        "last_fire": fire_view(sched.last_fire) if sched.last_fire is not None else None,
    }


def watches(watch: str | None, name: str) -> bool:
    """Whether a drift trigger's ``watch`` (``NAME@ALIAS``, or ``NAME/VERSION``, ``NAME``) is
    about model ``name``."""
    return watch is not None and (watch == name or watch.startswith((f"{name}@", f"{name}/")))


# -- the service ---------------------------------------------------------------------------------


class MonitoringService:
    """Answers the ``monitoring`` endpoints (called in the server's thread pool)."""

    def __init__(self, stores: StoreService, clock: Clock = time.time) -> None:
        self.stores = stores
        self.clock = clock

    def _store(self) -> Store:
        return self.stores.store(None)

    def _predictions_dir(self) -> Path:
        return self.stores.location(None).predictions_dir

    def served(self) -> dict[str, Any]:
        """Every model with a prediction log or a service heartbeat, by name."""
        store = self._store()  # 503 store_missing before anything else, like the other views
        base = self._predictions_dir()
        now = self.clock()
        names: list[str] = []
        try:
            entries = sorted(os.scandir(base), key=lambda e: e.name)
        except OSError:
            entries = []
        for e in entries:
            if not e.is_dir():
                continue
            try:
                registry.check_name(e.name)
            except NbmlopsError:
                continue  # not a model's directory (names cannot start with '_' or '.')
            names.append(e.name)
        models = []
        for name in names:
            model = self._summary(store, base / name, name, now)
            if model is not None:
                models.append(model)
            if len(models) >= MAX_MODELS:
                break
        return {"models": models, "predictions_dir": self.stores.root_path(str(base)),
                "now": now}

    def _summary(self, store: Store, model_dir: Path, name: str,
                 now: float) -> dict[str, Any] | None:
        services = read_services(model_dir, now)
        logged = _has_log(model_dir)
        if not services and not logged:
            return None
        hour = _read_log(model_dir, since=now - 3600.0, role="primary", columns=["ts", "row"])
        if hour is not None and len(hour):
            hour = hour[hour["ts"] >= now - 3600.0]
        last: float | None = None
        rows_hour = requests_hour = 0
        if hour is not None and len(hour):
            rows_hour = len(hour)
            requests_hour = int(_is_request(hour).sum())
            last = float(hour["ts"].max())
        elif logged:
            newest = _read_log(model_dir, last_rows=1, role=None, columns=["ts"])
            if newest is not None and len(newest):
                last = float(newest["ts"].max())
        latest = store.monitoring.list(model=name, limit=1, with_report=False)
        return {
            "name": name,
            "alive": any(s["alive"] for s in services),
            "services": services,
            "requests": sum(s["requests"] for s in services),
            "errors": sum(s["errors"] for s in services),
            "logged": logged,
            "last_request_at": last,
            "rows_last_hour": rows_hour,
            "requests_last_hour": requests_hour,
            "monitor": result_summary(latest[0]) if latest else None,
        }

    def model(self, name: str, minutes: int = 60) -> dict[str, Any]:
        """One model's request rate, drift over time and drift-trigger fires."""
        store = self._store()
        model_dir = self._predictions_dir() / name
        if not model_dir.is_dir():
            registry.get_model(store, name)  # NotFoundError with close names: 404
        now = self.clock()
        minutes = max(1, min(MAX_MINUTES, minutes))
        bucket = 60 * max(1, math.ceil(minutes / MAX_POINTS))
        count = math.ceil(minutes * 60 / bucket)
        until = (math.floor(now / bucket) + 1) * bucket  # end of the current bucket
        since = until - count * bucket
        series, total_rows = self._series(model_dir, since, until, bucket, count)
        drift = self._drift(store, name)
        triggers, fires = self._fires(store, name)
        return {
            "name": name,
            "minutes": minutes,
            "since": since,
            "until": until,
            "now": now,
            "bucket_seconds": bucket,
            "services": read_services(model_dir, now),
            "rows": total_rows,
            "series": series,
            "drift": drift,
            "triggers": triggers,
            "fires": fires,
        }

    def _series(self, model_dir: Path, since: float, until: float, bucket: int,
                count: int) -> tuple[list[dict[str, Any]], int]:
        import numpy as np

        frame = _read_log(model_dir, since=since, role=None, columns=list(RATE_COLUMNS))
        if frame is None or not len(frame):
            return [], 0
        ts = frame["ts"].to_numpy(dtype="float64")
        keep = (ts >= since) & (ts < until)
        frame = frame[keep]
        if not len(frame):
            return [], 0
        slot = ((frame["ts"].to_numpy(dtype="float64") - since) // bucket).astype("int64")
        starts = _is_request(frame)
        alias = frame["alias"].fillna("").astype(str).to_numpy()
        version = frame["version"].fillna(-1).astype("int64").to_numpy()
        role = (frame["role"].fillna("primary").astype(str).to_numpy() if "role" in frame.columns
                else np.full(len(frame), "primary"))
        keys = sorted({(str(a), int(v), str(r)) for a, v, r in zip(alias, version, role,
                                                                    strict=True)})
        out: list[dict[str, Any]] = []
        for a, v, r in keys:
            mask = (alias == a) & (version == v) & (role == r)
            rows = np.bincount(slot[mask], minlength=count)[:count]
            reqs = np.bincount(slot[mask & starts], minlength=count)[:count]
            per_minute = 60.0 / bucket
            out.append({
                "alias": a,
                "version": v if v >= 0 else None,
                "role": r,
                "requests": int(reqs.sum()),
                "rows": int(rows.sum()),
                "points": [{"t": since + i * bucket, "requests": int(reqs[i]), "rows": int(rows[i]),
                            "rate": round(float(reqs[i]) * per_minute, 3)} for i in range(count)],
            })
        out.sort(key=lambda s: (s["role"] != "primary", -s["requests"], s["alias"], s["version"] or 0))
        return out[:MAX_SERIES], len(frame)

    def _drift(self, store: Store, name: str) -> dict[str, Any]:
        found = store.monitoring.list(model=name, limit=MAX_RESULTS + 1)
        truncated = len(found) > MAX_RESULTS
        results = [result_view(r) for r in found[:MAX_RESULTS]]
        results.sort(key=lambda r: (r["created_at"], r["id"]))  # oldest first, for a chart
        worst: dict[str, float] = {}
        for r in results:
            for feature, psi in r["features"].items():
                worst[feature] = max(worst.get(feature, 0.0), psi or 0.0)
        features = sorted(worst, key=lambda f: (-worst[f], f))[:MAX_FEATURES]
        shown = set(features)
        for r in results:
            r["features"] = {f: p for f, p in r["features"].items() if f in shown}
        return {"features": features, "results": results, "truncated": truncated,
                "features_truncated": len(worst) > len(features)}

    def _fires(self, store: Store, name: str) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        from .schedules import fire_view

        triggers = [s for s in store.schedules.schedules(kinds=["drift"])
                    if watches(s.watch, name)][:MAX_TRIGGERS]
        fires: list[dict[str, Any]] = []
        for t in triggers:
            fires.extend(fire_view(f) for f in store.schedules.history(t.name, limit=MAX_FIRES))
        fires.sort(key=lambda f: (-float(f["created_at"] or 0.0), -int(f["id"])))
        return [trigger_view(t, self.stores.root_path) for t in triggers], fires[:MAX_FIRES]

