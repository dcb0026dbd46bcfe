"""OpenLineage events for what nbmlops records (optional extra ``openlineage``).

When openlineage-python's configuration is present (``OPENLINEAGE_URL``, ``OPENLINEAGE_CONFIG``,
an ``openlineage.yml``) or one of our shortcuts is set (``NBMLOPS_OPENLINEAGE_URL``,
``NBMLOPS_OPENLINEAGE_FILE``), every store a process opens gets a listener; the process that
writes a run, its cells and its end also sends their RunEvents, from one background thread.
``NBMLOPS_OPENLINEAGE=0`` turns it off. See ``docs/openlineage.md``.

Importing this package is cheap: openlineage-python is imported by the sending thread only.
"""

from __future__ import annotations

import logging
import os
import threading
from typing import TYPE_CHECKING, Any

from .emitter import Emitter
from .listener import LineageListener
from .settings import configured, settings_from_env

if TYPE_CHECKING:
    from ..store.store import Store

__all__ = ["attach_if_configured", "configured", "flush", "stats"]

log = logging.getLogger(__name__)
_lock = threading.Lock()
_emitter: Emitter | None = None


def _get_emitter() -> Emitter:
    """This process's emitter (a forked child gets its own)."""
    global _emitter
    with _lock:
        if _emitter is None or _emitter.pid != os.getpid():
            _emitter = Emitter(settings_from_env())
        return _emitter


def attach_if_configured(store: Store) -> bool:
    """Give ``store`` the lineage listener when emission is configured; True if it did."""
    try:
        if not configured():
            return False
        store.add_listener(LineageListener(store, _get_emitter().submit))
    except Exception:  # noqa: BLE001 - lineage never stops a store from opening
        log.warning("OpenLineage: emission could not be set up", exc_info=True)
        return False
    return True


def stats() -> dict[str, Any]:
    """This process's counts: ``enabled``, ``sent``, ``dropped`` (queue full, endpoint down,
    exit before delivery) and ``queued``."""
    em = _emitter if _emitter is not None and _emitter.pid == os.getpid() else None
    base = {"enabled": configured(), "sent": 0, "dropped": 0, "queued": 0}
    return {**base, **em.stats()} if em is not None else base


def flush(timeout: float = 5.0) -> bool:
    """Wait up to ``timeout`` seconds for this process's queued events; True when none is left."""
    em = _emitter if _emitter is not None and _emitter.pid == os.getpid() else None
    return True if em is None else em.flush(timeout)
