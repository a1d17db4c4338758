"""``qroute simulate``: the real engine and dispatcher on a virtual clock.

No network and no storage: a ``Floor`` (the engine's live state of one
account, with the dispatcher qroute would use) is driven event by event.
The clock jumps straight to the next thing that happens (an arrival, a
hang-up, the end of a wrap-up, a caller's patience running out, a queue
timeout) and one dispatch pass runs at each such instant, as the server's
scheduler would run one right after the change. Between those instants
nothing in this model can make a session routable, so no pass is skipped
that the server would have made count. Agents accept every offer the
instant it is made (no ring time), talk for a sampled handle time, hang up,
and wrap up for the queues' ``agent_wrapup_time``.

Arrivals are Poisson (exponential gaps, in integer milliseconds); handle
times exponential by default, or constant, lognormal with a given
coefficient of variation, or drawn from a file of observed handle times.
Patience (time until a waiting caller hangs up) is exponential when given.

Figures, over the calls after the warm-up (the first 2% by default):

- ``p_wait``: share of answered calls that waited at all (> 0 ms);
- ``asa_seconds``: average speed of answer, the mean wait of answered calls;
- ``service_level``: share of answered calls answered within the threshold
  (abandoned calls are left out of numerator and denominator, the usual
  call-center convention; with no abandonment every call is answered);
- ``abandon_rate``: share of calls that hung up waiting (or timed out);
- ``occupancy``: agents' handle time (talk and wrap-up) over their logged-in
  time, across the whole run;
- ``ewt_mean_abs_error_seconds``: mean |predicted - actual| wait, where the
  prediction is the estimated wait the engine gave the caller on joining.

In the single-queue case (Poisson arrivals, exponential handle time, no
abandonment, no wrap-up) these are what Erlang C predicts; ``erlang_c()``
gives the formula's figures, and the output shows them side by side.
"""

from __future__ import annotations

import argparse
import heapq
import json
import math
import random
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from qroute.domain.config import Member, QueueConfig, RecipientConfig
from qroute.domain.enums import Router, SessionState
from qroute.engine import Floor, VirtualClock

DEFAULT_WARMUP_SHARE = 0.02
MAX_AGENTS = 100_000

# -------------------------------------------------------------- Erlang C


@dataclass(frozen=True)
class ErlangC:
    """The Erlang C (M/M/c) figures of one staffing level."""

    agents: int
    traffic_erlangs: float
    p_wait: float
    asa_seconds: float
    service_level: float
    occupancy: float


def erlang_c(agents: int, calls_per_hour: float, aht_seconds: float, sl_threshold_seconds: float) -> ErlangC:
    """Erlang C for ``agents`` servers: P(wait), ASA and the service level at
    the threshold. Unstable staffing (traffic >= agents) gives P(wait) 1 and
    an infinite ASA. O(agents), with the Erlang B recurrence (no factorials,
    no overflow)."""
    traffic = calls_per_hour / 3600.0 * aht_seconds
    if agents <= traffic:
        return ErlangC(agents, traffic, 1.0, math.inf, 0.0, 1.0)
    blocking = 1.0
    for k in range(1, agents + 1):
        blocking = traffic * blocking / (k + traffic * blocking)
    p_wait = agents * blocking / (agents - traffic * (1.0 - blocking))
    rate_out = (agents - traffic) / aht_seconds  # per second: c*mu - lambda
    asa = p_wait / rate_out
    service_level = 1.0 - p_wait * math.exp(-rate_out * sl_threshold_seconds)
    return ErlangC(agents, traffic, p_wait, asa, service_level, traffic / agents)


# ------------------------------------------------------- handle times

HandleSampler = Callable[[random.Random], float]  # seconds


