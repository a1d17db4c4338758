"""Webhooks (seed 002): HTTP callbacks for events, from a durable outbox.

A webhook names an event type ("agent-login", "agent-logout" or any type of
the event stream), optionally one recipient, a URL and a method. How an
event becomes an HTTP request:

1. ``Webhooks.on_event`` (a journal listener) runs as the event is
   published, while the state it describes is live: it renders the body of
   every matching webhook (a recipient deleted right after logging out still
   has its extension) and stages the deliveries.
2. ``Webhooks.outbox_ops`` (a journal op source) turns the staged
   deliveries into ``PutOutbox`` ops, committed in the same transaction as
   the event: a committed event never loses its delivery, and a crash before
   the commit loses both.
3. One task per webhook with pending deliveries sends them one at a time,
   oldest event first. 2xx deletes the outbox row; anything else (status,
   timeout, refused destination) reschedules it with exponential backoff and
   jitter, and the later deliveries of that webhook wait behind it. A
   delivery still failing ``max_age_ms`` after its event is dropped with a
   ``webhook.failed`` event (whose op deletes the row in the same commit).

This node is the only writer of the outbox, so the pending deliveries are
held in memory too (loaded at start): the delivery order per webhook comes
from there, not from the order of ``outbox_due``. Delivery is at least once:
a crash between a 2xx and the row's deletion sends it again with the same
``X-Qroute-Delivery`` id, which receivers use to deduplicate.

Requests carry ``X-Qroute-Signature: t=<unix seconds>,v1=<hex>`` where hex
is HMAC-SHA256(secret, "<t>.<signed>") and <signed> is the body (POST) or
the raw query string after "?" (GET). Destinations that resolve to a
non-public address (loopback, private, link-local, CGNAT, ...) are refused
unless an allow-list network contains them; the address checked is the one
connected to (DNS is resolved once per attempt and the connection pinned to
it), so a name cannot be rebound to an internal address in between.
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import hashlib
import hmac
import ipaddress
import json
import logging
import random
import secrets
import socket
import time
import urllib.parse
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import httpx

from qroute import __version__
from qroute.domain.enums import AgentType
from qroute.domain.events import CATALOG, DomainEvent
from qroute.errors import InvalidArgument, NotFound, ResourceExhausted
from qroute.storage import DeleteConfig, DeleteOutbox, Op, PutConfig, PutOutbox

log = logging.getLogger("qroute.webhooks")

KIND = "webhook"  # config_docs kind of webhook documents

# The seed's agent events and the stream events they stand for.
AGENT_EVENTS = {"agent-login": "recipient.logged_in", "agent-logout": "recipient.logged_out"}
METHODS = ("GET", "POST")
MAX_WEBHOOKS = 1000  # per account
MAX_URL = 2048
MIN_SECRET, MAX_SECRET = 16, 256
MAX_ERROR = 300  # characters of an attempt's error kept in the outbox row
OUTBOX_LOAD_LIMIT = 10_000_000  # rows read at start: the whole outbox
HTTP_CLIENTS = 64  # hosts with an open client (kept-alive connections)
MAX_ANSWER = 65_536  # bytes of a response body read (and ignored)

SIGNATURE_HEADER = "X-Qroute-Signature"
DELIVERY_HEADER = "X-Qroute-Delivery"


# ---------------------------------------------------------------- settings

def parse_networks(texts: Iterable[str]) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    """``--webhook-allow`` values ("127.0.0.1/32", "10.0.0.0/8", "::1") as
    networks; raises ValueError naming a bad one."""
    networks = []
    for text in texts:
        try:
            networks.append(ipaddress.ip_network(text.strip(), strict=False))
        except ValueError:
            raise ValueError(f"not an IP network (CIDR): {text!r}") from None
    return tuple(networks)


@dataclass(frozen=True)
class WebhookSettings:
    """How webhooks are delivered (``qroute serve --webhook-*``)."""

    # Non-public destinations (loopback, private...) in these networks are allowed.
    allow: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = ()
    timeout_s: float = 10.0          # one attempt, connect to response headers
    backoff_min_ms: int = 1_000      # delay after the first failure
    backoff_max_ms: int = 300_000    # longest delay between attempts
    max_age_ms: int = 86_400_000     # give up (webhook.failed) this long after the event
    concurrency: int = 32            # requests in flight, all webhooks together

    def backoff_ms(self, attempts: int) -> int:
        """Delay before the next attempt after ``attempts`` failures:
        exponential, capped, with jitter in [delay/2, delay] so webhooks
        failing together do not retry together."""
        delay = min(self.backoff_max_ms, self.backoff_min_ms * 2 ** min(attempts - 1, 32))
        return int(delay / 2 + random.random() * delay / 2)


class Refused(Exception):
    """A destination the policy does not allow."""


def refusal(address: ipaddress.IPv4Address | ipaddress.IPv6Address,
            allow: Sequence[ipaddress.IPv4Network | ipaddress.IPv6Network]) -> str | None:
    """Why ``address`` may not be called, or None when it may: public
    addresses may; others only inside an ``allow`` network."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    if any(address in network for network in allow):
        return None
    if address.is_global and not address.is_multicast:
        return None
    return (f"destination {address} is not a public address (loopback, private, link-local or reserved); "
            f"start the server with --webhook-allow {address}/{address.max_prefixlen} to permit it")


