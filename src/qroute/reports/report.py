"""Checking a report request, running it, and rendering the result."""

from __future__ import annotations

import asyncio
import contextlib
import csv
import gc
import io
import operator
import threading
import time
import zoneinfo
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date

from qroute.errors import InternalError, InvalidArgument
from qroute.reports import sql
from qroute.reports.metrics import METRICS, Kind, Metric
from qroute.reports.periods import MAX_DAYS, Period, buckets, parse_date

__all__ = ["Report", "ReportSpec", "build_report", "render_csv", "run_report", "spec"]

MAX_IDS = 10_000  # identifiers or queue_ids in one request
MAX_CELLS = 500_000  # entities x periods in one report (each metric has one value per cell)


@dataclass(frozen=True, slots=True)
class ReportSpec:
    """A checked request. Empty ``identifiers``: every current entity of the
    account; empty ``queue_ids``: calls from every queue."""

    kind: Kind
    first_day: date
    last_day: date
    period: Period
    metrics: tuple[Metric, ...]
    identifiers: tuple[str, ...] = ()
    queue_ids: tuple[str, ...] = ()


@dataclass(slots=True)
class Report:
    """A report's result: for each entity (sorted by id) and metric, one value
    per period key (``keys``, in time order; every key is there, 0 where
    nothing happened). ``load_ms``: the database's aggregation; ``filter_ms``:
    laying its rows out as these series."""

    kind: Kind
    period: Period
    time_zone: str
    first_day: date
    last_day: date
    keys: list[str]
    metrics: list[str]
    values: dict[str, dict[str, list[float]]]
    load_ms: float = 0.0
    filter_ms: float = 0.0

    def as_map(self) -> dict[str, dict[str, dict[str, float]]]:
        """The JSON shape: entity id -> metric -> key -> value."""
        return {entity_id: {name: dict(zip(self.keys, series)) for name, series in metrics.items()}
                for entity_id, metrics in self.values.items()}


