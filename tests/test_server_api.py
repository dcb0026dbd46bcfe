"""The REST API of the server extension, through a real Jupyter server (pytest-jupyter).

The store is filled by executing real notebooks in real kernels (reading a CSV, fitting a model,
writing it with joblib), so the API is tested against what capture really records.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import json
import re
import sqlite3
import time
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("jupyter_server")
pytest.importorskip("pytest_jupyter")

# pytest-jupyter's fixtures for this module only. Registering it as a plugin
# (`pytest_plugins`) would make its autouse event-loop fixture and its test-call hook apply to
# every test of the session (and break the Playwright browser tests).
from pytest_jupyter.jupyter_server import *  # noqa: E402, F403
from tornado.httpclient import HTTPClientError  # noqa: E402

from nbmlops.server import _jupyter_server_extension_points  # noqa: E402
from nbmlops.server.app import NbmlopsServerApp  # noqa: E402
from nbmlops.store import Store  # noqa: E402

from ._server import jp_server_config  # noqa: E402, F401  (overrides pytest-jupyter's)
from .conftest import make_notebook  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
SECRET = "TOPSECRET-3b1f"

TRAIN = [
    ("C = 1.0", ["parameters"]),
    "import pandas as pd\nimport joblib\nfrom sklearn.linear_model import LogisticRegression\n"
    "from sklearn.metrics import accuracy_score\nimport nbmlops",
    "df = pd.read_csv('data/wine.csv')\nX = df[['a', 'b']]\ny = df['label']",
    "model = LogisticRegression(C=C, max_iter=200).fit(X, y)",
    "acc = accuracy_score(y, model.predict(X))\nnbmlops.log_param('C', C)",
    "joblib.dump(model, 'models/model.joblib')",
    "X = X * 2",  # redefines X after the model cell used it: that cell is now stale
]


def _csv(n: int = 40) -> str:
    rows = ["a,b,label"] + [f"{i % 7},{(i * 3) % 11},{int(i % 7 > 3)}" for i in range(n)]
    return "\n".join(rows) + "\n"


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A server root with a store holding two runs of train.ipynb (C=1.0 and C=0.1)."""
    from nbmlops.execute import execute_notebook

    base = tmp_path_factory.mktemp("served")
    root = base / "root"
    (root / "data").mkdir(parents=True)
    (root / "models").mkdir()
    (root / "data" / "wine.csv").write_text(_csv())
    outside = base / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_text(SECRET)
    (root / "link_out").symlink_to(outside, target_is_directory=True)
    url = f"sqlite:///{root / '.nbmlops' / 'nbmlops.db'}"
    nb = make_notebook(root / "train.ipynb", TRAIN)
    env = {"NBMLOPS_ARTIFACT_URL": str(root / ".nbmlops" / "artifacts")}
    first = execute_notebook(nb, base / "out1.ipynb", store_url=url, env=env, timeout=120)
    second = execute_notebook(nb, base / "out2.ipynb", store_url=url, env=env, timeout=120,
                              parameters={"C": 0.1})
    # a run that read the secret file outside the root (recorded by uri only)
    reader = make_notebook(root / "reader.ipynb",
                           [f"text = open({str(outside / 'secret.txt')!r}).read()"])
    third = execute_notebook(reader, base / "out3.ipynb", store_url=url, env=env, timeout=120)
    assert first.status == second.status == third.status == "finished", (first, second, third)
    return {"root": root, "url": url, "runs": [first.run_id, second.run_id],
            "reader": third.run_id, "outside": outside}


@pytest.fixture
def jp_root_dir(request: pytest.FixtureRequest, tmp_path: Path) -> Path:
    if "fresh_root" in request.fixturenames:
        root = tmp_path / "fresh"
        root.mkdir()
        return root
    return request.getfixturevalue("served")["root"]


async def get(jp_fetch: Any, *parts: str, **params: Any) -> Any:
    response = await jp_fetch("nbmlops", "api", *parts, params=params, method="GET")
    assert response.headers["Content-Type"].startswith("application/json")
    return json.loads(response.body)


