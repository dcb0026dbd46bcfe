"""Monitoring: the store's monitor_results (SQLite and PostgreSQL), ``monitor()`` on real
registered scikit-learn models and real prediction logs, the HTML report, ``nbmlops monitor``
subprocesses and their bad inputs."""

from __future__ import annotations

import json
import math
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pandas as pd
import pytest
from sklearn.datasets import load_wine
from sklearn.dummy import DummyClassifier
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.linear_model import LinearRegression, LogisticRegression
from sklearn.model_selection import train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from nbmlops.errors import InvalidArgumentError, NotFoundError
from nbmlops.fingerprint import fingerprint_file, frame_schema
from nbmlops.monitoring.monitor import monitor
from nbmlops.monitoring.predlog import PredictionLogWriter, write_labels
from nbmlops.registry.gate import gate
from nbmlops.registry.service import register
from nbmlops.store import Store
from nbmlops.store.entities import ArtifactIO, CellRecord, Estimator
from nbmlops.validation.schema import infer_schema

from ._scripts import nbmlops, one_line_error
from .test_store import location, store  # noqa: F401

# -- store.monitoring ---------------------------------------------------------------------------


def test_monitor_results_record_list_get(store: Store) -> None:  # noqa: F811
    a = store.monitoring.record(model="wine", alias="champion", version=1, score=0.0,
                                drifted=False, rows=100, labeled_rows=10, window="1h",
                                threshold=0.2, report={"features": [{"name": "x", "psi": 0.01}]})
    b = store.monitoring.record(model="wine", alias="champion", version=2, score=0.7,
                                drifted=True, rows=50, source="trigger:retrain",
                                report={"score": math.inf, "nested": [math.nan, 1.5]})
    c = store.monitoring.record(model="iris", version=3, score=math.nan, drifted=False, rows=1)
    assert (a.model, a.alias, a.version, a.window, a.threshold, a.drifted) == \
        ("wine", "champion", 1, "1h", 0.2, False)
    assert b.report == {"score": None, "nested": [None, 1.5]}  # JSON without NaN/Infinity
    assert c.score == 0.0 and c.alias is None and c.source == "cli"
    assert [r.id for r in store.monitoring.list()] == [c.id, b.id, a.id]
    assert [r.id for r in store.monitoring.list("wine")] == [b.id, a.id]
    assert [r.id for r in store.monitoring.list("wine", version=1)] == [a.id]
    assert [r.id for r in store.monitoring.list(limit=1)] == [c.id]
    light = store.monitoring.list("wine", with_report=False)
    assert light[0].report == {} and light[0].score == 0.7 and light[0].source == "trigger:retrain"
    got = store.monitoring.get(a.id)
    assert got == a and got.report["features"][0]["psi"] == 0.01
    with pytest.raises(NotFoundError, match="no monitor result 9999"):
        store.monitoring.get(9999)
    with pytest.raises(InvalidArgumentError):
        store.monitoring.list(limit=0)


# -- a served model: real lineage, real gate, real scikit-learn, real prediction log --------------


@pytest.fixture(scope="module")
def wine() -> dict[str, Any]:
    frame = load_wine(as_frame=True).frame
    # the held-out part is the larger one: the reference must still be the training file
    train, test = train_test_split(frame, test_size=0.6, random_state=0, stratify=frame["target"])
    X, y = train.drop(columns=["target"]), train["target"]
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000)).fit(X, y)
    return {"train": train, "test": test, "model": model}


@pytest.fixture
def url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'proj' / '.nbmlops' / 'nbmlops.db'}"


@pytest.fixture
def mstore(url: str, tmp_path: Path) -> Iterator[Store]:
    s = Store.open(url, tmp_path / "proj" / ".nbmlops" / "artifacts")
    yield s
    s.close()


def _cell(seq: int, source: str, **kw: Any) -> CellRecord:
    kw.setdefault("start_time", 1_000.0 + seq)
    kw.setdefault("duration", 0.1)
    kw.setdefault("status", "ok")
    kw.setdefault("execution_count", seq)
    return CellRecord(seq=seq, source=source, **kw)


def _io(path: Path, direction: str, via: str, kind: str, frame: Any = None) -> ArtifactIO:
    fp = fingerprint_file(path)
    assert fp is not None
    return ArtifactIO(uri=str(path), direction=direction, via=via, kind=kind, fingerprint=fp[0],
                      size=fp[1], schema=frame_schema(frame) if frame is not None else None)


