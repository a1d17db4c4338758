"""What a restart brings back, on a virtual clock: a node is stopped and
started again on the same data dir (the state is the same as after a
kill -9, which ``test_kill`` checks with a real process).

Every test runs on each dispatcher implementation (``impl``)."""

from __future__ import annotations

import json

import pytest

from qroute.domain.config import Member, QueueConfig, RecipientConfig
from qroute.domain.enums import Availability, RecipientState, SessionState
from qroute.domain.ewt import ServiceRate
from qroute.errors import FailedPrecondition

from ._site import Site, check, settle


@pytest.fixture
def site(tmp_path, impl) -> Site:
    return Site(tmp_path / "data", impl)


def call_center(floor, *recipients, wrapup=0, ring_timeout=30, **queue_options):
    """Queue ``q`` (and an empty ``q2``) whose members are ``recipients``, logged in READY."""
    floor.create_queue(QueueConfig(id="q", name="Q", agent_wrapup_time=wrapup, ring_timeout=ring_timeout,
                                   **queue_options))
    floor.create_queue(QueueConfig(id="q2", name="Q2"))
    for recipient_id in recipients:
        floor.create_recipient(RecipientConfig(id=recipient_id, unavailable_codes=("lunch",)))
        floor.add_members("q", [Member(recipient_id)])
        floor.add_members("q2", [Member(recipient_id)])
        floor.login(recipient_id, ready=True)


def offer_of(floor, recipient_id: str) -> str:
    return floor.recipients[recipient_id].offer.id


def events(site: Site, *types: str) -> list[tuple[int, str, str, dict]]:
    marks = ",".join("?" * len(types))
    return [(seq, type_, entity_id, json.loads(payload)) for seq, type_, entity_id, payload in site.rows(
        f"SELECT sequence, type, entity_id, payload FROM events WHERE type IN ({marks}) ORDER BY sequence",
        *types)]


def snapshot(floor, session_id: str) -> tuple:
    s = floor.sessions[session_id]
    return (s.queue_id, s.priority, s.entered_at_ms, s.seq, s.caller_number, s.caller_name, s.skills,
            s.properties, s.queues_visited, s.callback)


def test_waiting_sessions_come_back_in_their_order_with_their_entered_at(site):
    def before(floor):
        call_center(floor)  # no recipient: everything waits
        for n in range(40):
            floor.enqueue("q", caller_number=f"+3100{n}", caller_name=f"Caller {n}", priority=n % 3,
                          skills={"en": n % 4} if n % 2 else {}, properties={"crm": n, "vip": n % 5 == 0})
            site.clock.advance(n % 2)  # sessions sharing an entered_at: seq orders them
        moved = floor.waiting_sessions("q")[7].id
        floor.transfer(moved, "q2")  # keeps its entered_at, so its place
        return ({q: [s.id for s in floor.waiting_sessions(q)] for q in ("q", "q2")},
                {s: snapshot(floor, s) for s in floor.sessions}, max(s.seq for s in floor.sessions.values()),
                site.node.journal.sequences[site.account_id])

    lines, sessions, max_seq, last_sequence = site.run(before)
    site.clock.advance(60_000)

    def after(floor):
        check(floor)
        assert {q: [s.id for s in floor.waiting_sessions(q)] for q in ("q", "q2")} == lines
        assert {s: snapshot(floor, s) for s in floor.sessions} == sessions
        assert all(s.state == SessionState.WAITING for s in floor.sessions.values())
        assert floor.queue_status("q")["waiting_count"] == len(lines["q"])
        assert floor.dispatcher.queue_order(floor.queues["q"].handle) == [
            floor.sessions[s].handle for s in lines["q"]]
        late = floor.enqueue("q", priority=2, entered_at_ms=sessions[lines["q"][0]][2])
        assert late.seq == max_seq + 1  # same key as the first in line: served after it
        assert [s.id for s in floor.waiting_sessions("q")][:2] == [lines["q"][0], late.id]
        return late.id

    late_id = site.run(after)
    created = events(site, "session.created")
    assert created[-1][2] == late_id and created[-1][0] > last_sequence
    sequences = [row[0] for row in site.rows("SELECT sequence FROM events WHERE account_id = ? ORDER BY sequence",
                                             site.account_id)]
    assert sequences == list(range(1, len(sequences) + 1))  # no gap, no reuse


