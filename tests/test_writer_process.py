"""The writer process of interactive kernels (nbmlops.capture.writerproc), in real kernels.

Each test starts an interactive kernel through jupyter_client (no ``NBMLOPS_JOURNAL``: the
kernel journals and its writer process writes the store), runs cells, and breaks something:
the store locked, read-only, full or away (PostgreSQL stopped), the kernel killed. The
notebook must keep working with one warning, and the store must end up with every cell the
journal holds.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from jupyter_client.manager import KernelManager

from nbmlops.store import Store

pytestmark = pytest.mark.kernel

UNAVAILABLE = "the lineage store is unavailable"
AGAIN = "the lineage store is available again"


class Kernel:
    """An interactive kernel with nbmlops loaded, and a way to run cells in it."""

    def __init__(self, work: Path, store_url: str, artifacts: Path, **env: str) -> None:
        work.mkdir(parents=True, exist_ok=True)
        kernel_env = {k: v for k, v in os.environ.items() if not k.startswith("NBMLOPS_")}
        kernel_env.update(NBMLOPS_STORE_URL=store_url, NBMLOPS_ARTIFACT_URL=str(artifacts),
                          IPYTHONDIR=str(work / ".ipython"), **env)
        self.km = KernelManager(kernel_name="python3")
        self.km.start_kernel(env=kernel_env, cwd=str(work))
        self.kc = self.km.client()
        self.kc.start_channels()
        self.kc.wait_for_ready(timeout=60)
        self.stderr = ""
        out, err = self.run("%load_ext nbmlops")
        assert "warning" not in err, err
        self.run_id = self.eval("active_session().run_id", "from nbmlops.capture.session import active_session")
        self.pid = int(self.eval("os.getpid()", "import os"))
        self.writer_pid: int | None = None

    def run(self, code: str, timeout: float = 60) -> tuple[str, str]:
        out: list[str] = []
        err: list[str] = []

        def hook(msg: dict[str, Any]) -> None:
            if msg["msg_type"] == "stream":
                (out if msg["content"]["name"] == "stdout" else err).append(msg["content"]["text"])
            elif msg["msg_type"] == "error":
                err.append("\n".join(msg["content"]["traceback"]))

        reply = self.kc.execute_interactive(code, output_hook=hook, timeout=timeout)
        assert reply["content"]["status"] == "ok", "".join(err)
        self.stderr += "".join(err)
        return "".join(out), "".join(err)

    def eval(self, expr: str, setup: str = "") -> str:
        out, _ = self.run(f"{setup}\nprint(repr({expr}))" if setup else f"print(repr({expr}))")
        return eval(out.strip())  # noqa: S307 - our own repr

    def wait_for_problem(self, timeout: float = 30) -> str:
        """Run a cell until the session knows of the store problem (the writer process
        reports it after its first failed write); that cell's end shows the warning."""
        return str(self.eval(
            f"next((p for _ in range(int({timeout} / 0.1)) if (p := active_session()._writer.problem) "
            "or time.sleep(0.1)), None)",
            "import time\nfrom nbmlops.capture.session import active_session"))

    def find_writer(self) -> int:
        if self.writer_pid is None:
            self.writer_pid = int(self.eval(
                "active_session()._writer._started(30) and active_session()._writer._proc.pid",
                "from nbmlops.capture.session import active_session"))
        return self.writer_pid

    def shutdown(self) -> None:
        try:
            self.kc.stop_channels()
        finally:
            if self.km.is_alive():
                self.km.shutdown_kernel(now=False)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie child of a dead kernel is gone for our purposes
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ")[1][0] != "Z"
    except OSError:
        return False


def _wait_for(predicate: Any, timeout: float, what: str) -> float:
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if predicate():
            return time.monotonic() - start
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


@pytest.fixture
def kernels() -> Iterator[list[Kernel]]:
    started: list[Kernel] = []
    yield started
    for k in started:
        try:
            k.shutdown()
        except Exception:  # noqa: BLE001 - already dead
            pass


def _sqlite_url(path: Path) -> str:
    return f"sqlite:///{path}"


def _integrity(db: Path) -> str:
    with sqlite3.connect(db) as conn:
        return str(conn.execute("PRAGMA integrity_check").fetchone()[0])


# -- records, flush, shutdown ----------------------------------------------------------------------


