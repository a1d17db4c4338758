"""WebhookService: webhook configuration (delivery is ``qroute.events.webhooks``)."""

from __future__ import annotations

from google.protobuf import empty_pb2

from qroute.api import convert
from qroute.api.common import Servicer, mutation, request_fields, unary
from qroute.api.pages import page
from qroute.errors import InvalidArgument
from qroute.events.webhooks import UPDATABLE, Webhook
from qroute.v1 import common_pb2, webhook_pb2, webhook_pb2_grpc

_METHODS = {common_pb2.HTTP_METHOD_UNSPECIFIED: "", common_pb2.HTTP_METHOD_GET: "GET",
            common_pb2.HTTP_METHOD_POST: "POST"}
_METHOD_VALUES = {"GET": common_pb2.HTTP_METHOD_GET, "POST": common_pb2.HTTP_METHOD_POST}


def method_name(value: int) -> str:
    """The domain's method ("" = default POST); an unknown number is refused by name."""
    if value not in _METHODS:
        raise InvalidArgument.field("method", f"unknown HttpMethod {value}")
    return _METHODS[value]


def webhook_message(hook: Webhook, show_secret: bool = False) -> webhook_pb2.Webhook:
    return webhook_pb2.Webhook(
        id=hook.id, recipient_id=hook.recipient_id, event_type=hook.event_type, url=hook.url,
        method=_METHOD_VALUES[hook.method], secret=hook.secret if show_secret else "",
        create_time=convert.timestamp(hook.create_time_ms), update_time=convert.timestamp(hook.update_time_ms))


class WebhookServicer(Servicer, webhook_pb2_grpc.WebhookServiceServicer):
    @property
    def webhooks(self):
        return self.node.webhooks

    @mutation
    async def CreateWebhook(self, request, context, principal):
        account_id = self.floor(principal).account_id
        message = request.webhook
        with request_fields("webhook"):
            hook = await self.webhooks.create(
                account_id, event_type=message.event_type, url=message.url, method=method_name(message.method),
                recipient_id=message.recipient_id, secret=message.secret)
        return webhook_message(hook, show_secret=True)

    @unary
    async def GetWebhook(self, request, context, principal):
        return webhook_message(self.webhooks.get(self.floor(principal).account_id, request.webhook_id))

    @mutation
    async def UpdateWebhook(self, request, context, principal):
        account_id = self.floor(principal).account_id
        message = request.webhook
        paths = list(request.update_mask.paths)
        if not paths:
            raise InvalidArgument.field("update_mask", "name the fields to change, e.g. \"url\"")
        bad = [path for path in paths if path not in UPDATABLE]
        if bad:
            raise InvalidArgument(*[("update_mask", f"webhook.{path} cannot be updated") for path in bad])
        self.webhooks.get(account_id, message.id)
        with request_fields("webhook"):
            changes = {path: method_name(message.method) if path == "method" else getattr(message, path)
                       for path in paths}
            hook = await self.webhooks.update(account_id, message.id, changes)
        return webhook_message(hook, show_secret="secret" in paths)

    @mutation
    async def DeleteWebhook(self, request, context, principal):
        await self.webhooks.delete(self.floor(principal).account_id, request.webhook_id)
        return empty_pb2.Empty()

    @unary
    async def ListWebhooks(self, request, context, principal):
        hooks = self.webhooks.list(self.floor(principal).account_id, request.recipient_id)
        chunk, token = page(hooks, request.page_size, request.page_token, key=lambda hook: hook.id)
        return webhook_pb2.ListWebhooksResponse(webhooks=[webhook_message(hook) for hook in chunk],
                                                next_page_token=token)
