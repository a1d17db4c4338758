"""``qroute bench core``: the routing core's standard workload on every
dispatcher implementation, in one process.

For each implementation (compiled and reference, taking turns) it measures,
after a warm-up, (a) the full pass, (b) the incremental pass, (c) churn in
matches per second and the memory per waiting session (see
``qroute.bench.workload`` for what each one times), prints a table with the
median and range (min–max) of every figure, the ratio between the two
implementations and the issue's targets, and ends with exactly one line::

    core: compiled <N> matches/s, reference <M> matches/s, ratio <R>x, incremental pass p50 <T> us, full pass p50 <F> ms

The churn ratio (on that line, and in the table's churn rows) is the median
over paired batches: the same few hundred calls replayed on both, reference
time over compiled time (``paired_churn_ratio``); a note under the table
gives it per round, and the ratio of the two implementations' round medians
beside it. The pass figures on that line are the compiled implementation's;
when it was not measured they are the reference's (a note above the line
says so) and the missing numbers read ``n/a``. The targets are reported,
never asserted.

The reference is slower by design, so it gets fewer full passes and fewer
incremental samples (each incremental sample starts from the same state, so
their number does not change what is measured). Churn runs the identical
script, from the identical (freshly saturated) state, on both, timed the same
way (``qroute.bench.workload.Churn``: each round is decided on one
dispatcher and replayed on its twin in batches of ops, the thread's CPU time
read before and after each batch, so no per-op clock read, bookkeeping or
other process's time is in it); since both must return identical records,
the run also compares what each churn round did and prints a note if the
implementations disagree. The line printed under the table says how each
figure is timed.
"""

from __future__ import annotations

import argparse
import importlib
import json
import math
import os
import platform
import statistics
import sys
import time
from dataclasses import asdict, dataclass
from typing import Any

from qroute.bench import workload as W
from qroute.bench.engine_churn import EngineChurn

TARGET_CHURN_RATIO = 30.0  # compiled / reference matches per second, at least
TARGET_INCREMENTAL_US = 20.0  # incremental pass p50, at most
TARGET_FULL_MS = 20.0  # full pass p50, at most
TARGET_BYTES_PER_SESSION = 256  # at most
ENGINE_WARMUP_OPS = 1_000
ENGINE_OPS = 3_000  # per round of churn through the engine
ENGINE_ROUNDS = 3


@dataclass(frozen=True)
class Effort:
    """How many samples one implementation gets."""

    full_samples: int
    incremental_rounds: int
    incremental_samples: int  # per round
    incremental_warmup: int
    churn_rounds: int
    churn_ops: int  # per round
    churn_warmup: int


def effort(implementation: str, repeat: int) -> Effort:
    """Samples for ``implementation``; sized so the default run of both
    takes well under three minutes on a 2-core machine (about a minute idle).

    Churn runs the same script on both: the state drifts slowly as a churn
    script goes on (callers who can be served leave, idle agents gather), so
    only equal scripts from equal states compare equal work. A round is
    40,000 ops: ~40 ms of the compiled dispatcher, so that a stall of a few
    milliseconds on a shared machine does not make a round's figure.
    """
    repeat = max(1, repeat)
    churn = dict(churn_rounds=repeat, churn_ops=40_000, churn_warmup=2_000)
    if implementation == "reference":
        return Effort(full_samples=max(1, min(3, math.ceil(repeat / 2))),
                      incremental_rounds=repeat, incremental_samples=500, incremental_warmup=100,
                      **churn)
    return Effort(full_samples=repeat, incremental_rounds=repeat, incremental_samples=3_000,
                  incremental_warmup=1_000, **churn)


# ------------------------------------------------------------------- measuring

class _Progress:
    """Progress notes on stderr, so stdout holds only the table and the line."""

    def __init__(self) -> None:
        self.start = time.perf_counter()

    def __call__(self, message: str) -> None:
        print(f"[{time.perf_counter() - self.start:6.1f}s] {message}", file=sys.stderr, flush=True)


