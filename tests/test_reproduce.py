"""``nbmlops reproduce``: real ``nbmlops run`` / ``nbmlops pipeline run`` subprocesses, real
kernels, a real SQLite store in tmp_path; drift refused (nothing recorded), outputs compared."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from nbmlops.reproduce import REPRODUCES_TAG, metric_close
from nbmlops.store import Store

from ._scripts import nbmlops, one_line_error
from .conftest import make_notebook

CELLS = [
    ("scale = 2\nnoise = 0.0", ["parameters"]),
    "with open('data.txt') as f:\n    values = [float(x) for x in f.read().split()]",
    "import random\nimport nbmlops\ntotal = sum(values) * scale + random.random() * noise\n"
    "nbmlops.log_metric('total', total)",
    "with open('out.txt', 'w') as f:\n    f.write(repr(total))",
]


def snapshot(store: Store) -> list[dict[str, Any]]:
    """Every run with its data and cell count: what a refusal must leave as it was."""
    return [r.to_dict() for r in store.list_runs(limit=10_000, order_by="start_time").runs]


@pytest.fixture
def project(tmp_path: Path) -> Path:
    proj = tmp_path / "proj"
    make_notebook(proj / "calc.ipynb", CELLS)
    (proj / "data.txt").write_text("1 2 3\n")
    return proj


def run_original(project: Path, store_url: str, *params: str) -> str:
    proc = nbmlops("--store", store_url, "run", "calc.ipynb", *params, "--json", cwd=project)
    assert proc.returncode == 0, proc.stderr
    return str(json.loads(proc.stdout)["run_id"])


@pytest.mark.kernel
def test_reproduces_a_notebook_run_from_its_recorded_copy(
    project: Path, store_url: str, store: Store
) -> None:
    run_id = run_original(project, store_url, "-p", "scale", "3")
    before = store.get_run(run_id)
    cells_before = store.cell_executions(run_id)
    # the source changes after the run: the recorded copy is what runs, the change a note
    make_notebook(project / "calc.ipynb", [*CELLS[:2], "total = -1", CELLS[3]])
    proc = nbmlops("--store", store_url, "reproduce", run_id[:8], "--json", cwd=project)
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["reproducible"] is True and report["differences"] == []
    assert report["kind"] == "notebook" and report["status"] == "finished"
    assert report["compared"] == {"metrics": 1, "files": 1, "cells": 5, "steps": 0}
    (note,) = [d for d in report["drift"] if d["kind"] == "notebook"]
    assert note["blocking"] is False and note["name"] == str(project / "calc.ipynb")
    assert "recorded copy" in note["note"]
    new = store.get_run(report["run_id"])
    assert new.tags[REPRODUCES_TAG] == run_id and new.tags["nbmlops.reproducible"] == "yes"
    assert new.params["scale"] == "3" and new.metrics == {"total": 18.0}
    assert new.notebook_hash == before.notebook_hash  # the content that ran
    assert (project / "out.txt").read_text() == "18.0"
    # the original is not rewritten
    assert store.get_run(run_id) == before and store.cell_executions(run_id) == cells_before


@pytest.mark.kernel
def test_changed_input_is_refused_then_runs_with_allow_drift(
    project: Path, store_url: str, store: Store
) -> None:
    run_id = run_original(project, store_url)
    (project / "data.txt").write_text("1 2 4\n")
    (old_fp,) = [a.fingerprint for c in store.cell_executions(run_id) for a in c.reads]
    before = snapshot(store)
    proc = nbmlops("--store", store_url, "reproduce", run_id, cwd=project, timeout=30)
    assert proc.returncode == 1
    line = one_line_error(proc)
    assert f"run {run_id[:8]} cannot be reproduced as recorded: 1 change since it ran" in line
    assert "--allow-drift" in line
    (row,) = [ln for ln in proc.stdout.splitlines() if "data.txt" in ln]
    # fingerprints cut to 12 hex digits in the table (whole in --json)
    assert row.split()[:2] == ["input", str(project / "data.txt")]
    assert row.split()[2] == old_fp[:19] and row.split()[3].startswith("sha256:")
    assert row.split()[3] != row.split()[2]
    assert snapshot(store) == before  # no run, nothing else touched

    proc = nbmlops("--store", store_url, "reproduce", run_id, "--allow-drift", cwd=project)
    assert proc.returncode == 1, proc.stderr
    assert proc.stdout.strip().endswith("reproducible: no")
    assert "drift (run anyway):" in proc.stdout
    rows = {ln.split()[0] + " " + ln.split()[1]: ln for ln in proc.stdout.splitlines()
            if ln.startswith(("metric ", "file "))}
    assert rows.keys() == {"metric total", f"file {project / 'out.txt'}"}
    assert "12.0" in rows["metric total"] and "14.0" in rows["metric total"]
    (new,) = [r for r in store.list_runs().runs if r.tags.get(REPRODUCES_TAG) == run_id]
    assert new.tags["nbmlops.reproducible"] == "no"
    assert new.tags["nbmlops.reproduce_differences"] == "2"
    assert new.tags["nbmlops.reproduce_drift"] == "1"


@pytest.mark.kernel
def test_missing_input_and_missing_notebook_are_refused(
    project: Path, store_url: str, store: Store
) -> None:
    run_id = run_original(project, store_url)
    (project / "data.txt").unlink()
    before = snapshot(store)
    proc = nbmlops("--store", store_url, "reproduce", run_id, "--json", cwd=project, timeout=30)
    assert proc.returncode == 1
    assert "cannot be reproduced as recorded: 1 change" in one_line_error(proc)
    printed = json.loads(proc.stdout)
    assert printed["refused"] is True and printed["original_run_id"] == run_id
    (gone,) = [d for d in printed["drift"] if d["blocking"]]
    assert gone["kind"] == "missing" and gone["name"] == str(project / "data.txt")
    assert gone["recorded"].startswith("sha256:") and gone["current"] is None
    # without the executed copy the source must be the recorded one: an edited one is drift
    shutil.rmtree(Path(store_url.removeprefix("sqlite:///")).parent / "runs" / run_id)
    make_notebook(project / "calc.ipynb", CELLS[:3])
    proc = nbmlops("--store", store_url, "reproduce", run_id, cwd=project, timeout=30)
    assert proc.returncode == 1
    assert "cannot be reproduced as recorded: 2 changes" in one_line_error(proc)
    kinds = {ln.split()[0] for ln in proc.stdout.splitlines()[2:]}
    assert kinds == {"missing", "notebook"}
    assert "no executed copy kept" in proc.stdout
    assert snapshot(store) == before


def test_unknown_run_and_bad_tolerance(tmp_path: Path, store_url: str, store: Store) -> None:
    run_id = store.create_run(name="lab", source="interactive")
    store.end_run(run_id)
    before = snapshot(store)
    proc = nbmlops("--store", store_url, "reproduce", "feedbeef", cwd=tmp_path, timeout=30)
    assert proc.returncode == 4
    assert one_line_error(proc) == "Error: no run 'feedbeef'"
    proc = nbmlops("--store", store_url, "reproduce", run_id, cwd=tmp_path, timeout=30)
    assert proc.returncode == 2
    assert "is an interactive session" in one_line_error(proc)
    proc = nbmlops("--store", store_url, "reproduce", run_id, "--rtol", "-1", cwd=tmp_path,
                   timeout=30)
    assert proc.returncode == 2
    assert one_line_error(proc) == "Error: --rtol and --atol must be >= 0"
    assert snapshot(store) == before


PIPELINE = """\
name: tiny
params:
  seed: 1
