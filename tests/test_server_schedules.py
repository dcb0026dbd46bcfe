"""Schedules and triggers through the REST API: list (with the scheduler's lease), history,
pause/resume, and manual fires that really run (`nbmlops run` subprocesses and kernels). A real
Jupyter server (pytest-jupyter), loaded like tests/test_server_api.py does; targets are tiny.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import time
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("jupyter_server")
pytest.importorskip("pytest_jupyter")

# pytest-jupyter's fixtures for this module only (see tests/test_server_api.py)
from pytest_jupyter.jupyter_server import *  # noqa: E402, F403
from tornado.httpclient import HTTPClientError  # noqa: E402

from nbmlops.schedule.service import add_schedule, add_trigger  # noqa: E402
from nbmlops.server.app import NbmlopsServerApp  # noqa: E402
from nbmlops.store import Store  # noqa: E402

from ._server import jp_server_config  # noqa: E402, F401  (overrides pytest-jupyter's)
from .conftest import make_notebook  # noqa: E402
from .test_server_api import (  # noqa: E402
    _doc_fields,
    _run_on_loop,
    _ts_fields,
    get,
    get_error,
)
from .test_server_pipelines import (  # noqa: E402
    app_of,
    post,
)

pytestmark = [pytest.mark.kernel, pytest.mark.timeout(300)]


def root_url(root: Path) -> str:
    return f"sqlite:///{root / '.nbmlops' / 'nbmlops.db'}"


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A server root whose store holds a cron schedule and two triggers of tiny notebooks."""
    base = tmp_path_factory.mktemp("schedules")
    root = base / "root"
    quick = make_notebook(root / "quick.ipynb", [("label = 'x'", ["parameters"]), "x = 1"])
    # runs while the file `hold` exists: a fire that is "in progress" as long as a test wants
    make_notebook(root / "held.ipynb", [
        ("label = 'x'", ["parameters"]),
        "import os, time\nwhile os.path.exists('hold'):\n    time.sleep(0.1)",
    ])
    make_notebook(root / "pipe" / "step.ipynb", ["y = 2"])
    (root / "pipe" / "pipeline.yaml").write_text("name: pipe\nsteps:\n  only: {notebook: step.ipynb}\n")
    (root / "data").mkdir()
    (root / "data" / "a.csv").write_text("a\n1\n")
    with Store.open(root_url(root)) as store:
        add_schedule(store, quick, cron="0 3 * * *", tz="Europe/Berlin", name="nightly",
                     params={"label": "y"})
        add_schedule(store, root / "held.ipynb", cron="@hourly", name="held")
        add_trigger(store, quick, on_change=str(root / "data" / "*.csv"), name="on-data")
        add_trigger(store, quick, after=root / "pipe" / "pipeline.yaml", name="after-pipe")
    return {"root": root, "url": root_url(root)}


@pytest.fixture
def jp_root_dir(request: pytest.FixtureRequest, tmp_path: Path) -> Path:
    if "fresh_root" in request.fixturenames:
        root = tmp_path / "fresh"
        root.mkdir()
        return root
    return Path(request.getfixturevalue("project")["root"])






async def run_status(jp_fetch: Any, run_id: str) -> str | None:
    """A run's status as the server reads it (None while it does not exist).

    Tests read the store through the API while a run writes it: a second Store opened and
    closed in this process (the server's) next to the server's own has led to SQLite
    "disk I/O error"s once a `nbmlops run` child closed the file (reported to the store's
    owner)."""
    try:
        return str((await get(jp_fetch, "runs", run_id))["status"])
    except HTTPClientError as exc:
        if exc.code == 404:
            return None
        raise


