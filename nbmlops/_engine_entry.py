"""The object papermill's ``papermill.engine`` entry point loads, without importing papermill.

papermill imports every registered engine while ``papermill`` itself is being imported. An
entry point pointing straight at :class:`nbmlops.engine.NbmlopsEngine` (a subclass of papermill's
``NBClientEngine``) would be a circular import whenever ``nbmlops.engine`` is imported first.
This proxy has papermill's engine interface and loads the real engine on first use.
"""

from __future__ import annotations

from typing import Any

__all__ = ["NbmlopsEngine"]


def _engine() -> Any:
    from .engine import NbmlopsEngine as Real

    return Real


class NbmlopsEngine:
    """papermill engine ``nbmlops``: see :class:`nbmlops.engine.NbmlopsEngine`."""

    @classmethod
    def execute_notebook(cls, *args: Any, **kwargs: Any) -> Any:
        return _engine().execute_notebook(*args, **kwargs)

    @classmethod
    def execute_managed_notebook(cls, *args: Any, **kwargs: Any) -> Any:
        return _engine().execute_managed_notebook(*args, **kwargs)

    @classmethod
    def nb_kernel_name(cls, nb: Any, name: str | None = None) -> Any:
        return _engine().nb_kernel_name(nb, name)

    @classmethod
    def nb_language(cls, nb: Any, language: str | None = None) -> Any:
        return _engine().nb_language(nb, language)
