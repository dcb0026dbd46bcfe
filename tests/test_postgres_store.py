"""What a team store on PostgreSQL must hold under concurrency: the conditional UPDATEs that
claim a schedule's due time and the scheduler lease decide exactly one winner among processes
racing for them (PostgreSQL's default READ COMMITTED: the loser's UPDATE waits for the winner's
row lock, re-reads the row and no longer matches), and a password in the store URL is never
shown. Real processes on the session's throwaway PostgreSQL server (tests/_postgres.py)."""

from __future__ import annotations

import multiprocessing as mp
import os
import subprocess
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from nbmlops.errors import StoreUnavailableError
from nbmlops.store import Store

from ._postgres import _free_port, fresh_database
from ._scripts import clean_env, one_line_error, script

pytestmark = pytest.mark.timeout(180)

PROCS = 8
ROUNDS = 40


@pytest.fixture
def pg_url() -> str:
    url = os.environ.get("NBMLOPS_TEST_POSTGRES_URL")
    if not url:
        pytest.skip("no PostgreSQL server (install postgresql, or set NBMLOPS_TEST_POSTGRES_URL)")
    return fresh_database(url, f"h3s_{uuid.uuid4().hex[:10]}")


def _open(url: str, tmp: str) -> Store:
    return Store.open(url, Path(tmp) / "artifacts")


def _claimer(url: str, tmp: str, sid: int, index: int, go: Any, out: Any) -> None:
    """Try to claim every due time 0..ROUNDS-1 in order, like a scheduler's tick would."""
    with _open(url, tmp) as store:
        store.schedules.lease()  # connected
        out.put(("ready", index))
        go.wait(60)
        won = []
        for due in range(ROUNDS):
            ids = store.schedules.fire_many(
                sid, [{"status": "skipped", "due_at": float(due), "reason": {"p": index}}],
                owner=f"p{index}", expect_next_fire_at=float(due), next_fire_at=float(due + 1))
            if ids is not None:
                won.append(due)
            # a scheduler ticks; without a pause one process could sweep all 40 due times
            # before the others are scheduled on a loaded 2-core machine (seen in CI)
            time.sleep(0.01)
    out.put((index, won))


def _leaser(url: str, tmp: str, index: int, go: Any, out: Any) -> None:
    with _open(url, tmp) as store:
        store.schedules.lease()  # connected
        out.put(("ready", index))
        go.wait(60)
        got = store.schedules.acquire_lease(f"h{index}:1:x", host=f"h{index}", pid=1, ttl=30)
    out.put((index, got))


def _race(target: Any, args: tuple[Any, ...]) -> list[Any]:
    ctx = mp.get_context("fork")  # each child opens its own store (engine) after the fork
    out, go = ctx.Queue(), ctx.Event()
    procs = [ctx.Process(target=target, args=(*args, i, go, out)) for i in range(PROCS)]
    for p in procs:
        p.start()
    ready = [out.get(timeout=120) for _ in procs]
    assert all(r[0] == "ready" for r in ready)
    go.set()  # all connected: they start together
    results = [out.get(timeout=120) for _ in procs]
    for p in procs:
        p.join(30)
        assert p.exitcode == 0
    return results


def test_each_due_time_is_claimed_by_exactly_one_of_8_processes(pg_url: str, tmp_path: Path) -> None:
    with _open(pg_url, str(tmp_path)) as store:
        sid = store.schedules.add("race", kind="cron", target="/x.ipynb", target_kind="notebook",
                                  cron="0 0 1 1 *", timezone="UTC", overlap="allow",
                                  catchup="none", next_fire_at=0.0).id
    results = _race(_claimer, (pg_url, str(tmp_path), sid))
    wins = sorted(due for _i, won in results for due in won)
    assert wins == list(range(ROUNDS))  # every due time once: none lost, none twice
    assert sum(1 for _i, won in results if won) >= 2  # they did race (more than one winner)
    with _open(pg_url, str(tmp_path)) as store:
        fires = store.schedules.history("race", limit=1000)
        assert sorted(f.due_at for f in fires) == [float(d) for d in range(ROUNDS)]
        assert store.schedules.get("race").next_fire_at == float(ROUNDS)


def test_the_lease_goes_to_exactly_one_of_8_processes(pg_url: str, tmp_path: Path) -> None:
    _open(pg_url, str(tmp_path)).close()  # the schema, before the race
    for _round in range(3):
        results = _race(_leaser, (pg_url, str(tmp_path)))
        winners = [i for i, got in results if got]
        assert len(winners) == 1, results
        with _open(pg_url, str(tmp_path)) as store:
            lease = store.schedules.lease()
            assert lease is not None and lease.holder == f"h{winners[0]}:1:x"
            store.schedules.release_lease(lease.holder)


def test_an_unreachable_server_is_one_line_with_host_port_and_no_password(tmp_path: Path) -> None:
    port = _free_port()  # nothing listens there
    secret = "pa55-w0rd-XYZ"
    url = f"postgresql+psycopg://alice:{secret}@127.0.0.1:{port}/team"
    with pytest.raises(StoreUnavailableError) as info:
        Store.open(url, tmp_path / "artifacts")
    text = str(info.value)
    assert f"127.0.0.1:{port}" in text and secret not in text and "\n" not in text
    assert "alice:***@" in text
    proc = subprocess.run(
        [script("nbmlops"), "runs", "ls"], cwd=tmp_path, capture_output=True, text=True,
        env=clean_env(NBMLOPS_STORE_URL=url), timeout=60)
    assert proc.returncode == 3
    err = one_line_error(proc)
    assert err.startswith(f"Error: cannot reach the store's PostgreSQL server at 127.0.0.1:{port}")
    assert secret not in proc.stderr + proc.stdout
    assert not (tmp_path / ".nbmlops").exists()  # nothing created locally either


def test_a_wrong_password_is_named_as_such_and_not_printed(pg_url: str, tmp_path: Path) -> None:
    """A reachable server that refuses the login says so (the driver's words), password masked."""
    import psycopg
    from sqlalchemy.engine import make_url

    u = make_url(pg_url)
    admin = u.set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute("DROP ROLE IF EXISTS h3_nologin")
        conn.execute("CREATE ROLE h3_nologin NOLOGIN PASSWORD 'x'")
    secret = "n0t-the-Password"
    url = u.set(username="h3_nologin", password=secret).render_as_string(hide_password=False)
    with pytest.raises(StoreUnavailableError) as info:
        Store.open(url, tmp_path / "artifacts")
    text = str(info.value)
    assert secret not in text and "\n" not in text
    assert "h3_nologin" in text and "not permitted to log in" in text
