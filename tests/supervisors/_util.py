"""The supervisor tests' floor: queues sales and support; sue supervises ann
(in sales); bob is nobody's; ann and bob are members of both queues, logged
in READY, and may give the code "lunch" with AWAY. Each recipient gets its
own recipient-scoped API key."""

from __future__ import annotations

from qroute.v1 import recipient_pb2

SUPERVISOR, AGENT, OTHER = "sue", "ann", "bob"


async def supervised_floor(api, client) -> dict[str, str]:
    """Set the floor up (see the module docstring); returns recipient id -> its key."""
    for queue_id in ("sales", "support"):
        await client.create_queue(id=queue_id, name=queue_id.title())
    for recipient_id in (SUPERVISOR, AGENT, OTHER):
        await client.create_recipient(id=recipient_id, name=recipient_id.title(), unavailable_codes=["lunch"])
    for queue_id in ("sales", "support"):
        await client.add_members(queue_id, [AGENT, OTHER])
    await supervise(client, SUPERVISOR, "sales", [AGENT])
    for recipient_id in (AGENT, OTHER):
        await client.login(recipient_id, ready=True)
    keys = {}
    async with api.admin() as admin:
        for recipient_id in (SUPERVISOR, AGENT, OTHER):
            key = await admin.create_api_key(api.account_id, f"{recipient_id}'s desk", recipient_id=recipient_id)
            assert key.recipient_id == recipient_id
            keys[recipient_id] = key.secret
    return keys


async def supervise(client, supervisor_id: str, queue_id: str, recipient_ids, how: str = "Set"):
    request = getattr(recipient_pb2, f"{how}SupervisedRecipientsRequest")(
        supervisor_id=supervisor_id, queue_id=queue_id, recipient_ids=list(recipient_ids))
    return await client._call(getattr(client.recipients, f"{how}SupervisedRecipients"), request)


def newest(api) -> int:
    """The account's newest event sequence."""
    return api.running.node.journal.sequences.get(api.account_id, 0)
