"""Membership as the agent sees it (the seed's call_centers), outgoing
identity (DNIS) and supervised-agent search, through the real server."""

from __future__ import annotations

import grpc

from qroute.v1 import common_pb2, recipient_pb2
from tests.api._util import fails

from ._helpers import call, dnis

OUTGOING_REQUIRED = ("Outgoing Call Center is required when make outgoing call as call center is enabled.")


def test_self_join_and_the_call_centers_view(api):
    async def body(client):
        await client.create_queue(id="open", name="Open", allow_self_join=True)
        await client.create_queue(id="closed", name="Closed")
        await client.create_queue(id="other", name="Other", allow_self_join=True)
        await client.create_recipient(id="ann", name="Ann")
        await client.add_members("closed", [common_pb2.Member(recipient_id="ann", tier=3)])
        joinable = await call(client, "ListJoinableQueues", recipient_id="ann")
        assert [(q.queue_id, q.name) for q in joinable.queues] == [("open", "Open"), ("other", "Other")]
        error = await fails(call(client, "SetRecipientQueues", recipient_id="ann", queue_ids=["open", "new"]),
                            grpc.StatusCode.NOT_FOUND)
        assert "new" in error.message
        queues = await call(client, "GetRecipientQueues", recipient_id="ann")
        assert [q.queue_id for q in queues.queues] == ["closed"]  # nothing half-applied
        await client.remove_members("closed", ["ann"])
        await fails(call(client, "SetRecipientQueues", recipient_id="ann", queue_ids=["open", "closed"]),
                    grpc.StatusCode.FAILED_PRECONDITION)
        assert not (await call(client, "GetRecipientQueues", recipient_id="ann")).queues
        await client.add_members("closed", [common_pb2.Member(recipient_id="ann", tier=3)])
        changed = await call(client, "SetRecipientQueues", recipient_id="ann", queue_ids=["open", "other"])
        assert [(q.queue_id, q.tier, q.log_off_allowed) for q in changed.queues] == [
            ("open", 1, True), ("closed", 3, False), ("other", 1, True)]
        await client.login("ann", ready=True)
        await client.set_availability("ann", False, queue_id="other")
        queues = await call(client, "GetRecipientQueues", recipient_id="ann")
        assert [(q.queue_id, q.available) for q in queues.queues] == [
            ("open", True), ("closed", True), ("other", False)]
        # the full list each time: leaving "open", keeping the admin's "closed"
        changed = await call(client, "SetRecipientQueues", recipient_id="ann", queue_ids=["other"])
        assert [q.queue_id for q in changed.queues] == ["closed", "other"]
        assert [m.recipient_id for m in await client.list_members("open")] == []
        joinable = await call(client, "ListJoinableQueues", recipient_id="ann")
        assert [q.queue_id for q in joinable.queues] == ["open"]

    api.run(body)


def test_outgoing_identity_needs_a_dnis(api):
    async def body(client):
        queue = await client.create_queue(id="support", name="Support", dnis=[
            dnis("+3225126778", "Support line"), dnis("+3225126779", "Support VIP")])
        assert [(d.number, d.name, d.queue_id) for d in queue.dnis] == [
            ("+3225126778", "Support line", "support"), ("+3225126779", "Support VIP", "support")]
        error = await fails(client.create_queue(id="dup", name="Dup", dnis=[dnis("1"), dnis("1")]),
                            grpc.StatusCode.INVALID_ARGUMENT)
        assert error.fields == ["queue.dnis[1].number"]
        error = await fails(client.create_recipient(id="ann", make_outgoing_calls_as_call_center=True),
                            grpc.StatusCode.INVALID_ARGUMENT)
        assert error.fields == ["recipient.outgoing_call_dnis"]
        assert OUTGOING_REQUIRED in error.message
        error = await fails(client.create_recipient(id="ann", make_outgoing_calls_as_call_center=True,
                                                    outgoing_call_dnis="+1555"), grpc.StatusCode.INVALID_ARGUMENT)
        assert error.fields == ["recipient.outgoing_call_dnis"]
        ann = await client.create_recipient(id="ann", make_outgoing_calls_as_call_center=True,
                                            outgoing_call_dnis="+3225126779")
        assert ann.outgoing_call_dnis == "+3225126779"
        await client.add_members("support", ["ann"])
        offered = await call(client, "ListRecipientDnis", recipient_id="ann")
        assert [d.number for d in offered.dnis] == ["+3225126778", "+3225126779"]
        # clearing the DNIS while the flag is on is refused the same way
        error = await fails(client.update_recipient("ann", outgoing_call_dnis=""), grpc.StatusCode.INVALID_ARGUMENT)
        assert error.fields == ["recipient.outgoing_call_dnis"]

    api.run(body)


