"""Calls through the API: sessions, the agent desktop stream (Connect), EnqueueStream."""

import asyncio
import time

import grpc

from qroute.client import ClientError, enqueue_request
from qroute.v1 import common_pb2 as v1
from qroute.v1 import recipient_pb2, recipient_pb2_grpc

from ._util import call_center, eventually, fails

INVALID_ARGUMENT = grpc.StatusCode.INVALID_ARGUMENT
NOT_FOUND = grpc.StatusCode.NOT_FOUND
FAILED_PRECONDITION = grpc.StatusCode.FAILED_PRECONDITION


def test_the_life_of_a_call(api):
    """Enqueue, the offer on the agent stream, accept, hang-up, wrap-up, ready again."""

    async def body(client):
        await call_center(client, agent_wrapup_time=1, hold_treatment="moh/classical.wav")
        async with client.agent("ann") as desk:
            assert desk.status.state == v1.RECIPIENT_STATE_READY
            session = await client.enqueue("sales", caller_number="+15550100", caller_name="Bob",
                                           skills={"en": 3}, properties={"crm_id": "A-17", "vip": True})
            assert session.state in (v1.SESSION_STATE_WAITING, v1.SESSION_STATE_OFFERING)
            assert session.queue_id == "sales" and session.hold_treatment == "moh/classical.wav"

            offer = (await desk.wait_for("offer", timeout=2)).offer
            offered = offer.session
            assert offered.id == session.id and offered.queue_id == "sales"
            assert (offered.caller.number, offered.caller.name) == ("+15550100", "Bob")
            assert dict(offered.properties) == {"crm_id": "A-17", "vip": True}
            assert offered.hold_treatment == "moh/classical.wav"
            assert offer.ring_timeout_ms == 5000
            ringing = await client.get_session(session.id)
            assert ringing.state == v1.SESSION_STATE_OFFERING and ringing.offer_id == offer.offer_id
            assert (await client.recipient_status("ann")).state == v1.RECIPIENT_STATE_RINGING

            status = await desk.accept(offer.offer_id)
            assert status.state == v1.RECIPIENT_STATE_BUSY and status.current_session_id == session.id
            connected = await client.get_session(session.id)
            assert connected.state == v1.SESSION_STATE_CONNECTED and connected.recipient_id == "ann"

            ended = await client.hangup(session.id)
            assert ended.state == v1.SESSION_STATE_ENDED and ended.end_reason == v1.END_REASON_COMPLETED
            wrapup = (await desk.wait_for("state_changed", timeout=2)).state_changed
            while wrapup.state != v1.RECIPIENT_STATE_WRAPUP:
                wrapup = (await desk.wait_for("state_changed", timeout=2)).state_changed
            assert wrapup.HasField("wrapup_until") and wrapup.calls_taken == 1

            started = time.monotonic()
            ready = (await desk.wait_for("state_changed", timeout=10)).state_changed
            assert ready.state == v1.RECIPIENT_STATE_READY  # the 1 s wrap-up ran out, not sooner
            assert time.monotonic() - started > 0.5

        status = await client.queue_status("sales")
        assert status.stats.total_sessions == 1 and status.stats.active_session_count == 0
        assert status.available_recipient_count == 1 and status.node == "test-node"
        assert [s.id for s in await client.list_sessions("sales")] == []  # ENDED only when asked for
        assert [s.id for s in await client.list_sessions("sales", [v1.SESSION_STATE_ENDED])] == [session.id]

    api.run(body)


def test_desktop_commands(api):
    """Hang-up and wrap-up end on the desktop, availability, reject; every
    command is answered, errors included, and the stream goes on."""

    async def body(client):
        await call_center(client, agent_wrapup_time=60)
        desk = await client.agent("ann")
        await desk.set_availability(False)
        session = await client.enqueue("sales", caller_number="+15550101")
        await asyncio.sleep(0.3)  # AWAY: nothing is offered
        assert (await client.get_session(session.id)).state == v1.SESSION_STATE_WAITING

        status = await desk.set_availability(True)
        assert status.availability == v1.AVAILABILITY_READY
        first = (await desk.wait_for("offer", timeout=2)).offer
        status = await desk.reject(first.offer_id)
        assert status.state in (v1.RECIPIENT_STATE_READY, v1.RECIPIENT_STATE_RINGING)
        second = (await desk.wait_for("offer", timeout=2)).offer  # back in line, offered again
        assert second.session.id == session.id and second.offer_id != first.offer_id
        error = await fails(desk.accept(first.offer_id), FAILED_PRECONDITION)  # it was rejected
        assert first.offer_id in error.message

        await desk.accept(second.offer_id)
        await fails(desk.finish_wrapup(), FAILED_PRECONDITION)  # busy, not in wrap-up
        status = await desk.hangup(session.id)
        assert status.state == v1.RECIPIENT_STATE_WRAPUP
        await fails(desk.hangup(session.id), FAILED_PRECONDITION)  # not connected any more
        status = await desk.finish_wrapup()
        assert status.state == v1.RECIPIENT_STATE_READY
        await fails(desk.accept("no-such-offer"), NOT_FOUND)
        error = await fails(desk.set_availability(False, unavailable_code="lunch"), INVALID_ARGUMENT)
        assert "unavailable_code" in error.message
        status = await desk.logout()
        assert status.state == v1.RECIPIENT_STATE_LOGGED_OUT
        status = await desk.login(ready=True)
        assert status.state == v1.RECIPIENT_STATE_READY
        await desk.close()

    api.run(body)