def handle_sampler(spec: str, aht_seconds: float) -> HandleSampler:
    """A sampler of handle times (seconds) with mean ``aht_seconds``, from
    ``exponential``, ``constant``, ``lognormal:CV`` (coefficient of variation)
    or ``file:PATH`` (observed handle times in seconds, one per line or
    separated by commas or spaces; ``aht_seconds`` is then ignored)."""
    kind, _, argument = spec.partition(":")
    if kind == "exponential" and not argument:
        return lambda rng: rng.expovariate(1.0 / aht_seconds)
    if kind == "constant" and not argument:
        return lambda rng: aht_seconds
    if kind == "lognormal":
        try:
            cv = float(argument)
        except ValueError:
            raise ValueError(f"lognormal needs a coefficient of variation, e.g. lognormal:0.8; got {spec!r}")
        if cv <= 0:
            raise ValueError(f"the coefficient of variation must be > 0, got {cv}")
        sigma = math.sqrt(math.log(1.0 + cv * cv))
        mu = math.log(aht_seconds) - sigma * sigma / 2.0
        return lambda rng: rng.lognormvariate(mu, sigma)
    if kind == "file" and argument:
        text = Path(argument).read_text(encoding="utf-8")
        samples = [float(word) for word in text.replace(",", " ").split()]
        if not samples or min(samples) < 0:
            raise ValueError(f"{argument}: expected non-negative handle times in seconds")
        return lambda rng: rng.choice(samples)
    raise ValueError(f"unknown handle-time distribution {spec!r} "
                     "(exponential, constant, lognormal:CV or file:PATH)")


def handle_mean(spec: str, aht_seconds: float) -> float:
    """The mean handle time ``spec`` gives (the file's mean for ``file:``)."""
    kind, _, argument = spec.partition(":")
    if kind == "file":
        samples = [float(word) for word in Path(argument).read_text(encoding="utf-8").replace(",", " ").split()]
        return sum(samples) / len(samples)
    return aht_seconds


# ------------------------------------------------------------ scenario


@dataclass(frozen=True)
class Scenario:
    """One simulated run. Calls are spread evenly over ``queues`` queues;
    agent ``i`` is a member of ``agent_queues`` of them (all by default),
    chosen so every queue gets as many members. With ``skills`` > 0 each
    call needs one of that many skills (uniformly) and agent ``i`` holds
    ``agent_skills`` of them (all by default), again evenly spread."""

    agents: int
    calls_per_hour: float
    aht_seconds: float
    calls: int
    seed: int = 1
    sl_threshold_seconds: float = 20.0
    patience_seconds: float | None = None
    wrapup_seconds: int = 0
    handle: str = "exponential"
    queues: int = 1
    agent_queues: int = 0  # 0: every queue
    skills: int = 0
    agent_skills: int = 0  # 0: every skill
    router: str = "round_robin"
    queue_timeout_seconds: int = 3600
    warmup_calls: int | None = None  # default: 2% of the calls

    def problems(self) -> list[str]:
        found = []
        if not 1 <= self.agents <= MAX_AGENTS:
            found.append(f"agents must be 1 to {MAX_AGENTS:,}")
        if self.calls_per_hour <= 0:
            found.append("calls per hour must be > 0")
        if self.aht_seconds <= 0:
            found.append("the average handle time must be > 0")
        if self.calls < 1:
            found.append("calls must be at least 1")
        if self.patience_seconds is not None and self.patience_seconds <= 0:
            found.append("patience must be > 0 seconds")
        if self.wrapup_seconds < 0:
            found.append("wrap-up must be >= 0 seconds")
        if self.queues < 1 or self.agent_queues < 0 or self.agent_queues > self.queues:
            found.append("queues must be >= 1, and agent queues 0 (all) to queues")
        if self.skills < 0 or self.agent_skills < 0 or self.agent_skills > self.skills:
            found.append("skills must be >= 0, and agent skills 0 (all) to skills")
        if self.queue_timeout_seconds < 10:
            found.append("the queue timeout must be >= 10 seconds")
        return found

    @property
    def erlang_c_applies(self) -> bool:
        """Whether Erlang C models this run exactly (M/M/c, one FIFO line)."""
        return (self.queues == 1 and self.skills == 0 and self.patience_seconds is None
                and self.wrapup_seconds == 0 and self.handle == "exponential")

    @property
    def warmup(self) -> int:
        if self.warmup_calls is not None:
            return min(self.warmup_calls, self.calls - 1)
        return int(self.calls * DEFAULT_WARMUP_SHARE)


@dataclass
class QueueFigures:
    calls: int = 0
    answered: int = 0
    abandoned: int = 0
    timed_out: int = 0
    waited: int = 0
    within_threshold: int = 0
    wait_ms_sum: int = 0

    def add(self, other: QueueFigures) -> None:
        for name in self.__dataclass_fields__:
            setattr(self, name, getattr(self, name) + getattr(other, name))


