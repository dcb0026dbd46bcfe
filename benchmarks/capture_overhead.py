"""Capture overhead of nbmlops, as ratios against a baseline measured in the same run.

One deterministic 300-cell notebook (about 200 trivial cells, 80 pandas cells on a 100k-row
DataFrame, 20 small scikit-learn fits) is executed through nbclient without the extension (plain
``nbclient.NotebookClient``) and with it (``nbmlops.execute.CapturingClient`` and
``--ext=nbmlops``) on each capture path, interleaved ``plain, headless, interactive, plain...``
so that drift of the machine cancels out. The paths (``--writer``): *headless* (``nbmlops run``:
the kernel journals, the launching process writes the store), *interactive* (a notebook in
JupyterLab: the kernel journals, its writer process writes the store) and *thread* (the
in-kernel writer thread, ``NBMLOPS_CAPTURE_WRITER=thread``). Reported, per path:

* total wall time of ``client.execute()`` (median over repetitions) and the ratio capture/plain;
* per-cell latency of trivial cells (kernel timestamps ``iopub.execute_input`` ->
  ``shell.execute_reply`` that nbclient stores in ``cell.metadata.execution``): median and p90,
  capture minus plain;
* store size per 1,000 recorded cell executions (database + WAL after the kernel shut down);
* ``%load_ext nbmlops`` in a fresh process, against ``%load_ext autoreload`` in the same process.

Correctness is checked too: every capture repetition must have recorded every cell, each with
its notebook cell id, and no cell may show an nbmlops warning. The script exits 1 when a check
fails and 0 otherwise, also when a performance target is missed (reported as FAIL).

Usage::

    .venv/bin/python benchmarks/capture_overhead.py            # full: 300 cells, 3 repetitions, headless + interactive
    .venv/bin/python benchmarks/capture_overhead.py --quick    # smoke test: 60 cells, 1 repetition
    .venv/bin/python benchmarks/capture_overhead.py --reps 5 --json figures.json
    .venv/bin/python benchmarks/capture_overhead.py --writer interactive,thread
    .venv/bin/python benchmarks/capture_overhead.py --profile  # + where the time goes, in-process
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import datetime as dt
import json
import os
import platform
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import nbformat
from nbclient import NotebookClient
from nbformat.v4 import new_code_cell, new_notebook

from nbmlops.config import resolve_location
from nbmlops.execute import CapturingClient, HeadlessCapture

#: wall-time targets per capture path (issue 14): headless (the launcher writes the store),
#: interactive (the kernel's writer process writes it) and the in-kernel thread fallback
TARGET_WALL_RATIO = {"headless": 1.02, "interactive": 1.03, "thread": 1.05}
TARGET_CELL_MS = 0.3
WRITERS = ("headless", "interactive", "thread")
TARGET_LOAD_MS = 200.0
KIND_KEY = "nbmlops_bench_kind"
_TCP_WARNING = "Kernel is running over TCP without encryption"


def clean_env(workdir: Path) -> dict[str, str]:
    """This process's environment without NBMLOPS_* and with an empty IPython dir of its own.

    User config or startup files (an auto-loaded extension, say) must not leak into either mode.
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith("NBMLOPS_")}
    ipython_dir = workdir / "ipython"
    ipython_dir.mkdir(exist_ok=True)
    env["IPYTHONDIR"] = str(ipython_dir)
    return env


# -- the notebook ---------------------------------------------------------------------------------

SETUP_CELLS = [
    "import numpy as np\n"
    "import pandas as pd\n"
    "from sklearn.datasets import load_breast_cancer, load_iris\n"
    "from sklearn.linear_model import LogisticRegression\n"
    "from sklearn.metrics import accuracy_score\n"
    "from sklearn.model_selection import train_test_split\n"
    "from sklearn.preprocessing import StandardScaler\n"
    "from sklearn.tree import DecisionTreeClassifier",
    "rng = np.random.default_rng(0)\n"
    "N = 100_000\n"
    "df = pd.DataFrame({\n"
    '    "id": np.arange(N),\n'
    '    "cat": rng.choice(list("abcdefghij"), N),\n'
    '    "x": rng.normal(0.0, 1.0, N),\n'
    '    "y": rng.uniform(0.0, 100.0, N),\n'
    '    "z": rng.integers(0, 1000, N),\n'
    "})\n"
    'lookup = pd.DataFrame({"cat": list("abcdefghij"), "weight": np.arange(10) / 10})',
    "Xi, yi = load_iris(return_X_y=True)\n"
    "Xi_tr, Xi_te, yi_tr, yi_te = train_test_split(Xi, yi, test_size=0.3, random_state=0)\n"
    "Xb, yb = load_breast_cancer(return_X_y=True)\n"
    "Xb_tr, Xb_te, yb_tr, yb_te = train_test_split(Xb, yb, test_size=0.3, random_state=0)\n"
    "scaler = StandardScaler().fit(Xb_tr)\n"
    "Xb_tr_s, Xb_te_s = scaler.transform(Xb_tr), scaler.transform(Xb_te)",
]


