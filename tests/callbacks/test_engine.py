"""Lined-up callers' rules on the virtual clock (seed 003, virtualQ), with
either dispatcher: places, notification, call-in, call-back, time-out,
deferral, and what is refused."""

from __future__ import annotations

import pytest

from qroute.domain.enums import Availability, EndReason, SessionState
from qroute.engine.callbacks import CHECK_MS, CallerState, Channel, ServiceState
from qroute.engine.floor import MAX_PRIORITY
from qroute.errors import AlreadyExists, FailedPrecondition, InvalidArgument, NotFound

pytestmark = pytest.mark.timeout(10)

PHONE = "+4917111112233"


def offered_sessions(lined):
    return [e.entity_id for e in lined.of("session.offered")]


def test_a_call_in_caller_behind_ten_is_notified_as_its_turn_nears_and_goes_before_later_callers(lined):
    lined.queue(callback_lead_time=150)
    lined.agent("ann", "q")
    early = [lined.call(caller_number=f"+155501000{n:02d}") for n in range(11)]
    lined.tick()
    lined.answer("ann")  # ann is busy with the first: ten wait
    lined.clock.advance(1_000)
    caller = lined.line_up(PHONE, Channel.CALL_IN, lang="de")
    assert caller.state == CallerState.WAITING
    assert lined.callbacks.place(caller)[0] == 10 and caller.session_id == ""
    assert PHONE not in [s.caller_number for s in lined.floor.sessions.values()]  # not on the line
    lined.clock.advance(1_000)
    late = [lined.call(caller_number=f"+155502000{n:02d}") for n in range(3)]
    assert lined.callbacks.place(caller)[0] == 10  # those who came later are not ahead

    while caller.state == CallerState.WAITING:
        lined.clock.advance(60_000)
        lined.floor.hangup(lined.floor.recipients["ann"].session.id)
        lined.tick()
        lined.answer("ann")
    notified = lined.of("callback.notified")
    assert len(notified) == 1 and notified[0].entity_id == caller.id
    assert notified[0].data["caller_number"] == PHONE and notified[0].data["caller"]["lang"] == "de"
    ahead_then = notified[0].data["position"] - 1
    still_waiting_early = [s for s in early if s.state == SessionState.WAITING]
    assert ahead_then >= 1 and len(still_waiting_early) == ahead_then  # notified before its turn came
    assert 0 <= notified[0].data["estimated_wait_ms"] <= 150_000
    assert lined.callbacks.verify("q", PHONE) == (True, caller)

    lined.callbacks.connect("q", PHONE)
    assert caller.state == CallerState.CONNECTED and caller.connected_at_ms == lined.clock.now_ms()
    session = lined.floor.sessions[caller.session_id]
    assert session.id == caller.id and session.caller_number == PHONE
    assert (session.priority, session.entered_at_ms, session.callback) == (MAX_PRIORITY, caller.created_at_ms, False)
    assert lined.floor.position(session) == 1
    while lined.floor.recipients["ann"].session is not None:
        lined.clock.advance(60_000)
        lined.floor.hangup(lined.floor.recipients["ann"].session.id)
        lined.tick()
        if lined.offer_of("ann"):
            lined.answer("ann")
    order = offered_sessions(lined)
    assert order.index(caller.session_id) < min(order.index(s.id) for s in late + still_waiting_early)
    assert caller.state == CallerState.FINISHED and caller.agent_id == "ann"
    lined.check()


