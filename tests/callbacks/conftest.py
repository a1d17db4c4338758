"""Fixtures of the virtual-queueing tests (seed 003): ``lined``, a call
center on a virtual clock with its lined-up callers, and ``api``, a real
server on a virtual clock, with either dispatcher."""

from __future__ import annotations

import pytest

from qroute.engine import VirtualClock
from qroute.engine.callbacks import Callbacks
from tests.api._util import Api
from tests.engine.conftest import Center


class Lined(Center):
    """A Center whose floor has lined-up callers (``self.callbacks``)."""

    def __init__(self, impl) -> None:
        super().__init__(impl)
        self.callbacks = Callbacks(self.floor)

    def line_up(self, phone, channel, queue_id="q", source="Phone", **options):
        return self.callbacks.line_up(queue_id, phone, channel, source, **options)

    def serve(self, recipient_id, talk_ms=60_000):
        """The recipient answers what rings at it, talks, hangs up; then a pass."""
        session = self.answer(recipient_id)
        self.clock.advance(talk_ms)
        self.floor.hangup(session.id)
        self.tick()
        return session


@pytest.fixture
def lined(impl) -> Lined:
    return Lined(impl)


@pytest.fixture
def api(tmp_path, impl) -> Api:
    """A server on a virtual clock (``api.clock``) with the ``impl`` dispatcher."""
    clock = VirtualClock()
    harness = Api(tmp_path / "data", clock=clock, dispatcher_cls=impl)
    harness.clock = clock
    return harness
