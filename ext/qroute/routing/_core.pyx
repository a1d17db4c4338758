# cython: language_level=3
"""The compiled dispatcher: ``qroute.routing._reference``'s rules over C arrays.

The reference's docstrings are the specification; this module has the same
class, methods, return types, exceptions (type and message), tie-breaks,
random generator and counters, and returns identical results for any sequence
of calls. It follows the same algorithm (dirty queues with the skill masks of
the recipients that became available to them, dirty groups with a new head,
groups of waiting sessions by (queue, requirement set, priority) skipped whole
when their head finds no recipient, lazily invalidated timer heaps, expansion
planning from group heads), with the state laid out for C (see ``_core.pxd``):

* queues, recipients and sessions in arrays indexed by their handles, so
  memory grows with the largest handle in use;
* skills as 4 x 64-bit masks, levels compared only when the mask covers;
* per group, a sorted array of its waiting sessions; per queue, the groups
  that have any, each with a copy of its head (what a pass reads);
* requirement sets interned and groups found through C hash tables; the
  hot struct arrays 64-byte aligned, the structs laid out so what an event
  reads shares a cache line, and the next lines of a chain requested ahead
  (a pass under churn is bound by memory latency, not instructions);
* the methods read plain int handles and arguments, and ``enqueue`` a plain
  dict of skills, in C (a one-digit int in place), and check anything else
  with the reference's own functions (the same errors);
* a pass finds its first candidate by a scan of the heads (most passes end
  there: the freed recipient takes it) and lists and orders the others as a
  heap only if it goes on; a member scan stops at the queue's last free
  member;
* a pass (``dispatch``) runs without touching a Python object, collects its
  records in a C buffer and copies them into one ``array('q')``; one that
  examines many queues or groups runs without the GIL (releasing it costs
  more than a short pass).

A ``Dispatcher`` is not thread-safe, like the reference; a call made from
another thread while a pass runs raises RuntimeError rather than corrupting it.
"""

from cpython cimport array
import array

from libc.stdint cimport INT64_MAX, int32_t, int64_t, uint8_t, uint32_t, uint64_t

include "_memory.pxi"
include "_heaps.pxi"
include "_groups.pxi"

# The constants are the reference's (its names, its values). The loops use
# the C enums of _core.pxd, which must hold the same values: a build where
# they differ refuses to load.
from qroute.routing._reference import (BOUNCED, BUSY, FREE, LEAST_CALLS, LEAST_OFFERS, LEAST_TALK_TIME,
                                       LINEAR, MAX_LEVEL, MAX_SKILLS, MISSED, MOST_IDLE, MOST_SKILLED,
                                       OFFER, OFFERED, RANDOM, RECORD_SIZE, RING_ALL, ROUND_ROBIN,
                                       ROUTERS, TIMEOUT, WRAPUP, WRAPUP_END, _MASK64)

if ((RT_ROUND_ROBIN, RT_MOST_IDLE, RT_LEAST_CALLS, RT_LEAST_OFFERS, RT_LEAST_TALK_TIME, RT_LINEAR,
     RT_RANDOM, RT_MOST_SKILLED, RT_RING_ALL, K_OFFER, K_MISSED, K_BOUNCED, K_TIMEOUT, K_WRAPUP_END,
     ST_FREE, ST_OFFERED, ST_BUSY, ST_WRAPUP, C_MAX_SKILLS, C_MAX_LEVEL, C_RECORD_SIZE)
        != (ROUND_ROBIN, MOST_IDLE, LEAST_CALLS, LEAST_OFFERS, LEAST_TALK_TIME, LINEAR, RANDOM,
            MOST_SKILLED, RING_ALL, OFFER, MISSED, BOUNCED, TIMEOUT, WRAPUP_END, FREE, OFFERED,
            BUSY, WRAPUP, MAX_SKILLS, MAX_LEVEL, RECORD_SIZE)
        or ROUTERS != frozenset(range(RT_ROUND_ROBIN, RT_RING_ALL + 1))):
    raise ImportError("qroute.routing._core: the C constants of _core.pxd differ from "
                      "qroute.routing._reference's; rebuild from matching sources")

include "_boundary.pxi"

cdef array.array _RECORDS = array.array("q")


