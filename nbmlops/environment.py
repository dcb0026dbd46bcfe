"""Facts about the environment a run executes in: Python, packages, git, the notebook itself.

Environment variable *values* are never collected (they often hold secrets).
"""

from __future__ import annotations

import hashlib
import os
import platform
import subprocess
import sys
from pathlib import Path
from typing import Any

__all__ = ["collect_environment", "git_state", "notebook_hash", "find_notebook_path"]


def installed_packages() -> dict[str, str]:
    """``{name: version}`` of the installed distributions, read from their directory names.

    ``name-version.dist-info`` / ``.egg-info`` entries on ``sys.path`` (a directory listing,
    a few ms) instead of parsing every METADATA file (tens of ms in a kernel that is busy
    running the user's first cells); falls back to ``importlib.metadata`` when nothing is found.
    """
    out: dict[str, str] = {}
    for entry in sys.path:
        try:
            with os.scandir(entry or ".") as it:
                names = [e.name for e in it if e.name.endswith((".dist-info", ".egg-info"))]
        except OSError:
            continue
        for name in names:
            stem = name.rsplit(".", 1)[0]
            dist, sep, version = stem.partition("-")
            if sep and version:
                out.setdefault(dist.lower().replace("_", "-"), version.split("-")[0])
    if not out:
        from importlib.metadata import distributions

        for d in distributions():
            meta_name = d.metadata["Name"] if d.metadata else None
            if meta_name:
                out[str(meta_name).lower()] = d.version
    return dict(sorted(out.items()))


def collect_environment() -> dict[str, Any]:
    return {
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "executable": sys.executable,
        "hostname": platform.node(),
        "packages": installed_packages(),
    }


def git_state(directory: str | os.PathLike[str] | None = None) -> tuple[str | None, bool | None]:
    """``(commit, dirty)`` of the git work tree holding ``directory``; ``(None, None)`` outside."""
    cwd = os.fspath(directory or os.getcwd())
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, timeout=5
        )
        if commit.returncode != 0:
            return None, None
        status = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=cwd, capture_output=True, text=True, timeout=10,
        )
        dirty = bool(status.stdout.strip()) if status.returncode == 0 else None
        return commit.stdout.strip() or None, dirty
    except (OSError, subprocess.SubprocessError):
        return None, None


def notebook_hash(path: str | os.PathLike[str] | None) -> str | None:
    if not path:
        return None
    try:
        with open(path, "rb") as fh:
            return hashlib.sha256(fh.read()).hexdigest()
    except OSError:
        return None


def find_notebook_path(user_ns: dict[str, Any] | None = None) -> str | None:
    """The notebook a kernel runs: papermill's/our env, JupyterLab's, VS Code's; else None."""
    candidates: list[str] = []
    for var in ("NBMLOPS_NOTEBOOK_PATH", "JPY_SESSION_NAME"):
        value = os.environ.get(var)
        if value:
            candidates.append(value)
    if user_ns:
        vsc = user_ns.get("__vsc_ipynb_file__")
        if isinstance(vsc, str):
            candidates.append(vsc)
    for c in candidates:
        p = Path(c)
        if p.is_absolute() and p.exists():
            return str(p)
        for base in (Path.cwd(), Path(os.environ.get("JUPYTER_SERVER_ROOT", os.getcwd()))):
            if (base / p).exists():
                return str((base / p).resolve())
            if (base / p.name).exists():
                return str((base / p.name).resolve())
    return candidates[0] if candidates else None
