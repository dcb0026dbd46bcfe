"""``nbmlops serve``: real ``nbmlops serve`` processes on loopback ports, in a temporary project
with real registered scikit-learn models; input checks also through Starlette's TestClient.

Each bad input gets one clear JSON error; faults (alias moved to a version that cannot load, the
store locked, SIGKILL while logging) leave a service that keeps answering and a readable log."""

from __future__ import annotations

import json
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sklearn.datasets import load_wine
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression

from nbmlops.registry import service
from nbmlops.store import Store

from ._scripts import clean_env, nbmlops, one_line_error, script

#: models registered in the shared project: name -> (v1, v2) estimators
NAMES = ("wine", "swap", "faults", "locked", "killed", "split", "shadow", "untyped")


@pytest.fixture(scope="module")
def wine() -> Any:
    frame = load_wine(as_frame=True).frame
    return frame.drop(columns=["target"]), frame["target"]


def _register(store: Store, model: Any, name: str, X: Any, y: Any) -> int:
    ns = {"In": ["model.fit(X, y)"], "model": model, "X": X, "y": y}
    return service.register(store, model, name, namespace=ns).version


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory, wine: Any) -> Path:
    """A project whose store holds every model of this module: v1 (champion) a RandomForest,
    v2 (challenger) a LogisticRegression; ``untyped`` has no dtypes in its signature."""
    root = tmp_path_factory.mktemp("serving")
    X, y = wine
    (root / ".nbmlops").mkdir()
    store = Store.open(f"sqlite:///{root / '.nbmlops' / 'nbmlops.db'}",
                       root / ".nbmlops" / "artifacts")
    rf = RandomForestClassifier(n_estimators=20, random_state=0).fit(X, y)
    lr = LogisticRegression(max_iter=5000).fit(X, y)
    for name in NAMES:
        if name == "untyped":
            service.register(store, rf, name, namespace={})
            service.promote(store, name, 1)
            continue
        _register(store, rf, name, X, y)
        _register(store, lr, name, X, y)
        service.promote(store, name, 1)
        service.set_alias(store, name, "challenger", 2)
    store.close()
    return root


def rows(X: Any, n: int = 1, start: int = 0) -> list[dict[str, Any]]:
    return [{k: (float(v)) for k, v in rec.items()}
            for rec in X.iloc[start:start + n].to_dict(orient="records")]


class Served:
    """A running ``nbmlops serve`` process and its base URL."""

    def __init__(self, proc: subprocess.Popen[str], url: str, err: Path) -> None:
        self.proc, self.url, self.err_path = proc, url, err
        self.client = httpx.Client(base_url=url, timeout=10)

    def predict(self, body: Any, *, proba: bool = False, rid: str | None = None,
                name: str | None = None, **kw: Any) -> httpx.Response:
        path = f"/v1/models/{name or self.name}/predict" + ("?proba=1" if proba else "")
        headers = {"X-Request-ID": rid} if rid else {}
        return self.client.post(path, json=body, headers=headers, **kw)

    @property
    def name(self) -> str:
        return self.client.get("/health").json()["model"]

    def stderr(self) -> str:
        return self.err_path.read_text()

    def stop(self, sig: int = signal.SIGTERM) -> int:
        self.client.close()
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            return self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait(5)


def serve(project: Path, *args: str, wait: bool = True) -> Served:
    err = project / f"serve-{time.time_ns()}.err"
    env = clean_env(NBMLOPS_LOG_LEVEL="INFO")
    proc = subprocess.Popen([script("nbmlops"), "serve", *args, "--port", "0"], cwd=project,
                            env=env, stdout=subprocess.DEVNULL, stderr=err.open("w"), text=True)
    deadline = time.monotonic() + 90
    url = None
    while time.monotonic() < deadline:
        m = re.search(r"on (http://127\.0\.0\.1:\d+)", err.read_text())
        if m:
            url = m.group(1)
            break
        if proc.poll() is not None:
            raise AssertionError(f"nbmlops serve exited {proc.returncode}: {err.read_text()}")
        time.sleep(0.05)
    assert url, err.read_text()
    served = Served(proc, url, err)
    while wait and time.monotonic() < deadline:
        try:
            if served.client.get("/health").status_code == 200:
                return served
        except httpx.TransportError:
            pass
        time.sleep(0.05)
    return served