cdef class Dispatcher:
    """Matches waiting sessions to recipients; one instance per account.

    Every mutator is O(1) or O(log n) in the number of sessions, except where
    its docstring says otherwise. ``now_ms`` arguments are the caller's clock
    in milliseconds; the dispatcher never reads a clock itself. Integer
    arguments other than handles must fit in 64 bits.
    """

    # Entities by handle; these struct arrays and the groups' are 64-byte
    # aligned inside their allocation (*_block: see _grow_aligned).
    cdef void* _queue_block
    cdef void* _recipient_block
    cdef void* _session_block
    cdef void* _group_block
    cdef Queue* _queues
    cdef Py_ssize_t _queue_cap
    cdef Recipient* _recipients
    cdef Py_ssize_t _recipient_cap
    cdef Session* _sessions
    cdef Py_ssize_t _session_cap
    cdef Py_ssize_t _session_count
    # Groups by id; ids of freed groups are reused.
    cdef Group* _groups
    cdef Py_ssize_t _group_cap
    cdef Py_ssize_t _group_used
    cdef int32_t* _free_groups  # room for every id in use
    cdef Py_ssize_t _free_group_count
    cdef Py_ssize_t _free_group_cap
    cdef GroupTable _group_table  # (queue, reqset, priority) -> group id
    # Interned requirement sets.
    cdef ReqSet* _reqsets
    cdef Py_ssize_t _reqset_count
    cdef Py_ssize_t _reqset_cap
    cdef ReqSetTable _reqset_table  # sorted (skill, level) pairs -> reqset id
    # Queues to examine at the next pass (a set: each queue knows its slot),
    # each with its arrival mask or examine_all; groups with a new head (each
    # knows its slot too; a group leaves the list when it empties).
    cdef int32_t* _dirty
    cdef Py_ssize_t _dirty_count
    cdef Py_ssize_t _dirty_cap
    cdef int32_t* _dirty_groups
    cdef Py_ssize_t _dirty_group_count
    cdef Py_ssize_t _dirty_group_cap
    # Timers.
    cdef TimerHeap _ring_heap  # (deadline, session, recipient)
    cdef TimerHeap _wrapup_heap  # (until, recipient)
    cdef TimerHeap _timeout_heap  # (deadline, session)
    cdef TimerHeap _guard_heap  # (until, recipient)
    cdef TimerHeap _expansion_heap  # (due, queue)
    # Scratch of a pass.
    cdef Candidate* _candidates
    cdef Py_ssize_t _candidate_count
    cdef Py_ssize_t _candidate_cap
    cdef int32_t* _picked  # member positions; holds the largest queue's members
    cdef int32_t* _serving  # queues with candidates in a pass; room for every queue
    cdef Py_ssize_t _serving_cap
    cdef Py_ssize_t _picked_cap
    cdef int64_t* _out
    cdef Py_ssize_t _out_count
    cdef Py_ssize_t _out_cap

    cdef int64_t _eligible_total
    cdef int64_t _stamp
    cdef int64_t* _group_stamps  # by group id: when it last became live (the reference's dict order)
    cdef Py_ssize_t _group_stamp_cap
    cdef int64_t _pass_ms  # the clock of the last pass (for _check)
    cdef uint64_t _rng_state
    cdef bint _busy  # a method is running: see _enter
    cdef readonly int64_t passes  # passes run so far
    cdef readonly int64_t matches  # offers made so far

    def __cinit__(self, *args, **kwargs):
        _grow_aligned(&self._queue_block, <void**>&self._queues, &self._queue_cap, 16, sizeof(Queue))
        self._dirty_cap = 16
        self._dirty = <int32_t*>PyMem_RawCalloc(<size_t>self._dirty_cap, sizeof(int32_t))
        _grow_aligned(&self._recipient_block, <void**>&self._recipients, &self._recipient_cap, 64,
                      sizeof(Recipient))
        _grow_aligned(&self._session_block, <void**>&self._sessions, &self._session_cap, 256, sizeof(Session))
        self._picked_cap = 16
        self._picked = <int32_t*>PyMem_RawCalloc(<size_t>self._picked_cap, sizeof(int32_t))
        if (self._queues == NULL or self._dirty == NULL or self._recipients == NULL
                or self._sessions == NULL or self._picked == NULL):
            raise MemoryError()

    def __init__(self, seed=0):
        self._rng_state = seed & _MASK64

    def __dealloc__(self):
        cdef Py_ssize_t i
        if self._queues != NULL:
            for i in range(self._queue_cap):
                PyMem_RawFree(self._queues[i].rules)
                PyMem_RawFree(self._queues[i].members)
                PyMem_RawFree(self._queues[i].live)
        if self._recipients != NULL:
            for i in range(self._recipient_cap):
                PyMem_RawFree(self._recipients[i].queues)
        if self._groups != NULL:
            for i in range(self._group_used):
                PyMem_RawFree(self._groups[i].entries)
        if self._reqsets != NULL:
            for i in range(self._reqset_count):
                PyMem_RawFree(self._reqsets[i].needs)
        PyMem_RawFree(self._queue_block)
        PyMem_RawFree(self._recipient_block)
        PyMem_RawFree(self._session_block)
        PyMem_RawFree(self._group_block)
        PyMem_RawFree(self._group_stamps)
        PyMem_RawFree(self._free_groups)
        PyMem_RawFree(self._group_table.slots)
        PyMem_RawFree(self._reqsets)
        PyMem_RawFree(self._reqset_table.slots)
        PyMem_RawFree(self._dirty)
        PyMem_RawFree(self._dirty_groups)
        PyMem_RawFree(self._candidates)
        PyMem_RawFree(self._picked)
        PyMem_RawFree(self._serving)
        PyMem_RawFree(self._out)
        _timer_free(&self._ring_heap)
        _timer_free(&self._wrapup_heap)
        _timer_free(&self._timeout_heap)
        _timer_free(&self._guard_heap)
        _timer_free(&self._expansion_heap)

    # ------------------------------------------------------------------ queues

    def set_queue(self, q, router, ring_timeout_ms, timeout_ms, tier_expansion=()):
        """Create queue ``q`` or change its routing settings.

        A changed ``timeout_ms`` applies to sessions that join afterwards.
        O(rules).
        """
        cdef Py_ssize_t qi, i, count
        cdef int64_t ring_ms, wait_ms
        cdef Rule* rules = NULL
        cdef Queue* queue
        self._enter()
        try:
            checked = _queue_settings(q, router, ring_timeout_ms, timeout_ms, tier_expansion)
            ring_ms = ring_timeout_ms
            wait_ms = timeout_ms
            router_code = int(router)
            count = len(checked)
            if count:
                rules = <Rule*>PyMem_RawMalloc(<size_t>count * sizeof(Rule))
                if rules == NULL:
                    raise MemoryError()
                try:
                    for i in range(count):
                        rules[i].after_ms = checked[i][0]
                        rules[i].max_tier = checked[i][1]
                except BaseException:
                    PyMem_RawFree(rules)
                    raise
            qi = q
            try:
                self._reserve_queue(qi)
            except BaseException:
                PyMem_RawFree(rules)
                raise
            queue = &self._queues[qi]
            if not queue.exists:
                memset(queue, 0, sizeof(Queue))
                queue.exists = True
            queue.router = <uint8_t>router_code
            queue.ring_timeout_ms = ring_ms
            queue.timeout_ms = wait_ms
            PyMem_RawFree(queue.rules)
            queue.rules = rules
            queue.rule_count = count
            queue.expansion_due_ms = NO_TIER_LIMIT
            self._mark_all(<int32_t>qi)
        finally:
            self._busy = False

    def remove_queue(self, q):
        """Remove queue ``q`` and its memberships. It must hold no session. O(members)."""
        cdef Py_ssize_t qi, i
        cdef Queue* queue
        self._enter()
        try:
            qi = self._queue_index(q)
            queue = &self._queues[qi]
            if queue.session_count:
                raise ValueError(f"queue {q} still holds {queue.session_count} sessions")
            for i in range(queue.member_count):
                self._drop_ref(queue.members[i].recipient, <int32_t>qi)
            self._mark_clean(<int32_t>qi)
            PyMem_RawFree(queue.rules)
            PyMem_RawFree(queue.members)
            PyMem_RawFree(queue.live)
            memset(queue, 0, sizeof(Queue))
        finally:
            self._busy = False

    def add_member(self, q, r, tier=1):
        """Make ``r`` a member of ``q`` (last in member order), ready for ``q``.

        Adding an existing member changes only its tier. O(r's queues).
        """
        cdef Py_ssize_t qi, ri, mi
        cdef int64_t c_tier
        cdef Queue* queue
        cdef Recipient* recipient
        cdef Member* member
        self._enter()
        try:
            qi = self._queue_index(q)
            ri = self._recipient_index(r)
            if tier < 1:
                raise ValueError(f"tier must be >= 1, got {tier}")
            c_tier = tier
            queue = &self._queues[qi]
            recipient = &self._recipients[ri]
            mi = _member_of(recipient, <int32_t>qi)
            if mi >= 0:
                queue.members[mi].tier = c_tier
            else:
                _grow(<void**>&queue.members, &queue.member_cap, queue.member_count + 1, sizeof(Member), False)
                _grow(<void**>&recipient.queues, &recipient.queue_cap, recipient.queue_count + 1,
                      sizeof(QueueRef), False)
                _grow(<void**>&self._picked, &self._picked_cap, queue.member_count + 1, sizeof(int32_t), False)
                mi = queue.member_count
                member = &queue.members[mi]
                member.tier = c_tier
                member.order = queue.next_order
                member.recipient = <int32_t>ri
                member.ready = True
                member.eligible = recipient.eligible
                queue.next_order += 1
                queue.member_count += 1
                recipient.queues[recipient.queue_count].queue = <int32_t>qi
                recipient.queues[recipient.queue_count].member = <int32_t>mi
                recipient.queue_count += 1
                if recipient.eligible:
                    queue.free_count += 1
            self._mark_arrival(<int32_t>qi, recipient.skill_mask)
        finally:
            self._busy = False

    def remove_member(self, q, r):
        """Remove ``r`` from ``q``. An offer already made stays. O(members)."""
        cdef Py_ssize_t qi, ri, mi = -1
        self._enter()
        try:
            qi = self._queue_index(q)
            # The reference pops from a dict, which does not hash the key when the
            # dict is empty: no member, no TypeError for an unhashable r.
            ri = _handle_index(r) if self._queues[qi].member_count else -1
            if 0 <= ri < self._recipient_cap and self._recipients[ri].exists:
                mi = _member_of(&self._recipients[ri], <int32_t>qi)
            if mi < 0:
                raise KeyError(f"recipient {r} is not a member of queue {q}")
            self._remove_member(<int32_t>qi, mi)
        finally:
            self._busy = False

    def set_member_ready(self, q, r, ready):
        """Per-queue availability of ``r`` in ``q``. O(r's queues)."""
        cdef Py_ssize_t qi, ri, mi = -1
        cdef Queue* queue
        cdef bint flag
        self._enter()
        try:
            qi = self._queue_index(q)
            ri = _handle_index(r)
            if 0 <= ri < self._recipient_cap and self._recipients[ri].exists:
                mi = _member_of(&self._recipients[ri], <int32_t>qi)
            if mi < 0:
                raise KeyError(f"recipient {r} is not a member of queue {q}")
            flag = bool(ready)
            queue = &self._queues[qi]
            if queue.members[mi].ready == flag:
                return
            queue.members[mi].ready = flag
            if self._recipients[ri].eligible:
                queue.free_count += 1 if flag else -1
            if flag:
                self._mark_arrival(<int32_t>qi, self._recipients[ri].skill_mask)
        finally:
            self._busy = False

    # -------------------------------------------------------------- recipients

    def add_recipient(self, r, skills={}, bounced_call_limit=0, guard_ms=0):
        """Create recipient ``r``: free, not ready, member of nothing."""
        cdef Py_ssize_t ri
        cdef Recipient* recipient
        self._enter()
        try:
            _check_handle(r, "recipient")
            ri = r
            if ri < self._recipient_cap and self._recipients[ri].exists:
                raise ValueError(f"recipient {r} already exists")
            items, limit, guard = _recipient_settings(skills, bounced_call_limit, guard_ms)
            self._reserve_recipient(ri)
            recipient = &self._recipients[ri]
            memset(recipient, 0, sizeof(Recipient))
            recipient.exists = True
            recipient.offer_session = -1
            recipient.offer_prev = -1
            recipient.offer_next = -1
            _configure(recipient, items, limit, guard)
        finally:
            self._busy = False

    def update_recipient(self, r, skills, bounced_call_limit=0, guard_ms=0):
        """Change ``r``'s skills and limits; a running guard timer keeps its end."""
        cdef Py_ssize_t ri
        self._enter()
        try:
            ri = self._recipient_index(r)
            items, limit, guard = _recipient_settings(skills, bounced_call_limit, guard_ms)
            _configure(&self._recipients[ri], items, limit, guard)
            self._touch(<int32_t>ri)
        finally:
            self._busy = False

    def remove_recipient(self, r):
        """Remove ``r`` and its memberships. O(its queues' members).

        Returns the session whose offer to ``r`` was withdrawn, or -1. That
        session goes back to its place if no other offer of it is outstanding.
        """
        cdef Py_ssize_t ri
        cdef int32_t session = -1
        cdef Recipient* recipient
        cdef QueueRef ref
        self._enter()
        try:
            recipient = self._recipient(r, &ri)
            if recipient.state == ST_OFFERED:
                session = recipient.offer_session
                self._withdraw(session, <int32_t>ri)
            recipient.ready = False
            self._refresh(<int32_t>ri)
            while recipient.queue_count:
                ref = recipient.queues[recipient.queue_count - 1]
                self._remove_member(ref.queue, ref.member)
            PyMem_RawFree(recipient.queues)
            memset(recipient, 0, sizeof(Recipient))
            return session
        finally:
            self._busy = False

    def set_ready(self, r, ready, int64_t now_ms):
        """Global availability. Becoming ready starts the guard timer and the
        idle time (if free) and clears the consecutive-miss count."""
        cdef Py_ssize_t ri
        cdef Recipient* recipient
        cdef bint flag
        self._enter()
        try:
            ri = self._recipient_index(r)
            flag = bool(ready)
            recipient = &self._recipients[ri]
            if recipient.ready == flag:
                return
            recipient.ready = flag
            if flag:
                recipient.misses = 0
                if recipient.state == ST_FREE:
                    recipient.idle_since = now_ms
                    self._start_guard(<int32_t>ri, now_ms, now_ms)
            self._touch(<int32_t>ri)
        finally:
            self._busy = False

    def hangup(self, r, int64_t now_ms, wrapup_ms=0):
        """The call of ``r`` ended: talk time accrues, then wrap-up for
        ``wrapup_ms`` (free at once when 0)."""
        cdef Py_ssize_t ri
        cdef long long wrap
        cdef Recipient* recipient
        self._enter()
        try:
            recipient = self._recipient(r, &ri)
            if recipient.state != ST_BUSY:
                raise ValueError(f"recipient {r} is not on a call")
            if not _int_in(wrapup_ms, 0, INT64_MAX, &wrap):
                if wrapup_ms < 0:
                    raise ValueError(f"wrapup_ms must be >= 0, got {wrapup_ms}")
                wrap = wrapup_ms
            if now_ms > recipient.accepted_at:
                recipient.talk_ms += now_ms - recipient.accepted_at
            if wrap:
                recipient.state = ST_WRAPUP
                recipient.wrapup_until = now_ms + wrap
                _timer_push(&self._wrapup_heap, recipient.wrapup_until, <int32_t>ri, 0)
            else:
                self._free(<int32_t>ri, now_ms, now_ms)
        finally:
            self._busy = False

    def end_wrapup(self, r, int64_t now_ms):
        """End ``r``'s wrap-up early. Returns False if it was not in wrap-up."""
        cdef Py_ssize_t ri
        self._enter()
        try:
            ri = self._recipient_index(r)
            if self._recipients[ri].state != ST_WRAPUP:
                return False
            self._free(<int32_t>ri, now_ms, now_ms)
            return True
        finally:
            self._busy = False

    def restore_recipient(self, r, int64_t calls, int64_t offers, int64_t talk_ms,
                          int64_t idle_since_ms, int32_t misses=0):
        """Load counters kept across a restart (they drive the LEAST_* routers,
        and ``misses`` the bounced-call limit)."""
        cdef Py_ssize_t ri
        cdef Recipient* recipient
        self._enter()
        try:
            recipient = self._recipient(r, &ri)
            recipient.misses = misses
            recipient.calls = calls
            recipient.offers = offers
            recipient.talk_ms = talk_ms
            recipient.idle_since = idle_since_ms
            self._touch(<int32_t>ri)
        finally:
            self._busy = False

    def start_call(self, r, int64_t now_ms):
        """Mark a free recipient busy on a call that did not come through an
        offer (crash recovery of a connected call)."""
        cdef Py_ssize_t ri
        cdef Recipient* recipient
        self._enter()
        try:
            recipient = self._recipient(r, &ri)
            if recipient.state != ST_FREE:
                raise ValueError(f"recipient {r} is not free")
            recipient.state = ST_BUSY
            recipient.accepted_at = now_ms
            self._refresh(<int32_t>ri)
        finally:
            self._busy = False

    def recipient_stats(self, r):
        """``(state, calls, offers, talk_ms, consecutive_misses, idle_since_ms)``."""
        cdef Py_ssize_t ri
        cdef Recipient* recipient
        self._enter()
        try:
            recipient = self._recipient(r, &ri)
            return (recipient.state, recipient.calls, recipient.offers, recipient.talk_ms,
                    recipient.misses, recipient.idle_since)
        finally:
            self._busy = False

    # ---------------------------------------------------------------- sessions

    def enqueue(self, s, q, int64_t priority, int64_t entered_at_ms, int64_t seq, skills,
                int64_t now_ms):
        """Session ``s`` waits in ``q``; its queue timeout counts from ``now_ms``.

        O(log n) plus, for a new requirement set, O(its skills)."""
        cdef Py_ssize_t si, qi, count
        cdef int32_t reqset, group_id
        cdef Session* session
        cdef Queue* queue
        cdef Group* group
        cdef SkillNeed needs[C_MAX_SKILLS]
        cdef long long guess
        cdef uint64_t needs_hash = 0
        cdef Py_ssize_t slot = -1
        self._enter()
        try:
            si = _new_handle(s, "session")
            # Cold lines in a chain (session; requirement set id; group; its
            # last entry): ask for each as soon as its address is known. The
            # reference checks the session, then the queue, then the skills:
            # the fast path reads the skills first (it has no effect).
            if si < self._session_cap:
                _prefetch(&self._sessions[si])
            _prefetch(&self._timeout_heap.items[self._timeout_heap.count])
            if self._timeout_heap.count:  # the parent the push compares with
                _prefetch(&self._timeout_heap.items[(self._timeout_heap.count - 1) >> 2])
            count = _dict_needs(skills, needs)
            if count >= 0:
                needs_hash = _needs_hash(needs, count)
                if self._group_table.size and _int_in(q, 0, MAX_HANDLE, &guess):
                    slot = _group_hash(<int32_t>guess, needs_hash, priority) & (self._group_table.size - 1)
                    _prefetch(&self._group_table.slots[slot])
            if si < self._session_cap and self._sessions[si].exists:
                raise ValueError(f"session {s} already exists")
            qi = self._queue_index(q)
            if slot >= 0 and self._group_table.slots[slot] >= 0:
                _prefetch(&self._groups[self._group_table.slots[slot]])  # most likely its group
            # An existing group is found by its requirement pairs (no need for
            # the requirement set's id first); a new one needs the id.
            group_id = self._find_group(<int32_t>qi, needs, count, needs_hash, priority) if count >= 0 else -1
            if group_id < 0:
                reqset = self._intern_reqset(needs, count) if count >= 0 else self._reqset_of(skills)
                group_id = self._group_for(<int32_t>qi, reqset, priority)
            self._reserve_session(si)
            group = &self._groups[group_id]
            queue = &self._queues[qi]
            session = &self._sessions[si]
            session.exists = True
            session.timeout_pending = False
            session.queue = <int32_t>qi
            session.group = group_id
            session.entered_at = entered_at_ms
            session.seq = seq
            session.deadline = now_ms + queue.timeout_ms
            session.offer_head = -1
            session.offer_count = 0
            group.refs += 1
            self._session_count += 1
            queue.session_count += 1
            _timer_push(&self._timeout_heap, session.deadline, <int32_t>si, 0)
            self._wait(<int32_t>si)
        finally:
            self._busy = False

    def remove_session(self, s):
        """Remove ``s`` (abandoned, transferred, ...). Returns the recipients
        whose offers of it were withdrawn, in ascending order; they are free."""
        cdef Py_ssize_t si
        cdef int32_t r
        cdef Recipient* recipient
        self._enter()
        try:
            si = self._session_index(s)
            _prefetch(&self._groups[self._sessions[si].group])  # both read below
            _prefetch(&self._queues[self._sessions[si].queue].session_count)
            withdrawn = self._offered(<int32_t>si)
            if withdrawn:
                for r in withdrawn:
                    recipient = &self._recipients[r]
                    self._unlink_offer(<int32_t>si, r)
                    recipient.state = ST_FREE
                    recipient.offer_session = -1
                    self._touch(r)
            else:
                self._unwait(<int32_t>si)
            self._forget(<int32_t>si)
            return withdrawn
        finally:
            self._busy = False

    def accept(self, s, r, int64_t now_ms):
        """``r`` answers its offer of ``s``: ``r`` is busy and ``s`` leaves the
        dispatcher. Returns the other recipients whose offers of ``s`` were
        cancelled (RING_ALL), ascending; they are free again."""
        cdef Py_ssize_t si, ri
        cdef int32_t other
        cdef Recipient* recipient
        self._enter()
        try:
            self._offer_of(s, r, &si, &ri)
            recipient = &self._recipients[ri]
            recipient.state = ST_BUSY
            recipient.offer_session = -1
            recipient.accepted_at = now_ms
            recipient.calls += 1
            recipient.misses = 0
            self._unlink_offer(<int32_t>si, <int32_t>ri)
            cancelled = self._offered(<int32_t>si)
            for other in cancelled:
                self._unlink_offer(<int32_t>si, other)
                self._recipients[other].state = ST_FREE
                self._recipients[other].offer_session = -1
                self._touch(other)
            self._forget(<int32_t>si)
            return cancelled
        finally:
            self._busy = False

    def reject(self, s, r, int64_t now_ms, missed=False):
        """``r`` declines (or, with ``missed``, failed to answer) its offer of
        ``s``; ``r`` is free and idle since ``now_ms``. A miss counts toward
        the bounced-call limit. Returns ``(session_back_in_line, bounced)``."""
        cdef Py_ssize_t si, ri
        cdef int outcome
        self._enter()
        try:
            self._offer_of(s, r, &si, &ri)
            outcome = self._decline(<int32_t>si, <int32_t>ri, now_ms, bool(missed))
            return (outcome & 1) != 0, (outcome & 2) != 0
        finally:
            self._busy = False

    def queue_order(self, q):
        """Waiting sessions of ``q`` (not under offer) in the order they will
        be served. O(n log n)."""
        cdef Py_ssize_t qi, j
        cdef Queue* queue
        cdef Group* group
        cdef Entry* entry
        self._enter()
        try:
            qi = self._queue_index(q)
            queue = &self._queues[qi]
            # The reference lists its groups in dict order (when each last became
            # non-empty) and sorts stably: equal keys keep that order.
            groups = sorted([(self._group_stamps[queue.live[i].head.group], queue.live[i].head.group)
                             for i in range(queue.live_count)])
            waiting = []
            for _, gid in groups:
                group = &self._groups[<Py_ssize_t>gid]
                for j in range(group.start, group.start + group.count):
                    entry = &group.entries[j]
                    waiting.append((-group.priority, entry.entered_at, entry.seq, len(waiting), entry.session))
            waiting.sort()
            return [item[4] for item in waiting]
        finally:
            self._busy = False

    def waiting_count(self, q):
        """Sessions of ``q`` waiting and not under offer. O(groups of q)."""
        cdef Py_ssize_t qi, i, total = 0
        cdef Queue* queue
        self._enter()
        try:
            qi = self._queue_index(q)
            queue = &self._queues[qi]
            for i in range(queue.live_count):
                total += self._groups[queue.live[i].head.group].count
            return total
        finally:
            self._busy = False

    def eligible_count(self, q):
        """Members of ``q`` that could take an offer now. O(1)."""
        self._enter()
        try:
            return self._queues[self._queue_index(q)].free_count
        finally:
            self._busy = False

    def session_info(self, s):
        """``(queue, deadline_ms, recipients offered)``."""
        cdef Py_ssize_t si
        self._enter()
        try:
            si = self._session_index(s)
            return self._sessions[si].queue, self._sessions[si].deadline, self._offered(<int32_t>si)
        finally:
            self._busy = False

    def __len__(self):
        return self._session_count

    # ---------------------------------------------------------------- dispatch

    def dispatch(self, int64_t now_ms):
        """One pass at ``now_ms``: expiries, then offers (see the reference's
        module doc). Returns an ``array('q')`` of 4-int records.

        O(due timers log n + examined groups log groups + (matches + examined
        groups) x members).
        """
        cdef array.array records
        self._enter()
        try:
            self.passes += 1
            self._pass_ms = now_ms
            self._out_count = 0
            if self._dirty_count + self._dirty_group_count > GIL_FREE_PASS:
                with nogil:  # a long pass: let other threads run meanwhile
                    self._pass(now_ms)
            elif self._has_work(now_ms):  # most passes have none at all
                self._pass(now_ms)
            records = array.clone(_RECORDS, self._out_count, False)
            if self._out_count:
                memcpy(records.data.as_voidptr, self._out, <size_t>self._out_count * sizeof(int64_t))
            if QROUTE_DEBUG:
                self._verify()
            return records
        finally:
            self._busy = False

    cdef inline bint _has_work(self, int64_t now_ms) noexcept:
        """A timer is due or something is to be examined."""
        return (self._dirty_count or self._dirty_group_count
                or _timer_due(&self._guard_heap, now_ms) or _timer_due(&self._ring_heap, now_ms)
                or _timer_due(&self._wrapup_heap, now_ms) or _timer_due(&self._timeout_heap, now_ms)
                or _timer_due(&self._expansion_heap, now_ms))

    cdef int _pass(self, int64_t now_ms) except -1 nogil:
        cdef Timer timer
        cdef Queue* queue
        self._expire_guards(now_ms)
        self._expire_rings(now_ms)
        self._expire_wrapups(now_ms)
        self._expire_timeouts(now_ms)
        while _timer_next(&self._expansion_heap, now_ms, &timer):
            if timer.a < self._queue_cap:
                queue = &self._queues[timer.a]
                if queue.exists and queue.expansion_due_ms == timer.at:
                    queue.expansion_due_ms = NO_TIER_LIMIT
                    self._mark_all(timer.a)
        if self._dirty_count or self._dirty_group_count:
            self._match(now_ms)
        return 0

    cdef int _match(self, int64_t now_ms) except -1 nogil:
        cdef Py_ssize_t i, j, k, picked, marked, serving
        cdef bint collected = False
        cdef int32_t qi, session, r, skip
        cdef Queue* queue
        cdef Queue* other
        cdef Group* group
        cdef Recipient* recipient
        cdef const Candidate* best = NULL
        cdef Candidate top
        # The dirty queue list does not change until the loop ends (offers
        # only make recipients ineligible): it is also the list of examined
        # queues; the dirty group list neither (emptied at the end). _serving
        # lists the queues of the candidates (each once); ``serving`` counts
        # those still marked, i.e. with a free member.
        for i in range(self._dirty_count):
            queue = &self._queues[self._dirty[i]]
            if queue.free_count:  # read below: the heads now, the members if a head is tried
                _prefetch_range(queue.live, <size_t>queue.live_count * sizeof(LiveHead))
                _prefetch_range(queue.members, <size_t>queue.member_count * sizeof(Member))
        marked = self._heads(False, -1, &best)
        serving = marked
        self._candidate_count = 0
        # Most passes end with their first candidate (a freed recipient takes
        # it and its queues have nobody free left): it is found by a scan of
        # the heads, and the candidates are listed and ordered as a heap only
        # if the pass goes on.
        if best != NULL:
            top = best[0]
            while True:
                qi = top.queue
                queue = &self._queues[qi]
                skip = -1
                if queue.free_count:
                    session = top.session
                    group = &self._groups[top.group]
                    _prefetch(group)  # popped below if a recipient is found
                    _prefetch(&self._sessions[session])
                    picked = self._select(qi, &self._reqsets[top.reqset], top.entered_at, now_ms)
                    if not picked:
                        # The group's later sessions need the same and waited less;
                        # look again when the head's wait reaches a tier expansion.
                        self._note_expansion(qi, _next_expansion(queue, top.entered_at, now_ms))
                        skip = top.group
                    else:
                        _prefetch(&group.entries[group.start + 1])  # the next head, read below
                        group.start += 1  # pop the head
                        group.count -= 1
                        if group.count == 0:
                            group.start = 0
                        for k in range(picked):
                            r = queue.members[self._picked[k]].recipient
                            self._make_offer(session, r, qi, now_ms)
                            recipient = &self._recipients[r]
                            for j in range(recipient.queue_count):
                                other = &self._queues[recipient.queues[j].queue]
                                # the offer took the last free member of a queue listed
                                if other.serving_mark and not other.free_count:
                                    other.serving_mark = False
                                    serving -= 1
                        if group.count:
                            self._set_head(top.group)
                            if collected:  # room for it: the pop freed a slot
                                self._candidates[self._candidate_count] = queue.live[group.live_slot - 1].head
                                self._candidate_count += 1
                                _cand_sift_up(self._candidates, self._candidate_count - 1)
                        else:
                            self._unlive(top.group)
                        if not serving:
                            break  # every candidate left would be skipped: nobody free in its queue
                if not collected:
                    # The rest as a heap: the same heads again (but the one just
                    # tried, if it found nobody; its group's new head if served).
                    self._heads(True, skip, NULL)
                    _cand_heapify(self._candidates, self._candidate_count)
                    collected = True
                if not self._candidate_count:
                    break
                top = self._candidates[0]
                self._candidate_count -= 1
                if self._candidate_count:
                    self._candidates[0] = self._candidates[self._candidate_count]
                    _cand_sift_down(self._candidates, self._candidate_count, 0)
        self._dirty_group_count = 0
        for i in range(marked):
            self._queues[self._serving[i]].serving_mark = False
        for i in range(self._dirty_count):
            queue = &self._queues[self._dirty[i]]
            if queue.examine_all:
                self._plan_expansion(self._dirty[i], now_ms)
            queue.dirty_slot = 0
            queue.examine_all = False
            memset(queue.arrivals, 0, sizeof(queue.arrivals))
        self._dirty_count = 0
        return 0

    cdef Py_ssize_t _heads(self, bint collect, int32_t skip, const Candidate** best) except -1 nogil:
        """The candidates of a pass: the heads of a dirty queue's groups that
        its arrivals may serve, then the heads of the dirty groups their
        queue does not list so, where the queue has a free member; never the
        group ``skip``. With ``collect`` they are added to ``_candidates``;
        otherwise ``*best`` is set to the first of them in the global order
        (NULL: none), their queues are listed in ``_serving`` and marked,
        the dirty groups are unmarked, and the count of queues listed is
        returned. Between the two calls of a pass the heads may only have
        moved on (offers and pops) and queues lost free members."""
        cdef Py_ssize_t i, j, count, marked = 0
        cdef bint listed
        cdef Queue* queue
        cdef Group* group
        cdef const Candidate* head
        # Locals, not fields, in the loop over the heads: the compiler keeps
        # them in registers (a store through a pointer could alias them).
        cdef const Candidate* first = NULL
        cdef const LiveHead* live
        cdef Candidate* out
        cdef const ReqSet* reqsets = self._reqsets
        for i in range(self._dirty_count):
            queue = &self._queues[self._dirty[i]]
            if not queue.free_count:
                continue
            live = queue.live
            listed = False
            if collect:
                _grow(<void**>&self._candidates, &self._candidate_cap,
                      self._candidate_count + queue.live_count, sizeof(Candidate), False)
                out = self._candidates
                count = self._candidate_count
                for j in range(queue.live_count):
                    if _head_arrived(queue, &live[j], reqsets) and live[j].head.group != skip:
                        out[count] = live[j].head
                        count += 1
                self._candidate_count = count
                continue
            for j in range(queue.live_count):
                if not _head_arrived(queue, &live[j], reqsets):
                    continue
                listed = True
                if first == NULL or _cand_lt(&live[j].head, first):
                    first = &live[j].head
            if listed:
                self._serving[marked] = self._dirty[i]
                marked += 1
                queue.serving_mark = True
        if collect:
            _grow(<void**>&self._candidates, &self._candidate_cap,
                  self._candidate_count + self._dirty_group_count, sizeof(Candidate), False)
        for i in range(self._dirty_group_count):
            group = &self._groups[self._dirty_groups[i]]
            queue = &self._queues[group.queue]
            group.dirty_slot = 0
            if (not group.live_slot or not queue.free_count or self._dirty_groups[i] == skip
                    or (queue.dirty_slot and self._arrived_for(queue, group.reqset))):
                continue  # emptied, nobody free, or listed above
            head = &queue.live[group.live_slot - 1].head
            if collect:
                self._candidates[self._candidate_count] = head[0]
                self._candidate_count += 1
                continue
            if first == NULL or _cand_lt(head, first):
                first = head
            if not queue.serving_mark:
                self._serving[marked] = group.queue
                marked += 1
                queue.serving_mark = True
        if not collect:
            best[0] = first
        return marked

    cdef inline bint _arrived_for(self, const Queue* queue, int32_t reqset) noexcept nogil:
        """A dirty queue examines the group: some recipient that became
        available to it has every skill the group needs (or examine_all).
        _head_arrived is the same test on a live head."""
        cdef const uint64_t* needs = self._reqsets[reqset].mask
        return ((needs[0] & ~queue.arrivals[0]) | (needs[1] & ~queue.arrivals[1])
                | (needs[2] & ~queue.arrivals[2]) | (needs[3] & ~queue.arrivals[3])) == 0

    cdef inline void _set_head(self, int32_t group_id) noexcept nogil:
        """Copy the live group's head into its queue's list (after it changed)."""
        cdef Group* group = &self._groups[group_id]
        cdef Entry* entry = &group.entries[group.start]
        cdef LiveHead* live = &self._queues[group.queue].live[group.live_slot - 1]
        live.head.priority = group.priority
        live.head.entered_at = entry.entered_at
        live.head.seq = entry.seq
        live.head.session = entry.session
        live.head.group = group_id
        live.head.queue = group.queue
        live.head.reqset = group.reqset
        live.needs0 = self._reqsets[group.reqset].mask[0]
        live.wide = (self._reqsets[group.reqset].mask[1] | self._reqsets[group.reqset].mask[2]
                     | self._reqsets[group.reqset].mask[3]) != 0

    cdef Py_ssize_t _candidates_of(self, const Queue* queue, const ReqSet* needs,
                                   int64_t max_tier) noexcept nogil:
        """Put the members of ``queue`` that could serve a session with
        ``needs`` now at tier at most ``max_tier``, those of the lowest tier
        (positions, in member order), in ``_picked``; return how many."""
        cdef int64_t best_tier = NO_TIER_LIMIT
        cdef Py_ssize_t i, count = 0
        cdef int64_t unseen = queue.free_count  # free members not reached yet
        cdef const Member* member
        cdef int32_t* picked = self._picked
        for i in range(queue.member_count):
            if not unseen:
                break  # under churn one member is free: stop where it stands
            member = &queue.members[i]
            if not member.ready or not member.eligible:
                continue
            unseen -= 1
            if member.tier > max_tier or member.tier > best_tier:
                continue
            if not _covers(&self._recipients[member.recipient], needs):
                continue
            if member.tier < best_tier:
                best_tier = member.tier
                count = 0
            picked[count] = <int32_t>i
            count += 1
        return count

    cdef Py_ssize_t _select(self, int32_t qi, const ReqSet* needs, int64_t entered_at,
                            int64_t now_ms) noexcept nogil:
        """Put the members a session with ``needs`` that entered at
        ``entered_at`` is offered to (positions) in ``_picked`` and return how
        many, by the queue's router."""
        cdef Queue* queue = &self._queues[qi]
        cdef Py_ssize_t i, count, chosen
        cdef Recipient* recipient
        cdef int32_t* picked = self._picked
        cdef uint64_t value
        cdef int64_t metric, best_metric = 0, idle, best_idle = 0
        cdef int router
        count = self._candidates_of(queue, needs, _allowed_tier(queue, entered_at, now_ms))
        if count == 0:
            return 0
        router = queue.router
        if router == RT_RING_ALL:
            return count
        chosen = picked[0]
        if router == RT_ROUND_ROBIN:
            for i in range(count):
                if queue.members[picked[i]].order >= queue.cursor:
                    chosen = picked[i]
                    break
            queue.cursor = queue.members[chosen].order + 1
        elif router == RT_LINEAR:
            pass
        elif router == RT_RANDOM:
            value = _splitmix64(&self._rng_state)
            chosen = picked[value % <uint64_t>count]
        else:
            # min by (metric, idle_since, member order); picked is in member order
            for i in range(count):
                recipient = &self._recipients[queue.members[picked[i]].recipient]
                metric = _metric(router, recipient, needs)
                idle = recipient.idle_since
                if i == 0 or metric < best_metric or (metric == best_metric and idle < best_idle):
                    best_metric = metric
                    best_idle = idle
                    chosen = picked[i]
        picked[0] = <int32_t>chosen
        return 1

    cdef int _plan_expansion(self, int32_t qi, int64_t now_ms) except -1 nogil:
        """Remember when the next group head's wait reaches a rule, so the
        queue is examined again then (after a pass examined all its groups)."""
        cdef Queue* queue = &self._queues[qi]
        cdef int64_t due = NO_TIER_LIMIT, at
        cdef Py_ssize_t i
        if not queue.rule_count:
            return 0
        for i in range(queue.live_count):
            at = _next_expansion(queue, queue.live[i].head.entered_at, now_ms)
            if at < due:
                due = at
        queue.expansion_due_ms = NO_TIER_LIMIT
        self._note_expansion(qi, due)
        return 0

    cdef int _note_expansion(self, int32_t qi, int64_t due) except -1 nogil:
        cdef Queue* queue = &self._queues[qi]
        if due < queue.expansion_due_ms:
            queue.expansion_due_ms = due
            _timer_push(&self._expansion_heap, due, qi, 0)
        return 0

    cdef int _make_offer(self, int32_t s, int32_t r, int32_t qi, int64_t now_ms) except -1 nogil:
        cdef Recipient* recipient = &self._recipients[r]
        recipient.state = ST_OFFERED
        recipient.offer_session = s
        recipient.ring_deadline = now_ms + self._queues[qi].ring_timeout_ms
        recipient.offers += 1
        self._link_offer(s, r)
        self._refresh(r)
        _timer_push(&self._ring_heap, recipient.ring_deadline, s, r)
        self.matches += 1
        self._emit(K_OFFER, s, r, self._sessions[s].queue)
        return 0

    cdef int _emit(self, int64_t kind, int64_t s, int64_t r, int64_t q) except -1 nogil:
        cdef int64_t* out
        if self._out_count + C_RECORD_SIZE > self._out_cap:
            _grow(<void**>&self._out, &self._out_cap, self._out_count + C_RECORD_SIZE,
                  sizeof(int64_t), False)
        out = &self._out[self._out_count]
        out[0] = kind
        out[1] = s
        out[2] = r
        out[3] = q
        self._out_count += C_RECORD_SIZE
        return 0

    # ------------------------------------------------------------------ timers

    cdef inline Recipient* _timer_recipient(self, int32_t r) noexcept nogil:
        """The recipient a timer names, or NULL if it was removed since."""
        if r >= self._recipient_cap or not self._recipients[r].exists:
            return NULL
        return &self._recipients[r]

    cdef int _expire_guards(self, int64_t now_ms) except -1 nogil:
        cdef Timer timer
        cdef Recipient* recipient
        while _timer_next(&self._guard_heap, now_ms, &timer):
            recipient = self._timer_recipient(timer.a)
            if recipient != NULL and recipient.in_guard and recipient.guard_until == timer.at:
                recipient.in_guard = False
                self._touch(timer.a)
        return 0

    cdef int _expire_rings(self, int64_t now_ms) except -1 nogil:
        cdef Timer timer
        cdef Recipient* recipient
        cdef int32_t s, r, q
        cdef int outcome
        while _timer_next(&self._ring_heap, now_ms, &timer):
            s = timer.a
            r = timer.b
            recipient = self._timer_recipient(r)
            if (recipient == NULL or recipient.state != ST_OFFERED or recipient.offer_session != s
                    or recipient.ring_deadline != timer.at):
                continue
            q = self._sessions[s].queue
            self._emit(K_MISSED, s, r, q)
            outcome = self._decline(s, r, timer.at, True)
            if outcome & 2:
                self._emit(K_BOUNCED, s, r, q)
        return 0

    cdef int _expire_wrapups(self, int64_t now_ms) except -1 nogil:
        cdef Timer timer
        cdef Recipient* recipient
        while _timer_next(&self._wrapup_heap, now_ms, &timer):
            recipient = self._timer_recipient(timer.a)
            if recipient != NULL and recipient.state == ST_WRAPUP and recipient.wrapup_until == timer.at:
                self._free(timer.a, timer.at, now_ms)
                self._emit(K_WRAPUP_END, -1, timer.a, -1)
        return 0

    cdef int _expire_timeouts(self, int64_t now_ms) except -1 nogil:
        cdef Timer timer
        cdef Session* session
        while _timer_next(&self._timeout_heap, now_ms, &timer):
            if timer.a >= self._session_cap:
                continue
            session = &self._sessions[timer.a]
            if not session.exists or session.deadline != timer.at:
                continue
            if session.offer_count:
                session.timeout_pending = True  # decided when the offer ends
                continue
            self._unwait(timer.a)
            self._forget(timer.a)
            self._emit(K_TIMEOUT, timer.a, -1, session.queue)
        return 0

    # ---------------------------------------------------------------- helpers

    cdef inline int _enter(self) except -1:
        """Every method holds the dispatcher until it returns (its caller
        clears ``_busy`` in a ``finally``). A pass runs without the GIL, and a
        method of another thread could otherwise resume in the middle of it
        (or a pass start while that method waits in Python code): such a call
        raises instead. One thread at a time, as with the reference."""
        if self._busy:
            raise RuntimeError("the dispatcher is in use by another call (another thread?)")
        self._busy = True
        return 0

    cdef Py_ssize_t _queue_index(self, q) except -1:
        cdef Py_ssize_t qi = _handle_index(q)
        if qi < 0 or qi >= self._queue_cap or not self._queues[qi].exists:
            raise KeyError(f"unknown queue {q}")
        return qi

    cdef Py_ssize_t _recipient_index(self, r) except -1:
        cdef Py_ssize_t ri = _handle_index(r)
        if ri < 0 or ri >= self._recipient_cap or not self._recipients[ri].exists:
            raise KeyError(f"unknown recipient {r}")
        return ri

    cdef Recipient* _recipient(self, r, Py_ssize_t* ri) except NULL:
        """Recipient ``r`` (KeyError if unknown), its index in ``*ri``."""
        ri[0] = self._recipient_index(r)
        return &self._recipients[ri[0]]

    cdef Py_ssize_t _session_index(self, s) except -1:
        cdef Py_ssize_t si = _handle_index(s)
        if si < 0 or si >= self._session_cap or not self._sessions[si].exists:
            raise KeyError(f"unknown session {s}")
        return si

    cdef int _offer_of(self, s, r, Py_ssize_t* si, Py_ssize_t* ri) except -1:
        """``*si`` and ``*ri`` for an outstanding offer of ``s`` to ``r``."""
        cdef Recipient* recipient
        si[0] = self._session_index(s)
        ri[0] = self._recipient_index(r)
        recipient = &self._recipients[ri[0]]
        if recipient.state != ST_OFFERED or recipient.offer_session != si[0]:
            raise ValueError(f"recipient {r} holds no offer of session {s}")
        return 0

    cdef list _offered(self, int32_t s):
        """The recipients offered ``s``, ascending."""
        cdef int32_t r = self._sessions[s].offer_head
        cdef list offered = []
        if r < 0:
            return offered
        while r >= 0:
            offered.append(r)
            r = self._recipients[r].offer_next
        if len(offered) > 1:  # RING_ALL; one offer is the usual case
            offered.sort()
        return offered

    cdef int _reserve_queue(self, Py_ssize_t qi) except -1:
        _grow(<void**>&self._dirty, &self._dirty_cap, qi + 1, sizeof(int32_t), False)
        _grow(<void**>&self._serving, &self._serving_cap, qi + 1, sizeof(int32_t), False)
        _grow_aligned(&self._queue_block, <void**>&self._queues, &self._queue_cap, qi + 1, sizeof(Queue))
        return 0

    cdef int _reserve_recipient(self, Py_ssize_t ri) except -1:
        _grow_aligned(&self._recipient_block, <void**>&self._recipients, &self._recipient_cap, ri + 1,
                      sizeof(Recipient))
        return 0

    cdef int _reserve_session(self, Py_ssize_t si) except -1:
        _grow_aligned(&self._session_block, <void**>&self._sessions, &self._session_cap, si + 1,
                      sizeof(Session))
        return 0

    cdef int32_t _reqset_of(self, skills) except -1:
        """The interned requirement set of a session's ``skills``, checked
        as the reference does. O(skills) (a hash lookup)."""
        cdef SkillNeed buffer[C_MAX_SKILLS]
        cdef SkillNeed* needs = buffer
        cdef Py_ssize_t i, count = _dict_needs(skills, buffer)
        if count >= 0:
            return self._intern_reqset(needs, count)
        items = _skill_items(skills, "session skills")
        count = len(items)  # a Mapping other than a dict may repeat a skill
        if count > C_MAX_SKILLS:
            needs = <SkillNeed*>PyMem_RawMalloc(<size_t>count * sizeof(SkillNeed))
            if needs == NULL:
                raise MemoryError()
        try:
            for i in range(count):
                needs[i].skill = <uint8_t>items[i][0]
                needs[i].level = <uint8_t>items[i][1]
            return self._intern_reqset(needs, count)
        finally:
            if needs != buffer:
                PyMem_RawFree(needs)

    cdef Py_ssize_t _reqset_slot(self, const SkillNeed* needs, Py_ssize_t count,
                                 uint64_t hash) noexcept nogil:
        """The table slot holding that requirement set's id, or the empty
        slot where it would go (the table must have one)."""
        cdef const ReqSetTable* table = &self._reqset_table
        cdef Py_ssize_t mask = table.size - 1
        cdef Py_ssize_t slot = <Py_ssize_t>(hash & <uint64_t>mask)
        cdef const ReqSet* reqset
        while table.slots[slot] >= 0:
            reqset = &self._reqsets[table.slots[slot]]
            if reqset.hash == hash and reqset.count == count and _same_needs(_pairs(reqset), needs, count):
                break
            slot = (slot + 1) & mask
        return slot

    cdef int32_t _intern_reqset(self, const SkillNeed* needs, Py_ssize_t count) except -1:
        """The id of the requirement set ``needs`` (sorted pairs), added if new."""
        cdef ReqSetTable* table = &self._reqset_table
        cdef uint64_t hash = _needs_hash(needs, count)
        cdef Py_ssize_t i, slot, mask
        cdef ReqSet* reqset
        cdef int32_t* old_slots
        if (self._reqset_count + 1) * 2 > table.size:  # room for one more at load <= 1/2
            old_slots = table.slots
            table.slots = <int32_t*>PyMem_RawMalloc(<size_t>(table.size * 2 if table.size else 16)
                                                    * sizeof(int32_t))
            if table.slots == NULL:
                table.slots = old_slots
                raise MemoryError()
            PyMem_RawFree(old_slots)
            table.size = table.size * 2 if table.size else 16
            memset(table.slots, 0xFF, <size_t>table.size * sizeof(int32_t))  # all -1
            mask = table.size - 1
            for i in range(self._reqset_count):
                slot = <Py_ssize_t>(self._reqsets[i].hash & <uint64_t>mask)
                while table.slots[slot] >= 0:
                    slot = (slot + 1) & mask
                table.slots[slot] = <int32_t>i
        slot = self._reqset_slot(needs, count, hash)
        if table.slots[slot] >= 0:
            return table.slots[slot]
        _grow(<void**>&self._reqsets, &self._reqset_cap, self._reqset_count + 1, sizeof(ReqSet), True)
        reqset = &self._reqsets[self._reqset_count]
        memset(reqset, 0, sizeof(ReqSet))
        if count > INLINE_NEEDS:
            reqset.needs = <SkillNeed*>PyMem_RawMalloc(<size_t>count * sizeof(SkillNeed))
            if reqset.needs == NULL:
                raise MemoryError()
        reqset.count = <int32_t>count  # before _pairs, which it selects
        memcpy(<SkillNeed*>_pairs(reqset), needs, <size_t>count * sizeof(SkillNeed))
        for i in range(count):
            reqset.mask[needs[i].skill >> 6] |= (<uint64_t>1) << (needs[i].skill & 63)
            if needs[i].level > 1:
                reqset.above_one = True
        reqset.hash = hash
        table.slots[slot] = <int32_t>self._reqset_count
        self._reqset_count += 1
        return <int32_t>(self._reqset_count - 1)

    cdef int32_t _find_group(self, int32_t qi, const SkillNeed* needs, Py_ssize_t count,
                             uint64_t needs_hash, int64_t priority) noexcept nogil:
        """The existing group of (queue, the requirement set of ``needs``,
        priority), or -1. O(1). Asks for the group's last entry as soon as
        the group is found (enqueue compares with it next)."""
        cdef const GroupTable* table = &self._group_table
        cdef uint32_t home = _group_hash(qi, needs_hash, priority)
        cdef Py_ssize_t mask = table.size - 1, slot
        cdef Group* group
        cdef const ReqSet* reqset
        if not table.size:
            return -1
        slot = <Py_ssize_t>(home & <uint64_t>mask)
        while table.slots[slot] >= 0:
            group = &self._groups[table.slots[slot]]
            if group.home == home and group.queue == qi and group.priority == priority:
                if group.count:
                    _prefetch(&group.entries[group.start + group.count - 1])
                reqset = &self._reqsets[group.reqset]
                if reqset.hash == needs_hash and reqset.count == count and _same_needs(_pairs(reqset), needs, count):
                    return table.slots[slot]
            slot = (slot + 1) & mask
        return -1

    cdef int32_t _group_for(self, int32_t qi, int32_t reqset, int64_t priority) except -1:
        """The group of (queue, requirement set, priority), created if needed. O(1)."""
        cdef int32_t group_id
        cdef Py_ssize_t slot
        cdef Group* group
        cdef uint32_t home = _group_hash(qi, self._reqsets[reqset].hash, priority)
        if self._group_table.size:
            slot = _table_slot(&self._group_table, self._groups, qi, reqset, priority, home)
            if self._group_table.slots[slot] >= 0:
                return self._group_table.slots[slot]
        _table_reserve(&self._group_table, self._groups, self._group_table.count + 1)
        if self._free_group_count:
            self._free_group_count -= 1
            group_id = self._free_groups[self._free_group_count]
        else:
            _grow_aligned(&self._group_block, <void**>&self._groups, &self._group_cap, self._group_used + 1,
                          sizeof(Group))
            _grow(<void**>&self._free_groups, &self._free_group_cap, self._group_used + 1,
                  sizeof(int32_t), False)
            _grow(<void**>&self._dirty_groups, &self._dirty_group_cap, self._group_used + 1,
                  sizeof(int32_t), False)
            _grow(<void**>&self._group_stamps, &self._group_stamp_cap, self._group_used + 1,
                  sizeof(int64_t), False)
            group_id = <int32_t>self._group_used
            self._group_used += 1
        group = &self._groups[group_id]
        memset(group, 0, sizeof(Group))
        group.in_use = True
        group.queue = qi
        group.reqset = reqset
        group.priority = priority
        group.home = home
        slot = _table_slot(&self._group_table, self._groups, qi, reqset, priority, home)
        self._group_table.slots[slot] = group_id
        self._group_table.count += 1
        return group_id

    cdef void _remove_member(self, int32_t qi, Py_ssize_t mi) noexcept nogil:
        cdef Queue* queue = &self._queues[qi]
        cdef Member member = queue.members[mi]
        cdef Recipient* recipient = &self._recipients[member.recipient]
        cdef Py_ssize_t j, k
        cdef Recipient* moved
        self._drop_ref(member.recipient, qi)
        memmove(&queue.members[mi], &queue.members[mi + 1],
                <size_t>(queue.member_count - mi - 1) * sizeof(Member))
        queue.member_count -= 1
        for j in range(mi, queue.member_count):
            moved = &self._recipients[queue.members[j].recipient]
            for k in range(moved.queue_count):
                if moved.queues[k].queue == qi:
                    moved.queues[k].member = <int32_t>j
                    break
        if member.ready and recipient.eligible:
            queue.free_count -= 1

    cdef void _drop_ref(self, int32_t r, int32_t qi) noexcept nogil:
        cdef Recipient* recipient = &self._recipients[r]
        cdef Py_ssize_t k
        for k in range(recipient.queue_count):
            if recipient.queues[k].queue == qi:
                recipient.queue_count -= 1
                recipient.queues[k] = recipient.queues[recipient.queue_count]
                return

    cdef void _link_offer(self, int32_t s, int32_t r) noexcept nogil:
        cdef Session* session = &self._sessions[s]
        cdef Recipient* recipient = &self._recipients[r]
        recipient.offer_prev = -1
        recipient.offer_next = session.offer_head
        if session.offer_head >= 0:
            self._recipients[session.offer_head].offer_prev = r
        session.offer_head = r
        session.offer_count += 1

    cdef void _unlink_offer(self, int32_t s, int32_t r) noexcept nogil:
        cdef Session* session = &self._sessions[s]
        cdef Recipient* recipient = &self._recipients[r]
        if recipient.offer_prev >= 0:
            self._recipients[recipient.offer_prev].offer_next = recipient.offer_next
        else:
            session.offer_head = recipient.offer_next
        if recipient.offer_next >= 0:
            self._recipients[recipient.offer_next].offer_prev = recipient.offer_prev
        recipient.offer_prev = -1
        recipient.offer_next = -1
        session.offer_count -= 1

    cdef int _decline(self, int32_t s, int32_t r, int64_t at_ms, bint missed) except -1 nogil:
        """Returns 1 if ``s`` went back in line, | 2 if ``r`` bounced."""
        cdef Recipient* recipient = &self._recipients[r]
        cdef int outcome = 0
        recipient.state = ST_FREE
        recipient.offer_session = -1
        recipient.idle_since = at_ms
        if missed:
            recipient.misses += 1
            if recipient.bounce_limit and recipient.misses >= recipient.bounce_limit:
                recipient.ready = False
                recipient.misses = 0
                outcome = 2
        self._touch(r)
        if self._withdraw(s, r):
            outcome |= 1
        return outcome

    cdef int _withdraw(self, int32_t s, int32_t r) except -1 nogil:
        """Drop ``r`` from ``s``'s offers; back in line when none is left.
        Returns 1 if ``s`` went back in line."""
        cdef Session* session = &self._sessions[s]
        cdef Recipient* recipient = &self._recipients[r]
        self._unlink_offer(s, r)
        if recipient.state == ST_OFFERED:
            recipient.state = ST_FREE
            recipient.offer_session = -1
            self._touch(r)
        if session.offer_count:
            return 0
        if session.timeout_pending:
            session.timeout_pending = False
            _timer_push(&self._timeout_heap, session.deadline, s, 0)
        self._wait(s)
        return 1

    cdef int _wait(self, int32_t s) except -1 nogil:
        cdef Session* session = &self._sessions[s]
        cdef Group* group = &self._groups[session.group]
        cdef Queue* queue = &self._queues[session.queue]
        if group.count == 0:
            # Like the reference creating the group anew: last in dict order.
            _grow(<void**>&queue.live, &queue.live_cap, queue.live_count + 1, sizeof(LiveHead), False)
            queue.live_count += 1
            group.live_slot = <int32_t>queue.live_count
            self._stamp += 1
            self._group_stamps[session.group] = self._stamp
        if _entries_insert(group, session.entered_at, session.seq, s) == group.start:
            self._set_head(session.group)
            self._mark_group(session.group)  # a new head
        return 0

    cdef void _unwait(self, int32_t s) noexcept nogil:
        cdef Session* session = &self._sessions[s]
        cdef Group* group = &self._groups[session.group]
        cdef Py_ssize_t pos = _entries_find(group, session.entered_at, session.seq, s)
        cdef bint was_head = pos == group.start
        _entries_remove_at(group, pos)
        if group.count == 0:
            self._unlive(session.group)
        elif was_head:
            self._set_head(session.group)

    cdef void _unlive(self, int32_t group_id) noexcept nogil:
        """The group has no waiting session left: off its queue's list."""
        cdef Group* group = &self._groups[group_id]
        cdef Queue* queue = &self._queues[group.queue]
        cdef Py_ssize_t pos = group.live_slot - 1
        queue.live[pos] = queue.live[queue.live_count - 1]
        self._groups[queue.live[pos].head.group].live_slot = <int32_t>(pos + 1)
        queue.live_count -= 1
        group.live_slot = 0
        self._unmark_group(group_id)

    cdef void _forget(self, int32_t s) noexcept nogil:
        cdef Session* session = &self._sessions[s]
        cdef Group* group = &self._groups[session.group]
        session.exists = False
        self._session_count -= 1
        self._queues[session.queue].session_count -= 1
        group.refs -= 1
        if group.refs == 0:  # no session left, waiting or under offer: free it
            _table_remove(&self._group_table, self._groups,
                          _table_slot(&self._group_table, self._groups, group.queue, group.reqset,
                                      group.priority, group.home))
            PyMem_RawFree(group.entries)
            memset(group, 0, sizeof(Group))
            self._free_groups[self._free_group_count] = session.group
            self._free_group_count += 1

    cdef int _free(self, int32_t r, int64_t at_ms, int64_t now_ms) except -1 nogil:
        cdef Recipient* recipient = &self._recipients[r]
        recipient.state = ST_FREE
        recipient.idle_since = at_ms
        self._start_guard(r, at_ms, now_ms)
        self._touch(r)
        return 0

    cdef int _start_guard(self, int32_t r, int64_t at_ms, int64_t now_ms) except -1 nogil:
        cdef Recipient* recipient = &self._recipients[r]
        cdef int64_t until = at_ms + recipient.guard_ms
        recipient.guard_until = until
        recipient.in_guard = until > now_ms
        if recipient.in_guard:
            _timer_push(&self._guard_heap, until, r, 0)
        return 0

    cdef void _touch(self, int32_t r) noexcept nogil:
        """Re-derive eligibility; an eligible recipient makes the groups it
        has the skills for in each of its queues worth examining."""
        cdef Recipient* recipient = &self._recipients[r]
        cdef Py_ssize_t k
        self._refresh(r)
        if recipient.eligible:
            for k in range(recipient.queue_count):
                self._mark_arrival(recipient.queues[k].queue, recipient.skill_mask)

    cdef void _refresh(self, int32_t r) noexcept nogil:
        cdef Recipient* recipient = &self._recipients[r]
        cdef bint eligible = recipient.ready and recipient.state == ST_FREE and not recipient.in_guard
        cdef int step
        cdef Py_ssize_t k
        cdef QueueRef* ref
        cdef Member* member
        if eligible == recipient.eligible:
            return
        recipient.eligible = eligible
        step = 1 if eligible else -1
        self._eligible_total += step
        for k in range(recipient.queue_count):  # the lines written below, all at once
            ref = &recipient.queues[k]
            _prefetch(&self._queues[ref.queue].free_count)
            _prefetch(&self._queues[ref.queue].members[ref.member])
        for k in range(recipient.queue_count):
            ref = &recipient.queues[k]
            member = &self._queues[ref.queue].members[ref.member]
            member.eligible = eligible
            if member.ready:
                self._queues[ref.queue].free_count += step

    cdef inline void _mark_dirty(self, int32_t qi) noexcept nogil:
        # The list has room for every existing queue (_reserve_queue).
        cdef Queue* queue = &self._queues[qi]
        if not queue.dirty_slot:
            self._dirty[self._dirty_count] = qi
            self._dirty_count += 1
            queue.dirty_slot = self._dirty_count

    cdef void _mark_all(self, int32_t qi) noexcept nogil:
        """Every group of queue ``qi`` is examined at the next pass."""
        cdef Queue* queue = &self._queues[qi]
        self._mark_dirty(qi)
        queue.examine_all = True
        memset(queue.arrivals, 0xFF, sizeof(queue.arrivals))

    cdef inline void _mark_arrival(self, int32_t qi, const uint64_t* skill_mask) noexcept nogil:
        """A recipient with ``skill_mask`` became available to queue ``qi``."""
        cdef Queue* queue = &self._queues[qi]
        self._mark_dirty(qi)
        queue.arrivals[0] |= skill_mask[0]
        queue.arrivals[1] |= skill_mask[1]
        queue.arrivals[2] |= skill_mask[2]
        queue.arrivals[3] |= skill_mask[3]

    cdef inline void _mark_group(self, int32_t group_id) noexcept nogil:
        # The list has room for every group id (_group_for).
        cdef Group* group = &self._groups[group_id]
        if not group.dirty_slot:
            self._dirty_groups[self._dirty_group_count] = group_id
            self._dirty_group_count += 1
            group.dirty_slot = <int32_t>self._dirty_group_count

    cdef void _unmark_group(self, int32_t group_id) noexcept nogil:
        cdef Group* group = &self._groups[group_id]
        cdef int32_t moved
        if not group.dirty_slot:
            return
        moved = _slot_remove(self._dirty_groups, &self._dirty_group_count, group.dirty_slot)
        self._groups[moved].dirty_slot = group.dirty_slot
        group.dirty_slot = 0

    cdef void _mark_clean(self, int32_t qi) noexcept nogil:
        cdef Queue* queue = &self._queues[qi]
        cdef int32_t moved
        if not queue.dirty_slot:
            return
        moved = _slot_remove(self._dirty, &self._dirty_count, queue.dirty_slot)
        self._queues[moved].dirty_slot = queue.dirty_slot
        queue.dirty_slot = 0
        queue.examine_all = False
        memset(queue.arrivals, 0, sizeof(queue.arrivals))

    # -------------------------------------------------------------- invariants

    def _check(self):
        """Assert every internal invariant; O(everything). For tests."""
        self._enter()
        try:
            self._verify()
        finally:
            self._busy = False

    cdef int _verify(self) except -1:
        cdef Py_ssize_t q, r, s, i, j, k
        cdef Queue* queue
        cdef Recipient* recipient
        cdef Session* session
        cdef Group* group
        cdef Member* member
        cdef int32_t x
        cdef int64_t at
        expansions = _heap_items(&self._expansion_heap)
        eligible_total = 0
        sessions_per_queue = {}
        refs_per_group = {}
        waiting = 0
        session_total = 0
        for s in range(self._session_cap):
            session = &self._sessions[s]
            if not session.exists:
                continue
            session_total += 1
            _require(0 <= session.queue < self._queue_cap and self._queues[session.queue].exists,
                     "session {} queue", (s,))
            sessions_per_queue[session.queue] = sessions_per_queue.get(session.queue, 0) + 1
            refs_per_group[session.group] = refs_per_group.get(session.group, 0) + 1
            _require(self._groups[session.group].in_use and self._groups[session.group].queue == session.queue,
                     "session {} group", (s,))
            offered = []
            x = session.offer_head
            while x >= 0:
                _require(len(offered) <= self._recipient_cap, "session {} offer list loops", (s,))
                recipient = &self._recipients[x]
                _require(recipient.exists and recipient.state == ST_OFFERED and recipient.offer_session == s,
                         "session {} offered to {}", (s, x,))
                offered.append(x)
                x = recipient.offer_next
            _require(len(offered) == session.offer_count, "session {} offer count", (s,))
            _require(len(set(offered)) == len(offered), "session {} offered twice", (s,))
            if session.offer_count:
                _require(_entries_find(&self._groups[session.group], session.entered_at, session.seq,
                                       <int32_t>s) < 0, "session {} waiting under offer", (s,))
            else:
                waiting += 1
                _require(not session.timeout_pending, "session {} pending timeout while waiting", (s,))
                _require(_entries_find(&self._groups[session.group], session.entered_at, session.seq,
                                       <int32_t>s) >= 0, "session {} not in its group", (s,))
        _require(session_total == self._session_count, "session count")
        for r in range(self._recipient_cap):
            recipient = &self._recipients[r]
            if not recipient.exists:
                continue
            expected = recipient.ready and recipient.state == ST_FREE and not recipient.in_guard
            _require(bool(recipient.eligible) == bool(expected), "recipient {} eligibility", (r,))
            eligible_total += bool(expected)
            if recipient.state == ST_OFFERED:
                _require(0 <= recipient.offer_session < self._session_cap
                         and self._sessions[recipient.offer_session].exists, "recipient {} offer", (r,))
            else:
                _require(recipient.offer_session == -1 and recipient.offer_prev == -1
                         and recipient.offer_next == -1, "recipient {} stale offer", (r,))
            for k in range(recipient.queue_count):
                q = recipient.queues[k].queue
                _require(0 <= q < self._queue_cap and self._queues[q].exists, "recipient {} queue {}", (r, q,))
                i = recipient.queues[k].member
                _require(0 <= i < self._queues[q].member_count
                         and self._queues[q].members[i].recipient == r, "recipient {} membership of {}", (r, q,))
            _require(len({recipient.queues[k].queue for k in range(recipient.queue_count)})
                     == recipient.queue_count, "recipient {} queue twice", (r,))
        _require(eligible_total == self._eligible_total, "eligible total")
        grouped = 0
        for q in range(self._queue_cap):
            queue = &self._queues[q]
            if not queue.exists:
                _require(queue.member_count == 0 and queue.live_count == 0 and not queue.dirty_slot,
                         "removed queue {} state", (q,))
                continue
            free = 0
            for i in range(queue.member_count):
                member = &queue.members[i]
                recipient = &self._recipients[member.recipient]
                _require(recipient.exists, "queue {} member {} exists", (q, member.recipient,))
                _require(_member_of(recipient, <int32_t>q) == i, "queue {} member {} ref", (q, member.recipient,))
                _require(member.eligible == recipient.eligible, "queue {} member {} eligible", (q, member.recipient,))
                if member.ready and recipient.eligible:
                    free += 1
                if i:
                    _require(queue.members[i - 1].order < member.order, "queue {} member order", (q,))
                _require(member.order < queue.next_order and member.tier >= 1, "queue {} member fields", (q,))
            _require(free == queue.free_count, "queue {} free count {} != {}", (q, queue.free_count, free,))
            _require(sessions_per_queue.get(q, 0) == queue.session_count, "queue {} session count", (q,))
            if queue.dirty_slot:
                _require(self._dirty[queue.dirty_slot - 1] == q, "queue {} dirty slot", (q,))
            else:
                _require(not queue.examine_all and not (queue.arrivals[0] | queue.arrivals[1]
                                                        | queue.arrivals[2] | queue.arrivals[3]),
                         "queue {} clean with arrivals", (q,))
            _require(not queue.serving_mark, "queue {} serving mark", (q,))
            if queue.examine_all:
                _require(queue.arrivals[0] == queue.arrivals[1] == queue.arrivals[2] == queue.arrivals[3]
                         == <uint64_t>0xFFFFFFFFFFFFFFFFULL, "queue {} examine_all mask", (q,))
            if queue.expansion_due_ms < NO_TIER_LIMIT:
                _require((queue.expansion_due_ms, q, 0) in expansions, "queue {} expansion", (q,))
            for i in range(queue.live_count):
                group = &self._groups[queue.live[i].head.group]
                _require(group.in_use and group.queue == q and group.live_slot == i + 1,
                         "queue {} live group", (q,))
                _require(queue.live[i].head.reqset == group.reqset and queue.live[i].head.queue == q
                         and queue.live[i].needs0 == self._reqsets[group.reqset].mask[0]
                         and queue.live[i].wide == ((self._reqsets[group.reqset].mask[1]
                                                     | self._reqsets[group.reqset].mask[2]
                                                     | self._reqsets[group.reqset].mask[3]) != 0)
                         and _head_arrived(queue, &queue.live[i], self._reqsets)
                         == self._arrived_for(queue, group.reqset)
                         and queue.live[i].head.priority == group.priority
                         and queue.live[i].head.entered_at == group.entries[group.start].entered_at
                         and queue.live[i].head.seq == group.entries[group.start].seq
                         and queue.live[i].head.session == group.entries[group.start].session,
                         "queue {} live head of group {}", (q, queue.live[i].head.group,))
                _require(group.count > 0, "queue {} empty group", (q,))
                grouped += group.count
                for j in range(group.start, group.start + group.count):
                    session = &self._sessions[group.entries[j].session]
                    _require(session.exists and session.group == queue.live[i].head.group
                             and session.offer_count == 0, "queue {} group entry", (q,))
                    _require(session.entered_at == group.entries[j].entered_at
                             and session.seq == group.entries[j].seq, "queue {} entry key", (q,))
                    if j > group.start:
                        _require(not _entry_key_lt(group.entries[j].entered_at, group.entries[j].seq,
                                                   group.entries[j - 1].entered_at,
                                                   group.entries[j - 1].seq), "queue {} group order", (q,))
                _require(0 <= group.start and group.start + group.count <= group.cap, "queue {} group bounds", (q,))
                _require(group.max_entered >= group.entries[group.start + group.count - 1].entered_at,
                         "queue {} group max_entered", (q,))
                if group.dirty_slot or (queue.dirty_slot and self._arrived_for(queue, group.reqset)):
                    continue
                # Not examined by the next pass: nobody can serve its head, even
                # at the tier its wait allows just before the queue's next
                # planned look (what the dirty marks and expansion plan promise).
                at = queue.expansion_due_ms - 1
                if at < self._pass_ms:
                    at = self._pass_ms
                _require(self._candidates_of(queue, &self._reqsets[group.reqset],
                                             _allowed_tier(queue, group.entries[group.start].entered_at, at)) == 0,
                         "queue {}: session {} could be served but is not marked",
                         (q, group.entries[group.start].session,))
        _require(waiting == grouped, "waiting {} != grouped {}", (waiting, grouped,))
        dirty = [self._dirty[i] for i in range(self._dirty_count)]
        _require(len(set(dirty)) == len(dirty), "dirty list duplicates")
        for i in range(self._dirty_group_count):
            group = &self._groups[self._dirty_groups[i]]
            _require(group.in_use and group.live_slot and group.dirty_slot == i + 1, "dirty group list")
        for i in range(self._dirty_count):
            _require(self._queues[self._dirty[i]].exists and self._queues[self._dirty[i]].dirty_slot == i + 1,
                     "dirty list")
        free_ids = {self._free_groups[i] for i in range(self._free_group_count)}
        _require(len(free_ids) == self._free_group_count, "free groups")
        in_use = 0
        for i in range(self._group_used):
            group = &self._groups[i]
            if not group.in_use:
                _require(i in free_ids and group.entries == NULL, "group {} freed", (i,))
                continue
            in_use += 1
            _require(i not in free_ids, "group {} in use and free", (i,))
            _require(group.refs > 0 and group.refs == refs_per_group.get(i, 0), "group {} refs", (i,))
            _require((group.live_slot > 0) == (group.count > 0), "group {} live", (i,))
            if group.dirty_slot:
                _require(group.dirty_slot <= self._dirty_group_count
                         and self._dirty_groups[group.dirty_slot - 1] == i, "group {} dirty slot", (i,))
            _require(group.home == _group_hash(group.queue, self._reqsets[group.reqset].hash, group.priority),
                     "group {} home", (i,))
            j = _table_slot(&self._group_table, self._groups, group.queue, group.reqset, group.priority, group.home)
            _require(self._group_table.slots[j] == i, "group {} not in the table", (i,))
        _require(in_use == self._group_table.count and in_use + self._free_group_count == self._group_used,
                 "group table count")
        _require(self._group_table.count * 2 <= self._group_table.size, "group table load")
        _require(self._reqset_count * 2 <= self._reqset_table.size or not self._reqset_count,
                 "reqset table load")
        slots = {self._reqset_table.slots[j] for j in range(self._reqset_table.size)} - {-1}
        _require(slots == set(range(self._reqset_count)), "reqset table ids")
        for i in range(self._reqset_count):
            _require(self._reqsets[i].hash == _needs_hash(_pairs(&self._reqsets[i]), self._reqsets[i].count),
                     "reqset {} hash", (i,))
            j = self._reqset_slot(_pairs(&self._reqsets[i]), self._reqsets[i].count, self._reqsets[i].hash)
            _require(self._reqset_table.slots[j] == i, "reqset {} not found", (i,))
        _require(sum(1 for j in range(self._group_table.size) if self._group_table.slots[j] >= 0)
                 == self._group_table.count, "group table slots")
        _check_heap(&self._ring_heap, "ring")
        _check_heap(&self._wrapup_heap, "wrapup")
        _check_heap(&self._timeout_heap, "timeout")
        _check_heap(&self._guard_heap, "guard")
        _check_heap(&self._expansion_heap, "expansion")
        # A session's timeout is scheduled unless decided when its offers end;
        # every ring timeout is.
        timeouts = _heap_items(&self._timeout_heap)
        for s in range(self._session_cap):
            session = &self._sessions[s]
            if session.exists and not session.timeout_pending:
                _require((session.deadline, s, 0) in timeouts, "session {} timeout not scheduled", (s,))
        rings = _heap_items(&self._ring_heap)
        for r in range(self._recipient_cap):
            recipient = &self._recipients[r]
            if recipient.exists and recipient.state == ST_OFFERED:
                _require((recipient.ring_deadline, recipient.offer_session, r) in rings,
                         "recipient {} ring timeout not scheduled", (r,))
        return 0


