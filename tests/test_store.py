"""Contract tests of the lineage store against a real SQLite file (and PostgreSQL when
``NBMLOPS_TEST_POSTGRES_URL`` names an empty database the tests may wipe)."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from nbmlops.config import StoreLocation
from nbmlops.errors import (
    AmbiguousIdError,
    InvalidArgumentError,
    NotFoundError,
    StoreCorruptError,
    StoreError,
    StoreVersionError,
)
from nbmlops.redact import REDACTED
from nbmlops.store import ArtifactIO, CellRecord, Estimator, MetricValue, Store
from nbmlops.store.models import Base

# -- fixtures and builders ----------------------------------------------------------------------


def sqlite_location(root: Path) -> StoreLocation:
    store_dir = root / ".nbmlops"
    return StoreLocation(
        url=f"sqlite:///{store_dir / 'nbmlops.db'}",
        artifact_root=store_dir / "artifacts",
        store_dir=store_dir,
    )


def reset_postgres(url: str) -> None:
    """Drop every nbmlops table so that each test starts from an empty database."""
    engine = create_engine(url)
    try:
        with engine.begin() as conn:
            Base.metadata.drop_all(conn)
            conn.execute(text("DROP TABLE IF EXISTS alembic_version"))
    finally:
        engine.dispose()


def postgres_url() -> str | None:
    """Read when a test runs, so that a session fixture may set the variable after collection."""
    return os.environ.get("NBMLOPS_TEST_POSTGRES_URL") or None


@pytest.fixture(params=["sqlite", "postgresql"])
def location(request: pytest.FixtureRequest, tmp_path: Path) -> StoreLocation:
    if request.param == "postgresql":
        url = postgres_url()
        if url is None:
            pytest.skip("NBMLOPS_TEST_POSTGRES_URL is not set")
        reset_postgres(url)
        return StoreLocation(url=url, artifact_root=os.environ.get("NBMLOPS_ARTIFACT_URL")
                             or tmp_path / "artifacts")  # team mode: s3:// (conftest.py)
    return sqlite_location(tmp_path)


@pytest.fixture
def store(location: StoreLocation) -> Iterator[Store]:
    with Store(location) as s:
        yield s


@pytest.fixture
def sqlite_store(tmp_path: Path) -> Iterator[Store]:
    with Store(sqlite_location(tmp_path)) as s:
        yield s


def cell(seq: int, source: str, **kw: object) -> CellRecord:
    kw.setdefault("start_time", 1_000.0 + seq)
    kw.setdefault("duration", 0.25)
    kw.setdefault("status", "ok")
    kw.setdefault("execution_count", seq)
    return CellRecord(seq=seq, source=source, **kw)  # type: ignore[arg-type]


def read(uri: str, fingerprint: str, via: str = "pandas.read_csv", kind: str = "dataset") -> ArtifactIO:
    return ArtifactIO(uri=uri, direction="read", via=via, kind=kind, fingerprint=fingerprint, size=10)


def wrote(uri: str, fingerprint: str, via: str = "to_csv", kind: str = "dataset") -> ArtifactIO:
    return ArtifactIO(uri=uri, direction="wrote", via=via, kind=kind, fingerprint=fingerprint, size=20)


def file_state(path: Path) -> tuple[bytes, float]:
    """The bytes and modification time of a file (to prove nothing was touched)."""
    return path.read_bytes(), path.stat().st_mtime


# -- runs ---------------------------------------------------------------------------------------


def test_create_run_then_end_it(store: Store) -> None:
    rid = store.create_run(
        name="train",
        experiment="churn",
        source="papermill",
        notebook_path="/proj/train.ipynb",
        notebook_hash="ab" * 32,
        git_commit="0123456789abcdef",
        git_dirty=True,
        environment={"python_version": "3.11.7", "packages": {"pandas": "3.1.1"}},
        start_time=1_700_000_000.0,
    )
    run = store.get_run(rid)
    assert (run.id, run.name, run.experiment, run.source) == (rid, "train", "churn", "papermill")
    assert (run.status, run.end_time, run.duration) == ("running", None, None)
    assert run.notebook_path == "/proj/train.ipynb"
    assert (run.git_commit, run.git_dirty) == ("0123456789abcdef", True)
    assert run.environment == {"python_version": "3.11.7", "packages": {"pandas": "3.1.1"}}
    assert run.cell_count == 0

    store.end_run(rid, "failed", end_time=1_700_000_090.5)
    run = store.get_run(rid)
    assert (run.status, run.end_time, run.duration) == ("failed", 1_700_000_090.5, 90.5)
    assert store.experiments() == ["churn"]


def test_default_experiment_and_run_argument_errors(store: Store) -> None:
    rid = store.create_run(name="plain")
    assert store.get_run(rid).experiment == "Default"
    with pytest.raises(InvalidArgumentError, match="source"):
        store.create_run(name="x", source="cron")
    with pytest.raises(InvalidArgumentError):
        store.end_run(rid, "running")
    with pytest.raises(NotFoundError):
        store.end_run("0" * 32)
    assert store.list_runs().total == 1


def test_params_metrics_tags_with_secrets_redacted(store: Store) -> None:
    rid = store.create_run(name="r", params={"alpha": 0.5}, tags={"team": "risk"})
    store.log_batch(
        rid,
        params={
            "max_depth": 3,
            "model": "rf",
            "api_key": "sk-live-123",
            "db_password": "hunter2",
            "auth_token": "tok-abc",
            "client_secret": "s3cr3t",
        },
        metrics=[
            MetricValue("loss", 0.9, step=0),
            MetricValue("loss", 0.4, step=2),
            MetricValue("loss", 0.6, step=1),
            MetricValue("accuracy", 0.875),
        ],
        tags={"stage": "dev", "GITHUB_TOKEN": "ghp_xyz"},
    )
    run = store.get_run(rid)
    assert run.params == {
        "alpha": "0.5",
        "max_depth": "3",
        "model": "rf",
        "api_key": REDACTED,
        "db_password": REDACTED,
        "auth_token": REDACTED,
        "client_secret": REDACTED,
    }
    assert run.tags == {"team": "risk", "stage": "dev", "GITHUB_TOKEN": REDACTED}
    # the latest metric value is the one of the highest step, not the last logged
    assert run.metrics == {"loss": 0.4, "accuracy": 0.875}
    history = store.metric_history(rid, "loss")
    assert [(m.step, m.value) for m in history] == [(0, 0.9), (1, 0.6), (2, 0.4)]

    # a param logged again takes the new value
    store.log_batch(rid, params={"max_depth": 5})
    assert store.get_run(rid).params["max_depth"] == "5"
    with pytest.raises(InvalidArgumentError, match="must be a finite number"):
        store.log_batch(rid, metrics=[MetricValue("f1", "high")])  # type: ignore[arg-type]
    with pytest.raises(InvalidArgumentError, match="must be a finite number"):
        store.log_batch(rid, metrics=[MetricValue("flag", True)])
    assert store.get_run(rid).metrics == {"loss": 0.4, "accuracy": 0.875}


def test_secret_values_never_reach_the_database_file(tmp_path: Path) -> None:
    loc = sqlite_location(tmp_path)
    with Store(loc) as s:
        rid = s.create_run(name="r", params={"password": "pa55-w0rd-XYZ"})
        s.record_cells(rid, [cell(1, "x = 1", params={"api_key": "sk-live-QWERTY"})])
    assert loc.sqlite_path is not None
    raw = b"".join(p.read_bytes() for p in loc.sqlite_path.parent.glob("nbmlops.db*"))
    assert b"pa55-w0rd-XYZ" not in raw
    assert b"sk-live-QWERTY" not in raw
    assert REDACTED.encode() in raw


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), float("-inf")])
def test_non_finite_metrics_are_refused_clearly_and_never_lose_a_cell(
    store: Store, bad: float
) -> None:
    """SQLite turns NaN into NULL (``metrics.value`` is NOT NULL): the public call refuses
    non-finite values with a clear argument error (exit 2, not "store failed"), and a cell
    whose sklearn score came out NaN is still recorded, without that score."""
    rid = store.create_run(name="r")
    store.record_cells(rid, [
        cell(1, "f1 = f1_score(y, p)\nacc = accuracy_score(y, p)",
             metrics=[MetricValue("f1", bad), MetricValue("accuracy", 0.5)]),
    ])
    (recorded,) = store.cell_executions(rid)
    assert [(m.key, m.value) for m in recorded.metrics] == [("accuracy", 0.5)]
    assert store.get_run(rid).metrics == {"accuracy": 0.5}
    with pytest.raises(InvalidArgumentError, match="'loss' must be a finite number") as err:
        store.log_batch(rid, metrics=[MetricValue("loss", bad)])
    assert err.value.exit_code == 2
    assert store.metric_history(rid, "loss") == []


# -- cell executions ----------------------------------------------------------------------------


def test_record_cells_with_variables_io_estimators_and_metrics(store: Store, tmp_path: Path) -> None:
    data = str(tmp_path / "data.csv")
    model = str(tmp_path / "model.pkl")
    rid = store.create_run(name="nb")
    ids = store.record_cells(
        rid,
        [
            cell(1, "import pandas as pd\ndf = pd.read_csv('data.csv')", cell_id="c-load",
                 vars_defined=["pd", "df"], io=[read(data, "sha256:d1")]),
            cell(
                2,
                "clf = RandomForestClassifier(max_depth=3).fit(df[X], df.y)\n"
                "acc = accuracy_score(df.y, clf.predict(df[X]))\njoblib.dump(clf, 'model.pkl')",
                cell_id="c-fit",
                vars_defined=["clf", "acc"],
                vars_used=["df"],
                var_sources={"df": 1},
                io=[wrote(model, "sha256:m1", via="joblib.dump", kind="model")],
                estimators=[Estimator("clf", "sklearn.ensemble.RandomForestClassifier",
                                      {"max_depth": 3}, ["df"])],
                metrics=[MetricValue("accuracy", 0.93)],
                params={"max_depth": "3"},
            ),
            cell(3, "1 / 0", status="error", error_name="ZeroDivisionError",
                 error_value="division by zero"),
        ],
    )
    assert len(ids) == 3 and len(set(ids)) == 3
    cells = store.cell_executions(rid)
    assert [c.seq for c in cells] == [1, 2, 3]
    assert [c.id for c in cells] == ids
    load, fit, bad = cells
    assert load.cell_id == "c-load" and load.source.startswith("import pandas")
    assert load.vars_defined == ["pd", "df"]
    assert [(a.uri, a.fingerprint, a.kind) for a in load.reads] == [(data, "sha256:d1", "dataset")]
    assert load.writes == [] and load.estimators == []
    assert fit.vars_used == ["df"]
    assert [(a.uri, a.kind) for a in fit.writes] == [(model, "model")]
    assert [(e.variable, e.class_name, e.params, e.fitted_on, e.cell_seq) for e in fit.estimators] == [
        ("clf", "sklearn.ensemble.RandomForestClassifier", {"max_depth": 3}, ["df"], 2)
    ]
    assert [(m.key, m.value, m.cell_seq) for m in fit.metrics] == [("accuracy", 0.93, 2)]
    assert fit.params == {"max_depth": "3"}
    assert (bad.status, bad.error_name, bad.error_value) == ("error", "ZeroDivisionError",
                                                            "division by zero")
    run = store.get_run(rid)
    assert run.cell_count == 3
    assert run.metrics == {"accuracy": 0.93} and run.params == {"max_depth": "3"}
    # the variable edge links the fitting cell back to the loading one
    graph = store.lineage("clf", run_id=rid)
    assert (f"cell:{ids[0]}", f"cell:{ids[1]}", "df") in {
        (e.source, e.target, e.label) for e in graph.edges
    }


def test_cell_executions_are_ordered_by_seq_and_sources_shared(store: Store) -> None:
    rid = store.create_run(name="nb")
    store.record_cells(rid, [cell(3, "c = 3")])
    store.record_cells(rid, [cell(1, "a = 1"), cell(2, "b = 2")])
    store.record_cells(rid, [cell(4, "a = 1")])  # same source again
    cells = store.cell_executions(rid)
    assert [(c.seq, c.source) for c in cells] == [(1, "a = 1"), (2, "b = 2"), (3, "c = 3"), (4, "a = 1")]
    assert cells[0].source_hash == cells[3].source_hash != cells[1].source_hash
    assert [c.seq for c in store.cell_executions(rid, since_seq=2)] == [3, 4]
    assert store.record_cells(rid, []) == []


# -- run ids ------------------------------------------------------------------------------------


def test_run_id_prefixes(store: Store) -> None:
    a = store.create_run(name="a", run_id="abcd1111" + "0" * 24)
    b = store.create_run(name="b", run_id="abcd2222" + "0" * 24)
    assert store.get_run(a).name == "a"
    assert store.get_run("abcd1").id == a
    assert store.get_run("abcd2222").id == b
    with pytest.raises(AmbiguousIdError) as err:
        store.get_run("abcd")
    assert a in str(err.value) and b in str(err.value)
    assert err.value.exit_code == 4
    with pytest.raises(NotFoundError, match="at least 4"):
        store.get_run("abc")
    with pytest.raises(NotFoundError):
        store.get_run("ffff")
    with pytest.raises(NotFoundError):  # LIKE wildcards are not wildcards
        store.get_run("abc_%")
    with pytest.raises(InvalidArgumentError):
        store.get_run("  ")


# -- listing ------------------------------------------------------------------------------------


@pytest.fixture
def seven_runs(store: Store) -> dict[str, str]:
    specs = [
        # name, experiment, notebook, source, status, start
        ("prep", "churn", "/p/prep.ipynb", "interactive", "finished", 100.0),
        ("train", "churn", "/p/train.ipynb", "papermill", "finished", 200.0),
        ("train", "churn", "/p/train.ipynb", "papermill", "failed", 300.0),
        ("eval", "churn", "/p/eval.ipynb", "pipeline", "finished", 400.0),
        ("explore", "fraud", "/q/explore.ipynb", "interactive", "running", 500.0),
        ("train", "fraud", "/q/train.ipynb", "schedule", "finished", 600.0),
        ("report", "fraud", None, "interactive", "cancelled", 700.0),
    ]
    ids: dict[str, str] = {}
    for name, exp, nb, src, status, start in specs:
        rid = store.create_run(name=name, experiment=exp, notebook_path=nb, source=src,
                               start_time=start, params={"n": int(start)})
        if status != "running":
            store.end_run(rid, status, end_time=start + 10)
        ids[f"{name}@{int(start)}"] = rid
    return ids


def _names(page: object) -> list[str]:
    return [f"{r.name}@{int(r.start_time)}" for r in page.runs]  # type: ignore[attr-defined]


def test_list_runs_filters(store: Store, seven_runs: dict[str, str]) -> None:
    page = store.list_runs()
    assert page.total == 7 and (page.limit, page.offset) == (50, 0)
    assert _names(page) == ["report@700", "train@600", "explore@500", "eval@400", "train@300",
                            "train@200", "prep@100"]
    assert page.runs[0].params == {"n": "700"}
    assert _names(store.list_runs(experiment="fraud")) == ["report@700", "train@600", "explore@500"]
    assert _names(store.list_runs(notebook="train.ipynb")) == ["train@600", "train@300", "train@200"]
    assert _names(store.list_runs(notebook="/p/train.ipynb")) == ["train@300", "train@200"]
    assert _names(store.list_runs(status="finished", experiment="churn")) == [
        "eval@400", "train@200", "prep@100"]
    assert _names(store.list_runs(source="interactive")) == ["report@700", "explore@500", "prep@100"]
    assert _names(store.list_runs(search="xplo")) == ["explore@500"]
    assert store.list_runs(experiment="nope").total == 0


def test_list_runs_filters_match_text_literally(store: Store) -> None:
    """``%`` and ``_`` typed by a user are characters, not LIKE wildcards."""
    a = store.create_run(name="a_b", notebook_path="/p/a_b.ipynb")
    store.create_run(name="axb", notebook_path="/p/axb.ipynb")
    pct = store.create_run(name="100% done", notebook_path="/p/100%.ipynb")
    assert [r.id for r in store.list_runs(notebook="a_b.ipynb").runs] == [a]
    assert [r.id for r in store.list_runs(search="a_b").runs] == [a]
    assert [r.id for r in store.list_runs(search="0%").runs] == [pct]
    assert [r.id for r in store.list_runs(notebook="100%.ipynb").runs] == [pct]
    assert store.list_runs(notebook="%.ipynb").runs == []  # a name, not a pattern


def test_latest_run_of_a_notebook(store: Store, seven_runs: dict[str, str]) -> None:
    latest = store.latest_run(["/p/train.ipynb"])
    assert latest is not None and latest.id == seven_runs["train@300"] and latest.params == {"n": "300"}
    # several spellings of one notebook (a symlinked root, say): the newest run of any
    both = store.latest_run(["/p/train.ipynb", "/q/train.ipynb"])
    assert both is not None and both.id == seven_runs["train@600"]
    assert store.latest_run(["train.ipynb"]) is None  # exact paths only, no suffix match
    assert store.latest_run(["/p/%"]) is None  # no pattern matching either
    assert store.latest_run([]) is None


def test_list_runs_sorting_and_paging(store: Store, seven_runs: dict[str, str]) -> None:
    asc = store.list_runs(order_by="start_time", descending=False, limit=3)
    assert _names(asc) == ["prep@100", "train@200", "train@300"]
    assert asc.total == 7
    page2 = store.list_runs(order_by="start_time", descending=False, limit=3, offset=3)
    assert _names(page2) == ["eval@400", "explore@500", "train@600"]
    last = store.list_runs(order_by="start_time", descending=False, limit=3, offset=6)
    assert _names(last) == ["report@700"] and last.total == 7
    assert store.list_runs(offset=50).runs == []
    by_name = [r.name for r in store.list_runs(order_by="name", descending=False).runs]
    assert by_name == sorted(by_name)
    by_status = [r.status for r in store.list_runs(order_by="status").runs]
    assert by_status == sorted(by_status, reverse=True)
    # end_time sorts with the running run (no end time) at one end
    ends = [r.end_time for r in store.list_runs(order_by="end_time", descending=False).runs]
    assert [e for e in ends if e is not None] == sorted(e for e in ends if e is not None)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"order_by": "accuracy"}, "cannot sort runs by 'accuracy'"),
        ({"order_by": "start_time; DROP TABLE runs"}, "cannot sort"),
        ({"limit": 0}, "limit"),
        ({"limit": 10_001}, "limit"),
        ({"limit": "5"}, "limit"),
        ({"offset": -1}, "offset"),
        ({"status": "done"}, "status"),
    ],
)
def test_list_runs_rejects_bad_arguments(store: Store, kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(InvalidArgumentError, match=message) as err:
        store.list_runs(**kwargs)  # type: ignore[arg-type]
    assert err.value.exit_code == 2


# -- compare ------------------------------------------------------------------------------------


def test_compare_marks_differing_params(store: Store) -> None:
    a = store.create_run(name="a", params={"lr": 0.1, "depth": 3, "seed": 1})
    b = store.create_run(name="b", params={"lr": 0.2, "depth": 3, "extra": "x", "seed": 1})
    store.log_batch(a, metrics=[MetricValue("acc", 0.8)])
    store.log_batch(b, metrics=[MetricValue("acc", 0.9), MetricValue("f1", 0.7)])
    cmp = store.compare([a[:8], b])
    assert [r.id for r in cmp.runs] == [a, b]
    assert cmp.params == {
        "depth": ["3", "3"],
        "extra": [None, "x"],
        "lr": ["0.1", "0.2"],
        "seed": ["1", "1"],
    }
    assert sorted(cmp.params_differ) == ["extra", "lr"]
    assert cmp.metrics == {"acc": [0.8, 0.9], "f1": [None, 0.7]}
    with pytest.raises(InvalidArgumentError):
        store.compare([a])
    with pytest.raises(NotFoundError):
        store.compare([a, "0" * 32])


# -- lineage ------------------------------------------------------------------------------------


@pytest.fixture
def two_linked_runs(store: Store, tmp_path: Path) -> dict[str, object]:
    """Run A turns raw.csv into features.csv; run B reads features.csv and writes model.pkl."""
    raw, feats, model = (str(tmp_path / n) for n in ("raw.csv", "features.csv", "model.pkl"))
    a = store.create_run(name="prep")
    a_ids = store.record_cells(a, [
        cell(1, "raw = pd.read_csv('raw.csv')", vars_defined=["raw"], io=[read(raw, "sha256:r1")]),
        cell(2, "feats = clean(raw)\nfeats.to_csv('features.csv')", vars_defined=["feats"],
             vars_used=["raw"], var_sources={"raw": 1}, io=[wrote(feats, "sha256:f1")]),
    ])
    store.end_run(a)
    b = store.create_run(name="train")
    b_ids = store.record_cells(b, [
        cell(1, "X = pd.read_csv('features.csv')", vars_defined=["X"], io=[read(feats, "sha256:f1")]),
        cell(2, "model = fit(X)", vars_defined=["model"], vars_used=["X"], var_sources={"X": 1},
             estimators=[Estimator("model", "sklearn.linear_model.LogisticRegression", {"C": 1.0},
                                   ["X"])]),
        cell(3, "joblib.dump(model, 'model.pkl')", vars_used=["model"], var_sources={"model": 2},
             io=[wrote(model, "sha256:m1", via="joblib.dump", kind="model")]),
        cell(4, "print('unrelated')"),
    ])
    store.end_run(b)
    return {"a": a, "b": b, "a_ids": a_ids, "b_ids": b_ids, "raw": raw, "feats": feats,
            "model": model}


def _edges(graph: object) -> set[tuple[str, str, str]]:
    return {(e.source, e.target, e.label) for e in graph.edges}  # type: ignore[attr-defined]


def test_lineage_upstream_of_a_file_crosses_runs(store: Store, two_linked_runs: dict) -> None:
    t = two_linked_runs
    a1, a2 = t["a_ids"]
    b1, b2, b3, b4 = t["b_ids"]
    graph = store.lineage(t["model"])
    assert graph.root.startswith("artifact:")
    root = graph.node(graph.root)
    assert root.label == "model.pkl" and root.attrs["uri"] == t["model"]
    feats_id = next(n.id for n in graph.nodes if n.label == "features.csv")
    raw_id = next(n.id for n in graph.nodes if n.label == "raw.csv")
    assert {
        (f"cell:{b3}", graph.root, "wrote"),
        (f"cell:{b2}", f"cell:{b3}", "model"),
        (f"cell:{b1}", f"cell:{b2}", "X"),
        (feats_id, f"cell:{b1}", "read"),
        (f"cell:{a2}", feats_id, "wrote"),
        (f"cell:{a1}", f"cell:{a2}", "raw"),
        (raw_id, f"cell:{a1}", "read"),
    } <= _edges(graph)
    cells = {n.id: n for n in graph.nodes if n.type == "cell"}
    assert f"cell:{b4}" not in cells  # the unrelated cell is not upstream of the model
    assert cells[f"cell:{a1}"].attrs["run_id"] == t["a"]
    assert cells[f"cell:{b2}"].attrs["run_id"] == t["b"]
    estimators = [n for n in graph.nodes if n.type == "estimator"]
    assert [n.attrs["class_name"] for n in estimators] == ["sklearn.linear_model.LogisticRegression"]


def test_lineage_downstream_of_a_file_reaches_the_model(store: Store, two_linked_runs: dict) -> None:
    t = two_linked_runs
    graph = store.lineage(t["raw"], direction="downstream")
    labels = {n.label for n in graph.nodes if n.type == "artifact"}
    assert labels == {"raw.csv", "features.csv", "model.pkl"}
    cell_runs = {n.attrs["run_id"] for n in graph.nodes if n.type == "cell"}
    assert cell_runs == {t["a"], t["b"]}
    assert f"cell:{t['b_ids'][3]}" not in {n.id for n in graph.nodes}
    # by artifact id and by cell id too
    same = store.lineage(graph.root, direction="downstream")
    assert _edges(same) == _edges(graph)
    from_cell = store.lineage(f"cell:{t['a_ids'][1]}", direction="downstream")
    assert "model.pkl" in {n.label for n in from_cell.nodes}
    assert "raw.csv" not in {n.label for n in from_cell.nodes}


def test_lineage_of_a_variable_needs_its_run(store: Store, two_linked_runs: dict) -> None:
    t = two_linked_runs
    graph = store.lineage("model", run_id=t["b"][:6])
    assert graph.root == f"var:{t['b_ids'][1]}:model"
    assert graph.node(graph.root).type == "variable"
    assert {"raw.csv", "features.csv"} <= {n.label for n in graph.nodes}
    down = store.lineage("model", run_id=t["b"], direction="downstream")
    assert "model.pkl" in {n.label for n in down.nodes}
    assert "raw.csv" not in {n.label for n in down.nodes}
    with pytest.raises(InvalidArgumentError, match="name the run"):
        store.lineage("model")
    with pytest.raises(NotFoundError):
        store.lineage("model", run_id=t["a"])  # run A never defined `model`
    with pytest.raises(NotFoundError):
        store.lineage("/no/such/file.csv")
    with pytest.raises(NotFoundError):
        store.lineage("artifact:999999")
    with pytest.raises(InvalidArgumentError):
        store.lineage(t["raw"], direction="sideways")


# -- artifacts ----------------------------------------------------------------------------------


def test_log_artifact_is_content_addressed(store: Store, tmp_path: Path) -> None:
    rid = store.create_run(name="r")
    store.record_cells(rid, [cell(1, "save()")])
    one, two, other = tmp_path / "one.bin", tmp_path / "two.bin", tmp_path / "other.bin"
    one.write_bytes(b"same bytes")
    two.write_bytes(b"same bytes")
    other.write_bytes(b"different bytes")

    a1 = store.log_artifact(rid, one, kind="model", cell_seq=1)
    a1_again = store.log_artifact(rid, one)
    a2 = store.log_artifact(rid, two)
    a3 = store.log_artifact(rid, other)

    assert a1.id == a1_again.id  # same file, same content: one artifact
    assert a1.kind == "model" and a1.uri == str(one.resolve()) and a1.size == 10
    assert a1.fingerprint.startswith("sha256:") and a1.fingerprint == a2.fingerprint
    assert a2.id != a1.id and a2.stored_path == a1.stored_path  # two names, one stored copy
    assert a3.stored_path != a1.stored_path
    blobs = [p for p in (store.location.artifact_root / "sha256").rglob("*") if p.is_file()]
    assert len(blobs) == 2
    assert Path(a1.stored_path or "").read_bytes() == b"same bytes"
    assert Path(a1.stored_path or "").name == a1.fingerprint.removeprefix("sha256:")
    assert [a.id for a in store.find_artifacts(str(one))] == [a1.id]
    assert store.cell_executions(rid)[0].writes[0].id == a1.id
    with pytest.raises(NotFoundError):
        store.log_artifact(rid, tmp_path / "missing.bin")


# -- schema and migrations ----------------------------------------------------------------------


def test_migrated_schema_matches_the_orm_models(store: Store) -> None:
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext

    with store.engine.connect() as conn:
        ctx = MigrationContext.configure(conn, opts={"compare_type": True})
        diffs = compare_metadata(ctx, Base.metadata)
        version = conn.execute(text("SELECT version_num FROM alembic_version")).scalar_one()
    assert diffs == []
    assert version == store.schema_revision


def test_reopening_a_store_keeps_its_data(tmp_path: Path) -> None:
    loc = sqlite_location(tmp_path)
    with Store(loc) as s:
        rid = s.create_run(name="kept", params={"k": "v"})
        revision = s.schema_revision
    with Store(loc) as s:
        assert s.schema_revision == revision
        assert s.get_run(rid).params == {"k": "v"}


def test_store_from_a_newer_nbmlops_is_refused_untouched(tmp_path: Path) -> None:
    loc = sqlite_location(tmp_path)
    with Store(loc) as s:
        s.create_run(name="future")
    db = loc.sqlite_path
    assert db is not None
    with sqlite3.connect(db) as conn:
        conn.execute("UPDATE alembic_version SET version_num = 'ffff'")
    conn.close()
    before = file_state(db)
    with pytest.raises(StoreVersionError) as err:
        Store(loc)
    assert str(db) in str(err.value)
    assert "Upgrade nbmlops" in str(err.value) and "ffff" in str(err.value)
    assert err.value.exit_code == 3
    assert file_state(db) == before


def test_non_sqlite_file_is_refused_untouched(tmp_path: Path) -> None:
    loc = sqlite_location(tmp_path)
    assert loc.sqlite_path is not None
    loc.sqlite_path.parent.mkdir(parents=True)
    loc.sqlite_path.write_bytes(b"not a database, just some text\n" * 10)
    before = file_state(loc.sqlite_path)
    with pytest.raises(StoreCorruptError) as err:
        Store(loc)
    assert str(loc.sqlite_path) in str(err.value)
    assert isinstance(err.value, StoreError) and err.value.exit_code == 3
    assert file_state(loc.sqlite_path) == before


def test_foreign_sqlite_database_is_refused_untouched(tmp_path: Path) -> None:
    """Store bug (see the report): every new connection runs ``PRAGMA journal_mode = WAL``
    before the schema check, which rewrites the header of the foreign file it then refuses
    (bytes 18-19 become 2: the user's database is left in WAL mode)."""
    loc = sqlite_location(tmp_path)
    db = loc.sqlite_path
    assert db is not None
    db.parent.mkdir(parents=True)
    with sqlite3.connect(db) as conn:
        conn.execute("CREATE TABLE customers (id INTEGER PRIMARY KEY, name TEXT)")
        conn.execute("INSERT INTO customers (name) VALUES ('ada')")
    conn.close()
    before = file_state(db)
    with pytest.raises(StoreCorruptError, match="customers") as err:
        Store(loc)
    assert str(db) in str(err.value)
    assert file_state(db) == before
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT name FROM customers").fetchall() == [("ada",)]
    conn.close()


def make_future_store(loc: StoreLocation) -> None:
    with Store(loc) as s:
        s.create_run(name="future")
    with sqlite3.connect(loc.sqlite_path or "") as conn:
        conn.execute("UPDATE alembic_version SET version_num = 'ffff'")
    conn.close()


def make_foreign_db(loc: StoreLocation) -> None:
    assert loc.sqlite_path is not None
    loc.sqlite_path.parent.mkdir(parents=True)
    with sqlite3.connect(loc.sqlite_path) as conn:
        conn.execute("CREATE TABLE customers (id INTEGER PRIMARY KEY, name TEXT)")
    conn.close()


@pytest.mark.parametrize("make", [make_future_store, make_foreign_db], ids=["future", "foreign"])
def test_refused_store_is_closed_at_once(tmp_path: Path, make: object) -> None:
    """A store that refuses to open must not keep a connection to the file it refused.

    Store bug (see the report): ``Store.__init__`` does not dispose its engine when
    ``ensure_schema`` raises, so the pooled SQLite connection stays open (and ``-wal``/``-shm``
    files appear next to the refused file) until the garbage collector finds the engine.
    """
    loc = sqlite_location(tmp_path)
    make(loc)  # type: ignore[operator]
    assert loc.sqlite_path is not None
    with pytest.raises(StoreError) as err:
        Store(loc)
    assert isinstance(err.value, (StoreVersionError, StoreCorruptError))
    # `err` still references the failed Store's frames, as a caller handling the error would
    assert sorted(p.name for p in loc.sqlite_path.parent.iterdir()) == ["nbmlops.db"]


# -- concurrency --------------------------------------------------------------------------------

WRITER = textwrap.dedent(
    """
    import sys, time
    from nbmlops.store import ArtifactIO, CellRecord, MetricValue, Store

    url, art, worker, n_runs, start_at = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), float(sys.argv[5])
    while time.time() < start_at:  # start together, to collide
        time.sleep(0.005)
    store = Store.open(url, art)
    for i in range(n_runs):
        # every iteration creates an experiment, a cell source and an artifact that the other
        # workers create at about the same moment: get-or-create races, not just queued writes
        rid = store.create_run(name=f"w{worker}-{i}", experiment=f"exp{i % 25}",
                               params={"worker": worker, "i": i})
        store.record_cells(rid, [
            CellRecord(seq=1, source=f"df = load({i})", start_time=time.time(), duration=0.01,
                       status="ok", vars_defined=["df"],
                       io=[ArtifactIO(uri=f"/data/part-{i}.csv", direction="read", via="pandas",
                                      fingerprint=f"sha256:{i}")]),
            CellRecord(seq=2, source="m = fit(df)", start_time=time.time(), duration=0.01,
                       status="ok", vars_defined=["m"], vars_used=["df"], var_sources={"df": 1}),
            CellRecord(seq=3, source=f"score = {worker}", start_time=time.time(), duration=0.01,
                       status="ok", metrics=[MetricValue("score", float(i))]),
        ])
        store.end_run(rid)
    store.close()
    print("done", worker)
    """
)


def _run_writers(url: str, art: Path, workers: int, n_runs: int) -> list[subprocess.CompletedProcess[str]]:
    start_at = time.time() + 1.5  # time enough for every interpreter to import nbmlops
    env = {**os.environ, "NBMLOPS_BUSY_TIMEOUT_MS": "30000"}
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", WRITER, url, str(art), str(w), str(n_runs), str(start_at)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
        )
        for w in range(workers)
    ]
    results = []
    for p in procs:
        out, err = p.communicate(timeout=120)
        results.append(subprocess.CompletedProcess(p.args, p.returncode, out, err))
    return results


