"""The compiled dispatcher against the reference: random operation scripts
must give identical results, step by step.

Every call (valid or deliberately invalid) must return the same value with the
same types, or raise the same exception with the same message, on both; every
public reading (queue order, counts, recipient stats, session info, pass and
match counters) must agree after every step; and both ``_check()`` their
invariants after every call. Skipped when the compiled module is not built.
"""

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from qroute.routing import IMPLEMENTATIONS, _reference

from ._script import DataSource, Script, Twins

pytestmark = pytest.mark.skipif("compiled" not in IMPLEMENTATIONS,
                                reason="qroute.routing._core is not built (or QROUTE_NO_EXTENSIONS=1)")

SETTINGS = settings(max_examples=1000, deadline=None, derandomize=True, print_blob=True,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def _twins(seed):
    return Twins([_reference.Dispatcher, IMPLEMENTATIONS["compiled"]], seed=seed)


@SETTINGS
@given(st.data())
def test_random_scripts_agree(data):
    source = DataSource(data)
    script = Script(source, _twins(source.integer(0, 2**64 - 1)))
    script.setup()
    script.run(source.integer(10, 80))


@settings(SETTINGS, max_examples=150)
@given(st.data())
def test_random_scripts_agree_many_recipients(data):
    # Larger queues: router tie-breaks, ring-all fan-out and member removal in
    # the middle of long member arrays.
    source = DataSource(data)
    script = Script(source, _twins(source.integer(0, 2**64 - 1)), queues=2, recipients=20, sessions=30)
    script.setup()
    script.run(source.integer(20, 60))


def test_module_constants_agree():
    compiled = pytest.importorskip("qroute.routing._core")
    for name in ("ROUND_ROBIN", "MOST_IDLE", "LEAST_CALLS", "LEAST_OFFERS", "LEAST_TALK_TIME", "LINEAR",
                 "RANDOM", "MOST_SKILLED", "RING_ALL", "ROUTERS", "OFFER", "MISSED", "BOUNCED", "TIMEOUT",
                 "WRAPUP_END", "FREE", "OFFERED", "BUSY", "WRAPUP", "MAX_SKILLS", "MAX_LEVEL", "RECORD_SIZE"):
        assert getattr(compiled, name) == getattr(_reference, name), name
    for state in (0, 1, 2**64 - 1, -5, 12345678901234567890):
        assert compiled.splitmix64(state) == _reference.splitmix64(state)


def test_public_methods_agree():
    compiled = IMPLEMENTATIONS["compiled"]
    public = {name for name in dir(_reference.Dispatcher) if not name.startswith("_")}
    assert public <= set(dir(compiled))
    assert {"_check", "__len__"} <= set(dir(compiled))


class _Level(int):
    """An int subclass: the compiled fast path leaves it to the reference's checks."""


class _Pairs:
    """A Mapping-like object whose items() may repeat a skill."""

    def __init__(self, *pairs):
        self.pairs = pairs

    def items(self):
        return list(self.pairs)


def test_enqueue_boundary_agrees():
    import collections
    import types

    skills_cases = [
        {}, {0: 0}, {255: 10}, {7: 3, 2: 1, 130: 5, 64: 0}, {True: 1}, {1: True}, {False: False},
        {_Level(3): _Level(2)}, {3: _Level(0)}, {2**70: 1}, {-1: 0}, {256: 1}, {1: 11}, {1: -1},
        {"1": 1}, {1.0: 1}, {1: 1.0}, {1: None}, None, [], [(1, 2)], "ab",
        collections.OrderedDict([(5, 2), (1, 1)]), collections.defaultdict(int, {4: 4}),
        types.MappingProxyType({9: 9, 8: 8}), _Pairs((1, 2), (1, 3)), _Pairs((1, 2), (300, 1)),
        _Pairs((1,)), _Pairs((1, 2, 3)), dict.fromkeys(range(256), 10), {s: 1 for s in range(255, -1, -3)},
    ]
    # (not 2**31 - 1: valid, but the compiled arrays grow with the largest handle)
    handles = [0, 1, True, _Level(5), 2**31, -1, 2**64, 1.0, "1", None, []]
    twins = _twins(3)
    twins.call("set_queue", 0, 6, 1000, 60_000)
    for r, skills in enumerate([{}, {1: 3, 5: 2, 7: 3, 2: 1, 130: 5, 64: 1, 9: 9, 8: 8, 4: 4},
                                dict.fromkeys(range(256), 10)]):
        twins.call("add_recipient", r, skills)
        twins.call("add_member", 0, r)
    seq = 0
    for case in skills_cases:
        for handle in (100 + seq, handles[seq % len(handles)]):
            twins.call("enqueue", handle, 0, seq % 3, seq, seq, case, seq)
            seq += 1
    for r in range(3):
        twins.call("set_ready", r, True, seq)
    for step in range(12):
        twins.call("dispatch", seq + step)
        offers = [(s, r) for r, rec in twins.ref._recipients.items() if rec.state == _reference.OFFERED
                  for s in [rec.offer_session]]
        for s, r in sorted(offers):
            twins.call("accept", s, r, seq + step)
            twins.call("hangup", r, seq + step)
    twins.call("queue_order", 0)


def test_pass_shapes_agree():
    # The shapes of a pass the compiled twin takes different paths for: the
    # first candidate finds nobody and later ones are served; the first is
    # served and the pass goes on (its group's next session, other queues);
    # a new head in a queue that no arrival marked (a dirty group only).
    twins = _twins(7)
    call = twins.call
    call("set_queue", 0, 6, 1000, 600_000)  # LINEAR
    call("set_queue", 1, 1, 1000, 600_000)  # ROUND_ROBIN
    for r, skills in enumerate([{1: 5}, {1: 5}, {2: 5}, {2: 1}]):
        call("add_recipient", r, skills)
        call("add_member", 0, r)
        call("add_member", 1, r, 1 + r % 2)
    waiting = [(0, 9, {3: 1}), (0, 5, {1: 1}), (0, 5, {1: 1}), (0, 5, {1: 1}), (1, 1, {2: 4}),
               (1, 1, {2: 4}), (1, 0, {}), (0, 0, {2: 1})]
    for s, (q, priority, skills) in enumerate(waiting):
        call("enqueue", s, q, priority, 100 + s, s, skills, 100)
    for r in range(4):
        call("set_ready", r, True, 200)
    ok, records = call("dispatch", 300)
    assert ok and list(records[0::4]).count(_reference.OFFER) >= 3
    for step, (s, q, priority, skills) in enumerate([(20, 0, 3, {2: 2}), (21, 1, 9, {1: 1}),
                                                     (22, 0, 9, {3: 1})]):
        offered = [(rec.offer_session, r) for r, rec in sorted(twins.ref._recipients.items())
                   if rec.state == _reference.OFFERED]
        for session, r in offered[:1]:
            call("accept", session, r, 400 + step)
            call("hangup", r, 401 + step)  # free again: its queues examine the groups it serves
        call("enqueue", s, q, priority, 50 + step, 50 + step, skills, 402 + step)
        call("dispatch", 403 + step)
        call("dispatch", 404 + step)  # nothing new: an empty pass
    for q in (0, 1):
        call("queue_order", q)
    # One pass, two matches: the first in a queue a freed recipient marked,
    # the second a new caller's group in a queue no arrival marked.
    twins = _twins(8)
    call = twins.call
    for q in (0, 1):
        call("set_queue", q, 6, 1000, 600_000)
    call("add_recipient", 0, {1: 5})
    call("add_member", 0, 0)
    call("add_recipient", 1, {2: 5})
    call("add_member", 1, 1)
    call("set_ready", 0, True, 10)
    call("set_ready", 1, True, 10)
    call("enqueue", 0, 1, 0, 10, 0, {2: 1}, 10)
    call("dispatch", 20)
    call("accept", 0, 1, 20)  # recipient 1 busy, recipient 0 free with nobody to serve
    call("dispatch", 21)
    call("enqueue", 1, 1, 5, 30, 1, {2: 1}, 30)
    call("enqueue", 2, 0, 1, 31, 2, {1: 1}, 31)
    call("hangup", 1, 32)
    ok, records = call("dispatch", 33)
    assert ok and list(records) == [_reference.OFFER, 1, 1, 1, _reference.OFFER, 2, 0, 0]