def train_and_gate(store: Store,  # noqa: F811
                   tmp_path: Path, wine: dict[str, Any], name: str = "wine",
                   model: Any = None) -> dict[str, Any]:
    """What a captured training notebook leaves: a run whose first cell read train.csv and
    test.csv, a cell that fitted the model, a cell that dumped it; then the gate registers the
    file (lineage from capture) and promotes it, scored on test.csv."""
    data = tmp_path / "data"
    data.mkdir(exist_ok=True)
    train_csv, test_csv = data / "train.csv", data / "test.csv"
    wine["train"].to_csv(train_csv, index=False)
    wine["test"].to_csv(test_csv, index=False)
    model = model if model is not None else wine["model"]
    model_file = data / f"{name}.joblib"
    joblib.dump(model, model_file)
    rid = store.create_run(name="train")
    store.record_cells(rid, [
        _cell(0, "train = pd.read_csv('train.csv'); test = pd.read_csv('test.csv')",
              vars_defined=["train", "test"],
              io=[_io(train_csv, "read", "pandas.read_csv", "dataset", wine["train"]),
                  _io(test_csv, "read", "pandas.read_csv", "dataset", wine["test"])]),
        _cell(1, "X, y = train.drop(columns=['target']), train['target']", vars_used=["train"],
              var_sources={"train": 0}, vars_defined=["X", "y"]),
        _cell(2, "model.fit(X, y)", vars_used=["X", "y"], var_sources={"X": 1, "y": 1},
              vars_defined=["model"], estimators=[Estimator("model", "Pipeline", {}, ["X", "y"])]),
        _cell(3, "joblib.dump(model, 'model.joblib')", vars_used=["model"],
              var_sources={"model": 2}, io=[_io(model_file, "wrote", "joblib.dump", "model")]),
    ])
    decision = gate(str(model_file), name=name, metric="accuracy", data=str(test_csv),
                    target="target", store=store)
    assert decision.promoted
    return {"train_csv": train_csv, "test_csv": test_csv, "model": model,
            "version": decision.candidate_version}


def serve_rows(store: Store,  # noqa: F811
               frame: pd.DataFrame, model: Any, *, name: str = "wine",
               version: int = 1, alias: str = "champion", role: str = "primary",
               batch: int = 5, ts: float | None = None, latency_ms: float = 2.0,
               ids: list[str] | None = None) -> list[str]:
    """Log ``frame`` as served requests of ``batch`` rows (what the serving process does)."""
    writer = PredictionLogWriter(store.location.predictions_dir / name)
    given, ids = ids, []
    for n, start in enumerate(range(0, len(frame), batch)):
        chunk = frame.iloc[start:start + batch]
        rid = given[n] if given is not None else uuid.uuid4().hex
        ids.append(rid)
        assert writer.append(
            request_id=rid, ts=time.time() if ts is None else ts, model=name, version=version,
            alias=alias, role=role, latency_ms=latency_ms,
            inputs={c: chunk[c].to_numpy() for c in chunk.columns},
            predictions=model.predict(chunk), proba=None)
    writer.close()
    assert writer.written == len(frame)
    return ids


def features_of(wine: dict[str, Any], n: int = 400, seed: int = 1) -> pd.DataFrame:
    """``n`` rows drawn from the training data (traffic like the training data)."""
    return wine["train"].drop(columns=["target"]).sample(n, replace=True, random_state=seed)


