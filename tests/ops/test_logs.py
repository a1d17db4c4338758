"""Structured logs: a line per significant change at INFO, none per RPC, no secrets."""

from __future__ import annotations

import asyncio
import io
import json
import logging

from qroute import logs
from qroute.domain.events import DomainEvent

from ._server import call_flow, serve


def capture(level: str, fmt: str = "json"):
    stream = io.StringIO()
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    handler = logs.setup(level, fmt, stream)
    return stream, lambda: (root.removeHandler(handler), root.handlers.extend(saved[0]), root.setLevel(saved[1]))


def run_flow(tmp_path, level):
    stream, restore = capture(level)
    try:
        async def body():
            served = await serve(tmp_path / "data", metrics=False)
            try:
                async with await served.account() as client:
                    await call_flow(client)
                    await client.delete_queue("support")
                return served.key
            finally:
                await served.running.stop(0)

        key = asyncio.run(asyncio.wait_for(body(), 15))
    finally:
        restore()
    return [json.loads(line) for line in stream.getvalue().splitlines()], key, stream.getvalue()


def test_info_logs_changes_as_json_and_no_rpcs_nor_secrets(tmp_path):
    lines, key, text = run_flow(tmp_path, "info")
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
    secret = key.split("_", 2)[2]
    assert secret not in text


def test_debug_logs_every_rpc(tmp_path):
    lines, _, _ = run_flow(tmp_path, "debug")
    rpcs = [line for line in lines if line["msg"].startswith("rpc ")]
    assert any(line["method"] == "SessionService/Enqueue" and line["code"] == "OK" for line in rpcs)


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
