"""The standard workload of the routing core, and the scenarios measured on it.

The workload is generated once from a seed (``make_workload``) as plain data,
then loaded into any ``Dispatcher`` class through its public methods only
(``build``), so every implementation sees exactly the same queues, members
and callers. Building is never timed.

Standard workload (``STANDARD``)
    500 queues in departments of 10. Each department trains its agents on a
    pool of 8 of the 64 skills: 6 common ones and 2 of the 8 rare skills
    (think languages few agents speak). Each queue draws 3 to 5 "core"
    skills from its department's pool and offers 2 to 6 requirement
    profiles (what the IVR asks: 0 to 3 core skills at levels 1..5).
    Routers are mixed (mostly round robin and most idle, 2% ring-all); 30%
    of the queues widen from tier 1 to tier 2 after 20 or 30 s of waiting.
    10,000 recipients, each a member of 1 to 5 queues (80% of them in its
    own department), tier 1 (85%) or 2, holding 12 to 24 skills at levels
    1..10: most of its department's common skills, a rare one seldom, the
    rest random common skills. No guard timer, no bounce limit.
    100,000 waiting sessions spread unevenly over the queues, priorities
    0..9 (mostly low), arrived during the last 15 minutes, each needing one
    of its queue's profiles. About 88% can be served by a member of their
    queue (``Workload.servable_share``); the rest wait in groups whose head
    finds nobody, which a pass must skip cheaply.

Scenarios (each returns raw samples; ``summary`` gives median and range)
    (a) ``full_pass``: all recipients become ready at the same instant and
        the one ``dispatch`` that follows is timed (the thread's CPU time).
        Fresh build per sample.
    (b) ``incremental_pass`` (``FreeOne``): from a saturated state (every
        recipient busy on an accepted call) one recipient hangs up without
        wrap-up and only the ``dispatch`` that follows is timed. The offer it
        makes is accepted and that caller enqueued again as it was, so
        every sample starts from the same state.
    (c) ``Churn``: a pre-generated, seeded mix of enqueue, accept
        (oldest offer first), hang-up (40% with 1..5 s wrap-up), wrap-up end
        (the clock jumps to the next wrap-up's end) and abandon
        (``remove_session``), each followed by a ``dispatch``, from the
        saturated state. The figure is offers made per second of dispatcher
        calls: a round's calls are decided untimed on one dispatcher, then
        made again on an identical twin and timed in batches of 500 ops
        with a clock read (the thread's CPU time) before and after each
        (``replay``), so neither the harness's bookkeeping nor a clock read
        per op lands in the time.
    Memory (``memory_per_session``): traced memory (tracemalloc) added by
        enqueuing the sessions into a configured dispatcher, per session.
        Only allocations through Python's allocators (PyMem_*, objects) are
        seen; raw ``malloc`` is not.

The cyclic garbage collector is paused inside timed loops (as ``timeit``
does), so a collection triggered by the harness cannot land in a sample.
"""

from __future__ import annotations

import gc
import heapq
import itertools
import operator
import random
import statistics
import time
import tracemalloc
from collections import deque
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from typing import Any

from qroute.routing import (
    BUSY,
    FREE,
    LEAST_CALLS,
    LEAST_OFFERS,
    LEAST_TALK_TIME,
    LINEAR,
    MISSED,
    MOST_IDLE,
    MOST_SKILLED,
    OFFER,
    RANDOM,
    RING_ALL,
    ROUND_ROBIN,
    TIMEOUT,
    WRAPUP_END,
)

NOW_MS = 36_000_000  # the clock when the standard workload is loaded (10 h)
MAX_WAITED_MS = 900_000  # sessions arrived during the last 15 minutes
QUEUES_PER_DEPARTMENT = 10
DEPARTMENT_SKILLS = 8
COMMON_SKILLS = 6  # of a department's pool; the others are rare
RARE_SKILLS = 8  # of the 64: held by few recipients, never as a filler skill
RARE_SKILL_SHARE = 0.015  # of a department's recipients holding one of its rare skills
ROUTER_WEIGHTS = {ROUND_ROBIN: 30, MOST_IDLE: 25, LEAST_CALLS: 10, LEAST_OFFERS: 5,
                  LEAST_TALK_TIME: 5, LINEAR: 5, RANDOM: 8, MOST_SKILLED: 10, RING_ALL: 2}