def test_traffic_like_training_data_is_not_drift(mstore: Store, tmp_path: Path,
                                                 wine: dict[str, Any]) -> None:
    t = train_and_gate(mstore, tmp_path, wine)
    serve_rows(mstore, features_of(wine), t["model"])
    report = monitor(mstore, "wine@champion")
    assert (report.model, report.alias, report.version, report.rows) == ("wine", "champion", 1, 400)
    assert not report.drifted and report.judged and 0.0 <= report.score <= report.threshold
    # the reference is the training file, not the (larger) held-out file the gate scored on
    assert report.reference["uri"] == str(t["train_csv"])
    assert report.reference["rows"] == len(wine["train"])
    names = [f["name"] for f in report.features]
    assert len(names) == 13 and "alcohol" in names and "target" not in names
    alcohol = next(f for f in report.features if f["name"] == "alcohol")
    assert alcohol["kind"] == "numeric" and len(alcohol["actual"]) == len(alcohol["edges"]) + 1
    assert abs(sum(alcohol["expected"]) - 1) < 1e-6 and abs(sum(alcohol["actual"]) - 1) < 1e-6
    assert report.prediction is not None and not report.prediction["drifted"]
    assert set(report.prediction["labels"]) <= {"0", "1", "2"}
    assert report.performance is None and report.labeled_rows == 0
    assert report.by_alias["champion"]["requests"] == 80
    # recorded, and the record holds the whole report
    assert report.id is not None
    saved = mstore.monitoring.get(report.id)
    assert (saved.model, saved.alias, saved.version, saved.rows, saved.drifted, saved.source) == \
        ("wine", "champion", 1, 400, False, "cli")
    assert saved.report["features"] == report.to_dict()["features"]


def test_shifted_traffic_is_drift_and_names_the_feature(mstore: Store, tmp_path: Path,
                                                        wine: dict[str, Any]) -> None:
    t = train_and_gate(mstore, tmp_path, wine)
    shifted = features_of(wine)
    shifted["alcohol"] += 2.5
    shifted["proline"] *= 1.8
    serve_rows(mstore, shifted, t["model"])
    report = monitor(mstore, "wine", threshold=0.25, source="trigger:retrain")
    assert report.alias == "champion"  # NAME = the champion when there is one
    assert report.drifted and report.score > 0.25
    assert {"alcohol", "proline"} <= set(report.drifted_features)
    assert "malic_acid" not in report.drifted_features
    assert any(v["column"] == "alcohol" and v["check"] == "range" for v in report.violations)
    assert mstore.monitoring.list("wine")[0].source == "trigger:retrain"
    assert "DRIFTED" in report.text() and "alcohol" in report.text()


def test_labels_give_performance_and_per_alias_figures(mstore: Store, tmp_path: Path,
                                                       wine: dict[str, Any]) -> None:
    t = train_and_gate(mstore, tmp_path, wine)
    test = wine["test"]
    X, y = test.drop(columns=["target"]), test["target"]
    ids = serve_rows(mstore, X, t["model"], batch=1, latency_ms=3.0)
    # a challenger (version 2, a weak model) scored in shadow on the same requests
    weak = DummyClassifier(strategy="most_frequent").fit(wine["train"].drop(columns=["target"]),
                                                         wine["train"]["target"])
    register(mstore, weak, "wine", namespace={"weak": weak}, alias="challenger")
    serve_rows(mstore, X, weak, version=2, alias="challenger", role="shadow", batch=1,
               latency_ms=1.0, ids=ids)  # same requests
    labels = pd.DataFrame({"request_id": ids, "label": y.to_numpy()})
    directory = mstore.location.predictions_dir / "wine"
    assert write_labels(directory, labels.iloc[:60]) == 60
    report = monitor(mstore, "wine@champion", record=False)
    assert report.id is None and mstore.monitoring.list() == []
    assert report.rows == len(X) and report.labeled_rows == 60
    expected = float((t["model"].predict(X.iloc[:60]) == y.iloc[:60].to_numpy()).mean())
    assert report.performance is not None
    assert report.performance["accuracy"] == pytest.approx(expected)
    assert 0 < report.performance["f1_macro"] <= 1
    champion, shadow = report.by_alias["champion"], report.by_alias["challenger (shadow)"]
    assert (champion["rows"], champion["requests"], champion["versions"]) == (len(X), len(X), [1])
    assert champion["p50_ms"] == 3.0 and champion["p99_ms"] == 3.0
    assert champion["accuracy"] == pytest.approx(expected)
    assert shadow["versions"] == [2] and shadow["p50_ms"] == 1.0
    assert shadow["accuracy"] < champion["accuracy"]
    # the challenger's own check: only its rows (shadow rows are not its primary traffic)
    with pytest.raises(NotFoundError, match="no predictions logged for wine@challenger"):
        monitor(mstore, "wine@challenger")
    with pytest.raises(NotFoundError, match=r"log files under .* hold no rows of version 2"):
        monitor(mstore, "wine@challenger")


