"""Scheduler: idle CPU, fire latency and 1,000 schedules, in one run on this machine.

Everything runs for real: a project store made with ``nbmlops init`` in a temporary directory,
the installed ``nbmlops`` console script as subprocesses, real kernels running a tiny notebook
(a ``parameters`` cell and one code cell). Each figure is printed as an absolute number and as
a ratio against a baseline measured in the same run:

* **1,000 schedules** are added through :func:`nbmlops.schedule.service.add_schedule` (the path
  of ``nbmlops schedule add``: cron parse, target and parameter check, one transaction each),
  plus 2 change triggers watching 4 files.
* **One scheduler tick** (:meth:`Scheduler.tick`, in process, holding the lease, nothing due;
  median of 20 after a warm-up tick) against one ``store.schedules.active()`` (every active
  schedule: what a tick loaded before it read only the due ones) and one
  ``store.schedules.next_due()`` (a trivial aggregate query).
  Target < 100 ms. Also: one tick in which 1 of the 1,000 is due (it launches a real run).
* **Idle CPU**: ``nbmlops scheduler`` (default ``--poll 1``) on that store, none of the
  schedules due in the window, sampled from ``/proc/PID/stat`` (utime + stime + children) over
  a 30 s window after a 6 s warm-up, as % of one core. Baselines measured in the same window:
  the same command on an empty store (what the daemon costs with nothing to look at) and an
  idle ``python -c "time.sleep()"``. Target < 1 % of a core.
* **Fire latency**: the schedule ``latency`` (a far-future cron) gets its next due time set
  5 s ahead with ``store.schedules.update(next_fire_at=...)``; the running scheduler launches
  the run ``lead`` (3) seconds early with ``--not-before DUE``, and the run waits, loaded, until
  the due time. Per fire, from the records: *kernel start* = the run's ``start_time`` in the
  store, which the kernel itself stamps when the nbmlops extension starts the run (the kernel
  process is up, IPython initialised, extension loaded: the first moment the run exists); also
  the kernel process's creation time (``/proc/self/stat`` read by the notebook's code cell) and
  the first cell's start (``cell_executions``). Target: median due -> kernel start < 1 s.
  Baseline, interleaved with the fires: ``nbmlops run tiny.ipynb`` started by hand (command
  start -> kernel start, same definitions).
* **``nbmlops schedule ls``** on the 1,000 schedules (subprocess wall time, median of 5 after
  a warm-up) against ``nbmlops runs ls`` on the same store, ``nbmlops --version`` and
  ``python -c pass``; also their CPU time (user + sys), which hardly moves when other processes
  share the cores. Target < 0.5 s. Subprocesses get a bytecode cache of their own
  (``PYTHONPYCACHEPREFIX``), like an installed package.

A missed target prints FAIL and the script still exits 0; it exits 1 when the scheduler did
something wrong (a schedule fired that was not due, a run failed, an error in its log).

Usage::

    .venv/bin/python benchmarks/scheduler.py             # ~2 minutes
    .venv/bin/python benchmarks/scheduler.py --quick     # 10 s window, 3 fires, fewer repetitions
    .venv/bin/python benchmarks/scheduler.py --json figures.json
    .venv/bin/python benchmarks/scheduler.py --profile   # + cProfile of a tick and `schedule ls`
    .venv/bin/python benchmarks/scheduler.py --keep /tmp/sched-bench   # keep store and logs
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import io
import json
import os
import pstats
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import nbformat

for _var in ("NBMLOPS_STORE_URL", "NBMLOPS_ARTIFACT_URL"):  # the project's .nbmlops/ decides
    os.environ.pop(_var, None)

from nbmlops.config import resolve_location  # noqa: E402
from nbmlops.schedule.scheduler import Scheduler  # noqa: E402
from nbmlops.schedule.service import add_schedule, add_trigger  # noqa: E402
from nbmlops.store import Store  # noqa: E402

TARGETS = {"idle_cpu_pct": 1.0, "fire_latency_s": 1.0, "schedule_ls_s": 0.5, "tick_ms": 100.0}
CLK_TCK = os.sysconf("SC_CLK_TCK")
N_SCHEDULES = 1000
LATENCY = "latency"  # the schedule the fire-latency phase moves
ENDED = ("finished", "failed", "cancelled", "abandoned")
#: scheduler log events that are expected here; anything else is reported
EXPECTED_EVENTS = {"started", "next", "fired", "ended", "stopped"}

#: the notebook's one code cell: when was this kernel process created (``/proc/self/stat``
#: field 22, clock ticks since boot, turned into epoch seconds) and when did this cell start
TIMING_CELL = """\
import json, os, time
_cell = time.time()
_fields = open('/proc/self/stat').read().rsplit(')', 1)[1].split()
_boot = time.time() - time.clock_gettime(time.CLOCK_BOOTTIME)
_proc = _boot + int(_fields[19]) / os.sysconf('SC_CLK_TCK')
with open(f"timing-{os.environ.get('NBMLOPS_RUN_ID', 'none')}.json", 'w') as _f:
    json.dump({'kernel_process_start': _proc, 'cell': _cell, 'alpha': alpha}, _f)
