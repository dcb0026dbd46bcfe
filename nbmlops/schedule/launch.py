"""Starting a run in a process of its own: the command line and the process itself.

A fired schedule runs the same CLI a person would (``nbmlops pipeline run`` or ``nbmlops
run``) with a run id chosen beforehand, so the fire can name its run before the run exists. The
child gets the store through its environment (``NBMLOPS_STORE_URL``), never on the command line
(``ps`` shows command lines to every local user, and a URL may hold a password). On Linux the
child is asked to receive SIGTERM when the process that started it dies (``PR_SET_PDEATHSIG``):
a scheduler killed with SIGKILL leaves no pipeline running unsupervised; the CLI's SIGTERM
handling records the run as cancelled.
"""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

__all__ = ["run_command", "spawn", "tail_lines"]

_PR_SET_PDEATHSIG = 1


def run_command(
    target: str | os.PathLike[str],
    target_kind: str,
    run_id: str,
    params: Mapping[str, Any] | None = None,
    tags: Mapping[str, str] | None = None,
    *,
    json_output: bool = True,
    not_before: float | None = None,
) -> list[str]:
    """The argument vector (never through a shell) that runs ``target`` as run ``run_id``."""
    cmd = [sys.executable, "-m", "nbmlops.cli"]
    if target_kind == "pipeline":
        cmd += ["pipeline", "run", str(target), "--run-id", run_id, "--no-progress"]
    else:
        cmd += ["run", str(target), "--run-id", run_id]
    if json_output:
        cmd.append("--json")
    if not_before is not None:
        cmd += ["--not-before", repr(float(not_before))]
    for name, value in (params or {}).items():
        cmd += ["-p", str(name), str(value)]  # click takes the two next words as they are
    for key, value in (tags or {}).items():
        cmd += ["--tag", f"{key}={value}"]
    return cmd


def _die_with_parent(parent: int) -> None:  # pragma: no cover - runs in the child
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    except (OSError, AttributeError):
        return
    if os.getppid() != parent:  # the parent died before prctl took effect
        os.kill(os.getpid(), signal.SIGTERM)


def spawn(
    cmd: list[str],
    *,
    cwd: str | os.PathLike[str],
    log_path: Path,
    env: Mapping[str, str] | None = None,
    die_with_parent: bool = True,
) -> subprocess.Popen[bytes]:
    """Start ``cmd`` in its own session with stdout/stderr appended to ``log_path``.

    With ``die_with_parent`` (Linux) the child gets SIGTERM when the calling *thread* ends, so
    call this from a thread that lives as long as the supervisor (the scheduler's main loop)."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    full_env = dict(os.environ)
    full_env.update(env or {})
    full_env["PYTHONUNBUFFERED"] = "1"
    parent = os.getpid()
    preexec = (lambda: _die_with_parent(parent)) if die_with_parent and sys.platform == "linux" else None
    with open(log_path, "ab") as out:  # the child keeps its own descriptor
        return subprocess.Popen(
            cmd, cwd=str(cwd), env=full_env, stdin=subprocess.DEVNULL, stdout=out,
            stderr=subprocess.STDOUT, close_fds=True, start_new_session=True,
            preexec_fn=preexec,  # noqa: PLW1509 - only prctl, no locks taken
        )


def tail_lines(path: Path, lines: int = 20, max_bytes: int = 16384) -> list[str]:
    """The last ``lines`` lines of a text file (decoded leniently); [] when it cannot be read."""
    try:
        with open(path, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            size = fh.tell()
            fh.seek(max(0, size - max_bytes))
            data = fh.read()
    except OSError:
        return []
    text = data.decode("utf-8", "replace")
    if size > max_bytes:
        text = text.split("\n", 1)[-1]  # drop the partial first line
    return [ln.rstrip("\r") for ln in text.rstrip("\n").split("\n")][-lines:] if text.strip() else []
