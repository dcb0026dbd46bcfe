"""A team store on PostgreSQL: listing 10,000 runs and 8 concurrent cell writers.

Every figure is printed next to the same operation on a SQLite store built the same way in the
same run (the baseline), as seconds (or records/s) and as a ratio.

* ``nbmlops runs ls`` at 10,000 runs: the installed console script as a subprocess, end to end
  (interpreter start, CLI import, store open, query, table), median of 5; target < 0.5 s on
  PostgreSQL. ``Store.list_runs(limit=50)`` in process (median of 20) shows the store's share.
* 8 writer processes, each writing its own run's cell records through ``Store.record_cells``
  in batches (``--batch``, default 10 records: what the capture writer sends during Run All),
  records as capture makes them (source, variables and their sources, a file read/written,
  an estimator, metrics); target >= 2,000 records/s in total on PostgreSQL. Records/s depends
  on what else runs on the machine; the CPU time per record of the writers and (with a local
  server) of their PostgreSQL backends does not, and is printed next to it.

The PostgreSQL server is ``--url`` (an empty database: its tables are created) or, by default,
a throwaway server started from the Debian ``postgresql`` binaries (``tests/_postgres.py``).

Usage::

    .venv/bin/python benchmarks/postgres.py                 # 10,000 runs, 8 writers x 6 s
    .venv/bin/python benchmarks/postgres.py --quick         # 1,000 runs, 8 writers x 3 s
    .venv/bin/python benchmarks/postgres.py --url postgresql+psycopg://u:p@host/db
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from nbmlops.config import StoreLocation  # noqa: E402
from nbmlops.store import ArtifactIO, CellRecord, Estimator, MetricValue, Store  # noqa: E402

TARGET_RUNS_LS_S = 0.5
TARGET_RECORDS_PER_S = 2000.0
EXPERIMENTS = ["churn", "fraud", "pricing", "ranking", "vision"]
STATUSES = ["finished"] * 8 + ["failed", "cancelled"]
SOURCES = ["interactive", "papermill", "pipeline", "schedule"]


def console_script() -> str:
    import shutil

    found = shutil.which("nbmlops", path=str(Path(sys.executable).parent)) or shutil.which("nbmlops")
    if not found:
        raise SystemExit("the nbmlops console script is not installed next to this interpreter")
    return found


# -- building a store of N runs ------------------------------------------------------------------


def _build_slice(url: str, art: str, start_i: int, stop_i: int) -> None:
    """Runs ``start_i .. stop_i - 1`` (3 params, 2 metrics, 3 cells each) via the public API."""
    rng = random.Random(start_i)
    t0 = 1_700_000_000.0
    with Store(StoreLocation(url=url, artifact_root=Path(art))) as store:
        for i in range(start_i, stop_i):
            start = t0 + i * 60.0
            rid = store.create_run(
                name=f"train-{i % 97}", experiment=EXPERIMENTS[i % len(EXPERIMENTS)],
                source=SOURCES[i % len(SOURCES)], notebook_path=f"/project/notebooks/nb{i % 20}.ipynb",
                start_time=start,
                params={"lr": rng.choice([0.1, 0.01, 0.001]), "depth": rng.randint(2, 12),
                        "model": rng.choice(["rf", "gbm", "logreg"])},
            )
            store.record_cells(rid, [
                CellRecord(seq=1, source="df = pd.read_csv('data.csv')", start_time=start,
                           duration=0.2, status="ok", execution_count=1, vars_defined=["df"]),
                CellRecord(seq=2, source="model = fit(df, lr=lr, depth=depth)",
                           start_time=start + 1, duration=3.0, status="ok", execution_count=2,
                           vars_defined=["model"], vars_used=["df"], var_sources={"df": 1}),
                CellRecord(seq=3, source="acc, loss = evaluate(model, df)", start_time=start + 4,
                           duration=0.5, status="ok", execution_count=3,
                           vars_used=["model", "df"], var_sources={"model": 2, "df": 1},
                           metrics=[MetricValue("accuracy", rng.random()),
                                    MetricValue("loss", rng.random() * 2)]),
            ])
            store.end_run(rid, STATUSES[i % len(STATUSES)], end_time=start + 5 + rng.random() * 50)


def build(url: str, art: Path, n_runs: int, procs: int) -> float:
    Store(StoreLocation(url=url, artifact_root=art)).close()  # schema once, before the workers
    step = -(-n_runs // procs)
    ctx = mp.get_context("spawn")
    started = time.perf_counter()
    workers = [ctx.Process(target=_build_slice, args=(url, str(art), i, min(n_runs, i + step)))
               for i in range(0, n_runs, step)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
        if w.exitcode != 0:
            raise SystemExit(f"building the store failed (worker exit {w.exitcode})")
    return time.perf_counter() - started


# -- measuring -----------------------------------------------------------------------------------


def median_wall(fn: Callable[[], object], repeat: int, warmup: int = 1) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def child_cpu() -> float:
    import resource

    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def cli_wall(args: Sequence[str], url: str, art: Path, cwd: Path, repeat: int = 5,
             cpu: list[float] | None = None) -> float:
    """Median wall time of ``nbmlops ARGS``; ``cpu`` receives the median CPU time of the
    process (user + system: what the command costs, however busy the machine is)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("NBMLOPS_")}
    env.update(NBMLOPS_STORE_URL=url, NBMLOPS_ARTIFACT_URL=str(art))
    cpus: list[float] = []

    def once() -> None:
        before = child_cpu()
        done = subprocess.run([console_script(), *args], cwd=cwd, env=env, capture_output=True,
                              text=True)
        cpus.append(child_cpu() - before)
        if done.returncode != 0:
            raise SystemExit(f"nbmlops {' '.join(args)} failed ({done.returncode}):\n{done.stderr}")

    wall = median_wall(once, repeat)
    if cpu is not None:
        cpu.append(statistics.median(cpus[1:] or cpus))
    return wall


