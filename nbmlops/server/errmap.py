"""nbmlops errors as HTTP statuses and API error codes, in one place (the server's face)."""

from __future__ import annotations

from ..errors import (
    AmbiguousIdError,
    InvalidArgumentError,
    NbmlopsError,
    NotFoundError,
    ParameterError,
    PipelineError,
    StoreCorruptError,
    StoreError,
    StoreUnavailableError,
    StoreVersionError,
)
from ..store.registry import AliasError
from .paths import OutsideRootError

__all__ = ["ConflictError", "LaunchLimitError", "StoreMissingError", "error_code", "http_status"]


class StoreMissingError(StoreUnavailableError):
    """No store exists yet where the server looks for one (HTTP 503, code ``store_missing``)."""


class ConflictError(NbmlopsError):
    """The request does not fit the resource's state, e.g. cancelling a finished run (HTTP 409)."""


class LaunchLimitError(NbmlopsError):
    """As many pipeline runs as allowed are running already (HTTP 429, code ``too_many_runs``)."""

# most specific first
_TABLE: list[tuple[type[BaseException], int, str]] = [
    (OutsideRootError, 403, "outside_root"),
    (StoreMissingError, 503, "store_missing"),
    (AmbiguousIdError, 400, "ambiguous_id"),
    (NotFoundError, 404, "not_found"),
    (PipelineError, 400, "pipeline_invalid"),
    (ParameterError, 400, "bad_parameter"),
    # an alias move the registry's state refuses (no earlier version to roll back to, no alias)
    (AliasError, 409, "conflict"),
    (InvalidArgumentError, 400, "bad_request"),
    (ConflictError, 409, "conflict"),
    (LaunchLimitError, 429, "too_many_runs"),
    (StoreVersionError, 503, "store_version"),
    (StoreCorruptError, 503, "store_corrupt"),
    (StoreUnavailableError, 503, "store_unavailable"),
    (StoreError, 503, "store_error"),
    (NbmlopsError, 500, "nbmlops_error"),
]


def _entry(exc: BaseException) -> tuple[int, str]:
    for kind, status, code in _TABLE:
        if isinstance(exc, kind):
            return status, code
    return 500, "internal_error"


def http_status(exc: BaseException) -> int:
    return _entry(exc)[0]


def error_code(exc: BaseException) -> str:
    return _entry(exc)[1]