def by_name(listing: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {s["name"]: s for s in listing["schedules"]}


async def wait_fire(jp_fetch: Any, name: str, fire_id: int, until: Any,
                    timeout: float = 120) -> dict[str, Any]:
    """Poll the schedule's history (on the server's own loop) until ``until(fire)``."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        fires = (await get(jp_fetch, "schedules", name, "history"))["fires"]
        last = next((f for f in fires if f["id"] == fire_id), None)
        if last is not None and until(last):
            return last
        await asyncio.sleep(0.25)
    raise AssertionError(f"fire {fire_id} of {name} not there in {timeout} s: {last}")


async def wait_reaped(app: NbmlopsServerApp, fire_id: int, timeout: float = 30) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        fire = app.schedules.fires.get(fire_id)
        if fire is not None and not fire.running:
            return fire
        await asyncio.sleep(0.1)
    raise AssertionError(f"fire {fire_id} was not reaped in {timeout} s")


# -- list, scheduler state ---------------------------------------------------------------------


async def test_list_shows_schedules_and_triggers_and_whether_a_scheduler_runs(
    jp_fetch: Any, project: dict[str, Any]
) -> None:
    got = await get(jp_fetch, "schedules")
    assert [s["name"] for s in got["schedules"]] == ["after-pipe", "held", "nightly", "on-data"]
    assert got["scheduler"] == {"running": False, "holder": None, "host": None, "pid": None,
                                "expires_at": None}
    s = by_name(got)
    nightly = s["nightly"]
    assert nightly["kind"] == "cron" and nightly["target_kind"] == "notebook"
    assert nightly["cron"] == "0 3 * * *" and nightly["timezone"] == "Europe/Berlin"
    assert nightly["target_path"] == "quick.ipynb"
    assert nightly["target"] == str(project["root"] / "quick.ipynb")
    assert nightly["params"] == {"label": "y"} and nightly["paused"] is False
    assert nightly["next_fire_at"] > time.time()
    assert nightly["next_fire"].endswith("Z")
    assert "T03:00:00+0" in nightly["next_fire_local"]  # 03:00 in Berlin, CET or CEST
    assert nightly["last_fire"] is None and nightly["watched_files"] is None
    change = s["on-data"]
    assert change["kind"] == "change" and change["watch_path"] == "data/*.csv"
    assert change["watched_files"] == 1 and change["cron"] is None
    assert change["next_fire"] is None and change["next_fire_local"] is None
    after = s["after-pipe"]
    assert after["kind"] == "after" and after["watch_path"] == "pipe/pipeline.yaml"
    assert {tuple(sorted(x)) for x in got["schedules"]} == {tuple(sorted(nightly))}  # one shape

    with Store.open(project["url"]) as store:
        assert store.schedules.acquire_lease("host-a:4242:abcd", host="host-a", pid=4242, ttl=60)
        try:
            running = (await get(jp_fetch, "schedules"))["scheduler"]
            assert running["running"] is True and running["holder"] == "host-a:4242:abcd"
            assert running["host"] == "host-a" and running["pid"] == 4242
            assert running["expires_at"] > time.time() + 30
        finally:
            store.schedules.release_lease("host-a:4242:abcd")
        assert (await get(jp_fetch, "schedules"))["scheduler"]["running"] is False
        # a lease that ran out (its scheduler died elsewhere) is not a running scheduler
        assert store.schedules.acquire_lease("host-b:1:dead", host="host-b", pid=1, ttl=-5)
        try:
            stale = (await get(jp_fetch, "schedules"))["scheduler"]
            assert stale["running"] is False and stale["holder"] == "host-b:1:dead"
        finally:
            store.schedules.release_lease("host-b:1:dead")


async def test_pause_resume_round_trip_and_an_empty_history(
    jp_fetch: Any, project: dict[str, Any]
) -> None:
    before = by_name(await get(jp_fetch, "schedules"))["nightly"]
    code, paused = await post(jp_fetch, "schedules", "nightly", "pause")
    assert code == 200 and paused["name"] == "nightly" and paused["paused"] is True
    assert paused["next_fire"] is None and paused["next_fire_local"] is None
    assert by_name(await get(jp_fetch, "schedules"))["nightly"]["paused"] is True
    code, again = await post(jp_fetch, "schedules", "nightly", "pause", body={})
    assert code == 200 and again["paused"] is True  # pausing twice is fine
    code, resumed = await post(jp_fetch, "schedules", "nightly", "resume")
    assert code == 200 and resumed["paused"] is False
    assert resumed["next_fire_at"] == before["next_fire_at"]  # the same 03:00 is next
    assert resumed["next_fire_local"] == before["next_fire_local"]
    code, trig = await post(jp_fetch, "schedules", "on-data", "pause")
    assert code == 200 and trig["kind"] == "change" and trig["paused"] is True
    code, trig = await post(jp_fetch, "schedules", "on-data", "resume")
    assert code == 200 and trig["paused"] is False and trig["watched_files"] == 1
    assert await get(jp_fetch, "schedules", "after-pipe", "history") == {
        "schedule": "after-pipe", "fires": []}


# -- fire --------------------------------------------------------------------------------------


async def test_fire_runs_the_target_as_the_user_and_the_shapes_match_the_docs(
    jp_fetch: Any, jp_serverapp: Any, project: dict[str, Any], alice: str
) -> None:
    code, answer = await post(jp_fetch, "schedules", "nightly", "fire")
    assert code == 202, answer
    assert set(answer) == {"fire", "run_id", "status"} and answer["status"] == "started"
    assert isinstance(answer["fire"], int) and len(answer["run_id"]) == 32
    early = by_name(await get(jp_fetch, "schedules"))["nightly"]["last_fire"]
    assert early["id"] == answer["fire"] and early["run_id"] == answer["run_id"]
    assert early["status"] in ("started", "finished")

    fire = await wait_fire(jp_fetch, "nightly", answer["fire"], lambda f: f["status"] != "started")
    assert fire["status"] == "finished", fire
    assert fire["reason"] == {"kind": "manual", "by": alice}
    assert fire["run_id"] == answer["run_id"] and fire["message"] is None
    assert fire["due_at"] is None and fire["due"] is None and fire["schedule"] == "nightly"
    reaped = await wait_reaped(app_of(jp_serverapp), answer["fire"])
    assert reaped.exit_code == 0 and reaped.status == "finished"
    assert reaped.proc.returncode == 0  # waited for: no zombie
    with Store.open(project["url"]) as store:
        run = store.get_run(answer["run_id"])
        assert run.status == "finished" and run.params == {"label": "y"}
        assert run.tags["nbmlops.trigger"] == "manual"
        assert run.tags["nbmlops.trigger.by"] == alice
        assert run.tags["nbmlops.trigger.name"] == "nightly"
        assert run.tags["nbmlops.trigger.fire"] == str(answer["fire"])
    assert (project["root"] / ".nbmlops" / "runs" / answer["run_id"] / "scheduler.log").exists()

    listing = await get(jp_fetch, "schedules")
    nightly = by_name(listing)["nightly"]
    assert nightly["last_fire"]["status"] == "finished"
    history = await get(jp_fetch, "schedules", "nightly", "history", limit="1")
    assert [f["id"] for f in history["fires"]] == [answer["fire"]]
    samples: dict[str, dict[str, Any]] = {
        "ScheduleList": listing,
        "Schedule": nightly,
        "SchedulerInfo": listing["scheduler"],
        "ScheduleFire": nightly["last_fire"],
        "ScheduleHistory": history,
        "FireAnswer": answer,
    }
    docs, ts = _doc_fields(), _ts_fields()
    for name, sample in samples.items():
        assert set(sample) == docs.get(name), f"docs/server-api.md section {name}"
        assert set(sample) == ts.get(name), f"labextension/src/types.ts interface {name}"


async def test_a_paused_schedule_fires_by_hand_and_the_limit_is_429(
    jp_fetch: Any, jp_serverapp: Any, project: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    app = app_of(jp_serverapp)
    monkeypatch.setattr(app.schedules.fires, "max_running", 1)
    hold = project["root"] / "hold"
    hold.write_text("1")
    try:
        code, _ = await post(jp_fetch, "schedules", "held", "pause")
        assert code == 200
        code, first = await post(jp_fetch, "schedules", "held", "fire")
        assert code == 202, first  # paused: a person may still fire it
        code, answer = await post(jp_fetch, "schedules", "nightly", "fire")
        assert code == 429 and answer["code"] == "too_many_runs", answer
        assert "max_pipeline_runs" in answer["message"]
        code, answer = await post(jp_fetch, "schedules", "nope", "fire")
        assert code == 404  # an unknown name stays a 404 at the limit
        listed = by_name(await get(jp_fetch, "schedules"))["held"]
        assert listed["last_fire"]["status"] == "started" and listed["paused"] is True
    finally:
        hold.unlink()
        await post(jp_fetch, "schedules", "held", "resume")
    fire = await wait_fire(jp_fetch, "held", first["fire"], lambda f: f["status"] != "started")
    assert fire["status"] == "finished"
    await wait_reaped(app, first["fire"])
    code, answer = await post(jp_fetch, "schedules", "nightly", "fire")
    assert code == 202  # a slot is free again
    await wait_fire(jp_fetch, "nightly", answer["fire"], lambda f: f["status"] != "started")
    await wait_reaped(app, answer["fire"])


async def test_stopping_the_server_cancels_its_manual_fires(
    jp_fetch: Any, jp_serverapp: Any, project: dict[str, Any]
) -> None:
    # read through the API only: the server's own store stays the one connection of this
    # process to the file while a run writes it (see run_status)
    app = app_of(jp_serverapp)
    hold = project["root"] / "hold"
    hold.write_text("1")
    try:
        code, answer = await post(jp_fetch, "schedules", "held", "fire")
        assert code == 202
        # its run is recorded as running (its kernel in the loop) before the server stops
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and await run_status(jp_fetch, answer["run_id"]) != "running":
            await asyncio.sleep(0.2)
        await asyncio.sleep(1.0)
        await asyncio.to_thread(app.schedules.shutdown)
    finally:
        hold.unlink(missing_ok=True)
    fire = app.schedules.fires.get(answer["fire"])
    assert fire is not None and not fire.running and fire.cancel_requested
    assert fire.proc.returncode is not None and fire.exit_code != 0  # reaped
    recorded = await wait_fire(jp_fetch, "held", answer["fire"], lambda f: True)
    assert recorded["status"] in ("cancelled", "failed"), recorded
    assert recorded["ended_at"] is not None
    assert await run_status(jp_fetch, answer["run_id"]) in ("cancelled", "failed")  # not running


async def test_fire_uses_the_configured_store(
    configured_store: str, jp_fetch: Any, project: dict[str, Any]
) -> None:
    with Store.open(configured_store) as store:
        add_schedule(store, project["root"] / "quick.ipynb", cron="@daily", name="elsewhere")
    with Store.open(project["url"]) as store:
        before = {r.id for r in store.list_runs(limit=10_000).runs}
    assert [s["name"] for s in (await get(jp_fetch, "schedules"))["schedules"]] == ["elsewhere"]
    code, answer = await post(jp_fetch, "schedules", "elsewhere", "fire")
    assert code == 202
    fire = await wait_fire(jp_fetch, "elsewhere", answer["fire"], lambda f: f["status"] != "started")
    assert fire["status"] == "finished"
    with Store.open(configured_store) as store:
        assert store.get_run(answer["run_id"]).tags["nbmlops.trigger"] == "manual"
    with Store.open(project["url"]) as store:
        assert {r.id for r in store.list_runs(limit=10_000).runs} == before
    log = Path(configured_store[len("sqlite:///"):]).parent / "runs" / answer["run_id"]
    assert (log / "scheduler.log").exists()


# -- bad requests ------------------------------------------------------------------------------


@pytest.mark.parametrize("method, parts", [
    ("GET", ("schedules", "nope", "history")),
    ("POST", ("schedules", "nope", "fire")),
    ("POST", ("schedules", "nope", "pause")),
    ("POST", ("schedules", "nope", "resume")),
])
async def test_an_unknown_name_is_404_with_the_services_message(
    jp_fetch: Any, project: dict[str, Any], method: str, parts: tuple[str, ...]
) -> None:
    if method == "GET":
        code, body, _ = await get_error(jp_fetch, *parts)
    else:
        code, body = await post(jp_fetch, *parts)
    assert code == 404 and body["code"] == "not_found"
    assert "no schedule or trigger named 'nope'" in body["message"]


async def test_a_near_miss_gets_a_suggestion(jp_fetch: Any, project: dict[str, Any]) -> None:
    code, body = await post(jp_fetch, "schedules", "nightli", "pause")
    assert code == 404 and "did you mean nightly" in body["message"]


@pytest.mark.parametrize("name", ["a<b>", "-lead", "x" * 129, "nightly\n", "a b", ".hidden"])
async def test_an_invalid_name_is_400(jp_fetch: Any, project: dict[str, Any], name: str) -> None:
    code, body, _ = await get_error(jp_fetch, "schedules", name, "history")  # jp_fetch escapes it
    assert code == 400 and body["code"] == "bad_request" and "invalid schedule name" in body["message"]
    code, body = await post(jp_fetch, "schedules", name, "fire")
    assert code == 400 and "invalid schedule name" in body["message"]


@pytest.mark.parametrize("parts, params", [
    (("schedules",), {"limit": "5"}),
    (("schedules", "nightly", "history"), {"limit": "0"}),
    (("schedules", "nightly", "history"), {"limit": "501"}),
    (("schedules", "nightly", "history"), {"limit": "x"}),
    (("schedules", "nightly", "history"), {"since": "1"}),
])
async def test_bad_query_parameters_are_400(jp_fetch: Any, project: dict[str, Any],
                                            parts: tuple[str, ...], params: dict[str, str]) -> None:
    code, body, _ = await get_error(jp_fetch, *parts, **params)
    assert code == 400 and body["message"]


async def test_bad_bodies_methods_and_other_paths(jp_fetch: Any, project: dict[str, Any]) -> None:
    code, body = await post(jp_fetch, "schedules", "nightly", "pause", body={"now": 1})
    assert code == 400 and "unknown field" in body["message"]
    code, body = await post(jp_fetch, "schedules", "nightly", "fire", body="[1]")
    assert code == 400 and "JSON object" in body["message"]
    code, _, _ = await get_error(jp_fetch, "schedules", "nightly", "fire")
    assert code == 405
    code, body = await post(jp_fetch, "schedules")
    assert code == 405
    code, body, _ = await get_error(jp_fetch, "schedules", "nightly")
    assert code == 404 and body["code"] == "not_found"
    code, body = await post(jp_fetch, "schedules", "nightly", "stop")
    assert code in (404, 405)  # no such action (other unknown POSTs are 405 too)


async def test_no_store_yet_is_503_store_missing(fresh_root: None, jp_fetch: Any,
                                                 jp_root_dir: Path) -> None:
    code, body, _ = await get_error(jp_fetch, "schedules")
    assert code == 503 and body["code"] == "store_missing"
    code, body = await post(jp_fetch, "schedules", "nightly", "fire")
    assert code == 503 and body["code"] == "store_missing"
    assert not (jp_root_dir / ".nbmlops").exists()  # looking never creates a store


# -- authentication, authorization, XSRF -----------------------------------------------------

ENDPOINTS = [("GET", ("schedules",)), ("GET", ("schedules", "nightly", "history")),
             ("POST", ("schedules", "nightly", "fire")), ("POST", ("schedules", "nightly", "pause")),
             ("POST", ("schedules", "nightly", "resume"))]


@pytest.mark.parametrize("method, parts", ENDPOINTS,
                         ids=lambda v: "/".join(v) if isinstance(v, tuple) else v)
async def test_every_schedule_endpoint_needs_a_token(
    jp_fetch: Any, project: dict[str, Any], method: str, parts: tuple[str, ...]
) -> None:
    with pytest.raises(HTTPClientError) as info:
        await jp_fetch("nbmlops", "api", *parts, method=method, headers={"Authorization": ""},
                       body="{}" if method == "POST" else None)
    assert info.value.code == 403
    with Store.open(project["url"]) as store:
        sched = store.schedules.get("nightly")
    assert sched.paused is False  # nothing changed


async def test_post_needs_the_xsrf_token_when_authenticated_by_cookie(
    jp_fetch: Any, project: dict[str, Any]
) -> None:
    resp = await jp_fetch("nbmlops", "api", "status", method="GET")  # token: sets the login cookie
    cookies = [c.split(";", 1)[0] for c in resp.headers.get_list("Set-Cookie")]
    assert cookies, "no login cookie"
    bare = {"Authorization": "", "Cookie": "; ".join(cookies)}
    code, answer = await post(jp_fetch, "schedules", "nightly", "pause", headers=bare)
    assert code == 403 and "xsrf" in json.dumps(answer).lower()
    with_xsrf = {"Authorization": "", "Cookie": "; ".join([*cookies, "_xsrf=abc123"]),
                 "X-XSRFToken": "abc123"}
    code, answer = await post(jp_fetch, "schedules", "nope", "pause", headers=with_xsrf)
    assert code == 404 and answer["code"] == "not_found"  # past the XSRF check


async def test_the_authorizer_is_asked_to_write_nbmlops_for_a_fire(
    jp_fetch: Any, jp_serverapp: Any, project: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    asked: list[tuple[str, str]] = []

    def deny_writes(handler: Any, user: Any, action: str, resource: str) -> bool:
        asked.append((action, resource))
        return not (resource == "nbmlops" and action == "write")

    monkeypatch.setattr(jp_serverapp.authorizer, "is_authorized", deny_writes)
    for action in ("fire", "pause", "resume"):
        code, _ = await post(jp_fetch, "schedules", "nightly", action)
        assert code == 403
    assert ("write", "nbmlops") in asked
    assert (await get(jp_fetch, "schedules"))["schedules"]  # reading is still allowed
    assert not app_of(jp_serverapp).schedules.fires.running()


for _name, _fn in list(globals().items()):
    if _name.startswith("test_") and inspect.iscoroutinefunction(_fn):
        globals()[_name] = _run_on_loop(_fn)
