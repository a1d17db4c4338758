"""WebhookService against a real server: create / get / update / delete /
list, secrets shown once, URL validation naming the field, non-public
destinations refused unless allowed, recipient deletion."""

from __future__ import annotations

import grpc
from google.protobuf import field_mask_pb2

from qroute.events.webhooks import WebhookSettings
from qroute.v1 import webhook_pb2

from ..api._util import fails
from ._util import GET, POST, WebhookApi, create_webhook, webhooks

INVALID, NOT_FOUND = grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND


def update(client, webhook_id: str, paths, **fields):
    return webhooks(client).UpdateWebhook(webhook_pb2.UpdateWebhookRequest(
        webhook=webhook_pb2.Webhook(id=webhook_id, **fields), update_mask=field_mask_pb2.FieldMask(paths=paths)),
        metadata=client.metadata)


def get(client, webhook_id: str):
    return webhooks(client).GetWebhook(webhook_pb2.GetWebhookRequest(webhook_id=webhook_id),
                                       metadata=client.metadata)


def list_(client, **fields):
    return webhooks(client).ListWebhooks(webhook_pb2.ListWebhooksRequest(**fields), metadata=client.metadata)


def delete(client, webhook_id: str):
    return webhooks(client).DeleteWebhook(webhook_pb2.DeleteWebhookRequest(webhook_id=webhook_id),
                                          metadata=client.metadata)


def test_crud_secrets_and_recipient_deletion(api, receiver):
    created = {}

    async def body(client):
        await client.create_recipient(id="ann", name="Ann")
        hook = await create_webhook(client, recipient_id="ann", event_type="agent-login", method=GET,
                                    url="http://127.0.0.1:9/hook")
        assert hook.id and hook.secret.startswith("whsec_") and len(hook.secret) > 40
        assert hook.method == GET and hook.create_time.seconds > 0
        chosen = await create_webhook(client, event_type="session.ended", url="http://127.0.0.1:9/ended",
                                      secret="my-own-secret-0123456789")
        assert chosen.secret == "my-own-secret-0123456789" and chosen.method == POST  # default
        # the secret is shown on create only
        fetched = await get(client, hook.id)
        assert fetched.secret == "" and fetched.url == hook.url and fetched.recipient_id == "ann"
        listed = await list_(client)
        assert sorted(w.id for w in listed.webhooks) == sorted([hook.id, chosen.id])
        assert all(w.secret == "" for w in listed.webhooks)
        assert [w.id for w in (await list_(client, recipient_id="ann")).webhooks] == [hook.id]
        first = await list_(client, page_size=1)
        second = await list_(client, page_size=1, page_token=first.next_page_token)
        assert [w.id for w in [*first.webhooks, *second.webhooks]] == sorted([hook.id, chosen.id])
        # update: named fields only; a secret is shown when the mask names it
        changed = await update(client, hook.id, ["url", "event_type"], url="http://127.0.0.1:9/other",
                               event_type="agent-logout")
        assert changed.url.endswith("/other") and changed.event_type == "agent-logout"
        assert changed.method == GET and changed.secret == ""
        rotated = await update(client, hook.id, ["secret"])
        assert rotated.secret.startswith("whsec_") and rotated.secret != hook.secret
        error = await fails(update(client, hook.id, []), INVALID)
        assert error.fields == ["update_mask"]
        error = await fails(update(client, hook.id, ["id", "create_time"]), INVALID)
        assert error.fields == ["update_mask", "update_mask"]
        error = await fails(update(client, hook.id, ["url"], url="ftp://127.0.0.1/"), INVALID)
        assert error.fields == ["webhook.url"]
        await fails(update(client, "nope", ["url"], url="http://127.0.0.1:9/"), NOT_FOUND)
        # request_id: a retried create creates once
        request = webhook_pb2.CreateWebhookRequest(
            webhook=webhook_pb2.Webhook(event_type="agent-login", url="http://127.0.0.1:9/x"), request_id="r1")
        once = await webhooks(client).CreateWebhook(request, metadata=client.metadata)
        again = await webhooks(client).CreateWebhook(request, metadata=client.metadata)
        assert once.id == again.id
        await delete(client, once.id)
        await fails(get(client, once.id), NOT_FOUND)
        await fails(delete(client, once.id), NOT_FOUND)
        # deleting a recipient deletes its webhooks
        await client.delete_recipient("ann")
        await fails(get(client, hook.id), NOT_FOUND)
        await fails(create_webhook(client, recipient_id="ann", event_type="agent-login",
                                   url="http://127.0.0.1:9/"), NOT_FOUND)
        # the admin key manages accounts, not webhooks
        async with api.admin() as admin:
            await fails(list_(admin), grpc.StatusCode.PERMISSION_DENIED)
        created["chosen"] = chosen

    api.run(body)

    async def after_restart(client):
        [kept] = (await list_(client)).webhooks
        assert kept.id == created["chosen"].id and kept.event_type == "session.ended" and kept.secret == ""
        await fails(get(client, created["chosen"].id + "x"), NOT_FOUND)

    api.run(after_restart)


