"""Pipelines through the REST API: list definitions, start runs with params (real `nbmlops
pipeline run` subprocesses and kernels), per-step status, cancel. A real Jupyter server
(pytest-jupyter), loaded like tests/test_server_api.py does; step notebooks are tiny.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import sys
import time
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("jupyter_server")
pytest.importorskip("pytest_jupyter")

# pytest-jupyter's fixtures for this module only (see tests/test_server_api.py)
from pytest_jupyter.jupyter_server import *  # noqa: E402, F403
from tornado.httpclient import HTTPClientError  # noqa: E402

from nbmlops.server import launcher as launcher_module  # noqa: E402
from nbmlops.server.app import NbmlopsServerApp  # noqa: E402
from nbmlops.store import Store  # noqa: E402

from ._server import jp_server_config  # noqa: E402, F401  (overrides pytest-jupyter's)
from .conftest import make_notebook  # noqa: E402
from .test_server_api import _doc_fields, _run_on_loop, _ts_fields, get, get_error  # noqa: E402

pytestmark = pytest.mark.kernel
SECRET = "TOPSECRET-pipe-51c2"


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


@pytest.fixture(scope="module")
def pipes(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A server root holding good, broken, hidden, too deep and outside pipeline definitions."""
    base = tmp_path_factory.mktemp("pipes")
    root = base / "root"
    two = root / "two"
    make_notebook(two / "a.ipynb", [
        ("seed = 1", ["parameters"]),
        "from pathlib import Path\nPath('data').mkdir(exist_ok=True)\n"
        "Path('data/a.txt').write_text(str(seed))",
    ])
    make_notebook(two / "b.ipynb", [
        ("seed = 1\nscale = 2  # how much bigger", ["parameters"]),
        "from pathlib import Path\nPath('data/b.txt').write_text(Path('data/a.txt').read_text() * scale)",
    ])
    _write(two / "pipeline.yaml", "name: two\nparams:\n  seed: 1\nsteps:\n  a:\n    notebook: a.ipynb\n"
           "  b:\n    notebook: b.ipynb\n    depends_on: [a]\n    inputs: [data/a.txt]\n")
    make_notebook(root / "long" / "sleep.ipynb", [
        "from pathlib import Path\nPath('started.txt').write_text('1')",
        "import time\ntime.sleep(120)",
    ])
    make_notebook(root / "long" / "after.ipynb", ["x = 1"])
    _write(root / "long" / "pipeline.yaml", "name: long\nsteps:\n  sleep: {notebook: sleep.ipynb}\n"
           "  after: {notebook: after.ipynb, depends_on: [sleep]}\n")
    make_notebook(root / "fail" / "ok.ipynb", ["x = 1"])
    make_notebook(root / "fail" / "boom.ipynb", ["y = 2", "raise ValueError('boom <b>here</b>')"])
    _write(root / "fail" / "pipeline.yaml", "name: fail\nsteps:\n  ok: {notebook: ok.ipynb}\n"
           "  boom: {notebook: boom.ipynb, depends_on: [ok]}\n  never: {notebook: ok.ipynb, "
           "depends_on: [boom]}\n")
    _write(root / "broken" / "pipeline.yaml", "name: broken\nsteps:\n  a:\n    notebok: a.ipynb\n")
    _write(root / "deep" / "1" / "2" / "3" / "x.pipeline.yaml",
           "name: deep4\nsteps:\n  a: {notebook: ../../../../two/a.ipynb}\n")
    _write(root / "deep" / "1" / "2" / "3" / "4" / "pipeline.yaml", "name: deep5\nsteps: {}\n")
    _write(root / ".hidden" / "pipeline.yaml", "name: hidden\nsteps: {}\n")
    _write(root / "node_modules" / "pkg" / "pipeline.yaml", "name: npm\nsteps: {}\n")
    _write(root / "other.yaml", "foo: 1\n")
    _write(root / "notes.txt", "not a pipeline\n")
    outside = base / "outside"
    _write(outside / "pipeline.yaml", f"name: {SECRET}\nsteps: {{}}\n")
    (root / "link_out").symlink_to(outside, target_is_directory=True)
    tagged = make_notebook(root / "tagged.ipynb", [
        ("import math", ["imports"]),
        ("n = 3", ["step:prep"]),
        ("m = n * 2", ["step:train", "after:prep"]),
    ])
    # the store knows the tagged notebook as a pipeline (and one outside the root)
    with Store.open(f"sqlite:///{root / '.nbmlops' / 'nbmlops.db'}") as store:
        for path in (tagged, outside / "pipeline.yaml"):
            rid = store.create_run(name=path.stem, source="pipeline", notebook_path=str(path),
                                   tags={"nbmlops.pipeline": path.stem,
                                         "nbmlops.pipeline_path": str(path)})
            store.end_run(rid, "finished")
    return {"root": root, "outside": outside}


