"""``%mlops export`` and :mod:`nbmlops.slicing`: minimal notebooks that reproduce a variable or a
file of a run, checked by executing them headless (nbclient, papermill) in real kernels."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nbformat
import pytest
from IPython.core.error import UsageError
from IPython.core.interactiveshell import InteractiveShell
from nbclient import NotebookClient
from traitlets.config import Config

from nbmlops.capture.session import active_session
from nbmlops.errors import InvalidArgumentError, NotFoundError
from nbmlops.execute import ExecutionResult, execute_notebook
from nbmlops.notebook.magics import SUBCOMMANDS
from nbmlops.slicing import SliceResult, notebook_for, slice_run, write_notebook
from nbmlops.store import Store

from .conftest import make_notebook
from .test_architecture import PKG, UI_MODULES, _imports

PARAMS = "alpha = 0.5\nunused_param = 'x'"
IMPORTS = "import json\nimport numpy as np\nimport joblib\nfrom sklearn.linear_model import Ridge"
DATA = (
    "rng = np.random.default_rng(0)\nX = rng.normal(size=(60, 3))\n"
    "y = X @ np.array([1.0, -2.0, 3.0]) + rng.normal(scale=0.1, size=60)"
)
SLOW = "import time\ntime.sleep(0.3)\nsummary = float(X.mean())\nprint('mean', summary)"
HELPER_V1 = "def scale(a):\n    return a"
HELPER_V2 = "def scale(a):\n    return (a - a.mean(axis=0)) / a.std(axis=0)"
FIT = "model = Ridge(alpha=alpha).fit(scale(X), y)"
SHOW = "print('coef', json.dumps(model.coef_.tolist()), unused_param)"
DUMP = "import os\nos.makedirs('models', exist_ok=True)\njoblib.dump(model, 'models/m.joblib')"
MAIN_CELLS: list[Any] = [(PARAMS, ["parameters"]), IMPORTS, DATA, SLOW, HELPER_V1, HELPER_V2, FIT,
                         SHOW, DUMP]
EXPORTS = [
    "%mlops export model -o sliced.ipynb",
    "%mlops export models/m.joblib -o sliced2.ipynb",
    "%mlops export modle -o never.ipynb",  # last: an error ends a headless run
]
COEF_CELL = "print('coef', json.dumps(model.coef_.tolist()))"


def _sha256(path: Path) -> str:
    return "sha256:" + hashlib.sha256(path.read_bytes()).hexdigest()


def _code_sources(nb: Any) -> list[str]:
    return [c.source for c in nb.cells if c.cell_type == "code"]


def _body(nb: Any) -> list[str]:
    return [c.source for c in nb.cells
            if c.cell_type == "code" and "parameters" not in c.metadata.get("tags", [])]


def _params_cells(nb: Any) -> list[Any]:
    return [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]


def _cell(nb: Any, source: str) -> Any:
    """The executed cell with this source (papermill may add banner cells around errors)."""
    return next(c for c in nb.cells if c.cell_type == "code" and c.source == source)


def _stdout(cell: Any) -> str:
    return "".join(o.get("text", "") for o in cell.get("outputs", []) if o.get("name") == "stdout")


def _coef(text: str) -> list[float]:
    match = re.search(r"coef (\[[^\]]*\])", text)
    assert match, text
    return list(json.loads(match.group(1)))


def _execute(nb: Any, cwd: Path) -> Any:
    NotebookClient(nb, timeout=120, kernel_name="python3",
                   resources={"metadata": {"path": str(cwd)}}).execute()
    return nb


def _expected_coef(alpha: float) -> list[float]:
    import numpy as np
    from sklearn.linear_model import Ridge

    rng = np.random.default_rng(0)
    X = rng.normal(size=(60, 3))
    y = X @ np.array([1.0, -2.0, 3.0]) + rng.normal(scale=0.1, size=60)
    Xs = (X - X.mean(axis=0)) / X.std(axis=0)
    return [float(v) for v in Ridge(alpha=alpha).fit(Xs, y).coef_]


# -- one training run in a real kernel, shared by the tests below --------------------------------


@dataclass
class Recorded:
    root: Path
    work: Path
    result: ExecutionResult
    nb: Any
    store: Store


@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Recorded]:
    root = tmp_path_factory.mktemp("export")
    url = f"sqlite:///{root / 'store' / 'nbmlops.db'}"
    with pytest.MonkeyPatch.context() as mp:
        for var in ("NBMLOPS_STORE_URL", "NBMLOPS_ARTIFACT_URL", "NBMLOPS_RUN_ID",
                    "NBMLOPS_RUN_NAME", "NBMLOPS_NOTEBOOK_PATH", "JPY_SESSION_NAME"):
            mp.delenv(var, raising=False)
        work = root / "work"
        path = make_notebook(work / "train.ipynb", [*MAIN_CELLS, *EXPORTS])
        result = execute_notebook(path, root / "out" / "train.ipynb", store_url=url, timeout=120)
    store = Store.open(url, root / "store" / "artifacts")
    try:
        yield Recorded(root, work, result, nbformat.read(root / "out" / "train.ipynb", as_version=4),
                       store)
    finally:
        store.close()


@pytest.mark.kernel
def test_export_magic_reports_what_it_wrote(recorded: Recorded) -> None:
    nb = recorded.nb
    # 9 recorded cells (the %mlops lines are not recorded); cell numbers are In [n]
    assert _stdout(_cell(nb, EXPORTS[0])) == (
        "wrote sliced.ipynb: 4 of 9 cells (cells 2, 3, 6, 7), params: alpha\n"
    )
    assert _stdout(_cell(nb, EXPORTS[1])) == (
        "wrote sliced2.ipynb: 5 of 9 cells (cells 2, 3, 6, 7, 9), params: alpha\n"
    )
    assert not (recorded.work / "never.ipynb").exists()


@pytest.mark.kernel
def test_unknown_target_in_a_kernel_is_a_usage_error_without_traceback(recorded: Recorded) -> None:
    result = recorded.result
    assert result.status == "failed"
    outputs = _cell(recorded.nb, EXPORTS[2]).outputs
    text = "".join(o.get("text", "") for o in outputs) + json.dumps(
        [o.get("traceback", []) for o in outputs])
    assert "UsageError: %mlops export: nothing named 'modle'" in text
    assert "nearest recorded: model" in text
    assert "Traceback" not in text


@pytest.mark.kernel
def test_sliced_notebook_holds_only_the_needed_cells_in_order(recorded: Recorded) -> None:
    nb = nbformat.read(recorded.work / "sliced.ipynb", as_version=4)
    nbformat.validate(nb)
    intro = nb.cells[0]
    assert intro.cell_type == "markdown"
    assert recorded.result.run_id in intro.source and "`model`" in intro.source
    assert "cells [2], [3], [6], [7]" in intro.source
    params = _params_cells(nb)
    assert len(params) == 1 and nb.cells[1] is params[0]
    assert params[0].source == "alpha = 0.5"  # unused_param is not used by the slice
    # the second definition of the helper is the one the model used
    assert _body(nb) == [IMPORTS, DATA, HELPER_V2, FIT]
    assert nb.metadata.kernelspec.name == "python3"
    assert [c.metadata.nbmlops.seq for c in nb.cells[2:]] == [1, 2, 5, 6]
    assert len({c.id for c in nb.cells}) == len(nb.cells)

    nb2 = nbformat.read(recorded.work / "sliced2.ipynb", as_version=4)
    assert [c.source for c in _params_cells(nb2)] == ["alpha = 0.5"]
    assert _body(nb2) == [IMPORTS, DATA, HELPER_V2, FIT, DUMP]
    assert "models/m.joblib" in nb2.cells[0].source


@pytest.mark.kernel
def test_sliced_notebook_reproduces_the_model_and_takes_new_parameters(
    recorded: Recorded, tmp_path: Path
) -> None:
    original = _coef(_stdout(_cell(recorded.nb, SHOW)))
    assert original == pytest.approx(_expected_coef(0.5), rel=1e-9)

    nb = nbformat.read(recorded.work / "sliced.ipynb", as_version=4)
    nb.cells.append(nbformat.v4.new_code_cell(COEF_CELL))
    _execute(nb, tmp_path)
    assert _coef(_stdout(nb.cells[-1])) == original  # exactly the run's coefficients

    import papermill

    nbformat.write(nb, tmp_path / "with_coef.ipynb")
    papermill.execute_notebook(str(tmp_path / "with_coef.ipynb"), str(tmp_path / "alpha2.ipynb"),
                               parameters={"alpha": 25.0}, kernel_name="python3",
                               cwd=str(tmp_path), progress_bar=False)
    out = nbformat.read(tmp_path / "alpha2.ipynb", as_version=4)
    changed = _coef(_stdout(out.cells[-1]))
    assert changed != original
    assert changed == pytest.approx(_expected_coef(25.0), rel=1e-9)


@pytest.mark.kernel
def test_sliced_notebook_reproduces_the_file(recorded: Recorded, tmp_path: Path) -> None:
    import papermill

    written = recorded.store.find_artifacts(str(recorded.work / "models" / "m.joblib"))
    assert len(written) == 1
    shutil.copy(recorded.work / "sliced2.ipynb", tmp_path / "sliced2.ipynb")
    papermill.execute_notebook(str(tmp_path / "sliced2.ipynb"), str(tmp_path / "out.ipynb"),
                               parameters={"alpha": 0.5}, kernel_name="python3",
                               cwd=str(tmp_path), progress_bar=False)
    assert _sha256(tmp_path / "models" / "m.joblib") == written[0].fingerprint


# -- slicing.py against the store that run filled -----------------------------------------------


def _slice(recorded: Recorded, target: str) -> SliceResult:
    return slice_run(recorded.store, recorded.result.run_id, target)


def _seqs(result: SliceResult) -> list[int]:
    return [c.seq for c in result.cells]


@pytest.mark.kernel
def test_slice_run_follows_data_code_and_file_edges(recorded: Recorded) -> None:
    model = _slice(recorded, "model")
    assert _seqs(model) == [1, 2, 5, 6] and model.numbers == [2, 3, 6, 7]
    assert [p.name for p in model.params] == ["alpha"]
    assert model.params[0].literal == "0.5" and model.params[0].exact
    assert model.total_cells == len(recorded.store.cell_executions(recorded.result.run_id))
    assert model.target_kind == "variable"
    assert model.cells[0].needed_for == ("Ridge", "np")  # code edges count
    assert model.cells[-1].needed_for == ("model",)
    assert model.external_reads == () and model.warnings == ()

    path = str(recorded.work / "models" / "m.joblib")
    for target in (path, os.path.relpath(path)):
        assert _seqs(_slice(recorded, target)) == [1, 2, 5, 6, 8]
    art = recorded.store.find_artifacts(path)[0]
    by_artifact = _slice(recorded, f"artifact:{art.id}")
    assert _seqs(by_artifact) == [1, 2, 5, 6, 8] and by_artifact.target_kind == "artifact"

    assert _seqs(_slice(recorded, "summary")) == [1, 2, 3]  # the unrelated cell on its own
    assert _seqs(_slice(recorded, "scale")) == [5]
    fit = next(c for c in recorded.store.cell_executions(recorded.result.run_id) if c.seq == 6)
    assert _seqs(_slice(recorded, f"cell:{fit.id}")) == [1, 2, 5, 6]


@pytest.mark.kernel
def test_slice_of_a_parameter_is_its_parameters_line(recorded: Recorded) -> None:
    alpha = _slice(recorded, "alpha")
    assert alpha.cells == () and [p.line() for p in alpha.params] == ["alpha = 0.5"]


@pytest.mark.kernel
def test_slice_run_errors_name_what_was_looked_up(recorded: Recorded) -> None:
    with pytest.raises(NotFoundError) as err:
        _slice(recorded, "modle")
    message = str(err.value)
    assert "nothing named 'modle'" in message and "as a variable" in message
    assert "nearest recorded: model" in message
    with pytest.raises(NotFoundError, match="nothing named 'nothing/here.csv'.*as a file path"):
        _slice(recorded, "nothing/here.csv")
    with pytest.raises(NotFoundError, match="artifact 99999 was neither read nor written"):
        _slice(recorded, "artifact:99999")
    with pytest.raises(InvalidArgumentError, match="empty export target"):
        _slice(recorded, "  ")
    with pytest.raises(NotFoundError, match="no run"):
        slice_run(recorded.store, "f" * 32, "model")


@pytest.mark.kernel
def test_write_notebook_refuses_existing_files_and_the_runs_notebook(
    recorded: Recorded, tmp_path: Path
) -> None:
    result = _slice(recorded, "model")
    out = tmp_path / "deep" / "er" / "x.ipynb"
    assert write_notebook(result, out) == out  # parents are created
    out.write_text("keep me")
    with pytest.raises(InvalidArgumentError, match="already exists.*--force"):
        write_notebook(result, out)
    assert out.read_text() == "keep me"
    write_notebook(result, out, force=True)
    assert _body(nbformat.read(out, as_version=4)) == [IMPORTS, DATA, HELPER_V2, FIT]

    source_nb = recorded.work / "train.ipynb"
    before = source_nb.read_bytes()
    assert result.run.notebook_path == str(source_nb)
    with pytest.raises(InvalidArgumentError, match="is the notebook the run came from"):
        write_notebook(result, source_nb, force=True)
    other = tmp_path / "open.ipynb"
    with pytest.raises(InvalidArgumentError, match="is the notebook the run came from"):
        write_notebook(result, other, force=True, protected=[other])
    assert source_nb.read_bytes() == before and not other.exists()
    with pytest.raises(InvalidArgumentError, match="is a directory"):
        write_notebook(result, tmp_path)
    assert not [p for p in tmp_path.rglob("*.tmp")]


def test_notebook_for_escapes_backticks_and_keeps_no_store_url() -> None:
    from nbmlops.slicing import SlicedCell, SliceParam
    from nbmlops.store.entities import Run

    run = Run(id="a" * 32, name="n`b", experiment="Default", source="interactive",
              status="running", start_time=0.0)
    cell = SlicedCell(1, 0, 1, None, "x = 1", "x = 1", "error")
    param = SliceParam("token", "None", "***redacted***", False, "secret-looking", 0)
    result = SliceResult(run, "we`ird", "variable", "variable we`ird (cell [1])", (cell,), (param,), 3)
    nb = notebook_for(result)
    nbformat.validate(nb)
    assert "``we`ird``" in nb.cells[0].source and "``n`b``" in nb.cells[0].source
    assert nb.cells[1].source == "token = None  # secret-looking"
    assert nb.cells[2].metadata.tags == ["raises-exception"]
    assert "sqlite" not in json.dumps(nb)


def test_slicing_is_core_and_imports_no_ui() -> None:
    bad = {i for i in _imports(PKG / "slicing.py") if i.startswith(UI_MODULES + ("IPython",))}
    assert not bad


# -- files from outside the run and files written inside it (own kernel run) --------------------


@pytest.mark.kernel
def test_file_read_from_outside_is_kept_and_in_run_writers_are_followed(
    run_notebook: Callable[..., tuple[ExecutionResult, Any]], tmp_path: Path, store: Store
) -> None:
    work = tmp_path / "work"
    work.mkdir()
    (work / "data.csv").write_text("a\n1\n2\n3\n")
    cells = [
        "import pandas as pd",
        "df = pd.read_csv('data.csv')",
        "df.assign(b=df['a'] * 2).to_csv('derived.csv', index=False)",
        "print(len(df))",
        "d = pd.read_csv('derived.csv')",
        "result = int(d['b'].sum())",
        "%mlops export data.csv -o read.ipynb",
        "%mlops export result -o result.ipynb",
    ]
    res, nb = run_notebook(cells, name="files")
    assert res.status == "finished", res.error
    assert _stdout(_cell(nb, cells[6])) == (
        "wrote read.ipynb: 2 of 6 cells (cells 1, 2), params: none\n"
    )
    assert _stdout(_cell(nb, cells[7])) == (
        "wrote result.ipynb: 5 of 6 cells (cells 1, 2, 3, 5, 6), params: none\n"
    )
    read = nbformat.read(work / "read.ipynb", as_version=4)
    assert _code_sources(read) == cells[:2] and not _params_cells(read)
    assert "outside the run" in read.cells[0].source and "data.csv" in read.cells[0].source

    sliced = slice_run(store, res.run_id, "result")
    assert sliced.external_reads == (str(work / "data.csv"),)
    assert sliced.cells[2].needed_for == ("derived.csv",)

    # it runs where the outside file is, and gives the same result
    (work / "derived.csv").unlink()
    nb_result = nbformat.read(work / "result.ipynb", as_version=4)
    assert _code_sources(nb_result) == [cells[0], cells[1], cells[2], cells[4], cells[5]]
    nb_result.cells.append(nbformat.v4.new_code_cell("print('result', result)"))
    _execute(nb_result, work)
    assert _stdout(nb_result.cells[-1]) == "result 12\n"


# -- %mlops export in an in-process IPython shell (interactive capture) --------------------------


@pytest.fixture
def shell(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[InteractiveShell]:
    """A fresh InteractiveShell recording with ``%load_ext nbmlops``; its notebook is
    ``work/running.ipynb`` (as JupyterLab would tell the kernel)."""
    monkeypatch.setenv("NBMLOPS_STORE_URL", f"sqlite:///{tmp_path / 'x.db'}")
    monkeypatch.setenv("IPYTHONDIR", str(tmp_path / "ipython"))
    work = tmp_path / "work"
    work.mkdir()
    (work / "running.ipynb").write_text("the notebook open in JupyterLab")
    monkeypatch.setenv("NBMLOPS_NOTEBOOK_PATH", str(work / "running.ipynb"))
    monkeypatch.chdir(work)
    InteractiveShell.clear_instance()
    config = Config()
    config.HistoryAccessor.enabled = False
    sh = InteractiveShell.instance(config=config)
    sh.run_line_magic("load_ext", "nbmlops")
    assert active_session() is not None
    try:
        yield sh
    finally:
        sh.run_line_magic("unload_ext", "nbmlops")
        InteractiveShell.clear_instance()


Run = Callable[..., None]


@pytest.fixture
def run(shell: InteractiveShell) -> Run:
    def go(source: str, cell_id: str | None = None, tags: list[str] | None = None) -> None:
        result = shell.run_cell(source, store_history=True, cell_id=cell_id,
                                cell_meta={"tags": tags} if tags else None)
        assert result.success, (source, result.error_in_exec or result.error_before_exec)

    return go


def mlops(shell: InteractiveShell, line: str) -> Any:
    return shell.run_line_magic("mlops", line)


def test_export_is_in_the_subcommand_table_and_help(
    shell: InteractiveShell, capsys: pytest.CaptureFixture[str]
) -> None:
    assert "export" in SUBCOMMANDS
    mlops(shell, "--help")
    assert re.search(rf"^\s+export\s+{re.escape(SUBCOMMANDS['export'].summary)}$",
                     capsys.readouterr().out, re.M)
    mlops(shell, "export --help")
    out = capsys.readouterr().out
    assert out.startswith("usage: %mlops export")
    assert all(flag in out for flag in ("TARGET", "-o NOTEBOOK", "--run RUN", "--force"))


def test_reexecuted_cell_is_exported_in_the_version_used(
    shell: InteractiveShell, run: Run, capsys: pytest.CaptureFixture[str]
) -> None:
    run("import numpy as np", cell_id="imp")
    run("def helper(a):\n    return a * 1", cell_id="helper")
    run("w = helper(np.arange(3))", cell_id="w")
    run("def helper(a):\n    return a * 2", cell_id="helper")  # edited and run again
    run("v = helper(np.arange(3))", cell_id="v")
    run("print(v, w)", cell_id="show")
    capsys.readouterr()
    mlops(shell, "export v -o v.ipynb")  # no flush before: export writes what is pending
    assert capsys.readouterr().out == "wrote v.ipynb: 3 of 6 cells (cells 1, 4, 5), params: none\n"
    assert _code_sources(nbformat.read("v.ipynb", as_version=4)) == [
        "import numpy as np", "def helper(a):\n    return a * 2", "v = helper(np.arange(3))"]
    mlops(shell, "export w -o w.ipynb")
    assert _code_sources(nbformat.read("w.ipynb", as_version=4)) == [
        "import numpy as np", "def helper(a):\n    return a * 1", "w = helper(np.arange(3))"]


@pytest.mark.kernel
def test_identical_reexecutions_are_kept_only_when_they_matter(
    shell: InteractiveShell, run: Run, tmp_path: Path
) -> None:
    run("import numpy as np", cell_id="imp")
    run("a = np.ones(2)", cell_id="a")
    run("import numpy as np", cell_id="imp")  # run again: adds nothing
    run("items = []", cell_id="items")
    run("items.append(1)", cell_id="append")
    run("first = list(items)", cell_id="first")
    run("items = []", cell_id="items")  # run again: resets what the append changed
    run("items.append(2)", cell_id="append")
    run("both = first + items + np.zeros(2, dtype=int).tolist() + a.astype(int).tolist()",
        cell_id="both")
    mlops(shell, "export both -o both.ipynb")
    nb = nbformat.read("both.ipynb", as_version=4)
    assert _code_sources(nb) == [
        "import numpy as np", "a = np.ones(2)", "items = []", "items.append(1)",
        "first = list(items)", "items = []", "items.append(2)",
        "both = first + items + np.zeros(2, dtype=int).tolist() + a.astype(int).tolist()",
    ]
    nb.cells.append(nbformat.v4.new_code_cell("print(both)"))
    _execute(nb, tmp_path)
    assert _stdout(nb.cells[-1]) == "[1, 2, 0, 0, 1, 1]\n"


@pytest.mark.kernel
def test_parameters_are_written_as_the_literals_the_run_used(
    shell: InteractiveShell, run: Run, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run("alpha = 0.5\nlabel = '0.5'\nn: int = 3\nunused = [1, 2]\napi_key = 'sk-secret-123'",
        cell_id="params", tags=["parameters"])
    run("a1 = alpha * 2", cell_id="a1")
    run("alpha = 0.7\nlabel = '0.5'\nn: int = 3\nunused = [1, 2]\napi_key = 'sk-secret-123'",
        cell_id="params", tags=["parameters"])  # the parameter edited, the cell run again
    run("text = f'{label}|{n}|{len(api_key)}'", cell_id="text")
    run("total = a1 + alpha * 2", cell_id="total")
    capsys.readouterr()
    mlops(shell, "export text -o text.ipynb")
    assert capsys.readouterr().out.startswith(
        "wrote text.ipynb: 1 of 5 cells (cells 4), params: label, n, api_key\n"
        "  note: parameter api_key: secret-looking name")
    text = nbformat.read("text.ipynb", as_version=4)
    assert _params_cells(text)[0].source == (
        "label = '0.5'\nn = 3\n"
        "api_key = None  # secret-looking name: value not exported, pass it with -p"
    )
    assert "sk-secret" not in (tmp_path / "work" / "text.ipynb").read_text()

    mlops(shell, "export total -o total.ipynb")
    out = capsys.readouterr().out
    assert out.startswith("wrote total.ipynb: 3 of 5 cells (cells 2, 3, 5), params: alpha\n")
    assert "note: cell [3] sets alpha again, to a value other than the parameters cell's" in out
    total = nbformat.read("total.ipynb", as_version=4)
    # alpha was 0.5 for a1 and 0.7 for total: the second assignment stays where it ran
    assert _params_cells(total)[0].source == "alpha = 0.5"
    assert _body(total)[0] == "a1 = alpha * 2" and _body(total)[1].startswith("alpha = 0.7")
    total.cells.append(nbformat.v4.new_code_cell("print(round(total, 6))"))
    _execute(total, tmp_path)
    assert _stdout(total.cells[-1]) == "2.4\n"


def test_export_refuses_an_existing_file_without_force(
    shell: InteractiveShell, run: Run, capsys: pytest.CaptureFixture[str]
) -> None:
    run("x = 41")
    run("y = x + 1")
    Path("out.ipynb").write_text("untouched")
    with pytest.raises(UsageError, match=r"%mlops export: out.ipynb already exists.*--force"):
        mlops(shell, "export y -o out.ipynb")
    assert Path("out.ipynb").read_text() == "untouched"
    capsys.readouterr()
    mlops(shell, "export y -o out.ipynb --force")
    assert capsys.readouterr().out == "wrote out.ipynb: 2 of 2 cells (cells 1, 2), params: none\n"
    assert _code_sources(nbformat.read("out.ipynb", as_version=4)) == ["x = 41", "y = x + 1"]


def test_export_refuses_the_running_notebook_even_with_force(
    shell: InteractiveShell, run: Run
) -> None:
    run("x = 1")
    for line in ("export x -o running.ipynb --force", "export x -o ./sub/../running.ipynb"):
        with pytest.raises(UsageError, match="is the notebook the run came from"):
            mlops(shell, line)
    assert Path("running.ipynb").read_text() == "the notebook open in JupyterLab"


def test_export_of_an_unknown_variable_names_the_nearest_ones(shell: InteractiveShell, run: Run) -> None:
    run("model = 1\nmodel_b = 2\nother = 3")
    with pytest.raises(UsageError) as err:
        mlops(shell, "export modle -o m.ipynb")
    message = str(err.value)
    assert message.startswith("%mlops export: nothing named 'modle' in run ")
    assert "nearest recorded: model, model_b" in message and "other" not in message
    with pytest.raises(UsageError, match="variables recorded in the run: model, model_b, other"):
        mlops(shell, "export zzz -o m.ipynb")
    assert not Path("m.ipynb").exists()


def test_export_without_output_is_a_usage_error(shell: InteractiveShell, run: Run) -> None:
    run("x = 1")
    with pytest.raises(UsageError, match=r"%mlops export: the following arguments are required: "
                                         r"-o/--output\nusage: %mlops export"):
        mlops(shell, "export x")
    with pytest.raises(UsageError, match="required: TARGET"):
        mlops(shell, "export -o x.ipynb")


def test_export_of_a_variable_defined_before_the_run(shell: InteractiveShell, run: Run) -> None:
    run("before = 1")
    mlops(shell, "start second")
    run("after = before + 1")
    with pytest.raises(UsageError, match=r"variable 'before' was used by cell \[\d+\] of run \w+ "
                                         r"but never defined in it"):
        mlops(shell, "export before -o b.ipynb")
    assert not Path("b.ipynb").exists()


def test_export_without_a_run(shell: InteractiveShell, run: Run) -> None:
    run("x = 1")
    rid = active_session().run_id  # type: ignore[union-attr]
    mlops(shell, "stop")
    with pytest.raises(UsageError, match="no run is being recorded.*--run RUN"):
        mlops(shell, "export x -o x.ipynb")
    # a finished run can still be exported by id
    mlops(shell, f"export x -o x.ipynb --run {rid[:8]}")
    assert _code_sources(nbformat.read("x.ipynb", as_version=4)) == ["x = 1"]


def test_export_keeps_magics_as_written(shell: InteractiveShell, run: Run) -> None:
    run("%config MlopsMagics.default_limit = 20\nfiles = !echo hi\ncount = len(files)")
    run("double = count * 2")
    mlops(shell, "export double -o d.ipynb")
    assert _code_sources(nbformat.read("d.ipynb", as_version=4)) == [
        "%config MlopsMagics.default_limit = 20\nfiles = !echo hi\ncount = len(files)",
        "double = count * 2",
    ]


def test_injected_parameters_win_and_the_parameters_cell_is_left_out(
    shell: InteractiveShell, run: Run
) -> None:
    run("alpha = 0.5\nunused_param = 'x'", cell_id="p", tags=["parameters"])
    run("# Parameters\nalpha = 0.3\n", cell_id="inj", tags=["injected-parameters"])
    run("m = alpha * 10", cell_id="m")
    mlops(shell, "export m -o m.ipynb")
    nb = nbformat.read("m.ipynb", as_version=4)
    assert [c.source for c in _params_cells(nb)] == ["alpha = 0.3"]
    assert _body(nb) == ["m = alpha * 10"]


def test_a_parameters_cell_needed_for_more_keeps_the_rest(shell: InteractiveShell, run: Run) -> None:
    run("alpha = 0.5\nfrom pathlib import Path\nout_dir = Path('out')", cell_id="p",
        tags=["parameters"])
    run("m = alpha * 2")
    run("res = (m, str(out_dir / 'x'))")
    mlops(shell, "export res -o res.ipynb")
    nb = nbformat.read("res.ipynb", as_version=4)
    assert [c.source for c in _params_cells(nb)] == ["alpha = 0.5"]
    # the assignment moved to the parameters cell, so that -p alpha reaches the later cells
    assert _body(nb) == ["from pathlib import Path\nout_dir = Path('out')", "m = alpha * 2",
                         "res = (m, str(out_dir / 'x'))"]


@pytest.mark.kernel
def test_a_parameter_is_not_hoisted_above_a_cell_that_overwrites_it(
    shell: InteractiveShell, run: Run, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run("alpha = 0.5", cell_id="p", tags=["parameters"])
    run("alpha = 0.9\nz = 1", cell_id="n")  # an ordinary cell
    run("a1 = alpha + z", cell_id="a1")
    run("alpha = 0.5", cell_id="p", tags=["parameters"])  # the parameters cell run again
    run("a2 = alpha", cell_id="a2")
    run("total = a1 + a2", cell_id="total")
    capsys.readouterr()
    mlops(shell, "export total -o total.ipynb")
    assert capsys.readouterr().out.startswith(
        "wrote total.ipynb: 5 of 6 cells (cells 2, 3, 4, 5, 6), params: none\n")
    nb = nbformat.read("total.ipynb", as_version=4)
    nb.cells.append(nbformat.v4.new_code_cell("print(round(total, 6))"))
    _execute(nb, tmp_path)
    assert _stdout(nb.cells[-1]) == "2.4\n"


def test_python_api_exports_the_current_run(shell: InteractiveShell, run: Run) -> None:
    import nbmlops

    run("x = 20")
    run("y = x + 1")
    result = nbmlops.export_notebook("y", "api.ipynb")
    assert result.numbers == [1, 2] and result.summary("api.ipynb").startswith("wrote api.ipynb")
    assert _code_sources(nbformat.read("api.ipynb", as_version=4)) == ["x = 20", "y = x + 1"]
    shell.run_line_magic("unload_ext", "nbmlops")
    try:
        with pytest.raises(InvalidArgumentError, match="no run is being recorded"):
            nbmlops.export_notebook("y", "api2.ipynb")
        assert not Path("api2.ipynb").exists()
    finally:
        shell.run_line_magic("load_ext", "nbmlops")


def test_unknown_file_suggests_recorded_files(shell: InteractiveShell, run: Run) -> None:
    run("with open('scores.csv', 'w') as fh:\n    fh.write('a')")
    with pytest.raises(UsageError, match=r"nothing named 'score.csv'.*nearest recorded: scores.csv"):
        mlops(shell, "export score.csv -o s.ipynb")
    mlops(shell, "export scores.csv -o s.ipynb")
    assert _code_sources(nbformat.read("s.ipynb", as_version=4)) == [
        "with open('scores.csv', 'w') as fh:\n    fh.write('a')"]
