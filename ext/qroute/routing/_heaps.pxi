# Min-heaps in C arrays. Included by _core.pyx.
#
# Timers compare as the reference's heap tuples do, so popping yields the
# same sequence of (at, a, b) values as heapq does there: equal entries are
# indistinguishable, so the heap's shape never shows. Timer heaps are 4-ary:
# a pass usually touches them cold, and a 4-ary heap reads half as many
# levels (a node's children share one or two cache lines).


cdef inline bint _timer_lt(const Timer* x, const Timer* y) noexcept nogil:
    if x.at != y.at:
        return x.at < y.at
    if x.a != y.a:
        return x.a < y.a
    return x.b < y.b


cdef inline bint _timer_due(const TimerHeap* heap, int64_t now_ms) noexcept nogil:
    """The heap holds a timer at or before ``now_ms``."""
    return heap.count != 0 and heap.items[0].at <= now_ms


cdef inline bint _timer_next(TimerHeap* heap, int64_t now_ms, Timer* timer) noexcept nogil:
    """Pop the earliest timer into ``*timer`` if it is due at ``now_ms``."""
    if not _timer_due(heap, now_ms):
        return False
    timer[0] = _timer_pop(heap)
    return True


cdef int _timer_push(TimerHeap* heap, int64_t at, int32_t a, int32_t b) except -1 nogil:
    """O(log n)."""
    cdef Timer item
    cdef Py_ssize_t pos, parent
    if heap.count == heap.cap:
        _grow(<void**>&heap.items, &heap.cap, heap.count + 1, sizeof(Timer), False)
    item.at = at
    item.a = a
    item.b = b
    pos = heap.count
    heap.count += 1
    while pos > 0:
        parent = (pos - 1) >> 2
        if not _timer_lt(&item, &heap.items[parent]):
            break
        heap.items[pos] = heap.items[parent]
        pos = parent
    heap.items[pos] = item
    return 0


cdef Timer _timer_pop(TimerHeap* heap) noexcept nogil:
    """Remove and return the smallest timer; the heap must not be empty. O(log n)."""
    cdef Timer top = heap.items[0]
    cdef Timer last
    cdef Py_ssize_t pos = 0, child, first, end, n
    heap.count -= 1
    n = heap.count
    if n:
        last = heap.items[n]
        while True:
            first = 4 * pos + 1
            if first >= n:
                break
            end = first + 4 if first + 4 < n else n
            if 4 * first + 1 < n:  # the next level, whichever child goes on
                _prefetch(&heap.items[4 * first + 1])
                if 4 * first + 9 < n:
                    _prefetch(&heap.items[4 * first + 9])
            child = first
            for first in range(first + 1, end):
                if _timer_lt(&heap.items[first], &heap.items[child]):
                    child = first
            if not _timer_lt(&heap.items[child], &last):
                break
            heap.items[pos] = heap.items[child]
            pos = child
        heap.items[pos] = last
    return top


cdef void _timer_free(TimerHeap* heap) noexcept nogil:
    PyMem_RawFree(heap.items)
    heap.items = NULL
    heap.count = 0
    heap.cap = 0


# ---------------------------------------------------------------- candidates
# Group heads of one pass, in the global order of candidates: priority desc,
# entered_at asc, seq asc, then session handle (the reference's heap tuple).

cdef inline bint _cand_lt(const Candidate* x, const Candidate* y) noexcept nogil:
    if x.priority != y.priority:
        return x.priority > y.priority
    if x.entered_at != y.entered_at:
        return x.entered_at < y.entered_at
    if x.seq != y.seq:
        return x.seq < y.seq
    return x.session < y.session


cdef void _cand_sift_down(Candidate* items, Py_ssize_t n, Py_ssize_t pos) noexcept nogil:
    cdef Candidate item = items[pos]
    cdef Py_ssize_t child
    while True:
        child = 2 * pos + 1
        if child >= n:
            break
        if child + 1 < n and _cand_lt(&items[child + 1], &items[child]):
            child += 1
        if not _cand_lt(&items[child], &item):
            break
        items[pos] = items[child]
        pos = child
    items[pos] = item


cdef void _cand_heapify(Candidate* items, Py_ssize_t n) noexcept nogil:
    cdef Py_ssize_t pos = n // 2
    while pos > 0:
        pos -= 1
        _cand_sift_down(items, n, pos)


cdef void _cand_sift_up(Candidate* items, Py_ssize_t pos) noexcept nogil:
    cdef Candidate item = items[pos]
    cdef Py_ssize_t parent
    while pos > 0:
        parent = (pos - 1) >> 1
        if not _cand_lt(&item, &items[parent]):
            break
        items[pos] = items[parent]
        pos = parent
    items[pos] = item
