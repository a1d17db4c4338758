"""pytest-benchmark cases of the routing core, on the workload of
``qroute.bench.workload`` (see ``conftest.py`` for the sizes: the reference
runs a tenth of the standard workload, and its case ids end in ``-tenth``).

Run: ``pytest benchmarks/ --benchmark-only`` (``--benchmark-disable-gc`` to
keep the cyclic collector out of the samples). These cases report times and
never assert a target; ``qroute bench core`` compares the implementations on
the same workload in one process and prints the targets.
"""

from __future__ import annotations

import gc

from qroute.bench import workload as W

FULL_PASS_ROUNDS = {"compiled": 7, "reference": 5}
INCREMENTAL_ROUNDS = {"compiled": 3_000, "reference": 500}
CHURN_ROUNDS = 5
CHURN_OPS = {"compiled": 10_000, "reference": 2_000}  # per round
CHURN_WARMUP = 1_000


def test_full_pass(benchmark, case):
    """(a) One ``dispatch`` right after every recipient became ready at the
    same instant, with every session waiting. Fresh build per round (not
    timed)."""
    now = case.workload.now_ms + 1_000

    def setup():
        dispatcher = W.build(case.cls, case.workload)
        W.set_all_ready(dispatcher, case.workload, now)
        gc.collect()
        return (dispatcher, now), {}

    records = benchmark.pedantic(lambda dispatcher, now_ms: dispatcher.dispatch(now_ms),
                                 setup=setup, rounds=FULL_PASS_ROUNDS[case.implementation],
                                 iterations=1, warmup_rounds=1)
    offers = W.count_offers(records)
    benchmark.extra_info.update(workload=case.size_name, offers=offers)
    assert offers > 0


def test_incremental_pass(benchmark, case):
    """(b) From saturation (every recipient busy), one recipient hangs up
    without wrap-up; only the ``dispatch`` that follows is timed. Its offer
    is accepted and the session put back as it was, before the next round."""
    saturated = W.saturate(case.cls, case.workload)
    stepper = W.FreeOne(saturated, seed=2)
    last = []

    def setup():
        if last:
            stepper.settle(last.pop())
        stepper.free()
        return (), {}

    def target():
        records = saturated.dispatcher.dispatch(saturated.now_ms)
        last.append(records)
        return records

    benchmark.pedantic(target, setup=setup, rounds=INCREMENTAL_ROUNDS[case.implementation],
                       iterations=1, warmup_rounds=100)
    if last:
        stepper.settle(last.pop())
    benchmark.extra_info.update(workload=case.size_name,
                                offered_share=stepper.offered / max(1, stepper.passes))
    assert stepper.offered > 0


def test_churn(benchmark, case):
    """(c) Churn from saturation: rounds of a seeded mix of enqueue, accept,
    hang-up, wrap-up end and abandon, each followed by a ``dispatch``. The
    benchmark times whole rounds (deciding the calls on one dispatcher and
    replaying them on its twin); ``extra_info["matches_per_s"]`` is offers
    per second of the replay alone, timed as one batch per round, the figure
    ``qroute bench core`` reports."""
    churn = W.Churn(case.cls, case.workload)
    per_round = CHURN_OPS[case.implementation]
    ops = W.churn_ops(case.workload, CHURN_WARMUP + CHURN_ROUNDS * per_round, seed=3)
    churn.run(ops[:CHURN_WARMUP])
    chunks = iter(range(CHURN_WARMUP, len(ops), per_round))
    rounds: list[W.ChurnRound] = []

    def target():
        begin = next(chunks)
        rounds.append(churn.run(ops[begin:begin + per_round]))

    benchmark.pedantic(target, rounds=CHURN_ROUNDS, iterations=1)
    matches = sum(r.matches for r in rounds)
    elapsed_s = sum(r.elapsed_ns for r in rounds) / 1e9
    benchmark.extra_info.update(workload=case.size_name, ops_per_round=per_round, matches=matches,
                                matches_per_s=round(matches / elapsed_s),
                                us_per_op=round(elapsed_s * 1e6 / (CHURN_ROUNDS * per_round), 2))
    assert matches > 0
