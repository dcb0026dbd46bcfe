"""Capture in real IPython kernels (through nbclient), asserting on what the store holds."""

from __future__ import annotations

import hashlib
import re
import threading
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

from nbmlops.store import Store

from .conftest import make_notebook, stderr_text

pytestmark = pytest.mark.kernel

TRAIN_CELLS = [
    "import pandas as pd\nimport joblib\nfrom sklearn.datasets import load_iris\n"
    "from sklearn.linear_model import LogisticRegression\n"
    "from sklearn.metrics import accuracy_score, f1_score\n"
    "from sklearn.model_selection import train_test_split",
    "load_iris(as_frame=True).frame.to_csv('iris.csv', index=False)",
    "df = pd.read_csv('iris.csv')\nX = df.drop(columns=['target'])\ny = df['target']\n"
    "X_train, X_test, y_train, y_test = train_test_split(X, y, random_state=0)",
    "clf = LogisticRegression(C=0.5, max_iter=500)\nclf.fit(X_train, y_train)",
    "acc = accuracy_score(y_test, clf.predict(X_test))\n"
    "f1_score(y_test, clf.predict(X_test), average='macro')\nacc",
    "joblib.dump(clf, 'model.joblib')",
    "best = clf\nloaded = joblib.load('model.joblib')",
]


def _sha256(path: Path) -> str:
    return "sha256:" + hashlib.sha256(path.read_bytes()).hexdigest()


def test_training_notebook_lineage(run_notebook, store: Store, tmp_path: Path) -> None:
    result, nb = run_notebook(TRAIN_CELLS, name="train")
    assert result.status == "finished", result.error
    run = store.get_run(result.run_id)
    assert run.name == "train" and run.status == "finished" and run.source == "papermill"
    assert run.notebook_path == str(tmp_path / "work" / "train.ipynb")
    assert run.notebook_hash == hashlib.sha256((tmp_path / "work" / "train.ipynb").read_bytes()).hexdigest()
    assert run.environment and run.environment["python"].count(".") == 2
    assert "pandas" in run.environment["packages"]

    cells = store.cell_executions(result.run_id)
    assert [c.cell_id for c in cells] == [c.id for c in nb.cells]
    assert [c.seq for c in cells] == list(range(len(TRAIN_CELLS)))
    assert [c.execution_count for c in cells] == list(range(1, len(TRAIN_CELLS) + 1))
    assert all(c.status == "ok" for c in cells)
    assert cells[0].source == TRAIN_CELLS[0]

    write_csv, read_csv, fit, score, dump, alias = cells[1:]
    work = tmp_path / "work"
    # files: written then read, same content fingerprint -> the same artifact
    assert [a.uri for a in write_csv.writes] == [str(work / "iris.csv")]
    assert [a.uri for a in read_csv.reads] == [str(work / "iris.csv")]
    assert read_csv.reads[0].fingerprint == _sha256(work / "iris.csv")
    assert read_csv.reads[0].id == write_csv.writes[0].id
    assert read_csv.reads[0].schema["shape"] == [150, 5]
    assert {"name": "target", "dtype": "int64"} in read_csv.reads[0].schema["columns"]
    assert set(read_csv.vars_defined) == {"df", "X", "y", "X_train", "X_test", "y_train", "y_test"}
    assert "pd" in read_csv.vars_used

    # the fitted estimator, its hyper-parameters and what it was fitted on
    [est] = fit.estimators
    assert est.variable == "clf" and est.class_name == "LogisticRegression"
    assert est.params["C"] == 0.5 and est.params["max_iter"] == 500
    assert est.fitted_on == ["X_train", "y_train"]

    # metrics from sklearn.metrics: named after the variable they were assigned to
    metrics = {m.key: m.value for m in score.metrics}
    assert set(metrics) == {"acc", "f1_score"}
    assert 0.8 < metrics["acc"] <= 1.0
    assert run.metrics["acc"] == pytest.approx(metrics["acc"])

    assert dump.writes[0].uri == str(work / "model.joblib")
    assert dump.writes[0].kind == "model"
    assert dump.writes[0].fingerprint == _sha256(work / "model.joblib")

    # an alias of a fitted model and a model loaded from disk are not fits
    assert alias.estimators == [] and set(alias.vars_defined) == {"best", "loaded"}
    assert [(a.uri, a.kind) for a in alias.reads] == [(str(work / "model.joblib"), "model")]

    # lineage: model.joblib <- dump cell <- fit cell <- read cell <- iris.csv <- write cell
    graph = store.lineage(str(work / "model.joblib"))
    edges = {(e.source, e.target, e.label) for e in graph.edges}
    c = {cell.seq: f"cell:{cell.id}" for cell in cells}
    assert (c[5], f"artifact:{dump.writes[0].id}", "wrote") in edges
    assert (c[3], c[5], "clf") in edges
    assert (c[2], c[3], "X_train") in edges
    assert (f"artifact:{read_csv.reads[0].id}", c[2], "read") in edges
    assert (c[1], f"artifact:{read_csv.reads[0].id}", "wrote") in edges
    assert any(n.type == "estimator" and n.label == "LogisticRegression (clf)" for n in graph.nodes)
    # data lineage leaves out imports (modules, functions, classes); include_code keeps them
    assert not any(e.label in ("pd", "joblib", "LogisticRegression") for e in graph.edges)
    with_code = store.lineage(str(work / "model.joblib"), include_code=True)
    assert (c[0], c[5], "joblib") in {(e.source, e.target, e.label) for e in with_code.edges}
    # a clean exit leaves no crash journal behind
    assert list(store.location.journal_dir.glob("*.jsonl")) == []