async def get_error(jp_fetch: Any, *parts: str, headers: dict[str, str] | None = None,
                    **params: Any) -> tuple[int, Any, str]:
    with pytest.raises(HTTPClientError) as info:
        await jp_fetch("nbmlops", "api", *parts, params=params, method="GET", headers=headers)
    resp = info.value.response
    assert resp is not None
    body = resp.body.decode("utf-8", "replace")
    try:
        data = json.loads(body)
    except ValueError:
        data = None
    return info.value.code, data, body


# -- status, runs, one run ---------------------------------------------------------------------


async def test_status_reports_a_usable_store(jp_fetch: Any) -> None:
    status = await get(jp_fetch, "status")
    assert status["ok"] is True and status["code"] is None
    assert status["store"]["backend"] == "sqlite"
    assert status["store"]["location"] == ".nbmlops/nbmlops.db"  # relative to the root
    assert status["store"]["revision"]
    assert status["api_version"] == 1


async def test_runs_lists_filters_sorts_and_pages(jp_fetch: Any, served: dict[str, Any]) -> None:
    page = await get(jp_fetch, "runs")
    assert page["total"] == 3 and page["limit"] == 50 and page["offset"] == 0
    first, second = served["runs"]
    assert [r["id"] for r in page["runs"]][:2] == [served["reader"], second]  # newest first
    run = next(r for r in page["runs"] if r["id"] == first)
    assert run["notebook"] == "train.ipynb" and run["status"] == "finished"
    assert run["params"]["C"] == "1.0" and 0 < run["metrics"]["acc"] <= 1
    assert run["cell_count"] == len(TRAIN)

    train = await get(jp_fetch, "runs", notebook="train.ipynb")
    assert {r["id"] for r in train["runs"]} == {first, second}
    assert (await get(jp_fetch, "runs", search="reader"))["total"] == 1
    assert (await get(jp_fetch, "runs", status="failed"))["total"] == 0
    assert (await get(jp_fetch, "runs", experiment="nope"))["total"] == 0
    oldest = await get(jp_fetch, "runs", sort="start_time", order="asc", limit=1, offset=0)
    assert [r["id"] for r in oldest["runs"]] == [first] and oldest["total"] == 3
    paged = await get(jp_fetch, "runs", sort="start_time", order="asc", limit=1, offset=1)
    assert [r["id"] for r in paged["runs"]] == [second]
    by_name = await get(jp_fetch, "runs", sort="name", order="asc")
    assert [r["name"] for r in by_name["runs"]] == sorted(r["name"] for r in by_name["runs"])


@pytest.mark.parametrize("params, needle", [
    ({"limit": "0"}, "limit"),
    ({"limit": "abc"}, "limit"),
    ({"limit": "100000"}, "limit"),
    ({"offset": "-1"}, "offset"),
    ({"sort": "params.C"}, "sort"),
    ({"order": "up"}, "order"),
    ({"status": "done"}, "status"),
    ({"source": "cron"}, "source"),
    ({"limt": "5"}, "unknown query parameter"),
])
async def test_runs_bad_parameters_are_400(jp_fetch: Any, params: dict[str, str], needle: str) -> None:
    code, body, _ = await get_error(jp_fetch, "runs", **params)
    assert code == 400
    assert body["code"] == "bad_request" and needle in body["message"]


async def test_one_run_has_params_metrics_tags_environment(
    jp_fetch: Any, served: dict[str, Any]
) -> None:
    rid = served["runs"][1]
    run = await get(jp_fetch, "runs", rid)
    assert run["id"] == rid and run["params"]["C"] == "0.1"
    assert "acc" in run["metrics"]
    assert "nbmlops.capture_ms" in run["tags"] or run["tags"] is not None
    assert run["environment"]["python"]
    assert "git_commit" in run and "notebook_hash" in run
    assert (await get(jp_fetch, "runs", rid[:8]))["id"] == rid  # unique prefix


@pytest.mark.parametrize("run_id", ["0123456789abcdef0123456789abcdef", "zzzz", "ab"])
async def test_unknown_run_is_404_json(jp_fetch: Any, run_id: str) -> None:
    for parts in (("runs", run_id), ("runs", run_id, "cells")):
        code, body, _ = await get_error(jp_fetch, *parts)
        assert code == 404 and body["code"] == "not_found" and body["status"] == 404