async def resolve(host: str, port: int, timeout: float) -> list[ipaddress.IPv4Address | ipaddress.IPv6Address]:
    """The addresses ``host`` stands for (an IP literal stands for itself)."""
    try:
        return [ipaddress.ip_address(host)]
    except ValueError:
        pass
    loop = asyncio.get_running_loop()
    infos = await asyncio.wait_for(loop.getaddrinfo(host, port, type=socket.SOCK_STREAM), timeout)
    addresses = []
    for _family, _type, _proto, _name, sockaddr in infos:
        address = ipaddress.ip_address(sockaddr[0].partition("%")[0])
        if address not in addresses:
            addresses.append(address)
    return addresses


# ------------------------------------------------------------------ config

@dataclass(frozen=True)
class Webhook:
    """One webhook's configuration, as stored (``secret`` included: it is
    needed to sign; the API shows it only when created or changed)."""

    id: str
    account_id: str
    event_type: str
    url: str
    method: str = "POST"
    recipient_id: str = ""
    secret: str = ""
    create_time_ms: int = 0
    update_time_ms: int = 0

    @property
    def stream_type(self) -> str:
        """The event-stream type this webhook is called for."""
        return AGENT_EVENTS.get(self.event_type, self.event_type)

    def doc(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_doc(cls, doc: dict[str, Any]) -> Webhook:
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{key: value for key, value in doc.items() if key in names})


UPDATABLE = ("recipient_id", "event_type", "url", "method", "secret")


def url_problems(url: str) -> tuple[list[str], str, int]:
    """What is wrong with ``url`` (reasons), and its host and port."""
    if not url:
        return ["is required"], "", 0
    if len(url) > MAX_URL:
        return [f"must be at most {MAX_URL} characters"], "", 0
    if any(ch.isspace() or ord(ch) < 0x20 or ord(ch) == 0x7F for ch in url):
        return ["must not contain spaces or control characters"], "", 0
    try:
        parts = urllib.parse.urlsplit(url)
        port = parts.port
    except ValueError as exc:
        return [f"is not a valid URL ({exc})"], "", 0
    if parts.scheme.lower() not in ("http", "https"):
        return ["must be an http:// or https:// URL"], "", 0
    problems = []
    if parts.username is not None or parts.password is not None or "@" in parts.netloc:
        problems.append("must not carry credentials (user:password@); authenticate with the signature")
    host = parts.hostname or ""
    if not host:
        problems.append("has no host")
    default_port = 443 if parts.scheme.lower() == "https" else 80
    return problems, host, port or default_port


