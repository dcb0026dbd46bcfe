"""Notebook pipelines end to end: ``nbmlops pipeline run|validate|show`` (the installed script in
a subprocess) and :class:`~nbmlops.pipeline.runner.PipelineRunner` in-process, on real kernels and
a real SQLite store in tmp_path. Step notebooks are tiny: every kernel costs 1-2 s."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import nbformat
import psutil
import pytest

from nbmlops.config import resolve_location
from nbmlops.pipeline.load import load_pipeline
from nbmlops.pipeline.runner import PipelineResult, PipelineRunner
from nbmlops.store import Store

from ._scripts import clean_env, nbmlops, script
from ._scripts import one_line_error as _one_line_error
from .conftest import make_notebook

EXAMPLE = Path(__file__).resolve().parents[1] / "example_notebooks" / "pipeline"


# -- helpers ------------------------------------------------------------------------------------


def cli(*args: str, cwd: Path, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return nbmlops(*args, cwd=cwd, timeout=timeout)


def one_line_error(proc: subprocess.CompletedProcess[str]) -> str:
    """All of stderr (progress is off): one ``Error:`` line, no traceback; without ``Error: ``."""
    return _one_line_error(proc)[len("Error: "):]


def step_error(proc: subprocess.CompletedProcess[str]) -> str:
    """The ``Error:`` line of a failed step: the last line of stderr, the only ``Error:`` line,
    no traceback. papermill logs some failures itself (``ERROR papermill: Kernel died ...``)
    through the CLI's logging set-up; those lines are tolerated, nothing else."""
    assert "Traceback" not in proc.stderr, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert lines and lines[-1].startswith("Error: "), proc.stderr
    assert all(ln.startswith("ERROR papermill: ") for ln in lines[:-1]), proc.stderr
    return lines[-1][len("Error: "):]


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def run_pipeline(definition: Path, store_url: str, **kw: Any) -> PipelineResult:
    kw.setdefault("jobs", 2)
    kw.setdefault("retry_delay", 0.1)
    return PipelineRunner(load_pipeline(definition), store_url=store_url, **kw).run()


def states(result: PipelineResult) -> dict[str, str]:
    return {name: r.state for name, r in result.steps.items()}


def all_runs(store: Store) -> list[Any]:
    return store.list_runs(limit=10_000).runs


def children(store: Store, parent: str) -> list[Any]:
    return store.list_runs(parent_run_id=parent, descending=False, limit=1000).runs


def by_step(runs: list[Any]) -> dict[str, Any]:
    return {r.tags["nbmlops.step"]: r for r in runs}


def total_cells(store: Store) -> int:
    return sum(r.cell_count or 0 for r in all_runs(store))


# -- a diamond of tiny notebooks: a -> (b, c) -> d, talking through files ------------------------

DIAMOND = """\
name: diamond
params:
  seed: 1
steps:
  a:
    notebook: a.ipynb
    outputs: [data/a.txt]
  b:
    notebook: b.ipynb
    depends_on: [a]
    params: {k: 2}
    inputs: [data/a.txt]
    outputs: [data/b.txt]
  c:
    notebook: c.ipynb
    depends_on: [a]
    inputs: [data/a.txt]
    outputs: [data/c.txt]
  d:
    notebook: d.ipynb
    depends_on: [b, c]
    inputs: [data/b.txt, data/c.txt, config.txt]
    outputs: [data/d.txt]
"""

READ = "from pathlib import Path\n"


def c_notebook(root: Path, plus: int) -> None:
    make_notebook(root / "c.ipynb", [
        READ + f"a = int(Path('data/a.txt').read_text())\nPath('data/c.txt').write_text(str(a + {plus}))",
    ])


@pytest.fixture
def diamond(tmp_path: Path) -> Path:
    root = tmp_path / "proj"
    make_notebook(root / "a.ipynb", [
        ("seed = 0", ["parameters"]),
        READ + "Path('data').mkdir(exist_ok=True)\nPath('data/a.txt').write_text(str(seed))",
    ])
    make_notebook(root / "b.ipynb", [
        ("k = 1", ["parameters"]),
        READ + "a = int(Path('data/a.txt').read_text())\nPath('data/b.txt').write_text(str(a * k))",
    ])
    c_notebook(root, 10)
    make_notebook(root / "d.ipynb", [
        READ + "b = int(Path('data/b.txt').read_text())\nc = int(Path('data/c.txt').read_text())",
        "Path('data/d.txt').write_text(str(b + c + len(Path('config.txt').read_text())))",
    ])
    write(root / "config.txt", "x")
    return write(root / "pipeline.yaml", DIAMOND)