cdef inline int32_t _slot_remove(int32_t* items, Py_ssize_t* count, Py_ssize_t slot) noexcept nogil:
    """Remove the item at ``slot`` (position + 1) of an unordered list by
    moving the last one there; returns the moved item, whose slot is now
    ``slot`` (the removed item itself when it was the last)."""
    count[0] -= 1
    items[slot - 1] = items[count[0]]
    return items[slot - 1]


cdef inline int64_t _allowed_tier(const Queue* queue, int64_t entered_at, int64_t now_ms) noexcept nogil:
    cdef int64_t waited, allowed = 1
    cdef Py_ssize_t i
    if not queue.rule_count:
        return NO_TIER_LIMIT
    waited = now_ms - entered_at
    for i in range(queue.rule_count):
        if queue.rules[i].after_ms <= waited and queue.rules[i].max_tier > allowed:
            allowed = queue.rules[i].max_tier
    return allowed


cdef inline const SkillNeed* _pairs(const ReqSet* reqset) noexcept nogil:
    """The (skill, level) pairs of ``reqset``."""
    if reqset.count > INLINE_NEEDS:
        return reqset.needs
    return &reqset.inline_needs[0]


cdef inline bint _same_needs(const SkillNeed* a, const SkillNeed* b, Py_ssize_t count) noexcept nogil:
    cdef Py_ssize_t i
    for i in range(count):  # a few pairs: no call to memcmp
        if a[i].skill != b[i].skill or a[i].level != b[i].level:
            return False
    return True


