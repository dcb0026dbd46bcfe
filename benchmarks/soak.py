"""Soak: 4 interactive kernels and a parallel pipeline writing to ONE SQLite store.

Usage: python benchmarks/soak.py [SECONDS] [--kernels N] [--seed S] [--no-faults]
(default 600 s, 4 kernels, seed 14)

Each kernel (jupyter_client KernelManager, ``%load_ext nbmlops``) executes cells in a loop
(assignments, prints, a failing cell now and then); meanwhile ``nbmlops pipeline run --jobs 2``
of a small diamond pipeline runs again and again. Every cell's output and stderr is scanned
for nbmlops warnings ("database is locked", "nbmlops:").

Faults (unless ``--no-faults``): at random but seeded moments one kernel is killed with SIGKILL
in the middle of a cell (``time.sleep``), and another ends itself with ``os._exit`` in the middle
of a cell; each is replaced by a fresh kernel that goes on with the loop. A watcher times how
long the killed kernel's run takes to become ``failed`` (the writer process marks it).

At the end the kernels shut down and the store is checked: for a kernel that shut down, cell
records == executions and the run ``finished``; for a killed kernel, records == the cells
completed before the kill or one fewer (only the cell in flight may be lost), the run ``failed``
within FAILED_WITHIN seconds of the kill; every pipeline run finished with its steps; ``PRAGMA
integrity_check`` ok. Prints the counts (cells written, lost, lock errors, warnings, faults
injected, pipeline runs) as JSON and a one-line summary.

tests/test_reliability.py runs the same for NBMLOPS_SOAK_SECONDS (default 20 s; CI 60 s).
"""

from __future__ import annotations

import argparse
import json
import os
import queue
import random
import signal
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
RUN_ID = "import os\nimport nbmlops as _nbm\nprint('RUNID', _nbm.get_run().id, os.getpid())"
CELLS = [
    "x{i} = {i} * 2",
    "print('cell', {i})",
    "import math\ny{i} = [math.sqrt(k) for k in range(200)]",
    "d{i} = {{'k': {i}}}\nlen(d{i})",
    "raise ValueError('expected failure {i}')",  # a failing cell is a recorded execution too
]
WARN_NEEDLES = ("database is locked", "nbmlops:", "nbmlops warning", "StoreUnavailable")
SIGKILL, OS_EXIT = "sigkill", "os._exit"
#: a killed kernel's run must be ``failed`` this long after the kill at the latest (docs/capture.md
#: says "within about a second"; the margin is for a loaded 2-core CI machine)
FAILED_WITHIN = 10.0
#: how long the watcher waits for a killed kernel's run to leave ``running`` at all
WATCH_FOR = 60.0


@dataclass(frozen=True)
class Fault:
    """One planned kernel fault: kernel slot ``slot`` dies ``at`` s after the start, mid-cell."""

    slot: int
    kind: str  # SIGKILL: the soak kills the kernel; OS_EXIT: a cell ends its own process
    at: float  # seconds after the soak's start (injected at the next cell boundary after it)
    in_cell: float  # seconds the cell in flight has been running when the kernel dies


def plan_faults(seconds: float, kernels: int, seed: int) -> list[Fault]:
    """Two faults on two different kernels at seeded random moments (none for < 2 kernels)."""
    if kernels < 2:
        return []
    rng = random.Random(seed)
    first, second = rng.sample(range(kernels), 2)
    return [Fault(first, SIGKILL, round(rng.uniform(0.2, 0.45) * seconds, 2),
                  round(rng.uniform(0.1, 1.0), 2)),
            Fault(second, OS_EXIT, round(rng.uniform(0.45, 0.7) * seconds, 2),
                  round(rng.uniform(0.1, 1.0), 2))]


@dataclass
class KernelResult:
    name: str
    run_id: str | None = None
    executions: int = 0  # cells executed after %load_ext (these must all be recorded)
    warnings: list[str] = field(default_factory=list)
    lock_errors: int = 0
    errors: list[str] = field(default_factory=list)
    pid: int | None = None
    fault: str | None = None  # SIGKILL / OS_EXIT: this kernel died mid-cell (executions: before it)
    fault_at: float | None = None  # seconds after the soak's start when it died
    failed_after: float | None = None  # seconds from its death until its run was ``failed``
    status_after_kill: str | None = None  # the run's status when the watcher stopped


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


def _wait_running(kc: Any, msg_id: str, timeout: float = 120) -> None:
    """Wait until the kernel has started executing request ``msg_id`` (its execute_input)."""
    deadline = time.monotonic() + timeout
    while True:
        msg = kc.get_iopub_msg(timeout=max(0.1, deadline - time.monotonic()))
        if (msg["header"]["msg_type"] == "execute_input"
                and msg.get("parent_header", {}).get("msg_id") == msg_id):
            return


