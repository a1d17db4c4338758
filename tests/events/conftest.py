"""Fixtures of the event tests: ``api``, a real server harness whose node
takes an event retention (see ``_util``)."""

from __future__ import annotations

from pathlib import Path

import pytest

from ._util import EventsApi

TEST_TIMEOUT = 30  # seconds per test (pytest-timeout); each run's body has its own bound


def pytest_collection_modifyitems(items):
    here = Path(__file__).parent
    for item in items:
        if Path(item.fspath).parent == here and item.get_closest_marker("timeout") is None:
            item.add_marker(pytest.mark.timeout(TEST_TIMEOUT))


@pytest.fixture
def api(tmp_path) -> EventsApi:
    """A server harness over a fresh data dir in ``tmp_path`` (default retention)."""
    return EventsApi(tmp_path / "data")
