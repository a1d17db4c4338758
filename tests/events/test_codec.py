"""The wire form of events: every catalog type encodes, batches are the
bytes ``EventBatch`` would write, payload fields map as documented."""

from __future__ import annotations

import json

import pytest

from qroute.api.events import EventCodec, event_message
from qroute.domain.events import CATALOG, DomainEvent
from qroute.v1 import common_pb2 as v1
from qroute.v1 import event_pb2

pytestmark = pytest.mark.timeout(10)


def test_every_catalog_type_encodes_with_its_entity_and_payload():
    for sequence, (type_, (entity, fields)) in enumerate(CATALOG.items(), 1):
        data = {field: None for field in fields if field != "config"}
        event = DomainEvent(type_, "x1", 1_700_000_000_123, data, "acc", sequence)
        message = event_message(event)
        assert (message.type, message.entity, message.sequence) == (type_, int(entity), sequence)
        assert message.WhichOneof("payload") == entity.name.lower()
        assert message.time.ToMilliseconds() == 1_700_000_000_123


def test_batches_are_what_event_batch_would_write():
    events = [DomainEvent("queue.member_added", "sales", 1_700_000_000_000 + n,
                          {"recipient_id": f"r{n}", "tier": 2, "weight": 1}, "acc", 300 + n) for n in range(3)]
    payload = b"".join(EventCodec.frame(e) for e in events) + EventCodec.tail(302)
    expected = event_pb2.EventBatch(events=[event_message(e) for e in events], through_sequence=302)
    assert payload == expected.SerializeToString()
    assert EventCodec.tail(0) == b""
    assert event_pb2.EventBatch.FromString(EventCodec.tail(2**40)).through_sequence == 2**40


def test_payload_fields():
    def encode(type_, entity_id, **data):
        # through JSON, as a replay out of storage reads it
        return event_message(DomainEvent(type_, entity_id, 1, json.loads(json.dumps(data)), "acc", 1))

    state = encode("recipient.state_changed", "ann", state="away", previous_state="ready", availability="away",
                   unavailable_code="lunch", queue_id="", source="phone", reason="bounced", forced_by="bounced",
                   calls_taken=3, offers=5, talk_ms=60_000, idle_since_ms=1_700_000_000_000)
    payload = state.recipient
    assert (state.recipient_id, payload.state, payload.previous_state) == (
        "ann", v1.RECIPIENT_STATE_AWAY, v1.RECIPIENT_STATE_READY)
    assert (payload.source, payload.forced_by, payload.reason) == (
        v1.EVENT_SOURCE_PHONE, v1.FORCE_REASON_BOUNCED_CALL_LIMIT, "bounced")
    assert (payload.calls_taken, payload.offers, payload.talk_ms) == (3, 5, 60_000)
    assert payload.idle_since.ToMilliseconds() == 1_700_000_000_000

    cancelled = encode("recipient.offer_cancelled", "bob", session_id="s1", offer_id="o1", queue_id="q",
                       reason="logged_out")
    assert (cancelled.session_id, cancelled.queue_id, cancelled.recipient.offer_outcome) == (
        "s1", "q", v1.OFFER_OUTCOME_WITHDRAWN)
    left = encode("queue.session_left", "q", session_id="s1", reason="abandoned", wait_ms=9, waiting_count=2)
    assert (left.queue.end_reason, left.queue.reason, left.queue.waiting_count) == (
        v1.END_REASON_ABANDONED, "abandoned", 2)
    timed_out = encode("session.timed_out", "s2", queue_id="q", wait_ms=5, redirect_queue_id="", reason="timed_out")
    assert (timed_out.session.state, timed_out.session.end_reason) == (v1.SESSION_STATE_ENDED, v1.END_REASON_TIMED_OUT)
    failed = encode("webhook.failed", "hook1", delivery_id="d1", event_type="session.ended", event_sequence=77,
                    recipient_id="", attempts=9, last_error="HTTP 500", queued_at_ms=1_000)
    assert (failed.entity, failed.webhook.event_sequence, failed.webhook.attempts) == (
        event_pb2.EVENT_ENTITY_WEBHOOK, 77, 9)
    unknown = encode("future.thing", "z")
    assert (unknown.type, unknown.entity, unknown.WhichOneof("payload")) == ("future.thing", 0, None)
