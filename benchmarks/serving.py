"""What serving a model costs: ``nbmlops serve`` under load, against the in-process floor and
against ``mlflow models serve`` of the same model, measured in one run.

The model: ``RandomForestClassifier(n_estimators=100, random_state=0)`` fitted on scikit-learn's
bundled wine data (a 178 x 13 DataFrame), registered as ``wine`` (alias ``champion``) in a
temporary store. Every scenario sends the same single row.

1. **floor**: ``model.predict`` on a one-row DataFrame in this process, per-call latency in a
   loop (plus, for information, the DataFrame built from the JSON record each call, and one
   16-row call: what micro-batching 16 concurrent requests would cost).
2. **nbmlops serve wine@champion**, prediction logging on (default) and off (``--no-log``):
   ``POST /v1/models/wine/predict`` with ``[{"alcohol": ..., ...}]``.
3. **mlflow models serve** of the same fitted model (``mlflow.sklearn.save_model`` with a
   signature, ``--env-manager local``), in its own virtualenv (created on first use with
   ``python -m venv`` + ``pip install mlflow`` from PyPI, kept in ``benchmarks/.mlflow-venv``,
   git-ignored): ``POST /invocations`` with ``{"dataframe_records": [...]}``. If the install
   fails the reason is printed and the scenario skipped. ``--mlflow-fast`` adds a scenario with
   uvloop + httptools put on mlflow's path (what nbmlops' uvicorn uses; ``pip install mlflow``
   brings neither), so the comparison is not just about the HTTP parser.

Load client (serving_client.py): closed loop, ``--connections`` keep-alive HTTP/1.1
connections (default 16) for ``--duration`` seconds (default 30, ``--quick`` 5) after a warm-up,
self-stopping; asyncio + uvloop with a hand parser (about 35 us of client CPU per request here,
against ~180 us for ``http.client`` in threads: ``--client threads`` to compare). Client and
server share the machine's cores, so each scenario also prints the client's and the server's
CPU per request and the CPU used by everything else on the machine during the window (other
load makes the figures noisy; rerun when it is high).

Targets (issue 13): nbmlops p99 < 20 ms; logging on/off p50 <= 1.10x; nbmlops requests/s >=
1.5x mlflow's. A missed target prints FAIL; the script exits 0 unless a scenario broke.

Usage::

    .venv/bin/python benchmarks/serving.py                 # 30 s per scenario, ~3 min
    .venv/bin/python benchmarks/serving.py --quick         # 5 s per scenario
    .venv/bin/python benchmarks/serving.py --json out.json # figures as JSON too (- = stdout)
    .venv/bin/python benchmarks/serving.py --skip-mlflow --connections 32 --workers 2
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import platform
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import serving_client  # noqa: E402
import serving_profile  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_MLFLOW_VENV = ROOT / "benchmarks" / ".mlflow-venv"
MLFLOW_SPEC = "mlflow>=3,<4"
TARGET_P99_MS = 20.0
TARGET_LOG_RATIO = 1.10
TARGET_VS_MLFLOW = 1.5
MODEL = "wine"


# ------------------------------------------------------------------------------------ helpers


def nbmlops_script() -> str:
    found = shutil.which("nbmlops", path=str(Path(sys.executable).parent))
    if not found:
        raise SystemExit("the nbmlops console script is not installed next to this interpreter")
    return found


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def http_get(port: int, path: str, timeout: float = 2.0) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def http_post(port: int, path: str, body: bytes, timeout: float = 10.0) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("POST", path, body=body, headers={"Content-Type": "application/json"})
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("NBMLOPS_", "MLFLOW_", "VIRTUAL_ENV", "PYTHONPATH"))}
    env.update(extra)
    return env


def pct(values: Sequence[float], q: float) -> float:
    return serving_client.percentile(list(values), q)


class Machine:
    """CPU accounting for one measured window: the server's process tree, this process, and
    everything else on the machine (from /proc/stat through psutil)."""

    def __init__(self, server_pid: int | None) -> None:
        import psutil

        self.psutil = psutil
        self.server_pid = server_pid
        self.marks: list[tuple[float, float, float, float]] = []

    def _tree_cpu(self) -> float:
        if self.server_pid is None:
            return 0.0
        total = 0.0
        try:
            root = self.psutil.Process(self.server_pid)
            for p in [root, *root.children(recursive=True)]:
                try:
                    t = p.cpu_times()
                    total += t.user + t.system
                except self.psutil.Error:
                    pass
        except self.psutil.Error:
            pass
        return total

    def mark(self) -> None:
        t = self.psutil.cpu_times()
        busy = sum(t) - t.idle - getattr(t, "iowait", 0.0)
        me = self.psutil.Process().cpu_times()
        self.marks.append((time.perf_counter(), busy, self._tree_cpu(), me.user + me.system))

    def window(self) -> dict[str, float]:
        if len(self.marks) < 2:
            return {}
        (t0, b0, s0, c0), (t1, b1, s1, c1) = self.marks[0], self.marks[-1]
        wall = max(t1 - t0, 1e-9)
        server, client, busy = s1 - s0, c1 - c0, b1 - b0
        return {"wall_s": wall, "server_cpu_s": server, "client_cpu_s": client,
                "machine_busy_cores": busy / wall,
                "other_busy_cores": max(0.0, busy - server - client) / wall}


# ------------------------------------------------------------------------------------- the model


@dataclass
class Bench:
    root: Path
    model: Any
    X: Any
    row: dict[str, float]
    version: int
    model_file: Path
    build_s: float


def build(root: Path) -> Bench:
    import joblib
    from sklearn.datasets import load_wine
    from sklearn.ensemble import RandomForestClassifier

    from nbmlops.config import StoreLocation
    from nbmlops.registry import register
    from nbmlops.store import Store

    t0 = time.perf_counter()
    X, y = load_wine(return_X_y=True, as_frame=True)
    model = RandomForestClassifier(n_estimators=100, random_state=0).fit(X, y)
    store_dir = root / ".nbmlops"
    loc = StoreLocation(url=f"sqlite:///{store_dir / 'nbmlops.db'}",
                        artifact_root=store_dir / "artifacts", store_dir=store_dir)
    with Store(loc) as store:
        v = register(store, model, MODEL, alias="champion", reason="serving benchmark",
                     namespace={"model": model, "X": X, "y": y, "In": ["model.fit(X, y)"]})
    model_file = root / "model.joblib"
    joblib.dump(model, model_file)
    row = {k: float(v) for k, v in X.iloc[7].items()}
    return Bench(root=root, model=model, X=X, row=row, version=v.version, model_file=model_file,
                 build_s=time.perf_counter() - t0)


# ------------------------------------------------------------------------------------- results


@dataclass
class Scenario:
    name: str
    label: str
    p50_ms: float = float("nan")
    p99_ms: float = float("nan")
    rps: float = float("nan")
    requests: int = 0
    errors: int = 0
    client_cpu_us: float | None = None
    server_cpu_us: float | None = None
    other_busy_cores: float | None = None
    skipped: str | None = None
    info: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        def num(x: float | None) -> float | None:
            return None if x is None or x != x else round(x, 4)

        return {"name": self.name, "label": self.label, "p50_ms": num(self.p50_ms),
                "p99_ms": num(self.p99_ms), "rps": num(self.rps), "requests": self.requests,
                "errors": self.errors, "client_cpu_us_per_request": num(self.client_cpu_us),
                "server_cpu_us_per_request": num(self.server_cpu_us),
                "other_busy_cores": num(self.other_busy_cores), "skipped": self.skipped,
                "info": self.info}


def floor(bench: Bench, seconds: float) -> list[Scenario]:
    """model.predict on one row in process, per call; plus two informative variants."""
    import pandas as pd

    one = bench.X.iloc[[7]]
    sixteen = bench.X.iloc[:16]
    row = bench.row

    def loop(fn: Callable[[], Any], budget: float) -> list[float]:
        for _ in range(20):
            fn()
        out: list[float] = []
        perf = time.perf_counter
        end = perf() + budget
        while True:
            t0 = perf()
            if t0 >= end:
                return out
            fn()
            out.append((perf() - t0) * 1000.0)

    res = []
    for name, label, fn, budget in (
        ("floor", "model.predict(1-row DataFrame), in process",
         lambda: bench.model.predict(one), seconds),
        ("floor_from_json", "  + json.loads + DataFrame from the record",
         lambda: bench.model.predict(pd.DataFrame(json.loads(json.dumps([row])))),
         seconds / 3),
        ("floor_batch16", "  one predict of 16 rows (per call)",
         lambda: bench.model.predict(sixteen), seconds / 3),
    ):
        lat = loop(fn, budget)
        s = Scenario(name=name, label=label, p50_ms=pct(lat, 50), p99_ms=pct(lat, 99),
                     rps=len(lat) / sum(lat) * 1000.0, requests=len(lat))
        res.append(s)
    return res


def load(name: str, label: str, port: int, path: str, body: bytes, server_pid: int | None,
         args: argparse.Namespace) -> tuple[Scenario, serving_client.LoadResult]:
    machine = Machine(server_pid)
    result = serving_client.run(args.client, "127.0.0.1", port, path, body,
                                connections=args.connections, duration=args.duration,
                                warmup=args.warmup, mark=machine.mark)
    w = machine.window()
    s = Scenario(name=name, label=label, p50_ms=result.pct(50), p99_ms=result.pct(99),
                 rps=result.rps, requests=result.requests, errors=result.errors)
    if result.requests and w:
        s.client_cpu_us = w["client_cpu_s"] / result.requests * 1e6
        s.server_cpu_us = w["server_cpu_s"] / result.requests * 1e6
        s.other_busy_cores = w["other_busy_cores"]
        s.info["machine_busy_cores"] = round(w["machine_busy_cores"], 3)
    s.info["responses_total"] = result.responses_total
    if result.error_sample:
        s.info["error_sample"] = result.error_sample
    return s, result


# -------------------------------------------------------------------------------------- servers


class Server:
    """A server process in its own session, stopped by its process group id."""

    def __init__(self, cmd: list[str], *, cwd: Path, env: dict[str, str], log: Path) -> None:
        self.cmd = cmd
        self.log = log
        self._out = open(log, "wb")  # noqa: SIM115
        self.proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=self._out,
                                     stderr=subprocess.STDOUT, start_new_session=True)

    def wait_ready(self, port: int, path: str, timeout: float) -> float:
        t0 = time.perf_counter()
        while time.perf_counter() - t0 < timeout:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.cmd[0]} exited with {self.proc.returncode}:\n"
                                   f"{self.tail()}")
            try:
                status, _ = http_get(port, path, timeout=1.0)
                if status == 200:
                    return time.perf_counter() - t0
            except OSError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"{' '.join(self.cmd)} not ready after {timeout:.0f} s:\n{self.tail()}")

    def tail(self, n: int = 3000) -> str:
        self._out.flush()
        try:
            return self.log.read_bytes()[-n:].decode("utf-8", "replace")
        except OSError:
            return ""

    def stop(self, timeout: float = 15.0) -> None:
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(self.proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                self.proc.wait(5)
        self._out.close()


def logged_rows(directory: Path) -> int:
    import pyarrow.parquet as pq

    if not directory.is_dir():
        return 0
    return sum(pq.read_metadata(p).num_rows for p in directory.glob("part-*.parquet"))


def batch_stats(port: int) -> dict[str, Any] | None:
    """The service's micro-batching counters (GET /v1/models/NAME: batches), if it has them."""
    try:
        status, body = http_get(port, f"/v1/models/{MODEL}", timeout=5.0)
        b = json.loads(body).get("batches") if status == 200 else None
    except (OSError, ValueError):
        return None
    return b if isinstance(b, dict) else None


