"""CallbackService through a real server on a virtual clock (seed 003):
the issue's proof for callbacks, errors that name their field, and lined-up
callers surviving a restart."""

from __future__ import annotations

import grpc

from qroute.v1 import callback_pb2 as cb
from qroute.v1 import common_pb2, event_pb2, event_pb2_grpc
from tests.api._util import call_center, eventually, fails

CALL_IN, CALL_BACK = cb.CALLBACK_CHANNEL_CALL_IN, cb.CALLBACK_CHANNEL_CALL_BACK
PHONE = "+4917111112233"


async def first_event(client, type_: str) -> event_pb2.Event:
    """The account's first event of ``type_``, replayed from the start."""
    stub = event_pb2_grpc.EventServiceStub(client.channel)
    call = stub.Subscribe(event_pb2.SubscribeRequest(from_sequence=1, types=[type_]), metadata=client.metadata)
    try:
        async for batch in call:
            if batch.events:
                return batch.events[0]
    finally:
        call.cancel()


def test_a_call_in_caller_behind_ten_is_notified_calls_in_and_goes_before_later_callers(api):
    async def body(client):
        await call_center(client, recipients=("ann",), callback_lead_time=150)
        early = [(await client.enqueue("sales", caller_number=f"+1555010{n:04d}")).id for n in range(11)]
        async with client.agent("ann") as desk:
            offer = (await desk.wait_for("offer", timeout=5)).offer
            await desk.accept(offer.offer_id)
            offered = [offer.session.id]
            api.clock.advance(1_000)
            caller = await client.line_up_caller("sales", PHONE, CALL_IN, "Widget", lang="de",
                                                 properties={"crm": "c-7"})
            assert (caller.state, caller.session_id, caller.source) == (cb.CALLBACK_STATE_WAITING, "", "Widget")
            assert caller.ewt > 150 and caller.created_at.ToMilliseconds() == api.clock.now_ms()
            assert PHONE not in [s.caller.number for s in await client.list_sessions("sales")]
            api.clock.advance(1_000)
            late = [(await client.enqueue("sales", caller_number=f"+1555020{n:04d}")).id for n in range(3)]

            while (await client.get_caller("sales", PHONE)).state == cb.CALLBACK_STATE_WAITING:
                api.clock.advance(60_000)
                await desk.hangup(offered[-1])
                offer = (await desk.wait_for("offer", timeout=5)).offer
                await desk.accept(offer.offer_id)
                offered.append(offer.session.id)
            assert len(offered) < len(early)  # notified while callers who were ahead still wait
            verified = await client.verify_caller("sales", PHONE)
            assert verified.up and verified.caller.state == cb.CALLBACK_STATE_NOTIFIED
            assert verified.caller.notified_at.ToMilliseconds() == api.clock.now_ms()
            notice = await first_event(client, "callback.notified")
            assert (notice.session_id, notice.queue_id, notice.session.caller.number) == (caller.id, "sales", PHONE)
            assert notice.session.properties["crm"] == "c-7"

            connected = await client.notify_caller_connected("sales", PHONE)  # it called in
            assert connected.state == cb.CALLBACK_STATE_CONNECTED and connected.session_id == caller.id
            session = await client.get_session(connected.session_id)
            assert session.entered_at == caller.created_at and session.caller.number == PHONE
            assert session.position == 1 and session.priority == 1000
            api.clock.advance(60_000)
            await desk.hangup(offered[-1])
            offer = (await desk.wait_for("offer", timeout=5)).offer
            assert offer.session.id == caller.id and not offer.callback
            assert not set(late) & set(offered)  # offered before every caller who came after it lined up
            await desk.accept(offer.offer_id)
            api.clock.advance(5_000)
            done = await client.notify_caller_transferred("sales", PHONE, agent_id="ann")
            assert (done.state, done.agent_id) == (cb.CALLBACK_STATE_FINISHED, "ann")
            assert done.wait_time == (connected.connected_at.ToMilliseconds() - caller.created_at.ToMilliseconds()
                                      ) // 1000

    api.run(body)


def test_a_call_back_callers_offer_is_marked_as_a_callback(api):
    async def body(client):
        await call_center(client, recipients=("ann",), ready=False)
        caller = await client.line_up_caller("sales", PHONE, CALL_BACK, "Phone")
        assert caller.session_id == caller.id and caller.ewt == -1  # nobody serves yet
        session = await client.get_session(caller.session_id)
        assert session.callback and session.caller.number == PHONE and session.entered_at == caller.created_at
        async with client.agent("ann") as desk:
            await desk.set_availability(True)
            offer = (await desk.wait_for("offer", timeout=5)).offer
            assert offer.callback and offer.session.callback and offer.session.id == caller.session_id
            assert offer.session.caller.number == PHONE  # the desktop dials it
            assert (await client.get_caller("sales", PHONE)).state == cb.CALLBACK_STATE_NOTIFIED
            await desk.accept(offer.offer_id)
            got = await client.get_caller("sales", PHONE)
            assert (got.state, got.agent_id) == (cb.CALLBACK_STATE_CONNECTED, "ann")

            # nobody picked up: back in line at its place, offered again
            deferred = await client.update_caller_information(
                "sales", PHONE, service_state=common_pb2.SERVICE_STATE_DEFERRED)
            assert deferred.state == cb.CALLBACK_STATE_WAITING
            assert deferred.service_state == common_pb2.SERVICE_STATE_DEFERRED
            offer = (await desk.wait_for("offer", timeout=5)).offer
            assert offer.callback and offer.session.entered_at == caller.created_at
            await desk.accept(offer.offer_id)
            await desk.hangup(offer.session.id)
            assert (await client.get_caller("sales", PHONE)).state == cb.CALLBACK_STATE_FINISHED

    api.run(body)


