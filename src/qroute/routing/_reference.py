"""The pure-Python dispatcher: qroute's routing rules, written to be read.

This module is the specification. ``qroute.routing._core`` (Cython) has the
same class, methods, errors and tie-breaks, and the tests drive both with the
same random operation scripts and require identical output.

Handles
    Queues, recipients and sessions are named by small non-negative integers
    (handles) that the caller allocates and may reuse once freed; the engine
    maps its string ids onto them. Skills are integers ``0 <= skill < 256``
    with levels ``1..10``.

Global order of candidates
    Waiting sessions not under offer, by ``(priority desc, entered_at asc,
    seq asc)``. ``entered_at`` survives a redirect or transfer, so a moved
    caller keeps its place; ``seq`` is the caller's arrival counter.

Eligible recipients for a session ``s`` in queue ``q``
    Members of ``q`` that are ready globally and for ``q``, free (no offer,
    call or wrap-up), past their guard timer, whose skills cover every skill
    ``s`` requires at or above the level it requires, and whose membership
    tier is at most the tier ``s``'s wait allows. Only the lowest tier that
    has an eligible member is considered; ``q``'s router picks among it.

Tiers and expansion
    Tiers are integers >= 1. A queue without expansion rules allows every
    tier. With rules ``[(after_ms, max_tier), ...]`` it allows tier 1, and
    ``max_tier`` of every rule whose ``after_ms`` is reached by the session's
    wait, measured from ``entered_at``.

Routers (ties break by longest idle, then member order)
    ROUND_ROBIN      first eligible at or after the queue's cursor in member
                     order (wrapping); the cursor moves past the pick.
    MOST_IDLE        smallest ``idle_since``.
    LEAST_CALLS      fewest calls accepted.
    LEAST_OFFERS     fewest offers received.
    LEAST_TALK_TIME  least total talk time.
    LINEAR           first in member order.
    RANDOM           uniform among the eligible in member order, drawn from a
                     seeded splitmix64 generator (identical in both builds).
    MOST_SKILLED     highest summed level on the session's required skills.
    RING_ALL         every eligible member; the first accept wins.

A pass (``dispatch(now_ms)``) returns a flat ``array('q')`` of 4-int records
``(kind, session, recipient, queue)`` (``-1`` where a slot does not apply), in
this order:

1. ``MISSED``: offers whose ring timeout is due, by ``(deadline, session,
   recipient)``. The session goes back to its place once none of its offers
   is outstanding; the recipient is free again, idle since the deadline, and
   its consecutive-miss count rises. At the recipient's bounced-call limit it
   is made not ready and a ``BOUNCED`` record follows.
2. ``WRAPUP_END``: wrap-ups that are due, by ``(until, recipient)``; the
   recipient is free, idle since ``until``, and under its guard timer.
3. ``TIMEOUT``: waiting sessions (not under offer) whose queue timeout is due,
   by ``(deadline, session)``; they leave the dispatcher.
4. ``OFFER``: matches in the global order of candidates. The pass ends when no
   candidate can be served.

Waiting sessions are grouped by ``(queue, required skills, priority)``; when a
group's first session finds no recipient the whole group is skipped, because
its later sessions have the same needs and no longer wait. A pass examines
only the groups whose first session may have become matchable since the last
pass, and a queue with no eligible member costs nothing:

* every group of a queue whose configuration changed (``set_queue``) or where
  a session's wait reached a tier expansion;
* the groups of a queue that a recipient who became available to it (freed,
  readied, past its guard timer, given skills, added as a member) has the
  skills for: a group whose head failed against the other members before can
  only be served by such a recipient now;
* a group with a new first session (a new or returned caller ahead of the
  others; one behind them has the same needs and waited less).

A head that finds nobody is looked at again when its wait next reaches a tier
expansion. So a pass costs O(examined groups log groups + (matches + examined
groups) x queue members), never sessions x recipients.
"""

from __future__ import annotations

import heapq
from array import array
from collections.abc import Iterable, Mapping

from sortedcontainers import SortedList

ROUND_ROBIN = 1
MOST_IDLE = 2
LEAST_CALLS = 3
LEAST_OFFERS = 4
LEAST_TALK_TIME = 5
LINEAR = 6
RANDOM = 7
MOST_SKILLED = 8
RING_ALL = 9
ROUTERS = frozenset(range(ROUND_ROBIN, RING_ALL + 1))

OFFER = 1
MISSED = 2
BOUNCED = 3
TIMEOUT = 4
WRAPUP_END = 5

FREE = 0
OFFERED = 1
BUSY = 2
WRAPUP = 3

MAX_SKILLS = 256
MAX_LEVEL = 10
RECORD_SIZE = 4

_MASK64 = (1 << 64) - 1
_NO_TIER_LIMIT = 1 << 62
_ALL_SKILLS = -1  # as a queue's arrival mask: every group of the queue is examined


def splitmix64(state: int) -> tuple[int, int]:
    """One step of splitmix64: returns ``(new_state, output)``."""
    state = (state + 0x9E3779B97F4A7C15) & _MASK64
    z = state
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK64
    return state, z ^ (z >> 31)


