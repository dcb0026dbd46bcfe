"""How fast the store answers the questions people ask most, at 10,000 runs.

Builds a temporary store (each run: 3 params, 2 metrics, 3 cell executions) through the public
``Store`` API, then measures

* ``nbmlops runs ls`` as a real subprocess of the installed console script (wall time, median
  of 5; target < 0.5 s), plus ``nbmlops --help`` and ``python -c pass`` to split the figure into
  interpreter start, CLI import and store work;
* ``Store.list_runs(limit=50)`` (median of 20, in process), with and without filters;
* ``Store.get_run`` by full id and by an 8-character prefix (median of 20).

Every figure is printed in seconds and as a ratio against the interpreter start-up baseline
(``python -c pass`` through the same interpreter, measured in the same session).

Usage::

    .venv/bin/python benchmarks/store_queries.py            # 10,000 runs
    .venv/bin/python benchmarks/store_queries.py --quick    # 1,000 runs
    .venv/bin/python benchmarks/store_queries.py --profile  # also: where `runs ls` spends time
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from nbmlops.config import StoreLocation
from nbmlops.store import CellRecord, MetricValue, Store

TARGET_RUNS_LS_S = 0.5
EXPERIMENTS = ["churn", "fraud", "pricing", "ranking", "vision"]
STATUSES = ["finished"] * 8 + ["failed", "cancelled"]
SOURCES = ["interactive", "papermill", "pipeline", "schedule"]


def console_script() -> str:
    found = shutil.which("nbmlops", path=str(Path(sys.executable).parent)) or shutil.which("nbmlops")
    if not found:
        raise SystemExit("the nbmlops console script is not installed next to this interpreter")
    return found


def build_store(root: Path, n_runs: int, *, seed: int = 7) -> tuple[StoreLocation, list[str], float]:
    """A store with ``n_runs`` runs, written through the public API; returns the build time."""
    rng = random.Random(seed)
    store_dir = root / ".nbmlops"
    loc = StoreLocation(
        url=f"sqlite:///{store_dir / 'nbmlops.db'}",
        artifact_root=store_dir / "artifacts",
        store_dir=store_dir,
    )
    started = time.perf_counter()
    t0 = 1_700_000_000.0
    ids: list[str] = []
    with Store(loc) as store:
        for i in range(n_runs):
            start = t0 + i * 60.0
            rid = store.create_run(
                name=f"train-{i % 97}",
                experiment=EXPERIMENTS[i % len(EXPERIMENTS)],
                source=SOURCES[i % len(SOURCES)],
                notebook_path=f"/project/notebooks/nb{i % 20}.ipynb",
                start_time=start,
                params={"lr": rng.choice([0.1, 0.01, 0.001]), "depth": rng.randint(2, 12),
                        "model": rng.choice(["rf", "gbm", "logreg"])},
            )
            store.record_cells(
                rid,
                [
                    CellRecord(seq=1, source="df = pd.read_csv('data.csv')", start_time=start,
                               duration=0.2, status="ok", execution_count=1, vars_defined=["df"]),
                    CellRecord(seq=2, source="model = fit(df, lr=lr, depth=depth)",
                               start_time=start + 1, duration=3.0, status="ok", execution_count=2,
                               vars_defined=["model"], vars_used=["df"], var_sources={"df": 1}),
                    CellRecord(seq=3, source="acc, loss = evaluate(model, df)",
                               start_time=start + 4, duration=0.5, status="ok", execution_count=3,
                               vars_used=["model", "df"], var_sources={"model": 2, "df": 1},
                               metrics=[MetricValue("accuracy", rng.random()),
                                        MetricValue("loss", rng.random() * 2)]),
                ],
            )
            store.end_run(rid, STATUSES[i % len(STATUSES)], end_time=start + 5 + rng.random() * 50)
            ids.append(rid)
    return loc, ids, time.perf_counter() - started


def median_wall(fn: Callable[[], object], repeat: int, warmup: int = 1) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def subprocess_wall(cmd: Sequence[str], cwd: Path, repeat: int = 5) -> float:
    env = {k: v for k, v in os.environ.items() if not k.startswith("NBMLOPS_")}

    def once() -> None:
        done = subprocess.run(list(cmd), cwd=cwd, env=env, capture_output=True, text=True)
        if done.returncode != 0:
            raise SystemExit(f"{' '.join(cmd)} failed ({done.returncode}):\n{done.stderr}")

    return median_wall(once, repeat)


def profile_runs_ls(cwd: Path) -> None:
    """Where a cold `nbmlops runs ls` spends its time: slowest imports, then the hottest calls."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("NBMLOPS_")}
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", "from nbmlops.cli import main; main(['runs', 'ls'])"],
        cwd=cwd, env=env, capture_output=True, text=True,
    )
    rows = []
    for line in done.stderr.splitlines():
        parts = line.split("|")
        if len(parts) == 3 and parts[1].strip().isdigit():
            rows.append((int(parts[1]), parts[2].rstrip()))
    print("\nslowest imports (cumulative, top-level packages):")
    for cum, name in sorted((r for r in rows if not r[1].startswith("    ")), reverse=True)[:8]:
        print(f"  {cum / 1e6:7.3f} s  {name.strip()}")
    import cProfile
    import pstats

    prof = cProfile.Profile()
    here = os.getcwd()
    os.chdir(cwd)
    try:
        from nbmlops.cli import cli

        with contextlib.redirect_stdout(io.StringIO()):
            prof.enable()
            try:
                cli.main(args=["runs", "ls"], prog_name="nbmlops", standalone_mode=False)
            finally:
                prof.disable()
    finally:
        os.chdir(here)
    print("\nin-process `runs ls` (imports already done), top calls by cumulative time:")
    pstats.Stats(prof, stream=sys.stdout).sort_stats("cumulative").print_stats(12)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1,000 runs instead of 10,000")
    parser.add_argument("--runs", type=int, default=None, help="number of runs (overrides --quick)")
    parser.add_argument("--profile", action="store_true", help="profile `nbmlops runs ls`")
    args = parser.parse_args(argv)
    n_runs = args.runs or (1_000 if args.quick else 10_000)

    script = console_script()
    with tempfile.TemporaryDirectory(prefix="nbmlops-storebench-") as tmp:
        root = Path(tmp)
        print(f"building a store with {n_runs:,} runs (3 params, 2 metrics, 3 cells each)...",
              flush=True)
        loc, ids, build_s = build_store(root, n_runs)
        db_mb = (loc.sqlite_path.stat().st_size if loc.sqlite_path else 0) / 1e6
        print(f"built in {build_s:.1f} s ({n_runs / build_s:,.0f} runs/s through the public API), "
              f"database {db_mb:.1f} MB\n", flush=True)

        rows: list[tuple[str, float, str]] = []
        baseline = subprocess_wall([sys.executable, "-c", "pass"], root)
        rows.append(("python -c pass (baseline)", baseline, "subprocess, median of 5"))
        rows.append(("nbmlops --help", subprocess_wall([script, "--help"], root),
                     "subprocess, median of 5"))
        runs_ls = subprocess_wall([script, "runs", "ls"], root)
        rows.append(("nbmlops runs ls", runs_ls, "subprocess, median of 5"))
        rows.append(("nbmlops runs ls --json", subprocess_wall([script, "runs", "ls", "--json"], root),
                     "subprocess, median of 5"))
        rows.append((
            "nbmlops runs ls -e fraud -s failed --sort name",
            subprocess_wall([script, "runs", "ls", "-e", "fraud", "-s", "failed", "--sort", "name"],
                            root),
            "subprocess, median of 5",
        ))

        rows.append(("Store(...) open", median_wall(lambda: Store(loc).close(), 5),
                     "in process, median of 5"))
        with Store(loc) as store:
            page = store.list_runs(limit=50)
            assert page.total == n_runs and len(page.runs) == 50
            assert all(len(r.params) == 3 and len(r.metrics) == 2 and r.cell_count == 3
                       for r in page.runs)
            rows.append(("Store.list_runs(limit=50)",
                         median_wall(lambda: store.list_runs(limit=50), 20),
                         "in process, median of 20"))
            rows.append(("Store.list_runs(experiment, status)",
                         median_wall(lambda: store.list_runs(experiment="fraud", status="failed",
                                                             limit=50), 20),
                         "in process, median of 20"))
            rows.append(("Store.list_runs(offset=n-50)",
                         median_wall(lambda: store.list_runs(limit=50, offset=n_runs - 50), 20),
                         "in process, median of 20"))
            rows.append(("Store.list_runs(search='train-42')",
                         median_wall(lambda: store.list_runs(search="train-42", limit=50), 20),
                         "in process, median of 20"))
            mid = ids[len(ids) // 2]
            rows.append(("Store.get_run(full id)", median_wall(lambda: store.get_run(mid), 20),
                         "in process, median of 20"))
            rows.append(("Store.get_run(8-char prefix)",
                         median_wall(lambda: store.get_run(mid[:8]), 20),
                         "in process, median of 20"))

        name_w = max(len(r[0]) for r in rows)
        print(f"{'measure'.ljust(name_w)}  {'seconds':>9}  {'x baseline':>10}  how")
        print(f"{'-' * name_w}  {'-' * 9}  {'-' * 10}  {'-' * 24}")
        for name, secs, how in rows:
            print(f"{name.ljust(name_w)}  {secs:9.4f}  {secs / baseline:10.2f}  {how}")
        verdict = "OK" if runs_ls < TARGET_RUNS_LS_S else "SLOW"
        print(f"\n`nbmlops runs ls` at {n_runs:,} runs: {runs_ls:.3f} s "
              f"(target < {TARGET_RUNS_LS_S} s): {verdict}")
        if args.profile or runs_ls >= TARGET_RUNS_LS_S:
            profile_runs_ls(root)
    return 0


if __name__ == "__main__":
    sys.exit(main())
