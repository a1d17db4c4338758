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
# once per call at the boundary, never inside a pass. The per-event ones
# (enqueue's handle and skills) first try a C fast path that accepts only
# what the reference certainly accepts, with no Python code run on the way;
# anything else goes to the reference's function.
from qroute.routing._reference import _check_handle, _queue_settings, _skill_items

from cpython.bool cimport PyBool_Check
from cpython.dict cimport PyDict_CheckExact, PyDict_Next
from cpython.long cimport PyLong_AsLongLongAndOverflow, PyLong_CheckExact
from cpython.object cimport PyObject


cdef extern from *:
    """
    /* An int of one digit (below 2**30) read in place; 0 for any other. */
    static inline int qroute_small_int(PyObject* value, long long* out) {
    #if PY_VERSION_HEX >= 0x030C0000
        if (!PyUnstable_Long_IsCompact((PyLongObject*)value)) return 0;
        *out = (long long)PyUnstable_Long_CompactValue((PyLongObject*)value);
        return 1;
    #else
        Py_ssize_t size = Py_SIZE(value);
        if (size == 0) { *out = 0; return 1; }
        if (size == 1) { *out = (long long)((PyLongObject*)value)->ob_digit[0]; return 1; }
        if (size == -1) { *out = -(long long)((PyLongObject*)value)->ob_digit[0]; return 1; }
        return 0;
    #endif
    }
    """
    int _small_int "qroute_small_int"(object value, long long* out) noexcept


cdef inline int _int_in(object value, long long lo, long long hi, long long* out) except -1:
    """1 and ``*out`` set if ``value`` is an int (bool included, a subclass
    not: it may compare its own way) in ``lo..hi``, else 0."""
    cdef int overflow = 0
    cdef long long number
    if not (PyLong_CheckExact(value) or PyBool_Check(value)):
        return 0
    if _small_int(value, &number):  # handles, skills, levels: no call
        if number < lo or number > hi:
            return 0
        out[0] = number
        return 1
    number = PyLong_AsLongLongAndOverflow(value, &overflow)
    if overflow or number < lo or number > hi:
        return 0
    out[0] = number
    return 1


cdef Py_ssize_t _new_handle(object value, str what) except -1:
    """``_check_handle(value, what)``, and the handle as an index."""
    cdef long long handle
    if _int_in(value, 0, MAX_HANDLE, &handle):
        return <Py_ssize_t>handle
    _check_handle(value, what)  # raises, or passes an int subclass
    return value


cdef Py_ssize_t _dict_needs(object skills, SkillNeed* needs) except -2:
    """The reference's ``_skill_items`` for a dict of ints, into ``needs``
    (room for C_MAX_SKILLS; sorted by skill, level 0 stored as 1): returns
    how many, or -1 when ``skills`` is anything else or holds a value the
    reference would refuse (then the reference's function must decide)."""
    cdef Py_ssize_t pos = 0, count = 0, j
    cdef PyObject* key
    cdef PyObject* value
    cdef long long skill, level
    if not PyDict_CheckExact(skills):
        return -1
    while PyDict_Next(skills, &pos, &key, &value):
        if not (_int_in(<object>key, 0, C_MAX_SKILLS - 1, &skill)
                and _int_in(<object>value, 0, C_MAX_LEVEL, &level)):
            return -1
        j = count  # insertion sort: a few skills, each once (dict keys)
        while j > 0 and needs[j - 1].skill > skill:
            needs[j] = needs[j - 1]
            j -= 1
        needs[j].skill = <uint8_t>skill
        needs[j].level = <uint8_t>(level if level > 1 else 1)
        count += 1
    return count


cdef inline uint64_t _needs_hash(const SkillNeed* needs, Py_ssize_t count) noexcept nogil:
    cdef uint64_t z = (<uint64_t>count) * <uint64_t>0x9E3779B97F4A7C15ULL
    cdef Py_ssize_t i
    for i in range(count):
        z = (z ^ ((<uint64_t>needs[i].skill << 8) | needs[i].level)) * <uint64_t>0x100000001B3ULL
    z = (z ^ (z >> 30)) * <uint64_t>0xBF58476D1CE4E5B9ULL
    z = (z ^ (z >> 27)) * <uint64_t>0x94D049BB133111EBULL
    return z ^ (z >> 31)


cdef Py_ssize_t _handle_index(object handle) except -2:
    """The index under which a dict keyed by int handles would find
    ``handle`` (the reference's lookups), or -1 when none could.

    An int (bool included) is its own index; another hashable finds the int
    it equals (1.0 finds 1); an unhashable raises the dict's TypeError.
    """
    cdef Py_ssize_t index
    cdef long long number
    if _int_in(handle, 0, MAX_HANDLE, &number):  # the usual handle, read in C
        return <Py_ssize_t>number
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