def run_nbmlops(bench: Bench, args: argparse.Namespace, *, log: bool,
                py_spy: str | None = None) -> Scenario:
    name = "nbmlops_log" if log else "nbmlops_nolog"
    label = f"nbmlops serve, logging {'on' if log else 'off (--no-log)'}"
    if py_spy:
        name, label = name + "_profiled", label + ", under py-spy"
    port = free_port()
    cmd = [nbmlops_script(), "serve", f"{MODEL}@champion", "--host", "127.0.0.1",
           "--port", str(port)]
    if args.workers:
        cmd += ["--workers", str(args.workers)]
    if not log:
        cmd.append("--no-log")
    server = Server(cmd, cwd=bench.root, env=clean_env(), log=bench.root / f"{name}.log")
    path = f"/v1/models/{MODEL}/predict"
    body = json.dumps([bench.row]).encode()
    preddir = bench.root / ".nbmlops" / "predictions" / MODEL
    before = logged_rows(preddir)
    try:
        ready = server.wait_ready(port, "/health", args.start_timeout)
        status, first = http_post(port, path, body)
        if status != 200 or b"predictions" not in first:
            raise RuntimeError(f"{path} answered {status}: {first[:500]!r}")
        b0 = batch_stats(port)
        spy = None
        if py_spy:
            raw = bench.root / f"{name}.pyspy.txt"
            spy = serving_profile.start(py_spy, server.proc.pid, args.warmup + args.duration, raw)
        s, result = load(name, label, port, path, body, server.proc.pid, args)
        b1 = batch_stats(port)
        if b0 and b1 and all(isinstance(b.get(k), (int, float)) for b in (b0, b1)
                             for k in ("count", "requests", "busy_s")):
            n = b1["count"] - b0["count"]
            s.info["batches"] = n
            s.info["mean_batch_requests"] = round((b1["requests"] - b0["requests"]) / max(1, n), 2)
            s.info["batch_thread_busy_share"] = round(
                (b1["busy_s"] - b0["busy_s"]) / (args.warmup + args.duration), 3)
        if spy is not None:
            _, err = spy.communicate(timeout=60)
            if spy.returncode == 0 and raw.exists():
                s.info["profile_stages"] = serving_profile.summarize(raw)
                s.info["profile_threads"] = serving_profile.thread_samples(raw)
            else:
                s.info["profile_error"] = err.decode("utf-8", "replace")[-500:]
        s.info["ready_s"] = round(ready, 3)
        s.info["response"] = first.decode("utf-8", "replace")[:300]
    finally:
        server.stop()
    if log:
        # every answered request (incl. warm-up and the check above) should be in the log
        s.info["logged_rows"] = logged_rows(preddir) - before
        s.info["answered"] = result.responses_total + 1
    if s.errors:
        s.info["server_log_tail"] = server.tail(1500)
    return s


