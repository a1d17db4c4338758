"""Event fan-out benchmark: deliveries per second to 1, 10 and 100
subscribers under a steady load, with and without filters.

What is measured. A real server (``qroute.server.start``, durable SQLite
node, uvloop when installed) in this process, with a load generator on its
event loop: callers enter one of 10 queues and hang up while waiting, paced
to ``--rate`` events per second (5 events per caller: session.created,
queue.session_joined, queue.session_left, session.abandoned, session.ended),
through the engine, the journal and storage like any command. A second
process holds the subscriptions (``EventService.Subscribe``, live, over 4
channels) and parses every batch as a consumer would (``EventBatch``
messages). After ``--warmup`` seconds it counts, for ``--seconds``:

- ``deliveries/s``: events received, summed over the subscribers;
- ``lag p50/p99``: time from an event to its arrival at the subscriber
  (event time, ms resolution, to receipt), over every batch;
- ``CPU server/subs``: the CPU time of the server process (every thread:
  the event loop, gRPC's, the storage writer) and of the subscribers'
  process over the same window, in cores (of the machine's, shared with
  whatever else runs: the load average is printed first);
- ``kept up``: whether every subscriber received every event it should
  have (none was cut off, none fell behind by the end).

Filters: ``none``; ``entity`` (``entities=[SESSION]``: 3 of 5 events pass);
``queue`` (``queue_ids=[one of the 10 queues]``: 1 in 10 pass). With a
filter the figure counts the events delivered, which is fewer for the same
load. The reference row is unbatched fan-out (``max_batch=1``), measured in
the same run, which the batched figures are compared to.

Run: ``python benchmarks/test_events.py`` (a table: median and range over
``--repeat`` runs; ``--quick`` for one short run of each row), or ``pytest
benchmarks/test_events.py`` (one short smoke run of the 100-subscriber row).
The machine's other load shows in the figures: they are for comparing runs
on one machine.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

QUEUES = 10
EVENTS_PER_CALL = 5
CHANNELS = 4
TARGET = 200_000  # deliveries/s to 100 subscribers, the goal of issue 5


@dataclass(frozen=True)
class Case:
    subscribers: int
    filter: str = "none"
    max_batch: int = 1000

    @property
    def name(self) -> str:
        batch = "" if self.max_batch == 1000 else f", max_batch {self.max_batch}"
        return f"{self.subscribers:>3} subscribers, filter {self.filter}{batch}"


CASES = [Case(1), Case(10), Case(100), Case(10, "entity"), Case(100, "entity"), Case(100, "queue")]
REFERENCE = Case(10, max_batch=1)


def _request(case: Case, index: int):
    from qroute.v1 import event_pb2

    filters = {"none": {}, "entity": {"entities": [event_pb2.EVENT_ENTITY_SESSION]},
               "queue": {"queue_ids": [f"q{index % QUEUES}"]}}[case.filter]
    return event_pb2.SubscribeRequest(max_batch=case.max_batch, **filters)


# ------------------------------------------------------------- subscribers

def _subscriber_process(target: str, key: str, case: Case, warmup: float, seconds: float, pipe) -> None:
    """The subscribers' process: subscribe, say ready, wait for go, count."""
    try:
        import uvloop
        uvloop.install()
    except ImportError:
        pass
    asyncio.run(_subscribe_and_count(target, key, case, warmup, seconds, pipe))