def test_concurrent_writers_lose_nothing(location: StoreLocation) -> None:
    with Store(location) as s:  # the store exists before the writers start
        s.create_run(name="before")
    results = _run_writers(location.url, location.artifact_root, workers=4, n_runs=50)
    for r in results:
        assert r.returncode == 0, r.stderr[-2000:]
        assert r.stdout.startswith("done")
    with Store(location) as s:
        page = s.list_runs(limit=1000, search="w")
        assert page.total == 200
        assert {r.name for r in page.runs} == {f"w{w}-{i}" for w in range(4) for i in range(50)}
        assert all(r.status == "finished" and r.cell_count == 3 for r in page.runs)
        assert all(r.metrics == {"score": float(r.params["i"])} for r in page.runs)
        with s.engine.connect() as conn:
            n_cells = conn.execute(text("SELECT count(*) FROM cell_executions")).scalar_one()
            n_sources = conn.execute(text("SELECT count(*) FROM cell_sources")).scalar_one()
            n_artifacts = conn.execute(text("SELECT count(*) FROM artifacts")).scalar_one()
            n_var_edges = conn.execute(text("SELECT count(*) FROM variable_edges")).scalar_one()
        assert n_cells == 600
        assert n_sources == 50 + 1 + 4  # one per iteration, one shared, one per worker
        assert n_artifacts == 50
        assert n_var_edges == 200
        assert sorted(s.experiments()) == sorted(["Default", *(f"exp{k}" for k in range(25))])