def measure(implementations: dict[str, type], workload: W.Workload, plans: dict[str, Effort],
            ops: list, note: _Progress) -> dict[str, dict[str, Any]]:
    """Every figure of every implementation, as raw samples.

    The implementations take turns sample by sample (full pass) and round by
    round (incremental pass, churn), so a change in the machine's load while
    the benchmark runs affects both alike and spares the ratio.
    """
    names = list(implementations)

    def turns(count: dict[str, int]) -> list[tuple[int, str]]:
        return [(i, name) for i in range(max(count.values())) for name in names if i < count[name]]

    for name in names:
        note(f"{name}: warm-up full pass on a twentieth of the workload")
        W.full_pass(implementations[name], workload, 0, warmup=True)
    samples = {name: plans[name].full_samples for name in names}
    note("full pass: " + ", ".join(f"{name} {n} fresh build(s)" for name, n in samples.items()))
    full: dict[str, list[float]] = {name: [] for name in names}
    offers: dict[str, int] = {}
    for _, name in turns(samples):
        result = W.full_pass(implementations[name], workload, 1, warmup=False)
        full[name] += result.times_ms
        offers[name] = result.offers

    memory = {}
    for name in names:
        note(f"{name}: memory per waiting session (tracemalloc)")
        memory[name] = W.memory_per_session(implementations[name], workload)

    saturated = {}
    for name in names:
        note(f"{name}: saturating")
        saturated[name] = W.saturate(implementations[name], workload)
        note(f"{name}: saturated after {saturated[name].rounds} passes, "
             f"{len(saturated[name].busy):,} busy, {saturated[name].idle} idle made not ready")

    rounds = {name: plans[name].incremental_rounds for name in names}
    note("incremental pass: " + ", ".join(
        f"{name} {rounds[name]} x {plans[name].incremental_samples:,} samples" for name in names))
    incremental: dict[str, list[W.IncrementalResult]] = {name: [] for name in names}
    for name in names:
        W.incremental_pass(saturated[name], 0, 0, warmup=plans[name].incremental_warmup,
                           seed=workload.seed + 1)
    for i, name in turns(rounds):
        incremental[name].append(W.incremental_pass(
            saturated[name], plans[name].incremental_samples, 1, seed=workload.seed + 1,
            first_round=i))

    # The incremental samples moved the LEAST_* counters, round-robin cursors
    # and random state by different amounts in each implementation: churn
    # starts again from fresh saturated states, the same for both.
    del saturated
    churners = {}
    for name in names:
        note(f"{name}: saturating again for churn (a driven dispatcher and its timed twin)")
        churners[name] = W.Churn(implementations[name], workload)
    rounds = {name: plans[name].churn_rounds for name in names}
    note("churn: " + ", ".join(f"{name} {rounds[name]} x {plans[name].churn_ops:,} ops "
                               f"(+ {plans[name].churn_warmup:,} warm-up)" for name in names))
    for name in names:
        churners[name].run(ops[:plans[name].churn_warmup])
    churn: dict[str, list[W.ChurnRound]] = {name: [] for name in names}
    for i, name in turns(rounds):
        begin = plans[name].churn_warmup + i * plans[name].churn_ops
        churn[name].append(churners[name].run(ops[begin:begin + plans[name].churn_ops]))
    del churners

    # The same churn through the engine (commands, events, a pass after each).
    engine_churn: dict[str, list[float]] = {name: [] for name in names}
    engine_us: dict[str, list[float]] = {name: [] for name in names}
    for name in names:
        note(f"{name}: engine loaded with the workload, saturated, churning")
        churner = EngineChurn(implementations[name], workload)
        churner.run(ops[:ENGINE_WARMUP_OPS])
        for i in range(ENGINE_ROUNDS):
            begin = ENGINE_WARMUP_OPS + i * ENGINE_OPS
            result = churner.run(ops[begin:begin + ENGINE_OPS])
            engine_churn[name].append(result.matches_per_s)
            engine_us[name].append(result.us_per_op)
        del churner

    results = {}
    for name in names:
        rounds_us = [samples for result in incremental[name] for samples in result.rounds_us]
        every = [x for samples in rounds_us for x in samples]
        passes = sum(result.passes for result in incremental[name])
        results[name] = {
            "effort": asdict(plans[name]),
            "full_pass_ms": full[name],
            "full_pass_offers": offers[name],
            "incremental_p50_us": [statistics.median(samples) for samples in rounds_us],
            "incremental_p99_us": [W.percentile(samples, 0.99) for samples in rounds_us],
            "incremental_min_us": min(every),
            "incremental_max_us": max(every),
            "incremental_offered_share":
                sum(result.offered for result in incremental[name]) / max(1, passes),
            "churn_matches_per_s": [r.matches_per_s for r in churn[name]],
            "churn_us_per_op": [r.us_per_op for r in churn[name]],
            "churn_batch_ns": [r.batch_ns for r in churn[name]],
            "churn_rounds": [asdict(r) | {"matches_per_s": r.matches_per_s} for r in churn[name]],
            "churn_outcome": [r.outcome() for r in churn[name]],
            "engine_churn_matches_per_s": engine_churn[name],
            "engine_churn_us_per_op": engine_us[name],
            "bytes_per_session": [memory[name].bytes_per_session],
            "config_bytes": memory[name].config_bytes,
        }
    return results