@pytest.fixture
def jp_root_dir(pipes: dict[str, Any]) -> Path:
    return Path(pipes["root"])


def app_of(jp_serverapp: Any) -> NbmlopsServerApp:
    ext = jp_serverapp.extension_manager.extension_apps["nbmlops.server"]
    app = next(iter(ext))
    assert isinstance(app, NbmlopsServerApp)
    return app


async def post(jp_fetch: Any, *parts: str, body: Any = None,
               headers: dict[str, str] | None = None) -> tuple[int, Any]:
    """POST JSON; (status, parsed answer) for success and errors alike."""
    raw = body if isinstance(body, str | bytes) else json.dumps(body) if body is not None else b""
    try:
        resp = await jp_fetch("nbmlops", "api", *parts, method="POST", body=raw, headers=headers)
    except HTTPClientError as exc:
        assert exc.response is not None
        text = exc.response.body.decode("utf-8", "replace")
        try:
            return exc.code, json.loads(text)
        except ValueError:
            return exc.code, text
    return resp.code, json.loads(resp.body)


async def start(jp_fetch: Any, path: str, params: dict[str, Any] | None = None) -> str:
    code, answer = await post(jp_fetch, "pipelines", "run", body={"path": path, "params": params or {}})
    assert code == 202, answer
    assert answer["status"] == "starting" and len(answer["run_id"]) == 32
    return str(answer["run_id"])