async def _subscribe_and_count(target, key, case, warmup, seconds, pipe) -> None:
    import grpc

    from qroute.v1 import event_pb2_grpc

    metadata = (("authorization", f"Bearer {key}"),)
    channels = [grpc.aio.insecure_channel(target) for _ in range(CHANNELS)]
    counts = [0] * case.subscribers
    lags: list[int] = []
    measuring = False
    failures: list[str] = []
    last_through = [0] * case.subscribers

    async def follow(index: int, ready: asyncio.Future) -> None:
        stub = event_pb2_grpc.EventServiceStub(channels[index % CHANNELS])
        call = stub.Subscribe(_request(case, index), metadata=metadata)
        try:
            first = True
            async for batch in call:
                if first:
                    ready.set_result(None)
                    first = False
                events = batch.events
                counts[index] += len(events)
                last_through[index] = batch.through_sequence
                if measuring and events:
                    lags.append(time.time_ns() // 1_000_000 - events[-1].time.ToMilliseconds())
        except grpc.aio.AioRpcError as exc:
            if exc.code() != grpc.StatusCode.CANCELLED:
                failures.append(f"{exc.code().name}: {exc.details()}")
            if not ready.done():
                ready.set_result(None)

    loop = asyncio.get_running_loop()
    readies = [loop.create_future() for _ in range(case.subscribers)]
    tasks = [asyncio.ensure_future(follow(i, readies[i])) for i in range(case.subscribers)]
    await asyncio.gather(*readies)
    pipe.send("ready")
    await loop.run_in_executor(None, pipe.recv)  # go
    await asyncio.sleep(warmup)
    measuring = True
    before, started, cpu_started = sum(counts), time.perf_counter(), time.process_time()
    await asyncio.sleep(seconds)
    after, elapsed = sum(counts), time.perf_counter() - started
    cpu = (time.process_time() - cpu_started) / elapsed
    measuring = False
    pipe.send({"deliveries": after - before, "elapsed": elapsed, "lags": lags, "failures": failures, "cpu": cpu})
    newest = await loop.run_in_executor(None, pipe.recv)  # the newest sequence once the load stopped
    deadline = time.perf_counter() + 10
    while min(last_through) < newest and not failures and time.perf_counter() < deadline:
        await asyncio.sleep(0.05)
    pipe.send({"behind": sum(1 for t in last_through if t < newest), "failures": failures})
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    for channel in channels:
        await channel.close()


# ------------------------------------------------------------ server + load

async def _load(floor, rate: float, stop: asyncio.Event) -> int:
    """Callers at ``rate`` events/s (5 each), in small paced bursts; returns the calls made."""
    calls = 0
    started = time.perf_counter()
    while not stop.is_set():
        due = int((time.perf_counter() - started) * rate / EVENTS_PER_CALL)
        while calls < due:
            session = floor.enqueue(f"q{calls % QUEUES}", caller_number=f"+1555{calls:07d}")
            floor.abandon(session.id)
            calls += 1
        await asyncio.sleep(0.002)
    return calls


async def _run_case(case: Case, rate: float, warmup: float, seconds: float) -> dict:
    from qroute import server
    from qroute.client import Client
    from qroute.keys import new_key
    from qroute.node import Node

    with tempfile.TemporaryDirectory(prefix="qroute-bench-events-") as data_dir:
        admin_key = new_key("admin")[1]
        running = await server.start(Node(Path(data_dir), admin_key=admin_key, name="bench"), "127.0.0.1:0")
        node = running.node
        try:
            target = f"127.0.0.1:{running.port}"
            async with Client(target, admin_key) as admin:
                account = await admin.create_account("bench")
                key = (await admin.create_api_key(account.id)).secret
            async with Client(target, key) as client:
                for n in range(QUEUES):
                    await client.create_queue(id=f"q{n}", name=f"Queue {n}")
            floor = node.engine.floor(account.id)
            here, there = multiprocessing.Pipe()
            process = multiprocessing.get_context("spawn").Process(
                target=_subscriber_process, args=(target, key, case, warmup, seconds, there), daemon=True)
            process.start()
            loop = asyncio.get_running_loop()

            async def receive():
                return await loop.run_in_executor(None, here.recv)

            assert await asyncio.wait_for(receive(), 60) == "ready"
            stop = asyncio.Event()
            first_sequence = node.journal.sequences[account.id]
            load = asyncio.ensure_future(_load(floor, rate, stop))
            load_started = time.perf_counter()
            here.send("go")
            results = asyncio.ensure_future(receive())
            await asyncio.sleep(warmup)
            cpu_started, wall_started = time.process_time(), time.perf_counter()
            measured = await asyncio.wait_for(results, seconds + 60)
            server_cpu = (time.process_time() - cpu_started) / (time.perf_counter() - wall_started)
            stop.set()
            calls = await load
            load_elapsed = time.perf_counter() - load_started
            here.send(node.journal.sequences[account.id])
            final = await asyncio.wait_for(receive(), 30)
            process.join(10)
        finally:
            await running.stop(0)
    made = node.journal.sequences[account.id] - first_sequence
    lags = sorted(measured["lags"]) or [0]
    return {
        "deliveries_s": measured["deliveries"] / measured["elapsed"],
        "events_s": made / load_elapsed,
        "calls": calls,
        "lag_p50": lags[len(lags) // 2], "lag_p99": lags[min(len(lags) - 1, int(len(lags) * 0.99))],
        "kept_up": not final["behind"] and not final["failures"],  # behind: not caught up 10 s after
        "server_cpu": server_cpu,
        "client_cpu": measured["cpu"],
        "failures": final["failures"][:3],
    }


def run_case(case: Case, rate: float, warmup: float, seconds: float) -> dict:
    try:
        import uvloop
    except ImportError:
        return asyncio.run(_run_case(case, rate, warmup, seconds))
    return uvloop.run(_run_case(case, rate, warmup, seconds))


# ------------------------------------------------------------------- report

def _figure(values: list[float]) -> str:
    if len(values) == 1:
        return f"{values[0]:>10,.0f}"
    return f"{statistics.median(values):>10,.0f} ({min(values):,.0f}-{max(values):,.0f})"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rate", type=float, default=5_000, help="events/s the load makes (default %(default)s)")
    parser.add_argument("--seconds", type=float, default=3.0, help="measured seconds per run (default %(default)s)")
    parser.add_argument("--warmup", type=float, default=1.0, help="seconds before measuring (default %(default)s)")
    parser.add_argument("--repeat", type=int, default=3, help="runs of each row (default %(default)s)")
    parser.add_argument("--quick", action="store_true", help="one 2-second run of each row")
    parser.add_argument("--only", type=int, choices=(1, 10, 100), help="only the rows with this many subscribers")
    args = parser.parse_args(argv)
    if args.quick:
        args.repeat, args.seconds = 1, 2.0
    cases = [c for c in [*CASES, REFERENCE] if args.only is None or c.subscribers == args.only]
    print(f"event fan-out: load {args.rate:,.0f} events/s, {args.warmup:g} s warm-up, {args.seconds:g} s "
          f"measured, {args.repeat} run(s) per row, {os.cpu_count()} CPUs; median (range)")
    print(f"load average before: {os.getloadavg()[0]:.1f}")
    print(f"{'case':<44} {'deliveries/s':>24} {'events/s made':>14} {'lag p50/p99 ms':>15} "
          f"{'CPU server/subs':>15} kept up")
    results: dict[Case, list[dict]] = {}
    for case in cases:
        runs = results[case] = [run_case(case, args.rate, args.warmup, args.seconds) for _ in range(args.repeat)]
        name = case.name + ("  (reference: unbatched)" if case == REFERENCE else "")
        lag = f"{statistics.median(r['lag_p50'] for r in runs):.0f}/{statistics.median(r['lag_p99'] for r in runs):.0f}"
        failures = "; ".join(f for r in runs for f in r["failures"])
        kept = "yes" if all(r["kept_up"] for r in runs) else f"NO: {failures[:70] or 'behind at the end'}"
        print(f"{name:<44} {_figure([r['deliveries_s'] for r in runs]):>24} "
              f"{statistics.median(r['events_s'] for r in runs):>14,.0f} {lag:>15} "
              f"{statistics.median(r['server_cpu'] for r in runs):>9.2f}/"
              f"{statistics.median(r['client_cpu'] for r in runs):.2f} {kept}", flush=True)
    full = results.get(Case(100))
    if full:
        best = statistics.median(r["deliveries_s"] for r in full)
        verdict = "meets" if best >= TARGET else "misses"
        print(f"100 subscribers, no filter: {best:,.0f} deliveries/s {verdict} the {TARGET:,} target", end="")
        if REFERENCE in results:
            reference = statistics.median(r["deliveries_s"] for r in results[REFERENCE])
            print(f"; {best / reference:.1f}x the unbatched reference ({reference:,.0f}/s to 10)", end="")
        print()
    print(f"load average after: {os.getloadavg()[0]:.1f}")
    return 0


def test_fan_out_to_100_subscribers():
    """A smoke run of the 100-subscriber row (not a pass/fail on speed)."""
    result = run_case(Case(100), rate=2_000, warmup=0.5, seconds=1.0)
    print(f"\n100 subscribers: {result['deliveries_s']:,.0f} deliveries/s, lag p99 {result['lag_p99']} ms")
    assert result["kept_up"], result


if __name__ == "__main__":
    sys.exit(main())
