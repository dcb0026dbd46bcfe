"""Query-string parsing for the REST API: strict, with messages that say what is allowed.

Every parser raises :class:`~nbmlops.errors.InvalidArgumentError` (HTTP 400) with a message that
names the parameter and its allowed values. Unknown parameters are refused too, so a typo in a
filter never silently returns everything.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence

from ..errors import InvalidArgumentError

__all__ = ["QueryArgs"]

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
                f"unknown query parameter(s) {', '.join(unknown)}; "
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
