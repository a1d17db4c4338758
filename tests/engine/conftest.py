"""A call center on a virtual clock, for engine scenarios."""

from __future__ import annotations

import pytest

from qroute.domain.config import Member, QueueConfig, RecipientConfig
from qroute.engine import Engine, VirtualClock


class Center:
    def __init__(self, impl) -> None:
        self.clock = VirtualClock()
        self.events = []
        self.engine = Engine(self.clock, sink=self.events.append, dispatcher_cls=impl, seed=3)
        self.floor = self.engine.open_floor("acct")

    def queue(self, queue_id="q", **options):
        return self.floor.create_queue(QueueConfig(id=queue_id, name=queue_id.title(), **options))

    def agent(self, recipient_id, *queues, ready=True, tier=1, **options):
        self.floor.create_recipient(RecipientConfig(id=recipient_id, **options))
        for queue_id in queues:
            self.floor.add_members(queue_id, [Member(recipient_id, tier)])
        self.floor.login(recipient_id, ready=ready)

    def call(self, queue_id="q", **options):
        return self.floor.enqueue(queue_id, **options)

    def tick(self, ms=0):
        self.clock.advance(ms)
        return self.floor.run_pass()

    def offer_of(self, recipient_id):
        offer = self.floor.recipients[recipient_id].offer
        return offer.id if offer else None

    def answer(self, recipient_id, after_ms=0):
        self.clock.advance(after_ms)
        return self.floor.accept(self.offer_of(recipient_id), recipient_id)

    def types(self, *wanted):
        return [e.type for e in self.events if not wanted or e.type in wanted]

    def of(self, type_):
        return [e for e in self.events if e.type == type_]

    def state(self, recipient_id):
        return self.floor.recipients[recipient_id].state.name

    def check(self):
        """Cross-checks between the engine's books and the dispatcher's."""
        floor = self.floor
        floor.dispatcher._check()
        for queue in floor.queues.values():
            waiting = [s for s in floor.sessions.values() if s.queue_id == queue.id and s.state.name == "WAITING"]
            offering = [s for s in floor.sessions.values() if s.queue_id == queue.id and s.state.name == "OFFERING"]
            assert len(queue.line) == len(waiting)
            assert queue.offering == len(offering)
            assert floor.dispatcher.waiting_count(queue.handle) == len(waiting)
            version, serving = queue.serving
            if version == floor._staffing:  # the EWT's cached count must equal a recount
                assert serving == sum(1 for rid in queue.members if floor._serving(floor.recipients[rid], queue.id))
            assert [key[3] for key in queue.line] == [
                floor._session_at[h].id for h in floor.dispatcher.queue_order(queue.handle)]
        for recipient in floor.recipients.values():
            assert not (recipient.offer and recipient.session)
            if recipient.offer:
                assert recipient.offer.session.offers[recipient.offer.id] is recipient.offer


@pytest.fixture
def center(impl):
    return Center(impl)
