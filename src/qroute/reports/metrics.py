"""The report metrics: the stored records and index each is aggregated
from, and how.

A *source* is one pass of SQL over one index: the rows of an entity (a
queue or a recipient) that meet a condition (answered or not, accepted or
not: each a partial index of schema v2), aggregated per period into named
*columns* (counts, and means in seconds). A *metric* is one column, or the
sum of columns of several sources. Only the sources of the metrics asked for
run. The meaning of
each metric is in ``qroute.reports``'s docstring and in
``proto/qroute/v1/report.proto``.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

__all__ = ["Kind", "Metric", "Source", "METRICS"]


class Kind(Enum):
    QUEUES = "queues"
    RECIPIENTS = "recipients"


@dataclass(frozen=True, slots=True)
class Source:
    """Rows of ``table`` read through ``index``: those of one entity
    (``entity_column``) meeting ``condition`` (SQL over the row alias ``f``;
    the index's own WHERE, so it must be written exactly the same); each falls
    in the period of its ``ended_at_ms``. ``columns``: (name, SQL aggregate);
    an aggregate must give 0 over no rows, for a cell without records is one
    row of NULLs (count a column, not ``*``; ``total``, not ``sum``)."""

    table: str
    index: str
    entity_column: str
    condition: str
    columns: tuple[tuple[str, str], ...]


@dataclass(frozen=True, slots=True)
class Metric:
    """The sum of the ``terms`` columns (of ``sources``)."""

    name: str
    sources: tuple[Source, ...]
    terms: tuple[str, ...]


def _mean_seconds(column: str) -> str:
    """SQL: the mean of a milliseconds ``column`` in seconds, rounded to the
    millisecond (halves away from zero); 0 over no rows."""
    return f"coalesce(round(avg({column})) / 1000.0, 0.0)"


_COMPLETED_OF_QUEUE = Source(
    "finished_sessions", "finished_sessions_queue_completed", "queue_id", "f.end_reason = 'completed'",
    (("completed", "count(f.ended_at_ms)"), ("mean_wait", _mean_seconds("f.wait_ms"))))
_UNANSWERED_OF_QUEUE = Source(
    "finished_sessions", "finished_sessions_queue_unanswered", "queue_id", "f.end_reason <> 'completed'",
    (("unanswered", "count(f.ended_at_ms)"),
     ("timed_out", "total(f.end_reason IN ('timed_out', 'rejected_full', 'rejected_empty'))"),
     ("abandoned", "total(f.end_reason = 'abandoned')")))
_ACCEPTED_BY_RECIPIENT = Source(
    "offers", "offers_recipient_accepted", "recipient_id", "f.outcome = 'accepted'",
    (("accepted", "count(f.ended_at_ms)"), ("mean_ring", _mean_seconds("f.ring_ms"))))
_UNACCEPTED_BY_RECIPIENT = Source(
    "offers", "offers_recipient_unaccepted", "recipient_id", "f.outcome <> 'accepted'",
    (("missed", "total(f.outcome = 'missed')"), ("rejected", "total(f.outcome = 'rejected')")))
_ANSWERED_BY_RECIPIENT = Source(
    "finished_sessions", "finished_sessions_recipient", "recipient_id", "",
    (("mean_talk", _mean_seconds("f.talk_ms")),))

# Per report kind, in the order API.md lists them (the default order of CSV columns).
METRICS: dict[Kind, dict[str, Metric]] = {
    Kind.QUEUES: {metric.name: metric for metric in (
        Metric("avg_wait", (_COMPLETED_OF_QUEUE,), ("mean_wait",)),
        Metric("call_count", (_COMPLETED_OF_QUEUE, _UNANSWERED_OF_QUEUE), ("completed", "unanswered")),
        Metric("timeout_count", (_UNANSWERED_OF_QUEUE,), ("timed_out",)),
        Metric("abandon_count", (_UNANSWERED_OF_QUEUE,), ("abandoned",)),
    )},
    Kind.RECIPIENTS: {metric.name: metric for metric in (
        Metric("call_count", (_ACCEPTED_BY_RECIPIENT,), ("accepted",)),
        Metric("missed_call_count", (_UNACCEPTED_BY_RECIPIENT,), ("missed",)),
        Metric("rejected_call_count", (_UNACCEPTED_BY_RECIPIENT,), ("rejected",)),
        Metric("avg_call_duration", (_ANSWERED_BY_RECIPIENT,), ("mean_talk",)),
        Metric("avg_ring_duration", (_ACCEPTED_BY_RECIPIENT,), ("mean_ring",)),
    )},
}