@dataclass
class Result:
    """The figures of one run (see the module doc); ``erlang_c`` is set when the formula applies."""

    agents: int
    calls: int
    measured_calls: int
    answered: int
    p_wait: float
    asa_seconds: float
    service_level: float
    sl_threshold_seconds: float
    abandon_rate: float
    occupancy: float
    ewt_mean_abs_error_seconds: float
    ewt_bias_seconds: float
    wait_p90_seconds: float
    simulated_hours: float
    passes: int
    run_seconds: float
    dispatcher: str
    erlang_c: dict[str, float] | None = None
    queues: dict[str, dict[str, Any]] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        doc = asdict(self)
        if self.erlang_c is not None:
            doc["erlang_c"] = {k: (None if isinstance(v, float) and math.isinf(v) else v)
                               for k, v in self.erlang_c.items()}
        return doc


# ---------------------------------------------------------------- the run

_ARRIVAL, _HANGUP, _WAKE, _PATIENCE = 0, 1, 2, 3


class Simulation:
    """One scenario on a fresh floor. ``run()`` returns its ``Result``."""

    def __init__(self, scenario: Scenario, dispatcher_cls=None) -> None:
        problems = scenario.problems()
        if problems:
            raise ValueError("; ".join(problems))
        self.scenario = scenario
        self.clock = VirtualClock(0)
        self.offered: list[tuple[str, str]] = []  # (recipient id, offer id) of the pass just run
        self.timed_out: list[str] = []
        self.floor = Floor("sim", self.clock, self._on_event, dispatcher_cls, seed=scenario.seed)
        router = Router[scenario.router.upper()]
        self.queue_ids = [f"q{i}" for i in range(scenario.queues)]
        for queue_id in self.queue_ids:
            self.floor.create_queue(QueueConfig(
                id=queue_id, name=queue_id, router=router, agent_wrapup_time=scenario.wrapup_seconds,
                timeout=scenario.queue_timeout_seconds, ring_timeout=3600))
        skill_names = [f"s{i}" for i in range(scenario.skills)]
        per_agent_queues = scenario.agent_queues or scenario.queues
        per_agent_skills = scenario.agent_skills or scenario.skills
        members: dict[str, list[Member]] = {queue_id: [] for queue_id in self.queue_ids}
        for i in range(scenario.agents):
            skills = {skill_names[(i + k) % scenario.skills]: 5 for k in range(per_agent_skills)}
            self.floor.create_recipient(RecipientConfig(id=f"a{i}", skills=skills))
            for k in range(per_agent_queues):
                members[self.queue_ids[(i + k) % scenario.queues]].append(Member(f"a{i}"))
        for queue_id, listed in members.items():
            if listed:
                self.floor.add_members(queue_id, listed)
        for i in range(scenario.agents):
            self.floor.login(f"a{i}", ready=True)
        self.skill_names = skill_names
        self.run_pass = self.floor.run_pass
        module = type(self.floor.dispatcher).__module__
        self.dispatcher_name = "compiled" if module.endswith("_core") else "reference"

    def _on_event(self, event) -> None:
        kind = event.type
        if kind == "recipient.offered":
            self.offered.append((event.entity_id, event.data["offer_id"]))
        elif kind == "session.timed_out":
            self.timed_out.append(event.entity_id)

    def run(self) -> Result:
        scenario = self.scenario
        started = time.perf_counter()
        floor, clock = self.floor, self.clock
        rng_arrivals = random.Random(scenario.seed)
        rng_handle = random.Random(scenario.seed * 7919 + 1)
        rng_route = random.Random(scenario.seed * 104729 + 2)
        rng_patience = random.Random(scenario.seed * 1299709 + 3)
        sample_handle = handle_sampler(scenario.handle, scenario.aht_seconds)
        mean_gap_ms = 3_600_000.0 / scenario.calls_per_hour
        patience_ms = scenario.patience_seconds * 1000.0 if scenario.patience_seconds else 0.0
        timeout_ms = scenario.queue_timeout_seconds * 1000
        wrapup_ms = scenario.wrapup_seconds * 1000
        threshold_ms = scenario.sl_threshold_seconds * 1000.0
        warmup = scenario.warmup
        queue_count, skill_count = scenario.queues, scenario.skills

        events: list[tuple[int, int, int, Any]] = []  # (time ms, order, kind, payload)
        order = 0
        # session id -> (call index, queue index); only sessions still in the system
        live: dict[str, tuple[int, int]] = {}
        figures = [QueueFigures() for _ in range(queue_count)]
        wait_samples: list[int] = []
        ewt_error_ms = 0.0
        ewt_bias_ms = 0.0
        ewt_count = 0
        busy_ms = 0.0
        passes = 0

        arrivals_left = scenario.calls
        next_index = 0
        heapq.heappush(events, (0, 0, _ARRIVAL, None))
        push, pop = heapq.heappush, heapq.heappop
        enqueue, accept, hangup, abandon = floor.enqueue, floor.accept, floor.hangup, floor.abandon
        offered = self.offered
        last_end = 0  # when the last call's handling (talk and wrap-up) ends
        talking = 0  # hang-ups still to come

        while events:
            now = events[0][0]
            clock.set(now)
            while events and events[0][0] == now:
                _, _, kind, payload = pop(events)
                if kind == _ARRIVAL:
                    queue_index = rng_route.randrange(queue_count) if queue_count > 1 else 0
                    skills = {self.skill_names[rng_route.randrange(skill_count)]: 0} if skill_count else None
                    session = enqueue(self.queue_ids[queue_index], skills=skills)
                    live[session.id] = (next_index, queue_index)
                    if next_index >= warmup:
                        figures[queue_index].calls += 1
                    next_index += 1
                    order += 1
                    if patience_ms:
                        push(events, (now + max(1, round(rng_patience.expovariate(1.0 / patience_ms))),
                                      order, _PATIENCE, session))
                    order += 1
                    push(events, (now + timeout_ms, order, _WAKE, None))
                    arrivals_left -= 1
                    if arrivals_left:
                        order += 1
                        push(events, (now + round(rng_arrivals.expovariate(1.0 / mean_gap_ms)), order,
                                      _ARRIVAL, None))
                elif kind == _HANGUP:
                    hangup(payload)
                    talking -= 1
                    if wrapup_ms:
                        order += 1
                        push(events, (now + wrapup_ms, order, _WAKE, None))
                    last_end = max(last_end, now + wrapup_ms)
                elif kind == _PATIENCE:
                    if payload.state == SessionState.WAITING:
                        abandon(payload.id)
                        index, queue_index = live.pop(payload.id)
                        if index >= warmup:
                            figures[queue_index].abandoned += 1
                # _WAKE: only the pass below (a wrap-up end or queue timeout is due)
            offered.clear()
            self.timed_out.clear()
            self.run_pass(now)
            passes += 1
            for session_id in self.timed_out:
                index, queue_index = live.pop(session_id)
                if index >= warmup:
                    figures[queue_index].timed_out += 1
            for recipient_id, offer_id in offered:
                session = accept(offer_id, recipient_id)
                index, queue_index = live.pop(session.id)
                handle_ms = max(1, round(sample_handle(rng_handle) * 1000.0))
                busy_ms += handle_ms + wrapup_ms
                order += 1
                push(events, (now + handle_ms, order, _HANGUP, session.id))
                talking += 1
                if index < warmup:
                    continue
                wait = session.wait_ms
                queue_figures = figures[queue_index]
                queue_figures.answered += 1
                queue_figures.wait_ms_sum += wait
                if wait > 0:
                    queue_figures.waited += 1
                if wait <= threshold_ms:
                    queue_figures.within_threshold += 1
                wait_samples.append(wait)
                predicted = session.estimated_wait_ms
                if predicted >= 0:
                    ewt_error_ms += abs(predicted - wait)
                    ewt_bias_ms += predicted - wait
                    ewt_count += 1
            if not arrivals_left and not live and not talking:
                break  # what is left are timers of callers long gone

        total = QueueFigures()
        for queue_figures in figures:
            total.add(queue_figures)
        span_ms = max(last_end, clock.now_ms()) or 1  # the clock started at 0 with the first arrival
        wait_samples.sort()
        p90 = wait_samples[min(len(wait_samples) - 1, int(0.9 * len(wait_samples)))] if wait_samples else 0
        applies = scenario.erlang_c_applies
        formula = (erlang_c(scenario.agents, scenario.calls_per_hour, scenario.aht_seconds,
                            scenario.sl_threshold_seconds) if applies else None)
        return Result(
            agents=scenario.agents,
            calls=scenario.calls,
            measured_calls=total.calls,
            answered=total.answered,
            p_wait=_share(total.waited, total.answered),
            asa_seconds=total.wait_ms_sum / total.answered / 1000.0 if total.answered else 0.0,
            service_level=_share(total.within_threshold, total.answered),
            sl_threshold_seconds=scenario.sl_threshold_seconds,
            abandon_rate=_share(total.abandoned + total.timed_out, total.calls),
            occupancy=busy_ms / (scenario.agents * span_ms),
            ewt_mean_abs_error_seconds=ewt_error_ms / ewt_count / 1000.0 if ewt_count else 0.0,
            ewt_bias_seconds=ewt_bias_ms / ewt_count / 1000.0 if ewt_count else 0.0,
            wait_p90_seconds=p90 / 1000.0,
            simulated_hours=span_ms / 3_600_000.0,
            passes=passes,
            run_seconds=time.perf_counter() - started,
            dispatcher=self.dispatcher_name,
            erlang_c=({"p_wait": formula.p_wait, "asa_seconds": formula.asa_seconds,
                       "service_level": formula.service_level, "occupancy": formula.occupancy}
                      if formula else None),
            queues=({queue_id: {"calls": f.calls, "answered": f.answered, "abandoned": f.abandoned,
                                "timed_out": f.timed_out, "p_wait": _share(f.waited, f.answered),
                                "asa_seconds": f.wait_ms_sum / f.answered / 1000.0 if f.answered else 0.0,
                                "service_level": _share(f.within_threshold, f.answered)}
                     for queue_id, f in zip(self.queue_ids, figures)} if queue_count > 1 else {}),
        )