def test_the_queue_timeout_counts_from_when_the_session_joined(site):
    def before(floor):
        call_center(floor, timeout=60)
        return floor.enqueue("q").id

    session_id = site.run(before)
    site.clock.advance(30_000)  # down for 30 s

    async def after(floor):
        check(floor)
        site.clock.advance(29_000)
        floor.run_pass()
        assert floor.sessions[session_id].state == SessionState.WAITING
        site.clock.advance(2_000)
        floor.run_pass()
        assert floor.session(session_id).state == SessionState.ENDED

    site.run(after)
    assert site.rows("SELECT end_reason, wait_ms FROM finished_sessions") == [("timed_out", 61_000)]
    assert site.rows("SELECT count(*) FROM live_sessions") == [(0,)]


def test_a_ringing_session_waits_again_and_a_connected_one_stays_connected(site):
    def before(floor):
        call_center(floor, "ann", "bob")
        talking = floor.enqueue("q", caller_number="+311", properties={"crm": 1})
        ringing = floor.enqueue("q", caller_number="+312")
        floor.run_pass()
        site.clock.advance(2_000)
        floor.accept(offer_of(floor, "ann"), "ann")
        site.clock.advance(1_000)
        return talking.id, ringing.id, offer_of(floor, "bob")

    talking, ringing, old_offer = site.run(before)
    site.clock.advance(5_000)

    async def after(floor):
        check(floor)
        ann, bob = floor.recipients["ann"], floor.recipients["bob"]
        assert floor.sessions[talking].state == SessionState.CONNECTED
        assert floor.sessions[talking].recipient_id == "ann" and ann.session is floor.sessions[talking]
        assert ann.state == RecipientState.BUSY
        await settle()  # the restore's pass offers the session to bob again: a new offer
        assert floor.sessions[ringing].state == SessionState.OFFERING
        assert bob.offer is not None and bob.offer.id != old_offer and bob.state == RecipientState.RINGING
        with pytest.raises(FailedPrecondition):
            floor.accept(old_offer, "bob")  # it stopped ringing with the restart
        site.clock.advance(4_000)
        floor.hangup(talking)
        assert ann.state == RecipientState.READY

    site.run(after)
    offers = site.rows("SELECT recipient_id, outcome, ring_ms FROM offers ORDER BY offered_at_ms, recipient_id")
    assert offers[:2] == [("ann", "accepted", 2_000), ("bob", "cancelled", 8_000)]
    [(reason, recipient, ring_ms, talk_ms, visited, doc)] = site.rows(
        "SELECT end_reason, recipient_id, ring_ms, talk_ms, queues_visited, doc FROM finished_sessions")
    assert (reason, recipient, ring_ms, talk_ms) == ("completed", "ann", 2_000, 10_000)
    assert json.loads(visited) == ["q"] and json.loads(doc)["properties"] == {"crm": 1}
    restarted = events(site, "recipient.offer_cancelled", "session.requeued")
    assert [(t, e, d.get("reason", d.get("outcome"))) for _, t, e, d in restarted] == [
        ("recipient.offer_cancelled", "bob", "restarted"), ("session.requeued", ringing, "withdrawn")]


def test_a_wrapup_resumes_until_its_stored_end(site):
    def before(floor):
        call_center(floor, "ann", wrapup=30)
        session = floor.enqueue("q")
        floor.run_pass()
        floor.accept(offer_of(floor, "ann"), "ann")
        site.clock.advance(5_000)
        floor.hangup(session.id)
        return site.clock.now_ms() + 30_000

    wrapup_until = site.run(before)
    site.clock.advance(10_000)

    def after(floor):
        check(floor)
        ann = floor.recipients["ann"]
        assert ann.state == RecipientState.WRAPUP and ann.wrapup_until_ms == wrapup_until
        site.clock.advance(19_000)
        floor.run_pass()
        assert ann.state == RecipientState.WRAPUP
        site.clock.advance(2_000)
        floor.run_pass()
        assert ann.state == RecipientState.READY
        assert floor.recipient_status("ann")["idle_since_ms"] == wrapup_until

    site.run(after)
    assert site.rows("SELECT kind, ended_at_ms - started_at_ms FROM activities WHERE kind = 'wrapup'") == [
        ("wrapup", 30_000)]


