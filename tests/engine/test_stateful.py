"""Random commands and clock advances; the engine's invariants hold after every step."""

from collections import Counter

import hypothesis.strategies as st
from hypothesis import HealthCheck, settings
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from qroute import routing
from qroute.domain.config import Member, QueueConfig, RecipientConfig, TierRule
from qroute.domain.enums import Availability, Router, SessionState
from qroute.errors import QrouteError

from .conftest import Center

QUEUES = ["a", "b", "c"]
AGENTS = ["r0", "r1", "r2", "r3"]


def stateful_for(impl):
    class EngineMachine(RuleBasedStateMachine):
        @initialize(routers=st.lists(st.sampled_from(list(Router)), min_size=3, max_size=3))
        def setup(self, routers):
            self.c = Center(impl)
            for queue_id, router in reversed(list(zip(QUEUES, routers))):
                self.c.floor.create_queue(QueueConfig(
                    id=queue_id, name=queue_id, router=router, ring_timeout=5, timeout=60,
                    agent_wrapup_time=2 if queue_id == "a" else 0,
                    tier_expansion=(TierRule(10, 2),) if queue_id == "b" else (),
                    timeout_redirect="c" if queue_id == "a" else ""))
            for i, agent in enumerate(AGENTS):
                self.c.floor.create_recipient(RecipientConfig(
                    id=agent, skills={"en": 5, "fr": i * 3 + 1}, bounced_call_limit=2 if i == 0 else 0,
                    guard_timer_seconds=1 if i == 1 else 0))
                self.c.floor.add_members(QUEUES[i % 3], [Member(agent, 1 + i % 2)])
                self.c.floor.add_members(QUEUES[(i + 1) % 3], [Member(agent)])
            self.created = set()

        @rule(queue=st.sampled_from(QUEUES), priority=st.integers(0, 2),
              skills=st.sampled_from([{}, {"en": 3}, {"fr": 5}, {"fr": 9}]))
        def enqueue(self, queue, priority, skills):
            session = self.c.floor.enqueue(queue, priority=priority, skills=skills)
            self.created.add(session.id)

        @rule(agent=st.sampled_from(AGENTS), ready=st.booleans())
        def login(self, agent, ready):
            self.c.floor.login(agent, ready=ready)

        @rule(agent=st.sampled_from(AGENTS))
        def logout(self, agent):
            self.c.floor.logout(agent)
            recipient = self.c.floor.recipients[agent]
            assert recipient.logged_in == (recipient.session is not None)

        @rule(agent=st.sampled_from(AGENTS), ready=st.booleans(), queue=st.sampled_from(["", *QUEUES]))
        def availability(self, agent, ready, queue):
            try:
                self.c.floor.set_availability(
                    agent, Availability.READY if ready else Availability.AWAY, queue_id=queue)
            except QrouteError:
                pass

        @rule(agent=st.sampled_from(AGENTS), accept=st.booleans())
        def answer(self, agent, accept):
            offer = self.c.floor.recipients[agent].offer
            if offer is not None:
                (self.c.floor.accept if accept else self.c.floor.reject)(offer.id, agent)

        @rule(agent=st.sampled_from(AGENTS))
        def desktop_lost(self, agent):
            self.c.floor.miss(agent)

        @rule(agent=st.sampled_from(AGENTS))
        def hangup(self, agent):
            session = self.c.floor.recipients[agent].session
            if session is not None:
                self.c.floor.hangup(session.id)

        @rule(agent=st.sampled_from(AGENTS))
        def finish_wrapup(self, agent):
            if self.c.floor.recipients[agent].in_wrapup:
                self.c.floor.finish_wrapup(agent)

        @rule(data=st.data())
        def abandon(self, data):
            # in arrival order: ids end in random bits, and a replay must draw the same session
            live = [s.id for s in sorted(self.c.floor.sessions.values(), key=lambda s: s.seq)
                    if s.state in (SessionState.WAITING, SessionState.OFFERING)]
            if live:
                self.c.floor.abandon(data.draw(st.sampled_from(live)))

        @rule(data=st.data(), queue=st.sampled_from(QUEUES))
        def transfer(self, data, queue):
            live = [s.id for s in sorted(self.c.floor.sessions.values(), key=lambda s: s.seq)]
            if live:
                session_id = data.draw(st.sampled_from(live))
                try:
                    self.c.floor.transfer(session_id, queue)
                except QrouteError:
                    assert self.c.floor.sessions[session_id].queue_id == queue

        @rule(ms=st.sampled_from([0, 500, 1_000, 2_000, 5_000, 12_000, 61_000]))
        def advance(self, ms):
            self.c.tick(ms)

        @invariant()
        def books_balance(self):
            if not hasattr(self, "c"):
                return
            self.c.check()
            floor = self.c.floor
            holders = Counter()
            for recipient in floor.recipients.values():
                if recipient.offer:
                    holders[recipient.offer.session.id] += 1
                    assert recipient.offer.session.state == SessionState.OFFERING
                if recipient.session:
                    assert recipient.session.state == SessionState.CONNECTED
                    assert recipient.session.recipient_id == recipient.id
                assert recipient.state == recipient.derived_state()
                stats = floor.dispatcher.recipient_stats(recipient.handle)
                busy = {routing.OFFERED: recipient.offer, routing.BUSY: recipient.session}
                for dispatcher_state, held in busy.items():
                    assert (stats[0] == dispatcher_state) == (held is not None)
                assert (stats[0] == routing.WRAPUP) == recipient.in_wrapup
            for session in floor.sessions.values():
                assert session.state != SessionState.ENDED
                if session.state == SessionState.OFFERING:
                    assert holders[session.id] == len(session.offers) >= 1
                else:
                    assert not session.offers
                in_dispatcher = session.state in (SessionState.WAITING, SessionState.OFFERING)
                assert (session.handle >= 0) == in_dispatcher
            ended = {e.entity_id for e in self.c.of("session.ended")}
            for session_id in self.created:
                assert (session_id in floor.sessions) != (session_id in ended)
            for queue in floor.queues.values():
                status = floor.queue_status(queue.id)
                assert status["active_session_count"] == sum(
                    1 for s in floor.sessions.values()
                    if s.queue_id == queue.id and s.state in (SessionState.WAITING, SessionState.OFFERING))

    EngineMachine.TestCase.settings = settings(max_examples=150, stateful_step_count=40, deadline=None,
                                               suppress_health_check=[HealthCheck.too_slow])
    return EngineMachine


def test_engine_invariants(impl):
    stateful_for(impl).TestCase().runTest()