def _pandas_cell(i: int, k: int, rng: random.Random) -> str:
    """The k-th pandas cell (cell index i): a rotation of typical DataFrame work."""
    cat = rng.choice("abcdefghij")
    if k % 10 == 9:  # a to_csv/read_csv round-trip now and then
        rows = rng.choice([5_000, 10_000, 20_000])
        return (
            f'df.iloc[:{rows}].to_csv("part_{i}.csv", index=False)\n'
            f'r{i} = pd.read_csv("part_{i}.csv")\n'
            f'r{i}_total = float(r{i}["y"].sum())'
        )
    kind = k % 7
    if kind == 0:
        return (
            f'g{i} = df.groupby("cat").agg(x_mean=("x", "mean"), y_sum=("y", "sum"), '
            f'n=("z", "size"))'
        )
    if kind == 1:
        a, b = rng.randint(2, 9), rng.randint(2, 9)
        return f'df["c{k % 8}"] = df["x"] * {a} + df["y"] / {b}'
    if kind == 2:
        t = round(rng.uniform(-1.0, 1.5), 2)
        return f'sel{i} = df[(df["x"] > {t}) & (df["cat"] == "{cat}")]\nn{i} = len(sel{i})'
    if kind == 3:
        return f'top{i} = df.nlargest(100, "y")[["id", "cat", "y"]]'
    if kind == 4:
        return f'd{i} = df[["x", "y", "z"]].describe()'
    if kind == 5:
        return f'm{i} = df.merge(lookup, on="cat", how="left")\nw{i} = float((m{i}["weight"] * m{i}["y"]).mean())'
    return f'p{i} = df.pivot_table(index="cat", values=["x", "y"], aggfunc="mean")'


def _sklearn_cell(i: int, k: int, rng: random.Random) -> str:
    """The k-th scikit-learn cell: a small fit on bundled data and an accuracy_score."""
    kind = k % 3
    if kind == 0:
        c = rng.choice([0.1, 0.5, 1.0, 2.0])
        return (
            f"clf{i} = LogisticRegression(C={c}, max_iter=1000).fit(Xi_tr, yi_tr)\n"
            f"acc{i} = accuracy_score(yi_te, clf{i}.predict(Xi_te))"
        )
    if kind == 1:
        depth = rng.randint(2, 8)
        return (
            f"clf{i} = DecisionTreeClassifier(max_depth={depth}, random_state={k})"
            f".fit(Xb_tr, yb_tr)\n"
            f"acc{i} = accuracy_score(yb_te, clf{i}.predict(Xb_te))"
        )
    c = rng.choice([0.1, 1.0, 10.0])
    return (
        f"clf{i} = LogisticRegression(C={c}, max_iter=2000).fit(Xb_tr_s, yb_tr)\n"
        f"acc{i} = accuracy_score(yb_te, clf{i}.predict(Xb_te_s))"
    )


def build_notebook(n_cells: int, seed: int = 20261125) -> nbformat.NotebookNode:
    """A deterministic notebook of ``n_cells`` cells: 2/3 trivial, 4/15 pandas, 1/15 sklearn."""
    rng = random.Random(seed)
    n_sklearn = max(1, round(n_cells * 20 / 300))
    n_pandas = max(1, round(n_cells * 80 / 300) - 2)  # the DataFrame cell counts as pandas
    n_sklearn_fits = max(1, n_sklearn - 1)  # the data-loading cell counts as sklearn
    n_trivial = n_cells - len(SETUP_CELLS) - n_pandas - n_sklearn_fits
    if n_trivial < 1:
        raise ValueError(f"a notebook of {n_cells} cells is too small")
    kinds = ["trivial"] * n_trivial + ["pandas"] * n_pandas + ["sklearn"] * n_sklearn_fits
    rng.shuffle(kinds)
    cells = [new_code_cell(src) for src in SETUP_CELLS]
    for cell, kind in zip(cells, ("setup", "pandas", "sklearn"), strict=True):
        cell.metadata[KIND_KEY] = kind
    counters = {"pandas": 0, "sklearn": 0}
    for kind in kinds:
        i = len(cells)
        if kind == "trivial":
            source = f"a{i} = {i} + 1"
        elif kind == "pandas":
            source = _pandas_cell(i, counters["pandas"], rng)
        else:
            source = _sklearn_cell(i, counters["sklearn"], rng)
        if kind in counters:
            counters[kind] += 1
        cell = new_code_cell(source)
        cell.metadata[KIND_KEY] = kind
        cells.append(cell)
    nb = new_notebook(cells=cells)
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    # ids must be stable and unique: derive them from the position (nbformat >= 4.5)
    for i, cell in enumerate(nb.cells):
        cell["id"] = f"bench-{i:04d}"
    nbformat.validate(nb)
    return nb


# -- running it -----------------------------------------------------------------------------------


@dataclass
class RunResult:
    mode: str  # plain | capture
    rep: int
    writer: str | None = field(default=None, kw_only=True)  # capture path (WRITERS)
    wall_s: float
    span_s: float  # first execute_input -> last execute_reply (kernel clock)
    cell_ms: dict[str, list[float]]  # per kind
    run_id: str | None = None
    recorded_cells: int | None = None
    cells_with_id: int | None = None
    store_bytes: int | None = None
    store_files: dict[str, int] = field(default_factory=dict)
    nbmlops_warnings: list[str] = field(default_factory=list)
    kernel_stderr: list[str] = field(default_factory=list)
    #: the run's own measurement of its hooks (tag nbmlops.capture_ms_per_cell)
    hook_ms_per_cell: float | None = None


def _ts(value: str) -> dt.datetime:
    return dt.datetime.fromisoformat(value.replace("Z", "+00:00"))


def cell_timings(nb: nbformat.NotebookNode) -> tuple[float, dict[str, list[float]]]:
    """Per-cell kernel-side durations in ms grouped by kind, and the span of all cells in s."""
    per_kind: dict[str, list[float]] = {}
    starts: list[dt.datetime] = []
    ends: list[dt.datetime] = []
    for cell in nb.cells:
        timing = cell.metadata.get("execution", {})
        if "iopub.execute_input" not in timing or "shell.execute_reply" not in timing:
            raise RuntimeError(f"cell {cell.get('id')} has no execution timing")
        start, end = _ts(timing["iopub.execute_input"]), _ts(timing["shell.execute_reply"])
        starts.append(start)
        ends.append(end)
        kind = cell.metadata.get(KIND_KEY, "other")
        per_kind.setdefault(kind, []).append((end - start).total_seconds() * 1000)
    return (max(ends) - min(starts)).total_seconds(), per_kind


