"""Schedules, triggers and the scheduler daemon, end to end: the installed ``nbmlops`` script in
subprocesses (as cron/systemd would run it) and :class:`Scheduler` in-process for triggers, on a
real SQLite store and real kernels. Target notebooks are tiny: every run costs a kernel start."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from nbmlops.schedule.scheduler import Scheduler
from nbmlops.store import Store

from ._scripts import clean_env, nbmlops, one_line_error, script
from .conftest import make_notebook

pytestmark = pytest.mark.timeout(300)


# -- helpers ------------------------------------------------------------------------------------


@pytest.fixture
def project(tmp_path: Path) -> Path:
    root = tmp_path / "proj"
    root.mkdir()
    assert nbmlops("init", cwd=root).returncode == 0
    make_notebook(root / "quick.ipynb", [
        ("label = 'x'", ["parameters"]),
        "out = label * 2\nprint(out)",
    ])
    # runs while the file `hold` exists: a run that is "in progress" for as long as a test wants
    make_notebook(root / "held.ipynb", [
        ("label = 'x'", ["parameters"]),
        "import os, time\nwhile os.path.exists('hold'):\n    time.sleep(0.1)",
    ])
    make_notebook(root / "fails.ipynb", [
        ("label = 'x'", ["parameters"]),
        "raise ValueError('boom on schedule')",
    ])
    return root


def cli(*args: str, cwd: Path, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    return nbmlops(*args, cwd=cwd, timeout=timeout)


def cli_json(*args: str, cwd: Path) -> Any:
    proc = cli(*args, "--json", cwd=cwd)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


@pytest.fixture
def store(project: Path) -> Iterator[Store]:
    s = Store.open(start=project)
    yield s
    s.close()


def make_due(store: Store, name: str, at: float) -> None:
    """Pretend the scheduler has been away: the schedule's next due time is ``at``."""
    store.schedules.update(name, next_fire_at=at)


def history(store: Store, name: str) -> list[Any]:
    return list(reversed(store.schedules.history(name)))  # oldest first


class SchedulerProc(subprocess.Popen[str]):
    """``nbmlops scheduler`` in a subprocess; a thread collects its event log (stderr)."""

    def __init__(self, cwd: Path, *args: str, env: dict[str, str] | None = None) -> None:
        super().__init__([script("nbmlops"), "scheduler", "--poll", "0.2", *args], cwd=cwd,
                         env=env if env is not None else clean_env(), stdout=subprocess.DEVNULL,
                         stderr=subprocess.PIPE, text=True)
        self.lines: list[str] = []
        threading.Thread(target=self._collect, daemon=True).start()

    def _collect(self) -> None:
        assert self.stderr is not None
        for line in self.stderr:
            self.lines.append(line.rstrip("\n"))


def start_scheduler(cwd: Path, *args: str) -> SchedulerProc:
    return SchedulerProc(cwd, *args)


