"""The model registry and data validations through the REST API: a real Jupyter server
(pytest-jupyter, loaded like tests/test_server_api.py does) over a real SQLite store holding a
run whose cells ran validations (recorded through ``store.validations.record``) and a model
registered and gated through the real registry (``nbmlops.registry``: scikit-learn models,
``gate`` scoring them on held-out data).
"""

from __future__ import annotations

import inspect
import json
import shutil
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("jupyter_server")
pytest.importorskip("pytest_jupyter")
pytest.importorskip("sklearn")

# pytest-jupyter's fixtures for this module only (see tests/test_server_api.py)
from pytest_jupyter.jupyter_server import *  # noqa: E402, F403
from tornado.httpclient import HTTPClientError  # noqa: E402

from nbmlops.store import CellRecord, Store  # noqa: E402

from ._server import jp_server_config  # noqa: E402, F401  (overrides pytest-jupyter's)
from .test_server_api import (  # noqa: E402
    _doc_fields,
    _run_on_loop,
    _ts_fields,
    get,
    get_error,
)
from .test_server_pipelines import post  # noqa: E402

pytestmark = [pytest.mark.timeout(120)]
XSS = "<img src=x onerror=alert(1)>"


def store_of(root: Path) -> Store:
    d = root / ".nbmlops"
    return Store.open(f"sqlite:///{d / 'nbmlops.db'}", d / "artifacts")


def violations(n: int) -> list[dict[str, Any]]:
    return [{"column": f"c{i}", "check": "range", "expected": [0, 1], "observed": 2 + i}
            for i in range(n)]


def build_project(root: Path) -> dict[str, Any]:
    """A store with a run of three cells (cell 1 validated ok, cell 2 failed twice, one of them
    with 150 violations) and a model ``wine``: v1 gated in (champion), v2 gated and rejected,
    v3 registered without an alias."""
    import numpy as np
    from sklearn.datasets import load_wine
    from sklearn.dummy import DummyClassifier
    from sklearn.linear_model import LogisticRegression

    from nbmlops.registry import register
    from nbmlops.registry.gate import gate

    root.mkdir(parents=True, exist_ok=True)
    X, y = load_wine(return_X_y=True)
    rng = np.random.default_rng(0)
    order = rng.permutation(len(y))
    X, y = X[order], y[order]
    good = LogisticRegression(max_iter=5000).fit(X[:120], y[:120])
    worse = DummyClassifier(strategy="most_frequent").fit(X[:120], y[:120])
    with store_of(root) as store:
        rid = store.create_run(name="train", source="papermill",
                               notebook_path=str(root / "train.ipynb"))
        store.record_cells(rid, [
            CellRecord(seq=i, source=src, start_time=1_700_000_000.0 + i, duration=0.1,
                       status="ok", cell_id=f"c{i}", execution_count=i + 1)
            for i, src in enumerate(["import nbmlops", "nbmlops.validate(train, against=ref)",
                                     "nbmlops.validate(new, against=ref)"])
        ])
        store.validations.record(passed=True, data_label="data/train.csv",
                                 reference_label="data/ref.csv", rows=100, run_id=rid, cell_seq=1,
                                 summary={"checks": 12})
        store.validations.record(passed=False, data_label=XSS, reference_label="schema:ref",
                                 rows=50, run_id=rid, cell_seq=2, violations=violations(2))
        store.validations.record(passed=False, data_label="data/new.csv",
                                 reference_label="data/ref.csv", rows=50, run_id=rid, cell_seq=2,
                                 violations=violations(150))
        first = gate(good, name="wine", metric="accuracy", X=X[120:], y=y[120:], store=store,
                     reason=XSS)
        second = gate(worse, name="wine", metric="accuracy", X=X[120:], y=y[120:], store=store)
        third = register(store, good, "wine", namespace={}, reason="plain registration")
    assert first.promoted and not second.promoted and third.version == 3
    return {"root": root, "run": rid}


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    return build_project(tmp_path_factory.mktemp("models") / "root")


@pytest.fixture
def project(template: dict[str, Any], tmp_path: Path) -> dict[str, Any]:
    """A copy of the template project per test (promote and rollback change the store)."""
    root = tmp_path / "root"
    shutil.copytree(template["root"], root)
    return {**template, "root": root}


@pytest.fixture
def jp_root_dir(request: pytest.FixtureRequest, tmp_path: Path) -> Path:
    if "fresh_root" in request.fixturenames:
        root = tmp_path / "fresh"
        root.mkdir()
        return root
    return Path(request.getfixturevalue("project")["root"])


async def wine(jp_fetch: Any) -> dict[str, Any]:
    return dict(await get(jp_fetch, "models", "wine"))