def _nbmlops_warnings(nb: nbformat.NotebookNode) -> list[str]:
    found = []
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            text = out.get("text", "") if out.get("output_type") == "stream" else ""
            if "nbmlops" in text:
                found.append(f"{cell.get('id')}: {text.strip()[:200]}")
    return found


def _read_stderr(path: Path) -> list[str]:
    if not path.exists():
        return []
    lines = path.read_text(errors="replace").splitlines()
    # the TCP warning is one long line ipykernel logs at every start: not news
    return [ln for ln in lines if ln.strip() and _TCP_WARNING not in ln]


def prepare(
    nb: nbformat.NotebookNode, mode: str, rep: int, workdir: Path, timeout: int,
    writer: str = "headless",
) -> tuple[NotebookClient, dict[str, str], contextlib.ExitStack, str | None, Path | None]:
    """The client of one execution of ``nb`` (a copy), its kernel environment, the context
    the headless writer runs in, and with capture the run id and its fresh store."""
    nb = copy.deepcopy(nb)
    env = clean_env(workdir)
    run_id: str | None = None
    db: Path | None = None
    common: dict[str, Any] = {
        "timeout": timeout,
        "kernel_name": "python3",
        "resources": {"metadata": {"path": str(workdir)}},
    }
    headless = contextlib.ExitStack()
    if mode == "capture":
        store_dir = workdir / f"store-{writer}-{rep}"
        store_dir.mkdir()
        db = store_dir / "nbmlops.db"
        run_id = uuid.uuid4().hex
        # the product's headless path: the kernel journals, this process writes the store
        # (headless); or an interactive session: the kernel journals and its own writer
        # process writes the store (interactive), or the in-kernel writer thread (thread)
        capture = HeadlessCapture(
            resolve_location(f"sqlite:///{db}", store_dir / "artifacts"),
            notebook_path=workdir / "bench.ipynb", source="papermill",
            run_name=f"capture-overhead-{rep}", run_id=run_id, base_env=env,
        )
        if writer == "headless":
            headless.enter_context(capture)
        env = capture.env
        if writer == "thread":
            env["NBMLOPS_CAPTURE_WRITER"] = "thread"
        client: NotebookClient = CapturingClient(
            nb, extra_arguments=list(HeadlessCapture.EXTRA_ARGUMENTS), **common)
    else:
        client = NotebookClient(nb, **common)
    return client, env, headless, run_id, db


def run_once(
    nb: nbformat.NotebookNode, mode: str, rep: int, workdir: Path, timeout: int,
    writer: str = "headless",
) -> RunResult:
    """Execute a copy of ``nb`` in ``workdir``; with capture into a fresh store of its own."""
    client, env, headless, run_id, db = prepare(nb, mode, rep, workdir, timeout, writer)
    nb = client.nb
    stderr_path = workdir / f"kernel-{mode}-{rep}.stderr"
    with headless, stderr_path.open("w") as stderr:
        started = time.perf_counter()
        client.execute(env=env, stderr=stderr)
        wall = time.perf_counter() - started
    # leaving `headless` finished the follower (not timed): the store is complete now
    span, per_kind = cell_timings(nb)
    result = RunResult(mode, rep, wall, span, per_kind, run_id=run_id,
                       writer=writer if mode == "capture" else None)
    result.nbmlops_warnings = _nbmlops_warnings(nb)
    result.kernel_stderr = _read_stderr(stderr_path)
    if db is not None and run_id is not None:
        # sizes first: opening the store afterwards must not change them
        for suffix in ("", "-wal", "-shm"):
            f = Path(f"{db}{suffix}")
            if f.exists():
                result.store_files[f.name] = f.stat().st_size
        result.store_bytes = sum(
            size for name, size in result.store_files.items() if not name.endswith("-shm")
        )
        from nbmlops.errors import NbmlopsError
        from nbmlops.store import Store

        with Store(resolve_location(f"sqlite:///{db}", db.parent / "artifacts")) as store:
            try:
                executions = store.cell_executions(run_id)
                tag = store.get_run(run_id).tags.get("nbmlops.capture_ms_per_cell")
                result.hook_ms_per_cell = float(tag) if tag else None
            except NbmlopsError as exc:  # the run itself is missing: a correctness failure
                print(f"    capture rep {rep}: {exc}", file=sys.stderr)
                executions = []
        expected_ids = {c["id"] for c in nb.cells}
        result.recorded_cells = len(executions)
        result.cells_with_id = sum(1 for e in executions if e.cell_id in expected_ids)
    return result


