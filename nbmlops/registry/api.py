"""The registry's notebook-facing Python API: ``nbmlops.register`` and ``nbmlops.load_model``
(the store found like every other ``nbmlops.*`` call: the capture session's, else the
project's)."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from .service import load_model as _load_model
from .service import register as _register

if TYPE_CHECKING:
    from ..store import Store
    from ..store.entities import ModelVersion

__all__ = ["register", "load_model"]


def register(
    obj_or_path: Any,
    name: str,
    *,
    alias: str | None = None,
    reason: str | None = None,
    run: str | None = None,
    format: str | None = None,  # noqa: A002 - the user's word for it
    store: Store | None = None,
) -> ModelVersion:
    """Register a fitted model (or a model file) as the next version of ``name``.

    In a notebook with ``%load_ext nbmlops`` the version is linked to this run and to the cell
    that fitted the model, with a signature inferred from the data it was fitted on. Returns the
    new :class:`~nbmlops.store.entities.ModelVersion` (``.uri`` is ``models:/NAME/VERSION``)."""
    if store is None:
        from ..query import default_store

        store = default_store()
    return _register(store, obj_or_path, name, alias=alias, reason=reason, run_id=run, fmt=format)


def load_model(uri_or_path: str | os.PathLike[str], store: Store | None = None) -> Any:
    """Load ``models:/NAME@ALIAS``, ``models:/NAME/VERSION`` or a model file; the stored file's
    SHA-256 is checked first and a changed file is refused."""
    return _load_model(uri_or_path, store=store)
