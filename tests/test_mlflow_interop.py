"""`nbmlops export mlflow` / `nbmlops import mlflow` against a real MLflow SQLite tracking store
(mlflow-skinny's SQLAlchemy store), read back with MlflowClient and with the nbmlops Store."""

from __future__ import annotations

import json
import math
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from nbmlops.cli import cli
from nbmlops.store import Store

from .conftest import make_notebook

mlflow_tracking = pytest.importorskip("mlflow.tracking")

NBMLOPS = str(Path(sys.executable).parent / "nbmlops")


@pytest.fixture(autouse=True)
def _in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """MLflow puts a SQLite store's Default experiment files under ./mlruns of the current
    directory: never the repository's."""
    monkeypatch.chdir(tmp_path)


@pytest.fixture(scope="module")
def empty_mlflow_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An MLflow database with its tables, made once (MLflow's migrations take seconds)."""
    db = tmp_path_factory.mktemp("mlflow-template") / "mlflow.db"
    here = os.getcwd()
    os.chdir(db.parent)  # the Default experiment's files: ./mlruns of this directory
    try:
        client = mlflow_tracking.MlflowClient(tracking_uri=f"sqlite:///{db}")
        client.search_experiments()
    finally:
        os.chdir(here)
    return db


@pytest.fixture
def mlflow_uri(tmp_path: Path, empty_mlflow_db: Path) -> str:
    db = tmp_path / "mlflow" / "mlflow.db"
    db.parent.mkdir()
    shutil.copyfile(empty_mlflow_db, db)
    return f"sqlite:///{db}"


def client_for(uri: str) -> Any:
    return mlflow_tracking.MlflowClient(tracking_uri=uri)


def nbmlops(*args: str) -> Result:
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def one_error_line(res: Result) -> str:
    assert "Traceback" not in res.stderr
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1, res.stderr
    return lines[0]


def all_mlflow_runs(client: Any) -> list[Any]:
    exps = [e.experiment_id for e in client.search_experiments()]
    return list(client.search_runs(exps, max_results=1000))


TINY: list[str | tuple[str, list[str]]] = [
    "import nbmlops\nlr = 0.25\nepochs = 3\nnbmlops.log_params({'lr': lr, 'epochs': epochs})",
    "for step in range(epochs):\n    nbmlops.log_metric('loss', 1.0 / (step + 1), step=step)\n"
    "nbmlops.set_tag('team', 'vision')",
    "with open('out.txt', 'w') as fh:\n    fh.write('hello mlflow')",
]


@pytest.fixture
def captured(tmp_path: Path) -> tuple[Path, str, str]:
    """A project whose store holds one run of a tiny notebook made by `nbmlops run`."""
    project = tmp_path / "project"
    make_notebook(project / "tiny.ipynb", TINY)
    env = {k: v for k, v in os.environ.items() if not k.startswith("NBMLOPS_")}
    assert subprocess.run([NBMLOPS, "init"], cwd=project, env=env, capture_output=True,
                          timeout=60).returncode == 0
    done = subprocess.run([NBMLOPS, "run", "tiny.ipynb", "--json"], cwd=project, env=env,
                          capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr
    url = f"sqlite:///{project / '.nbmlops' / 'nbmlops.db'}"
    return project, url, json.loads(done.stdout)["run_id"]


@pytest.mark.kernel
def test_a_captured_run_exported_reads_back_field_by_field(
    captured: tuple[Path, str, str], mlflow_uri: str, tmp_path: Path,
) -> None:
    project, url, run_id = captured
    res = nbmlops("--store", url, "export", "mlflow", "--tracking-uri", mlflow_uri, "--json")
    assert res.exit_code == 0, res.output
    report = json.loads(res.stdout)
    assert report["created"] == 1 and report["skipped"] == 0
    [entry] = report["runs"]
    assert entry["source_id"] == run_id and entry["left_out"] == []

    with Store.open(url) as store:
        ours = store.get_run(run_id)
        history = store.metric_history(run_id)
    client = client_for(mlflow_uri)
    theirs = client.get_run(entry["target_id"])
    info, data = theirs.info, theirs.data
    assert info.run_name == ours.name == "tiny"
    assert info.status == "FINISHED" and ours.status == "finished"
    assert info.start_time == round(ours.start_time * 1000)
    assert ours.end_time is not None and info.end_time == round(ours.end_time * 1000)
    assert client.get_experiment(info.experiment_id).name == ours.experiment
    assert data.params == ours.params == {"lr": "0.25", "epochs": "3"}
    got = [(m.key, m.step, m.value, m.timestamp) for m in client.get_metric_history(
        info.run_id, "loss")]
    want = [(m.key, m.step, m.value, round(m.timestamp * 1000)) for m in history]
    assert sorted(got) == sorted(want) and [s for _, s, _, _ in sorted(got)] == [0, 1, 2]
    assert data.tags["team"] == "vision"
    assert data.tags["nbmlops.run_id"] == run_id
    assert data.tags["mlflow.source.name"] == ours.notebook_path
    assert data.tags["mlflow.source.type"] == "NOTEBOOK"
    assert data.tags["nbmlops.cell_count"] == "3"
    # the file the notebook wrote, and the lineage summary
    out = Path(client.download_artifacts(info.run_id, "files/out.txt", str(tmp_path / "dl")))
    assert out.read_text() == "hello mlflow"
    lineage = json.loads(Path(client.download_artifacts(
        info.run_id, "nbmlops/lineage.json", str(tmp_path / "dl"))).read_text())
    assert lineage["run_id"] == run_id and lineage["cell_count"] == 3
    assert lineage["notebook_path"] == ours.notebook_path
    assert [c["seq"] for c in lineage["cells"]] == [0, 1, 2]
    assert lineage["cells"][2]["writes"][0]["uri"].endswith("out.txt")
    assert "lr" in lineage["cells"][0]["vars_defined"]

    # a second export adds nothing; importing into the same store adds nothing either
    again = nbmlops("--store", url, "export", "mlflow", "--tracking-uri", mlflow_uri, "--json")
    assert json.loads(again.stdout)["runs"][0]["reason"] == "exported before"
    assert len(all_mlflow_runs(client)) == 1
    back = nbmlops("--store", url, "import", "mlflow", "--tracking-uri", mlflow_uri, "--json")
    assert back.exit_code == 0 and json.loads(back.stdout)["skipped"] == 1
    with Store.open(url) as store:
        assert store.list_runs().total == 1


def make_mlflow_runs(uri: str, tmp_path: Path) -> tuple[str, str]:
    """Two MLflow runs made with MlflowClient: a finished one with history, tags and files, and
    a killed one in another experiment."""
    client = client_for(uri)
    exp = client.create_experiment("churn")
    run = client.create_run(exp, run_name="baseline", start_time=1_700_000_000_123,
                            tags={"owner": "ana", "mlflow.user": "ana"})
    rid = run.info.run_id
    client.log_param(rid, "max_depth", "7")
    client.log_param(rid, "criterion", "gini")
    for step in range(4):
        client.log_metric(rid, "auc", 0.5 + step / 10, timestamp=1_700_000_001_000 + step, step=step)
    client.log_metric(rid, "diverged", math.nan, timestamp=1_700_000_002_000, step=0)
    src = tmp_path / "mlflow-src"
    (src / "plots").mkdir(parents=True)
    (src / "model.txt").write_text("tree")
    (src / "plots" / "roc.csv").write_text("fpr,tpr\n0,0\n1,1\n")
    client.log_artifact(rid, str(src / "model.txt"))
    client.log_artifact(rid, str(src / "plots" / "roc.csv"), "plots")
    client.set_terminated(rid, "FINISHED", end_time=1_700_000_009_456)
    other = client.create_run(client.create_experiment("scratch"), run_name="stopped")
    client.log_metric(other.info.run_id, "loss", 2.0, step=0)
    client.set_terminated(other.info.run_id, "KILLED")
    return rid, other.info.run_id


def test_mlflow_runs_imported_read_back_field_by_field_and_twice_adds_nothing(
    mlflow_uri: str, tmp_path: Path, store_url: str,
) -> None:
    rid, killed = make_mlflow_runs(mlflow_uri, tmp_path)
    res = nbmlops("--store", store_url, "import", "mlflow", "--tracking-uri", mlflow_uri, "--json")
    assert res.exit_code == 0, res.output
    report = json.loads(res.stdout)
    assert report["created"] == 2 and report["skipped"] == 0
    entry = next(r for r in report["runs"] if r["source_id"] == rid)
    assert entry["left_out"] == ["metric diverged step 0: nan (not a finite number)"]

    client = client_for(mlflow_uri)
    theirs = client.get_run(rid)
    with Store.open(store_url) as store:
        ours = store.get_run(rid)
        history = store.metric_history(rid, "auc")
        stopped = store.get_run(killed)
        files = {Path(p).name: Path(p) for p in
                 (str(Path(store.location.runs_dir) / rid / "mlflow-artifacts" / rel)
                  for rel in ("model.txt", "plots/roc.csv"))}
        arts = [a for p in files.values() for a in store.find_artifacts(str(p))]
    assert ours.name == "baseline" and ours.experiment == "churn"
    assert ours.status == "finished" and stopped.status == "cancelled"
    assert stopped.experiment == "scratch"
    assert ours.start_time == pytest.approx(theirs.info.start_time / 1000)
    assert ours.end_time == pytest.approx(theirs.info.end_time / 1000)
    assert ours.params == theirs.data.params == {"max_depth": "7", "criterion": "gini"}
    assert [(m.step, m.value, m.timestamp) for m in history] == [
        (m.step, m.value, pytest.approx(m.timestamp / 1000))
        for m in sorted(client.get_metric_history(rid, "auc"), key=lambda m: m.step)]
    assert ours.tags["owner"] == "ana" and ours.tags["mlflow.user"] == "ana"
    assert ours.tags["mlflow.run_id"] == rid
    assert files["model.txt"].read_text() == "tree"
    assert files["roc.csv"].read_text().startswith("fpr,tpr")
    assert len(arts) == 2 and all(a.stored_path and Path(a.stored_path).is_file() for a in arts)

    again = nbmlops("--store", store_url, "import", "mlflow", "--tracking-uri", mlflow_uri)
    assert again.exit_code == 0 and "0 run(s) imported, 0 updated, 2 skipped" in again.stdout
    with Store.open(store_url) as store:
        assert store.list_runs().total == 2
        assert len(store.metric_history(rid)) == 4
    # what came from MLflow is not exported back to it
    back = nbmlops("--store", store_url, "export", "mlflow", "--tracking-uri", mlflow_uri, "--json")
    assert back.exit_code == 0, back.output
    assert {r["reason"] for r in json.loads(back.stdout)["runs"]} == {
        "imported from this MLflow store"}
    assert len(all_mlflow_runs(client)) == 2


def test_import_of_one_experiment_only(mlflow_uri: str, tmp_path: Path, store_url: str) -> None:
    rid, _ = make_mlflow_runs(mlflow_uri, tmp_path)
    res = nbmlops("--store", store_url, "import", "mlflow", "--tracking-uri", mlflow_uri,
                  "--experiment", "churn", "--json")
    assert [r["source_id"] for r in json.loads(res.stdout)["runs"]] == [rid]
    missing = nbmlops("--store", store_url, "import", "mlflow", "--tracking-uri", mlflow_uri,
                      "--experiment", "nope")
    assert missing.exit_code == 4 and "no MLflow experiment 'nope'" in one_error_line(missing)


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.parametrize("kind", ["text file", "nbmlops store", "plain file path", "closed port",
                                  "missing database"])
@pytest.mark.parametrize("direction", ["export", "import"])
def test_a_tracking_uri_that_is_no_tracking_store_is_one_error_and_writes_nothing(
    kind: str, direction: str, tmp_path: Path, store: Store, store_url: str,
) -> None:
    rid = store.create_run(name="keep", params={"a": 1})
    store.end_run(rid)
    before_db = Path(store_url[len("sqlite:///"):]).read_bytes()
    junk = tmp_path / "notes.txt"
    junk.write_text("not a database\n")
    uri, code, says = {
        "text file": (f"sqlite:///{junk}", 2, "is not an SQLite database"),
        "nbmlops store": (store_url, 2, "is an nbmlops store"),
        "plain file path": (str(junk), 2, "is a file"),
        "closed port": (f"http://127.0.0.1:{closed_port()}", 3,
                        "did not answer: connection refused"),
        "missing database": (f"sqlite:///{tmp_path / 'nowhere' / 'm.db'}",
                             2 if direction == "export" else 4,
                             "no directory" if direction == "export" else "no MLflow tracking"),
    }[kind]
    res = nbmlops("--store", store_url, direction, "mlflow", "--tracking-uri", uri)
    assert res.exit_code == code, res.output
    assert says in one_error_line(res) and res.stdout == ""
    assert junk.read_text() == "not a database\n"
    assert not (tmp_path / "nowhere").exists()
    assert Path(store_url[len("sqlite:///"):]).read_bytes() == before_db
    assert store.list_runs().total == 1


def test_import_with_a_bad_uri_creates_no_nbmlops_store(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'fresh' / 'nbmlops.db'}"
    res = nbmlops("--store", url, "import", "mlflow", "--tracking-uri",
                  f"sqlite:///{tmp_path / 'absent.db'}")
    assert res.exit_code == 4 and "no MLflow tracking store" in one_error_line(res)
    assert not (tmp_path / "fresh").exists() and not (tmp_path / "absent.db").exists()


def test_export_of_an_unknown_run_fails_before_mlflow_is_touched(
    tmp_path: Path, store: Store, store_url: str,
) -> None:
    db = tmp_path / "new-mlflow.db"
    res = nbmlops("--store", store_url, "export", "mlflow", "--tracking-uri", f"sqlite:///{db}",
                  "feedbeef")
    assert res.exit_code == 4 and "no run 'feedbeef'" in one_error_line(res)
    assert not db.exists()


def test_missing_mlflow_names_the_extra(monkeypatch: pytest.MonkeyPatch, mlflow_uri: str,
                                        store_url: str) -> None:
    monkeypatch.setitem(sys.modules, "mlflow.tracking", None)
    res = nbmlops("--store", store_url, "import", "mlflow", "--tracking-uri", mlflow_uri)
    assert res.exit_code == 1
    assert "pip install 'nbmlops[mlflow]'" in one_error_line(res)


def test_mlflow_is_imported_lazily() -> None:
    code = ("import sys, nbmlops, nbmlops.interop, nbmlops.cli.interop, nbmlops.cli.export\n"
            "from nbmlops.cli import cli\n"
            "assert not [m for m in sys.modules if m.split('.')[0] == 'mlflow'], 'mlflow imported'")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr


def test_a_run_exported_while_running_is_brought_up_to_date_and_children_name_parents(
    tmp_path: Path, store: Store, store_url: str, mlflow_uri: str,
) -> None:
    from nbmlops.store.entities import MetricValue

    parent = store.create_run(name="pipeline", source="pipeline", start_time=1000.0)
    child = store.create_run(name="step-a", source="pipeline", parent_run_id=parent,
                             params={"alpha": "1"}, start_time=1001.0)
    store.log_batch(child, metrics=[MetricValue("loss", 0.9, 0, 1002.0)])
    first = nbmlops("--store", store_url, "export", "mlflow", "--tracking-uri", mlflow_uri,
                    "--experiment", "team", "--json", parent, child[:8])
    assert first.exit_code == 0, first.output
    ids = {r["name"]: r["target_id"] for r in json.loads(first.stdout)["runs"]}
    client = client_for(mlflow_uri)
    copy = client.get_run(ids["step-a"])
    assert copy.info.status == "RUNNING"
    assert copy.data.tags["mlflow.parentRunId"] == ids["pipeline"]
    assert client.get_experiment(copy.info.experiment_id).name == "team"

    store.log_batch(child, params={"beta": "2"}, tags={"stage": "done"},
                    metrics=[MetricValue("loss", 0.5, 1, 1003.0)])
    store.end_run(child, "failed", end_time=1004.0)
    store.end_run(parent, "failed", end_time=1005.0)
    second = json.loads(nbmlops("--store", store_url, "export", "mlflow", "--tracking-uri",
                                mlflow_uri, "--json", child, parent).stdout)
    assert second["created"] == 0 and second["updated"] == 2
    step = next(r for r in second["runs"] if r["name"] == "step-a")
    assert (step["params"], step["metrics"]) == (1, 1)  # only what the copy lacked
    copy = client.get_run(ids["step-a"])
    assert copy.info.status == "FAILED" and copy.info.end_time == 1_004_000
    assert copy.data.params == {"alpha": "1", "beta": "2"}
    assert copy.data.tags["stage"] == "done" and copy.data.tags["nbmlops.status"] == "failed"
    assert [(m.step, m.value) for m in sorted(client.get_metric_history(ids["step-a"], "loss"),
                                              key=lambda m: m.step)] == [(0, 0.9), (1, 0.5)]
    third = json.loads(nbmlops("--store", store_url, "export", "mlflow", "--tracking-uri",
                               mlflow_uri, "--json").stdout)
    assert third["created"] == third["updated"] == 0 and third["skipped"] == 2
    assert len(all_mlflow_runs(client)) == 2


def test_a_run_imported_while_running_is_brought_up_to_date(
    tmp_path: Path, store_url: str, mlflow_uri: str,
) -> None:
    client = client_for(mlflow_uri)
    run = client.create_run("0", run_name="training")
    rid = run.info.run_id
    client.log_metric(rid, "acc", 0.6, timestamp=5_000, step=0)
    assert json.loads(nbmlops("--store", store_url, "import", "mlflow", "--tracking-uri",
                              mlflow_uri, "--json").stdout)["created"] == 1
    with Store.open(store_url) as store:
        assert store.get_run(rid).status == "running"

    client.log_metric(rid, "acc", 0.8, timestamp=6_000, step=1)
    client.log_param(rid, "epochs", "2")
    src = tmp_path / "weights.bin"
    src.write_bytes(b"\x00\x01")
    client.log_artifact(rid, str(src))
    client.set_terminated(rid, "FINISHED", end_time=7_000)
    second = json.loads(nbmlops("--store", store_url, "import", "mlflow", "--tracking-uri",
                                mlflow_uri, "--json").stdout)
    assert (second["created"], second["updated"]) == (0, 1)
    assert second["runs"][0]["metrics"] == 1 and second["runs"][0]["artifacts"] == 1
    with Store.open(store_url) as store:
        ours = store.get_run(rid)
        assert ours.status == "finished" and ours.end_time == pytest.approx(7.0)
        assert ours.params == {"epochs": "2"}
        assert [(m.step, m.value) for m in store.metric_history(rid)] == [(0, 0.6), (1, 0.8)]
    third = json.loads(nbmlops("--store", store_url, "import", "mlflow", "--tracking-uri",
                               mlflow_uri, "--json").stdout)
    assert third["skipped"] == 1 and third["updated"] == 0


@pytest.fixture(scope="module")
def mlflow_server(tmp_path_factory: pytest.TempPathFactory, empty_mlflow_db: Path) -> Any:
    """A real `mlflow server` (mlflow-skinny's uvicorn app) on loopback, proxying artifacts."""
    import signal
    import time
    import urllib.request

    root = tmp_path_factory.mktemp("mlflow-server")
    shutil.copyfile(empty_mlflow_db, root / "server.db")
    port = closed_port()
    proc = subprocess.Popen(
        [str(Path(sys.executable).parent / "mlflow"), "server", "--backend-store-uri",
         f"sqlite:///{root / 'server.db'}", "--artifacts-destination", str(root / "artifacts"),
         "--host", "127.0.0.1", "--port", str(port), "--workers", "1"],
        stdout=open(root / "server.log", "wb"), stderr=subprocess.STDOUT,
        start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 150
        while True:
            try:
                with urllib.request.urlopen(f"{url}/health", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError("mlflow server did not start:\n"
                                     + (root / "server.log").read_text()[-2000:])
            time.sleep(0.5)
        yield url
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def test_export_and_import_through_a_tracking_server(
    mlflow_server: str, tmp_path: Path, store: Store, store_url: str,
) -> None:
    import hashlib

    from nbmlops.store.entities import ArtifactIO, CellRecord, MetricValue

    written = tmp_path / "work" / "preds.csv"
    written.parent.mkdir()
    written.write_text("id,p\n1,0.3\n")
    rid = store.create_run(name="served", params={"k": "5"}, tags={"team": "ops"})
    store.record_cells(rid, [CellRecord(
        seq=0, source="preds.to_csv('preds.csv')", start_time=1.0, duration=0.1, status="ok",
        io=[ArtifactIO(uri=str(written), direction="wrote", via="to_csv",
                       fingerprint="sha256:" + hashlib.sha256(written.read_bytes()).hexdigest(),
                       size=written.stat().st_size)],
        metrics=[MetricValue("rmse", 0.7, 0, 2.0), MetricValue("rmse", 0.4, 1, 3.0)])])
    store.end_run(rid)
    res = nbmlops("--store", store_url, "export", "mlflow", "--tracking-uri", mlflow_server,
                  "--json")
    assert res.exit_code == 0, res.output
    report = json.loads(res.stdout)  # MLflow's "View run at" lines stay out of stdout
    mid = report["runs"][0]["target_id"]
    client = client_for(mlflow_server)
    assert client.get_run(mid).data.params == {"k": "5"}
    got = Path(client.download_artifacts(mid, "files/preds.csv", str(tmp_path / "dl")))
    assert got.read_text() == written.read_text()

    other = f"sqlite:///{tmp_path / 'other' / 'nbmlops.db'}"
    back = nbmlops("--store", other, "import", "mlflow", "--tracking-uri", mlflow_server, "--json")
    assert back.exit_code == 0, back.output
    assert json.loads(back.stdout)["created"] == 1
    with Store.open(other) as copy:
        run = copy.get_run(mid)
        assert run.params == {"k": "5"} and run.tags["team"] == "ops"
        assert run.tags["nbmlops.run_id"] == rid and run.status == "finished"
        assert [(m.step, m.value) for m in copy.metric_history(mid)] == [(0, 0.7), (1, 0.4)]
        [art] = copy.find_artifacts(str(copy.location.runs_dir / mid / "mlflow-artifacts"
                                        / "files" / "preds.csv"))
        assert art.fingerprint.endswith(hashlib.sha256(written.read_bytes()).hexdigest())


def test_an_imported_run_exported_to_another_mlflow_store_keeps_its_files(
    mlflow_uri: str, tmp_path: Path, store_url: str, empty_mlflow_db: Path,
) -> None:
    rid, _ = make_mlflow_runs(mlflow_uri, tmp_path)
    assert nbmlops("--store", store_url, "import", "mlflow", "--tracking-uri", mlflow_uri,
                   "--experiment", "churn").exit_code == 0
    second = tmp_path / "second.db"
    shutil.copyfile(empty_mlflow_db, second)
    res = nbmlops("--store", store_url, "export", "mlflow", "--tracking-uri",
                  f"sqlite:///{second}", "--json")
    assert res.exit_code == 0, res.output
    [entry] = json.loads(res.stdout)["runs"]
    assert entry["action"] == "created" and entry["artifacts"] == 3  # 2 files + lineage.json
    client = client_for(f"sqlite:///{second}")
    copy = client.get_run(entry["target_id"])
    assert copy.data.tags["mlflow.run_id"] == rid and copy.data.tags["nbmlops.run_id"] == rid
    assert copy.data.params == {"max_depth": "7", "criterion": "gini"}
    roc = Path(client.download_artifacts(copy.info.run_id, "plots/roc.csv", str(tmp_path / "d")))
    assert roc.read_text().startswith("fpr,tpr")
    assert json.loads(Path(client.download_artifacts(
        copy.info.run_id, "nbmlops/lineage.json", str(tmp_path / "d"))).read_text())[
        "cell_count"] == 0
