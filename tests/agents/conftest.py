"""Fixtures of the agent-side tests (seed 004): ``api``, a real server
harness, and ``center``, a call center on a virtual clock."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.api._util import Api
from tests.engine.conftest import Center

TEST_TIMEOUT = 30  # seconds per test (pytest-timeout); each run's body has its own bound


def pytest_collection_modifyitems(items):
    here = Path(__file__).parent
    for item in items:
        if Path(item.fspath).parent == here and item.get_closest_marker("timeout") is None:
            item.add_marker(pytest.mark.timeout(TEST_TIMEOUT))


@pytest.fixture
def api(tmp_path) -> Api:
    return Api(tmp_path / "data")


@pytest.fixture
def center(impl) -> Center:
    return Center(impl)