def _check_handle(value: int, what: str) -> int:
    if not isinstance(value, int) or value < 0 or value > 0x7FFFFFFF:
        raise ValueError(f"{what} must be an integer handle in 0..2**31-1, got {value!r}")
    return value


def _queue_settings(q: int, router: int, ring_timeout_ms: int, timeout_ms: int,
                    tier_expansion) -> tuple[tuple[int, int], ...]:
    """Validates a queue's routing settings (both twins); its expansion rules."""
    _check_handle(q, "queue")
    if router not in ROUTERS:
        raise ValueError(f"router must be one of 1..9, got {router!r}")
    if ring_timeout_ms < 1:
        raise ValueError(f"ring_timeout_ms must be >= 1, got {ring_timeout_ms}")
    if timeout_ms < 1:
        raise ValueError(f"timeout_ms must be >= 1, got {timeout_ms}")
    return _expansion_rules(tier_expansion)


def _skill_items(skills: Mapping[int, int], what: str) -> tuple[tuple[int, int], ...]:
    """Validated, sorted ``(skill, level)`` pairs; level 0 means 'any level'."""
    items = []
    for skill, level in skills.items():
        if not isinstance(skill, int) or not 0 <= skill < MAX_SKILLS:
            raise ValueError(f"{what}: skill must be in 0..{MAX_SKILLS - 1}, got {skill!r}")
        if not isinstance(level, int) or not 0 <= level <= MAX_LEVEL:
            raise ValueError(f"{what}: level of skill {skill} must be in 0..{MAX_LEVEL}, got {level!r}")
        items.append((skill, max(level, 1)))
    items.sort()
    return tuple(items)


def _bits(items: tuple[tuple[int, int], ...]) -> int:
    """The skills of ``(skill, level)`` pairs as a bit mask."""
    bits = 0
    for skill, _ in items:
        bits |= 1 << skill
    return bits


def _expansion_rules(rules: Iterable[tuple[int, int]]) -> tuple[tuple[int, int], ...]:
    checked = []
    for after_ms, max_tier in rules:
        if after_ms < 0:
            raise ValueError(f"tier_expansion: after_ms must be >= 0, got {after_ms}")
        if max_tier < 1:
            raise ValueError(f"tier_expansion: max_tier must be >= 1, got {max_tier}")
        checked.append((int(after_ms), int(max_tier)))
    checked.sort()
    return tuple(checked)


class _Queue:
    __slots__ = ("handle", "router", "ring_timeout_ms", "timeout_ms", "expansion", "members",
                 "ordered_members", "next_order", "cursor", "groups", "free_count",
                 "session_count", "expansion_due_ms")

    def __init__(self, handle: int) -> None:
        self.handle = handle
        self.members: dict[int, _Member] = {}
        self.ordered_members: list[_Member] = []  # by order key
        self.next_order = 0
        self.cursor = 0
        self.groups: dict[tuple[int, int], _Group] = {}  # (reqset, priority) -> group
        self.free_count = 0  # members ready for this queue whose recipient is eligible
        self.session_count = 0  # waiting or under offer
        self.expansion_due_ms = _NO_TIER_LIMIT


class _Member:
    __slots__ = ("recipient", "tier", "order", "ready")

    def __init__(self, recipient: _Recipient, tier: int, order: int) -> None:
        self.recipient = recipient
        self.tier = tier
        self.order = order
        self.ready = True


class _Recipient:
    __slots__ = ("handle", "skills", "bounce_limit", "guard_ms", "ready", "state",
                 "in_guard", "guard_until", "eligible", "offer_session", "ring_deadline",
                 "wrapup_until", "accepted_at", "idle_since", "calls", "offers", "talk_ms",
                 "misses", "queues", "skill_bits")

    def __init__(self, handle: int) -> None:
        self.handle = handle
        self.ready = False
        self.state = FREE
        self.in_guard = False
        self.guard_until = 0
        self.eligible = False
        self.offer_session = -1
        self.ring_deadline = 0
        self.wrapup_until = 0
        self.accepted_at = 0
        self.idle_since = 0
        self.calls = 0
        self.offers = 0
        self.talk_ms = 0
        self.misses = 0
        self.queues: dict[int, _Queue] = {}


class _Session:
    __slots__ = ("handle", "queue", "priority", "entered_at", "seq", "reqset", "deadline",
                 "offered_to", "timeout_pending")

    def key(self) -> tuple[int, int, int]:
        return (-self.priority, self.entered_at, self.seq)


class _Group:
    __slots__ = ("queue", "key", "needs", "sessions")

    def __init__(self, queue: int, key: tuple[int, int], needs: int) -> None:
        self.queue = queue
        self.key = key
        self.needs = needs  # the required skills as a bit mask
        self.sessions: SortedList = SortedList(key=_Session.key)


