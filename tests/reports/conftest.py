"""Fixtures of the report tests: every test here has a timeout."""

from __future__ import annotations

from pathlib import Path

import pytest

TEST_TIMEOUT = 30  # seconds per test (pytest-timeout); each server run's body has its own bound


def pytest_collection_modifyitems(items):
    here = Path(__file__).parent
    for item in items:
        if Path(item.fspath).parent == here and item.get_closest_marker("timeout") is None:
            item.add_marker(pytest.mark.timeout(TEST_TIMEOUT))