def _share(part: int, whole: int) -> float:
    return part / whole if whole else 0.0


def simulate(scenario: Scenario, dispatcher_cls=None) -> Result:
    """Run ``scenario`` on a fresh floor (the default dispatcher unless given)."""
    return Simulation(scenario, dispatcher_cls).run()


# -------------------------------------------------------------- command line


def agent_range(text: str) -> list[int]:
    """``"12"`` -> [12]; ``"10-14"`` -> [10, 11, 12, 13, 14]; ``"10-30:5"`` -> every 5th."""
    span, _, step_text = text.partition(":")
    low_text, dash, high_text = span.partition("-")
    try:
        low = int(low_text)
        high = int(high_text) if dash else low
        step = int(step_text) if step_text else 1
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected N, A-B or A-B:STEP, got {text!r}") from None
    if low < 1 or high < low or step < 1:
        raise argparse.ArgumentTypeError(f"expected 1 <= A <= B and STEP >= 1, got {text!r}")
    if high > MAX_AGENTS or (high - low) // step >= 1000:
        raise argparse.ArgumentTypeError(f"at most {MAX_AGENTS:,} agents and 1,000 staffing levels")
    values = list(range(low, high + 1, step))
    if values[-1] != high:
        values.append(high)
    return values


def scenario_from_args(args: argparse.Namespace, agents: int) -> Scenario:
    return Scenario(
        agents=agents, calls_per_hour=args.calls_per_hour, aht_seconds=args.aht, calls=args.calls,
        seed=args.seed, sl_threshold_seconds=args.sl_threshold, patience_seconds=args.patience,
        wrapup_seconds=args.wrapup, handle=args.handle, queues=args.queues, agent_queues=args.agent_queues,
        skills=args.skills, agent_skills=args.agent_skills, router=args.router,
        queue_timeout_seconds=args.queue_timeout, warmup_calls=args.warmup_calls)