ERROR_CELLS = [
    "x = 1",
    "def f(:\n    pass",
    "def boom():\n    raise ValueError('bad value ' + str(x))\nboom()",
    "import pandas as pd\npd.read_csv('does-not-exist.csv')",
    "y = x + 1\ny",
]

_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def _errors(nb) -> list[tuple[str, str, str]]:
    out = []
    for cell in nb.cells:
        for o in cell.get("outputs", []):
            if o["output_type"] == "error":
                out.append((o["ename"], o["evalue"], _ANSI.sub("", "\n".join(o["traceback"]))))
    return out


def _outputs(nb) -> list[list[dict]]:
    keep = ("output_type", "name", "text", "data", "ename", "evalue")
    return [
        [{k: o[k] for k in keep if k in o and k != "traceback"} for o in c.get("outputs", [])]
        for c in nb.cells
    ]


def test_errors_recorded_and_user_output_unchanged(run_notebook, store: Store, tmp_path: Path) -> None:
    result, captured = run_notebook(ERROR_CELLS, name="errors")
    # the same notebook without nbmlops
    plain = nbformat.read(tmp_path / "work" / "errors.ipynb", as_version=4)
    NotebookClient(plain, timeout=60, allow_errors=True,
                   resources={"metadata": {"path": str(tmp_path / "work")}}).execute()
    # executed with allow_errors=False, capture stops at the first error like papermill
    assert result.status == "failed" and result.failed_cell_index == 1
    assert _errors(captured)[0][:2] == _errors(plain)[0][:2]

    rerun = make_notebook(tmp_path / "work" / "errors2.ipynb", ERROR_CELLS)
    nb = nbformat.read(rerun, as_version=4)
    from nbmlops.execute import CapturingClient

    CapturingClient(nb, timeout=60, allow_errors=True, extra_arguments=["--ext=nbmlops"],
                    resources={"metadata": {"path": str(tmp_path / "work")}}).execute(
        env={**__import__("os").environ, "NBMLOPS_STORE_URL": store.url,
             "NBMLOPS_ARTIFACT_URL": str(store.location.artifact_root), "NBMLOPS_RUN_ID": "e" * 32})
    assert _outputs(nb) == _outputs(plain)
    assert [e[:2] for e in _errors(nb)] == [e[:2] for e in _errors(plain)]
    # tracebacks are the user's own: same frames, no nbmlops frames
    for (_, _, tb_capture), (_, _, tb_plain) in zip(_errors(nb), _errors(plain), strict=True):
        assert "nbmlops" not in tb_capture
        strip = lambda t: re.sub(r"(Cell In\[\d+\]|line \d+|File [^\n]*)", "", t)  # noqa: E731
        assert strip(tb_capture).count("\n") == strip(tb_plain).count("\n")

    cells = store.cell_executions("e" * 32)
    assert [c.status for c in cells] == ["ok", "error", "error", "error", "ok"]
    assert cells[1].error_name == "SyntaxError"
    assert (cells[2].error_name, cells[2].error_value) == ("ValueError", "bad value 1")
    assert cells[3].error_name == "FileNotFoundError"
    assert cells[3].reads == []  # a failed read links nothing
    assert cells[4].vars_used == ["x"]
    assert store.get_run("e" * 32).status == "finished"  # a failed cell does not end the run


