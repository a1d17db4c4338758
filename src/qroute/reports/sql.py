"""The report queries: SQLite aggregates the stored records per entity and
period; Python only lays out the grid it returns.

How one report runs (on a thread, off the event loop):

1. A connection of its own, read-only (``mode=ro``): a report may take a
   second, and the storage's one shared reader also serves event replays,
   which must not wait behind it. It sees every committed write.
2. Two (three) TEMP tables, in the connection's private memory: the entity
   ids (sorted) and the periods (key index, UTC start and end ms of the
   days in range; see ``qroute.reports.periods``), and for a recipient
   report limited by ``queue_ids``, those queues.
3. One SELECT per source of the metrics asked for (``qroute.reports.metrics``),
   in one read transaction so every metric sees the same records::

       entities e  x  periods b  LEFT JOIN  index range (account, e.id, b.start .. b.end)
       GROUP BY e.id, b.k

   The loops run in that order (CROSS JOIN fixes it), so rows arrive grouped
   as the GROUP BY wants them and SQLite needs no sort; each (entity,
   period) cell is one seek into an index that covers every column the
   aggregate reads (schema v2). Cost: O(entities x periods x log n + rows
   aggregated), never a table scan. The LEFT JOIN gives every cell a row,
   so the result is a dense grid in (entity, period) order that Python
   only transposes.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Sequence
from pathlib import Path

from qroute.errors import NotFound
from qroute.reports.metrics import Kind, Source
from qroute.reports.periods import Bucket

__all__ = ["aggregate", "connect", "statement"]

_BUSY_TIMEOUT_MS = 5000
_CACHE_KIB = 16384

_TEMP_TABLES = (
    "CREATE TEMP TABLE report_entities (id TEXT PRIMARY KEY) WITHOUT ROWID",
    "CREATE TEMP TABLE report_buckets (k INTEGER PRIMARY KEY, start_ms INTEGER NOT NULL, "
    "end_ms INTEGER NOT NULL)",
    "CREATE TEMP TABLE report_queues (id TEXT PRIMARY KEY) WITHOUT ROWID",
)

# Whether an id that is not a current queue / recipient has history (then
# it is reported: a deleted queue's calls are still its calls).
_HAS_HISTORY = {
    Kind.QUEUES: (
        "SELECT 1 FROM finished_sessions INDEXED BY finished_sessions_queue "
        "WHERE account_id = ? AND queue_id = ? LIMIT 1",
        "SELECT 1 FROM offers INDEXED BY offers_queue WHERE account_id = ? AND queue_id = ? LIMIT 1",
    ),
    Kind.RECIPIENTS: (
        "SELECT 1 FROM offers INDEXED BY offers_recipient WHERE account_id = ? AND recipient_id = ? LIMIT 1",
    ),
}


def connect(database: str) -> sqlite3.Connection:
    """A read-only connection to the storage's database file, for one report."""
    uri = Path(database).resolve().as_uri() + "?mode=ro"
    conn = sqlite3.connect(uri, uri=True, isolation_level=None, check_same_thread=False,
                           timeout=_BUSY_TIMEOUT_MS / 1000)
    try:
        conn.execute(f"PRAGMA busy_timeout = {_BUSY_TIMEOUT_MS}")
        conn.execute("PRAGMA temp_store = MEMORY")
        conn.execute(f"PRAGMA cache_size = -{_CACHE_KIB}")
    except BaseException:
        conn.close()
        raise
    return conn


def statement(source: Source, by_queue: bool) -> str:
    """The SELECT of ``source``: one row (entity id, period index, one value
    per column) for every cell, in (entity, period) order. ``by_queue``:
    only records of the queues in ``temp.report_queues``."""
    conditions = ["f.account_id = :account_id", f"f.{source.entity_column} = e.id"]
    if source.condition:
        conditions.append(source.condition)
    conditions += ["f.ended_at_ms >= b.start_ms", "f.ended_at_ms < b.end_ms"]
    if by_queue:
        conditions.append("f.queue_id IN (SELECT id FROM temp.report_queues)")
    aggregates = ", ".join(aggregate for _, aggregate in source.columns)
    return (
        f"SELECT e.id, b.k, {aggregates} "
        f"FROM temp.report_entities AS e "
        f"CROSS JOIN temp.report_buckets AS b "
        f"LEFT JOIN {source.table} AS f INDEXED BY {source.index} ON {' AND '.join(conditions)} "
        f"GROUP BY e.id, b.k"
    )


def _known(conn: sqlite3.Connection, queries: Iterable[str], account_id: str, entity_id: str) -> bool:
    return any(conn.execute(query, (account_id, entity_id)).fetchone() for query in queries)


def aggregate(database: str, account_id: str, kind: Kind, sources: Sequence[Source],
              buckets: Sequence[Bucket], entity_ids: Sequence[str], current: frozenset[str],
              queue_ids: Sequence[str], current_queues: frozenset[str],
              ) -> list[tuple[Source, list[tuple]]]:
    """Run the report's queries (blocking: call on a thread).

    ``entity_ids`` are the sorted ids to report on; those not in ``current``
    (the account's queues or recipients now) must have history, and so must
    ``queue_ids`` not in ``current_queues``, or NotFound names the first that
    has none. Returns each source with the rows of its ``statement``: one
    per (entity, period) cell, in that order.
    """
    conn = connect(database)
    try:
        for query in _TEMP_TABLES:
            conn.execute(query)
        conn.execute("BEGIN")  # one snapshot for the checks and every metric
        try:
            noun = "queue" if kind is Kind.QUEUES else "recipient"
            for entity_id in entity_ids:
                if entity_id not in current and not _known(conn, _HAS_HISTORY[kind], account_id, entity_id):
                    raise NotFound(f"{noun} {entity_id} not found")
            for queue_id in queue_ids:
                if queue_id not in current_queues and not _known(conn, _HAS_HISTORY[Kind.QUEUES],
                                                                 account_id, queue_id):
                    raise NotFound(f"queue {queue_id} not found")
            conn.executemany("INSERT INTO temp.report_entities (id) VALUES (?)",
                             ((entity_id,) for entity_id in entity_ids))
            conn.executemany("INSERT INTO temp.report_buckets (k, start_ms, end_ms) VALUES (?, ?, ?)",
                             ((k, b.start_ms, b.end_ms) for k, b in enumerate(buckets)))
            conn.executemany("INSERT INTO temp.report_queues (id) VALUES (?)",
                             ((queue_id,) for queue_id in queue_ids))
            params = {"account_id": account_id}
            by_queue = bool(queue_ids)
            return [(source, conn.execute(statement(source, by_queue), params).fetchall())
                    for source in sources]
        finally:
            conn.execute("ROLLBACK")  # nothing to keep: the temp tables go with the connection
    finally:
        conn.close()
