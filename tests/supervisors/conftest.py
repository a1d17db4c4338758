"""Fixtures of the supervisor tests (seed 004): ``api``, a real server
harness, as the agent-side tests have it; 30 s per test."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.agents.conftest import TEST_TIMEOUT, api  # noqa: F401 (a fixture, found by name)


def pytest_collection_modifyitems(items):
    here = Path(__file__).parent
    for item in items:
        if Path(item.fspath).parent == here and item.get_closest_marker("timeout") is None:
            item.add_marker(pytest.mark.timeout(TEST_TIMEOUT))