"""


def script(name: str) -> str:
    found = shutil.which(name, path=str(Path(sys.executable).parent))
    if not found:
        raise SystemExit(f"the {name} console script is not installed next to this interpreter")
    return found


def write_notebook(path: Path) -> Path:
    nb = nbformat.v4.new_notebook(
        cells=[nbformat.v4.new_code_cell("alpha = 0.1", metadata={"tags": ["parameters"]}),
               nbformat.v4.new_code_cell(TIMING_CELL)],
        metadata={"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}},
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, path)
    return path


def run_ok(cmd: Sequence[str], cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(list(cmd), cwd=cwd, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
    return done


def median_of(fn: Callable[[], object], reps: int, warmup: int = 1) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def median_cmd(cmd: Sequence[str], cwd: Path, env: dict[str, str], reps: int) -> tuple[float, float]:
    """Median wall time and median CPU time (user + system) of a command, after a warm-up run.
    CPU time hardly moves when other processes share the cores; wall time does."""
    run_ok(cmd, cwd, env)
    walls, cpus = [], []
    for _ in range(reps):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        t0 = time.perf_counter()
        run_ok(cmd, cwd, env)
        walls.append(time.perf_counter() - t0)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpus.append(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)
    return statistics.median(walls), statistics.median(cpus)


def far_month() -> int:
    """A month about half a year away: no schedule of the benchmark is due while it runs."""
    return (datetime.now(timezone.utc).month + 5) % 12 + 1


# -- building the project ------------------------------------------------------------------------


def build_project(project: Path, env: dict[str, str], n: int) -> dict[str, Any]:
    """``nbmlops init``, the tiny notebook, ``n`` cron schedules (one of them ``latency``) and
    2 change triggers, through the service functions the CLI calls."""
    run_ok([script("nbmlops"), "init", str(project)], project, env)
    nb = write_notebook(project / "jobs" / "tiny.ipynb")
    data = project / "data"
    data.mkdir()
    for i in range(3):
        (data / f"part{i}.csv").write_text("a,b\n" + "".join(f"{j},{j * i}\n" for j in range(100)))
    (data / "config.json").write_text('{"threshold": 0.5}\n')
    month = far_month()
    zones = ["UTC", "Europe/Berlin", "America/New_York", "Asia/Tokyo"]
    with Store(resolve_location(start=project)) as store:
        t0 = time.perf_counter()
        add_schedule(store, nb, cron=f"0 3 1 {month} *", name=LATENCY)
        for i in range(1, n):
            params = {"alpha": str(i / n)} if i % 3 == 0 else None
            add_schedule(store, nb, cron=f"{i % 60} {i % 24} {1 + i % 28} {month} *",
                         tz=zones[i % len(zones)], params=params, name=f"job-{i:04d}")
        add_seconds = time.perf_counter() - t0
        add_trigger(store, nb, on_change=str(data / "*.csv"), name="csv-on-change")
        add_trigger(store, nb, on_change=str(data / "config.json"), name="config-on-change")
        assert len(store.schedules.active()) == n + 2
    return {"notebook": nb, "add_seconds": add_seconds, "add_per_s": n / add_seconds}


# -- one tick, in process --------------------------------------------------------------------------


def wait_for_fire(store: Store, due: float, log: Path | None = None, timeout: float = 90.0) -> Any:
    """The ``latency`` fire of due time ``due`` once its run ended and, with ``log`` (the
    scheduler's), once the scheduler reaped its process: the store shows a run ``finished``
    while its ``nbmlops run`` process still shuts the kernel down (a stop in that window would
    cancel a run that had finished)."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        for fire in store.schedules.history(LATENCY, limit=5):
            if fire.due_at is None or abs(fire.due_at - due) > 1e-6 or fire.status not in ENDED:
                continue
            if log is None:
                return fire
            if f" ended schedule={LATENCY} fire={fire.id} " in log.read_text():
                return next(f for f in store.schedules.history(LATENCY, limit=5) if f.id == fire.id)
        time.sleep(0.1)
    raise SystemExit(f"the fire due at {due} did not end within {timeout:.0f} s")


def bench_tick(project: Path, reps: int, profile: bool) -> dict[str, Any]:
    out = io.StringIO()
    with Store(resolve_location(start=project)) as store:
        sch = Scheduler(store, out=out)
        sch.acquire_lease()
        try:
            sch.recover()
            sch.tick()  # warm-up: cron parse cache, first stat of the watched files
            walls, cpus = [], []
            for _ in range(reps):
                c0 = time.process_time()
                stats = sch.tick()
                cpus.append(time.process_time() - c0)
                walls.append(stats.duration)
                if stats.fired or stats.skipped or stats.queued:
                    raise SystemExit(f"a tick with nothing due did something: {stats}")
            loop_wall = median_of(lambda: (sch.tick(), store.schedules.next_due()), reps, warmup=0)
            active = median_of(store.schedules.active, reps)
            next_due = median_of(store.schedules.next_due, reps)
            if profile:
                prof = cProfile.Profile()
                prof.enable()
                for _ in range(5):
                    sch.tick()
                prof.disable()
                print("\ncProfile of 5 ticks with nothing due (top 25 by cumulative time):")
                pstats.Stats(prof, stream=sys.stdout).sort_stats("cumulative").print_stats(25)
            # one tick where 1 of the 1,000 is due: it records the fire and spawns the run
            due = time.time() + 1.0
            store.schedules.update(LATENCY, next_fire_at=due)
            fire_stats = sch.tick()
            if fire_stats.fired != 1:
                raise SystemExit(f"the due schedule did not fire: {fire_stats}\n{out.getvalue()}")
            while sch.children:  # wait for the run, reaping like the loop does
                time.sleep(0.25)
                sch.tick()
        finally:
            sch.release_lease()
        fire = wait_for_fire(store, due)
        if fire.status != "finished":
            raise SystemExit(f"the run fired in process ended {fire.status}: {fire.message}")
    tick = statistics.median(walls)
    return {
        "tick_median_s": tick, "tick_max_s": max(walls), "tick_samples_s": walls,
        "tick_p90_s": statistics.quantiles(walls, n=10, method="inclusive")[-1],
        "tick_cpu_median_s": statistics.median(cpus), "tick_plus_next_due_s": loop_wall, "active_median_s": active, "next_due_median_s": next_due,
        "ratio_active": tick / active, "ratio_next_due": tick / next_due,
        "fire_tick_s": fire_stats.duration, "reps": reps, "target_ms": TARGETS["tick_ms"],
        "log": out.getvalue(),
    }


# -- idle CPU --------------------------------------------------------------------------------------


def cpu_ticks(pid: int) -> int:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return sum(int(x) for x in fields[11:15])  # utime stime cutime cstime (fields 14-17)


def start_scheduler(project: Path, env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with open(log, "ab") as fh:
        proc = subprocess.Popen([script("nbmlops"), "scheduler"], cwd=project, env=env,
                                stdout=fh, stderr=subprocess.STDOUT)
    deadline = time.time() + 30
    while " started " not in log.read_text():
        if proc.poll() is not None or time.time() > deadline:
            raise SystemExit(f"nbmlops scheduler did not start:\n{log.read_text()}")
        time.sleep(0.1)
    return proc


def bench_idle(procs: dict[str, subprocess.Popen[bytes]], warmup: float, window: float) -> dict[str, Any]:
    """CPU of each process over the same window, as % of one core; also the busiest second."""
    time.sleep(warmup)
    first = {k: cpu_ticks(p.pid) for k, p in procs.items()}
    prev = dict(first)
    peaks = {k: 0 for k in procs}
    t0 = time.monotonic()
    while (left := window - (time.monotonic() - t0)) > 0:
        time.sleep(min(1.0, left))
        for k, p in procs.items():
            now = cpu_ticks(p.pid)
            peaks[k] = max(peaks[k], now - prev[k])
            prev[k] = now
    wall = time.monotonic() - t0
    out: dict[str, Any] = {"window_s": wall, "warmup_s": warmup}
    for k in procs:
        out[k] = {"cpu_pct": 100.0 * (prev[k] - first[k]) / CLK_TCK / wall,
                  "startup_cpu_s": first[k] / CLK_TCK,  # imports, lease, recovery, first ticks
                  "cpu_s": (prev[k] - first[k]) / CLK_TCK,
                  "busiest_second_pct": 100.0 * peaks[k] / CLK_TCK}
    return out


# -- fire latency ----------------------------------------------------------------------------------


def stages(store: Store, run_id: str, zero: float, nb_dir: Path) -> dict[str, float]:
    """Seconds from ``zero`` to: kernel process created, run start_time, first cell start."""
    run = store.get_run(run_id)
    if run.status != "finished":
        raise SystemExit(f"run {run_id[:8]} ended {run.status}")
    cells = store.cell_executions(run_id)
    timing = json.loads((nb_dir / f"timing-{run_id}.json").read_text())
    return {"kernel_process": timing["kernel_process_start"] - zero,
            "run_start": run.start_time - zero,
            "first_cell": min(c.start_time for c in cells) - zero}


def bench_fires(project: Path, env: dict[str, str], nb: Path, n: int, ahead: float,
                log: Path) -> dict[str, Any]:
    sched: list[dict[str, float]] = []
    direct: list[dict[str, float]] = []
    with Store(resolve_location(start=project)) as store:
        for _ in range(n):
            due = time.time() + ahead
            store.schedules.update(LATENCY, next_fire_at=due)
            fire = wait_for_fire(store, due, log)
            if fire.status != "finished" or not fire.run_id:
                raise SystemExit(f"scheduled run ended {fire.status}: {fire.message}")
            row = stages(store, fire.run_id, due, nb.parent)
            row["launched"] = (fire.started_at or 0.0) - due
            sched.append(row)
            t0 = time.time()
            done = run_ok([script("nbmlops"), "run", nb.name, "--json"], nb.parent, env)
            direct.append(stages(store, json.loads(done.stdout)["run_id"], t0, nb.parent))

    def summary(rows: list[dict[str, float]]) -> dict[str, Any]:
        return {k: {"median": statistics.median(r[k] for r in rows), "max": max(r[k] for r in rows),
                    "min": min(r[k] for r in rows)} for k in rows[0]}

    s, d = summary(sched), summary(direct)
    return {"scheduled": s, "direct": d, "n": n, "ahead_s": ahead,
            "ratio": s["run_start"]["median"] / d["run_start"]["median"],
            "samples": {"scheduled": sched, "direct": direct}, "target_s": TARGETS["fire_latency_s"]}


# -- listing ---------------------------------------------------------------------------------------


def bench_ls(project: Path, env: dict[str, str], reps: int, n: int) -> dict[str, Any]:
    nbm = script("nbmlops")
    listed = run_ok([nbm, "schedule", "ls"], project, env).stdout
    rows = sum(1 for line in listed.splitlines() if line.startswith(("job-", LATENCY)))
    if rows != n:
        raise SystemExit(f"`schedule ls` listed {rows} schedules, expected {n}")
    cmds = {
        "python -c pass": [sys.executable, "-c", "pass"],
        "nbmlops --version": [nbm, "--version"],
        "nbmlops runs ls": [nbm, "runs", "ls"],
        "nbmlops schedule ls": [nbm, "schedule", "ls"],
        "nbmlops schedule ls --json": [nbm, "schedule", "ls", "--json"],
        "nbmlops trigger ls": [nbm, "trigger", "ls"],
    }
    both = {k: median_cmd(c, project, env, reps) for k, c in cmds.items()}
    out = {k: w for k, (w, _) in both.items()}
    cpu = {k: c for k, (_, c) in both.items()}
    return {"seconds": out, "cpu_seconds": cpu,
            "ratio": out["nbmlops schedule ls"] / out["nbmlops runs ls"],
            "cpu_ratio": cpu["nbmlops schedule ls"] / cpu["nbmlops runs ls"],
            "reps": reps, "target_s": TARGETS["schedule_ls_s"]}


def profile_schedule_ls(project: Path) -> None:
    """Where ``schedule ls`` spends its time once imports are done (cron parse cache cold,
    as in a fresh process)."""
    from nbmlops.cli import cli
    from nbmlops.schedule import cron

    here = os.getcwd()
    os.chdir(project)
    try:
        with contextlib.redirect_stdout(io.StringIO()):  # warm-up: imports
            cli.main(args=["schedule", "ls"], prog_name="nbmlops", standalone_mode=False)
        cron.parse_cron.cache_clear()
        prof = cProfile.Profile()
        with contextlib.redirect_stdout(io.StringIO()):
            prof.enable()
            try:
                cli.main(args=["schedule", "ls"], prog_name="nbmlops", standalone_mode=False)
            finally:
                prof.disable()
    finally:
        os.chdir(here)
    print("\nin-process `schedule ls` (imports done, cron cache cold), top 15 by cumulative time:")
    pstats.Stats(prof, stream=sys.stdout).sort_stats("cumulative").print_stats(15)


# -- the scheduler's log -------------------------------------------------------------------------


def read_log(text: str) -> dict[str, Any]:
    events: dict[str, int] = {}
    odd = []
    for line in text.splitlines():
        parts = line.split(" ", 2)
        event = parts[1] if len(parts) > 1 else line
        events[event] = events.get(event, 0) + 1
        if event not in EXPECTED_EVENTS or (event == "ended" and "status=finished" not in line):
            odd.append(line)
    return {"events": events, "odd": odd}


def stop(proc: subprocess.Popen[bytes]) -> int:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            return proc.wait(40)
        except subprocess.TimeoutExpired:
            proc.kill()
            return proc.wait()
    return proc.returncode


# -- main ------------------------------------------------------------------------------------------


def verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="10 s window, 3 fires, fewer repetitions")
    ap.add_argument("--json", metavar="FILE", help="also write the figures to FILE")
    ap.add_argument("--profile", action="store_true",
                    help="print a cProfile of scheduler ticks and of `schedule ls`")
    ap.add_argument("--keep", metavar="DIR", help="work in DIR (new or empty) and keep it: the "
                    "project, its store and the schedulers' logs")
    args = ap.parse_args(argv)
    window, fires, reps, ls_reps = (10.0, 3, 5, 3) if args.quick else (30.0, 7, 20, 5)
    problems: list[str] = []
    started = time.perf_counter()
    with contextlib.ExitStack() as cleanup:
        if args.keep:
            root = Path(args.keep).resolve()
            root.mkdir(parents=True, exist_ok=True)
            if any(root.iterdir()):
                raise SystemExit(f"--keep {root}: not empty")
        else:
            root = Path(cleanup.enter_context(tempfile.TemporaryDirectory(prefix="nbmlops-bench-sched-")))
        (root / "ipython").mkdir()
        # children compile their bytecode once into a cache of their own, like an installed
        # package (under PYTHONDONTWRITEBYTECODE every command would recompile nbmlops' modules
        # that lack an up-to-date .pyc); kernels get an empty IPYTHONDIR
        os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
        os.environ.update(PYTHONPYCACHEPREFIX=str(root / "pycache"), IPYTHONDIR=str(root / "ipython"),
                          PYDEVD_DISABLE_FILE_VALIDATION="1")  # also for the in-process tick's run
        env = {k: v for k, v in os.environ.items() if not k.startswith("NBMLOPS_")}
        load_before = os.getloadavg()
        print(f"machine: {os.cpu_count()} CPUs, Python {sys.version.split()[0]}, load average "
              f"{load_before[0]:.2f} {load_before[1]:.2f}")
        project, empty = root / "project", root / "empty"
        project.mkdir()
        empty.mkdir()
        build = build_project(project, env, N_SCHEDULES)
        run_ok([script("nbmlops"), "init", str(empty)], empty, env)
        print(f"built: {N_SCHEDULES} schedules through add_schedule in {build['add_seconds']:.1f} s "
              f"({build['add_per_s']:.0f}/s) + 2 change triggers on 4 files", flush=True)

        tick = bench_tick(project, reps, args.profile)
        print(f"tick: {tick['tick_median_s'] * 1e3:.1f} ms (median of {reps}; CPU "
              f"{tick['tick_cpu_median_s'] * 1e3:.1f} ms); active() {tick['active_median_s'] * 1e3:.1f} ms; "
              f"next_due() {tick['next_due_median_s'] * 1e3:.2f} ms; tick firing 1 schedule "
              f"{tick['fire_tick_s'] * 1e3:.1f} ms", flush=True)

        logs = {"full": root / "scheduler-1000.log", "empty": root / "scheduler-empty.log"}
        full = start_scheduler(project, env, logs["full"])
        bare = start_scheduler(empty, env, logs["empty"])
        sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(3600)"])
        try:
            idle = bench_idle({"scheduler_1000": full, "scheduler_empty": bare, "sleep": sleeper},
                              warmup=6.0, window=window)
        finally:
            stop(bare)
            sleeper.terminate()
            sleeper.wait()
        print(f"idle CPU over {idle['window_s']:.0f} s: scheduler with 1,000 schedules "
              f"{idle['scheduler_1000']['cpu_pct']:.2f} %, empty store "
              f"{idle['scheduler_empty']['cpu_pct']:.2f} %, sleep {idle['sleep']['cpu_pct']:.2f} %",
              flush=True)
        try:
            if "fired" in logs["full"].read_text():
                problems.append("a schedule fired during the idle window")
            lat = bench_fires(project, env, build["notebook"], fires, ahead=5.0, log=logs["full"])
        finally:
            code = stop(full)
        if code != 0:
            problems.append(f"nbmlops scheduler exited {code}")
        log = read_log(logs["full"].read_text())
        if log["events"].get("fired", 0) != fires:
            problems.append(f"the scheduler fired {log['events'].get('fired', 0)} times, expected {fires}")
        problems += [f"scheduler log: {line}" for line in log["odd"]]
        problems += [f"in-process tick log: {line}" for line in read_log(tick.pop("log"))["odd"]]
        bare_log = read_log(logs["empty"].read_text())
        problems += [f"empty-store scheduler log: {line}" for line in bare_log["odd"]]

        ls = bench_ls(project, env, ls_reps, N_SCHEDULES)
        if args.profile:
            profile_schedule_ls(project)

    total = time.perf_counter() - started
    s, d = lat["scheduled"], lat["direct"]
    ls_s = ls["seconds"]
    idle_pct = idle["scheduler_1000"]["cpu_pct"]
    print()
    print("| figure | measured | baseline | ratio | target | result |")
    print("|---|---|---|---|---|---|")
    print(f"| idle CPU, `nbmlops scheduler`, 1,000 schedules + 2 triggers (% of a core, "
          f"{idle['window_s']:.0f} s) | {idle_pct:.2f} | {idle['scheduler_empty']['cpu_pct']:.2f} "
          f"(empty store) | x{idle_pct / max(idle['scheduler_empty']['cpu_pct'], 1e-9):.1f} | < 1 | "
          f"{verdict(idle_pct < TARGETS['idle_cpu_pct'])} |")
    print(f"|   idle `python -c time.sleep` / busiest second of the scheduler (%) | "
          f"{idle['scheduler_1000']['busiest_second_pct']:.0f} | {idle['sleep']['cpu_pct']:.2f} | | | info |")
    print(f"| fire latency: due -> kernel start (run start_time), median of {lat['n']} (s) | "
          f"{s['run_start']['median']:.3f} | {d['run_start']['median']:.3f} (`nbmlops run`) | "
          f"{lat['ratio']:.3f} | < 1 | {verdict(s['run_start']['median'] < TARGETS['fire_latency_s'])} |")
    print(f"|   max (s) | {s['run_start']['max']:.3f} | {d['run_start']['max']:.3f} | | | info |")
    print(f"|   due -> kernel process created, median (s) | {s['kernel_process']['median']:.3f} | "
          f"{d['kernel_process']['median']:.3f} | "
          f"{s['kernel_process']['median'] / d['kernel_process']['median']:.3f} | | info |")
    print(f"|   due -> first cell starts, median / max (s) | {s['first_cell']['median']:.3f} / "
          f"{s['first_cell']['max']:.3f} | {d['first_cell']['median']:.3f} / {d['first_cell']['max']:.3f} | "
          f"{s['first_cell']['median'] / d['first_cell']['median']:.3f} | | info |")
    print(f"|   run launched before due, median (s) | {-s['launched']['median']:.2f} | | | | info |")
    print(f"| `nbmlops schedule ls`, 1,000 schedules, median of {ls['reps']} (s) | "
          f"{ls_s['nbmlops schedule ls']:.3f} | {ls_s['nbmlops runs ls']:.3f} (`runs ls`) | "
          f"x{ls['ratio']:.2f} | < 0.5 | {verdict(ls_s['nbmlops schedule ls'] < TARGETS['schedule_ls_s'])} |")
    ls_c = ls["cpu_seconds"]
    print(f"|   CPU time (user + sys), median (s) | {ls_c['nbmlops schedule ls']:.3f} | "
          f"{ls_c['nbmlops runs ls']:.3f} | x{ls['cpu_ratio']:.2f} | | info |")
    print(f"|   `schedule ls --json` / `trigger ls` (s) | {ls_s['nbmlops schedule ls --json']:.3f} / "
          f"{ls_s['nbmlops trigger ls']:.3f} | | | | info |")
    print(f"|   `nbmlops --version` / `python -c pass` (s) | {ls_s['nbmlops --version']:.3f} / "
          f"{ls_s['python -c pass']:.3f} | | | | info |")
    print(f"| one `Scheduler.tick()`, nothing due, median of {tick['reps']} (ms) | "
          f"{tick['tick_median_s'] * 1e3:.1f} | {tick['active_median_s'] * 1e3:.1f} (`active()`) | "
          f"x{tick['ratio_active']:.2f} | < 100 | {verdict(tick['tick_median_s'] * 1e3 < TARGETS['tick_ms'])} |")
    print(f"|   CPU per tick, median / wall p90 / wall max (ms) | {tick['tick_cpu_median_s'] * 1e3:.1f} / "
          f"{tick['tick_p90_s'] * 1e3:.1f} / {tick['tick_max_s'] * 1e3:.1f} | | | | info |")
    print(f"|   same tick against a trivial query, `next_due()` (ms) | {tick['tick_median_s'] * 1e3:.1f} | "
          f"{tick['next_due_median_s'] * 1e3:.2f} | x{tick['ratio_next_due']:.0f} | | info |")
    print(f"|   one loop pass: tick + `next_due()` (ms) | {tick['tick_plus_next_due_s'] * 1e3:.1f} | | | | info |")
    print(f"|   one tick firing 1 of the 1,000 (ms) | {tick['fire_tick_s'] * 1e3:.1f} | | | | info |")
    print(f"|   CPU before the window: start-up and {idle['warmup_s']:.0f} s warm-up (s) | "
          f"{idle['scheduler_1000']['startup_cpu_s']:.2f} | {idle['scheduler_empty']['startup_cpu_s']:.2f} | | | info |")
    load_after = os.getloadavg()
    print(f"\nbuilding: {N_SCHEDULES} x add_schedule {build['add_seconds']:.1f} s; whole benchmark "
          f"{total:.0f} s; load average at the end {load_after[0]:.2f} {load_after[1]:.2f}")
    for p in problems:
        print(f"PROBLEM: {p}")
    if args.json:
        build.pop("notebook")
        figures = {"build": build, "tick": tick, "idle": idle, "fire_latency": lat, "ls": ls,
                   "problems": problems, "seconds": total}
        Path(args.json).write_text(json.dumps(figures, indent=2, sort_keys=True))
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
