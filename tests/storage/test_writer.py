"""The writer thread: group commit, per-write atomicity and failure isolation,
flush and stop semantics."""

import asyncio
import threading
from typing import ClassVar

import pytest

from qroute.storage import (
    AppendEvents,
    DeleteLiveSession,
    DeleteMeta,
    InsertOffer,
    Op,
    PutLiveSession,
    PutMeta,
    SqliteStorage,
    Storage,
    StorageClosed,
    WriteError,
)

from ._util import run, session_doc


class Gate(Op):
    """Test op: holds the writer thread (inside a transaction) until released,
    so the writes queued meanwhile are sure to share the next batch."""

    __slots__ = ("entered", "release")
    sql: ClassVar[str] = "DELETE FROM meta WHERE key = ?"  # deletes nothing

    def __init__(self):
        self.entered = threading.Event()
        self.release = threading.Event()

    def param_rows(self):
        self.entered.set()
        assert self.release.wait(10)
        return (("\0gate",),)


class _InFlight:
    """The child writer's gate: a write it is committing holds the next
    batch back until it lands, with nothing to release."""

    class release:
        @staticmethod
        def set():
            pass


async def hold_writer(storage):
    """Hold the writer's next batch back (the writer thread behind a Gate,
    the child process behind a write in flight); returns (gate, the holding
    write's future). What is written until ``gate.release.set()`` shares one batch."""
    if storage.writer_process:
        return _InFlight, storage.write(DeleteMeta("\0gate"))  # deletes nothing
    gate = Gate()
    fut = storage.write(gate)
    assert await asyncio.to_thread(gate.entered.wait, 10)
    return gate, fut


def offer(offer_id, outcome="accepted"):
    return InsertOffer("a", offer_id, "s1", "q1", "r1", 1_000, 2_000, outcome, 1_000)


def live_ids(storage):
    return [(r.account_id, r.session_id) for r in storage.load_all().live_sessions]


def test_implements_the_storage_interface(open_storage, tmp_path):
    assert isinstance(open_storage(tmp_path / "q.db"), Storage)


def test_1000_concurrent_writes_share_few_commits(open_storage, tmp_path):
    async def main():
        async with open_storage(tmp_path / "q.db") as storage:
            futures = [storage.write(PutLiveSession("a", f"s{i}", session_doc(i)))
                       for i in range(1000)]
            results = await asyncio.gather(*futures)
            assert results == [None] * 1000
            assert all(f.done() and f.exception() is None for f in futures)
            stats = storage.stats
            assert stats.writes_committed == 1000
            assert stats.ops_committed == 1000
            assert 1 <= stats.commits <= 50, stats
            assert stats.max_batch_size >= 20
            assert len(storage.load_all().live_sessions) == 1000
    run(main())


def test_writers_awaiting_each_write_share_commits(open_storage, tmp_path):
    # 100 callers, each awaiting its write before the next (like RPC handlers):
    # while one commit is on disk the next batch collects.
    async def writer(storage, w):
        for i in range(20):
            await storage.write(PutLiveSession("a", f"w{w}-{i}", session_doc(i)))

    async def main():
        async with open_storage(tmp_path / "q.db") as storage:
            await asyncio.gather(*(writer(storage, w) for w in range(100)))
            assert storage.stats.writes_committed == 2000
            assert storage.stats.commits <= 400, storage.stats
            assert len(storage.load_all().live_sessions) == 2000
    run(main())


def test_the_ops_of_one_write_commit_in_order(open_storage, tmp_path):
    async def main():
        async with open_storage(tmp_path / "q.db") as storage:
            await storage.write(
                PutLiveSession("a", "s1", session_doc(1)),
                DeleteLiveSession("a", "s1"),
                DeleteLiveSession("a", "s2"),
                PutLiveSession("a", "s2", session_doc(2)),
                PutLiveSession("a", "s3", session_doc(3)),
            )
            assert live_ids(storage) == [("a", "s2"), ("a", "s3")]
    run(main())


def test_a_bad_write_fails_alone_and_keeps_nothing(open_storage, tmp_path):
    async def main():
        async with open_storage(tmp_path / "q.db") as storage:
            await storage.write(offer("o1"))
            gate, gate_done = await hold_writer(storage)
            # These queue up behind the gate, so they share one batch.
            before = storage.write(PutLiveSession("a", "s1", session_doc(1)))
            bad = storage.write(PutLiveSession("a", "s2", session_doc(2)), offer("o1"))
            after = storage.write(PutLiveSession("a", "s3", session_doc(3)), offer("o2"))
            gate.release.set()
            await gate_done
            await before
            with pytest.raises(WriteError) as caught:
                await bad
            await after
            assert "InsertOffer" in str(caught.value)
            assert caught.value.ops[1] == offer("o1")
            assert caught.value.__cause__ is not None  # the sqlite3 error
            # The failed write is atomic: its PutLiveSession was rolled back too.
            assert live_ids(storage) == [("a", "s1"), ("a", "s3")]
            stats = storage.stats
            assert stats.batch_failures == 1
            assert stats.writes_failed == 1
            assert stats.writes_committed == 4  # o1, gate, before, after
    run(main())


def test_a_failing_write_alone_in_its_batch(open_storage, tmp_path):
    async def main():
        async with open_storage(tmp_path / "q.db") as storage:
            await storage.write(offer("o1"))
            with pytest.raises(WriteError):
                await storage.write(offer("o1"))
            await storage.write(offer("o2"))
            assert storage.stats.writes_failed == 1
    run(main())


