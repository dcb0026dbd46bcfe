"""The papermill engine ``nbmlops`` and ``nbmlops run``, end to end: the real ``papermill`` and
``nbmlops`` scripts in subprocesses, real kernels, a real SQLite store in tmp_path."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import nbformat
import pytest

from nbmlops.execute import execute_notebook
from nbmlops.store import Store

from ._scripts import clean_env, nbmlops, one_line_error, script
from .conftest import make_notebook


def all_runs(store: Store) -> list[Any]:
    return store.list_runs(limit=10_000).runs


# -- the papermill engine -----------------------------------------------------------------------


@pytest.mark.kernel
def test_papermill_cli_with_the_nbmlops_engine(tmp_path: Path, store_url: str, store: Store) -> None:
    nb = make_notebook(tmp_path / "train.ipynb", [
        ("alpha = 0.1\nlabel = 'x'", ["parameters"]),
        "beta = alpha * 2",
        "print(beta)",
    ])
    out = tmp_path / "out.ipynb"
    proc = subprocess.run(
        [script("papermill"), "--engine", "nbmlops", str(nb), str(out), "-p", "alpha", "0.5"],
        cwd=tmp_path, env=clean_env(NBMLOPS_STORE_URL=store_url), capture_output=True, text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    executed = nbformat.read(out, as_version=4)
    run_id = executed.metadata["nbmlops"]["run_id"]
    assert executed.metadata["nbmlops"]["status"] == "finished"
    run = store.get_run(run_id)
    assert run.source == "papermill" and run.status == "finished"
    assert run.notebook_path == str(nb.resolve())
    # the injected value wins over the declared default; the other default is kept
    assert float(run.params["alpha"]) == 0.5
    assert run.params["label"] == "x"
    cells = store.cell_executions(run_id)
    # parameters cell, papermill's injected-parameters cell and the two others: each recorded
    assert [c.status for c in cells] == ["ok"] * 4
    assert {c.cell_id for c in cells} == {c.id for c in executed.cells}
    assert "alpha = 0.5" in cells[1].source
    assert all(c.duration >= 0 and c.start_time >= run.start_time - 1 for c in cells)
    assert [o["text"] for o in executed.cells[-1].outputs] == ["1.0\n"]


@pytest.mark.kernel
def test_papermill_cli_kernel_death_leaves_a_failed_run(
    tmp_path: Path, store_url: str, store: Store
) -> None:
    nb = make_notebook(tmp_path / "die.ipynb", [
        "a = 1", "b = a + 1", "import os\nos._exit(1)", "c = 3",
    ])
    out = tmp_path / "out.ipynb"
    proc = subprocess.run(
        [script("papermill"), "--engine", "nbmlops", str(nb), str(out)],
        cwd=tmp_path, env=clean_env(NBMLOPS_STORE_URL=store_url), capture_output=True, text=True,
        timeout=120,
    )
    assert proc.returncode != 0
    assert "DeadKernelError" in proc.stderr
    (run,) = all_runs(store)
    assert run.source == "papermill" and run.status == "failed" and run.end_time is not None
    cells = store.cell_executions(run.id)
    assert [c.source for c in cells] == ["a = 1", "b = a + 1", "import os\nos._exit(1)"]
    assert [c.status for c in cells] == ["ok", "ok", "error"]
    assert cells[2].error_name == "DeadKernelError"
    # recorded client-side, from the process that launched the kernel
    assert run.tags.get("nbmlops.recorded_by") == "client"


@pytest.mark.kernel
def test_capture_that_cannot_start_in_the_kernel_is_recorded_client_side(
    tmp_path: Path, store_url: str, store: Store
) -> None:
    """A kernel where ``--ext=nbmlops`` fails to import (a broken ``nbmlops`` shadows the real
    one on the kernel's PYTHONPATH only): the launching process records every cell."""
    shadow = tmp_path / "shadow" / "nbmlops"
    shadow.mkdir(parents=True)
    (shadow / "__init__.py").write_text("raise ImportError('nbmlops broken for this test')\n")
    nb = make_notebook(tmp_path / "nb.ipynb", [
        ("alpha = 0.1", ["parameters"]), "beta = alpha * 2", "1 / 0", "never = 1",
    ])
    result = execute_notebook(nb, tmp_path / "out.ipynb", store_url=store_url,
                              env={"PYTHONPATH": str(tmp_path / "shadow")},
                              parameters={"alpha": 0.7}, timeout=60)
    assert result.status == "failed"
    assert result.error == "ZeroDivisionError: division by zero"
    assert result.failed_cell_index == 2  # in the notebook as written (no injected cell)
    run = store.get_run(result.run_id)
    assert run.status == "failed" and run.source == "papermill"
    assert run.tags["nbmlops.capture"] == "client-side only"
    assert float(run.params["alpha"]) == 0.7
    cells = store.cell_executions(result.run_id)
    assert [c.status for c in cells] == ["ok", "ok", "ok", "error"]
    assert cells[1].source.endswith("alpha = 0.7\n")  # the injected-parameters cell
    assert (cells[3].error_name, cells[3].error_value) == ("ZeroDivisionError", "division by zero")
    log = (Path(store_url[len("sqlite:///"):]).parent / "runs" / result.run_id / "kernel.log")
    assert "nbmlops broken for this test" in log.read_text()


# -- nbmlops run --------------------------------------------------------------------------------

TYPED: list[str | tuple[str, list[str]]] = [
    ("alpha = 0.1\nn = 3\nflag = False\nitems = [1, 2]\nname = 'x'\nopt = None", ["parameters"]),
    "import json\n"
    "values = dict(alpha=alpha, n=n, flag=flag, items=items, name=name, opt=opt)\n"
    "types = {k: type(v).__name__ for k, v in values.items()}\n"
    "json.dump({'values': values, 'types': types}, open('vals.json', 'w'))",
]


@pytest.fixture
def typed_nb(tmp_path: Path) -> Path:
    return make_notebook(tmp_path / "typed.ipynb", TYPED)


@pytest.mark.kernel
def test_run_coerces_cli_strings_to_the_declared_types(
    tmp_path: Path, store_url: str, store: Store, typed_nb: Path
) -> None:
    params_file = tmp_path / "params.yaml"
    params_file.write_text("alpha: 2\nn: 4\nname: from-file\n")
    out = tmp_path / "executed" / "typed.ipynb"
    proc = nbmlops(
        "--store", store_url, "run", str(typed_nb), "-f", str(params_file),
        "-p", "alpha", "1", "-p", "flag", "yes", "-p", "items", '[3, "a"]', "-p", "name", "123",
        "-p", "opt", "7", "-o", str(out), "--json", cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    printed = json.loads(proc.stdout)
    assert printed["status"] == "finished" and printed["output"] == str(out)
    written = json.loads((tmp_path / "vals.json").read_text())
    # -p wins over -f; -f values not overridden stay; strings take the default's type
    assert written["values"] == {"alpha": 1.0, "n": 4, "flag": True, "items": [3, "a"],
                                 "name": "123", "opt": 7}
    assert written["types"] == {"alpha": "float", "n": "int", "flag": "bool", "items": "list",
                                "name": "str", "opt": "int"}
    assert printed["params"] == {"alpha": 1.0, "n": 4, "flag": True, "items": [3, "a"],
                                 "name": "123", "opt": 7}
    run = store.get_run(printed["run_id"])
    assert run.status == "finished" and run.source == "papermill" and run.name == "typed"
    assert float(run.params["alpha"]) == 1.0
    assert run.params["n"] == "4" and run.params["name"] == "123"
    assert nbformat.read(out, as_version=4).metadata["nbmlops"]["run_id"] == run.id


@pytest.mark.kernel
def test_run_failure_exits_1_naming_the_cell(tmp_path: Path, store_url: str, store: Store) -> None:
    nb = make_notebook(tmp_path / "boom.ipynb", ["x = 1", "raise ValueError('bad\\nthing')"])
    proc = nbmlops("--store", store_url, "run", str(nb), cwd=tmp_path)
    assert proc.returncode == 1
    line = one_line_error(proc)
    assert "boom.ipynb: cell 1 failed: ValueError: thing" in line
    (run,) = all_runs(store)
    assert run.status == "failed" and run.id[:8] in line


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["-p", "alpah", "1"],
         "typed.ipynb has no parameter 'alpah' (did you mean 'alpha'?); its parameters: "
         "alpha, n, flag, items, name, opt"),
        (["-p", "zzz", "1"], "typed.ipynb has no parameter 'zzz'; its parameters: alpha, n,"),
        (["-p", "n", "2.5"], "parameter 'n': cannot use '2.5' as int"),
        (["-p", "flag", "maybe"], "parameter 'flag': cannot use 'maybe' as bool"),
        (["-p", "items", "notalist"], "parameter 'items': cannot use 'notalist' as list"),
        (["-f", "{bad}"], ":2:1: YAML syntax error"),
        (["-f", "{list}"], "parameters file must hold a mapping of name: value, not a list"),
        (["-f", "{typed}"], "parameter 'n': [4] is a list, the notebook declares an int"),
    ],
    ids=["unknown-suggest", "unknown", "int", "bool", "list", "yaml-syntax", "not-mapping",
         "file-type"],
)
def test_run_bad_input_exits_2_before_any_kernel(
    tmp_path: Path, store_url: str, store: Store, typed_nb: Path, args: list[str], message: str
) -> None:
    files = {"bad": "a: [1, 2\n", "list": "- 1\n- 2\n", "typed": "n: [4]\n"}
    for key, text in files.items():
        (tmp_path / f"{key}.yaml").write_text(text)
    args = [a.format(**{k: str(tmp_path / f"{k}.yaml") for k in files}) for a in args]
    proc = nbmlops("--store", store_url, "run", str(typed_nb), *args, cwd=tmp_path, timeout=30)
    assert proc.returncode == 2, proc.stderr
    assert message in one_line_error(proc)
    assert all_runs(store) == []
    assert not (tmp_path / "vals.json").exists()  # the notebook never ran