class Dispatcher:
    """Matches waiting sessions to recipients; one instance per account.

    Every mutator is O(1) or O(log n) in the number of sessions, except where
    its docstring says otherwise. ``now_ms`` arguments are the caller's clock
    in milliseconds; the dispatcher never reads a clock itself.
    """

    def __init__(self, seed: int = 0) -> None:
        self._queues: dict[int, _Queue] = {}
        self._recipients: dict[int, _Recipient] = {}
        self._sessions: dict[int, _Session] = {}
        self._reqsets: dict[tuple[tuple[int, int], ...], int] = {}
        self._reqset_items: list[tuple[tuple[int, int], ...]] = []
        self._reqset_bits: list[int] = []  # the skills of each as a bit mask
        # What the next pass examines: per queue, the union of the skill masks
        # of the recipients that became available to it (_ALL_SKILLS: every
        # group); and groups with a new head.
        self._dirty: dict[int, int] = {}
        self._dirty_groups: set[_Group] = set()
        self._ring_heap: list[tuple[int, int, int]] = []  # (deadline, session, recipient)
        self._wrapup_heap: list[tuple[int, int]] = []  # (until, recipient)
        self._timeout_heap: list[tuple[int, int]] = []  # (deadline, session)
        self._guard_heap: list[tuple[int, int]] = []  # (until, recipient)
        self._expansion_heap: list[tuple[int, int]] = []  # (due, queue)
        self._eligible_total = 0
        self._rng_state = seed & _MASK64
        self._pass_ms = 0  # the clock of the last pass (for _check)
        self.passes = 0
        self.matches = 0

    # ------------------------------------------------------------------ queues

    def set_queue(self, q: int, router: int, ring_timeout_ms: int, timeout_ms: int,
                  tier_expansion: Iterable[tuple[int, int]] = ()) -> None:
        """Create queue ``q`` or change its routing settings.

        A changed ``timeout_ms`` applies to sessions that join afterwards.
        """
        rules = _queue_settings(q, router, ring_timeout_ms, timeout_ms, tier_expansion)
        queue = self._queues.get(q)
        if queue is None:
            queue = self._queues[q] = _Queue(q)
        queue.router = router
        queue.ring_timeout_ms = ring_timeout_ms
        queue.timeout_ms = timeout_ms
        queue.expansion = rules
        queue.expansion_due_ms = _NO_TIER_LIMIT
        self._dirty[q] = _ALL_SKILLS

    def remove_queue(self, q: int) -> None:
        """Remove queue ``q`` and its memberships. It must hold no session. O(members)."""
        queue = self._queue(q)
        if queue.session_count:
            raise ValueError(f"queue {q} still holds {queue.session_count} sessions")
        for member in list(queue.ordered_members):
            self.remove_member(q, member.recipient.handle)
        del self._queues[q]
        self._dirty.pop(q, None)

    def add_member(self, q: int, r: int, tier: int = 1) -> None:
        """Make ``r`` a member of ``q`` (last in member order), ready for ``q``.

        Adding an existing member changes only its tier.
        """
        queue = self._queue(q)
        recipient = self._recipient(r)
        if tier < 1:
            raise ValueError(f"tier must be >= 1, got {tier}")
        member = queue.members.get(r)
        if member is not None:
            member.tier = tier
        else:
            member = queue.members[r] = _Member(recipient, tier, queue.next_order)
            queue.next_order += 1
            queue.ordered_members.append(member)
            recipient.queues[q] = queue
            if recipient.eligible:
                queue.free_count += 1
        self._mark(q, recipient.skill_bits)

    def remove_member(self, q: int, r: int) -> None:
        """Remove ``r`` from ``q``. An offer already made stays. O(members)."""
        queue = self._queue(q)
        member = queue.members.pop(r, None)
        if member is None:
            raise KeyError(f"recipient {r} is not a member of queue {q}")
        queue.ordered_members.remove(member)
        del member.recipient.queues[q]
        if member.ready and member.recipient.eligible:
            queue.free_count -= 1

    def set_member_ready(self, q: int, r: int, ready: bool) -> None:
        """Per-queue availability of ``r`` in ``q``."""
        queue = self._queue(q)
        member = queue.members.get(r)
        if member is None:
            raise KeyError(f"recipient {r} is not a member of queue {q}")
        ready = bool(ready)
        if member.ready == ready:
            return
        member.ready = ready
        if member.recipient.eligible:
            queue.free_count += 1 if ready else -1
        if ready:
            self._mark(q, member.recipient.skill_bits)

    # -------------------------------------------------------------- recipients

    def add_recipient(self, r: int, skills: Mapping[int, int] = {}, bounced_call_limit: int = 0,
                      guard_ms: int = 0) -> None:
        """Create recipient ``r``: free, not ready, member of nothing."""
        _check_handle(r, "recipient")
        if r in self._recipients:
            raise ValueError(f"recipient {r} already exists")
        recipient = _Recipient(r)
        self._configure(recipient, skills, bounced_call_limit, guard_ms)
        self._recipients[r] = recipient

    def update_recipient(self, r: int, skills: Mapping[int, int], bounced_call_limit: int = 0,
                         guard_ms: int = 0) -> None:
        """Change ``r``'s skills and limits; a running guard timer keeps its end."""
        recipient = self._recipient(r)
        self._configure(recipient, skills, bounced_call_limit, guard_ms)
        self._touch(recipient)

    def _configure(self, recipient: _Recipient, skills: Mapping[int, int], bounced_call_limit: int,
                   guard_ms: int) -> None:
        items = _skill_items(skills, "recipient skills")
        if bounced_call_limit < 0:
            raise ValueError(f"bounced_call_limit must be >= 0, got {bounced_call_limit}")
        if guard_ms < 0:
            raise ValueError(f"guard_ms must be >= 0, got {guard_ms}")
        recipient.skills = dict(items)
        recipient.skill_bits = _bits(items)
        recipient.bounce_limit = bounced_call_limit
        recipient.guard_ms = guard_ms

    def remove_recipient(self, r: int) -> int:
        """Remove ``r`` and its memberships. O(its queues' members).

        Returns the session whose offer to ``r`` was withdrawn, or -1. That
        session goes back to its place if no other offer of it is outstanding.
        """
        recipient = self._recipient(r)
        session = -1
        if recipient.state == OFFERED:
            session = recipient.offer_session
            self._withdraw(self._sessions[session], recipient)
        recipient.ready = False
        self._refresh(recipient)
        for q in list(recipient.queues):
            self.remove_member(q, r)
        del self._recipients[r]
        return session

    def set_ready(self, r: int, ready: bool, now_ms: int) -> None:
        """Global availability. Becoming ready starts the guard timer and the
        idle time (if free) and clears the consecutive-miss count."""
        recipient = self._recipient(r)
        ready = bool(ready)
        if recipient.ready == ready:
            return
        recipient.ready = ready
        if ready:
            recipient.misses = 0
            if recipient.state == FREE:
                recipient.idle_since = now_ms
                self._start_guard(recipient, now_ms, now_ms)
        self._touch(recipient)

    def hangup(self, r: int, now_ms: int, wrapup_ms: int = 0) -> None:
        """The call of ``r`` ended: talk time accrues, then wrap-up for
        ``wrapup_ms`` (free at once when 0)."""
        recipient = self._recipient(r)
        if recipient.state != BUSY:
            raise ValueError(f"recipient {r} is not on a call")
        if wrapup_ms < 0:
            raise ValueError(f"wrapup_ms must be >= 0, got {wrapup_ms}")
        recipient.talk_ms += max(0, now_ms - recipient.accepted_at)
        if wrapup_ms:
            recipient.state = WRAPUP
            recipient.wrapup_until = now_ms + wrapup_ms
            heapq.heappush(self._wrapup_heap, (recipient.wrapup_until, recipient.handle))
        else:
            self._free(recipient, now_ms, now_ms)

    def end_wrapup(self, r: int, now_ms: int) -> bool:
        """End ``r``'s wrap-up early. Returns False if it was not in wrap-up."""
        recipient = self._recipient(r)
        if recipient.state != WRAPUP:
            return False
        self._free(recipient, now_ms, now_ms)
        return True

    def restore_recipient(self, r: int, calls: int, offers: int, talk_ms: int,
                          idle_since_ms: int, misses: int = 0) -> None:
        """Load counters kept across a restart (they drive the LEAST_* routers,
        and ``misses`` the bounced-call limit)."""
        recipient = self._recipient(r)
        recipient.misses = misses
        recipient.calls = calls
        recipient.offers = offers
        recipient.talk_ms = talk_ms
        recipient.idle_since = idle_since_ms
        self._touch(recipient)

    def start_call(self, r: int, now_ms: int) -> None:
        """Mark a free recipient busy on a call that did not come through an
        offer (crash recovery of a connected call)."""
        recipient = self._recipient(r)
        if recipient.state != FREE:
            raise ValueError(f"recipient {r} is not free")
        recipient.state = BUSY
        recipient.accepted_at = now_ms
        self._refresh(recipient)

    def recipient_stats(self, r: int) -> tuple[int, int, int, int, int, int]:
        """``(state, calls, offers, talk_ms, consecutive_misses, idle_since_ms)``."""
        recipient = self._recipient(r)
        return (recipient.state, recipient.calls, recipient.offers, recipient.talk_ms,
                recipient.misses, recipient.idle_since)

    # ---------------------------------------------------------------- sessions

    def enqueue(self, s: int, q: int, priority: int, entered_at_ms: int, seq: int,
                skills: Mapping[int, int], now_ms: int) -> None:
        """Session ``s`` waits in ``q``; its queue timeout counts from ``now_ms``."""
        _check_handle(s, "session")
        if s in self._sessions:
            raise ValueError(f"session {s} already exists")
        queue = self._queue(q)
        items = _skill_items(skills, "session skills")
        reqset = self._reqsets.get(items)
        if reqset is None:
            reqset = self._reqsets[items] = len(self._reqset_items)
            self._reqset_items.append(items)
            self._reqset_bits.append(_bits(items))
        session = _Session()
        session.handle = s
        session.queue = queue.handle  # not q: 1.0 finds queue 1 but must not be reported
        session.priority = priority
        session.entered_at = entered_at_ms
        session.seq = seq
        session.reqset = reqset
        session.deadline = now_ms + queue.timeout_ms
        session.offered_to = []
        session.timeout_pending = False
        self._sessions[s] = session
        queue.session_count += 1
        heapq.heappush(self._timeout_heap, (session.deadline, s))
        self._wait(session, queue)

    def remove_session(self, s: int) -> list[int]:
        """Remove ``s`` (abandoned, transferred, ...). Returns the recipients
        whose offers of it were withdrawn, in ascending order; they are free."""
        session = self._session(s)
        withdrawn = sorted(session.offered_to)
        for r in withdrawn:
            recipient = self._recipients[r]
            recipient.state = FREE
            recipient.offer_session = -1
            self._touch(recipient)
        session.offered_to = []
        if not withdrawn:
            self._unwait(session)
        self._forget(session)
        return withdrawn

    def accept(self, s: int, r: int, now_ms: int) -> list[int]:
        """``r`` answers its offer of ``s``: ``r`` is busy and ``s`` leaves the
        dispatcher. Returns the other recipients whose offers of ``s`` were
        cancelled (RING_ALL), ascending; they are free again."""
        session, recipient = self._offer(s, r)
        recipient.state = BUSY
        recipient.offer_session = -1
        recipient.accepted_at = now_ms
        recipient.calls += 1
        recipient.misses = 0
        cancelled = sorted(x for x in session.offered_to if x != r)
        for other_handle in cancelled:
            other = self._recipients[other_handle]
            other.state = FREE
            other.offer_session = -1
            self._touch(other)
        session.offered_to = []
        self._forget(session)
        return cancelled

    def reject(self, s: int, r: int, now_ms: int, missed: bool = False) -> tuple[bool, bool]:
        """``r`` declines (or, with ``missed``, failed to answer) its offer of
        ``s``; ``r`` is free and idle since ``now_ms``. A miss counts toward
        the bounced-call limit. Returns ``(session_back_in_line, bounced)``."""
        session, recipient = self._offer(s, r)
        return self._decline(session, recipient, now_ms, missed)

    def queue_order(self, q: int) -> list[int]:
        """Waiting sessions of ``q`` (not under offer) in the order they will
        be served. O(n log n)."""
        queue = self._queue(q)
        waiting = [x for group in queue.groups.values() for x in group.sessions]
        waiting.sort(key=_Session.key)
        return [x.handle for x in waiting]

    def waiting_count(self, q: int) -> int:
        """Sessions of ``q`` waiting and not under offer. O(groups of q)."""
        return sum(len(group.sessions) for group in self._queue(q).groups.values())

    def eligible_count(self, q: int) -> int:
        """Members of ``q`` that could take an offer now. O(1)."""
        return self._queue(q).free_count

    def session_info(self, s: int) -> tuple[int, int, list[int]]:
        """``(queue, deadline_ms, recipients offered)``."""
        session = self._session(s)
        return session.queue, session.deadline, sorted(session.offered_to)

    def __len__(self) -> int:
        return len(self._sessions)

    # ---------------------------------------------------------------- dispatch

    def dispatch(self, now_ms: int) -> array:
        """One pass at ``now_ms``: expiries, then offers (see the module doc).

        O(due timers log n + examined groups log groups + (matches + examined
        groups) x members).
        """
        self.passes += 1
        self._pass_ms = now_ms
        out: list[int] = []
        self._expire_guards(now_ms)
        self._expire_rings(now_ms, out)
        self._expire_wrapups(now_ms, out)
        self._expire_timeouts(now_ms, out)
        while self._expansion_heap and self._expansion_heap[0][0] <= now_ms:
            due, q = heapq.heappop(self._expansion_heap)
            queue = self._queues.get(q)
            if queue is not None and queue.expansion_due_ms == due:
                queue.expansion_due_ms = _NO_TIER_LIMIT
                self._dirty[q] = _ALL_SKILLS
        if self._dirty or self._dirty_groups:
            self._match(now_ms, out)
        return array("q", out)

    def _match(self, now_ms: int, out: list[int]) -> None:
        heap = []
        replan = []
        serving: set[int] = set()  # queues with candidates and a free member
        for q, arrivals in self._dirty.items():
            queue = self._queues[q]
            if arrivals == _ALL_SKILLS:
                replan.append(queue)
            if queue.free_count:
                for group in queue.groups.values():
                    if not group.needs & ~arrivals:  # an arrival has every skill it needs
                        head = group.sessions[0]
                        heap.append((head.key(), head.handle, group))
                        serving.add(q)
        for group in self._dirty_groups:
            arrivals = self._dirty.get(group.queue)
            if arrivals is not None and not group.needs & ~arrivals:
                continue  # listed above, or its queue has nobody free
            queue = self._queues[group.queue]
            if queue.free_count:
                head = group.sessions[0]
                heap.append((head.key(), head.handle, group))
                serving.add(group.queue)
        self._dirty.clear()
        self._dirty_groups.clear()
        heapq.heapify(heap)
        while heap:
            _, _, group = heapq.heappop(heap)
            queue = self._queues[group.queue]
            if not queue.free_count:
                continue
            session = group.sessions[0]
            picked = self._select(queue, session, now_ms)
            if not picked:
                # The group's later sessions need the same and waited less;
                # look again when the head's wait reaches a tier expansion.
                self._note_expansion(queue, self._next_expansion(queue, session, now_ms))
                continue
            group.sessions.pop(0)
            for recipient in picked:
                self._make_offer(session, recipient, queue, now_ms, out)
                for q, other in recipient.queues.items():
                    if not other.free_count:  # the offer took its last free member
                        serving.discard(q)
            if group.sessions:
                head = group.sessions[0]
                heapq.heappush(heap, (head.key(), head.handle, group))
            else:
                del queue.groups[group.key]
            if not serving:
                break  # every candidate left would be skipped: nobody free in its queue
        for queue in replan:
            self._plan_expansion(queue, now_ms)

    def _candidates(self, queue: _Queue, session: _Session, max_tier: int) -> list[_Member]:
        """Members of ``queue`` that could serve ``session`` now at tier at
        most ``max_tier``, those of the lowest tier, in member order."""
        needs = self._reqset_items[session.reqset]
        best_tier = _NO_TIER_LIMIT
        candidates: list[_Member] = []
        for member in queue.ordered_members:
            recipient = member.recipient
            if not (member.ready and recipient.eligible) or member.tier > max_tier:
                continue
            if member.tier > best_tier:
                continue
            skills = recipient.skills
            if not all(skills.get(skill, 0) >= level for skill, level in needs):
                continue
            if member.tier < best_tier:
                best_tier = member.tier
                candidates = []
            candidates.append(member)
        return candidates

    def _select(self, queue: _Queue, session: _Session, now_ms: int) -> list[_Recipient]:
        """The recipients ``session`` is offered to, by the queue's router."""
        candidates = self._candidates(queue, session, self._allowed_tier(queue, session, now_ms))
        if not candidates:
            return []
        needs = self._reqset_items[session.reqset]
        router = queue.router
        if router == RING_ALL:
            return [member.recipient for member in candidates]
        if router == ROUND_ROBIN:
            chosen = next((m for m in candidates if m.order >= queue.cursor), candidates[0])
            queue.cursor = chosen.order + 1
        elif router == LINEAR:
            chosen = candidates[0]
        elif router == RANDOM:
            self._rng_state, value = splitmix64(self._rng_state)
            chosen = candidates[value % len(candidates)]
        else:
            metric = _METRICS[router]
            chosen = min(candidates, key=lambda m: (metric(m.recipient, needs),
                                                    m.recipient.idle_since, m.order))
        return [chosen.recipient]

    @staticmethod
    def _allowed_tier(queue: _Queue, session: _Session, now_ms: int) -> int:
        if not queue.expansion:
            return _NO_TIER_LIMIT
        waited = now_ms - session.entered_at
        allowed = 1
        for after_ms, max_tier in queue.expansion:
            if after_ms <= waited and max_tier > allowed:
                allowed = max_tier
        return allowed

    @staticmethod
    def _next_expansion(queue: _Queue, session: _Session, now_ms: int) -> int:
        """When ``session``'s wait next reaches one of the queue's rules."""
        for after_ms, _ in queue.expansion:
            if session.entered_at + after_ms > now_ms:
                return session.entered_at + after_ms
        return _NO_TIER_LIMIT

    def _plan_expansion(self, queue: _Queue, now_ms: int) -> None:
        """Remember when the next group head's wait reaches a rule, so the
        queue is examined again then (after a pass examined all its groups)."""
        if not queue.expansion:
            return
        due = _NO_TIER_LIMIT
        for group in queue.groups.values():
            due = min(due, self._next_expansion(queue, group.sessions[0], now_ms))
        queue.expansion_due_ms = _NO_TIER_LIMIT
        self._note_expansion(queue, due)

    def _note_expansion(self, queue: _Queue, due: int) -> None:
        if due < queue.expansion_due_ms:
            queue.expansion_due_ms = due
            heapq.heappush(self._expansion_heap, (due, queue.handle))

    def _make_offer(self, session: _Session, recipient: _Recipient, queue: _Queue, now_ms: int,
                    out: list[int]) -> None:
        recipient.state = OFFERED
        recipient.offer_session = session.handle
        recipient.ring_deadline = now_ms + queue.ring_timeout_ms
        recipient.offers += 1
        session.offered_to.append(recipient.handle)
        self._refresh(recipient)
        heapq.heappush(self._ring_heap, (recipient.ring_deadline, session.handle, recipient.handle))
        self.matches += 1
        out += (OFFER, session.handle, recipient.handle, session.queue)

    # ------------------------------------------------------------------ timers

    def _expire_guards(self, now_ms: int) -> None:
        heap = self._guard_heap
        while heap and heap[0][0] <= now_ms:
            until, r = heapq.heappop(heap)
            recipient = self._recipients.get(r)
            if recipient is not None and recipient.in_guard and recipient.guard_until == until:
                recipient.in_guard = False
                self._touch(recipient)

    def _expire_rings(self, now_ms: int, out: list[int]) -> None:
        heap = self._ring_heap
        while heap and heap[0][0] <= now_ms:
            deadline, s, r = heapq.heappop(heap)
            recipient = self._recipients.get(r)
            if (recipient is None or recipient.state != OFFERED or recipient.offer_session != s
                    or recipient.ring_deadline != deadline):
                continue
            session = self._sessions[s]
            out += (MISSED, s, r, session.queue)
            _, bounced = self._decline(session, recipient, deadline, True)
            if bounced:
                out += (BOUNCED, s, r, session.queue)

    def _expire_wrapups(self, now_ms: int, out: list[int]) -> None:
        heap = self._wrapup_heap
        while heap and heap[0][0] <= now_ms:
            until, r = heapq.heappop(heap)
            recipient = self._recipients.get(r)
            if recipient is None or recipient.state != WRAPUP or recipient.wrapup_until != until:
                continue
            self._free(recipient, until, now_ms)
            out += (WRAPUP_END, -1, r, -1)

    def _expire_timeouts(self, now_ms: int, out: list[int]) -> None:
        heap = self._timeout_heap
        while heap and heap[0][0] <= now_ms:
            deadline, s = heapq.heappop(heap)
            session = self._sessions.get(s)
            if session is None or session.deadline != deadline:
                continue
            if session.offered_to:
                session.timeout_pending = True  # decided when the offer ends
                continue
            self._unwait(session)
            self._forget(session)
            out += (TIMEOUT, s, -1, session.queue)

    # ---------------------------------------------------------------- helpers

    def _queue(self, q: int) -> _Queue:
        queue = self._queues.get(q)
        if queue is None:
            raise KeyError(f"unknown queue {q}")
        return queue

    def _recipient(self, r: int) -> _Recipient:
        recipient = self._recipients.get(r)
        if recipient is None:
            raise KeyError(f"unknown recipient {r}")
        return recipient

    def _session(self, s: int) -> _Session:
        session = self._sessions.get(s)
        if session is None:
            raise KeyError(f"unknown session {s}")
        return session

    def _offer(self, s: int, r: int) -> tuple[_Session, _Recipient]:
        session = self._session(s)
        recipient = self._recipient(r)
        if recipient.state != OFFERED or recipient.offer_session != s:
            raise ValueError(f"recipient {r} holds no offer of session {s}")
        return session, recipient

    def _decline(self, session: _Session, recipient: _Recipient, at_ms: int,
                 missed: bool) -> tuple[bool, bool]:
        bounced = False
        recipient.state = FREE
        recipient.offer_session = -1
        recipient.idle_since = at_ms
        if missed:
            recipient.misses += 1
            if recipient.bounce_limit and recipient.misses >= recipient.bounce_limit:
                recipient.ready = False
                recipient.misses = 0
                bounced = True
        self._touch(recipient)
        back = self._withdraw(session, recipient)
        return back, bounced

    def _withdraw(self, session: _Session, recipient: _Recipient) -> bool:
        """Drop ``recipient`` from ``session``'s offers; back in line when none is left."""
        session.offered_to.remove(recipient.handle)
        if recipient.state == OFFERED:
            recipient.state = FREE
            recipient.offer_session = -1
            self._touch(recipient)
        if session.offered_to:
            return False
        queue = self._queues[session.queue]
        if session.timeout_pending:
            session.timeout_pending = False
            heapq.heappush(self._timeout_heap, (session.deadline, session.handle))
        self._wait(session, queue)
        return True

    def _wait(self, session: _Session, queue: _Queue) -> None:
        key = (session.reqset, session.priority)
        group = queue.groups.get(key)
        if group is None:
            group = queue.groups[key] = _Group(session.queue, key, self._reqset_bits[session.reqset])
        group.sessions.add(session)
        if group.sessions[0] is session:
            self._dirty_groups.add(group)

    def _unwait(self, session: _Session) -> None:
        queue = self._queues[session.queue]
        key = (session.reqset, session.priority)
        group = queue.groups[key]
        group.sessions.remove(session)
        if not group.sessions:
            del queue.groups[key]
            self._dirty_groups.discard(group)

    def _forget(self, session: _Session) -> None:
        del self._sessions[session.handle]
        self._queues[session.queue].session_count -= 1

    def _free(self, recipient: _Recipient, at_ms: int, now_ms: int) -> None:
        recipient.state = FREE
        recipient.idle_since = at_ms
        self._start_guard(recipient, at_ms, now_ms)
        self._touch(recipient)

    def _start_guard(self, recipient: _Recipient, at_ms: int, now_ms: int) -> None:
        until = at_ms + recipient.guard_ms
        recipient.guard_until = until
        recipient.in_guard = until > now_ms
        if recipient.in_guard:
            heapq.heappush(self._guard_heap, (until, recipient.handle))

    def _touch(self, recipient: _Recipient) -> None:
        """Re-derive eligibility; an eligible recipient makes the groups it
        has the skills for in each of its queues worth examining."""
        self._refresh(recipient)
        if recipient.eligible:
            for q in recipient.queues:
                self._mark(q, recipient.skill_bits)

    def _mark(self, q: int, skill_bits: int) -> None:
        """A recipient with ``skill_bits`` became available to queue ``q``."""
        self._dirty[q] = self._dirty.get(q, 0) | skill_bits

    def _refresh(self, recipient: _Recipient) -> None:
        eligible = recipient.ready and recipient.state == FREE and not recipient.in_guard
        if eligible == recipient.eligible:
            return
        recipient.eligible = eligible
        step = 1 if eligible else -1
        self._eligible_total += step
        for q, queue in recipient.queues.items():
            if queue.members[recipient.handle].ready:
                queue.free_count += step

    # -------------------------------------------------------------- invariants

    def _check(self) -> None:
        """Assert every internal invariant; O(everything). For tests."""
        eligible_total = 0
        for r, recipient in self._recipients.items():
            expected = recipient.ready and recipient.state == FREE and not recipient.in_guard
            assert recipient.eligible == expected, f"recipient {r} eligibility"
            eligible_total += expected
            if recipient.state == OFFERED:
                session = self._sessions[recipient.offer_session]
                assert r in session.offered_to, f"recipient {r} offer not on session"
            else:
                assert recipient.offer_session == -1, f"recipient {r} stale offer"
            for q, queue in recipient.queues.items():
                assert r in queue.members, f"recipient {r} membership of {q}"
        assert eligible_total == self._eligible_total, "eligible total"
        for q, queue in self._queues.items():
            free = sum(1 for m in queue.ordered_members if m.ready and m.recipient.eligible)
            assert free == queue.free_count, f"queue {q} free count {queue.free_count} != {free}"
            assert [m.order for m in queue.ordered_members] == sorted(
                m.order for m in queue.ordered_members), f"queue {q} member order"
            assert len(queue.ordered_members) == len(queue.members)
            count = sum(1 for x in self._sessions.values() if x.queue == q)
            assert count == queue.session_count, f"queue {q} session count"
            if queue.expansion_due_ms < _NO_TIER_LIMIT:
                assert (queue.expansion_due_ms, q) in self._expansion_heap, f"queue {q} expansion"
            arrivals = self._dirty.get(q)
            for (reqset, priority), group in queue.groups.items():
                assert group.sessions, f"queue {q} empty group"
                assert group.queue == q and group.needs == self._reqset_bits[reqset]
                for session in group.sessions:
                    assert session.reqset == reqset and session.priority == priority
                    assert not session.offered_to, f"session {session.handle} waiting under offer"
                    assert self._sessions[session.handle] is session
                if group in self._dirty_groups or (arrivals is not None and not group.needs & ~arrivals):
                    continue
                # Not examined by the next pass: nobody can serve its head, even
                # at the tier its wait allows just before the queue's next
                # planned look (what the dirty marks and expansion plan promise).
                head = group.sessions[0]
                max_tier = self._allowed_tier(queue, head, max(queue.expansion_due_ms - 1,
                                                                 self._pass_ms))
                assert not self._candidates(queue, head, max_tier), \
                    f"queue {q}: session {head.handle} could be served but is not marked"
        for group in self._dirty_groups:
            assert self._queues[group.queue].groups.get(group.key) is group, "stale dirty group"
        for q in self._dirty:
            assert q in self._queues, f"dirty queue {q} unknown"
        waiting = 0
        for s, session in self._sessions.items():
            if session.offered_to:
                assert len(set(session.offered_to)) == len(session.offered_to)
                for r in session.offered_to:
                    recipient = self._recipients[r]
                    assert recipient.state == OFFERED and recipient.offer_session == s
            else:
                waiting += 1
        grouped = sum(len(g.sessions) for queue in self._queues.values() for g in queue.groups.values())
        assert waiting == grouped, f"waiting {waiting} != grouped {grouped}"


def _metric_idle(recipient: _Recipient, needs) -> int:
    return recipient.idle_since


def _metric_calls(recipient: _Recipient, needs) -> int:
    return recipient.calls


def _metric_offers(recipient: _Recipient, needs) -> int:
    return recipient.offers


def _metric_talk(recipient: _Recipient, needs) -> int:
    return recipient.talk_ms


def _metric_skill(recipient: _Recipient, needs) -> int:
    skills = recipient.skills
    return -sum(skills.get(skill, 0) for skill, _ in needs)


_METRICS = {
    MOST_IDLE: _metric_idle,
    LEAST_CALLS: _metric_calls,
    LEAST_OFFERS: _metric_offers,
    LEAST_TALK_TIME: _metric_talk,
    MOST_SKILLED: _metric_skill,
}