# -- validations on cell rows -------------------------------------------------------------------


async def test_cells_carry_their_validations_with_counts_and_capped_details(
    jp_fetch: Any, project: dict[str, Any]
) -> None:
    cells = (await get(jp_fetch, "runs", project["run"], "cells"))["cells"]
    assert [len(c["validations"]) for c in cells] == [0, 1, 2]
    ok = cells[1]["validations"][0]
    assert ok["passed"] is True and ok["violation_count"] == 0 and ok["violations"] == []
    assert (ok["data_label"], ok["reference_label"], ok["rows"]) == ("data/train.csv",
                                                                    "data/ref.csv", 100)
    assert ok["summary"] == {"checks": 12}
    hostile, big = cells[2]["validations"]
    assert hostile["passed"] is False and hostile["data_label"] == XSS  # text, as recorded
    assert hostile["violations"] == violations(2) and hostile["violation_count"] == 2
    assert big["violation_count"] == 150 and len(big["violations"]) == 100

    # polling: a new cell comes with its validations; nothing new, nothing sent
    polled = await get(jp_fetch, "runs", project["run"], "cells", since_seq="1")
    assert [c["seq"] for c in polled["cells"]] == [2]
    assert len(polled["cells"][0]["validations"]) == 2
    idle = await get(jp_fetch, "runs", project["run"], "cells", since_seq="2")
    assert idle["cells"] == [] and idle["marks"] is None

    docs, ts = _doc_fields(), _ts_fields()
    for name, sample in {"Validation": big, "Violation": big["violations"][0],
                         "Cell": cells[2]}.items():
        assert set(sample) == docs.get(name), f"docs/server-api.md section {name}"
        assert set(sample) == ts.get(name), f"labextension/src/types.ts interface {name}"


# -- models: reads ------------------------------------------------------------------------------


async def test_models_list_and_one_model_with_versions_aliases_gates_and_history(
    jp_fetch: Any, project: dict[str, Any]
) -> None:
    listing = await get(jp_fetch, "models")
    assert [m["name"] for m in listing["models"]] == ["wine"]
    summary = listing["models"][0]
    assert summary["aliases"] == {"champion": 1}
    assert (summary["latest_version"], summary["version_count"]) == (3, 3)

    model = await wine(jp_fetch)
    assert [v["version"] for v in model["versions"]] == [3, 2, 1]  # newest first
    by_version = {v["version"]: v for v in model["versions"]}
    assert by_version[1]["aliases"] == ["champion"] and by_version[2]["aliases"] == []
    assert by_version[1]["uri"] == "models:/wine/1"
    assert by_version[1]["model_class"].endswith("LogisticRegression")
    assert by_version[1]["gate"]["decision"] == "promoted"
    rejected = by_version[2]["gate"]
    assert rejected["decision"] == "rejected" and rejected["metric"] == "accuracy"
    assert rejected["champion_version"] == 1
    assert rejected["candidate_score"] < rejected["champion_score"]
    assert rejected["rule"]["metric"] == "accuracy" and rejected["reasons"]
    assert by_version[3]["gate"] is None

    kinds = [(e["kind"], e["to_version"]) for e in model["events"]]  # oldest first
    assert kinds[0][0] == "register" and ("promote", 1) in kinds
    assert [k for k, _ in kinds].count("gate") == 2 and ("register", 3) in kinds
    assert model["events_truncated"] is False
    gate_events = [e for e in model["events"] if e["kind"] == "gate"]
    assert gate_events[0]["reason"] == XSS and gate_events[0]["gate"]["decision"] == "promoted"
    assert all(e["gate"] is None for e in model["events"] if e["kind"] != "gate")

    docs, ts = _doc_fields(), _ts_fields()
    samples = {"ModelList": listing, "ModelSummary": summary, "ModelDetail": model,
               "ModelVersionInfo": by_version[2], "ModelEventInfo": gate_events[0],
               "GateInfo": rejected}
    for name, sample in samples.items():
        assert set(sample) == docs.get(name), f"docs/server-api.md section {name}"
        assert set(sample) == ts.get(name), f"labextension/src/types.ts interface {name}"


# -- models: promote and rollback ---------------------------------------------------------------


