"""The SQLite schema and its migrations.

Configuration and live state are JSON documents keyed by id, with only the
columns that queries order or filter by pulled out (so a new config field needs
no migration). History is real columns with the indexes reports use.

``MIGRATIONS[v]`` turns a version ``v - 1`` database into version ``v``; a new
database runs them all. Never edit a released migration: append one.
"""

import sqlite3

from qroute.storage.errors import SchemaError

_V1 = (
    # Single-row table: the schema version of this file.
    "CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)",
    # Untyped value column: an int stays an int, bytes stay bytes.
    "CREATE TABLE meta (key TEXT PRIMARY KEY, value) WITHOUT ROWID",
    # --- configuration ---------------------------------------------------
    "CREATE TABLE accounts (account_id TEXT PRIMARY KEY, doc TEXT NOT NULL) WITHOUT ROWID",
    """CREATE TABLE api_keys (
        key_id TEXT PRIMARY KEY,
        account_id TEXT NOT NULL,
        secret_hash NOT NULL,
        doc TEXT NOT NULL
    ) WITHOUT ROWID""",
    "CREATE INDEX api_keys_account ON api_keys (account_id)",
    """CREATE TABLE config_docs (
        account_id TEXT NOT NULL,
        kind TEXT NOT NULL,
        entity_id TEXT NOT NULL,
        doc TEXT NOT NULL,
        PRIMARY KEY (account_id, kind, entity_id)
    ) WITHOUT ROWID""",
    # member_seq is an explicit INTEGER PRIMARY KEY (a rowid alias) because
    # plain rowids may be renumbered by VACUUM: it records the order members
    # were added, which round_robin / linear routing depend on. An upsert of
    # an existing member keeps its place.
    """CREATE TABLE memberships (
        member_seq INTEGER PRIMARY KEY,
        account_id TEXT NOT NULL,
        queue_id TEXT NOT NULL,
        recipient_id TEXT NOT NULL,
        doc TEXT NOT NULL,
        UNIQUE (account_id, queue_id, recipient_id)
    )""",
    "CREATE INDEX memberships_recipient ON memberships (account_id, recipient_id)",
    # --- live state -------------------------------------------------------
    """CREATE TABLE live_sessions (
        account_id TEXT NOT NULL,
        session_id TEXT NOT NULL,
        queue_id TEXT NOT NULL,
        state TEXT,
        priority INTEGER NOT NULL,
        entered_at_ms INTEGER NOT NULL,
        seq INTEGER NOT NULL,
        doc TEXT NOT NULL,
        PRIMARY KEY (account_id, session_id)
    ) WITHOUT ROWID""",
    # The routing order of waiting callers; load_all reads it in this order.
    """CREATE INDEX live_sessions_order
        ON live_sessions (account_id, queue_id, priority DESC, entered_at_ms, seq)""",
    "CREATE INDEX live_sessions_state ON live_sessions (account_id, state)",
    """CREATE TABLE recipient_states (
        account_id TEXT NOT NULL,
        recipient_id TEXT NOT NULL,
        doc TEXT NOT NULL,
        PRIMARY KEY (account_id, recipient_id)
    ) WITHOUT ROWID""",
    # --- history (reports) --------------------------------------------------
    """CREATE TABLE finished_sessions (
        account_id TEXT NOT NULL,
        session_id TEXT NOT NULL,
        queue_id TEXT,
        recipient_id TEXT,
        entered_at_ms INTEGER NOT NULL,
        ended_at_ms INTEGER NOT NULL,
        end_reason TEXT NOT NULL,
        wait_ms INTEGER NOT NULL,
        ring_ms INTEGER NOT NULL,
        talk_ms INTEGER NOT NULL,
        queues_visited TEXT NOT NULL,
        doc TEXT NOT NULL,
        PRIMARY KEY (account_id, session_id)
    ) WITHOUT ROWID""",
    """CREATE INDEX finished_sessions_queue
        ON finished_sessions (account_id, queue_id, ended_at_ms)""",
    """CREATE INDEX finished_sessions_recipient
        ON finished_sessions (account_id, recipient_id, ended_at_ms)""",
    """CREATE TABLE offers (
        account_id TEXT NOT NULL,
        offer_id TEXT NOT NULL,
        session_id TEXT NOT NULL,
        queue_id TEXT,
        recipient_id TEXT NOT NULL,
        offered_at_ms INTEGER NOT NULL,
        ended_at_ms INTEGER NOT NULL,
        outcome TEXT NOT NULL
            CHECK (outcome IN ('accepted', 'rejected', 'missed', 'cancelled')),
        ring_ms INTEGER NOT NULL,
        PRIMARY KEY (account_id, offer_id)
    ) WITHOUT ROWID""",
    "CREATE INDEX offers_queue ON offers (account_id, queue_id, offered_at_ms)",
    "CREATE INDEX offers_recipient ON offers (account_id, recipient_id, offered_at_ms)",
    """CREATE TABLE activities (
        activity_id INTEGER PRIMARY KEY,
        account_id TEXT NOT NULL,
        recipient_id TEXT NOT NULL,
        kind TEXT NOT NULL,
        code TEXT,
        started_at_ms INTEGER NOT NULL,
        ended_at_ms INTEGER NOT NULL
    )""",
    """CREATE INDEX activities_recipient
        ON activities (account_id, recipient_id, started_at_ms)""",
    # --- events log ---------------------------------------------------------
    """CREATE TABLE events (
        account_id TEXT NOT NULL,
        sequence INTEGER NOT NULL,
        time_ms INTEGER NOT NULL,
        type TEXT NOT NULL,
        entity TEXT NOT NULL,
        entity_id TEXT NOT NULL,
        payload BLOB NOT NULL,
        PRIMARY KEY (account_id, sequence)
    ) WITHOUT ROWID""",
    # --- idempotency ----------------------------------------------------------
    """CREATE TABLE idempotency (
        account_id TEXT NOT NULL,
        request_id TEXT NOT NULL,
        method TEXT NOT NULL,
        response BLOB NOT NULL,
        created_ms INTEGER NOT NULL,
        PRIMARY KEY (account_id, request_id)
    ) WITHOUT ROWID""",
    "CREATE INDEX idempotency_created ON idempotency (created_ms)",
    # --- webhook outbox ---------------------------------------------------------
    """CREATE TABLE webhook_outbox (
        account_id TEXT NOT NULL,
        delivery_id TEXT NOT NULL,
        webhook_id TEXT NOT NULL,
        created_ms INTEGER NOT NULL,
        next_attempt_ms INTEGER NOT NULL,
        attempts INTEGER NOT NULL,
        payload BLOB NOT NULL,
        last_error TEXT,
        PRIMARY KEY (account_id, delivery_id)
    ) WITHOUT ROWID""",
    "CREATE INDEX webhook_outbox_due ON webhook_outbox (next_attempt_ms)",
)

