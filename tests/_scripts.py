"""Running the installed console scripts (``nbmlops``, ``papermill``) in subprocesses, as users
do, and reading their one-line errors."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

BIN = Path(sys.executable).parent


def script(name: str) -> str:
    """The console script ``name`` installed next to the test interpreter."""
    found = shutil.which(name, path=str(BIN))
    assert found, f"{name} is not installed next to the test interpreter"
    return found


def clean_env(**extra: str) -> dict[str, str]:
    """This process's environment without any ``NBMLOPS_*`` setting, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("NBMLOPS_")}
    env.update(extra)
    return env


def nbmlops(*args: str, cwd: Path, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([script("nbmlops"), *args], cwd=cwd, env=clean_env(),
                          capture_output=True, text=True, timeout=timeout)


def one_line_error(proc: subprocess.CompletedProcess[str]) -> str:
    """All of stderr must be one ``Error: ...`` line without a traceback; returns that line."""
    assert "Traceback" not in proc.stderr, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("Error: "), lines[0]
    return lines[0]
