"""Soak: 4 interactive kernels and a parallel pipeline writing to ONE SQLite store.

Usage: python benchmarks/soak.py [SECONDS] [--kernels N]   (default 600 s, 4 kernels)

Each kernel (jupyter_client KernelManager, ``%load_ext nbmlops``) executes cells in a loop
(assignments, prints, a failing cell now and then); meanwhile ``nbmlops pipeline run --jobs 2``
of a small diamond pipeline runs again and again. Every cell's output and stderr is scanned
for nbmlops warnings ("database is locked", "nbmlops:"). At the end the kernels shut down
and the store is checked: cell records per run == executions performed, runs ended finished,
every pipeline run finished with its steps, ``PRAGMA integrity_check`` ok. Prints the counts
(cells written, lost, lock errors, warnings, pipeline runs) as JSON.

tests/test_reliability.py runs the same for NBMLOPS_SOAK_SECONDS (default 20 s).
"""

from __future__ import annotations

import argparse
import json
import os
import queue
import sqlite3
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import nbformat

LOAD_EXT = "%load_ext nbmlops"
RUN_ID = "import nbmlops as _nbm\nprint('RUNID', _nbm.get_run().id)"
CELLS = [
    "x{i} = {i} * 2",
    "print('cell', {i})",
    "import math\ny{i} = [math.sqrt(k) for k in range(200)]",
    "d{i} = {{'k': {i}}}\nlen(d{i})",
    "raise ValueError('expected failure {i}')",  # a failing cell is a recorded execution too
]
WARN_NEEDLES = ("database is locked", "nbmlops:", "nbmlops warning", "StoreUnavailable")


@dataclass
class KernelResult:
    name: str
    run_id: str | None = None
    executions: int = 0  # cells executed after %load_ext (these must all be recorded)
    warnings: list[str] = field(default_factory=list)
    lock_errors: int = 0
    errors: list[str] = field(default_factory=list)


def _notebook(path: Path, cells: list[tuple[str, list[str]] | str]) -> None:
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    for cell in cells:
        src, tags = (cell, []) if isinstance(cell, str) else cell
        c = nbformat.v4.new_code_cell(src)
        if tags:
            c.metadata["tags"] = tags
        nb.cells.append(c)
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, path)


def make_pipeline(root: Path) -> Path:
    """A diamond: prep -> (left, right) -> join; with --jobs 2 left and right run together."""
    pipe = root / "pipe"
    _notebook(pipe / "prep.ipynb", [("n = 3", ["parameters"]),
                                    "from pathlib import Path\nPath('data').mkdir(exist_ok=True)\n"
                                    "Path('data/n.txt').write_text(str(n))"])
    for side in ("left", "right"):
        _notebook(pipe / f"{side}.ipynb", [
            ("n = 3", ["parameters"]),
            f"from pathlib import Path\nv = int(Path('data/n.txt').read_text())\n"
            f"Path('data/{side}.txt').write_text(str(v + 1))"])
    _notebook(pipe / "join.ipynb", [
        ("n = 3", ["parameters"]),
        "from pathlib import Path\ntotal = sum(int(Path(f'data/{s}.txt').read_text()) "
        "for s in ('left', 'right'))"])
    (pipe / "pipeline.yaml").write_text(
        "name: soakpipe\nparams:\n  n: 3\nsteps:\n"
        "  prep: {notebook: prep.ipynb, outputs: [data/n.txt]}\n"
        "  left: {notebook: left.ipynb, depends_on: [prep], inputs: [data/n.txt], "
        "outputs: [data/left.txt]}\n"
        "  right: {notebook: right.ipynb, depends_on: [prep], inputs: [data/n.txt], "
        "outputs: [data/right.txt]}\n"
        "  join: {notebook: join.ipynb, depends_on: [left, right], "
        "inputs: [data/left.txt, data/right.txt]}\n")
    return pipe / "pipeline.yaml"


