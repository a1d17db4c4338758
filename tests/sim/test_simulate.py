"""``qroute simulate``: its figures, options and command line."""

from __future__ import annotations

import json

import pytest

from qroute.cli import main
from qroute.simulate import Scenario, agent_range, erlang_c, handle_sampler, simulate


def small(**fields) -> Scenario:
    base = dict(agents=4, calls_per_hour=60.0, aht_seconds=180.0, calls=3_000, seed=3)
    return Scenario(**(base | fields))


def test_both_dispatchers_simulate_the_same_calls(impl):
    # the engine with either dispatcher makes the same offers, so the same figures
    scenario = small(queues=2, skills=3, agent_skills=2, patience_seconds=60.0, wrapup_seconds=5)
    assert simulate(scenario, impl).to_json() | {"run_seconds": 0, "dispatcher": ""} == \
        simulate(scenario).to_json() | {"run_seconds": 0, "dispatcher": ""}


def test_patience_makes_callers_abandon():
    patient = simulate(small())
    impatient = simulate(small(patience_seconds=30.0))
    assert patient.abandon_rate == 0.0
    assert 0.05 < impatient.abandon_rate < 0.6
    assert impatient.asa_seconds < patient.asa_seconds  # those who would wait longest leave
    assert impatient.erlang_c is None  # Erlang C does not model abandonment


def test_wrapup_adds_to_occupancy():
    plain = simulate(small())
    wrapped = simulate(small(wrapup_seconds=60))
    assert plain.occupancy == pytest.approx(60 / 3600 * 180 / 4, abs=0.03)
    assert wrapped.occupancy == pytest.approx(60 / 3600 * 240 / 4, abs=0.03)
    assert wrapped.asa_seconds > plain.asa_seconds


def test_queues_and_skills_serve_every_call():
    result = simulate(small(agents=6, queues=3, agent_queues=2, skills=2, agent_skills=1))
    assert result.answered == result.measured_calls
    assert set(result.queues) == {"q0", "q1", "q2"}
    assert sum(q["calls"] for q in result.queues.values()) == result.measured_calls


def test_handle_time_distributions(tmp_path):
    constant = simulate(small(handle="constant"))
    assert constant.occupancy == pytest.approx(60 / 3600 * 180 / 4, abs=0.03)
    # M/D/c waits less than M/M/c at the same load
    assert constant.asa_seconds < erlang_c(4, 60.0, 180.0, 20.0).asa_seconds
    observed = tmp_path / "handle.txt"
    observed.write_text("60\n120, 180\n 240\n")
    from_file = simulate(small(handle=f"file:{observed}"))
    assert from_file.occupancy == pytest.approx(60 / 3600 * 150 / 4, abs=0.03)
    import random

    sample = handle_sampler("lognormal:0.5", 100.0)
    rng = random.Random(1)
    draws = [sample(rng) for _ in range(20_000)]
    assert sum(draws) / len(draws) == pytest.approx(100.0, rel=0.03)
    with pytest.raises(ValueError):
        handle_sampler("weibull", 100.0)


def test_ewt_error_is_reported_and_small_against_the_waits():
    result = simulate(small(agents=3, calls=5_000))
    assert result.asa_seconds > 10
    assert 0 < result.ewt_mean_abs_error_seconds < 2 * result.asa_seconds


def test_agent_ranges():
    assert agent_range("12") == [12]
    assert agent_range("10-13") == [10, 11, 12, 13]
    assert agent_range("10-30:8") == [10, 18, 26, 30]
    import argparse

    for bad in ("0", "5-3", "x", "1-2:0"):
        with pytest.raises(argparse.ArgumentTypeError):
            agent_range(bad)


def test_command_line_range_table_and_json(tmp_path, capsys):
    path = tmp_path / "out.json"
    status = main(["simulate", "--agents", "3-5", "--calls-per-hour", "60", "--aht", "150", "--calls", "2000",
                   "--json", str(path)])
    out = capsys.readouterr().out
    assert status == 0
    assert "Erlang C" in out and "6,000 calls simulated" in out
    documents = json.loads(path.read_text())
    assert [d["agents"] for d in documents] == [3, 4, 5]
    for document in documents:
        for key in ("p_wait", "asa_seconds", "service_level", "abandon_rate", "occupancy",
                    "ewt_mean_abs_error_seconds"):
            assert isinstance(document[key], float), key
    assert documents[0]["p_wait"] > documents[1]["p_wait"] > documents[2]["p_wait"]
    assert documents[0]["service_level"] < documents[2]["service_level"]


def test_command_line_single_run_writes_one_object(tmp_path, capsys):
    path = tmp_path / "one.json"
    assert main(["simulate", "--agents", "2", "--calls-per-hour", "20", "--calls", "1000", "--patience", "90",
                 "--wrapup", "10", "--json", str(path)]) == 0
    document = json.loads(path.read_text())
    assert document["agents"] == 2 and document["erlang_c"] is None and document["abandon_rate"] > 0


def test_command_line_refuses_bad_input(capsys):
    assert main(["simulate", "--handle", "weibull", "--calls", "10"]) == 2
    assert "unknown handle-time distribution" in capsys.readouterr().err
    assert main(["simulate", "--skills", "2", "--agent-skills", "3", "--calls", "10"]) == 2


def test_plot(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    path = tmp_path / "staffing.png"
    assert main(["simulate", "--agents", "3-5", "--calls-per-hour", "60", "--calls", "500",
                 "--plot", str(path)]) == 0
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_plot_without_matplotlib_says_how_to_get_it(monkeypatch, tmp_path, capsys):
    import builtins

    real_import = builtins.__import__

    def no_matplotlib(name, *args, **kwargs):
        if name == "matplotlib" or name.startswith("matplotlib."):
            raise ImportError("no matplotlib here")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_matplotlib)
    assert main(["simulate", "--calls", "10", "--plot", str(tmp_path / "x.png")]) == 2
    assert "qroute[plot]" in capsys.readouterr().err