# --------------------------------------------------------------------------------------- mlflow


SAVE_SCRIPT = r"""
import json, sys, joblib, pandas as pd, mlflow.sklearn
from mlflow.models import infer_signature
model = joblib.load(sys.argv[1])
X = pd.DataFrame(json.load(open(sys.argv[2])))
# mlflow 3 saves sklearn models with skops and asks to trust the tree type explicitly
mlflow.sklearn.save_model(model, sys.argv[3], signature=infer_signature(X, model.predict(X)),
                          skops_trusted_types=["sklearn.tree._tree.Tree"])
print(mlflow.__version__)
"""


def mlflow_venv(venv: Path, log: Callable[[str], None]) -> tuple[Path | None, str]:
    """The venv's python with mlflow importable, creating it on first use; (None, why) on
    failure."""
    py = venv / "bin" / "python"
    probe = [str(py), "-c", "import mlflow, sklearn; print(mlflow.__version__)"]
    if py.exists():
        out = subprocess.run(probe, capture_output=True, text=True)
        if out.returncode == 0:
            return py, out.stdout.strip()
    import numpy
    import pandas
    import sklearn

    log(f"creating {venv} (python -m venv + pip install {MLFLOW_SPEC}; a few minutes, once)")
    steps = [
        [sys.executable, "-m", "venv", str(venv)],
        [str(py), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", MLFLOW_SPEC,
         # the same versions as this venv, so the joblib file of the model loads there as is
         f"scikit-learn=={sklearn.__version__}", f"pandas=={pandas.__version__}",
         f"numpy=={numpy.__version__}"],
    ]
    base = getattr(sys, "_base_executable", None)
    if base and Path(base).exists():
        steps[0][0] = base
    for step in steps:
        out = subprocess.run(step, capture_output=True, text=True)
        if out.returncode != 0:
            lines = [ln for ln in (out.stderr or out.stdout).splitlines()
                     if ln.strip() and not ln.startswith("WARNING: Location")]
            return None, f"{' '.join(step[:4])} ... failed: {' | '.join(lines[-3:])}"
    out = subprocess.run(probe, capture_output=True, text=True)
    if out.returncode != 0:
        return None, f"mlflow does not import in {venv}: {out.stderr.strip()[-300:]}"
    return py, out.stdout.strip()