# ----------------------------------------------------------------- outbox

@dataclass(slots=True)
class Delivery:
    """One pending request: an event for a webhook. ``fields`` is what is
    sent (query parameters or the JSON body)."""

    account_id: str
    webhook_id: str
    sequence: int          # the event's; orders a webhook's deliveries
    event_type: str        # the webhook's ("agent-login", "session.ended", ...)
    event_time_ms: int
    fields: dict[str, Any]
    created_ms: int
    next_attempt_ms: int
    attempts: int = 0
    last_error: str | None = None
    committed: bool = True  # False until the event's write is known durable

    @property
    def delivery_id(self) -> str:
        return f"{self.webhook_id}-{self.sequence}"

    def put_op(self) -> PutOutbox:
        payload = json.dumps({"sequence": self.sequence, "event_type": self.event_type,
                              "event_time_ms": self.event_time_ms, "fields": self.fields},
                             separators=(",", ":"), default=str).encode()
        return PutOutbox(self.account_id, self.delivery_id, self.webhook_id, self.created_ms,
                         self.next_attempt_ms, self.attempts, payload, self.last_error)

    @classmethod
    def from_record(cls, record) -> Delivery:
        payload = json.loads(record.payload)
        return cls(record.account_id, record.webhook_id, payload["sequence"], payload["event_type"],
                   payload.get("event_time_ms", record.created_ms), payload["fields"], record.created_ms,
                   record.next_attempt_ms, record.attempts, record.last_error)


def agent_event_data(event: DomainEvent, recipient_config) -> dict[str, str]:
    """The seed's AgentEventData of a login or logout, in the seed's words."""
    fields = {
        "agent_id": event.entity_id,
        "agent_status": "available" if event.type == "recipient.logged_in" else "logged_out",
    }
    remote = recipient_config is not None and recipient_config.agent_type == AgentType.REMOTE
    fields["agent_type"] = "remote" if remote else "local"
    if remote:
        fields["agent_number"] = recipient_config.agent_number
    else:
        fields["extension_name"] = recipient_config.extension_name if recipient_config is not None else ""
    # the seed knows api and phone only; changes qroute makes itself count as api
    fields["event_source"] = "phone" if event.data.get("source") == "phone" else "api"
    return fields


def event_document(event: DomainEvent) -> dict[str, Any]:
    """The JSON body of a stream-event delivery."""
    return {"sequence": event.sequence, "type": event.type, "time_ms": event.time_ms,
            "account_id": event.account_id, "entity": event.entity.name.lower(),
            "entity_id": event.entity_id, "data": event.data}


def recipient_of(event: DomainEvent) -> str:
    """The recipient an event concerns, if any."""
    if event.type.startswith("recipient."):
        return event.entity_id
    return event.data.get("recipient_id") or ""


