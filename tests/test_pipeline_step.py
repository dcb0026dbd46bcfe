"""The worker-side commands orchestrator tasks run, called directly (no orchestrator):
``nbmlops pipeline step PIPELINE STEP --parent-key KEY`` for each step in dependency order, then
``nbmlops pipeline finish``. Real kernels, a real SQLite store in tmp_path; the lineage must be
a local ``nbmlops pipeline run``'s (parent + one child per step, the same tags and cache keys)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from nbmlops.config import resolve_location
from nbmlops.pipeline.runner import pipeline_run_id
from nbmlops.store import Store

from ._scripts import nbmlops, one_line_error
from .conftest import make_notebook

EXAMPLES = Path(__file__).resolve().parents[1] / "example_notebooks"
ORDER = ["prepare", "train_a", "train_b", "evaluate", "pick_best"]
ORCHESTRATOR_TAGS = {"nbmlops.orchestrator", "nbmlops.orchestrator_run"}


def step(project: Path, definition: str, name: str, key: str, *extra: str,
         ok: bool = True) -> Any:
    proc = nbmlops("pipeline", "step", definition, name, "--parent-key", key, "--json", *extra,
                   cwd=project, timeout=300)
    if ok:
        assert proc.returncode == 0, proc.stderr
        return json.loads(proc.stdout)
    return proc


def finish(project: Path, definition: str, key: str) -> tuple[int, dict[str, Any], str]:
    proc = nbmlops("pipeline", "finish", definition, "--parent-key", key, "--json",
                   cwd=project, timeout=120)
    return proc.returncode, json.loads(proc.stdout), proc.stderr


def open_store(project: Path) -> Store:
    loc = resolve_location(None, start=project)
    return Store.open(loc.url, loc.artifact_root)


def children(store: Store, parent: str) -> list[Any]:
    return store.list_runs(parent_run_id=parent, descending=False, limit=1000).runs


def init(project: Path) -> None:
    proc = nbmlops("init", cwd=project)
    assert proc.returncode == 0, proc.stderr


@pytest.fixture
def example(tmp_path: Path) -> Path:
    project = tmp_path / "project"
    shutil.copytree(EXAMPLES / "pipeline", project,
                    ignore=shutil.ignore_patterns("data", "models", "reports", ".nbmlops"))
    init(project)
    return project


@pytest.mark.timeout(600)
def test_steps_one_by_one_record_a_local_runs_lineage(example: Path) -> None:
    key = "airflow-like/dag/run-1"
    for name in ORDER:
        out = step(example, "pipeline.yaml", name, key, "--orchestrator", "test")
        assert out["state"] == "ran", out
        assert out["attempt"] == 1 and out["pipeline_run_id"] == pipeline_run_id(key)
    code, summary, err = finish(example, "pipeline.yaml", key)
    assert code == 0, err
    assert summary["status"] == "finished"
    assert [(s["name"], s["state"]) for s in summary["steps"]] == [(n, "ran") for n in ORDER]
    assert (example / "models" / "best.joblib").is_file()

    parent_id = pipeline_run_id(key)
    with open_store(example) as store:
        parent = store.get_run(parent_id)
        assert (parent.source, parent.status, parent.name) == ("pipeline", "finished",
                                                               "wine-quality")
        assert parent.params == {"seed": "42", "label_noise": "0.0"}
        assert parent.tags["nbmlops.orchestrator_run"] == key
        assert parent.tags["nbmlops.orchestrator"] == "test"
        assert parent.tags["nbmlops.steps_ran"] == "5"
        assert {n: parent.tags[f"nbmlops.step_state.{n}"] for n in ORDER} == dict.fromkeys(
            ORDER, "ran")
        kids = children(store, parent_id)
        assert [k.tags["nbmlops.step"] for k in kids] == ORDER
        for kid in kids:
            assert kid.status == "finished" and kid.source == "pipeline"
            assert kid.name == f"wine-quality/{kid.tags['nbmlops.step']}"
            assert kid.tags["nbmlops.pipeline_run"] == parent_id
            assert kid.tags["nbmlops.attempt"] == "1"
            assert kid.tags["nbmlops.cache_key"]
            assert kid.cell_count and kid.cell_count > 0
        step_children = {k.tags["nbmlops.step"]: k for k in kids}

    # lineage crosses the step runs through the files one wrote and the next read
    proc = nbmlops("runs", "lineage", "models/best.joblib", "--json", cwd=example)
    assert proc.returncode == 0, proc.stderr
    graph = json.loads(proc.stdout)
    runs_in_lineage = {n["attrs"]["run_id"] for n in graph["nodes"] if n["type"] == "cell"}
    assert runs_in_lineage >= {step_children[n].id for n in ORDER}

    # a local run of the same pipeline computes the same cache keys: every step is cached from
    # the step runs above, and its parent run carries the same tags (but the orchestrator's)
    proc = nbmlops("pipeline", "run", "pipeline.yaml", "--json", "--no-progress", cwd=example,
                   timeout=300)
    assert proc.returncode == 0, proc.stderr
    local = json.loads(proc.stdout)
    assert {s["name"]: (s["state"], s["cached_from"]) for s in local["steps"]} == {
        n: ("cached", step_children[n].id) for n in ORDER}
    with open_store(example) as store:
        local_parent = store.get_run(local["run_id"])
        assert set(local_parent.tags) - {"nbmlops.steps_cached"} == (
            set(parent.tags) - ORCHESTRATOR_TAGS - {"nbmlops.steps_ran"})
        assert local_parent.params == parent.params

    # a second orchestrator run: the step is served from the cache, as a child of a new parent
    again = step(example, "pipeline.yaml", "prepare", "airflow-like/dag/run-2")
    assert again["state"] == "cached"
    assert again["cached_from"] == step_children["prepare"].id
    assert again["pipeline_run_id"] == pipeline_run_id("airflow-like/dag/run-2")
    with open_store(example) as store:
        (cached,) = children(store, pipeline_run_id("airflow-like/dag/run-2"))
        assert cached.tags["nbmlops.cached_from"] == step_children["prepare"].id
        assert cached.status == "finished"


@pytest.mark.timeout(600)
def test_a_tagged_notebook_runs_step_by_step(tmp_path: Path) -> None:
    project = tmp_path / "tagged"
    project.mkdir()
    shutil.copy(EXAMPLES / "pipeline_tagged.ipynb", project)
    init(project)
    key = "kfp-like-job-uuid"
    results = {name: step(project, "pipeline_tagged.ipynb", name, key) for name in ORDER}
    assert {n: r["state"] for n, r in results.items()} == dict.fromkeys(ORDER, "ran")
    code, summary, err = finish(project, "pipeline_tagged.ipynb", key)
    assert code == 0, err
    assert summary["status"] == "finished"
    # the variables went through files in the producing step's run directory
    runs_dir = resolve_location(None, start=project).runs_dir
    state = json.loads((runs_dir / pipeline_run_id(key) / "steps" / "evaluate.json").read_text())
    assert set(state["outputs"]["variables"]) == {"scores"}
    saved = Path(state["outputs"]["variables"]["scores"]["path"])
    assert saved.is_file() and saved.is_relative_to(runs_dir / results["evaluate"]["run_id"])
    # and a local run agrees on every cache key
    proc = nbmlops("pipeline", "run", "pipeline_tagged.ipynb", "--json", "--no-progress",
                   cwd=project, timeout=300)
    assert proc.returncode == 0, proc.stderr
    local = json.loads(proc.stdout)
    assert {s["name"]: s["cached_from"] for s in local["steps"]} == {
        n: r["run_id"] for n, r in results.items()}


FLAKY = """\
name: flaky
params:
  fail: true