def cell_batch(run_seq: int, first: int, n: int, rng: random.Random) -> list[CellRecord]:
    """``n`` cell records as capture makes them during Run All of a training notebook (each
    writer's own notebook: sources differ between writers, so no writer waits for another's
    uncommitted copy of the same source row)."""
    out = []
    for seq in range(first, first + n):
        src = (f"# {run_seq}/{seq}\nfeatures_{seq} = transform(df_{seq - 1}, cols=COLS, k={seq % 7})\n"
               f"model_{seq} = GradientBoostingClassifier(n_estimators={50 + seq % 50})\n"
               f"model_{seq}.fit(features_{seq}, y)\nscore_{seq} = accuracy_score(y, "
               f"model_{seq}.predict(features_{seq}))\n")
        prev = {f"df_{seq - 1}": seq - 1} if seq > 1 else {}
        out.append(CellRecord(
            seq=seq, source=src, start_time=time.time(), duration=rng.random(), status="ok",
            cell_id=f"cell-{seq % 40}", execution_count=seq,
            vars_defined=[f"features_{seq}", f"model_{seq}", f"score_{seq}", f"df_{seq}"],
            vars_used=["COLS", "y", *prev], var_sources=prev,
            io=[ArtifactIO(uri=f"/data/run{run_seq}/part-{seq % 5}.parquet",
                           direction="read" if seq % 2 else "wrote", via="pandas.read_parquet",
                           kind="dataset", fingerprint=f"{run_seq:04d}{seq % 5:060d}",
                           size=1_000_000 + seq)] if seq % 3 == 0 else [],
            estimators=[Estimator(variable=f"model_{seq}", class_name="sklearn.ensemble."
                                  "GradientBoostingClassifier",
                                  params={"n_estimators": 50 + seq % 50, "max_depth": 3},
                                  fitted_on=[f"features_{seq}", "y"])] if seq % 4 == 0 else [],
            metrics=[MetricValue("accuracy", rng.random(), cell_seq=seq)],
        ))
    return out


def _process_cpu() -> float:
    import resource

    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def _backend_cpu(store: Store) -> Callable[[], float | None]:
    """CPU seconds of this writer's PostgreSQL backend process so far, when the server runs on
    this machine and /proc shows it (None otherwise: a remote server, or SQLite)."""
    if not store.url.startswith("postgresql"):
        return lambda: None
    from sqlalchemy import text

    with store._sessions.engine.connect() as conn:
        pid = conn.execute(text("SELECT pg_backend_pid()")).scalar()

    def cpu() -> float | None:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            return None
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    return cpu


