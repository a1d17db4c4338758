"""qroute: a call-queue routing core (ACD) served over gRPC.

Gateways hand qroute sessions (callers) for queues; qroute offers them to
available recipients (agents), follows both through ringing, talking and
wrap-up, and streams every change as an event. The public contract is the
``qroute.v1`` gRPC API (stubs in :mod:`qroute.v1`); the per-pass matching is
the dispatcher in :mod:`qroute.routing`.
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
