"""``qroute.v1`` messages to domain values and back. Nothing else."""

from __future__ import annotations

import dataclasses
from typing import Any

from google.protobuf import json_format, struct_pb2, timestamp_pb2

from qroute.domain.config import Dnis, Member, QueueConfig, RecipientConfig, TierRule
from qroute.domain.enums import AgentType, Availability, Router, SessionState
from qroute.errors import InvalidArgument
from qroute.v1 import common_pb2, queue_pb2, recipient_pb2, session_pb2

QUEUE_DEFAULTS = QueueConfig(id="", name="")
RECIPIENT_DEFAULTS = RecipientConfig(id="")
READ_ONLY = {"id", "create_time", "update_time"}


def timestamp(ms: int) -> timestamp_pb2.Timestamp | None:
    if not ms:
        return None
    stamp = timestamp_pb2.Timestamp()
    stamp.FromMilliseconds(ms)
    return stamp


_STAMP_MIN_MS, _STAMP_MAX_MS = -62_135_596_800_000, 253_402_300_799_999  # 0001-01-01 .. 9999-12-31


def stamp(ms: int) -> dict[str, int] | None:
    """``timestamp(ms)`` as a constructor takes it for a Timestamp field: on
    paths that run per event or per call it costs a fraction of a message."""
    if not ms:
        return None
    if not _STAMP_MIN_MS <= ms <= _STAMP_MAX_MS:
        return timestamp(ms)  # raises as FromMilliseconds does
    seconds, millis = divmod(ms, 1000)
    return {"seconds": seconds, "nanos": millis * 1_000_000}


def struct(values: dict[str, Any]) -> struct_pb2.Struct:
    message = struct_pb2.Struct()
    if values:
        message.update(values)
    return message


def plain(message: struct_pb2.Struct) -> dict[str, Any]:
    if not message.fields:  # most requests carry none: MessageToDict costs microseconds even then
        return {}
    return json_format.MessageToDict(message)


def _enum(enum_cls, value: int, default):
    """The enum member, or the unknown number itself: the domain's validation
    names it together with every other bad field of the request."""
    if value == 0:
        return default
    try:
        return enum_cls(value)
    except ValueError:
        return value


def _mask_paths(message, update_mask, allowed: set[str], prefix: str) -> list[str]:
    """The fields an update names: its mask, or every field set when the mask is empty."""
    paths = list(update_mask.paths) if update_mask is not None else []
    if not paths:
        paths = [field.name for field, _ in message.ListFields() if field.name not in READ_ONLY]
    problems = [("update_mask", f"{prefix}{path} cannot be updated") for path in paths
                if path in READ_ONLY or path not in allowed]
    if problems:
        raise InvalidArgument(*problems)
    return paths


# ---------------------------------------------------------------- queues

QUEUE_FIELDS = {f.name for f in dataclasses.fields(QueueConfig)} - {"create_time_ms", "update_time_ms"}


def queue_value(message: queue_pb2.Queue, field: str) -> Any:
    if field == "router":
        return _enum(Router, message.router, Router.ROUND_ROBIN)
    if field == "tier_expansion":
        return tuple(TierRule(rule.after_seconds, rule.max_tier) for rule in message.tier_expansion)
    if field == "dnis":
        return tuple(Dnis(d.number, d.name) for d in message.dnis)
    if field in ("ring_timeout", "tick_time", "timeout", "callback_lead_time", "callback_window") \
            and not message.HasField(field):
        return getattr(QUEUE_DEFAULTS, field)
    return getattr(message, field)


def queue_config(message: queue_pb2.Queue) -> QueueConfig:
    return QueueConfig(**{field: queue_value(message, field) for field in QUEUE_FIELDS})


def queue_changes(message: queue_pb2.Queue, update_mask) -> dict[str, Any]:
    paths = _mask_paths(message, update_mask, QUEUE_FIELDS, "queue.")
    return {path: queue_value(message, path) for path in paths}


