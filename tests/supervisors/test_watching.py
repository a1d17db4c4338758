"""Supervisors watch their agents (seed 004): a supervisor's Connect stream
forces its agents (SetAvailability / Logout with a recipient_id) and
receives their state changes (supervised_state_changed), and a recipient
key's Subscribe delivers only events about its recipient and those it
supervises, never the rest of the account."""

from __future__ import annotations

import grpc

from qroute.client import ClientError
from qroute.v1 import common_pb2
from tests.api._util import fails
from tests.events._util import read_through, subscribe

from ._util import AGENT, OTHER, SUPERVISOR, newest, supervise, supervised_floor

S = common_pb2
EVENT_TIMEOUT = 5.0


async def next_watched(desk):
    """The next status of one of the desk's agents (skipping its own state changes)."""
    return (await desk.wait_for("supervised_state_changed", EVENT_TIMEOUT)).supervised_state_changed


def test_a_supervisor_desktop_forces_and_watches_its_agents(api):
    async def body(client):
        keys = await supervised_floor(api, client)
        async with api.client(keys[SUPERVISOR]) as sue_client:
            await fails(sue_client.agent(AGENT).__aenter__(), grpc.StatusCode.PERMISSION_DENIED)  # not as ann
            async with sue_client.agent(SUPERVISOR) as desk:
                # ann's own changes reach her supervisor's desk; bob's do not (ann's come next)
                await client.set_availability(OTHER, False)
                await client.set_availability(AGENT, False, unavailable_code="lunch")
                watched = await next_watched(desk)
                assert (watched.recipient_id, watched.unavailable_code) == (AGENT, "lunch")

                # forcing: the answer is the agent's status, the desk's own state is untouched
                status = await desk.set_availability(True, recipient_id=AGENT)
                assert (status.recipient_id, status.state) == (AGENT, S.RECIPIENT_STATE_READY)
                status = await desk.set_availability(False, unavailable_code="lunch", recipient_id=AGENT)
                assert (status.recipient_id, status.unavailable_code) == (AGENT, "lunch")
                assert (await client.recipient_status(SUPERVISOR)).state == S.RECIPIENT_STATE_LOGGED_OUT
                try:
                    await desk.logout(recipient_id=OTHER)
                    raise AssertionError("bob was logged out by someone who does not supervise him")
                except ClientError as error:
                    assert error.code == grpc.StatusCode.PERMISSION_DENIED
                    assert error.message == f"recipient {SUPERVISOR} does not supervise {OTHER}"
                status = await desk.logout(recipient_id=AGENT)
                assert (status.recipient_id, status.state) == (AGENT, S.RECIPIENT_STATE_LOGGED_OUT)
                assert (await client.recipient_status(OTHER)).state == S.RECIPIENT_STATE_AWAY

                # forced changes were answered, not sent twice: the next watched event is a new one
                await client.login(AGENT, ready=True)
                watched = await next_watched(desk)
                assert (watched.recipient_id, watched.state) == (AGENT, S.RECIPIENT_STATE_READY)

                # supervising bob from now on: his changes arrive too
                await supervise(client, SUPERVISOR, "support", [OTHER], how="Add")
                await client.set_availability(OTHER, True)
                watched = await next_watched(desk)
                assert (watched.recipient_id, watched.state) == (OTHER, S.RECIPIENT_STATE_READY)

                # the desk's own commands still answer with its own state
                assert (await desk.login(ready=True)).recipient_id == SUPERVISOR
        events = await read_through(subscribe(client, from_sequence=1), newest(api))
        forced = [e for e in events if e.recipient.changed_by]
        assert [(e.type, e.entity_id) for e in forced] == [
            ("recipient.state_changed", AGENT), ("recipient.state_changed", AGENT),
            ("recipient.logged_out", AGENT), ("recipient.state_changed", AGENT)]
        assert {e.recipient.changed_by for e in forced} == {SUPERVISOR}

    api.run(body)


def test_a_recipient_key_subscription_sees_only_its_agents(api):
    async def body(client):
        keys = await supervised_floor(api, client)
        await client.set_availability(OTHER, False)
        session = await client.enqueue("sales", caller_number="+15550100")  # only ann is ready: offered to her
        await client.set_availability(OTHER, True)
        await client.create_queue(id="later", name="Later")
        through = newest(api)
        everything = await read_through(subscribe(client, from_sequence=1), through)
        assert {e.recipient_id for e in everything} >= {AGENT, OTHER, SUPERVISOR, ""}  # the account sees all

        async with api.client(keys[SUPERVISOR]) as sue, api.client(keys[OTHER]) as bob:
            seen = await read_through(subscribe(sue, from_sequence=1), through)
            assert {e.recipient_id for e in seen} == {AGENT, SUPERVISOR}  # sue supervises ann
            assert ("session.offered", session.id) in {(e.type, e.entity_id) for e in seen}
            assert [e.sequence for e in seen] == [
                e.sequence for e in everything if e.recipient_id in (AGENT, SUPERVISOR)]

            seen = await read_through(subscribe(bob, from_sequence=1), through)
            assert {e.recipient_id for e in seen} == {OTHER}

            # the request's own filters narrow further, and cannot widen
            live = subscribe(sue, types=["recipient.state_changed"])
            mine = subscribe(sue, recipient_ids=[OTHER])
            await client.set_availability(OTHER, False)
            await client.set_availability(AGENT, False)
            await sue.login(SUPERVISOR)
            seen = await read_through(live, newest(api))
            assert [(e.type, e.entity_id) for e in seen] == [("recipient.state_changed", AGENT),
                                                             ("recipient.state_changed", SUPERVISOR)]
            assert await read_through(mine, newest(api)) == []

            # supervising bob from now on: his events are delivered from then on
            await supervise(client, SUPERVISOR, "support", [OTHER], how="Add")
            await client.set_availability(OTHER, True)
            seen = await read_through(live, newest(api))
            assert [(e.type, e.entity_id) for e in seen] == [("recipient.state_changed", OTHER)]

    api.run(body)
