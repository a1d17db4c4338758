"""The bus's ring, without a server: eviction, shared batches, filters,
encoding once, wake-ups."""

from __future__ import annotations

import asyncio

import pytest

from qroute.domain.events import DomainEvent
from qroute.events.bus import AccountStream, EventBus, EventKey, Retention, event_key, make_filter

pytestmark = pytest.mark.timeout(10)


class CountingCodec:
    def __init__(self) -> None:
        self.encoded = 0

    def frame(self, event: DomainEvent) -> bytes:
        self.encoded += 1
        return f"[{event.sequence}]".encode()

    def tail(self, through: int) -> bytes:
        return f"|{through}".encode()


def event(sequence: int, type_: str = "queue.session_joined", entity_id: str = "q1", **data) -> DomainEvent:
    return DomainEvent(type_, entity_id, 1_000 + sequence, {"session_id": f"s{sequence}", **data}, "acc", sequence)


def stream_of(count: int, capacity: int = 100) -> tuple[AccountStream, CountingCodec]:
    stream = AccountStream("acc", 1, capacity)
    stream.codec = CountingCodec()
    for sequence in range(1, count + 1):
        stream.append(event(sequence))
    return stream, stream.codec


def test_ring_keeps_the_newest_capacity_events_through_compactions():
    stream, _ = stream_of(5_000, capacity=10)
    assert (stream.base, stream.next_sequence, len(stream)) == (4_991, 5_001, 10)
    payload, through, count = stream.read(4_991, 1_000, None)
    assert payload == b"".join(f"[{s}]".encode() for s in range(4_991, 5_001)) + b"|5000"
    assert (through, count) == (5_000, 10)


def test_unfiltered_batches_are_encoded_once_and_shared():
    stream, codec = stream_of(50)
    first = stream.read(11, 20, None)
    second = stream.read(11, 20, None)
    assert first[0] is second[0] and first[1:] == (30, 20)
    stream.read(1, 1_000, None)
    assert codec.encoded == 50  # each event once, whoever reads it
    assert stream.read(51, 10, None) == (None, 50, 0)


def test_filtered_reads_take_up_to_the_limit_and_say_how_far_they_looked():
    stream, _ = stream_of(30)
    even = make_filter(session_ids=[f"s{n}" for n in range(2, 31, 2)])
    payload, through, count = stream.read(1, 3, even)
    assert (payload, through, count) == (b"[2][4][6]|6", 6, 3)
    assert stream.read(1, 3, make_filter(session_ids=[f"s{n}" for n in range(2, 31, 2)]))[0] is payload
    nothing = make_filter(queue_ids=["elsewhere"])
    assert stream.read(7, 3, nothing) == (b"|30", 30, 0)


def test_event_keys_and_filters():
    joined = event(1)
    moved = DomainEvent("session.transferred", "s9", 0, {"queue_id": "q2", "from_queue_id": "q1"}, "acc", 2)
    state = DomainEvent("recipient.state_changed", "ann", 0, {"queue_id": ""}, "acc", 3)
    assert event_key(joined) == EventKey(2, "queue.session_joined", ("q1",), "", "s1")
    assert event_key(moved) == EventKey(1, "session.transferred", ("q2", "q1"), "", "s9")
    assert event_key(state) == EventKey(3, "recipient.state_changed", (), "ann", "")
    assert make_filter() is None
    match = make_filter(entities=[1, 3], queue_ids=["q1"])
    assert [match.check(event_key(e)) for e in (joined, moved, state)] == [False, True, False]
    assert make_filter(recipient_ids=["ann"], types=["recipient.state_changed"]).check(event_key(state))
    assert make_filter(queue_ids=["a", "b"]).key == make_filter(queue_ids=["b", "a"]).key


class Journal:
    def __init__(self) -> None:
        self.sequences: dict[str, int] = {}
        self.listeners = []


def test_publish_wakes_waiters_once_per_loop_iteration():
    async def main():
        journal = Journal()
        bus = EventBus(journal, storage=None, clock=None, retention=Retention(ring_size=8))
        bus.set_codec(CountingCodec())
        stream = bus.stream("acc")
        assert stream.next_sequence == 1
        waiters = [asyncio.ensure_future(stream.wait(1)) for _ in range(3)]
        assert await stream.wait(1, timeout=0.01) is False
        for sequence in range(1, 21):
            journal.sequences["acc"] = sequence
            for listener in journal.listeners:
                listener(event(sequence))
        assert not any(w.done() for w in waiters)  # nothing per subscriber while publishing
        assert await asyncio.wait_for(asyncio.gather(*waiters), 1) == [True] * 3
        assert (stream.base, stream.next_sequence) == (13, 21)
        bus.close()
        assert await stream.wait(99) is True and stream.closed

    asyncio.run(main())


def test_batches_stop_at_about_a_mebibyte(monkeypatch):
    from qroute.events import bus

    monkeypatch.setattr(bus, "MAX_BATCH_BYTES", 20)
    stream, _ = stream_of(10)  # frames "[1]" .. "[9]" are 3 bytes, "[10]" 4
    assert stream.read(1, 1_000, None) == (b"[1][2][3][4][5][6]|6", 6, 6)
    assert stream.read(8, 1_000, None) == (b"[8][9][10]|10", 10, 3)
    assert stream.read(1, 1_000, make_filter(entities=[2]))[1:] == (6, 6)
    monkeypatch.setattr(bus, "MAX_BATCH_BYTES", 1)
    assert stream.read(2, 1_000, None) == (b"[2]|2", 2, 1)  # one event at least


def test_a_reader_at_the_head_encodes_nothing_before_it():
    stream, codec = stream_of(100)
    assert stream.read(91, 1_000, None)[1:] == (100, 10) and codec.encoded == 10
    assert stream.read(1, 1_000, None)[0] == b"".join(f"[{s}]".encode() for s in range(1, 101)) + b"|100"
    assert codec.encoded == 100  # the skipped ones when a replay needs them, once
    assert [k.session_id for k in stream.keys(95, 101)] == [f"s{n}" for n in range(95, 101)]
