"""The error contract: INVALID_ARGUMENT naming every bad field (google.rpc.BadRequest),
NOT_FOUND, ALREADY_EXISTS, FAILED_PRECONDITION; no half-applied change, no
traceback, and a retried mutation (same request_id) acts once."""

import logging

import grpc
import pytest

from qroute.client import ClientError
from qroute.engine.floor import Floor
from qroute.v1 import common_pb2 as v1
from qroute.v1 import queue_pb2, recipient_pb2, session_pb2

from ._util import call_center, fails

INVALID_ARGUMENT = grpc.StatusCode.INVALID_ARGUMENT
NOT_FOUND = grpc.StatusCode.NOT_FOUND
FAILED_PRECONDITION = grpc.StatusCode.FAILED_PRECONDITION

# field, a value out of bounds, the value at the bound (accepted)
QUEUE_BOUNDS = [
    ("name", "", "n"),
    ("name", "n" * 129, "n" * 128),
    ("ring_timeout", 0, 1),
    ("tick_time", 249, 250),
    ("timeout", 9, 10),
    ("agent_wrapup_time", -1, 0),
    ("timeout_if_size_exceeds", -1, 0),
    ("hold_treatment", "m" * 1025, "m" * 1024),
    ("router", 99, v1.ROUTER_RING_ALL),
    ("timeout_redirect", "nowhere", "overflow"),
]
RECIPIENT_BOUNDS = [
    ("name", "n" * 129, "n" * 128),
    ("pincode", "12", "1234"),
    ("guard_timer_seconds", -1, 0),
    ("guard_timer_seconds", 3601, 3600),
    ("bounced_call_limit", 101, 100),
    ("agent_type", 9, v1.AGENT_TYPE_REMOTE),
    ("unavailable_codes", ["out to lunch!"], ["lunch"]),
]


def test_every_queue_bound_is_named(api):
    async def body(client):
        await client.create_queue(id="overflow", name="Overflow")
        for n, (field, bad, good) in enumerate(QUEUE_BOUNDS):
            error = await fails(client.create_queue(id=f"q{n}", **{"name": "Q", field: bad}), INVALID_ARGUMENT)
            assert error.fields == [f"queue.{field}"], (field, bad, error)
            created = await client.create_queue(id=f"q{n}", **{"name": "Q", field: good})
            assert getattr(created, field) == good

        error = await fails(client.create_queue(id="self", name="Q", timeout_redirect="self"), INVALID_ARGUMENT)
        assert error.fields == ["queue.timeout_redirect"]
        rules = [v1.TierExpansion(after_seconds=-1, max_tier=2), v1.TierExpansion(after_seconds=30, max_tier=0)]
        error = await fails(client.create_queue(id="tiers", name="Q", tier_expansion=rules), INVALID_ARGUMENT)
        assert error.fields == ["queue.tier_expansion[0].after_seconds", "queue.tier_expansion[1].max_tier"]

        # every bad field of one request is named at once, and nothing is created
        everything = {field: bad for field, bad, _ in QUEUE_BOUNDS}
        error = await fails(client.create_queue(id="all", **everything), INVALID_ARGUMENT)
        assert sorted(set(error.fields)) == sorted({f"queue.{field}" for field, _, _ in QUEUE_BOUNDS})
        ids = {q.id for q in await client.list_queues()}
        assert ids == {"overflow"} | {f"q{n}" for n in range(len(QUEUE_BOUNDS))}

    api.run(body)


def test_updates_are_checked_whole_and_change_nothing_when_refused(api):
    async def body(client):
        before = await client.create_queue(id="sales", name="Sales", ring_timeout=7)
        error = await fails(client.update_queue("sales", ring_timeout=5, tick_time=10, timeout_redirect="nowhere"),
                            INVALID_ARGUMENT)
        assert error.fields == ["queue.tick_time", "queue.timeout_redirect"]
        assert await client.get_queue("sales") == before

        for path in ("id", "create_time", "no_such_field"):
            request = queue_pb2.UpdateQueueRequest(queue=queue_pb2.Queue(id="sales", name="X"))
            request.update_mask.paths.append(path)
            error = await fails(client.queues.UpdateQueue(request, metadata=client.metadata), INVALID_ARGUMENT)
            assert error.fields == ["update_mask"], path
        assert await client.get_queue("sales") == before

        updated = await client.update_queue("sales", ring_timeout=5, router=v1.ROUTER_MOST_IDLE)
        assert (updated.ring_timeout, updated.router, updated.name) == (5, v1.ROUTER_MOST_IDLE, "Sales")
        await fails(client.update_queue("nowhere", ring_timeout=5), NOT_FOUND)

        await client.create_recipient(id="ann", name="Ann", skills={"en": 5})
        error = await fails(client.update_recipient("ann", skills={"en": 11}, bounced_call_limit=-1),
                            INVALID_ARGUMENT)
        assert error.fields == ["recipient.skills[en]", "recipient.bounced_call_limit"]
        assert dict((await client.get_recipient("ann")).skills) == {"en": 5}

    api.run(body)