PRIORITY_WEIGHTS = [40, 15, 10, 8, 7, 6, 5, 4, 3, 2]  # priority 0..9
QUEUE_COUNT_WEIGHTS = {1: 30, 2: 30, 3: 20, 4: 12, 5: 8}  # queues per recipient
NEED_COUNT_WEIGHTS = {0: 25, 1: 35, 2: 25, 3: 15}  # skills a profile requires
EXPANSION_CHOICES = (((20_000, 2),), ((30_000, 2),))


@dataclass(frozen=True)
class WorkloadSize:
    """How big the workload is; ``STANDARD`` is the issue's."""

    queues: int = 500
    recipients: int = 10_000
    sessions: int = 100_000
    skills: int = 64

    def scaled(self, factor: float) -> WorkloadSize:
        """The same shape with ``factor`` times the queues, recipients and sessions."""
        return replace(self, queues=max(1, round(self.queues * factor)),
                       recipients=max(1, round(self.recipients * factor)),
                       sessions=max(1, round(self.sessions * factor)))

    def __str__(self) -> str:
        return (f"{self.queues} queues, {self.recipients:,} recipients, "
                f"{self.sessions:,} waiting sessions, {self.skills} skills")


STANDARD = WorkloadSize()

Skills = dict[int, int]


@dataclass
class Workload:
    """A generated workload: plain data, loaded into a dispatcher by ``build``."""

    size: WorkloadSize
    seed: int
    now_ms: int
    queues: list[tuple[int, int, int, int, tuple[tuple[int, int], ...]]]
    """``(q, router, ring_timeout_ms, timeout_ms, tier_expansion)``"""
    recipients: list[tuple[int, Skills]]
    memberships: list[tuple[int, int, int]]
    """``(q, r, tier)`` in member order"""
    sessions: list[tuple[int, int, int, int, int, Skills]]
    """``(s, q, priority, entered_at_ms, seq, skills)`` in arrival order"""
    profiles: list[list[Skills]]
    """per queue, the requirement profiles its sessions draw from"""
    profile_weights: list[list[float]]
    queue_weights: list[float]
    servable_share: float
    """share of sessions with at least one member able to serve them"""
    _queue_cum_weights: list[float] | None = field(default=None, repr=False, compare=False)

    def new_session(self, rng: random.Random) -> tuple[int, int, Skills]:
        """``(q, priority, skills)`` of one more caller, drawn like the standard ones."""
        if self._queue_cum_weights is None:
            self._queue_cum_weights = list(itertools.accumulate(self.queue_weights))
        q = rng.choices(range(len(self.queues)), cum_weights=self._queue_cum_weights)[0]
        skills = rng.choices(self.profiles[q], self.profile_weights[q])[0]
        return q, rng.choices(range(10), PRIORITY_WEIGHTS)[0], skills

    def describe(self) -> str:
        memberships = len(self.memberships)
        routers = sorted({router for _, router, _, _, _ in self.queues})
        return (f"{self.size}; {memberships:,} memberships "
                f"({memberships / max(1, len(self.recipients)):.1f} per recipient), "
                f"{len(routers)} routers, {self.servable_share:.0%} of sessions servable, "
                f"seed {self.seed}")


_CACHE: dict[tuple[WorkloadSize, int], Workload] = {}


def make_workload(size: WorkloadSize = STANDARD, seed: int = 1) -> Workload:
    """Generate (or return the cached) workload of ``size`` from ``seed``.

    Deterministic: the same size and seed give the same data on every
    machine (only ``random.Random`` with an explicit seed is used).
    """
    key = (size, seed)
    if key not in _CACHE:
        _CACHE[key] = _generate(size, seed)
    return _CACHE[key]


