"""The storage interface the engine and the event bus depend on.

``SqliteStorage`` implements it today; a PostgreSQL backend (shared by the
nodes of a scale-out deployment) will implement the same methods.
"""

from __future__ import annotations

import asyncio
from typing import Protocol, runtime_checkable

from qroute.storage.ops import Op
from qroute.storage.records import (
    EventRecord,
    IdempotentResponse,
    OutboxRecord,
    Snapshot,
    StorageStats,
)


@runtime_checkable
class Storage(Protocol):
    stats: StorageStats

    async def start(self) -> None:
        """Open, create or migrate the schema, start writing."""

    async def stop(self) -> None:
        """Commit everything written so far, then close."""

    def write(self, *ops: Op) -> asyncio.Future[None]:
        """Queue ops to commit together; the future resolves once they are durable."""

    async def flush(self) -> None:
        """Wait until everything written so far is committed."""

    def load_all(self) -> Snapshot:
        """Everything needed to rebuild live state (startup)."""

    async def events_since(self, account_id: str, from_sequence: int,
                           limit: int) -> list[EventRecord]:
        """Up to ``limit`` events with sequence >= ``from_sequence``, in order."""

    async def oldest_sequence(self, account_id: str) -> int | None:
        """The lowest event sequence still stored for the account."""

    async def get_idempotent(self, account_id: str, request_id: str, method: str,
                             caller: str = "") -> IdempotentResponse | None:
        """The response recorded for a request id, if any."""

    async def outbox_due(self, now_ms: int, limit: int) -> list[OutboxRecord]:
        """Pending webhook deliveries whose next attempt is due."""
