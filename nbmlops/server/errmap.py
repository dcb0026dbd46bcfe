"""nbmlops errors as HTTP statuses and API error codes, in one place (the server's face)."""

from __future__ import annotations

from ..errors import (
    AmbiguousIdError,
    InvalidArgumentError,
    NbmlopsError,
    NotFoundError,
    StoreCorruptError,
    StoreError,
    StoreUnavailableError,
    StoreVersionError,
)
from .paths import OutsideRootError

__all__ = ["StoreMissingError", "error_code", "http_status"]


class StoreMissingError(StoreUnavailableError):
    """No store exists yet where the server looks for one (HTTP 503, code ``store_missing``)."""

# most specific first
_TABLE: list[tuple[type[BaseException], int, str]] = [
    (OutsideRootError, 403, "outside_root"),
    (StoreMissingError, 503, "store_missing"),
    (AmbiguousIdError, 400, "ambiguous_id"),
    (NotFoundError, 404, "not_found"),
    (InvalidArgumentError, 400, "bad_request"),
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