def test_accepting_an_offer_that_rang_out(api):
    """ring_timeout 1 s: the offer is missed, never before it rang that long
    (no upper bound: a loaded machine may be late, which is not a failure)."""

    async def body(client):
        await call_center(client, ring_timeout=1, recipient_fields={"bounced_call_limit": 1})
        async with client.agent("ann") as desk:
            session = await client.enqueue("sales")
            offer = (await desk.wait_for("offer", timeout=2)).offer
            started = time.monotonic()
            cancelled = (await desk.wait_for("offer_cancelled", timeout=10)).offer_cancelled
            assert time.monotonic() - started > 0.75
            assert cancelled.offer_id == offer.offer_id and cancelled.reason == v1.OFFER_OUTCOME_MISSED

            await fails(desk.accept(offer.offer_id), FAILED_PRECONDITION)
            await fails(client.accept_offer(offer.offer_id), FAILED_PRECONDITION)
            await fails(client.reject_offer(offer.offer_id), FAILED_PRECONDITION)
            status = await client.recipient_status("ann")  # bounced_call_limit 1: forced away
            assert status.state == v1.RECIPIENT_STATE_AWAY and status.unavailable_code == "bounced"
            waiting = await client.get_session(session.id)
            assert waiting.state == v1.SESSION_STATE_WAITING and waiting.position == 1
            assert (await client.queue_status("sales")).stats.missed_sessions == 1

    api.run(body)


def test_session_conflicts(api):
    """Hanging up or abandoning a session in the wrong state: FAILED_PRECONDITION."""

    async def body(client):
        await call_center(client, ready=False)
        session = await client.enqueue("sales")
        await fails(client.hangup(session.id), FAILED_PRECONDITION)  # waiting, not connected
        abandoned = await client.abandon(session.id)
        assert abandoned.end_reason == v1.END_REASON_ABANDONED
        await fails(client.abandon(session.id), FAILED_PRECONDITION)
        await fails(client.hangup(session.id), FAILED_PRECONDITION)
        await fails(client.transfer(session.id, "sales"), FAILED_PRECONDITION)
        assert (await client.queue_status("sales")).stats.abandoned_sessions == 1

    api.run(body)


def test_a_dropped_stream_while_ringing_is_a_miss_and_the_agent_may_reconnect(api):
    async def body(client):
        await call_center(client, ring_timeout=30, recipient_fields={"bounced_call_limit": 1})
        desk = await client.agent("ann")
        session = await client.enqueue("sales", caller_number="+15550102")
        await desk.wait_for("offer", timeout=2)
        await desk.close()  # the desktop goes away while its phone rings (30 s ring timeout)

        async def missed():
            status = await client.recipient_status("ann")
            return status if status.state == v1.RECIPIENT_STATE_AWAY else None

        status = await eventually(missed, timeout=2)
        assert status.unavailable_code == "bounced"
        assert (await client.get_session(session.id)).state == v1.SESSION_STATE_WAITING
        assert (await client.queue_status("sales")).stats.missed_sessions == 1

        async with client.agent("ann") as again:  # reconnect
            assert again.status.state == v1.RECIPIENT_STATE_AWAY
            await again.set_availability(True)
            offer = (await again.wait_for("offer", timeout=2)).offer
            assert offer.session.id == session.id
            status = await again.accept(offer.offer_id)
            assert status.state == v1.RECIPIENT_STATE_BUSY

    api.run(body)


def test_a_newer_desktop_takes_over_what_rings(api):
    """One desktop per recipient: the newer gets the ringing offer again, the
    older ends with ABORTED, and nothing counts as missed."""

    async def body(client):
        await call_center(client, ring_timeout=30)
        older = await client.agent("ann")
        session = await client.enqueue("sales")
        offer = (await older.wait_for("offer", timeout=2)).offer
        newer = await client.agent("ann")
        assert newer.status.current_offer_id == offer.offer_id
        again = (await newer.wait_for("offer", timeout=2)).offer
        assert again.offer_id == offer.offer_id and again.session.id == session.id
        error = await fails(older.wait_for("offer", timeout=2), grpc.StatusCode.ABORTED)
        assert "another desktop" in error.message
        await fails(older.accept(offer.offer_id), grpc.StatusCode.ABORTED)
        await older.close()
        await newer.accept(offer.offer_id)
        status = await client.recipient_status("ann")
        assert status.state == v1.RECIPIENT_STATE_BUSY and status.consecutive_misses == 0
        assert (await client.queue_status("sales")).stats.missed_sessions == 0
        await newer.close()

    api.run(body)


