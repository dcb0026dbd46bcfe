"""Request parsing for the REST API (query strings, JSON bodies): strict, with messages that say
what is allowed.

Every parser raises :class:`~nbmlops.errors.InvalidArgumentError` (HTTP 400) with a message that
names the parameter and its allowed values. Unknown parameters are refused too, so a typo in a
filter never silently returns everything.
"""

from __future__ import annotations

import json
import math
from collections.abc import Collection, Mapping, Sequence
from typing import Any

from ..errors import InvalidArgumentError

__all__ = ["QueryArgs", "json_body", "param_values", "run_id_arg"]

#: Largest JSON body a POST endpoint reads.
MAX_BODY = 64 * 1024
#: Most parameter overrides one pipeline run takes.
MAX_PARAMS = 100
_MAX_VALUE = 10_000

#: Parameters Jupyter clients may add to any request; accepted and ignored.
_IGNORED = frozenset({"token", "_xsrf"})
_MAX_TEXT = 1000


class QueryArgs:
    """The query arguments of one request (``name -> list of raw byte values``)."""

    def __init__(self, raw: Mapping[str, Sequence[bytes]], allowed: Collection[str]) -> None:
        # JupyterLab's ServerConnection adds a bare timestamp (``?1700000000000``) to defeat caches
        busters = {k for k, v in raw.items() if k.isdigit() and all(not x for x in v)}
        unknown = sorted(set(raw) - set(allowed) - _IGNORED - busters)
        if unknown:
            raise InvalidArgumentError(
                f"unknown query parameter(s) "
                f"{', '.join(u if u.isprintable() else repr(u) for u in unknown)}; "
                f"this endpoint takes: {', '.join(sorted(allowed)) or 'none'}"
            )
        self._raw = raw

    def text(self, name: str, default: str | None = None) -> str | None:
        values = self._raw.get(name)
        if not values:
            return default
        if len(values) > 1:
            raise InvalidArgumentError(f"give {name} once, not {len(values)} times")
        try:
            value = values[0].decode("utf-8")
        except UnicodeDecodeError:
            raise InvalidArgumentError(f"{name} is not valid UTF-8") from None
        if "\x00" in value:
            raise InvalidArgumentError(f"{name} must not contain NUL characters")
        if len(value) > _MAX_TEXT:
            raise InvalidArgumentError(f"{name} is longer than {_MAX_TEXT} characters")
        value = value.strip()
        return value if value else default

    def integer(self, name: str, default: int | None, lo: int, hi: int) -> int | None:
        value = self.text(name)
        if value is None:
            return default
        try:
            number = int(value, 10)
        except ValueError:
            raise InvalidArgumentError(
                f"{name} must be a whole number from {lo} to {hi}, not {value!r}"
            ) from None
        if not lo <= number <= hi:
            raise InvalidArgumentError(f"{name} must be a whole number from {lo} to {hi}, not {number}")
        return number

    def choice(self, name: str, choices: Collection[str], default: str | None = None) -> str | None:
        value = self.text(name)
        if value is None:
            return default
        if value not in choices:
            raise InvalidArgumentError(
                f"{name} must be one of {', '.join(sorted(choices))}, not {value!r}"
            )
        return value

    def flag(self, name: str, default: bool = False) -> bool:
        value = self.text(name)
        if value is None:
            return default
        lowered = value.lower()
        if lowered in ("1", "true", "yes"):
            return True
        if lowered in ("0", "false", "no"):
            return False
        raise InvalidArgumentError(f"{name} must be true or false, not {value!r}")

    def id_list(self, name: str, *, most: int) -> list[str]:
        """Comma-separated ids (also accepted repeated: ``ids=a&ids=b``)."""
        values = self._raw.get(name) or []
        ids: list[str] = []
        for v in values:
            try:
                text = v.decode("utf-8")
            except UnicodeDecodeError:
                raise InvalidArgumentError(f"{name} is not valid UTF-8") from None
            ids.extend(p.strip() for p in text.split(",") if p.strip())
        if len(ids) > most:
            raise InvalidArgumentError(f"{name} takes at most {most} ids, not {len(ids)}")
        for i in ids:
            if len(i) > 64 or not all(ch.isalnum() or ch in "-_" for ch in i):
                raise InvalidArgumentError(f"{name}: {i[:70]!r} is not a run id")
        return ids


def run_id_arg(value: str) -> str:
    """A run id (or a unique prefix) from a URL path: letters, digits, ``-`` and ``_`` only."""
    if not 0 < len(value) <= 64 or not all(ch.isalnum() or ch in "-_" for ch in value):
        raise InvalidArgumentError(f"{value[:70]!r} is not a run id")
    return value


def json_body(raw: bytes, allowed: Collection[str], required: Collection[str] = ()) -> dict[str, Any]:
    """A request body holding one JSON object with only ``allowed`` keys (``required`` present)."""
    if len(raw) > MAX_BODY:
        raise InvalidArgumentError(f"the request body is larger than {MAX_BODY // 1024} KiB")
    try:
        data = json.loads(raw.decode("utf-8")) if raw.strip() else {}
    except UnicodeDecodeError:
        raise InvalidArgumentError("the request body is not valid UTF-8") from None
    except ValueError as exc:
        raise InvalidArgumentError(f"the request body is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise InvalidArgumentError("the request body must be a JSON object")
    unknown = sorted(set(data) - set(allowed))
    if unknown:
        raise InvalidArgumentError(
            f"unknown field(s) {', '.join(map(str, unknown))}; this endpoint takes: "
            f"{', '.join(sorted(allowed)) or 'none'}"
        )
    missing = [k for k in required if data.get(k) in (None, "")]
    if missing:
        raise InvalidArgumentError(f"{', '.join(missing)} is required")
    return data


def param_values(value: Any) -> dict[str, str]:
    """Pipeline parameter overrides ``{"name": value}`` as the text a ``-p NAME VALUE`` takes.

    Values are strings (typed like on the command line: the declared default's type decides),
    or JSON numbers and booleans (written as their text). Names are Python identifiers."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise InvalidArgumentError('params must be a JSON object {"name": "value", ...}')
    if len(value) > MAX_PARAMS:
        raise InvalidArgumentError(f"at most {MAX_PARAMS} params, not {len(value)}")
    out: dict[str, str] = {}
    for name, raw in value.items():
        if not name.isidentifier() or len(name) > 200:
            raise InvalidArgumentError(f"params: {name[:70]!r} is not a parameter name")
        if isinstance(raw, bool):
            text = "true" if raw else "false"
        elif isinstance(raw, int | float):
            if isinstance(raw, float) and not math.isfinite(raw):
                raise InvalidArgumentError(f"params.{name}: {raw!r} is not a finite number")
            text = str(raw)
        elif isinstance(raw, str):
            text = raw
        else:
            raise InvalidArgumentError(
                f"params.{name} must be a string, a number or true/false (write lists and "
                "dicts as JSON text)"
            )
        if "\x00" in text:
            raise InvalidArgumentError(f"params.{name} must not contain NUL characters")
        if len(text) > _MAX_VALUE:
            raise InvalidArgumentError(f"params.{name} is longer than {_MAX_VALUE} characters")
        out[name] = text
    return out
