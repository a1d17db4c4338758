"""A qroute node: storage, engine, event journal and keys, wired together.

The servicers in ``qroute.api`` drive a node; ``qroute.server`` serves one.
Starting a node restores every account's configuration from storage, then
its live state: recipients' login and availability, waiting sessions in
their place in line, connected calls (``_restore_live``).
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import secrets
import socket
import time
import zoneinfo
from dataclasses import dataclass
from pathlib import Path

from qroute.keys import KeyRing, new_key
from qroute.logs import ChangeLog
from qroute.domain.config import Member, QueueConfig, RecipientConfig
from qroute.domain.settings import AgentSettings
from qroute.engine import Engine, PassScheduler, SystemClock
from qroute.engine import callbacks
from qroute.errors import InvalidArgument, NotFound
from qroute.events import Journal, state_ops
from qroute.events.bus import EventBus, Retention
from qroute.events.state import LiveState, recipient_restore_args, session_restore_args
from qroute.events.state import QUEUE_STATS, QueueStats
from qroute.events.webhooks import Webhooks, WebhookSettings
from qroute.storage import DeleteApiKey, DeleteLiveSession, PutAccount, PutApiKey, SqliteStorage
from qroute.storage import DeleteConfig
from qroute.storage import RequestLog

log = logging.getLogger("qroute.node")

ADMIN_KEY_ENV = "QROUTE_ADMIN_KEY"
ADMIN_KEY_FILE = "admin.key"
DATABASE_FILE = "qroute.db"


@dataclass(frozen=True, slots=True)
class AccountInfo:
    id: str
    name: str
    time_zone: str
    create_time_ms: int


class _SkipWrites:
    """The journal's storage with durability off: nothing is written, and
    every write counts as acknowledged at once."""

    writes_nothing = True  # the journal answers without waiting for a flush

    def write(self, *ops):
        return None


class Node:
    """``durable=False`` (``qroute serve --no-durability``, for benchmarks)
    stores nothing the engine does (live state, events, and configuration
    changes too) and answers mutations without waiting for a commit."""

    def __init__(self, data_dir: str | os.PathLike, *, synchronous: str = "NORMAL", clock=None,
                 dispatcher_cls=None, admin_key: str | None = None, name: str | None = None,
                 webhooks: WebhookSettings | None = None, durable: bool = True,
                 event_retention: Retention | None = None, commit_interval_ms: float = 0.0,
                 writer_process: bool = True) -> None:
        self.data_dir = Path(data_dir)
        self.name = name or socket.gethostname()
        self.clock = clock or SystemClock()
        self.storage = SqliteStorage(self.data_dir / DATABASE_FILE, synchronous=synchronous,
                                     writer_process=writer_process)
        self.durable = durable
        # live sessions, recipient state, offers and history, stored from the events like the configuration
        self.live_state = LiveState()
        self.journal = Journal(self.storage if durable else _SkipWrites(),
                               op_sources=[state_ops] if durable else [],
                               commit_interval_s=commit_interval_ms / 1000)
        self.engine = Engine(self.clock, sink=self.journal.publish, dispatcher_cls=dispatcher_cls)
        if durable:  # queue counters and service rates, so that a restart does not start them cold
            self.journal.batch_sources += [self.live_state, QueueStats(self._queue_stats)]
        # lined-up callers (CallbackService) by account, made on first use; stored from their events
        self.callbacks: dict[str, callbacks.Callbacks] = {}
        if durable:
            self.journal.op_sources.append(callbacks.stored_ops)
        # subscriptions: a ring of recent events per account, replay, retention of the stored log
        self.events = EventBus(self.journal, self.storage, self.clock, event_retention)
        # webhook deliveries: staged as events are published (first listener, so nothing can
        # flush the event before), outbox rows committed with them
        self.webhooks = Webhooks(self.storage, self.journal, self.engine, self.clock, webhooks)
        self.journal.listeners.insert(0, self.webhooks.on_event)
        self.journal.op_sources.append(self.webhooks.outbox_ops)
        # an INFO line per significant change (queues, recipients, logins, forced away)
        self.journal.listeners.append(ChangeLog())
        self.scheduler = PassScheduler(self.engine, on_error=lambda exc: log.exception(
            "dispatch pass failed", exc_info=exc))
        self._admin_key = admin_key
        self.admin_key_path: Path | None = None
        self.keys: KeyRing | None = None
        self.accounts: dict[str, AccountInfo] = {}
        self.api_keys: dict[str, dict] = {}  # key id -> doc (no secret)
        # what mutations answered, by request id (kept with the change, loaded at start), and the
        # (account, (caller, rpc, request_id)) -> future of requests being answered, for a retry meanwhile
        self.idempotency = RequestLog()
        self.answering: dict[tuple[str, tuple[str, str, str]], asyncio.Future] = {}

    # ------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        await self.storage.start()
        snapshot = self.storage.load_all()
        self.keys = KeyRing(self._load_admin_key())
        for key_id, record in snapshot.api_keys.items():
            self.keys.add(key_id, record.account_id, record.secret_hash, record.doc.get("recipient_id", ""))
            self.api_keys[key_id] = dict(record.doc)
        for account_id, doc in snapshot.accounts.items():
            self.accounts[account_id] = AccountInfo(account_id, doc["name"], doc["time_zone"],
                                                    doc["create_time_ms"])
            self.engine.open_floor(account_id)
        self.journal.sequences.update(snapshot.max_event_sequence)
        self._restore_config(snapshot)
        expired = self.idempotency.load(snapshot.idempotency, self.clock.now_ms())
        if self.durable:
            await self.storage.write(*expired)
        self.webhooks.restore(snapshot)
        await self._restore_live(snapshot)
        await self._restore_callbacks(snapshot)
        await self.webhooks.start()
        self.scheduler.start()
        self.events.start()

    async def stop(self) -> None:
        await self.events.stop()
        await self.scheduler.stop()
        await self.webhooks.stop()
        await self.journal.durable()
        await self.storage.stop()

    def _load_admin_key(self) -> str:
        """The admin key: given, or from the environment, or generated on
        first start and kept (mode 600) in the data dir."""
        key = self._admin_key or os.environ.get(ADMIN_KEY_ENV)
        if key:
            return key
        path = self.data_dir / ADMIN_KEY_FILE
        self.admin_key_path = path
        if path.exists():
            return path.read_text().strip()
        _, key, _ = new_key("admin")
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(key + "\n")
        return key

    def _restore_config(self, snapshot) -> None:
        for (account_id, kind), docs in snapshot.configs.items():  # first: recipients follow their defaults
            floor = self.engine.floors.get(account_id)
            if floor is not None and kind == "account_settings" and "agent" in docs:
                floor.restore_agent_settings(AgentSettings.from_doc(docs["agent"]))
        for (account_id, kind), docs in snapshot.configs.items():
            floor = self.engine.floors.get(account_id)
            if floor is None:
                continue
            if kind == "recipient":
                for doc in docs.values():
                    floor.restore_recipient(RecipientConfig.from_doc(doc))
            elif kind == "queue":
                for doc in docs.values():
                    floor.restore_queue(QueueConfig.from_doc(doc))
        for record in snapshot.memberships:
            floor = self.engine.floors.get(record.account_id)
            if floor is not None:
                floor.restore_member(record.queue_id, Member(record.recipient_id, record.doc.get("tier", 1),
                                                             record.doc.get("weight", 0)))
        for (account_id, kind), docs in snapshot.configs.items():
            floor = self.engine.floors.get(account_id)
            if floor is not None and kind == QUEUE_STATS:
                for queue_id, doc in docs.items():
                    floor.restore_queue_stats(queue_id, doc)
        for (account_id, kind), docs in snapshot.configs.items():
            floor = self.engine.floors.get(account_id)
            if floor is not None and kind == "supervision":
                for doc in docs.values():
                    floor.supervision[(doc["supervisor_id"], doc["queue_id"])] = list(doc["recipient_ids"])

    def _queue_stats(self, account_id: str, queue_id: str) -> dict | None:
        floor = self.engine.floors.get(account_id)
        queue = floor.queues.get(queue_id) if floor is not None else None
        return queue.stats_doc() if queue is not None else None

    async def _restore_live(self, snapshot) -> None:
        """Live state as stored: recipients' login, availability and counters,
        then sessions (their line order comes from entered_at and seq); then
        each floor settles what the stop interrupted (``Floor.finish_restore``)."""
        started = time.perf_counter()
        # ~10^5 new objects would set off many full GC passes that find nothing to free
        gc_was_enabled = gc.isenabled()
        gc.disable()
        try:
            orphans = self._restore_floors(snapshot)
        finally:
            if gc_was_enabled:
                gc.enable()
        if orphans:  # their account or queue is gone
            log.warning("dropping %d stored sessions whose queue is gone", len(orphans))
            await self.storage.write(*orphans)
        if snapshot.live_sessions or snapshot.recipient_states:
            log.info("restored %d live sessions and %d recipients' state in %.2f s",
                     len(snapshot.live_sessions) - len(orphans), len(snapshot.recipient_states),
                     time.perf_counter() - started)

    def _restore_floors(self, snapshot) -> list[DeleteLiveSession]:
        """Restores every floor's live state; returns the deletes of stored
        sessions that have nowhere to go."""
        floors = self.engine.floors
        restored: dict[str, tuple[list, list]] = {account_id: ([], []) for account_id in floors}
        for (account_id, recipient_id), doc in snapshot.recipient_states.items():
            floor = floors.get(account_id)
            if floor is not None and floor.restore_recipient_state(
                    recipient_id, **recipient_restore_args(doc)) is not None:
                restored[account_id][1].append((recipient_id, doc))
        orphans = []
        for record in snapshot.live_sessions:
            floor = floors.get(record.account_id)
            if floor is not None and floor.restore_session(
                    record.session_id, **session_restore_args(record.doc)) is not None:
                restored[record.account_id][0].append((record.session_id, record.doc))
            else:
                orphans.append(DeleteLiveSession(record.account_id, record.session_id))
        for account_id, (sessions, recipients) in restored.items():
            self.live_state.load(account_id, sessions, recipients)
            floors[account_id].finish_restore()
        return orphans

    async def _restore_callbacks(self, snapshot) -> None:
        """Lined-up callers, after the sessions holding their places; those
        over for longer than the retention are deleted."""
        expired = []
        for (account_id, kind), docs in snapshot.configs.items():
            if kind == callbacks.KIND and account_id in self.engine.floors:
                expired += [DeleteConfig(account_id, kind, caller_id)
                            for caller_id in self.callbacks_of(account_id).restore(docs.values())]
        if expired:
            await self.storage.write(*expired)

    def callbacks_of(self, account_id: str) -> callbacks.Callbacks:
        """The account's lined-up callers (NotFound for an unknown account)."""
        lined_up = self.callbacks.get(account_id)
        if lined_up is None:
            lined_up = self.callbacks[account_id] = callbacks.Callbacks(self.engine.floor(account_id))
        return lined_up

    # ------------------------------------------------------------- accounts

    async def create_account(self, name: str, time_zone: str) -> AccountInfo:
        problems = []
        if not 1 <= len(name) <= 128:
            problems.append(("name", "must be 1 to 128 characters"))
        time_zone = time_zone or "UTC"
        try:
            zoneinfo.ZoneInfo(time_zone)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            problems.append(("time_zone", f"unknown IANA time zone {time_zone!r}"))
        if problems:
            raise InvalidArgument(*problems)
        account = AccountInfo(secrets.token_hex(8), name, time_zone, self.clock.now_ms())
        await self.storage.write(PutAccount(account.id, {
            "name": account.name, "time_zone": account.time_zone, "create_time_ms": account.create_time_ms}))
        self.accounts[account.id] = account
        self.engine.open_floor(account.id)
        log.info("account %s created", account.id, extra={"account_id": account.id, "account_name": name})
        return account

    def account(self, account_id: str) -> AccountInfo:
        account = self.accounts.get(account_id)
        if account is None:
            raise NotFound(f"account {account_id} not found")
        return account

    async def create_api_key(self, account_id: str, description: str,
                             recipient_id: str = "") -> tuple[dict, str]:
        """A new key for the account: ``(doc, full key)``; the key is shown only now.
        With ``recipient_id`` the key acts for that recipient only (``qroute.keys``)."""
        self.account(account_id)
        if len(description) > 256:
            raise InvalidArgument.field("description", "must be at most 256 characters")
        if recipient_id:
            self.engine.floor(account_id).recipient(recipient_id)
        key_id, key, secret_hash = new_key()
        doc = {"id": key_id, "account_id": account_id, "description": description,
               "create_time_ms": self.clock.now_ms(), "revoke_time_ms": 0}
        if recipient_id:
            doc["recipient_id"] = recipient_id
        await self.storage.write(PutApiKey(key_id, account_id, secret_hash, doc))
        self.keys.add(key_id, account_id, secret_hash, recipient_id)
        self.api_keys[key_id] = doc
        log.info("API key %s created for account %s", key_id, account_id,
                 extra={"account_id": account_id, "key_id": key_id})  # the id only: never the secret
        return doc, key

    async def revoke_api_key(self, key_id: str) -> None:
        if key_id not in self.api_keys:
            raise NotFound(f"API key {key_id} not found")
        self.keys.remove(key_id)
        account_id = self.api_keys.pop(key_id).get("account_id", "")
        await self.storage.write(DeleteApiKey(key_id))
        log.info("API key %s revoked", key_id, extra={"account_id": account_id, "key_id": key_id})
