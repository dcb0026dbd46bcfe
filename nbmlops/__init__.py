"""nbmlops: Jupyter-native MLOps — automatic lineage capture for notebooks.

``%load_ext nbmlops`` records every cell execution; the names below are the public Python API.
Importing this package is cheap: submodules load on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ._version import __version__
from .errors import (
    AmbiguousIdError,
    ExecutionFailedError,
    InvalidArgumentError,
    NbmlopsError,
    NotFoundError,
    StoreCorruptError,
    StoreError,
    StoreUnavailableError,
    StoreVersionError,
)
from .notebook.extension import load_ipython_extension, unload_ipython_extension

if TYPE_CHECKING:
    from .api import (
        drift_report,
        log_artifact,
        log_metric,
        log_metrics,
        log_param,
        log_params,
        set_tag,
        set_tags,
    )
    from .query import compare, get_run, history, lineage, runs
    from .registry.api import load_model, register
    from .registry.gate import gate
    from .slicing import export_notebook
    from .store import Store, open_store
    from .validation import validate

__all__ = [
    "__version__",
    "load_ipython_extension",
    "unload_ipython_extension",
    "log_param",
    "log_params",
    "log_metric",
    "log_metrics",
    "log_artifact",
    "set_tag",
    "set_tags",
    "runs",
    "get_run",
    "history",
    "lineage",
    "compare",
    "export_notebook",
    "validate",
    "register",
    "load_model",
    "gate",
    "drift_report",
    "Store",
    "open_store",
    "NbmlopsError",
    "StoreError",
    "StoreCorruptError",
    "StoreVersionError",
    "StoreUnavailableError",
    "NotFoundError",
    "AmbiguousIdError",
    "InvalidArgumentError",
    "ExecutionFailedError",
]

_LAZY = {
    "log_param": "api", "log_params": "api", "log_metric": "api", "log_metrics": "api",
    "log_artifact": "api", "set_tag": "api", "set_tags": "api", "drift_report": "api",
    "runs": "query", "get_run": "query", "history": "query", "lineage": "query",
    "compare": "query", "export_notebook": "slicing", "Store": "store", "open_store": "store",
    "validate": "validation",
    "register": "registry.api", "load_model": "registry.api", "gate": "registry.gate",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'nbmlops' has no attribute {name!r}")
    from importlib import import_module

    value = getattr(import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