def _criterion(field, mode, value, insensitive=False):
    return recipient_pb2.RecipientSearchCriterion(
        field=getattr(recipient_pb2, f"SEARCH_FIELD_{field}"), mode=getattr(recipient_pb2, f"SEARCH_MODE_{mode}"),
        value=value, case_insensitive=insensitive)


def test_supervised_agents_and_their_search(api):
    async def body(client):
        await client.create_queue(id="sales", name="Sales")
        await client.create_recipient(id="boss", name="The Boss")
        await client.create_recipient(id="u1", first_name="Test1", last_name="Test1", extension_name="5001")
        await client.create_recipient(id="u2", name="Anna Tester", extension_name="5002")
        await client.create_recipient(id="x3", first_name="Bob", last_name="Builder", extension_name="6003")
        listed = await call(client, "SetSupervisedRecipients", supervisor_id="boss", queue_id="sales",
                            recipient_ids=["x3", "u1"])
        assert [r.recipient_id for r in listed.recipients] == ["u1", "x3"]
        listed = await call(client, "AddSupervisedRecipients", supervisor_id="boss", queue_id="sales",
                            recipient_ids=["u2", "u1"])
        assert [r.recipient_id for r in listed.recipients] == ["u1", "u2", "x3"]
        assert (listed.recipients[1].first_name, listed.recipients[1].last_name) == ("Anna", "Tester")
        await fails(call(client, "AddSupervisedRecipients", supervisor_id="boss", queue_id="sales",
                         recipient_ids=["ghost"]), grpc.StatusCode.NOT_FOUND)

        async def search(*criteria, combine_with_or=False, limit=0):
            found = await call(client, "GetSupervisedRecipients", supervisor_id="boss", queue_id="sales",
                               criteria=criteria, combine_with_or=combine_with_or, response_size_limit=limit)
            return [r.recipient_id for r in found.recipients]

        assert await search() == ["u1", "u2", "x3"]
        assert await search(_criterion("LAST_NAME", "STARTS", "Test")) == ["u1", "u2"]
        assert await search(_criterion("LAST_NAME", "STARTS", "test")) == []  # case-sensitive
        assert await search(_criterion("LAST_NAME", "STARTS", "test", True)) == ["u1", "u2"]
        assert await search(_criterion("FIRST_NAME", "EQUALS", "anna", True)) == ["u2"]
        assert await search(_criterion("FIRST_NAME", "CONTAINS", "o")) == ["x3"]
        assert await search(_criterion("USER_ID", "STARTS", "u"), _criterion("EXTENSION", "EQUALS", "5002")) == ["u2"]
        assert await search(_criterion("USER_ID", "EQUALS", "U1", True), _criterion("EXTENSION", "CONTAINS", "60"),
                            combine_with_or=True) == ["u1", "x3"]
        assert await search(_criterion("EXTENSION", "STARTS", "5"), limit=1) == ["u1"]
        error = await fails(search(combine_with_or=True), grpc.StatusCode.INVALID_ARGUMENT)
        assert error.fields == ["criteria"]
        error = await fails(search(recipient_pb2.RecipientSearchCriterion(value="x")),
                            grpc.StatusCode.INVALID_ARGUMENT)
        assert error.fields == ["criteria[0].field", "criteria[0].mode"]
        listed = await call(client, "RemoveSupervisedRecipients", supervisor_id="boss", queue_id="sales",
                            recipient_ids=["u1", "nobody"])
        assert [r.recipient_id for r in listed.recipients] == ["u2", "x3"]

    api.run(body)

    async def after_restart(client):  # the list is stored
        found = await call(client, "GetSupervisedRecipients", supervisor_id="boss", queue_id="sales")
        assert [r.recipient_id for r in found.recipients] == ["u2", "x3"]

    api.run(after_restart)
