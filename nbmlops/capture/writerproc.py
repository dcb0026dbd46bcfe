"""The writer process of an interactive kernel: the store is written outside the kernel.

An interactive capture session only appends to its crash journal (like a headless kernel); a
small child process, ``python -c 'from nbmlops.capture.writerproc import main; main()'``, follows that journal with a
:class:`~nbmlops.capture.journal.JournalFollower` and writes the store. So no SQLAlchemy, no
fingerprinting and no database work ever runs on the kernel's GIL.

The two talk through the child's standard streams:

* kernel -> writer (stdin): ``f`` = write now (a flush waits), ``c <seconds>`` = the session
  closes: write everything, delete the journal, exit. End of file without ``c`` means the
  kernel died (also SIGKILL, ``os._exit``): the writer writes the rest of the journal, marks
  the runs left open ``failed`` and exits. The parent pid is polled too, for a pipe kept open
  by a forked grandchild.
* writer -> kernel (stdout): one JSON line per change of state, ``{"lines": journal lines
  handled, "problem": store outage or null, "rejected": n, "rejection": reason or null}``. The
  session reads it without blocking after each cell (to warn once about an outage) and waits
  on it in :meth:`ProcessWriter.flush`.

The child runs in its own session (an interrupt sent to the kernel's process group does not
reach it) and is started from a thread, so loading the extension does not wait for it.
"""

from __future__ import annotations

import json
import logging
import os
import select
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .writer import UpdateRun

if TYPE_CHECKING:
    from ..config import StoreLocation
    from ..store import Store
    from .journal import Journal
    from .writer import Op

log = logging.getLogger(__name__)

__all__ = ["ProcessWriter", "main"]

#: the child's program (``-c``, not ``-m``: the kernel's ``nbmlops.capture`` imports this module)
_CHILD = "import sys; from nbmlops.capture.writerproc import main; sys.exit(main())"
_STORE_ENV = "NBMLOPS_WRITER_STORE_URL"
_ARTIFACT_ENV = "NBMLOPS_WRITER_ARTIFACT_URL"
#: how often the writer process reads the journal when nobody asks it to
INTERVAL = 1.0
RETRY_INITIAL = 0.25
RETRY_MAX = 5.0
#: the kernel reads the writer's reports at most this often after cells (flush reads at once)
POLL_EVERY = 0.25
#: how long a writer whose kernel died keeps trying an unavailable store before leaving the
#: journal to the next writer that opens the store
ORPHAN_PATIENCE = 30.0


