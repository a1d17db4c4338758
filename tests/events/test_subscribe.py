"""EventService.Subscribe against a real server: a wallboard from events
alone, filters, replay then live without gap or duplicate, retention and
OUT_OF_RANGE, restart, shutdown, bad requests."""

from __future__ import annotations

import asyncio
from collections import Counter, defaultdict

import grpc
import pytest

from qroute.client import ClientError
from qroute.domain.events import CATALOG
from qroute.events.bus import Retention
from qroute.v1 import common_pb2 as v1
from qroute.v1 import event_pb2

from ..api._util import call_center, eventually, fails
from ._util import EventsApi, churn, next_batch, read_through, subscribe

SESSION, QUEUE = event_pb2.EVENT_ENTITY_SESSION, event_pb2.EVENT_ENTITY_QUEUE
RECIPIENT = event_pb2.EVENT_ENTITY_RECIPIENT


class Wallboard:
    """Queue and recipient figures followed from events alone."""

    def __init__(self) -> None:
        self.members: dict[str, set[str]] = defaultdict(set)
        self.present: dict[str, set[str]] = defaultdict(set)  # joined, not left: waiting or ringing
        self.total: Counter = Counter()
        self.missed: Counter = Counter()
        self.abandoned: Counter = Counter()
        self.answered_waits: dict[str, list[int]] = defaultdict(list)
        self.logged_in: dict[str, bool] = {}
        self.state: dict[str, int] = {}
        self.availability: dict[str, int] = {}
        self.away_in: dict[str, set[str]] = defaultdict(set)

    def apply(self, event: event_pb2.Event) -> None:
        kind, queue_id, recipient_id = event.type, event.queue_id, event.recipient_id
        if kind == "queue.member_added":
            if recipient_id not in self.members[queue_id]:
                self.away_in[recipient_id].discard(queue_id)
            self.members[queue_id].add(recipient_id)
        elif kind == "queue.member_removed":
            self.members[queue_id].discard(recipient_id)
            self.away_in[recipient_id].discard(queue_id)
        elif kind == "queue.session_joined":
            self.present[queue_id].add(event.session_id)
        elif kind == "queue.session_left":
            self.present[queue_id].discard(event.session_id)
            if event.queue.reason == "answered":
                self.answered_waits[queue_id].append(event.queue.wait_ms)
        elif kind in ("session.created", "session.transferred"):
            self.total[queue_id] += 1
        elif kind == "session.abandoned":
            self.abandoned[queue_id] += 1
        elif kind == "recipient.missed":
            self.missed[queue_id] += 1
        elif kind == "recipient.logged_in":
            self.logged_in[recipient_id] = True
        elif kind == "recipient.logged_out":
            self.logged_in[recipient_id] = False
        elif kind == "recipient.state_changed":
            self.state[recipient_id] = event.recipient.state
            if queue_id:
                away = event.recipient.availability == v1.AVAILABILITY_AWAY
                (self.away_in[recipient_id].add if away else self.away_in[recipient_id].discard)(queue_id)
            else:
                self.availability[recipient_id] = event.recipient.availability

    def queue_figures(self, queue_id: str) -> dict:
        members = self.members[queue_id]
        waits = self.answered_waits[queue_id]
        return {
            "active_recipient_count": sum(1 for r in members if self.logged_in.get(r)),
            "available_recipient_count": sum(1 for r in members if self.state.get(r) == v1.RECIPIENT_STATE_READY
                                             and queue_id not in self.away_in[r]),
            "recipient_count": len(members),
            "active_session_count": len(self.present[queue_id]),
            "total_sessions": self.total[queue_id],
            "missed_sessions": self.missed[queue_id],
            "abandoned_sessions": self.abandoned[queue_id],
            "average_wait": round(sum(waits) / len(waits) / 1000) if waits else 0,
        }


def server_figures(status) -> dict:
    stats = status.stats
    return {
        "active_recipient_count": status.active_recipient_count,
        "available_recipient_count": status.available_recipient_count,
        "recipient_count": stats.recipient_count, "active_session_count": stats.active_session_count,
        "total_sessions": stats.total_sessions, "missed_sessions": stats.missed_sessions,
        "abandoned_sessions": stats.abandoned_sessions, "average_wait": stats.average_wait,
    }


RECIPIENTS = ("ann", "bob", "cid", "dan", "eve")


