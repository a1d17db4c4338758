"""EventService, and the wire form of events (``qroute.v1.Event``).

Batches leave the server as bytes made by the bus (``qroute.events.bus``):
each event is encoded here once and its bytes are shared by every
subscriber, so the service is registered with a serializer that passes
bytes through (``add_EventServiceServicer_to_server``). Clients see plain
``EventBatch`` messages.
"""

from __future__ import annotations

import grpc

from qroute.api import convert
from qroute.api.common import Servicer, stream
from qroute.domain.config import QueueConfig, RecipientConfig
from qroute.domain.enums import Availability, EndReason, EventSource, OfferOutcome, RecipientState, SessionState
from qroute.domain.events import CATALOG, DomainEvent, Entity
from qroute.errors import InvalidArgument
from qroute.events.bus import BusClosed, EventKey, Filter, NotRetained, SubscriberBehind, make_filter
from qroute.v1 import common_pb2, event_pb2, event_pb2_grpc

DEFAULT_MAX_BATCH = 1000
MAX_MAX_BATCH = 10_000
LAST_SEQUENCE_KEY = "qroute-last-sequence"  # trailing metadata of a cut-off or ended stream
OLDEST_SEQUENCE_KEY = "qroute-oldest-sequence"  # trailing metadata of OUT_OF_RANGE


# ---------------------------------------------------------------- encoding

def _names(enum_cls) -> dict[str, int]:
    return {member.name.lower(): int(member) for member in enum_cls}


END_REASONS = _names(EndReason)
OFFER_OUTCOMES = _names(OfferOutcome)
RECIPIENT_STATES = _names(RecipientState)
SESSION_STATES = _names(SessionState)
AVAILABILITIES = _names(Availability)
SOURCES = _names(EventSource)
LEFT_REASONS = {"abandoned": int(EndReason.ABANDONED), "timed_out": int(EndReason.TIMED_OUT),
                "queue_deleted": int(EndReason.REMOVED)}
SESSION_STATE_AFTER = {  # session event type -> the session's state after it
    "session.created": SessionState.WAITING, "session.offered": SessionState.OFFERING,
    "session.requeued": SessionState.WAITING, "session.connected": SessionState.CONNECTED,
    "session.transferred": SessionState.WAITING, "session.abandoned": SessionState.ENDED,
    "session.ended": SessionState.ENDED,
}
OFFER_OUTCOME_OF = {"recipient.missed": OfferOutcome.MISSED, "recipient.rejected": OfferOutcome.REJECTED,
                    "recipient.connected": OfferOutcome.ACCEPTED, "session.connected": OfferOutcome.ACCEPTED}


def _caller(data: dict) -> common_pb2.Caller | None:
    number, name = data.get("caller_number") or "", data.get("caller_name") or ""
    return common_pb2.Caller(number=number, name=name) if number or name else None


# Every event is encoded once, but there are a dozen per call: the payloads are built from the
# fields the event has, not from every field of the message (each keyword a message is built
# with costs, zeros included), and times are given as plain dicts (a Timestamp message per
# field costs more than its parent's construction), and so are the payloads: the Event is
# built in one go, not its payload first and then copied in. Bytes equal the field-by-field form's.
_SESSION_COPIED = ("position", "estimated_wait_ms", "offer_id", "wait_ms", "ring_ms", "talk_ms", "priority",
                   "from_queue_id", "skills", "queues_visited", "redirect_queue_id", "ring_timeout_ms")
_QUEUE_COPIED = ("active_session_count", "available_recipient_count", "position", "offer_id", "wait_ms", "tier",
                 "estimated_wait_ms", "waiting_count", "reason", "priority", "weight")
_RECIPIENT_COPIED = ("unavailable_code", "offer_id", "ring_ms", "talk_ms", "consecutive_misses", "reason",
                     "ring_timeout_ms", "hold_treatment", "wrapup_ms", "calls_taken", "offers", "changed_by")


def _copied(data: dict, names: tuple[str, ...]) -> dict:
    """The fields named ``names`` that ``data`` holds and that are not zero."""
    return {name: value for name in names if (value := data.get(name))}


