"""Webhook deliveries against a real HTTP server on 127.0.0.1: the seed's
agent-login / agent-logout requests (GET and POST), stream events as JSON,
retries through failures, timeouts and a receiver that is down, give-up
with webhook.failed, and a restart with deliveries pending."""

from __future__ import annotations

import asyncio
import collections
import dataclasses

from qroute.v1 import common_pb2, recipient_pb2, webhook_pb2

from ..api._util import eventually
from ._util import FAST, GET, POST, WebhookApi, create_webhook, free_port, webhooks

API, PHONE = common_pb2.EVENT_SOURCE_API, common_pb2.EVENT_SOURCE_PHONE
LOCAL_FIELDS = {"agent_id", "agent_status", "agent_type", "extension_name", "event_source"}
REMOTE_FIELDS = {"agent_id", "agent_status", "agent_type", "agent_number", "event_source"}


async def agents(client) -> dict[str, dict[str, str]]:
    """ann (local, the seed's extension) and bob (remote); what their events carry."""
    await client.create_recipient(id="ann", name="Ann", extension_name="000*094@ringme.ru")
    await client.create_recipient(id="bob", name="Bob", agent_type=common_pb2.AGENT_TYPE_REMOTE,
                                  agent_number="+15550100")
    return {"ann": {"agent_type": "local", "extension_name": "000*094@ringme.ru"},
            "bob": {"agent_type": "remote", "agent_number": "+15550100"}}


async def login(client, recipient_id: str, source: int, ready: bool = False) -> None:
    request = recipient_pb2.LoginRequest(recipient_id=recipient_id, source=source, ready=ready)
    await client.recipients.Login(request, metadata=client.metadata)


async def logout(client, recipient_id: str, source: int) -> None:
    await client.recipients.Logout(recipient_pb2.LogoutRequest(recipient_id=recipient_id, source=source),
                                   metadata=client.metadata)


def flaky(request_counts: collections.Counter):
    """Answers that fail some deliveries on purpose: a 500 on the first try of
    every third event, two 503s on every fifth, and a late answer (after the
    sender's timeout, so it is sent again) on some others."""
    def respond(request):
        request_counts[request.delivery_id] += 1
        tries = request_counts[request.delivery_id]
        if request.sequence % 3 == 0 and tries == 1:
            return 500
        if request.sequence % 5 == 0 and tries <= 2:
            return 503
        if request.sequence % 7 == 1 and tries == 1:
            return (FAST.timeout_s + 0.3, 200)
        return 200
    return respond