@pytest.mark.kernel
def test_cli_runs_a_diamond_then_reuses_every_step(diamond: Path) -> None:
    """No --store: the project's own .nbmlops/ (created next to pipeline.yaml) holds it all."""
    root = diamond.parent
    proc = cli("pipeline", "run", "pipeline.yaml", "--jobs", "2", cwd=root)
    assert proc.returncode == 0, proc.stderr
    assert (root / "data" / "d.txt").read_text() == "14"  # 1*2 + (1+10) + len("x")

    # summary table on stdout; one progress line per change on stderr (not a terminal)
    table = proc.stdout.strip().splitlines()
    assert table[0].split() == ["step", "state", "time", "tries", "run", "executed", "notebook",
                                "detail"]
    assert [row.split()[:2] for row in table[1:5]] == [[s, "ran"] for s in "abcd"]
    assert table[-1].startswith("pipeline diamond finished in ") and ": 4 ran (run " in table[-1]
    for step in "abcd":
        assert f"] {step}: started" in proc.stderr and f"] {step}: ran in " in proc.stderr

    location = resolve_location(None, start=root)
    assert location.store_dir == root / ".nbmlops"
    with Store(location) as store:
        (parent,) = [r for r in all_runs(store) if r.parent_run_id is None]
        assert (parent.source, parent.status, parent.name) == ("pipeline", "finished", "diamond")
        assert parent.tags["nbmlops.steps_ran"] == "4"
        assert parent.id[:8] in table[-1]
        kids = by_step(children(store, parent.id))
        assert sorted(kids) == list("abcd")
        for step, run in kids.items():
            assert (run.source, run.status, run.name) == ("pipeline", "finished", f"diamond/{step}")
            assert run.tags["nbmlops.pipeline_run"] == parent.id
            assert run.tags["nbmlops.attempt"] == "1"
            assert run.cell_count and run.cell_count >= 1
            executed = root / ".nbmlops" / "runs" / run.id / f"{step}.ipynb"
            assert nbformat.read(executed, as_version=4).metadata["nbmlops"]["run_id"] == run.id
            assert f".nbmlops/runs/{run.id}/{step}.ipynb" in proc.stdout
        assert kids["a"].params == {"seed": "1"} and kids["b"].params["k"] == "2"
        first = {step: run.id for step, run in kids.items()}
        cells = total_cells(store)

    proc = cli("pipeline", "run", "pipeline.yaml", "--json", cwd=root)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert set(out) == {"run_id", "pipeline", "status", "duration", "steps"}
    assert (out["pipeline"], out["status"]) == ("diamond", "finished")
    assert [s["name"] for s in out["steps"]] == list("abcd")
    for s in out["steps"]:
        assert set(s) == {"name", "state", "run_id", "attempts", "duration", "error",
                          "failed_cell_index", "output_notebook", "cached_from", "gate"}
        assert (s["state"], s["cached_from"], s["error"]) == ("cached", first[s["name"]], None)
    with Store(location) as store:
        kids = by_step(children(store, out["run_id"]))
        assert {step: run.tags["nbmlops.cached_from"] for step, run in kids.items()} == first
        assert total_cells(store) == cells  # no kernel ran a cell
        assert len(all_runs(store)) == 10


@pytest.mark.kernel
def test_cache_reruns_only_what_changed(diamond: Path, store_url: str, store: Store) -> None:
    root = diamond.parent
    d_txt = root / "data" / "d.txt"
    first = run_pipeline(diamond, store_url)
    assert states(first) == dict.fromkeys("abcd", "ran")
    assert first.status == "finished" and d_txt.read_text() == "14"
    runs_dir = resolve_location(store_url).runs_dir
    for name, step in first.steps.items():
        assert step.output_notebook == runs_dir / str(step.run_id) / f"{name}.ipynb"
        assert step.output_notebook.is_file() and step.attempts == 1
    parent = store.get_run(first.run_id)
    assert (parent.source, parent.status, parent.parent_run_id) == ("pipeline", "finished", None)
    assert {s: r.id for s, r in by_step(children(store, first.run_id)).items()} == {
        s: r.run_id for s, r in first.steps.items()}

    # nothing changed: every step is reused, no kernel starts
    cells = total_cells(store)
    again = run_pipeline(diamond, store_url)  # its speed: benchmarks/pipeline.py (b)
    assert states(again) == dict.fromkeys("abcd", "cached")
    kids = by_step(children(store, again.run_id))
    for name, run in kids.items():
        assert run.tags["nbmlops.cached_from"] == first.steps[name].run_id
        assert run.status == "finished" and not run.cell_count
    assert total_cells(store) == cells

    # a step's param: that step and what depends on it
    diamond.write_text(DIAMOND.replace("k: 2", "k: 3"))
    r = run_pipeline(diamond, store_url)
    assert states(r) == {"a": "cached", "b": "ran", "c": "cached", "d": "ran"}
    assert d_txt.read_text() == "15"

    # a notebook's code (and so its output)
    c_notebook(root, 20)
    r = run_pipeline(diamond, store_url)
    assert states(r) == {"a": "cached", "b": "cached", "c": "ran", "d": "ran"}
    assert d_txt.read_text() == "25"

    # an input file's content
    (root / "config.txt").write_text("xyz")
    r = run_pipeline(diamond, store_url)
    assert states(r) == {"a": "cached", "b": "cached", "c": "cached", "d": "ran"}
    assert d_txt.read_text() == "27"

    # a declared output deleted: its step re-runs; the output comes back the same, so the step
    # after it is still reused
    (root / "data" / "c.txt").unlink()
    r = run_pipeline(diamond, store_url)
    assert states(r) == {"a": "cached", "b": "cached", "c": "ran", "d": "cached"}
    assert (root / "data" / "c.txt").read_text() == "21"

    # --force STEP (same output: downstream reused); --force-all
    r = run_pipeline(diamond, store_url, force=["b"])
    assert states(r) == {"a": "cached", "b": "ran", "c": "cached", "d": "cached"}
    r = run_pipeline(diamond, store_url, force=True)
    assert states(r) == dict.fromkeys("abcd", "ran")
    assert r.status == "finished" and d_txt.read_text() == "27"


