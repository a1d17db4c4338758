"""Each event gets its account's next sequence, is written to storage with
the state changes it stands for (from the op sources), and is handed to live
listeners.

Storage is written from events, so a change is durable exactly when its
event is: the engine never talks to storage itself.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable

from qroute.domain.events import DomainEvent
from qroute.storage import AppendEvents, Op, Storage

Listener = Callable[[DomainEvent], None]
OpSource = Callable[[DomainEvent], list[Op]]


def encode(event: DomainEvent) -> bytes:
    return json.dumps(event.data, separators=(",", ":"), default=str).encode()


class Journal:
    """The engine's event sink. ``durable()`` waits until every event
    published so far (and the state it records) is committed."""

    def __init__(self, storage: Storage, op_sources: list[OpSource] | None = None) -> None:
        self.storage = storage
        self.sequences: dict[str, int] = {}
        # Each source turns an event into the storage changes it stands for;
        # they commit in the same transaction as the event itself.
        self.op_sources: list[OpSource] = list(op_sources or [])
        # Called with each event as it is sequenced (subscribers, agent desktops...).
        self.listeners: list[Listener] = []
        self._pending: list[DomainEvent] = []
        self._last_write: asyncio.Future | None = None
        self._flush_scheduled = False

    def publish(self, event: DomainEvent) -> None:
        sequence = self.sequences.get(event.account_id, 0) + 1
        self.sequences[event.account_id] = sequence
        event.sequence = sequence
        self._pending.append(event)
        if not self._flush_scheduled:
            # one storage write per loop iteration, however many events it produced
            self._flush_scheduled = True
            asyncio.get_running_loop().call_soon(self._flush)
        for listener in self.listeners:
            listener(event)

    def _flush(self) -> asyncio.Future | None:
        self._flush_scheduled = False
        if not self._pending:
            return self._last_write
        events, self._pending = self._pending, []
        ops: list[Op] = []
        for event in events:
            for source in self.op_sources:
                ops.extend(source(event))
        ops.append(AppendEvents([(e.account_id, e.sequence, e.time_ms, e.type, e.entity.name.lower(), e.entity_id,
                                  encode(e)) for e in events]))
        self._last_write = self.storage.write(*ops)
        return self._last_write

    def commit_point(self) -> asyncio.Future | None:
        """A future that resolves once everything published so far is committed."""
        return self._flush()

    async def durable(self) -> None:
        """Returns once everything published so far is committed."""
        write = self._flush()
        if write is not None:
            await asyncio.shield(write)
