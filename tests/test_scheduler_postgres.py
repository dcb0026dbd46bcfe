"""Schedulers on a shared PostgreSQL store, as a team runs them: real ``nbmlops scheduler``
processes with their own ``--host`` names, real kernels for the (tiny) runs, a real server that
is killed and restarted. Skipped when no PostgreSQL server binaries are installed."""

from __future__ import annotations

import os
import signal
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from nbmlops.store import Store

from ._postgres import ThrowawayPostgres, fresh_database
from ._scripts import clean_env, one_line_error, script
from .conftest import make_notebook
from .test_scheduler import SchedulerProc as BaseSchedulerProc
from .test_scheduler import read_line, wait_for

pytestmark = pytest.mark.timeout(300)

SECRET = "hunter2-Sup3rSecret"
TTL = 2.0


# -- helpers (the ideas of tests/test_scheduler.py, with the store in the environment) ----------


class Project:
    """A directory with a tiny notebook, whose store is a PostgreSQL database."""

    def __init__(self, root: Path, url: str) -> None:
        self.root, self.url = root, url
        root.mkdir(parents=True, exist_ok=True)
        make_notebook(root / "quick.ipynb", [("label = 'x'", ["parameters"]),
                                             "out = label * 2\nprint(out)"])

    def env(self) -> dict[str, str]:
        return clean_env(NBMLOPS_STORE_URL=self.url,
                         NBMLOPS_ARTIFACT_URL=str(self.root / "shared" / "artifacts"),
                         NBMLOPS_PG_CONNECT_TIMEOUT="3")

    def cli(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return subprocess.run([script("nbmlops"), *args], cwd=self.root, env=self.env(),
                              capture_output=True, text=True, timeout=timeout)

    def store(self) -> Store:
        return Store.open(self.url, self.root / "shared" / "artifacts")


class SchedulerProc(BaseSchedulerProc):
    """``nbmlops scheduler`` on the project's PostgreSQL store (tests/test_scheduler.py's)."""

    def __init__(self, project: Project, *args: str) -> None:
        super().__init__(project.root, *args, env=project.env())

    def read_line(self, needle: str, timeout: float = 30.0) -> str:
        return read_line(self, needle, timeout)

    def stop(self) -> None:
        if self.poll() is None:
            self.send_signal(signal.SIGTERM)
            try:
                self.wait(30)
            except subprocess.TimeoutExpired:
                self.kill()
                self.wait(10)


def ended_fires(store: Store, name: str, n: int) -> list[Any]:
    fires = list(reversed(store.schedules.history(name)))
    return fires if len(fires) >= n and all(f.ended_at for f in fires) else []


def shared_postgres_url() -> str:
    url = os.environ.get("NBMLOPS_TEST_POSTGRES_URL")
    if not url:
        pytest.skip("no PostgreSQL server (install postgresql, or set NBMLOPS_TEST_POSTGRES_URL)")
    return url


@pytest.fixture
def shared(tmp_path: Path) -> Project:
    """A fresh database on the session's PostgreSQL server, holding one yearly schedule (its
    due times are set by the test)."""
    url = fresh_database(shared_postgres_url(), f"h3_{uuid.uuid4().hex[:10]}")
    project = Project(tmp_path / "proj", url)
    added = project.cli("schedule", "add", "quick.ipynb", "--cron", "0 0 1 1 *", "--name", "q",
                        "--json")
    assert added.returncode == 0, added.stderr
    return project


@pytest.fixture(scope="module")
def own_server() -> Iterator[ThrowawayPostgres]:
    """A PostgreSQL server of this module's own, which tests stop and start again."""
    if os.environ.get("NBMLOPS_TEST_NO_POSTGRES"):
        pytest.skip("PostgreSQL tests disabled")
    server = ThrowawayPostgres()
    try:
        url = server.start()
    except Exception as exc:  # noqa: BLE001
        server.stop()
        pytest.skip(f"PostgreSQL not started: {exc}")
    if not url:
        pytest.skip("no PostgreSQL server binaries installed")
    yield server
    server.stop()


@pytest.fixture
def guarded(own_server: ThrowawayPostgres, tmp_path: Path) -> Iterator[Project]:
    """A project on the module's own server, reached with a URL that holds a password (the
    server trusts local connections, so any password is accepted)."""
    assert own_server.url is not None
    name = f"h3_{uuid.uuid4().hex[:10]}"
    fresh_database(own_server.url, name)
    url = f"postgresql+psycopg://postgres:{SECRET}@127.0.0.1:{own_server.port}/{name}"
    project = Project(tmp_path / "proj", url)
    assert project.cli("schedule", "add", "quick.ipynb", "--cron", "0 0 1 1 *", "--name",
                       "q").returncode == 0
    yield project
    try:
        own_server.resume()  # a failed test must not leave it stopped for the next one
    except subprocess.CalledProcessError:
        pass  # already running


# -- two schedulers, one store ------------------------------------------------------------------


def test_two_schedulers_one_fires_the_standby_takes_over_after_sigkill(shared: Project) -> None:
    a = SchedulerProc(shared, "--host", "host-a", "--lease-ttl", str(TTL), "--wait")
    b: SchedulerProc | None = None
    store = shared.store()
    try:
        a_holder = a.read_line("started holder=").split("holder=")[1].split()[0]
        assert a_holder.startswith(f"host-a:{a.pid}:")
        b = SchedulerProc(shared, "--host", "host-b", "--lease-ttl", str(TTL), "--wait")
        b.read_line("waiting-for-lease")

        # a due time while both run: the lease holder fires it, exactly once
        store.schedules.update("q", next_fire_at=time.time() + 1.0)
        [first] = wait_for(lambda: ended_fires(store, "q", 1), what="the first fire")
        assert first.status == "finished" and first.owner == a_holder
        assert not any("fired" in line for line in b.lines), b.lines
        assert b.poll() is None  # still standing by

        # the holder dies without a word; a due time falls while nobody holds the lease
        a.kill()
        a.wait(10)
        killed = time.monotonic()
        store.schedules.update("q", next_fire_at=time.time() + 0.3)
        b_started = b.read_line("started holder=", timeout=TTL + 10)
        handover = time.monotonic() - killed
        assert "host-b:" in b_started
        # another host's lease cannot be judged by its pid: it is taken when it expires (it had
        # at least 2/3 of its TTL left), and no later than TTL plus the standby's retry interval
        assert 0.5 * TTL <= handover <= TTL + TTL / 3 + 3.0, handover
        assert not any("lease-taken-over" in line for line in b.lines)

        fires = wait_for(lambda: ended_fires(store, "q", 2), what="the missed due time's fire")
        time.sleep(1.0)  # nothing else may follow
        fires = list(reversed(store.schedules.history("q")))
        assert [f.status for f in fires] == ["finished", "finished"], fires
        assert fires[1].owner is not None and fires[1].owner.startswith("host-b:")
        assert fires[1].due_at is not None and fires[1].due_at < time.time()
        assert sum("fired schedule=q" in line for line in b.lines) == 1
        assert store.get_run(fires[1].run_id).status == "finished"
        lease = store.schedules.lease()
        assert lease is not None and lease.host == "host-b"
    finally:
        store.close()
        a.stop()
        if b is not None:
            b.stop()


def test_a_second_scheduler_without_wait_names_the_holder_and_exits_5(shared: Project) -> None:
    a = SchedulerProc(shared, "--host", "host-a", "--lease-ttl", str(TTL))
    try:
        a.read_line("started holder=")
        second = shared.cli("scheduler", "--host", "host-b", timeout=30)
        assert second.returncode == 5
        err = one_line_error(second)
        assert "host host-a" in err and f"pid {a.pid}" in err and "--wait" in err
    finally:
        a.stop()


# -- the server goes away -----------------------------------------------------------------------


def test_commands_on_a_stopped_server_say_where_in_one_line_without_the_password(
    own_server: ThrowawayPostgres, guarded: Project
) -> None:
    own_server.pause()
    try:
        for args in (("runs", "ls"), ("schedule", "ls"), ("runs", "show", "abc"),
                     ("scheduler", "--once")):
            proc = guarded.cli(*args, timeout=60)
            assert proc.returncode == 3, (args, proc.stdout, proc.stderr)
            err = one_line_error(proc)
            assert f"127.0.0.1:{own_server.port}" in err, err
            assert "cannot reach" in err and "PostgreSQL" in err
            assert SECRET not in proc.stderr + proc.stdout
            assert "postgres:***@" in err  # the store is named, its password masked
    finally:
        own_server.resume()
    with guarded.store() as store:  # nothing was recorded meanwhile
        assert store.list_runs().total == 0
        assert store.schedules.history("q") == []


def test_the_scheduler_rides_out_a_server_restart_and_then_fires(
    own_server: ThrowawayPostgres, guarded: Project
) -> None:
    sched = SchedulerProc(guarded, "--host", "host-a", "--lease-ttl", str(TTL))
    try:
        sched.read_line("started holder=")
        own_server.pause()
        down = sched.read_line("store-unavailable", timeout=20)
        assert f"127.0.0.1:{own_server.port}" in down and SECRET not in down
        time.sleep(TTL + 1)  # longer than the lease: nobody else took it, it stays ours
        assert sched.poll() is None, sched.lines
        assert sum("store-unavailable" in line for line in sched.lines) == 1  # once, not per poll
        own_server.resume()
        sched.read_line("store-back", timeout=30)
        with guarded.store() as store:
            store.schedules.update("q", next_fire_at=time.time() + 0.5)
            [fire] = wait_for(lambda: ended_fires(store, "q", 1), what="the fire after the restart")
            assert fire.status == "finished"
            assert store.get_run(fire.run_id).status == "finished"
        assert sched.poll() is None
        assert not any(SECRET in line for line in sched.lines)
        assert "Traceback" not in "\n".join(sched.lines)
    finally:
        sched.stop()
    assert sched.returncode == 0, sched.lines
    assert "stopped holder=" in sched.lines[-1]