def queue_message(config: QueueConfig) -> queue_pb2.Queue:
    return queue_pb2.Queue(
        id=config.id, name=config.name, router=int(config.router),
        agent_wrapup_time=config.agent_wrapup_time, force_away_on_reject=config.force_away_on_reject,
        hold_treatment=config.hold_treatment, ring_timeout=config.ring_timeout, tick_time=config.tick_time,
        timeout=config.timeout, timeout_if_size_exceeds=config.timeout_if_size_exceeds,
        timeout_immediately_if_empty=config.timeout_immediately_if_empty,
        timeout_redirect=config.timeout_redirect,
        tier_expansion=[common_pb2.TierExpansion(after_seconds=r.after_seconds, max_tier=r.max_tier)
                        for r in config.tier_expansion],
        create_time=timestamp(config.create_time_ms), update_time=timestamp(config.update_time_ms),
        allow_self_join=config.allow_self_join,
        dnis=[dnis_message(d, config.id) for d in config.dnis],
        callback_lead_time=config.callback_lead_time, callback_window=config.callback_window)


def dnis_message(dnis: Dnis, queue_id: str) -> common_pb2.QueueDnis:
    return common_pb2.QueueDnis(number=dnis.number, name=dnis.name, queue_id=queue_id)


def queue_status_message(status: dict[str, Any], node: str, now_ms: int) -> queue_pb2.QueueStatus:
    return queue_pb2.QueueStatus(
        queue_id=status["queue_id"], active_recipient_count=status["active_recipient_count"],
        available_recipient_count=status["available_recipient_count"], node=node, time=timestamp(now_ms),
        stats=queue_pb2.QueueStats(
            estimated_wait=status["estimated_wait"], average_wait=status["average_wait"],
            recipient_count=status["recipient_count"], active_session_count=status["active_session_count"],
            total_sessions=status["total_sessions"], missed_sessions=status["missed_sessions"],
            abandoned_sessions=status["abandoned_sessions"], longest_wait=status["longest_wait"]))


def members(messages) -> list[Member]:
    return [Member(m.recipient_id, m.tier or 1, m.weight) for m in messages]


def member_message(member: Member) -> common_pb2.Member:
    return common_pb2.Member(recipient_id=member.recipient_id, tier=member.tier, weight=member.weight)


# ------------------------------------------------------------ recipients

RECIPIENT_FIELDS = {f.name for f in dataclasses.fields(RecipientConfig)} - {"create_time_ms", "update_time_ms"}


def recipient_value(message: recipient_pb2.Recipient, field: str) -> Any:
    if field == "agent_type":
        return _enum(AgentType, message.agent_type, AgentType.LOCAL)
    if field == "skills":
        return dict(message.skills)
    if field in ("caller_ids", "unavailable_codes"):
        return tuple(getattr(message, field))
    return getattr(message, field)


def recipient_config(message: recipient_pb2.Recipient) -> RecipientConfig:
    return RecipientConfig(**{field: recipient_value(message, field) for field in RECIPIENT_FIELDS})


def recipient_changes(message: recipient_pb2.Recipient, update_mask) -> dict[str, Any]:
    paths = _mask_paths(message, update_mask, RECIPIENT_FIELDS, "recipient.")
    return {path: recipient_value(message, path) for path in paths}


def recipient_message(config: RecipientConfig) -> recipient_pb2.Recipient:
    doc = config.to_doc()
    doc.pop("create_time_ms")
    doc.pop("update_time_ms")
    doc["pincode"] = ""  # write-only: never returned
    return recipient_pb2.Recipient(**doc, create_time=timestamp(config.create_time_ms),
                                   update_time=timestamp(config.update_time_ms))


