"""Opening, the schema version, and what ops accept."""

import json
import sqlite3

import pytest

from qroute.storage import (
    SCHEMA_VERSION,
    InsertFinishedSession,
    InsertOffer,
    PutConfig,
    PutLiveSession,
    SchemaError,
    SqliteStorage,
    StorageError,
    json_encoder,
)

from ._util import run, session_doc


def test_a_new_database_gets_the_schema_in_wal_mode(tmp_path):
    path = tmp_path / "sub" / "q.db"  # parent directories are created

    async def main():
        async with SqliteStorage(path, synchronous="full") as storage:
            return await storage.read(lambda conn: (
                conn.execute("PRAGMA synchronous").fetchone()[0],
                conn.execute("PRAGMA foreign_keys").fetchone()[0],
            ))

    assert run(main()) == (2, 0)  # FULL, off
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert conn.execute("SELECT version FROM schema_version").fetchall() == [(SCHEMA_VERSION,)]
    conn.close()


def test_reopening_keeps_data_and_does_not_migrate_again(tmp_path):
    path = tmp_path / "q.db"

    async def put():
        async with SqliteStorage(path) as storage:
            await storage.write(PutConfig("a", "queue", "q1", {"n": 1}))

    async def get():
        async with SqliteStorage(path) as storage:
            return storage.load_all().configs

    run(put())
    assert run(get()) == {("a", "queue"): {"q1": {"n": 1}}}
    conn = sqlite3.connect(path)
    assert conn.execute("SELECT count(*) FROM schema_version").fetchone()[0] == 1
    conn.close()


def test_a_database_from_a_newer_qroute_is_refused(tmp_path):
    path = tmp_path / "q.db"

    async def create():
        async with SqliteStorage(path):
            pass

    run(create())
    conn = sqlite3.connect(path)
    conn.execute("UPDATE schema_version SET version = ?", (SCHEMA_VERSION + 1,))
    conn.commit()
    conn.close()

    async def main():
        storage = SqliteStorage(path)
        with pytest.raises(SchemaError):
            await storage.start()
        with pytest.raises(StorageError):
            storage.write()

    run(main())


def test_constructor_arguments_are_checked(tmp_path):
    with pytest.raises(ValueError):
        SqliteStorage(":memory:")
    with pytest.raises(ValueError):
        SqliteStorage(tmp_path / "q.db", synchronous="OFF")
    with pytest.raises(ValueError):
        SqliteStorage(tmp_path / "q.db", max_batch_ops=0)


def test_docs_are_encoded_when_the_op_is_built(tmp_path):
    doc = session_doc(1)
    op = PutLiveSession("a", "s1", doc)
    doc["state"] = "mutated later"
    doc["queue_id"] = "q9"

    async def main():
        async with SqliteStorage(tmp_path / "q.db") as storage:
            await storage.write(op)
            return storage.load_all().live_sessions

    (record,) = run(main())
    assert record.doc == session_doc(1)


def test_ops_reject_bad_values_on_the_callers_line():
    with pytest.raises(TypeError):
        PutConfig("a", "queue", "q1", {"not json": object()})
    with pytest.raises(ValueError):
        PutConfig("a", "queue", "q1", {"x": float("nan")})
    with pytest.raises(ValueError):
        PutLiveSession("a", "s1", {"entered_at_ms": 1})  # no queue_id
    with pytest.raises(ValueError):
        InsertOffer("a", "o1", "s1", "q1", "r1", 1, 2, "maybe", 1)


@pytest.mark.parametrize("options", [
    {"ensure_ascii": False, "separators": (",", ":"), "allow_nan": False},
    {"separators": (",", ":"), "default": str},
    {},
])
def test_json_encoder_writes_what_json_does(options):
    encode, reference = json_encoder(**options), json.JSONEncoder(**options).encode
    shared = {"k": [1]}
    looped: dict = {}
    looped["self"] = looped
    for value in ({"a": 1, "b": [1, 2.5, "é\u2028\"", None, True], "c": {"d": {}}}, [shared, shared], "s",
                  1e300, {1: 2}, [], {"x": [object()]}, {"x": float("nan")}, looped):
        try:
            expected = reference(value)
        except (TypeError, ValueError) as exc:
            with pytest.raises(type(exc)):
                encode(value)
        else:
            assert encode(value) == expected


def test_json_encoder_forgets_the_containers_of_a_failed_call():
    encode = json_encoder()
    doc = {"x": [object()]}
    with pytest.raises(TypeError):
        encode(doc)
    doc["x"] = [1]
    assert encode(doc) == '{"x": [1]}'  # not "Circular reference detected"


def test_finished_session_columns(tmp_path):
    async def main():
        async with SqliteStorage(tmp_path / "q.db") as storage:
            await storage.write(InsertFinishedSession(
                "a", "s1", "q2", "r1", entered_at_ms=1_000, ended_at_ms=9_000,
                end_reason="answered", wait_ms=3_000, ring_ms=500, talk_ms=4_500,
                queues_visited=("q1", "q2"), doc={"caller": "+31"}))
            return await storage.read(lambda conn: conn.execute(
                "SELECT queue_id, recipient_id, end_reason, wait_ms, ring_ms, talk_ms, "
                "queues_visited, doc FROM finished_sessions "
                "WHERE account_id = 'a' AND queue_id = 'q2' AND ended_at_ms >= 0").fetchall())

    assert run(main()) == [
        ("q2", "r1", "answered", 3_000, 500, 4_500, '["q1","q2"]', '{"caller":"+31"}')]


def test_one_storage_per_database(tmp_path):
    path = tmp_path / "q.db"

    async def main():
        async with SqliteStorage(path):
            second = SqliteStorage(path)
            with pytest.raises(StorageError, match="in use"):
                await second.start()
        async with SqliteStorage(path):  # free again once the first stopped
            pass

    run(main())