async def wait_run(jp_fetch: Any, run_id: str, until: Any = None, timeout: float = 60) -> Any:
    """Poll the run's status (on the server's own loop) until ``until(status)`` or it is done."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = await get(jp_fetch, "pipeline-runs", run_id)
        if (until(last) if until is not None else last["done"]):
            return last
        await asyncio.sleep(0.2)
    raise AssertionError(f"pipeline run {run_id} not there in {timeout} s: {last}")


def states(status: dict[str, Any]) -> dict[str, str]:
    return {s["name"]: s["state"] for s in status["steps"]}


def root_runs(root: Path) -> list[Any]:
    with Store.open(f"sqlite:///{root / '.nbmlops' / 'nbmlops.db'}") as store:
        return store.list_runs(limit=10_000).runs


# -- list -------------------------------------------------------------------------------------


async def test_list_finds_definitions_within_bounds_with_errors_as_one_line(
    jp_fetch: Any, pipes: dict[str, Any]
) -> None:
    got = await get(jp_fetch, "pipelines")
    by_path = {p["path"]: p for p in got["pipelines"]}
    assert set(by_path) == {"two/pipeline.yaml", "long/pipeline.yaml", "fail/pipeline.yaml",
                            "broken/pipeline.yaml", "deep/1/2/3/x.pipeline.yaml", "tagged.ipynb"}
    assert got["truncated"] is False and got["store_message"] is None
    two = by_path["two/pipeline.yaml"]
    assert two["name"] == "two" and two["ok"] is True and two["error"] is None
    assert two["kind"] == "yaml"
    assert two["steps"] == [
        {"name": "a", "notebook": "two/a.ipynb", "depends_on": [], "level": 0},
        {"name": "b", "notebook": "two/b.ipynb", "depends_on": ["a"], "level": 1},
    ]
    params = {p["name"]: p for p in two["params"]}
    assert params["seed"] == {"name": "seed", "default": "1", "type": "int", "source": "pipeline",
                              "help": "", "steps": ["a", "b"]}
    assert params["scale"] == {"name": "scale", "default": "2", "type": "int",
                               "source": "notebook", "help": "how much bigger", "steps": ["b"]}
    broken = by_path["broken/pipeline.yaml"]
    assert broken["ok"] is False and broken["steps"] == [] and broken["name"] == "broken"
    assert broken["error"].startswith("broken/pipeline.yaml:3:")  # relative, with line:col
    assert "notebook" in broken["error"] and "\n" not in broken["error"]
    assert str(pipes["root"]) not in json.dumps(got)
    tagged = by_path["tagged.ipynb"]  # known from the store's pipeline_path tag
    assert tagged["kind"] == "notebook" and tagged["ok"] is True
    assert [s["name"] for s in tagged["steps"]] == ["prep", "train"]
    assert tagged["latest_run"]["status"] == "finished"
    assert SECRET not in json.dumps(got)  # a recorded definition outside the root is left out


# -- start, status, cache ---------------------------------------------------------------------


async def test_start_with_params_runs_every_step_then_a_rerun_is_cached(
    jp_fetch: Any, pipes: dict[str, Any]
) -> None:
    root = pipes["root"]
    rid = await start(jp_fetch, "two/pipeline.yaml", {"seed": "7", "scale": 3})
    early = await get(jp_fetch, "pipeline-runs", rid)
    assert early["status"] in ("starting", "running") and early["done"] is False
    assert [s["name"] for s in early["steps"]] == ["a", "b"]
    assert early["launcher"]["running"] is True and early["launcher"]["exit_code"] is None
    assert early["launcher"]["log"] == f".nbmlops/runs/{rid}/launcher.log"

    done = await wait_run(jp_fetch, rid)
    assert done["status"] == "finished", done
    assert states(done) == {"a": "ran", "b": "ran"}
    assert done["run"]["params"] == {"seed": "7", "scale": "3"} and done["path"] == "two/pipeline.yaml"
    a, b = done["steps"]
    assert a["attempts"] == 1 and a["run_id"] and a["run_ids"] == [a["run_id"]]
    assert a["duration"] > 0 and a["error"] is None and a["cached_from"] is None
    assert b["depends_on"] == ["a"] and b["level"] == 1
    assert (root / "two" / "data" / "b.txt").read_text() == "777"
    launcher = (await wait_run(jp_fetch, rid, lambda s: s["launcher"]["exit_code"] is not None))["launcher"]
    assert launcher["exit_code"] == 0 and launcher["log_tail"] is None
    assert (root / ".nbmlops" / "runs" / rid / "launcher.log").exists()

    cells = await get(jp_fetch, "runs", b["run_id"], "cells")  # a step's cells, as the panel opens them
    assert any("b.txt" in c["source"] for c in cells["cells"])

    listed = {p["path"]: p for p in (await get(jp_fetch, "pipelines"))["pipelines"]}
    assert listed["two/pipeline.yaml"]["latest_run"]["id"] == rid

    again = await wait_run(jp_fetch, await start(jp_fetch, "two/pipeline.yaml", {"seed": "7", "scale": "3"}))
    assert again["status"] == "finished"
    assert states(again) == {"a": "cached", "b": "cached"}
    assert [s["cached_from"] for s in again["steps"]] == [a["run_id"], b["run_id"]]
    assert [s["attempts"] for s in again["steps"]] == [0, 0]


async def test_a_failed_step_reports_its_cell_error_and_the_shapes_match_the_docs(
    jp_fetch: Any, pipes: dict[str, Any]
) -> None:
    rid = await start(jp_fetch, "fail/pipeline.yaml")
    done = await wait_run(jp_fetch, rid, lambda s: s["done"] and s["launcher"]["exit_code"] is not None)
    assert done["status"] == "failed"
    assert states(done) == {"ok": "ran", "boom": "failed", "never": "skipped"}
    boom = done["steps"][1]
    assert boom["error"]["error_name"] == "ValueError"
    assert boom["error"]["error_value"] == "boom <b>here</b>" and boom["error"]["seq"] >= 1
    assert done["steps"][2]["run_id"] is None and done["steps"][2]["run_ids"] == []
    launcher = done["launcher"]
    assert launcher["exit_code"] == 1
    assert any("step boom" in line and "ValueError" in line for line in launcher["log_tail"])

    listing = await get(jp_fetch, "pipelines")
    info = next(p for p in listing["pipelines"] if p["path"] == "two/pipeline.yaml")
    code, launch = await post(jp_fetch, "pipelines", "run", body={"path": "tagged.ipynb"})
    assert code == 202
    code, cancel = await post(jp_fetch, "pipeline-runs", launch["run_id"], "cancel")
    if code == 409:  # the tiny pipeline was faster than the request
        cancel = {"run_id": launch["run_id"], "status": "cancelling"}
    await wait_run(jp_fetch, launch["run_id"], lambda s: s["done"] and not s["launcher"]["running"])
    samples: dict[str, dict[str, Any]] = {
        "PipelineList": listing,
        "PipelineInfo": info,
        "PipelineStep": info["steps"][0],
        "PipelineParam": info["params"][0],
        "PipelineRunRef": next(p["latest_run"] for p in listing["pipelines"] if p["latest_run"]),
        "PipelineLaunch": launch,
        "PipelineRunStatus": done,
        "PipelineStepStatus": boom,
        "StepError": boom["error"],
        "LauncherInfo": launcher,
        "CancelAnswer": cancel,
    }
    docs, ts = _doc_fields(), _ts_fields()
    for name, sample in samples.items():
        assert set(sample) == docs.get(name), f"docs/server-api.md section {name}"
        assert set(sample) == ts.get(name), f"labextension/src/types.ts interface {name}"


async def test_a_configured_store_url_is_the_one_the_launched_run_uses(
    configured_store: str, jp_fetch: Any, pipes: dict[str, Any]
) -> None:
    before = {r.id for r in root_runs(pipes["root"])}
    rid = await start(jp_fetch, "two/pipeline.yaml", {"seed": "3"})
    done = await wait_run(jp_fetch, rid, lambda s: s["done"] and not s["launcher"]["running"])
    assert done["status"] == "finished" and states(done) == {"a": "ran", "b": "ran"}
    with Store.open(configured_store) as store:
        assert store.get_run(rid).params == {"seed": "3"}
        assert len(store.list_runs(parent_run_id=rid).runs) == 2
    assert {r.id for r in root_runs(pipes["root"])} == before  # nothing went to the root's store
    listed = {p["path"]: p for p in (await get(jp_fetch, "pipelines"))["pipelines"]}
    assert listed["two/pipeline.yaml"]["latest_run"]["id"] == rid
    assert done["launcher"]["log"] is None  # beside that store, outside the root
    assert (Path(configured_store[len("sqlite:///"):]).parent / "runs" / rid / "launcher.log").exists()


def test_the_launch_command_never_goes_through_a_shell() -> None:
    cmd = launcher_module.launch_command(Path("/p/pipeline.yaml"), "ab" * 16,
                                         {"seed": "-1", "note": "a b; rm -rf /"})
    # no --store: the URL (which may hold a password) goes through the environment, not argv
    assert cmd == [sys.executable, "-m", "nbmlops.cli", "pipeline",
                   "run", "/p/pipeline.yaml", "--run-id", "ab" * 16, "--no-progress", "--json",
                   "-p", "seed", "-1", "-p", "note", "a b; rm -rf /"]


# -- bad input --------------------------------------------------------------------------------


@pytest.mark.parametrize("body, status, code, needle", [
    ({"path": "two/pipeline.yaml", "params": {"sede": "7"}}, 400, "bad_parameter", "did you mean 'seed'"),
    ({"path": "two/pipeline.yaml", "params": {"seed": "seven"}}, 400, "bad_parameter", "seed"),
    ({"path": "two/pipeline.yaml", "params": {"seed": [7]}}, 400, "bad_request", "params.seed"),
    ({"path": "two/pipeline.yaml", "params": ["seed"]}, 400, "bad_request", "params"),
    ({"path": "two/pipeline.yaml", "params": {"not a name": "1"}}, 400, "bad_request", "name"),
    ({"path": "two/pipeline.yaml", "param": {}}, 400, "bad_request", "unknown field"),
    ({"params": {}}, 400, "bad_request", "path is required"),
    ({"path": 7}, 400, "bad_request", "path must be a string"),
    ("{not json", 400, "bad_request", "JSON"),
    ("[1]", 400, "bad_request", "JSON object"),
    ({"path": "broken/pipeline.yaml"}, 400, "pipeline_invalid", "broken/pipeline.yaml:3:"),
    ({"path": "other.yaml"}, 400, "pipeline_invalid", "other.yaml"),
    ({"path": "notes.txt"}, 400, "bad_request", "not a pipeline definition"),
    ({"path": "two"}, 400, "bad_request", "not a pipeline definition"),
    ({"path": "missing/pipeline.yaml"}, 404, "not_found", "no such file"),
    ({"path": "../outside/pipeline.yaml"}, 403, "outside_root", "outside"),
    ({"path": "/etc/passwd"}, 403, "outside_root", "absolute"),
    ({"path": "link_out/pipeline.yaml"}, 403, "outside_root", "outside"),
    ({"path": "two/../../outside/pipeline.yaml"}, 403, "outside_root", "outside"),
    ({"path": "~/pipeline.yaml"}, 403, "outside_root", "absolute"),
])
async def test_bad_starts_are_refused_before_anything_runs(
    jp_fetch: Any, pipes: dict[str, Any], body: Any, status: int, code: str, needle: str
) -> None:
    before = {r.id for r in root_runs(pipes["root"])}
    got_status, answer = await post(jp_fetch, "pipelines", "run", body=body)
    assert got_status == status, answer
    assert answer["code"] == code and needle in answer["message"], answer
    assert SECRET not in json.dumps(answer) and str(pipes["root"]) not in answer["message"]
    await asyncio.sleep(0.3)
    assert {r.id for r in root_runs(pipes["root"])} == before  # no run was created


@pytest.mark.parametrize("parts, params, status", [
    (("pipeline-runs", "0123456789abcdef0123456789abcdef"), {}, 404),
    (("pipeline-runs", "bad*id"), {}, 400),
    (("pipeline-runs", "0123456789abcdef0123456789abcdef"), {"path": "../x"}, 403),
    (("pipeline-runs", "0123456789abcdef0123456789abcdef"), {"paht": "x"}, 400),
    (("pipelines",), {"limit": "5"}, 400),
])
async def test_bad_status_requests(jp_fetch: Any, parts: tuple[str, ...], params: dict[str, str],
                                   status: int) -> None:
    code, body, _ = await get_error(jp_fetch, *parts, **params)
    assert code == status and body["message"]


async def test_a_run_that_is_not_a_pipeline_run_is_404(jp_fetch: Any, pipes: dict[str, Any]) -> None:
    with Store.open(f"sqlite:///{pipes['root'] / '.nbmlops' / 'nbmlops.db'}") as store:
        rid = store.create_run(name="plain")
    code, body, _ = await get_error(jp_fetch, "pipeline-runs", rid)
    assert code == 404 and "not a pipeline run" in body["message"]


# -- cancel -----------------------------------------------------------------------------------


async def test_cancel_interrupts_a_long_step_and_records_cancelled(
    jp_fetch: Any, pipes: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    # the interrupt path, not the kill 5 s later: on a loaded machine the interrupted cell's
    # traceback alone can take longer than that (seen: a DeadKernelError in a stress run)
    monkeypatch.setenv("NBMLOPS_KILL_GRACE", "60")
    marker = pipes["root"] / "long" / "started.txt"
    marker.unlink(missing_ok=True)
    rid = await start(jp_fetch, "long/pipeline.yaml")
    running = await wait_run(
        jp_fetch, rid, lambda s: states(s).get("sleep") == "running" and marker.exists())
    assert running["status"] == "running" and states(running)["after"] == "pending"
    code, answer = await post(jp_fetch, "pipeline-runs", rid, "cancel")
    assert code == 202 and answer == {"run_id": rid, "status": "cancelling"}
    done = await wait_run(jp_fetch, rid, lambda s: s["done"] and not s["launcher"]["running"],
                          timeout=30)
    assert done["status"] == "cancelled"
    assert states(done) == {"sleep": "cancelled", "after": "cancelled"}
    assert done["launcher"]["cancel_requested"] is True and done["launcher"]["exit_code"] == 130
    with Store.open(f"sqlite:///{pipes['root'] / '.nbmlops' / 'nbmlops.db'}") as store:
        assert store.get_run(rid).status == "cancelled"
        step = store.get_run(done["steps"][0]["run_id"])
        assert step.status == "cancelled"
        assert store.cell_executions(step.id)[-1].error_name == "KeyboardInterrupt"
    code, answer = await post(jp_fetch, "pipeline-runs", rid, "cancel")
    assert code == 409 and answer["code"] == "conflict"
    code, answer = await post(jp_fetch, "pipeline-runs", "f" * 32, "cancel")
    assert code == 404 and answer["code"] == "not_found"


async def test_launch_limit_and_a_launcher_that_dies_before_the_run_exists(
    jp_fetch: Any, jp_serverapp: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    service = app_of(jp_serverapp).service
    monkeypatch.setattr(service.launcher, "max_running", 1)
    fake = {"cmd": [sys.executable, "-c", "import time; time.sleep(60)"]}
    monkeypatch.setattr(launcher_module, "launch_command", lambda *a, **k: fake["cmd"])
    first = await start(jp_fetch, "two/pipeline.yaml")
    code, answer = await post(jp_fetch, "pipelines", "run", body={"path": "two/pipeline.yaml"})
    assert code == 429 and answer["code"] == "too_many_runs"
    starting = await get(jp_fetch, "pipeline-runs", first)
    assert starting["status"] == "starting" and starting["run"] is None
    assert states(starting) == {"a": "pending", "b": "pending"}
    code, _ = await post(jp_fetch, "pipeline-runs", first, "cancel")
    assert code == 202
    gone = await wait_run(jp_fetch, first, lambda s: s["done"], timeout=10)
    assert gone["status"] == "cancelled" and states(gone) == {"a": "cancelled", "b": "cancelled"}
    launch = service.launcher.get(first)
    assert launch is not None and launch.proc.returncode is not None  # reaped: no zombie

    fake["cmd"] = [sys.executable, "-c",
                   "import sys; print('Error: two/pipeline.yaml:1:1: it broke'); sys.exit(2)"]
    broke = await wait_run(jp_fetch, await start(jp_fetch, "two/pipeline.yaml"), timeout=10)
    assert broke["status"] == "failed" and broke["run"] is None
    assert states(broke) == {"a": "skipped", "b": "skipped"}
    assert broke["launcher"]["exit_code"] == 2
    assert broke["launcher"]["log_tail"] == ["Error: two/pipeline.yaml:1:1: it broke"]


# -- authentication, authorization, XSRF -----------------------------------------------------

NEW_ENDPOINTS = [("GET", ("pipelines",)), ("GET", ("pipeline-runs", "abcd")),
                 ("POST", ("pipelines", "run")), ("POST", ("pipeline-runs", "abcd", "cancel"))]


@pytest.mark.parametrize("method, parts", NEW_ENDPOINTS, ids=lambda v: "/".join(v) if isinstance(v, tuple) else v)
async def test_every_pipeline_endpoint_needs_a_token(jp_fetch: Any, method: str,
                                                     parts: tuple[str, ...]) -> None:
    with pytest.raises(HTTPClientError) as info:
        await jp_fetch("nbmlops", "api", *parts, method=method, headers={"Authorization": ""},
                       body=json.dumps({"path": "two/pipeline.yaml"}) if method == "POST" else None)
    assert info.value.code == 403


async def test_post_needs_the_xsrf_token_when_authenticated_by_cookie(
    jp_fetch: Any, pipes: dict[str, Any]
) -> None:
    resp = await jp_fetch("nbmlops", "api", "status", method="GET")  # token: sets the login cookie
    cookies = [c.split(";", 1)[0] for c in resp.headers.get_list("Set-Cookie")]
    assert cookies, "no login cookie"
    body = json.dumps({"path": "notes.txt"})  # refused after the XSRF check: nothing starts
    bare = {"Authorization": "", "Cookie": "; ".join(cookies)}
    code, answer = await post(jp_fetch, "pipelines", "run", body=body, headers=bare)
    assert code == 403 and "xsrf" in json.dumps(answer).lower()
    with_xsrf = {"Authorization": "", "Cookie": "; ".join([*cookies, "_xsrf=abc123"]),
                 "X-XSRFToken": "abc123"}
    code, answer = await post(jp_fetch, "pipelines", "run", body=body, headers=with_xsrf)
    assert code == 400 and "not a pipeline definition" in answer["message"]


async def test_the_authorizer_is_asked_to_write_nbmlops_for_a_start(
    jp_fetch: Any, jp_serverapp: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    asked: list[tuple[str, str]] = []

    def deny_writes(handler: Any, user: Any, action: str, resource: str) -> bool:
        asked.append((action, resource))
        return not (resource == "nbmlops" and action == "write")

    monkeypatch.setattr(jp_serverapp.authorizer, "is_authorized", deny_writes)
    code, _ = await post(jp_fetch, "pipelines", "run", body={"path": "two/pipeline.yaml"})
    assert code == 403 and ("write", "nbmlops") in asked
    assert (await get(jp_fetch, "pipelines"))["pipelines"]  # reading is still allowed


async def test_get_is_not_an_action_and_other_paths_stay_404(jp_fetch: Any) -> None:
    code, _, _ = await get_error(jp_fetch, "pipelines", "run")
    assert code == 405
    code, body, _ = await get_error(jp_fetch, "pipelines-nope")
    assert code == 404 and body["code"] == "not_found"


for _name, _fn in list(globals().items()):
    if _name.startswith("test_") and inspect.iscoroutinefunction(_fn):
        globals()[_name] = _run_on_loop(_fn)


# -- a store being created by another process (the 503 flake of issue 14) -------------------

_CREATOR = """
import sys
from nbmlops.store import Store
from nbmlops.config import resolve_location
with Store(resolve_location(sys.argv[1], None, None)) as s:
    for _ in range(5):
        s.end_run(s.create_run(name='p', source='pipeline'), 'finished')