def _execute(kc: Any, code: str, result: KernelResult, timeout: float = 120) -> list[str]:
    """Run one cell; returns its text outputs; scans them (and stderr) for nbmlops warnings."""
    texts: list[str] = []

    def hook(msg: dict[str, Any]) -> None:
        kind = msg["header"]["msg_type"]
        content = msg["content"]
        if kind == "stream":
            texts.append(content["text"])
        elif kind in ("execute_result", "display_data"):
            texts.append(str(content["data"].get("text/plain", "")))
        elif kind == "error":
            texts.append(f"{content['ename']}: {content['evalue']}")

    kc.execute_interactive(code, output_hook=hook, timeout=timeout, allow_stdin=False)
    joined = "".join(texts)
    low = joined.lower()
    if "database is locked" in low:
        result.lock_errors += 1
    for needle in WARN_NEEDLES:
        if needle.lower() in low:
            result.warnings.append(joined.strip()[:300])
            break
    return texts


def drive_kernel(name: str, env: dict[str, str], cwd: Path, until: float,
                 results: queue.Queue[KernelResult]) -> None:
    from jupyter_client.manager import KernelManager

    result = KernelResult(name)
    km = KernelManager(kernel_name="python3")
    try:
        km.start_kernel(env=env, cwd=str(cwd))
        kc = km.client()
        kc.start_channels()
        kc.wait_for_ready(timeout=120)
        _execute(kc, LOAD_EXT, result)
        out = "".join(_execute(kc, RUN_ID, result))
        result.executions += 1
        result.run_id = next((w.split()[1] for w in out.splitlines() if w.startswith("RUNID")), None)
        i = 0
        while time.monotonic() < until:
            _execute(kc, CELLS[i % len(CELLS)].format(i=i), result)
            result.executions += 1
            i += 1
        kc.stop_channels()
    except Exception as exc:  # noqa: BLE001 - reported as a count, the checks fail on it
        result.errors.append(f"{type(exc).__name__}: {exc}")
    finally:
        try:
            km.shutdown_kernel(now=False)  # graceful: the run ends "finished"
        except Exception as exc:  # noqa: BLE001
            result.errors.append(f"shutdown: {exc}")
        results.put(result)


def drive_pipeline(pipeline: Path, env: dict[str, str], until: float,
                   out: list[dict[str, Any]]) -> None:
    k = 0
    while time.monotonic() < until or not out:
        k += 1
        done = subprocess.run(
            [sys.executable, "-m", "nbmlops.cli", "pipeline", "run", str(pipeline), "--jobs", "2",
             "--force-all", "--no-progress", "--json", "-p", "n", str(k)],
            cwd=pipeline.parent, env=env, capture_output=True, text=True, timeout=600)
        try:
            answer = json.loads(done.stdout)
        except ValueError:
            answer = {}
        out.append({"code": done.returncode, "run_id": answer.get("run_id"),
                    "status": answer.get("status"), "stderr": done.stderr.strip()[-500:],
                    "steps": {s["name"]: s["state"] for s in answer.get("steps", [])}})


def soak(root: Path, seconds: float, kernels: int = 4) -> dict[str, Any]:
    """Run the soak in ``root``; returns the counts and the problems found."""
    root.mkdir(parents=True, exist_ok=True)
    db = root / ".nbmlops" / "nbmlops.db"
    env = dict(os.environ, NBMLOPS_STORE_URL=f"sqlite:///{db}",
               NBMLOPS_ARTIFACT_URL=str(root / ".nbmlops" / "artifacts"),
               PYTHONWARNINGS="default")
    pipeline = make_pipeline(root)
    started = time.monotonic()
    until = started + seconds
    results: queue.Queue[KernelResult] = queue.Queue()
    pipe_runs: list[dict[str, Any]] = []
    threads = [threading.Thread(target=drive_kernel, args=(f"k{n}", env, root, until, results))
               for n in range(kernels)]
    threads.append(threading.Thread(target=drive_pipeline, args=(pipeline, env, until, pipe_runs)))
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    kernel_results = [results.get() for _ in range(kernels)]
    return check(db, kernel_results, pipe_runs, time.monotonic() - started)