@pytest.mark.kernel
def test_independent_steps_run_in_parallel(tmp_path: Path, store_url: str, store: Store) -> None:
    sleep: list[str | tuple[str, list[str]]] = ["import time\ntime.sleep(3)"]
    make_notebook(tmp_path / "s1.ipynb", sleep)
    make_notebook(tmp_path / "s2.ipynb", sleep)
    definition = write(tmp_path / "pipeline.yaml", "name: par\nsteps:\n"
                       "  s1: {notebook: s1.ipynb}\n  s2: {notebook: s2.ipynb}\n")
    result = run_pipeline(definition, store_url, jobs=2)
    assert states(result) == {"s1": "ran", "s2": "ran"}
    s1, s2 = by_step(children(store, result.run_id)).values()
    assert s1.end_time is not None and s2.end_time is not None
    overlap = min(s1.end_time, s2.end_time) - max(s1.start_time, s2.start_time)
    assert overlap > 1.0, (s1, s2)


@pytest.mark.kernel
def test_pipeline_params_and_uncached_steps(tmp_path: Path, store_url: str, store: Store) -> None:
    make_notebook(tmp_path / "x.ipynb", [
        ("seed = 0\nlr = 0.1", ["parameters"]),
        "open('x.txt', 'w').write(repr((seed, lr)))",
    ])
    make_notebook(tmp_path / "y.ipynb", ["open('y.txt', 'a').write('ran\\n')"])
    write(tmp_path / "pipeline.yaml",
          "name: params\nsteps:\n  x: {notebook: x.ipynb}\n  y: {notebook: y.ipynb, cache: false}\n")
    args = ("--store", store_url, "pipeline", "run", "pipeline.yaml", "-p", "seed", "5",
            "-p", "lr", "1", "--json")
    proc = cli(*args, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert [s["state"] for s in out["steps"]] == ["ran", "ran"]
    assert (tmp_path / "x.txt").read_text() == "(5, 1.0)"  # CLI strings take the declared types
    kids = by_step(children(store, out["run_id"]))
    assert kids["x"].params == {"seed": "5", "lr": "1.0"}
    assert kids["y"].params == {}  # y declares neither
    assert store.get_run(out["run_id"]).params == {"seed": "5", "lr": "1"}

    proc = cli(*args, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert [s["state"] for s in out["steps"]] == ["cached", "ran"]  # y: cache: false
    assert (tmp_path / "y.txt").read_text() == "ran\nran\n"

    before = len(all_runs(store))
    proc = cli("--store", store_url, "pipeline", "run", "pipeline.yaml", "-p", "sed", "5",
               cwd=tmp_path)
    assert proc.returncode == 2
    assert one_line_error(proc) == (
        "pipeline params has no parameter 'sed' (did you mean 'seed'?); its parameters: lr, seed"
    )
    assert len(all_runs(store)) == before


# -- definition errors: exit 2, one line, no run at all -------------------------------------------

BAD_DEFINITIONS = {
    "yaml-syntax": (
        "name: p\nsteps:\n  a:\n    notebook: [a.ipynb\n",
        "pipeline.yaml:5:1: YAML syntax error: expected ',' or ']'",
    ),
    "unknown-key": (
        "name: p\nsteps:\n  a: {notebook: a.ipynb}\n  b:\n    notebook: b.ipynb\n    depends: [a]\n",
        "pipeline.yaml:6:5: steps.b: unknown key 'depends' (did you mean 'depends_on'?)",
    ),
    "missing-notebook": (
        "name: p\nsteps:\n  a:\n    notebook: missing.ipynb\n",
        "pipeline.yaml:4:15: steps.a.notebook: no such notebook 'missing.ipynb'",
    ),
    "cycle": (
        "name: p\nsteps:\n  a: {notebook: a.ipynb, depends_on: [b]}\n"
        "  b: {notebook: b.ipynb, depends_on: [a]}\n",
        "cycle: a -> b -> a",
    ),
    "undeclared-step-param": (
        "name: p\nsteps:\n  a: {notebook: a.ipynb, params: {sed: 2}}\n",
        "step a (a.ipynb) has no parameter 'sed' (did you mean 'seed'?); its parameters: seed",
    ),
    "params-without-parameters-cell": (
        "name: p\nsteps:\n  b: {notebook: b.ipynb, params: {seed: 2}}\n",
        "step b (b.ipynb) has no cell tagged 'parameters', so it takes no parameters",
    ),
    "bad-param-type": (
        "name: p\nsteps:\n  a: {notebook: a.ipynb, params: {seed: [1]}}\n",
        "parameter 'seed': [1] is a list, the notebook declares an int",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_DEFINITIONS))
def test_definition_errors(tmp_path: Path, store_url: str, store: Store, case: str) -> None:
    text, message = BAD_DEFINITIONS[case]
    make_notebook(tmp_path / "a.ipynb", [("seed = 1", ["parameters"]), "x = seed"])
    make_notebook(tmp_path / "b.ipynb", ["y = 2"])
    write(tmp_path / "pipeline.yaml", text)
    proc = cli("--store", store_url, "pipeline", "run", "pipeline.yaml", "--no-progress",
               cwd=tmp_path, timeout=60)
    assert proc.returncode == 2, proc.stderr
    error = one_line_error(proc)
    assert message in error
    assert error.startswith("pipeline.yaml:"), error  # every definition error has a position
    if "param" in case:  # blamed on the step's params in the yaml (line 3), not just the step
        assert error.startswith("pipeline.yaml:3:"), error
    assert all_runs(store) == []
    assert not (Path(store_url[len("sqlite:///"):]).parent / "runs").exists()


# -- step failures: exit 1 naming step, cell and error; the failed runs recorded -----------------


@pytest.fixture
def failing(tmp_path: Path) -> Path:
    """``bad`` raises in its third cell (index 2 as written; papermill injects a cell before
    it), ``after_bad`` depends on it, ``other`` does not."""
    make_notebook(tmp_path / "bad.ipynb", [
        ("n = 1", ["parameters"]), "y = n", "raise ValueError(f'first line\\nlast line {y}')",
    ])
    make_notebook(tmp_path / "ok.ipynb", ["z = 1"])
    return write(tmp_path / "pipeline.yaml", """\
name: failing
steps:
  bad: {notebook: bad.ipynb, params: {n: 7}}
  after_bad: {notebook: ok.ipynb, depends_on: [bad]}
  other: {notebook: ok.ipynb}
""")


def pipeline_runs(store: Store, parent_id: str) -> tuple[Any, dict[str, Any]]:
    """The parent run and its step runs; asserting that the store holds nothing else."""
    runs = all_runs(store)
    kids = children(store, parent_id)
    assert {r.id for r in runs} == {parent_id} | {k.id for k in kids}
    return store.get_run(parent_id), by_step(kids)


def run_id_in(message: str, store: Store) -> str:
    """The parent run of a failed CLI pipeline (the message names a step run)."""
    short = message.rsplit("(run ", 1)[1].split()[0]
    return str(store.get_run(store.resolve_run_id(short)).parent_run_id)


@pytest.mark.kernel
def test_failing_step_fails_fast(failing: Path, store_url: str, store: Store) -> None:
    proc = cli("--store", store_url, "pipeline", "run", str(failing), "--jobs", "1",
               "--no-progress", cwd=failing.parent)
    assert proc.returncode == 1
    message = one_line_error(proc)
    assert message.startswith(
        "pipeline failing failed: step bad, cell 2: ValueError: last line 7 (run "
    ), message
    parent, kids = pipeline_runs(store, run_id_in(message, store))
    assert parent.status == "failed" and parent.tags["nbmlops.steps_failed"] == "1"
    assert list(kids) == ["bad"]  # after_bad and other never started: no run
    assert kids["bad"].status == "failed"
    cells = store.cell_executions(kids["bad"].id)
    assert [c.status for c in cells] == ["ok", "ok", "ok", "error"]
    assert cells[-1].error_name == "ValueError"
    rows = {line.split()[0]: line.split()[1] for line in proc.stdout.splitlines()[1:4]}
    assert rows == {"bad": "failed", "after_bad": "skipped", "other": "skipped"}
    # the parent run knows every step's state, also of those without a run
    assert {k: v for k, v in parent.tags.items() if k.startswith("nbmlops.step_state.")} == {
        "nbmlops.step_state.bad": "failed", "nbmlops.step_state.after_bad": "skipped",
        "nbmlops.step_state.other": "skipped"}
    assert kids["bad"].tags["nbmlops.error"] == "ValueError: last line 7"
    assert len(kids["bad"].tags["nbmlops.cache_key"]) == 64  # own tags are not redacted


@pytest.mark.kernel
def test_failing_step_with_keep_going(failing: Path, store_url: str, store: Store) -> None:
    result = run_pipeline(failing, store_url, jobs=1, keep_going=True)
    assert states(result) == {"bad": "failed", "after_bad": "skipped", "other": "ran"}
    assert result.status == "failed" and result.failed_step is not None
    assert result.failed_step.error == "ValueError: last line 7"
    assert result.failed_step.failed_cell_index == 2
    parent, kids = pipeline_runs(store, result.run_id)
    assert parent.status == "failed"
    assert {s: r.status for s, r in kids.items()} == {"bad": "failed", "other": "finished"}


@pytest.mark.kernel
@pytest.mark.parametrize("timeout", ["3", "0.1"], ids=["in-a-cell", "before-the-kernel-started"])
def test_step_timeout(tmp_path: Path, store_url: str, store: Store, timeout: str) -> None:
    make_notebook(tmp_path / "slow.ipynb", ["x = 1", "import time\ntime.sleep(60)", "y = 2"])
    write(tmp_path / "pipeline.yaml",
          f"name: slow\nsteps:\n  slow: {{notebook: slow.ipynb, timeout: {timeout}}}\n")
    t0 = time.monotonic()
    proc = cli("--store", store_url, "pipeline", "run", "pipeline.yaml", "--no-progress",
               cwd=tmp_path)
    # bounded by the timeout, the 5 s grace and start-up, far below the cell's 60 s sleep
    # (15 s held on an idle machine; a loaded 2-core one took 25 s)
    assert time.monotonic() - t0 < 45
    assert proc.returncode == 1
    message = step_error(proc)
    where = ", cell 1" if timeout == "3" else ""
    assert message.startswith(
        f"pipeline slow failed: step slow{where}: timed out after {timeout} s (timeout: {timeout})"
    ), message
    short = message.rsplit("(run ", 1)[1].split()[0]
    (parent,) = [r for r in all_runs(store) if r.parent_run_id is None]
    parent, kids = pipeline_runs(store, parent.id)
    assert parent.status == "failed" and kids["slow"].status == "failed"
    assert kids["slow"].id.startswith(short)
    # no cell may have failed (timeout 0.1: killed before the first), the reason is recorded
    assert kids["slow"].tags["nbmlops.error"].startswith(f"timed out after {timeout} s")
    cells = [c.status for c in store.cell_executions(kids["slow"].id)]
    assert cells == (["ok", "error"] if timeout == "3" else [])


@pytest.mark.kernel
@pytest.mark.parametrize("grace", ["1", "soon"], ids=["set", "not-a-number"])
def test_a_cell_that_swallows_the_interrupt_is_killed_after_the_grace(
    tmp_path: Path, store: Store, store_url: str, grace: str
) -> None:
    """SIGTERM cancels: the kernel is interrupted, then killed NBMLOPS_KILL_GRACE s later."""
    make_notebook(tmp_path / "stubborn.ipynb", [
        "import pathlib, time\npathlib.Path('started').touch()\nwhile True:\n    try:\n"
        "        time.sleep(60)\n    except KeyboardInterrupt:\n        pass",
    ])
    write(tmp_path / "pipeline.yaml", "name: stubborn\nsteps:\n  s: {notebook: stubborn.ipynb}\n")
    proc = subprocess.Popen(
        [script("nbmlops"), "--store", store_url, "pipeline", "run", "pipeline.yaml", "--no-progress"],
        cwd=tmp_path, env=clean_env(NBMLOPS_KILL_GRACE=grace), stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True,
    )
    try:
        deadline = time.monotonic() + 90
        while not (tmp_path / "started").exists():
            assert proc.poll() is None and time.monotonic() < deadline, "the cell never started"
            time.sleep(0.1)
        t0 = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        _out, err = proc.communicate(timeout=60)
        took = time.monotonic() - t0
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err
    if grace == "soon":  # said once, and the 5 s default used
        assert err.count("NBMLOPS_KILL_GRACE='soon' is not a number of seconds >= 0; using 5.0 s") == 1
        assert took >= 5
    else:
        assert "NBMLOPS_KILL_GRACE" not in err and took >= 1
    (parent,) = [r for r in all_runs(store) if r.parent_run_id is None]
    _parent, kids = pipeline_runs(store, parent.id)
    assert parent.status == "cancelled" and kids["s"].status == "cancelled"


@pytest.mark.kernel
def test_kernel_that_dies(tmp_path: Path, store_url: str, store: Store) -> None:
    make_notebook(tmp_path / "die.ipynb", ["a = 1", "import os\nos._exit(1)", "b = 2"])
    write(tmp_path / "pipeline.yaml", "name: die\nsteps:\n  die: {notebook: die.ipynb}\n")
    proc = cli("--store", store_url, "pipeline", "run", "pipeline.yaml", "--no-progress",
               cwd=tmp_path)
    assert proc.returncode == 1
    message = step_error(proc)
    assert message.startswith(
        "pipeline die failed: step die, cell 1: kernel died while running the cell"
    ), message
    if "kernel log: " in message:  # named only when it says something
        assert Path(message.split("kernel log: ", 1)[1].split(")")[0]).is_file()
    parent, kids = pipeline_runs(store, run_id_in(message, store))
    assert parent.status == "failed" and kids["die"].status == "failed"
    cells = store.cell_executions(kids["die"].id)
    assert [(c.status, c.error_name) for c in cells] == [("ok", None), ("error", "DeadKernelError")]


@pytest.mark.kernel
def test_retry_after_a_failed_attempt(tmp_path: Path, store_url: str, store: Store) -> None:
    make_notebook(tmp_path / "flaky.ipynb", [
        "from pathlib import Path\np = Path('count.txt')\nn = int(p.read_text()) if p.exists() else 0\n"
        "p.write_text(str(n + 1))",
        "if n == 0:\n    raise RuntimeError('first attempt fails')",
    ])
    make_notebook(tmp_path / "after.ipynb", ["x = 1"])
    definition = write(tmp_path / "pipeline.yaml", """\
name: flaky
steps:
  flaky: {notebook: flaky.ipynb, retries: 2}
  after: {notebook: after.ipynb, depends_on: [flaky]}
""")
    events: list[tuple[str, str, str]] = []
    result = run_pipeline(definition, store_url, on_event=lambda e, r: events.append(
        (e, r.name, r.state)))
    # the step after waits for the retry instead of being skipped by the first failure
    assert states(result) == {"flaky": "ran", "after": "ran"}
    assert result.status == "finished" and result.steps["flaky"].attempts == 2
    assert ("retry", "flaky", "running") in events
    assert (tmp_path / "count.txt").read_text() == "2"
    parent, kids = pipeline_runs(store, result.run_id)
    flaky = [r for r in children(store, result.run_id) if r.tags["nbmlops.step"] == "flaky"]
    assert [(r.tags["nbmlops.attempt"], r.status) for r in flaky] == [("1", "failed"),
                                                                        ("2", "finished")]
    assert result.steps["flaky"].run_id == flaky[1].id
    assert parent.status == "finished"


@pytest.mark.kernel
def test_kernel_that_never_starts(
    tmp_path: Path, store_url: str, store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A kernelspec whose kernel exits at once: each attempt is a failed run, not a crash of
    the runner (nor a run recorded as finished)."""
    spec = write(tmp_path / "jupyter" / "kernels" / "broken" / "kernel.json", json.dumps(
        {"argv": ["/bin/false", "{connection_file}"], "display_name": "broken",
         "language": "python"}))
    monkeypatch.setenv("JUPYTER_PATH", str(spec.parents[2]))
    make_notebook(tmp_path / "x.ipynb", ["x = 1"])
    definition = write(tmp_path / "pipeline.yaml",
                       "name: broken\nsteps:\n  x: {notebook: x.ipynb, retries: 1}\n")
    result = run_pipeline(definition, store_url, kernel_name="broken")
    assert result.status == "failed" and states(result) == {"x": "failed"}
    assert result.steps["x"].attempts == 2
    assert result.steps["x"].error == "RuntimeError: Kernel died before replying to kernel_info"
    parent, kids = pipeline_runs(store, result.run_id)
    attempts = children(store, result.run_id)
    assert [r.status for r in attempts] == ["failed", "failed"] and parent.status == "failed"


# -- cancellation ------------------------------------------------------------------------------


@pytest.mark.kernel
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_cancel_stops_kernels_and_records_cancelled(
    tmp_path: Path, store_url: str, store: Store, sig: signal.Signals
) -> None:
    make_notebook(tmp_path / "long.ipynb", [
        "import os\nfrom pathlib import Path\nPath('kernel.pid').write_text(str(os.getpid()))",
        "import time\ntime.sleep(120)",
    ])
    make_notebook(tmp_path / "next.ipynb", ["x = 1"])
    write(tmp_path / "pipeline.yaml", "name: long\nsteps:\n  long: {notebook: long.ipynb}\n"
          "  next: {notebook: next.ipynb, depends_on: [long]}\n")
    proc = subprocess.Popen(
        [script("nbmlops"), "--store", store_url, "pipeline", "run", "pipeline.yaml", "--json"],
        cwd=tmp_path, env=clean_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        start_new_session=True,  # its own process group, like a shell job that gets Ctrl-C
    )
    try:
        deadline = time.monotonic() + 60
        step_run = None
        while time.monotonic() < deadline and proc.poll() is None:
            # (a step run gets its nbmlops.* tags when it ends: find it by parent and name)
            running = [r for r in all_runs(store) if r.parent_run_id is not None
                       and r.name == "long/long" and r.status == "running"]
            if running and (tmp_path / "kernel.pid").exists():
                step_run = running[0]
                break
            time.sleep(0.2)
        assert step_run is not None, "the step never started"
        kernel_pid = int((tmp_path / "kernel.pid").read_text())
        os.killpg(proc.pid, sig)
        out, err = proc.communicate(timeout=15)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 130, err
    result = json.loads(out)
    assert result["status"] == "cancelled"
    assert [s["state"] for s in result["steps"]] == ["cancelled", "cancelled"]
    assert err.strip().splitlines()[-1].startswith("Error: pipeline long cancelled (run ")
    parent, kids = pipeline_runs(store, str(step_run.parent_run_id))
    assert parent.status == "cancelled"
    assert list(kids) == ["long"] and kids["long"].status == "cancelled"
    # the runner interrupted the kernel (the cell ended in KeyboardInterrupt), and it is gone
    cells = store.cell_executions(kids["long"].id)
    assert [(c.status, c.error_name) for c in cells] == [("ok", None), ("error", "KeyboardInterrupt")]

    def gone(pid: int) -> bool:
        try:
            return bool(psutil.Process(pid).status() == psutil.STATUS_ZOMBIE)
        except psutil.NoSuchProcess:
            return True

    deadline = time.monotonic() + 5
    while not gone(kernel_pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert gone(kernel_pid)


# -- the tagged-notebook form --------------------------------------------------------------------


@pytest.mark.kernel
def test_tagged_notebook_pipeline(tmp_path: Path, store_url: str, store: Store) -> None:
    nb = make_notebook(tmp_path / "flow.ipynb", [
        ("import pandas as pd", ["imports"]),
        ("factor = 2", ["parameters"]),
        ("df = pd.DataFrame({'x': [1, 2, 3]})\nn = 10", ["step:a"]),
        ("total = int(df['x'].sum()) * factor", ["step:b", "after:a"]),
        ("m = n + 1", ["step:c", "after:a"]),
        ("result = total + m\nwith open('result.txt', 'w') as f:\n    f.write(str(result))",
         ["step:d", "after:b", "after:c"]),
    ])
    result = run_pipeline(nb, store_url)
    assert states(result) == dict.fromkeys("abcd", "ran")
    assert (tmp_path / "result.txt").read_text() == "23"  # (1+2+3)*2 + 10+1
    steps = result.steps
    assert set(steps["a"].outputs["variables"]) == {"df", "n"}
    assert steps["a"].outputs["variables"]["df"]["path"].endswith("df.parquet")

    # lineage: result.txt <- d's cell <- the saved total/m <- b's and c's cells <- the saved
    # df/n <- a's cell
    graph = store.lineage(str(tmp_path / "result.txt"))
    runs_in = {n.attrs.get("run_id") for n in graph.nodes if n.type == "cell"}
    assert {steps[s].run_id for s in "abcd"} <= runs_in
    labels = " | ".join(n.label for n in graph.nodes)
    for saved in ("df.parquet", "n.pkl", "total.pkl", "m.pkl"):
        assert saved in labels
    a_cells = [n for n in graph.nodes if n.type == "cell" and n.attrs.get("run_id") == steps["a"].run_id]
    assert any("df = pd.DataFrame" in n.label for n in a_cells)

    cells = total_cells(store)
    again = run_pipeline(nb, store_url)
    assert states(again) == dict.fromkeys("abcd", "cached")
    assert total_cells(store) == cells

    # d declares no outputs (the tagged form cannot), but capture saw it write result.txt:
    # deleting the file makes d run again and write it back; nothing else re-runs
    assert steps["d"].outputs["files"] == {"result.txt": again.steps["d"].outputs["files"]["result.txt"]}
    (tmp_path / "result.txt").unlink()
    third = run_pipeline(nb, store_url)
    assert states(third) == {"a": "cached", "b": "cached", "c": "cached", "d": "ran"}
    assert (tmp_path / "result.txt").read_text() == "23"


def test_tagged_notebook_after_a_missing_step(tmp_path: Path, store_url: str, store: Store) -> None:
    make_notebook(tmp_path / "flow.ipynb", [("x = 1", ["step:a"]), ("y = x", ["step:b", "after:z"])])
    proc = cli("--store", store_url, "pipeline", "run", "flow.ipynb", "--no-progress",
               cwd=tmp_path, timeout=60)
    assert proc.returncode == 2
    assert one_line_error(proc) == "flow.ipynb: cell 1: after:z names no step (steps: a, b)"
    assert all_runs(store) == []


# -- validate and show ---------------------------------------------------------------------------


@pytest.fixture
def example(tmp_path: Path) -> Path:
    shutil.copytree(EXAMPLE, tmp_path / "pipeline")
    return tmp_path / "pipeline" / "pipeline.yaml"


def test_validate(example: Path) -> None:
    proc = cli("pipeline", "validate", str(example), cwd=example.parent, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == (
        f"{example}: pipeline wine-quality is valid: 5 steps "
        "(prepare -> train_a -> train_b -> evaluate -> pick_best)"
    )
    out = json.loads(cli("pipeline", "validate", str(example), "--json", cwd=example.parent).stdout)
    assert out["valid"] is True and out["order"][0] == "prepare"
    assert out["params"]["prepare"] == {"seed": 42, "test_size": 0.25, "label_noise": 0.0}
    # the directory holding the pipeline.yaml names it too
    by_dir = cli("pipeline", "validate", str(example.parent), cwd=example.parent, timeout=60)
    assert by_dir.returncode == 0 and "pipeline wine-quality is valid" in by_dir.stdout

    example.write_text(example.read_text().replace("depends_on: [evaluate]", "depends_on: [evalute]"))
    proc = cli("pipeline", "validate", str(example), cwd=example.parent, timeout=60)
    assert proc.returncode == 2
    message = one_line_error(proc)
    assert message.startswith(f"{example}:")
    assert message.endswith("depends_on[0]: unknown step 'evalute' (did you mean 'evaluate'?)")
    assert not (example.parent / ".nbmlops").exists()


@pytest.mark.parametrize(("fmt", "expected"), [
    ("text", "prepare"), ("svg", "<svg"), ("dot", 'digraph "wine-quality"'),
    ("mermaid", "flowchart"),
])
def test_show(example: Path, fmt: str, expected: str) -> None:
    proc = cli("pipeline", "show", str(example), "--format", fmt, cwd=example.parent, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.lstrip().startswith(expected)
    for step in ("prepare", "train_a", "train_b", "evaluate", "pick_best"):
        assert step in proc.stdout
    if fmt == "svg":
        import xml.etree.ElementTree as ET

        ET.fromstring(proc.stdout)
    out = example.parent / f"dag.{fmt}"
    proc = cli("pipeline", "show", str(example), "--format", fmt, "-o", str(out), cwd=example.parent)
    assert proc.returncode == 0 and out.read_text().lstrip().startswith(expected)
    assert not (example.parent / ".nbmlops").exists()


# -- cache keys: what a step really depends on -------------------------------------------------


@pytest.mark.kernel
def test_cache_sees_variables_from_steps_further_up(tmp_path: Path, store_url: str) -> None:
    """c uses x from a, but follows only b: a change in a must still re-run c."""
    def flow(x: int) -> Path:
        return make_notebook(tmp_path / "flow.ipynb", [
            (f"x = {x}", ["step:a"]),
            ("y = 5", ["step:b", "after:a"]),
            ("open('out.txt', 'w').write(str(x + y))", ["step:c", "after:b"]),
        ])

    assert states(run_pipeline(flow(1), store_url)) == dict.fromkeys("abc", "ran")
    assert (tmp_path / "out.txt").read_text() == "6"
    again = run_pipeline(flow(2), store_url)
    assert again.steps["a"].state == "ran" and again.steps["c"].state == "ran"
    assert (tmp_path / "out.txt").read_text() == "7"


@pytest.mark.kernel
def test_cache_sees_local_modules_the_notebook_imports(tmp_path: Path, store_url: str) -> None:
    write(tmp_path / "helpers" / "__init__.py", "from .values import VALUE\n")
    write(tmp_path / "helpers" / "values.py", "VALUE = 1\n")
    make_notebook(tmp_path / "use.ipynb", [
        "import helpers\nopen('h.txt', 'w').write(str(helpers.VALUE))"])
    pipe = write(tmp_path / "pipeline.yaml", "name: mods\nsteps:\n  use: {notebook: use.ipynb}\n")
    assert states(run_pipeline(pipe, store_url)) == {"use": "ran"}
    assert states(run_pipeline(pipe, store_url)) == {"use": "cached"}
    write(tmp_path / "helpers" / "values.py", "VALUE = 2\n")  # imported through __init__
    assert states(run_pipeline(pipe, store_url)) == {"use": "ran"}
    assert (tmp_path / "h.txt").read_text() == "2"


@pytest.mark.kernel
def test_timeout_stops_what_the_kernel_started(tmp_path: Path, store_url: str) -> None:
    make_notebook(tmp_path / "spawn.ipynb", [
        "import subprocess, time\nchild = subprocess.Popen(['sleep', '300'])\n"
        "open('child.pid', 'w').write(str(child.pid))\ntime.sleep(60)"])
    pipe = write(tmp_path / "pipeline.yaml",
                 "name: spawn\nsteps:\n  s: {notebook: spawn.ipynb, timeout: 3, cache: false}\n")
    result = run_pipeline(pipe, store_url)
    assert result.steps["s"].state == "failed"
    pid = int((tmp_path / "child.pid").read_text())
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            if psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
                break
        except psutil.NoSuchProcess:
            break
        time.sleep(0.2)
    else:
        psutil.Process(pid).kill()
        pytest.fail("the kernel's child process outlived the step's timeout")
