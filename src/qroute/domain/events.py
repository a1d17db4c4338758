"""Every event qroute emits, listed in one place.

An event names its entity (session, queue, recipient or webhook) and that entity's id,
and carries the fields a wallboard needs to follow the change without asking
for anything else. The event bus gives each one an account-wide ``sequence``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any


class Entity(IntEnum):
    SESSION = 1
    QUEUE = 2
    RECIPIENT = 3
    WEBHOOK = 4


_CALLER_FIELDS = ("queue_id", "caller_number", "callback", "entered_at_ms", "properties", "caller")

# type -> (entity, payload fields). Times are epoch milliseconds, durations *_ms.
CATALOG: dict[str, tuple[Entity, tuple[str, ...]]] = {
    # sessions
    "session.created": (Entity.SESSION, ("queue_id", "caller_number", "caller_name", "priority",
                                         "skills", "entered_at_ms", "position", "estimated_wait_ms",
                                         "properties", "seq", "callback")),
    "session.offered": (Entity.SESSION, ("queue_id", "recipient_id", "offer_id", "ring_timeout_ms")),
    "session.requeued": (Entity.SESSION, ("queue_id", "recipient_id", "offer_id", "outcome", "position")),
    "session.connected": (Entity.SESSION, ("queue_id", "recipient_id", "offer_id", "wait_ms", "ring_ms")),
    "session.transferred": (Entity.SESSION, ("queue_id", "from_queue_id", "reason", "entered_at_ms")),
    "session.abandoned": (Entity.SESSION, ("queue_id", "state", "wait_ms")),
    "session.timed_out": (Entity.SESSION, ("queue_id", "wait_ms", "redirect_queue_id")),
    "session.ended": (Entity.SESSION, ("queue_id", "recipient_id", "end_reason", "wait_ms", "ring_ms",
                                       "talk_ms", "queues_visited", "entered_at_ms", "estimated_wait_ms",
                                       "answered_at_ms")),
    # lined-up callers (CallbackService, seed 003): session events whose entity id is the caller's
    # id (the id of the session holding its place, when free); queue_id is its line, entered_at_ms
    # its line-up time, caller its whole record (CallbackCaller's fields; state, channel, lang...).
    # callback.notified: its turn nears (CALL_IN: send the SMS now; CALL_BACK: offered to a recipient)
    "callback.lined_up": (Entity.SESSION, _CALLER_FIELDS + ("position", "estimated_wait_ms")),
    "callback.notified": (Entity.SESSION, _CALLER_FIELDS + ("position", "estimated_wait_ms")),
    "callback.connected": (Entity.SESSION, _CALLER_FIELDS),
    "callback.deferred": (Entity.SESSION, _CALLER_FIELDS),
    "callback.updated": (Entity.SESSION, _CALLER_FIELDS),
    "callback.finished": (Entity.SESSION, _CALLER_FIELDS + ("reason",)),
    "callback.timed_out": (Entity.SESSION, _CALLER_FIELDS),
    # queues
    "queue.created": (Entity.QUEUE, ("config",)),
    "queue.updated": (Entity.QUEUE, ("config",)),
    "queue.deleted": (Entity.QUEUE, ()),
    "queue.member_added": (Entity.QUEUE, ("recipient_id", "tier", "weight")),
    "queue.member_removed": (Entity.QUEUE, ("recipient_id",)),
    "queue.session_joined": (Entity.QUEUE, ("session_id", "priority", "position", "estimated_wait_ms",
                                            "waiting_count")),
    "queue.session_left": (Entity.QUEUE, ("session_id", "reason", "wait_ms", "waiting_count")),
    # recipients
    "recipient.created": (Entity.RECIPIENT, ("config",)),
    "recipient.updated": (Entity.RECIPIENT, ("config",)),
    "recipient.deleted": (Entity.RECIPIENT, ()),
    "recipient.logged_in": (Entity.RECIPIENT, ("state", "source", "forced_by", "changed_by")),
    "recipient.logged_out": (Entity.RECIPIENT, ("previous_state", "source", "forced_by", "changed_by")),
    "recipient.state_changed": (Entity.RECIPIENT, ("state", "previous_state", "availability",
                                                   "unavailable_code", "queue_id", "source", "reason",
                                                   "forced_by", "changed_by",
                                                   # the routers' counters, as in the recipient's status
                                                   "calls_taken", "offers", "talk_ms", "idle_since_ms",
                                                   "consecutive_misses")),
    "recipient.offered": (Entity.RECIPIENT, ("session_id", "offer_id", "queue_id", "ring_timeout_ms",
                                             "caller_number", "caller_name", "hold_treatment")),
    "recipient.offer_cancelled": (Entity.RECIPIENT, ("session_id", "offer_id", "queue_id", "reason")),
    "recipient.missed": (Entity.RECIPIENT, ("session_id", "offer_id", "queue_id", "consecutive_misses")),
    "recipient.rejected": (Entity.RECIPIENT, ("session_id", "offer_id", "queue_id")),
    "recipient.connected": (Entity.RECIPIENT, ("session_id", "offer_id", "queue_id", "ring_ms")),
    "recipient.wrapup_started": (Entity.RECIPIENT, ("session_id", "queue_id", "talk_ms", "wrapup_ms")),
    "recipient.wrapup_ended": (Entity.RECIPIENT, ("session_id",)),
    # a threshold profile limit (seed 004's agent_threshold_profile) breached, once per breach, and
    # cleared; metric: wrapup, away, ringing (seconds in that state) or waiting_calls (in its queues)
    "recipient.threshold_exceeded": (Entity.RECIPIENT, ("profile", "metric", "reason", "limit", "value")),
    "recipient.threshold_cleared": (Entity.RECIPIENT, ("profile", "metric", "reason", "limit")),
    # webhooks: a delivery given up after the configured age (entity_id: the webhook)
    "webhook.failed": (Entity.WEBHOOK, ("delivery_id", "event_type", "event_sequence", "recipient_id",
                                        "attempts", "last_error", "queued_at_ms")),
}


# type -> the name of its entity as stored ("session", ...): read per event written
ENTITY_NAMES: dict[str, str] = {type_: entity.name.lower() for type_, (entity, _) in CATALOG.items()}


@dataclass(slots=True)
class DomainEvent:
    type: str
    entity_id: str
    time_ms: int
    data: dict[str, Any] = field(default_factory=dict)
    account_id: str = ""
    sequence: int = 0

    @property
    def entity(self) -> Entity:
        return CATALOG[self.type][0]
