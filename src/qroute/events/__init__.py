"""The event bus: sequences every domain event per account, makes it durable
through storage, and hands it to subscribers."""

from qroute.events.journal import Journal
from qroute.events.state import state_ops

__all__ = ["Journal", "state_ops"]
