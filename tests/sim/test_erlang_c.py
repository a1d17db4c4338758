"""``qroute simulate`` against the Erlang C formula.

In the single-queue case (Poisson arrivals, exponential handle time, one
FIFO queue, no abandonment, no wrap-up) the engine is an M/M/c queue, so the
simulated P(wait), ASA and service level must agree with Erlang C: within 1
percentage point for P(wait) and service level, and 5% for ASA. Each case
simulates enough calls that its sampling error (measured over seeds: about a
third of those bounds) cannot pass for agreement or disagreement, and runs
on the dispatcher the suite runs on (compiled, or the reference with
QROUTE_NO_EXTENSIONS=1). The seeds are fixed, so a run is reproducible.
"""

from __future__ import annotations

import math

import pytest

from qroute.simulate import Scenario, erlang_c, simulate

# (agents, calls per hour, AHT seconds, calls): loads 0.5 to 0.8, P(wait) 0.25 to 0.5
CASES = [
    pytest.param(1, 10.0, 180.0, 60_000, id="1 agent, load 0.5"),
    pytest.param(3, 42.0, 180.0, 100_000, id="3 agents, load 0.7"),
    pytest.param(10, 160.0, 180.0, 160_000, id="10 agents, load 0.8"),
    pytest.param(25, 600.0, 120.0, 100_000, id="25 agents, load 0.8"),
]


def test_the_formula_gives_the_textbook_figures():
    # 8 erlangs on 10 agents (the usual worked example): P(wait) 40.9%, ASA 36.8 s at AHT 180 s
    figures = erlang_c(10, 160.0, 180.0, 20.0)
    assert figures.traffic_erlangs == pytest.approx(8.0)
    assert figures.p_wait == pytest.approx(0.40918, abs=1e-4)
    assert figures.asa_seconds == pytest.approx(36.826, abs=1e-2)
    assert figures.service_level == pytest.approx(1 - 0.40918 * math.exp(-2 / 180 * 20), abs=1e-4)
    assert figures.occupancy == pytest.approx(0.8)
    # M/M/1: P(wait) is the load, ASA = rho / (mu - lambda)
    single = erlang_c(1, 10.0, 180.0, 0.0)
    assert single.p_wait == pytest.approx(0.5)
    assert single.asa_seconds == pytest.approx(180.0)
    # not enough agents: everyone waits, without end
    assert erlang_c(8, 160.0, 180.0, 20.0).p_wait == 1.0
    assert math.isinf(erlang_c(8, 160.0, 180.0, 20.0).asa_seconds)
    # hundreds of agents: no overflow
    assert 0 < erlang_c(500, 3600 * 4.7, 100.0, 20.0).p_wait < 1


@pytest.mark.timeout(300)
@pytest.mark.parametrize("agents, calls_per_hour, aht, calls", CASES)
def test_single_queue_agrees_with_erlang_c(agents, calls_per_hour, aht, calls):
    # no queue timeout either: M/M/1 at load 0.5 has a caller waiting past an hour every ~40,000 calls
    scenario = Scenario(agents=agents, calls_per_hour=calls_per_hour, aht_seconds=aht, calls=calls, seed=7,
                        sl_threshold_seconds=20.0, queue_timeout_seconds=10**7)
    assert scenario.erlang_c_applies
    result = simulate(scenario)
    formula = erlang_c(agents, calls_per_hour, aht, 20.0)
    assert result.answered == result.measured_calls and result.abandon_rate == 0.0
    assert result.p_wait == pytest.approx(formula.p_wait, abs=0.01)
    assert result.service_level == pytest.approx(formula.service_level, abs=0.01)
    assert result.asa_seconds == pytest.approx(formula.asa_seconds, rel=0.05)
    assert result.occupancy == pytest.approx(formula.occupancy, abs=0.01)
    assert result.erlang_c["p_wait"] == pytest.approx(formula.p_wait)
