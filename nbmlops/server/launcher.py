"""Pipeline runs the server starts: ``nbmlops pipeline run`` subprocesses, watched and reaped.

The server never runs a pipeline in its own process: it starts the CLI (``python -m
nbmlops.cli``, the interpreter running the server) with a run id it chose, in the definition's
directory, with the store the server uses, its output to ``.nbmlops/runs/<run-id>/launcher.log``.
One waiter thread per process reaps it (no zombies) and records its exit code. At most
``max_running`` launches run at once. Cancelling sends SIGTERM: the CLI then interrupts the
step kernels and records the run ``cancelled`` (a second cancel kills the kernels at once).
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import threading
import time
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import NotFoundError
from ..schedule.launch import run_command, tail_lines
from .errmap import ConflictError, LaunchLimitError

log = logging.getLogger(__name__)

__all__ = ["Launch", "PipelineLauncher", "launch_command", "tail_lines"]

LOG_NAME = "launcher.log"


@dataclass
class Launch:
    """One ``nbmlops pipeline run`` process the server started."""

    run_id: str
    #: the definition (real path) and its path relative to the server root
    definition: Path
    path: str
    pipeline: str
    log_path: Path
    proc: subprocess.Popen[bytes] = field(repr=False)
    started: float = field(default_factory=time.time)
    ended: float | None = None
    exit_code: int | None = None
    cancel_requested: bool = False

    @property
    def running(self) -> bool:
        return self.exit_code is None


def launch_command(definition: Path, run_id: str, params: Mapping[str, str]) -> list[str]:
    """The argument vector of the CLI run (never through a shell; the same command a scheduled
    run uses). The store URL goes to the child's environment (``NBMLOPS_STORE_URL``), never
    here: a command line is readable by every local user (``ps``), and the URL may hold a
    database password."""
    return run_command(definition, "pipeline", run_id, params)


class PipelineLauncher:
    """Starts, watches, cancels and reaps the pipeline runs of this server."""

    def __init__(
        self,
        *,
        store_url: str | None = None,
        artifact_url: str | None = None,
        max_running: int = 4,
        keep: int = 200,
    ) -> None:
        self.store_url = store_url
        self.artifact_url = artifact_url
        self.max_running = max(1, max_running)
        self.keep = keep
        self._launches: OrderedDict[str, Launch] = OrderedDict()
        self._lock = threading.Lock()
        self._waiters: list[threading.Thread] = []

    def running(self) -> list[Launch]:
        with self._lock:
            return [la for la in self._launches.values() if la.running]

    def get(self, run_id: str) -> Launch | None:
        with self._lock:
            return self._launches.get(run_id)

    def start(
        self,
        definition: Path,
        path: str,
        pipeline: str,
        run_id: str,
        params: Mapping[str, str],
        runs_dir: Path,
    ) -> Launch:
        """Start ``nbmlops pipeline run`` for ``definition``; raise :class:`LaunchLimitError`
        when ``max_running`` launches are running already."""
        log_path = runs_dir / run_id / LOG_NAME
        cmd = launch_command(definition, run_id, params)
        env = dict(os.environ)
        env["PYTHONUNBUFFERED"] = "1"
        if self.store_url:
            env["NBMLOPS_STORE_URL"] = self.store_url
        if self.artifact_url:
            env["NBMLOPS_ARTIFACT_URL"] = self.artifact_url
        with self._lock:
            busy = sum(1 for la in self._launches.values() if la.running)
            if busy >= self.max_running:
                raise LaunchLimitError(
                    f"{busy} pipeline runs started from JupyterLab are running already (at most "
                    f"{self.max_running}: c.NbmlopsServerApp.max_pipeline_runs); wait for one "
                    "to finish or cancel one"
                )
            log_path.parent.mkdir(parents=True, exist_ok=True)
            with open(log_path, "ab") as out:  # the child keeps its own descriptor
                proc = subprocess.Popen(
                    cmd, cwd=definition.parent, env=env, stdin=subprocess.DEVNULL, stdout=out,
                    stderr=subprocess.STDOUT, close_fds=True,
                    start_new_session=True,  # Ctrl-C at the server's terminal is not for it
                )
            launch = Launch(run_id, definition, path, pipeline, log_path, proc)
            self._launches[run_id] = launch
            self._forget_old()
        waiter = threading.Thread(target=self._wait, args=(launch,), daemon=True,
                                  name=f"nbmlops-launch-{run_id[:8]}")
        waiter.start()
        with self._lock:
            self._waiters = [t for t in self._waiters if t.is_alive()] + [waiter]
        log.info("nbmlops: started pipeline run %s of %s (pid %d)", run_id, path, proc.pid)
        return launch

    def cancel(self, run_id: str) -> Launch:
        """SIGTERM to the launch's process (again: the CLI kills the kernels at once)."""
        with self._lock:
            launch = self._launches.get(run_id)
            if launch is None:
                raise NotFoundError(
                    f"pipeline run {run_id} was not started by this Jupyter server; stop it "
                    "where it runs (Ctrl-C, or SIGTERM to its `nbmlops pipeline run`)"
                )
            if not launch.running:
                raise ConflictError(f"pipeline run {run_id} has finished already")
            launch.cancel_requested = True
            try:
                launch.proc.send_signal(signal.SIGTERM)
            except ProcessLookupError:  # exited just now; the waiter records it
                pass
        log.info("nbmlops: cancelling pipeline run %s", run_id)
        return launch

    def shutdown(self, timeout: float = 10.0) -> None:
        """Cancel every running launch, wait up to ``timeout`` s, then kill what is left."""
        for launch in self.running():
            launch.cancel_requested = True
            try:
                launch.proc.send_signal(signal.SIGTERM)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + timeout
        with self._lock:
            waiters = list(self._waiters)
        for t in waiters:
            t.join(max(0.0, deadline - time.monotonic()))
        for launch in self.running():
            log.warning("nbmlops: pipeline run %s did not stop in %g s: killed", launch.run_id,
                        timeout)
            try:
                launch.proc.kill()
            except ProcessLookupError:
                pass
            launch.proc.wait(5)

    def _wait(self, launch: Launch) -> None:
        code = launch.proc.wait()  # reaps the child
        with self._lock:
            launch.exit_code = code
            launch.ended = time.time()
        level = logging.INFO if code in (0, 130) else logging.WARNING
        log.log(level, "nbmlops: pipeline run %s exited with code %s", launch.run_id, code)

    def _forget_old(self) -> None:
        """Keep the newest ``keep`` launches (running ones are never forgotten)."""
        extra = len(self._launches) - self.keep
        for rid in [rid for rid, la in self._launches.items() if not la.running][:max(0, extra)]:
            del self._launches[rid]
