"""Reliability: 4 interactive kernels and a parallel pipeline write to ONE SQLite store at once.

Real kernels (jupyter_client KernelManager, ``%load_ext nbmlops``) execute cells in loops while
``nbmlops pipeline run --jobs 2`` runs a diamond pipeline again and again, for
NBMLOPS_SOAK_SECONDS (default 20 s; CI sets 60; ``benchmarks/soak.py 600`` is the 10-minute
soak). Then: no "database is locked" or other nbmlops warning in any cell's output or stderr,
every executed cell recorded in its run, every run ended "finished", every pipeline run
finished with its four steps, ``PRAGMA integrity_check`` ok. Select with ``-k soak``.
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


def test_soak_four_kernels_and_a_parallel_pipeline_share_one_sqlite_store(tmp_path: Path) -> None:
    soak = _soak_module()
    counts = soak.soak(tmp_path / "project", _seconds(), kernels=4)
    assert counts["problems"] == [], counts
    assert counts["lock_errors"] == 0 and counts["warnings"] == 0
    assert counts["cells_executed"] >= 4 * 5 and counts["cells_lost"] == 0
    assert counts["cells_written"] == counts["cells_executed"]
    assert counts["pipeline_runs"] >= 1 and counts["pipeline_runs_ok"] == counts["pipeline_runs"]
    assert counts["integrity_check"] == "ok"


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