def check(db: Path, kernel_results: list[KernelResult], pipe_runs: list[dict[str, Any]],
          took: float, *, settle: float = 30.0) -> dict[str, Any]:
    problems: list[str] = []
    deadline = time.monotonic() + settle
    con = sqlite3.connect(db, timeout=30)
    try:
        while True:  # graceful shutdown ends the runs; the writer may need a moment
            ids = [r.run_id for r in kernel_results if r.run_id]
            marks = ",".join("?" * len(ids)) or "''"
            running = con.execute(
                f"SELECT count(*) FROM runs WHERE id IN ({marks}) AND status = 'running'",
                ids).fetchone()[0]
            if not running or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        written = lost = 0
        for r in kernel_results:
            problems += [f"{r.name}: {e}" for e in r.errors]
            problems += [f"{r.name} warned: {w}" for w in r.warnings]
            if r.run_id is None:
                problems.append(f"{r.name}: no run id")
                continue
            n = con.execute("SELECT count(*) FROM cell_executions WHERE run_id = ?",
                            (r.run_id,)).fetchone()[0]
            status = con.execute("SELECT status FROM runs WHERE id = ?", (r.run_id,)).fetchone()
            written += n
            lost += max(0, r.executions - n)
            if n != r.executions:
                problems.append(f"{r.name}: {r.executions} cells executed, {n} recorded")
            if status is None or status[0] != "finished":
                problems.append(f"{r.name}: run {r.run_id} is {status[0] if status else 'missing'}")
        for p in pipe_runs:
            if p["code"] != 0 or p["status"] != "finished":
                problems.append(f"pipeline run {p['run_id']} exit {p['code']} {p['status']}: "
                                f"{p['stderr']}")
                continue
            if "nbmlops:" in p["stderr"] or "locked" in p["stderr"].lower():
                problems.append(f"pipeline run {p['run_id']} warned: {p['stderr']}")
            kids = con.execute("SELECT status FROM runs WHERE parent_run_id = ?",
                               (p["run_id"],)).fetchall()
            if len(kids) != 4 or any(k[0] != "finished" for k in kids):
                problems.append(f"pipeline run {p['run_id']}: steps {kids}")
        integrity = con.execute("PRAGMA integrity_check").fetchone()[0]
        if integrity != "ok":
            problems.append(f"integrity_check: {integrity}")
    finally:
        con.close()
    return {
        "seconds": round(took, 1),
        "kernels": len(kernel_results),
        "cells_executed": sum(r.executions for r in kernel_results),
        "cells_written": written,
        "cells_lost": lost,
        "lock_errors": sum(r.lock_errors for r in kernel_results),
        "warnings": sum(len(r.warnings) for r in kernel_results),
        "pipeline_runs": len(pipe_runs),
        "pipeline_runs_ok": sum(1 for p in pipe_runs if p["code"] == 0),
        "faults_injected": 0,  # kernel faults: tests/test_writer_process.py (the writer's owner)
        "integrity_check": integrity,
        "problems": problems,
    }


def main() -> None:
    import tempfile

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("seconds", nargs="?", type=float, default=600.0)
    ap.add_argument("--kernels", type=int, default=4)
    ap.add_argument("--dir", type=Path, default=None, help="work directory (default: a temp dir)")
    args = ap.parse_args()
    root = args.dir or Path(tempfile.mkdtemp(prefix="nbmlops-soak-"))
    counts = soak(root, args.seconds, args.kernels)
    print(json.dumps(counts, indent=1))
    sys.exit(1 if counts["problems"] else 0)


if __name__ == "__main__":
    main()