def test_run_params_for_a_notebook_without_parameters_cell(
    tmp_path: Path, store_url: str, store: Store
) -> None:
    nb = make_notebook(tmp_path / "plain.ipynb", ["x = 1"])
    proc = nbmlops("--store", store_url, "run", str(nb), "-p", "x", "2", cwd=tmp_path, timeout=30)
    assert proc.returncode == 2
    assert one_line_error(proc) == (
        "Error: plain.ipynb has no cell tagged 'parameters', so it takes no parameters (given: x); "
        "tag the cell that sets the defaults 'parameters'"
    )
    assert all_runs(store) == []


def test_run_unknown_kernel_records_nothing(tmp_path: Path, store_url: str, store: Store) -> None:
    nb = make_notebook(tmp_path / "plain.ipynb", ["x = 1"])
    proc = nbmlops("--store", store_url, "run", str(nb), "--kernel", "no-such-kernel",
                   cwd=tmp_path, timeout=30)
    assert proc.returncode == 2
    assert one_line_error(proc) == "Error: no Jupyter kernel named 'no-such-kernel'"
    assert all_runs(store) == []


def test_untyped_parameters_take_literals_only_not_yaml_surprises(tmp_path: Path) -> None:
    """A default of None says nothing about the type: Python/JSON literals are parsed, anything
    else stays text (YAML 1.1 would make 01234 octal, 1:30 sixty-based, 2024-01-01 a date)."""
    from nbmlops.params import check_parameters, load_params_file

    nb = make_notebook(tmp_path / "u.ipynb", [("zip_code = None\nwhen = None\nn = None",
                                               ["parameters"])])
    got = check_parameters(nb, {"zip_code": "01234", "when": "1:30", "n": "7"})
    assert got == {"zip_code": "01234", "when": "1:30", "n": 7}
    assert check_parameters(nb, {"when": "2024-01-01", "n": "null"}) == {"when": "2024-01-01", "n": None}
    f = tmp_path / "p.yaml"
    f.write_text("when: 2024-01-01\nat: 2024-01-01 10:00:00\nnested: [2024-02-03]\n")
    assert load_params_file(f) == {"when": "2024-01-01", "at": "2024-01-01T10:00:00",
                                   "nested": ["2024-02-03"]}


