"""Fixtures of the webhook tests: ``api`` (a real server whose webhooks may
call 127.0.0.1, with short retries) and ``receiver`` (an HTTP server on
127.0.0.1 that records what it gets)."""

from __future__ import annotations

import pytest

from ._util import FAST, Receiver, WebhookApi


@pytest.fixture
def api(tmp_path) -> WebhookApi:
    """A server harness over a fresh data dir; 127.0.0.1/32 allowed, fast retries."""
    return WebhookApi(tmp_path / "data", FAST)


@pytest.fixture
def receiver() -> Receiver:
    return Receiver()
