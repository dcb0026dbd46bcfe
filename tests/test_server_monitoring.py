"""The Monitoring endpoints through a real Jupyter server (pytest-jupyter, loaded like
tests/test_server_api.py does) over a real SQLite store: a prediction log written with the real
writer (:class:`nbmlops.monitoring.predlog.PredictionLogWriter`), service heartbeats written the
way ``nbmlops serve`` writes them (issue 13 contract, section 1), monitor results recorded through
``store.monitoring`` and a drift trigger with fires recorded through ``store.schedules``.
"""

from __future__ import annotations

import inspect
import json
import os
import shutil
import time
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("jupyter_server")
pytest.importorskip("pytest_jupyter")
pytest.importorskip("pyarrow")
pytest.importorskip("sklearn")

# pytest-jupyter's fixtures for this module only (see tests/test_server_api.py)
from pytest_jupyter.jupyter_server import *  # noqa: E402, F403
from tornado.httpclient import HTTPClientError  # noqa: E402

from nbmlops.store import Store  # noqa: E402

from ._server import jp_server_config  # noqa: E402, F401  (overrides pytest-jupyter's)
from .test_server_api import _doc_fields, _run_on_loop, _ts_fields, get, get_error  # noqa: E402

pytestmark = [pytest.mark.timeout(120)]
XSS = "<img src=x onerror=alert(1)>"
#: requests logged for wine@champion v1 in the last hour: (seconds ago, rows)
CHAMPION = [(30 + 70 * i, 1 + i % 3) for i in range(40)]
#: requests logged 2 h ago (outside a 60-minute window, inside 1440)
OLD = [(7200 + 10 * i, 2) for i in range(5)]
#: shadow scoring by challenger v2 of the newest 10 requests
SHADOW = CHAMPION[:10]


def store_of(root: Path) -> Store:
    d = root / ".nbmlops"
    return Store.open(f"sqlite:///{d / 'nbmlops.db'}", d / "artifacts")


def write_log(directory: Path, now: float) -> None:
    from nbmlops.monitoring.predlog import PredictionLogWriter

    writer = PredictionLogWriter(directory, flush_rows=10_000, flush_seconds=60.0)
    writer.start()
    n = 0
    for ago, rows in CHAMPION + OLD:
        n += 1
        ok = writer.append(request_id=f"r{n}", ts=now - ago, model="wine", version=1,
                           alias="champion", role="primary", latency_ms=1.5,
                           inputs={"alcohol": [13.0] * rows, XSS: [1.0] * rows},
                           predictions=["1"] * rows, proba=None)
        assert ok
    for i, (ago, rows) in enumerate(SHADOW):
        assert writer.append(request_id=f"r{i + 1}", ts=now - ago, model="wine", version=2,
                             alias="challenger", role="shadow", latency_ms=2.0,
                             inputs={"alcohol": [13.0] * rows, XSS: [1.0] * rows},
                             predictions=["2"] * rows, proba=None)
    writer.close()
    assert writer.written == sum(r for _, r in CHAMPION + OLD + SHADOW) and writer.dropped == 0


def heartbeat(directory: Path, *, pid: int, updated_at: float, routes: list[dict[str, Any]],
              requests: int = 0, model: str = "wine") -> Path:
    """A heartbeat file as ``nbmlops serve`` writes it (contract section 1), atomically."""
    folder = directory / "_services"
    folder.mkdir(parents=True, exist_ok=True)
    beat = {"model": model, "pid": pid, "host": "box", "port": 8700 + pid % 100,
            "url": f"http://127.0.0.1:{8700 + pid % 100}", "started_at": updated_at - 100,
            "updated_at": updated_at, "routes": routes, "requests": requests, "errors": 1,
            "log": {"written": 10, "dropped": 0, "pending": 2}}
    path = folder / f"box-{pid}.json"
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(beat))
    os.replace(tmp, path)
    return path


ROUTES = [{"alias": "champion", "version": 1, "role": "primary", "weight": 1.0},
          {"alias": "challenger", "version": 2, "role": "shadow", "weight": 0.0}]


def record_result(store: Store, *, score: float, drifted: bool, psi: dict[str, float]) -> int:
    report = {"model": "wine", "alias": "champion", "version": 1, "drifted": drifted,
              "score": score,
              "features": [{"name": k, "kind": "numeric", "psi": v, "noise": 0.01,
                            "threshold": 0.2, "drifted": v > 0.2} for k, v in psi.items()],
              "prediction": {"psi": 0.05, "drifted": False}}
    result = store.monitoring.record(
        model="wine", alias="champion", version=1, source="cli", window="1h", rows=100,
        labeled_rows=0, score=score, drifted=drifted, threshold=0.2, report=report)
    return int(getattr(result, "id", result))


