"""The store's schedule tables, on SQLite and (when NBMLOPS_TEST_POSTGRES_URL is set, as in
``make test``) PostgreSQL: exactly-once claims of due times and an exclusive scheduler lease,
also under concurrent writers."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import pytest

from nbmlops.config import StoreLocation
from nbmlops.errors import NotFoundError, ScheduleError
from nbmlops.store import Store

from .test_store import location, store  # noqa: F401  (the two-backend fixtures)


def add(store: Store, name: str = "nightly", **kw: Any) -> Any:  # noqa: F811
    fields = {"kind": "cron", "target": "/p/pipeline.yaml", "target_kind": "pipeline",
              "cron": "0 3 * * *", "timezone": "UTC", "overlap": "skip", "catchup": "last",
              "next_fire_at": 1000.0}
    fields.update(kw)
    return store.schedules.add(name, **fields)


def race(location: StoreLocation, n: int, work: Callable[[Store, int], Any]) -> list[Any]:  # noqa: F811
    """Run ``work`` in ``n`` threads at once, each with a Store of its own (like processes)."""
    stores = [Store(location) for _ in range(n)]
    results: list[Any] = [None] * n
    barrier = threading.Barrier(n)

    def go(i: int) -> None:
        barrier.wait()
        results[i] = work(stores[i], i)

    threads = [threading.Thread(target=go, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    for s in stores:
        s.close()
    return results


def test_schedules_crud(store: Store) -> None:  # noqa: F811
    s = add(store, params={"seed": "7"})
    assert (s.name, s.params, s.paused, s.last_fire) == ("nightly", {"seed": "7"}, False, None)
    with pytest.raises(ScheduleError, match="exists already"):
        add(store)
    add(store, "watch", kind="change", cron=None, watch="/d/*.csv", state={"files": {}},
        next_fire_at=None)
    assert [x.name for x in store.schedules.schedules()] == ["nightly", "watch"]
    assert [x.name for x in store.schedules.schedules(["change"])] == ["watch"]
    assert store.schedules.update("nightly", paused=True).paused
    assert store.schedules.next_due() is None  # paused schedules are never due
    store.schedules.update("nightly", paused=False)
    assert store.schedules.next_due() == 1000.0
    ids = store.schedules.fire_many(s.id, [{"status": "skipped", "reason": {"kind": "schedule"}}])
    assert ids is not None and store.schedules.get("nightly").last_fire.status == "skipped"
    store.schedules.remove("nightly")
    with pytest.raises(NotFoundError, match="no schedule or trigger named 'nightly'"):
        store.schedules.history("nightly")
    assert [x.name for x in store.schedules.schedules()] == ["watch"]


def test_a_due_time_is_claimed_once(store: Store) -> None:  # noqa: F811
    s = add(store)
    rec = [{"status": "started", "reason": {"kind": "schedule"}, "due_at": 1000.0,
            "run_id": "a" * 32}]
    first = store.schedules.fire_many(s.id, rec, expect_next_fire_at=1000.0, next_fire_at=2000.0)
    again = store.schedules.fire_many(s.id, rec, expect_next_fire_at=1000.0, next_fire_at=2000.0)
    assert first is not None and again is None
    assert store.schedules.get("nightly").next_fire_at == 2000.0
    assert len(store.schedules.history("nightly")) == 1


def test_concurrent_claims_of_one_due_time_fire_once(
    store: Store, location: StoreLocation  # noqa: F811
) -> None:
    s = add(store)

    def claim(st: Store, i: int) -> Any:
        return st.schedules.fire_many(
            s.id, [{"status": "started", "reason": {"i": i}, "run_id": f"{i:032x}"}],
            expect_next_fire_at=1000.0, next_fire_at=2000.0)

    results = race(location, 6, claim)
    assert sum(r is not None for r in results) == 1
    assert len(store.schedules.history("nightly")) == 1


def test_fire_status_follows_the_run(store: Store) -> None:  # noqa: F811
    s = add(store)
    run_id = store.create_run(name="nightly", source="pipeline")
    [fid] = store.schedules.fire_many(s.id, [{"status": "started", "reason": {},
                                              "run_id": run_id}]) or []
    assert [f.id for f in store.schedules.open_fires()] == [fid]
    store.end_run(run_id, "failed")
    assert store.schedules.open_fires() == []
    assert store.schedules.history("nightly")[0].status == "failed"  # read through the run
    assert store.schedules.settle_fires() == 1  # and copied into the fire row
    assert store.schedules.settle_fires() == 0


def test_finished_pipeline_runs_since(store: Store) -> None:  # noqa: F811
    ok = store.create_run(name="up", source="pipeline", notebook_path="/p/pipeline.yaml")
    bad = store.create_run(name="up", source="pipeline", notebook_path="/p/pipeline.yaml")
    other = store.create_run(name="x", source="pipeline", notebook_path="/q/pipeline.yaml")
    for rid, status in ((ok, "finished"), (bad, "failed"), (other, "finished")):
        store.end_run(rid, status)
    found = store.schedules.finished_runs_since("/p/pipeline.yaml", 0.0)
    assert [rid for rid, _ in found] == [ok]
    assert store.schedules.finished_runs_since("/p/pipeline.yaml", found[0][1], seen=[ok]) == []
    assert store.schedules.finished_runs_since("/p/pipeline.yaml", found[0][1]) == found


def test_the_lease_is_exclusive(store: Store) -> None:  # noqa: F811
    repo = store.schedules
    assert repo.lease() is None
    assert repo.acquire_lease("a", host="h", pid=1, ttl=30)
    assert not repo.acquire_lease("b", host="h", pid=2, ttl=30)
    assert not repo.acquire_lease("b", host="h", pid=2, ttl=30, steal_from="someone-else")
    assert repo.renew_lease("a", ttl=30) and not repo.renew_lease("b", ttl=30)
    lease = repo.lease()
    assert lease is not None and (lease.holder, lease.pid) == ("a", 1)
    assert repo.acquire_lease("b", host="h", pid=2, ttl=30, steal_from="a")  # "a" is dead
    assert not repo.renew_lease("a", ttl=30)
    repo.release_lease("b")
    assert repo.lease() is None
    assert repo.acquire_lease("c", host="h", pid=3, ttl=0.2)
    time.sleep(0.3)
    assert repo.acquire_lease("d", host="h", pid=4, ttl=30)  # expired: free for the taking


def test_concurrent_lease_attempts_have_one_winner(location: StoreLocation) -> None:  # noqa: F811
    with Store(location):
        pass  # create the schema before the race
    results = race(location, 6, lambda st, i: st.schedules.acquire_lease(
        f"h{i}", host="h", pid=i, ttl=30))
    assert sum(results) == 1