HEADERS = ["agents", "P(wait)", "ASA (s)", "SL", "abandoned", "occupancy", "EWT error (s)", "wait p90 (s)"]
ERLANG_HEADERS = ["Erlang C P(wait)", "Erlang C ASA (s)", "Erlang C SL"]


def _percent(value: float) -> str:
    return f"{100 * value:.1f}%"


def _seconds(value: float) -> str:
    return "inf" if math.isinf(value) else f"{value:,.1f}"


def table_rows(results: Sequence[Result]) -> tuple[list[str], list[list[str]]]:
    with_formula = any(r.erlang_c for r in results)
    headers = HEADERS + (ERLANG_HEADERS if with_formula else [])
    rows = []
    for r in results:
        row = [str(r.agents), _percent(r.p_wait), _seconds(r.asa_seconds), _percent(r.service_level),
               _percent(r.abandon_rate), _percent(r.occupancy), _seconds(r.ewt_mean_abs_error_seconds),
               _seconds(r.wait_p90_seconds)]
        if with_formula:
            formula = r.erlang_c or {}
            row += [_percent(formula["p_wait"]) if formula else "", _seconds(formula["asa_seconds"]) if formula
                    else "", _percent(formula["service_level"]) if formula else ""]
        rows.append(row)
    return headers, rows


