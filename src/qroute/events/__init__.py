"""The event bus: sequences every domain event per account, makes it durable
through storage, and hands it to subscribers."""

from qroute.events.journal import Journal

__all__ = ["Journal"]