def fast_path(venv: Path) -> tuple[Path | None, str]:
    """uvloop + httptools for mlflow's uvicorn, installed apart (--target) and put on
    PYTHONPATH, so the plain mlflow venv stays as ``pip install mlflow`` made it."""
    target = venv.parent / (venv.name + "-fast")
    py = venv / "bin" / "python"
    if not (target / "uvloop").is_dir() or not (target / "httptools").is_dir():
        out = subprocess.run([str(py), "-m", "pip", "install", "--quiet",
                              "--disable-pip-version-check", "--target", str(target),
                              "uvloop", "httptools"], capture_output=True, text=True)
        if out.returncode != 0:
            return None, out.stderr.strip()[-300:]
    return target, ""


def run_mlflow(bench: Bench, args: argparse.Namespace, py: Path, *, fast: Path | None = None
               ) -> Scenario:
    name = "mlflow_fast" if fast else "mlflow"
    label = "mlflow models serve" + (" + uvloop/httptools" if fast else "")
    model_dir = bench.root / "mlflow-model"
    if not model_dir.exists():
        xfile = bench.root / "X.json"
        xfile.write_text(bench.X.to_json(orient="records"))
        out = subprocess.run([str(py), "-c", SAVE_SCRIPT, str(bench.model_file), str(xfile),
                              str(model_dir)], capture_output=True, text=True,
                             env=clean_env(), cwd=bench.root)
        if out.returncode != 0:
            shutil.rmtree(model_dir, ignore_errors=True)
            raise RuntimeError(f"mlflow.sklearn.save_model failed: {out.stderr[-1500:]}")
    port = free_port()
    mlflow_bin = py.parent / "mlflow"
    cmd = [str(mlflow_bin), "models", "serve", "-m", str(model_dir), "--env-manager", "local",
           "-h", "127.0.0.1", "-p", str(port), "-w", str(args.workers or 1)]
    # mlflow serve runs uvicorn through a shell: its venv's bin must come first on PATH
    env = clean_env(PATH=f"{py.parent}{os.pathsep}{os.environ.get('PATH', '')}",
                    MLFLOW_TRACKING_URI=(bench.root / "mlruns").as_uri())
    if fast is not None:
        env["PYTHONPATH"] = str(fast)
    server = Server(cmd, cwd=bench.root, env=env, log=bench.root / f"{name}.log")
    body = json.dumps({"dataframe_records": [bench.row]}).encode()
    try:
        ready = server.wait_ready(port, "/ping", args.start_timeout)
        status, first = http_post(port, "/invocations", body)
        if status != 200:
            raise RuntimeError(f"/invocations answered {status}: {first[:500]!r}")
        s, _ = load(name, label, port, "/invocations", body, server.proc.pid, args)
        s.info["ready_s"] = round(ready, 3)
        s.info["response"] = first.decode("utf-8", "replace")[:300]
    finally:
        server.stop()
    if s.errors:
        s.info["server_log_tail"] = server.tail(1500)
    return s


