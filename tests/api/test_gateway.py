"""ConnectGateway: many agent desktops on one stream, in batches, each
behaving as it would on its own Connect stream."""

import asyncio

import grpc

from qroute.client import ClientError
from qroute.v1 import common_pb2 as v1
from qroute.v1 import recipient_pb2, recipient_pb2_grpc
from tests.supervisors._util import AGENT, SUPERVISOR, supervised_floor

from ._util import call_center, eventually, fails

Command = recipient_pb2.AgentCommand


def test_the_life_of_a_call_on_a_gateway(api):
    """Offer, accept, hang-up, wrap-up, finish: as on Connect, each event naming its desktop."""

    async def body(client):
        await call_center(client, agent_wrapup_time=600)
        async with client.gateway() as gateway, gateway.desktop("ann") as desk:
            assert desk.status.state == v1.RECIPIENT_STATE_READY
            session = await client.enqueue("sales", caller_number="+15550100", properties={"crm_id": "A-17"})
            event = await desk.wait_for("offer", timeout=2)
            assert event.recipient_id == "ann"
            offer = event.offer
            assert offer.session.id == session.id and dict(offer.session.properties) == {"crm_id": "A-17"}
            status = await desk.accept(offer.offer_id)
            assert status.state == v1.RECIPIENT_STATE_BUSY and status.current_session_id == session.id
            status = await desk.hangup(session.id)
            assert status.state == v1.RECIPIENT_STATE_WRAPUP and status.calls_taken == 1
            status = await desk.finish_wrapup()
            assert status.state == v1.RECIPIENT_STATE_READY
            ended = await client.get_session(session.id)
            assert ended.state == v1.SESSION_STATE_ENDED and ended.end_reason == v1.END_REASON_COMPLETED
            await fails(desk.finish_wrapup(), grpc.StatusCode.FAILED_PRECONDITION)  # answered, stream goes on
            assert (await desk.set_availability(False, unavailable_code="")).state == v1.RECIPIENT_STATE_AWAY

    api.run(body)


def test_many_desktops_share_one_stream_and_batch(api):
    """Commands given together go out as one batch, are applied in order and
    each answered once; every desktop sees only its own offers."""
    agents = [f"agent-{i}" for i in range(20)]

    async def body(client):
        await call_center(client, recipients=agents, ring_timeout=30, agent_wrapup_time=600)
        async with client.gateway() as gateway:
            desks = await asyncio.gather(*(gateway.desktop(a) for a in agents))
            assert {d.status.recipient_id for d in desks} == set(agents)
            sessions = [await client.enqueue("sales", caller_number=f"+1555010{i:02d}") for i in range(20)]
            offers = await asyncio.gather(*(d.wait_for("offer", timeout=3) for d in desks))
            assert [e.recipient_id for e in offers] == agents
            assert {e.offer.session.id for e in offers} == {s.id for s in sessions}
            statuses = await asyncio.gather(*(d.accept(e.offer.offer_id) for d, e in zip(desks, offers)))
            assert [s.recipient_id for s in statuses] == agents
            assert all(s.state == v1.RECIPIENT_STATE_BUSY for s in statuses)
            ends = await asyncio.gather(*(d.hangup(e.offer.session.id) for d, e in zip(desks, offers)))
            assert all(s.state == v1.RECIPIENT_STATE_WRAPUP for s in ends)
            # a desk may not end another's call: one bad command among good ones fails alone
            results = await asyncio.gather(desks[0].finish_wrapup(), desks[1].hangup(offers[0].offer.session.id),
                                           desks[2].finish_wrapup(), return_exceptions=True)
            assert results[0].state == results[2].state == v1.RECIPIENT_STATE_READY
            assert isinstance(results[1], ClientError) and results[1].code == grpc.StatusCode.INVALID_ARGUMENT
        assert (await client.queue_status("sales")).stats.total_sessions == 20

    api.run(body)


def test_gateway_commands_are_checked(api):
    """A command names a desktop that said hello here; hello names a known recipient, once."""

    async def body(client):
        await call_center(client, recipients=("ann", "bob"))
        stub = recipient_pb2_grpc.RecipientServiceStub(client.channel)
        call = stub.ConnectGateway(metadata=client.metadata)
        await call.write(recipient_pb2.AgentCommandBatch(commands=[
            Command(command_id="1", recipient_id="ann", finish_wrapup=Command.FinishWrapup()),
            Command(command_id="2", finish_wrapup=Command.FinishWrapup()),
            Command(command_id="3", hello=Command.Hello(recipient_id="ghost")),
            Command(command_id="4", recipient_id="bob", hello=Command.Hello(recipient_id="ann")),
            Command(command_id="5", hello=Command.Hello(recipient_id="ann")),
            Command(command_id="6", recipient_id="ann", hello=Command.Hello(recipient_id="ann")),
            Command(command_id="7", recipient_id="ann"),
        ]))
        answers = {}
        while len(answers) < 7:
            batch = await call.read()
            for event in batch.events:
                if event.correlation:
                    answers[event.correlation] = event
        errors = {key: (e.error.code, e.error.message) for key, e in answers.items() if e.HasField("error")}
        assert errors["1"][0] == grpc.StatusCode.FAILED_PRECONDITION.value[0] and "hello first" in errors["1"][1]
        assert errors["2"][0] == grpc.StatusCode.INVALID_ARGUMENT.value[0] and "recipient_id" in errors["2"][1]
        assert errors["3"][0] == grpc.StatusCode.NOT_FOUND.value[0]
        assert errors["4"][0] == grpc.StatusCode.INVALID_ARGUMENT.value[0] and "recipient_id" in errors["4"][1]
        assert "5" not in errors and answers["5"].state_changed.recipient_id == "ann"
        assert answers["5"].recipient_id == "ann"
        assert errors["6"][0] == grpc.StatusCode.INVALID_ARGUMENT.value[0] and "hello" in errors["6"][1]
        assert errors["7"][0] == grpc.StatusCode.INVALID_ARGUMENT.value[0] and "command" in errors["7"][1]
        call.cancel()

    api.run(body)