def print_table(title: str, results: Sequence[Result]) -> None:
    from rich.console import Console
    from rich.table import Table

    headers, rows = table_rows(results)
    table = Table(title=title, title_justify="left")
    for header in headers:
        table.add_column(header, justify="right")
    for row in rows:
        table.add_row(*row)
    Console(width=max(120, Console().width)).print(table)


def plot(results: Sequence[Result], path: str, title: str) -> None:
    """Service level and ASA against staffing, as a PNG (matplotlib: ``pip install 'qroute[plot]'``)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    agents = [r.agents for r in results]
    figure, left = plt.subplots(figsize=(8, 4.5), dpi=120)
    left.plot(agents, [100 * r.service_level for r in results], "o-", color="tab:blue",
              label=f"service level ({results[0].sl_threshold_seconds:g} s)")
    if any(r.erlang_c for r in results):
        left.plot(agents, [100 * r.erlang_c["service_level"] if r.erlang_c else math.nan for r in results],
                  "--", color="tab:blue", alpha=0.5, label="service level, Erlang C")
    left.set_xlabel("agents")
    left.set_ylabel("service level (%)", color="tab:blue")
    left.set_ylim(0, 100)
    right = left.twinx()
    right.plot(agents, [r.asa_seconds for r in results], "s-", color="tab:red", label="ASA")
    right.set_ylabel("average speed of answer (s)", color="tab:red")
    right.set_ylim(bottom=0)
    lines = left.get_lines() + right.get_lines()
    left.legend(lines, [line.get_label() for line in lines], loc="center right")
    left.set_title(title, fontsize=10)
    left.grid(alpha=0.3)
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)


def describe(args: argparse.Namespace) -> str:
    parts = [f"{args.calls_per_hour:,.0f} calls/h", f"AHT {args.aht:g} s ({args.handle})",
             f"{args.calls:,} calls", f"seed {args.seed}"]
    if args.queues > 1:
        parts.append(f"{args.queues} queues")
    if args.skills:
        parts.append(f"{args.skills} skills")
    if args.patience:
        parts.append(f"patience {args.patience:g} s")
    if args.wrapup:
        parts.append(f"wrap-up {args.wrapup} s")
    parts.append(f"SL threshold {args.sl_threshold:g} s")
    return ", ".join(parts)


def run(args: argparse.Namespace) -> int:
    """``qroute simulate``; returns the exit status."""
    if args.plot:
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            print("qroute: --plot needs matplotlib: pip install 'qroute[plot]'", file=sys.stderr)
            return 2
    try:
        handle_sampler(args.handle, args.aht)
        scenarios = [scenario_from_args(args, agents) for agents in args.agents]
        for scenario in scenarios:
            problems = scenario.problems()
            if problems:
                raise ValueError("; ".join(problems))
    except (ValueError, OSError) as exc:
        print(f"qroute: {exc}", file=sys.stderr)
        return 2
    results = []
    started = time.perf_counter()
    for scenario in scenarios:
        results.append(simulate(scenario))
        if len(scenarios) > 1:
            print(f"[{time.perf_counter() - started:6.1f}s] {scenario.agents} agents done", file=sys.stderr)
    elapsed = time.perf_counter() - started
    title = f"qroute simulate: {describe(args)}"
    if args.json:
        documents = [r.to_json() for r in results]
        Path(args.json).write_text(json.dumps(documents[0] if len(documents) == 1 else documents, indent=2) + "\n",
                                   encoding="utf-8")
    print_table(title, results)
    simulated = sum(r.calls for r in results)
    print(f"{simulated:,} calls simulated in {elapsed:.1f} s ({simulated / elapsed:,.0f} calls/s, "
          f"{results[0].dispatcher} dispatcher)")
    if args.plot:
        plot(results, args.plot, title)
        print(f"chart written to {args.plot}")
    return 0
