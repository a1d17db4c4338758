"""Runtime reads: idempotency, the events log, the webhook outbox."""

import pytest

from qroute.storage import (
    AppendEvents,
    DeleteIdempotency,
    DeleteOutbox,
    EventRecord,
    IdempotentResponse,
    PutIdempotency,
    PutOutbox,
    SqliteStorage,
    TrimEvents,
    TrimIdempotency,
    WriteError,
)

from ._util import run


def with_storage(path, body):
    async def main():
        async with SqliteStorage(path) as storage:
            return await body(storage)
    return run(main())


def test_idempotency_lookup_first_response_wins_and_trim_by_age(tmp_path):
    async def body(storage):
        await storage.write(
            PutIdempotency("a", "req-1", "CreateQueue", b"first", 1_000),
            PutIdempotency("b", "req-1", "CreateQueue", b"other account", 1_000),
            PutIdempotency("a", "req-1", "Login", b"other method", 1_000),
            PutIdempotency("a", "req-1", "CreateQueue", b"a recipient's", 1_000, caller="ann"),
            PutIdempotency("a", "req-2", "Login", b"old", 10),
        )
        await storage.write(PutIdempotency("a", "req-1", "CreateQueue", b"second", 2_000))
        found = [await storage.get_idempotent(*key) for key in (
            ("a", "req-1", "CreateQueue"), ("b", "req-1", "CreateQueue"), ("a", "req-1", "Login"),
            ("a", "req-1", "CreateQueue", "ann"), ("a", "nope", "CreateQueue"))]
        await storage.write(TrimIdempotency(created_before_ms=500),
                            DeleteIdempotency("a", "req-1", "Login"))
        return found, [await storage.get_idempotent(*key) for key in (
            ("a", "req-2", "Login"), ("a", "req-1", "Login"), ("a", "req-1", "CreateQueue"))]

    found, after = with_storage(tmp_path / "q.db", body)
    assert found[0] == IdempotentResponse("CreateQueue", b"first", 1_000)
    assert [f.response for f in found[1:4]] == [b"other account", b"other method", b"a recipient's"]
    assert found[4] is None
    assert after[:2] == [None, None] and after[2].response == b"first"


def test_events_since_and_oldest_sequence(tmp_path):
    def rows(account, sequences):
        return [(account, n, 1_000 + n, "session.created", "session", f"s{n}", b"p%d" % n)
                for n in sequences]

    async def body(storage):
        await storage.write(AppendEvents(rows("a", range(1, 51))))
        await storage.write(AppendEvents(rows("a", range(51, 101))),
                            AppendEvents(rows("b", range(1, 6))))
        page = await storage.events_since("a", 40, limit=10)
        tail = await storage.events_since("a", 95, limit=100)
        past_end = await storage.events_since("a", 101, limit=10)
        oldest = await storage.oldest_sequence("a")
        await storage.write(TrimEvents("a", below_sequence=90))
        after_trim = await storage.oldest_sequence("a"), await storage.events_since("a", 1, 3)
        with pytest.raises(WriteError):
            await storage.write(AppendEvents(rows("a", [100])))
        unknown = await storage.oldest_sequence("nobody")
        return page, tail, past_end, oldest, after_trim, unknown

    page, tail, past_end, oldest, (oldest_after, head_after), unknown = with_storage(
        tmp_path / "q.db", body)
    assert [e.sequence for e in page] == list(range(40, 50))
    assert page[0] == EventRecord("a", 40, 1_040, "session.created", "session", "s40", b"p40")
    assert [e.sequence for e in tail] == list(range(95, 101))
    assert past_end == []
    assert oldest == 1
    assert oldest_after == 90
    assert [e.sequence for e in head_after] == [90, 91, 92]
    assert unknown is None


def test_outbox_due_in_attempt_order(tmp_path):
    async def body(storage):
        await storage.write(
            PutOutbox("a", "d1", "w1", 100, next_attempt_ms=300, attempts=0, payload=b"1"),
            PutOutbox("a", "d2", "w1", 100, next_attempt_ms=100, attempts=0, payload=b"2"),
            PutOutbox("b", "d3", "w2", 100, next_attempt_ms=900, attempts=0, payload=b"3"),
        )
        # A failed attempt: put again, rescheduled.
        await storage.write(PutOutbox("a", "d2", "w1", 100, next_attempt_ms=500, attempts=1,
                                      payload=b"2", last_error="HTTP 503"))
        due = await storage.outbox_due(now_ms=600, limit=10)
        await storage.write(DeleteOutbox("a", "d1"))
        return due, await storage.outbox_due(now_ms=10_000, limit=10)

    due, later = with_storage(tmp_path / "q.db", body)
    assert [(d.delivery_id, d.attempts, d.last_error) for d in due] == [
        ("d1", 0, None), ("d2", 1, "HTTP 503")]
    assert [d.delivery_id for d in later] == ["d2", "d3"]
    assert later[1].payload == b"3"


def test_reads_run_beside_writes(tmp_path):
    async def body(storage):
        await storage.write(AppendEvents([("a", 1, 1, "t", "session", "s", b"")]))
        pending = storage.write(AppendEvents([("a", n, n, "t", "session", "s", b"")
                                              for n in range(2, 2002)]))
        first = await storage.events_since("a", 1, 1)
        await pending
        return first, await storage.read(
            lambda conn: conn.execute("SELECT count(*) FROM events").fetchone()[0])

    first, count = with_storage(tmp_path / "q.db", body)
    assert [e.sequence for e in first] == [1]
    assert count == 2001