def test_goodbye_while_ringing_is_a_miss_and_the_stream_goes_on(api):
    async def body(client):
        await call_center(client, recipients=("ann", "bob"), ring_timeout=30, router=v1.ROUTER_LINEAR,
                          recipient_fields={"bounced_call_limit": 1})
        async with client.gateway() as gateway:
            ann = await gateway.desktop("ann")
            session = await client.enqueue("sales")
            await ann.wait_for("offer", timeout=2)
            await ann.close()  # goodbye: the desktop goes away while its phone rings
            await fails(ann.finish_wrapup(), grpc.StatusCode.CANCELLED)
            status = await client.recipient_status("ann")
            assert status.state == v1.RECIPIENT_STATE_AWAY and status.unavailable_code == "bounced"
            assert (await client.queue_status("sales")).stats.missed_sessions == 1
            async with gateway.desktop("bob") as bob:  # the same stream serves the others
                offer = (await bob.wait_for("offer", timeout=2)).offer
                assert offer.session.id == session.id
                await bob.accept(offer.offer_id)

    api.run(body)


def test_a_gateway_that_drops_drops_its_desktops(api):
    async def body(client):
        await call_center(client, ring_timeout=30, recipient_fields={"bounced_call_limit": 1})
        gateway = client.gateway()
        await gateway.desktop("ann")
        session = await client.enqueue("sales")
        await gateway.desktops["ann"].wait_for("offer", timeout=2)
        await gateway.close()

        async def missed():
            status = await client.recipient_status("ann")
            return status if status.state == v1.RECIPIENT_STATE_AWAY else None

        assert (await eventually(missed, timeout=2)).unavailable_code == "bounced"
        assert (await client.get_session(session.id)).state == v1.SESSION_STATE_WAITING

    api.run(body)


def test_a_newer_desktop_takes_over_from_a_gateway(api):
    """Connect for a recipient on a gateway: the gateway's desktop gets ABORTED
    and is detached, the others on the stream go on, nothing is missed."""

    async def body(client):
        await call_center(client, recipients=("ann", "bob"), ring_timeout=30, router=v1.ROUTER_LINEAR)
        async with client.gateway() as gateway:
            ann, bob = await gateway.desktop("ann"), await gateway.desktop("bob")
            session = await client.enqueue("sales")
            offer = (await ann.wait_for("offer", timeout=2)).offer
            async with client.agent("ann") as newer:
                assert (await newer.wait_for("offer", timeout=2)).offer.offer_id == offer.offer_id
                error = await fails(ann.wait_for("offer", timeout=2), grpc.StatusCode.ABORTED)
                assert "another desktop" in error.message
                await fails(ann.accept(offer.offer_id), grpc.StatusCode.ABORTED)
                await newer.accept(offer.offer_id)
                assert (await bob.set_availability(False)).state == v1.RECIPIENT_STATE_AWAY
                assert (await client.get_session(session.id)).recipient_id == "ann"
                # and back: a gateway hello takes over from the Connect stream
                again = await gateway.desktop("ann")
                assert again.status.state == v1.RECIPIENT_STATE_BUSY
                await fails(newer.wait_for("offer", timeout=2), grpc.StatusCode.ABORTED)
            assert (await client.queue_status("sales")).stats.missed_sessions == 0

    api.run(body)


def test_goodbye_on_connect_ends_the_stream(api):
    async def body(client):
        await call_center(client)
        async with client.agent("ann") as desk:
            status = await desk._command(Command(goodbye=Command.Goodbye()))
            assert status.recipient_id == "ann"
            await fails(desk.next_event(timeout=2), grpc.StatusCode.CANCELLED)

    api.run(body)


def test_a_gateway_needs_an_account_wide_key(api):
    async def body(client):
        keys = await supervised_floor(api, client)
        for key in (keys[SUPERVISOR], keys[AGENT]):
            async with api.client(key) as scoped:
                gateway = scoped.gateway()
                await fails(gateway.desktop(AGENT), grpc.StatusCode.PERMISSION_DENIED)
                await gateway.close()

    api.run(body)
