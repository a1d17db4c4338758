"""Period keys, local-day boundaries and request checks (no server)."""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest

from qroute.errors import InvalidArgument
from qroute.reports import METRICS, Kind, Period, spec
from qroute.reports.periods import MAX_DAYS, buckets, parse_date

UTC = ZoneInfo("UTC")
NEW_YORK = ZoneInfo("America/New_York")


def utc_ms(text: str) -> int:
    """Epoch ms of a UTC time "YYYY-MM-DD HH:MM[:SS]"."""
    return int(datetime.fromisoformat(text).replace(tzinfo=timezone.utc).timestamp() * 1000)


def layout(first: str, last: str, period: Period, zone=UTC):
    return [(b.key, b.first_day.isoformat(), b.last_day.isoformat())
            for b in buckets(date.fromisoformat(first), date.fromisoformat(last), period, zone)]


def test_the_seed_weekly_example_runs_201701_to_201705_and_the_last_week_has_three_days():
    assert layout("2017-01-01", "2017-01-31", Period.WEEKLY) == [
        ("201701", "2017-01-01", "2017-01-07"),
        ("201702", "2017-01-08", "2017-01-14"),
        ("201703", "2017-01-15", "2017-01-21"),
        ("201704", "2017-01-22", "2017-01-28"),
        ("201705", "2017-01-29", "2017-01-31"),
    ]


def test_a_week_across_new_year_is_two_strftime_keys():
    # Sunday 2017-12-31 .. Saturday 2018-01-06: 2018's first Sunday is the 7th,
    # so its first six days are its week 00.
    assert layout("2017-12-24", "2018-01-13", Period.WEEKLY) == [
        ("201752", "2017-12-24", "2017-12-30"),
        ("201753", "2017-12-31", "2017-12-31"),
        ("201800", "2018-01-01", "2018-01-06"),
        ("201801", "2018-01-07", "2018-01-13"),
    ]


def test_partial_weeks_and_months_keep_only_the_days_in_range():
    assert layout("2017-12-27", "2018-01-09", Period.WEEKLY) == [
        ("201752", "2017-12-27", "2017-12-30"),
        ("201753", "2017-12-31", "2017-12-31"),
        ("201800", "2018-01-01", "2018-01-06"),
        ("201801", "2018-01-07", "2018-01-09"),
    ]
    assert layout("2017-11-15", "2018-02-10", Period.MONTHLY) == [
        ("201711", "2017-11-15", "2017-11-30"),
        ("201712", "2017-12-01", "2017-12-31"),
        ("201801", "2018-01-01", "2018-01-31"),
        ("201802", "2018-02-01", "2018-02-10"),
    ]


def test_daily_keys_cover_every_day_once():
    assert [key for key, _, _ in layout("2016-02-27", "2016-03-01", Period.DAILY)] == [
        "20160227", "20160228", "20160229", "20160301"]
    assert layout("2018-05-05", "2018-05-05", Period.MONTHLY) == [("201805", "2018-05-05", "2018-05-05")]


@pytest.mark.parametrize("zone, day, start, end", [
    ("UTC", "2018-01-01", "2018-01-01 00:00", "2018-01-02 00:00"),
    ("America/New_York", "2017-12-31", "2017-12-31 05:00", "2018-01-01 05:00"),      # EST
    ("America/New_York", "2018-03-11", "2018-03-11 05:00", "2018-03-12 04:00"),      # 23 h: DST starts
    ("America/New_York", "2018-11-04", "2018-11-04 04:00", "2018-11-05 05:00"),      # 25 h: DST ends
    ("Asia/Kathmandu", "2018-01-01", "2017-12-31 18:15", "2018-01-01 18:15"),        # +05:45
    ("America/Sao_Paulo", "2018-11-04", "2018-11-04 03:00", "2018-11-05 02:00"),     # no midnight: starts at the change
    ("America/Havana", "2018-11-04", "2018-11-04 04:00", "2018-11-05 05:00"),        # two midnights: the first
])
def test_a_day_runs_from_its_local_midnight_to_the_next(zone, day, start, end):
    (bucket,) = buckets(date.fromisoformat(day), date.fromisoformat(day), Period.DAILY, ZoneInfo(zone))
    assert (bucket.start_ms, bucket.end_ms) == (utc_ms(start), utc_ms(end))


def test_buckets_are_contiguous_across_daylight_saving_changes():
    result = buckets(date(2018, 1, 1), date(2018, 12, 31), Period.DAILY, NEW_YORK)
    assert len(result) == 365
    assert all(a.end_ms == b.start_ms for a, b in zip(result, result[1:]))
    assert sorted({(b.end_ms - b.start_ms) // 3_600_000 for b in result}) == [23, 24, 25]
    weekly = buckets(date(2018, 1, 1), date(2018, 12, 31), Period.WEEKLY, NEW_YORK)
    assert (weekly[0].start_ms, weekly[-1].end_ms) == (result[0].start_ms, result[-1].end_ms)


@pytest.mark.parametrize("text", ["", "2017-1-01", "20170101", "2017-02-30", "2017-13-01", "2017-W01-1",
                                  "2017-01-01T00:00", " 2017-01-01", "1969-12-31", "9999-01-01"])
def test_bad_dates_name_their_field(text):
    with pytest.raises(InvalidArgument) as caught:
        parse_date(text, "start_date")
    assert [field for field, _ in caught.value.violations] == ["start_date"]


def _spec(**fields):
    request = dict(kind=Kind.QUEUES, start_date="2018-01-01", end_date="2018-01-31", period=Period.DAILY,
                   metrics=(), identifiers=(), queue_ids=(), today=date(2018, 6, 1))
    request.update(fields)
    return spec(**request)


def _fields(**fields) -> list[str]:
    with pytest.raises(InvalidArgument) as caught:
        _spec(**fields)
    return [field for field, _ in caught.value.violations]


def test_spec_defaults_all_metrics_in_catalogue_order_and_end_date_today():
    request = _spec(end_date="")
    assert request.last_day == date(2018, 6, 1)
    assert [m.name for m in request.metrics] == ["avg_wait", "call_count", "timeout_count", "abandon_count"]
    recipients = _spec(kind=Kind.RECIPIENTS)
    assert [m.name for m in recipients.metrics] == list(METRICS[Kind.RECIPIENTS])
    chosen = _spec(metrics=["call_count", "avg_wait", "call_count"], identifiers=["b", "a", "b"])
    assert [m.name for m in chosen.metrics] == ["call_count", "avg_wait"]
    assert chosen.identifiers == ("b", "a")


def test_spec_names_every_bad_field():
    assert _fields(start_date="") == ["start_date"]
    assert _fields(end_date="2017-12-31") == ["end_date"]
    assert _fields(metrics=["call_count", "missed_call_count"]) == ["metrics[1]"]
    assert _fields(kind=Kind.RECIPIENTS, metrics=["avg_wait"]) == ["metrics[0]"]
    assert _fields(queue_ids=["sales"]) == ["queue_ids"]
    assert _fields(identifiers=["a", ""]) == ["identifiers[1]"]
    assert _fields(kind=Kind.RECIPIENTS, queue_ids=[""]) == ["queue_ids[0]"]
    assert _fields(start_date="2000-01-01", end_date="2018-01-01") == ["end_date"]
    assert _fields(start_date="x", end_date="y", metrics=["z"]) == ["start_date", "end_date", "metrics[0]"]
    longest = (date(2008, 1, 1) + timedelta(days=MAX_DAYS - 1)).isoformat()
    assert _spec(start_date="2008-01-01", end_date=longest).last_day.isoformat() == longest
