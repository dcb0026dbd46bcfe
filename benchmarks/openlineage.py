"""What OpenLineage emission costs: on vs off, in the kernel and in the writing process.

Emission happens in the process that writes the store (here: the launching process, whose
journal follower records a headless kernel's cells), on one background thread; the kernel
itself never sees it. Measured:

* a headless 300-cell notebook (``nbmlops.execute.execute_notebook``, real kernel; 270 trivial
  cells, 30 cells writing a small CSV with pandas) with emission off and on (file transport),
  interleaved ``off, on, off, on...``: per-cell latency in the kernel (``iopub.execute_input`` ->
  ``shell.execute_reply`` of nbclient's cell timing, median and p90 of the trivial cells, on
  minus off; target <= 0.1 ms), wall time of the run, and how long after the run ends the last
  event is written (the queue's lag);
* in-process: the listener's own cost per recorded cell (the call the store makes after its
  commit: dictionary work and a ``put_nowait``), and ``Store.record_cells`` of one cell with and
  without the listener;
* the emitter thread's throughput (events built and written per second, file transport).

Every "on" repetition must have emitted START + COMPLETE for the run and every cell with nothing
dropped; the script exits 1 when a check fails, 0 otherwise (a missed target prints FAIL).

Usage::

    .venv/bin/python benchmarks/openlineage.py            # 300 cells, 3 repetitions each
    .venv/bin/python benchmarks/openlineage.py --quick    # 60 cells, 1 repetition
    .venv/bin/python benchmarks/openlineage.py --json figures.json
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

# this file's name would shadow the openlineage package for the emitter's thread
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

import nbformat  # noqa: E402
from nbformat.v4 import new_code_cell, new_notebook  # noqa: E402

TARGET_KERNEL_MS = 0.1


def _notebook(path: Path, cells: int) -> None:
    src = ["import pandas as pd\ndf = pd.DataFrame({'a': range(100), 'b': range(100)})"]
    for i in range(1, cells):
        src.append(f"df.to_csv('out_{i % 10}.csv', index=False)" if i % 10 == 0 else f"x{i} = {i} * 2")
    # the last cell reports whether anything OpenLineage was ever loaded in the kernel
    src.append("import sys\nprint('KERNEL-OL', sorted(m for m in sys.modules if 'openlineage' in m))")
    nb = new_notebook(cells=[new_code_cell(s) for s in src],
                      metadata={"kernelspec": {"name": "python3", "display_name": "Python 3",
                                               "language": "python"}})
    nbformat.write(nb, path)


def _ts(text: str) -> float:
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def _trivial_cell_ms(nb_path: Path) -> list[float]:
    nb = nbformat.read(nb_path, as_version=4)
    out = []
    for cell in nb.cells:
        timing = cell.metadata.get("execution", {})
        if cell.source.startswith("x") and "iopub.execute_input" in timing:
            out.append((_ts(timing["shell.execute_reply"]) - _ts(timing["iopub.execute_input"])) * 1e3)
    return out


def _pct(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, int(q * len(s)))]


def _run_once(work: Path, nb: Path, on: bool, events: Path, rep: int) -> dict[str, Any]:
    from nbmlops import openlineage
    from nbmlops.execute import execute_notebook

    if on:
        os.environ["NBMLOPS_OPENLINEAGE_FILE"] = str(events)
    else:
        os.environ.pop("NBMLOPS_OPENLINEAGE_FILE", None)
    before = openlineage.stats()
    lines_before = len(events.read_text().splitlines()) if events.exists() else 0
    out = work / f"out-{'on' if on else 'off'}-{rep}.ipynb"
    t0 = time.perf_counter()
    result = execute_notebook(nb, out, cwd=work, store_url=f"sqlite:///{work / 'store.db'}", timeout=600)
    wall = time.perf_counter() - t0
    lag = 0.0
    if on:
        t1 = time.perf_counter()
        assert openlineage.flush(60), "events still queued after 60 s"
        lag = time.perf_counter() - t1
    after = openlineage.stats()
    cells = _trivial_cell_ms(out)
    last = nbformat.read(out, as_version=4).cells[-1]
    kernel_ol = "".join(o.get("text", "") for o in last.get("outputs", [])).strip()
    emitted = (len(events.read_text().splitlines()) if events.exists() else 0) - lines_before
    return {
        "on": on, "status": result.status, "wall_s": wall, "lag_s": lag,
        "median_ms": statistics.median(cells), "p90_ms": _pct(cells, 0.9),
        "events": emitted, "dropped": after["dropped"] - before["dropped"],
        "kernel_ol_modules": kernel_ol,
    }


def _in_process(work: Path, n: int = 2000) -> dict[str, float]:
    from nbmlops.openlineage.emitter import Emitter
    from nbmlops.openlineage.listener import LineageListener
    from nbmlops.openlineage.settings import Settings
    from nbmlops.store import Store
    from nbmlops.store.entities import ArtifactIO, CellRecord

    def rec(seq: int) -> CellRecord:
        return CellRecord(seq=seq, source=f"x{seq} = {seq}", start_time=time.time(), duration=0.001,
                          status="ok", io=[ArtifactIO(uri=f"/data/f{seq}.csv", direction="wrote",
                                                      via="to_csv", fingerprint="abc", size=10)])

    os.environ.pop("NBMLOPS_OPENLINEAGE_FILE", None)
    figures: dict[str, float] = {}
    with Store.open(f"sqlite:///{work / 'inproc.db'}", work / "art") as store:
        em = Emitter(Settings(namespace="bench", queue_size=100_000, exit_wait=60,
                              transport={"type": "file", "log_file_path": str(work / "inproc.jsonl"),
                                         "append": True}))
        listener = LineageListener(store, em.submit)
        rid = store.create_run(name="bench")
        listener("run_started", {"run": store.get_run(rid)})
        # the listener call itself, as the store makes it after a commit
        times = []
        for i in range(1, n + 1):
            payload = {"run_id": rid, "records": [rec(i)]}
            t = time.perf_counter()
            listener("cells_recorded", payload)
            times.append(time.perf_counter() - t)
        figures["listener_us_per_cell_median"] = statistics.median(times) * 1e6
        figures["listener_us_per_cell_p90"] = _pct(times, 0.9) * 1e6
        t = time.perf_counter()
        assert em.flush(120)
        figures["emitter_events_per_s"] = (2 * n + 1) / max(1e-9, time.perf_counter() - t + sum(times))
        figures["emitter_dropped"] = em.stats()["dropped"]
        # record_cells of one cell, without and then with the listener attached
        for label, attach in (("record_cells_ms_off", False), ("record_cells_ms_on", True)):
            if attach:
                store.add_listener(listener)
            ts = []
            base = 10_000 if attach else 5_000
            for i in range(300):
                t = time.perf_counter()
                store.record_cells(rid, [rec(base + i)])
                ts.append(time.perf_counter() - t)
            figures[label] = statistics.median(ts) * 1e3
        assert em.flush(120)
        em.close()
    return figures


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--cells", type=int, default=300)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)
    cells, reps = (60, 1) if args.quick else (args.cells, args.reps)
    for var in ("NBMLOPS_OPENLINEAGE_URL", "OPENLINEAGE_URL", "OPENLINEAGE_CONFIG", "NBMLOPS_OPENLINEAGE"):
        os.environ.pop(var, None)
    ok = True
    with tempfile.TemporaryDirectory(prefix="nbmlops-ol-bench-") as tmp:
        work = Path(tmp)
        nb = work / "bench.ipynb"
        _notebook(nb, cells)
        events = work / "events.jsonl"
        runs = [_run_once(work, nb, on, events, r) for r in range(reps) for on in (False, True)]
        inproc = _in_process(work)
    off = [r for r in runs if not r["on"]]
    on = [r for r in runs if r["on"]]
    for r in runs:
        if r["kernel_ol_modules"] != "KERNEL-OL []":
            print(f"CHECK FAILED: the kernel loaded OpenLineage code: {r['kernel_ol_modules']}")
            ok = False
    for r in on:
        expected = 2 + 2 * (cells + 1)
        if r["status"] != "finished" or r["events"] != expected or r["dropped"]:
            print(f"CHECK FAILED: {r['events']} events (expected {expected}), "
                  f"{r['dropped']} dropped, run {r['status']}")
            ok = False
    med = {k: statistics.median(r["median_ms"] for r in rs) for k, rs in (("off", off), ("on", on))}
    p90 = {k: statistics.median(r["p90_ms"] for r in rs) for k, rs in (("off", off), ("on", on))}
    wall = {k: statistics.median(r["wall_s"] for r in rs) for k, rs in (("off", off), ("on", on))}
    added = med["on"] - med["off"]
    figures = {
        "cells": cells, "reps": reps,
        "kernel_cell_ms_median": med, "kernel_cell_ms_p90": p90,
        "kernel_added_ms_per_cell": added, "wall_s": wall,
        "queue_lag_s_after_run": statistics.median(r["lag_s"] for r in on),
        "events_per_run": on[0]["events"] if on else 0, **inproc,
    }
    print(f"headless {cells}-cell notebook, {reps} repetition(s) each, interleaved")
    print(f"  kernel per trivial cell, median: off {med['off']:.3f} ms, on {med['on']:.3f} ms "
          f"-> added {added:+.3f} ms  [{'ok' if added <= TARGET_KERNEL_MS else 'FAIL'}: "
          f"target <= {TARGET_KERNEL_MS} ms]")
    print("  OpenLineage modules loaded in the kernel: none (checked in every run)" if ok else "")
    print(f"  kernel per trivial cell, p90:    off {p90['off']:.3f} ms, on {p90['on']:.3f} ms")
    print(f"  run wall time: off {wall['off']:.2f} s, on {wall['on']:.2f} s")
    print(f"  events per run: {figures['events_per_run']}; queue drained "
          f"{figures['queue_lag_s_after_run'] * 1e3:.0f} ms after the run ended")
    print("in-process (the writing process)")
    print(f"  listener per recorded cell: median {inproc['listener_us_per_cell_median']:.1f} us, "
          f"p90 {inproc['listener_us_per_cell_p90']:.1f} us")
    print(f"  Store.record_cells(1 cell): off {inproc['record_cells_ms_off']:.3f} ms, "
          f"on {inproc['record_cells_ms_on']:.3f} ms")
    print(f"  emitter thread: {inproc['emitter_events_per_s']:.0f} events/s (file transport), "
          f"{inproc['emitter_dropped']:.0f} dropped")
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