async def test_unknown_endpoint_is_404_json(jp_fetch: Any) -> None:
    code, body, _ = await get_error(jp_fetch, "no-such-endpoint")
    assert code == 404 and body["code"] == "not_found"


# -- cells and the notebook view ---------------------------------------------------------------


async def test_cells_of_a_run_with_io_models_metrics_and_stale_marks(
    jp_fetch: Any, served: dict[str, Any]
) -> None:
    rid = served["runs"][0]
    got = await get(jp_fetch, "runs", rid, "cells")
    cells = got["cells"]
    assert [c["seq"] for c in cells] == sorted(c["seq"] for c in cells) and len(cells) == len(TRAIN)
    assert got["last_seq"] == cells[-1]["seq"]
    assert all(c["cell_id"] for c in cells)
    read = next(c for c in cells if c["reads"])
    assert read["reads"][0]["path"] == "data/wine.csv" and read["reads"][0]["kind"] == "dataset"
    fit = next(c for c in cells if c["models"])
    assert fit["models"][0]["class_name"].endswith("LogisticRegression")
    assert "C" in fit["models"][0]["params"]
    metric = next(c for c in cells if c["metrics"])
    assert metric["metrics"][0]["key"] == "acc"
    assert metric["params"] == {"C": "1.0"}
    wrote = next(c for c in cells if c["writes"])
    assert wrote["writes"][0]["path"] == "models/model.joblib"
    # `X = X * 2` ran after the model cell used X: the model cell is stale, the last one is not
    assert any(r["kind"] == "variable" and r["name"] == "X" for r in fit["stale"]), fit["stale"]
    assert cells[-1]["stale"] == []
    assert got["marks"][str(fit["seq"])]["stale"] == fit["stale"]

    later = await get(jp_fetch, "runs", rid, "cells", since_seq=str(fit["seq"]))
    assert [c["seq"] for c in later["cells"]] == [c["seq"] for c in cells if c["seq"] > fit["seq"]]
    assert set(later["marks"]) == {str(c["seq"]) for c in cells}  # marks cover every row
    idle = await get(jp_fetch, "runs", rid, "cells", since_seq=str(got["last_seq"]))
    assert idle["cells"] == [] and idle["marks"] is None and idle["last_seq"] == got["last_seq"]

    for bad in ("-2", "x", "1.5"):
        code, body, _ = await get_error(jp_fetch, "runs", rid, "cells", since_seq=bad)
        assert code == 400 and "since_seq" in body["message"]


async def test_notebook_run_is_the_latest_run_of_that_notebook(
    jp_fetch: Any, served: dict[str, Any]
) -> None:
    first, second = served["runs"]
    got = await get(jp_fetch, "notebook-run", path="train.ipynb")
    assert got["run"]["id"] == second and got["new_run"] is True
    assert len(got["cells"]) == len(TRAIN) + 1  # papermill injected a parameters cell
    assert got["last_seq"] == got["cells"][-1]["seq"]
    again = await get(jp_fetch, "notebook-run", path="train.ipynb", run_id=second,
                      since_seq=str(got["last_seq"]))
    assert again["new_run"] is False and again["cells"] == [] and again["marks"] is None
    switched = await get(jp_fetch, "notebook-run", path="train.ipynb", run_id=first,
                         since_seq="3")
    assert switched["new_run"] is True and switched["run"]["id"] == second
    assert len(switched["cells"]) == len(TRAIN) + 1
    never = await get(jp_fetch, "notebook-run", path="never-run.ipynb")
    assert never["run"] is None and never["cells"] == [] and never["last_seq"] == -1
    code, body, _ = await get_error(jp_fetch, "notebook-run")
    assert code == 400 and "path" in body["message"]


# -- lineage and compare -----------------------------------------------------------------------


