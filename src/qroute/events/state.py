"""The durable state each event stands for, as storage ops.

Storage is written from events, so a change is durable exactly when its
event is: the engine never talks to storage itself.
"""

from __future__ import annotations

from qroute.domain.events import DomainEvent
from qroute.storage import DeleteConfig, DeleteMembership, Op, PutConfig, PutMembership


def state_ops(event: DomainEvent) -> list[Op]:
    """The storage changes an event stands for (configuration, for now)."""
    account, kind, entity_id = event.account_id, event.type.partition(".")[0], event.entity_id
    action = event.type.partition(".")[2]
    if action in ("created", "updated") and kind in ("queue", "recipient"):
        return [PutConfig(account, kind, entity_id, event.data["config"])]
    if action == "deleted" and kind in ("queue", "recipient"):
        return [DeleteConfig(account, kind, entity_id)]
    if event.type == "queue.member_added":
        doc = {"tier": event.data["tier"], "weight": event.data["weight"]}
        return [PutMembership(account, entity_id, event.data["recipient_id"], doc)]
    if event.type == "queue.member_removed":
        return [DeleteMembership(account, entity_id, event.data["recipient_id"])]
    return []
