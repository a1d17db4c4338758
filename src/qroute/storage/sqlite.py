"""SQLite storage: one writer thread doing group commit, one read connection.

Writes: ``write(*ops)`` puts (ops, future) on a ``queue.SimpleQueue`` and
returns at once; the writer thread takes everything queued (up to
``max_batch_ops``), runs it in ONE transaction (on the write connection,
held by a child process: ``qroute.storage.sqlite_process``), commits, and
resolves every
future of the batch with one ``call_soon_threadsafe``. So a caller that awaits
its future knows its ops are committed ("acknowledged means durable"), and
while one commit is on disk the next batch collects: the busier the server,
the more writes share a commit. The ops of one ``write()`` call are atomic.

If a batch's transaction fails, it is rolled back and its writes are retried
one transaction each, so a bad write fails only its own future
(``WriteError``) and its neighbours still commit.

Durability: the database is in WAL mode. ``synchronous="NORMAL"`` (default)
keeps every acknowledged write across a crash of the process (kill -9);
``"FULL"`` also fsyncs the WAL at each commit, so it survives an OS crash or
power loss, at the price of one fsync per group commit.

Reads use a separate connection (WAL lets them run during writes) and see
committed data only: a write is visible to reads once its future resolved.
``load_all()`` is synchronous, for startup; runtime queries are ``async`` and
run on one reader thread, off the event loop.

One storage per database: ``start()`` takes an exclusive lock on
``<path>-lock``, so a second server on the same file fails loudly.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import gc
import json
import logging
import os
import pickle
import queue
import sqlite3
import subprocess
import threading
import time
from itertools import repeat
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

try:
    import fcntl
except ImportError:  # Windows: no advisory lock file
    fcntl = None

from qroute.storage.errors import StorageClosed, StorageError, WriteError, WriterGone
from qroute.storage.ops import Op
from qroute.storage.records import (
    ApiKeyRecord,
    EventRecord,
    IdempotencyRecord,
    IdempotentResponse,
    LiveSessionRecord,
    MembershipRecord,
    OutboxRecord,
    Snapshot,
    StorageStats,
)
from qroute.storage import sqlite_process
from qroute.storage.sqlite_process import LocalWriter, connect

__all__ = ["SqliteStorage"]

log = logging.getLogger("qroute.storage")

T = TypeVar("T")

_SYNCHRONOUS = ("NORMAL", "FULL")
_STOP = object()  # queue sentinel: everything before it is committed, then the writer exits

_NEW, _RUNNING, _STOPPING, _STOPPED = "new", "running", "stopping", "stopped"

# One queued write: its ops and the future its caller awaits.
_Item = tuple[tuple[Op, ...], asyncio.Future]


def _lock(path: str) -> int | None:
    """Hold an exclusive lock on ``<path>-lock`` (released by closing the fd,
    or by the process's death): two servers writing one database would each
    think they own the same callers."""
    if fcntl is None:
        return None
    fd = os.open(f"{path}-lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise StorageError(f"database {path!r} is in use by another qroute storage") from None
    return fd


def _resolve_ok(futures: list[asyncio.Future]) -> None:
    for fut in futures:
        if not fut.done():  # the caller may have cancelled its wait
            fut.set_result(None)


def _resolve_each(results: list[tuple[asyncio.Future, BaseException | None]]) -> None:
    for fut, exc in results:
        if not fut.done():
            if exc is None:
                fut.set_result(None)
            else:
                fut.set_exception(exc)


def _fail_all_queued(pending: queue.SimpleQueue, error: StorageError) -> None:
    failed = []
    while True:
        try:
            item = pending.get_nowait()
        except queue.Empty:
            break
        if item is not _STOP:
            failed.append((item[1], error))
    _resolve_each(failed)


def _write_error(ops: tuple[Op, ...], exc: BaseException) -> WriteError:
    names = ", ".join(sorted({type(op).__name__ for op in ops}))
    err = WriteError(f"write of {names} failed: {exc}", ops)
    err.__cause__ = exc
    return err


class _Writer(threading.Thread):
    """The one thread that writes: owns the write connection from open to close."""

    def __init__(self, storage: SqliteStorage, loop: asyncio.AbstractEventLoop,
                 ready: asyncio.Future, done: asyncio.Future):
        # Daemon: if the process exits without stop(), queued writes were
        # never acknowledged, so dropping them breaks no promise.
        super().__init__(name="qroute-storage-writer", daemon=True)
        self.storage = storage
        self.loop = loop
        self.ready = ready
        self.done = done
        self.inflight: list[_Item] = []  # the batch being committed

    def _signal(self, callback: Callable, *args) -> None:
        try:
            self.loop.call_soon_threadsafe(callback, *args)
        except RuntimeError:  # the loop is closed: nobody is waiting any more
            pass

    def run(self) -> None:
        storage = self.storage
        try:
            db = LocalWriter(storage.path, storage.synchronous)
        except BaseException as exc:
            self._signal(_resolve_each, [(self.ready, exc), (self.done, None)])
            return
        self._signal(_resolve_ok, [self.ready])
        try:
            self._serve(db)
        except BaseException as exc:  # a bug here must fail writers, not hang them
            storage._broken = exc
            self._fail_queued(exc)  # what is queued, and the batch in flight
        finally:
            db.close()  # after a checkpoint: the next start is quick
            self._signal(_resolve_ok, [self.done])

    def _fail_queued(self, exc: BaseException) -> None:
        error = StorageError(f"storage writer failed: {exc!r}")
        self._signal(_resolve_each, [(fut, error) for _, fut in self.inflight])
        # Drain on the loop's thread, where write() runs: every write queued
        # before this callback is failed, every later one sees _broken.
        self._signal(_fail_all_queued, self.storage._queue, error)

    def _serve(self, db) -> None:
        q = self.storage._queue
        cap = self.storage.max_batch_ops
        carry = None
        while True:
            item = carry if carry is not None else q.get()
            carry = None
            if item is _STOP:
                return
            batch = [item]
            batch_ops = len(item[0])
            stop_after = False
            # Take everything already queued: these writes share one commit.
            while batch_ops < cap:
                try:
                    item = q.get_nowait()
                except queue.Empty:
                    break
                if item is _STOP:
                    stop_after = True
                    break
                if batch_ops + len(item[0]) > cap:
                    carry = item  # never split a write: it is atomic
                    break
                batch.append(item)
                batch_ops += len(item[0])
            self.inflight = batch if carry is None else [*batch, carry]
            self._commit(db, batch, batch_ops)
            self.inflight = []
            if stop_after:
                return

    def _commit(self, db, batch: list[_Item], batch_ops: int) -> None:
        stats = self.storage.stats
        if batch_ops == 0:  # only flush markers
            self._signal(_resolve_ok, [fut for _, fut in batch])
            return
        started = time.perf_counter()
        try:
            db.transaction(_plan([op for ops, _ in batch for op in ops]))
        except Exception as exc:
            stats.batch_failures += 1
            if len(batch) == 1:
                stats.writes_failed += 1
                self._signal(_resolve_each, [(batch[0][1], _write_error(batch[0][0], exc))])
            else:
                self._signal(_resolve_each, self._retry_one_by_one(db, batch))
            return
        _count_commit(self.storage, time.perf_counter() - started, batch_ops, len(batch))
        self._signal(_resolve_ok, [fut for _, fut in batch])

    def _retry_one_by_one(self, db, batch: list[_Item]):
        stats = self.storage.stats
        results = []
        for ops, fut in batch:
            if not ops:
                results.append((fut, None))
                continue
            started = time.perf_counter()
            try:
                db.transaction(_plan(ops))
            except Exception as exc:
                stats.writes_failed += 1
                results.append((fut, _write_error(ops, exc)))
                continue
            _count_commit(self.storage, time.perf_counter() - started, len(ops), 1)
            results.append((fut, None))
        return results


def _count_commit(storage: SqliteStorage, elapsed: float, ops: int, writes: int) -> None:
    stats = storage.stats
    stats.commits += 1
    stats.ops_committed += ops
    stats.writes_committed += writes
    stats.last_batch_size = ops
    stats.last_batch_writes = writes
    stats.max_batch_size = max(stats.max_batch_size, ops)
    stats.last_commit_seconds = elapsed
    stats.max_commit_seconds = max(stats.max_commit_seconds, elapsed)
    stats.commit_seconds_total += elapsed
    on_commit = getattr(storage, "on_commit", None)  # set by qroute.metrics: histograms need each commit
    if on_commit is not None:
        on_commit(elapsed, ops)


class _ChildWriter:
    """Group commit driven by the event loop, the write connection held by
    a child process (``qroute.storage.sqlite_process`` says why). While the
    child commits a batch, the writes that come meanwhile queue up and go
    as the next one; a failed batch is retried one write at a time, so a
    bad write fails alone."""

    def __init__(self, storage: SqliteStorage) -> None:
        self.storage = storage
        self.waiting: collections.deque[_Item] = collections.deque()
        self.retrying: collections.deque[_Item] = collections.deque()  # a failed batch's writes, one by one
        self.sent: list[_Item] | None = None  # what the child is committing
        self.sent_alone = False  # ``sent`` is one write of a failed batch
        self.sent_at = 0.0
        self.process: subprocess.Popen | None = None
        self.requests: asyncio.WriteTransport | None = None  # the child's stdin
        self.replies_in: asyncio.StreamReader | None = None  # its stdout
        self.replies: asyncio.Task | None = None

    async def start(self) -> None:
        storage = self.storage
        # Popen, not the loop's subprocess support: uvloop forks, and a fork
        # while gRPC's threads run makes gRPC log a warning; Popen uses vfork.
        self.process = subprocess.Popen([*sqlite_process.CHILD, storage.path, storage.synchronous],
                                        stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        try:
            loop = asyncio.get_running_loop()
            self.replies_in = asyncio.StreamReader()
            await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(self.replies_in), self.process.stdout)
            self.requests, _ = await loop.connect_write_pipe(asyncio.Protocol, self.process.stdin)
            error = await self._reply()  # connected and migrated, or why not
        except BaseException:
            await self._end()
            raise
        if error is not None:
            await self._end()
            raise error
        self.replies = asyncio.get_running_loop().create_task(self._serve())

    async def _reply(self) -> BaseException | None:
        replies = self.replies_in
        try:
            (size,) = sqlite_process.HEADER.unpack(await replies.readexactly(sqlite_process.HEADER.size))
            return pickle.loads(await replies.readexactly(size))
        except (asyncio.IncompleteReadError, ConnectionError) as exc:
            code = self.process.poll()
            raise WriterGone("the storage writer process is gone"
                             + ("" if code is None else f" (exit status {code})")) from exc

    def write(self, ops: tuple[Op, ...], fut: asyncio.Future) -> None:
        self.waiting.append((ops, fut))
        if self.sent is None:
            self._send()

    def _send(self) -> None:
        while self.sent is None and (self.retrying or self.waiting):
            if self.retrying:
                batch, alone = [self.retrying.popleft()], True
            else:
                batch, alone = self._take(), False
            ops = [op for item_ops, _ in batch for op in item_ops]
            if not ops:  # only flush markers: everything before them is settled
                _resolve_ok([fut for _, fut in batch])
                continue
            try:
                request = sqlite_process.frame(_plan(ops))
            except Exception as exc:  # an op that cannot be stored fails its write
                self._settle(batch, alone, exc)
                continue
            self.sent, self.sent_alone, self.sent_at = batch, alone, time.perf_counter()
            self.requests.write(request)

    def _take(self) -> list[_Item]:
        """Everything waiting, up to ``max_batch_ops``; a write is never split."""
        waiting, cap = self.waiting, self.storage.max_batch_ops
        batch = [waiting.popleft()]
        count = len(batch[0][0])
        while waiting and count + len(waiting[0][0]) <= cap:
            item = waiting.popleft()
            batch.append(item)
            count += len(item[0])
        return batch

    async def _serve(self) -> None:
        try:
            while True:
                error = await self._reply()
                batch, self.sent = self.sent, None
                self._settle(batch, self.sent_alone, error)
                self._send()
        except asyncio.CancelledError:
            raise
        except BaseException as exc:  # the child died (WriterGone), or a bug here: fail writers, never hang them
            self._fail_all(exc)

    def _settle(self, batch: list[_Item], alone: bool, error: BaseException | None) -> None:
        stats = self.storage.stats
        if error is None:
            _count_commit(self.storage, time.perf_counter() - self.sent_at,
                          sum(len(ops) for ops, _ in batch), len(batch))
            _resolve_ok([fut for _, fut in batch])
        elif len(batch) == 1:
            if not alone:
                stats.batch_failures += 1
            stats.writes_failed += 1
            _resolve_each([(batch[0][1], _write_error(batch[0][0], error))])
        else:
            stats.batch_failures += 1
            self.retrying.extendleft(reversed(batch))

    def _fail_all(self, exc: BaseException) -> None:
        self.storage._broken = exc
        error = exc if isinstance(exc, StorageError) else StorageError(f"storage writer failed: {exc!r}")
        items = [*(self.sent or ()), *self.retrying, *self.waiting]
        self.sent = None
        self.retrying.clear()
        self.waiting.clear()
        _resolve_each([(fut, error) for _, fut in items])

    async def stop(self) -> None:
        """Commit what was written, fold the WAL into the main file, end the child."""
        try:
            if self.replies is not None and not self.replies.done():
                marker = asyncio.get_running_loop().create_future()
                self.write((), marker)
                with contextlib.suppress(StorageError):  # the child died: those writes failed already
                    await asyncio.shield(marker)
                self.replies.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await self.replies
                with contextlib.suppress(WriterGone, ConnectionError):
                    self.requests.write(sqlite_process.frame(None))  # the checkpoint
                    await self._reply()
        finally:
            await self._end()

    async def _end(self) -> None:
        """Close the child's stdin (it exits) and wait for it; kill it after 30 s."""
        with contextlib.suppress(Exception):
            if self.requests is not None:
                self.requests.close()
            self.process.stdin.close()
        try:
            await asyncio.to_thread(self.process.wait, 30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            await asyncio.to_thread(self.process.wait)
        with contextlib.suppress(Exception):
            self.process.stdout.close()


def _plan(ops: Sequence[Op]) -> list[tuple[bool, str, list[tuple], tuple[int, str] | None]]:
    """The transaction of ``ops`` as ``sqlite_process.run_plan`` runs it:
    table by table (``_by_table``); consecutive ops sharing a statement run
    together, as multi-row INSERTs where they can."""
    plan: list[tuple[bool, str, list[tuple], tuple[int, str] | None]] = []
    sql = json_column = None
    rows: list[tuple] = []
    for op in _by_table(ops):
        op_sql = op.sql
        if op_sql is None:  # a multi-statement op
            if rows:
                plan.append((True, sql, rows, json_column))
                rows = []
            sql = None
            plan.extend((False, step_sql, list(step_rows), None) for step_sql, step_rows in op.steps())
            continue
        if op_sql != sql:
            if rows:
                plan.append((True, sql, rows, json_column))
                rows = []
            sql, json_column = op_sql, op.json_column
        rows.extend(op.param_rows())
    if rows:
        plan.append((True, sql, rows, json_column))
    return plan


def _by_table(ops: Sequence[Op]) -> Sequence[Op]:
    """``ops`` grouped by the table they write, each table's in their order:
    a group commit of many writes, each a session, its events and a queue's
    counters, runs three statements instead of three per write. Tables
    share nothing (no triggers, no foreign keys), so only the order within
    one table matters. A multi-statement op, or one whose table is not
    known, keeps its place: nothing moves across it."""
    if len(ops) < 3:
        return ops
    ordered: list[Op] = []
    groups: dict[str, list[Op]] = {}
    for op in ops:
        table = _table_of(op.sql) if op.sql is not None else None
        if table is None:
            for group in groups.values():
                ordered.extend(group)
            groups = {}
            ordered.append(op)
            continue
        group = groups.get(table)
        if group is None:
            group = groups[table] = []
        group.append(op)
    for group in groups.values():
        ordered.extend(group)
    return ordered


_TABLE_OF: dict[str, str | None] = {}


def _table_of(sql: str) -> str | None:
    table = _TABLE_OF.get(sql, False)
    if table is False:
        words = sql.split(None, 3)
        table = None
        if len(words) > 2 and words[0] in ("INSERT", "DELETE") and words[1] in ("INTO", "FROM"):
            table = words[2]
        elif len(words) > 1 and words[0] == "UPDATE":
            table = words[1]
        _TABLE_OF[sql] = table
    return table


class SqliteStorage:
    """Durable state in one SQLite file (see the module docstring).

    Use from one event loop: ``await start()``, ``write()`` / ``flush()`` /
    queries, ``await stop()``; or ``async with SqliteStorage(path) as storage``.
    ``write`` must be called on the loop's thread.
    """

    def __init__(self, path: str | os.PathLike, synchronous: str = "NORMAL",
                 *, max_batch_ops: int = 5000, writer_process: bool = True):
        path = os.fspath(path)
        if path == ":memory:" or path.startswith("file:"):
            raise ValueError("SqliteStorage needs a file path (its reader and writer share it)")
        synchronous = synchronous.upper()
        if synchronous not in _SYNCHRONOUS:
            raise ValueError(f"synchronous must be one of {_SYNCHRONOUS}, not {synchronous!r}")
        if max_batch_ops < 1:
            raise ValueError("max_batch_ops must be at least 1")
        self.path = path
        self.synchronous = synchronous
        self.max_batch_ops = max_batch_ops
        # the write connection in a child process (qroute.storage.sqlite_process says why)
        self.writer_process = writer_process
        self.stats = StorageStats()
        self._state = _NEW
        self._broken: BaseException | None = None
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._writer: _Writer | None = None  # the writer thread (writer_process False)
        self._child: _ChildWriter | None = None  # or the child process's writer
        self._writer_done: asyncio.Future | None = None
        self._reader: sqlite3.Connection | None = None
        self._read_lock = threading.Lock()
        self._read_executor: ThreadPoolExecutor | None = None
        self._lock_fd: int | None = None

    # --- lifecycle -----------------------------------------------------------

    async def start(self) -> None:
        """Open the database (WAL, the given ``synchronous``, foreign keys off,
        a busy timeout), create or migrate the schema and start the writer.

        Fails with ``StorageError`` if another storage (in this process or
        another) has the database open: there is one writer per database.
        """
        if self._state is not _NEW:
            raise StorageError(f"storage already {self._state}")
        Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        self._lock_fd = _lock(self.path)
        loop = asyncio.get_running_loop()
        try:
            if self.writer_process:
                try:
                    self._child = _ChildWriter(self)
                    await self._child.start()  # raises what opening or migrating raised
                except (OSError, WriterGone) as exc:  # no process to be had, or it cannot import qroute
                    log.warning("storage writer process could not start (%s): writing from a thread", exc)
                    self._child, self.writer_process = None, False
            if not self.writer_process:
                ready = loop.create_future()
                self._writer_done = loop.create_future()
                self._writer = _Writer(self, loop, ready, self._writer_done)
                self._writer.start()
                await ready  # raises what opening or migrating raised
            self._reader = await asyncio.to_thread(
                connect, self.path, self.synchronous, reader=True)
        except BaseException:
            await self._stop_writer()
            self._unlock()
            self._state = _STOPPED
            raise
        self._read_executor = ThreadPoolExecutor(1, thread_name_prefix="qroute-storage-reader")
        self._loop = loop
        self._state = _RUNNING

    async def stop(self) -> None:
        """Commit everything written so far, stop the writer, close the database.

        Writes submitted before ``stop()`` are committed and their futures
        resolved before it returns; ``write()`` after it raises ``StorageClosed``.
        """
        if self._state is not _RUNNING:
            return
        self._state = _STOPPING
        await self._stop_writer()
        executor, self._read_executor = self._read_executor, None
        await asyncio.to_thread(executor.shutdown, wait=True)
        with self._read_lock:
            self._reader.close()
            self._reader = None
        self._unlock()
        self._state = _STOPPED

    async def _stop_writer(self) -> None:
        if self._child is not None:
            await self._child.stop()
        elif self._writer is not None:
            self._queue.put(_STOP)
            await asyncio.shield(self._writer_done)
            self._writer.join()

    def _unlock(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    async def __aenter__(self) -> SqliteStorage:
        await self.start()
        return self

    async def __aexit__(self, *exc_info) -> None:
        await self.stop()

    # --- writes --------------------------------------------------------------

    def write(self, *ops: Op) -> asyncio.Future[None]:
        """Queue ``ops`` to be committed together, atomically.

        Returns a future that resolves on the loop once they are committed, or
        fails with ``WriteError`` (nothing of this write was kept). No I/O
        here: O(len(ops)). Call on the event loop's thread.
        """
        if self._state is not _RUNNING:
            raise StorageClosed(f"storage is {self._state}")
        if self._broken is not None:
            raise StorageError(f"storage writer failed: {self._broken!r}")
        for op in ops:
            if not isinstance(op, Op):
                raise TypeError(f"not a storage op: {op!r}")
        fut = self._loop.create_future()
        if self._child is not None:
            self._child.write(ops, fut)
        else:
            self._queue.put((ops, fut))
        return fut

    async def flush(self) -> None:
        """Wait until everything written so far is committed (or failed)."""
        await self.write()

    # --- reads ---------------------------------------------------------------

    def _read_sync(self, query: Callable[[sqlite3.Connection], T]) -> T:
        with self._read_lock:
            if self._reader is None:
                raise StorageClosed(f"storage is {self._state}")
            return query(self._reader)

    async def _read(self, query: Callable[[sqlite3.Connection], T]) -> T:
        if self._state is not _RUNNING:
            raise StorageClosed(f"storage is {self._state}")
        return await self._loop.run_in_executor(self._read_executor, self._read_sync, query)

    async def read(self, query: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``query(connection)`` on the reader thread (SQLite-specific;
        for report queries). The connection is read-only and in autocommit
        mode; fetch everything before returning."""
        return await self._read(query)

    def load_all(self) -> Snapshot:
        """Everything needed to rebuild live state, in one read transaction.

        Synchronous (for startup, before serving). See ``Snapshot`` for the
        orders. Cost: one SELECT per table plus a ``json.loads`` per document.
        """
        return self._read_sync(_load_all)

    async def events_since(self, account_id: str, from_sequence: int,
                           limit: int) -> list[EventRecord]:
        """Up to ``limit`` of the account's events with sequence >=
        ``from_sequence``, in sequence order. O(log n + limit)."""
        def query(conn: sqlite3.Connection) -> list[EventRecord]:
            cursor = conn.execute(
                "SELECT account_id, sequence, time_ms, type, entity, entity_id, payload "
                "FROM events WHERE account_id = ? AND sequence >= ? ORDER BY sequence LIMIT ?",
                (account_id, from_sequence, limit))
            return list(map(EventRecord._make, cursor.fetchall()))
        return await self._read(query)

    async def oldest_sequence(self, account_id: str) -> int | None:
        """The lowest event sequence still stored for the account (None if none)."""
        def query(conn: sqlite3.Connection) -> int | None:
            return conn.execute(
                "SELECT min(sequence) FROM events WHERE account_id = ?", (account_id,)
            ).fetchone()[0]
        return await self._read(query)

    async def get_idempotent(self, account_id: str, request_id: str, method: str,
                             caller: str = "") -> IdempotentResponse | None:
        """The response recorded for ``request_id`` (committed ones only), or None."""
        def query(conn: sqlite3.Connection) -> IdempotentResponse | None:
            row = conn.execute(
                "SELECT method, response, created_ms FROM idempotency "
                "WHERE account_id = ? AND caller = ? AND method = ? AND request_id = ?",
                (account_id, caller, method, request_id)
            ).fetchone()
            return None if row is None else IdempotentResponse._make(row)
        return await self._read(query)

    async def outbox_due(self, now_ms: int, limit: int) -> list[OutboxRecord]:
        """Up to ``limit`` pending webhook deliveries with next_attempt_ms <=
        ``now_ms``, soonest first (all accounts)."""
        def query(conn: sqlite3.Connection) -> list[OutboxRecord]:
            cursor = conn.execute(
                "SELECT account_id, delivery_id, webhook_id, created_ms, next_attempt_ms, "
                "attempts, payload, last_error FROM webhook_outbox "
                "WHERE next_attempt_ms <= ? ORDER BY next_attempt_ms LIMIT ?", (now_ms, limit))
            return list(map(OutboxRecord._make, cursor.fetchall()))
        return await self._read(query)


_DECODE_CHUNK = 10_000


def _decode_docs(cursor: sqlite3.Cursor, what: str, record: type | None = None) -> Iterator:
    """The rows of ``cursor``, whose last column is a JSON document, decoded:
    as tuples, or as ``record`` (a NamedTuple type) instances.

    One ``json.loads`` per chunk of rows (a JSON array of their documents)
    instead of one per row: about half the cost, and the decoder shares key
    strings across the chunk.
    """
    loads = json.loads
    while True:
        rows = cursor.fetchmany(_DECODE_CHUNK)
        if not rows:
            return
        columns = list(zip(*rows))
        try:
            columns[-1] = loads("[" + ",".join(columns[-1]) + "]")
        except (ValueError, TypeError):
            columns[-1] = [_decode_one(row, what) for row in rows]
        rows = zip(*columns)
        # tuple.__new__ builds the NamedTuple in C, skipping its Python __new__.
        yield from rows if record is None else map(tuple.__new__, repeat(record), rows)


def _decode_one(row: tuple, what: str) -> dict:
    try:
        return json.loads(row[-1])
    except (ValueError, TypeError) as exc:
        raise StorageError(f"{what} {row[:-1]!r}: stored document is not JSON: {exc}") from exc


def _load_all(conn: sqlite3.Connection) -> Snapshot:
    # Building ~10^5 dicts would trigger many full GC passes that find
    # nothing to free (the data is all live): pause the collector meanwhile.
    gc_was_enabled = gc.isenabled()
    gc.disable()
    # One deferred transaction: every SELECT below sees the same commit.
    conn.execute("BEGIN")
    try:
        return _load_all_in_transaction(conn)
    finally:
        conn.execute("COMMIT")
        if gc_was_enabled:
            gc.enable()


def _load_all_in_transaction(conn: sqlite3.Connection) -> Snapshot:
    snapshot = Snapshot()
    snapshot.meta = dict(conn.execute("SELECT key, value FROM meta").fetchall())
    snapshot.accounts = dict(_decode_docs(
        conn.execute("SELECT account_id, doc FROM accounts ORDER BY account_id"),
        "account"))
    snapshot.api_keys = {
        record.key_id: record for record in _decode_docs(
            conn.execute("SELECT key_id, account_id, secret_hash, doc FROM api_keys "
                          "ORDER BY key_id"),
            "api key", ApiKeyRecord)
    }
    configs: dict[tuple[str, str], dict[str, dict]] = {}
    for account_id, kind, entity_id, doc in _decode_docs(
            conn.execute("SELECT account_id, kind, entity_id, doc FROM config_docs "
                         "ORDER BY account_id, kind, entity_id"),
            "config"):
        group = configs.get((account_id, kind))
        if group is None:
            group = configs[(account_id, kind)] = {}
        group[entity_id] = doc
    snapshot.configs = configs
    snapshot.memberships = list(_decode_docs(
        conn.execute("SELECT account_id, queue_id, recipient_id, doc FROM memberships "
                     "ORDER BY account_id, queue_id, member_seq"),
        "membership", MembershipRecord))
    # Sorting the rows beats walking live_sessions_order: the index walk costs
    # a primary-key lookup per row, the sort one sequential scan.
    snapshot.live_sessions = list(_decode_docs(
        conn.execute("SELECT account_id, session_id, doc FROM live_sessions "
                     "ORDER BY +account_id, queue_id, priority DESC, entered_at_ms, seq"),
        "live session", LiveSessionRecord))
    snapshot.recipient_states = {
        (account_id, recipient_id): doc for account_id, recipient_id, doc in _decode_docs(
            conn.execute("SELECT account_id, recipient_id, doc FROM recipient_states "
                         "ORDER BY account_id, recipient_id"),
            "recipient state")
    }
    # Skip-scan the events primary key: O(accounts x log n), not a full scan.
    max_sequence = {}
    account_id = conn.execute("SELECT min(account_id) FROM events").fetchone()[0]
    while account_id is not None:
        max_sequence[account_id] = conn.execute(
            "SELECT max(sequence) FROM events WHERE account_id = ?", (account_id,)
        ).fetchone()[0]
        account_id = conn.execute(
            "SELECT min(account_id) FROM events WHERE account_id > ?", (account_id,)
        ).fetchone()[0]
    snapshot.max_event_sequence = max_sequence
    snapshot.idempotency = list(map(IdempotencyRecord._make, conn.execute(
        "SELECT account_id, caller, method, request_id, response, created_ms FROM idempotency "
        "ORDER BY created_ms")))
    return snapshot
