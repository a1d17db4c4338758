"""Durable changes: small frozen values that know their SQL.

Build ops on the event-loop thread and hand them to ``Storage.write``. Every
``doc`` is encoded to JSON when the op is built, so the caller may keep
mutating its dict afterwards and the stored document is the one it had at that
moment; a document that is not JSON-serializable fails right there, on the
caller's line, not later in the writer thread.

How the writer runs an op: ``sql`` is its one statement and ``param_rows()``
its parameter rows. A group commit runs its ops table by table (the table is
read from ``sql``: ``INSERT INTO t``, ``DELETE FROM t``, ``UPDATE t``; each
table's ops in their order), and consecutive ops that share ``sql`` run
together (an ``INSERT ... VALUES`` as multi-row INSERTs). An op that needs
several statements sets ``sql = None`` and overrides ``steps()``; it keeps
its place among the others.

The SQL is SQLite's; another backend maps op types to its own statements.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from json.encoder import c_make_encoder, encode_basestring, encode_basestring_ascii
from typing import Any, ClassVar

__all__ = [
    "Op", "PutMeta", "DeleteMeta",
    "PutAccount", "DeleteAccount", "PutApiKey", "DeleteApiKey",
    "PutConfig", "DeleteConfig", "PutMembership", "DeleteMembership",
    "PutLiveSession", "DeleteLiveSession", "PutRecipientState", "DeleteRecipientState",
    "InsertFinishedSession", "InsertOffer", "InsertActivity",
    "AppendEvents", "TrimEvents", "EventRow",
    "PutIdempotency", "DeleteIdempotency", "TrimIdempotency",
    "PutOutbox", "DeleteOutbox",
    "OFFER_OUTCOMES", "DOC_JSON", "EVENT_JSON", "encode_doc", "json_encoder",
]


def json_encoder(**options: Any) -> Callable[[Any], str]:
    """``json.JSONEncoder(**options).encode``, the same text, less its set-up:
    that builds a C encoder (and a closure) on every call, a third of the time
    of the small documents written per event. Call it from one thread (ops are
    built on the loop's): its calls share the table of the containers they are
    inside, by which a loop is detected."""
    encoder = json.JSONEncoder(**options)
    if c_make_encoder is None or encoder.indent is not None:
        return encoder.encode
    markers: dict | None = {} if encoder.check_circular else None
    encode_c = c_make_encoder(
        markers, encoder.default, encode_basestring_ascii if encoder.ensure_ascii else encode_basestring,
        encoder.indent, encoder.key_separator, encoder.item_separator, encoder.sort_keys, encoder.skipkeys,
        encoder.allow_nan)

    def encode(value: Any) -> str:
        try:
            return "".join(encode_c(value, 0))
        except BaseException:
            if markers:  # a failed call leaves its containers in the table
                markers.clear()
            raise

    return encode


# Compact, UTF-8 as is, and strict JSON (NaN is not JSON).
DOC_JSON = {"ensure_ascii": False, "separators": (",", ":"), "allow_nan": False}
encode_doc = json_encoder(**DOC_JSON)
# An event's data as its stored payload (UTF-8 bytes of): compact ASCII JSON, anything else as its str().
EVENT_JSON = {"separators": (",", ":"), "default": str}

OFFER_OUTCOMES = frozenset({"accepted", "rejected", "missed", "cancelled"})

# (account_id, sequence, time_ms, type, entity, entity_id, payload): the
# events table's columns, in order.
EventRow = tuple[str, int, int, str, str, str, bytes | dict]

_op = dataclass(frozen=True, slots=True)


class Op:
    """Base of every durable change (see the module docstring)."""

    __slots__ = ()
    sql: ClassVar[str | None] = None
    # (column, how): the column of ``param_rows`` that may hold a value the
    # writer encodes as JSON (``qroute.storage.sqlite_process``), off the event loop.
    json_column: ClassVar[tuple[int, str] | None] = None

    def params(self) -> tuple:
        """The parameters of ``sql`` for this op's one row."""
        raise NotImplementedError

    def param_rows(self) -> Iterable[tuple]:
        """The parameter rows of ``sql`` (one, unless the op says otherwise)."""
        return (self.params(),)

    def steps(self) -> Iterable[tuple[str, Iterable[tuple]]]:
        """(statement, parameter rows) pairs, in order; ops with ``sql`` need not override."""
        return ((self.sql, self.param_rows()),)


def _encoded(op: Op, doc: Any) -> None:
    object.__setattr__(op, "doc_json", encode_doc(doc))


# --- meta --------------------------------------------------------------------

@_op
class PutMeta(Op):
    """Set a server-wide value (admin key hash, counters...). ``value`` is
    stored with its type: str, int, float, bytes or None."""

    key: str
    value: str | int | float | bytes | None
    sql: ClassVar[str] = (
        "INSERT INTO meta (key, value) VALUES (?, ?) "
        "ON CONFLICT (key) DO UPDATE SET value = excluded.value"
    )

    def params(self) -> tuple:
        return (self.key, self.value)


@_op
class DeleteMeta(Op):
    key: str
    sql: ClassVar[str] = "DELETE FROM meta WHERE key = ?"

    def params(self) -> tuple:
        return (self.key,)


# --- configuration -----------------------------------------------------------

@_op
class PutAccount(Op):
    """Create or replace an account's document."""

    account_id: str
    doc: dict
    doc_json: str = field(init=False, repr=False, compare=False)
    sql: ClassVar[str] = (
        "INSERT INTO accounts (account_id, doc) VALUES (?, ?) "
        "ON CONFLICT (account_id) DO UPDATE SET doc = excluded.doc"
    )

    def __post_init__(self) -> None:
        _encoded(self, self.doc)

    def params(self) -> tuple:
        return (self.account_id, self.doc_json)


# Every table holding an account's rows; DeleteAccount empties them all.
_ACCOUNT_TABLES = (
    "accounts", "api_keys", "config_docs", "memberships", "live_sessions",
    "recipient_states", "finished_sessions", "offers", "activities", "events",
    "idempotency", "webhook_outbox",
)


@_op
class DeleteAccount(Op):
    """Delete an account and everything stored under it: keys, config, live
    state, history, events, idempotency records and undelivered webhooks."""

    account_id: str

    def steps(self) -> Iterable[tuple[str, Iterable[tuple]]]:
        row = ((self.account_id,),)
        return [(f"DELETE FROM {table} WHERE account_id = ?", row) for table in _ACCOUNT_TABLES]


@_op
class PutApiKey(Op):
    """Create or replace an API key; only a hash of its secret is stored."""

    key_id: str
    account_id: str
    secret_hash: str | bytes
    doc: dict
    doc_json: str = field(init=False, repr=False, compare=False)
    sql: ClassVar[str] = (
        "INSERT INTO api_keys (key_id, account_id, secret_hash, doc) VALUES (?, ?, ?, ?) "
        "ON CONFLICT (key_id) DO UPDATE SET account_id = excluded.account_id, "
        "secret_hash = excluded.secret_hash, doc = excluded.doc"
    )

    def __post_init__(self) -> None:
        _encoded(self, self.doc)

    def params(self) -> tuple:
        return (self.key_id, self.account_id, self.secret_hash, self.doc_json)


@_op
class DeleteApiKey(Op):
    key_id: str
    sql: ClassVar[str] = "DELETE FROM api_keys WHERE key_id = ?"

    def params(self) -> tuple:
        return (self.key_id,)


@_op
class PutConfig(Op):
    """Create or replace one configuration document of an account.

    ``kind`` names the entity type: "queue", "recipient", "webhook",
    "account_settings", ... (free text: a new kind needs no migration).
    """

    account_id: str
    kind: str
    entity_id: str
    doc: dict
    doc_json: str = field(init=False, repr=False, compare=False)
    sql: ClassVar[str] = (
        "INSERT INTO config_docs (account_id, kind, entity_id, doc) VALUES (?, ?, ?, ?) "
        "ON CONFLICT (account_id, kind, entity_id) DO UPDATE SET doc = excluded.doc"
    )

    def __post_init__(self) -> None:
        _encoded(self, self.doc)

    def params(self) -> tuple:
        return (self.account_id, self.kind, self.entity_id, self.doc_json)


@_op
class DeleteConfig(Op):
    account_id: str
    kind: str
    entity_id: str
    sql: ClassVar[str] = (
        "DELETE FROM config_docs WHERE account_id = ? AND kind = ? AND entity_id = ?"
    )

    def params(self) -> tuple:
        return (self.account_id, self.kind, self.entity_id)


@_op
class PutMembership(Op):
    """Add a recipient to a queue, or replace its membership document.

    A new member goes after the queue's existing members; replacing a member's
    document keeps its place (``Snapshot.memberships`` is in that order).
    """

    account_id: str
    queue_id: str
    recipient_id: str
    doc: dict
    doc_json: str = field(init=False, repr=False, compare=False)
    sql: ClassVar[str] = (
        "INSERT INTO memberships (account_id, queue_id, recipient_id, doc) VALUES (?, ?, ?, ?) "
        "ON CONFLICT (account_id, queue_id, recipient_id) DO UPDATE SET doc = excluded.doc"
    )

    def __post_init__(self) -> None:
        _encoded(self, self.doc)

    def params(self) -> tuple:
        return (self.account_id, self.queue_id, self.recipient_id, self.doc_json)


@_op
class DeleteMembership(Op):
    account_id: str
    queue_id: str
    recipient_id: str
    sql: ClassVar[str] = (
        "DELETE FROM memberships WHERE account_id = ? AND queue_id = ? AND recipient_id = ?"
    )

    def params(self) -> tuple:
        return (self.account_id, self.queue_id, self.recipient_id)


# --- live state --------------------------------------------------------------

@_op
class PutLiveSession(Op):
    """Create or replace a live session (waiting, offered, talking...).

    ``doc`` holds the whole session; these keys are also stored as columns
    and give ``Snapshot.live_sessions`` its routing order: ``queue_id`` and
    ``entered_at_ms`` (required), ``priority`` (default 0), ``seq`` (arrival
    order, default 0) and ``state`` (default None).
    """

    account_id: str
    session_id: str
    doc: dict
    doc_json: str = field(init=False, repr=False, compare=False)
    sql: ClassVar[str] = (
        "INSERT INTO live_sessions "
        "(account_id, session_id, queue_id, state, priority, entered_at_ms, seq, doc) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?) "
        "ON CONFLICT (account_id, session_id) DO UPDATE SET "
        "queue_id = excluded.queue_id, state = excluded.state, priority = excluded.priority, "
        "entered_at_ms = excluded.entered_at_ms, seq = excluded.seq, doc = excluded.doc"
    )

    def __post_init__(self) -> None:
        doc = self.doc
        if doc.get("queue_id") is None or doc.get("entered_at_ms") is None:
            raise ValueError("a live session's doc needs 'queue_id' and 'entered_at_ms'")
        _encoded(self, doc)

    def params(self) -> tuple:
        doc = self.doc
        return (
            self.account_id, self.session_id, doc["queue_id"], doc.get("state"),
            doc.get("priority", 0), doc["entered_at_ms"], doc.get("seq", 0), self.doc_json,
        )


@_op
class DeleteLiveSession(Op):
    account_id: str
    session_id: str
    sql: ClassVar[str] = "DELETE FROM live_sessions WHERE account_id = ? AND session_id = ?"

    def params(self) -> tuple:
        return (self.account_id, self.session_id)


@_op
class PutRecipientState(Op):
    """Create or replace a recipient's live state (login, availability, state).
    The document is copied as given and encoded by the writer."""

    account_id: str
    recipient_id: str
    doc: dict
    sql: ClassVar[str] = (
        "INSERT INTO recipient_states (account_id, recipient_id, doc) VALUES (?, ?, ?) "
        "ON CONFLICT (account_id, recipient_id) DO UPDATE SET doc = excluded.doc"
    )
    json_column: ClassVar[tuple[int, str]] = (2, "doc")

    def __post_init__(self) -> None:
        object.__setattr__(self, "doc", dict(self.doc))  # as it is now: the caller's goes on changing

    @property
    def doc_json(self) -> str:
        return encode_doc(self.doc)

    def params(self) -> tuple:
        return (self.account_id, self.recipient_id, self.doc)


@_op
class DeleteRecipientState(Op):
    account_id: str
    recipient_id: str
    sql: ClassVar[str] = (
        "DELETE FROM recipient_states WHERE account_id = ? AND recipient_id = ?"
    )

    def params(self) -> tuple:
        return (self.account_id, self.recipient_id)


# --- history -----------------------------------------------------------------

@_op
class InsertFinishedSession(Op):
    """Record a session that left the system. A second record for the same
    (account_id, session_id) fails its write."""

    account_id: str
    session_id: str
    queue_id: str | None
    recipient_id: str | None
    entered_at_ms: int
    ended_at_ms: int
    end_reason: str
    wait_ms: int
    ring_ms: int
    talk_ms: int
    queues_visited: Sequence[str]
    doc: dict
    queues_visited_json: str = field(init=False, repr=False, compare=False)
    doc_json: str = field(init=False, repr=False, compare=False)
    sql: ClassVar[str] = (
        "INSERT INTO finished_sessions (account_id, session_id, queue_id, recipient_id, "
        "entered_at_ms, ended_at_ms, end_reason, wait_ms, ring_ms, talk_ms, queues_visited, doc) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
    )

    def __post_init__(self) -> None:
        object.__setattr__(self, "queues_visited_json", encode_doc(list(self.queues_visited)))
        _encoded(self, self.doc)

    def params(self) -> tuple:
        return (
            self.account_id, self.session_id, self.queue_id, self.recipient_id,
            self.entered_at_ms, self.ended_at_ms, self.end_reason, self.wait_ms,
            self.ring_ms, self.talk_ms, self.queues_visited_json, self.doc_json,
        )


@_op
class InsertOffer(Op):
    """Record an offer and its outcome: "accepted", "rejected", "missed" or
    "cancelled"."""

    account_id: str
    offer_id: str
    session_id: str
    queue_id: str | None
    recipient_id: str
    offered_at_ms: int
    ended_at_ms: int
    outcome: str
    ring_ms: int
    sql: ClassVar[str] = (
        "INSERT INTO offers (account_id, offer_id, session_id, queue_id, recipient_id, "
        "offered_at_ms, ended_at_ms, outcome, ring_ms) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
    )

    def __post_init__(self) -> None:
        if self.outcome not in OFFER_OUTCOMES:
            raise ValueError(f"offer outcome {self.outcome!r} not one of {sorted(OFFER_OUTCOMES)}")

    def params(self) -> tuple:
        return (
            self.account_id, self.offer_id, self.session_id, self.queue_id, self.recipient_id,
            self.offered_at_ms, self.ended_at_ms, self.outcome, self.ring_ms,
        )


@_op
class InsertActivity(Op):
    """Record one finished span of a recipient's activity: ``kind`` is
    "logged_in", "ready", "away", "wrapup", ...; ``code`` an optional reason."""

    account_id: str
    recipient_id: str
    kind: str
    code: str | None
    started_at_ms: int
    ended_at_ms: int
    sql: ClassVar[str] = (
        "INSERT INTO activities (account_id, recipient_id, kind, code, started_at_ms, "
        "ended_at_ms) VALUES (?, ?, ?, ?, ?, ?)"
    )

    def params(self) -> tuple:
        return (
            self.account_id, self.recipient_id, self.kind, self.code,
            self.started_at_ms, self.ended_at_ms,
        )


# --- events log --------------------------------------------------------------

@_op
class AppendEvents(Op):
    """Append events: ``rows`` of (account_id, sequence, time_ms, type,
    entity, entity_id, payload): the payload as stored (bytes), or the
    event's data, which the writer stores as JSON (``EVENT_JSON``). A
    sequence already stored for its account fails the write."""

    rows: Sequence[EventRow]
    sql: ClassVar[str] = (
        "INSERT INTO events (account_id, sequence, time_ms, type, entity, entity_id, payload) "
        "VALUES (?, ?, ?, ?, ?, ?, ?)"
    )
    json_column: ClassVar[tuple[int, str]] = (6, "event")

    def param_rows(self) -> Iterable[tuple]:
        return self.rows


@_op
class TrimEvents(Op):
    """Delete an account's events with sequence < ``below_sequence``.

    The account's newest event is always kept, so the highest sequence it was
    given survives a trim (``Snapshot.max_event_sequence``) and a restart
    never reuses a sequence.
    """

    account_id: str
    below_sequence: int
    sql: ClassVar[str] = (
        "DELETE FROM events WHERE account_id = ?1 AND sequence < min(?2, "
        "(SELECT max(sequence) FROM events WHERE account_id = ?1))"
    )

    def params(self) -> tuple:
        return (self.account_id, self.below_sequence)


# --- idempotency -------------------------------------------------------------

@_op
class PutIdempotency(Op):
    """Remember the response to a mutating request by its ``request_id``,
    per account, ``caller`` (who asked: "" for the account's keys, or the
    recipient a recipient key acts for) and ``method`` (the RPC).

    The first response recorded for a key is kept; a later one for the same
    key is ignored (not an error).
    """

    account_id: str
    request_id: str
    method: str
    response: bytes
    created_ms: int
    caller: str = ""
    sql: ClassVar[str] = (
        "INSERT INTO idempotency (account_id, caller, method, request_id, response, created_ms) "
        "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (account_id, caller, method, request_id) DO NOTHING"
    )

    def params(self) -> tuple:
        return (self.account_id, self.caller, self.method, self.request_id, self.response,
                self.created_ms)


@_op
class DeleteIdempotency(Op):
    """Forget one recorded response (evicted by the per-account limit)."""

    account_id: str
    request_id: str
    method: str
    caller: str = ""
    sql: ClassVar[str] = (
        "DELETE FROM idempotency WHERE account_id = ? AND caller = ? AND method = ? AND request_id = ?"
    )

    def params(self) -> tuple:
        return (self.account_id, self.caller, self.method, self.request_id)


@_op
class TrimIdempotency(Op):
    """Forget every account's idempotency records created before ``created_before_ms``."""

    created_before_ms: int
    sql: ClassVar[str] = "DELETE FROM idempotency WHERE created_ms < ?"

    def params(self) -> tuple:
        return (self.created_before_ms,)


# --- webhook outbox ----------------------------------------------------------

@_op
class PutOutbox(Op):
    """Create or update a pending webhook delivery (upsert: a failed attempt
    is recorded by putting it again with ``attempts`` + 1 and a later
    ``next_attempt_ms``)."""

    account_id: str
    delivery_id: str
    webhook_id: str
    created_ms: int
    next_attempt_ms: int
    attempts: int
    payload: bytes
    last_error: str | None = None
    sql: ClassVar[str] = (
        "INSERT INTO webhook_outbox (account_id, delivery_id, webhook_id, created_ms, "
        "next_attempt_ms, attempts, payload, last_error) VALUES (?, ?, ?, ?, ?, ?, ?, ?) "
        "ON CONFLICT (account_id, delivery_id) DO UPDATE SET "
        "webhook_id = excluded.webhook_id, next_attempt_ms = excluded.next_attempt_ms, "
        "attempts = excluded.attempts, payload = excluded.payload, "
        "last_error = excluded.last_error"
    )

    def params(self) -> tuple:
        return (
            self.account_id, self.delivery_id, self.webhook_id, self.created_ms,
            self.next_attempt_ms, self.attempts, self.payload, self.last_error,
        )


@_op
class DeleteOutbox(Op):
    """Drop a delivery: delivered, or given up on."""

    account_id: str
    delivery_id: str
    sql: ClassVar[str] = "DELETE FROM webhook_outbox WHERE account_id = ? AND delivery_id = ?"

    def params(self) -> tuple:
        return (self.account_id, self.delivery_id)
