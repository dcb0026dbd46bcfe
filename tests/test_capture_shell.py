"""Capture in an in-process IPython shell: store outages, the writer queue, load time."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from IPython.core.interactiveshell import InteractiveShell
from traitlets.config import Config

from nbmlops.capture.session import active_session
from nbmlops.capture.writer import BackgroundWriter, Cells, StartRun
from nbmlops.errors import StoreUnavailableError
from nbmlops.store import CellRecord, Store


@pytest.fixture
def shell(monkeypatch: pytest.MonkeyPatch, store_url: str, tmp_path: Path) -> Iterator[InteractiveShell]:
    monkeypatch.setenv("NBMLOPS_STORE_URL", store_url)
    monkeypatch.setenv("NBMLOPS_ARTIFACT_URL", str(tmp_path / "store" / "artifacts"))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("IPYTHONDIR", str(tmp_path / "ipython"))
    config = Config()
    config.HistoryManager.enabled = False
    sh = InteractiveShell.instance(config=config)
    yield sh
    sh.run_line_magic("unload_ext", "nbmlops")
    InteractiveShell.clear_instance()


LOCKER = """
import sqlite3, sys
conn = sqlite3.connect(sys.argv[1], isolation_level=None)
conn.execute("BEGIN EXCLUSIVE")
print("locked", flush=True)
sys.stdin.readline()
conn.execute("COMMIT")
"""


def test_store_locked_by_another_process_then_recovers(
    shell: InteractiveShell, store: Store, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("NBMLOPS_BUSY_TIMEOUT_MS", "100")
    locker = subprocess.Popen(
        [sys.executable, "-c", LOCKER, str(store.location.sqlite_path)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )
    try:
        assert locker.stdout is not None and locker.stdout.readline().strip() == "locked"
        shell.run_line_magic("load_ext", "nbmlops")
        session = active_session()
        assert session is not None
        assert shell.run_cell("x = 20").success
        assert shell.run_cell("y = x * 2 + 2").success
        assert session.flush(timeout=1.0) is False  # nothing can be written while locked
        # the writer process reports the outage after its first failed write
        deadline = time.monotonic() + 60
        while session._writer.problem is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert shell.run_cell("z = y").success
        assert shell.run_cell("w = z").success
        assert shell.user_ns["w"] == 42
        err = capsys.readouterr().err
        assert err.count("the lineage store is unavailable") == 1, err
        assert "locked" in err
    finally:
        assert locker.stdin is not None
        locker.stdin.write("\n")
        locker.stdin.flush()
        locker.wait(timeout=10)
    assert session.flush(timeout=60.0) is True
    assert shell.run_cell("v = 1").success
    session.flush(timeout=10.0)
    assert "available again" in capsys.readouterr().err
    run = store.get_run(session.run_id)
    cells = store.cell_executions(run.id)
    assert [c.source for c in cells] == ["x = 20", "y = x * 2 + 2", "z = y", "w = z", "v = 1"]
    assert cells[1].vars_used == ["x"]


def test_api_outside_a_session_explains_the_fix() -> None:
    import nbmlops
    from nbmlops.errors import InvalidArgumentError

    with pytest.raises(InvalidArgumentError, match="load_ext nbmlops"):
        nbmlops.log_param("a", 1)


def test_load_ext_is_fast_and_unload_restores_everything(shell: InteractiveShell) -> None:
    import builtins

    import pandas as pd

    original_open, original_read_csv = builtins.open, pd.read_csv
    started = time.perf_counter()
    shell.run_line_magic("load_ext", "nbmlops")
    assert time.perf_counter() - started < 0.5  # the benchmark measures the real figure
    assert pd.read_csv is not original_read_csv and builtins.open is not original_open
    shell.run_line_magic("unload_ext", "nbmlops")
    assert pd.read_csv is original_read_csv and builtins.open is original_open
    assert active_session() is None
    assert shell.run_cell("a = 1").success


def _record(seq: int) -> CellRecord:
    return CellRecord(seq=seq, source=f"a = {seq}", start_time=time.time(), duration=0.0, status="ok")


def test_writer_queue_is_bounded_and_keeps_the_run_start() -> None:
    def unavailable() -> Store:
        raise StoreUnavailableError("store is on holiday")

    writer = BackgroundWriter(unavailable, max_pending=5, retry_initial=0.05, retry_max=0.1)
    writer.submit(StartRun("r" * 32, {"name": "n"}))
    for i in range(10):
        writer.submit(Cells("r" * 32, [_record(i)]))
    assert writer.flush(timeout=0.5) is False
    assert writer.problem == "store is on holiday"
    assert writer.dropped == 6 and writer.pending == 5
    writer.close(timeout=0.2)


def test_writer_writes_everything_in_order(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'w.db'}"
    writer = BackgroundWriter(lambda: Store.open(url, tmp_path / "art"))
    writer.submit(StartRun("a" * 32, {"name": "ordered"}))
    for i in range(300):
        writer.submit(Cells("a" * 32, [_record(i)]))
    assert writer.flush(timeout=30)
    writer.close()
    with Store.open(url, tmp_path / "art") as store:
        assert [c.seq for c in store.cell_executions("a" * 32)] == list(range(300))


def test_journal_replay_is_idempotent_and_marks_the_run_failed(tmp_path: Path, store: Store) -> None:
    from nbmlops.capture.journal import Journal, recover_journals
    from nbmlops.capture.writer import Batch
    from nbmlops.store import MetricValue

    journal_dir = tmp_path / "journal"
    journal = Journal(journal_dir, "c" * 32)
    journal.append(StartRun("c" * 32, {"name": "crashed", "source": "interactive"}))
    for i in range(3):
        journal.append(Cells("c" * 32, [_record(i)]))
    journal.append(Batch("c" * 32, params={"lr": 0.1}, metrics=[MetricValue("loss", 0.5, 0, 123.0)]))
    journal.close(delete=False)
    with open(journal.path, "a") as fh:
        fh.write('{"op": "Cells", "run_id": "cccc')  # the line the crash cut short
    # pretend the journal belongs to a process that is gone
    dead = journal.path.with_name(journal.path.name.replace(f"-{__import__('os').getpid()}-", "-999999999-"))
    journal.path.rename(dead)

    assert recover_journals(journal_dir, store) == 3
    assert not dead.exists()
    run = store.get_run("c" * 32)
    assert run.status == "failed" and run.params == {"lr": "0.1"} and run.metrics == {"loss": 0.5}
    assert [c.seq for c in store.cell_executions(run.id)] == [0, 1, 2]

    # a second copy of the same journal adds nothing
    journal2 = Journal(journal_dir, "c" * 32)
    journal2.append(StartRun("c" * 32, {"name": "crashed"}))
    journal2.append(Cells("c" * 32, [_record(0), _record(3)]))
    journal2.append(Batch("c" * 32, metrics=[MetricValue("loss", 0.5, 0, 123.0)]))
    journal2.close(delete=False)
    journal2.path.rename(dead)
    assert recover_journals(journal_dir, store) == 1
    assert [c.seq for c in store.cell_executions(run.id)] == [0, 1, 2, 3]
    assert len(store.metric_history(run.id, "loss")) == 1


def test_live_journals_are_left_alone(tmp_path: Path, store: Store) -> None:
    from nbmlops.capture.journal import Journal, recover_journals

    journal = Journal(tmp_path / "journal", "d" * 32)  # this process is alive
    journal.append(StartRun("d" * 32, {"name": "alive"}))
    assert recover_journals(tmp_path / "journal", store) == 0
    assert journal.path.exists() and not store.run_exists("d" * 32)
    journal.close(delete=True)
    assert not journal.path.exists()


def test_a_record_the_store_refuses_is_dropped_not_retried_forever(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'w.db'}"
    writer = BackgroundWriter(lambda: Store.open(url, tmp_path / "art"), linger=0)
    writer.submit(Cells("f" * 32, [_record(0)]))  # no such run: a foreign-key violation
    writer.submit(StartRun("a" * 32, {"name": "fine"}))
    writer.submit(Cells("a" * 32, [_record(0)]))
    assert writer.flush(timeout=10)
    assert writer.rejected == 1 and "refused" in (writer.rejection or "")
    assert writer.problem is None
    writer.close()
    with Store.open(url, tmp_path / "art") as store:
        assert [c.seq for c in store.cell_executions("a" * 32)] == [0]


def test_unknown_run_source_falls_back_to_interactive(
    shell: InteractiveShell, store: Store, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("NBMLOPS_RUN_SOURCE", "benchmark")
    shell.run_line_magic("load_ext", "nbmlops")
    session = active_session()
    assert session is not None and shell.run_cell("a = 1").success
    assert session.flush(timeout=60)
    assert "unknown run source 'benchmark'" in capsys.readouterr().err
    run = store.get_run(session.run_id)
    assert run.source == "interactive" and run.cell_count == 1


def test_config_magic_reaches_the_session(shell: InteractiveShell, store: Store) -> None:
    shell.run_line_magic("load_ext", "nbmlops")
    session = active_session()
    assert session is not None
    shell.run_line_magic("config", "CaptureSession.capture_io = False")
    assert session.capture_io is False
    assert shell.run_cell("with open('x.txt', 'w') as fh:\n    fh.write('x')").success
    assert session.flush(timeout=60)
    [cell] = store.cell_executions(session.run_id)
    assert cell.writes == []  # I/O capture switched off