def test_agent_events_arrive_once_in_order_signed(api, receiver):
    async def body(client):
        await receiver.start()
        port = receiver.port
        await receiver.stop()  # down: nothing listens on the port for now
        kinds = await agents(client)
        ann_logins = await create_webhook(client, recipient_id="ann", event_type="agent-login", method=GET,
                                          url=receiver.url("/fordel/show.php?tag=q%20r"))
        logins = await create_webhook(client, event_type="agent-login", method=GET, url=receiver.url("/login"))
        logouts = await create_webhook(client, event_type="agent-logout", method=POST, url=receiver.url("/logout"))
        states = await create_webhook(client, event_type="recipient.state_changed", url=receiver.url("/states"))
        hooks = [ann_logins, logins, logouts, states]
        assert all(hook.secret.startswith("whsec_") for hook in hooks)
        assert len({hook.secret for hook in hooks}) == len(hooks)

        counts = collections.Counter()
        receiver.respond = flaky(counts)
        expected: dict[str, list[dict]] = {hook.id: [] for hook in hooks}
        for round_ in range(5):
            odd = round_ % 2 == 1
            for recipient_id, source in (("ann", PHONE if odd else API), ("bob", API if odd else PHONE)):
                await login(client, recipient_id, source, ready=round_ % 2 == 0)
                fields = {"agent_id": recipient_id, "agent_status": "available", **kinds[recipient_id],
                          "event_source": "phone" if source == PHONE else "api"}
                expected[logins.id].append(fields)
                if recipient_id == "ann":
                    expected[ann_logins.id].append({"tag": "q r", **fields})
            for recipient_id, source in (("bob", PHONE), ("ann", API)):
                await logout(client, recipient_id, source)
                expected[logouts.id].append({"agent_id": recipient_id, "agent_status": "logged_out",
                                             **kinds[recipient_id],
                                             "event_source": "phone" if source == PHONE else "api"})
            if round_ == 1:
                await asyncio.sleep(0.4)  # down for a while: attempts are refused and retried
                await receiver.start(port)
        node = api.node
        records = await node.storage.events_since(api.account_id, 1, 10_000)
        state_sequences = [r.sequence for r in records if r.type == "recipient.state_changed"]

        async def all_delivered():
            await asyncio.sleep(0.05)
            return not node.webhooks.pending and len(receiver.deliveries(states.id)) == len(state_sequences)
        await eventually(all_delivered, timeout=15)
        await receiver.stop()

        for hook in (ann_logins, logins, logouts):
            arrived = receiver.deliveries(hook.id)
            assert [r.fields for r in arrived] == expected[hook.id]
            for request in arrived:
                assert set(request.fields) - {"tag"} == (
                    LOCAL_FIELDS if request.fields["agent_id"] == "ann" else REMOTE_FIELDS)
                assert request.headers["x-qroute-event"] == hook.event_type
        assert {r.method for r in receiver.requests if r.webhook_id in (ann_logins.id, logins.id)} == {"GET"}
        assert {r.path for r in receiver.requests if r.webhook_id == ann_logins.id} == {"/fordel/show.php"}
        assert {r.headers["content-type"] for r in receiver.requests if r.webhook_id == logouts.id} == {
            "application/json"}
        # stream events: the whole event as JSON, in sequence order, each once
        documents = [r.fields for r in receiver.deliveries(states.id)]
        assert [d["sequence"] for d in documents] == state_sequences
        assert {d["type"] for d in documents} == {"recipient.state_changed"}
        assert {d["entity"] for d in documents} == {"recipient"}
        assert {d["account_id"] for d in documents} == {api.account_id}
        assert {d["data"]["source"] for d in documents} >= {"api", "phone"}

        secrets = {hook.id: hook.secret for hook in hooks}
        for request in receiver.requests:
            assert request.signature_ok(secrets[request.webhook_id]), request
            assert not request.signature_ok("whsec_someone-else's-secret"), request
            assert request.headers["idempotency-key"] == request.delivery_id
        for hook in hooks:
            receiver.check_in_order(hook.id)
        # the failures happened: 5xx answers, late answers sent again, refused connections
        assert any(r.status >= 500 for r in receiver.requests)
        assert any(r.late for r in receiver.requests)
        assert len(receiver.requests) > sum(len(receiver.deliveries(hook.id)) for hook in hooks)
        assert node.webhooks.failed_attempts > sum(1 for r in receiver.requests if r.status >= 500 or r.late)
        await node.storage.flush()
        assert await node.storage.outbox_due(2 ** 62, 100) == []

    api.run(body, timeout=20)


def test_give_up_after_max_age_emits_webhook_failed(tmp_path, receiver):
    api = WebhookApi(tmp_path / "data", dataclasses.replace(FAST, max_age_ms=700, backoff_max_ms=150))

    async def body(client):
        await receiver.start()
        receiver.respond = lambda request: 500 if request.path == "/broken" else 200
        await agents(client)
        broken = await create_webhook(client, event_type="agent-login", url=receiver.url("/broken"))
        failures = await create_webhook(client, event_type="webhook.failed", url=receiver.url("/failures"))
        await login(client, "ann", API)

        async def reported():
            return receiver.deliveries(failures.id)
        [report] = await eventually(reported, timeout=5)
        document = report.fields
        assert document["type"] == "webhook.failed"
        assert document["entity"] == "webhook" and document["entity_id"] == broken.id
        data = document["data"]
        assert data["event_type"] == "agent-login"
        assert data["last_error"] == "HTTP 500"
        tries = [r for r in receiver.requests if r.webhook_id == broken.id]
        assert data["attempts"] == len(tries) >= 3
        assert {r.delivery_id for r in tries} == {data["delivery_id"]}
        assert data["delivery_id"] == f"{broken.id}-{data['event_sequence']}"
        assert report.signature_ok(failures.secret)
        await asyncio.sleep(0.2)
        assert len(receiver.requests) == len(tries) + 1  # no retry after giving up; no report of the report
        node = api.node
        assert not node.webhooks.pending
        await node.storage.flush()
        assert await node.storage.outbox_due(2 ** 62, 100) == []
        records = await node.storage.events_since(api.account_id, 1, 1000)
        assert [r.entity for r in records if r.type == "webhook.failed"] == ["webhook"]
        await receiver.stop()

    api.run(body)


