"""Cron expressions in a time zone: validation and the next due time, with pinned DST rules.

croniter computes the candidate times; this module decides what happens at daylight-saving
changes, the way Vixie cron does for jobs at a fixed hour:

* **Spring forward** (a wall-clock hour does not exist): a time inside the gap fires at the
  first instant after it (``30 2 * * *`` in New York fires at 03:00 EDT that day). No day is
  skipped.
* **Fall back** (a wall-clock hour happens twice): a job at a fixed hour fires in the first
  pass only (``30 1 * * *`` fires at 01:30 EDT, not again at 01:30 EST). Jobs whose hour field
  is ``*`` or ``*/N`` run by elapsed time and fire in both passes (``0 * * * *`` fires 25 times
  that day), since an hour really did pass between them.

Times go in and out as UTC epoch seconds; zones are IANA names (``zoneinfo``).
"""

from __future__ import annotations

from datetime import datetime, timezone
from functools import lru_cache
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

from ..errors import ScheduleError

__all__ = ["CronSchedule", "parse_cron", "check_timezone", "local_iso", "utc_iso"]

#: nicknames croniter understands, spelled out for error messages
NICKNAMES = ("@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly")


@lru_cache(maxsize=512)
def check_timezone(name: str | None) -> ZoneInfo | timezone:
    """The zone called ``name`` (None or "UTC": UTC); :class:`ScheduleError` when unknown."""
    if not name or name.upper() == "UTC":
        return timezone.utc
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        import difflib

        close = difflib.get_close_matches(name, sorted(available_timezones()), n=3, cutoff=0.6)
        hint = f"; did you mean {', '.join(close)}?" if close else (
            " (use an IANA name such as Europe/Berlin or America/New_York)")
        raise ScheduleError(f"unknown time zone {name!r}{hint}") from exc


class CronSchedule:
    """A validated 5-field cron expression (or @nickname) in a time zone."""

    def __init__(self, expr: str, tz: str | None = None) -> None:
        self.expr = " ".join(expr.split())
        self.tz_name = tz or "UTC"
        self.tz = check_timezone(tz)
        fields = self.expr.split()
        if not self.expr:
            raise ScheduleError("empty cron expression")
        if self.expr.startswith("@"):
            if self.expr not in NICKNAMES:
                raise ScheduleError(
                    f"invalid cron expression {expr!r}: unknown nickname (known: {', '.join(NICKNAMES)})")
            hour_field = "*" if self.expr == "@hourly" else "0"
        elif len(fields) != 5:
            raise ScheduleError(
                f"invalid cron expression {expr!r}: {len(fields)} fields, expected 5 "
                "(minute hour day-of-month month day-of-week), e.g. \"0 3 * * *\" for 03:00 daily")
        else:
            hour_field = fields[1]
        from croniter import croniter

        try:
            croniter(self.expr, datetime(2000, 1, 1, tzinfo=timezone.utc)).get_next(datetime)
            if not croniter.is_valid(self.expr):
                raise ValueError("not a valid expression")
        except Exception as exc:  # croniter raises several error types for bad fields
            raise ScheduleError(f"invalid cron expression {expr!r}: {_reason(exc)}") from exc
        #: fires in both passes of a repeated hour (see the module docs)
        self.by_elapsed_time = hour_field == "*" or hour_field.startswith("*/")

    def __repr__(self) -> str:
        return f"CronSchedule({self.expr!r}, {self.tz_name!r})"

    def next_after(self, after: float) -> float:
        """The first due time strictly after UTC epoch ``after``."""
        from croniter import croniter

        start = datetime.fromtimestamp(after, tz=self.tz)
        it = croniter(self.expr, start)
        for _ in range(1000):
            cand: datetime = it.get_next(datetime)
            ts = cand.timestamp()
            if ts <= after:
                continue
            if not self.by_elapsed_time and _second_pass(cand):
                continue  # the repeated hour at fall-back: fired in the first pass already
            return ts
        raise ScheduleError(f"cron expression {self.expr!r} never fires")  # pragma: no cover

    def times_between(self, after: float, until: float, limit: int = 1000) -> list[float]:
        """Due times in ``(after, until]``, at most ``limit`` (the oldest ones)."""
        out: list[float] = []
        t = after
        while len(out) < limit:
            t = self.next_after(t)
            if t > until:
                break
            out.append(t)
        return out

    def local_iso(self, ts: float) -> str:
        """``ts`` as ISO 8601 in the schedule's zone, with its UTC offset."""
        return datetime.fromtimestamp(ts, tz=self.tz).isoformat(timespec="seconds")


def _second_pass(dt: datetime) -> bool:
    """True when ``dt`` is the second occurrence of an ambiguous wall-clock time."""
    if dt.tzinfo is None or dt.tzinfo is timezone.utc:
        return False
    naive = dt.replace(tzinfo=None)
    first = naive.replace(fold=0).replace(tzinfo=dt.tzinfo)
    second = naive.replace(fold=1).replace(tzinfo=dt.tzinfo)
    off0, off1 = first.utcoffset(), second.utcoffset()
    return off0 != off1 and off0 is not None and off1 is not None and off0 > off1 and \
        dt.utcoffset() == off1


def _reason(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0][:200]


@lru_cache(maxsize=4096)
def parse_cron(expr: str, tz: str | None = None) -> CronSchedule:
    """A cached :class:`CronSchedule` (a scheduler tick looks at every schedule)."""
    return CronSchedule(expr, tz)


def local_iso(ts: float, tz: str | None) -> str:
    """``ts`` as ISO 8601 in zone ``tz``, with its UTC offset (no cron parsing: listings)."""
    return datetime.fromtimestamp(ts, tz=check_timezone(tz)).isoformat(timespec="seconds")


def utc_iso(ts: float | None) -> Any:
    """``ts`` as ISO 8601 UTC (``...Z``), None for None."""
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
