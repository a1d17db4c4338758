# Declarations of qroute.routing._core: the C structs the dispatcher keeps in
# C arrays, and its constants. The rules they serve are written in
# qroute/routing/_reference.py; this file only says how the state is laid out.
#
# Handles are dense small ints chosen by the caller, so queues, recipients and
# sessions live in arrays indexed by handle (grown when a larger one appears).
# Groups, requirement sets and the timer heaps are arrays indexed by ids the
# dispatcher allocates itself. Counts and positions stored as "slot" are
# position + 1, so a zeroed struct means "not there".

from libc.stdint cimport int32_t, int64_t, uint8_t, uint32_t, uint64_t


# The C copies of the reference's module constants, for the loops (prefixed:
# the unprefixed names are the reference's Python ints, which _core.pyx
# imports and compares with these when it loads).
cdef enum:
    RT_ROUND_ROBIN = 1
    RT_MOST_IDLE = 2
    RT_LEAST_CALLS = 3
    RT_LEAST_OFFERS = 4
    RT_LEAST_TALK_TIME = 5
    RT_LINEAR = 6
    RT_RANDOM = 7
    RT_MOST_SKILLED = 8
    RT_RING_ALL = 9

cdef enum:
    K_OFFER = 1
    K_MISSED = 2
    K_BOUNCED = 3
    K_TIMEOUT = 4
    K_WRAPUP_END = 5

cdef enum:
    ST_FREE = 0
    ST_OFFERED = 1
    ST_BUSY = 2
    ST_WRAPUP = 3

cdef enum:
    C_MAX_SKILLS = 256
    C_MAX_LEVEL = 10
    C_RECORD_SIZE = 4
    SKILL_WORDS = 4          # 256 skills as 4 x uint64
    INLINE_NEEDS = 4         # requirement pairs kept inside a ReqSet
    MAX_HANDLE = 0x7FFFFFFF
    GIL_FREE_PASS = 16       # a pass with more dirty queues + groups releases the GIL

cdef extern from *:
    """
    #ifndef QROUTE_DEBUG
    #define QROUTE_DEBUG 0
    #endif
    #define QROUTE_NO_TIER_LIMIT (((int64_t)1) << 62)
    """
    # Set by setup.py's QROUTE_DEBUG=1 build: run the invariant checker after
    # every pass.
    const int QROUTE_DEBUG
    # The reference's _NO_TIER_LIMIT: "every tier allowed", "no expansion due".
    const int64_t NO_TIER_LIMIT "QROUTE_NO_TIER_LIMIT"


cdef struct SkillNeed:
    uint8_t skill
    uint8_t level               # 1..10 (a required level 0 is stored as 1)

cdef struct ReqSet:
    # An interned requirement set: the sorted (skill, level) pairs of the
    # reference's _reqset_items, plus their skills as a bit mask. Up to
    # INLINE_NEEDS pairs are kept in the struct (one cache line in all);
    # read them through _pairs().
    uint64_t mask[SKILL_WORDS]
    uint64_t hash               # of the pairs (_needs_hash)
    SkillNeed* needs            # the pairs when more than INLINE_NEEDS, else NULL
    int32_t count
    uint8_t above_one           # some level > 1: levels must be compared
    SkillNeed inline_needs[INLINE_NEEDS]

cdef struct ReqSetTable:
    # Requirement set ids by their pairs: open addressing, linear probing,
    # load factor at most 1/2, never shrinks (ids are never freed); -1: empty.
    int32_t* slots
    Py_ssize_t size             # a power of 2

cdef struct QueueRef:
    # One membership seen from the recipient: the queue and the member's
    # position in that queue's member array.
    int32_t queue
    int32_t member

cdef struct Recipient:
    # Ordered by use: the first 64 bytes are read by every event and pass
    # that touches the recipient, the next 64 by calls and wrap-ups.
    uint8_t exists
    uint8_t ready
    uint8_t state               # ST_*
    uint8_t in_guard
    uint8_t eligible            # ready and free and not in guard
    int32_t offer_session       # -1 unless state == ST_OFFERED
    int32_t offer_prev          # the session's other offered recipients,
    int32_t offer_next          # as a doubly linked list (-1 ends it)
    int32_t queue_count
    QueueRef* queues            # memberships, in no particular order
    uint64_t skill_mask[SKILL_WORDS]
    int64_t idle_since
    int64_t calls
    int64_t offers
    int64_t talk_ms
    int64_t accepted_at
    int64_t guard_ms
    int64_t guard_until
    int64_t misses
    int64_t ring_deadline
    int64_t wrapup_until
    int64_t bounce_limit
    Py_ssize_t queue_cap
    uint8_t levels[C_MAX_SKILLS]  # 0 where the skill is absent

