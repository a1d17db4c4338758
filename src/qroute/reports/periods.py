"""Report dates and periods: which local days a report covers, how they are
grouped into period keys, and where each group starts and ends in UTC.

A day is a calendar day in the account's time zone: from its local midnight
to the next one, so 23 or 25 hours long on a daylight-saving change. Where a
midnight does not exist (a zone that springs forward at 00:00) the day starts
at the change; where it happens twice, at the first.

Keys, from the local date ``strftime``:

- DAILY ``%Y%m%d`` ("20180101");
- WEEKLY ``%Y%U`` ("201753"): the year and the week of the year, weeks
  starting on Sunday; days before a year's first Sunday are its week 00. So a
  week that spans New Year is two keys: Sunday 2017-12-31 is "201753" and
  Monday 2018-01-01 to Saturday 2018-01-06 are "201800";
- MONTHLY ``%Y%m`` ("201801").

A period that the range cuts (a week or month at either end) counts only
the days inside the range.
"""

from __future__ import annotations

import re
import zoneinfo
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from enum import Enum

from qroute.errors import InvalidArgument

__all__ = ["Bucket", "MAX_DAYS", "Period", "buckets", "local_midnight_ms", "parse_date", "today"]

MAX_DAYS = 3660  # about ten years: a daily report of more is not something to answer in one call
MIN_YEAR, MAX_YEAR = 1970, 9998
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_ONE_MS = timedelta(milliseconds=1)


class Period(Enum):
    """A report period and its key format."""

    DAILY = "%Y%m%d"
    WEEKLY = "%Y%U"
    MONTHLY = "%Y%m"

    def key(self, day: date) -> str:
        return day.strftime(self.value)


@dataclass(frozen=True, slots=True)
class Bucket:
    """The days of one period key inside the range: UTC ms ``[start_ms, end_ms)``."""

    key: str
    start_ms: int
    end_ms: int
    first_day: date
    last_day: date


def parse_date(text: str, field: str) -> date:
    """A "YYYY-MM-DD" date (exactly that form); InvalidArgument naming ``field``."""
    if not _DATE.fullmatch(text):
        raise InvalidArgument.field(field, f"{text!r} is not a date in the form YYYY-MM-DD")
    try:
        day = date.fromisoformat(text)
    except ValueError:
        raise InvalidArgument.field(field, f"{text!r} is not a calendar date") from None
    if not MIN_YEAR <= day.year <= MAX_YEAR:
        raise InvalidArgument.field(field, f"the year must be {MIN_YEAR} to {MAX_YEAR}")
    return day


def today(zone: zoneinfo.ZoneInfo, now_ms: int) -> date:
    """The local date in ``zone`` at ``now_ms``."""
    return (_EPOCH + now_ms * _ONE_MS).astimezone(zone).date()


def local_midnight_ms(day: date, zone: zoneinfo.ZoneInfo) -> int:
    """Epoch ms of the start of ``day`` in ``zone`` (see the module docstring)."""
    # fold=0: a midnight that happens twice is the first; one that does not
    # exist is read with the offset before the change, which is the change.
    midnight = datetime(day.year, day.month, day.day, tzinfo=zone)
    return (midnight - _EPOCH) // _ONE_MS


def buckets(first_day: date, last_day: date, period: Period, zone: zoneinfo.ZoneInfo) -> list[Bucket]:
    """The period keys of the days ``first_day`` to ``last_day`` (inclusive) in
    time order, each with the UTC ms range of its days. The ranges are
    contiguous: each bucket ends where the next starts. O(days)."""
    result: list[Bucket] = []
    day = first_day
    start_ms = local_midnight_ms(day, zone)
    key = period.key(day)
    bucket_first = day
    while day <= last_day:
        following = day + timedelta(days=1)
        following_key = period.key(following) if following <= last_day else None
        if following_key != key:
            end_ms = local_midnight_ms(following, zone)
            result.append(Bucket(key, start_ms, end_ms, bucket_first, day))
            start_ms, key, bucket_first = end_ms, following_key, following
        day = following
    return result