def test_run_refuses_to_write_over_its_source(tmp_path: Path, store_url: str, store: Store) -> None:
    nb = make_notebook(tmp_path / "q.ipynb", ["x = 1"])
    before = nb.read_bytes()
    proc = nbmlops("--store", store_url, "run", "q.ipynb", "-o", "./q.ipynb", cwd=tmp_path, timeout=30)
    assert proc.returncode == 2
    assert "is the notebook itself" in one_line_error(proc)
    assert nb.read_bytes() == before and all_runs(store) == []


def test_failed_cell_is_reported_at_its_index_in_the_notebook_the_user_wrote() -> None:
    from nbmlops.engine import source_cell_index

    v4 = nbformat.v4
    # papermill's injected cell is not the user's
    nb = v4.new_notebook(cells=[
        v4.new_code_cell("a = 1", metadata={"tags": ["parameters"]}),
        v4.new_code_cell("a = 2", metadata={"tags": ["injected-parameters"]}),
        v4.new_code_cell("boom()"),
    ])
    assert source_cell_index(nb, 2) == 1
    # a generated step notebook records where each copied cell came from
    step = v4.new_notebook(cells=[
        v4.new_code_cell("import os", metadata={"nbmlops": {"source_index": 0}}),
        v4.new_code_cell("x = load()"),
        v4.new_code_cell("boom()", metadata={"nbmlops": {"source_index": 5}}),
    ])
    assert source_cell_index(step, 2) == 5
