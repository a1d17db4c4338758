"""The write connection in a child process (the default) against the one in
the writer thread: the same commits, failures and recovery; and a child that
dies fails the waiting writes instead of hanging them."""

import pytest

from qroute.storage import (
    AppendEvents,
    InsertOffer,
    PutLiveSession,
    PutMeta,
    SqliteStorage,
    StorageError,
    WriteError,
)

from ._util import run, session_doc


def offer(offer_id):
    return InsertOffer("a", offer_id, "s1", "q1", "r1", 1_000, 2_000, "accepted", 1_000)


def contents(path, writer_process):
    """Write a mixed history (multi-row INSERTs, upserts, a failing write
    among good ones) and return what the database holds."""

    async def main():
        async with SqliteStorage(path, writer_process=writer_process) as storage:
            await storage.write(*[PutLiveSession("a", f"s{n:03}", session_doc(n)) for n in range(70)],
                                AppendEvents([("a", n, n, "t", "session", f"s{n}", b"p") for n in range(1, 71)]))
            good = storage.write(offer("o1"), PutMeta("k", "v1"))
            bad = storage.write(PutLiveSession("a", "s999", session_doc(999)), offer("o1"))
            later = storage.write(PutLiveSession("a", "s005", {**session_doc(5), "priority": 7}))
            await good
            with pytest.raises(WriteError) as caught:
                await bad
            assert "UNIQUE" in str(caught.value.__cause__)  # the driver's error, carried back
            await later
            live = {r.session_id: r.doc["priority"] for r in storage.load_all().live_sessions}
            events = await storage.read(lambda conn: conn.execute("SELECT count(*) FROM events").fetchone()[0])
            return live, events, storage.load_all().meta

    return run(main())


def test_the_child_process_commits_what_the_thread_commits(tmp_path):
    in_process = contents(tmp_path / "child.db", True)
    in_thread = contents(tmp_path / "thread.db", False)
    assert in_process == in_thread
    live, events, _ = in_process
    assert len(live) == 70 and live["s005"] == 7 and "s999" not in live and events == 70


def test_a_dead_writer_process_fails_writes_instead_of_hanging(tmp_path):
    async def main():
        storage = SqliteStorage(tmp_path / "q.db")
        await storage.start()
        await storage.write(PutMeta("before", 1))
        child = storage._child.process
        child.kill()
        child.wait()
        with pytest.raises(StorageError, match="writer process is gone"):
            await storage.write(PutMeta("after", 1))
        with pytest.raises(StorageError):
            storage.write(PutMeta("later", 1))
        await storage.stop()

    run(main())

    async def reopened():  # what was acknowledged is there
        async with SqliteStorage(tmp_path / "q.db") as storage:
            return storage.load_all().meta

    meta = run(reopened())
    assert "before" in meta and "after" not in meta


def test_without_a_child_process_the_writer_thread_writes(tmp_path, monkeypatch, caplog):
    from qroute.storage import sqlite_process

    monkeypatch.setattr(sqlite_process, "CHILD", [str(tmp_path / "no-such-python")])

    async def main():
        async with SqliteStorage(tmp_path / "q.db") as storage:
            await storage.write(PutMeta("k", "v"))
            return storage.writer_process, storage.load_all().meta

    writer_process, meta = run(main())
    assert not writer_process and meta == {"k": "v"}
    assert "writing from a thread" in caplog.text


def test_the_writer_encodes_event_data_and_recipient_documents(open_storage, tmp_path):
    """Left as values by the ops, they are stored as the loop would have
    encoded them; a document changed after its op was made is stored as it was."""
    import json

    from qroute.domain.enums import RecipientState
    from qroute.storage import PutRecipientState

    data = {"state": RecipientState.BUSY, "queues": ["sales"], "name": "Zoë"}
    doc = {"state": "busy", "name": "Zoë", "calls": 3}

    async def main():
        async with open_storage(tmp_path / "q.db") as storage:
            put = PutRecipientState("a", "ann", doc)
            doc["calls"] = 4  # after the op: not in it
            await storage.write(AppendEvents([("a", 1, 1, "t", "recipient", "ann", data),
                                              ("a", 2, 2, "t", "recipient", "ann", b'{"as":"is"}')]), put)
            payloads = await storage.read(lambda conn: [r[0] for r in conn.execute(
                "SELECT payload FROM events ORDER BY sequence")])
            return payloads, storage.load_all().recipient_states

    payloads, states = run(main())
    assert payloads == [json.dumps(data, separators=(",", ":"), default=str).encode(), b'{"as":"is"}']
    assert states == {("a", "ann"): {"state": "busy", "name": "Zoë", "calls": 3}}