class ProcessWriter:
    """The kernel side: starts the writer process and reads what it reports.

    Same interface as :class:`~nbmlops.capture.writer.BackgroundWriter` (``submit``,
    ``flush``, ``close``, ``pending``, ``problem``...), but ``submit`` only counts: the session
    has already appended the operation to the journal, which is what the child reads.
    """

    def __init__(self, journal: Callable[[], Journal | None], location: Callable[[], StoreLocation],
                 *, interval: float = INTERVAL) -> None:
        self._journal_of = journal
        self._location_of = location
        self.interval = interval
        self._proc: subprocess.Popen[bytes] | None = None
        self._starter: threading.Thread | None = None
        self._start_error: str | None = None
        self._facts: list[Future[dict[str, Any]]] = []
        self._buffer = b""
        self._status: dict[str, Any] = {}
        self._exited = False
        self._closed = False
        self._next_poll = 0.0
        self.dropped = 0

    # -- starting ---------------------------------------------------------------------------------

    def _start_async(self) -> None:
        self._starter = threading.Thread(target=self._start, name="nbmlops-writer-start", daemon=True)
        self._starter.start()

    def _start(self) -> None:
        journal = self._journal_of()
        try:
            if journal is None:
                raise RuntimeError("no journal")
            location = self._location_of()
            env = dict(os.environ)
            env.pop("NBMLOPS_JOURNAL", None)
            # the store through the environment, never argv: a PostgreSQL URL may hold a password,
            # and any user on the machine can read a process's command line
            env[_STORE_ENV] = location.url
            env[_ARTIFACT_ENV] = str(location.artifact_root)
            root = str(Path(__file__).resolve().parents[2])  # the directory holding nbmlops/
            env["PYTHONPATH"] = os.pathsep.join(filter(None, [root, env.get("PYTHONPATH")]))
            self._proc = subprocess.Popen(
                [sys.executable, "-c", _CHILD, "--journal", str(journal.path),
                 "--parent", str(os.getpid()), "--interval", str(self.interval)],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env, start_new_session=True,
            )
            assert self._proc.stdout is not None
            os.set_blocking(self._proc.stdout.fileno(), False)
        except Exception as exc:  # noqa: BLE001 - reported as a store problem, never raised
            self._start_error = f"the capture writer process could not start ({type(exc).__name__}: {exc})"
            log.debug("writer process start failed", exc_info=True)

    def _started(self, timeout: float | None) -> bool:
        starter = self._starter
        if starter is None:
            return False
        starter.join(timeout)
        return self._proc is not None

    # -- the session's side ------------------------------------------------------------------------

    def activity(self, in_cell: bool) -> None:
        pass

    def submit(self, op: Op) -> None:
        if isinstance(op, UpdateRun) and not op.ready:
            # facts still being collected: journaled when ready, from the collecting thread
            self._facts.append(op.fields)
            op.fields.add_done_callback(lambda _f: self._append_late(op))
        if self._starter is None:
            self._start_async()

    def _append_late(self, op: Op) -> None:
        journal = self._journal_of()
        if journal is not None:
            journal.append(op)
        self._poke()

    def _target(self) -> int:
        journal = self._journal_of()
        return 0 if journal is None else journal.lines - journal.dropped

    def _poll(self, *, force: bool = True) -> None:
        """Read the writer's status lines without blocking (a few microseconds); unless
        ``force``d, at most every :data:`POLL_EVERY` seconds (it runs after every cell)."""
        proc = self._proc
        if proc is None or self._exited:
            return
        if not force:
            now = time.monotonic()
            if now < self._next_poll:
                return
            self._next_poll = now + POLL_EVERY
        assert proc.stdout is not None
        chunks = []
        while True:
            try:
                data = os.read(proc.stdout.fileno(), 65536)
            except BlockingIOError:
                break
            except (OSError, ValueError):  # ValueError: closed meanwhile
                data = b""
            if not data:
                self._exited = True
                break
            chunks.append(data)
        if not chunks:
            return
        self._buffer += b"".join(chunks)
        end = self._buffer.rfind(b"\n")
        if end < 0:
            return
        last = self._buffer[:end].rsplit(b"\n", 1)[-1]
        self._buffer = self._buffer[end + 1:]
        try:
            self._status = json.loads(last)
        except ValueError:
            pass

    def _poke(self, message: bytes = b"f\n") -> bool:
        proc = self._proc
        if proc is None or proc.stdin is None or self._exited:
            return False
        try:
            os.write(proc.stdin.fileno(), message)
            return True
        except (OSError, ValueError):
            return False

    @property
    def _done_lines(self) -> int:
        return int(self._status.get("lines", 0))

    @property
    def pending(self) -> int:
        self._poll()
        return max(0, self._target() - self._done_lines) + sum(1 for f in self._facts if not f.done())

    @property
    def problem(self) -> str | None:
        self._poll(force=False)
        journal = self._journal_of()
        if journal is not None and journal.problem:
            return journal.problem
        if self._start_error:
            return self._start_error
        if self._exited and not self._closed and self._target() > self._done_lines:
            return "the capture writer process exited"
        problem = self._status.get("problem")
        return str(problem) if problem else None

    @property
    def rejected(self) -> int:
        return int(self._status.get("rejected", 0))

    @property
    def rejection(self) -> str | None:
        self._poll(force=False)
        return self._status.get("rejection")

    def flush(self, timeout: float | None = 10.0) -> bool:
        """Wait until the writer process has committed everything journaled so far."""
        deadline = time.monotonic() + (timeout if timeout is not None else 1e9)
        for future in list(self._facts):
            try:
                future.result(max(0.0, deadline - time.monotonic()))
            except Exception:  # noqa: BLE001 - a timeout or failed facts: nothing to wait for
                pass
        self._facts = [f for f in self._facts if not f.done()]
        journal = self._journal_of()
        if journal is not None and not journal.retry():
            return False
        target = self._target()
        self._poll()
        if self._done_lines >= target:
            return True
        if not self._started(max(0.0, deadline - time.monotonic())):
            return False
        self._poke()
        proc = self._proc
        assert proc is not None and proc.stdout is not None
        while True:
            self._poll()
            if self._done_lines >= target:
                return True
            left = deadline - time.monotonic()
            if left <= 0 or self._exited:
                return False
            select.select([proc.stdout.fileno()], [], [], min(left, 1.0))

    def close(self, timeout: float = 10.0) -> bool:
        """Tell the writer process to write everything and exit; wait for it (``timeout``)."""
        if self._closed:
            return True
        deadline = time.monotonic() + timeout
        journal = self._journal_of()
        if journal is not None:
            journal.retry()
        if not self._started(timeout):
            self._closed = True
            return self._target() == 0
        proc = self._proc
        assert proc is not None
        self._poke(f"c {max(0.1, timeout - 0.5):.1f}\n".encode())
        try:
            proc.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            log.debug("writer process still busy at close; it finishes on its own")
        self._poll()
        self._closed = True
        self._exited = True  # nothing more to read or send: the streams close below
        for stream in (proc.stdin, proc.stdout):
            try:
                if stream is not None:
                    stream.close()
            except OSError:
                pass
        return self._done_lines >= self._target()

    def store(self) -> Store | None:
        return None


