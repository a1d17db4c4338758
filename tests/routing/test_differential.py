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