def test_concurrent_first_open_of_a_fresh_store(tmp_path: Path) -> None:
    """Several processes opening a store that does not exist yet must all succeed: one
    migrates, the others wait for its lock and find the schema at head (a deferred ``BEGIN``
    used to fail at once with "database is locked" under WAL)."""
    for attempt in range(3):
        loc = sqlite_location(tmp_path / f"fresh{attempt}")
        results = _run_writers(loc.url, loc.artifact_root, workers=4, n_runs=1)
        errors = [r.stderr.strip().splitlines()[-1] for r in results if r.returncode != 0]
        assert errors == [], f"attempt {attempt}: {errors}"
        with Store(loc) as s:
            assert s.list_runs().total == 4


def test_schema_head_fast_path_matches_the_migrations() -> None:
    """``SCHEMA_HEAD`` lets a current store open without Alembic; it must name the real head."""
    from alembic.script import ScriptDirectory

    from nbmlops.store.engine import SCHEMA_HEAD, _alembic_config

    assert ScriptDirectory.from_config(_alembic_config()).get_current_head() == SCHEMA_HEAD


def test_own_tags_are_never_redacted_but_secret_looking_user_names_are() -> None:
    from nbmlops.redact import REDACTED, redact_mapping

    got = redact_mapping({"nbmlops.cache_key": "ab12", "cache_key": "ab12", "api_token": "t"})
    assert got == {"nbmlops.cache_key": "ab12", "cache_key": REDACTED, "api_token": REDACTED}


def test_opening_a_second_store_keeps_the_first_ones_locks(tmp_path: Path) -> None:
    """Regression: opening a second Store on a file this process already has open used to read
    the file's header with open()/close(), which drops every POSIX lock the process holds on
    it. Another process closing its connection then took itself for the last user and deleted
    the WAL under the first store (seen as "disk I/O error" in the Jupyter server tests)."""
    import subprocess
    import sys

    loc = sqlite_location(tmp_path)
    db = loc.sqlite_path
    assert db is not None
    with Store(loc) as first:
        first.create_run(name="first")
        Store(loc).close()  # a second store of the same file, opened and closed
        child = ("import sys; from nbmlops.store import Store; "
                 "s = Store.open(sys.argv[1], sys.argv[2]); s.create_run(name='child'); s.close()")
        subprocess.run([sys.executable, "-c", child, loc.url, str(loc.artifact_root)], check=True,
                       timeout=60)
        # the child was not the last user: it must have left the WAL to us
        assert (db.parent / (db.name + "-wal")).exists()
        first.create_run(name="after")
        assert first.list_runs().total == 3
