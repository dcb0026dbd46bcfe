"""The registry inside captured kernels: ``%mlops register`` of an estimator capture saw fitted,
``nbmlops.load_model`` recorded as a read, lineage version -> run -> cell -> datasets (a real
headless kernel), and the magic's bad inputs (a real InteractiveShell)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from IPython.core.error import UsageError
from IPython.core.interactiveshell import InteractiveShell
from traitlets.config import Config

from nbmlops.capture.session import active_session
from nbmlops.registry import get_version, list_models, list_versions, model_history, version_lineage
from nbmlops.store import Store

CELLS = [
    "import pandas as pd\nimport nbmlops\nfrom sklearn.datasets import load_iris\n"
    "from sklearn.tree import DecisionTreeClassifier",
    "load_iris(as_frame=True).frame.to_csv('iris.csv', index=False)",
    "df = pd.read_csv('iris.csv')\nX = df.drop(columns=['target'])\ny = df['target']",
    "model = DecisionTreeClassifier(max_depth=3, random_state=0)\nmodel.fit(X, y)",
    "%mlops register model --name iris --alias champion --reason 'first fit'",
    "loaded = nbmlops.load_model('models:/iris@champion')\npred = loaded.predict(X)",
    "v2 = nbmlops.register(model, name='iris')\nprint(v2.uri)",
]


@pytest.mark.kernel
def test_register_in_a_kernel_links_run_cell_and_data(run_notebook, store: Store,
                                                      tmp_path: Path) -> None:
    result, nb = run_notebook(CELLS, name="train")
    assert result.status == "finished", result.error
    printed = "".join(o.get("text", "") for o in nb.cells[4].outputs)
    assert "registered model as models:/iris/1 (skops, run " in printed
    assert "iris@champion -> v1" in printed
    cells = store.cell_executions(result.run_id)
    # the %mlops-only cell is not recorded: fit is seq 3, load seq 4, register seq 5
    assert [c.source.splitlines()[0] for c in cells][3:] == [
        CELLS[3].splitlines()[0], CELLS[5].splitlines()[0], CELLS[6].splitlines()[0]]
    fit, load, reg = cells[3], cells[4], cells[5]

    v1 = get_version(store, "iris", 1)
    assert v1.run_id == result.run_id and v1.aliases == ["champion"]
    assert (v1.cell_execution_id, v1.cell_seq) == (fit.id, 3)  # resolved from the estimator
    assert v1.signature["fitted_on"] == ["X", "y"]
    assert [c["name"] for c in v1.signature["inputs"]["columns"]] == [
        "sepal length (cm)", "sepal width (cm)", "petal length (cm)", "petal width (cm)"]
    assert v1.signature["output"]["classes"] == [0, 1, 2]
    [event] = [e for e in model_history(store, "iris") if e.kind == "alias"]
    assert (event.reason, event.run_id, event.to_version) == ("first fit", result.run_id, 1)

    lineage = version_lineage(store, v1)
    assert lineage["run"]["id"] == result.run_id and lineage["run"]["name"] == "train"
    assert lineage["cell"]["source"] == CELLS[3]
    assert [d["uri"] for d in lineage["datasets"]] == [str(tmp_path / "work" / "iris.csv")]
    assert lineage["datasets"][0]["schema"]["shape"] == [150, 5]
    assert lineage["environment"]["packages"]["scikit-learn"]

    # the load is a read of the version's file, and `loaded` is not taken for a new fit
    assert [(a.uri, a.fingerprint, a.kind) for a in load.reads] == [
        (v1.stored_path, f"sha256:{v1.digest}", "model")]
    assert load.estimators == []
    # nbmlops.register in a cell: that cell wrote the model; the fitting cell is still seq 3
    v2 = get_version(store, "iris", 2)
    assert (v2.cell_execution_id, v2.info["cell_seq"]) == (fit.id, 5)
    assert [a.fingerprint for a in reg.writes] == [f"sha256:{v2.digest}"]
    graph = store.lineage(f"artifact:{v1.artifact_id}", direction="downstream")
    assert f"cell:{load.id}" in {n.id for n in graph.nodes}


@pytest.fixture
def shell(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[InteractiveShell]:
    monkeypatch.setenv("NBMLOPS_STORE_URL", f"sqlite:///{tmp_path / 'x.db'}")
    monkeypatch.setenv("IPYTHONDIR", str(tmp_path / "ipython"))
    monkeypatch.chdir(tmp_path)
    InteractiveShell.clear_instance()
    config = Config()
    config.HistoryAccessor.enabled = False
    sh = InteractiveShell.instance(config=config)
    sh.run_line_magic("load_ext", "nbmlops")
    try:
        yield sh
    finally:
        sh.run_line_magic("unload_ext", "nbmlops")
        InteractiveShell.clear_instance()


def test_magic_register_bad_input_registers_nothing(shell: InteractiveShell, tmp_path: Path) -> None:
    shell.run_cell("from sklearn.tree import DecisionTreeClassifier\n"
                   "from sklearn.datasets import load_iris\nX, y = load_iris(return_X_y=True)\n"
                   "fresh = DecisionTreeClassifier()\nnumbers = [1, 2]\nmodel = DecisionTreeClassifier()")
    cases = [
        ("modle --name m", "%mlops register: no variable 'modle' in this kernel's namespace; "
                           "did you mean model?"),
        ("fresh --name m", "%mlops register: fresh (DecisionTreeClassifier) is not fitted yet"),
        ("numbers --name m", "%mlops register: numbers is a list, not a fitted model"),
        ("X --name m", "%mlops register: X is a ndarray, not a fitted model"),
    ]
    for line, message in cases:
        with pytest.raises(UsageError) as err:
            shell.run_line_magic("mlops", f"register {line}")
        assert str(err.value).startswith(message) and "\n" not in str(err.value)
    with pytest.raises(UsageError, match="--name"):
        shell.run_line_magic("mlops", "register model")
    shell.run_cell("model.fit(X, y)")
    shell.run_line_magic("mlops", "register model --name m -a champion")
    session = active_session()
    assert session is not None and session.flush(10)
    with Store.open(f"sqlite:///{tmp_path / 'x.db'}") as s:
        [m] = list_models(s)
        [v] = list_versions(s, "m")
        assert (m.name, m.aliases, v.run_id) == ("m", {"champion": 1}, session.run_id)
        assert get_version(s, "m", 1).cell_seq == 1  # the cell that fitted it


@pytest.mark.kernel
def test_drift_report_in_a_kernel_shows_histograms_and_is_recorded(run_notebook, store: Store,
                                                                   tmp_path: Path) -> None:
    """A model registered in a kernel, traffic in its prediction log (written by the service's
    writer), then ``nbmlops.drift_report`` in the next notebook: rich HTML output with one
    histogram per feature, the shifted feature named, the check recorded as source notebook."""
    result, _ = run_notebook(CELLS[:5], name="train")
    assert result.status == "finished", result.error
    log_dir = store.location.predictions_dir / "iris"
    cells = [
        "import time\nimport pandas as pd\nfrom nbmlops.monitoring import PredictionLogWriter\n"
        "import nbmlops",
        f"df = pd.read_csv({str(tmp_path / 'work' / 'iris.csv')!r}).drop(columns=['target'])\n"
        "df['petal length (cm)'] = df['petal length (cm)'] * 2.5  # a shifted feature\n"
        f"w = PredictionLogWriter(__import__('pathlib').Path({str(log_dir)!r}))\nw.start()\n"
        "for i, row in df.iterrows():\n"
        "    w.append(request_id=f'r{i}', ts=time.time(), model='iris', version=1,\n"
        "             alias='champion', role='primary', latency_ms=1.0,\n"
        "             inputs={k: [v] for k, v in row.items()}, predictions=[0], proba=None)\n"
        "w.close()",
        "report = nbmlops.drift_report('iris@champion')\nreport",
        "print(report.drifted, report.rows, [f['name'] for f in report.features if f['drifted']])",
    ]
    result, nb = run_notebook(cells, name="monitor")
    assert result.status == "finished", result.error
    [shown] = [o for o in nb.cells[2].outputs if o.get("output_type") == "execute_result"]
    html = shown["data"]["text/html"]
    assert html.count("<svg") >= 4 and "petal length (cm)" in html
    printed = "".join(o.get("text", "") for o in nb.cells[3].outputs)
    assert printed.startswith("True 150 ['petal length (cm)']"), printed
    [check] = store.monitoring.list(model="iris")
    assert (check.source, check.version, check.rows, check.drifted) == ("notebook", 1, 150, True)
