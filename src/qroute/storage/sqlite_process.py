"""The SQLite write connection, in this process or in a child process.

Why a child: Python's sqlite3 module lets go of the GIL at every statement
step and must take it back after. With the event loop busy, each retake
waits for the loop to let go (up to the switch interval, 5 ms), so a group
commit of a few dozen statements took 100-200 ms, nearly all of it waiting,
and every acknowledged mutation waited that long. In a child process the
transaction runs under the child's own GIL, and the server's event loop
talks to it through pipes (``qroute.storage.sqlite``'s ``_ChildWriter``):
no thread of the server waits for the GIL, one pickle goes each way per
group commit.

A transaction is a *plan*: ``[(multi_row, sql, rows, json_column), ...]``,
made from the ops by ``qroute.storage.sqlite``, and run here by
``run_plan``, which also encodes the documents and event payloads the ops
left as values (``Op.json_column``): that JSON is made here, not on the
server's event loop. The child (``serve``) speaks
length-prefixed pickles over its stdin and stdout; it exits when its stdin closes, which
also happens when the server dies (kill -9): a commit it acknowledged is on
disk, one it had not is not acknowledged.

This module imports little beyond the standard library, the schema and
the ops, so the child starts quickly.
"""

from __future__ import annotations

import os
import pickle
import signal
import sqlite3
import struct
import sys

from qroute.storage.errors import StorageError
from qroute.storage.ops import DOC_JSON, EVENT_JSON, json_encoder
from qroute.storage.schema import migrate

BUSY_TIMEOUT_MS = 5000
HEADER = struct.Struct("<I")  # the length of the pickle that follows

# Rows per multi-row INSERT: a group commit's rows of one statement go in
# chunks of these sizes (few distinct statements for the statement cache).
_CHUNKS = (64, 8, 1)
_multi_row: dict[str, tuple[str, str, str] | None] = {}


def connect(path: str, synchronous: str, *, reader: bool) -> sqlite3.Connection:
    # isolation_level=None: no implicit transactions; we issue BEGIN/COMMIT.
    conn = sqlite3.connect(
        path, isolation_level=None, check_same_thread=not reader,
        timeout=BUSY_TIMEOUT_MS / 1000,
    )
    try:
        conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        conn.execute("PRAGMA foreign_keys = OFF")
        conn.execute(f"PRAGMA synchronous = {synchronous}")
        conn.execute("PRAGMA temp_store = MEMORY")
        if reader:
            conn.execute("PRAGMA query_only = ON")
        else:
            mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if mode.lower() != "wal":
                raise StorageError(f"cannot use WAL journal mode on {path!r} (got {mode!r})")
            # Keep the WAL from growing without bound after a burst.
            conn.execute("PRAGMA journal_size_limit = 67108864")
    except BaseException:
        conn.close()
        raise
    return conn


# The writer's own encoders (json_encoder's are for one thread each): the
# values a plan leaves to encode, as the ops' owners would have (ops.py).
_encode_event = json_encoder(**EVENT_JSON)
_ENCODE = {
    "doc": json_encoder(**DOC_JSON),
    "event": lambda data: _encode_event(data).encode(),
}


def _encoded(rows: list[tuple], column: int, how: str) -> list[tuple]:
    encode = _ENCODE[how]
    return [row if isinstance(row[column], (bytes, str)) else
            (*row[:column], encode(row[column]), *row[column + 1:]) for row in rows]


def run_plan(conn: sqlite3.Connection, plan) -> None:
    """Run ``plan`` in one transaction; on failure roll back and raise."""
    try:
        conn.execute("BEGIN IMMEDIATE")
        for multi_row, sql, rows, json_column in plan:
            if json_column is not None:
                rows = _encoded(rows, *json_column)
            if multi_row:
                _execute_rows(conn, sql, rows)
            else:
                conn.executemany(sql, rows)
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise


def _execute_rows(conn: sqlite3.Connection, sql: str, rows: list[tuple]) -> None:
    """Run ``sql`` for each row, in order. An ``INSERT ... VALUES (...)`` runs
    as multi-row INSERTs: SQLite steps once per chunk instead of once per row."""
    parts = _multi_row.get(sql, False)
    if parts is False:
        parts = _multi_row[sql] = _split_values(sql)
    if parts is None or len(rows) < _CHUNKS[-2]:
        conn.executemany(sql, rows)
        return
    head, values, tail = parts
    start = 0
    for size in _CHUNKS:
        statement = None
        while len(rows) - start >= size:
            if size == 1:
                conn.executemany(sql, rows[start:])
                return
            if statement is None:
                statement = head + ", ".join([values] * size) + tail
            conn.execute(statement, [value for row in rows[start:start + size] for value in row])
            start += size


def _split_values(sql: str) -> tuple[str, str, str] | None:
    """(before, "(?, ..., ?)", after) of a one-row ``INSERT ... VALUES``; None
    for any other statement."""
    if not sql.startswith("INSERT INTO "):
        return None
    start = sql.find(" VALUES (")
    if start < 0:
        return None
    start += len(" VALUES ")
    end = sql.index(")", start) + 1
    if sql.count("(", start, end) != 1:
        return None
    return sql[:start], sql[start:end], sql[end:]


def checkpoint(conn: sqlite3.Connection) -> None:
    """Fold the WAL into the main file so the next start is quick."""
    try:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    except sqlite3.Error:
        pass


class LocalWriter:
    """The write connection in the writer thread itself."""

    def __init__(self, path: str, synchronous: str) -> None:
        self.conn = connect(path, synchronous, reader=False)
        try:
            migrate(self.conn)
        except BaseException:
            self.conn.close()
            raise

    def transaction(self, plan) -> None:
        run_plan(self.conn, plan)

    def close(self) -> None:
        checkpoint(self.conn)
        self.conn.close()


# How the server starts the child (``serve``): argv[1] the database, argv[2] its synchronous mode.
# -P: nothing from the current directory shadows the installed package.
CHILD = [sys.executable, "-P", "-c", "import sys; from qroute.storage.sqlite_process import serve; "
         "serve(sys.argv[1], sys.argv[2])"]


def frame(message) -> bytes:
    """One request or reply as it goes over the pipe."""
    data = pickle.dumps(message, pickle.HIGHEST_PROTOCOL)
    return HEADER.pack(len(data)) + data


def serve(path: str, synchronous: str) -> None:
    """The child: one reply per request, ``None`` when it went well or the exception."""
    # Ctrl-C and a service manager's SIGTERM reach the whole process group: the
    # server finishes its writes and checkpoints first, then closes our stdin.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    requests = os.fdopen(0, "rb", buffering=1 << 16)
    replies = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)  # a stray print must not corrupt the replies

    def reply(error: BaseException | None) -> None:
        try:
            data = frame(error)
        except Exception:  # an exception that does not pickle: its text does
            data = frame(StorageError(f"{type(error).__name__}: {error}"))
        replies.write(data)
        replies.flush()

    try:
        writer = LocalWriter(path, synchronous)
    except BaseException as exc:
        reply(exc)
        return
    reply(None)
    try:
        while True:
            header = requests.read(HEADER.size)
            if len(header) < HEADER.size:
                return  # the server is gone or done
            (size,) = HEADER.unpack(header)
            plan = pickle.loads(requests.read(size))
            if plan is None:
                checkpoint(writer.conn)
                reply(None)
                continue
            try:
                writer.transaction(plan)
            except Exception as exc:
                reply(exc)
            else:
                reply(None)
    finally:
        writer.conn.close()

