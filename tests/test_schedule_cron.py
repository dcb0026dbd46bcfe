"""Cron expressions in time zones: due times, and the pinned behaviour at DST changes."""

from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from nbmlops.errors import ScheduleError
from nbmlops.schedule.cron import CronSchedule

NY = ZoneInfo("America/New_York")
BERLIN = ZoneInfo("Europe/Berlin")


def fires(expr: str, tz: str, start: datetime, end: datetime) -> list[datetime]:
    """Every due time in (start, end], as aware datetimes in ``tz``."""
    cron = CronSchedule(expr, tz)
    zone = ZoneInfo(tz)
    return [datetime.fromtimestamp(t, zone) for t in
            cron.times_between(start.timestamp(), end.timestamp())]


def local(dts: list[datetime]) -> list[str]:
    return [d.isoformat() for d in dts]


def test_daily_in_a_zone_is_wall_clock_time() -> None:
    got = fires("0 3 * * *", "Europe/Berlin", datetime(2026, 6, 1, tzinfo=BERLIN),
                datetime(2026, 6, 3, 12, tzinfo=BERLIN))
    assert local(got) == ["2026-06-01T03:00:00+02:00", "2026-06-02T03:00:00+02:00",
                          "2026-06-03T03:00:00+02:00"]


def test_spring_forward_fixed_time_in_the_gap_fires_once_at_the_first_valid_instant() -> None:
    # 2026-03-08 02:00 EST -> 03:00 EDT in New York: 02:30 does not exist that day
    got = fires("30 2 * * *", "America/New_York", datetime(2026, 3, 6, 12, tzinfo=NY),
                datetime(2026, 3, 10, 12, tzinfo=NY))
    assert local(got) == [
        "2026-03-07T02:30:00-05:00",
        "2026-03-08T03:00:00-04:00",  # no skipped day
        "2026-03-09T02:30:00-04:00",
        "2026-03-10T02:30:00-04:00",
    ]


def test_spring_forward_several_times_in_the_gap_collapse_to_one_fire() -> None:
    got = fires("*/20 2 * * *", "America/New_York", datetime(2026, 3, 8, 0, tzinfo=NY),
                datetime(2026, 3, 8, 12, tzinfo=NY))
    assert local(got) == ["2026-03-08T03:00:00-04:00"]


def test_fall_back_fixed_time_in_the_repeated_hour_fires_once() -> None:
    # 2026-11-01 02:00 EDT -> 01:00 EST: 01:30 happens twice
    got = fires("30 1 * * *", "America/New_York", datetime(2026, 10, 31, 12, tzinfo=NY),
                datetime(2026, 11, 2, 12, tzinfo=NY))
    assert local(got) == ["2026-11-01T01:30:00-04:00", "2026-11-02T01:30:00-05:00"]


def test_fall_back_fixed_hour_with_minute_steps_fires_in_the_first_pass_only() -> None:
    got = fires("*/30 1 * * *", "America/New_York", datetime(2026, 11, 1, 0, tzinfo=NY),
                datetime(2026, 11, 1, 12, tzinfo=NY))
    assert local(got) == ["2026-11-01T01:00:00-04:00", "2026-11-01T01:30:00-04:00"]


def test_fall_back_hourly_runs_by_elapsed_time_25_fires_that_day() -> None:
    start = datetime(2026, 11, 1, 0, 0, tzinfo=NY) - timedelta(seconds=1)
    end = datetime(2026, 11, 1, 23, 30, tzinfo=NY)
    got = fires("0 * * * *", "America/New_York", start, end)
    assert len(got) == 25
    assert [d.isoformat() for d in got[1:3]] == ["2026-11-01T01:00:00-04:00",
                                                 "2026-11-01T01:00:00-05:00"]
    gaps = {b.timestamp() - a.timestamp() for a, b in zip(got, got[1:], strict=False)}
    assert gaps == {3600.0}


def test_europe_dst_changes_too() -> None:
    spring = fires("30 2 * * *", "Europe/Berlin", datetime(2026, 3, 28, 12, tzinfo=BERLIN),
                   datetime(2026, 3, 30, 12, tzinfo=BERLIN))
    assert local(spring) == ["2026-03-29T03:00:00+02:00", "2026-03-30T02:30:00+02:00"]
    autumn = fires("30 2 * * *", "Europe/Berlin", datetime(2026, 10, 24, 12, tzinfo=BERLIN),
                   datetime(2026, 10, 26, 12, tzinfo=BERLIN))
    assert local(autumn) == ["2026-10-25T02:30:00+02:00", "2026-10-26T02:30:00+01:00"]


def test_next_after_is_strictly_later() -> None:
    cron = CronSchedule("0 3 * * *", "UTC")
    t = datetime(2026, 1, 1, 3, 0, tzinfo=ZoneInfo("UTC")).timestamp()
    assert cron.next_after(t) == t + 86400
    assert cron.next_after(t - 0.5) == t


def test_nicknames() -> None:
    cron = CronSchedule("@daily", "Europe/Berlin")
    t = cron.next_after(datetime(2026, 5, 5, 12, tzinfo=BERLIN).timestamp())
    assert cron.local_iso(t) == "2026-05-06T00:00:00+02:00"


@pytest.mark.parametrize("expr, needle", [
    ("* * *", "3 fields, expected 5"),
    ("61 * * * *", "out of range"),
    ("0 3 * * 8", "out of range"),
    ("*/0 * * * *", "not acceptable"),
    ("every day", "2 fields"),
    ("@sometimes", "unknown nickname"),
    ("", "empty cron expression"),
])
def test_invalid_cron_is_a_clear_error(expr: str, needle: str) -> None:
    with pytest.raises(ScheduleError) as info:
        CronSchedule(expr)
    assert needle in str(info.value)
    if expr:
        assert repr(expr) in str(info.value) or "empty" in str(info.value)


@pytest.mark.parametrize("zone, needle", [
    ("Mars/Olympus_Mons", "unknown time zone 'Mars/Olympus_Mons'"),
    ("Europe/Berln", "did you mean Europe/Berlin"),
    ("../../etc/passwd", "unknown time zone"),
])
def test_unknown_time_zone_is_a_clear_error(zone: str, needle: str) -> None:
    with pytest.raises(ScheduleError) as info:
        CronSchedule("0 3 * * *", zone)
    assert needle in str(info.value)