def test_every_recipient_bound_is_named(api):
    async def body(client):
        for n, (field, bad, good) in enumerate(RECIPIENT_BOUNDS):
            error = await fails(client.create_recipient(id=f"r{n}", **{field: bad}), INVALID_ARGUMENT)
            assert error.fields == [f"recipient.{field}"], (field, bad, error)
            await client.create_recipient(id=f"r{n}", **{field: good})

        error = await fails(client.create_recipient(id="s", skills={"en": 11, "bad skill": 3}), INVALID_ARGUMENT)
        assert sorted(error.fields) == ["recipient.skills[bad skill]", "recipient.skills[en]"]
        error = await fails(client.create_recipient(id="d", make_outgoing_calls_as_call_center=True),
                            INVALID_ARGUMENT)
        assert error.fields == ["recipient.outgoing_call_dnis"]
        created = await client.create_recipient(id="p", pincode="4321")
        assert created.pincode == ""  # write-only
        assert len(await client.list_recipients()) == len(RECIPIENT_BOUNDS) + 1

    api.run(body)


def test_enqueue_member_and_availability_bounds(api):
    async def body(client):
        await call_center(client, ready=False)
        cases = [
            ({"priority": 1001}, ["priority"]),
            ({"skills": {"en": 11}}, ["skills[en]"]),
            ({"caller_number": "1" * 65}, ["caller.number"]),
            ({"caller_name": "n" * 257}, ["caller.name"]),
            ({"priority": 1001, "caller_number": "1" * 65}, ["priority", "caller.number"]),
        ]
        for fields, named in cases:
            error = await fails(client.enqueue("sales", **fields), INVALID_ARGUMENT)
            assert error.fields == named, fields
        await fails(client.enqueue("nowhere"), NOT_FOUND)
        assert (await client.queue_status("sales")).stats.total_sessions == 0  # nothing got in

        error = await fails(client.add_members("sales", [v1.Member(recipient_id="ann", tier=-1),
                                                         v1.Member(recipient_id="")]), INVALID_ARGUMENT)
        assert error.fields == ["members[0].tier", "members[1].recipient_id"]
        error = await fails(client.add_members("sales", ["ann", "ann"]), INVALID_ARGUMENT)
        assert error.fields == ["members[1].recipient_id"]

        await client.login("ann")
        request = recipient_pb2.SetAvailabilityRequest(recipient_id="ann")  # availability unset
        error = await fails(client.recipients.SetAvailability(request, metadata=client.metadata), INVALID_ARGUMENT)
        assert error.fields == ["availability"]
        error = await fails(client.set_availability("ann", True, queue_id="sales", unavailable_code="x"),
                            INVALID_ARGUMENT)
        assert error.fields == ["unavailable_code"]

        request = session_pb2.ListSessionsRequest(states=[99])
        error = await fails(client.sessions.ListSessions(request, metadata=client.metadata), INVALID_ARGUMENT)
        assert error.fields == ["states"]
        request = queue_pb2.ListQueuesRequest(page_token="%%%")
        error = await fails(client.queues.ListQueues(request, metadata=client.metadata), INVALID_ARGUMENT)
        assert error.fields == ["page_token"]
        with pytest.raises(ClientError) as caught:
            async for _ in client.watch_queue_status(["sales"], interval_ms=50):
                pass
        assert caught.value.code == INVALID_ARGUMENT and caught.value.fields == ["interval_ms"]

    api.run(body)