async def offer_of(client, session_id: str) -> tuple[str, str]:
    """(offer_id, recipient_id) of the offer ringing for a session, once there is one."""
    async def probe():
        return (await client.get_session(session_id)).offer_id

    offer_id = await eventually(probe)
    for recipient_id in RECIPIENTS:
        if (await client.recipient_status(recipient_id)).current_offer_id == offer_id:
            return offer_id, recipient_id
    raise AssertionError(f"offer {offer_id} rings nowhere")


async def call_flow(api, client) -> None:
    """Two queues, five recipients: accept, reject, miss, abandon, transfer,
    hang-up, per-queue away, logout, membership and queue changes."""
    await call_center(client, ("ann", "bob", "cid"), ring_timeout=60)
    await client.create_queue(id="support", name="Support", ring_timeout=60, tick_time=250)
    for recipient_id in ("dan", "eve"):
        await client.create_recipient(id=recipient_id, name=recipient_id.title(), skills={"en": 5})
    await client.add_members("support", ["cid", "dan", "eve"])
    await client.login("dan")  # AWAY
    await client.set_availability("cid", False, queue_id="support")
    sessions = [(await client.enqueue("sales", caller_number=f"+1555000{n}")).id for n in range(5)]
    first = await offer_of(client, sessions[0])
    await client.accept_offer(first[0])
    second = await offer_of(client, sessions[1])
    await client.reject_offer(second[0])
    third = await offer_of(client, sessions[2])
    api.floor().miss(third[1])  # as when its desktop drops while ringing
    waiting = [s for s in sessions[3:] if (await client.get_session(s)).state == v1.SESSION_STATE_WAITING]
    await client.abandon(waiting[0] if waiting else sessions[4])
    await client.transfer(sessions[4], "support")
    await client.hangup(sessions[0])
    await client.set_availability("dan", True)
    moved = await offer_of(client, sessions[4])
    assert moved[1] == "dan"
    await client.accept_offer(moved[0])
    await client.logout("bob")
    await client.remove_members("support", ["eve"])
    await client.update_queue("sales", name="Sales desk")
    await client.enqueue("support", caller_number="+15559999")


async def settled(api, client, queue_ids, recipient_ids):
    """Statuses taken while no event happened, and the newest sequence then."""
    for _ in range(50):
        before = api.newest
        queues = {q: await client.queue_status(q) for q in queue_ids}
        recipients = {r: await client.recipient_status(r) for r in recipient_ids}
        if api.newest == before:
            return before, queues, recipients
        await asyncio.sleep(0.05)
    raise AssertionError("events never stopped")


def test_wallboard_from_events_alone(api):
    """After a scripted call flow, the figures a wallboard follows from the
    events (replayed from 1) are the server's queue and recipient statuses."""

    async def body(client):
        await call_flow(api, client)
        newest, queues, recipients = await settled(api, client, ["sales", "support"], RECIPIENTS)
        events = await read_through(subscribe(client, from_sequence=1), newest)
        assert [e.sequence for e in events] == list(range(1, newest + 1))
        board = Wallboard()
        for event in events:
            assert event.type in CATALOG and event.entity_id and event.account_id == api.account_id
            assert event.HasField("time") and event.WhichOneof("payload") == {
                SESSION: "session", QUEUE: "queue", RECIPIENT: "recipient"}[event.entity]
            board.apply(event)
        for queue_id, status in queues.items():
            assert board.queue_figures(queue_id) == server_figures(status), queue_id
        for recipient_id, status in recipients.items():
            assert board.state.get(recipient_id, v1.RECIPIENT_STATE_LOGGED_OUT) == status.state, recipient_id
            away = {q for q, a in status.queue_availability.items() if a == v1.AVAILABILITY_AWAY}
            assert board.away_in[recipient_id] & set(status.queue_availability) == away, recipient_id
        assert board.missed["sales"] == 1 and board.abandoned["sales"] == 1
        assert queues["support"].stats.active_session_count == 1  # the last caller waits

        kinds = {e.type for e in events}
        assert {"session.connected", "session.requeued", "session.transferred", "session.ended",
                "recipient.rejected", "recipient.missed", "recipient.logged_out", "queue.updated",
                "queue.member_removed"} <= kinds
        ended = [e for e in events if e.type == "session.ended"]
        assert {e.session.end_reason for e in ended} == {v1.END_REASON_COMPLETED, v1.END_REASON_ABANDONED}
        updated = next(e for e in events if e.type == "queue.updated")
        assert updated.queue.config.name == "Sales desk" and updated.queue.config.ring_timeout == 60
        created = next(e for e in events if e.type == "session.created")
        assert created.session.caller.number == "+15550000" and created.session.HasField("entered_at")

    api.run(body)


