"""Subscriptions to the event stream: a shared in-memory ring of recent
events per account, replay from storage, and retention.

Fan-out is batched and shared. The journal hands every sequenced event to
``EventBus.publish``, which appends it to its account's ring (O(1), no
encoding, nothing per subscriber) and arms one wake-up per loop iteration.
Each event is encoded once, the first time any reader needs it, and the
bytes are shared by every subscriber; a subscriber is a cursor and a filter.
A batch (the events from a cursor, up to a limit, through a filter) is made
once per loop iteration and shared by every subscriber at the same place
with the same filter and limit, so a subscriber that keeps up with the
others does O(1) work per batch.

Nothing a subscriber does reaches the publishing side: a subscriber that
reads slowly only lets its cursor fall behind. A replay reads storage below
the ring and the ring above it until it catches up with the newest event;
from then on, once it is more than the ring's size behind the newest event
it is cut off (``SubscriberBehind``, naming the last sequence it was sent),
and resumes from there, out of storage if need be.

Events older than the ring are read from storage (``events_since``); storage
keeps them by count and age (``Retention``), trimmed periodically.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Callable, Collection, Iterable
from dataclasses import dataclass
from typing import NamedTuple, Protocol

from qroute.domain.events import CATALOG, DomainEvent, Entity
from qroute.errors import OutOfRange, ResourceExhausted
from qroute.storage import TrimEvents

log = logging.getLogger("qroute.events")

DEFAULT_RING_SIZE = 65_536
HEARTBEAT_S = 1.0  # an empty batch at most this often when events go by filtered out
SCAN_LIMIT = 16_384  # events a filtered read looks at before giving the loop back
STORAGE_CHUNK = 2_000  # events read from storage at once by a replay
TRIM_CHUNK = 50_000  # events deleted per commit when trimming
MAX_BATCH_BYTES = 1 << 20  # a batch stops at about this size: clients accept 4 MiB messages by default


@dataclass(frozen=True, slots=True)
class Retention:
    """How much of the event log storage keeps, per account: at most
    ``count`` events, none older than ``age_ms`` (0 = no limit), trimmed
    every ``trim_interval_s``. ``ring_size`` events per account are also
    kept in memory for live subscribers and recent replays; a subscriber
    further behind than that is cut off."""

    count: int = 1_000_000
    age_ms: int = 7 * 24 * 3600 * 1000
    trim_interval_s: float = 60.0
    ring_size: int = DEFAULT_RING_SIZE

    def __post_init__(self) -> None:
        if self.count < 0 or self.age_ms < 0 or self.trim_interval_s <= 0 or self.ring_size < 1:
            raise ValueError(f"bad event retention {self}")


class EventKey(NamedTuple):
    """What filters look at: the entity, the type and the ids involved."""

    entity: int
    type: str
    queue_ids: tuple[str, ...]
    recipient_id: str
    session_id: str


def event_key(event: DomainEvent) -> EventKey:
    entry = CATALOG.get(event.type)
    entity = entry[0] if entry is not None else 0
    data = event.data
    if entity is Entity.QUEUE:
        queue_ids: tuple[str, ...] = (event.entity_id,)
    else:  # most events name one queue or none: no generator for them
        queue_id, from_queue_id, redirect_queue_id = (data.get("queue_id"), data.get("from_queue_id"),
                                                      data.get("redirect_queue_id"))
        if from_queue_id or redirect_queue_id:
            queue_ids = tuple(q for q in (queue_id, from_queue_id, redirect_queue_id) if q)
        else:
            queue_ids = (queue_id,) if queue_id else ()
    return _new_key(EventKey, (  # tuple.__new__: the NamedTuple's own __new__ is a Python frame more, per event
        int(entity), event.type, queue_ids,
        event.entity_id if entity is Entity.RECIPIENT else data.get("recipient_id") or "",
        event.entity_id if entity is Entity.SESSION else data.get("session_id") or ""))


_new_key = tuple.__new__


class Filter:
    """What a subscription lets through: ``check(key)`` passes the events
    that pass every filter given (each passes an event matching any of its
    values). Equal filters have equal ``key``s, so subscribers with the same
    filter share each filtered batch."""

    __slots__ = ("key", "check")

    def __init__(self, key: tuple, check: Callable[[EventKey], bool]) -> None:
        self.key = key
        self.check = check


def make_filter(entities: Collection[int] = (), types: Collection[str] = (), queue_ids: Collection[str] = (),
               recipient_ids: Collection[str] = (), session_ids: Collection[str] = ()) -> Filter | None:
    """The filter of a subscription; None if no filter is given."""
    entity_set, type_set = frozenset(int(e) for e in entities), frozenset(types)
    queue_set, recipient_set, session_set = frozenset(queue_ids), frozenset(recipient_ids), frozenset(session_ids)
    checks: list[Callable[[EventKey], bool]] = []
    if entity_set:
        checks.append(lambda key: key.entity in entity_set)
    if type_set:
        checks.append(lambda key: key.type in type_set)
    if queue_set:
        checks.append(lambda key: not queue_set.isdisjoint(key.queue_ids))
    if recipient_set:
        checks.append(lambda key: key.recipient_id in recipient_set)
    if session_set:
        checks.append(lambda key: key.session_id in session_set)
    if not checks:
        return None
    check = checks[0] if len(checks) == 1 else (lambda key: all(c(key) for c in checks))
    return Filter((entity_set, type_set, queue_set, recipient_set, session_set), check)


class Codec(Protocol):
    """The wire form of a batch: ``frame(event)`` is one event's bytes as an
    element of a batch, ``tail(through)`` the rest of the batch; a batch is
    ``b"".join(frames) + tail(through)``."""

    def frame(self, event: DomainEvent) -> bytes: ...

    def tail(self, through_sequence: int) -> bytes: ...


class SubscriberBehind(ResourceExhausted):
    """A subscriber fell further behind than the ring holds."""

    def __init__(self, last_sequence: int, limit: int) -> None:
        self.last_sequence = last_sequence
        super().__init__(f"subscriber fell more than {limit} events behind and was cut off; last sequence "
                         f"sent {last_sequence}: resume with from_sequence={last_sequence + 1}")


class NotRetained(OutOfRange):
    """A replay asked for events storage no longer keeps."""

    def __init__(self, from_sequence: int, oldest_sequence: int, why: str = "") -> None:
        self.oldest_sequence = oldest_sequence
        super().__init__(why or f"from_sequence {from_sequence} is no longer retained; the oldest retained "
                                f"event is {oldest_sequence}")


class BusClosed(Exception):
    """The bus is shutting down; ``last_sequence`` is where to resume."""

    def __init__(self, last_sequence: int) -> None:
        self.last_sequence = last_sequence
        super().__init__(f"server shutting down; last sequence sent {last_sequence}: resume with "
                         f"from_sequence={last_sequence + 1}")


def _time_out(waiter: asyncio.Future) -> None:
    if not waiter.done():
        waiter.set_result(False)


class AccountStream:
    """One account's recent events, in a ring of at most ``capacity``.

    Sequences ``base .. next_sequence - 1`` are held. Per event the ring
    keeps the event itself until it is encoded, its frame (bytes, shared)
    and its ``EventKey``, each computed at most once, when a reader first
    needs it. Three parallel lists, index ``sequence - _first``; the
    evicted front is dropped in chunks.
    """

    def __init__(self, account_id: str, next_sequence: int, capacity: int) -> None:
        self.account_id = account_id
        self.capacity = capacity
        self.next_sequence = next_sequence
        self._first = next_sequence  # sequence at list index 0 (evicted entries included)
        self._evicted = 0  # entries at the front no longer held
        self._events: list[DomainEvent | None] = []
        self._frames: list[bytes | None] = []  # sequences _first .. _first + len - 1
        self._keys: list[EventKey | None] = []
        # (filter, cursor, limit, next_sequence) -> read: batches made this loop iteration,
        # shared by every subscriber reading the same
        self._batches: dict[tuple, tuple[bytes, int, int]] = {}
        self._waiters: set[asyncio.Future] = set()
        self.notify_pending = False
        self.closed = False
        self.codec: Codec | None = None

    @property
    def base(self) -> int:
        """The oldest sequence held."""
        return self._first + self._evicted

    def __len__(self) -> int:
        return self.next_sequence - self.base

    def append(self, event: DomainEvent) -> None:
        if event.sequence != self.next_sequence:  # never expected: the journal numbers without gaps
            log.error("account %s: event %d after %d; recent events dropped from memory",
                      self.account_id, event.sequence, self.next_sequence - 1)
            self._events, self._frames, self._keys = [], [], []
            self._first, self._evicted = event.sequence, 0
            self.next_sequence = event.sequence
        self._events.append(event)
        self.next_sequence += 1
        if self.next_sequence - self.base > self.capacity:
            self._evict()

    def _evict(self) -> None:
        index = self._evicted
        self._events[index] = None  # the frame and key, if made, go with the compaction
        self._evicted += 1
        if self._evicted >= max(1024, self.capacity // 4):  # compact in chunks: amortized O(1)
            dead = self._evicted
            del self._events[:dead]
            del self._frames[:dead]
            del self._keys[:dead]
            self._first += dead
            self._evicted = 0

    def notify(self) -> None:
        """Wake every waiter (once per loop iteration, from the bus)."""
        self.notify_pending = False
        self._batches.clear()
        waiters, self._waiters = self._waiters, set()
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(True)

    async def wait(self, after: int, timeout: float | None = None) -> bool:
        """Until an event with sequence ``after`` (or later) is held, or the
        bus closes; False on timeout. O(1): one future per waiter."""
        if self.next_sequence > after or self.closed:
            return True
        loop = asyncio.get_running_loop()
        waiter = loop.create_future()
        self._waiters.add(waiter)
        timer = None if timeout is None else loop.call_later(timeout, _time_out, waiter)
        try:
            return await waiter
        finally:
            self._waiters.discard(waiter)
            if timer is not None:
                timer.cancel()

    # ---------------------------------------------------------------- reads

    def keys(self, start: int, end: int) -> list[EventKey]:
        """Keys of sequences ``start .. end - 1`` (all held)."""
        self._prepare(start, end, frames=False)
        return self._keys[start - self._first:end - self._first]  # type: ignore[return-value]

    def _prepare(self, start: int, stop: int, frames: bool = True) -> None:
        """Make the keys (and the frames) of sequences ``start .. stop - 1``
        that are not made yet: only those, so a reader starting at the head
        never pays for the events before it."""
        i0, i1 = start - self._first, stop - self._first
        self._fill(self._keys, i0, i1, event_key, release=False)
        if frames:
            self._fill(self._frames, i0, i1, self.codec.frame, release=True)

    def _fill(self, made: list, i0: int, i1: int, make: Callable, release: bool) -> None:
        events = self._events
        have = len(made)
        if have < i0:  # skipped; made if a reader ever needs them
            made.extend([None] * (i0 - have))
            have = i0
        if i0 < have and None in made[i0:min(i1, have)]:  # holes left by an earlier skip
            for index in range(i0, min(i1, have)):
                if made[index] is None:
                    made[index] = make(events[index])
                    if release:
                        events[index] = None
        for index in range(have, i1):
            made.append(make(events[index]))
            if release:
                events[index] = None  # its frame and key stand for it from now on

    def read(self, cursor: int, limit: int, match: Filter | None) -> tuple[bytes | None, int, int]:
        """A batch from ``cursor`` (>= base): ``(payload, through, count)``:
        up to ``limit`` matching events (and about ``MAX_BATCH_BYTES``), the
        sequence through which events were considered, how many the batch
        holds. The payload is None when nothing was considered.

        The batch is made once per loop iteration for every subscriber at
        this place with this filter and limit: their read is O(1).
        """
        end = self.next_sequence
        if cursor >= end:
            return None, cursor - 1, 0
        shared = (match.key if match is not None else None, cursor, limit, end)
        batch = self._batches.get(shared)
        if batch is not None:
            return batch
        first, tail = self._first, self.codec.tail
        if match is None:
            stop = min(end, cursor + limit)
            self._prepare(cursor, stop)
            frames = self._frames
            start, index = cursor - first, stop - first
            if sum(map(len, frames[start:index])) > MAX_BATCH_BYTES:  # rare: only the first ones
                stop_index, index, size = index, start, 0
                while index < stop_index:
                    size += len(frames[index])
                    if size > MAX_BATCH_BYTES and index > start:
                        break
                    index += 1
            through = first + index - 1
            batch = (b"".join(frames[start:index]) + tail(through), through, index - start)
        else:
            stop = min(end, cursor + SCAN_LIMIT)
            self._prepare(cursor, stop)
            keys, frames, check = self._keys, self._frames, match.check
            chosen: list[bytes] = []
            size = 0
            index, stop_index = cursor - first, stop - first
            while index < stop_index:
                if check(keys[index]):
                    frame = frames[index]
                    size += len(frame)
                    if size > MAX_BATCH_BYTES and chosen:
                        break
                    chosen.append(frame)
                    if len(chosen) == limit:
                        index += 1
                        break
                index += 1
            through = first + index - 1
            batch = (b"".join(chosen) + tail(through), through, len(chosen))
        self._batches[shared] = batch
        return batch


class EventBus:
    """The account streams, replay from storage, and storage retention.

    ``publish`` is the journal listener. The codec (``set_codec``, by the
    servicer that streams events) must be set before ``batches`` is used;
    ``stream(account).wait`` and ``.keys`` (WatchQueueStatus) need none.
    """

    def __init__(self, journal, storage, clock, retention: Retention | None = None) -> None:
        self.journal = journal
        self.storage = storage
        self.clock = clock
        self.retention = retention or Retention()
        self.streams: dict[str, AccountStream] = {}
        self.codec: Codec | None = None
        self._to_notify: list[AccountStream] = []
        self._trimmer: asyncio.Task | None = None
        self.closed = False
        self.trimmed_below: dict[str, int] = {}  # account -> last TrimEvents bound written
        # each open subscription -> (account, last sequence it was sent): for lag metrics
        self.positions: dict[object, tuple[str, int]] = {}
        journal.listeners.append(self.publish)

    # ------------------------------------------------------------ publishing

    def stream(self, account_id: str) -> AccountStream:
        stream = self.streams.get(account_id)
        if stream is None:
            stream = AccountStream(account_id, self.journal.sequences.get(account_id, 0) + 1,
                                   self.retention.ring_size)
            stream.codec = self.codec
            stream.closed = self.closed
            self.streams[account_id] = stream
        return stream

    def publish(self, event: DomainEvent) -> None:
        """Append a sequenced event to its ring. O(1) and nothing per
        subscriber: they are woken once per loop iteration, later."""
        stream = self.streams.get(event.account_id)
        if stream is None:
            stream = self.streams[event.account_id] = AccountStream(
                event.account_id, event.sequence, self.retention.ring_size)
            stream.codec = self.codec
            stream.closed = self.closed
        stream.append(event)
        if not stream.notify_pending:
            stream.notify_pending = True
            if not self._to_notify:
                asyncio.get_running_loop().call_soon(self._notify)
            self._to_notify.append(stream)

    def _notify(self) -> None:
        streams, self._to_notify = self._to_notify, []
        for stream in streams:
            stream.notify()

    def set_codec(self, codec: Codec) -> None:
        self.codec = codec
        for stream in self.streams.values():
            stream.codec = codec

    # ------------------------------------------------------------- subscribers

    async def check_from(self, account_id: str, from_sequence: int) -> int:
        """The cursor a subscription from ``from_sequence`` starts at (0: the
        next event); NotRetained if it is older than the oldest retained
        event, or newer than the next one."""
        stream = self.stream(account_id)
        if from_sequence == 0:
            return stream.next_sequence
        if from_sequence > stream.next_sequence:
            raise NotRetained(from_sequence, await self.oldest_sequence(account_id),
                              f"from_sequence {from_sequence} is beyond the newest event "
                              f"{stream.next_sequence - 1}")
        oldest = await self.oldest_sequence(account_id)
        if from_sequence < oldest:
            raise NotRetained(from_sequence, oldest)
        return from_sequence

    async def oldest_sequence(self, account_id: str) -> int:
        """The oldest sequence a replay can start from: storage's oldest (it
        keeps the retention), or, when storage has none (nothing retained,
        or durability off), the oldest the ring holds."""
        stream = self.stream(account_id)
        stored = await self.storage.oldest_sequence(account_id)
        return stream.base if stored is None else stored

    async def batches(self, account_id: str, cursor: int, match: Filter | None,
                      max_batch: int) -> AsyncIterator[bytes]:
        """The encoded batches of a subscription whose next sequence to
        consider is ``cursor`` (from ``check_from``), forever.

        The first batch comes at once, empty if nothing is pending. Each
        ``yield`` returns once the consumer took the batch: when it returns
        the batch counts as sent. A replay reads storage below the ring and
        the ring above it, until it catches up with the newest event; from
        then on the subscriber is live, and lagging more than the ring holds
        raises ``SubscriberBehind``. Raises ``NotRetained`` if a replay meets
        trimmed storage, ``BusClosed`` at shutdown.
        """
        token = object()
        self.positions[token] = (account_id, cursor - 1)
        try:
            async for payload in self._batches(token, account_id, cursor, match, max_batch):
                yield payload
        finally:
            del self.positions[token]

    def lag(self) -> dict[str, int]:
        """Per account, how many events its furthest-behind subscriber has not been sent."""
        lags: dict[str, int] = {}
        for account_id, last_sent in self.positions.values():
            newest = self.journal.sequences.get(account_id, 0)
            lags[account_id] = max(lags.get(account_id, 0), newest - last_sent)
        return lags

    async def _batches(self, token: object, account_id: str, cursor: int, match: Filter | None,
                       max_batch: int) -> AsyncIterator[bytes]:
        stream = self.stream(account_id)
        loop = asyncio.get_running_loop()
        last_sent = cursor - 1  # through_sequence of the last batch taken
        last_sent_at = loop.time()
        live = caught_up = started = False
        while True:
            if self.closed:
                raise BusClosed(last_sent)
            if cursor < stream.base:
                if live:
                    raise SubscriberBehind(last_sent, stream.capacity)
                payload, through, count = await self._read_stored(stream, cursor, max_batch, match)
            else:
                payload, through, count = stream.read(cursor, max_batch, match)
                if not live and through >= stream.next_sequence - 1:
                    # caught up (told at once, even by an empty batch); from now on,
                    # falling out of the ring means too slow
                    live = caught_up = True
            if payload is None:  # nothing pending
                if started:
                    if last_sent == cursor - 1:
                        await stream.wait(cursor)
                        continue
                    # events went by, all filtered out: say so after a while, unless more come
                    quiet = last_sent_at + HEARTBEAT_S - loop.time()
                    if quiet > 0 and await stream.wait(cursor, quiet):
                        continue
                payload, through, count = self.codec.tail(cursor - 1), cursor - 1, 0
            cursor = through + 1
            if count == 0 and started and not caught_up and loop.time() - last_sent_at < HEARTBEAT_S:
                await asyncio.sleep(0)  # filtered out: no batch yet; give the loop back between chunks
                continue
            yield payload
            started, caught_up = True, False
            last_sent = through
            self.positions[token] = (account_id, last_sent)
            last_sent_at = loop.time()

    async def _read_stored(self, stream: AccountStream, cursor: int, limit: int,
                           match: Filter | None) -> tuple[bytes, int, int]:
        """A batch out of storage, for sequences below the ring."""
        await self.journal.durable()  # what left the ring in a burst may not be committed yet
        want = min(stream.base - cursor, STORAGE_CHUNK if match is not None else limit)
        records = await self.storage.events_since(stream.account_id, cursor, want)
        if not records or records[0].sequence != cursor:
            oldest = await self.oldest_sequence(stream.account_id)
            raise NotRetained(cursor, oldest, f"events from {cursor} are no longer retained (trimmed while "
                                              f"replaying); the oldest retained event is {oldest}")
        frame = self.codec.frame
        frames = []
        size = 0
        through = cursor - 1
        for record in records:
            event = DomainEvent(record.type, record.entity_id, record.time_ms, json.loads(record.payload),
                                record.account_id, record.sequence)
            if match is None or match.check(event_key(event)):
                encoded = frame(event)
                size += len(encoded)
                if size > MAX_BATCH_BYTES and frames:
                    break
                frames.append(encoded)
            through = record.sequence
            if len(frames) == limit:
                break
        return b"".join(frames) + self.codec.tail(through), through, len(frames)

    # ---------------------------------------------------------------- retention

    def start(self) -> None:
        if self._trimmer is None:
            self._trimmer = asyncio.get_running_loop().create_task(self._trim_forever(), name="qroute-event-trim")

    async def stop(self) -> None:
        self.close()
        if self._trimmer is not None:
            self._trimmer.cancel()
            try:
                await self._trimmer
            except asyncio.CancelledError:
                pass
            self._trimmer = None

    def close(self) -> None:
        """End every subscription (BusClosed): the server is going down."""
        if self.closed:
            return
        self.closed = True
        for stream in self.streams.values():
            stream.closed = True
            stream.notify()

    async def _trim_forever(self) -> None:
        while True:
            try:
                await self.trim()
            except asyncio.CancelledError:
                raise
            except Exception:  # storage trouble: try again next time, keep serving
                log.exception("trimming the event log failed")
            await asyncio.sleep(self.retention.trim_interval_s)

    async def trim(self, accounts: Iterable[str] | None = None) -> dict[str, int]:
        """Delete stored events past the retention; returns, per account
        trimmed, the new lower bound (events below it are gone). Deletes in
        chunks of ``TRIM_CHUNK``, each its own commit, so a large trim never
        holds up the writes routing waits for."""
        retention = self.retention
        done: dict[str, int] = {}
        for account_id in list(accounts if accounts is not None else self.journal.sequences):
            newest = self.journal.sequences.get(account_id, 0)
            below = newest - retention.count + 1 if retention.count else 0
            if retention.age_ms:
                below = max(below, await self._first_younger_than(
                    account_id, self.clock.now_ms() - retention.age_ms, newest))
            trimmed = self.trimmed_below.get(account_id)
            if trimmed is None:
                trimmed = await self.storage.oldest_sequence(account_id)
                if trimmed is None:  # nothing stored (durability off): nothing to delete
                    self.trimmed_below[account_id] = max(below, 0)
                    continue
            if below <= trimmed:
                continue
            while trimmed < below:
                trimmed = min(below, trimmed + TRIM_CHUNK)
                await self.storage.write(TrimEvents(account_id, trimmed))
                self.trimmed_below[account_id] = trimmed
            done[account_id] = below
        return done

    async def _first_younger_than(self, account_id: str, cutoff_ms: int, newest: int) -> int:
        """The first stored sequence whose time is >= ``cutoff_ms`` (binary
        search by sequence: times grow with sequences). O(log^2 n)."""
        low = self.trimmed_below.get(account_id, 1)
        high = newest + 1  # answer in [low, high]
        while low < high:
            middle = (low + high) // 2
            records = await self.storage.events_since(account_id, middle, 1)
            if not records:
                high = middle
            elif records[0].time_ms >= cutoff_ms:
                high = min(middle, records[0].sequence)
            else:
                low = records[0].sequence + 1
        return low