def test_a_wrapup_that_ended_while_down_ends_at_its_deadline(site):
    def before(floor):
        call_center(floor, "ann", wrapup=30)
        session = floor.enqueue("q")
        floor.run_pass()
        floor.accept(offer_of(floor, "ann"), "ann")
        floor.hangup(session.id)
        return site.clock.now_ms() + 30_000

    wrapup_until = site.run(before)
    site.clock.advance(60_000)

    async def after(floor):
        check(floor)
        await settle()
        assert floor.recipients["ann"].state == RecipientState.READY
        assert floor.recipient_status("ann")["idle_since_ms"] == wrapup_until

    site.run(after)
    assert site.rows("SELECT ended_at_ms FROM activities WHERE kind = 'wrapup'") == [(wrapup_until,)]


def test_recipients_come_back_logged_in_with_their_availability_and_counters(site):
    def before(floor):
        call_center(floor, "ann", "bob", "cy", "dan")
        floor.logout("cy")
        floor.set_availability("bob", Availability.AWAY, queue_id="q2")
        for _ in range(2):  # dan takes two calls (ann and bob are away)
            floor.set_availability("ann", Availability.AWAY, unavailable_code="lunch")
            session = floor.enqueue("q")
            floor.run_pass()
            ringing = next(r for r in floor.recipients.values() if r.offer)
            site.clock.advance(1_000)
            floor.accept(ringing.offer.id, ringing.id)
            site.clock.advance(7_000)
            floor.hangup(session.id)
        return {r: floor.recipient_status(r) for r in floor.recipients}

    statuses = site.run(before)
    site.clock.advance(3_000)

    def after(floor):
        check(floor)
        for recipient_id, status in statuses.items():
            assert floor.recipient_status(recipient_id) == status
        assert floor.recipient_status("ann")["unavailable_code"] == "lunch"
        assert floor.recipient_status("bob")["queue_availability"]["q2"] == Availability.AWAY
        assert not floor.recipients["cy"].logged_in
        assert sum(floor.recipient_status(r)["calls_taken"] for r in ("ann", "bob", "dan")) == 2
        floor.logout("ann")

    site.run(after)
    spans = site.rows("SELECT kind, code FROM activities WHERE recipient_id = 'ann' ORDER BY activity_id")
    assert ("away", "lunch") in spans and ("ready", None) in spans and spans[-1] == ("logged_in", None)
    assert site.rows("SELECT count(*) FROM activities WHERE recipient_id = 'cy' AND kind = 'logged_in'") == [(1,)]


def test_a_pending_logout_survives_with_the_supervisor_who_forced_it(site):
    def before(floor):
        call_center(floor, "ann", "sue", wrapup=30)
        floor.set_availability("sue", Availability.AWAY)
        session = floor.enqueue("q")
        floor.run_pass()
        floor.accept(offer_of(floor, "ann"), "ann")
        floor.logout("ann", changed_by="sue")  # takes effect when the call ends
        return session.id

    session_id = site.run(before)

    def after(floor):
        check(floor)
        assert floor.recipients["ann"].state == RecipientState.BUSY
        floor.hangup(session_id)
        assert floor.recipients["ann"].state == RecipientState.LOGGED_OUT

    site.run(after)
    logged_out = [data for _, _, entity_id, data in events(site, "recipient.logged_out") if entity_id == "ann"]
    assert [data.get("changed_by") for data in logged_out] == ["sue"]


def test_consecutive_misses_count_on_towards_the_bounced_call_limit(site):
    def ring_out(floor):  # the caller rings at ann (again) until the ring timeout
        floor.run_pass()
        offer = floor.recipients["ann"].offer
        assert offer is not None
        site.clock.advance(1_001)
        floor.run_pass()
        assert floor.recipients["ann"].offer is not offer

    def before(floor):
        call_center(floor, ring_timeout=1)
        floor.create_recipient(RecipientConfig(id="ann", bounced_call_limit=3))
        floor.add_members("q", [Member("ann")])
        floor.login("ann", ready=True)
        floor.enqueue("q")
        for _ in range(2):
            ring_out(floor)
        assert floor.recipient_status("ann")["consecutive_misses"] == 2

    site.run(before)

    def after(floor):
        check(floor)
        assert floor.recipient_status("ann")["consecutive_misses"] == 2
        ring_out(floor)  # the third in a row, across the restart: bounced
        status = floor.recipient_status("ann")
        assert status["state"] == RecipientState.AWAY and status["unavailable_code"] == "bounced"
        assert status["consecutive_misses"] == 0

    site.run(after)


