"""What the storage hands back: the startup snapshot, query rows, counters."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, NamedTuple


class ApiKeyRecord(NamedTuple):
    key_id: str
    account_id: str
    secret_hash: str | bytes
    doc: dict


class MembershipRecord(NamedTuple):
    account_id: str
    queue_id: str
    recipient_id: str
    doc: dict


class LiveSessionRecord(NamedTuple):
    account_id: str
    session_id: str
    doc: dict


class EventRecord(NamedTuple):
    account_id: str
    sequence: int
    time_ms: int
    type: str
    entity: str
    entity_id: str
    payload: bytes


class IdempotentResponse(NamedTuple):
    method: str
    response: bytes
    created_ms: int


class IdempotencyRecord(NamedTuple):
    account_id: str
    caller: str
    method: str
    request_id: str
    response: bytes
    created_ms: int


class OutboxRecord(NamedTuple):
    account_id: str
    delivery_id: str
    webhook_id: str
    created_ms: int
    next_attempt_ms: int
    attempts: int
    payload: bytes
    last_error: str | None


@dataclass(slots=True)
class Snapshot:
    """Everything needed to rebuild live state at startup, read in one
    consistent transaction.

    - ``meta``: key -> value (as stored by ``PutMeta``).
    - ``accounts``: account_id -> doc.
    - ``api_keys``: key_id -> ``ApiKeyRecord``.
    - ``configs``: (account_id, kind) -> {entity_id: doc}, entity ids sorted.
    - ``memberships``: ``MembershipRecord`` by (account_id, queue_id), each
      queue's members in the order they were added.
    - ``live_sessions``: ``LiveSessionRecord`` in routing order: (account_id,
      queue_id, priority desc, entered_at_ms, seq).
    - ``recipient_states``: (account_id, recipient_id) -> doc.
    - ``max_event_sequence``: account_id -> highest event sequence stored
      (accounts with no event are absent).
    - ``idempotency``: ``IdempotencyRecord`` oldest first.
    """

    meta: dict[str, Any] = field(default_factory=dict)
    accounts: dict[str, dict] = field(default_factory=dict)
    api_keys: dict[str, ApiKeyRecord] = field(default_factory=dict)
    configs: dict[tuple[str, str], dict[str, dict]] = field(default_factory=dict)
    memberships: list[MembershipRecord] = field(default_factory=list)
    live_sessions: list[LiveSessionRecord] = field(default_factory=list)
    recipient_states: dict[tuple[str, str], dict] = field(default_factory=dict)
    max_event_sequence: dict[str, int] = field(default_factory=dict)
    idempotency: list[IdempotencyRecord] = field(default_factory=list)


@dataclass(slots=True)
class StorageStats:
    """Writer counters, updated by the writer thread (read them for metrics).

    A *write* is one ``write()`` call (its ops commit or fail together); a
    *batch* is what one group commit took from the queue.
    """

    commits: int = 0
    ops_committed: int = 0
    writes_committed: int = 0
    writes_failed: int = 0
    batch_failures: int = 0        # batches whose transaction failed (then retried write by write)
    last_batch_size: int = 0       # ops in the last committed batch
    last_batch_writes: int = 0     # writes in the last committed batch
    max_batch_size: int = 0
    last_commit_seconds: float = 0.0   # BEGIN .. COMMIT of the last batch
    max_commit_seconds: float = 0.0
    commit_seconds_total: float = 0.0