cdef struct Member:
    int64_t tier
    int64_t order               # increasing in member order; the RR cursor's unit
    int32_t recipient
    uint8_t ready               # ready for this queue
    uint8_t eligible            # the recipient's, mirrored so a scan of the members
                                # reads only the free ones' Recipient structs

cdef struct Rule:
    int64_t after_ms
    int64_t max_tier

cdef struct Candidate:
    # A group's head in a pass, ordered by (priority desc, entered_at, seq,
    # session); with what trying it needs, so that needs no other struct.
    int64_t priority
    int64_t entered_at
    int64_t seq
    int32_t session
    int32_t group
    int32_t queue
    int32_t reqset

cdef struct LiveHead:
    # A group with waiting sessions in its queue's list: its head as a pass's
    # candidate, copied from the group whenever its head changes, and the
    # first word of its requirement set's mask (wide: skills above 63 too),
    # so collecting a queue's candidates reads this array only.
    Candidate head
    uint64_t needs0
    uint8_t wide

cdef struct Queue:
    uint8_t exists
    uint8_t router              # RT_*
    int64_t ring_timeout_ms
    int64_t timeout_ms
    int64_t next_order
    int64_t cursor
    int64_t free_count          # members ready for the queue whose recipient is eligible
    int64_t session_count       # waiting or under offer
    int64_t expansion_due_ms
    Rule* rules                 # sorted, as the reference's expansion tuple
    Py_ssize_t rule_count
    Member* members             # in member order
    Py_ssize_t member_count
    Py_ssize_t member_cap
    LiveHead* live              # groups with waiting sessions, in no order
    Py_ssize_t live_count
    Py_ssize_t live_cap
    Py_ssize_t dirty_slot       # position in the dirty list + 1; 0 when clean
    # While dirty: the union of the skill masks of the recipients that became
    # available to it (the groups they have the skills for are examined), or
    # every group when examine_all is set (the reference's _ALL_SKILLS).
    uint64_t arrivals[SKILL_WORDS]
    uint8_t examine_all
    uint8_t serving_mark        # listed in a pass's _serving (only during _match)

cdef struct Entry:
    # A waiting session in its group, by (entered_at, seq); equal keys keep
    # their insertion order (the reference's SortedList inserts to the right).
    int64_t entered_at
    int64_t seq
    int32_t session

cdef struct Group:
    # Sessions of one (queue, requirement set, priority), found through the
    # dispatcher's group table; freed when its last session leaves.
    int64_t priority
    int64_t max_entered         # no waiting session entered later (a bound, reset when
                                # the group empties): a later caller goes last unsearched
    Entry* entries              # waiting sessions in [start, start + count)
    int32_t start
    int32_t count
    int32_t cap
    int32_t refs                # sessions of the group, waiting or under offer
    int32_t live_slot           # position in the queue's live list + 1; 0 when empty
    int32_t dirty_slot          # position in the dirty group list + 1; 0 when clean
    int32_t queue
    int32_t reqset
    uint32_t home               # its _group_hash, low bits (the table's probe start)
    uint8_t in_use

cdef struct GroupTable:
    # Open addressing, linear probing, backward-shift deletion; holds group
    # ids (-1: empty slot); load factor at most 1/2.
    int32_t* slots
    Py_ssize_t size             # a power of 2
    Py_ssize_t count

cdef struct Session:
    # Padded to 64 bytes: in the 64-byte aligned array each session is one
    # cache line (at 48, every other one would straddle two).
    int64_t entered_at
    int64_t seq
    int64_t deadline
    int32_t queue
    int32_t group               # priority and requirement set are the group's
    int32_t offer_head          # first recipient offered, -1 when none
    int32_t offer_count
    uint8_t exists
    uint8_t timeout_pending
    uint8_t padding[22]

cdef struct Timer:
    # A lazily invalidated timer: ordered by (at, a, b) like the reference's
    # heap tuples; a 2-tuple heap leaves b at 0.
    int64_t at
    int32_t a
    int32_t b

cdef struct TimerHeap:
    Timer* items
    Py_ssize_t count
    Py_ssize_t cap
