"""A qroute node: storage, engine, event journal and keys, wired together.

The servicers in ``qroute.api`` drive a node; ``qroute.server`` serves one.
Starting a node restores every account's configuration from storage.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
import os
import secrets
import socket
import zoneinfo
from dataclasses import dataclass
from pathlib import Path

from qroute.keys import KeyRing, new_key
from qroute.domain.config import Member, QueueConfig, RecipientConfig
from qroute.engine import Engine, PassScheduler, SystemClock
from qroute.errors import InvalidArgument, NotFound
from qroute.events import Journal, state_ops
from qroute.storage import DeleteApiKey, PutAccount, PutApiKey, SqliteStorage

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


class Node:
    def __init__(self, data_dir: str | os.PathLike, *, synchronous: str = "NORMAL", clock=None,
                 dispatcher_cls=None, admin_key: str | None = None, name: str | None = None) -> None:
        self.data_dir = Path(data_dir)
        self.name = name or socket.gethostname()
        self.clock = clock or SystemClock()
        self.storage = SqliteStorage(self.data_dir / DATABASE_FILE, synchronous=synchronous)
        self.journal = Journal(self.storage, op_sources=[state_ops])
        self.engine = Engine(self.clock, sink=self.journal.publish, dispatcher_cls=dispatcher_cls)
        self.scheduler = PassScheduler(self.engine, on_error=lambda exc: log.exception(
            "dispatch pass failed", exc_info=exc))
        self._admin_key = admin_key
        self.admin_key_path: Path | None = None
        self.keys: KeyRing | None = None
        self.accounts: dict[str, AccountInfo] = {}
        self.api_keys: dict[str, dict] = {}  # key id -> doc (no secret)
        # (account, method, request_id) -> first response, for retried mutations
        self.idempotency: OrderedDict = OrderedDict()

    # ------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        await self.storage.start()
        snapshot = self.storage.load_all()
        self.keys = KeyRing(self._load_admin_key())
        for key_id, record in snapshot.api_keys.items():
            self.keys.add(key_id, record.account_id, record.secret_hash)
            self.api_keys[key_id] = dict(record.doc)
        for account_id, doc in snapshot.accounts.items():
            self.accounts[account_id] = AccountInfo(account_id, doc["name"], doc["time_zone"],
                                                    doc["create_time_ms"])
            self.engine.open_floor(account_id)
        self.journal.sequences.update(snapshot.max_event_sequence)
        self._restore_config(snapshot)
        self.scheduler.start()

    async def stop(self) -> None:
        await self.scheduler.stop()
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
        return account

    def account(self, account_id: str) -> AccountInfo:
        account = self.accounts.get(account_id)
        if account is None:
            raise NotFound(f"account {account_id} not found")
        return account

    async def create_api_key(self, account_id: str, description: str) -> tuple[dict, str]:
        """A new key for the account: ``(doc, full key)``; the key is shown only now."""
        self.account(account_id)
        if len(description) > 256:
            raise InvalidArgument.field("description", "must be at most 256 characters")
        key_id, key, secret_hash = new_key()
        doc = {"id": key_id, "account_id": account_id, "description": description,
               "create_time_ms": self.clock.now_ms(), "revoke_time_ms": 0}
        await self.storage.write(PutApiKey(key_id, account_id, secret_hash, doc))
        self.keys.add(key_id, account_id, secret_hash)
        self.api_keys[key_id] = doc
        return doc, key

    async def revoke_api_key(self, key_id: str) -> None:
        if key_id not in self.api_keys:
            raise NotFound(f"API key {key_id} not found")
        self.keys.remove(key_id)
        del self.api_keys[key_id]
        await self.storage.write(DeleteApiKey(key_id))
