"""Structured logs: a line per significant change at INFO, none per RPC, no secrets."""

from __future__ import annotations

import asyncio
import io
import json
import logging

import pytest

from qroute import logs
from qroute.client import Client, ClientError
from qroute.domain.events import DomainEvent

from ._server import after_call_flow

WRONG_KEY = "qr_k9stranger_" + "W" * 43


def capture(level: str, fmt: str = "json"):
    stream = io.StringIO()
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    handler = logs.setup(level, fmt, stream)
    return stream, lambda: (root.removeHandler(handler), root.handlers.extend(saved[0]), root.setLevel(saved[1]))


def run_flow(tmp_path, level):
    stream, restore = capture(level)
    try:
        async def then(served, client):
            await client.delete_queue("support")
            async with Client(served.target, WRONG_KEY) as stranger:  # refused: its secret is not logged
                with pytest.raises(ClientError):
                    await stranger.list_queues()
            return served.key, served.admin_key

        keys = asyncio.run(asyncio.wait_for(after_call_flow(tmp_path / "data", then), 15))
    finally:
        restore()
    return [json.loads(line) for line in stream.getvalue().splitlines()], keys, stream.getvalue()


def secrets_of(*keys: str) -> list[str]:
    return [key.split("_", 2)[2] for key in (*keys, WRONG_KEY)]


def test_info_logs_changes_as_json_and_no_rpcs_nor_secrets(tmp_path):
    lines, keys, text = run_flow(tmp_path, "info")
    messages = [line["msg"] for line in lines]
    assert messages[0].startswith("server started on 127.0.0.1:")
    assert "queue sales created" in messages and "queue support deleted" in messages
    assert "recipient ann created" in messages and "recipient ann logged in" in messages
    assert any(m.startswith("API key ") and " created for account " in m for m in messages)
    assert any(m.startswith("account ") and m.endswith(" created") for m in messages)
    assert messages[-1] == "server stopped"
    created = next(line for line in lines if line["msg"] == "queue sales created")
    assert created["level"] == "info" and created["logger"] == "qroute.changes"
    assert created["event"] == "queue.created" and created["entity_id"] == "sales" and created["account_id"]
    assert not any(m.startswith("rpc ") for m in messages)
    assert not any(secret in text for secret in secrets_of(*keys))


def test_debug_logs_every_rpc_and_still_no_secret(tmp_path):
    lines, keys, text = run_flow(tmp_path, "debug")
    rpcs = [line for line in lines if line["msg"].startswith("rpc ")]
    assert any(line["method"] == "SessionService/Enqueue" and line["code"] == "OK" for line in rpcs)
    assert any(line["method"] == "QueueService/ListQueues" and line["code"] == "UNAUTHENTICATED" for line in rpcs)
    assert not any(secret in text for secret in secrets_of(*keys))


def test_url_passwords_and_secret_parameters_are_masked():
    stream, restore = capture("info", "json")
    try:
        logging.getLogger("qroute.test").info(
            "webhook w1 delivery d1 failed (attempt 1): ConnectError for url "
            "'https://hook:pa55word@crm.example.com/in?token=t0ken99&agent=ann&api_key=k3y99'")
    finally:
        restore()
    text = stream.getvalue()
    assert "pa55word" not in text and "t0ken99" not in text and "k3y99" not in text
    assert "https://hook:****@crm.example.com/in?token=****&agent=ann&api_key=****" in text


def test_keys_and_bearer_tokens_are_masked_in_any_line():
    stream, restore = capture("info", "console")
    try:
        logging.getLogger("qroute.test").info("got qr_abcd1234_%s from Bearer %s", "S" * 40, "t" * 30,
                                              extra={"header": "Bearer qr_k1_" + "x" * 40})
    finally:
        restore()
    text = stream.getvalue()
    assert "SSSS" not in text and "tttttttt" not in text and "xxxx" not in text
    assert "qr_abcd1234_****" in text and "Bearer ****" in text and "header=Bearer qr_k1_****" in text


def test_forced_away_and_forced_logout_lines():
    records = []

    class Keep(logging.Handler):
        def emit(self, record):
            records.append(record)

    logger = logging.getLogger("qroute.test.changes")
    logger.addHandler(Keep())
    logger.setLevel(logging.INFO)
    changes = logs.ChangeLog(logger)
    changes(DomainEvent("recipient.state_changed", "ann", 0, {"state": "away", "previous_state": "ringing",
                                                              "forced_by": "bounced"}, "acct"))
    changes(DomainEvent("recipient.state_changed", "ann", 0, {"state": "away", "previous_state": "away",
                                                              "forced_by": "bounced"}, "acct"))
    changes(DomainEvent("recipient.state_changed", "bob", 0, {"state": "busy", "previous_state": "ringing"},
                        "acct"))
    changes(DomainEvent("session.offered", "s1", 0, {}, "acct"))
    changes(DomainEvent("recipient.logged_out", "cy", 0, {"source": "system", "forced_by": "admin"}, "acct"))
    assert [r.getMessage() for r in records] == ["recipient ann forced away (bounced)",
                                                 "recipient cy logged out (forced: admin)"]