def interleaved(nb: nbformat.NotebookNode, writer: str, rep: int, workdir: Path,
                timeout: int) -> dict[str, Any]:
    """One plain and one capturing kernel side by side, the notebook's cells run alternately
    (plain first on even cells, capture first on odd ones), each cell timed by the client from
    request to reply and idle; the set-up cell is not counted. Both kernels live through the same moments of the machine, so
    the ratio of their sums is paired cell by cell: a machine whose speed drifts by 10 % from
    one run to the next (this VM) moves both alike. Kernel start and shutdown are not counted."""
    plain_client, plain_env, _, _, _ = prepare(nb, "plain", rep, workdir, timeout)
    cap_client, cap_env, headless, _run_id, _db = prepare(nb, "capture", rep, workdir, timeout, writer)
    ms: dict[str, list[float]] = {"plain": [], "capture": []}
    with contextlib.ExitStack() as stack:
        stack.enter_context(headless)
        for client, env in ((plain_client, plain_env), (cap_client, cap_env)):
            client.reset_execution_trackers()
            stack.enter_context(client.setup_kernel(env=env))
        pairs = (("plain", plain_client), ("capture", cap_client))
        for index in range(len(nb.cells)):
            for mode, client in pairs if index % 2 == 0 else pairs[::-1]:
                started = time.perf_counter()
                client.execute_cell(client.nb.cells[index], index)
                ms[mode].append((time.perf_counter() - started) * 1000)
    kinds = [c.metadata[KIND_KEY] for c in nb.cells]
    # the set-up cell (imports) is left out: the kernel that runs it second finds the files in
    # the page cache
    kept = [(p, c, k) for p, c, k in zip(ms["plain"], ms["capture"], kinds, strict=True)
            if k != "setup"]
    trivial = [(p, c) for p, c, k in kept if k == "trivial"]
    plain_s, capture_s = sum(p for p, _, _ in kept) / 1000, sum(c for _, c, _ in kept) / 1000
    return {"writer": writer, "rep": rep, "plain_s": plain_s, "capture_s": capture_s,
            "ratio": capture_s / plain_s,
            "trivial_diff_ms": statistics.median(c - p for p, c in trivial)}


def run_interleaved(nb: nbformat.NotebookNode, writers: Sequence[str], reps: int, tmp: Path,
                    timeout: int) -> dict[str, Any]:
    print(f"interleaved: {len(nb.cells)} cells, {reps} repetition(s) per path, plain and capture "
          "kernels side by side, cells alternating", flush=True)
    results: dict[str, list[dict[str, Any]]] = {w: [] for w in writers}
    for rep in range(1, reps + 1):
        for writer in writers:
            d = tmp / f"interleaved-{writer}-{rep}"
            d.mkdir()
            r = interleaved(nb, writer, rep, d, timeout)
            results[writer].append(r)
            print(f"  rep {rep}/{reps} {writer:11s} cells plain {r['plain_s']:6.2f} s, capture "
                  f"{r['capture_s']:6.2f} s, x{r['ratio']:.3f}; trivial cell "
                  f"{r['trivial_diff_ms']:+.3f} ms", flush=True)
    print("\n| path | cells' wall time, capture / plain (median of reps) | range | trivial cell, "
          "median difference | target |\n|---|---|---|---|---|")
    summary: dict[str, Any] = {}
    for writer, rs in results.items():
        ratios = [r["ratio"] for r in rs]
        diff = statistics.median(r["trivial_diff_ms"] for r in rs)
        ratio = statistics.median(ratios)
        target = TARGET_WALL_RATIO[writer]
        ok = ratio <= target and diff <= TARGET_CELL_MS
        print(f"| {writer} | x{ratio:.3f} | x{min(ratios):.3f}..x{max(ratios):.3f} | {diff:+.3f} ms "
              f"| <= x{target}, <= +{TARGET_CELL_MS} ms: {_verdict(ok)} |")
        summary[writer] = {"ratio": ratio, "trivial_diff_ms": diff, "reps": rs, "ok": ok}
    return summary


def empty_store_bytes(workdir: Path) -> int:
    """Size of a store holding only its schema: the fixed cost in every store-size figure."""
    from nbmlops.store import Store

    d = workdir / "store-empty"
    d.mkdir()
    db = d / "nbmlops.db"
    with Store(resolve_location(f"sqlite:///{db}", d / "artifacts")):
        pass
    return sum(Path(f"{db}{s}").stat().st_size for s in ("", "-wal") if Path(f"{db}{s}").exists())


# -- %load_ext in a fresh process -----------------------------------------------------------------

_LOAD_EXT_SCRIPT = """
import json, time
from IPython.core.interactiveshell import InteractiveShell
shell = InteractiveShell.instance()
t0 = time.perf_counter()
shell.run_line_magic("load_ext", "autoreload")
t1 = time.perf_counter()
shell.run_line_magic("load_ext", "nbmlops")
t2 = time.perf_counter()
print(json.dumps({"autoreload_ms": (t1 - t0) * 1000, "nbmlops_ms": (t2 - t1) * 1000}))
"""


def time_load_ext(workdir: Path, reps: int) -> list[dict[str, float]]:
    results = []
    for i in range(reps):
        d = workdir / f"load-ext-{i}"
        d.mkdir()
        env = clean_env(workdir)
        env["NBMLOPS_STORE_URL"] = f"sqlite:///{d / 'nbmlops.db'}"
        env["NBMLOPS_ARTIFACT_URL"] = str(d / "artifacts")
        proc = subprocess.run(
            [sys.executable, "-c", _LOAD_EXT_SCRIPT],
            cwd=d, env=env, capture_output=True, text=True, timeout=120, check=False,
        )
        lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
        if proc.returncode != 0 or not lines:
            raise RuntimeError(f"load_ext subprocess failed ({proc.returncode}): {proc.stderr}")
        results.append(json.loads(lines[-1]))
    return results


# -- where the time goes: the kernel side in-process ----------------------------------------------


