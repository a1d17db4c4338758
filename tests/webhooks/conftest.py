"""Fixtures of the webhook tests: ``api`` (a real server whose webhooks may
call 127.0.0.1, with short retries) and ``receiver`` (an HTTP server on
127.0.0.1 that records what it gets)."""

from __future__ import annotations

from pathlib import Path

import pytest

from ._util import FAST, Receiver, WebhookApi

TEST_TIMEOUT = 30  # seconds per test (pytest-timeout); each run's body has its own bound


def pytest_collection_modifyitems(items):
    here = Path(__file__).parent
    for item in items:
        if Path(item.fspath).parent == here and item.get_closest_marker("timeout") is None:
            item.add_marker(pytest.mark.timeout(TEST_TIMEOUT))


@pytest.fixture
def api(tmp_path) -> WebhookApi:
    """A server harness over a fresh data dir; 127.0.0.1/32 allowed, fast retries."""
    return WebhookApi(tmp_path / "data", FAST)


@pytest.fixture
def receiver() -> Receiver:
    return Receiver()
