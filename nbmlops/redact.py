"""Secrets are never stored: names that look secret get their values replaced."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

__all__ = ["REDACTED", "looks_secret", "redact_mapping", "MAX_VALUE_CHARS"]

REDACTED = "***redacted***"
#: Longest param/tag value kept; longer values are cut with a marker.
MAX_VALUE_CHARS = 5000

_SECRET = re.compile(
    r"(pass(word|wd|phrase)?|secret|token|api[_-]?key|private[_-]?key|access[_-]?key|"
    r"(^|[_-])key$|^key[_-]|credential|auth|session[_-]?id|cookie|dsn|conn(ection)?[_-]?str)",
    re.IGNORECASE,
)


#: Tags nbmlops writes itself (``nbmlops.cache_key``...): never secrets, never redacted.
OWN_PREFIX = "nbmlops."


def looks_secret(name: str) -> bool:
    """True when a parameter/tag name suggests its value is a secret (nbmlops' own
    ``nbmlops.*`` names excepted)."""
    return not name.startswith(OWN_PREFIX) and bool(_SECRET.search(name))


def clip(value: str) -> str:
    if len(value) > MAX_VALUE_CHARS:
        return value[:MAX_VALUE_CHARS] + f"...[{len(value) - MAX_VALUE_CHARS} chars cut]"
    return value


def redact_mapping(values: Mapping[str, Any]) -> dict[str, str]:
    """Stringify values, redacting those whose key looks secret."""
    return {
        str(k): REDACTED if looks_secret(str(k)) else clip(v if isinstance(v, str) else repr(v))
        for k, v in values.items()
    }