# ------------------------------------------------------------------- reporting

@dataclass(frozen=True)
class Row:
    label: str
    key: str
    unit: str
    digits: int
    faster: str  # "lower" or "higher": which way is better
    target: str = ""
    paired: bool = False  # the ratio is churn's, of paired batches (see paired_churn_ratio)


ROWS = [
    Row("full pass, CPU time", "full_pass_ms", "ms", 1, "lower", f"≤ {TARGET_FULL_MS:g} ms"),
    Row("incremental pass p50, each timed alone", "incremental_p50_us", "us", 1, "lower",
        f"≤ {TARGET_INCREMENTAL_US:g} us"),
    Row("incremental pass p99, each timed alone", "incremental_p99_us", "us", 1, "lower"),
    Row("churn, CPU time by batch", "churn_matches_per_s", "matches/s", 0, "higher",
        f"ratio ≥ {TARGET_CHURN_RATIO:g}x", paired=True),
    Row("churn op + pass, CPU time by batch", "churn_us_per_op", "us", 1, "lower", paired=True),
    Row("engine churn", "engine_churn_matches_per_s", "matches/s", 0, "higher"),
    Row("engine churn op + pass", "engine_churn_us_per_op", "us", 1, "lower"),
    Row("memory per waiting session", "bytes_per_session", "bytes", 0, "lower",
        f"≤ {TARGET_BYTES_PER_SESSION} bytes"),
]


def _number(value: float, digits: int) -> str:
    return f"{value:,.{digits}f}"


def _cell(values: list[float] | None, digits: int) -> tuple[str, str]:
    if not values:
        return "n/a", ""
    figure = W.summary(values)
    if figure.count == 1:
        return _number(figure.median, digits), "(1 sample)"
    return (_number(figure.median, digits),
            f"{_number(figure.low, digits)}–{_number(figure.high, digits)} (n={figure.count})")


def paired_churn_ratio(results: dict[str, dict]) -> tuple[float, list[float], int] | None:
    """Compiled over reference on churn from paired batches: batch ``b`` of
    round ``i`` is the same calls on both (the same script from the same
    state), so reference time / compiled time of that batch compares equal
    work. Returns the median over every pair, the median of each round's
    pairs and the number of pairs (None without both implementations).

    On a shared machine a stall (another process, a neighbour on the same
    core) slows a batch of one implementation and not the same batch of the
    other; the median of the pairs leaves such stalls out for both alike,
    where a ratio of two medians of a few rounds moves with them.
    """
    if "compiled" not in results or "reference" not in results:
        return None
    per_round = [[reference / compiled for compiled, reference in zip(c, r) if compiled and reference]
                 for c, r in zip(results["compiled"]["churn_batch_ns"],
                                 results["reference"]["churn_batch_ns"])]
    pairs = [x for ratios in per_round for x in ratios]
    if not pairs:
        return None
    return statistics.median(pairs), [statistics.median(x) for x in per_round if x], len(pairs)


def _ratio(row: Row, results: dict[str, dict]) -> float | None:
    if "compiled" not in results or "reference" not in results:
        return None
    if row.paired:
        paired = paired_churn_ratio(results)
        return paired[0] if paired else None
    compiled = statistics.median(results["compiled"][row.key])
    reference = statistics.median(results["reference"][row.key])
    if not compiled or not reference:
        return None
    return compiled / reference if row.faster == "higher" else reference / compiled


