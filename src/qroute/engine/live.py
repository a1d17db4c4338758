"""Live entities of one account, as the engine holds them between passes."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sortedcontainers import SortedList

from qroute.domain.config import Member, QueueConfig, RecipientConfig
from qroute.domain.enums import Availability, EndReason, RecipientState, SessionState
from qroute.domain.ewt import ServiceRate


class HandlePool:
    """Small integer handles for the dispatcher, reused once released."""

    def __init__(self) -> None:
        self._free: list[int] = []
        self._next = 0

    def take(self) -> int:
        if self._free:
            return self._free.pop()
        self._next += 1
        return self._next - 1

    def give(self, handle: int) -> None:
        self._free.append(handle)


@dataclass(slots=True)
class QueueCounters:
    total_sessions: int = 0
    answered_sessions: int = 0
    missed_sessions: int = 0
    abandoned_sessions: int = 0
    timed_out_sessions: int = 0
    answered_wait_ms: int = 0


@dataclass(slots=True, eq=False)
class LiveQueue:
    config: QueueConfig
    handle: int
    members: dict[str, Member] = field(default_factory=dict)
    # waiting sessions in service order: (-priority, entered_at_ms, seq, session_id)
    line: SortedList = field(default_factory=SortedList)
    offering: int = 0  # sessions of this queue under offer
    priorities: dict[int, int] = field(default_factory=dict)  # priority -> waiting count
    counters: QueueCounters = field(default_factory=QueueCounters)
    rate: ServiceRate = field(default_factory=ServiceRate)
    serving: tuple[int, int] = (-1, 0)  # (staffing version, recipients serving it) for the EWT

    @property
    def id(self) -> str:
        return self.config.id

    def stats_doc(self) -> dict[str, Any]:
        """Its counters and service rate (what the queue status and the EWT
        learned), as stored so that a restart does not start them cold."""
        counters, rate = self.counters, self.rate
        return {"total": counters.total_sessions, "answered": counters.answered_sessions,
                "missed": counters.missed_sessions, "abandoned": counters.abandoned_sessions,
                "timed_out": counters.timed_out_sessions, "answered_wait_ms": counters.answered_wait_ms,
                "handle_ms": rate.handle_ms, "handled": rate.observed, "ewt_error_sum_ms": rate.error_sum_ms,
                "ewt_error_count": rate.error_count}

    def restore_stats(self, doc: dict[str, Any]) -> None:
        """Back to what ``stats_doc`` stored (missing keys keep their default)."""
        fresh_counters, fresh_rate = QueueCounters(), ServiceRate()
        self.counters = QueueCounters(
            doc.get("total", fresh_counters.total_sessions), doc.get("answered", fresh_counters.answered_sessions),
            doc.get("missed", fresh_counters.missed_sessions), doc.get("abandoned", fresh_counters.abandoned_sessions),
            doc.get("timed_out", fresh_counters.timed_out_sessions),
            doc.get("answered_wait_ms", fresh_counters.answered_wait_ms))
        self.rate = ServiceRate(doc.get("handle_ms", fresh_rate.handle_ms), doc.get("handled", fresh_rate.observed),
                                doc.get("ewt_error_sum_ms", fresh_rate.error_sum_ms),
                                doc.get("ewt_error_count", fresh_rate.error_count))


@dataclass(slots=True, eq=False)
class Offer:
    id: str
    session: LiveSession
    recipient: LiveRecipient
    queue_id: str
    offered_at_ms: int
    ring_timeout_ms: int


@dataclass(slots=True, eq=False)
class LiveRecipient:
    config: RecipientConfig
    handle: int
    logged_in: bool = False
    availability: Availability = Availability.AWAY
    unavailable_code: str = ""
    forced_by: str = ""  # why the system made it away: bounced, rejected, ...
    away_queues: set[str] = field(default_factory=set)  # per-queue AWAY
    queues: set[str] = field(default_factory=set)
    offer: Offer | None = None
    session: LiveSession | None = None  # the connected call
    wrapup_session_id: str = ""
    in_wrapup: bool = False
    logout_pending: tuple | None = None  # (source, forced_by) of a logout waiting for the call to end
    wrapup_until_ms: int = 0
    state: RecipientState = RecipientState.LOGGED_OUT
    state_since_ms: int = 0
    misses: int = 0  # consecutive, as reported in recipient.missed
    # device state reported by the phone system (seed 004), and the desktop stream lost
    dnd: bool = False
    personal_call: bool = False
    reachable: bool = True
    desktop_lost: bool = False
    device_causes: frozenset[str] = frozenset()  # forcing causes active now (dnd, personal_call, not_reachable)
    # (availability, unavailable_code, forced_by) before the device forced it away; None when not forced
    before_forcing: tuple | None = None
    thresholds: dict[str, int] = field(default_factory=dict)  # breached metric -> its limit

    @property
    def id(self) -> str:
        return self.config.id

    def derived_state(self) -> RecipientState:
        if not self.logged_in:
            return RecipientState.LOGGED_OUT
        if self.offer is not None:
            return RecipientState.RINGING
        if self.session is not None:
            return RecipientState.BUSY
        if self.in_wrapup:
            return RecipientState.WRAPUP
        return RecipientState.READY if self.availability == Availability.READY else RecipientState.AWAY

    @property
    def routable(self) -> bool:
        """Whether the dispatcher may offer it calls once it is free."""
        return self.logged_in and self.availability == Availability.READY


@dataclass(slots=True, eq=False)
class LiveSession:
    id: str
    queue_id: str
    seq: int
    priority: int
    entered_at_ms: int
    joined_at_ms: int
    caller_number: str = ""
    caller_name: str = ""
    skills: dict[str, int] = field(default_factory=dict)
    properties: dict[str, Any] = field(default_factory=dict)
    state: SessionState = SessionState.WAITING
    handle: int = -1  # in the dispatcher while >= 0
    offers: dict[str, Offer] = field(default_factory=dict)  # outstanding, by offer id
    recipient_id: str = ""
    queues_visited: list[str] = field(default_factory=list)
    estimated_wait_ms: int = -1  # predicted when it joined its queue
    ringing_since_ms: int = 0
    answered_at_ms: int = 0
    ended_at_ms: int = 0
    end_reason: EndReason | None = None
    wait_ms: int = 0
    ring_ms: int = 0
    talk_ms: int = 0
    callback: bool = False

    def line_key(self) -> tuple[int, int, int, str]:
        return (-self.priority, self.entered_at_ms, self.seq, self.id)