async def test_lineage_of_a_model_file_reaches_the_csv(jp_fetch: Any) -> None:
    graph = await get(jp_fetch, "lineage", target="models/model.joblib")
    types = {n["type"] for n in graph["nodes"]}
    assert {"artifact", "cell", "estimator"} <= types
    paths = {n["attrs"].get("path") for n in graph["nodes"] if n["type"] == "artifact"}
    assert {"models/model.joblib", "data/wine.csv"} <= paths
    ids = {n["id"] for n in graph["nodes"]}
    assert graph["root"] in ids
    assert all(e["source"] in ids and e["target"] in ids for e in graph["edges"])
    by_id = await get(jp_fetch, "lineage", target=graph["root"], direction="both", depth="3")
    assert by_id["root"] == graph["root"]
    down = await get(jp_fetch, "lineage", target="data/wine.csv", direction="downstream")
    assert any(n["type"] == "cell" for n in down["nodes"])


@pytest.mark.parametrize("params, status", [
    ({}, 400),
    ({"target": "data/wine.csv", "direction": "sideways"}, 400),
    ({"target": "data/wine.csv", "depth": "0"}, 400),
    ({"target": "data/wine.csv", "include_code": "maybe"}, 400),
    ({"target": "never/recorded.csv"}, 404),
    ({"target": "artifact:999999"}, 404),
])
async def test_lineage_bad_input(jp_fetch: Any, params: dict[str, str], status: int) -> None:
    code, body, _ = await get_error(jp_fetch, "lineage", **params)
    assert code == status and body["message"]


TRAVERSALS = [
    "../../etc/passwd",
    "/etc/passwd",
    "data/../../outside/secret.txt",
    "link_out/secret.txt",  # a symlink inside the root that leads out of it
    "..",
    "~/secret.txt",
    "C:\\Windows\\win.ini",
]


@pytest.mark.parametrize("target", TRAVERSALS)
async def test_paths_outside_the_root_are_refused(
    jp_fetch: Any, served: dict[str, Any], target: str
) -> None:
    for endpoint, key in (("lineage", "target"), ("notebook-run", "path"), ("runs", "path"),
                          ("status", "path")):
        code, body, raw = await get_error(jp_fetch, endpoint, **{key: target})
        assert code in (403, 404), (endpoint, target, code, raw)
        assert SECRET not in raw and "root:x:0:0" not in raw
        if code == 403:
            assert body["code"] == "outside_root"


async def test_nul_in_a_path_is_400(jp_fetch: Any) -> None:
    code, _, _ = await get_error(jp_fetch, "lineage", target="data/wine.csv\x00.txt")
    assert code == 400


async def test_compare_runs(jp_fetch: Any, served: dict[str, Any]) -> None:
    first, second = served["runs"]
    cmp = await get(jp_fetch, "compare", ids=f"{first},{second}")
    assert [r["id"] for r in cmp["runs"]] == [first, second]
    assert cmp["params"]["C"] == ["1.0", "0.1"] and "C" in cmp["params_differ"]
    assert len(cmp["metrics"]["acc"]) == 2
    code, body, _ = await get_error(jp_fetch, "compare", ids=first)
    assert code == 400 and "two" in body["message"]
    code, _, _ = await get_error(jp_fetch, "compare", ids=f"{first},<script>")
    assert code == 400
    code, _, _ = await get_error(jp_fetch, "compare", ids=",".join([first] * 21))
    assert code == 400
    code, body, _ = await get_error(jp_fetch, "compare", ids=f"{first},{'f' * 32}")
    assert code == 404


# -- authentication, authorization, methods ----------------------------------------------------

ENDPOINTS = [("status",), ("runs",), ("runs", "abcd"), ("runs", "abcd", "cells"),
             ("notebook-run",), ("lineage",), ("compare",), ("nothing",)]


@pytest.mark.parametrize("parts", ENDPOINTS, ids="/".join)
async def test_every_endpoint_needs_a_token(jp_fetch: Any, parts: tuple[str, ...]) -> None:
    code, _, raw = await get_error(jp_fetch, *parts, headers={"Authorization": ""})
    assert code == 403
    assert "nbmlops.db" not in raw


