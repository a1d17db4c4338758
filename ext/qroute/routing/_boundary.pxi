# The `def` boundary: argument checks with the reference's exceptions and
# messages (the same code, so the same errors), and the mapping of a caller's
# handle object to an array index. Included by _core.pyx.


cdef extern from "Python.h":
    const Py_ssize_t PY_SSIZE_T_MAX


def splitmix64(state):
    """One step of splitmix64: returns ``(new_state, output)``."""
    cdef uint64_t s = state & _MASK64
    cdef uint64_t value = _splitmix64(&s)
    return s, value


cdef inline uint64_t _splitmix64(uint64_t* state) noexcept nogil:
    """Advance ``*state``; return the output (identical to the reference)."""
    cdef uint64_t z
    state[0] = state[0] + <uint64_t>0x9E3779B97F4A7C15ULL
    z = state[0]
    z = (z ^ (z >> 30)) * <uint64_t>0xBF58476D1CE4E5B9ULL
    z = (z ^ (z >> 27)) * <uint64_t>0x94D049BB133111EBULL
    return z ^ (z >> 31)


# Argument checks are the reference's own functions: the same code raises
# the same exceptions with the same messages (Cython words some errors, such
# as tuple unpacking, its own way; these run as CPython bytecode). They run
# once per call at the boundary, never inside a pass.
from qroute.routing._reference import _check_handle, _expansion_rules, _skill_items


cdef Py_ssize_t _handle_index(object handle) except -2:
    """The index under which a dict keyed by int handles would find
    ``handle`` (the reference's lookups), or -1 when none could.

    An int (bool included) is its own index; another hashable finds the int
    it equals (1.0 finds 1); an unhashable raises the dict's TypeError.
    """
    cdef Py_ssize_t index
    if isinstance(handle, int):
        try:
            index = handle
        except OverflowError:
            return -1
        if index < 0 or index > MAX_HANDLE:
            return -1
        return index
    hash(handle)
    try:
        as_int = int(handle)
    except Exception:
        return -1
    if as_int != handle or as_int < 0 or as_int > MAX_HANDLE:
        return -1
    return <Py_ssize_t>as_int
