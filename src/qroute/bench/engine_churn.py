"""Churn through the engine: the core benchmark's churn, but driven by engine
commands (``Floor.enqueue``, ``accept``, ``hangup``, ``abandon``) with a
``run_pass`` after each, events and all. Set beside the bare dispatcher's
churn it shows what the engine adds per match."""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass

from qroute.bench import workload as W
from qroute.domain.config import Member, QueueConfig, RecipientConfig, TierRule
from qroute.domain.enums import Router
from qroute.engine import Engine, VirtualClock

WRAPUP_QUEUE_SHARE = 5  # one queue in this many has a wrap-up time
WRAPUP_SECONDS = 3


@dataclass
class EngineChurnResult:
    ops: int
    matches: int
    elapsed_ns: int

    @property
    def matches_per_s(self) -> float:
        return self.matches / (self.elapsed_ns / 1e9) if self.elapsed_ns else 0.0

    @property
    def us_per_op(self) -> float:
        return self.elapsed_ns / 1e3 / max(1, self.ops)


class EngineChurn:
    """A floor loaded with the workload, saturated, ready for churn scripts."""

    def __init__(self, dispatcher_cls: type, workload: W.Workload) -> None:
        self.clock = VirtualClock(workload.now_ms)
        self.offer_order: deque[str] = deque()
        self.offered = 0
        engine = Engine(self.clock, sink=self._sink, dispatcher_cls=dispatcher_cls, seed=workload.seed)
        self.floor = floor = engine.open_floor("bench")
        for q, router, ring_ms, timeout_ms, expansion in workload.queues:
            floor.create_queue(QueueConfig(
                id=f"q{q}", name=f"queue {q}", router=Router(router), ring_timeout=max(1, ring_ms // 1000),
                timeout=max(10, timeout_ms // 1000),
                agent_wrapup_time=WRAPUP_SECONDS if q % WRAPUP_QUEUE_SHARE == 0 else 0,
                tier_expansion=tuple(TierRule(after // 1000, tier) for after, tier in expansion)))
        for r, skills in workload.recipients:
            floor.create_recipient(RecipientConfig(id=f"r{r}", skills=_names(skills)))
        for q, r, tier in workload.memberships:
            floor.add_members(f"q{q}", [Member(f"r{r}", tier)])
        for s, q, priority, entered_at, _, skills in workload.sessions:
            floor.enqueue(f"q{q}", priority=priority, skills=_names(skills), entered_at_ms=entered_at)
        for r, _ in workload.recipients:
            floor.login(f"r{r}", ready=True)
        floor.run_pass()
        while self.offer_order:  # saturate: every offer answered
            self._accept_oldest()
            floor.run_pass()
        self.connected = [s.id for s in floor.sessions.values() if s.recipient_id]
        self.alive = [s.id for s in floor.sessions.values() if not s.recipient_id]

    def _sink(self, event) -> None:
        if event.type == "recipient.offered":
            self.offered += 1
            self.offer_order.append(event.data["offer_id"])

    def _accept_oldest(self) -> str | None:
        while self.offer_order:
            offer_id = self.offer_order.popleft()
            offer = self.floor.offers.get(offer_id)
            if offer is not None:
                return self.floor.accept(offer_id, offer.recipient.id).id
        return None

    def run(self, ops) -> EngineChurnResult:
        floor, clock = self.floor, self.clock
        perf = time.perf_counter_ns
        elapsed = matches = 0
        with W.gc_paused():
            for kind, pick, (q, priority, skills), _ in ops:
                clock.advance(1)
                before = self.offered
                start = perf()
                if kind == W.ACCEPT and self.offer_order:
                    session_id = self._accept_oldest()
                    if session_id is not None:
                        self.connected.append(session_id)
                elif kind == W.HANGUP and self.connected:
                    session_id = self.connected.pop(pick % len(self.connected))
                    if session_id in floor.sessions:
                        floor.hangup(session_id)
                elif kind == W.END_WRAPUP:
                    clock.advance(WRAPUP_SECONDS * 1000)
                elif kind == W.ABANDON and self.alive:
                    session_id = self.alive.pop(pick % len(self.alive))
                    session = floor.sessions.get(session_id)
                    if session is not None and not session.recipient_id:
                        floor.abandon(session_id)
                else:
                    self.alive.append(floor.enqueue(f"q{q}", priority=priority, skills=_names(skills)).id)
                floor.run_pass()
                elapsed += perf() - start
                matches += self.offered - before
        return EngineChurnResult(len(ops), matches, elapsed)


def _names(skills: W.Skills) -> dict[str, int]:
    return {f"skill{index}": level for index, level in skills.items()}
