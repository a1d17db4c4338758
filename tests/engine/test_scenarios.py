"""Every rule of the engine, as a scenario on the virtual clock."""

import pytest

from qroute.domain.config import Member, QueueConfig, RecipientConfig, TierRule
from qroute.domain.enums import Availability, EndReason, Router, SessionState
from qroute.errors import AlreadyExists, FailedPrecondition, InvalidArgument, NotFound


def test_the_life_of_a_call(center):
    center.queue(agent_wrapup_time=10, hold_treatment="moh://jazz")
    center.agent("alice", "q")
    seen = []
    center.floor.attach_agent("alice", seen.append)
    session = center.call(caller_number="+15550100", caller_name="Bob", properties={"crm": 42})
    assert session.state == SessionState.WAITING
    center.tick()
    assert center.state("alice") == "RINGING"
    offered = [e for e in seen if e.type == "recipient.offered"][0]
    assert offered.data["hold_treatment"] == "moh://jazz"
    assert offered.data["caller_number"] == "+15550100"
    assert offered.data["properties"] == {"crm": 42}
    center.answer("alice", after_ms=3_000)
    assert session.state == SessionState.CONNECTED and center.state("alice") == "BUSY"
    center.clock.advance(60_000)
    center.floor.hangup(session.id)
    assert session.end_reason == EndReason.COMPLETED
    assert (session.wait_ms, session.ring_ms, session.talk_ms) == (3_000, 3_000, 60_000)
    assert center.state("alice") == "WRAPUP"
    center.tick(9_999)
    assert center.state("alice") == "WRAPUP"
    center.tick(1)
    assert center.state("alice") == "READY"
    assert center.types("session.created", "queue.session_joined", "session.offered",
                        "session.connected", "session.ended") == [
        "session.created", "queue.session_joined", "session.offered", "session.connected", "session.ended"]
    status = center.floor.recipient_status("alice")
    assert status["calls_taken"] == 1 and status["talk_ms"] == 60_000
    center.check()


def test_login_starts_away_unless_ready(center):
    center.queue()
    center.agent("alice", "q", ready=False)
    center.call()
    center.tick()
    assert center.state("alice") == "AWAY"
    center.floor.set_availability("alice", Availability.READY)
    center.tick()
    assert center.state("alice") == "RINGING"


def test_unavailable_codes_are_checked(center):
    center.queue()
    center.agent("alice", "q", unavailable_codes=("lunch", "training"))
    center.floor.set_availability("alice", Availability.AWAY, unavailable_code="lunch")
    assert center.floor.recipients["alice"].unavailable_code == "lunch"
    with pytest.raises(InvalidArgument) as err:
        center.floor.set_availability("alice", Availability.AWAY, unavailable_code="nap")
    assert err.value.violations[0][0] == "unavailable_code"
    with pytest.raises(InvalidArgument):
        center.floor.set_availability("alice", Availability.AWAY, unavailable_code="bounced")
    center.floor.logout("alice")
    with pytest.raises(FailedPrecondition):
        center.floor.set_availability("alice", Availability.READY)


def test_per_queue_availability(center):
    center.queue("a")
    center.queue("b")
    center.agent("alice", "a", "b")
    center.floor.set_availability("alice", Availability.AWAY, queue_id="a")
    first = center.call("a")
    second = center.call("b")
    center.tick()
    assert center.floor.recipients["alice"].offer.session is second
    assert first.state == SessionState.WAITING
    assert center.floor.recipient_status("alice")["queue_availability"] == {
        "a": Availability.AWAY, "b": Availability.READY}


def test_guard_timer(center):
    center.queue()
    center.agent("alice", "q", guard_timer_seconds=5)
    center.call()
    center.tick(4_999)
    assert center.state("alice") == "READY"
    center.tick(1)
    assert center.state("alice") == "RINGING"


def test_ring_timeout_is_a_miss_and_the_caller_keeps_its_place(center):
    center.queue(ring_timeout=15)
    center.agent("alice", "q")
    first = center.call()
    center.tick()
    center.clock.advance(1_000)
    later = center.call()
    center.floor.set_availability("alice", Availability.AWAY)  # takes nothing more after this one
    center.tick(14_000)
    assert first.state == SessionState.WAITING
    assert center.floor.position(first) == 1 and center.floor.position(later) == 2
    assert center.floor.queue_status("q")["missed_sessions"] == 1
    missed = center.of("recipient.missed")[0]
    assert missed.data["session_id"] == first.id
    assert center.state("alice") == "AWAY"
    center.check()


def test_bounced_call_limit_forces_away(center):
    center.queue(ring_timeout=5)
    center.agent("alice", "q", bounced_call_limit=2)
    center.call()
    center.tick()
    center.tick(5_000)  # miss 1, offered again
    assert center.state("alice") == "RINGING"
    center.tick(5_000)  # miss 2: forced away
    recipient = center.floor.recipients["alice"]
    assert center.state("alice") == "AWAY"
    assert recipient.unavailable_code == "bounced" and recipient.forced_by == "bounced"
    forced = center.of("recipient.state_changed")[-1]
    assert forced.data["reason"] == "bounced" and forced.data["unavailable_code"] == "bounced"
    center.tick(60_000)
    assert center.state("alice") == "AWAY"
    center.check()


