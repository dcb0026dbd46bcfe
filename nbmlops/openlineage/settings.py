"""Whether OpenLineage emission is on, where events go, and the namespace of our jobs.

Cheap on purpose: :func:`configured` runs each time a store is opened, so it only reads the
environment and checks two file paths; nothing here imports openlineage-python.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

__all__ = [
    "ENV_SWITCH",
    "ENV_URL",
    "ENV_FILE",
    "ENV_NAMESPACE",
    "Settings",
    "configured",
    "settings_from_env",
]

#: ``0``/``false``/``off`` turns emission off whatever else is configured
ENV_SWITCH = "NBMLOPS_OPENLINEAGE"
#: shortcut: an HTTP endpoint (``http://marquez:5000``; events are POSTed to ``/api/v1/lineage``)
ENV_URL = "NBMLOPS_OPENLINEAGE_URL"
#: shortcut: a file that gets one JSON event per line (appended)
ENV_FILE = "NBMLOPS_OPENLINEAGE_FILE"
#: the namespace of nbmlops' jobs (default ``nbmlops://<host>``)
ENV_NAMESPACE = "NBMLOPS_OPENLINEAGE_NAMESPACE"
#: how many events may wait for delivery in one process (default 10000); more are dropped
ENV_QUEUE = "NBMLOPS_OPENLINEAGE_QUEUE"
#: how long a process waits at exit for queued events to go out (seconds, default 5)
ENV_EXIT_WAIT = "NBMLOPS_OPENLINEAGE_EXIT_WAIT"

_OFF = {"0", "false", "no", "off"}
# openlineage-python's own configuration: its documented environment variables and config files
_STANDARD_ENV = ("OPENLINEAGE_URL", "OPENLINEAGE_CONFIG", "OPENLINEAGE__TRANSPORT__TYPE")


def _standard_config_file() -> bool:
    """openlineage-python's config file in the working directory or ``~/.openlineage/``."""
    try:
        places = [os.path.join(os.getcwd(), "openlineage.yml"),
                  os.path.join(os.path.expanduser("~"), ".openlineage", "openlineage.yml")]
    except OSError:  # a deleted working directory: that is for the caller to report
        return False
    return any(os.path.isfile(p) for p in places)


def configured(environ: Mapping[str, str] | None = None) -> bool:
    """True when events should be emitted: one of our shortcuts or openlineage-python's standard
    configuration is present and ``NBMLOPS_OPENLINEAGE`` is not ``0``. ``OPENLINEAGE_DISABLED=true``
    (openlineage-python's own switch) also turns it off."""
    env = os.environ if environ is None else environ
    if env.get(ENV_SWITCH, "").strip().lower() in _OFF:
        return False
    if env.get("OPENLINEAGE_DISABLED", "").strip().lower() == "true":
        return False
    if env.get(ENV_URL) or env.get(ENV_FILE):
        return True
    if any(env.get(k) for k in _STANDARD_ENV):
        return True
    return _standard_config_file()


@dataclass(frozen=True)
class Settings:
    namespace: str
    #: an openlineage-python transport config, or ``None``: the client resolves its standard
    #: configuration (``OPENLINEAGE_URL``, ``OPENLINEAGE_CONFIG``, ``openlineage.yml``)
    transport: dict[str, Any] | None
    queue_size: int = 10_000
    exit_wait: float = 5.0


def _number(env: Mapping[str, str], key: str, default: float) -> float:
    try:
        value = float(env.get(key) or default)
    except ValueError:
        return default
    return value if value >= 0 else default


def settings_from_env(environ: Mapping[str, str] | None = None) -> Settings:
    env = os.environ if environ is None else environ
    transports: list[dict[str, Any]] = []
    if env.get(ENV_FILE):
        transports.append({"type": "file", "log_file_path": env[ENV_FILE], "append": True})
    if env.get(ENV_URL):
        transports.append({
            "type": "http",
            "url": env[ENV_URL],
            "endpoint": env.get("OPENLINEAGE_ENDPOINT") or "api/v1/lineage",
            "timeout": 5.0,
            # few, short retries: an endpoint that is away costs one connect attempt per
            # event, then the emitter stops trying for a while (see emitter.py)
            "retry": {"total": 1, "connect": 1, "read": 1, "backoff_factor": 0.1},
        })
    if env.get(ENV_URL) and env.get("OPENLINEAGE_API_KEY"):
        transports[-1]["auth"] = {"type": "api_key", "apiKey": env["OPENLINEAGE_API_KEY"]}
    transport: dict[str, Any] | None
    if len(transports) > 1:
        transport = {"type": "composite", "transports": transports,
                     "continue_on_failure": True, "continue_on_success": True}
    else:
        transport = transports[0] if transports else None
    namespace = (env.get(ENV_NAMESPACE) or env.get("OPENLINEAGE_NAMESPACE")
                 or f"nbmlops://{socket.gethostname()}")
    return Settings(
        namespace=namespace,
        transport=transport,
        queue_size=max(1, int(_number(env, ENV_QUEUE, 10_000))),
        exit_wait=_number(env, ENV_EXIT_WAIT, 5.0),
    )