def _unique(values: Iterable[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(values))


def spec(kind: Kind, start_date: str, end_date: str, period: Period, metrics: Sequence[str],
         identifiers: Sequence[str], queue_ids: Sequence[str], today: date) -> ReportSpec:
    """Check a request; InvalidArgument names every bad field. An empty
    ``end_date`` is ``today``; empty ``metrics`` are all of the kind's, in
    their catalogue order; repeated names count once."""
    problems: list[tuple[str, str]] = []
    first_day = last_day = None
    if not start_date:
        problems.append(("start_date", "required, a date in the form YYYY-MM-DD"))
    else:
        try:
            first_day = parse_date(start_date, "start_date")
        except InvalidArgument as exc:
            problems.extend(exc.violations)
    try:
        last_day = parse_date(end_date, "end_date") if end_date else today
    except InvalidArgument as exc:
        problems.extend(exc.violations)
    if first_day and last_day:
        if last_day < first_day:
            problems.append(("end_date", f"{last_day.isoformat()} is before start_date "
                                         f"{first_day.isoformat()}"))
        elif (last_day - first_day).days + 1 > MAX_DAYS:
            problems.append(("end_date", f"a report covers at most {MAX_DAYS} days"))
    catalogue = METRICS[kind]
    for i, name in enumerate(metrics):
        if name not in catalogue:
            problems.append((f"metrics[{i}]", f"{name!r} is not a {kind.value} metric; "
                                              f"one of {', '.join(catalogue)}"))
    for field_name, ids in (("identifiers", identifiers), ("queue_ids", queue_ids)):
        if len(ids) > MAX_IDS:
            problems.append((field_name, f"at most {MAX_IDS} ids"))
        problems.extend((f"{field_name}[{i}]", "must not be empty") for i, value in enumerate(ids) if not value)
    if queue_ids and kind is not Kind.RECIPIENTS:
        problems.append(("queue_ids", "only a recipients report can be limited to some queues"))
    if problems:
        raise InvalidArgument(*problems)
    chosen = _unique(metrics) or tuple(catalogue)
    return ReportSpec(kind, first_day, last_day, period, tuple(catalogue[name] for name in chosen),
                      _unique(identifiers), _unique(queue_ids))


_gc_lock = threading.Lock()
_gc_pausers = 0
_gc_was_enabled = False


@contextlib.contextmanager
def _gc_paused():
    """Hold off the cyclic garbage collector (process-wide) while a report
    builds its rows: they are 10^5 - 10^6 new tuples that would set off full
    collections, each walking every live object of the engine too, to free
    nothing. Nestable across threads: the last one out restores it."""
    global _gc_pausers, _gc_was_enabled
    with _gc_lock:
        if _gc_pausers == 0:
            _gc_was_enabled = gc.isenabled()
            gc.disable()
        _gc_pausers += 1
    try:
        yield
    finally:
        with _gc_lock:
            _gc_pausers -= 1
            if _gc_pausers == 0 and _gc_was_enabled:
                gc.enable()


def _ms_since(started: float) -> float:
    return (time.perf_counter() - started) * 1000


async def run_report(database: str, account_id: str, time_zone: str, request: ReportSpec,
                     current_entities: Iterable[str], current_queues: Iterable[str] = ()) -> Report:
    """Run ``request`` over the records of ``account_id`` in the SQLite file
    ``database``, days in ``time_zone``. ``current_entities``: the account's
    queues (or recipients) now, the default ``identifiers``; a named id
    that is neither current nor in the records is NotFound (likewise a
    ``queue_ids`` entry not in ``current_queues``).

    All of it runs on a worker thread: the event loop only waits."""
    return await asyncio.to_thread(build_report, database, account_id, time_zone, request,
                                   frozenset(current_entities), frozenset(current_queues))


def build_report(database: str, account_id: str, time_zone: str, request: ReportSpec,
                 current: frozenset[str], current_queues: frozenset[str]) -> Report:
    """``run_report``'s work (blocking)."""
    with _gc_paused():
        return _build(database, account_id, time_zone, request, current, current_queues)


def _build(database: str, account_id: str, time_zone: str, request: ReportSpec,
           current: frozenset[str], current_queues: frozenset[str]) -> Report:
    started = time.perf_counter()
    periods = buckets(request.first_day, request.last_day, request.period, zoneinfo.ZoneInfo(time_zone))
    entity_ids = sorted(request.identifiers or current)
    if len(entity_ids) * len(periods) > MAX_CELLS:
        raise InvalidArgument.field("period", (
            f"{len(entity_ids)} {request.kind.value} x {len(periods)} periods is over {MAX_CELLS:,} values "
            f"per metric; ask for a longer period, fewer days or fewer identifiers"))
    sources = list(dict.fromkeys(source for metric in request.metrics for source in metric.sources))
    results = sql.aggregate(database, account_id, request.kind, sources, periods, entity_ids, current,
                            request.queue_ids, current_queues)
    load_ms = _ms_since(started)

    started = time.perf_counter()
    width = len(periods)
    # column name -> entity id -> its values, one per period
    columns: dict[str, dict[str, Sequence[float]]] = {}
    for source, rows in results:
        transposed = list(zip(*rows)) or [()] * (2 + len(source.columns))
        # The grid must be complete and in (entity, period) order (see qroute.reports.sql).
        if len(rows) != len(entity_ids) * width or rows and (
                transposed[0][::width] != tuple(entity_ids) or transposed[1][:width] != tuple(range(width))):
            raise InternalError(f"the report query over {source.index} returned {len(rows)} rows, "
                                f"not a grid of {len(entity_ids)} entities x {width} periods")
        for position, (name, _) in enumerate(source.columns, start=2):
            column = transposed[position]
            columns[name] = {entity_id: column[i * width:(i + 1) * width]
                             for i, entity_id in enumerate(entity_ids)}
    values: dict[str, dict[str, list[float]]] = {entity_id: {} for entity_id in entity_ids}
    for metric in request.metrics:
        first, *others = [columns[name] for name in metric.terms]
        for entity_id, series in values.items():
            sums = first[entity_id]
            for term in others:
                sums = map(operator.add, sums, term[entity_id])
            series[metric.name] = list(map(float, sums))
    return Report(request.kind, request.period, time_zone, request.first_day, request.last_day,
                  [bucket.key for bucket in periods], [metric.name for metric in request.metrics], values,
                  load_ms=load_ms, filter_ms=_ms_since(started))


def _numbers(values: list[float]) -> list[str]:
    """CSV cells: whole numbers without a decimal point, others as Python's
    shortest round-tripping repr."""
    return [repr(value) if value % 1 else str(int(value)) for value in values]


def render_csv(report: Report) -> str:
    """The report as CSV (RFC 4180, CRLF line ends): a header ``id,period,``
    and the metrics, then one row per entity and period key, entities by id
    and keys in time order. Counts are whole numbers, averages seconds with
    up to 3 decimals."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(["id", "period", *report.metrics])
    keys = report.keys
    for entity_id, metrics in report.values.items():
        columns = [_numbers(metrics[name]) for name in report.metrics]
        writer.writerows(zip([entity_id] * len(keys), keys, *columns))
    return out.getvalue()
