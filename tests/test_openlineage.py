"""OpenLineage emission: the store's events hook, the events (validated against the OpenLineage
JSON schemas, offline), delivery through openlineage-python's file and HTTP transports (a real
receiver on loopback), drops when the queue is full or the endpoint is down, and the same from
real kernels (`nbmlops run`, `nbmlops pipeline run`) in subprocesses."""

from __future__ import annotations

import logging
import socket
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from nbmlops.openlineage import attach_if_configured
from nbmlops.openlineage.emitter import Emitter
from nbmlops.openlineage.listener import LineageListener, cell_run_id, ol_run_id
from nbmlops.openlineage.settings import Settings, configured, settings_from_env
from nbmlops.store import Store
from nbmlops.store.entities import ArtifactIO, CellRecord, MetricValue

from ._openlineage import Receiver, assert_lifecycle, by_run, read_events, validate_event
from ._scripts import clean_env, script
from .conftest import make_notebook

# -- configuration --------------------------------------------------------------------------------


@pytest.mark.parametrize(("env", "on"), [
    ({}, False),
    ({"NBMLOPS_OPENLINEAGE_FILE": "/tmp/x.jsonl"}, True),
    ({"NBMLOPS_OPENLINEAGE_URL": "http://m:5000"}, True),
    ({"OPENLINEAGE_URL": "http://m:5000"}, True),
    ({"OPENLINEAGE_CONFIG": "/etc/ol.yml"}, True),
    ({"OPENLINEAGE_URL": "http://m:5000", "NBMLOPS_OPENLINEAGE": "0"}, False),
    ({"NBMLOPS_OPENLINEAGE_FILE": "/tmp/x", "OPENLINEAGE_DISABLED": "true"}, False),
])
def test_configured_by_standard_or_shortcut_settings(
    env: dict[str, str], on: bool, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # no openlineage.yml here
    monkeypatch.setenv("HOME", str(tmp_path))
    assert configured(env) is on


def test_an_openlineage_yml_in_the_working_directory_turns_it_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HOME", str(tmp_path))
    assert not configured({})
    (tmp_path / "openlineage.yml").write_text("transport:\n  type: console\n")
    assert configured({})


def test_settings_from_shortcuts() -> None:
    s = settings_from_env({"NBMLOPS_OPENLINEAGE_FILE": "/x/ev.jsonl",
                           "NBMLOPS_OPENLINEAGE_NAMESPACE": "team-a"})
    assert s.namespace == "team-a"
    assert s.transport == {"type": "file", "log_file_path": "/x/ev.jsonl", "append": True}
    both = settings_from_env({"NBMLOPS_OPENLINEAGE_FILE": "/x", "NBMLOPS_OPENLINEAGE_URL": "http://m"})
    assert both.transport is not None and both.transport["type"] == "composite"
    assert settings_from_env({}).namespace == f"nbmlops://{socket.gethostname()}"
    assert settings_from_env({}).transport is None  # openlineage-python resolves its own config


def test_a_store_gets_the_listener_only_when_configured(
    store_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    for var in ("OPENLINEAGE_URL", "OPENLINEAGE_CONFIG", "NBMLOPS_OPENLINEAGE_URL",
                "NBMLOPS_OPENLINEAGE_FILE", "OPENLINEAGE__TRANSPORT__TYPE"):
        monkeypatch.delenv(var, raising=False)
    with Store.open(store_url, tmp_path / "art") as s:
        assert s._listeners == []
        assert not attach_if_configured(s)
    monkeypatch.setenv("NBMLOPS_OPENLINEAGE_FILE", str(tmp_path / "ev.jsonl"))
    with Store.open(store_url, tmp_path / "art") as s:
        assert [type(f) for f in s._listeners] == [LineageListener]


# -- the store's events hook ----------------------------------------------------------------------


def _cell(seq: int, **kw: Any) -> CellRecord:
    kw.setdefault("source", f"x{seq} = {seq}")
    return CellRecord(seq=seq, start_time=1_700_000_000.0 + seq, duration=0.25,
                      status=kw.pop("status", "ok"), **kw)


def test_listeners_get_what_was_committed_after_the_commit(store: Store) -> None:
    seen: list[tuple[str, dict[str, Any]]] = []

    def listener(event: str, payload: dict[str, Any]) -> None:
        # called after the commit: a fresh read sees the write
        if event == "cells_recorded":
            assert len(store.cell_executions(payload["run_id"])) >= len(payload["records"])
        seen.append((event, payload))

    store.add_listener(listener)
    rid = store.create_run(name="nb", notebook_path="/p/nb.ipynb", params={"lr": 0.1, "api_token": "s3"})
    store.record_cells(rid, [_cell(1), _cell(2)])
    store.record_cells(rid, [_cell(2), _cell(3)], skip_existing=True)  # seq 2 is already there
    store.record_cells(rid, [_cell(3)], skip_existing=True)  # nothing new: no event
    store.end_run(rid, "finished", end_time=1_700_000_100.0)
    store.end_run(rid, "failed", only_if_running=True)  # no change: no event
    assert [e for e, _ in seen] == ["run_started", "cells_recorded", "cells_recorded", "run_ended"]
    run = seen[0][1]["run"]
    assert (run.id, run.name, run.status, run.notebook_path) == (rid, "nb", "running", "/p/nb.ipynb")
    assert run.params == {"lr": "0.1", "api_token": "<redacted>"} or run.params["lr"] == "0.1"
    assert "s3" not in str(run.params)
    assert [r.seq for r in seen[1][1]["records"]] == [1, 2]
    assert [r.seq for r in seen[2][1]["records"]] == [3]
    assert seen[3][1] == {"run_id": rid, "status": "finished", "end_time": 1_700_000_100.0}


def test_a_failing_listener_is_logged_and_the_write_stands(
    store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    calls: list[str] = []

    def broken(event: str, payload: dict[str, Any]) -> None:
        raise RuntimeError("listener bug")

    store.add_listener(broken)
    store.add_listener(lambda event, payload: calls.append(event))
    with caplog.at_level(logging.WARNING, logger="nbmlops.store.store"):
        rid = store.create_run(name="nb")
        store.record_cells(rid, [_cell(1)])
        store.end_run(rid)
    assert calls == ["run_started", "cells_recorded", "run_ended"]  # the next listener still ran
    assert store.get_run(rid).status == "finished"
    assert len(store.cell_executions(rid)) == 1
    assert sum("listener bug" in (r.exc_text or "") or "failed on" in r.getMessage()
               for r in caplog.records) == 3


# -- events, file transport -----------------------------------------------------------------------


_EMITTERS: list[Emitter] = []


@pytest.fixture(autouse=True)
def _close_emitters() -> Iterator[None]:
    """Each test's emitters end with it (their exit summary is not left for the process)."""
    yield
    while _EMITTERS:
        _EMITTERS.pop().close()


def _emitter(queue_size: int = 1000, **transport: Any) -> Emitter:
    em = Emitter(Settings(namespace="test-ns", transport=transport, queue_size=queue_size, exit_wait=5))
    _EMITTERS.append(em)
    return em


def _attach(store: Store, em: Emitter) -> None:
    store.add_listener(LineageListener(store, em.submit))


def test_notebook_run_events_are_schema_valid_and_complete(store: Store, tmp_path: Path) -> None:
    out = tmp_path / "ev.jsonl"
    em = _emitter(type="file", log_file_path=str(out), append=True)
    _attach(store, em)
    nb = tmp_path / "proj" / "train.ipynb"
    rid = store.create_run(name="train", notebook_path=str(nb), params={"alpha": 0.5})
    data = str(tmp_path / "data.csv")
    store.record_cells(rid, [
        _cell(1, source="import pandas as pd\ndf = pd.read_csv('data.csv')",
              io=[ArtifactIO(uri=data, direction="read", via="pandas.read_csv", kind="dataset",
                             fingerprint="sha256:aaa", size=10,
                             schema={"shape": [3, 2], "columns": [{"name": "a", "dtype": "int64"},
                                                                  {"name": "b", "dtype": "object"}]})]),
        _cell(2, source="df.to_parquet('s3://bucket/out/df.parquet')\nacc = 0.9",
              io=[ArtifactIO(uri="s3://bucket/out/df.parquet", direction="wrote", via="to_parquet",
                             kind="dataset", fingerprint="url",
                             schema={"shape": [3, 2], "columns": [{"name": "a", "dtype": "int64"}]})],
              metrics=[MetricValue("acc", 0.9)], params={"k": "3"}),
        _cell(3, source="1/0", status="error", error_name="ZeroDivisionError",
              error_value="division by zero"),
    ])
    store.log_batch(rid, metrics=[MetricValue("final", 1.5)])
    store.end_run(rid, "finished")
    assert em.flush(10)
    events = read_events(out)
    for ev in events:
        validate_event(ev)
    assert_lifecycle(events)
    assert em.stats() == {"sent": 8, "dropped": 0, "queued": 0}

    runs = by_run(events)
    run_uuid = ol_run_id(rid)
    assert run_uuid == str(uuid.UUID(hex=rid))
    assert list(runs)[0] == run_uuid  # the run's START went first
    run_evs = runs[run_uuid]
    assert [e["eventType"] for e in run_evs] == ["START", "COMPLETE"]
    assert events[-1] is run_evs[-1]  # and its COMPLETE last
    start, complete = run_evs
    assert start["job"] == {**start["job"], "namespace": "test-ns"}
    assert start["job"]["name"] == str(nb.with_suffix(""))  # outside any project: absolute
    assert start["job"]["facets"]["jobType"]["jobType"] == "NOTEBOOK"
    assert start["job"]["facets"]["jobType"]["integration"] == "NBMLOPS"
    assert start["job"]["facets"]["sourceCodeLocation"]["url"] == nb.as_uri()
    assert start["run"]["facets"]["nbmlops_params"]["params"] == {"alpha": "0.5"}
    assert "parent" not in start["run"]["facets"]
    assert complete["run"]["facets"]["nbmlops_metrics"]["metrics"] == {"acc": 0.9, "final": 1.5}

    cells = {e["job"]["name"]: e for e in events if e["job"]["name"].endswith(("cell-1", "cell-2", "cell-3"))
             and e["eventType"] != "START"}
    base = start["job"]["name"]
    c1, c2, c3 = cells[f"{base}.cell-1"], cells[f"{base}.cell-2"], cells[f"{base}.cell-3"]
    assert c1["run"]["runId"] == cell_run_id(rid, 1) == str(uuid.uuid5(uuid.UUID(run_uuid), "cell-1"))
    parent = c1["run"]["facets"]["parent"]
    assert parent["run"]["runId"] == run_uuid and parent["job"]["name"] == base
    assert c1["job"]["facets"]["jobType"]["jobType"] == "CELL"
    assert c1["job"]["facets"]["sourceCode"] == {**c1["job"]["facets"]["sourceCode"],
                                                 "language": "python",
                                                 "sourceCode": "import pandas as pd\ndf = pd.read_csv('data.csv')"}
    (inp,) = c1["inputs"]
    assert (inp["namespace"], inp["name"]) == ("file", data)
    assert inp["facets"]["version"]["datasetVersion"] == "sha256:aaa"
    assert [f["name"] for f in inp["facets"]["schema"]["fields"]] == ["a", "b"]
    (outp,) = c2["outputs"]
    assert (outp["namespace"], outp["name"]) == ("s3://bucket", "out/df.parquet")
    assert "version" not in outp["facets"]  # a URL has no content fingerprint
    assert outp["outputFacets"]["outputStatistics"]["rowCount"] == 3
    assert c2["run"]["facets"]["nbmlops_metrics"]["metrics"] == {"acc": 0.9}
    assert c2["run"]["facets"]["nbmlops"]["seq"] == 2
    assert c3["eventType"] == "FAIL"
    assert c3["run"]["facets"]["errorMessage"]["message"] == "ZeroDivisionError: division by zero"
    assert c1["eventTime"] < c2["eventTime"]


def test_pipeline_step_and_cell_parents_chain_to_the_pipeline(store: Store, tmp_path: Path) -> None:
    out = tmp_path / "ev.jsonl"
    em = _emitter(type="file", log_file_path=str(out), append=True)
    _attach(store, em)
    pid = store.create_run(name="demo", source="pipeline", notebook_path=str(tmp_path / "pipeline.yaml"),
                           tags={"nbmlops.pipeline": "demo", "nbmlops.steps": "1"})
    sid = store.create_run(name="demo/prep", source="pipeline", parent_run_id=pid,
                           notebook_path=str(tmp_path / "prep.ipynb"))
    store.record_cells(sid, [_cell(1)])
    store.end_run(sid, "cancelled")
    store.end_run(pid, "failed")
    assert em.flush(10)
    events = read_events(out)
    for ev in events:
        validate_event(ev)
    assert_lifecycle(events)
    jobs = {(e["job"]["name"], e["eventType"]): e for e in events}
    assert jobs[("demo", "START")]["job"]["facets"]["jobType"]["jobType"] == "PIPELINE"
    step = jobs[("demo.prep", "START")]
    assert step["job"]["facets"]["jobType"]["jobType"] == "STEP"
    assert step["run"]["facets"]["parent"]["run"]["runId"] == ol_run_id(pid)
    assert step["run"]["facets"]["parent"]["job"]["name"] == "demo"
    cell = jobs[("demo.prep.cell-1", "COMPLETE")]
    assert cell["run"]["facets"]["parent"]["job"]["name"] == "demo.prep"
    assert cell["run"]["facets"]["parent"]["root"]["run"]["runId"] == ol_run_id(pid)
    assert jobs[("demo.prep", "ABORT")]
    assert jobs[("demo", "FAIL")]["run"]["facets"]["errorMessage"]["message"] == "run failed"


def test_a_parent_written_by_another_process_is_read_from_the_store(
    store_url: str, tmp_path: Path
) -> None:
    out = tmp_path / "ev.jsonl"
    with Store.open(store_url, tmp_path / "art") as other:  # no listener: "another process"
        pid = other.create_run(name="demo", tags={"nbmlops.pipeline": "demo", "nbmlops.steps": "2"})
    with Store.open(store_url, tmp_path / "art") as s:
        em = _emitter(type="file", log_file_path=str(out), append=True)
        _attach(s, em)
        sid = s.create_run(name="demo/train", parent_run_id=pid)
        s.end_run(sid)
        assert em.flush(10)
    (start, _) = read_events(out)
    assert start["job"]["name"] == "demo.train"
    assert start["run"]["facets"]["parent"]["job"]["name"] == "demo"


# -- HTTP transport, drops ------------------------------------------------------------------------


def test_http_transport_posts_to_a_local_receiver(store: Store) -> None:
    with Receiver() as rx:
        em = _emitter(type="http", url=rx.url, endpoint="api/v1/lineage")
        _attach(store, em)
        rid = store.create_run(name="nb")
        store.record_cells(rid, [_cell(1), _cell(2)])
        store.end_run(rid)
        assert em.flush(10)
    assert set(rx.paths) == {"/api/v1/lineage"}
    assert len(rx.events) == 6
    for ev in rx.events:
        validate_event(ev)
    assert_lifecycle(rx.events)
    assert em.stats()["dropped"] == 0


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_an_endpoint_that_is_down_drops_events_with_a_count_and_writes_go_on(
    store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    em = _emitter(type="http", url=f"http://127.0.0.1:{_closed_port()}", retry={"total": 0})
    _attach(store, em)
    with caplog.at_level(logging.WARNING, logger="nbmlops.openlineage.emitter"):
        t0 = time.perf_counter()
        rid = store.create_run(name="nb")
        store.record_cells(rid, [_cell(i) for i in range(1, 21)])
        store.end_run(rid)
        writes = time.perf_counter() - t0
        assert em.flush(10)
    assert em.stats() == {"sent": 0, "dropped": 42, "queued": 0}
    assert store.get_run(rid).status == "finished" and len(store.cell_executions(rid)) == 20
    assert writes < 2.0  # nobody waited for the endpoint
    warnings = [r.getMessage() for r in caplog.records if "OpenLineage" in r.getMessage()]
    assert len(warnings) == 1 and "events dropped" in warnings[0]


def test_a_full_queue_drops_and_counts_and_never_blocks_the_writer(store: Store) -> None:
    hold = threading.Event()
    with Receiver(hold=hold) as rx:
        em = _emitter(queue_size=2, type="http", url=rx.url)
        _attach(store, em)
        rid = store.create_run(name="nb")  # sent: the receiver holds it
        deadline = time.monotonic() + 10
        while not rx.arrived and time.monotonic() < deadline:  # the thread is sending it
            time.sleep(0.01)
        t0 = time.perf_counter()
        for i in range(1, 11):
            store.record_cells(rid, [_cell(i)])  # 2 fit in the queue, 8 items are dropped
        store.end_run(rid)  # dropped too
        assert time.perf_counter() - t0 < 2.0
        hold.set()
        assert em.flush(10)
    st = em.stats()
    assert st["dropped"] == 8 * 2 + 1 and st["sent"] == 1 + 2 * 2
    em.close()
    assert [e["eventType"] for e in rx.events] == ["START", "START", "COMPLETE", "START", "COMPLETE"]


def test_a_bad_endpoint_url_drops_events_and_the_run_is_recorded(
    store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    em = _emitter(type="http", url="not a url")
    _attach(store, em)
    with caplog.at_level(logging.WARNING, logger="nbmlops.openlineage.emitter"):
        rid = store.create_run(name="nb")
        store.end_run(rid)
        assert em.flush(10)
    assert em.stats()["dropped"] == 2
    assert store.get_run(rid).status == "finished"
    (msg,) = [r.getMessage() for r in caplog.records]
    assert "not a url" in msg


# -- real kernels ---------------------------------------------------------------------------------


def _cli(*args: str, cwd: Path, env: dict[str, str], timeout: float = 180) -> subprocess.CompletedProcess[str]:
    return subprocess.run([script("nbmlops"), *args], cwd=cwd, env=clean_env(**env),
                          capture_output=True, text=True, timeout=timeout)


@pytest.mark.kernel
def test_nbmlops_run_in_a_real_kernel_emits_the_run_and_its_cells(tmp_path: Path) -> None:
    proj = tmp_path / "proj"
    (proj / ".nbmlops").mkdir(parents=True)
    (proj / "in.csv").write_text("a,b\n1,x\n2,y\n3,z\n")
    make_notebook(proj / "nbs" / "train.ipynb", [
        ("alpha = 1", ["parameters"]),
        "import pandas as pd\ndf = pd.read_csv('../in.csv')",
        "df['c'] = df['a'] * alpha\ndf.to_csv('../out.csv', index=False)",
    ])
    out = tmp_path / "ev.jsonl"
    proc = _cli("run", "nbs/train.ipynb", "-p", "alpha", "2", cwd=proj,
                env={"NBMLOPS_OPENLINEAGE_FILE": str(out), "NBMLOPS_OPENLINEAGE_NAMESPACE": "ns"})
    assert proc.returncode == 0, proc.stderr
    assert "OpenLineage" not in proc.stderr
    events = read_events(out)
    for ev in events:
        validate_event(ev)
    assert_lifecycle(events)
    names = [e["job"]["name"] for e in events]
    assert names[0] == "nbs/train" and events[0]["eventType"] == "START"
    assert events[-1]["job"]["name"] == "nbs/train" and events[-1]["eventType"] == "COMPLETE"
    cells = sorted({n for n in names if ".cell-" in n})
    assert len(cells) >= 3 and all(n.startswith("nbs/train.cell-") for n in cells)
    run_id = events[0]["run"]["runId"]
    cell_events = [e for e in events if ".cell-" in e["job"]["name"]]
    assert all(e["run"]["facets"]["parent"]["run"]["runId"] == run_id for e in cell_events)
    reads = [d for e in cell_events if e["eventType"] == "COMPLETE" for d in e["inputs"]]
    writes = [d for e in cell_events if e["eventType"] == "COMPLETE" for d in e["outputs"]]
    assert (proj / "in.csv").resolve().as_posix() in {d["name"] for d in reads}
    (w,) = [d for d in writes if d["name"].endswith("out.csv")]
    assert w["facets"]["version"]["datasetVersion"]
    assert [f["name"] for f in w["facets"]["schema"]["fields"]] == ["a", "b", "c"]
    assert w["outputFacets"]["outputStatistics"]["rowCount"] == 3
    sources = [e["job"]["facets"]["sourceCode"]["sourceCode"] for e in cell_events]
    assert "df.to_csv('../out.csv', index=False)" in "\n".join(sources)
    # params are recorded by the parameters cell: the run's COMPLETE carries them
    assert events[-1]["run"]["facets"]["nbmlops_params"]["params"]["alpha"] == "2"


@pytest.mark.kernel
def test_endpoint_down_a_real_run_succeeds_and_says_what_was_dropped(tmp_path: Path) -> None:
    proj = tmp_path / "proj"
    (proj / ".nbmlops").mkdir(parents=True)
    make_notebook(proj / "nb.ipynb", ["x = 1", "y = x + 1"])
    proc = _cli("run", "nb.ipynb", cwd=proj,
                env={"NBMLOPS_OPENLINEAGE_URL": f"http://127.0.0.1:{_closed_port()}"})
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if "OpenLineage" in ln]
    assert len(lines) == 2, proc.stderr  # the first drop, and the count at exit
    assert "0 event(s) sent, 6 dropped" in lines[1]
    with Store.open(start=proj) as s:
        (run,) = s.list_runs().runs
        assert run.status == "finished" and run.cell_count == 2


PIPELINE = """\
name: twostep
steps:
  prep:
    notebook: prep.ipynb
    outputs: [data.txt]
  train:
    notebook: train.ipynb
    depends_on: [prep]
    inputs: [data.txt]
"""


@pytest.mark.kernel
def test_a_two_step_pipeline_emits_pipeline_steps_and_cells_linked_by_parents(tmp_path: Path) -> None:
    proj = tmp_path / "proj"
    (proj / ".nbmlops").mkdir(parents=True)
    (proj / "pipeline.yaml").write_text(PIPELINE)
    make_notebook(proj / "prep.ipynb", ["with open('data.txt', 'w') as f:\n    f.write('41')"])
    make_notebook(proj / "train.ipynb", ["with open('data.txt') as f:\n    n = int(f.read())", "m = n + 1"])
    out = tmp_path / "ev.jsonl"
    proc = _cli("pipeline", "run", "pipeline.yaml", cwd=proj,
                env={"NBMLOPS_OPENLINEAGE_FILE": str(out)})
    assert proc.returncode == 0, proc.stderr
    events = read_events(out)
    for ev in events:
        validate_event(ev)
    assert_lifecycle(events)
    starts = {e["job"]["name"]: e for e in events if e["eventType"] == "START"}
    # cells are named by their sequence number in the run (0-based in headless runs)
    assert set(starts) == {"twostep", "twostep.prep", "twostep.train", "twostep.prep.cell-0",
                           "twostep.train.cell-0", "twostep.train.cell-1"}
    kinds = {n: e["job"]["facets"]["jobType"]["jobType"] for n, e in starts.items()}
    assert kinds["twostep"] == "PIPELINE" and kinds["twostep.prep"] == "STEP"
    assert kinds["twostep.train.cell-1"] == "CELL"
    pipe = starts["twostep"]["run"]["runId"]
    for step in ("twostep.prep", "twostep.train"):
        parent = starts[step]["run"]["facets"]["parent"]
        assert parent["run"]["runId"] == pipe and parent["job"]["name"] == "twostep"
    cell = starts["twostep.train.cell-1"]["run"]["facets"]["parent"]
    assert cell["run"]["runId"] == starts["twostep.train"]["run"]["runId"]
    assert cell["root"]["run"]["runId"] == pipe
    order = [(e["job"]["name"], e["eventType"]) for e in events]
    assert order[0] == ("twostep", "START") and order[-1] == ("twostep", "COMPLETE")
    # the step that wrote data.txt came before the step that read it
    assert order.index(("twostep.prep", "COMPLETE")) < order.index(("twostep.train", "START"))
    (read,) = [d for e in events if e["job"]["name"] == "twostep.train.cell-0"
               and e["eventType"] == "COMPLETE" for d in e["inputs"]]
    (wrote,) = [d for e in events if e["job"]["name"] == "twostep.prep.cell-0"
                and e["eventType"] == "COMPLETE" for d in e["outputs"]]
    assert read["name"] == wrote["name"] and read["facets"]["version"] == wrote["facets"]["version"]
