"""A long seeded random run: every implementation built keeps its invariants
(``_check()`` after every call) and, when the compiled one is there, it
agrees with the reference after every step. Without the compiled module the
run still exercises the reference on its own."""

import pytest

from qroute.routing import IMPLEMENTATIONS, _reference

from ._script import RandomSource, Script, Twins

STEPS = 20_000


@pytest.mark.parametrize("seed", [20240611])
def test_long_random_run(seed):
    classes = [_reference.Dispatcher] + ([IMPLEMENTATIONS["compiled"]] if "compiled" in IMPLEMENTATIONS else [])
    twins = Twins(classes, seed=seed)
    script = Script(RandomSource(seed), twins, queues=5, recipients=24, sessions=120)
    script.setup()
    script.run(STEPS)
    ref = twins.ref
    assert ref.passes > STEPS // 10 and ref.matches > STEPS // 40, (ref.passes, ref.matches)
