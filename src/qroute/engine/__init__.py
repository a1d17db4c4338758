"""The orchestrator: owns all live state, applies commands, runs dispatch
passes and timers, and emits domain events. No gRPC and no storage inside."""

from qroute.engine.clock import SystemClock, VirtualClock
from qroute.engine.engine import Engine, PassScheduler
from qroute.engine.floor import Floor

__all__ = ["Engine", "Floor", "PassScheduler", "SystemClock", "VirtualClock"]