def test_records_arrive_flush_waits_and_shutdown_is_clean(
    tmp_path: Path, store_url: str, store: Store, kernels: list[Kernel]
) -> None:
    k = Kernel(tmp_path / "work", store_url, tmp_path / "store" / "artifacts")
    kernels.append(k)
    writer = k.find_writer()
    assert _alive(writer) and writer != k.pid
    # the store reaches the writer through its environment: a URL's password never shows in ps
    cmdline = Path(f"/proc/{writer}/cmdline").read_bytes().decode()
    assert "writerproc" in cmdline and store_url not in cmdline
    for i in range(25):
        k.run(f"a{i} = {i} * 2")
    # a read in the notebook waits for the writer process: it sees every cell before it
    seen, recorded = k.eval(
        "(len(default_store().cell_executions(active_session().run_id)), "
        "active_session().cells_recorded)",
        "from nbmlops.query import default_store\n"
        "from nbmlops.capture.session import active_session")
    assert seen == recorded >= 25
    _, err = k.run("%mlops status")
    assert not err
    flushed, status = k.eval("(active_session().flush(10), active_session().status())")
    assert flushed and status["pending_writes"] == 0 and status["store_problem"] is None
    # an interrupt goes to the kernel's process group: not to the writer (its own session)
    k.km.interrupt_kernel()
    # a process forked from the kernel runs the kernel's exit handlers when it ends: they
    # must leave the kernel's run and writer alone
    # (IPython's own exit handler empties the namespace: os._exit is bound beforehand)
    k.run("import atexit, os\nchild = os.fork()\nif child == 0:\n"
          "    (lambda end: (atexit._run_exitfuncs(), end(0)))(os._exit)\n"
          "os.waitpid(child, 0)")
    k.run("b = 1")
    assert _alive(writer)
    k.shutdown()
    _wait_for(lambda: not _alive(writer), 15, "the writer process to exit")
    run = store.get_run(k.run_id)
    assert run.status == "finished"
    cells = store.cell_executions(k.run_id)
    assert [c.source for c in cells if c.source.startswith("a")] == \
        [f"a{i} = {i} * 2" for i in range(25)]
    # the read cell, the status cell (the magic-only cell is not recorded), the fork and b = 1
    assert len(cells) == seen + 4
    assert cells[-1].source == "b = 1"
    assert list(store.location.journal_dir.glob("*.jsonl")) == []
    assert "warning" not in k.stderr


# -- kernel death ------------------------------------------------------------------------------


@pytest.mark.parametrize("how", ["sigkill", "os_exit"])
def test_killed_kernel_run_is_failed_by_the_writer_process(
    how: str, tmp_path: Path, store_url: str, store: Store, kernels: list[Kernel]
) -> None:
    k = Kernel(tmp_path / "work", store_url, tmp_path / "store" / "artifacts")
    kernels.append(k)
    writer = k.find_writer()
    for i in range(10):
        k.run(f"x{i} = {i}")
    if how == "sigkill":
        k.kc.execute("import time\nstarted = True\ntime.sleep(120)")  # the cell in flight
        time.sleep(0.5)
        t0 = time.monotonic()
        os.kill(k.pid, signal.SIGKILL)
    else:
        t0 = time.monotonic()
        k.kc.execute("import os\npartial = 1\nos._exit(3)")

    def failed() -> bool:
        try:
            return store.run_exists(k.run_id) and store.get_run(k.run_id).status == "failed"
        except Exception:  # noqa: BLE001 - the writer is mid-transaction
            return False

    _wait_for(failed, 5.0, "the run to be marked failed")
    took = time.monotonic() - t0
    _wait_for(lambda: not _alive(writer), 5.0, "the writer process to exit")
    cells = store.cell_executions(k.run_id)
    # every finished cell is there; only the cell in flight is lost
    # (after the three set-up cells of Kernel())
    assert [c.source for c in cells][3:] == [f"x{i} = {i}" for i in range(10)]
    assert list(store.location.journal_dir.glob("*.jsonl")) == []
    assert took < 5.0


def test_a_replied_cell_is_journaled_without_waiting_for_the_next_one(
    tmp_path: Path, store_url: str, store: Store, kernels: list[Kernel]
) -> None:
    """The record is made right after the cell's reply (off the cell's latency): it must not
    wait for a next cell, and a kill after the reply must not lose it."""
    k = Kernel(tmp_path / "work", store_url, tmp_path / "store" / "artifacts")
    kernels.append(k)
    k.run("solo = 42")

    def recorded(source: str) -> bool:
        try:
            return any(c.source == source for c in store.cell_executions(k.run_id))
        except Exception:  # noqa: BLE001 - the writer is mid-transaction
            return False

    # no other cell runs: the writer process finds the record in the journal by itself
    _wait_for(lambda: recorded("solo = 42"), 15.0, "the lone cell's record")
    k.run("last = 1")
    time.sleep(0.2)  # the reply arrived: whatever the kernel still had to do is done
    os.kill(k.pid, signal.SIGKILL)
    _wait_for(lambda: store.get_run(k.run_id).status == "failed", 10.0, "the run to be failed")
    assert [c.source for c in store.cell_executions(k.run_id)][-2:] == ["solo = 42", "last = 1"]


