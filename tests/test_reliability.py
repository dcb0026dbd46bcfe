"""Reliability: 4 interactive kernels and a parallel pipeline write to ONE SQLite store at once.

Real kernels (jupyter_client KernelManager, ``%load_ext nbmlops``) execute cells in loops while
``nbmlops pipeline run --jobs 2`` runs a diamond pipeline again and again, for
NBMLOPS_SOAK_SECONDS (default 20 s; CI sets 60; ``benchmarks/soak.py 600`` is the 10-minute
soak). Meanwhile, at seeded random moments, one kernel is killed with SIGKILL mid-cell and
another ends itself with ``os._exit`` mid-cell; each is replaced by a fresh kernel that goes on.
Then: no "database is locked" or other nbmlops warning in any cell's output or stderr; for the
kernels that shut down, every executed cell recorded and the run "finished"; for the killed
ones, at most the cell in flight lost and the run "failed" within seconds of the kill (the
writer process marks it); every pipeline run finished with its four steps; ``PRAGMA
integrity_check`` ok. Select with ``-k soak``; the seed is NBMLOPS_SOAK_SEED (default 14).
"""

from __future__ import annotations

import importlib.util
import os
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.kernel

_SOAK = Path(__file__).resolve().parents[1] / "benchmarks" / "soak.py"


def _soak_module():
    spec = importlib.util.spec_from_file_location("nbmlops_bench_soak", _SOAK)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def _seconds() -> float:
    try:
        return max(5.0, float(os.environ.get("NBMLOPS_SOAK_SECONDS", "20")))
    except ValueError:
        return 20.0


def _seed() -> int:
    try:
        return int(os.environ.get("NBMLOPS_SOAK_SEED", "14"))
    except ValueError:
        return 14


@pytest.mark.soak
@pytest.mark.timeout(int(_seconds()) + 300)  # the soak, then kernels' shutdown and the checks
def test_soak_four_kernels_two_killed_mid_cell_and_a_parallel_pipeline_share_one_sqlite_store(
    tmp_path: Path,
) -> None:
    soak = _soak_module()
    counts = soak.soak(tmp_path / "project", _seconds(), kernels=4, seed=_seed())
    print(soak.summary(counts))  # shown with -s, and in the report when an assert fails
    assert counts["problems"] == [], counts
    assert counts["lock_errors"] == 0 and counts["warnings"] == 0
    # two kernels killed mid-cell, each replaced: 6 kernels in all, 4 at a time
    assert counts["faults_injected"] == 2 and counts["kernels"] == 6
    assert sorted(f["kind"] for f in counts["faults"]) == ["os._exit", "sigkill"]
    for fault in counts["faults"]:
        assert fault["status"] == "failed", fault
        assert fault["failed_after_s"] is not None
        assert fault["failed_after_s"] <= soak.FAILED_WITHIN, fault
        assert fault["cells_before"] - fault["recorded"] in (0, 1), fault
    assert counts["cells_executed"] >= 4 * 5 and counts["cells_lost"] <= 2
    assert counts["cells_written"] == counts["cells_executed"] - counts["cells_lost"]
    assert counts["pipeline_runs"] >= 1 and counts["pipeline_runs_ok"] == counts["pipeline_runs"]
    assert counts["integrity_check"] == "ok"


def test_fault_plan_is_seeded_two_kernels_two_kinds_inside_the_run() -> None:
    soak = _soak_module()
    plan = soak.plan_faults(60.0, 4, seed=14)
    assert plan == soak.plan_faults(60.0, 4, seed=14)  # the same moments for the same seed
    assert plan != soak.plan_faults(60.0, 4, seed=15)
    assert [f.kind for f in plan] == [soak.SIGKILL, soak.OS_EXIT]
    assert len({f.slot for f in plan}) == 2 and all(0 <= f.slot < 4 for f in plan)
    assert all(0.2 * 60 <= f.at <= 0.7 * 60 for f in plan)
    assert soak.plan_faults(60.0, 1, seed=14) == []


def test_the_check_finds_a_lost_cell_and_an_unfinished_run(tmp_path: Path) -> None:
    """The soak's check can fail: a store missing one recorded cell and with a running run."""
    from nbmlops.store import CellRecord, Store

    soak = _soak_module()
    db = tmp_path / "s" / "nbmlops.db"
    with Store.open(f"sqlite:///{db}") as store:
        rid = store.create_run(name="k0", source="interactive")
        store.record_cells(rid, [CellRecord(seq=1, source="x = 1", start_time=time.time(),
                                                duration=0.01, status="ok")])
    result = soak.KernelResult("k0", run_id=rid, executions=2)
    counts = soak.check(db, [result], [], 0.0, settle=0.2)
    assert counts["cells_lost"] == 1 and counts["cells_written"] == 1
    assert any("2 cells executed, 1 recorded" in p for p in counts["problems"])
    assert any("is running" in p for p in counts["problems"])


def _killed_run(store: object, name: str, recorded: int, status: str | None) -> str:
    from nbmlops.store import CellRecord, Store

    assert isinstance(store, Store)
    rid = store.create_run(name=name, source="interactive")
    store.record_cells(rid, [CellRecord(seq=i + 1, source=f"x = {i}", start_time=time.time(),
                                        duration=0.01, status="ok") for i in range(recorded)])
    if status is not None:
        store.end_run(rid, status=status)
    return rid


def test_the_check_finds_a_killed_kernel_left_running_or_losing_more_than_the_cell_in_flight(
    tmp_path: Path,
) -> None:
    """A killed kernel passes only with its run failed soon enough and <= 1 finished cell lost."""
    from nbmlops.store import Store

    soak = _soak_module()
    db = tmp_path / "s" / "nbmlops.db"
    with Store.open(f"sqlite:///{db}") as store:
        ok = _killed_run(store, "ok", 4, "failed")  # 5 cells finished, the last one lost
        left = _killed_run(store, "left", 5, None)  # nobody marked the run: still running
        lossy = _killed_run(store, "lossy", 3, "failed")  # 2 finished cells lost
        slow = _killed_run(store, "slow", 5, "failed")  # marked, but 30 s after the kill
        shut = _killed_run(store, "shut", 5, "finished")  # killed, yet its run says finished

    def killed(name: str, rid: str, failed_after: float | None) -> object:
        return soak.KernelResult(name, run_id=rid, executions=5, fault=soak.SIGKILL,
                                 fault_at=3.0, failed_after=failed_after,
                                 status_after_kill="failed" if failed_after else "running")

    good = soak.check(db, [killed("k0", ok, 0.4)], [], 0.0, settle=0.2)
    assert good["problems"] == [] and good["faults_injected"] == 1
    assert good["cells_lost"] == 1 and good["cells_written"] == 4

    counts = soak.check(db, [killed("k0", ok, 0.4), killed("k1", left, None),
                             killed("k2", lossy, 0.5), killed("k3", slow, 30.0),
                             killed("k4", shut, 0.5)], [], 0.0, settle=0.2)
    problems = counts["problems"]
    assert not any(p.startswith("k0") for p in problems), problems
    assert any(p.startswith("k1") and "is running, expected failed" in p for p in problems)
    assert any(p.startswith("k2") and "5 cells completed before the kill, 3 recorded" in p
               for p in problems)
    assert any(p.startswith("k3") and "failed 30.0 s after the kill" in p for p in problems)
    assert any(p.startswith("k4") and "is finished, expected failed" in p for p in problems)
    assert len(problems) == 4 and counts["faults_injected"] == 5
    assert "k0 sigkill at 3.0 s: 4/5 recorded" in soak.summary(counts)