def _session_payload(event: DomainEvent) -> dict:
    data, type_ = event.data, event.type
    fields = _copied(data, _SESSION_COPIED)
    state = SESSION_STATE_AFTER.get(type_)
    if type_ == "session.timed_out":
        state = SessionState.WAITING if data.get("redirect_queue_id") else SessionState.ENDED
    if state:
        fields["state"] = int(state)
    outcome = OFFER_OUTCOME_OF.get(type_) or OFFER_OUTCOMES.get(data.get("outcome", ""), 0)
    if outcome:
        fields["offer_outcome"] = int(outcome)
    reason = data.get("reason", "")
    end_reason = END_REASONS.get(data.get("end_reason") or (reason if type_ == "session.timed_out" else ""), 0)
    if end_reason:
        fields["end_reason"] = end_reason
    if reason and type_ == "session.transferred":
        fields["reason"] = reason
    if type_ == "session.abandoned":
        fields["previous_state"] = SESSION_STATES.get(data.get("state", ""), 0)
    caller = _caller(data)
    if caller is not None:
        fields["caller"] = caller
    if data.get("entered_at_ms"):
        fields["entered_at"] = convert.stamp(data["entered_at_ms"])
    if data.get("answered_at_ms"):
        fields["answered_at"] = convert.stamp(data["answered_at_ms"])
    if data.get("properties"):
        fields["properties"] = convert.struct(data["properties"])
    if data.get("callback"):
        fields["callback"] = True
    return fields


def _queue_payload(event: DomainEvent) -> dict:
    data = event.data
    fields = _copied(data, _QUEUE_COPIED)
    end_reason = LEFT_REASONS.get(data.get("reason", ""), 0)
    if end_reason:
        fields["end_reason"] = end_reason
    config = data.get("config")
    if config:
        fields["config"] = convert.queue_message(QueueConfig.from_doc(config))
    return fields


def _recipient_payload(event: DomainEvent) -> dict:
    data, type_ = event.data, event.type
    fields = _copied(data, _RECIPIENT_COPIED)
    for name, names in (("state", RECIPIENT_STATES), ("previous_state", RECIPIENT_STATES),
                        ("availability", AVAILABILITIES), ("source", SOURCES)):
        value = names.get(data.get(name, ""), 0)
        if value:
            fields[name] = value
    forced_by = convert.FORCE_REASONS.get(data.get("forced_by") or "", 0)
    if forced_by:
        fields["forced_by"] = forced_by
    if type_ == "recipient.offer_cancelled":
        outcome = OFFER_OUTCOMES.get(data.get("reason", ""), int(OfferOutcome.WITHDRAWN))
    else:
        outcome = int(OFFER_OUTCOME_OF.get(type_, 0))
    if outcome:
        fields["offer_outcome"] = outcome
    caller = _caller(data)
    if caller is not None:
        fields["caller"] = caller
    config = data.get("config")
    if config:
        fields["config"] = convert.recipient_message(RecipientConfig.from_doc(config))
    if data.get("properties"):
        fields["properties"] = convert.struct(data["properties"])
    if data.get("callback"):
        fields["callback"] = True
    if data.get("idle_since_ms"):
        fields["idle_since"] = convert.stamp(data["idle_since_ms"])
    return fields


def _webhook_payload(event: DomainEvent) -> event_pb2.WebhookPayload:
    data = event.data
    return event_pb2.WebhookPayload(
        delivery_id=data.get("delivery_id", ""), event_type=data.get("event_type", ""),
        event_sequence=data.get("event_sequence", 0), attempts=data.get("attempts", 0),
        last_error=data.get("last_error") or "", queued_at=convert.timestamp(data.get("queued_at_ms", 0)))


PAYLOADS = {  # entity -> (Event's payload field, its maker)
    Entity.SESSION: ("session", _session_payload), Entity.QUEUE: ("queue", _queue_payload),
    Entity.RECIPIENT: ("recipient", _recipient_payload), Entity.WEBHOOK: ("webhook", _webhook_payload),
}


def event_message(event: DomainEvent) -> event_pb2.Event:
    """The ``qroute.v1.Event`` of a domain event (live, or read back from
    storage). A type missing from the catalog gets no entity and no payload."""
    entity = CATALOG[event.type][0] if event.type in CATALOG else None
    data, entity_id = event.data, event.entity_id
    fields = {"sequence": event.sequence, "time": convert.stamp(event.time_ms), "entity": int(entity or 0),
              "entity_id": entity_id, "type": event.type, "account_id": event.account_id,
              "queue_id": entity_id if entity is Entity.QUEUE else data.get("queue_id") or "",
              "recipient_id": entity_id if entity is Entity.RECIPIENT else data.get("recipient_id") or "",
              "session_id": entity_id if entity is Entity.SESSION else data.get("session_id") or ""}
    payload = PAYLOADS.get(entity)
    if payload is not None:
        fields[payload[0]] = payload[1](event)
    return event_pb2.Event(**fields)


def _varint(value: int) -> bytes:
    out = bytearray()
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