def build_project(root: Path) -> dict[str, Any]:
    from sklearn.datasets import load_wine
    from sklearn.linear_model import LogisticRegression

    from nbmlops.registry import register

    root.mkdir(parents=True, exist_ok=True)
    X, y = load_wine(return_X_y=True)
    now = time.time()
    with store_of(root) as store:
        model = LogisticRegression(max_iter=5000).fit(X, y)
        register(store, model, "wine", namespace={})
        register(store, model, "wine", namespace={})
        register(store, model, "quiet", namespace={})  # registered, never served
        first = record_result(store, score=0.05, drifted=False, psi={"alcohol": 0.05, XSS: 0.01})
        second = record_result(store, score=0.4, drifted=True, psi={"alcohol": 0.4, XSS: 0.3})
        sched = store.schedules.add(
            "retrain-on-drift-wine", kind="drift", target=str(root / "retrain.yaml"),
            target_kind="pipeline", watch="wine@champion", params={}, overlap="queue",
            catchup="none", state={"config": {"threshold": 0.2, "window": "1h", "min_rows": 100},
                                   "episode": {"version": 1, "fire_id": 1}})
        store.schedules.add(
            "other-model", kind="drift", target=str(root / "retrain.yaml"),
            target_kind="pipeline", watch="wine2@champion", params={}, overlap="queue",
            catchup="none", state={"config": {"threshold": 0.2}})
        store.schedules.fire_many(sched.id, [{"status": "skipped", "message": "test", "reason": {
            "kind": "drift", "model": "wine", "alias": "champion", "version": 1, "score": 0.4,
            "monitor_id": second, "features": {"alcohol": 0.4, XSS: 0.3}}}])
    predictions = root / ".nbmlops" / "predictions"
    write_log(predictions / "wine", now)
    heartbeat(predictions / "wine", pid=1001, updated_at=now + 3600, routes=ROUTES, requests=50)
    heartbeat(predictions / "wine", pid=1002, updated_at=now - 60, routes=ROUTES[:1],
              requests=7)
    # only a stopped service, no log; a directory that is not a model; a broken heartbeat
    heartbeat(predictions / "iris", pid=2001, updated_at=now - 3600, routes=ROUTES[:1],
              model="iris")
    (predictions / "_tmp").mkdir()
    (predictions / "iris" / "_services" / "box-9.json").write_text("{not json")
    return {"root": root, "now": now, "results": [first, second]}


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    return build_project(tmp_path_factory.mktemp("monitoring") / "root")


@pytest.fixture
def project(template: dict[str, Any], tmp_path: Path) -> dict[str, Any]:
    root = tmp_path / "root"
    shutil.copytree(template["root"], root)
    # heartbeats: fresh for this test (the live one rewritten now, the others left stale)
    beats = root / ".nbmlops" / "predictions" / "wine" / "_services"
    heartbeat(beats.parent, pid=1001, updated_at=time.time(), routes=ROUTES, requests=50)
    return {**template, "root": root}


@pytest.fixture
def jp_root_dir(request: pytest.FixtureRequest, tmp_path: Path) -> Path:
    if "fresh_root" in request.fixturenames:
        root = tmp_path / "fresh"
        root.mkdir()
        return root
    if "empty_store" in request.fixturenames:
        root = tmp_path / "empty"
        root.mkdir()
        store_of(root).close()
        return root
    return Path(request.getfixturevalue("project")["root"])


@pytest.fixture
def empty_store() -> None:
    """Marker: the server root holds a store and nothing else."""


# -- the list -------------------------------------------------------------------------------------


async def test_an_empty_store_serves_no_models(empty_store: None, jp_fetch: Any) -> None:
    answer = await get(jp_fetch, "monitoring")
    assert answer["models"] == []
    assert answer["predictions_dir"] == ".nbmlops/predictions"


