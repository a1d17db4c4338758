"""The report SQL: every metric reads one covering index, needs no sort, and
the schema migration that adds those indexes keeps existing records."""

from __future__ import annotations

import asyncio
import sqlite3

import pytest

from qroute.reports import METRICS, Kind
from qroute.reports import sql
from qroute.storage import SCHEMA_VERSION, InsertFinishedSession, InsertOffer, SqliteStorage
from qroute.storage.schema import MIGRATIONS


def _sources(kind: Kind):
    return list(dict.fromkeys(source for metric in METRICS[kind].values() for source in metric.sources))


@pytest.fixture
def database(tmp_path) -> str:
    path = tmp_path / "q.db"

    async def create():
        async with SqliteStorage(path):
            pass

    asyncio.run(asyncio.wait_for(create(), 10))
    return str(path)


@pytest.mark.parametrize("kind, by_queue", [(Kind.QUEUES, False), (Kind.RECIPIENTS, False),
                                            (Kind.RECIPIENTS, True)])
def test_each_metric_is_an_index_range_per_cell_without_a_sort(database, kind, by_queue):
    conn = sql.connect(database)
    try:
        for statement in sql._TEMP_TABLES:
            conn.execute(statement)
        for source in _sources(kind):
            plan = [row[3] for row in conn.execute("EXPLAIN QUERY PLAN " + sql.statement(source, by_queue),
                                                   {"account_id": "a"})]
            assert plan[:2] == ["SCAN e", "SCAN b"], plan  # entities, then periods: rows come grouped
            assert plan[2].startswith(f"SEARCH f USING COVERING INDEX {source.index} ("), plan
            assert plan[2].endswith(") LEFT-JOIN"), plan  # a row for every cell
            assert "ended_at_ms>? AND ended_at_ms<?" in plan[2], plan
            assert not any("TEMP B-TREE" in step for step in plan), plan
    finally:
        conn.close()


def test_the_report_connection_cannot_write_the_database(database):
    conn = sql.connect(database)
    try:
        with pytest.raises(sqlite3.OperationalError):
            conn.execute("DELETE FROM finished_sessions")
    finally:
        conn.close()


def test_migrating_a_version_1_database_adds_the_report_indexes(tmp_path):
    path = tmp_path / "q.db"
    conn = sqlite3.connect(path, isolation_level=None)
    for statement in MIGRATIONS[1]:
        conn.execute(statement)
    conn.execute("INSERT INTO schema_version (version) VALUES (1)")
    for op in (InsertFinishedSession("a", "s1", "q", "r", 0, 1000, "completed", 10, 20, 30, ["q"], {}),
               InsertOffer("a", "o1", "s1", "q", "r", 0, 990, "accepted", 20)):
        conn.execute(op.sql, op.params())
    conn.close()

    async def reopen():
        async with SqliteStorage(path) as storage:
            return await storage.read(lambda c: (
                c.execute("SELECT version FROM schema_version").fetchone()[0],
                sorted(row[0] for row in c.execute(
                    "SELECT name FROM sqlite_master WHERE type = 'index' AND name NOT LIKE 'sqlite_%'")),
                c.execute("SELECT count(*) FROM finished_sessions INDEXED BY finished_sessions_queue_completed "
                          "WHERE account_id = 'a' AND queue_id = 'q' AND end_reason = 'completed'").fetchone()[0],
                c.execute("SELECT count(*) FROM finished_sessions INDEXED BY finished_sessions_queue_unanswered "
                          "WHERE account_id = 'a' AND queue_id = 'q' AND end_reason <> 'completed'").fetchone()[0],
                c.execute("SELECT talk_ms FROM finished_sessions INDEXED BY finished_sessions_recipient "
                          "WHERE account_id = 'a' AND recipient_id = 'r'").fetchone()[0],
                c.execute("SELECT ring_ms FROM offers INDEXED BY offers_recipient_accepted "
                          "WHERE account_id = 'a' AND recipient_id = 'r' AND outcome = 'accepted'").fetchone()[0],
            ))

    version, indexes, completed, unanswered, talk, ring = asyncio.run(asyncio.wait_for(reopen(), 10))
    assert version == SCHEMA_VERSION >= 2
    assert {"finished_sessions_queue_completed", "finished_sessions_queue_unanswered",
            "finished_sessions_recipient", "offers_recipient_accepted", "offers_recipient_unaccepted"} <= set(indexes)
    assert (completed, unanswered, talk, ring) == (1, 0, 30, 20)