cdef inline int64_t _next_expansion(const Queue* queue, int64_t entered_at, int64_t now_ms) noexcept nogil:
    """When a session that entered at ``entered_at`` next reaches one of the
    queue's rules (rules are sorted by after_ms)."""
    cdef Py_ssize_t i
    for i in range(queue.rule_count):
        if entered_at + queue.rules[i].after_ms > now_ms:
            return entered_at + queue.rules[i].after_ms
    return NO_TIER_LIMIT


cdef inline bint _head_arrived(const Queue* queue, const LiveHead* live, const ReqSet* reqsets) noexcept nogil:
    """Dispatcher._arrived_for(queue, live.head.reqset)."""
    cdef const ReqSet* needs
    if live.needs0 & ~queue.arrivals[0]:
        return False
    if not live.wide:
        return True
    needs = &reqsets[live.head.reqset]
    return ((needs.mask[1] & ~queue.arrivals[1]) | (needs.mask[2] & ~queue.arrivals[2])
            | (needs.mask[3] & ~queue.arrivals[3])) == 0


cdef inline bint _covers(const Recipient* recipient, const ReqSet* needs) noexcept nogil:
    """The recipient has every required skill at or above its level."""
    cdef Py_ssize_t i
    cdef const SkillNeed* pairs
    if ((recipient.skill_mask[0] & needs.mask[0]) != needs.mask[0]
            or (recipient.skill_mask[1] & needs.mask[1]) != needs.mask[1]
            or (recipient.skill_mask[2] & needs.mask[2]) != needs.mask[2]
            or (recipient.skill_mask[3] & needs.mask[3]) != needs.mask[3]):
        return False
    if needs.above_one:  # a present skill has level >= 1
        pairs = _pairs(needs)
        for i in range(needs.count):
            if recipient.levels[pairs[i].skill] < pairs[i].level:
                return False
    return True