def profile_worker(mode: str, n_cells: int, workdir: Path) -> dict[str, Any]:
    """Run the notebook in this process with ``InteractiveShell`` (no kernel, no messaging).

    With ``capture``, the session's ``pre_run_cell``/``post_run_cell`` hooks are re-registered
    behind timers, and the CPU time of the ``nbmlops-writer`` thread is read from its thread
    clock. cProfile (hooks only) runs on odd cells; timings come from even cells, which the
    profiler does not slow down.
    """
    import cProfile
    import pstats
    import threading

    os.chdir(workdir)
    os.environ["NBMLOPS_STORE_URL"] = f"sqlite:///{workdir / 'nbmlops.db'}"
    os.environ["NBMLOPS_ARTIFACT_URL"] = str(workdir / "artifacts")
    os.environ["NBMLOPS_RUN_SOURCE"] = "papermill"
    from IPython.core.interactiveshell import InteractiveShell
    from traitlets.config import Config

    nb = build_notebook(n_cells)
    config = Config()
    config.HistoryManager.hist_file = ":memory:"  # as nbclient's kernels
    shell = InteractiveShell.instance(config=config)
    hook_s: dict[str, list[float]] = {"pre_run_cell": [], "post_run_cell": []}
    prof = cProfile.Profile()
    profiling = False
    session: Any = None
    if mode == "capture":
        from nbmlops.capture.session import active_session

        shell.run_line_magic("load_ext", "nbmlops")
        session = active_session()
        session.flush(30)  # the run's start is written before the first cell
        for name in hook_s:
            original = getattr(session, name)
            shell.events.unregister(name, original)

            def timed(*args: Any, _f: Any = original, _n: str = name) -> None:
                if profiling:
                    prof.enable()
                    try:
                        _f(*args)
                    finally:
                        prof.disable()
                    return
                t = time.perf_counter()
                try:
                    _f(*args)
                finally:
                    hook_s[_n].append(time.perf_counter() - t)

            shell.events.register(name, timed)
    writer = next((t for t in threading.enumerate() if t.name == "nbmlops-writer"), None)

    def writer_cpu() -> float:
        if writer is None or writer.ident is None:
            return 0.0
        return time.clock_gettime(time.pthread_getcpuclockid(writer.ident))

    cpu0 = writer_cpu()
    kinds, run_ms = [], []
    for i, cell in enumerate(nb.cells):
        profiling = i % 2 == 1
        t = time.perf_counter()
        result = shell.run_cell(cell.source, store_history=True, cell_id=cell.get("id"))
        if not profiling:
            run_ms.append((time.perf_counter() - t) * 1000)
            kinds.append(cell.metadata[KIND_KEY])
        if not result.success:
            raise RuntimeError(f"cell {cell.get('id')} failed: {result.error_in_exec!r}")
    n_profiled = len(nb.cells) // 2
    out: dict[str, Any] = {"mode": mode, "namespace_size": len(shell.user_ns)}
    trivial = [ms for ms, k in zip(run_ms, kinds, strict=True) if k == "trivial"]
    q = max(1, len(trivial) // 4)
    out["trivial_run_cell_ms"] = {"median": statistics.median(trivial),
                                  "first_quarter": statistics.median(trivial[:q]),
                                  "last_quarter": statistics.median(trivial[-q:])}
    if session is not None:
        session.flush(60)
        out["writer_cpu_ms_per_cell"] = (writer_cpu() - cpu0) * 1000 / len(nb.cells)
        for name, values in hook_s.items():
            tv = [v * 1000 for v, k in zip(values, kinds, strict=True) if k == "trivial"]
            out[f"{name}_ms"] = {"median": statistics.median(tv),
                                 "first_quarter": statistics.median(tv[:q]),
                                 "last_quarter": statistics.median(tv[-q:])}
        st = pstats.Stats(prof)
        rows = []
        root = f"{Path(__file__).resolve().parent.parent}/"
        for (filename, line, func), (_cc, ncalls, tottime, cumtime, _callers) in st.stats.items():  # type: ignore[attr-defined]
            short = filename.split("site-packages/")[-1].replace(root, "")
            rows.append({"function": f"{short}:{line}({func})", "calls": ncalls,
                         "tottime_us_per_cell": tottime * 1e6 / n_profiled,
                         "cumtime_us_per_cell": cumtime * 1e6 / n_profiled})
        out["top_cumulative"] = sorted(rows, key=lambda r: -r["cumtime_us_per_cell"])[:15]
        out["top_self"] = sorted(rows, key=lambda r: -r["tottime_us_per_cell"])[:10]
        session.close()
    return out


def profile(n_cells: int, workdir: Path) -> dict[str, Any]:
    """Both modes, each in a fresh process; prints a short report."""
    results: dict[str, Any] = {}
    for mode in ("plain", "capture"):
        d = workdir / f"profile-{mode}"
        d.mkdir()
        env = clean_env(workdir)
        proc = subprocess.run(
            [sys.executable, os.path.abspath(__file__), "--profile-worker", mode,
             "--cells", str(n_cells), "--workdir", str(d)],
            env=env, capture_output=True, text=True, timeout=900, check=False,
        )
        lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
        if proc.returncode != 0 or not lines:
            raise RuntimeError(f"profile worker failed ({proc.returncode}): {proc.stderr}")
        results[mode] = json.loads(lines[-1])
    p, c = results["plain"], results["capture"]
    print(f"\nin-process profile ({n_cells} cells, InteractiveShell, no kernel); trivial cells, "
          "median ms [first quarter .. last quarter of the notebook]:")
    for label, d in (("run_cell, plain", p["trivial_run_cell_ms"]),
                     ("run_cell, capture", c["trivial_run_cell_ms"]),
                     ("  pre_run_cell hook", c["pre_run_cell_ms"]),
                     ("  post_run_cell hook", c["post_run_cell_ms"])):
        print(f"  {label:22s} {d['median']:7.3f}  [{d['first_quarter']:.3f} .. {d['last_quarter']:.3f}]")
    print(f"  namespace size at the end: {c['namespace_size']} names; writer thread CPU: "
          f"{c['writer_cpu_ms_per_cell']:.2f} ms per cell (same process, shares the GIL)")
    print("  inside the hooks, cProfile on every other cell, by cumulative time "
          "(us per profiled cell, all kinds; inflated by the profiler):")
    for r in c["top_cumulative"]:
        print(f"    {r['cumtime_us_per_cell']:8.1f} cum {r['tottime_us_per_cell']:8.1f} self "
              f"{r['calls']:7d} calls  {r['function']}")
    return results


# -- report ---------------------------------------------------------------------------------------


def _pct(values: Sequence[float], q: float) -> float:
    """Percentile with linear interpolation (q in 0..100)."""
    xs = sorted(values)
    if not xs:
        return float("nan")
    pos = (len(xs) - 1) * q / 100
    lo = int(pos)
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)


