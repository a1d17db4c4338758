"""Each event gets its account's next sequence, is written to storage with
the state changes it stands for (from the op sources), and is handed to live
listeners.

Storage is written from events, so a change is durable exactly when its
event is: the engine never talks to storage itself.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable

from qroute.domain.events import ENTITY_NAMES, DomainEvent
from qroute.storage import AppendEvents, Op, Storage

Listener = Callable[[DomainEvent], None]
OpSource = Callable[[DomainEvent], list[Op]]
BatchOpSource = Callable[[list[DomainEvent]], list[Op]]


class Journal:
    """The engine's event sink. ``durable()`` waits until every event
    published so far (and the state it records) is committed.

    Events go to storage at the end of the loop iteration that published
    them, or, while a write is still on its way to disk, together in one
    write once it lands: one write per commit however many callers it holds.

    ``commit_interval_s``: while several callers wait in ``durable()`` (or
    answers a stream holds for the pending events: ``commit_point(answers)``),
    a write starts at most this long after the one before, so more of them
    share a commit (each commit has a fixed cost); one caller alone never
    waits for it.
    """

    def __init__(self, storage: Storage, op_sources: list[OpSource] | None = None,
                 commit_interval_s: float = 0.0) -> None:
        self.storage = storage
        self.commit_interval_s = commit_interval_s
        self._write_started = 0.0  # loop time of the last write's start
        self._waiting = 0  # callers in durable()
        self._held = 0  # answers streams hold for the pending events (commit_point(answers))
        self.sequences: dict[str, int] = {}
        # Each source turns an event into the storage changes it stands for;
        # they commit in the same transaction as the event itself.
        self.op_sources: list[OpSource] = list(op_sources or [])
        # Called once per write with its events, after the op sources: state that many
        # events change at once is written once (a queue's counters).
        self.batch_sources: list[BatchOpSource] = []
        # Called with each event as it is sequenced (subscribers, agent desktops...).
        self.listeners: list[Listener] = []
        self._pending: list[DomainEvent] = []
        self._pending_ops: list[Op] = []  # attached to the next write (``attach``)
        self._last_write: asyncio.Future | None = None
        self._flush_scheduled = False
        # Resolves once the pending events are committed: every caller waiting for
        # them shares the one write that will hold them (``commit_point``).
        self._batch: asyncio.Future | None = None
        self._flush_deferred = False  # a flush waits for the write on its way to disk
        # A storage that keeps nothing acknowledges at once: nothing to wait for.
        self._writes_nothing = bool(getattr(storage, "writes_nothing", False))

    def publish(self, event: DomainEvent) -> None:
        sequence = self.sequences.get(event.account_id, 0) + 1
        self.sequences[event.account_id] = sequence
        event.sequence = sequence
        self._pending.append(event)
        if not self._flush_scheduled:
            # one flush per loop iteration, however many events it produced
            self._flush_scheduled = True
            asyncio.get_running_loop().call_soon(self._flush)
        for listener in self.listeners:
            listener(event)

    def attach(self, *ops: Op) -> None:
        """Commit ``ops`` with the events published so far (or, if there are
        none, in the next write): the record of an answer (idempotency) is
        durable exactly when the change it answers for is."""
        self._pending_ops.extend(ops)
        if not self._flush_scheduled:
            self._flush_scheduled = True
            asyncio.get_running_loop().call_soon(self._flush)

    def _flush(self) -> asyncio.Future | None:
        self._flush_scheduled = False
        if not self._pending and not self._pending_ops:
            return self._last_write
        last = self._last_write
        if last is not None and not last.done():
            # Group commit at the source: what is published while a write is on its
            # way to disk goes as one write once it lands (it would wait for that
            # commit in the writer's queue anyway), not one write per loop iteration.
            if not self._flush_deferred:
                self._flush_deferred = True
                last.add_done_callback(self._deferred_flush)
            return self._batch
        if self.commit_interval_s and self._waiting + self._held > 1 and not self._writes_nothing:
            loop = asyncio.get_running_loop()
            early = self._write_started + self.commit_interval_s - loop.time()
            if early > 0:
                if not self._flush_deferred:
                    self._flush_deferred = True
                    loop.call_later(early, self._deferred_flush, None)
                return self._pending_batch()
        events, self._pending = self._pending, []
        batch, self._batch = self._batch, None
        self._held = 0
        try:
            ops, self._pending_ops = self._pending_ops, []
            for event in events:
                for source in self.op_sources:
                    ops.extend(source(event))
            for batch_source in self.batch_sources:
                ops.extend(batch_source(events))
            if events:
                ops.append(AppendEvents([(e.account_id, e.sequence, e.time_ms, e.type, ENTITY_NAMES[e.type],
                                          e.entity_id, e.data) for e in events]))
            write = self.storage.write(*ops)
            if self.commit_interval_s:
                self._write_started = asyncio.get_running_loop().time()
        except Exception as exc:
            # The callers waiting for these events fail, and so does the next
            # durable(): nothing is acknowledged that was not written.
            failed = asyncio.get_running_loop().create_future()
            failed.set_exception(exc)
            self._last_write = failed
            if batch is not None:
                batch.set_exception(exc)
            return failed
        self._last_write = write
        if batch is not None:
            if write is None:
                batch.set_result(None)
            else:
                write.add_done_callback(functools.partial(_settle, batch))
        return write

    def commit_point(self, answers: int = 0) -> asyncio.Future | None:
        """A future that resolves once everything published so far is
        committed (None: nothing to wait for). Events still pending share
        the write they will go out in with everything published by then.
        ``answers``: how many answers the caller holds until then (a stream
        answering in order once committed); until that write starts they
        count as waiting callers for ``commit_interval_s``, without which a
        stream's every message would go in its own commit."""
        if not (self._pending or self._pending_ops) or self._writes_nothing:
            return self._flush()
        self._held += answers
        return self._pending_batch()

    def _pending_batch(self) -> asyncio.Future:
        if self._batch is None:
            self._batch = asyncio.get_running_loop().create_future()
        return self._batch

    def _deferred_flush(self, _landed: asyncio.Future | None) -> None:
        self._flush_deferred = False
        self._flush()

    async def durable(self) -> None:
        """Returns once everything published so far is committed."""
        write = self.commit_point()
        if write is not None:
            self._waiting += 1
            try:
                await shielded(write)
            finally:
                self._waiting -= 1


def shielded(write: asyncio.Future) -> asyncio.Future:
    """``asyncio.shield(write)`` for a write or commit point, shared by many
    callers: cancelling the awaiting task leaves ``write`` alone. Awaited per
    acknowledged call, for a third of the cost of ``asyncio.shield``."""
    if write.done():
        return write
    waiter = write.get_loop().create_future()
    write.add_done_callback(functools.partial(_settle, waiter))
    return waiter


def _settle(batch: asyncio.Future, write: asyncio.Future) -> None:
    if batch.done():
        return
    if write.cancelled():
        batch.cancel()
    elif write.exception() is not None:
        batch.set_exception(write.exception())
    else:
        batch.set_result(None)
