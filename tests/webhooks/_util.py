"""The webhook tests' harness.

``WebhookApi`` is the API tests' real-server harness (``tests.api._util.Api``)
with webhook settings passed to the node: the tests allow 127.0.0.1/32 and
retry within milliseconds. ``Receiver`` is a minimal HTTP/1.1 server on
127.0.0.1 (stdlib asyncio, one request per connection) that records every
request, answers what ``respond`` says (a status, or ``(delay_s, status)``
to answer late), and can be stopped and started again on the same port to
be "down for a while".
"""

from __future__ import annotations

import asyncio
import json
import socket
import urllib.parse
from dataclasses import dataclass, field

from qroute.client import Client
from qroute.events.webhooks import WebhookSettings, parse_networks, verify
from qroute.node import Node
from qroute.v1 import common_pb2, webhook_pb2, webhook_pb2_grpc

from ..api._util import Api

FAST = WebhookSettings(allow=parse_networks(["127.0.0.1/32"]), timeout_s=0.5, backoff_min_ms=40,
                       backoff_max_ms=300, max_age_ms=60_000)
GET, POST = common_pb2.HTTP_METHOD_GET, common_pb2.HTTP_METHOD_POST


class WebhookApi(Api):
    """``Api`` whose node gets webhook ``settings`` (see the module docstring)."""

    def __init__(self, data_dir, settings: WebhookSettings) -> None:
        super().__init__(data_dir, webhooks=settings)
        self.settings = settings

    @property
    def node(self) -> Node:
        return self.running.node


def webhooks(client: Client) -> webhook_pb2_grpc.WebhookServiceStub:
    return webhook_pb2_grpc.WebhookServiceStub(client.channel)


async def create_webhook(client: Client, **fields) -> webhook_pb2.Webhook:
    return await webhooks(client).CreateWebhook(
        webhook_pb2.CreateWebhookRequest(webhook=webhook_pb2.Webhook(**fields)), metadata=client.metadata)


def free_port() -> int:
    """A port nothing listens on (for a receiver that is down)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@dataclass
class Received:
    method: str
    target: str                  # the raw request target: path?query
    headers: dict[str, str]      # names lower-cased
    body: bytes
    late: bool = False           # answered after the sender's timeout
    status: int = 0              # what was answered (0: not answered)

    @property
    def path(self) -> str:
        return self.target.partition("?")[0]

    @property
    def query(self) -> str:
        return self.target.partition("?")[2]

    @property
    def delivery_id(self) -> str:
        return self.headers.get("x-qroute-delivery", "")

    @property
    def webhook_id(self) -> str:
        return self.headers.get("x-qroute-webhook", "")

    @property
    def sequence(self) -> int:
        return int(self.delivery_id.rsplit("-", 1)[1])

    @property
    def fields(self) -> dict:
        if self.method == "GET":
            return dict(urllib.parse.parse_qsl(self.query, keep_blank_values=True))
        return json.loads(self.body)

    def signature_ok(self, secret: str) -> bool:
        signed = self.query.encode() if self.method == "GET" else self.body
        return verify(secret, self.headers.get("x-qroute-signature", ""), signed)


@dataclass
class Receiver:
    requests: list[Received] = field(default_factory=list)
    # ("arrived" | "acked", request) in the order it happened
    log: list[tuple[str, Received]] = field(default_factory=list)
    port: int = 0

    def __post_init__(self) -> None:
        self.respond = lambda request: 200
        self._server: asyncio.Server | None = None
        self._handlers: set[asyncio.Task] = set()

    def url(self, path: str = "/") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    async def start(self, port: int | None = None) -> Receiver:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", self.port if port is None else port)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def stop(self) -> None:
        if self._server is None:
            return
        self._server.close()
        for task in list(self._handlers):
            task.cancel()
        await asyncio.gather(*self._handlers, return_exceptions=True)
        await self._server.wait_closed()
        self._server = None

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        self._handlers.add(task)
        try:
            head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
            method, target, _version = head[0].split(" ", 2)
            headers = {}
            for line in head[1:]:
                if line:
                    name, _, value = line.partition(":")
                    headers[name.strip().lower()] = value.strip()
            body = await reader.readexactly(int(headers.get("content-length", "0")))
            request = Received(method, target, headers, body)
            self.requests.append(request)
            self.log.append(("arrived", request))
            answer = self.respond(request)
            delay, status = answer if isinstance(answer, tuple) else (0, answer)
            if delay:
                request.late = True
                await asyncio.sleep(delay)
            # logged before the answer leaves: the sender may act on it before this task runs again
            request.status = status
            if 200 <= status < 300 and not request.late:
                self.log.append(("acked", request))
            writer.write(f"HTTP/1.1 {status} Whatever\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".encode())
            await writer.drain()
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError, asyncio.CancelledError):
            pass
        finally:
            writer.close()
            self._handlers.discard(task)

    # ------------------------------------------------------------- checks

    def deliveries(self, webhook_id: str) -> list[Received]:
        """The webhook's requests deduplicated by delivery id (first arrival), in arrival order."""
        seen, unique = set(), []
        for request in self.requests:
            if request.webhook_id == webhook_id and request.delivery_id not in seen:
                seen.add(request.delivery_id)
                unique.append(request)
        return unique

    def check_in_order(self, webhook_id: str) -> None:
        """A webhook's requests came one at a time in event order: no request
        arrived before every earlier delivery of that webhook was answered 2xx."""
        sequences = sorted({r.sequence for r in self.requests if r.webhook_id == webhook_id})
        acked: set[int] = set()
        for what, request in self.log:
            if request.webhook_id != webhook_id:
                continue
            if what == "acked":
                acked.add(request.sequence)
                continue
            earlier = [s for s in sequences if s < request.sequence]
            assert set(earlier) <= acked, (
                f"{request.delivery_id} arrived before {sorted(set(earlier) - acked)} were delivered")
