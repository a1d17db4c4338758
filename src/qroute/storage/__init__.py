"""Durable state behind one interface: SQLite now, PostgreSQL later.

The engine builds ops (:mod:`qroute.storage.ops`), hands them to
``Storage.write`` and awaits the returned future: once it resolves, the ops
are committed ("acknowledged means durable"). At startup ``load_all()``
returns a :class:`Snapshot` of everything needed to rebuild live state.
Storage takes and returns plain values (str, int, bytes, JSON-able dicts),
never domain objects.
"""

from qroute.storage.base import Storage
from qroute.storage.errors import SchemaError, StorageClosed, StorageError, WriteError
from qroute.storage.ops import *  # noqa: F403 (the op types are part of this API)
from qroute.storage.ops import __all__ as _ops_all
from qroute.storage.records import (
    ApiKeyRecord,
    EventRecord,
    IdempotencyRecord,
    IdempotentResponse,
    LiveSessionRecord,
    MembershipRecord,
    OutboxRecord,
    Snapshot,
    StorageStats,
)
from qroute.storage.requests import RequestLog
from qroute.storage.schema import SCHEMA_VERSION
from qroute.storage.sqlite import SqliteStorage

__all__ = [
    "ApiKeyRecord", "EventRecord", "IdempotencyRecord", "IdempotentResponse", "LiveSessionRecord",
    "MembershipRecord", "OutboxRecord", "RequestLog", "SCHEMA_VERSION", "SchemaError", "Snapshot",
    "SqliteStorage", "Storage", "StorageClosed", "StorageError", "StorageStats",
    "WriteError", *_ops_all,
]