def _generate(size: WorkloadSize, seed: int) -> Workload:
    rng = random.Random(seed)
    n_queues = size.queues
    departments = max(1, n_queues // QUEUES_PER_DEPARTMENT)
    # A few skills are rare everywhere (languages few agents speak): each
    # department's pool has COMMON_SKILLS common ones and the rest rare.
    rare_skills = rng.sample(range(size.skills), min(RARE_SKILLS, size.skills // 4))
    common_skills = [skill for skill in range(size.skills) if skill not in rare_skills]
    pools = [rng.sample(common_skills, min(COMMON_SKILLS, len(common_skills)))
             + rng.sample(rare_skills, min(DEPARTMENT_SKILLS - COMMON_SKILLS, len(rare_skills)))
             for _ in range(departments)]
    department_of = [min(q // QUEUES_PER_DEPARTMENT, departments - 1) for q in range(n_queues)]
    department_queues: list[list[int]] = [[] for _ in range(departments)]
    for q in range(n_queues):
        department_queues[department_of[q]].append(q)

    queues = []
    core_skills: list[list[int]] = []
    profiles: list[list[Skills]] = []
    profile_weights: list[list[float]] = []
    for q in range(n_queues):
        router = rng.choices(list(ROUTER_WEIGHTS), list(ROUTER_WEIGHTS.values()))[0]
        ring_timeout_ms = rng.choice((15_000, 20_000, 20_000, 30_000))
        timeout_ms = rng.choice((3_600_000, 3_600_000, 7_200_000))
        expansion = rng.choice(EXPANSION_CHOICES) if rng.random() < 0.3 else ()
        queues.append((q, router, ring_timeout_ms, timeout_ms, expansion))
        pool = pools[department_of[q]]
        core = rng.sample(pool, min(len(pool), rng.randint(3, 5)))
        core_skills.append(core)
        queue_profiles: list[Skills] = []
        for _ in range(rng.randint(2, 6)):
            count = rng.choices(list(NEED_COUNT_WEIGHTS), list(NEED_COUNT_WEIGHTS.values()))[0]
            needs = rng.sample(core, min(count, len(core)))
            queue_profiles.append({skill: rng.randint(1, 5) for skill in sorted(needs)})
        profiles.append(queue_profiles)
        profile_weights.append([1.0 / (i + 1) for i in range(len(queue_profiles))])

    recipients = []
    member_of: list[list[tuple[int, int]]] = [[] for _ in range(n_queues)]  # (r, tier)
    for r in range(size.recipients):
        home = rng.randrange(departments)
        count = rng.choices(list(QUEUE_COUNT_WEIGHTS), list(QUEUE_COUNT_WEIGHTS.values()))[0]
        chosen: list[int] = []
        while len(chosen) < min(count, n_queues):
            source = department_queues[home] if rng.random() < 0.8 else range(n_queues)
            q = rng.choice(source)
            if q not in chosen:
                chosen.append(q)
        target = rng.randint(12, 24)
        skills: Skills = {}
        for skill in pools[home]:
            if rng.random() < (RARE_SKILL_SHARE if skill in rare_skills else 0.9):
                skills[skill] = rng.randint(3, 10)
        for q in chosen:  # trained for the queues it serves outside its department, mostly
            for skill in core_skills[q]:
                share = RARE_SKILL_SHARE if skill in rare_skills else 0.7
                if skill not in skills and len(skills) < 24 and rng.random() < share:
                    skills[skill] = rng.randint(2, 10)
        while len(skills) < min(target, len(common_skills)):
            skill = rng.choice(common_skills)
            if skill not in skills:
                skills[skill] = rng.randint(1, 10)
        recipients.append((r, dict(sorted(skills.items()))))
        for q in chosen:
            member_of[q].append((r, 1 if rng.random() < 0.85 else 2))
    memberships = [(q, r, tier) for q in range(n_queues) for r, tier in member_of[q]]

    queue_weights = [rng.lognormvariate(0.0, 0.6) for _ in range(n_queues)]
    session_queues = rng.choices(range(n_queues), queue_weights, k=size.sessions)
    priorities = rng.choices(range(10), PRIORITY_WEIGHTS, k=size.sessions)
    raw = []
    for i in range(size.sessions):
        q = session_queues[i]
        skills = rng.choices(profiles[q], profile_weights[q])[0]
        entered = NOW_MS - rng.randrange(MAX_WAITED_MS)
        raw.append((entered, i, q, priorities[i], skills))
    raw.sort(key=lambda item: (item[0], item[1]))  # arrival order: handle = seq
    sessions = [(seq, q, priority, entered, seq, skills)
                for seq, (entered, _, q, priority, skills) in enumerate(raw)]

    servable = 0
    recipient_skills = [skills for _, skills in recipients]
    can_serve: dict[tuple[int, int], bool] = {}
    for _, q, _, _, _, skills in sessions:
        key = (q, id(skills))
        ok = can_serve.get(key)
        if ok is None:
            ok = can_serve[key] = any(
                all(recipient_skills[r].get(skill, 0) >= level for skill, level in skills.items())
                for r, _ in member_of[q])
        servable += ok
    return Workload(size=size, seed=seed, now_ms=NOW_MS, queues=queues, recipients=recipients,
                    memberships=memberships, sessions=sessions, profiles=profiles,
                    profile_weights=profile_weights, queue_weights=queue_weights,
                    servable_share=servable / max(1, size.sessions))


# --------------------------------------------------------------------- building

def configure(cls: type, workload: Workload) -> Any:
    """A new ``cls`` dispatcher with the workload's queues, recipients and
    memberships; every recipient free and not ready."""
    dispatcher = cls(seed=workload.seed)
    for q, router, ring_timeout_ms, timeout_ms, expansion in workload.queues:
        dispatcher.set_queue(q, router, ring_timeout_ms, timeout_ms, expansion)
    for r, skills in workload.recipients:
        dispatcher.add_recipient(r, skills)
    for q, r, tier in workload.memberships:
        dispatcher.add_member(q, r, tier)
    return dispatcher


def enqueue_all(dispatcher: Any, workload: Workload) -> None:
    """Enqueue the workload's sessions in arrival order, at ``now_ms``."""
    enqueue = dispatcher.enqueue
    now = workload.now_ms
    for s, q, priority, entered_at, seq, skills in workload.sessions:
        enqueue(s, q, priority, entered_at, seq, skills, now)


def build(cls: type, workload: Workload) -> Any:
    """The whole workload loaded into a new ``cls``, nobody ready, after one
    settling pass (which offers nothing), so the next pass starts clean."""
    dispatcher = configure(cls, workload)
    enqueue_all(dispatcher, workload)
    dispatcher.dispatch(workload.now_ms)
    return dispatcher


def set_all_ready(dispatcher: Any, workload: Workload, now_ms: int) -> None:
    set_ready = dispatcher.set_ready
    for r, _ in workload.recipients:
        set_ready(r, True, now_ms)


def count_offers(records: Sequence[int]) -> int:
    """Number of ``OFFER`` records in a pass's output."""
    return records[0::4].count(OFFER)


@contextmanager
def gc_paused() -> Iterator[None]:
    """Collect now, then keep the cyclic collector off (refcounting still frees)."""
    gc.collect()
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


# ------------------------------------------------------------------ statistics

@dataclass(frozen=True)
class Summary:
    median: float
    low: float
    high: float
    count: int


def summary(values: Sequence[float]) -> Summary:
    """Median and range (min, max) of ``values``."""
    return Summary(statistics.median(values), min(values), max(values), len(values))


def percentile(values: Sequence[float], fraction: float) -> float:
    """The ``fraction`` quantile by nearest rank (``0.5`` = median)."""
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(fraction * (len(ordered) - 1))))
    return ordered[index]


# ---------------------------------------------------------- (a) the full pass

@dataclass
class FullPassResult:
    times_ms: list[float]
    offers: int  # offers made by the pass (the same every sample)


def full_pass(cls: type, workload: Workload, samples: int, *, warmup: bool = True) -> FullPassResult:
    """(a) Time one ``dispatch`` right after every recipient became ready at
    once; ``samples`` fresh builds. The warm-up runs the same scenario once
    on a twentieth of the workload."""
    if warmup:
        small = make_workload(workload.size.scaled(0.05), workload.seed)
        _one_full_pass(cls, small)
    times = []
    offers = 0
    for _ in range(samples):
        elapsed_ns, offers = _one_full_pass(cls, workload)
        times.append(elapsed_ns / 1e6)
    return FullPassResult(times, offers)


def _one_full_pass(cls: type, workload: Workload) -> tuple[int, int]:
    dispatcher = build(cls, workload)
    now = workload.now_ms + 1_000
    set_all_ready(dispatcher, workload, now)
    with gc_paused():
        start = time.thread_time_ns()  # CPU time, as churn's (see replay)
        records = dispatcher.dispatch(now)
        elapsed = time.thread_time_ns() - start
    return elapsed, count_offers(records)


# ----------------------------------------------------------- saturated state

class Bag:
    """A set with O(1) add, remove and pick-by-number (for seeded choices)."""

    __slots__ = ("items", "index")

    def __init__(self, items: Sequence[int] = ()) -> None:
        self.items = list(items)
        self.index = {item: i for i, item in enumerate(self.items)}

    def add(self, item: int) -> None:
        self.index[item] = len(self.items)
        self.items.append(item)

    def remove(self, item: int) -> None:
        i = self.index.pop(item)
        last = self.items.pop()
        if i < len(self.items):
            self.items[i] = last
            self.index[last] = i

    def pick(self, number: int) -> int:
        return self.items[number % len(self.items)]

    def __len__(self) -> int:
        return len(self.items)

    def __contains__(self, item: int) -> bool:
        return item in self.index


@dataclass
class Saturated:
    """A dispatcher where every ready recipient is busy on an accepted call."""

    dispatcher: Any
    workload: Workload
    now_ms: int
    busy: Bag  # recipients on a call
    alive: Bag  # sessions still in the dispatcher (waiting or under offer)
    rounds: int  # passes it took to saturate
    idle: int  # recipients that could serve nobody, made not ready


def saturate(cls: type, workload: Workload) -> Saturated:
    """Build, make everyone ready, then pass and accept every offer (the
    first offered recipient of a ring-all session) until a pass offers
    nothing; recipients left free can serve nobody waiting and are made not
    ready, so the state is saturated."""
    dispatcher = build(cls, workload)
    now = workload.now_ms + 1_000
    set_all_ready(dispatcher, workload, now)
    alive = Bag(s for s, *_ in workload.sessions)
    rounds = 0
    while True:
        records = dispatcher.dispatch(now)
        first_offer: dict[int, int] = {}
        for i in range(0, len(records), 4):
            if records[i] == OFFER:
                first_offer.setdefault(records[i + 1], records[i + 2])
        if not first_offer:
            break
        for s, r in first_offer.items():
            dispatcher.accept(s, r, now)
            alive.remove(s)
        rounds += 1
        if rounds > 10_000:
            raise RuntimeError("the workload does not saturate")
    busy = Bag()
    idle = 0
    for r, _ in workload.recipients:
        state = dispatcher.recipient_stats(r)[0]
        if state == BUSY:
            busy.add(r)
        elif state == FREE:
            dispatcher.set_ready(r, False, now)
            idle += 1
    return Saturated(dispatcher, workload, now, busy, alive, rounds, idle)


# ---------------------------------------------------- (b) the incremental pass

@dataclass
class IncrementalResult:
    rounds_us: list[list[float]]  # per round, every sample in microseconds
    offered: int  # passes that made an offer
    passes: int

    def round_p50s(self) -> list[float]:
        return [statistics.median(samples) for samples in self.rounds_us]

    def all_samples(self) -> list[float]:
        return [x for samples in self.rounds_us for x in samples]


class FreeOne:
    """(b) step by step, for harnesses that time the pass themselves:
    ``free()`` makes a random busy recipient hang up (no wrap-up); the
    caller times ``dispatcher.dispatch(now_ms)``; ``settle(records)``
    accepts the offer it made and enqueues that session again as it was
    (same handle, same place in line), so every sample starts from the same
    waiting set however many samples are taken. A recipient that found
    nobody to serve is made not ready instead. The clock stands still, so no
    timer fires inside a sample.
    """

    def __init__(self, saturated: Saturated, seed: int) -> None:
        self.saturated = saturated
        self.dispatcher = saturated.dispatcher
        self.now_ms = saturated.now_ms
        self.rng = random.Random(seed)
        self.freed = -1
        self.offered = 0
        self.passes = 0

    def free(self) -> int:
        busy = self.saturated.busy
        if not busy:
            raise RuntimeError("no busy recipient left to free")
        self.freed = busy.pick(self.rng.getrandbits(32))
        self.dispatcher.hangup(self.freed, self.now_ms, 0)
        return self.freed

    def settle(self, records: Sequence[int]) -> None:
        dispatcher = self.dispatcher
        now = self.now_ms
        self.passes += 1
        if len(records) >= 4 and records[0] == OFFER:
            s = records[1]
            dispatcher.accept(s, records[2], now)
            _, q, priority, entered_at, seq, skills = self.saturated.workload.sessions[s]
            dispatcher.enqueue(s, q, priority, entered_at, seq, skills, now)
            dispatcher.dispatch(now)  # nobody is free: offers nothing, leaves no queue to examine
            self.offered += 1
        else:
            dispatcher.set_ready(self.freed, False, now)
            self.saturated.busy.remove(self.freed)
            self.saturated.idle += 1


def incremental_pass(saturated: Saturated, samples: int, rounds: int, *, warmup: int = 0,
                     seed: int = 2, first_round: int = 0) -> IncrementalResult:
    """(b) ``rounds`` x ``samples`` incremental passes (see ``FreeOne``),
    after ``warmup`` untimed ones; only the ``dispatch`` is timed. Round
    ``n`` frees the same recipients in every call and implementation
    (``first_round`` numbers the first one), so an implementation given
    fewer samples frees a prefix of the same recipients."""
    dispatch = saturated.dispatcher.dispatch
    now = saturated.now_ms
    clock = time.perf_counter_ns
    offered = passes = 0
    result: list[list[float]] = []
    schedule = [(-1, warmup)] if warmup else []
    schedule += [(first_round + i, samples) for i in range(rounds)]
    with gc_paused():
        for round_number, count in schedule:
            stepper = FreeOne(saturated, seed * 1_000_003 + round_number)
            times = []
            for _ in range(count):
                stepper.free()
                start = clock()
                records = dispatch(now)
                times.append((clock() - start) / 1e3)
                stepper.settle(records)
            if round_number >= 0:
                result.append(times)
                offered += stepper.offered
                passes += stepper.passes
    return IncrementalResult(result, offered, passes)


# ------------------------------------------------------------------ (c) churn

ENQUEUE, ACCEPT, HANGUP, END_WRAPUP, ABANDON = range(5)
OP_NAMES = ("enqueue", "accept", "hangup", "wrap-up end", "abandon")
CHURN_MIX = {ENQUEUE: 35, ACCEPT: 25, HANGUP: 22, END_WRAPUP: 8, ABANDON: 10}
WRAPUP_SHARE = 0.4  # hang-ups followed by wrap-up
WRAPUP_MS = (1_000, 5_000)


def churn_ops(workload: Workload, count: int, seed: int) -> list[tuple[int, int, tuple[int, int, Skills], int]]:
    """A seeded operation script: ``(kind, pick, new_session, wrapup_ms)``.

    ``pick`` chooses the target (busy recipient, session to abandon) among
    those present when the op runs; ``new_session`` is used by enqueues, and
    by any op that finds nothing to act on (then it enqueues instead).
    """
    rng = random.Random(seed)
    kinds = rng.choices(list(CHURN_MIX), list(CHURN_MIX.values()), k=count)
    ops = []
    for kind in kinds:
        wrapup = rng.randint(*WRAPUP_MS) if rng.random() < WRAPUP_SHARE else 0
        ops.append((kind, rng.getrandbits(32), workload.new_session(rng), wrapup))
    return ops


@dataclass
class ChurnRound:
    ops: int
    matches: int  # OFFER records
    elapsed_ns: int  # the replay of the round's calls, timed by batch (see replay)
    batch_ns: list[int] = field(default_factory=list)  # each batch of REPLAY_BATCH ops
    by_kind: dict[str, int] = field(default_factory=dict)
    missed: int = 0
    wrapup_ends: int = 0
    timeouts: int = 0

    def outcome(self) -> tuple[int, int, int, int]:
        """What the round did, equal for equal implementations given the
        same script from the same state: ``(matches, missed, wrap-up ends,
        timeouts)``."""
        return (self.matches, self.missed, self.wrapup_ends, self.timeouts)

    @property
    def matches_per_s(self) -> float:
        return self.matches / (self.elapsed_ns / 1e9) if self.elapsed_ns else 0.0

    @property
    def us_per_op(self) -> float:
        return self.elapsed_ns / 1e3 / max(1, self.ops)


Call = tuple[str | None, tuple, int]
"""One churn op as dispatcher calls: ``(method, args, now_ms)``, a pass at
``now_ms`` after the method (``None`` for a bare pass)."""


@dataclass
class ChurnScript:
    """What a round of churn asked of a dispatcher and what it returned."""

    calls: list[Call]
    records: list[Any]  # each call's pass output
    by_kind: dict[str, int]


class ChurnDriver:
    """(c) Turns churn ops into dispatcher calls on a saturated dispatcher,
    keeping track of outstanding offers (accepted oldest first), busy
    recipients, sessions and wrap-ups from the records each pass returns.
    The clock advances 1 ms per op, and to the next wrap-up end on a
    wrap-up-end op. Nothing here is timed (see ``Churn``)."""

    def __init__(self, saturated: Saturated) -> None:
        self.saturated = saturated
        self.dispatcher = saturated.dispatcher
        self.now_ms = saturated.now_ms
        self.busy = saturated.busy
        self.alive = saturated.alive
        workload = saturated.workload
        self.next_session = max((s for s, *_ in workload.sessions), default=-1) + 1
        self.next_seq = max((seq for *_, seq, _ in workload.sessions), default=-1) + 1
        self.offers: dict[int, int] = {}  # recipient -> session offered
        self.offer_order: deque[tuple[int, int]] = deque()  # (session, recipient), oldest first
        self.wrapup_ends: list[int] = []  # heap of wrap-up end times

    def run(self, ops: Sequence[tuple[int, int, tuple[int, int, Skills], int]]) -> ChurnScript:
        dispatcher = self.dispatcher
        dispatch = dispatcher.dispatch
        offers = self.offers
        offer_order = self.offer_order
        busy = self.busy
        alive = self.alive
        wrapup_ends = self.wrapup_ends
        calls: list[Call] = []
        outputs = []
        by_kind = [0] * len(OP_NAMES)
        for kind, pick, new_session, wrapup_ms in ops:
            self.now_ms += 1
            now = self.now_ms
            offer = None
            if kind == ACCEPT:
                while offer_order:
                    s, r = offer_order.popleft()
                    if offers.get(r) == s:
                        offer = (s, r)
                        break
                if offer is None:
                    kind = ENQUEUE
            elif kind == HANGUP and not busy:
                kind = ENQUEUE
            elif kind == END_WRAPUP:
                while wrapup_ends and wrapup_ends[0] <= now:
                    heapq.heappop(wrapup_ends)  # ended already, as the clock went by
                if wrapup_ends:
                    now = self.now_ms = heapq.heappop(wrapup_ends)
                else:
                    kind = ENQUEUE
            elif kind == ABANDON and not alive:
                kind = ENQUEUE
            by_kind[kind] += 1

            if kind == ENQUEUE:
                s = self.next_session
                self.next_session += 1
                seq = self.next_seq
                self.next_seq += 1
                q, priority, skills = new_session
                call: Call = ("enqueue", (s, q, priority, now, seq, skills, now), now)
                dispatcher.enqueue(*call[1])
                alive.add(s)
            elif kind == ACCEPT:
                s, r = offer
                call = ("accept", (s, r, now), now)
                cancelled = dispatcher.accept(*call[1])
                del offers[r]
                for other in cancelled:
                    del offers[other]
                alive.remove(s)
                busy.add(r)
            elif kind == HANGUP:
                r = busy.pick(pick)
                busy.remove(r)
                call = ("hangup", (r, now, wrapup_ms), now)
                dispatcher.hangup(*call[1])
                if wrapup_ms:
                    heapq.heappush(wrapup_ends, now + wrapup_ms)
            elif kind == END_WRAPUP:
                call = (None, (), now)
            else:  # ABANDON
                s = alive.pick(pick)
                alive.remove(s)
                call = ("remove_session", (s,), now)
                for r in dispatcher.remove_session(s):
                    del offers[r]
            records = dispatch(now)
            calls.append(call)
            outputs.append(records)

            for i in range(0, len(records), 4):
                record = records[i]
                if record == OFFER:
                    s = records[i + 1]
                    r = records[i + 2]
                    offers[r] = s
                    offer_order.append((s, r))
                elif record == MISSED:
                    del offers[records[i + 2]]
                elif record == TIMEOUT:
                    alive.remove(records[i + 1])
        return ChurnScript(calls, outputs, {OP_NAMES[k]: n for k, n in enumerate(by_kind)})


REPLAY_BATCH = 500  # calls timed together: a clock read pair per this many ops


def replay(dispatcher: Any, calls: Sequence[Call]) -> tuple[list[int], list[Any]]:
    """Make ``calls`` on ``dispatcher``, timed in batches of
    ``REPLAY_BATCH`` ops: a clock read before a batch's first call and one
    after its last, so the clock's own cost (~0.1 us a read pair, an eighth
    of a compiled op) is paid once per batch rather than once per op.
    Returns each batch's nanoseconds and each pass's records.

    The clock is the thread's CPU time: on a shared machine the wall time of
    a batch also holds the time other processes ran instead (on 2 cores at a
    load of 7, 1.2 to 4.9 us of wall time per compiled op where CPU time
    read 1.0 to 1.6), which says nothing about the dispatcher.

    A batch's calls are prepared as ``(method, dispatcher, *args)`` tuples
    just before it runs (small enough to stay in cache), and made by
    ``itertools.starmap`` through ``operator.call``: what the harness adds
    per call is a few C steps, not a round of the interpreter loop (that was
    a fifth of a compiled op). It is the same for every implementation, and
    what is timed is the dispatcher's methods called from Python with their
    arguments, as the engine calls them.
    """
    cls = type(dispatcher)
    dispatch = cls.dispatch
    methods = {name: getattr(cls, name) for name in {name for name, _, _ in calls} if name}
    clock = time.thread_time_ns
    call = operator.call
    elapsed = []
    outputs: list[Any] = []
    with gc_paused():
        for first in range(0, len(calls), REPLAY_BATCH):
            batch = []
            passes = []  # where each pass's records land among the results
            for name, args, now in calls[first:first + REPLAY_BATCH]:
                if name:
                    batch.append((methods[name], dispatcher, *args))
                passes.append(len(batch))
                batch.append((dispatch, dispatcher, now))
            start = clock()
            results = list(itertools.starmap(call, batch))
            elapsed.append(clock() - start)
            outputs += [results[i] for i in passes]
    return elapsed, outputs


class Churn:
    """(c) Churn on ``cls``: two identical saturated dispatchers. The
    driver decides each round's calls on the first (untimed: which offer to
    accept, who is busy, what wrap-up ends next all follow from the records);
    the second, its twin in the same state, then gets the same calls, timed
    in batches (``replay``), and must return the same records (a dispatcher
    is deterministic), so both stay in step round after round."""

    def __init__(self, cls: type, workload: Workload) -> None:
        self.driver = ChurnDriver(saturate(cls, workload))
        self.twin = saturate(cls, workload).dispatcher

    def run(self, ops: Sequence[tuple[int, int, tuple[int, int, Skills], int]]) -> ChurnRound:
        script = self.driver.run(ops)
        elapsed, outputs = replay(self.twin, script.calls)
        if outputs != script.records:
            raise RuntimeError("a churn replay returned other records than the same calls on "
                               "an identical dispatcher: the implementation is not deterministic")
        counts = dict.fromkeys((OFFER, MISSED, WRAPUP_END, TIMEOUT), 0)
        for records in outputs:
            for kind in records[0::4]:
                if kind in counts:
                    counts[kind] += 1
        return ChurnRound(ops=len(ops), matches=counts[OFFER], elapsed_ns=sum(elapsed),
                          batch_ns=elapsed, by_kind=script.by_kind, missed=counts[MISSED],
                          wrapup_ends=counts[WRAPUP_END], timeouts=counts[TIMEOUT])


# ------------------------------------------------------------------- memory

@dataclass
class MemoryResult:
    bytes_per_session: float
    sessions: int
    config_bytes: int  # queues, recipients and memberships, before any session


def memory_per_session(cls: type, workload: Workload) -> MemoryResult:
    """Traced memory added by enqueuing the workload's sessions into a
    configured ``cls``, divided by their number. The session data handed in
    (ints, skill dicts) exists before tracing starts, so only what the
    dispatcher itself keeps is counted."""
    gc.collect()
    tracemalloc.start()
    try:
        before_config = tracemalloc.get_traced_memory()[0]
        dispatcher = configure(cls, workload)
        gc.collect()
        before = tracemalloc.get_traced_memory()[0]
        enqueue_all(dispatcher, workload)
        gc.collect()
        after = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    del dispatcher
    sessions = len(workload.sessions)
    return MemoryResult((after - before) / max(1, sessions), sessions, before - before_config)