def test_open_pickle_and_explicit_api(run_notebook, store: Store, tmp_path: Path) -> None:
    result, nb = run_notebook(
        [
            "import pickle, nbmlops\nwith open('notes.txt', 'w') as fh:\n    fh.write('hello')",
            "with open('notes.txt') as fh:\n    text = fh.read()",
            "pickle.dump({'a': 1}, open('obj.pkl', 'wb'))",
            "import os\ntoken = os.environ['SECRET_VALUE_FOR_TEST']\n"
            "nbmlops.log_params({'lr': 0.1, 'api_token': token, 'db_password': token[::-1]})\n"
            "nbmlops.set_tag('team', 'vision')\n"
            "for i, loss in enumerate([0.9, 0.5, 0.3]):\n    nbmlops.log_metric('loss', loss)",
            "nbmlops.log_artifact('notes.txt')",
        ],
        name="api",
        env={"SECRET_VALUE_FOR_TEST": "supersecret-xyz"},
    )
    assert result.status == "finished", result.error
    cells = store.cell_executions(result.run_id)
    notes = str(tmp_path / "work" / "notes.txt")
    assert [a.uri for a in cells[0].writes] == [notes]
    assert [a.uri for a in cells[1].reads] == [notes]
    assert cells[1].reads[0].fingerprint == "sha256:" + hashlib.sha256(b"hello").hexdigest()
    assert [a.uri for a in cells[2].writes] == [str(tmp_path / "work" / "obj.pkl")]
    run = store.get_run(result.run_id)
    assert run.params == {"lr": "0.1", "api_token": "***redacted***", "db_password": "***redacted***"}
    assert run.tags["team"] == "vision"
    assert run.metrics["loss"] == 0.3
    assert [m.value for m in store.metric_history(result.run_id, "loss")] == [0.9, 0.5, 0.3]
    assert [m.step for m in store.metric_history(result.run_id, "loss")] == [0, 1, 2]
    [stored] = [a for a in cells[4].writes]
    assert stored.stored_path and Path(stored.stored_path).read_bytes() == b"hello"
    # secrets and environment variable values never reach the store
    db = Path(store.location.sqlite_path).read_bytes()
    store.close()
    for suffix in ("", "-wal"):
        f = Path(str(store.location.sqlite_path) + suffix)
        if f.exists():
            db += f.read_bytes()
    for secret in (b"abc123", b"hunter2", b"supersecret-xyz"):
        assert secret not in db