_SHORT_VARINTS = [_varint(value) for value in range(1 << 11)]  # the length of almost every frame


_EVENTS_TAG = b"\x0a"  # EventBatch.events: field 1, length-delimited
_THROUGH_TAG = b"\x10"  # EventBatch.through_sequence: field 2, varint


class EventCodec:
    """Batches as ``EventBatch`` bytes, built from per-event frames (see
    ``qroute.events.bus.Codec``): a batch is its events' frames joined,
    then ``through_sequence``, exactly what ``EventBatch.SerializeToString``
    would write."""

    @staticmethod
    def frame(event: DomainEvent) -> bytes:
        body = event_message(event).SerializeToString()
        size = len(body)
        return _EVENTS_TAG + (_SHORT_VARINTS[size] if size < 1 << 11 else _varint(size)) + body

    @staticmethod
    def tail(through_sequence: int) -> bytes:
        return _THROUGH_TAG + _varint(through_sequence) if through_sequence > 0 else b""


# ----------------------------------------------------------------- service

def recipient_scope(floor, recipient_id: str, match: Filter | None) -> Filter:
    """What a recipient key's subscription may see, within ``match``: events
    about its recipient or the recipients it supervises (asked per event, so
    a change of the supervised list applies at once), the sessions offered
    to them included; nothing else of the account."""
    webhook = int(Entity.WEBHOOK)

    def visible(key: EventKey) -> bool:
        rid = key.recipient_id
        return (bool(rid) and key.entity != webhook
                and (rid == recipient_id or rid in floor.supervised_by(recipient_id)))

    if match is None:
        return Filter(("recipient", recipient_id), visible)
    check = match.check
    return Filter(("recipient", recipient_id, match.key), lambda key: visible(key) and check(key))


def _serialize(message) -> bytes:
    return message if type(message) is bytes else message.SerializeToString()


def add_EventServiceServicer_to_server(servicer, server) -> None:  # noqa: N802 (the generated name)
    """Like the generated function, but the stream's responses may be bytes
    already encoded (shared between subscribers)."""
    handlers = {
        "Subscribe": grpc.unary_stream_rpc_method_handler(
            servicer.Subscribe, request_deserializer=event_pb2.SubscribeRequest.FromString,
            response_serializer=_serialize),
    }
    generic = grpc.method_handlers_generic_handler("qroute.v1.EventService", handlers)
    server.add_generic_rpc_handlers((generic,))
    server.add_registered_method_handlers("qroute.v1.EventService", handlers)


class EventServicer(Servicer, event_pb2_grpc.EventServiceServicer):
    def __init__(self, node) -> None:
        super().__init__(node)
        self.bus = node.events
        self.bus.set_codec(EventCodec())

    @stream
    async def Subscribe(self, request, context, principal):
        account_id = principal.require_account()
        problems = []
        max_batch = request.max_batch or DEFAULT_MAX_BATCH
        if not 1 <= max_batch <= MAX_MAX_BATCH:
            problems.append(("max_batch", f"must be 1 to {MAX_MAX_BATCH} (0 means {DEFAULT_MAX_BATCH})"))
        for i, entity in enumerate(request.entities):
            if entity not in event_pb2.EventEntity.values() or entity == 0:
                problems.append((f"entities[{i}]", "must be an EventEntity other than EVENT_ENTITY_UNSPECIFIED"))
        for i, type_ in enumerate(request.types):
            if type_ not in CATALOG:
                problems.append((f"types[{i}]", f"unknown event type {type_!r}"))
        if problems:
            raise InvalidArgument(*problems)
        match = make_filter(request.entities, request.types, request.queue_ids, request.recipient_ids,
                           request.session_ids)
        if principal.recipient_id:
            match = recipient_scope(self.node.engine.floor(account_id), principal.recipient_id, match)
        try:
            cursor = await self.bus.check_from(account_id, request.from_sequence)
            async for batch in self.bus.batches(account_id, cursor, match, max_batch):
                yield batch
        except NotRetained as exc:
            context.set_trailing_metadata(((OLDEST_SEQUENCE_KEY, str(exc.oldest_sequence)),))
            raise
        except SubscriberBehind as exc:
            context.set_trailing_metadata(((LAST_SEQUENCE_KEY, str(exc.last_sequence)),))
            raise
        except BusClosed as exc:
            context.set_trailing_metadata(((LAST_SEQUENCE_KEY, str(exc.last_sequence)),))
            try:
                await context.abort(grpc.StatusCode.UNAVAILABLE, str(exc))
            except grpc.aio.AbortError:
                raise
            except Exception:  # the server stopped the call first: nothing left to tell
                return