def recipient_status_message(status: dict[str, Any]) -> recipient_pb2.RecipientStatus:
    # Built for every answer on an agent desktop and every status it is sent: as in
    # session_message, only the fields that differ from their default are set.
    message = recipient_pb2.RecipientStatus(
        recipient_id=status["recipient_id"], state=int(status["state"]), availability=int(status["availability"]),
        idle_since=stamp(status["idle_since_ms"]), state_since=stamp(status["state_since_ms"]),
        reachable=status.get("reachable", True))
    queues = status["queue_availability"]
    if queues:
        availability = message.queue_availability
        for queue_id, value in queues.items():
            availability[queue_id] = int(value)
    for name in ("unavailable_code", "current_session_id", "current_offer_id", "calls_taken", "consecutive_misses"):
        value = status[name]
        if value:
            setattr(message, name, value)
    if status["wrapup_until_ms"]:
        message.wrapup_until.CopyFrom(timestamp(status["wrapup_until_ms"]))
    forced_by = FORCE_REASONS.get(status["forced_by"], 0)
    if forced_by:
        message.forced_by = forced_by
    if status.get("dnd"):
        message.dnd = True
    if status.get("personal_call"):
        message.personal_call = True
    if status.get("thresholds_exceeded"):
        message.thresholds_exceeded.extend(status["thresholds_exceeded"])
    return message


FORCE_REASONS = {  # the engine's force codes -> ForceReason
    "bounced": common_pb2.FORCE_REASON_BOUNCED_CALL_LIMIT,
    "rejected": common_pb2.FORCE_REASON_REJECT,
    "dnd": common_pb2.FORCE_REASON_DND,
    "personal_call": common_pb2.FORCE_REASON_PERSONAL_CALL,
    "not_reachable": common_pb2.FORCE_REASON_NOT_REACHABLE,
}


def availability(value: int, field: str = "availability") -> Availability:
    if value not in (Availability.READY, Availability.AWAY):
        raise InvalidArgument.field(field, "must be AVAILABILITY_READY or AVAILABILITY_AWAY")
    return Availability(value)


# -------------------------------------------------------------- sessions

def session_message(floor, session, now_ms: int) -> session_pb2.Session:
    # Built every enqueue and offer: a field given to the constructor or set costs even at its
    # default (which is not sent), an empty map or Struct more than the rest of the message
    # together; so only the fields that differ from their default are set.
    state = session.state
    message = session_pb2.Session(id=session.id, queue_id=session.queue_id, state=int(state),
                                  entered_at=stamp(session.entered_at_ms), queues_visited=session.queues_visited)
    caller = message.caller  # sent even when empty
    caller.number = session.caller_number
    caller.name = session.caller_name
    if session.end_reason:
        message.end_reason = int(session.end_reason)
    if session.priority:
        message.priority = session.priority
    if session.recipient_id:
        message.recipient_id = session.recipient_id
    if state == SessionState.WAITING or state == SessionState.OFFERING:
        message.wait_ms = now_ms - session.entered_at_ms
    else:
        message.wait_ms = session.wait_ms
    if session.ring_ms:
        message.ring_ms = session.ring_ms
    if state == SessionState.ENDED:
        message.talk_ms = session.talk_ms
    elif state == SessionState.CONNECTED:
        message.talk_ms = now_ms - session.answered_at_ms
    elif state == SessionState.WAITING:
        position = floor.position(session)
        estimate = floor.estimated_wait_ms(session, position)
        message.position = position
        message.estimated_wait = -1 if estimate < 0 else round(estimate / 1000)
    queue = floor.queues.get(session.queue_id)
    if queue is not None and queue.config.hold_treatment:
        message.hold_treatment = queue.config.hold_treatment
    if session.offers:
        message.offer_id = next(iter(session.offers))
    if session.callback:
        message.callback = True
    if session.skills:
        message.skills.update(session.skills)
    if session.properties:
        message.properties.update(session.properties)
    if session.ended_at_ms:
        message.end_time.FromMilliseconds(session.ended_at_ms)
    return message
