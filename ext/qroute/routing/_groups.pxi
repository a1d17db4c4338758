# A group's waiting sessions: a sorted array of entries by (entered_at, seq)
# kept in [start, start + count) of a buffer, so the head pops in O(1) and an
# insertion or removal moves the shorter side. Included by _core.pyx.


cdef inline bint _entry_key_lt(int64_t entered_a, int64_t seq_a,
                               int64_t entered_b, int64_t seq_b) noexcept nogil:
    if entered_a != entered_b:
        return entered_a < entered_b
    return seq_a < seq_b


cdef Py_ssize_t _entries_bisect_right(const Group* group, int64_t entered_at,
                                      int64_t seq) noexcept nogil:
    """Index after every entry whose key is <= (entered_at, seq)."""
    cdef Py_ssize_t lo = group.start, hi = group.start + group.count, mid
    while lo < hi:
        mid = (lo + hi) >> 1
        if _entry_key_lt(entered_at, seq, group.entries[mid].entered_at, group.entries[mid].seq):
            hi = mid
        else:
            lo = mid + 1
    return lo


cdef Py_ssize_t _entries_find(const Group* group, int64_t entered_at, int64_t seq,
                              int32_t session) noexcept nogil:
    """Index of ``session``'s entry, or -1. O(log n + entries with its key)."""
    cdef Py_ssize_t lo = group.start, hi = group.start + group.count, mid
    cdef Py_ssize_t end = hi
    while lo < hi:  # bisect_left
        mid = (lo + hi) >> 1
        _prefetch(&group.entries[(lo + mid) >> 1])  # the next probe, either way
        _prefetch(&group.entries[(mid + 1 + hi) >> 1])
        if _entry_key_lt(group.entries[mid].entered_at, group.entries[mid].seq, entered_at, seq):
            lo = mid + 1
        else:
            hi = mid
    while lo < end and group.entries[lo].entered_at == entered_at and group.entries[lo].seq == seq:
        if group.entries[lo].session == session:
            return lo
        lo += 1
    return -1


cdef Py_ssize_t _entries_insert(Group* group, int64_t entered_at, int64_t seq,
                                int32_t session) except -1 nogil:
    """Insert after the entries with an equal key; return the entry's index.
    O(log n + shorter side); O(1) for a key at or after the last (a new
    caller), which entered after ``max_entered`` needs no read at all."""
    cdef Py_ssize_t end = group.start + group.count
    cdef Py_ssize_t pos
    cdef int32_t shift
    if group.count == 0 or entered_at > group.max_entered:
        pos = end
        group.max_entered = entered_at
    elif not _entry_key_lt(entered_at, seq, group.entries[end - 1].entered_at, group.entries[end - 1].seq):
        pos = end
    else:
        pos = _entries_bisect_right(group, entered_at, seq)
    if group.start > 0 and pos - group.start < end - pos:
        # Move the head side one slot left (a returning caller lands near the head).
        memmove(&group.entries[group.start - 1], &group.entries[group.start],
                <size_t>(pos - group.start) * sizeof(Entry))
        group.start -= 1
        pos -= 1
    else:
        if end == group.cap:
            if group.start > 0 and group.start * 4 >= group.cap:
                shift = group.start  # reuse the popped head space
                memmove(&group.entries[0], &group.entries[shift], <size_t>group.count * sizeof(Entry))
                group.start = 0
                pos -= shift
                end -= shift
            else:
                _grow32(<void**>&group.entries, &group.cap, group.cap + 1, sizeof(Entry))
        memmove(&group.entries[pos + 1], &group.entries[pos], <size_t>(end - pos) * sizeof(Entry))
    group.entries[pos].entered_at = entered_at
    group.entries[pos].seq = seq
    group.entries[pos].session = session
    group.count += 1
    return pos