def matches(event, entities=(), types=(), queue_ids=(), recipient_ids=(), session_ids=()) -> bool:
    """The filters' documented semantics, on the client's side."""
    queues = {event.queue_id}
    if event.entity == SESSION:
        queues |= {event.session.from_queue_id, event.session.redirect_queue_id}
    return ((not entities or event.entity in entities) and (not types or event.type in types)
            and (not queue_ids or bool(queues & set(queue_ids)))
            and (not recipient_ids or event.recipient_id in recipient_ids)
            and (not session_ids or event.session_id in session_ids))


def test_filters(api):
    """Each filter, and several combined, passes exactly the events it
    should; through_sequence still reaches the newest event."""

    async def body(client):
        await call_flow(api, client)
        newest = api.newest
        everything = await read_through(subscribe(client, from_sequence=1), newest)
        some_session = next(e.session_id for e in everything if e.type == "session.transferred")
        cases = [
            {"entities": [QUEUE]},
            {"entities": [SESSION, RECIPIENT]},
            {"types": ["session.ended", "recipient.state_changed"]},
            {"queue_ids": ["support"]},
            {"recipient_ids": ["dan"]},
            {"session_ids": [some_session]},
            {"entities": [RECIPIENT], "queue_ids": ["sales"], "recipient_ids": ["ann", "cid"]},
            {"types": ["queue.session_left"], "queue_ids": ["nowhere"]},
        ]
        for case in cases:
            call = subscribe(client, from_sequence=1, max_batch=3, **case)
            got = await read_through(call, newest)
            expected = [e for e in everything if matches(e, **case)]
            assert [e.sequence for e in got] == [e.sequence for e in expected], case
            assert got == expected, case
            call.cancel()
        assert any(e.type == "session.transferred" for e in everything if matches(e, queue_ids=["sales"]))

    api.run(body)


def test_replay_then_live_has_no_gap_and_no_duplicate(tmp_path):
    """Subscribers join while events are being made, replaying from storage
    (older than the ring), from the ring, or live only; each gets every
    event from where it started exactly once, in order."""
    api = EventsApi(tmp_path / "data", Retention(ring_size=1024))

    async def body(client):
        await client.create_queue(id="churn", name="Churn")
        await churn(api.floor(), 400)  # 2,000 events before anyone subscribes: the oldest only in storage
        floor = api.floor()
        maker = asyncio.ensure_future(churn(floor, 600, pause_every=3, pause=0.003))
        subscribers = []
        for start, max_batch in ((1, 1000), (1, 7), (500, 1), (0, 1000), (0, 100)):
            await asyncio.sleep(0.01)
            call = subscribe(client, from_sequence=start, max_batch=max_batch)
            first = await next_batch(call)
            subscribers.append((start or first.through_sequence + 1, call, first))
        mid = api.newest - 10  # from the ring, while it moves
        call = subscribe(client, from_sequence=mid)
        subscribers.append((mid, call, await next_batch(call)))
        assert not maker.done()  # they all joined while events were being made
        await maker
        newest = api.newest
        assert newest == 5 * 1000 + 1
        for start, call, first in subscribers:
            events = list(first.events) + await read_through(call, newest, through=first.through_sequence)
            assert [e.sequence for e in events] == list(range(start, newest + 1)), start
            call.cancel()

    api.run(body)


def test_replay_from_storage_equals_live(api):
    """Events replayed out of storage after a restart are byte for byte the
    ones sent live; sequences go on after the restart."""
    live: list[event_pb2.Event] = []

    async def first(client):
        call = subscribe(client)
        start = (await next_batch(call)).through_sequence
        assert start == 0
        await call_flow(api, client)
        live.extend(await read_through(call, api.newest))

    async def second(client):
        # (the restart adds events of its own: offers that rang at the stop are withdrawn and made again)
        replayed = await read_through(subscribe(client, from_sequence=1), api.newest)
        assert [e.SerializeToString() for e in replayed[:len(live)]] == [e.SerializeToString() for e in live]
        call = subscribe(client, from_sequence=api.newest + 1)
        assert (await next_batch(call)).through_sequence == api.newest
        await client.create_recipient(id="fay", name="Fay")
        (event,) = await read_through(call, api.newest)
        assert event.sequence == replayed[-1].sequence + 1 and event.type == "recipient.created"

    api.run(first)
    api.run(second)


