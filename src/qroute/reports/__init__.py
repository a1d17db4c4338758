"""Reports over the stored history (Qubicle's reporting API, seed 001).

A report is computed by the database from the stored records
(``finished_sessions`` and ``offers``; see ``qroute.storage.schema``), never
from live state: SQL aggregates them per entity and period through covering
indexes (``qroute.reports.sql``), Python fills in the zeros and renders.

**Which period a record falls in.** Each record falls on the local date, in
the account's time zone, of its end (``ended_at_ms``): a finished session
when it ended, an offer when it was accepted, rejected or missed. Days,
weeks (``%Y%U``: starting on Sunday) and months are the account's local
ones; a period cut by the range counts only the days inside it
(``qroute.reports.periods``).

**Queue metrics** (REPORT_KIND_QUEUES): over the finished sessions whose
``queue_id`` is the queue, i.e. the queue a session was in when it ended (a
session redirected by a queue's timeout, or transferred, counts for the
queue it ended in, only there).

- ``call_count``: every such session, whatever its end reason.
- ``timeout_count``: those that ended ``timed_out`` (waited past the queue's
  timeout), ``rejected_full`` (timeout_if_size_exceeds) or
  ``rejected_empty`` (timeout_immediately_if_empty): Qubicle's "timed out
  of queue", whose size and empty-queue rules are timeouts too.
- ``abandon_count``: those that ended ``abandoned`` (the caller hung up
  while waiting or ringing).
- ``avg_wait``: the mean ``wait_ms`` of those that ended ``completed``
  (answered by a recipient, then hung up), in seconds; their wait is from
  entering the first queue to being answered. 0 when there were none.

**Recipient metrics** (REPORT_KIND_RECIPIENTS): over the recipient's offers
(``offers.recipient_id``) and the sessions it answered
(``finished_sessions.recipient_id``, the recipient connected last).
``queue_ids`` keeps only offers and sessions of those queues (the offer's
queue; the queue a session ended in).

- ``call_count``: offers it accepted (calls it answered).
- ``missed_call_count``: offers with outcome ``missed``: rang until the
  ring timeout without an answer. Offers cancelled (answered by another
  recipient of a ring_all queue, abandoned while ringing, withdrawn) are
  neither missed nor rejected.
- ``rejected_call_count``: offers it rejected.
- ``avg_call_duration``: the mean ``talk_ms`` of the sessions it answered,
  in seconds, each on the day the session ended. 0 when there were none.
- ``avg_ring_duration``: the mean ``ring_ms`` of the offers it accepted
  (how long calls rang before it answered), in seconds. 0 when none.

Averages are in seconds rounded to the millisecond (3 decimals, halves away
from zero); counts are whole. Every period key of the range has a value for
every entity and metric (0 where nothing happened).
"""

from qroute.reports.metrics import METRICS, Kind, Metric
from qroute.reports.periods import MAX_DAYS, Period
from qroute.reports.report import Report, ReportSpec, render_csv, run_report, spec

__all__ = ["Kind", "MAX_DAYS", "METRICS", "Metric", "Period", "Report", "ReportSpec", "render_csv",
           "run_report", "spec"]