async def test_promote_then_rollback_move_the_alias_with_one_audit_event_each(
    jp_fetch: Any, project: dict[str, Any], alice: str
) -> None:
    before = len((await wine(jp_fetch))["events"])
    code, answer = await post(jp_fetch, "models", "wine", "promote",
                              body={"version": 3, "reason": f"better on May data {XSS}"})
    assert code == 200, answer
    assert answer["changed"] is True and answer["version"] == 3
    assert answer["aliases"] == {"champion": 3}
    event = answer["event"]
    assert (event["kind"], event["alias"], event["from_version"], event["to_version"]) == (
        "promote", "champion", 1, 3)
    assert event["reason"] == f"better on May data {XSS}" and event["host"]
    assert event["user"] == alice  # the Jupyter user who clicked, not the server's OS user
    model = await wine(jp_fetch)
    assert len(model["events"]) == before + 1 and model["events"][-1] == event
    assert model["aliases"] == {"champion": 3}

    # the same again: nothing to change, no event
    code, again = await post(jp_fetch, "models", "wine", "promote", body={"version": "3"})
    assert code == 200 and again["changed"] is False and again["event"] is None
    assert len((await wine(jp_fetch))["events"]) == before + 1

    # another alias, then roll champion back to where it was
    code, other = await post(jp_fetch, "models", "wine", "promote",
                             body={"version": 2, "alias": "challenger"})
    assert code == 200 and other["aliases"] == {"challenger": 2, "champion": 3}
    code, back = await post(jp_fetch, "models", "wine", "rollback", body={"reason": "revert"})
    assert code == 200, back
    assert back["aliases"] == {"challenger": 2, "champion": 1}
    assert (back["event"]["kind"], back["event"]["from_version"], back["event"]["to_version"]) == (
        "rollback", 3, 1)
    assert back["event"]["user"] == alice
    docs, ts = _doc_fields(), _ts_fields()
    assert set(back) == docs.get("ModelChange") == ts.get("ModelChange")

    # nothing earlier to roll back to: 409 with the registry's message, nothing changed
    events = len((await wine(jp_fetch))["events"])
    code, refused = await post(jp_fetch, "models", "wine", "rollback", body={})
    assert code == 409 and refused["code"] == "conflict"
    assert "no earlier version" in refused["message"]
    after = await wine(jp_fetch)
    assert len(after["events"]) == events and after["aliases"] == {"challenger": 2, "champion": 1}


# -- bad input: one clear message, nothing changed ----------------------------------------------


BAD_POSTS = [
    (("models", "wine", "promote"), {"version": 99}, 404, "not_found", "version 99"),
    (("models", "nope", "promote"), {"version": 1}, 404, "not_found", "nope"),
    (("models", "nope", "rollback"), {}, 404, "not_found", "nope"),
    (("models", "wine", "promote"), {}, 400, "bad_request", "version is required"),
    (("models", "wine", "promote"), {"version": 0}, 400, "bad_request", "whole number"),
    (("models", "wine", "promote"), {"version": True}, 400, "bad_request", "whole number"),
    (("models", "wine", "promote"), {"version": "1.5"}, 400, "bad_request", "whole number"),
    (("models", "wine", "promote"), {"version": 1, "alias": "latest"}, 400, "bad_request",
     "invalid alias"),
    (("models", "wine", "promote"), {"version": 1, "alias": "9lives"}, 400, "bad_request",
     "invalid alias"),
    (("models", "wine", "promote"), {"version": 1, "reason": 5}, 400, "bad_request",
     "reason must be a string"),
    (("models", "wine", "promote"), {"version": 1, "reason": "x" * 2001}, 400, "bad_request",
     "longer than"),
    (("models", "wine", "promote"), {"version": 1, "force": True}, 400, "bad_request",
     "unknown field"),
    (("models", "wine", "rollback"), {"alias": "nobody"}, 409, "conflict", "no alias 'nobody'"),
    (("models", "wine", "rollback"), {"version": 1}, 400, "bad_request", "unknown field"),
    (("models", "wine", "promote"), "[1]", 400, "bad_request", "JSON object"),
    (("models", "wine", "promote"), "{not json", 400, "bad_request", "not valid JSON"),
    (("models", "bad name", "promote"), {"version": 1}, 400, "bad_request",
     "invalid model name"),
    (("models", "-x", "rollback"), {}, 400, "bad_request", "invalid model name"),
    (("models", "a" * 201, "promote"), {"version": 1}, 400, "bad_request",
     "invalid model name"),
]


@pytest.mark.parametrize("parts, body, status, code, needle", BAD_POSTS,
                         ids=[f"{'/'.join(p)[:30]}-{json.dumps(b)[:24]}" for p, b, *_ in BAD_POSTS])
async def test_bad_changes_are_refused_with_one_message_and_change_nothing(
    jp_fetch: Any, project: dict[str, Any], parts: tuple[str, ...], body: Any, status: int,
    code: str, needle: str,
) -> None:
    before = await wine(jp_fetch)
    got, answer = await post(jp_fetch, *parts, body=body)
    assert (got, answer["code"]) == (status, code), answer
    assert needle in answer["message"] and "\n" not in answer["message"]
    assert set(answer) == {"message", "code", "status"}
    assert await wine(jp_fetch) == before