def _verdict(row: Row, results: dict[str, dict], ratio: float | None) -> str:
    compiled = results.get("compiled")
    if not row.target or compiled is None:
        return row.target
    median = statistics.median(compiled[row.key])
    met = {
        "full_pass_ms": median <= TARGET_FULL_MS,
        "incremental_p50_us": median <= TARGET_INCREMENTAL_US,
        "churn_matches_per_s": ratio is not None and ratio >= TARGET_CHURN_RATIO,
        "bytes_per_session": median <= TARGET_BYTES_PER_SESSION,
    }[row.key]
    if row.key == "churn_matches_per_s" and ratio is None:
        return f"{row.target}: no reference"
    return f"{row.target}: {'met' if met else 'MISSED'}"


def table_rows(results: dict[str, dict]) -> list[list[str]]:
    rows = []
    for row in ROWS:
        ratio = _ratio(row, results)
        compiled = _cell(results.get("compiled", {}).get(row.key), row.digits)
        reference = _cell(results.get("reference", {}).get(row.key), row.digits)
        rows.append([f"{row.label} ({row.unit})", *compiled, *reference,
                     f"{ratio:,.1f}x" if ratio is not None else "n/a",
                     _verdict(row, results, ratio)])
    return rows


MEASURED = (
    "measured: the full pass timed alone, in the thread's CPU time; each incremental pass timed "
    "alone, in wall time (one clock read before and one after: ~0.1 us of each sample is the "
    "clock); churn: a round's calls (an op and its pass each) decided untimed on one dispatcher, "
    f"then made on its identical twin in batches of {W.REPLAY_BATCH} ops, the thread's CPU time "
    "read before and after each batch (time other processes took is not the dispatcher's); the "
    "same method for both implementations")

HEADERS = ["figure", "compiled median", "compiled range", "reference median", "reference range",
           "compiled vs reference", "target (compiled)"]


def print_table(results: dict[str, dict], title: str) -> None:
    rows = table_rows(results)
    try:
        from rich.console import Console
        from rich.table import Table
    except ImportError:  # rich is a dependency, but a bare interpreter still gets a table
        widths = [max(len(HEADERS[i]), *(len(r[i]) for r in rows)) for i in range(len(HEADERS))]
        print(title)
        print("  ".join(h.ljust(w) for h, w in zip(HEADERS, widths)).rstrip())
        print("  ".join("-" * w for w in widths))
        for r in rows:
            print("  ".join(c.ljust(w) if i == 0 or i == len(r) - 1 else c.rjust(w)
                            for i, (c, w) in enumerate(zip(r, widths))).rstrip())
        return
    print(title)
    table = Table()
    for i, header in enumerate(HEADERS):
        table.add_column(header, justify="left" if i in (0, len(HEADERS) - 1) else "right")
    for r in rows:
        table.add_row(*r)
    # a pipe reports 80 columns; the table needs more and wraps unreadably below that
    Console(width=max(160, Console().width)).print(table)


def summary_line(results: dict[str, dict]) -> str:
    """The one line the run ends with (its shape never changes)."""
    def rate(name: str) -> str:
        values = results.get(name, {}).get("churn_matches_per_s")
        return f"{statistics.median(values):.0f}" if values else "n/a"

    ratio = _ratio(next(row for row in ROWS if row.key == "churn_matches_per_s"), results)
    source = results.get("compiled") or results.get("reference") or {}
    incremental = source.get("incremental_p50_us")
    full = source.get("full_pass_ms")
    return (f"core: compiled {rate('compiled')} matches/s, reference {rate('reference')} matches/s, "
            f"ratio {f'{ratio:.1f}' if ratio is not None else 'n/a'}x, "
            f"incremental pass p50 "
            f"{f'{statistics.median(incremental):.1f}' if incremental else 'n/a'} us, "
            f"full pass p50 {f'{statistics.median(full):.1f}' if full else 'n/a'} ms")


# ------------------------------------------------------------------------- run

def _compiled_missing_reason() -> str:
    if os.environ.get("QROUTE_NO_EXTENSIONS") == "1":
        return "QROUTE_NO_EXTENSIONS=1"
    try:
        importlib.import_module("qroute.routing._core")
    except Exception as error:  # report whatever kept it from loading
        return f"{type(error).__name__}: {error}"
    return "not registered in qroute.routing.IMPLEMENTATIONS"