@dataclass
class Row:
    metric: str
    baseline: str
    capture: str
    comparison: str
    target: str
    result: str  # PASS | FAIL | info


def _verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


def summarize(
    runs: list[RunResult], load: list[dict[str, float]], empty_bytes: int, writer: str = "headless"
) -> tuple[list[Row], dict[str, Any]]:
    plain = [r for r in runs if r.mode == "plain"]
    capture = [r for r in runs if r.mode == "capture" and r.writer == writer]
    figures: dict[str, Any] = {}
    rows: list[Row] = []

    target = TARGET_WALL_RATIO[writer]
    wall_p = statistics.median(r.wall_s for r in plain)
    wall_c = statistics.median(r.wall_s for r in capture)
    ratio = wall_c / wall_p
    figures["wall_s"] = {"plain": wall_p, "capture": wall_c, "ratio": ratio,
                         "target_ratio": target, "pass": ratio <= target}
    rows.append(Row("notebook wall time, median (s)", f"{wall_p:.2f}", f"{wall_c:.2f}",
                    f"x{ratio:.3f}", f"<= x{target}", _verdict(ratio <= target)))

    best_p, best_c = min(r.wall_s for r in plain), min(r.wall_s for r in capture)
    paired = [c.wall_s / p.wall_s for p, c in zip(plain, capture, strict=True)]
    figures["wall_s"] |= {"best_plain": best_p, "best_capture": best_c,
                          "best_ratio": best_c / best_p, "paired_ratios": paired,
                          "per_rep": {"plain": [r.wall_s for r in plain],
                                      "capture": [r.wall_s for r in capture]}}
    rows.append(Row("  best of the repetitions (s)", f"{best_p:.2f}", f"{best_c:.2f}",
                    f"x{best_c / best_p:.3f}", "", "info"))

    span_p = statistics.median(r.span_s for r in plain)
    span_c = statistics.median(r.span_s for r in capture)
    figures["cells_span_s"] = {"plain": span_p, "capture": span_c, "ratio": span_c / span_p}
    rows.append(Row("  of which cells (1st input..last reply)", f"{span_p:.2f}", f"{span_c:.2f}",
                    f"x{span_c / span_p:.3f}", "", "info"))
    def busy(r: RunResult) -> float:
        return sum(sum(v) for v in r.cell_ms.values()) / 1000

    busy_p = statistics.median(busy(r) for r in plain)
    busy_c = statistics.median(busy(r) for r in capture)
    gap_p = statistics.median(r.span_s - busy(r) for r in plain)
    gap_c = statistics.median(r.span_s - busy(r) for r in capture)
    figures["cells_busy_s"] = {"plain": busy_p, "capture": busy_c, "ratio": busy_c / busy_p}
    figures["between_cells_s"] = {"plain": gap_p, "capture": gap_c, "diff": gap_c - gap_p}
    rows.append(Row("    sum of cell durations", f"{busy_p:.2f}", f"{busy_c:.2f}",
                    f"x{busy_c / busy_p:.3f}", "", "info"))
    rows.append(Row("    between cells (reply..next input)", f"{gap_p:.2f}", f"{gap_c:.2f}",
                    f"{gap_c - gap_p:+.2f} s", "", "info"))
    rest_p = statistics.median(r.wall_s - r.span_s for r in plain)
    rest_c = statistics.median(r.wall_s - r.span_s for r in capture)
    figures["outside_cells_s"] = {"plain": rest_p, "capture": rest_c, "diff": rest_c - rest_p}
    rows.append(Row("  outside cells (kernel start, shutdown)", f"{rest_p:.2f}", f"{rest_c:.2f}",
                    f"{rest_c - rest_p:+.2f} s", "", "info"))

    def pooled(rs: list[RunResult], kind: str) -> list[float]:
        return [v for r in rs for v in r.cell_ms.get(kind, [])]

    for kind, with_target in (("trivial", True), ("pandas", False), ("sklearn", False)):
        p, c = pooled(plain, kind), pooled(capture, kind)
        if not p or not c:
            continue
        med_p, med_c = statistics.median(p), statistics.median(c)
        p90_p, p90_c = _pct(p, 90), _pct(c, 90)
        figures[f"{kind}_cell_ms"] = {
            "n_cells_pooled": {"plain": len(p), "capture": len(c)},
            "median": {"plain": med_p, "capture": med_c, "diff": med_c - med_p},
            "p90": {"plain": p90_p, "capture": p90_c, "diff": p90_c - p90_p},
            "mean": {"plain": statistics.fmean(p), "capture": statistics.fmean(c)},
        }
        n = len(c) // max(1, len(capture))
        if with_target:
            ok = med_c - med_p <= TARGET_CELL_MS
            figures[f"{kind}_cell_ms"]["median"]["pass"] = ok
            rows.append(Row(f"{kind} cell latency, median (ms, n={n})", f"{med_p:.3f}",
                            f"{med_c:.3f}", f"+{med_c - med_p:.3f} ms",
                            f"<= +{TARGET_CELL_MS:g} ms", _verdict(ok)))
        else:
            rows.append(Row(f"{kind} cell latency, median (ms, n={n})", f"{med_p:.2f}",
                            f"{med_c:.2f}", f"{med_c - med_p:+.2f} ms", "", "info"))
        rows.append(Row(f"{kind} cell latency, p90 (ms)", f"{p90_p:.3f}" if with_target else
                        f"{p90_p:.2f}", f"{p90_c:.3f}" if with_target else f"{p90_c:.2f}",
                        f"{p90_c - p90_p:+.3f} ms" if with_target else f"{p90_c - p90_p:+.2f} ms",
                        "", "info"))

    auto = statistics.median(x["autoreload_ms"] for x in load)
    ext = statistics.median(x["nbmlops_ms"] for x in load)
    figures["load_ext_ms"] = {"autoreload": auto, "nbmlops": ext, "ratio": ext / auto,
                              "reps": len(load), "target_ms": TARGET_LOAD_MS,
                              "pass": ext < TARGET_LOAD_MS, "raw": load}
    rows.append(Row(f"%load_ext, fresh process, median of {len(load)} (ms)",
                    f"{auto:.1f} (autoreload)", f"{ext:.1f}", f"x{ext / auto:.1f}",
                    f"< {TARGET_LOAD_MS:g} ms", _verdict(ext < TARGET_LOAD_MS)))

    hooks = [r.hook_ms_per_cell for r in capture if r.hook_ms_per_cell is not None]
    if hooks:
        hook = statistics.median(hooks)
        figures["hook_ms_per_cell"] = {"median": hook, "per_rep": hooks}
        rows.append(Row("capture hooks in the kernel, per cell (ms)", "-", f"{hook:.3f}",
                        "", "", "info"))

    recorded = sum(r.recorded_cells or 0 for r in capture)
    store = sum(r.store_bytes or 0 for r in capture)
    per_k = store / recorded * 1000 if recorded else float("nan")
    marginal = (store - empty_bytes * len(capture)) / recorded * 1000 if recorded else float("nan")
    figures["store"] = {
        "bytes_per_1000_cells": per_k,
        "bytes_per_1000_cells_above_empty_schema": marginal,
        "empty_store_bytes": empty_bytes,
        "per_rep": [{"bytes": r.store_bytes, "files": r.store_files,
                     "recorded_cells": r.recorded_cells} for r in capture],
    }
    rows.append(Row("store size per 1,000 cells (KiB, db+wal)", f"{empty_bytes / 1024:.0f} (empty)",
                    f"{per_k / 1024:.0f}", f"{marginal / 1024:.0f} above empty", "", "info"))
    return rows, figures


