# Growing C arrays. Included by _core.pyx.
#
# Everything is allocated with the PyMem_Raw* family: the same Python
# allocator as PyMem_* (so tracemalloc sees it), usable without the GIL, which
# a pass releases. An allocation failure raises MemoryError.

from cpython.mem cimport PyMem_RawCalloc, PyMem_RawFree, PyMem_RawMalloc, PyMem_RawRealloc
from libc.string cimport memcpy, memmove, memset


cdef int _grow(void** items, Py_ssize_t* cap, Py_ssize_t needed, size_t itemsize,
               bint zero) except -1 nogil:
    """Make ``*items`` hold at least ``needed`` items (x1.5 growth, from 1 so
    that a group of one session costs one entry); with ``zero`` the new tail
    is zeroed. ``*items`` and ``*cap`` change only on success."""
    cdef Py_ssize_t new_cap
    cdef void* grown
    if needed <= cap[0]:
        return 0
    new_cap = cap[0] + (cap[0] >> 1) + 1
    if new_cap < needed:
        new_cap = needed
    if <size_t>new_cap > (<size_t>PY_SSIZE_T_MAX) // itemsize:
        with gil:
            raise MemoryError()
    grown = PyMem_RawRealloc(items[0], <size_t>new_cap * itemsize)
    if grown == NULL:
        with gil:
            raise MemoryError()
    if zero:
        memset(<char*>grown + <size_t>cap[0] * itemsize, 0, <size_t>(new_cap - cap[0]) * itemsize)
    items[0] = grown
    cap[0] = new_cap
    return 0


cdef int _grow_aligned(void** block, void** items, Py_ssize_t* cap, Py_ssize_t needed,
                       size_t itemsize) except -1 nogil:
    """``_grow`` (zeroing the new tail) for an array of structs whose items
    start on a 64-byte boundary, so that a struct of 64 bytes (or the first
    64 bytes of a larger one) is one cache line, not two: ``*block`` is the
    allocation (to free), ``*items`` the array inside it."""
    cdef Py_ssize_t new_cap
    cdef char* grown
    cdef size_t old_offset = 0, new_offset
    if needed <= cap[0]:
        return 0
    new_cap = cap[0] + (cap[0] >> 1) + 1
    if new_cap < needed:
        new_cap = needed
    if <size_t>new_cap > (<size_t>PY_SSIZE_T_MAX - 64) // itemsize:
        with gil:
            raise MemoryError()
    if block[0] != NULL:
        old_offset = <size_t>(<char*>items[0] - <char*>block[0])
    grown = <char*>PyMem_RawRealloc(block[0], <size_t>new_cap * itemsize + 64)
    if grown == NULL:
        with gil:
            raise MemoryError()
    new_offset = (64 - (<size_t>grown & 63)) & 63
    if new_offset != old_offset:  # the realloc moved it to another alignment
        memmove(grown + new_offset, grown + old_offset, <size_t>cap[0] * itemsize)
    memset(grown + new_offset + <size_t>cap[0] * itemsize, 0, <size_t>(new_cap - cap[0]) * itemsize)
    block[0] = grown
    items[0] = grown + new_offset
    cap[0] = new_cap
    return 0


cdef int _grow32(void** items, int32_t* cap, Py_ssize_t needed, size_t itemsize) except -1 nogil:
    """``_grow`` for the int32 capacities of small per-group arrays."""
    cdef Py_ssize_t wide = cap[0]
    _grow(items, &wide, needed, itemsize, False)
    cap[0] = <int32_t>wide
    return 0


cdef extern from *:
    """
    #if defined(__GNUC__) || defined(__clang__)
    #define QROUTE_PREFETCH(address) __builtin_prefetch(address)
    #else
    #define QROUTE_PREFETCH(address) ((void)0)
    #endif
    """
    void _prefetch "QROUTE_PREFETCH"(const void* address) noexcept nogil


cdef inline void _prefetch_range(const void* start, size_t size) noexcept nogil:
    """Ask for ``size`` bytes from ``start`` to be brought into the cache: a
    pass reads short arrays that are cold, and asking for all their lines at
    once overlaps the misses (a hint only)."""
    cdef size_t offset = 0
    while offset < size:
        _prefetch(<const char*>start + offset)
        offset += 64
