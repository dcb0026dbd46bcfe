"""Pipeline runner speed against plain papermill, in one run on this machine.

Three figures, each a ratio against a baseline measured in the same run (wall time of real
subprocesses of the installed console scripts, so interpreter and import costs count):

(a) **parallelism**: 4 independent steps, each ``time.sleep(5)``, as ``nbmlops pipeline run
    --jobs 2`` versus the same 4 notebooks one after the other with the ``papermill`` command.
    Target <= 0.6.
(b) **cache**: a 6-step pipeline (prepare -> 4 parallel steps -> combine; each step does about
    1 s of work and writes a file) re-run with nothing changed, versus its first run. Target
    <= 0.05, and no kernel may start: the script checks that every step of the re-run is
    ``cached``. The same ratio for 6 steps that do nothing is printed too, as the worst case.
(c) **single notebook**: ``nbmlops run`` of a trivial notebook versus ``papermill`` of it
    (medians of interleaved repetitions). Target <= 1.15.

Usage::

    .venv/bin/python benchmarks/pipeline.py            # ~2 minutes
    .venv/bin/python benchmarks/pipeline.py --quick    # 1 s sleeps, fewer repetitions
    .venv/bin/python benchmarks/pipeline.py --json figures.json
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import nbformat

TARGETS = {"parallel": 0.6, "cache": 0.05, "single": 1.15}


def script(name: str) -> str:
    found = shutil.which(name, path=str(Path(sys.executable).parent))
    if not found:
        raise SystemExit(f"the {name} console script is not installed next to this interpreter")
    return found


def notebook(path: Path, cells: list[str], params: str | None = None) -> Path:
    nb_cells = []
    if params is not None:
        nb_cells.append(nbformat.v4.new_code_cell(params, metadata={"tags": ["parameters"]}))
    nb_cells += [nbformat.v4.new_code_cell(c) for c in cells]
    nb = nbformat.v4.new_notebook(
        cells=nb_cells,
        metadata={"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}},
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, path)
    return path


def timed(cmd: list[str], cwd: Path, env: dict[str, str]) -> float:
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    elapsed = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return elapsed


def bench_parallel(root: Path, env: dict[str, str], sleep: float) -> dict[str, Any]:
    d = root / "parallel"
    steps = {}
    for name in "abcd":
        notebook(d / f"{name}.ipynb", ["import time", f"time.sleep({sleep})"])
        steps[name] = {"notebook": f"{name}.ipynb", "cache": False}
    (d / "pipeline.yaml").write_text(json.dumps({"name": "parallel", "steps": steps}))
    pm = script("papermill")
    baseline = sum(
        timed([pm, f"{n}.ipynb", f"out-{n}.ipynb", "--no-progress-bar"], d, env) for n in "abcd"
    )
    ours = timed([script("nbmlops"), "pipeline", "run", "pipeline.yaml", "--jobs", "2",
                  "--no-progress"], d, env)
    return {"papermill_sequential_s": baseline, "nbmlops_jobs2_s": ours, "ratio": ours / baseline,
            "target": TARGETS["parallel"]}


def six_step_pipeline(d: Path, work: float) -> None:
    body = [f"import time\ntime.sleep({work})"] if work else []
    notebook(d / "prepare.ipynb", [*body, "open('prepared.txt', 'w').write(str(seed))"],
             params="seed = 1")
    steps: dict[str, Any] = {"prepare": {"notebook": "prepare.ipynb", "outputs": ["prepared.txt"]}}
    for i in range(4):
        notebook(d / f"part{i}.ipynb",
                 [*body, f"base = open('prepared.txt').read()\nopen('part{i}.txt', 'w').write(base + '{i}')"])
        steps[f"part{i}"] = {"notebook": f"part{i}.ipynb", "depends_on": ["prepare"],
                             "inputs": ["prepared.txt"], "outputs": [f"part{i}.txt"]}
    notebook(d / "combine.ipynb",
             [*body, "open('all.txt', 'w').write(''.join(open(f'part{i}.txt').read() for i in range(4)))"])
    steps["combine"] = {"notebook": "combine.ipynb", "depends_on": [f"part{i}" for i in range(4)],
                        "inputs": ["part*.txt"], "outputs": ["all.txt"]}
    (d / "pipeline.yaml").write_text(json.dumps({"name": "six", "params": {"seed": 1}, "steps": steps}))


def bench_cache(root: Path, env: dict[str, str], work: float, reps: int) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for label, w in (("work", work), ("empty", 0.0)):
        d = root / f"cache-{label}"
        six_step_pipeline(d, w)
        cmd = [script("nbmlops"), "pipeline", "run", "pipeline.yaml", "--no-progress", "--json"]
        first = timed(cmd, d, env)
        again = []
        for _ in range(reps):
            t0 = time.perf_counter()
            proc = subprocess.run(cmd, cwd=d, env=env, capture_output=True, text=True)
            again.append(time.perf_counter() - t0)
            states = {s["state"] for s in json.loads(proc.stdout)["steps"]}
            if proc.returncode != 0 or states != {"cached"}:
                raise SystemExit(f"re-run was not fully cached: {states}\n{proc.stderr}")
        rerun = statistics.median(again)
        out[label] = {"first_run_s": first, "rerun_median_s": rerun, "ratio": rerun / first}
    out["ratio"] = out["work"]["ratio"]
    out["target"] = TARGETS["cache"]
    out["step_work_s"] = work
    return out


def bench_single(root: Path, env: dict[str, str], reps: int) -> dict[str, Any]:
    d = root / "single"
    notebook(d / "trivial.ipynb", ["x = 1 + 1", "print(x)"], params="alpha = 0.1")
    pm, ours = script("papermill"), script("nbmlops")
    cmds = {
        "papermill": [pm, "trivial.ipynb", "out.ipynb", "-p", "alpha", "0.2", "--no-progress-bar"],
        "nbmlops": [ours, "run", "trivial.ipynb", "-o", "out2.ipynb", "-p", "alpha", "0.2"],
    }
    for cmd in cmds.values():  # warm-up: page cache, compiled bytecode, first store creation
        timed(cmd, d, env)
    times: dict[str, list[float]] = {k: [] for k in cmds}
    for _ in range(reps):
        for k, cmd in cmds.items():
            times[k].append(timed(cmd, d, env))
    pm_s, ours_s = statistics.median(times["papermill"]), statistics.median(times["nbmlops"])
    return {"papermill_median_s": pm_s, "nbmlops_run_median_s": ours_s, "ratio": ours_s / pm_s,
            "target": TARGETS["single"], "reps": reps}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="shorter sleeps, fewer repetitions")
    ap.add_argument("--json", metavar="FILE", help="also write the figures to FILE")
    args = ap.parse_args(argv)
    sleep, work, reps = (1.0, 0.5, 3) if args.quick else (5.0, 1.0, 7)
    with tempfile.TemporaryDirectory(prefix="nbmlops-bench-") as tmp:
        root = Path(tmp)
        env = {**os.environ, "NBMLOPS_STORE_URL": f"sqlite:///{root / 'store' / 'nbmlops.db'}",
               "NBMLOPS_ARTIFACT_URL": str(root / "store" / "artifacts"),
               "PYDEVD_DISABLE_FILE_VALIDATION": "1"}
        print(f"machine: {os.cpu_count()} CPUs, Python {sys.version.split()[0]}")
        figures = {
            "parallel": bench_parallel(root, env, sleep),
            "cache": bench_cache(root, env, work, reps),
            "single": bench_single(root, env, reps),
        }
    p, c, s = figures["parallel"], figures["cache"], figures["single"]
    ok = lambda f: "ok" if f["ratio"] <= f["target"] else "FAIL"  # noqa: E731
    print(f"(a) 4 x sleep({sleep:g}) steps, --jobs 2: {p['nbmlops_jobs2_s']:.2f} s vs plain papermill "
          f"one after the other {p['papermill_sequential_s']:.2f} s -> ratio {p['ratio']:.3f} "
          f"(target <= {p['target']}) {ok(p)}")
    print(f"(b) 6-step pipeline ({work:g} s of work per step) re-run, nothing changed: "
          f"{c['work']['rerun_median_s']:.3f} s vs first run {c['work']['first_run_s']:.2f} s -> "
          f"ratio {c['ratio']:.3f} (target <= {c['target']}) {ok(c)}; no kernel started")
    print(f"    same with empty steps (worst case): {c['empty']['rerun_median_s']:.3f} s vs "
          f"{c['empty']['first_run_s']:.2f} s -> ratio {c['empty']['ratio']:.3f}")
    print(f"(c) one trivial notebook: nbmlops run {s['nbmlops_run_median_s']:.3f} s vs papermill "
          f"{s['papermill_median_s']:.3f} s (median of {s['reps']}) -> ratio {s['ratio']:.3f} "
          f"(target <= {s['target']}) {ok(s)}")
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=2, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