async def test_authorizer_is_asked_for_the_nbmlops_resource(
    jp_fetch: Any, jp_serverapp: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    asked: list[tuple[str, str]] = []

    def deny(handler: Any, user: Any, action: str, resource: str) -> bool:
        asked.append((action, resource))
        return resource != "nbmlops"

    monkeypatch.setattr(jp_serverapp.authorizer, "is_authorized", deny)
    code, _, _ = await get_error(jp_fetch, "runs")
    assert code == 403 and ("read", "nbmlops") in asked


async def test_writes_are_not_accepted(jp_fetch: Any) -> None:
    with pytest.raises(HTTPClientError) as info:
        await jp_fetch("nbmlops", "api", "runs", method="POST", body="{}")
    assert info.value.code in (403, 405)


async def test_store_work_does_not_block_the_event_loop(
    jp_fetch: Any, jp_serverapp: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    ext = jp_serverapp.extension_manager.extension_apps["nbmlops.server"]
    app = next(iter(ext))
    assert isinstance(app, NbmlopsServerApp)

    def slow_status(path: Any = None) -> dict[str, Any]:
        time.sleep(0.8)
        return {"ok": True}

    monkeypatch.setattr(app.service, "status", slow_status)
    slow = asyncio.ensure_future(jp_fetch("nbmlops", "api", "status", method="GET"))
    await asyncio.sleep(0.05)
    started = time.perf_counter()
    await jp_fetch("api", "status", method="GET")  # Jupyter's own handler, same event loop
    assert time.perf_counter() - started < 0.5
    assert json.loads((await slow).body) == {"ok": True}


# -- missing and locked stores ------------------------------------------------------------------


async def test_missing_store_is_reported_and_picked_up_when_it_appears(
    fresh_root: None, jp_fetch: Any, jp_root_dir: Path
) -> None:
    status = await get(jp_fetch, "status")
    assert status["ok"] is False and status["code"] == "store_missing"
    assert "%load_ext nbmlops" in status["message"]
    code, body, _ = await get_error(jp_fetch, "runs")
    assert code == 503 and body["code"] == "store_missing"
    assert not (jp_root_dir / ".nbmlops").exists()  # looking never creates a store

    with Store.open(f"sqlite:///{jp_root_dir / '.nbmlops' / 'nbmlops.db'}") as store:
        rid = store.create_run(name="appeared")
    assert (await get(jp_fetch, "status"))["ok"] is True  # no restart needed
    assert [r["id"] for r in (await get(jp_fetch, "runs"))["runs"]] == [rid]


async def test_locked_store_is_reported_and_recovers(
    fresh_root: None, jp_fetch: Any, jp_root_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    db = jp_root_dir / ".nbmlops" / "nbmlops.db"
    with Store.open(f"sqlite:///{db}") as store:
        store.create_run(name="locked-later")
    holder = sqlite3.connect(db, isolation_level=None)
    try:
        holder.execute("PRAGMA locking_mode = EXCLUSIVE")
        holder.execute("BEGIN EXCLUSIVE")
        holder.execute("CREATE TABLE _hold (x)")  # a write keeps the exclusive lock
        t0 = time.monotonic()
        status = await get(jp_fetch, "status")
        # the server's own lock wait (c.NbmlopsServerApp.lock_wait_ms, 1 s), not the kernels' 15 s
        assert time.monotonic() - t0 < 5
        assert status["ok"] is False and status["code"] == "store_unavailable"
        assert "locked" in status["message"]
        code, body, _ = await get_error(jp_fetch, "runs")
        assert code == 503 and body["code"] == "store_unavailable"
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert (await get(jp_fetch, "status"))["ok"] is True
    assert (await get(jp_fetch, "runs"))["total"] == 1


# -- contract: docs, TypeScript types and responses agree --------------------------------------


def _doc_fields() -> dict[str, set[str]]:
    """``### Name`` sections of docs/server-api.md with their ``| `field` |`` table rows."""
    text = (REPO / "docs" / "server-api.md").read_text()
    out: dict[str, set[str]] = {}
    for section in re.split(r"^### ", text, flags=re.M)[1:]:
        name = section.split("\n", 1)[0].strip().strip("`")
        fields = set(re.findall(r"^\| `([a-z_]+)` \|", section, flags=re.M))
        if fields:
            out[name] = fields
    return out


def _ts_fields() -> dict[str, set[str]]:
    text = (REPO / "labextension" / "src" / "types.ts").read_text()
    out: dict[str, set[str]] = {}
    for name, body in re.findall(r"export interface (\w+)(?: extends \w+)? \{(.*?)\n\}", text, re.S):
        out[name] = set(re.findall(r"^\s+(\w+)\??:", body, flags=re.M))
    for name, parent in re.findall(r"export interface (\w+) extends (\w+)", text):
        out[name] |= out.get(parent, set())
    return out


async def test_docs_types_and_responses_agree(jp_fetch: Any, served: dict[str, Any]) -> None:
    first, second = served["runs"]
    cells = await get(jp_fetch, "runs", first, "cells")
    fit = next(c for c in cells["cells"] if c["models"])
    read = next(c for c in cells["cells"] if c["reads"])
    metric = next(c for c in cells["cells"] if c["metrics"])
    graph = await get(jp_fetch, "lineage", target="models/model.joblib")
    samples: dict[str, dict[str, Any]] = {
        "Status": await get(jp_fetch, "status"),
        "StoreInfo": (await get(jp_fetch, "status"))["store"],
        "RunPage": await get(jp_fetch, "runs"),
        "RunSummary": (await get(jp_fetch, "runs"))["runs"][0],
        "RunDetail": await get(jp_fetch, "runs", first),
        "CellPage": cells,
        "Cell": fit,
        "ArtifactRef": read["reads"][0],
        "Metric": metric["metrics"][0],
        "Model": fit["models"][0],
        "StaleReason": fit["stale"][0],
        "CellMarks": cells["marks"][str(fit["seq"])],
        "NotebookRun": await get(jp_fetch, "notebook-run", path="train.ipynb"),
        "LineageGraph": graph,
        "LineageNode": graph["nodes"][0],
        "LineageEdge": graph["edges"][0],
        "Comparison": await get(jp_fetch, "compare", ids=f"{first},{second}"),
        "ApiError": (await get_error(jp_fetch, "runs", limit="0"))[1],
    }
    docs, ts = _doc_fields(), _ts_fields()
    for name, sample in samples.items():
        assert set(sample) == docs.get(name), f"docs/server-api.md section {name}"
        assert set(sample) == ts.get(name), f"labextension/src/types.ts interface {name}"


def test_the_extension_is_enabled_by_the_shipped_config() -> None:
    conf = json.loads((REPO / "jupyter-config" / "server-config" / "nbmlops.json").read_text())
    assert conf == {"ServerApp": {"jpserver_extensions": {"nbmlops.server": True}}}
    (point,) = _jupyter_server_extension_points()
    assert point == {"module": "nbmlops.server", "app": NbmlopsServerApp}


def test_server_package_imports_no_sqlalchemy() -> None:
    import ast

    for path in (REPO / "nbmlops" / "server").glob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            assert not any(n.startswith(("sqlalchemy", "sqlite3")) for n in names), path


def _run_on_loop(fn: Any) -> Any:
    """A sync test running the async test ``fn`` on pytest-jupyter's loop (it serves the app)."""
    sig = inspect.signature(fn)
    has_loop = "jp_asyncio_loop" in sig.parameters
    params = list(sig.parameters.values())
    if not has_loop:
        params.append(inspect.Parameter("jp_asyncio_loop", inspect.Parameter.KEYWORD_ONLY))

    @functools.wraps(fn)
    def test(*args: Any, **kwargs: Any) -> None:
        loop = kwargs["jp_asyncio_loop"] if has_loop else kwargs.pop("jp_asyncio_loop")
        loop.run_until_complete(fn(*args, **kwargs))

    test.__signature__ = sig.replace(parameters=params)  # type: ignore[attr-defined]
    return test


for _name, _fn in list(globals().items()):
    if _name.startswith("test_") and inspect.iscoroutinefunction(_fn):
        globals()[_name] = _run_on_loop(_fn)