async def test_served_models_with_their_services_routes_and_traffic(
    jp_fetch: Any, project: dict[str, Any]
) -> None:
    answer = await get(jp_fetch, "monitoring")
    assert [m["name"] for m in answer["models"]] == ["iris", "wine"]  # not _tmp, not quiet
    iris, wine = answer["models"]
    assert iris["alive"] is False and iris["logged"] is False
    assert [s["pid"] for s in iris["services"]] == [2001]  # the broken heartbeat is skipped
    assert iris["services"][0]["alive"] is False and iris["last_request_at"] is None

    assert wine["alive"] is True and wine["logged"] is True
    live, stale = wine["services"]
    assert (live["pid"], live["alive"], stale["pid"], stale["alive"]) == (1001, True, 1002, False)
    assert live["routes"] == ROUTES
    assert live["url"] == "http://127.0.0.1:8701" and live["log"] == {
        "written": 10, "dropped": 0, "pending": 2}
    assert wine["requests"] == 57 and wine["errors"] == 2
    assert wine["requests_last_hour"] == len(CHAMPION)  # primary requests only
    assert wine["rows_last_hour"] == sum(r for _, r in CHAMPION)
    assert abs(wine["last_request_at"] - (project["now"] - CHAMPION[0][0])) < 1e-3
    monitor = wine["monitor"]
    assert monitor["id"] == project["results"][1] and monitor["drifted"] is True
    assert monitor["score"] == pytest.approx(0.4)

    docs, ts = _doc_fields(), _ts_fields()
    for name, sample in {"MonitoringList": answer, "ServedModel": wine, "ServiceInfo": live,
                         "ServiceRoute": live["routes"][0], "MonitorSummary": monitor}.items():
        assert set(sample) == docs.get(name), f"docs/server-api.md section {name}"
        assert set(sample) == ts.get(name), f"labextension/src/types.ts interface {name}"


async def test_a_heartbeat_not_rewritten_for_10_s_is_a_stopped_service(
    jp_fetch: Any, project: dict[str, Any]
) -> None:
    beats = project["root"] / ".nbmlops" / "predictions" / "wine"
    heartbeat(beats, pid=1001, updated_at=time.time() - 11, routes=ROUTES, requests=50)
    wine = (await get(jp_fetch, "monitoring"))["models"][1]
    assert wine["alive"] is False and not any(s["alive"] for s in wine["services"])
    heartbeat(beats, pid=1001, updated_at=time.time(), routes=ROUTES, requests=51)
    wine = (await get(jp_fetch, "monitoring"))["models"][1]
    assert wine["alive"] is True and wine["requests"] == 58
    # deleted on clean shutdown: gone from the list of services
    (beats / "_services" / "box-1001.json").unlink()
    wine = (await get(jp_fetch, "monitoring"))["models"][1]
    assert [s["pid"] for s in wine["services"]] == [1002] and wine["alive"] is False


# -- one model ------------------------------------------------------------------------------------


async def test_request_rate_series_count_the_rows_written(
    jp_fetch: Any, project: dict[str, Any]
) -> None:
    detail = await get(jp_fetch, "monitoring", "wine")
    assert detail["minutes"] == 60 and detail["bucket_seconds"] == 60
    assert detail["until"] - detail["since"] == 3600 and detail["since"] % 60 == 0
    by_key = {(s["alias"], s["version"], s["role"]): s for s in detail["series"]}
    assert set(by_key) == {("champion", 1, "primary"), ("challenger", 2, "shadow")}
    champion = by_key["champion", 1, "primary"]
    assert len(champion["points"]) == 60
    assert champion["requests"] == len(CHAMPION) == sum(p["requests"] for p in champion["points"])
    assert champion["rows"] == sum(r for _, r in CHAMPION) == sum(p["rows"] for p in champion["points"])
    assert by_key["challenger", 2, "shadow"]["requests"] == len(SHADOW)
    assert detail["rows"] == sum(r for _, r in CHAMPION + SHADOW)
    for p in champion["points"]:
        assert p["rate"] == pytest.approx(p["requests"], abs=5e-4)  # per minute, 1-minute buckets
    # each request lands in the minute it arrived
    for ago, _ in CHAMPION:
        t = project["now"] - ago
        point = next(p for p in champion["points"] if p["t"] <= t < p["t"] + 60)
        assert point["requests"] >= 1

    day = await get(jp_fetch, "monitoring", "wine", minutes="1440")
    assert day["bucket_seconds"] == 360 and len(day["series"][0]["points"]) == 240
    champion = next(s for s in day["series"] if s["role"] == "primary")
    assert champion["requests"] == len(CHAMPION) + len(OLD)
    assert champion["rows"] == sum(r for _, r in CHAMPION + OLD)
    point = max(champion["points"], key=lambda p: p["requests"])
    assert point["rate"] == pytest.approx(point["requests"] / 6, abs=5e-4)  # rounded to 3 places