# -- store outages ------------------------------------------------------------------------------

LOCKER = """
import sqlite3, sys
conn = sqlite3.connect(sys.argv[1], isolation_level=None)
conn.execute("BEGIN EXCLUSIVE")
print("locked", flush=True)
sys.stdin.readline()
conn.execute("COMMIT")
"""


def test_locked_store_one_warning_then_records_arrive(
    tmp_path: Path, store_url: str, store: Store, kernels: list[Kernel]
) -> None:
    locker = subprocess.Popen([sys.executable, "-c", LOCKER, str(store.location.sqlite_path)],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert locker.stdout is not None and locker.stdout.readline().strip() == "locked"
        k = Kernel(tmp_path / "work", store_url, tmp_path / "store" / "artifacts",
                   NBMLOPS_BUSY_TIMEOUT_MS="100")
        kernels.append(k)
        k.find_writer()
        k.run("x = 20")
        assert k.eval("active_session().flush(1.5)") is False  # nothing can be written
        assert "locked" in k.wait_for_problem()
        for i in range(5):
            k.run(f"y{i} = x + {i}")
        assert k.stderr.count(UNAVAILABLE) == 1, k.stderr
        assert "locked" in k.stderr
    finally:
        assert locker.stdin is not None
        locker.stdin.write("\n")
        locker.stdin.flush()
        locker.wait(timeout=10)
    assert k.eval("active_session().flush(30)") is True
    k.run("z = 1")
    assert AGAIN in k.stderr
    cells = store.cell_executions(k.run_id)
    assert [c.source for c in cells if c.source.startswith(("x =", "y"))] == \
        ["x = 20", *[f"y{i} = x + {i}" for i in range(5)]]
    assert k.stderr.count(UNAVAILABLE) == 1


def _mount(*args: str) -> bool:
    return subprocess.run(["mount", *args], capture_output=True, timeout=30).returncode == 0


@pytest.fixture
def bind_mount(tmp_path: Path) -> Iterator[Path]:
    """A store directory that can be made read-only and writable again (a bind mount)."""
    d = tmp_path / "ro-store"
    d.mkdir()
    if os.geteuid() != 0 or not _mount("--bind", str(d), str(d)):
        pytest.skip("needs mount permission (root in a container with CAP_SYS_ADMIN) "
                    "to make a store directory read-only for root")
    yield d
    subprocess.run(["umount", "-l", str(d)], capture_output=True, timeout=30)


def test_read_only_store_warns_once_and_resumes(
    tmp_path: Path, bind_mount: Path, kernels: list[Kernel]
) -> None:
    db = bind_mount / "nbmlops.db"
    Store.open(_sqlite_url(db), tmp_path / "art").close()
    # the journal stays writable (a symlink out of the read-only directory)
    (tmp_path / "journal").mkdir()
    (bind_mount / "journal").symlink_to(tmp_path / "journal")
    assert _mount("-o", "remount,bind,ro", str(bind_mount))
    k = Kernel(tmp_path / "work", _sqlite_url(db), tmp_path / "art")
    kernels.append(k)
    k.find_writer()
    for i in range(4):
        k.run(f"v{i} = {i}")
    assert k.eval("active_session().flush(1.5)") is False
    assert k.wait_for_problem()
    k.run("w = 1")
    assert k.stderr.count(UNAVAILABLE) == 1, k.stderr
    status = k.eval("active_session().status()")
    assert status["store_problem"] and status["pending_writes"] > 0
    assert _mount("-o", "remount,bind,rw", str(bind_mount))
    assert k.eval("active_session().flush(30)") is True
    k.run("u = 2")
    assert AGAIN in k.stderr and k.stderr.count(UNAVAILABLE) == 1
    k.shutdown()
    with Store.open(_sqlite_url(db), tmp_path / "art") as store:
        run = store.get_run(k.run_id)
        sources = [c.source for c in store.cell_executions(k.run_id)]
    assert run.status == "finished"
    assert sources[3:7] == [f"v{i} = {i}" for i in range(4)] and "u = 2" in sources
    assert _integrity(db) == "ok"


@pytest.fixture
def small_tmpfs(tmp_path: Path) -> Iterator[Path]:
    d = tmp_path / "full"
    d.mkdir()
    if os.geteuid() != 0 or not _mount("-t", "tmpfs", "-o", "size=1m", "tmpfs", str(d)):
        pytest.skip("needs mount permission (root with CAP_SYS_ADMIN) for a small tmpfs store")
    yield d
    subprocess.run(["umount", "-l", str(d)], capture_output=True, timeout=30)


def test_full_disk_keeps_the_notebook_working_and_loses_nothing(
    tmp_path: Path, small_tmpfs: Path, kernels: list[Kernel]
) -> None:
    db = small_tmpfs / "nbmlops.db"
    Store.open(_sqlite_url(db), tmp_path / "art").close()
    k = Kernel(tmp_path / "work", _sqlite_url(db), tmp_path / "art")
    kernels.append(k)
    k.find_writer()
    k.run("a = 1")
    assert k.eval("active_session().flush(20)") is True
    # fill the file system: the store and its journal (beside it) cannot grow
    ballast = small_tmpfs / "ballast"
    fd = os.open(ballast, os.O_WRONLY | os.O_CREAT)
    try:
        while os.write(fd, b"\0" * 4096):
            pass
    except OSError:
        pass
    finally:
        os.close(fd)
    big = "x" * 20_000
    for i in range(6):
        k.run(f"s{i} = '{big}'[:{i}]")
    assert k.eval("active_session().flush(2)") is False
    assert k.wait_for_problem()
    k.run("t = 1")
    assert k.stderr.count(UNAVAILABLE) == 1, k.stderr
    assert "No space left" in k.stderr or "full" in k.stderr
    ballast.unlink()
    assert k.eval("active_session().flush(30)") is True
    k.shutdown()
    with Store.open(_sqlite_url(db), tmp_path / "art") as store:
        sources = [c.source for c in store.cell_executions(k.run_id)]
        status = store.get_run(k.run_id).status
    assert status == "finished"
    assert sources[3] == "a = 1"  # after the three set-up cells of Kernel()
    assert [s for s in sources if s.startswith("s")] == [f"s{i} = '{big}'[:{i}]" for i in range(6)]
    assert "t = 1" in sources
    assert _integrity(db) == "ok"


# -- PostgreSQL away -------------------------------------------------------------------------------


@pytest.fixture
def pg_server() -> Iterator[Any]:
    from ._postgres import ThrowawayPostgres

    server = ThrowawayPostgres()
    try:
        url = server.start()
    except (OSError, subprocess.SubprocessError) as exc:
        pytest.skip(f"cannot start a throwaway PostgreSQL: {exc}")
    if url is None:
        pytest.skip("PostgreSQL server binaries are not installed")
    try:
        import psycopg  # noqa: F401
    except ImportError:
        pytest.skip("psycopg is not installed")
    yield server
    server.stop()


def _pg_ctl(server: Any, action: str) -> None:
    assert server.dir is not None and server.url is not None
    port = server.url.rsplit(":", 1)[1].split("/")[0]
    args = [*server._as_user, str(server.bin / "pg_ctl"), "-D", str(server.dir / "data"), "-w"]
    if action == "stop":
        args += ["-m", "immediate", "stop"]
    else:
        args += ["-l", str(server.dir / "log"), "-o",
                 f"-h 127.0.0.1 -p {port} -k {server.dir / 'sock'} -F", "start"]
    subprocess.run(args, check=True, capture_output=True, timeout=60)


@pytest.mark.parametrize("when", ["at_start", "mid_session"])
def test_postgres_away_then_back_loses_nothing(
    when: str, tmp_path: Path, pg_server: Any, kernels: list[Kernel]
) -> None:
    url = pg_server.url
    Store.open(url, tmp_path / "art").close()  # the schema exists; only the server goes away
    if when == "at_start":
        _pg_ctl(pg_server, "stop")
    k = Kernel(tmp_path / "work", url, tmp_path / "art")
    kernels.append(k)
    k.find_writer()
    k.run("a = 1")
    if when == "mid_session":
        assert k.eval("active_session().flush(20)") is True
        _pg_ctl(pg_server, "stop")
    for i in range(5):
        k.run(f"b{i} = a + {i}")
    assert k.eval("active_session().flush(2)") is False
    assert k.wait_for_problem()
    k.run("c = 1")
    assert k.stderr.count(UNAVAILABLE) == 1, k.stderr
    _pg_ctl(pg_server, "start")
    assert k.eval("active_session().flush(40)") is True
    k.run("d = 1")
    assert AGAIN in k.stderr
    k.shutdown()
    with Store.open(url, tmp_path / "art") as store:
        sources = [c.source for c in store.cell_executions(k.run_id)]
        status = store.get_run(k.run_id).status
    assert status == "finished"
    assert sources[3] == "a = 1"  # after the three set-up cells of Kernel()
    assert [s for s in sources if s.startswith("b")] == [f"b{i} = a + {i}" for i in range(5)]
    assert "c = 1" in sources and "d = 1" in sources