# -- the writer process ----------------------------------------------------------------------------


class _Writer:
    def __init__(self, journal: Path, location: StoreLocation, parent: int, interval: float) -> None:
        from .journal import JournalFollower

        self.location = location
        self.parent = parent
        self.interval = interval
        self.follower = JournalFollower(journal, self._open_store)
        self._reported: dict[str, Any] | None = None
        self._input = b""

    def _open_store(self) -> Store:
        from ..store import Store
        from .journal import recover_journals

        store = Store(self.location)
        try:
            recovered = recover_journals(self.location.journal_dir, store)
            if recovered:
                log.info("recovered %d cell records from crashed sessions", recovered)
        except Exception:  # noqa: BLE001 - recovery is best effort
            log.debug("journal recovery failed", exc_info=True)
        return store

    def report(self, force: bool = False) -> None:
        f = self.follower
        status = {"lines": f.lines_done, "problem": f.problem, "rejected": f.rejected,
                  "rejection": f.rejection}
        if status != self._reported or force:
            self._reported = status
            try:
                os.write(1, (json.dumps(status) + "\n").encode())
            except OSError:
                pass  # the kernel is gone: nobody reads

    def _read_commands(self, timeout: float) -> list[str] | None:
        """Commands from the kernel within ``timeout``; None at end of file (kernel gone)."""
        ready, _, _ = select.select([0], [], [], max(0.0, timeout))
        if not ready:
            return []
        try:
            data = os.read(0, 4096)
        except OSError:
            data = b""
        if not data:
            return None
        self._input += data
        *lines, self._input = self._input.split(b"\n")
        return [ln.decode(errors="replace").strip() for ln in lines]

    def run(self) -> int:
        f = self.follower
        f.open_store()
        f.step()
        self.report()
        delay = RETRY_INITIAL
        wait = self.interval
        while True:
            commands = self._read_commands(wait)
            if commands is None or os.getppid() != self.parent:
                return self._orphaned()
            closing = next((c for c in commands if c.startswith("c")), None)
            if closing is not None:
                parts = closing.split()
                patience = float(parts[1]) if len(parts) > 1 else 10.0
                return self._close(patience)
            ok = f.step()
            self.report(force=bool(commands))
            if ok:
                delay, wait = RETRY_INITIAL, self.interval
            else:
                wait, delay = delay, min(RETRY_MAX, delay * 2)

    def _drain(self, patience: float) -> bool:
        deadline = time.monotonic() + patience
        delay = RETRY_INITIAL / 2
        while True:
            if self.follower.step():
                return True
            self.report()
            if time.monotonic() + delay > deadline:
                return False
            time.sleep(delay)
            delay = min(RETRY_MAX, delay * 2)

    def _close(self, patience: float) -> int:
        f = self.follower
        ok = self._drain(patience)
        if ok:
            f.path.unlink(missing_ok=True)
        self.report(force=True)
        f.close()
        return 0 if ok else 1

    def _orphaned(self) -> int:
        """The kernel died without closing: write the rest, fail its open runs, clean up."""
        f = self.follower
        ok = self._drain(ORPHAN_PATIENCE)
        if ok:
            try:
                f.fail_open_runs()
                f.path.unlink(missing_ok=True)
            except Exception:  # noqa: BLE001 - the next writer's recovery finishes the job
                log.debug("could not fail the orphaned runs", exc_info=True)
                ok = False
        f.close()
        return 0 if ok else 1


def main(argv: list[str] | None = None) -> int:
    import argparse
    import signal

    # an interrupt of the kernel is not for us; SIGTERM ends us like the kernel's death would
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        os.nice(5)  # background work: the kernel (and the user's cells) come first
    except OSError:
        pass
    parser = argparse.ArgumentParser(prog="python -m nbmlops.capture.writerproc")
    parser.add_argument("--journal", required=True)
    parser.add_argument("--parent", type=int, required=True)
    parser.add_argument("--interval", type=float, default=INTERVAL)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="nbmlops writer: %(message)s")
    from ..config import resolve_location

    store_url, artifact_url = os.environ.get(_STORE_ENV), os.environ.get(_ARTIFACT_ENV)
    if not store_url or not artifact_url:
        parser.error(f"{_STORE_ENV} and {_ARTIFACT_ENV} must name the store")
    location = resolve_location(store_url, artifact_url)
    writer = _Writer(Path(args.journal), location, args.parent, args.interval)
    if os.getppid() != args.parent:
        return writer._orphaned()
    return writer.run()


if __name__ == "__main__":
    sys.exit(main())