@pytest.fixture(scope="module")
def wine_service(project: Path) -> Iterator[Served]:
    s = serve(project, "wine@champion")
    yield s
    # uvicorn shuts down cleanly, then ends by the signal it was sent
    assert s.stop() in (0, -signal.SIGTERM)
    # a clean shutdown removes the heartbeat
    assert not list((project / ".nbmlops" / "predictions" / "wine" / "_services").glob("*.json"))


def log_dir(project: Path, name: str) -> Path:
    return project / ".nbmlops" / "predictions" / name


def read_log(project: Path, name: str) -> Any:
    import pyarrow as pa
    import pyarrow.parquet as pq

    parts = sorted(log_dir(project, name).glob("*.parquet"))
    return pa.concat_tables([pq.read_table(p) for p in parts], promote_options="default"
                            ).to_pandas() if parts else None


def wait_for(cond: Any, timeout: float = 10.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = cond()
        if got is not None and got is not False:
            return got
        time.sleep(0.1)
    return cond()


# -- answers ------------------------------------------------------------------------------------


def test_records_columns_proba_and_the_routes(wine_service: Served, wine: Any,
                                              project: Path) -> None:
    X, y = wine
    r = wine_service.predict(rows(X, 3), rid="req-1")
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["model"] == "wine" and body["version"] == 1 and body["alias"] == "champion"
    assert body["request_id"] == "req-1" and r.headers["x-request-id"] == "req-1"
    assert body["predictions"] == [int(v) for v in y.iloc[:3]]
    assert "probabilities" not in body

    cols = {k: [float(v) for v in X[k].iloc[:2]] for k in X.columns}
    r = wine_service.predict(cols, proba=True)
    body = r.json()
    assert r.status_code == 200 and len(body["predictions"]) == 2
    assert body["classes"] == [0, 1, 2] and len(body["probabilities"][0]) == 3
    assert abs(sum(body["probabilities"][0]) - 1) < 1e-9
    assert re.fullmatch(r"[0-9a-f]{32}", r.headers["x-request-id"])  # generated when absent

    health = wine_service.client.get("/health")
    assert health.status_code == 200 and health.json()["routes"][0]["version"] == 1
    info = wine_service.client.get("/v1/models/wine").json()
    assert info["version"] == 1 and info["alias"] == "champion"
    assert [c["name"] for c in info["signature"]["inputs"]["columns"]] == list(X.columns)
    assert info["routes"][0]["uri"] == "models:/wine/1"
    assert wine_service.client.get("/v1/models/other").status_code == 404

    metrics = wine_service.client.get("/metrics")
    assert metrics.headers["content-type"].startswith("text/plain")
    text = metrics.text
    assert 'nbmlops_requests_total{alias="champion",model="wine",status="200",version="1"}' in text
    assert "nbmlops_request_latency_seconds_bucket" in text
    assert 'nbmlops_model_version{alias="champion",model="wine",role="primary"} 1.0' in text

    beat = wait_for(lambda: list((log_dir(project, "wine") / "_services").glob("*.json")))
    data = json.loads(beat[0].read_text())
    assert data["model"] == "wine" and data["url"] == wine_service.url
    assert data["routes"] == [{"alias": "champion", "version": 1, "role": "primary", "weight": 100}]
    assert time.time() - data["updated_at"] < 10

    # the log: one row per predicted row, inputs as in.<feature>
    log = wait_for(lambda: (lambda f: f if f is not None and (f.request_id == "req-1").sum() == 3
                            else None)(read_log(project, "wine")))
    mine = log[log.request_id == "req-1"].sort_values("row")
    assert list(mine.row) == [0, 1, 2] and set(mine.version) == {1}
    assert set(mine.alias) == {"champion"} and set(mine.role) == {"primary"}
    assert list(mine["in.alcohol"]) == [float(v) for v in X.alcohol.iloc[:3]]
    assert (mine.latency_ms > 0).all()


@pytest.mark.parametrize("body, status, fragment", [
    ([{"alcohol": "abc"}], 422, "column 'alcohol': expected float64, got string \"abc\" at row 0"),
    ("NULLS", 422, "column 'hue': null at row 0, where the training data had none"),
    ("EXTRA", 422, "unexpected column 'colour'"),
    ("MISSING", 422, "missing column 'proline'"),
    ([], 422, "no rows to predict"),
    ("A STRING", 422, "the body is a JSON str"),
    ("TOO MANY", 422, "too many rows: 10001 (at most 10000 per request)"),
])
def test_bad_inputs_are_422_with_problems(wine_service: Served, wine: Any, body: Any,
                                          status: int, fragment: str) -> None:
    X, _ = wine
    base = rows(X, 2)
    if body == "NULLS":
        base[0]["hue"] = None
        body = base
    elif body == "EXTRA":
        base[0]["colour"] = 1.0
        base[1]["colour"] = 1.0
        body = base
    elif body == "MISSING":
        body = [{k: v for k, v in r.items() if k != "proline"} for r in base]
    elif body == "TOO MANY":
        body = {k: [1.0] * 10_001 for k in X.columns}
    r = wine_service.predict(body)
    assert r.status_code == status, r.text
    data = r.json()
    assert set(data) == {"error", "problems"}
    assert any(fragment in p for p in [data["error"], *data["problems"]]), data
    assert "Traceback" not in r.text


def test_nan_in_a_numeric_column_is_refused(wine_service: Served, wine: Any) -> None:
    X, _ = wine
    text = json.dumps(rows(X, 1)).replace(str(float(X.hue.iloc[0])), "NaN", 1)
    r = wine_service.client.post("/v1/models/wine/predict", content=text,
                                 headers={"content-type": "application/json"})
    assert r.status_code == 422
    assert r.json()["problems"] == ["column 'hue': NaN at row 0, where the training data had none"]


def test_malformed_json_and_wrong_content_type(wine_service: Served) -> None:
    r = wine_service.client.post("/v1/models/wine/predict", content=b'[{"alcohol": 1.0,',
                                 headers={"content-type": "application/json"})
    assert r.status_code == 400
    assert r.json() == {"error": "malformed JSON: Expecting property name enclosed in double "
                        "quotes at line 1 column 18", "problems": []}
    r = wine_service.client.post("/v1/models/wine/predict", content=b"alcohol=1",
                                 headers={"content-type": "application/x-www-form-urlencoded"})
    assert r.status_code == 415
    assert "Content-Type: application/json" in r.json()["error"]
    r = wine_service.client.post("/v1/models/wine/predict", content=b"\xff\xfe[]",
                                 headers={"content-type": "application/json"})
    assert r.status_code == 400 and "not UTF-8" in r.json()["error"]
    assert wine_service.client.get("/v1/models/wine/predict").status_code == 405
    assert wine_service.predict([{}], rid="bad id with spaces").status_code == 400


def test_a_50_mb_body_is_refused_without_reading_it(wine_service: Served) -> None:
    host, port = wine_service.url.removeprefix("http://").split(":")
    size = 50 * 1024 * 1024
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        head = (f"POST /v1/models/wine/predict HTTP/1.1\r\nHost: {host}\r\n"
                f"Content-Type: application/json\r\nContent-Length: {size}\r\n\r\n[")
        sock.sendall(head.encode())
        t0 = time.monotonic()
        answer = ""
        while '"problems"' not in answer and time.monotonic() - t0 < 5:
            got = sock.recv(65536).decode()
            if not got:
                break
            answer += got
        assert time.monotonic() - t0 < 5
    assert answer.startswith("HTTP/1.1 413"), answer
    assert '"error":"the body is too large: 52428800 bytes (at most 10485760)"' in answer
    # a body without a declared length is counted as it streams in
    def chunks() -> Iterator[bytes]:
        yield b"["
        for _ in range(50):
            yield b" " * (1024 * 1024)
    try:
        r = wine_service.client.post("/v1/models/wine/predict", content=chunks(),
                                     headers={"content-type": "application/json"})
        assert r.status_code == 413 and "more than 10485760 bytes" in r.json()["error"]
    except httpx.TransportError:
        pass  # the service closed the connection while the client was still sending
    assert wine_service.client.get("/health").status_code == 200


def test_a_model_that_raises_is_a_json_500_without_traceback(project: Path, wine: Any) -> None:
    # "untyped" has columns without dtypes: a string passes the check and the forest raises
    s = serve(project, "untyped")
    try:
        X, _ = wine
        bad = rows(X, 1)
        bad[0]["alcohol"] = "abc"
        r = s.predict(bad, rid="boom")
        assert r.status_code == 500
        assert r.json() == {"error": "the model failed to predict (request boom); the service "
                            "log has the details", "problems": []}
        assert "Traceback" not in r.text
        ok = s.predict(rows(X, 1))  # the service goes on
        assert ok.status_code == 200 and ok.json()["alias"] == "champion"
    finally:
        s.stop()
    err = s.stderr()
    assert "predict failed for request boom" in err and "Traceback" in err  # logged server-side


# -- alias following --------------------------------------------------------------------------


def _hammer(s: Served, X: Any, stop: threading.Event,
            seen: list[tuple[float, int, int, float]]) -> None:
    """(answer received, status, version, request sent) for each request, until ``stop``."""
    with httpx.Client(base_url=s.url, timeout=10) as c:
        body = rows(X, 1)
        while not stop.is_set():
            sent = time.monotonic()
            try:
                r = c.post("/v1/models/swap/predict", json=body)
                seen.append((time.monotonic(), r.status_code, r.json().get("version", -1), sent))
            except httpx.TransportError as exc:  # a dropped request is a failure
                seen.append((time.monotonic(), 0, -1, sent))
                print(exc)


def test_a_promotion_is_served_within_5_s_without_failing_a_request(project: Path, wine: Any
                                                                  ) -> None:
    X, _ = wine
    s = serve(project, "swap@champion", "--poll", "1")
    stop = threading.Event()
    seen: list[tuple[float, int, int, float]] = []
    clients = [threading.Thread(target=_hammer, args=(s, X, stop, seen)) for _ in range(4)]
    try:
        for t in clients:
            t.start()
        time.sleep(1.0)
        proc = nbmlops("models", "promote", "swap", "2", cwd=project)
        assert proc.returncode == 0, proc.stderr
        promoted = time.monotonic()
        assert wait_for(lambda: any(v == 2 for _, _, v, _ in seen), 5.0)
        time.sleep(0.5)
    finally:
        stop.set()
        for t in clients:
            t.join()
        s.stop()
    assert all(status == 200 for _, status, _, _ in seen), Counter(st for _, st, _, _ in seen)
    first_v2 = min(t for t, _, v, _ in seen if v == 2)
    assert first_v2 - promoted < 5.0
    # no flapping back: a request sent after a v2 answer arrived is answered by v2 (by the
    # time an answer is recorded, another client thread may record an older v1 answer later)
    assert all(v == 2 for _, _, v, sent in seen if sent > first_v2)
    assert "swapped swap champion v1 -> v2" in s.stderr()


def test_a_version_that_cannot_load_keeps_the_old_one_serving(project: Path, wine: Any) -> None:
    X, _ = wine
    store = Store.open(f"sqlite:///{project / '.nbmlops' / 'nbmlops.db'}",
                       project / ".nbmlops" / "artifacts")
    try:
        # startup: a version that does not exist is a one-line error and exit 4
        proc = nbmlops("serve", "faults/7", "--port", "0", cwd=project)
        assert proc.returncode == 4
        assert "version 7" in one_line_error(proc)
        proc = nbmlops("serve", "nosuch@champion", "--port", "0", cwd=project)
        assert proc.returncode == 4 and "nosuch" in one_line_error(proc)

        s = serve(project, "faults@challenger", "--poll", "0.3")
        try:
            assert s.predict(rows(X, 1)).json()["version"] == 2
            # a third version whose stored file is then deleted: the alias moves to it
            v3 = _register(store, RandomForestClassifier(n_estimators=3, random_state=1).fit(*wine),
                           "faults", *wine)
            service.stored_file(store, service.get_version(store, "faults", v3)).unlink()
            service.set_alias(store, "faults", "challenger", v3)
            assert wait_for(lambda: "failed to load" in s.stderr(), 5)
            r = s.predict(rows(X, 1))
            assert r.status_code == 200 and r.json()["version"] == 2
            assert "faults@challenger -> v3 failed to load (the stored file of models:/faults/3 " \
                   "is missing" in s.stderr()
            # the alias removed and v3 removed from the registry: v2 still answers
            service.remove_alias(store, "faults", "challenger")
            service.remove_version(store, "faults", v3)
            assert wait_for(lambda: "faults@challenger: " in s.stderr() and
                            "still serving v2" in s.stderr().split("failed to load")[-1], 5)
            assert s.predict(rows(X, 1)).json()["version"] == 2
            health = s.client.get("/health").json()
            assert health["status"] == "ok" and "challenger" in health["problems"][0]
            # the alias comes back, at v1: followed
            service.set_alias(store, "faults", "challenger", 1)
            assert wait_for(lambda: s.predict(rows(X, 1)).json()["version"] == 1, 5)
        finally:
            s.stop()
        assert s.stderr().count("failed to load") == 1  # logged once, not every poll
    finally:
        store.close()


LOCKER = """
import sqlite3, sys, time
conn = sqlite3.connect(sys.argv[1], isolation_level=None, timeout=30)
conn.execute("BEGIN EXCLUSIVE")
print("locked", flush=True)
time.sleep(float(sys.argv[2]))
conn.execute("ROLLBACK")
"""


def test_the_store_locked_while_serving(project: Path, wine: Any) -> None:
    X, _ = wine
    s = serve(project, "locked@champion", "--poll", "0.3")
    db = project / ".nbmlops" / "nbmlops.db"
    try:
        assert s.predict(rows(X, 1)).status_code == 200
        locker = subprocess.Popen([sys.executable, "-c", LOCKER, str(db), "6"],
                                  stdout=subprocess.PIPE, text=True)
        assert locker.stdout is not None and locker.stdout.readline().strip() == "locked"
        t0 = time.monotonic()
        answered = 0
        while time.monotonic() - t0 < 4.5:
            r = s.predict(rows(X, 1), rid=f"locked-{answered}")
            assert r.status_code == 200 and r.json()["version"] == 1
            answered += 1
        # the log is written while the store is locked (it is files, not the database)
        log = wait_for(lambda: (lambda f: f if f is not None and
                                f.request_id.str.startswith("locked-").sum() >= answered - 50
                                else None)(read_log(project, "locked")), 4)
        assert log is not None
        assert locker.wait(15) == 0
        # the store is back: a promotion is followed
        proc = nbmlops("models", "promote", "locked", "2", cwd=project)
        assert proc.returncode == 0, proc.stderr
        assert wait_for(lambda: s.predict(rows(X, 1)).json()["version"] == 2, 5)
    finally:
        s.stop()


def test_sigkill_while_logging_leaves_readable_parquet(project: Path, wine: Any) -> None:
    import pyarrow.parquet as pq

    X, _ = wine
    s = serve(project, "killed@champion")
    stop = threading.Event()

    def send() -> None:
        with httpx.Client(base_url=s.url, timeout=5) as c:
            i = 0
            while not stop.is_set():
                try:
                    c.post("/v1/models/killed/predict", json=rows(X, 20, i % 100))
                except httpx.TransportError:
                    return
                i += 1

    senders = [threading.Thread(target=send) for _ in range(4)]
    for t in senders:
        t.start()
    try:
        assert wait_for(lambda: len(list(log_dir(project, "killed").glob("*.parquet"))) >= 2, 15)
        time.sleep(0.7)  # in the middle of the next flush, most likely
        s.proc.send_signal(signal.SIGKILL)
        s.proc.wait(10)
    finally:
        stop.set()
        for t in senders:
            t.join()
        s.client.close()
    parts = list(log_dir(project, "killed").glob("*.parquet"))
    assert parts
    total = sum(pq.read_table(p).num_rows for p in parts)  # every file reads
    assert total >= 20
    # a restarted service appends beside them
    s2 = serve(project, "killed@champion")
    try:
        assert s2.predict(rows(X, 1)).status_code == 200
    finally:
        s2.stop()


# -- champion / challenger ----------------------------------------------------------------------


def test_split_routes_by_weight_and_request_id_then_promote_ends_it(project: Path, wine: Any
                                                                   ) -> None:
    X, _ = wine
    s = serve(project, "split", "--split", "champion=80,challenger=20", "--poll", "0.3")
    try:
        got = Counter()
        for i in range(400):
            r = s.predict(rows(X, 1), rid=f"r{i}")
            assert r.status_code == 200
            b = r.json()
            got[(b["alias"], b["version"])] += 1
        assert set(got) == {("champion", 1), ("challenger", 2)}
        assert 0.7 < got[("champion", 1)] / 400 < 0.9, got
        # the same request id always goes to the same arm
        assert {s.predict(rows(X, 1), rid="r7").json()["alias"] for _ in range(5)} == {
            s.predict(rows(X, 1), rid="r7").json()["alias"]}
        routes = s.client.get("/health").json()["routes"]
        assert [(r["alias"], r["weight"]) for r in routes] == [("champion", 80), ("challenger", 20)]
        # promote: both aliases at v2 -> one version answers everything, as champion
        assert nbmlops("models", "promote", "split", "2", cwd=project).returncode == 0
        assert wait_for(lambda: s.predict(rows(X, 1)).json()["version"] == 2, 5)
        answers = {(b["alias"], b["version"]) for b in
                   (s.predict(rows(X, 1), rid=f"after{i}").json() for i in range(50))}
        assert answers == {("champion", 2)}
    finally:
        s.stop()
    assert "point at the same version v2" in s.stderr()
    log = read_log(project, "split")
    assert set(log[log.request_id.str.startswith("r")].alias) == {"champion", "challenger"}


def test_shadow_scores_every_request_and_returns_the_primary(project: Path, wine: Any) -> None:
    X, _ = wine
    s = serve(project, "shadow@champion", "--shadow", "challenger")
    try:
        for i in range(30):
            b = s.predict(rows(X, 2, i), rid=f"s{i}").json()
            assert b["version"] == 1 and b["alias"] == "champion"
    finally:
        s.stop()
    log = read_log(project, "shadow")
    primary = log[log.role == "primary"]
    shadow = log[log.role == "shadow"]
    assert len(primary) == 60 and set(primary.version) == {1}
    assert len(shadow) == 60 and set(shadow.version) == {2} and set(shadow.alias) == {"challenger"}
    assert set(shadow.request_id) == set(primary.request_id)


def test_log_sample_and_no_log(project: Path, wine: Any) -> None:
    X, _ = wine
    s = serve(project, "wine/2", "--no-log")
    try:
        b = s.predict(rows(X, 1)).json()
        assert b["version"] == 2 and b["alias"] == ""
        assert s.client.get("/v1/models/wine").json()["log"] is None
    finally:
        s.stop()


def test_bad_options_are_one_line_errors(project: Path) -> None:
    for args, fragment in [
        (("wine@champion", "--split", "champion=90,challenger=10"), "--split takes the model NAME"),
        (("wine", "--split", "champion=90"), "at least two aliases"),
        (("wine", "--split", "champion=x"), "expected ALIAS=WEIGHT"),
        (("wine@champion", "--shadow", "champion"), "shadow an alias that is not in the split"),
        (("wine/0",), "expected NAME@ALIAS, NAME/VERSION"),
    ]:
        proc = nbmlops("serve", *args, "--port", "0", cwd=project)
        assert proc.returncode == 2, (args, proc.stderr)
        assert fragment in one_line_error(proc), proc.stderr
    assert not (project / ".nbmlops" / "predictions" / "nosuch").exists()


def test_port_in_use_is_a_one_line_error(project: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        proc = nbmlops("serve", "wine@champion", "--port", str(port), cwd=project)
    assert proc.returncode == 2
    assert f"cannot listen on 127.0.0.1:{port}" in one_line_error(proc)


def test_workers_share_the_port_and_aggregate_metrics(project: Path, wine: Any) -> None:
    X, _ = wine
    s = serve(project, "wine@champion", "--workers", "2", "--no-log")
    try:
        for _ in range(6):
            assert s.predict(rows(X, 1)).status_code == 200
        text = s.client.get("/metrics").text
        assert 'nbmlops_requests_total{alias="champion",model="wine",status="200",version="1"} 6.0' \
            in text, text
    finally:
        s.stop()
    assert s.stderr().count("loaded wine@champion v1") == 2