def test_a_notified_caller_who_does_not_call_in_times_out(api):
    async def body(client):
        await call_center(client, recipients=("ann",), callback_window=60)
        caller = await client.line_up_caller("sales", PHONE, CALL_IN, "App")
        assert caller.state == cb.CALLBACK_STATE_NOTIFIED and caller.ewt == 0  # up at once: ann is free
        api.clock.advance(60_000)

        async def timed_out():
            return (await client.get_caller("sales", PHONE)).state == cb.CALLBACK_STATE_TIME_OUT

        await eventually(timed_out)  # the next tick's pass
        assert not (await client.verify_caller("sales", PHONE)).up
        await fails(client.notify_caller_connected("sales", PHONE), grpc.StatusCode.FAILED_PRECONDITION)
        assert (await first_event(client, "callback.timed_out")).session_id == caller.id

    api.run(body)


def test_errors_name_their_field(api):
    async def body(client):
        queue = await client.get_queue((await call_center(client, recipients=())).id)
        assert (queue.callback_lead_time, queue.callback_window) == (120, 600)
        error = await fails(client.update_queue("sales", callback_window=5), grpc.StatusCode.INVALID_ARGUMENT)
        assert error.fields == ["queue.callback_window"]
        for phone in ("4917111112233", "+0917111112233", "+1234567", "+49 171 111122"):
            error = await fails(client.line_up_caller("sales", phone, CALL_IN), grpc.StatusCode.INVALID_ARGUMENT)
            assert error.fields == ["phone"]
        error = await fails(client.line_up_caller("sales", PHONE, 0, ""), grpc.StatusCode.INVALID_ARGUMENT)
        assert error.fields == ["channel", "source"]
        error = await fails(client.line_up_caller("sales", PHONE, CALL_IN, "Fax"), grpc.StatusCode.INVALID_ARGUMENT)
        assert error.fields == ["source"]
        error = await fails(client.line_up_caller("nope", PHONE, CALL_IN), grpc.StatusCode.NOT_FOUND)
        assert "line nope" in error.message
        await fails(client.list_callers_waiting("nope"), grpc.StatusCode.NOT_FOUND)
        await fails(client.get_caller("sales", PHONE), grpc.StatusCode.NOT_FOUND)
        missing = await client.verify_caller("sales", PHONE)
        assert not missing.up and not missing.HasField("caller")
        assert await client.list_callers_waiting() == []

        first = await client.line_up_caller("sales", PHONE, CALL_BACK, request_id="r1")
        again = await client.line_up_caller("sales", PHONE, CALL_BACK, request_id="r1")  # a retry: same answer
        assert again.id == first.id
        await fails(client.line_up_caller("sales", PHONE, CALL_IN), grpc.StatusCode.ALREADY_EXISTS)
        await fails(client.notify_caller_connected("sales", PHONE), grpc.StatusCode.FAILED_PRECONDITION)
        error = await fails(client.update_caller_information("sales", PHONE, talk_time=-1),
                            grpc.StatusCode.INVALID_ARGUMENT)
        assert error.fields == ["talk_time"]
        assert len(await client.list_callers_waiting("sales")) == 1
        assert len(await client.list_sessions("sales")) == 1  # nothing half-done by the refusals

    api.run(body)


def test_lined_up_callers_survive_a_restart(api):
    ids = {}

    async def before(client):
        await call_center(client, recipients=("ann",), ready=False)
        for n, channel in enumerate((CALL_BACK, CALL_IN, CALL_IN, CALL_BACK)):
            caller = await client.line_up_caller("sales", f"+1555000000{n}", channel, lang="en", skills=["en"])
            ids[n] = caller.id
            api.clock.advance(1_000)
        await client.update_caller_information("sales", "+15550000002", service_state=common_pb2.SERVICE_STATE_CANCELED)
        waiting = await client.list_callers_waiting("sales")
        assert [c.id for c in waiting] == [ids[0], ids[1], ids[3]]
        ids["listed"] = [(c.id, c.state, c.ewt, c.created_at.ToMilliseconds(), c.session_id) for c in waiting]

    async def after(client):
        waiting = await client.list_callers_waiting()
        assert [(c.id, c.state, c.ewt, c.created_at.ToMilliseconds(), c.session_id) for c in waiting] == ids["listed"]
        assert waiting[1].skills == ["en"] and waiting[1].lang == "en"
        assert (await client.get_caller("sales", "+15550000002")).state == cb.CALLBACK_STATE_FINISHED
        again = await client.line_up_caller("sales", "+15550000002", CALL_IN)  # its last line-up is over
        assert again.id != ids[2]
        async with client.agent("ann") as desk:  # the call-back's session kept its place
            await desk.set_availability(True)
            offer = (await desk.wait_for("offer", timeout=5)).offer
            assert offer.callback and offer.session.id == ids[0]
            assert (await client.get_caller("sales", "+15550000000")).state == cb.CALLBACK_STATE_NOTIFIED

    api.run(before)
    api.run(after)
