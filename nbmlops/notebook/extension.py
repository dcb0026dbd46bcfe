"""The IPython extension entry point: ``%load_ext nbmlops``.

Starts a :class:`~nbmlops.capture.CaptureSession` (one run for the kernel session) and registers
the ``%mlops`` magics. Loading twice is harmless; ``%unload_ext nbmlops`` ends the run and removes
every hook. Kept to imports that cost little, so loading stays well under 200 ms: the store,
SQLAlchemy and pandas are imported by the writer thread or on first use.
"""

from __future__ import annotations

import logging
import os
import sys
from typing import Any

log = logging.getLogger(__name__)


def load_ipython_extension(shell: Any) -> None:
    from ..capture.session import CaptureSession, active_session

    if active_session() is not None:
        return
    try:
        source = os.environ.get("NBMLOPS_RUN_SOURCE", "interactive")
        session = CaptureSession(shell, source=source)
        session.register()
        session.start(
            name=os.environ.get("NBMLOPS_RUN_NAME") or None,
            run_id=os.environ.get("NBMLOPS_RUN_ID") or None,
            parent_run_id=os.environ.get("NBMLOPS_PARENT_RUN_ID") or None,
            tags=_env_tags(),
        )
    except Exception as exc:  # noqa: BLE001 - loading must never break the notebook
        print(f"nbmlops warning: capture could not start ({type(exc).__name__}: {exc})", file=sys.stderr)
        log.debug("capture start failed", exc_info=True)
    try:
        from .magics import MlopsMagics

        if "mlops" not in shell.magics_manager.magics.get("line", {}):
            shell.register_magics(MlopsMagics)
    except Exception as exc:  # noqa: BLE001
        print(f"nbmlops warning: %mlops magics unavailable ({type(exc).__name__}: {exc})", file=sys.stderr)


def _env_tags() -> dict[str, str] | None:
    """Run tags the launcher passed (``NBMLOPS_RUN_TAGS``, a JSON object), e.g. a pipeline step's."""
    raw = os.environ.get("NBMLOPS_RUN_TAGS")
    if not raw:
        return None
    import json

    try:
        data = json.loads(raw)
    except ValueError:
        return None
    return {str(k): str(v) for k, v in data.items()} if isinstance(data, dict) else None


def unload_ipython_extension(shell: Any) -> None:
    from ..capture.session import active_session

    session = active_session()
    if session is not None:
        session.close()