def test_regressor_performance_and_numeric_prediction_drift(mstore: Store, tmp_path: Path,
                                                            wine: dict[str, Any]) -> None:
    train = wine["train"]
    reg = LinearRegression().fit(train.drop(columns=["target"]), train["target"].astype(float))
    t = train_and_gate_regressor(mstore, tmp_path, wine, reg)
    X = wine["test"].drop(columns=["target"])
    ids = serve_rows(mstore, X, reg, name="reg", version=t, batch=10)
    write_labels(mstore.location.predictions_dir / "reg",
                 pd.DataFrame({"request_id": ids, "label": [1.0] * len(ids)}))
    report = monitor(mstore, "reg/1")
    assert report.alias is None and report.prediction is not None
    assert report.prediction["kind"] == "numeric" and report.prediction["edges"]
    assert report.performance is not None and set(report.performance) == {"mae", "rmse"}
    assert report.performance["rmse"] >= report.performance["mae"] > 0


def train_and_gate_regressor(store: Store,  # noqa: F811
                              tmp_path: Path, wine: dict[str, Any], reg: Any) -> int:
    data = tmp_path / "reg"
    data.mkdir()
    train_csv = data / "train.parquet"
    wine["train"].to_parquet(train_csv)
    model_file = data / "reg.joblib"
    joblib.dump(reg, model_file)
    rid = store.create_run(name="train-reg")
    store.record_cells(rid, [
        _cell(0, "train = pd.read_parquet('train.parquet')", vars_defined=["train"],
              io=[_io(train_csv, "read", "pandas.read_parquet", "dataset", wine["train"])]),
        _cell(1, "reg.fit(train.drop(columns=['target']), train['target'])",
              vars_used=["train"], var_sources={"train": 0}, vars_defined=["reg"],
              estimators=[Estimator("reg", "LinearRegression", {}, ["train"])]),
        _cell(2, "joblib.dump(reg, 'reg.joblib')", vars_used=["reg"], var_sources={"reg": 1},
              io=[_io(model_file, "wrote", "joblib.dump", "model")]),
    ])
    return register(store, str(model_file), "reg").version


def test_windows_time_and_rows(mstore: Store, tmp_path: Path, wine: dict[str, Any]) -> None:
    t = train_and_gate(mstore, tmp_path, wine)
    serve_rows(mstore, features_of(wine, 100, seed=2), t["model"], ts=time.time() - 3 * 3600)
    serve_rows(mstore, features_of(wine, 50, seed=3), t["model"])
    assert monitor(mstore, "wine@champion", record=False).rows == 150
    assert monitor(mstore, "wine@champion", window="1h", record=False).rows == 50
    assert monitor(mstore, "wine@champion", window="4h", record=False).rows == 150
    assert monitor(mstore, "wine@champion", window="70", record=False).rows == 70
    small = monitor(mstore, "wine@champion", window="1h", min_rows=100)
    assert not small.judged and not small.drifted and small.window == "1h"
    assert any("not judged" in n for n in small.notes)


@pytest.mark.parametrize("window", ["1x", "0", "-5m", "h", "1.5.2h", "0m", "ten"])
def test_bad_windows_are_refused_before_anything(mstore: Store, tmp_path: Path,
                                                 wine: dict[str, Any], window: str) -> None:
    t = train_and_gate(mstore, tmp_path, wine)
    serve_rows(mstore, features_of(wine, 20), t["model"])
    with pytest.raises(InvalidArgumentError, match="invalid window"):
        monitor(mstore, "wine@champion", window=window)
    assert mstore.monitoring.list() == []


def test_no_traffic_unknown_model_bad_threshold(mstore: Store, tmp_path: Path,
                                                wine: dict[str, Any]) -> None:
    train_and_gate(mstore, tmp_path, wine)
    with pytest.raises(NotFoundError, match=r"^no predictions logged for wine@champion in the "
                                            r"last 1h: no prediction log at .*nbmlops serve"):
        monitor(mstore, "wine@champion", window="1h")
    with pytest.raises(NotFoundError, match="no registered model named 'nope'"):
        monitor(mstore, "nope@champion")
    with pytest.raises(NotFoundError, match="has no alias 'staging'"):
        monitor(mstore, "wine@staging")
    with pytest.raises(InvalidArgumentError, match="threshold must be a number >= 0"):
        monitor(mstore, "wine@champion", threshold=-1)
    with pytest.raises(InvalidArgumentError):
        monitor(mstore, "wine/abc")
    assert mstore.monitoring.list() == []