def _watch_failed(db: Path, run_id: str, died: float, result: KernelResult) -> None:
    """Time how long the dead kernel's run takes to leave ``running`` (the writer marks it)."""
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30)
    try:
        status = "running"
        while time.monotonic() - died < WATCH_FOR:
            try:
                row = con.execute("SELECT status FROM runs WHERE id = ?", (run_id,)).fetchone()
            except sqlite3.OperationalError:  # a writer holds the lock: ask again
                row = None
            if row is not None and row[0] != "running":
                status = row[0]
                result.failed_after = round(time.monotonic() - died, 2)
                break
            time.sleep(0.05)
        result.status_after_kill = status
    finally:
        con.close()


def _inject(kc: Any, km: Any, fault: Fault, result: KernelResult, started: float) -> float:
    """Kill the kernel in the middle of a cell; returns the monotonic time of its death."""
    if fault.kind == SIGKILL:
        msg_id = kc.execute("import time\nin_flight = True\ntime.sleep(600)")
        _wait_running(kc, msg_id)
        time.sleep(fault.in_cell)
        died = time.monotonic()
        os.kill(result.pid or km.provisioner.pid, signal.SIGKILL)
    else:
        msg_id = kc.execute(f"import os, time\nin_flight = True\ntime.sleep({fault.in_cell})\n"
                            "os._exit(3)")
        _wait_running(kc, msg_id)
        deadline = time.monotonic() + 120
        while km.is_alive() and time.monotonic() < deadline:
            time.sleep(0.02)
        died = time.monotonic()
        if km.is_alive():
            result.errors.append("the os._exit cell did not end the kernel")
    result.fault = fault.kind
    result.fault_at = round(died - started, 2)
    return died


def run_kernel(name: str, env: dict[str, str], cwd: Path, started: float, until: float,
               fault: Fault | None, db: Path, watchers: list[threading.Thread]) -> KernelResult:
    """One kernel: cells in a loop until ``until``; with ``fault``, it dies mid-cell at its time
    (at the latest at ``until``, so a planned fault always happens)."""
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
        words = next((w.split() for w in out.splitlines() if w.startswith("RUNID")), [])
        if len(words) == 3:
            result.run_id, result.pid = words[1], int(words[2])
        i = 0
        while time.monotonic() < until and not (fault and time.monotonic() - started >= fault.at):
            _execute(kc, CELLS[i % len(CELLS)].format(i=i), result)
            result.executions += 1
            i += 1
        if fault is not None:
            died = _inject(kc, km, fault, result, started)
            if result.run_id:
                watcher = threading.Thread(target=_watch_failed,
                                           args=(db, result.run_id, died, result))
                watcher.start()
                watchers.append(watcher)
        kc.stop_channels()
    except Exception as exc:  # noqa: BLE001 - reported as a count, the checks fail on it
        result.errors.append(f"{type(exc).__name__}: {exc}")
    finally:
        try:
            # graceful: the run ends "finished"; a dead kernel: only its resources are cleaned
            km.shutdown_kernel(now=result.fault is not None)
        except Exception as exc:  # noqa: BLE001
            result.errors.append(f"shutdown: {exc}")
    return result


def drive_kernel(slot: int, env: dict[str, str], cwd: Path, started: float, until: float,
                 fault: Fault | None, db: Path, results: queue.Queue[KernelResult]) -> None:
    """Kernel slot ``slot``: a kernel, and after its fault (if any) a fresh one that goes on."""
    watchers: list[threading.Thread] = []
    first = run_kernel(f"k{slot}", env, cwd, started, until, fault, db, watchers)
    kernels = [first]
    if first.fault is not None:
        kernels.append(run_kernel(f"k{slot}-after-{first.fault}", env, cwd, started, until, None,
                                  db, watchers))
    for watcher in watchers:
        watcher.join()
    for result in kernels:
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


def soak(root: Path, seconds: float, kernels: int = 4, *, faults: bool = True,
         seed: int = 14) -> dict[str, Any]:
    """Run the soak in ``root``; returns the counts and the problems found."""
    root.mkdir(parents=True, exist_ok=True)
    db = root / ".nbmlops" / "nbmlops.db"
    env = dict(os.environ, NBMLOPS_STORE_URL=f"sqlite:///{db}",
               NBMLOPS_ARTIFACT_URL=str(root / ".nbmlops" / "artifacts"),
               PYTHONWARNINGS="default")
    pipeline = make_pipeline(root)
    plan = {f.slot: f for f in plan_faults(seconds, kernels, seed)} if faults else {}
    started = time.monotonic()
    until = started + seconds
    results: queue.Queue[KernelResult] = queue.Queue()
    pipe_runs: list[dict[str, Any]] = []
    threads = [threading.Thread(target=drive_kernel,
                                args=(n, env, root, started, until, plan.get(n), db, results))
               for n in range(kernels)]
    threads.append(threading.Thread(target=drive_pipeline, args=(pipeline, env, until, pipe_runs)))
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    kernel_results = sorted((results.get() for _ in range(results.qsize())), key=lambda r: r.name)
    counts = check(db, kernel_results, pipe_runs, time.monotonic() - started)
    counts["kernels_at_once"] = kernels
    counts["seed"] = seed if faults else None
    counts["faults_planned"] = len(plan)
    if len(plan) != counts["faults_injected"]:
        counts["problems"].append(f"{len(plan)} faults planned, {counts['faults_injected']} "
                                  "injected")
    return counts


