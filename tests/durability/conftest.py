"""Fixtures of the durability tests: ``restart``, a node over a data dir on a
virtual clock that can be stopped and started again (``test_restore``), and
a real ``qroute serve`` process (``_server``) killed with SIGKILL
(``test_kill``)."""

from __future__ import annotations

from pathlib import Path

import pytest

TEST_TIMEOUT = 60  # seconds per test (pytest-timeout); the kill tests start two server processes


def pytest_collection_modifyitems(items):
    here = Path(__file__).parent
    for item in items:
        if Path(item.fspath).parent == here and item.get_closest_marker("timeout") is None:
            item.add_marker(pytest.mark.timeout(TEST_TIMEOUT))