def test_reference_profile_is_cached_and_reference_overrides(mstore: Store, tmp_path: Path,
                                                             wine: dict[str, Any]) -> None:
    t = train_and_gate(mstore, tmp_path, wine)
    serve_rows(mstore, features_of(wine), t["model"])
    first = monitor(mstore, "wine@champion")
    cached = sorted(p.name for p in (mstore.artifacts.root / "monitoring").iterdir())
    assert [n.split("-")[0] for n in cached] == ["prediction", "reference"]
    # the training file is gone: the cached profiles (keyed by its fingerprint) still serve
    t["train_csv"].unlink()
    again = monitor(mstore, "wine@champion")
    assert again.features == first.features and again.prediction == first.prediction
    # reference= a data file, and a saved schema (no prediction drift from a schema)
    shifted = wine["train"].copy()
    shifted["alcohol"] += 3
    ref_file = tmp_path / "shifted.parquet"
    shifted.to_parquet(ref_file)
    other = monitor(mstore, "wine@champion", reference=ref_file)
    assert other.reference["uri"] == str(ref_file.resolve()) and "alcohol" in other.drifted_features
    schema_file = infer_schema(wine["train"]).save(tmp_path / "schema.json")
    by_schema = monitor(mstore, "wine@champion", reference=schema_file)
    assert by_schema.prediction is None and any("saved schema" in n for n in by_schema.notes)
    with pytest.raises(NotFoundError, match="no reference file"):
        monitor(mstore, "wine@champion", reference=tmp_path / "missing.csv")


def test_training_data_gone_without_cache_is_a_clear_error(mstore: Store, tmp_path: Path,
                                                           wine: dict[str, Any]) -> None:
    t = train_and_gate(mstore, tmp_path, wine)
    serve_rows(mstore, features_of(wine, 20), t["model"])
    t["train_csv"].write_text("changed\n1\n")
    before = mstore.monitoring.list()
    with pytest.raises(NotFoundError, match=r"training data .*train.csv is gone or changed"):
        monitor(mstore, "wine@champion")
    assert mstore.monitoring.list() == before


