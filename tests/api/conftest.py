"""Fixtures of the API tests: ``api``, a real server harness (see ``_util``)."""

from __future__ import annotations

import pytest

from ._util import Api


@pytest.fixture
def api(tmp_path) -> Api:
    """A server harness over a fresh data dir in ``tmp_path``."""
    return Api(tmp_path / "data")