def sign(secret: str, timestamp: int, signed: bytes) -> str:
    """The ``X-Qroute-Signature`` value for ``signed`` (the body, or a GET's query string)."""
    digest = hmac.new(secret.encode(), str(timestamp).encode() + b"." + signed, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


def verify(secret: str, header: str, signed: bytes, tolerance_s: float | None = 300,
           now: float | None = None) -> bool:
    """Check a ``X-Qroute-Signature`` header (receivers may copy this)."""
    try:
        parts = dict(item.split("=", 1) for item in header.split(","))
        timestamp = int(parts["t"])
    except (ValueError, KeyError):
        return False
    if tolerance_s is not None and abs((time.time() if now is None else now) - timestamp) > tolerance_s:
        return False
    expected = sign(secret, timestamp, signed).partition(",v1=")[2]
    return hmac.compare_digest(expected, parts.get("v1", ""))


def _log_failed_write(future: asyncio.Future) -> None:
    if not future.cancelled() and future.exception() is not None:
        log.error("webhook outbox write failed: %s", future.exception())


# ------------------------------------------------------------------ webhooks

class Webhooks:
    """Every account's webhooks, and their delivery (see the module docstring).

    Wire it to a node: ``journal.listeners`` gets ``on_event`` (first),
    ``journal.op_sources`` gets ``outbox_ops``; ``restore`` and ``start``
    after the snapshot is loaded, ``stop`` before the journal's last flush.
    ``storage`` is read (the outbox, at start); writes go through
    ``journal.storage``.
    """

    def __init__(self, storage, journal, engine, clock, settings: WebhookSettings | None = None) -> None:
        self.storage = storage
        self.journal = journal
        self.engine = engine
        self.clock = clock
        self.settings = settings or WebhookSettings()
        self.by_account: dict[str, dict[str, Webhook]] = {}
        self.by_id: dict[str, Webhook] = {}
        # account -> stream event type -> its webhooks: the per-event lookup
        self._index: dict[str, dict[str, list[Webhook]]] = {}
        # (account, sequence) -> deliveries and ops of a published event, until its flush
        self._staged: dict[tuple[str, int], list[Delivery | Op]] = {}
        self.pending: dict[str, collections.deque[Delivery]] = {}  # webhook id -> its deliveries, in order
        self._senders: dict[str, asyncio.Task] = {}
        self._clients: collections.OrderedDict[str, httpx.AsyncClient] = collections.OrderedDict()
        self._slots: asyncio.Semaphore | None = None
        self._running = False
        self.delivered = 0  # counters, for metrics and tests
        self.failed_attempts = 0
        self.given_up = 0

    # ----------------------------------------------------------- lifecycle

    def restore(self, snapshot) -> None:
        """Bring back the stored webhooks (no validation, no event)."""
        for (account_id, kind), docs in snapshot.configs.items():
            if kind == KIND:
                for doc in docs.values():
                    self._put(Webhook.from_doc(doc))

    async def start(self) -> None:
        """Load the pending deliveries and start sending them."""
        self._slots = asyncio.Semaphore(self.settings.concurrency)
        self._running = True
        records = await self.storage.outbox_due(2 ** 62, OUTBOX_LOAD_LIMIT)
        orphans = []
        deliveries = []
        for record in records:
            if record.webhook_id not in self.by_id:
                orphans.append(DeleteOutbox(record.account_id, record.delivery_id))
                continue
            try:
                deliveries.append(Delivery.from_record(record))
            except (ValueError, KeyError, TypeError):
                log.error("dropping unreadable webhook delivery %s", record.delivery_id)
                orphans.append(DeleteOutbox(record.account_id, record.delivery_id))
        if orphans:
            await self._store(*orphans)
        deliveries.sort(key=lambda d: (d.webhook_id, d.sequence))
        for delivery in deliveries:
            self._enqueue(delivery)
        if deliveries:
            log.info("resuming %d pending webhook deliveries", len(deliveries))

    async def stop(self) -> None:
        """Stop sending; what was not delivered stays in the outbox."""
        self._running = False
        senders = list(self._senders.values())
        for task in senders:
            task.cancel()
        await asyncio.gather(*senders, return_exceptions=True)
        clients, self._clients = list(self._clients.values()), collections.OrderedDict()
        await asyncio.gather(*(client.aclose() for client in clients), return_exceptions=True)

    # --------------------------------------------------------------- config

    def _put(self, hook: Webhook) -> None:
        self.by_account.setdefault(hook.account_id, {})[hook.id] = hook
        self.by_id[hook.id] = hook
        self._reindex(hook.account_id)

    def _drop(self, hook: Webhook) -> list[Op]:
        """Forget ``hook`` and stop its deliveries; the ops that delete them."""
        self.by_account.get(hook.account_id, {}).pop(hook.id, None)
        self.by_id.pop(hook.id, None)
        self._reindex(hook.account_id)
        sender = self._senders.pop(hook.id, None)
        if sender is not None:
            sender.cancel()
        ops: list[Op] = [DeleteConfig(hook.account_id, KIND, hook.id)]
        ops.extend(DeleteOutbox(d.account_id, d.delivery_id) for d in self.pending.pop(hook.id, ()))
        return ops

    def _reindex(self, account_id: str) -> None:
        hooks = self.by_account.get(account_id)
        if not hooks:
            self.by_account.pop(account_id, None)
            self._index.pop(account_id, None)
            return
        index: dict[str, list[Webhook]] = {}
        for hook_id in sorted(hooks):
            index.setdefault(hooks[hook_id].stream_type, []).append(hooks[hook_id])
        self._index[account_id] = index

    def get(self, account_id: str, webhook_id: str) -> Webhook:
        hook = self.by_account.get(account_id, {}).get(webhook_id)
        if hook is None:
            raise NotFound(f"webhook {webhook_id} not found")
        return hook

    def list(self, account_id: str, recipient_id: str = "") -> list[Webhook]:
        hooks = self.by_account.get(account_id, {}).values()
        return sorted((h for h in hooks if not recipient_id or h.recipient_id == recipient_id), key=lambda h: h.id)

    def _problems(self, hook: Webhook) -> list[tuple[str, str]]:
        """What is wrong with ``hook``, except where its URL leads (``_validate``)."""
        problems = []
        if not hook.event_type:
            problems.append(("event_type", "is required"))
        elif hook.event_type not in AGENT_EVENTS and hook.event_type not in CATALOG:
            problems.append(("event_type", f"unknown event type {hook.event_type!r}: agent-login, agent-logout "
                                           "or an event type of the stream such as session.ended"))
        if hook.method not in METHODS:
            problems.append(("method", f"unknown method {hook.method!r}"))
        elif hook.method == "GET" and hook.event_type in CATALOG:
            problems.append(("method", "GET is for agent-login and agent-logout; stream events are "
                                       "delivered as a JSON body (POST)"))
        if hook.secret and not (MIN_SECRET <= len(hook.secret) <= MAX_SECRET and hook.secret.isprintable()):
            problems.append(("secret", f"must be {MIN_SECRET} to {MAX_SECRET} printable characters"))
        problems.extend(("url", why) for why in url_problems(hook.url)[0])
        return problems

    def _check(self, hook: Webhook) -> None:
        """Raise unless ``hook`` is valid (its destination aside)."""
        problems = self._problems(hook)
        if problems:
            raise InvalidArgument(*problems)
        if hook.recipient_id and hook.recipient_id not in self.engine.floor(hook.account_id).recipients:
            raise NotFound(f"recipient {hook.recipient_id} not found")

    async def _validate(self, hook: Webhook) -> None:
        """Raise unless ``hook`` is valid and its URL's host is an allowed
        destination (when it resolves now; every delivery checks again)."""
        problems = self._problems(hook)
        reasons, host, port = url_problems(hook.url)
        if not reasons:
            try:
                addresses = await resolve(host, port, min(self.settings.timeout_s, 2.0))
            except (OSError, asyncio.TimeoutError, UnicodeError):
                addresses = []  # not resolvable now: checked again at each delivery
            for address in addresses:
                why = refusal(address, self.settings.allow)
                if why:
                    problems.append(("url", why))
                    break
        if problems:
            raise InvalidArgument(*problems)
        self._check(hook)

    async def create(self, account_id: str, *, event_type: str, url: str, method: str = "POST",
                     recipient_id: str = "", secret: str = "") -> Webhook:
        """A new webhook, stored; its ``secret`` is generated when empty."""
        now = self.clock.now_ms()
        hook = Webhook(secrets.token_hex(8), account_id, event_type, url, method or "POST", recipient_id,
                       secret, now, now)
        await self._validate(hook)
        if len(self.by_account.get(account_id, ())) >= MAX_WEBHOOKS:
            raise ResourceExhausted(f"an account may have at most {MAX_WEBHOOKS} webhooks")
        if not hook.secret:
            hook = dataclasses.replace(hook, secret="whsec_" + secrets.token_urlsafe(32))
        self._put(hook)  # before the write: a recipient deleted meanwhile takes it along
        try:
            await self._store(PutConfig(account_id, KIND, hook.id, hook.doc()))
        except Exception:
            if self.by_id.get(hook.id) is hook:
                self._drop(hook)
            raise
        return hook

    async def update(self, account_id: str, webhook_id: str, changes: dict[str, Any]) -> Webhook:
        """Change some fields (``UPDATABLE``); pending deliveries go to the new URL."""
        current = self.get(account_id, webhook_id)
        unknown = set(changes) - set(UPDATABLE)
        if unknown:
            raise InvalidArgument(*[("update_mask", f"{name} cannot be updated") for name in sorted(unknown)])
        if "method" in changes and not changes["method"]:
            changes["method"] = "POST"
        if "secret" in changes and not changes["secret"]:
            changes["secret"] = "whsec_" + secrets.token_urlsafe(32)
        await self._validate(dataclasses.replace(current, **changes))
        # applied to the webhook as it is now: another change may have landed during the DNS look-up
        hook = dataclasses.replace(self.get(account_id, webhook_id), **changes, update_time_ms=self.clock.now_ms())
        self._check(hook)
        self._put(hook)
        await self._store(PutConfig(account_id, KIND, hook.id, hook.doc()))
        return hook

    async def delete(self, account_id: str, webhook_id: str) -> None:
        """Delete a webhook and its undelivered requests (at once; durable on return)."""
        await self._store(*self._drop(self.get(account_id, webhook_id)))

    # ------------------------------------------------------- journal hooks

    def on_event(self, event: DomainEvent) -> None:
        """Journal listener: stage the deliveries of ``event`` (see module docstring)."""
        index = self._index.get(event.account_id)
        if index is None:
            return
        staged: list[Delivery | Op] = []
        if event.type == "webhook.failed":
            staged.append(DeleteOutbox(event.account_id, event.data["delivery_id"]))
        elif event.type == "recipient.deleted":
            hooks_of_account = self.by_account[event.account_id].values()
            for hook in [h for h in hooks_of_account if h.recipient_id == event.entity_id]:
                staged.extend(self._drop(hook))
        hooks = index.get(event.type)
        if hooks:
            recipient_id = recipient_of(event)
            bodies: dict[bool, dict] = {}
            now = self.clock.now_ms()
            for hook in hooks:
                if hook.recipient_id and hook.recipient_id != recipient_id:
                    continue
                if event.type == "webhook.failed" and event.entity_id == hook.id:
                    continue  # a webhook is not told about its own failures
                agent = hook.event_type in AGENT_EVENTS
                if agent not in bodies:
                    bodies[agent] = self._agent_fields(event) if agent else event_document(event)
                staged.append(Delivery(event.account_id, hook.id, event.sequence, hook.event_type, event.time_ms,
                                       bodies[agent], now, now, committed=False))
        if staged:
            self._staged[(event.account_id, event.sequence)] = staged

    def _agent_fields(self, event: DomainEvent) -> dict[str, str]:
        floor = self.engine.floors.get(event.account_id)
        recipient = floor.recipients.get(event.entity_id) if floor is not None else None
        return agent_event_data(event, recipient.config if recipient is not None else None)

    def outbox_ops(self, event: DomainEvent) -> list[Op]:
        """Journal op source: the outbox rows of ``event``, committed with it."""
        if not self._staged:
            return []
        staged = self._staged.pop((event.account_id, event.sequence), None)
        if staged is None:
            return []
        ops: list[Op] = []
        for item in staged:
            if not isinstance(item, Delivery):
                ops.append(item)
            elif item.webhook_id in self.by_id:  # not deleted since the event
                ops.append(item.put_op())
                self._enqueue(item)
        return ops

    # ------------------------------------------------------------- delivery

    def _enqueue(self, delivery: Delivery) -> None:
        queue = self.pending.get(delivery.webhook_id)
        if queue is None:
            queue = self.pending[delivery.webhook_id] = collections.deque()
        queue.append(delivery)
        if self._running and delivery.webhook_id not in self._senders:
            self._senders[delivery.webhook_id] = asyncio.get_running_loop().create_task(
                self._send_all(delivery.webhook_id), name=f"webhook {delivery.webhook_id}")

    def _write(self, *ops: Op) -> None:
        """Store ``ops`` without waiting (failures are logged)."""
        write = self.journal.storage.write(*ops)
        if write is not None:
            write.add_done_callback(_log_failed_write)

    async def _store(self, *ops: Op) -> None:
        """Store ``ops`` and wait until they are committed. Through the
        journal's storage: a node without durability stores no webhook state
        either, as it stores no other configuration."""
        write = self.journal.storage.write(*ops)
        if write is not None:
            await asyncio.shield(write)

    async def _send_all(self, webhook_id: str) -> None:
        """Send a webhook's pending deliveries, one at a time, in order."""
        queue = self.pending[webhook_id]
        try:
            while queue:
                delivery = queue[0]
                wait_ms = delivery.next_attempt_ms - self.clock.now_ms()
                if wait_ms > 0:
                    await asyncio.sleep(wait_ms / 1000)
                hook = self.by_id.get(webhook_id)
                if hook is None:
                    return
                if not delivery.committed:
                    try:
                        await self.journal.durable()  # never announce an event that may not be stored
                    except Exception as exc:
                        log.error("webhook %s: dropping delivery %s, its event was not stored: %s",
                                  webhook_id, delivery.delivery_id, exc)
                        queue.popleft()
                        continue
                    delivery.committed = True
                async with self._slots:
                    error = await self._attempt(hook, delivery)
                if self.pending.get(webhook_id) is not queue or not queue or queue[0] is not delivery:
                    return  # deleted while in flight
                if error is None:
                    queue.popleft()
                    self.delivered += 1
                    self._write(DeleteOutbox(delivery.account_id, delivery.delivery_id))
                    continue
                self._failed(hook, delivery, error)
        finally:
            if self._senders.get(webhook_id) is asyncio.current_task():
                del self._senders[webhook_id]
            if self.pending.get(webhook_id) is queue and not queue:
                del self.pending[webhook_id]

    def _failed(self, hook: Webhook, delivery: Delivery, error: str) -> None:
        self.failed_attempts += 1
        now = self.clock.now_ms()
        delivery.attempts += 1
        delivery.last_error = error[:MAX_ERROR]
        next_attempt = now + self.settings.backoff_ms(delivery.attempts)
        if next_attempt - delivery.event_time_ms <= self.settings.max_age_ms:
            log.info("webhook %s delivery %s failed (attempt %d): %s", hook.id, delivery.delivery_id,
                     delivery.attempts, error)
            delivery.next_attempt_ms = next_attempt
            self._write(delivery.put_op())
            return
        log.warning("webhook %s delivery %s given up after %d attempts: %s", hook.id, delivery.delivery_id,
                    delivery.attempts, error)
        self.pending[hook.id].popleft()
        self.given_up += 1
        # its op source deletes the outbox row in the event's own commit
        self.journal.publish(DomainEvent("webhook.failed", hook.id, now, {
            "delivery_id": delivery.delivery_id, "event_type": delivery.event_type,
            "event_sequence": delivery.sequence, "recipient_id": hook.recipient_id,
            "attempts": delivery.attempts, "last_error": delivery.last_error,
            "queued_at_ms": delivery.created_ms}, hook.account_id))

    def request_of(self, hook: Webhook, delivery: Delivery,
                   timestamp: int) -> tuple[str, str, dict[str, str], bytes]:
        """(method, url, headers, body) of one attempt, signed."""
        url = urllib.parse.urldefrag(hook.url)[0]
        body = b""
        if hook.method == "GET":
            query = urllib.parse.urlencode({key: value if isinstance(value, str) else json.dumps(value)
                                            for key, value in delivery.fields.items()})
            existing = urllib.parse.urlsplit(url).query
            url = (url + "&" + query) if existing else (url.rstrip("?") + "?" + query)
            signed = (existing + "&" + query if existing else query).encode()
        else:
            body = json.dumps(delivery.fields, separators=(",", ":"), default=str).encode()
            signed = body
        headers = {
            "User-Agent": f"qroute-webhooks/{__version__}",
            SIGNATURE_HEADER: sign(hook.secret, timestamp, signed),
            DELIVERY_HEADER: delivery.delivery_id,
            "Idempotency-Key": delivery.delivery_id,
            "X-Qroute-Event": delivery.event_type,
            "X-Qroute-Webhook": hook.id,
            "X-Qroute-Attempt": str(delivery.attempts + 1),
        }
        if body:
            headers["Content-Type"] = "application/json"
        return hook.method, url, headers, body

    async def _attempt(self, hook: Webhook, delivery: Delivery) -> str | None:
        """One try; None on a 2xx, else why not."""
        try:
            async with asyncio.timeout(self.settings.timeout_s):
                method, url, headers, body = self.request_of(hook, delivery, int(time.time()))
                target = httpx.URL(url)
                addresses = await resolve(target.host, target.port or (443 if target.scheme == "https" else 80),
                                          self.settings.timeout_s)
                for address in addresses:
                    why = refusal(address, self.settings.allow)
                    if why:
                        raise Refused(why)
                if not addresses:
                    raise Refused(f"{target.host} has no address")
                # connect to the address just checked, not to a second resolution of the name
                headers["Host"] = target.netloc.decode("ascii")
                extensions = {"sni_hostname": target.host} if target.scheme == "https" else {}
                client = self._client(target.host)
                async with client.stream(method, target.copy_with(host=str(addresses[0])), headers=headers,
                                         content=body, extensions=extensions) as response:
                    status = response.status_code
                    # a short answer is read so the connection can serve the next request; a long one is cut
                    received = 0
                    async for chunk in response.aiter_raw():
                        received += len(chunk)
                        if received > MAX_ANSWER:
                            break
        except Refused as exc:
            return str(exc)
        except TimeoutError:
            return f"timed out after {self.settings.timeout_s:g} s"
        except (httpx.HTTPError, OSError, UnicodeError) as exc:
            return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        except Exception as exc:  # a bug must not stop the webhook's deliveries for good
            log.exception("webhook %s: delivery %s failed unexpectedly", hook.id, delivery.delivery_id)
            return f"internal error ({type(exc).__name__})"
        if 200 <= status < 300:
            return None
        return f"HTTP {status}"

    def _client(self, host: str) -> httpx.AsyncClient:
        """An HTTP client for ``host``: its pooled connections were all opened
        (and, for https, verified) for that host name."""
        client = self._clients.get(host)
        if client is not None:
            self._clients.move_to_end(host)
            return client
        client = httpx.AsyncClient(timeout=self.settings.timeout_s, follow_redirects=False, trust_env=False,
                                   limits=httpx.Limits(max_connections=8, max_keepalive_connections=2))
        self._clients[host] = client
        if len(self._clients) > HTTP_CLIENTS:
            _, evicted = self._clients.popitem(last=False)
            asyncio.get_running_loop().create_task(evicted.aclose())
        return client
