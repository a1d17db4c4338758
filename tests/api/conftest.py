"""Fixtures of the API tests: ``api``, a real server harness (see ``_util``)."""

from __future__ import annotations

from pathlib import Path

import pytest

from ._util import Api

TEST_TIMEOUT = 30  # seconds per test (pytest-timeout); each run's body has its own bound


def pytest_collection_modifyitems(items):
    here = Path(__file__).parent
    for item in items:
        if Path(item.fspath).parent == here and item.get_closest_marker("timeout") is None:
            item.add_marker(pytest.mark.timeout(TEST_TIMEOUT))


@pytest.fixture
def api(tmp_path) -> Api:
    """A server harness over a fresh data dir in ``tmp_path``."""
    return Api(tmp_path / "data")