def _writer(url: str, art: str, index: int, seconds: float, batch: int, go: float,
            results: mp.Queue) -> None:  # type: ignore[type-arg]
    rng = random.Random(index)
    with Store(StoreLocation(url=url, artifact_root=Path(art))) as store:
        rid = store.create_run(name=f"writer-{index}", experiment="bench", source="interactive")
        server_cpu = _backend_cpu(store)  # the pool's one connection: this writer's backend
        while time.time() < go:
            time.sleep(0.005)
        cpu0, server0 = _process_cpu(), server_cpu()
        started = time.perf_counter()
        seq, latencies = 1, []
        while time.perf_counter() - started < seconds:
            records = cell_batch(index, seq, batch, rng)
            t = time.perf_counter()
            store.record_cells(rid, records)
            latencies.append(time.perf_counter() - t)
            seq += batch
        elapsed = time.perf_counter() - started
        cpu, server1 = _process_cpu() - cpu0, server_cpu()
        server = None if server0 is None or server1 is None else server1 - server0
        store.end_run(rid, "finished")
    results.put((seq - 1, elapsed, latencies, cpu, server))


def writers(url: str, art: Path, n: int, seconds: float,
            batch: int) -> tuple[float, float, float, float, float | None]:
    """Total records/s of ``n`` concurrent writer processes, p50 and p95 batch latency (s), and
    CPU seconds per record of the writers (building the records included) and of their
    PostgreSQL backends (None when not measurable): unlike records/s, these do not depend on
    what else the machine runs."""
    ctx = mp.get_context("spawn")
    results: mp.Queue = ctx.Queue()  # type: ignore[type-arg]
    go = time.time() + 3.0  # every process has started and opened its store by then
    procs = [ctx.Process(target=_writer, args=(url, str(art), i, seconds, batch, go, results))
             for i in range(n)]
    for p in procs:
        p.start()
    got = [results.get(timeout=seconds + 120) for _ in procs]
    for p in procs:
        p.join()
    records = sum(g[0] for g in got)
    wall = max(g[1] for g in got)
    lat = sorted(x for g in got for x in g[2])
    servers = [g[4] for g in got]
    server = None if None in servers else sum(s for s in servers if s is not None) / records
    return (records / wall, lat[len(lat) // 2], lat[int(len(lat) * 0.95)],
            sum(g[3] for g in got) / records, server)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", help="an empty PostgreSQL database (default: a throwaway server)")
    parser.add_argument("--quick", action="store_true", help="1,000 runs, 3 s of writing")
    parser.add_argument("--runs", type=int, default=None)
    parser.add_argument("--writers", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=None, help="writing time per writer")
    parser.add_argument("--batch", type=int, default=10, help="cell records per record_cells")
    args = parser.parse_args(argv)
    n_runs = args.runs or (1_000 if args.quick else 10_000)
    seconds = args.seconds or (3.0 if args.quick else 6.0)

    server = None
    pg_url = args.url
    if pg_url is None:
        from tests._postgres import ThrowawayPostgres

        server = ThrowawayPostgres()
        pg_url = server.start()
        if pg_url is None:
            raise SystemExit("no PostgreSQL server binaries found; pass --url")
    try:
        with tempfile.TemporaryDirectory(prefix="nbmlops-pgbench-") as tmp:
            root = Path(tmp)
            sqlite_url = f"sqlite:///{root / 'sqlite' / 'nbmlops.db'}"
            stores = {"SQLite": (sqlite_url, root / "sqlite" / "artifacts"),
                      "PostgreSQL": (pg_url, root / "pg" / "artifacts")}
            rows: list[tuple[str, float, float, str]] = []
            for name, (url, art) in stores.items():
                print(f"{name}: building {n_runs:,} runs with 4 processes...", flush=True)
                secs = build(url, art, n_runs, 4)
                print(f"  built in {secs:.1f} s ({n_runs / secs:,.0f} runs/s)", flush=True)
            figures: dict[str, dict[str, float]] = {}
            for name, (url, art) in stores.items():
                f = figures[name] = {}
                f["pass"] = median_wall(lambda: subprocess.run([sys.executable, "-c", "pass"]), 5)
                load = os.getloadavg()[0]
                print(f"{name}: measuring (load average {load:.1f} on {os.cpu_count()} CPUs)...",
                      flush=True)
                cpu: list[float] = []
                f["runs ls"] = cli_wall(["runs", "ls"], url, art, root, cpu=cpu)
                f["runs ls cpu"] = cpu[0]
                f["runs ls filtered"] = cli_wall(["runs", "ls", "-e", "fraud", "-s", "failed",
                                                  "--sort", "name"], url, art, root)
                with Store(StoreLocation(url=url, artifact_root=art)) as store:
                    page = store.list_runs(limit=50)
                    assert page.total == n_runs and len(page.runs) == 50, page.total
                    assert all(len(r.params) == 3 and len(r.metrics) == 2 and r.cell_count == 3
                               for r in page.runs)
                    f["open"] = median_wall(
                        lambda url=url, art=art: Store(StoreLocation(url=url, artifact_root=art)).close(), 5)
                    f["list_runs"] = median_wall(lambda s=store: s.list_runs(limit=50), 20)
                    f["list_runs filtered"] = median_wall(
                        lambda s=store: s.list_runs(experiment="fraud", status="failed", limit=50), 20)
                    f["list_runs last page"] = median_wall(
                        lambda s=store: s.list_runs(limit=50, offset=n_runs - 50), 20)
                    f["list_runs search"] = median_wall(
                        lambda s=store: s.list_runs(search="train-42", limit=50), 20)
                print(f"{name}: {args.writers} writers x {seconds:g} s, batches of {args.batch}...",
                      flush=True)
                rate, p50, p95, cpu_rec, server_rec = writers(url, art, args.writers, seconds,
                                                              args.batch)
                f["records/s"], f["p50"], f["p95"] = rate, p50, p95
                f["writer cpu"] = cpu_rec
                if server_rec is not None:
                    f["server cpu"] = server_rec

            sq, pg = figures["SQLite"], figures["PostgreSQL"]
            label = {
                "pass": "python -c pass (interpreter start)",
                "runs ls": f"nbmlops runs ls, {n_runs:,} runs (CLI end to end, median of 5)",
                "runs ls cpu": "  the same, CPU time of the process (user + system)",
                "runs ls filtered": "nbmlops runs ls -e fraud -s failed --sort name",
                "open": "Store(...) open (in process, median of 5)",
                "list_runs": "Store.list_runs(limit=50) (in process, median of 20)",
                "list_runs filtered": "Store.list_runs(experiment, status)",
                "list_runs last page": "Store.list_runs(offset=n-50)",
                "list_runs search": "Store.list_runs(search='train-42')",
                "p50": f"record_cells batch of {args.batch}, p50 under {args.writers} writers",
                "p95": f"record_cells batch of {args.batch}, p95 under {args.writers} writers",
            }
            for key, text in label.items():
                rows.append((text, sq[key], pg[key], "s"))
            rows.append(("writer CPU per cell record (client process)", sq["writer cpu"] * 1000,
                         pg["writer cpu"] * 1000, "ms"))
            if "server cpu" in pg:
                rows.append(("  PostgreSQL backend CPU per cell record (SQLite: none)", 0.0,
                             pg["server cpu"] * 1000, "ms"))
            rows.append((f"cell records/s, {args.writers} writer processes", sq["records/s"],
                         pg["records/s"], "rec/s"))
            width = max(len(r[0]) for r in rows)
            print(f"\n{'measure'.ljust(width)}  {'SQLite':>10}  {'PostgreSQL':>10}  {'PG/SQLite':>9}")
            print(f"{'-' * width}  {'-' * 10}  {'-' * 10}  {'-' * 9}")
            for text, a, b, unit in rows:
                fmt = {"s": lambda v: f"{v:10.4f}", "ms": lambda v: f"{v:10.3f}"}.get(
                    unit, lambda v: f"{v:10,.0f}")
                ratio = f"{b / a:9.2f}" if a else f"{'':9}"
                print(f"{text.ljust(width)}  {fmt(a)}  {fmt(b)}  {ratio}")
            if os.getloadavg()[0] > (os.cpu_count() or 1):
                print(f"\nnote: load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs: "
                      "wall times include waiting for a CPU; the PG/SQLite ratios and the CPU "
                      "times are the figures to compare")
            ok_ls = pg["runs ls"] < TARGET_RUNS_LS_S
            ok_w = pg["records/s"] >= TARGET_RECORDS_PER_S
            print(f"\nPostgreSQL `nbmlops runs ls` at {n_runs:,} runs: {pg['runs ls']:.3f} s end to "
                  f"end (store call {pg['list_runs'] * 1000:.1f} ms; target < {TARGET_RUNS_LS_S} s): "
                  f"{'PASS' if ok_ls else 'FAIL'}")
            print(f"PostgreSQL, {args.writers} concurrent writers: {pg['records/s']:,.0f} cell "
                  f"records/s (target >= {TARGET_RECORDS_PER_S:,.0f}): {'PASS' if ok_w else 'FAIL'}")
            return 0 if ok_ls and ok_w else 1
    finally:
        if server is not None:
            server.stop()


if __name__ == "__main__":
    sys.exit(main())
