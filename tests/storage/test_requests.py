"""RequestLog: answers by request id, bounded by age and per account, kept in
step with the idempotency table."""

from qroute.storage import (
    DeleteIdempotency,
    IdempotencyRecord,
    PutIdempotency,
    RequestLog,
    SqliteStorage,
    TrimIdempotency,
)

from ._util import run

KEY = ("", "SessionService/Enqueue", "call-1")


def test_the_first_answer_stays_and_is_stored_with_its_key():
    log = RequestLog()
    ops = log.remember("a", KEY, b"first", 1_000)
    assert ops[0] == PutIdempotency("a", "call-1", "SessionService/Enqueue", b"first", 1_000, "")
    assert log.remember("a", KEY, b"second", 2_000) == []
    assert log.get("a", KEY, 2_000) == b"first"
    assert log.get("b", KEY, 2_000) is None
    assert log.get("a", ("ann", *KEY[1:]), 2_000) is None  # a recipient key's ids are its own


def test_old_answers_expire_and_an_account_keeps_at_most_its_limit():
    log = RequestLog(retention_ms=10_000, per_account=2, trim_every_ms=5_000)
    log.remember("a", ("", "M", "r1"), b"1", 0)
    log.remember("a", ("", "M", "r2"), b"2", 1_000)
    ops = log.remember("a", ("", "M", "r3"), b"3", 6_000)
    assert DeleteIdempotency("a", "r1", "M", "") in ops and TrimIdempotency(-4_000) in ops
    assert log.get("a", ("", "M", "r1"), 6_000) is None
    assert log.get("a", ("", "M", "r2"), 11_001) is None  # past its retention
    assert log.get("a", ("", "M", "r3"), 11_001) == b"3"


def test_loaded_from_storage_at_startup(tmp_path):
    async def main():
        async with SqliteStorage(tmp_path / "q.db") as storage:
            await storage.write(*RequestLog().remember("a", KEY, b"kept", 50_000),
                                PutIdempotency("a", "old", "M", b"old", 1))
            return storage.load_all().idempotency

    records = run(main())
    assert records[-1] == IdempotencyRecord("a", "", "SessionService/Enqueue", "call-1", b"kept", 50_000)
    log = RequestLog(retention_ms=20_000)
    ops = log.load(records, now_ms=60_000)
    assert log.get("a", KEY, 60_000) == b"kept" and log.get("a", ("", "M", "old"), 60_000) is None
    assert ops == [TrimIdempotency(40_000)] and len(log) == 1