def _load() -> float:
    try:
        return os.getloadavg()[0]
    except OSError:  # not available on this platform
        return float("nan")


def run(args: argparse.Namespace) -> int:
    """``qroute bench core``; returns the exit status."""
    from qroute.routing import IMPLEMENTATIONS

    wanted = ["compiled", "reference"] if args.impl == "both" else [args.impl]
    available = [name for name in wanted if name in IMPLEMENTATIONS]
    notes = []
    if "compiled" in wanted and "compiled" not in available:
        notes.append(f"compiled dispatcher not available ({_compiled_missing_reason()}); "
                     "its figures read n/a")

    note = _Progress()
    load_before = _load()  # other work on the machine shows in the ranges and the p99s
    size = W.WorkloadSize(queues=args.queues, recipients=args.recipients, sessions=args.sessions)
    results: dict[str, dict] = {}
    description = f"{size}, seed {args.seed}"
    servable_share = None
    if available:
        note(f"generating the workload: {description}")
        workload = W.make_workload(size, args.seed)
        description = workload.describe()
        servable_share = workload.servable_share
        plans = {name: effort(name, args.repeat) for name in available}
        longest = max(p.churn_warmup + p.churn_rounds * p.churn_ops for p in plans.values())
        ops = W.churn_ops(workload, longest, args.seed + 2)
        results = measure({name: IMPLEMENTATIONS[name] for name in available}, workload, plans,
                          ops, note)
        note("done")

    title = (f"qroute core benchmark: {description}\n"
             f"Python {platform.python_version()} on {platform.machine()}, "
             f"{os.cpu_count()} CPUs, load average {load_before:.1f} before / "
             f"{_load():.1f} after; median and range (min–max) of each figure")
    print_table(results, title)
    if results:
        print(MEASURED)
    paired = paired_churn_ratio(results)
    if paired:
        rounds = [statistics.median(results[name]["churn_matches_per_s"])
                  for name in ("compiled", "reference")]
        print(f"churn ratio: median of {paired[2]} paired batches (the same {W.REPLAY_BATCH} calls "
              f"on both) {paired[0]:.1f}x; per round {min(paired[1]):.1f}–{max(paired[1]):.1f}x; "
              f"the ratio of the rounds' medians is {rounds[0] / rounds[1]:.1f}x")
    for name, figures in results.items():
        print(f"{name}: the full pass made {figures['full_pass_offers']:,} offers; "
              f"{figures['incremental_offered_share']:.0%} of incremental passes made one; "
              f"incremental samples {figures['incremental_min_us']:.1f}–"
              f"{figures['incremental_max_us']:.1f} us")
    if "compiled" in results and "reference" in results:
        # The same script from the same state must give the same records.
        compiled, reference = (results[name]["churn_outcome"] for name in ("compiled", "reference"))
        same = min(len(compiled), len(reference))
        if compiled[:same] != reference[:same] or (
                results["compiled"]["full_pass_offers"] != results["reference"]["full_pass_offers"]):
            notes.append("compiled and reference DISAGREE on the same operations (offers, misses "
                         "or wrap-up ends per churn round, or offers in the full pass differ): "
                         "a bug in one of them; see --json")
    for name, figures in results.items():
        bare = statistics.median(figures["churn_us_per_op"])
        engine = statistics.median(figures["engine_churn_us_per_op"])
        print(f"{name}: through the engine an op and its pass take {engine:.1f} us, the bare "
              f"dispatcher {bare:.1f} us: the engine adds {engine - bare:.1f} us per op "
              f"(commands, events, live state)")
    for text in notes:
        print(f"note: {text}")
    if "compiled" not in results and results:
        print("note: the pass figures on the last line are the reference's")
    line = summary_line(results)
    if args.json:
        report = {
            "workload": asdict(size) | {"seed": args.seed, "description": description,
                                        "servable_share": servable_share},
            "python": platform.python_version(),
            "machine": platform.machine(),
            "cpus": os.cpu_count(),
            "load_average_before": load_before,
            "implementations": results,
            "not_available": [name for name in wanted if name not in available],
            "table": {"headers": HEADERS, "rows": table_rows(results)},
            "line": line,
        }
        with open(args.json, "w", encoding="utf-8") as handle:
            json.dump(report, handle, indent=2)
            handle.write("\n")
    print(line)
    return 0 if results else 1