def test_not_found_already_exists_and_conflicts(api):
    async def body(client):
        await call_center(client, ready=False)
        for call in (client.get_queue("nowhere"), client.delete_queue("nowhere"), client.queue_status("nowhere"),
                     client.queue_statuses(["sales", "nowhere"]), client.list_members("nowhere"),
                     client.get_recipient("ghost"), client.delete_recipient("ghost"), client.login("ghost"),
                     client.recipient_status("ghost"), client.get_session("none"), client.abandon("none"),
                     client.accept_offer("none"), client.list_sessions("nowhere")):
            await fails(call, NOT_FOUND)

        await fails(client.create_queue(id="sales", name="Again"), grpc.StatusCode.ALREADY_EXISTS)
        await fails(client.create_recipient(id="ann"), grpc.StatusCode.ALREADY_EXISTS)
        assert (await client.get_queue("sales")).name == "Sales"

        # all or nothing: one unknown recipient adds no member
        await client.create_recipient(id="bob")
        await client.create_queue(id="support", name="Support")
        await fails(client.add_members("support", ["bob", "ghost"]), NOT_FOUND)
        assert await client.list_members("support") == []
        assert await client.remove_members("support", ["bob", "ghost"]) == []  # not members: ignored
        assert [m.recipient_id for m in await client.list_members("sales")] == ["ann"]

        await fails(client.set_availability("bob", True), FAILED_PRECONDITION)  # logged out
        session = await client.enqueue("sales")
        await fails(client.delete_queue("sales"), FAILED_PRECONDITION)  # holds a session
        await client.update_queue("support", timeout_redirect="sales")
        await fails(client.delete_queue("sales", force=True), FAILED_PRECONDITION)  # support redirects to it
        await client.update_queue("support", timeout_redirect="")
        await client.delete_queue("sales", force=True)
        assert (await client.get_session(session.id)).end_reason == v1.END_REASON_REMOVED

    api.run(body)


def test_a_retried_mutation_acts_once(api):
    async def body(client):
        queue = await client.create_queue(name="Sales", ring_timeout=9, request_id="create-sales")
        again = await client.create_queue(name="Sales", ring_timeout=9, request_id="create-sales")
        assert again == queue and len(await client.list_queues()) == 1
        other = await client.create_queue(name="Sales", request_id="create-sales-2")
        assert other.id != queue.id

        first = await client.enqueue(queue.id, caller_number="+1", request_id="call-1")
        retried = await client.enqueue(queue.id, caller_number="+1", request_id="call-1")
        assert retried.id == first.id
        assert len(await client.list_sessions(queue.id)) == 1
        await client.enqueue(queue.id, caller_number="+1")  # no request_id: a new session
        assert len(await client.list_sessions(queue.id)) == 2

        moved = await client.transfer(first.id, other.id, request_id="move-1")
        assert (await client.transfer(first.id, other.id, request_id="move-1")) == moved  # not "already there"
        assert list((await client.get_session(first.id)).queues_visited) == [queue.id, other.id]

        await client.create_recipient(id="ann", request_id="ann")
        await client.create_recipient(id="ann", request_id="ann")  # no ALREADY_EXISTS for the retry
        await client.add_members(queue.id, ["ann"], request_id="members")
        assert len(await client.add_members(queue.id, ["ann"], request_id="members")) == 1

    api.run(body)

    async def accounts(client):
        async with api.admin() as admin:
            created = await admin.create_account("Beta", request_id="beta")
            assert await admin.create_account("Beta", request_id="beta") == created
            assert [a.name for a in await admin.list_accounts()].count("Beta") == 1
            key = await admin.create_api_key(created.id, request_id="beta-key")
            assert (await admin.create_api_key(created.id, request_id="beta-key")).id == key.id
            assert len(await admin.list_api_keys(created.id)) == 1

    api.run(accounts)


def _boom(*args, **kwargs):
    raise RuntimeError("secret internals in /srv/qroute/engine.py line 42")


def test_no_traceback_reaches_a_client(api, monkeypatch, caplog):
    """A bug answers a bare INTERNAL on every kind of call; the server logs it."""

    async def body(client):
        await call_center(client, agent_wrapup_time=60)
        async with client.agent("ann") as desk:
            monkeypatch.setattr(Floor, "queue_status", _boom)
            monkeypatch.setattr(Floor, "finish_wrapup", _boom)
            monkeypatch.setattr(Floor, "transfer", _boom)
            monkeypatch.setattr(Floor, "enqueue", _boom)
            errors = [
                await fails(client.queue_status("sales"), grpc.StatusCode.INTERNAL),  # unary
                await fails(client.transfer("x", "sales"), grpc.StatusCode.INTERNAL),  # mutation
                await fails(desk.finish_wrapup(), grpc.StatusCode.INTERNAL),  # a desktop command
            ]
            for stream in (client.watch_queue_status(["sales"]), client.enqueue_stream([_enqueue("sales")])):
                with pytest.raises(ClientError) as caught:
                    async for _ in stream:
                        pass
                errors.append(caught.value)
            assert [e.code for e in errors] == [grpc.StatusCode.INTERNAL] * 5
            for error in errors:
                assert error.message == "internal error" and error.violations == []
            # the desktop stream goes on after a failed command
            assert (await desk.set_availability(False)).state == v1.RECIPIENT_STATE_AWAY

    with caplog.at_level(logging.ERROR, logger="qroute"):
        api.run(body)
    logged = [r for r in caplog.records if r.exc_info and "secret internals" in str(r.exc_info[1])]
    assert len(logged) == 5


def _enqueue(queue_id):
    return session_pb2.EnqueueRequest(queue_id=queue_id)