def test_unwritable_store_warns_once_and_notebook_runs(run_notebook, tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where the store directory should be")
    url = f"sqlite:///{blocker}/store/nbmlops.db"
    # (the sleep gives the writer time to fail: importing SQLAlchemy takes seconds on a busy CI)
    cells = ["x = 41", "import time; time.sleep(3.0)", "x + 1", "print('still fine')"]
    result, nb = run_notebook(cells, name="unwritable", url=url)
    assert result.status == "finished"
    assert nb.cells[2].outputs[0]["data"]["text/plain"] == "42"
    assert any("still fine" in o.get("text", "") for o in nb.cells[3].outputs)
    err = stderr_text(nb)
    assert err.count("nbmlops warning: the lineage store is unavailable") == 1, err
    assert "Traceback" not in err
    assert blocker.read_text() == "a file where the store directory should be"


def test_two_notebooks_one_store_lose_nothing(run_notebook, store: Store) -> None:
    cells = [f"v{i} = {i}\nopen('f{i}.txt', 'w').write(str(v{i}))" for i in range(25)]
    results = {}

    def go(name: str) -> None:
        results[name] = run_notebook(cells, name=name)[0]

    threads = [threading.Thread(target=go, args=(n,)) for n in ("left", "right", "middle")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for name, res in results.items():
        assert res.status == "finished", (name, res.error)
        cells_rec = store.cell_executions(res.run_id)
        assert len(cells_rec) == 25
        assert [c.seq for c in cells_rec] == list(range(25))
        assert all(len(c.writes) == 1 for c in cells_rec)
    assert store.list_runs().total == 3


def test_odd_objects_warn_once_and_never_break(run_notebook, store: Store) -> None:
    cells = [
        "class Odd:\n"
        "    def fit(self, X):\n        return self\n"
        "    def get_params(self, deep=True):\n        raise RuntimeError('no params')\n"
        "    @property\n"
        "    def __dict__(self):\n        raise RuntimeError('no dict for you')\n"
        "odd = Odd()",
        "odd.fit([1, 2])\n'result ok'",
        "odd.fit([3])\n'still ok'",
        "import pandas as pd\nbig = pd.DataFrame({'a': range(2_000_000), 'b': 1.5})\nlen(big)",
        "z = 1",
    ]
    result, nb = run_notebook(cells, name="odd")
    assert result.status == "finished", result.error
    assert nb.cells[1].outputs[0]["data"]["text/plain"] == "'result ok'"
    assert nb.cells[2].outputs[0]["data"]["text/plain"] == "'still ok'"
    assert nb.cells[3].outputs[0]["data"]["text/plain"] == "2000000"
    err = stderr_text(nb)
    assert "nbmlops warning" not in err, err  # odd objects cost only their own detection
    recorded = store.cell_executions(result.run_id)
    assert len(recorded) == 5 and recorded[-1].vars_defined == ["z"]


def test_internal_failure_is_one_warning_never_an_exception(run_notebook, store: Store) -> None:
    cells = [
        "import nbmlops.capture.session as cs\nreal = cs.analyze_cell\n"
        "def broken(source):\n    raise MemoryError('simulated nbmlops bug')\ncs.analyze_cell = broken",
        "x = 1",
        "y = x + 1",
        "print(x + y)",
        "cs.analyze_cell = real",
        "z = 3",
    ]
    result, nb = run_notebook(cells, name="internal")
    assert result.status == "finished"
    assert "3" in nb.cells[3].outputs[-1]["text"]
    assert not any(o["output_type"] == "error" for c in nb.cells for o in c.outputs)
    err = stderr_text(nb)
    assert err.count("nbmlops warning") == 1 and "simulated nbmlops bug" in err
    recorded = store.cell_executions(result.run_id)
    # cells whose pre-hook failed are skipped, the rest recorded; the run goes on
    assert [c.vars_defined for c in recorded][-1] == ["z"]


def test_kernel_death_keeps_earlier_cells_and_fails_the_run(run_notebook, store: Store) -> None:
    result, nb = run_notebook(["a = 1", "b = a + 1", "import os\nos._exit(1)", "c = 3"], name="dies")
    assert result.status == "failed" and "kernel died" in (result.error or "")
    run = store.get_run(result.run_id)
    assert run.status == "failed"
    assert result.failed_cell_index == 2
    recorded = store.cell_executions(result.run_id)
    # the kernel recorded the cells before; the client side recorded the cell it died in
    assert [c.source for c in recorded] == ["a = 1", "b = a + 1", "import os\nos._exit(1)"]
    assert [c.status for c in recorded] == ["ok", "ok", "error"]
    assert recorded[-1].error_name == "DeadKernelError"


def test_runs_dataframe_has_params_and_metrics_columns(run_notebook, store: Store) -> None:
    import nbmlops

    first, _ = run_notebook(["import nbmlops\nnbmlops.log_param('alpha', 0.1)\nnbmlops.log_metric('rmse', 2.5)"],
                            name="first")
    second, _ = run_notebook(["import nbmlops\nnbmlops.log_param('alpha', 0.2)\nnbmlops.log_metric('rmse', 1.5)"],
                             name="second")
    frame = nbmlops.runs(store=store)
    assert list(frame["run_id"]) == [second.run_id, first.run_id]  # newest first
    assert list(frame["params.alpha"]) == ["0.2", "0.1"]
    assert list(frame["metrics.rmse"]) == [1.5, 2.5]
    assert list(frame["name"]) == ["second", "first"]
    assert list(nbmlops.runs(store=store, notebook="first.ipynb")["run_id"]) == [first.run_id]
    assert nbmlops.get_run(first.run_id[:8], store=store).params == {"alpha": "0.1"}


def test_parameters_cell_and_pipelines(run_notebook, store: Store) -> None:
    result, _ = run_notebook(
        [
            ("alpha = 0.5\nlabel = 'baseline'\nlayers = [64, 32]\napi_key = 'k-123'", ["parameters"]),
            "beta = 2  # an ordinary cell: not a parameter",
            "from sklearn.datasets import load_iris\nfrom sklearn.pipeline import make_pipeline\n"
            "from sklearn.preprocessing import StandardScaler\n"
            "from sklearn.linear_model import LogisticRegression\n"
            "X, y = load_iris(return_X_y=True)\n"
            "pipe = make_pipeline(StandardScaler(), LogisticRegression(C=alpha))",
            "pipe.fit(X, y)",
            "same = pipe",
        ],
        name="params",
    )
    assert result.status == "finished", result.error
    run = store.get_run(result.run_id)
    assert run.params == {"alpha": "0.5", "label": "baseline", "layers": "[64, 32]",
                          "api_key": "***redacted***"}
    cells = store.cell_executions(result.run_id)
    assert [(e.variable, e.class_name, e.fitted_on) for e in cells[3].estimators] == [
        ("pipe", "Pipeline", ["X", "y"])
    ]
    assert cells[2].estimators == [] and cells[4].estimators == []  # built, then aliased: no fit


def test_mlops_magics_in_a_headless_run_see_the_cells_so_far(run_notebook) -> None:
    result, nb = run_notebook(["a = 1", "b = a + 1", "%mlops history"], name="magic")
    assert result.status == "finished", result.error
    text = "".join(o.get("data", {}).get("text/plain", "") + o.get("text", "")
                   for o in nb.cells[2].outputs)
    assert "b = a + 1" in text and "a = 1" in text, text
