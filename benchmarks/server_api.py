"""How fast the server extension answers the panel, with 10,000 runs and 1,000,000 cells.

Builds a temporary store through the public ``Store`` API (``create_run`` + one
``record_cells`` batch of 100 cell executions per run; every fifth cell reads a dataset, the
next four use the previous cell's variable, the fifth writes a model: artifact lineage 5 levels
deep), starts a real ``jupyter server`` with the extension on 127.0.0.1, then times 20 calls of

* ``GET /nbmlops/api/runs`` (first page of 50, newest first);
* ``GET /nbmlops/api/runs/{id}/cells`` (a run's 100 cell executions, with stale marks);
* ``GET /nbmlops/api/lineage?target=<model file>`` (upstream, 5 levels: model <- 5 cells <- csv);
* ``GET /nbmlops/api/notebook-run`` (what the panel polls every second) and its idle poll;
* ``GET /nbmlops/api/monitoring`` and ``GET /nbmlops/api/monitoring/wine?minutes=60`` (the
  Monitoring tab's polls) over a prediction log of 200,000 rows x 13 features written in the
  last hour (40 parquet parts, as ``nbmlops serve`` writes them at ~55 requests/s).

Each figure is the median of the server-side time (the handler's ``Server-Timing`` header:
parsing, thread pool, store query, JSON) and of the round trip, printed against a baseline
measured in the same run: the round trip of Jupyter Server's own trivial ``GET /api``.

Usage::

    .venv/bin/python benchmarks/server_api.py            # 10,000 runs x 100 cells (~ minutes)
    .venv/bin/python benchmarks/server_api.py --quick    # 500 runs x 100 cells
    .venv/bin/python benchmarks/server_api.py --keep DIR # reuse/keep the generated store in DIR
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from pathlib import Path

from nbmlops.config import StoreLocation
from nbmlops.store import ArtifactIO, CellRecord, Estimator, MetricValue, Store

TARGETS_MS = {"runs first page": 100.0, "a run's cells": 100.0, "lineage 5 levels": 200.0}
CELLS_PER_RUN = 100
GROUP = 5  # cells per lineage chain: csv -> c0 -> c1 -> c2 -> c3 -> c4 -> model
EXPERIMENTS = ["churn", "fraud", "pricing", "ranking", "vision"]


def location(root: Path) -> StoreLocation:
    store_dir = root / ".nbmlops"
    return StoreLocation(url=f"sqlite:///{store_dir / 'nbmlops.db'}",
                         artifact_root=store_dir / "artifacts", store_dir=store_dir)


def records(root: Path, run_no: int, t0: float) -> list[CellRecord]:
    out: list[CellRecord] = []
    for seq in range(CELLS_PER_RUN):
        g, k = divmod(seq, GROUP)
        rec = CellRecord(
            seq=seq,
            source=f"v{k} = step_{k}(v{k - 1})  # run {run_no} group {g}" if k else
            f"v0 = pd.read_csv('data/d{run_no % 50}.csv')",
            start_time=t0 + seq,
            duration=0.01 + (seq % 7) / 100,
            status="ok" if seq % 97 else "error",
            cell_id=f"c{run_no}-{seq}",
            execution_count=seq + 1,
            vars_defined=[f"v{k}"],
            vars_used=[f"v{k - 1}"] if k else [],
            var_sources={f"v{k - 1}": seq - 1} if k else {},
        )
        if k == 0:
            rec.io.append(ArtifactIO(uri=str(root / "data" / f"d{run_no % 50}.csv"), direction="read",
                                     via="pandas.read_csv", kind="dataset",
                                     fingerprint=f"sha256:{run_no % 50:064x}", size=1000))
        if k == GROUP - 1:
            rec.io.append(ArtifactIO(uri=str(root / "models" / f"m{run_no}-{g}.joblib"),
                                     direction="wrote", via="joblib.dump", kind="model",
                                     fingerprint=f"sha256:{run_no * 1000 + g:064x}", size=5000))
            rec.estimators.append(Estimator(variable=f"v{k}", class_name="sklearn.tree.DecisionTree",
                                            params={"max_depth": g}, fitted_on=[f"v{k - 1}"]))
            rec.metrics.append(MetricValue("acc", 0.5 + (run_no % 50) / 100, step=g))
        out.append(rec)
    return out


def build(root: Path, n_runs: int) -> float:
    (root / "data").mkdir(parents=True, exist_ok=True)
    rng = random.Random(5)
    started = time.perf_counter()
    t0 = 1_700_000_000.0
    with Store(location(root)) as store:
        for i in range(n_runs):
            start = t0 + i * 600
            rid = store.create_run(
                name=f"train-{i % 97}", experiment=EXPERIMENTS[i % 5], source="papermill",
                notebook_path=str(root / f"nb{i % 20}.ipynb"), start_time=start,
                params={"lr": rng.choice([0.1, 0.01]), "depth": rng.randint(2, 12)},
                run_id=f"{i:032x}",
            )
            store.record_cells(rid, records(root, i, start))
            store.end_run(rid, "finished", end_time=start + CELLS_PER_RUN)
            if i and i % 1000 == 0:
                rate = i / (time.perf_counter() - started)
                print(f"  {i} runs, {i * CELLS_PER_RUN:,} cells ({rate:.0f} runs/s)", flush=True)
    return time.perf_counter() - started


def prediction_log(root: Path, rows: int = 200_000, per_file: int = 5_000) -> None:
    """An hour of a served model's traffic, written by the service's own writer."""
    from nbmlops.monitoring.predlog import PredictionLogWriter

    directory = location(root).predictions_dir / "wine"
    writer = PredictionLogWriter(directory, flush_rows=10**9, max_pending_rows=10**9)
    rng = random.Random(0)
    now = time.time()
    features = [f"f{i}" for i in range(13)]
    for start in range(0, rows, per_file):
        n = min(per_file, rows - start)
        ts = [now - 3600 + (start + i) * 3600 / rows for i in range(n)]
        writer.append_rows(
            request_ids=[f"r{start + i}" for i in range(n)], rows=[0] * n, ts=ts, model="wine",
            version=1, aliases=["champion"] * n, roles=["primary"] * n,
            latency_ms=[rng.uniform(2, 12) for _ in range(n)],
            inputs={f: [rng.gauss(0, 1) for _ in range(n)] for f in features},
            predictions=[str(rng.randrange(3)) for _ in range(n)], proba=None)
        writer.flush()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Server:
    def __init__(self, root: Path) -> None:
        self.port, self.token = free_port(), os.urandom(12).hex()
        env = {k: v for k, v in os.environ.items() if not k.startswith("NBMLOPS_")}
        env["JUPYTER_RUNTIME_DIR"] = tempfile.mkdtemp()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "jupyter_server", "--no-browser", "--allow-root",
             "--ip=127.0.0.1", f"--port={self.port}", f"--IdentityProvider.token={self.token}",
             f"--ServerApp.root_dir={root}", "--ServerApp.jpserver_extensions={'nbmlops.server': True}",
             "--NbmlopsServerApp.check_files=True"],
            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 60
        while True:
            try:
                self.get("api")
                break
            except OSError:
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    raise SystemExit("jupyter server did not start") from None
                time.sleep(0.2)

    def get(self, endpoint: str, **params: str) -> tuple[float, float | None, bytes]:
        qs = ("?" + urllib.parse.urlencode(params)) if params else ""
        req = urllib.request.Request(f"http://127.0.0.1:{self.port}/{endpoint}{qs}",
                                     headers={"Authorization": f"token {self.token}"})
        t = time.perf_counter()
        with urllib.request.urlopen(req, timeout=60) as resp:
            body = resp.read()
            timing = resp.headers.get("Server-Timing")
        rtt = (time.perf_counter() - t) * 1000
        m = re.search(r"dur=([0-9.]+)", timing or "")
        return rtt, (float(m.group(1)) if m else None), body

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def measure(server: Server, reps: int, endpoint: str, **params: str) -> tuple[float, float | None]:
    server.get(endpoint, **params)  # warm-up (first open, caches)
    rtts, durs = [], []
    for _ in range(reps):
        rtt, dur, _ = server.get(endpoint, **params)
        rtts.append(rtt)
        if dur is not None:
            durs.append(dur)
    return statistics.median(rtts), (statistics.median(durs) if durs else None)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="500 runs instead of 10,000")
    ap.add_argument("--runs", type=int, default=None)
    ap.add_argument("--reps", type=int, default=20)
    ap.add_argument("--keep", type=Path, default=None, help="build the store here (reused if present)")
    args = ap.parse_args()
    n_runs = args.runs or (500 if args.quick else 10_000)
    root = args.keep or Path(tempfile.mkdtemp(prefix="nbmlops-bench-"))
    db = root / ".nbmlops" / "nbmlops.db"
    if db.exists():
        print(f"reusing the store in {root}")
        build_s = None
    else:
        print(f"building {n_runs:,} runs x {CELLS_PER_RUN} cells = {n_runs * CELLS_PER_RUN:,} "
              f"cell executions in {root} ...", flush=True)
        build_s = build(root, n_runs)
        print(f"built in {build_s:.1f} s ({n_runs / build_s:.0f} runs/s, "
              f"{n_runs * CELLS_PER_RUN / build_s:,.0f} cells/s); "
              f"{db.stat().st_size / 2**20:.0f} MiB")
    if not (location(root).predictions_dir / "wine").is_dir():
        prediction_log(root)
    server = Server(root)
    try:
        last = n_runs - 1
        run_id = f"{last:032x}"
        model = f"models/m{last}-{CELLS_PER_RUN // GROUP - 1}.joblib"
        lineage = json.loads(server.get("nbmlops/api/lineage", target=model)[2])
        cells = json.loads(server.get(f"nbmlops/api/runs/{run_id}/cells")[2])
        assert len(cells["cells"]) == CELLS_PER_RUN, len(cells["cells"])
        assert len([n for n in lineage["nodes"] if n["type"] == "cell"]) == GROUP, lineage["nodes"]
        base_rtt, _ = measure(server, args.reps, "api")
        rows = [
            ("runs first page", measure(server, args.reps, "nbmlops/api/runs")),
            ("runs, filtered (experiment+status)", measure(
                server, args.reps, "nbmlops/api/runs", experiment="fraud", status="finished")),
            ("a run's cells", measure(server, args.reps, f"nbmlops/api/runs/{run_id}/cells")),
            ("lineage 5 levels", measure(server, args.reps, "nbmlops/api/lineage", target=model)),
            ("panel poll: notebook-run (new run)", measure(
                server, args.reps, "nbmlops/api/notebook-run", path=f"nb{last % 20}.ipynb")),
            ("panel poll: notebook-run (idle)", measure(
                server, args.reps, "nbmlops/api/notebook-run", path=f"nb{last % 20}.ipynb",
                run_id=run_id, since_seq=str(CELLS_PER_RUN - 1))),
            ("monitoring: served models", measure(server, args.reps, "nbmlops/api/monitoring")),
            ("monitoring/wine 60 min, 200k rows", measure(
                server, args.reps, "nbmlops/api/monitoring/wine", minutes="60")),
        ]
    finally:
        server.stop()
    print(f"\n{n_runs:,} runs, {n_runs * CELLS_PER_RUN:,} cell executions; median of {args.reps}"
          f" calls; baseline: GET /api round trip = {base_rtt:.2f} ms\n")
    print(f"| {'call':38} | server ms | x baseline | round trip ms | target | result |")
    print(f"|{'-' * 40}|-----------|------------|---------------|--------|--------|")
    failed = False
    for name, (rtt, dur) in rows:
        target = TARGETS_MS.get(name)
        server_ms = dur if dur is not None else rtt
        ok = target is None or server_ms < target
        failed |= not ok
        verdict = "info" if target is None else ("PASS" if ok else "FAIL")
        tgt = f"< {target:.0f}" if target else ""
        print(f"| {name:38} | {server_ms:9.2f} | {server_ms / base_rtt:10.1f} | {rtt:13.2f} |"
              f" {tgt:6} | {verdict:6} |")
    if args.keep is None:
        shutil.rmtree(root, ignore_errors=True)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