async def test_drift_per_feature_over_time_and_trigger_fires(
    jp_fetch: Any, project: dict[str, Any]
) -> None:
    detail = await get(jp_fetch, "monitoring", "wine")
    drift = detail["drift"]
    assert drift["features"] == ["alcohol", XSS]  # the most drifted first; names as text
    first, second = drift["results"]  # oldest first
    assert [first["id"], second["id"]] == project["results"]
    assert first["features"] == {"alcohol": 0.05, XSS: 0.01} and first["drifted"] is False
    assert second["features"] == {"alcohol": 0.4, XSS: 0.3}
    assert second["drifted_features"] == ["alcohol", XSS] and second["prediction_psi"] == 0.05
    assert drift["truncated"] is False and drift["features_truncated"] is False

    (trigger,) = detail["triggers"]  # not the trigger watching wine2
    assert trigger["name"] == "retrain-on-drift-wine" and trigger["watch"] == "wine@champion"
    assert (trigger["threshold"], trigger["window"], trigger["min_rows"]) == (0.2, "1h", 100)
    assert trigger["episode"] == {"version": 1, "fire_id": 1}
    (fire,) = detail["fires"]
    assert fire["schedule"] == "retrain-on-drift-wine" and fire["status"] == "skipped"
    assert fire["reason"]["features"] == {"alcohol": 0.4, XSS: 0.3}
    assert trigger["last_fire"] == fire

    docs, ts = _doc_fields(), _ts_fields()
    samples = {"MonitoringDetail": detail, "RateSeries": detail["series"][0],
               "RatePoint": detail["series"][0]["points"][0], "DriftHistory": drift,
               "DriftResult": second, "DriftTrigger": trigger, "ScheduleFire": fire}
    for name, sample in samples.items():
        assert set(sample) == docs.get(name), f"docs/server-api.md section {name}"
        assert set(sample) == ts.get(name), f"labextension/src/types.ts interface {name}"


async def test_a_registered_model_never_served_has_empty_charts(
    jp_fetch: Any, project: dict[str, Any]
) -> None:
    detail = await get(jp_fetch, "monitoring", "quiet")
    assert detail["services"] == [] and detail["series"] == [] and detail["rows"] == 0
    assert detail["drift"]["results"] == [] and detail["triggers"] == [] and detail["fires"] == []


async def test_a_stopped_model_without_a_registry_entry_is_still_shown(
    jp_fetch: Any, project: dict[str, Any]
) -> None:
    detail = await get(jp_fetch, "monitoring", "iris")  # only its heartbeat directory
    assert [s["alive"] for s in detail["services"]] == [False] and detail["series"] == []


# -- bad input ------------------------------------------------------------------------------------


@pytest.mark.parametrize("parts, params, status, code, needle", [
    (("monitoring", "nope"), {}, 404, "not_found", "nope"),
    (("monitoring", "bad name"), {}, 400, "bad_request", "invalid model name"),
    (("monitoring", "_services"), {}, 400, "bad_request", "invalid model name"),
    (("monitoring", "wine"), {"minutes": "0"}, 400, "bad_request", "minutes must be"),
    (("monitoring", "wine"), {"minutes": "1441"}, 400, "bad_request", "from 1 to 1440"),
    (("monitoring", "wine"), {"minutes": "abc"}, 400, "bad_request", "minutes must be"),
    (("monitoring", "wine"), {"minutes": "1.5"}, 400, "bad_request", "minutes must be"),
    (("monitoring", "wine"), {"window": "1h"}, 400, "bad_request", "unknown query parameter"),
    (("monitoring",), {"limit": "5"}, 400, "bad_request", "unknown query parameter"),
])
async def test_bad_reads_answer_one_json_message(
    jp_fetch: Any, project: dict[str, Any], parts: tuple[str, ...], params: dict[str, str],
    status: int, code: str, needle: str,
) -> None:
    got, body, _ = await get_error(jp_fetch, *parts, **params)
    assert (got, body["code"]) == (status, code), body
    assert needle in body["message"] and "\n" not in body["message"]
    assert set(body) == {"message", "code", "status"}


async def test_no_store_yet_is_503_store_missing(fresh_root: None, jp_fetch: Any,
                                                 jp_root_dir: Path) -> None:
    for parts in (("monitoring",), ("monitoring", "wine")):
        code, body, _ = await get_error(jp_fetch, *parts)
        assert code == 503 and body["code"] == "store_missing"
    assert not (jp_root_dir / ".nbmlops").exists()


@pytest.mark.parametrize("parts", [("monitoring",), ("monitoring", "wine")],
                         ids=["list", "model"])
async def test_every_monitoring_endpoint_needs_a_token(
    jp_fetch: Any, project: dict[str, Any], parts: tuple[str, ...]
) -> None:
    with pytest.raises(HTTPClientError) as info:
        await jp_fetch("nbmlops", "api", *parts, method="GET", headers={"Authorization": ""})
    assert info.value.code == 403


async def test_the_endpoints_are_read_only(jp_fetch: Any, project: dict[str, Any]) -> None:
    with pytest.raises(HTTPClientError) as info:
        await jp_fetch("nbmlops", "api", "monitoring", "wine", method="POST", body="{}")
    assert info.value.code == 405


for _name, _fn in list(globals().items()):
    if _name.startswith("test_") and inspect.iscoroutinefunction(_fn):
        globals()[_name] = _run_on_loop(_fn)