@pytest.mark.parametrize("parts, params, status, needle", [
    (("models", "nope"), {}, 404, "nope"),
    (("models", "bad name"), {}, 400, "invalid model name"),
    (("models", "%3Cimg%3E"), {}, 400, "invalid model name"),
    (("models",), {"limit": "5"}, 400, "unknown"),
    (("models", "wine"), {"x": "1"}, 400, "unknown"),
])
async def test_bad_reads(jp_fetch: Any, project: dict[str, Any], parts: tuple[str, ...],
                         params: dict[str, str], status: int, needle: str) -> None:
    code, body, _ = await get_error(jp_fetch, *parts, **params)
    assert code == status and needle in body["message"], body


async def test_wrong_methods(jp_fetch: Any, project: dict[str, Any]) -> None:
    code, _, _ = await get_error(jp_fetch, "models", "wine", "promote")
    assert code == 405
    code, _ = await post(jp_fetch, "models", "wine", body={})
    assert code == 405


async def test_no_store_yet_is_503_store_missing(fresh_root: None, jp_fetch: Any,
                                                 jp_root_dir: Path) -> None:
    code, body, _ = await get_error(jp_fetch, "models")
    assert code == 503 and body["code"] == "store_missing"
    code, body = await post(jp_fetch, "models", "wine", "promote", body={"version": 1})
    assert code == 503 and body["code"] == "store_missing"
    assert not (jp_root_dir / ".nbmlops").exists()


# -- authentication, authorization, XSRF ---------------------------------------------------------

ENDPOINTS = [("GET", ("models",)), ("GET", ("models", "wine")),
             ("POST", ("models", "wine", "promote")), ("POST", ("models", "wine", "rollback"))]


@pytest.mark.parametrize("method, parts", ENDPOINTS,
                         ids=lambda v: "/".join(v) if isinstance(v, tuple) else v)
async def test_every_model_endpoint_needs_a_token(
    jp_fetch: Any, project: dict[str, Any], method: str, parts: tuple[str, ...]
) -> None:
    before = await wine(jp_fetch)
    with pytest.raises(HTTPClientError) as info:
        await jp_fetch("nbmlops", "api", *parts, method=method, headers={"Authorization": ""},
                       body='{"version": 3}' if method == "POST" else None)
    assert info.value.code == 403
    assert await wine(jp_fetch) == before


async def test_promote_needs_the_xsrf_token_when_authenticated_by_cookie(
    jp_fetch: Any, project: dict[str, Any]
) -> None:
    before = await wine(jp_fetch)
    resp = await jp_fetch("nbmlops", "api", "status", method="GET")  # token: sets the login cookie
    cookies = [c.split(";", 1)[0] for c in resp.headers.get_list("Set-Cookie")]
    assert cookies, "no login cookie"
    bare = {"Authorization": "", "Cookie": "; ".join(cookies)}
    code, answer = await post(jp_fetch, "models", "wine", "promote", body={"version": 3},
                              headers=bare)
    assert code == 403 and "xsrf" in json.dumps(answer).lower()
    assert await wine(jp_fetch) == before
    with_xsrf = {"Authorization": "", "Cookie": "; ".join([*cookies, "_xsrf=abc123"]),
                 "X-XSRFToken": "abc123"}
    code, answer = await post(jp_fetch, "models", "wine", "promote", body={"version": 3},
                              headers=with_xsrf)
    assert code == 200 and answer["aliases"] == {"champion": 3}


async def test_the_authorizer_is_asked_to_write_nbmlops_for_a_promote(
    jp_fetch: Any, jp_serverapp: Any, project: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    asked: list[tuple[str, str]] = []

    def deny_writes(handler: Any, user: Any, action: str, resource: str) -> bool:
        asked.append((action, resource))
        return not (resource == "nbmlops" and action == "write")

    before = await wine(jp_fetch)
    monkeypatch.setattr(jp_serverapp.authorizer, "is_authorized", deny_writes)
    for action, body in (("promote", {"version": 3}), ("rollback", {})):
        code, _ = await post(jp_fetch, "models", "wine", action, body=body)
        assert code == 403
    assert ("write", "nbmlops") in asked and ("read", "nbmlops") not in asked
    assert await wine(jp_fetch) == before  # reading is still allowed; nothing changed
    assert ("read", "nbmlops") in asked


for _name, _fn in list(globals().items()):
    if _name.startswith("test_") and inspect.iscoroutinefunction(_fn):
        globals()[_name] = _run_on_loop(_fn)