def check(db: Path, kernel_results: list[KernelResult], pipe_runs: list[dict[str, Any]],
          took: float, *, settle: float = 30.0,
          failed_within: float = FAILED_WITHIN) -> dict[str, Any]:
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
        faults: list[dict[str, Any]] = []
        for r in kernel_results:
            problems += [f"{r.name}: {e}" for e in r.errors]
            problems += [f"{r.name} warned: {w}" for w in r.warnings]
            if r.run_id is None:
                problems.append(f"{r.name}: no run id")
                continue
            n = con.execute("SELECT count(*) FROM cell_executions WHERE run_id = ?",
                            (r.run_id,)).fetchone()[0]
            row = con.execute("SELECT status FROM runs WHERE id = ?", (r.run_id,)).fetchone()
            status = row[0] if row else "missing"
            written += n
            lost += max(0, r.executions - n)
            if r.fault is None:
                if n != r.executions:
                    problems.append(f"{r.name}: {r.executions} cells executed, {n} recorded")
                if status != "finished":
                    problems.append(f"{r.name}: run {r.run_id} is {status}")
                continue
            # killed mid-cell: the cell in flight never finished (it is not in executions);
            # at most the last finished one may not have reached the journal
            faults.append({"kernel": r.name, "kind": r.fault, "at_s": r.fault_at,
                           "cells_before": r.executions, "recorded": n,
                           "failed_after_s": r.failed_after, "status": status})
            if n not in (r.executions, r.executions - 1):
                problems.append(f"{r.name} ({r.fault}): {r.executions} cells completed before "
                                f"the kill, {n} recorded (at most the cell in flight may be lost)")
            if status != "failed":
                problems.append(f"{r.name} ({r.fault}): run {r.run_id} is {status}, "
                                "expected failed")
            elif r.failed_after is None or r.failed_after > failed_within:
                problems.append(f"{r.name} ({r.fault}): run {r.run_id} failed "
                                f"{r.failed_after if r.failed_after is not None else 'not'} s "
                                f"after the kill (limit {failed_within} s; watcher saw "
                                f"{r.status_after_kill})")
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
        "cells_lost": lost,  # finished cells not recorded (only a killed kernel's last may be)
        "cells_in_flight_killed": len(faults),  # the cells running when a kernel died
        "lock_errors": sum(r.lock_errors for r in kernel_results),
        "warnings": sum(len(r.warnings) for r in kernel_results),
        "pipeline_runs": len(pipe_runs),
        "pipeline_runs_ok": sum(1 for p in pipe_runs if p["code"] == 0),
        "faults_injected": len(faults),
        "faults": faults,
        "integrity_check": integrity,
        "problems": problems,
    }


def summary(counts: dict[str, Any]) -> str:
    """The counts in one line."""
    faults = "; ".join(
        f"{f['kernel']} {f['kind']} at {f['at_s']} s: {f['recorded']}/{f['cells_before']} "
        f"recorded, run {f['status']} after {f['failed_after_s']} s" for f in counts["faults"])
    return (f"soak {counts['seconds']} s, {counts['kernels']} kernels "
            f"({counts.get('kernels_at_once', counts['kernels'])} at once): "
            f"{counts['cells_executed']} cells executed, {counts['cells_written']} written, "
            f"{counts['cells_lost']} lost (+{counts['cells_in_flight_killed']} in flight at a "
            f"kill), {counts['lock_errors']} lock errors, {counts['warnings']} warnings, "
            f"{counts['faults_injected']} faults injected" + (f" ({faults})" if faults else "")
            + f", pipeline runs {counts['pipeline_runs_ok']}/{counts['pipeline_runs']} ok, "
            f"integrity {counts['integrity_check']}, {len(counts['problems'])} problems")


def main() -> None:
    import tempfile

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("seconds", nargs="?", type=float, default=600.0)
    ap.add_argument("--kernels", type=int, default=4)
    ap.add_argument("--seed", type=int, default=14, help="seed of the fault moments (default 14)")
    ap.add_argument("--no-faults", action="store_true", help="no kernel is killed")
    ap.add_argument("--dir", type=Path, default=None, help="work directory (default: a temp dir)")
    args = ap.parse_args()
    root = args.dir or Path(tempfile.mkdtemp(prefix="nbmlops-soak-"))
    counts = soak(root, args.seconds, args.kernels, faults=not args.no_faults, seed=args.seed)
    print(json.dumps(counts, indent=1))
    print(summary(counts))
    sys.exit(1 if counts["problems"] else 0)


if __name__ == "__main__":
    main()
