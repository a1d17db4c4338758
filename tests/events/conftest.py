"""Fixtures of the event tests: ``api``, a real server harness whose node
takes an event retention (see ``_util``)."""

from __future__ import annotations

import pytest

from ._util import EventsApi


@pytest.fixture
def api(tmp_path) -> EventsApi:
    """A server harness over a fresh data dir in ``tmp_path`` (default retention)."""
    return EventsApi(tmp_path / "data")
