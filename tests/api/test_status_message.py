"""``convert.recipient_status_message`` sets only the fields that differ from
their default (it runs for every desktop answer): every field still arrives."""

from qroute.api import convert
from qroute.domain.enums import Availability, RecipientState
from qroute.v1 import common_pb2, recipient_pb2

QUIET = {"recipient_id": "agent-1", "state": RecipientState.READY, "availability": Availability.READY,
         "queue_availability": {}, "unavailable_code": "", "forced_by": "", "current_session_id": "",
         "current_offer_id": "", "idle_since_ms": 0, "state_since_ms": 0, "wrapup_until_ms": 0,
         "calls_taken": 0, "offers": 0, "talk_ms": 0, "consecutive_misses": 0, "dnd": False,
         "personal_call": False, "reachable": True, "thresholds_exceeded": []}


def test_every_field_of_a_busy_status_arrives():
    status = QUIET | {
        "state": RecipientState.AWAY, "availability": Availability.AWAY,
        "queue_availability": {"sales": Availability.READY, "support": Availability.AWAY},
        "unavailable_code": "lunch", "forced_by": "dnd", "current_session_id": "s-1", "current_offer_id": "o-1",
        "idle_since_ms": 1_796_563_868_388, "state_since_ms": 1_796_563_868_000,
        "wrapup_until_ms": 1_796_563_869_999, "calls_taken": 3, "consecutive_misses": 2, "dnd": True,
        "personal_call": True, "reachable": False, "thresholds_exceeded": ["max_wait", "talk_time"]}
    message = recipient_pb2.RecipientStatus.FromString(convert.recipient_status_message(status).SerializeToString())
    assert message.recipient_id == "agent-1"
    assert message.state == int(RecipientState.AWAY) and message.availability == int(Availability.AWAY)
    assert dict(message.queue_availability) == {"sales": int(Availability.READY), "support": int(Availability.AWAY)}
    assert (message.unavailable_code, message.current_session_id, message.current_offer_id) == ("lunch", "s-1", "o-1")
    assert message.idle_since.ToMilliseconds() == 1_796_563_868_388
    assert message.state_since.ToMilliseconds() == 1_796_563_868_000
    assert message.wrapup_until.ToMilliseconds() == 1_796_563_869_999
    assert (message.calls_taken, message.consecutive_misses) == (3, 2)
    assert message.forced_by == common_pb2.FORCE_REASON_DND
    assert message.dnd and message.personal_call and not message.reachable
    assert list(message.thresholds_exceeded) == ["max_wait", "talk_time"]


def test_a_quiet_status_sends_only_what_it_must():
    message = convert.recipient_status_message(QUIET)
    assert message.recipient_id == "agent-1" and message.reachable
    assert not message.HasField("idle_since") and not message.HasField("wrapup_until")
    assert not message.queue_availability and not message.thresholds_exceeded
    assert message.forced_by == 0 and not message.dnd and message.calls_taken == 0