def test_a_call_back_caller_holds_a_real_place_and_its_offer_is_a_callback(lined):
    lined.queue()
    lined.agent("ann", "q", ready=False)
    first = lined.call(caller_number="+15550100")
    lined.clock.advance(1_000)
    caller = lined.line_up(PHONE, Channel.CALL_BACK, properties={"crm": 7})
    session = lined.floor.sessions[caller.session_id]
    assert session.id == caller.id and session.callback and session.caller_number == PHONE
    assert (session.entered_at_ms, lined.floor.position(session)) == (caller.created_at_ms, 2)
    lined.clock.advance(1_000)
    later = lined.call(caller_number="+15550101")
    seen = []
    lined.floor.attach_agent("ann", seen.append)
    lined.floor.set_availability("ann", Availability.READY)
    lined.tick()
    assert lined.floor.recipients["ann"].offer.session is first
    lined.serve("ann")
    offer = [e for e in seen if e.type == "recipient.offered"][-1]
    assert offer.data["session_id"] == caller.session_id and offer.data["callback"] is True
    assert offer.data["caller_number"] == PHONE and offer.data["properties"] == {"crm": 7}
    assert caller.state == CallerState.NOTIFIED and caller.notified_at_ms == lined.clock.now_ms()
    assert lined.callbacks.verify("q", PHONE)[0]
    lined.answer("ann")
    assert (caller.state, caller.agent_id, caller.connected_at_ms) == (
        CallerState.CONNECTED, "ann", lined.clock.now_ms())
    lined.clock.advance(30_000)
    lined.floor.hangup(caller.session_id)
    assert caller.state == CallerState.FINISHED and caller.ended_at_ms == lined.clock.now_ms()
    lined.tick()
    assert lined.floor.recipients["ann"].offer.session is later
    assert [e.type for e in lined.events if e.type.startswith("callback.")] == [
        "callback.lined_up", "callback.notified", "callback.connected", "callback.finished"]


def test_a_notified_caller_not_connected_in_its_window_times_out(lined):
    lined.queue(callback_window=300, force_away_on_reject=True)
    lined.agent("ann", "q")
    call_in = lined.line_up(PHONE, Channel.CALL_IN)
    assert call_in.state == CallerState.NOTIFIED  # at the head with a recipient free: up at once
    lined.clock.advance(1_000)
    call_back = lined.line_up("+15550123456", Channel.CALL_BACK)
    lined.tick()
    lined.floor.reject(lined.offer_of("ann"), "ann")  # ann is forced away: the call-back waits again
    assert call_back.state == CallerState.NOTIFIED
    lined.tick(298_000)
    assert (call_in.state, call_back.state) == (CallerState.NOTIFIED, CallerState.NOTIFIED)
    lined.tick(1_000)
    assert (call_in.state, call_back.state) == (CallerState.TIME_OUT, CallerState.NOTIFIED)
    lined.tick(1_000)
    assert call_back.state == CallerState.TIME_OUT
    assert lined.floor.session(call_back.session_id).end_reason == EndReason.ABANDONED
    assert len(lined.floor.queues["q"].line) == 0
    assert [e.entity_id for e in lined.of("callback.timed_out")] == [call_in.id, call_back.id]
    assert lined.callbacks.verify("q", PHONE) == (False, call_in)
    with pytest.raises(FailedPrecondition):
        lined.callbacks.connect("q", PHONE)
    again = lined.line_up(PHONE, Channel.CALL_IN)  # its line-up is over: it may line up again
    assert again.id != call_in.id and lined.callbacks.get("q", PHONE) is again
    lined.check()


def test_deferred_goes_back_to_its_original_place(lined):
    lined.queue()
    lined.agent("ann", "q", ready=False)
    caller = lined.line_up(PHONE, Channel.CALL_BACK)
    lined.clock.advance(5_000)
    later = [lined.call(caller_number=f"+1555010{n}") for n in range(2)]
    lined.floor.set_availability("ann", Availability.READY)
    lined.tick()
    lined.answer("ann")
    assert caller.state == CallerState.CONNECTED
    lined.callbacks.update("q", PHONE, service_state=ServiceState.DEFERRED)  # nobody picked up
    session = lined.floor.sessions[caller.session_id]
    assert caller.state == CallerState.WAITING and caller.service_state == ServiceState.DEFERRED
    assert (session.state, session.entered_at_ms) == (SessionState.WAITING, caller.created_at_ms)
    assert [s.id for s in lined.floor.waiting_sessions("q")] == [session.id] + [s.id for s in later]
    lined.tick()
    assert lined.floor.recipients["ann"].offer.session is session  # before those who came later
    lined.answer("ann")
    lined.floor.hangup(session.id)
    assert caller.state == CallerState.FINISHED
    lined.callbacks.update("q", PHONE, service_state=ServiceState.DEFERRED)  # its session is over: a new one
    assert caller.state == CallerState.WAITING and caller.session_id != session.id
    renewed = lined.floor.sessions[caller.session_id]
    assert renewed.callback and renewed.entered_at_ms == caller.created_at_ms
    assert lined.floor.waiting_sessions("q")[0] is renewed
    assert [e.type for e in lined.events if e.type.startswith("callback.")][-2:] == [
        "callback.finished", "callback.deferred"]
    lined.check()