def test_removing_a_ringing_member_withdraws_its_offer(api):
    async def body(client):
        await call_center(client, recipients=("ann", "bob"), ring_timeout=30, router=v1.ROUTER_LINEAR)
        async with client.agent("ann") as ann, client.agent("bob") as bob:
            session = await client.enqueue("sales")
            offer = (await ann.wait_for("offer", timeout=2)).offer  # linear: the first member
            assert await client.remove_members("sales", ["ann", "ghost"]) == ["ann"]
            cancelled = (await ann.wait_for("offer_cancelled", timeout=2)).offer_cancelled
            assert cancelled.offer_id == offer.offer_id and cancelled.reason == v1.OFFER_OUTCOME_WITHDRAWN
            again = (await bob.wait_for("offer", timeout=2)).offer
            assert again.session.id == session.id
            await fails(ann.accept(offer.offer_id), FAILED_PRECONDITION)
            assert (await client.recipient_status("ann")).state == v1.RECIPIENT_STATE_READY
            assert [m.recipient_id for m in await client.list_members("sales")] == ["bob"]
            await bob.accept(again.offer_id)

    api.run(body)


def test_connect_needs_hello_for_a_known_recipient(api):
    async def body(client):
        await call_center(client)
        await fails(client.agent("ghost"), NOT_FOUND)

        async def accept_first():
            yield recipient_pb2.AgentCommand(accept=recipient_pb2.AgentCommand.Accept(offer_id="x"))

        stub = recipient_pb2_grpc.RecipientServiceStub(client.channel)
        call = stub.Connect(accept_first(), metadata=client.metadata)
        try:
            async for _ in call:
                raise AssertionError("no event before hello")
        except grpc.aio.AioRpcError as exc:
            error = ClientError.from_rpc_error(exc)
        assert error.code == INVALID_ARGUMENT and error.fields == ["command"]

    api.run(body)


def test_enqueue_stream_answers_in_order(api):
    async def body(client):
        await call_center(client, ready=False)
        requests = [enqueue_request("sales", caller_number=f"+1555{n:04}") for n in range(50)]
        sessions = [s async for s in client.enqueue_stream(requests)]
        assert [s.caller.number for s in sessions] == [r.caller.number for r in requests]
        assert [s.position for s in sessions] == list(range(1, 51))
        listed = await client.list_sessions("sales")
        assert [s.id for s in listed] == [s.id for s in sessions]  # in the order they will be served

        # a bad request ends the stream with its status; the ones before it stand
        answered = []
        bad = [enqueue_request("sales", caller_number="+1"), enqueue_request("nowhere"),
               enqueue_request("sales", caller_number="+2")]
        try:
            async for session in client.enqueue_stream(bad):
                answered.append(session.caller.number)
        except ClientError as exc:
            assert exc.code == NOT_FOUND
        else:
            raise AssertionError("the stream should have failed")
        assert answered == ["+1"]
        assert len(await client.list_sessions("sales")) == 51

    api.run(body)


def test_waiting_order_and_transfer(api):
    """Priority first, then entered_at; a transferred session keeps its place."""

    async def body(client):
        await call_center(client, ready=False)
        await client.create_queue(id="support", name="Support")
        early = await client.enqueue("support", caller_number="early")
        low = await client.enqueue("sales", caller_number="low")
        high = await client.enqueue("sales", caller_number="high", priority=5)
        assert [s.caller.number for s in await client.list_sessions("sales")] == ["high", "low"]

        moved = await client.transfer(early.id, "sales")
        assert moved.queue_id == "sales" and list(moved.queues_visited) == ["support", "sales"]
        assert moved.entered_at == early.entered_at
        assert [s.caller.number for s in await client.list_sessions("sales")] == ["high", "early", "low"]
        assert (await client.get_session(low.id)).position == 3
        assert (await client.get_session(high.id)).position == 1
        await fails(client.transfer(low.id, "nowhere"), NOT_FOUND)

    api.run(body)


def test_watch_queue_status(api):
    """Every queue at once, then a queue again when it changed (new queues too)."""

    async def body(client):
        await call_center(client, ready=False)
        watch = client.watch_queue_status(interval_ms=100)
        first = await anext(watch)
        assert (first.queue_id, first.stats.active_session_count) == ("sales", 0)
        await client.enqueue("sales")
        changed = await asyncio.wait_for(anext(watch), 2)
        assert (changed.queue_id, changed.stats.active_session_count) == ("sales", 1)
        await client.create_queue(id="support", name="Support")
        added = await asyncio.wait_for(anext(watch), 2)
        assert added.queue_id == "support"
        await watch.aclose()

    api.run(body)