# -------------------------------------------------------------------------------------- report


def ratio(a: float | None, b: float | None) -> float | None:
    if a is None or b is None or a != a or b != b or b == 0:
        return None
    return a / b


def fmt(x: float | None, spec: str = ".2f", none: str = "-") -> str:
    return none if x is None or x != x else format(x, spec)


def report(scenarios: list[Scenario], args: argparse.Namespace, meta: dict[str, Any]
           ) -> dict[str, Any]:
    by = {s.name: s for s in scenarios}
    fl = by["floor"]
    ml = by.get("mlflow")
    ml_ok = ml is not None and ml.skipped is None and ml.requests > 0
    print()
    print(f"{args.connections} connections, {args.duration:g} s per scenario after "
          f"{args.warmup:g} s warm-up, client {args.client}, server workers "
          f"{args.workers or 'default'}; load average before {meta['loadavg_before']}")
    head = (f"| {'scenario':<44} | {'p50 ms':>7} | {'p99 ms':>7} | {'req/s':>8} | "
            f"{'p50 x floor':>11} | {'req/s x mlflow':>14} | {'CPU us/req srv':>14} | "
            f"{'cli':>5} | {'other load':>10} | {'errors':>6} |")
    print(head)
    print("|" + "|".join("-" * (len(c)) for c in head.split("|")[1:-1]) + "|")
    for s in scenarios:
        if s.skipped:
            print(f"| {s.label:<44} | skipped: {s.skipped}")
            continue
        vs_ml = ratio(s.rps, ml.rps) if ml is not None and ml_ok and \
            s.name.startswith(("nbmlops", "mlflow")) else None
        print(f"| {s.label:<44} | {fmt(s.p50_ms):>7} | {fmt(s.p99_ms):>7} | "
              f"{fmt(s.rps, '.0f'):>8} | {fmt(ratio(s.p50_ms, fl.p50_ms), '.1f'):>11} | "
              f"{fmt(vs_ml):>14} | {fmt(s.server_cpu_us, '.0f'):>14} | "
              f"{fmt(s.client_cpu_us, '.0f'):>5} | "
              f"{fmt(s.other_busy_cores, '.2f') + (' cores' if s.other_busy_cores is not None else ''):>10} | "
              f"{s.errors if s.name not in ('floor', 'floor_from_json', 'floor_batch16') else '':>6} |")
    print("(floor rows: req/s = calls/s of one thread in a loop; CPU us/req srv and cli: the server's "
          "process tree and this client, per counted request; other load: CPU busy on the machine "
          "outside both, in cores)")
    targets: list[dict[str, Any]] = []
    on, off = by.get("nbmlops_log"), by.get("nbmlops_nolog")

    def target(what: str, value: float | None, limit: str, ok: bool | None) -> None:
        targets.append({"target": what, "value": None if value is None else round(value, 3),
                        "limit": limit, "result": "n/a" if ok is None else
                        ("PASS" if ok else "FAIL")})

    if on and not on.skipped:
        target("nbmlops p99 latency, logging on (ms)", on.p99_ms, f"< {TARGET_P99_MS:g}",
               on.p99_ms < TARGET_P99_MS)
    if off and not off.skipped:
        target("nbmlops p99 latency, logging off (ms)", off.p99_ms, f"< {TARGET_P99_MS:g}",
               off.p99_ms < TARGET_P99_MS)
    if on and off and not on.skipped and not off.skipped:
        r = ratio(on.p50_ms, off.p50_ms)
        target("p50 logging on / off", r, f"<= {TARGET_LOG_RATIO:.2f}",
               None if r is None else r <= TARGET_LOG_RATIO)
    if on and not on.skipped:
        r = ratio(on.rps, ml.rps) if ml_ok and ml is not None else None
        target("req/s nbmlops (log on) / mlflow", r, f">= {TARGET_VS_MLFLOW:g}",
               None if r is None else r >= TARGET_VS_MLFLOW)
    if on and "logged_rows" in on.info:
        target("rows in the prediction log / answered requests",
               on.info["logged_rows"] / max(1, on.info["answered"]), "= 1 (info)", None)
    for s in scenarios:
        if "mean_batch_requests" in s.info:
            print(f"micro-batching, {s.label}: {s.info['batches']} batches, "
                  f"{s.info['mean_batch_requests']:.1f} requests per batch, batch thread busy "
                  f"{s.info['batch_thread_busy_share'] * 100:.0f} % of the time")
    for s in scenarios:
        stages = s.info.get("profile_stages")
        if stages:
            total = sum(stages.values()) or 1
            cpu = s.server_cpu_us or 0.0
            print(f"\nwhere the server's CPU goes ({s.label}; py-spy, {total} samples of active "
                  f"threads; us/request = share x {cpu:.0f} us server CPU per request):")
            for stage, n in stages.items():
                print(f"  {n / total * 100:5.1f} %  {n / total * cpu:7.0f} us  {stage}")
            print(f"  samples per thread: {s.info.get('profile_threads')}")
        elif s.info.get("profile_error"):
            print(f"\npy-spy failed: {s.info['profile_error']}")
    print()
    for t in targets:
        print(f"  {t['target']:<50} {fmt(t['value'], '.3f'):>9}  target {t['limit']:<8} "
              f"{t['result']}")
    return {"meta": meta, "scenarios": [s.to_dict() for s in scenarios], "targets": targets}


