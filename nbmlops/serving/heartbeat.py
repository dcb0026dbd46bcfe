"""The service heartbeat the panel reads: ``<predictions>/NAME/_services/<host>-<pid>.json``,
rewritten atomically every 2 s, deleted on a clean shutdown (older than 10 s: stopped)."""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path
from typing import Any

__all__ = ["heartbeat_path", "write_heartbeat", "remove_heartbeat"]

INTERVAL = 2.0


def heartbeat_path(directory: Path) -> Path:
    return directory / "_services" / f"{socket.gethostname()}-{os.getpid()}.json"


def write_heartbeat(path: Path, data: dict[str, Any]) -> None:
    """Write ``data`` to ``path`` atomically (tmp file + ``os.replace``)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, sort_keys=True), encoding="utf-8")
    os.replace(tmp, path)


def remove_heartbeat(path: Path) -> None:
    for p in (path, path.with_name(path.name + ".tmp")):
        try:
            p.unlink()
        except OSError:
            pass