steps:
  make:
    notebook: make.ipynb
    inputs: [raw.txt]
    outputs: [mid.txt]
  use:
    notebook: use.ipynb
    depends_on: [make]
    inputs: [mid.txt]
    outputs: [final.json]
    params:
      factor: 2
"""


@pytest.mark.kernel
def test_pipeline_run_reproduces_and_a_step_run_points_at_it(
    tmp_path: Path, store_url: str, store: Store
) -> None:
    proj = tmp_path / "pipe"
    make_notebook(proj / "make.ipynb", [
        ("seed = 0", ["parameters"]),
        "text = open('raw.txt').read()\nwith open('mid.txt', 'w') as f:\n    f.write(text * 2)",
    ])
    make_notebook(proj / "use.ipynb", [
        ("seed = 0\nfactor = 1", ["parameters"]),
        "import json, nbmlops\nn = len(open('mid.txt').read()) * factor\n"
        "nbmlops.log_metric('n', n)\njson.dump({'n': n}, open('final.json', 'w'))",
    ])
    (proj / "raw.txt").write_text("abc")
    (proj / "pipeline.yaml").write_text(PIPELINE)
    proc = nbmlops("--store", store_url, "pipeline", "run", "pipeline.yaml", "--no-progress",
                   "--json", cwd=proj)
    assert proc.returncode == 0, proc.stderr
    run_id = json.loads(proc.stdout)["run_id"]
    children = {r.tags["nbmlops.step"]: r for r in store.list_runs(parent_run_id=run_id).runs}

    proc = nbmlops("--store", store_url, "reproduce", children["use"].id, cwd=proj, timeout=30)
    assert proc.returncode == 2
    assert f"reproduce the pipeline run (nbmlops reproduce {run_id[:8]})" in one_line_error(proc)

    out = tmp_path / "notebooks"
    proc = nbmlops("--store", store_url, "reproduce", run_id, "-o", str(out), cwd=proj)
    assert proc.returncode == 0, proc.stderr + proc.stdout
    assert "compared: 1 metrics (rtol 1e-07, atol 0), 2 written files, 6 cells, 2 steps" \
        in proc.stdout
    assert proc.stdout.strip().endswith("reproducible: yes")
    assert sorted(p.name for p in out.iterdir()) == ["make.ipynb", "use.ipynb"]
    (new,) = [r for r in store.list_runs(source="pipeline").runs
              if r.tags.get(REPRODUCES_TAG) == run_id]
    assert new.parent_run_id is None and new.status == "finished"
    new_children = store.list_runs(parent_run_id=new.id).runs
    assert sorted(r.tags["nbmlops.step"] for r in new_children) == ["make", "use"]
    assert all("nbmlops.cached_from" not in r.tags for r in new_children)  # forced, not cached
    assert [r.metrics for r in new_children if r.tags["nbmlops.step"] == "use"] == [{"n": 12.0}]
    # the original pipeline run and its steps are as they were
    assert {r.tags["nbmlops.step"]: r for r in store.list_runs(parent_run_id=run_id).runs} \
        == children

    # a step notebook edited since: refused (pipelines run their source notebooks)
    make_notebook(proj / "use.ipynb", [("seed = 0\nfactor = 1", ["parameters"]), "n = 0"])
    before = snapshot(store)
    proc = nbmlops("--store", store_url, "reproduce", run_id, cwd=proj, timeout=30)
    assert proc.returncode == 1
    assert "1 change since it ran" in one_line_error(proc)
    (row,) = [ln for ln in proc.stdout.splitlines() if ln.startswith("notebook")]
    assert str(proj / "use.ipynb") in row and " use " in row
    assert snapshot(store) == before


@pytest.mark.parametrize(("new", "old", "rtol", "atol"), [
    (1.0, 1.0, 0.0, 0.0), (1.0 + 1e-8, 1.0, 1e-7, 0.0), (1.0 + 1e-6, 1.0, 1e-7, 0.0),
    (0.0, 1e-9, 1e-7, 0.0), (0.0, 1e-9, 1e-7, 1e-8), (-5.0, 5.0, 2.0, 0.0), (3.0, 0.0, 1.0, 2.9),
])
def test_metric_tolerance_has_numpy_isclose_semantics(
    new: float, old: float, rtol: float, atol: float
) -> None:
    expected = bool(np.isclose(new, old, rtol=rtol, atol=atol))
    assert metric_close(new, old, rtol=rtol, atol=atol) is expected
    assert not math.isnan(new)
