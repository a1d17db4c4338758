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


cdef int _grow32(void** items, int32_t* cap, Py_ssize_t needed, size_t itemsize) except -1 nogil:
    """``_grow`` for the int32 capacities of small per-group arrays."""
    cdef Py_ssize_t wide = cap[0]
    _grow(items, &wide, needed, itemsize, False)
    cap[0] = <int32_t>wide
    return 0
