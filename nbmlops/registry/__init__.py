"""The model registry: versions of fitted models with their lineage, aliases, audit log and
safe loading. Core: no UI imports; the CLI, ``%mlops register``, the Python API and the REST
panel are faces over :mod:`nbmlops.registry.service`."""

from __future__ import annotations

from .loading import ModelFileChangedError
from .service import (
    MODEL_URI_PREFIX,
    check_alias,
    check_name,
    get_model,
    get_version,
    list_models,
    list_versions,
    load_model,
    model_history,
    parse_model_uri,
    promote,
    record_event,
    register,
    remove_alias,
    remove_version,
    resolve_model_uri,
    rollback,
    set_alias,
    version_lineage,
)

__all__ = [
    "MODEL_URI_PREFIX",
    "ModelFileChangedError",
    "check_alias",
    "check_name",
    "get_model",
    "get_version",
    "list_models",
    "list_versions",
    "load_model",
    "model_history",
    "parse_model_uri",
    "promote",
    "record_event",
    "register",
    "remove_alias",
    "remove_version",
    "resolve_model_uri",
    "rollback",
    "set_alias",
    "version_lineage",
]