def test_flush_waits_for_earlier_writes(open_storage, tmp_path):
    async def main():
        async with open_storage(tmp_path / "q.db") as storage:
            futures = [storage.write(PutMeta(f"k{i}", i)) for i in range(300)]
            await storage.flush()
            assert all(f.done() for f in futures)
            assert storage.load_all().meta == {f"k{i}": i for i in range(300)}
            await asyncio.gather(*futures)
            await storage.flush()  # with nothing pending
    run(main())


def test_a_cancelled_wait_does_not_cancel_the_write(open_storage, tmp_path):
    async def main():
        async with open_storage(tmp_path / "q.db") as storage:
            gate, gate_done = await hold_writer(storage)
            fut = storage.write(PutMeta("k", "v"))
            fut.cancel()
            gate.release.set()
            await gate_done
            await storage.flush()
            assert storage.load_all().meta == {"k": "v"}
    run(main())


def test_batches_respect_the_cap_but_never_split_a_write(open_storage, tmp_path):
    async def main():
        async with open_storage(tmp_path / "q.db", max_batch_ops=10) as storage:
            gate, gate_done = await hold_writer(storage)
            futures = [storage.write(PutMeta(f"k{i}", i)) for i in range(95)]
            big = storage.write(*(PutMeta(f"big{i}", i) for i in range(25)))
            gate.release.set()
            await asyncio.gather(gate_done, big, *futures)
            stats = storage.stats
            assert stats.max_batch_size == 25
            assert stats.commits >= 11
            assert len(storage.load_all().meta) == 120
    run(main())


def test_stop_commits_pending_writes(open_storage, tmp_path):
    async def main():
        storage = open_storage(tmp_path / "q.db")
        await storage.start()
        futures = [storage.write(PutLiveSession("a", f"s{i}", session_doc(i))) for i in range(500)]
        await storage.stop()
        assert all(f.done() and f.exception() is None for f in futures)
        with pytest.raises(StorageClosed):
            storage.write(PutMeta("k", "v"))
        with pytest.raises(StorageClosed):
            storage.load_all()
        await storage.stop()  # idempotent

        async with open_storage(tmp_path / "q.db") as reopened:
            assert len(reopened.load_all().live_sessions) == 500
    run(main())


def test_write_before_start_and_non_ops_are_refused(open_storage, tmp_path):
    async def main():
        storage = open_storage(tmp_path / "q.db")
        with pytest.raises(StorageClosed):
            storage.write(PutMeta("k", "v"))
        async with storage:
            with pytest.raises(TypeError):
                storage.write(("INSERT INTO meta VALUES (?, ?)", ("k", "v")))
    run(main())


def test_stats_count_commits_and_latency(open_storage, tmp_path):
    async def main():
        async with open_storage(tmp_path / "q.db") as storage:
            await storage.write(PutMeta("a", 1), PutMeta("b", 2))
            stats = storage.stats
            assert stats.commits == 1
            assert stats.ops_committed == 2
            assert stats.last_batch_size == 2
            assert stats.last_batch_writes == 1
            assert 0 < stats.last_commit_seconds <= stats.max_commit_seconds
            assert stats.commit_seconds_total >= stats.last_commit_seconds
    run(main())


def test_a_writer_bug_fails_waiting_writes_instead_of_hanging(tmp_path, monkeypatch):
    from qroute.storage import StorageError, sqlite as sqlite_module

    def broken(self, conn, batch, batch_ops):
        raise RuntimeError("bug in the writer")

    async def main():
        storage = SqliteStorage(tmp_path / "q.db", writer_process=False)
        async with storage:
            gate, gate_done = await hold_writer(storage)
            monkeypatch.setattr(sqlite_module._Writer, "_commit", broken)
            queued = [storage.write(PutMeta(f"k{i}", i)) for i in range(10)]
            gate.release.set()
            await gate_done
            for fut in queued:
                with pytest.raises(StorageError, match="bug in the writer"):
                    await fut
            with pytest.raises(StorageError):
                storage.write(PutMeta("later", 1))
    run(main())


def test_many_rows_of_one_statement_commit_in_order_with_upserts_and_failures(open_storage, tmp_path):
    """A group commit runs each statement's rows as multi-row INSERTs in
    chunks: every row lands, a key put twice keeps its last document, and a
    duplicate anywhere in a chunk fails only its own write."""
    def events(account, first, count):
        return AppendEvents([(account, n, n, "t", "session", f"s{n}", b"p") for n in range(first, first + count)])

    async def main():
        async with open_storage(tmp_path / "q.db") as storage:
            puts = [PutLiveSession("a", f"s{n:03}", session_doc(n)) for n in range(73)]
            again = PutLiveSession("a", "s005", {**session_doc(5), "priority": 9})
            await storage.write(*puts, again, events("a", 1, 73))
            gate, held = await hold_writer(storage)
            good = storage.write(events("a", 74, 9))
            bad = storage.write(events("a", 83, 20), events("a", 70, 1))  # 70 is stored already
            gate.release.set()
            await held
            await good
            with pytest.raises(WriteError):
                await bad
            sequences = await storage.read(lambda conn: [r[0] for r in conn.execute(
                "SELECT sequence FROM events ORDER BY sequence")])
            return storage.load_all().live_sessions, sequences

    sessions, sequences = run(main())
    assert len(sessions) == 73
    assert {r.session_id: r.doc for r in sessions}["s005"]["priority"] == 9
    assert sequences == list(range(1, 83))
