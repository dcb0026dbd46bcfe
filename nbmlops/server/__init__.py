"""The Jupyter Server extension of nbmlops: the REST API the JupyterLab panel reads.

Enabled on install by ``etc/jupyter/jupyter_server_config.d/nbmlops.json``
(``{"ServerApp": {"jpserver_extensions": {"nbmlops.server": true}}}``). A face over the store,
like the CLI: nothing in the core imports it.
"""

from __future__ import annotations

from typing import Any

__all__ = ["_jupyter_server_extension_points"]


def _jupyter_server_extension_points() -> list[dict[str, Any]]:
    from .app import NbmlopsServerApp

    return [{"module": "nbmlops.server", "app": NbmlopsServerApp}]
