"""Errors raised by the storage layer.

Callers catch these, never a driver's own exceptions (``sqlite3.Error`` now,
a PostgreSQL driver's later); the driver's exception is kept as ``__cause__``.
"""

from qroute.errors import InternalError


class StorageError(InternalError):
    """Base of every storage error."""


class StorageClosed(StorageError):
    """The storage is not started, is stopping, or has stopped."""


class WriteError(StorageError):
    """A write's transaction failed; nothing of that write was kept.

    ``ops`` holds the operations of the failed write (one ``write()`` call).
    """

    def __init__(self, message: str, ops: tuple = ()):
        super().__init__(message)
        self.ops = ops


class WriterGone(StorageError):
    """The process holding the write connection died: nothing more can be
    committed (whether its last transaction was is unknown, so it is not
    retried)."""


class SchemaError(StorageError):
    """The database's schema cannot be used (e.g. written by a newer qroute)."""