def test_reject_and_force_away_on_reject(center):
    center.queue("plain")
    center.queue("strict", force_away_on_reject=True)
    center.agent("alice", "plain", "strict")
    session = center.call("plain")
    center.tick()
    center.floor.reject(center.offer_of("alice"), "alice")
    assert session.state == SessionState.WAITING and center.state("alice") == "READY"
    center.floor.abandon(session.id)
    center.call("strict")
    center.tick()
    center.floor.reject(center.offer_of("alice"), "alice")
    assert center.state("alice") == "AWAY"
    assert center.floor.recipients["alice"].unavailable_code == "rejected"


def test_accepting_an_offer_that_timed_out_fails(center):
    center.queue(ring_timeout=5)
    center.agent("alice", "q")
    center.call()
    center.tick()
    offer_id = center.offer_of("alice")
    center.tick(5_000)
    with pytest.raises(FailedPrecondition):
        center.floor.accept(offer_id, "alice")


def test_abandon_while_waiting_and_while_ringing(center):
    center.queue()
    center.agent("alice", "q")
    ringing = center.call()
    waiting = center.call()
    center.tick()
    center.floor.abandon(waiting.id)
    center.floor.abandon(ringing.id)
    assert waiting.end_reason == ringing.end_reason == EndReason.ABANDONED
    assert center.state("alice") == "READY"
    cancelled = center.of("recipient.offer_cancelled")[0]
    assert cancelled.data["reason"] == "abandoned"
    assert center.floor.queue_status("q")["abandoned_sessions"] == 2
    with pytest.raises(FailedPrecondition):
        center.floor.abandon(ringing.id)
    center.check()


def test_hangup_of_a_session_not_connected_fails(center):
    center.queue()
    session = center.call()
    with pytest.raises(FailedPrecondition):
        center.floor.hangup(session.id)


def test_transfer_keeps_the_place_in_line(center):
    center.queue("first")
    center.queue("second")
    early = center.call("first")
    center.clock.advance(10_000)
    late = center.call("second")
    center.floor.transfer(early.id, "second")
    assert early.queues_visited == ["first", "second"]
    assert [s.id for s in center.floor.waiting_sessions("second")] == [early.id, late.id]
    center.agent("alice", "second")
    center.tick()
    assert center.floor.recipients["alice"].offer.session is early
    center.check()


def test_transfer_of_a_connected_call_starts_wrapup(center):
    center.queue("first", agent_wrapup_time=30)
    center.queue("second")
    center.agent("alice", "first")
    session = center.call("first")
    center.tick()
    center.answer("alice", 1_000)
    center.floor.transfer(session.id, "second")
    assert center.state("alice") == "WRAPUP"
    assert session.state == SessionState.WAITING and session.queue_id == "second"


def test_queue_timeout_and_redirect(center):
    center.queue("overflow")
    center.queue("main", timeout=30, timeout_redirect="overflow")
    center.queue("lonely", timeout=10)
    redirected = center.call("main")
    gone = center.call("lonely")
    center.tick(10_000)
    assert gone.end_reason == EndReason.TIMED_OUT
    center.tick(20_000)
    assert redirected.state == SessionState.WAITING and redirected.queue_id == "overflow"
    assert redirected.entered_at_ms == center.clock.now_ms() - 30_000
    assert center.of("session.timed_out")[-1].data["redirect_queue_id"] == "overflow"
    center.check()


def test_entry_rules(center):
    center.queue("small", timeout_if_size_exceeds=2)
    center.queue("empty", timeout_immediately_if_empty=True)
    center.call("small")
    center.call("small")
    third = center.call("small")
    assert third.end_reason == EndReason.REJECTED_FULL
    assert center.call("empty").end_reason == EndReason.REJECTED_EMPTY
    center.agent("alice", "empty", ready=False)  # logged in, away: not empty
    assert center.call("empty").state == SessionState.WAITING


def test_ring_all_offers_everyone_and_the_first_accept_wins(center):
    center.queue(router=Router.RING_ALL)
    for name in ("a", "b", "c"):
        center.agent(name, "q")
    session = center.call()
    center.tick()
    assert [center.state(n) for n in "abc"] == ["RINGING"] * 3
    center.answer("b", 2_000)
    assert [center.state(n) for n in "abc"] == ["READY", "BUSY", "READY"]
    reasons = {e.entity_id: e.data["reason"] for e in center.of("recipient.offer_cancelled")}
    assert reasons == {"a": "answered_elsewhere", "c": "answered_elsewhere"}
    assert session.recipient_id == "b"
    center.check()


def test_tier_expansion(center):
    center.queue(router=Router.LINEAR, tier_expansion=(TierRule(20, 2),))
    center.agent("backup", "q", tier=2)
    center.call()
    center.tick(19_000)
    assert center.state("backup") == "READY"
    center.tick(1_000)
    assert center.state("backup") == "RINGING"


