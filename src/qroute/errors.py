"""qroute's exception hierarchy. ``qroute.api.errors`` maps each class to a
gRPC status; anything else escaping a handler is a bug (``INTERNAL``)."""

from __future__ import annotations


class QrouteError(Exception):
    """Base of every error qroute reports to a client on purpose."""


class InvalidArgument(QrouteError):
    """The request is malformed; ``violations`` name each bad field."""

    def __init__(self, *violations: tuple[str, str]) -> None:
        self.violations = list(violations)
        super().__init__("; ".join(f"{field}: {why}" for field, why in self.violations))

    @classmethod
    def field(cls, field: str, why: str) -> InvalidArgument:
        return cls((field, why))


class NotFound(QrouteError):
    """An id names nothing this caller can see."""


class AlreadyExists(QrouteError):
    """Creating something that exists."""


class FailedPrecondition(QrouteError):
    """The request is valid but the state does not allow it now."""


class Unauthenticated(QrouteError):
    """No key, or a key that is not valid."""


class PermissionDenied(QrouteError):
    """A valid key that may not do this."""


class OutOfRange(QrouteError):
    """Asked for something outside what exists (e.g. an event no longer retained)."""


class ResourceExhausted(QrouteError):
    """A limit was reached (a slow subscriber, too many skills)."""


class InternalError(QrouteError):
    """A bug. The message shown to clients never carries internals."""
