"""The pieces of webhook delivery without a server: signatures, backoff,
the destination policy, URL checks, the seed's payload, request shape."""

from __future__ import annotations

import asyncio
import ipaddress
import time
import urllib.parse

import pytest

from qroute.domain.config import RecipientConfig
from qroute.domain.enums import AgentType
from qroute.domain.events import DomainEvent
from qroute.engine.clock import SystemClock
from qroute.events.webhooks import (
    Delivery,
    Webhook,
    Webhooks,
    WebhookSettings,
    agent_event_data,
    parse_networks,
    refusal,
    sign,
    url_problems,
    verify,
)


def test_signature_round_trip_and_tampering():
    now = int(time.time())
    header = sign("whsec_abc", now, b'{"a":1}')
    assert header.startswith(f"t={now},v1=") and len(header.partition("v1=")[2]) == 64
    assert verify("whsec_abc", header, b'{"a":1}')
    assert not verify("whsec_abc", header, b'{"a":2}')
    assert not verify("whsec_abd", header, b'{"a":1}')
    assert not verify("whsec_abc", header.replace(f"t={now}", f"t={now + 1}"), b'{"a":1}')
    stale = sign("whsec_abc", now - 3600, b"x")
    assert not verify("whsec_abc", stale, b"x") and verify("whsec_abc", stale, b"x", tolerance_s=None)
    assert not verify("whsec_abc", "garbage", b"x")


def test_backoff_grows_is_capped_and_jittered():
    settings = WebhookSettings(backoff_min_ms=100, backoff_max_ms=1000)
    for attempts, full in ((1, 100), (2, 200), (3, 400), (4, 800), (5, 1000), (60, 1000)):
        delays = {settings.backoff_ms(attempts) for _ in range(200)}
        assert all(full // 2 <= delay <= full for delay in delays), (attempts, delays)
        assert len(delays) > 10  # jitter


def test_destination_policy():
    allow = parse_networks(["127.0.0.1/32", "10.0.0.0/8"])
    address = ipaddress.ip_address
    assert refusal(address("8.8.8.8"), ()) is None
    assert refusal(address("2001:4860:4860::8888"), ()) is None
    for refused in ("127.0.0.1", "127.0.0.2", "::1", "192.168.1.1", "172.16.0.1", "169.254.169.254", "0.0.0.0",
                    "100.64.0.1", "fe80::1", "fc00::1", "224.0.0.1", "::ffff:192.168.1.1"):
        assert refusal(address(refused), ()) is not None, refused
    assert refusal(address("127.0.0.1"), allow) is None
    assert refusal(address("::ffff:127.0.0.1"), allow) is None
    assert refusal(address("10.9.8.7"), allow) is None
    assert refusal(address("127.0.0.2"), allow) is not None
    assert refusal(address("::1"), allow) is not None
    with pytest.raises(ValueError, match="not an IP network"):
        parse_networks(["localhost"])


def test_url_problems():
    assert url_problems("https://example.com/x?y=1") == ([], "example.com", 443)
    assert url_problems("http://example.com:8080") == ([], "example.com", 8080)
    assert url_problems("HTTP://EXAMPLE.com/")[0] == []
    for bad in ("", "example.com/x", "ftp://example.com/", "http://", "http://a b/", "http://u:p@example.com/",
                "http://u@example.com/", "http://example.com:70000/", "javascript:alert(1)"):
        assert url_problems(bad)[0], bad


def test_agent_event_data_is_the_seeds():
    local = RecipientConfig(id="136", extension_name="000*094@ringme.ru")
    remote = RecipientConfig(id="7", agent_type=AgentType.REMOTE, agent_number="+15550100",
                             extension_name="ignored")
    login = DomainEvent("recipient.logged_in", "136", 0, {"state": "away", "source": "api", "forced_by": ""})
    assert agent_event_data(login, local) == {
        "agent_id": "136", "agent_status": "available", "agent_type": "local",
        "extension_name": "000*094@ringme.ru", "event_source": "api"}
    logout = DomainEvent("recipient.logged_out", "7", 0, {"previous_state": "ready", "source": "phone"})
    assert agent_event_data(logout, remote) == {
        "agent_id": "7", "agent_status": "logged_out", "agent_type": "remote", "agent_number": "+15550100",
        "event_source": "phone"}
    forced = DomainEvent("recipient.logged_out", "136", 0, {"source": "system", "forced_by": "x"})
    assert agent_event_data(forced, local)["event_source"] == "api"


def _hooks(settings: WebhookSettings = WebhookSettings()) -> Webhooks:
    return Webhooks(storage=None, journal=None, engine=None, clock=SystemClock(), settings=settings)


def _delivery(fields) -> Delivery:
    return Delivery("acct", "wh1", 42, "agent-login", 0, fields, 0, 0)


def test_get_request_appends_the_fields_and_signs_the_query():
    hook = Webhook("wh1", "acct", "agent-login", "http://example.com/show.php?client=12#top", "GET",
                   secret="whsec_0123456789abcdef")
    fields = {"agent_id": "136", "extension_name": "000*094@ringme.ru"}
    method, url, headers, body = _hooks().request_of(hook, _delivery(fields), 1_700_000_000)
    assert method == "GET" and body == b""
    parts = urllib.parse.urlsplit(url)
    assert parts.path == "/show.php" and not parts.fragment
    assert dict(urllib.parse.parse_qsl(parts.query)) == {"client": "12", **fields}
    assert headers["X-Qroute-Signature"] == sign(hook.secret, 1_700_000_000, parts.query.encode())
    assert headers["X-Qroute-Delivery"] == "wh1-42" and headers["X-Qroute-Attempt"] == "1"


def test_post_request_is_json():
    hook = Webhook("wh1", "acct", "agent-login", "https://example.com/x", "POST", secret="whsec_0123456789abcdef")
    method, url, headers, body = _hooks().request_of(hook, _delivery({"agent_id": "1"}), 1_700_000_000)
    assert (method, url, body) == ("POST", "https://example.com/x", b'{"agent_id":"1"}')
    assert headers["Content-Type"] == "application/json"
    assert verify(hook.secret, headers["X-Qroute-Signature"], body, tolerance_s=None)


def test_a_name_resolving_to_loopback_is_refused_at_delivery():
    hook = Webhook("wh1", "acct", "agent-login", "http://localhost:9/x", "POST", secret="whsec_0123456789abcdef")

    async def attempt(settings):
        hooks = _hooks(settings)
        try:
            return await asyncio.wait_for(hooks._attempt(hook, _delivery({})), 5)
        finally:
            await hooks.stop()

    error = asyncio.run(attempt(WebhookSettings()))
    assert "not a public address" in error
    # allowed: it is tried (and nothing listens on port 9)
    allowed = asyncio.run(attempt(WebhookSettings(allow=parse_networks(["127.0.0.0/8", "::1/128"]))))
    assert allowed and "not a public address" not in allowed


def test_serve_takes_the_allow_list():
    from qroute.cli import build_parser

    args = build_parser().parse_args(["serve", "--webhook-allow", "127.0.0.1/32", "--webhook-allow", "10.0.0.0/8",
                                      "--webhook-max-age", "600", "--webhook-timeout", "3"])
    assert args.webhook_allow == list(parse_networks(["127.0.0.1/32", "10.0.0.0/8"]))
    assert (args.webhook_max_age, args.webhook_timeout) == (600, 3)
    assert build_parser().parse_args(["serve"]).webhook_allow == []
    with pytest.raises(SystemExit):
        build_parser().parse_args(["serve", "--webhook-allow", "not-a-network"])