def test_a_deferred_call_in_caller_is_virtual_again_and_may_be_notified_again(lined):
    lined.queue()
    lined.agent("ann", "q")
    caller = lined.line_up(PHONE, Channel.CALL_IN)
    assert caller.state == CallerState.NOTIFIED
    lined.callbacks.connect("q", PHONE)
    session = lined.floor.sessions[caller.session_id]
    lined.callbacks.update("q", PHONE, service_state=ServiceState.DEFERRED)
    assert session.state == SessionState.ENDED and session.end_reason == EndReason.ABANDONED
    assert caller.state == CallerState.WAITING and caller.notified_at_ms == 0
    lined.tick(CHECK_MS)
    assert caller.state == CallerState.NOTIFIED
    lined.callbacks.update("q", PHONE, service_state=ServiceState.CONNECTED, skills=["es"])  # as connect
    renewed = lined.floor.sessions[caller.session_id]
    assert renewed.id != session.id and (renewed.priority, renewed.skills) == (MAX_PRIORITY, {"es": 0})


def test_the_call_center_reports_its_side(lined):
    lined.queue()
    lined.agent("ann", "q")
    caller = lined.line_up(PHONE, Channel.CALL_IN, skills=["de"], properties={"a": 1})
    lined.clock.advance(2_000)
    lined.callbacks.update("q", PHONE, skills=["fr", "fr"], properties={"b": 2}, ewt=90, agent_id="ann")
    assert (caller.skills, caller.properties, caller.reported_ewt, caller.agent_id) == (
        ["fr"], {"a": 1, "b": 2}, 90, "ann")
    lined.callbacks.update("q", PHONE, service_state=ServiceState.CONNECTED)
    assert caller.state == CallerState.CONNECTED
    assert lined.floor.sessions[caller.session_id].skills == {"fr": 0}
    lined.clock.advance(7_000)
    lined.callbacks.transferred("q", PHONE, agent_id="bob")
    assert (caller.state, caller.wait_time_when_up, caller.agent_id) == (CallerState.FINISHED, 7, "bob")
    lined.callbacks.update("q", PHONE, talk_time=120, service_state=ServiceState.FINISHED)
    assert (caller.talk_time, caller.state) == (120, CallerState.FINISHED)
    with pytest.raises(FailedPrecondition):
        lined.callbacks.update("q", PHONE, service_state=ServiceState.CONNECTED)


def test_canceled_takes_a_call_back_out_of_the_line(lined):
    lined.queue()
    lined.agent("ann", "q", ready=False)
    caller = lined.line_up(PHONE, Channel.CALL_BACK)
    lined.callbacks.update("q", PHONE, service_state=ServiceState.CANCELED)
    assert caller.state == CallerState.FINISHED and len(lined.floor.queues["q"].line) == 0
    assert lined.floor.session(caller.session_id).state == SessionState.ENDED