def print_table(rows: list[Row]) -> None:
    headers = ("metric", "plain / baseline", "capture", "ratio / diff", "target", "result")
    data = [headers] + [
        (r.metric, r.baseline, r.capture, r.comparison, r.target, r.result) for r in rows
    ]
    widths = [max(len(str(row[i])) for row in data) for i in range(len(headers))]

    def fmt(row: Sequence[str]) -> str:
        cells = [str(v).ljust(w) if i == 0 else str(v).rjust(w) for i, (v, w) in
                 enumerate(zip(row, widths, strict=True))]
        return "| " + " | ".join(cells) + " |"

    print(fmt(headers))
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for row in data[1:]:
        print(fmt(row))


def machine_info() -> dict[str, Any]:
    from importlib.metadata import version

    pkgs: dict[str, str | None] = {}
    for name in ("nbmlops", "ipykernel", "ipython", "nbclient", "jupyter_client", "pandas",
                 "scikit-learn", "sqlalchemy", "numpy"):
        try:
            pkgs[name] = version(name)
        except Exception:  # noqa: BLE001 - a missing package is just not reported
            pkgs[name] = None
    try:
        here = Path(__file__).resolve().parent
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=here,
                                capture_output=True, text=True, check=False).stdout.strip()
        dirty = bool(subprocess.run(["git", "status", "--porcelain", "--", "nbmlops"], cwd=here,
                                    capture_output=True, text=True, check=False).stdout.strip())
    except OSError:
        commit, dirty = "", False
    return {
        "git_commit": commit or None,
        "nbmlops_dirty": dirty,
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "packages": pkgs,
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reps", type=int, default=3, help="repetitions per mode (default 3)")
    parser.add_argument(
        "--writer", default="headless,interactive",
        help="capture paths to measure, comma-separated (default headless,interactive): "
             "headless: the kernel journals and the launching process writes the store "
             "(nbmlops run / execute_notebook); interactive: the kernel journals and its writer "
             "process writes the store (a notebook in JupyterLab); thread: the in-kernel "
             "writer thread (NBMLOPS_CAPTURE_WRITER=thread; 'in-kernel' is an alias)",
    )
    parser.add_argument("--cells", type=int, default=None, help="notebook size (default 300)")
    parser.add_argument("--quick", action="store_true", help="60 cells, 1 repetition: a smoke test")
    parser.add_argument("--load-reps", type=int, default=5,
                        help="fresh processes timing %%load_ext (default 5)")
    parser.add_argument("--timeout", type=int, default=600, help="per-cell timeout in seconds")
    parser.add_argument("--json", metavar="PATH", help="also write the figures as JSON")
    parser.add_argument("--keep", action="store_true", help="keep the temp dir and print it")
    parser.add_argument("--profile", action="store_true",
                        help="also profile the capture hooks in-process (InteractiveShell, cProfile)")
    parser.add_argument("--interleave", action="store_true",
                        help="instead: a plain and a capturing kernel side by side, cells run "
                             "alternately and timed by the client (paired cell by cell, for a "
                             "machine whose speed drifts between runs)")
    parser.add_argument("--profile-worker", choices=("plain", "capture"), help=argparse.SUPPRESS)
    parser.add_argument("--workdir", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    writers = [{"in-kernel": "thread"}.get(w.strip(), w.strip()) for w in args.writer.split(",")]
    if not writers or any(w not in WRITERS for w in writers):
        parser.error(f"--writer: choose from {', '.join(WRITERS)}")
    args.writers = writers
    if args.profile_worker:
        print(json.dumps(profile_worker(args.profile_worker, args.cells or 300, Path(args.workdir))))
        return 0
    n_cells = args.cells or (60 if args.quick else 300)
    reps = 1 if args.quick else args.reps
    load_reps = 2 if args.quick else args.load_reps
    if reps < 1:
        parser.error("--reps must be >= 1")

    t_start = time.perf_counter()
    info = machine_info()
    print(f"nbmlops capture overhead ({', '.join(args.writers)}): {n_cells} cells, {reps} repetition(s) per mode, "
          f"python {info['python']}, {info['cpu_count']} CPU(s)", flush=True)
    tmp = Path(tempfile.mkdtemp(prefix="nbmlops-bench-"))
    try:
        if args.interleave:
            summary = run_interleaved(build_notebook(n_cells), args.writers, reps, tmp, args.timeout)
            if args.json:
                Path(args.json).write_text(json.dumps({"machine": info, "interleaved": summary}, indent=2))
            print(f"script runtime: {time.perf_counter() - t_start:.1f} s")
            return 0 if all(v["ok"] for v in summary.values()) else 1
        return run_benchmark(args, n_cells, reps, load_reps, tmp, info, t_start)
    finally:
        if args.keep:
            print(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)


_PATHS = {
    "headless": "the kernel journals, the launching process writes the store",
    "interactive": "the kernel journals, its writer process writes the store",
    "thread": "a writer thread inside the kernel writes the store",
}


def run_benchmark(args: argparse.Namespace, n_cells: int, reps: int, load_reps: int, tmp: Path,
                  info: dict[str, Any], t_start: float) -> int:
    nb = build_notebook(n_cells)
    nbformat.write(nb, tmp / "bench.ipynb")
    kinds: dict[str, int] = {}
    for cell in nb.cells:
        kinds[cell.metadata[KIND_KEY]] = kinds.get(cell.metadata[KIND_KEY], 0) + 1
    print(f"notebook: {tmp / 'bench.ipynb'} {kinds}", flush=True)

    # warm-up (not measured): the first kernel start pays for cold file caches
    warm = build_notebook(10)
    warm.cells = warm.cells[:3]
    modes = [("plain", "headless")] + [("capture", w) for w in args.writers]
    for mode, writer in modes:
        run_once(warm, mode, -1 if mode == "plain" else 999, tmp, args.timeout, writer)

    # interleaved plain, capture path 1, capture path 2...: drift of the machine cancels out
    runs: list[RunResult] = []
    for rep in range(reps):
        for mode, writer in modes:
            r = run_once(nb, mode, rep, tmp, args.timeout, writer)
            runs.append(r)
            extra = ""
            label = "plain" if mode == "plain" else writer
            if mode == "capture":
                extra = f", recorded {r.recorded_cells}/{n_cells}, store {r.store_bytes} B"
            print(f"  rep {rep + 1}/{reps} {label:11s} wall {r.wall_s:7.2f} s, cells "
                  f"{r.span_s:7.2f} s, trivial median "
                  f"{statistics.median(r.cell_ms['trivial']):.3f} ms{extra}", flush=True)
            for line in r.kernel_stderr[:5]:
                print(f"    kernel stderr: {line[:200]}")

    load = time_load_ext(tmp, load_reps)
    empty = empty_store_bytes(tmp)
    problems: list[str] = []
    figures_by_writer: dict[str, Any] = {}
    for writer in args.writers:
        rows, figures = summarize(runs, load, empty, writer)
        figures_by_writer[writer] = figures
        found: list[str] = []
        for r in runs:
            if r.mode != "capture" or r.writer != writer:
                continue
            if r.recorded_cells != n_cells:
                found.append(f"{writer} rep {r.rep}: recorded {r.recorded_cells} of {n_cells} cells")
            if r.cells_with_id != n_cells:
                found.append(f"{writer} rep {r.rep}: {r.cells_with_id} of {n_cells} records carry "
                             "their cell id")
            found.extend(f"{writer} rep {r.rep}: nbmlops warning in {w}" for w in r.nbmlops_warnings)
        rows.insert(0, Row("cells recorded by capture", f"{n_cells} x {reps}",
                           str(sum(r.recorded_cells or 0 for r in runs
                                   if r.mode == "capture" and r.writer == writer)),
                           "", "all", _verdict(not found)))
        problems.extend(found)
        print(f"\n{writer} capture ({_PATHS[writer]}):")
        print_table(rows)
    for p in problems:
        print(f"CORRECTNESS FAILURE: {p}", file=sys.stderr)
    profiled = profile(n_cells, tmp) if args.profile else None
    total = time.perf_counter() - t_start
    print()
    print(f"script runtime: {total:.1f} s")

    if args.json:
        payload = {
            "benchmark": "capture_overhead",
            "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            "machine": info,
            "settings": {"cells": n_cells, "reps": reps, "load_reps": load_reps,
                         "composition": kinds, "quick": args.quick, "writers": args.writers},
            "figures": figures_by_writer,
            "correctness": {"ok": not problems, "problems": problems},
            "profile": profiled,
            "runs": [
                {k: v for k, v in asdict(r).items() if k != "cell_ms"}
                | {"cell_ms_median": {k: statistics.median(v) for k, v in r.cell_ms.items()}}
                for r in runs
            ],
            "script_runtime_s": total,
        }
        Path(args.json).write_text(json.dumps(payload, indent=2) + "\n")
        print(f"figures written to {args.json}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
