"""Validation where work runs: ``validate:`` of pipeline steps (real runs of ``nbmlops pipeline
run`` and the runner on real kernels, real SQLite store) and ``nbmlops.validate`` inside a
notebook run by ``nbmlops run`` (recorded against the run and the cell)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from nbmlops.errors import PipelineError
from nbmlops.pipeline.load import load_pipeline
from nbmlops.pipeline.runner import PipelineRunner
from nbmlops.store import Store

from ._scripts import nbmlops
from .conftest import make_notebook


def frame(n: int = 500, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame({"x": rng.normal(0, 1, n).clip(-3, 3), "k": rng.choice(["a", "b"], n)})


PIPELINE = """\
name: checked
steps:
  make:
    notebook: make.ipynb
    outputs: out.csv
    validate:
      - path: out.csv
        against: ref.csv
        on_fail: {on_fail}
  use:
    notebook: use.ipynb
    depends_on: make
    inputs: out.csv
"""


@pytest.fixture
def project(tmp_path: Path) -> Path:
    frame(seed=1).to_csv(tmp_path / "ref.csv", index=False)
    make_notebook(tmp_path / "make.ipynb", [
        ("drop = False", ["parameters"]),
        "import numpy as np, pandas as pd\n"
        "rng = np.random.default_rng(2)\n"
        "df = pd.DataFrame({'x': rng.normal(0, 1, 500).clip(-3, 3), "
        "'k': rng.choice(['a', 'b'], 500)})\n"
        "if drop:\n    df = df.drop(columns=['k'])\n"
        "df.to_csv('out.csv', index=False)",
    ])
    make_notebook(tmp_path / "use.ipynb", ["import pandas as pd\nn = len(pd.read_csv('out.csv'))"])
    return tmp_path


def write_pipeline(root: Path, on_fail: str = "fail") -> Path:
    path = root / "pipeline.yaml"
    path.write_text(PIPELINE.format(on_fail=on_fail))
    return path


def run(root: Path, store_url: str, **params: object) -> tuple[PipelineRunner, object]:
    runner = PipelineRunner(load_pipeline(write_pipeline(root, str(params.pop("on_fail", "fail")))),
                            store_url=store_url, params=params, retry_delay=0.1)
    return runner, runner.run()


def test_output_passes_then_fails_before_downstream(project: Path, store_url: str,
                                                    store: Store) -> None:
    _, ok = run(project, store_url)
    assert {n: r.state for n, r in ok.steps.items()} == {"make": "ran", "use": "ran"}  # type: ignore[attr-defined]
    make_run = ok.steps["make"].run_id  # type: ignore[attr-defined]
    [passed] = store.validations.for_run(make_run)
    assert passed.passed and passed.data_label == "out.csv"
    assert store.get_run(make_run).tags["nbmlops.validation.make.out.csv"] == "passed"

    _, bad = run(project, store_url, drop=True)
    steps = bad.steps  # type: ignore[attr-defined]
    assert bad.status == "failed"  # type: ignore[attr-defined]
    assert steps["make"].state == "failed" and steps["make"].attempts == 1
    assert steps["use"].state == "skipped"
    assert steps["make"].error == ("step make: validate out.csv against ref.csv: 1 violation: "
                                   "k missing_column (expected column of dtype str, observed "
                                   "missing)")
    failed_run = store.get_run(steps["make"].run_id)
    assert failed_run.status == "failed"
    assert failed_run.tags["nbmlops.error"] == steps["make"].error
    assert failed_run.tags["nbmlops.validation.make.out.csv"].startswith("fail: step make:")
    [row] = store.validations.for_run(failed_run.id)
    assert not row.passed and row.violations[0]["check"] == "missing_column"
    assert row.dataset_artifact_id is not None and row.reference_artifact_id is not None


def test_warn_records_and_goes_on(project: Path, store_url: str, store: Store) -> None:
    _, result = run(project, store_url, drop=True, on_fail="warn")
    steps = result.steps  # type: ignore[attr-defined]
    assert {n: r.state for n, r in steps.items()} == {"make": "ran", "use": "ran"}
    [row] = store.validations.for_run(steps["make"].run_id)
    assert not row.passed
    tag = store.get_run(steps["make"].run_id).tags["nbmlops.validation.make.out.csv"]
    assert tag.startswith("warn: ") and "1 violation" in tag


def test_cached_step_output_still_validated(project: Path, store_url: str,
                                            store: Store) -> None:
    run(project, store_url)
    _, again = run(project, store_url)
    make = again.steps["make"]  # type: ignore[attr-defined]
    assert make.state == "cached"
    assert [v.passed for v in store.validations.for_run(make.run_id)] == [True]


def test_input_checked_before_the_step_starts(project: Path, store_url: str,
                                              store: Store) -> None:
    frame(seed=3).drop(columns=["x"]).to_csv(project / "in.csv", index=False)
    definition = project / "pipeline.yaml"
    definition.write_text(
        "name: inputs\nsteps:\n  use:\n    notebook: use.ipynb\n    inputs: in.csv\n"
        "    validate:\n      - {path: in.csv, against: ref.csv}\n")
    runner = PipelineRunner(load_pipeline(definition), store_url=store_url)
    result = runner.run()
    use = result.steps["use"]
    assert use.state == "failed" and use.run_id is None  # no kernel started
    assert "x missing_column" in (use.error or "")
    [row] = store.validations.for_run(result.run_id)
    assert not row.passed and row.data_label == "in.csv"
    assert store.get_run(result.run_id).tags["nbmlops.validation.use.in.csv"].startswith("fail:")


def test_cli_pipeline_run_exit_and_error(project: Path) -> None:
    write_pipeline(project)
    assert nbmlops("init", cwd=project).returncode == 0
    proc = nbmlops("pipeline", "run", "pipeline.yaml", "-p", "drop", "True", "--json",
                   cwd=project, timeout=300)
    assert proc.returncode == 1, proc.stderr
    assert "k missing_column" in proc.stderr or "k missing_column" in proc.stdout


@pytest.mark.parametrize(("entry", "message"), [
    ("{path: out.csv, against: ref.csv, on_fail: stop}",
     "steps.make.validate[0].on_fail: expected one of 'fail', 'warn', got a string ('stop')"),
    ("{path: out.csv, against: nope.csv}",
     "steps.make.validate[0].against: no such reference file 'nope.csv' (nor an output of any "
     "step)"),
    ("{path: out.csv, against: ref.csv, thresholds: {psy: 1}}",
     "steps.make.validate[0].thresholds: unknown key 'psy' (did you mean 'psi'?)"),
    ("{path: out.csv, against: ref.csv, thresholds: {psi: -1}}",
     "steps.make.validate[0].thresholds.psi: -1 is less than the minimum of 0"),
    ("{path: out.csv}", "steps.make.validate[0]: missing required key 'against'"),
])
def test_bad_definitions_name_file_line_col(project: Path, entry: str, message: str) -> None:
    definition = project / "pipeline.yaml"
    definition.write_text("name: p\nsteps:\n  make:\n    notebook: make.ipynb\n"
                          f"    outputs: out.csv\n    validate:\n      - {entry}\n")
    with pytest.raises(PipelineError) as info:
        load_pipeline(definition)
    text = str(info.value)
    assert text.startswith(f"{definition}:7:"), text
    assert text.endswith(message), text
    proc = nbmlops("pipeline", "validate", str(definition), cwd=project)
    assert proc.returncode == 2 and message in proc.stderr


def test_validate_in_a_notebook_links_run_and_cell(tmp_path: Path) -> None:
    frame(seed=1).to_csv(tmp_path / "ref.csv", index=False)
    make_notebook(tmp_path / "nb.ipynb", [
        "import nbmlops, pandas as pd",
        "df = pd.read_csv('ref.csv').drop(columns=['k'])",
        "result = nbmlops.validate(df, against='ref.csv')\nprint(result.recorded)",
    ])
    assert nbmlops("init", cwd=tmp_path).returncode == 0
    proc = nbmlops("run", "nb.ipynb", "--json", cwd=tmp_path, timeout=300)
    assert proc.returncode == 0, proc.stderr
    run_id = json.loads(proc.stdout)["run_id"]
    store = Store.open(f"sqlite:///{tmp_path / '.nbmlops' / 'nbmlops.db'}",
                       tmp_path / ".nbmlops" / "artifacts")
    try:
        [row] = store.validations.for_run(run_id)
        assert row.cell_seq == 2 and not row.passed
        assert row.violations == [{"column": "k", "check": "missing_column",
                                   "expected": "column of dtype str", "observed": "missing"}]
        assert row.schema_artifact_id is not None and row.reference_artifact_id is not None
        cells = store.cell_executions(run_id)
        assert cells[2].source.startswith("result = nbmlops.validate")
        assert row.summary["key"]  # replay key: the journal follower wrote it once
    finally:
        store.close()