cdef void _entries_remove_at(Group* group, Py_ssize_t pos) noexcept nogil:
    """O(shorter side)."""
    cdef Py_ssize_t end = group.start + group.count
    if pos - group.start < end - 1 - pos:
        memmove(&group.entries[group.start + 1], &group.entries[group.start],
                <size_t>(pos - group.start) * sizeof(Entry))
        group.start += 1
    else:
        memmove(&group.entries[pos], &group.entries[pos + 1], <size_t>(end - 1 - pos) * sizeof(Entry))
    group.count -= 1
    if group.count == 0:
        group.start = 0


# ---------------------------------------------------------------- group table
# (queue, requirement set, priority) -> group id, in C: a pass can drop a
# group without touching a Python object, and a group costs ~8 bytes here.
# Hashed by the requirement set's pairs (ReqSet.hash), not its id, so that
# enqueue knows where to look before it has looked up the id (and can ask
# for both lines at once); the table is at most 2**32 slots, so a group
# keeps the low 32 bits of its hash (Group.home).

cdef inline uint32_t _group_hash(int32_t queue, uint64_t reqset_hash, int64_t priority) noexcept nogil:
    cdef uint64_t z = (<uint64_t>priority) * <uint64_t>0x9E3779B97F4A7C15ULL
    z ^= reqset_hash + ((<uint64_t><uint32_t>queue) << 32)
    z = (z ^ (z >> 30)) * <uint64_t>0xBF58476D1CE4E5B9ULL
    z = (z ^ (z >> 27)) * <uint64_t>0x94D049BB133111EBULL
    return <uint32_t>(z ^ (z >> 31))


cdef Py_ssize_t _table_slot(const GroupTable* table, const Group* groups, int32_t queue,
                            int32_t reqset, int64_t priority, uint32_t home) noexcept nogil:
    """The slot holding that group, or the empty slot where it would go;
    ``home`` is its _group_hash."""
    cdef Py_ssize_t mask = table.size - 1
    cdef Py_ssize_t i = <Py_ssize_t>(home & <uint64_t>mask)
    cdef const Group* group
    while table.slots[i] >= 0:
        group = &groups[table.slots[i]]
        if group.queue == queue and group.reqset == reqset and group.priority == priority:
            return i
        i = (i + 1) & mask
    return i


cdef int _table_reserve(GroupTable* table, const Group* groups, Py_ssize_t count) except -1 nogil:
    """Room for ``count`` groups at load <= 1/2 (rehash when needed)."""
    cdef Py_ssize_t size = table.size if table.size else 8
    cdef Py_ssize_t i, slot
    cdef int32_t* old_slots = table.slots
    cdef Py_ssize_t old_size = table.size
    cdef const Group* group
    while count * 2 > size:
        size *= 2
    if size == table.size:
        return 0
    table.slots = <int32_t*>PyMem_RawMalloc(<size_t>size * sizeof(int32_t))
    if table.slots == NULL:
        table.slots = old_slots
        with gil:
            raise MemoryError()
    memset(table.slots, 0xFF, <size_t>size * sizeof(int32_t))  # all -1
    table.size = size
    for i in range(old_size):
        if old_slots[i] >= 0:
            group = &groups[old_slots[i]]
            slot = _table_slot(table, groups, group.queue, group.reqset, group.priority, group.home)
            table.slots[slot] = old_slots[i]
    PyMem_RawFree(old_slots)
    return 0


cdef void _table_remove(GroupTable* table, const Group* groups, Py_ssize_t slot) noexcept nogil:
    """Empty ``slot``, shifting later entries of its probe run back (no tombstones)."""
    cdef Py_ssize_t mask = table.size - 1
    cdef Py_ssize_t hole = slot, j = slot, home
    cdef const Group* group
    while True:
        j = (j + 1) & mask
        if table.slots[j] < 0:
            break
        group = &groups[table.slots[j]]
        home = <Py_ssize_t>(group.home & <uint64_t>mask)
        # Move it into the hole unless its home lies cyclically in (hole, j].
        if (hole <= j and (home <= hole or home > j)) or (hole > j and home <= hole and home > j):
            table.slots[hole] = table.slots[j]
            hole = j
    table.slots[hole] = -1
    table.count -= 1
