"""Supervisors force their agents with recipient-scoped API keys (seed 004):
a supervisor's key sets its agents READY, AWAY with a code, or logs them
out, and each change names it (changed_by); a key of anyone else is refused
with PERMISSION_DENIED and nothing changes; an account-wide key keeps every
right; the keys and their scope survive a restart."""

from __future__ import annotations

import grpc

from qroute.v1 import common_pb2, queue_pb2, recipient_pb2
from tests.api._util import fails
from tests.events._util import read_through, subscribe

from ._util import AGENT, OTHER, SUPERVISOR, newest, supervise, supervised_floor

S = common_pb2
DENIED = grpc.StatusCode.PERMISSION_DENIED


async def events_after(client, sequence: int, api) -> list:
    return await read_through(subscribe(client, from_sequence=sequence + 1), newest(api))


def test_a_supervisor_key_forces_its_agent_and_the_events_name_it(api):
    async def body(client):
        keys = await supervised_floor(api, client)
        async with api.client(keys[SUPERVISOR]) as sue:
            before = newest(api)
            status = await sue.set_availability(AGENT, False, unavailable_code="lunch")
            assert (status.state, status.unavailable_code) == (S.RECIPIENT_STATE_AWAY, "lunch")
            assert (await sue.recipient_status(AGENT)).unavailable_code == "lunch"
            # supervision is per queue, forcing in any: ann's support availability too
            status = await sue.set_availability(AGENT, False, queue_id="support")
            assert dict(status.queue_availability)["support"] == S.AVAILABILITY_AWAY
            status = await sue.set_availability(AGENT, True)
            assert status.state == S.RECIPIENT_STATE_READY
            status = await sue.logout(AGENT)
            assert status.state == S.RECIPIENT_STATE_LOGGED_OUT
            # a code the agent may not give is refused for a supervisor too
            await client.login(AGENT, ready=True)
            await fails(sue.set_availability(AGENT, False, unavailable_code="golf"), grpc.StatusCode.INVALID_ARGUMENT)
            # logging an agent in is the agent's own business
            await client.logout(AGENT)
            error = await fails(sue.login(AGENT), DENIED)
            assert AGENT in error.message
            # its own state it changes as any agent does, not as a supervisor
            await sue.login(SUPERVISOR, ready=True)
        events = [e for e in await events_after(client, before, api) if e.entity_id in (AGENT, SUPERVISOR)]
        forced = [(e.type, e.recipient.changed_by, e.recipient.reason) for e in events]
        assert forced == [
            ("recipient.state_changed", SUPERVISOR, "availability"),        # away, lunch
            ("recipient.state_changed", SUPERVISOR, "queue_availability"),  # away for support
            ("recipient.state_changed", SUPERVISOR, "availability"),        # ready
            ("recipient.logged_out", SUPERVISOR, ""),
            ("recipient.state_changed", SUPERVISOR, "logout"),
            ("recipient.logged_in", "", ""),                                # the account key's
            ("recipient.state_changed", "", "login"),
            ("recipient.logged_out", "", ""),
            ("recipient.state_changed", "", "logout"),
            ("recipient.logged_in", "", ""),                                # sue herself
            ("recipient.state_changed", "", "login"),
        ]
        assert events[0].recipient.unavailable_code == "lunch" and events[0].recipient.source == S.EVENT_SOURCE_API

    api.run(body)


def test_anyone_else_is_refused_and_nothing_changes(api):
    async def body(client):
        keys = await supervised_floor(api, client)
        async with api.client(keys[OTHER]) as bob, api.client(keys[SUPERVISOR]) as sue:
            before = newest(api)
            error = await fails(bob.set_availability(AGENT, False, unavailable_code="lunch"), DENIED)
            assert error.message == f"recipient {OTHER} does not supervise {AGENT}"
            await fails(bob.logout(AGENT), DENIED)
            await fails(bob.recipient_status(AGENT), DENIED)
            await fails(bob.get_recipient(AGENT), DENIED)
            await fails(sue.set_availability(OTHER, False), DENIED)  # a supervisor, but not bob's
            await fails(sue.set_availability("nobody", False), DENIED)  # says nothing of who exists
            # nor may a recipient key make itself a supervisor, or do anything account-wide
            await fails(supervise(bob, OTHER, "sales", [AGENT]), DENIED)
            await fails(bob.create_queue(id="mine", name="Mine"), DENIED)
            await fails(bob.list_recipients(), DENIED)
            await fails(bob.enqueue("sales", caller_number="+15550100"), DENIED)
            await fails(bob._call(bob.recipients.ExecuteAction, recipient_pb2.ExecuteActionRequest(
                link_method=recipient_pb2.LINK_METHOD_PIN, action=recipient_pb2.RECIPIENT_ACTION_LOGOUT,
                pin="1234")), DENIED)
            await fails(bob._call(bob.queues.GetQueueStatus, queue_pb2.GetQueueStatusRequest(queue_id="sales")),
                        DENIED)
            await fails(bob.watch_queue_status().__anext__(), DENIED)
            await fails(sue.get_account(api.account_id), DENIED)
            assert newest(api) == before  # nothing emitted
            status = await client.recipient_status(AGENT)
            assert (status.state, status.unavailable_code) == (S.RECIPIENT_STATE_READY, "")
            # its own recipient it drives
            assert (await bob.set_availability(OTHER, False, unavailable_code="lunch")).unavailable_code == "lunch"
            assert (await bob.get_recipient(OTHER)).id == OTHER
            # once sue stops supervising ann, she is refused too
            await supervise(client, SUPERVISOR, "sales", [])
            await fails(sue.set_availability(AGENT, False), DENIED)
        # the account-wide key keeps every right
        assert (await client.set_availability(AGENT, False)).state == S.RECIPIENT_STATE_AWAY

    api.run(body)


def test_recipient_keys_survive_a_restart_and_unknown_recipients_get_none(api):
    keys: dict[str, str] = {}
    forced: list[int] = []  # the sequence of the forced change

    async def first(client):
        keys.update(await supervised_floor(api, client))
        async with api.admin() as admin:
            await fails(admin.create_api_key(api.account_id, "ghost", recipient_id="ghost"),
                        grpc.StatusCode.NOT_FOUND)
            listed = {key.description: key.recipient_id for key in await admin.list_api_keys(api.account_id)}
        assert listed == {"tests": "", "sue's desk": SUPERVISOR, "ann's desk": AGENT, "bob's desk": OTHER}

    async def after_restart(client):
        async with api.client(keys[SUPERVISOR]) as sue, api.client(keys[OTHER]) as bob:
            status = await sue.set_availability(AGENT, False, unavailable_code="lunch")
            assert status.unavailable_code == "lunch"
            await fails(bob.set_availability(AGENT, True), DENIED)
            await fails(bob.create_queue(id="mine", name="Mine"), DENIED)
        forced.append(newest(api))

    async def stored(client):  # a new node's ring is empty: the replay comes from storage
        events = await read_through(subscribe(client, from_sequence=forced[0]), forced[0])
        assert (events[0].type, events[0].recipient.changed_by) == ("recipient.state_changed", SUPERVISOR)

    api.run(first)
    api.run(after_restart)
    api.run(stored)
