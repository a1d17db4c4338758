"""Fixtures of the operations tests (config, logs, metrics, wallboard)."""

from __future__ import annotations

from pathlib import Path

import pytest

TEST_TIMEOUT = 20  # seconds per test


def pytest_collection_modifyitems(items):
    here = Path(__file__).parent
    for item in items:
        if Path(item.fspath).parent == here and item.get_closest_marker("timeout") is None:
            item.add_marker(pytest.mark.timeout(TEST_TIMEOUT))