def machine_meta(args: argparse.Namespace) -> dict[str, Any]:
    import sklearn

    cpu = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT,
                            capture_output=True, text=True).stdout.strip()
    versions = {"python": platform.python_version(), "scikit-learn": sklearn.__version__}
    for mod in ("uvicorn", "starlette", "uvloop", "httptools", "pyarrow"):
        try:
            versions[mod] = __import__(mod).__version__
        except Exception:  # noqa: BLE001
            pass
    return {"cpus": os.cpu_count(), "cpu_model": cpu, "platform": platform.platform(),
            "commit": commit, "versions": versions,
            "loadavg_before": [round(x, 2) for x in os.getloadavg()],
            "connections": args.connections, "duration_s": args.duration,
            "warmup_s": args.warmup, "client": args.client, "workers": args.workers}


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--connections", type=int, default=16)
    p.add_argument("--duration", type=float, default=30.0, help="seconds per scenario")
    p.add_argument("--warmup", type=float, default=None,
                   help="seconds sent before counting (default 2, --quick 1)")
    p.add_argument("--quick", action="store_true", help="5 s per scenario")
    p.add_argument("--client", choices=("asyncio", "threads"), default="asyncio")
    p.add_argument("--workers", type=int, default=None,
                   help="--workers for both servers (default: nbmlops' default, mlflow 1)")
    p.add_argument("--skip-mlflow", action="store_true")
    p.add_argument("--mlflow-fast", action="store_true",
                   help="also mlflow with uvloop + httptools on its path")
    p.add_argument("--mlflow-venv", type=Path, default=DEFAULT_MLFLOW_VENV)
    p.add_argument("--only", choices=("floor", "nbmlops", "mlflow"), action="append",
                   help="run only these scenarios (repeatable; the floor always runs)")
    p.add_argument("--profile", action="store_true",
                   help="one more nbmlops run (logging on) under py-spy: where the server's "
                        "time goes (needs py-spy: pip install py-spy)")
    p.add_argument("--py-spy", metavar="PATH", help="the py-spy executable (default: on PATH)")
    p.add_argument("--start-timeout", type=float, default=120.0)
    p.add_argument("--json", metavar="PATH", help="write the figures as JSON (- = stdout)")
    p.add_argument("--keep", action="store_true", help="keep the temporary directory")
    args = p.parse_args(argv)
    if args.quick:
        args.duration = min(args.duration, 5.0)
    if args.warmup is None:
        args.warmup = 1.0 if args.quick else 2.0
    only = set(args.only or ("floor", "nbmlops", "mlflow"))

    def say(msg: str) -> None:
        print(msg, file=sys.stderr if args.json == "-" else sys.stdout, flush=True)

    meta = machine_meta(args)
    root = Path(tempfile.mkdtemp(prefix="nbmlops-bench-serving-"))
    scenarios: list[Scenario] = []
    broke = False
    try:
        bench = build(root)
        say(f"model: RandomForestClassifier(100) on wine (178 x 13), registered as "
            f"{MODEL}/{bench.version} @champion in {root} ({bench.build_s:.1f} s)")
        scenarios += floor(bench, min(max(args.duration / 3, 2.0), 10.0))
        say(f"floor: p50 {scenarios[0].p50_ms:.3f} ms, p99 {scenarios[0].p99_ms:.3f} ms")
        if "nbmlops" in only:
            for log in (True, False):
                try:
                    s = run_nbmlops(bench, args, log=log)
                except (RuntimeError, OSError) as exc:
                    broke = True
                    s = Scenario(name="nbmlops_log" if log else "nbmlops_nolog",
                                 label=f"nbmlops serve, logging {'on' if log else 'off'}",
                                 skipped=f"failed: {str(exc)[:2000]}")
                scenarios.append(s)
                say(f"{s.label}: " + (s.skipped or f"p50 {s.p50_ms:.2f} ms, p99 {s.p99_ms:.2f} "
                                      f"ms, {s.rps:.0f} req/s, {s.errors} errors"))
        if args.profile and "nbmlops" in only:
            spy = serving_profile.find_py_spy(args.py_spy)
            if spy is None:
                say("--profile: py-spy not found (pip install py-spy, or --py-spy PATH)")
            else:
                try:
                    s = run_nbmlops(bench, args, log=True, py_spy=spy)
                    scenarios.append(s)
                    say(f"{s.label}: p50 {s.p50_ms:.2f} ms, p99 {s.p99_ms:.2f} ms, "
                        f"{s.rps:.0f} req/s")
                except (RuntimeError, OSError) as exc:
                    say(f"profiled run failed: {exc}")
        if "mlflow" in only and not args.skip_mlflow:
            py, why = mlflow_venv(args.mlflow_venv, say)
            if py is None:
                say(f"mlflow scenario skipped: {why}")
                scenarios.append(Scenario(name="mlflow", label="mlflow models serve",
                                          skipped=why))
            else:
                meta["versions"]["mlflow"] = why
                runs: list[tuple[str, Path | None]] = [("mlflow", None)]
                if args.mlflow_fast:
                    fast, err = fast_path(args.mlflow_venv)
                    if fast is None:
                        say(f"mlflow + uvloop/httptools skipped: {err}")
                    else:
                        runs.append(("mlflow_fast", fast))
                for name, fast in runs:
                    try:
                        s = run_mlflow(bench, args, py, fast=fast)
                    except (RuntimeError, OSError) as exc:
                        s = Scenario(name=name, label="mlflow models serve",
                                     skipped=f"failed: {str(exc)[:2000]}")
                    scenarios.append(s)
                    say(f"{s.label}: " + (s.skipped or f"p50 {s.p50_ms:.2f} ms, p99 "
                                          f"{s.p99_ms:.2f} ms, {s.rps:.0f} req/s"))
        meta["loadavg_after"] = [round(x, 2) for x in os.getloadavg()]
        if args.json == "-":
            saved = sys.stdout
            sys.stdout = sys.stderr
            try:
                out = report(scenarios, args, meta)
            finally:
                sys.stdout = saved
            print(json.dumps(out, indent=2))
        else:
            out = report(scenarios, args, meta)
            if args.json:
                Path(args.json).write_text(json.dumps(out, indent=2) + "\n")
                print(f"figures written to {args.json}")
    finally:
        if args.keep:
            say(f"kept {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)
    return 1 if broke else 0


if __name__ == "__main__":
    sys.exit(main())