def test_callers_waiting_come_in_the_order_they_will_be_served(lined):
    lined.queue()
    lined.agent("ann", "q", ready=False)  # nobody serves: no estimate, the places decide
    a = lined.line_up("+15550000001", Channel.CALL_BACK)
    lined.clock.advance(1_000)
    b = lined.line_up("+15550000002", Channel.CALL_IN)
    lined.clock.advance(1_000)
    lined.call(caller_number="+15550000003")
    lined.clock.advance(1_000)
    d = lined.line_up("+15550000004", Channel.CALL_IN)
    lined.clock.advance(1_000)
    e = lined.line_up("+15550000005", Channel.CALL_BACK)
    waiting = lined.callbacks.waiting("q")
    assert [(caller.id, ahead, ewt) for caller, ahead, ewt in waiting] == [
        (a.id, 0, -1), (b.id, 1, -1), (d.id, 3, -1), (e.id, 4, -1)]
    assert [c.id for c, _, _ in lined.callbacks.waiting()] == [a.id, b.id, d.id, e.id]
    lined.callbacks.update("q", "+15550000002", service_state=ServiceState.CANCELED)
    assert [c.id for c, _, _ in lined.callbacks.waiting("q")] == [a.id, d.id, e.id]


@pytest.mark.parametrize("phone", ["4917111112233", "+0917111112233", "+1234567", "+1234567890123456",
                                   "+49 171 1111 22", "+49-171-111122", "tel:+4917111112233"])
def test_a_malformed_phone_is_refused(lined, phone):
    lined.queue()
    with pytest.raises(InvalidArgument) as err:
        lined.line_up(phone, Channel.CALL_IN)
    assert [field for field, _ in err.value.violations] == ["phone"]
    assert not lined.callbacks.callers and not lined.types("callback.lined_up")


def test_what_is_refused(lined):
    lined.queue()
    with pytest.raises(InvalidArgument) as err:
        lined.callbacks.line_up("", "", 0, "Fax", lang="deu", skills=[""])
    assert [field for field, _ in err.value.violations] == ["line_id", "phone", "channel", "source", "lang",
                                                             "skills[0]"]
    with pytest.raises(InvalidArgument) as err:
        lined.line_up(PHONE, Channel.CALL_IN, source="")
    assert err.value.violations == [("source", "is required")]
    with pytest.raises(NotFound, match="line nope"):
        lined.line_up(PHONE, Channel.CALL_BACK, queue_id="nope")
    caller = lined.line_up(PHONE, Channel.CALL_BACK, source="widget")
    assert caller.source == "Widget"
    with pytest.raises(AlreadyExists):
        lined.line_up(PHONE, Channel.CALL_IN)
    with pytest.raises(NotFound):
        lined.callbacks.get("q", "+15550000009")
    assert lined.callbacks.verify("q", "+15550000009") == (False, None)
    with pytest.raises(FailedPrecondition, match="not up yet"):
        lined.callbacks.connect("q", PHONE)
    with pytest.raises(FailedPrecondition):
        lined.callbacks.transferred("q", PHONE)
    with pytest.raises(InvalidArgument) as err:
        lined.callbacks.update("q", PHONE, ewt=-1, talk_time=-5, service_state=9)
    assert [field for field, _ in err.value.violations] == ["ewt", "talk_time", "service_state"]
    assert len(lined.callbacks.callers) == 1 and len(lined.types("callback.lined_up")) == 1


def test_a_line_deleted_finishes_its_callers(lined):
    lined.queue()
    lined.agent("ann", "q", ready=False)
    call_back = lined.line_up(PHONE, Channel.CALL_BACK)
    call_in = lined.line_up("+15550000001", Channel.CALL_IN)
    lined.floor.delete_queue("q", force=True)
    assert (call_back.state, call_in.state) == (CallerState.FINISHED, CallerState.FINISHED)
    assert lined.callbacks.waiting() == []


def test_over_callers_are_forgotten_after_the_retention(lined):
    from qroute.engine.callbacks import RETENTION_MS

    lined.queue()
    lined.line_up(PHONE, Channel.CALL_IN)
    lined.callbacks.update("q", PHONE, service_state=ServiceState.CANCELED)
    lined.tick(RETENTION_MS - 1)
    assert lined.callbacks.get("q", PHONE).state == CallerState.FINISHED
    lined.tick(CHECK_MS + 1)
    with pytest.raises(NotFound):
        lined.callbacks.get("q", PHONE)
    assert not lined.callbacks.callers