cdef inline int64_t _metric(int router, const Recipient* recipient, const ReqSet* needs) noexcept nogil:
    cdef int64_t total = 0
    cdef Py_ssize_t i
    cdef const SkillNeed* pairs
    if router == RT_MOST_IDLE:
        return recipient.idle_since
    if router == RT_LEAST_CALLS:
        return recipient.calls
    if router == RT_LEAST_OFFERS:
        return recipient.offers
    if router == RT_LEAST_TALK_TIME:
        return recipient.talk_ms
    pairs = _pairs(needs)
    for i in range(needs.count):  # RT_MOST_SKILLED: highest summed level
        total += recipient.levels[pairs[i].skill]
    return -total


cdef Py_ssize_t _member_of(const Recipient* recipient, int32_t qi) noexcept nogil:
    """The recipient's position in queue ``qi``'s member order, or -1."""
    cdef Py_ssize_t k
    for k in range(recipient.queue_count):
        if recipient.queues[k].queue == qi:
            return recipient.queues[k].member
    return -1


cdef tuple _recipient_settings(skills, bounced_call_limit, guard_ms):
    """The reference's _configure checks, in its order; C values out."""
    cdef int64_t limit, guard
    items = _skill_items(skills, "recipient skills")
    if bounced_call_limit < 0:
        raise ValueError(f"bounced_call_limit must be >= 0, got {bounced_call_limit}")
    if guard_ms < 0:
        raise ValueError(f"guard_ms must be >= 0, got {guard_ms}")
    limit = bounced_call_limit
    guard = guard_ms
    return items, limit, guard


cdef void _configure(Recipient* recipient, tuple items, int64_t limit, int64_t guard) except *:
    cdef int skill, level
    memset(recipient.skill_mask, 0, sizeof(recipient.skill_mask))
    memset(recipient.levels, 0, sizeof(recipient.levels))
    for skill, level in items:
        recipient.skill_mask[skill >> 6] |= (<uint64_t>1) << (skill & 63)
        recipient.levels[skill] = <uint8_t>level
    recipient.bounce_limit = limit
    recipient.guard_ms = guard


cdef inline int _require(bint condition, str message, tuple values=()) except -1:
    """An assertion that formats its message only when it fails."""
    if not condition:
        raise AssertionError(message.format(*values))
    return 0


cdef void _check_heap(const TimerHeap* heap, str name) except *:
    cdef Py_ssize_t i
    for i in range(1, heap.count):
        _require(not _timer_lt(&heap.items[i], &heap.items[(i - 1) >> 2]), "{} heap order", (name,))


cdef set _heap_items(const TimerHeap* heap):
    return {(heap.items[i].at, heap.items[i].a, heap.items[i].b) for i in range(heap.count)}