def test_priority_goes_first_across_queues(center):
    center.queue("a")
    center.queue("b")
    center.call("a")
    vip = center.call("b", priority=5)
    center.agent("alice", "a", "b")
    center.tick()
    assert center.floor.recipients["alice"].offer.session is vip


def test_bad_configuration_names_the_field(center):
    cases = {
        "name": dict(name=""),
        "ring_timeout": dict(name="x", ring_timeout=0),
        "tick_time": dict(name="x", tick_time=100),
        "timeout": dict(name="x", timeout=5),
        "agent_wrapup_time": dict(name="x", agent_wrapup_time=-1),
        "timeout_redirect": dict(name="x", timeout_redirect="nowhere"),
    }
    for field, options in cases.items():
        with pytest.raises(InvalidArgument) as err:
            center.floor.create_queue(QueueConfig(id="bad", **options))
        assert err.value.violations[0][0] == field
    assert "bad" not in center.floor.queues
    center.queue()
    with pytest.raises(AlreadyExists):
        center.queue()
    with pytest.raises(InvalidArgument):
        center.floor.update_queue("q", {"tick_time": 10})
    assert center.floor.queues["q"].config.tick_time == 1000
    with pytest.raises(InvalidArgument) as err:
        center.floor.create_recipient(RecipientConfig(id="r", skills={"en": 11}))
    assert err.value.violations[0][0] == "skills[en]"
    with pytest.raises(NotFound):
        center.floor.add_members("q", [Member("ghost")])
    with pytest.raises(InvalidArgument):
        center.call(priority=-1)


def test_deleting_things_in_use(center):
    center.queue()
    center.agent("alice", "q")
    session = center.call()
    center.tick()
    center.floor.delete_recipient("alice")
    assert session.state == SessionState.WAITING
    with pytest.raises(FailedPrecondition):
        center.floor.delete_queue("q")
    center.floor.delete_queue("q", force=True)
    assert session.end_reason == EndReason.REMOVED
    center.check()


def test_a_busy_recipient_cannot_be_deleted_and_logs_out_when_the_call_ends(center):
    center.queue(agent_wrapup_time=30)
    center.agent("alice", "q")
    session = center.call()
    center.tick()
    center.answer("alice")
    with pytest.raises(FailedPrecondition):
        center.floor.delete_recipient("alice")
    center.floor.logout("alice")
    assert center.state("alice") == "BUSY"
    center.call()
    center.tick()
    assert center.floor.recipients["alice"].offer is None  # takes nothing more
    center.floor.hangup(session.id)
    assert center.state("alice") == "LOGGED_OUT"  # at once: no wrap-up
    assert center.of("recipient.logged_out")[-1].data["previous_state"] == "busy"
    center.check()


def test_logging_in_again_mid_call_cancels_the_pending_logout(center):
    center.queue()
    center.agent("alice", "q")
    session = center.call()
    center.tick()
    center.answer("alice")
    center.floor.logout("alice")
    center.floor.login("alice")
    center.floor.hangup(session.id)
    assert center.state("alice") == "AWAY"


def test_logout_while_ringing_puts_the_caller_back(center):
    center.queue()
    center.agent("alice", "q")
    session = center.call()
    center.tick()
    center.floor.logout("alice")
    assert session.state == SessionState.WAITING
    assert center.state("alice") == "LOGGED_OUT"
    assert center.of("recipient.offer_cancelled")[0].data["reason"] == "logged_out"


def test_queue_status_counts(center):
    center.queue()
    center.agent("alice", "q")
    center.agent("bob", "q", ready=False)
    for _ in range(3):
        center.call()
    center.tick()
    center.answer("alice", 4_000)
    status = center.floor.queue_status("q")
    assert status["active_recipient_count"] == 2
    assert status["available_recipient_count"] == 0
    assert status["recipient_count"] == 2
    assert status["active_session_count"] == 2
    assert status["total_sessions"] == 3
    assert status["average_wait"] == 4
    assert status["longest_wait"] == 4


def test_skills_route_to_the_qualified(center):
    center.queue()
    center.agent("novice", "q", skills={"fr": 2})
    center.agent("expert", "q", skills={"fr": 8})
    center.call(skills={"fr": 5})
    center.tick()
    assert center.state("expert") == "RINGING" and center.state("novice") == "READY"


def test_every_session_ends_with_an_event(center):
    center.queue(timeout=10)
    center.agent("alice", "q")
    sessions = [center.call() for _ in range(4)]
    center.tick()
    center.answer("alice")
    center.floor.hangup(sessions[0].id)
    center.floor.abandon(sessions[1].id)
    center.tick(10_000)
    ended = {e.entity_id for e in center.of("session.ended")}
    assert ended == {s.id for s in sessions[:2]} | {s.id for s in sessions[2:] if s.state == SessionState.ENDED}
    assert all(s.state == SessionState.ENDED or s.id in center.floor.sessions for s in sessions)