"""


def test_panel_reads_while_another_process_creates_the_store_never_see_a_half_made_store(
    tmp_path: Path,
) -> None:
    """A server read racing the creation of a store waits for the creator's migration: it
    never answers "no such table", never keeps a store at revision "empty", and the first
    read after the creator is done sees every run (it failed: hundreds of 503s per store)."""
    import subprocess

    from nbmlops.server.service import RunQuery, StoreService
    from nbmlops.store.engine import SCHEMA_HEAD

    problems: list[str] = []
    for i in range(3):
        url = f"sqlite:///{tmp_path / str(i) / 'nbmlops.db'}"
        service = StoreService(tmp_path, store_url=url)
        creator = subprocess.Popen([sys.executable, "-c", _CREATOR, url])
        try:
            while True:
                done = creator.poll() is not None
                status = service.status()
                if status["ok"] and status["store"]["revision"] != SCHEMA_HEAD:
                    problems.append(f"kept at revision {status['store']['revision']}")
                elif not status["ok"] and status["code"] != "store_missing" \
                        and "being created" not in status["message"]:
                    problems.append(status["message"])
                if done:
                    break
            assert creator.returncode == 0
            assert service.runs(RunQuery())["total"] == 5
        finally:
            creator.wait()
            service.close()
    assert problems == []