async def out_of_range(call) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call.read()
    assert caught.value.code() == grpc.StatusCode.OUT_OF_RANGE
    return caught.value


def test_retention_and_out_of_range(tmp_path):
    """Storage keeps the newest ``count`` events and none older than
    ``age``; a replay from before them is OUT_OF_RANGE naming the oldest
    retained sequence (message and trailing metadata), from it works."""
    api = EventsApi(tmp_path / "data", Retention(count=100, age_ms=0))

    async def body(client):
        await client.create_queue(id="churn", name="Churn")
        await churn(api.floor(), 60)
        bus = api.node.events
        await api.node.journal.durable()
        assert await bus.trim() == {api.account_id: api.newest - 99}
        oldest = api.newest - 99
        assert await api.node.storage.oldest_sequence(api.account_id) == oldest

        error = await out_of_range(subscribe(client, from_sequence=oldest - 1))
        assert f"oldest retained event is {oldest}" in error.details()
        assert ("qroute-oldest-sequence", str(oldest)) in tuple(error.trailing_metadata())
        events = await read_through(subscribe(client, from_sequence=oldest), api.newest)
        assert [e.sequence for e in events] == list(range(oldest, api.newest + 1))
        error = await out_of_range(subscribe(client, from_sequence=api.newest + 2))
        assert "beyond the newest event" in error.details()

        # by age: what is older than age_ms goes, the newest event always stays
        await asyncio.sleep(0.05)
        await churn(api.floor(), 2)
        await api.node.journal.durable()
        bus.retention = Retention(count=0, age_ms=30)
        cut = api.newest - 9
        assert await bus.trim() == {api.account_id: cut}
        await out_of_range(subscribe(client, from_sequence=cut - 1))
        await asyncio.sleep(0.05)
        await bus.trim()
        assert await api.node.storage.oldest_sequence(api.account_id) == api.newest

    api.run(body)


def test_shutdown_ends_streams_with_where_to_resume(api):
    async def body(client):
        await client.create_queue(id="churn", name="Churn")
        call = subscribe(client)
        await next_batch(call)
        await churn(api.floor(), 1)
        events = await read_through(call, api.newest)
        api.node.events.close()
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await call.read()
        assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
        assert ("qroute-last-sequence", str(events[-1].sequence)) in tuple(caught.value.trailing_metadata())

    api.run(body)


def test_bad_requests(api):
    async def body(client):
        async def first(**request):
            return await next_batch(subscribe(client, **request))

        error = await fails(first(max_batch=10_001), grpc.StatusCode.INVALID_ARGUMENT)
        assert error.fields == ["max_batch"]
        error = await fails(first(types=["session.nope"], entities=[7]), grpc.StatusCode.INVALID_ARGUMENT)
        assert error.fields == ["entities[0]", "types[0]"]
        async with api.admin() as admin:
            with pytest.raises(ClientError) as caught:
                await next_batch(subscribe(admin))
            assert caught.value.code == grpc.StatusCode.PERMISSION_DENIED
            # another account's key sees nothing of this account's events
            await client.create_queue(id="sales", name="Sales")
            other = await admin.create_account("Other")
            other_key = (await admin.create_api_key(other.id)).secret
        async with api.client(other_key) as stranger:
            batch = await next_batch(subscribe(stranger, from_sequence=1))
            assert (list(batch.events), batch.through_sequence) == ([], 0)

    api.run(body)


def test_filtered_out_events_still_advance_through_sequence(api):
    """A subscriber whose filter lets nothing through still learns, about
    once a second, how far it has been considered (where to resume)."""

    async def body(client):
        await client.create_queue(id="churn", name="Churn")
        call = subscribe(client, queue_ids=["elsewhere"])
        start = (await next_batch(call)).through_sequence
        await churn(api.floor(), 3)
        progress = await next_batch(call, timeout=2)
        assert progress.events == [] and progress.through_sequence == start + 15 == api.newest

    api.run(body)


def test_serve_flags_set_the_retention(monkeypatch, tmp_path):
    from qroute import cli, server

    built = {}
    monkeypatch.setattr(server, "run", lambda coroutine: coroutine.close())

    def node(*args, **kwargs):
        built.update(kwargs)
        return object()

    monkeypatch.setattr("qroute.node.Node", node)
    assert cli.main(["serve", "--data-dir", str(tmp_path), "--event-retention-count", "500",
                     "--event-retention-hours", "2", "--event-buffer", "4096"]) == 0
    assert built["event_retention"] == Retention(count=500, age_ms=7_200_000, ring_size=4096)