def wait_for(predicate: Any, timeout: float = 60.0, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def read_line(proc: SchedulerProc, needle: str, timeout: float = 30.0) -> str:
    """The first line of the scheduler's event log containing ``needle``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for line in list(proc.lines):
            if needle in line:
                return line
        if proc.poll() is not None:
            time.sleep(0.2)  # let the reader thread take the last lines
            if not any(needle in ln for ln in proc.lines):
                break
        time.sleep(0.05)
    raise AssertionError(f"no {needle!r} in the scheduler's log:\n" + "\n".join(proc.lines))


# -- schedule add/ls/pause/resume/rm/history ----------------------------------------------------


def test_schedule_commands_round_trip(project: Path) -> None:
    added = cli_json("schedule", "add", "quick.ipynb", "--cron", "0 3 * * *", "--tz",
                     "Europe/Berlin", "-p", "label", "y", "--name", "nightly", cwd=project)
    assert added["name"] == "nightly" and added["target_kind"] == "notebook"
    assert added["params"] == {"label": "y"}
    assert added["next_fire_local"].endswith("T03:00:00+01:00")  # November: CET
    assert added["next_fire_at"] > time.time()
    listed = cli_json("schedule", "ls", cwd=project)["schedules"]
    assert [s["name"] for s in listed] == ["nightly"]
    text = cli("schedule", "ls", cwd=project).stdout
    assert "nightly" in text and "0 3 * * *" in text and "Europe/Berlin" in text

    paused = cli_json("schedule", "pause", "nightly", cwd=project)
    assert paused["paused"] is True and paused["next_fire"] is None
    resumed = cli_json("schedule", "resume", "nightly", cwd=project)
    assert resumed["paused"] is False and resumed["next_fire_at"] == added["next_fire_at"]
    assert cli_json("schedule", "history", "nightly", cwd=project) == {
        "schedule": "nightly", "fires": []}
    assert "has not fired yet" in cli("schedule", "history", "nightly", cwd=project).stdout
    assert cli_json("schedule", "rm", "nightly", cwd=project)["name"] == "nightly"
    assert cli_json("schedule", "ls", cwd=project) == {"schedules": []}


def test_default_name_is_the_pipeline_name(project: Path) -> None:
    (project / "pipeline.yaml").write_text(
        "name: tiny\nsteps:\n  only:\n    notebook: quick.ipynb\n")
    first = cli_json("schedule", "add", ".", "--cron", "@daily", cwd=project)
    second = cli_json("schedule", "add", "pipeline.yaml", "--cron", "@hourly", cwd=project)
    assert (first["name"], second["name"]) == ("tiny", "tiny-2")
    assert first["target_kind"] == "pipeline"
    assert first["target"] == str(project / "pipeline.yaml")


@pytest.mark.parametrize("args, needle", [
    (["quick.ipynb", "--cron", "61 * * * *"], "invalid cron expression '61 * * * *'"),
    (["quick.ipynb", "--cron", "0 3 * *"], "4 fields, expected 5"),
    (["quick.ipynb", "--cron", "0 3 * * *", "--tz", "Europe/Berln"],
     "unknown time zone 'Europe/Berln'; did you mean Europe/Berlin"),
    (["missing.yaml", "--cron", "0 3 * * *"], "missing.yaml: no such pipeline or notebook"),
    (["quick.ipynb", "--cron", "0 3 * * *", "-p", "lable", "y"], "lable"),
    (["quick.ipynb", "--cron", "0 3 * * *", "--name", "bad name!"], "invalid name 'bad name!'"),
])
def test_bad_schedule_is_refused_and_nothing_is_stored(
    project: Path, args: list[str], needle: str
) -> None:
    proc = cli("schedule", "add", *args, cwd=project)
    assert proc.returncode == 2, proc.stderr
    assert needle in one_line_error(proc)
    assert cli_json("schedule", "ls", cwd=project) == {"schedules": []}


def test_broken_pipeline_is_refused_with_the_loaders_error(project: Path) -> None:
    (project / "cycle.yaml").write_text(
        "name: loop\nsteps:\n  a:\n    notebook: quick.ipynb\n    depends_on: [b]\n"
        "  b:\n    notebook: quick.ipynb\n    depends_on: [a]\n")
    proc = cli("schedule", "add", "cycle.yaml", "--cron", "@daily", cwd=project)
    assert proc.returncode == 2
    assert "cycle" in one_line_error(proc) and "cycle.yaml:" in proc.stderr
    validate = cli("pipeline", "validate", "cycle.yaml", cwd=project)
    assert one_line_error(validate) == one_line_error(proc)


def test_duplicate_name_and_unknown_name(project: Path) -> None:
    cli_json("schedule", "add", "quick.ipynb", "--cron", "@daily", "--name", "nightly",
             cwd=project)
    dup = cli("schedule", "add", "quick.ipynb", "--cron", "@hourly", "--name", "nightly",
              cwd=project)
    assert dup.returncode == 2 and "named 'nightly' exists already" in one_line_error(dup)
    listed = cli_json("schedule", "ls", cwd=project)["schedules"]
    assert [(s["name"], s["cron"]) for s in listed] == [("nightly", "@daily")]  # the first kept
    missing = cli("schedule", "pause", "nigthly", cwd=project)
    assert missing.returncode == 4 and "did you mean nightly" in one_line_error(missing)


# -- the scheduler ------------------------------------------------------------------------------


def test_once_fires_what_is_due_with_catchup_last_and_never_twice(project: Path, store: Store) -> None:
    cli_json("schedule", "add", "quick.ipynb", "--cron", "*/5 * * * *", "-p", "label", "yy",
             "--name", "q", cwd=project)
    now = time.time()
    make_due(store, "q", (now // 300) * 300 - 3 * 3600)  # 3 hours of due times missed
    proc = cli("scheduler", "--once", cwd=project)
    assert proc.returncode == 0, proc.stderr
    fires = history(store, "q")
    assert [f.status for f in fires] == ["skipped", "finished"]
    assert fires[0].reason["missed"] == 36 and "catch-up last" in (fires[0].message or "")
    run = store.get_run(fires[1].run_id)
    assert run.status == "finished" and run.params["label"] == "yy"
    assert run.tags["nbmlops.trigger"] == "schedule"
    assert run.tags["nbmlops.trigger.name"] == "q"
    assert run.tags["nbmlops.trigger.fire"] == str(fires[1].id)
    # the newest missed due time is the one that ran
    assert fires[1].due_at == max(f for f in [fires[1].due_at] if f) <= now
    nxt = store.schedules.get("q").next_fire_at
    assert nxt is not None and now < nxt <= now + 300
    for line in ("started", "fired schedule=q", "ended schedule=q", "status=finished"):
        assert line in proc.stderr
    # a restart right away: nothing is due, nothing fires again
    again = cli("scheduler", "--once", cwd=project)
    assert again.returncode == 0 and "fired" not in again.stderr
    assert len(history(store, "q")) == 2


def test_catchup_none_skips_what_was_missed(project: Path, store: Store) -> None:
    cli_json("schedule", "add", "quick.ipynb", "--cron", "0 0 1 * *", "--catchup", "none",
             "--name", "q", cwd=project)
    make_due(store, "q", 1772323200.0)  # 2026-03-01 00:00 UTC: long gone
    proc = cli("scheduler", "--once", cwd=project)
    assert proc.returncode == 0, proc.stderr
    [fire] = history(store, "q")
    assert fire.status == "skipped" and fire.reason["missed"] >= 8
    assert store.list_runs().total == 0
    # within --misfire-grace a late fire still counts as on time
    make_due(store, "q", time.time() - 20)
    proc = cli("scheduler", "--once", "--misfire-grace", "60", cwd=project)
    assert [f.status for f in history(store, "q")] == ["skipped", "finished"]


def test_catchup_all_with_queue_runs_every_missed_time_in_order(project: Path, store: Store) -> None:
    cli_json("schedule", "add", "quick.ipynb", "--cron", "*/5 * * * *", "--catchup", "all",
             "--overlap", "queue", "--name", "q", cwd=project)
    base = (time.time() // 300) * 300
    if time.time() - base < 2:  # the newest due time must be in the past by now
        time.sleep(2)
    make_due(store, "q", base - 600)
    proc = cli("scheduler", "--once", cwd=project)
    assert proc.returncode == 0, proc.stderr
    fires = history(store, "q")
    assert [f.status for f in fires] == ["finished"] * 3
    assert [f.due_at for f in fires] == [base - 600, base - 300, base]
    runs = [store.get_run(f.run_id) for f in fires]
    for earlier, later in zip(runs, runs[1:], strict=False):  # queued: one after the other
        assert earlier.end_time is not None and earlier.end_time <= later.start_time


def test_failure_on_schedule_is_recorded_and_the_next_fire_is_unaffected(
    project: Path, store: Store
) -> None:
    # yearly: no real due time can come while the test runs (with */5, a run crossing a
    # five-minute boundary fired a second time inside `--once` and the test flaked)
    cli_json("schedule", "add", "fails.ipynb", "--cron", "0 0 1 1 *", "--name", "f", cwd=project)
    make_due(store, "f", time.time() - 5)
    proc = cli("scheduler", "--once", cwd=project)
    assert proc.returncode == 1  # cron/systemd users learn of it from the exit code
    [fire] = history(store, "f")
    assert fire.status == "failed" and "boom on schedule" in (fire.message or "")
    assert store.get_run(fire.run_id).status == "failed"
    assert "status=failed" in proc.stderr
    sched = store.schedules.get("f")
    assert sched.next_fire_at is not None and sched.next_fire_at > time.time()
    assert not sched.paused
    make_due(store, "f", time.time() - 1)  # the next due time comes: it fires again
    assert cli("scheduler", "--once", cwd=project).returncode == 1
    assert [f.status for f in history(store, "f")] == ["failed", "failed"]


def test_a_second_scheduler_on_the_store_exits_or_waits(project: Path) -> None:
    first = start_scheduler(project)
    second_waiting: SchedulerProc | None = None
    try:
        read_line(first, "started holder=")
        second = cli("scheduler", cwd=project, timeout=30)
        assert second.returncode == 5
        err = one_line_error(second)
        assert "another scheduler runs on this store" in err and f"pid {first.pid}" in err
        assert "--wait" in err
        second_waiting = start_scheduler(project, "--wait")
        read_line(second_waiting, "waiting-for-lease")
        first.send_signal(signal.SIGTERM)
        assert first.wait(30) == 0
        line = read_line(second_waiting, "started holder=", timeout=30)
        assert f":{second_waiting.pid}:" in line
    finally:
        for proc in (first, second_waiting):
            if proc is not None and proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                proc.wait(30)


def test_sigkill_mid_run_then_restart_abandons_the_run_and_fires_the_next_once(
    project: Path, store: Store
) -> None:
    cli_json("schedule", "add", "held.ipynb", "--cron", "*/5 * * * *", "--name", "h", cwd=project)
    (project / "hold").write_text("")
    make_due(store, "h", time.time() - 1)
    sched_proc = start_scheduler(project)
    try:
        read_line(sched_proc, "fired schedule=h")
        [fire] = history(store, "h")
        wait_for(lambda: store.cell_executions(fire.run_id) if store.run_exists(fire.run_id)
                 else None, what="the held run's first cell")
        sched_proc.kill()  # SIGKILL: no clean-up at all
        sched_proc.wait(10)
    finally:
        if sched_proc.poll() is None:
            sched_proc.kill()
    make_due(store, "h", time.time() - 1)  # the next due time, while no scheduler ran
    # `hold` stays until the restarted scheduler has fired again: its recovery (which runs before
    # any fire) must settle the orphaned run while it is still held. Removed earlier, the orphan
    # could finish by itself during the restart's start-up and rightly keep `finished`.
    restart = start_scheduler(project, "--once")
    try:
        read_line(restart, "fired schedule=h", timeout=120)
        (project / "hold").unlink()  # lets the next fire's run end
        assert restart.wait(180) == 0, "\n".join(restart.lines)
    finally:
        if restart.poll() is None:
            restart.kill()
    fires = history(store, "h")
    assert [f.status for f in fires][1:] == ["finished"]
    # The orphan got SIGTERM when its scheduler died (PR_SET_PDEATHSIG): either it ended its run
    # itself before the restart (the fire copies `failed`), or the restarted scheduler found it
    # still running, stopped it and abandoned the fire. Never `finished`, never left running.
    assert fires[0].status in ("abandoned", "failed")
    if fires[0].status == "abandoned":
        assert "stopped before the run ended" in (fires[0].message or "")
    old = store.get_run(fires[0].run_id)
    assert old.status in ("failed", "cancelled") and old.end_time is not None
    assert store.get_run(fires[1].run_id).status == "finished"
    assert sum("fired schedule=h" in line for line in restart.lines) == 1


def test_sigterm_cancels_running_runs_and_releases_the_lease(project: Path, store: Store) -> None:
    # a yearly cron: made due once below, it cannot come due again while the test runs (with
    # */5 a CI run crossed a 5-minute boundary and fired twice)
    cli_json("schedule", "add", "held.ipynb", "--cron", "0 0 1 1 *", "--name", "h", cwd=project)
    (project / "hold").write_text("")
    make_due(store, "h", time.time() - 1)
    proc = start_scheduler(project)
    try:
        read_line(proc, "fired schedule=h")
        [fire] = history(store, "h")
        wait_for(lambda: store.run_exists(fire.run_id), what="the run")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
    [fire] = history(store, "h")
    assert fire.status == "cancelled"
    assert store.get_run(fire.run_id).status == "cancelled"
    assert store.schedules.lease() is None


# -- triggers -----------------------------------------------------------------------------------


def drain(sched: Scheduler, timeout: float = 120.0) -> None:
    """Tick until the runs the scheduler started have ended."""
    deadline = time.monotonic() + timeout
    while sched.children and time.monotonic() < deadline:
        sched.tick()
        time.sleep(0.1)
    assert not sched.children, "runs did not end"


@pytest.fixture
def scheduler(store: Store) -> Iterator[Scheduler]:
    sched = Scheduler(store, poll=0.1, out=io.StringIO(), lead=0)
    sched.acquire_lease()
    yield sched
    sched.stop()
    for child in sched.children.values():
        child.proc.kill()
        child.proc.wait(10)
    sched.release_lease()


def test_change_trigger_fires_on_content_change_only(
    project: Path, store: Store, scheduler: Scheduler
) -> None:
    data = project / "data"
    data.mkdir()
    (data / "a.csv").write_text("x\n1\n")
    added = cli_json("trigger", "add", "quick.ipynb", "--on-change", "data/*.csv", cwd=project)
    name = added["name"]
    assert name == "quick-on-change" and added["watched_files"] == 1
    for _ in range(3):
        assert scheduler.tick().fired == 0  # the files it was added with do not fire
    os.utime(data / "a.csv", ns=(time.time_ns(), time.time_ns() + 5_000_000_000))  # touch only
    for _ in range(3):
        assert scheduler.tick().fired == 0
    old_fp = store.schedules.get(name).state["files"][str(data / "a.csv")]["fp"]
    (data / "a.csv").write_text("x\n2\n")
    fired = sum(scheduler.tick().fired for _ in range(3))  # seen, settled, fingerprinted
    assert fired == 1
    drain(scheduler)
    [fire] = history(store, name)
    assert fire.status == "finished"
    change = fire.reason["files"][str(data / "a.csv")]
    assert change["old"] == old_fp and change["new"] != old_fp and len(change["new"]) >= 32
    run = store.get_run(fire.run_id)
    assert run.tags["nbmlops.trigger"] == "change"
    assert json.loads(run.tags["nbmlops.trigger.files"]) == fire.reason["files"]
    (data / "b.csv").write_text("y\n")  # a new matching file fires too
    assert sum(scheduler.tick().fired for _ in range(3)) == 1
    drain(scheduler)
    newest = history(store, name)[-1]
    assert newest.reason["files"][str(data / "b.csv")]["old"] is None


def test_after_trigger_fires_when_the_upstream_pipeline_succeeds(
    project: Path, store: Store, scheduler: Scheduler
) -> None:
    (project / "up").mkdir()
    make_notebook(project / "up" / "ok.ipynb", [("fail = False", ["parameters"]),
                                                "assert not fail, 'told to fail'"])
    (project / "up" / "pipeline.yaml").write_text(
        "name: upstream\nsteps:\n  ok:\n    notebook: ok.ipynb\n")
    added = cli_json("trigger", "add", "quick.ipynb", "--after", "up", "--name", "follow",
                     cwd=project)
    assert added["watch"] == str(project / "up" / "pipeline.yaml")
    assert scheduler.tick().fired == 0
    failed = cli("pipeline", "run", "up", "-p", "fail", "True", "--no-progress", cwd=project)
    assert failed.returncode == 1
    assert scheduler.tick().fired == 0  # a failed upstream run does not trigger
    ok = cli_json("pipeline", "run", "up", "--no-progress", cwd=project)
    assert scheduler.tick().fired == 1
    assert scheduler.tick().fired == 0  # once per upstream run
    drain(scheduler)
    [fire] = history(store, "follow")
    assert fire.status == "finished"
    assert fire.reason == {"kind": "after", "upstream_pipeline": added["watch"],
                           "upstream_run": ok["run_id"]}
    assert store.get_run(fire.run_id).tags["nbmlops.trigger.upstream_run"] == ok["run_id"]


def test_after_trigger_loops_are_refused(project: Path) -> None:
    for name in ("a", "b"):
        (project / name).mkdir()
        (project / name / "pipeline.yaml").write_text(
            f"name: {name}\nsteps:\n  s:\n    notebook: ../quick.ipynb\n")
    cli_json("trigger", "add", "b", "--after", "a", cwd=project)
    loop = cli("trigger", "add", "a", "--after", "b", cwd=project)
    assert loop.returncode == 2 and "would make a loop" in one_line_error(loop)
    both = cli("trigger", "add", "a", "--after", "b", "--on-change", "x", cwd=project)
    assert both.returncode == 2 and "exactly one of" in one_line_error(both)


def test_trigger_fire_runs_now_and_records_a_manual_fire(project: Path, store: Store) -> None:
    cli_json("schedule", "add", "quick.ipynb", "--cron", "@yearly", "--name", "y", "--paused",
             "-p", "label", "m", cwd=project)
    fired = cli_json("trigger", "fire", "y", cwd=project)
    assert fired["status"] == "finished"
    [fire] = history(store, "y")
    assert fire.reason["kind"] == "manual" and fire.reason["by"]
    run = store.get_run(fired["run_id"])
    assert run.status == "finished" and run.params["label"] == "m"
    assert run.tags["nbmlops.trigger"] == "manual"
    assert store.schedules.get("y").paused  # firing by hand does not resume it
    cli_json("schedule", "add", "fails.ipynb", "--cron", "@yearly", "--name", "bad", cwd=project)
    bad = cli("trigger", "fire", "bad", cwd=project)
    assert bad.returncode == 1 and "failed" in one_line_error(bad)


def test_sigterm_to_nbmlops_run_records_the_run_cancelled(project: Path, store: Store) -> None:
    """What the scheduler's SIGTERM does to a notebook run: the kernel stops, the run is
    recorded cancelled (not left running), the CLI exits 130."""
    (project / "hold").write_text("")
    run_id = "c" * 32
    proc = subprocess.Popen([script("nbmlops"), "run", "held.ipynb", "--run-id", run_id],
                            cwd=project, env=clean_env(), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        wait_for(lambda: store.run_exists(run_id) and store.cell_executions(run_id),
                 what="the first cell")
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err
    assert "cancelled" in err.strip().splitlines()[-1], err
    run = store.get_run(run_id)
    assert run.status == "cancelled" and run.end_time is not None


class CountingScheduler(Scheduler):
    """A scheduler that counts its ticks (a loop that spins shows up as thousands)."""

    ticks = 0

    def tick(self, **kw: Any) -> Any:
        self.ticks += 1
        return super().tick(**kw)


def run_for(sched: Scheduler, seconds: float, **kw: Any) -> threading.Thread:
    thread = threading.Thread(target=sched.run, kwargs={"install_signals": False, **kw},
                              daemon=True)
    thread.start()
    time.sleep(seconds)
    return thread


def test_a_schedule_that_keeps_failing_does_not_make_the_loop_spin(store: Store) -> None:
    # a stored schedule the scheduler cannot handle (e.g. a zone this host lacks): always due
    store.schedules.add("broken", kind="cron", target="/nowhere/pipeline.yaml",
                        target_kind="pipeline", cron="61 3 1 5 *", timezone="UTC",
                        overlap="skip", catchup="last", next_fire_at=time.time() - 10)
    out = io.StringIO()
    sched = CountingScheduler(store, poll=0.2, out=out, lead=0)
    thread = run_for(sched, 1.5)
    sched.stop()
    thread.join(10)
    assert not thread.is_alive()
    assert 3 <= sched.ticks <= 12  # one per poll, not a busy loop
    errors = [ln for ln in out.getvalue().splitlines() if " error " in ln]
    assert len(errors) == 1 and "schedule=broken" in errors[0]  # logged once, not per tick


def test_once_waits_quietly_and_fires_nothing_that_falls_due_after_it_started(
    project: Path, store: Store
) -> None:
    cli_json("schedule", "add", "held.ipynb", "--cron", "@yearly", "--name", "held", cwd=project)
    cli_json("schedule", "add", "quick.ipynb", "--cron", "@yearly", "--name", "later",
             cwd=project)
    (project / "hold").write_text("")
    make_due(store, "held", time.time() - 1)
    make_due(store, "later", time.time() + 1)  # due while --once waits for "held"
    sched = CountingScheduler(store, poll=0.2, out=io.StringIO(), lead=0)
    thread = run_for(sched, 3.0, once=True)
    assert thread.is_alive()  # still waiting for the held run
    (project / "hold").unlink()
    thread.join(60)
    assert not thread.is_alive()
    assert sched.ticks < 60  # 0.2 s polls while it waited, not a spin
    assert [f.status for f in history(store, "held")] == ["finished"]
    assert history(store, "later") == []  # left for the next scheduler


# -- found in review ----------------------------------------------------------------------------


def test_a_manual_fire_whose_run_never_started_does_not_block_the_schedule(
    project: Path, store: Store, scheduler: Scheduler
) -> None:
    cli_json("schedule", "add", "quick.ipynb", "--cron", "@yearly", "-p", "label", "hi",
             "--name", "q", cwd=project)
    make_notebook(project / "quick.ipynb", [("other = 1", ["parameters"]), "x = other"])
    fired = cli_json("trigger", "fire", "q", "--no-wait", cwd=project)  # its run cannot start
    [fire] = history(store, "q")
    wait_for(lambda: fire.pid and not os.path.exists(f"/proc/{fire.pid}/cmdline")
             or "has no parameter" in (project / ".nbmlops" / "runs" / fired["run_id"]
                                       / "scheduler.log").read_text(errors="replace"),
             what="the manual fire's process to fail")
    time.sleep(5.5)  # a fire younger than 5 s may still be starting its process
    scheduler.tick()
    [fire] = history(store, "q")
    assert fire.status == "failed" and "exited before" in (fire.message or "")
    assert store.schedules.open_fires() == []  # q is not "running" any more


def test_once_from_cron_settles_and_fires_a_change_trigger_across_runs(
    project: Path, store: Store
) -> None:
    (project / "data").mkdir()
    cli_json("trigger", "add", "quick.ipynb", "--on-change", "data/*.csv", "--name", "ch",
             cwd=project)
    (project / "data" / "sales[2024].csv").write_text("a\n1\n")  # glob characters in the name
    first = cli("scheduler", "--once", cwd=project)  # sees it change: not settled yet
    assert first.returncode == 0 and "fired" not in first.stderr
    second = cli("scheduler", "--once", cwd=project)  # a minute later in cron: settled, fires
    assert second.returncode == 0, second.stderr
    [fire] = history(store, "ch")
    assert fire.status == "finished"
    assert list(fire.reason["files"]) == [str(project / "data" / "sales[2024].csv")]


def test_a_literal_path_with_glob_characters_watches_that_file(project: Path) -> None:
    (project / "in[1].csv").write_text("x")
    added = cli_json("trigger", "add", "quick.ipynb", "--on-change", "in[1].csv", cwd=project)
    assert added["watched_files"] == 1


def test_a_change_trigger_on_its_own_outputs_is_refused(project: Path) -> None:
    (project / "pipeline.yaml").write_text(
        "name: writes\nsteps:\n  w:\n    notebook: quick.ipynb\n    outputs: [data/out.csv]\n")
    loop = cli("trigger", "add", "pipeline.yaml", "--on-change", "data/*.csv", cwd=project)
    assert loop.returncode == 2
    assert "matches data/out.csv, an output of step w" in one_line_error(loop)


def test_default_names_are_valid_names(project: Path) -> None:
    make_notebook(project / "_prep me.ipynb", ["x = 1"])
    added = cli_json("schedule", "add", "_prep me.ipynb", "--cron", "@daily", cwd=project)
    assert added["name"] == "prep-me"


def test_a_lease_left_with_our_own_pid_is_taken_over(store: Store) -> None:
    """A container restarted with the same hostname runs the new scheduler under the pid the
    old one had: that lease is not alive, whatever `kill -0` says."""
    import socket

    assert store.schedules.acquire_lease("old-holder", host=socket.gethostname(), pid=os.getpid(),
                                         ttl=300)
    out = io.StringIO()
    sched = Scheduler(store, out=out)
    sched.acquire_lease()
    try:
        assert "lease-taken-over" in out.getvalue()
        lease = store.schedules.lease()
        assert lease is not None and lease.holder == sched.holder
    finally:
        sched.release_lease()


def test_resuming_an_after_trigger_ignores_upstream_runs_made_while_paused(
    project: Path, store: Store, scheduler: Scheduler
) -> None:
    (project / "up").mkdir()
    (project / "up" / "pipeline.yaml").write_text(
        "name: upstream\nsteps:\n  s:\n    notebook: ../quick.ipynb\n")
    added = cli_json("trigger", "add", "quick.ipynb", "--after", "up", "--name", "a",
                     cwd=project)
    cli_json("trigger", "pause", "a", cwd=project)
    for _ in range(2):
        assert cli("pipeline", "run", "up", "--no-progress", cwd=project).returncode == 0
    cli_json("trigger", "resume", "a", cwd=project)
    assert scheduler.tick().fired == 0 and scheduler.tick().queued == 0
    assert added["watch"] == str(project / "up" / "pipeline.yaml")


def test_a_store_that_is_locked_for_a_while_does_not_stop_the_scheduler(project: Path) -> None:
    import sqlite3

    loc = Store.open(start=project)
    loc.close()
    store = Store(loc.location, lock_wait_ms=200)
    out = io.StringIO()
    sched = CountingScheduler(store, poll=0.2, out=out, lead=0, lease_ttl=0.9)  # renews often
    thread = run_for(sched, 0.5)
    db = sqlite3.connect(str(loc.location.sqlite_path), timeout=5, isolation_level=None)
    db.execute("BEGIN EXCLUSIVE")  # a stuck writer: the lease renewal (a write) must wait
    time.sleep(1.5)
    db.execute("COMMIT")
    db.close()
    ticks = sched.ticks
    time.sleep(0.8)
    try:
        assert thread.is_alive(), out.getvalue()
        assert sched.ticks > ticks  # ticking again
        assert " error " in out.getvalue() and "locked" in out.getvalue()
    finally:
        sched.stop()
        thread.join(10)
        store.close()


def test_the_scheduler_never_creates_an_empty_store(tmp_path: Path) -> None:
    proc = cli("scheduler", "--once", cwd=tmp_path)
    assert proc.returncode == 3
    assert "no nbmlops store" in one_line_error(proc) and "nbmlops init" in proc.stderr
    assert not (tmp_path / ".nbmlops").exists()
