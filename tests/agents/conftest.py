"""Fixtures of the agent-side tests (seed 004): ``api``, a real server
harness, and ``center``, a call center on a virtual clock."""

from __future__ import annotations

import pytest

from tests.api._util import Api
from tests.engine.conftest import Center


@pytest.fixture
def api(tmp_path) -> Api:
    return Api(tmp_path / "data")


@pytest.fixture
def center(impl) -> Center:
    return Center(impl)