def test_every_offer_and_finished_session_is_recorded_once(site):
    def run(floor):
        call_center(floor, "ann", ring_timeout=10)
        missed = floor.enqueue("q")
        floor.run_pass()
        site.clock.advance(10_000)
        floor.run_pass()  # rang out: missed, back in line, offered again
        site.clock.advance(1_000)
        floor.reject(offer_of(floor, "ann"), "ann")
        floor.run_pass()
        site.clock.advance(2_000)
        floor.abandon(missed.id)  # while ringing: the offer is cancelled
        answered = floor.enqueue("q", caller_number="+319")
        floor.transfer(answered.id, "q2")
        floor.transfer(answered.id, "q")
        floor.run_pass()
        floor.accept(offer_of(floor, "ann"), "ann")
        site.clock.advance(3_000)
        floor.hangup(answered.id)
        return missed.id, answered.id

    missed, answered = site.run(run)
    site.run()  # a restart writes none of it again
    assert site.rows("SELECT session_id, outcome, ring_ms FROM offers ORDER BY offered_at_ms, outcome") == [
        (missed, "missed", 10_000), (missed, "rejected", 1_000), (missed, "cancelled", 2_000),
        (answered, "accepted", 0)]
    finished = site.rows("SELECT session_id, end_reason, ring_ms, talk_ms, queues_visited FROM finished_sessions "
                         "ORDER BY ended_at_ms")
    assert finished == [(missed, "abandoned", 13_000, 0, '["q"]'), (answered, "completed", 0, 3_000,
                                                                   '["q","q2","q"]')]
    assert site.rows("SELECT count(*) FROM live_sessions") == [(0,)]


def test_without_durability_nothing_is_stored(tmp_path, impl):
    site = Site(tmp_path / "data", impl, durable=False)

    def run(floor):
        call_center(floor, "ann")
        floor.enqueue("q")

    site.run(run)
    for table in ("events", "live_sessions", "recipient_states", "config_docs"):
        assert site.rows(f"SELECT count(*) FROM {table}") == [(0,)]
    assert site.rows("SELECT count(*) FROM accounts") == [(1,)]  # accounts and keys are not the engine's


def test_queue_counters_and_the_ewt_service_rate_survive(site):
    def before(floor):
        call_center(floor, "ann", wrapup=5, ring_timeout=10)
        for talk_ms in (60_000, 90_000):  # two answered calls teach the queue its handle time
            session = floor.enqueue("q")
            floor.run_pass()
            site.clock.advance(2_000)
            floor.accept(offer_of(floor, "ann"), "ann")
            site.clock.advance(talk_ms)
            floor.hangup(session.id)
            floor.finish_wrapup("ann")
        abandoned = floor.enqueue("q")
        floor.run_pass()
        site.clock.advance(10_000)
        floor.run_pass()  # rang out: a missed offer
        floor.set_availability("ann", Availability.AWAY, unavailable_code="lunch")
        floor.abandon(abandoned.id)
        queue = floor.queues["q"]
        return floor.queue_status("q"), queue.counters, queue.rate

    status, counters, rate = site.run(before)
    assert (counters.total_sessions, counters.answered_sessions, counters.missed_sessions,
            counters.abandoned_sessions) == (3, 2, 1, 1)
    assert rate.observed == 2 and rate.handle_ms != ServiceRate().handle_ms

    def after(floor):
        queue = floor.queues["q"]
        assert (queue.counters, queue.rate) == (counters, rate)
        assert floor.queue_status("q") == status
        floor.set_availability("ann", Availability.READY)
        waiting = [floor.enqueue("q") for _ in range(2)]
        # the second caller waits one handle time (talk and wrap-up) as learned before the restart
        assert floor.estimated_wait_ms(waiting[1]) == int(rate.handle_ms)
        floor.delete_queue("q", force=True)

    site.run(after)
    assert site.rows("SELECT entity_id FROM config_docs WHERE kind = 'queue_stats'") == []