steps:
  a:
    notebook: ok.ipynb
  b:
    notebook: boom.ipynb
    depends_on: [a]
    retries: 1
  c:
    notebook: ok.ipynb
    depends_on: [b]
  slow:
    notebook: slow.ipynb
    timeout: 2
"""


def flaky_project(root: Path) -> Path:
    root.mkdir(parents=True)
    (root / "pipeline.yaml").write_text(FLAKY)
    make_notebook(root / "ok.ipynb", ["x = 1"])
    make_notebook(root / "boom.ipynb", [
        ("fail = False", ["parameters"]),
        "if fail:\n    raise ValueError('boom')",
    ])
    make_notebook(root / "slow.ipynb", ["import time\ntime.sleep(60)"])
    init(root)
    return root


@pytest.mark.timeout(600)
def test_failed_and_timed_out_steps_fail_the_pipeline_run(tmp_path: Path) -> None:
    project = flaky_project(tmp_path / "flaky")
    key = "flaky/run"
    assert step(project, "pipeline.yaml", "a", key)["state"] == "ran"
    # the orchestrator retries b: each call is one attempt, numbered on
    for attempt in (1, 2):
        proc = step(project, "pipeline.yaml", "b", key, ok=False)
        assert proc.returncode == 1
        line = proc.stderr.strip().splitlines()[-1]
        assert line.startswith("Error: pipeline flaky failed: step b, cell 1: ValueError: boom")
        assert json.loads(proc.stdout)["attempt"] == attempt
    # c cannot start: the orchestrator would not start it either
    proc = step(project, "pipeline.yaml", "c", key, ok=False)
    assert proc.returncode == 2
    assert "step c cannot run: step b has not succeeded (it failed)" in one_line_error(proc)
    # the step's timeout is enforced by nbmlops itself
    proc = step(project, "pipeline.yaml", "slow", key, ok=False)
    assert proc.returncode == 1
    assert "timed out after 2 s" in proc.stderr.strip().splitlines()[-1]

    code, summary, err = finish(project, "pipeline.yaml", key)
    assert code == 1
    assert err.strip().splitlines()[-1].startswith("Error: pipeline flaky failed: step b: ")
    assert summary["status"] == "failed"
    states = {s["name"]: s["state"] for s in summary["steps"]}
    assert states == {"a": "ran", "b": "failed", "c": "skipped", "slow": "failed"}
    assert {s["name"]: s["attempts"] for s in summary["steps"]}["b"] == 2
    with open_store(project) as store:
        parent = store.get_run(pipeline_run_id(key))
        assert parent.status == "failed"
        assert {n: parent.tags[f"nbmlops.step_state.{n}"] for n in states} == states
        assert parent.tags["nbmlops.steps_failed"] == "2"
        assert parent.tags["nbmlops.steps_skipped"] == "1"
        b_runs = [k for k in children(store, parent.id) if k.tags["nbmlops.step"] == "b"]
        assert [(k.status, k.tags["nbmlops.attempt"]) for k in b_runs] == [
            ("failed", "1"), ("failed", "2")]
        assert "ValueError: boom" in b_runs[-1].tags["nbmlops.error"]


def test_worker_command_errors_are_one_line(tmp_path: Path) -> None:
    project = flaky_project(tmp_path / "flaky")

    def error(*args: str) -> tuple[int, str]:
        proc = nbmlops("pipeline", *args, cwd=project)
        return proc.returncode, one_line_error(proc)

    assert error("step", "pipeline.yaml", "bb", "--parent-key", "k") == (
        2, "Error: pipeline flaky has no step 'bb' (did you mean 'b'?); its steps: a, b, c, slow")
    code, msg = error("step", "pipeline.yaml", "a", "--parent-key", "k", "--params-json", "[1]")
    assert (code, msg) == (2, "Error: --params-json must be a JSON object of NAME: VALUE")
    code, msg = error("step", "pipeline.yaml", "a", "--parent-key", "k",
                      "--params-json", '{"fial": 1}')
    assert code == 2 and msg.startswith("Error: pipeline flaky has no parameter 'fial' "
                                        "(did you mean 'fail'?)")
    code, msg = error("step", "pipeline.yaml", "a", "--parent-key", " ")
    assert (code, msg) == (2, "Error: the parent key of a pipeline run must not be empty")
    # a worker that does not see the project's store does not start an empty one
    shutil.rmtree(project / ".nbmlops")
    code, msg = error("step", "pipeline.yaml", "a", "--parent-key", "k")
    assert code == 3 and msg.startswith(f"Error: no nbmlops store at {project / '.nbmlops'}")
    assert not (project / ".nbmlops").exists()


def test_worker_commands_are_hidden(tmp_path: Path) -> None:
    proc = nbmlops("pipeline", "--help", cwd=tmp_path)
    assert proc.returncode == 0
    commands = {line.split()[0] for line in proc.stdout.split("Commands:")[1].splitlines()
                if line.startswith("  ")}
    assert commands >= {"run", "validate", "show"} and not commands & {"step", "finish"}
    proc = nbmlops("pipeline", "step", "--help", cwd=tmp_path)
    assert proc.returncode == 0 and "--parent-key" in proc.stdout