def test_restart_resumes_pending_deliveries(api, receiver):
    port = free_port()
    receiver.port = port
    created = {}

    async def before_restart(client):
        kinds = await agents(client)
        created["login"] = await create_webhook(client, event_type="agent-login", method=GET,
                                                url=receiver.url("/login"))
        created["logout"] = await create_webhook(client, event_type="agent-logout", url=receiver.url("/logout"))
        for source in (API, PHONE, API):
            await login(client, "bob", source)
            await logout(client, "bob", source)
        created["kinds"] = kinds
        # committed with their events (the calls returned once durable), not sent: the receiver is down
        rows = await api.node.storage.outbox_due(2 ** 62, 100)
        assert len(rows) == 6

        async def both_tried():  # each webhook's first delivery failed at least once, and that is stored
            await api.node.storage.flush()
            rows = await api.node.storage.outbox_due(2 ** 62, 100)
            return {row.webhook_id for row in rows if row.attempts >= 1} == {
                created["login"].id, created["logout"].id}
        await eventually(both_tried)

    api.run(before_restart)
    counts = collections.Counter()
    receiver.respond = flaky(counts)

    async def after_restart(client):
        await receiver.start(port)
        restored = await webhooks(client).GetWebhook(
            webhook_pb2.GetWebhookRequest(webhook_id=created["login"].id), metadata=client.metadata)
        assert restored.url == created["login"].url and restored.secret == ""

        async def resumed():
            await asyncio.sleep(0.05)
            return not api.node.webhooks.pending and len(receiver.requests) >= 6
        await eventually(resumed, timeout=10)
        await receiver.stop()
        bob = {"agent_id": "bob", **created["kinds"]["bob"]}
        sources = ["api", "phone", "api"]
        for name, status in (("login", "available"), ("logout", "logged_out")):
            hook = created[name]
            arrived = receiver.deliveries(hook.id)
            assert [r.fields for r in arrived] == [
                {**bob, "agent_status": status, "event_source": source} for source in sources]
            receiver.check_in_order(hook.id)
            for request in receiver.requests:
                if request.webhook_id == hook.id:
                    assert request.signature_ok(hook.secret)
            # the first was tried before the restart, and its attempts were counted on
            assert int(receiver.requests[[r.webhook_id for r in receiver.requests].index(hook.id)]
                       .headers["x-qroute-attempt"]) >= 2
        await api.node.storage.flush()
        assert await api.node.storage.outbox_due(2 ** 62, 100) == []

    api.run(after_restart)


def test_deleting_a_webhook_drops_its_pending_deliveries(api, receiver):
    receiver.port = free_port()  # down throughout

    async def body(client):
        await agents(client)
        doomed = await create_webhook(client, event_type="agent-login", url=receiver.url("/doomed"))
        kept = await create_webhook(client, event_type="agent-logout", url=receiver.url("/kept"))
        await login(client, "ann", API)
        await logout(client, "ann", API)
        node = api.node
        assert {row.webhook_id for row in await node.storage.outbox_due(2 ** 62, 100)} == {doomed.id, kept.id}
        await webhooks(client).DeleteWebhook(webhook_pb2.DeleteWebhookRequest(webhook_id=doomed.id),
                                             metadata=client.metadata)
        assert [row.webhook_id for row in await node.storage.outbox_due(2 ** 62, 100)] == [kept.id]
        assert set(node.webhooks.pending) == {kept.id}
        await login(client, "ann", API)  # no longer matches anything
        assert [row.webhook_id for row in await node.storage.outbox_due(2 ** 62, 100)] == [kept.id]

    api.run(body)