def test_html_report_escapes_feature_names(mstore: Store, tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    evil = "<img onerror=x>"
    X = pd.DataFrame({evil: rng.normal(size=300), "c&d": rng.choice(["<b>", "ok"], 300)})
    X["c&d"] = X["c&d"].astype("category")
    y = (X[evil] > 0).astype(int)
    model = HistGradientBoostingClassifier(max_iter=5, categorical_features="from_dtype").fit(X, y)
    register(mstore, model, "evil", namespace={"model": model, "X": X, "y": y},
             alias="champion")
    ref = tmp_path / "ref.parquet"
    X.to_parquet(ref)
    shifted = X.copy()
    shifted[evil] += 4
    serve_rows(mstore, shifted, model, name="evil")
    report = monitor(mstore, "evil@champion", reference=ref)
    assert evil in report.drifted_features
    for html in (report.to_html(), report._repr_html_()):
        assert "<img" not in html and "c&d" not in html
        assert "&lt;img onerror=x&gt;" in html and "c&amp;d" in html and "&lt;b&gt;" in html and "<svg" in html and "<script" not in html
    page = report.save_html(tmp_path / "r.html").read_text()
    assert page.startswith("<!DOCTYPE html>") and "reference vs current" in page


# -- nbmlops monitor (real subprocesses) -----------------------------------------------------------


def cli(url: str, cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return nbmlops("--store", url, "monitor", *args, cwd=cwd)


def test_cli_monitor_exit_codes_and_outputs(mstore: Store, url: str, tmp_path: Path,
                                            wine: dict[str, Any]) -> None:
    t = train_and_gate(mstore, tmp_path, wine)
    # no traffic yet: exit 4, one line, nothing recorded
    proc = cli(url, tmp_path, "wine@champion", "--window", "1h")
    assert proc.returncode == 4
    assert one_line_error(proc).startswith(
        "Error: no predictions logged for wine@champion in the last 1h: no prediction log at ")
    proc = cli(url, tmp_path, "nope@champion")
    assert proc.returncode == 4 and "no registered model named 'nope'" in one_line_error(proc)
    proc = cli(url, tmp_path, "wine@champion", "--window", "1x")
    assert proc.returncode == 2 and "invalid window '1x'" in one_line_error(proc)
    assert mstore.monitoring.list() == []

    serve_rows(mstore, features_of(wine), t["model"])
    proc = cli(url, tmp_path, "wine@champion", "--window", "400")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("wine@champion (version 1): no drift")
    proc = cli(url, tmp_path, "wine", "--json", "--no-record")
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert (data["model"], data["alias"], data["rows"], data["drifted"]) == \
        ("wine", "champion", 400, False)
    assert data["id"] is None and len(mstore.monitoring.list()) == 1

    shifted = features_of(wine, seed=5)
    shifted["alcohol"] += 3
    serve_rows(mstore, shifted, t["model"])
    out = tmp_path / "out" / "report.html"
    proc = cli(url, tmp_path, "wine@champion", "--window", "400", "--html", str(out))
    assert proc.returncode == 1, proc.stderr
    assert "DRIFTED" in proc.stdout and f"wrote {out}" in proc.stdout and proc.stderr == ""
    assert "<svg" in out.read_text() and "alcohol" in out.read_text()
    latest = mstore.monitoring.list("wine")[0]
    assert latest.drifted and latest.window == "400" and latest.rows == 400


def test_cli_label_joins_counts_unknown_ids_and_refuses_bad_files(
        mstore: Store, url: str, tmp_path: Path, wine: dict[str, Any]) -> None:
    t = train_and_gate(mstore, tmp_path, wine)
    X, y = wine["test"].drop(columns=["target"]), wine["test"]["target"]
    ids = serve_rows(mstore, X, t["model"], batch=1)
    labels = tmp_path / "labels.csv"
    pd.DataFrame({"request_id": [*ids, "never-logged-1", "never-logged-2"],
                  "label": [*y.to_numpy(), 0, 1]}).to_csv(labels, index=False)
    proc = cli(url, tmp_path, "label", str(labels))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == [
        f"wrote {len(ids) + 2} labels for wine ({len(ids) + 2} request ids)",
        "2 request ids are not in the log yet (kept): never-logged-1, never-logged-2"]
    report = monitor(mstore, "wine@champion", record=False)
    assert report.labeled_rows == len(ids) and report.performance is not None
    expected = float((t["model"].predict(X) == y.to_numpy()).mean())
    assert report.performance["accuracy"] == pytest.approx(expected)

    label_dir = mstore.location.predictions_dir / "wine" / "labels"
    before = sorted(label_dir.iterdir())
    bad = tmp_path / "bad.csv"
    pd.DataFrame({"id": ids[:3], "label": [1, 2, 3]}).to_csv(bad, index=False)
    proc = cli(url, tmp_path, "label", str(bad))
    assert proc.returncode == 2
    assert "needs columns request_id and label" in one_line_error(proc)
    proc = cli(url, tmp_path, "label", str(labels), "--model", "nope")
    assert proc.returncode == 4 and "no registered model named 'nope'" in one_line_error(proc)
    proc = cli(url, tmp_path, "label", str(tmp_path / "missing.csv"))
    assert proc.returncode == 4 and "no label file" in one_line_error(proc)
    proc = cli(url, tmp_path, "label", str(labels), "--json")
    assert json.loads(proc.stdout)["unknown_request_ids"] == 2
    assert len(sorted(label_dir.iterdir())) == len(before) + 1  # only the good call wrote


def test_drift_report_in_a_notebook(mstore: Store, tmp_path: Path, wine: dict[str, Any]) -> None:
    import nbmlops

    t = train_and_gate(mstore, tmp_path, wine)
    serve_rows(mstore, features_of(wine, 100), t["model"])
    report = nbmlops.drift_report("wine@champion", "1h", store=mstore)
    assert report.rows == 100 and report.window == "1h"
    assert mstore.monitoring.get(report.id).source == "notebook"
    html = report._repr_html_()
    assert html.startswith('<div class="nbmlops-monitor">') and html.count("<svg") == 14


def test_the_package_exposes_the_function_not_the_submodule() -> None:
    import importlib
    import sys

    import nbmlops.monitoring

    importlib.import_module("nbmlops.monitoring.monitor")
    assert callable(nbmlops.monitoring.monitor)
    assert nbmlops.monitoring.monitor is sys.modules["nbmlops.monitoring.monitor"].monitor