def test_invalid_webhooks_name_the_field(api):
    async def body(client):
        cases = [
            ({"event_type": "agent-login"}, ["webhook.url"]),
            ({"url": "http://127.0.0.1:9/"}, ["webhook.event_type"]),
            ({"event_type": "agent-dance", "url": "http://127.0.0.1:9/"}, ["webhook.event_type"]),
            ({"event_type": "agent-login", "url": "ftp://127.0.0.1/x"}, ["webhook.url"]),
            ({"event_type": "agent-login", "url": "127.0.0.1/x"}, ["webhook.url"]),
            ({"event_type": "agent-login", "url": "http:///path"}, ["webhook.url"]),
            ({"event_type": "agent-login", "url": "http://user:pw@127.0.0.1/x"}, ["webhook.url"]),
            ({"event_type": "agent-login", "url": "http://token@127.0.0.1/x"}, ["webhook.url"]),
            ({"event_type": "agent-login", "url": "http://127.0.0.1:99999/x"}, ["webhook.url"]),
            ({"event_type": "agent-login", "url": "http://127.0.0.1/a b"}, ["webhook.url"]),
            ({"event_type": "agent-login", "url": "http://127.0.0.1/" + "x" * 2100}, ["webhook.url"]),
            ({"event_type": "session.ended", "url": "http://127.0.0.1:9/", "method": GET}, ["webhook.method"]),
            ({"event_type": "agent-login", "url": "http://127.0.0.1:9/", "method": 7}, ["webhook.method"]),
            ({"event_type": "agent-login", "url": "http://127.0.0.1:9/", "secret": "short"}, ["webhook.secret"]),
            ({"event_type": "nope", "url": "gopher://x", "secret": "short"},
             ["webhook.event_type", "webhook.secret", "webhook.url"]),
        ]
        for fields, names in cases:
            error = await fails(create_webhook(client, **fields), INVALID)
            assert sorted(error.fields) == names, (fields, error)
        error = await fails(create_webhook(client, event_type="agent-login", url="http://u:p@127.0.0.1/"), INVALID)
        assert "credentials" in error.message
        assert (await list_(client)).webhooks == []

    api.run(body)


def test_non_public_destinations_refused_unless_allowed(tmp_path):
    api = WebhookApi(tmp_path / "data", WebhookSettings())  # no --webhook-allow

    async def body(client):
        for url in ("http://127.0.0.1:8080/hook", "https://10.1.2.3/hook", "http://192.168.0.10/",
                    "http://[::1]:8080/", "http://169.254.169.254/latest/meta-data", "http://0.0.0.0/",
                    "http://[::ffff:127.0.0.1]/", "http://100.64.0.1/", "http://localhost:8080/"):
            error = await fails(create_webhook(client, event_type="agent-login", url=url), INVALID)
            assert error.fields == ["webhook.url"], url
            assert "--webhook-allow" in error.message and "not a public address" in error.message
        public = await create_webhook(client, event_type="agent-login", url="https://8.8.8.8/hook")
        assert public.id
        error = await fails(update(client, public.id, ["url"], url="http://127.0.0.1/"), INVALID)
        assert error.fields == ["webhook.url"]

    api.run(body)