# Version 2: indexes for the reports (qroute.reports). A report aggregates,
# for each (entity, period), one range of (account_id, entity, ended_at_ms)
# in each of these; each covers every column its aggregates read, so the
# table itself is never visited. Partial indexes split the rows the reports
# treat differently (answered or not, accepted or not): one range per pass.
# (The condition's column is repeated last: SQLite 3.40 reads it from the
# index to check the condition, or the index would not be covering.)
_V2 = (
    # Queue report: avg_wait and the answered part of call_count.
    """CREATE INDEX finished_sessions_queue_completed
        ON finished_sessions (account_id, queue_id, ended_at_ms, wait_ms, end_reason)
        WHERE end_reason = 'completed'""",
    # Queue report: timeout_count, abandon_count, the rest of call_count.
    """CREATE INDEX finished_sessions_queue_unanswered
        ON finished_sessions (account_id, queue_id, ended_at_ms, end_reason)
        WHERE end_reason <> 'completed'""",
    # Recipient report: avg_call_duration (optionally of some queues only).
    # It extends finished_sessions_recipient, which it replaces.
    "DROP INDEX finished_sessions_recipient",
    """CREATE INDEX finished_sessions_recipient
        ON finished_sessions (account_id, recipient_id, ended_at_ms, talk_ms, queue_id)""",
    # Recipient report: call_count and avg_ring_duration.
    """CREATE INDEX offers_recipient_accepted
        ON offers (account_id, recipient_id, ended_at_ms, ring_ms, queue_id, outcome)
        WHERE outcome = 'accepted'""",
    # Recipient report: missed_call_count and rejected_call_count.
    """CREATE INDEX offers_recipient_unaccepted
        ON offers (account_id, recipient_id, ended_at_ms, outcome, queue_id)
        WHERE outcome <> 'accepted'""",
)

# Version 3:
# - live_sessions loses its two secondary indexes: nothing reads through them
#   (load_all sorts one scan), and every stored session change paid for them.
# - idempotency is keyed by who asked and the RPC as well as the request id
#   (a recipient key's ids are its own; an id names one call of one RPC), and
#   now holds what mutations answered (qroute.storage.requests): rebuilt, as
#   nothing was stored in it before.
_V3 = (
    "DROP INDEX live_sessions_order",
    "DROP INDEX live_sessions_state",
    "DROP TABLE idempotency",
    """CREATE TABLE idempotency (
        account_id TEXT NOT NULL,
        caller TEXT NOT NULL,
        method TEXT NOT NULL,
        request_id TEXT NOT NULL,
        response BLOB NOT NULL,
        created_ms INTEGER NOT NULL,
        PRIMARY KEY (account_id, caller, method, request_id)
    ) WITHOUT ROWID""",
    "CREATE INDEX idempotency_created ON idempotency (created_ms)",
)

MIGRATIONS: dict[int, tuple[str, ...]] = {1: _V1, 2: _V2, 3: _V3}
SCHEMA_VERSION = max(MIGRATIONS)


def schema_version(conn: sqlite3.Connection) -> int:
    """The version recorded in ``conn``'s database; 0 for an empty database."""
    exists = conn.execute(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'schema_version'"
    ).fetchone()
    if not exists:
        return 0
    row = conn.execute("SELECT MAX(version) FROM schema_version").fetchone()
    return row[0] or 0


def migrate(conn: sqlite3.Connection) -> int:
    """Bring ``conn``'s database to ``SCHEMA_VERSION``; returns the version found.

    Each migration runs in its own transaction with the version update, so a
    crash mid-way leaves the database at the previous version. ``conn`` must be
    in autocommit mode (``isolation_level=None``).
    """
    found = schema_version(conn)
    if found > SCHEMA_VERSION:
        raise SchemaError(
            f"database schema version {found} is newer than this qroute's "
            f"({SCHEMA_VERSION}); upgrade qroute"
        )
    for version in range(found + 1, SCHEMA_VERSION + 1):
        conn.execute("BEGIN IMMEDIATE")
        try:
            for statement in MIGRATIONS[version]:
                conn.execute(statement)
            conn.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
            conn.execute("DELETE FROM schema_version")
            conn.execute("INSERT INTO schema_version (version) VALUES (?)", (version,))
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
    return found
