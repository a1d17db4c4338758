"""Durability benchmarks: startup with 100,000 waiting sessions, and what
durability costs enqueue throughput.

What is measured:

- ``startup``: ``Node.start()`` on a data dir holding 100,000 waiting
  sessions (50 queues; 1,000 recipients logged in AWAY, so nothing is
  offered; sessions with priorities 0-2, a required skill and properties),
  written by the engine itself (``Floor.enqueue`` through the journal, so
  the stored documents are the real ones). Wall and CPU seconds of the whole
  start, and of its two parts: ``load_all`` (read and decode) and the
  restore (recipients, then every session back in its queue). For each
  dispatcher implementation built. Target: at most 3 s.
- ``enqueue``: acknowledged enqueues per second through a real ``qroute
  serve`` (a child process), durable (SQLite WAL, ``--sync normal``; each
  answer waits for its group commit) and with ``--no-durability`` (nothing
  stored, answered at once); ``EnqueueStream`` with ``STREAMS`` streams and
  unary ``Enqueue`` with ``UNARY_IN_FLIGHT`` calls in flight, into a queue
  nobody serves. The two servers take turns, round by round, so a change in
  the machine's load touches both alike. Also the server's CPU per 1,000
  enqueues (from /proc: its own cost, whatever the load generator's).
  Target: durable at least 80% of the other.

Run: ``python benchmarks/test_durability.py`` (a table: median and range over
the rounds, after a warm-up; ``--quick`` for a short run), or ``pytest
benchmarks/test_durability.py`` (pytest-benchmark; the quick settings).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import itertools
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from qroute.bench import procfs
from qroute.client import Client, enqueue_request
from qroute.domain.config import Member, QueueConfig, RecipientConfig
from qroute.keys import new_key
from qroute.node import Node
from qroute.routing import IMPLEMENTATIONS

SESSIONS = 100_000
QUEUES = 50
RECIPIENTS = 1_000
STARTUP_TARGET_S = 3.0
RATIO_TARGET = 0.80
STREAMS = 4
UNARY_IN_FLIGHT = 32
HOLD = "hold"


# --- startup -----------------------------------------------------------------

def fill(data_dir: Path, admin_key: str, sessions: int = SESSIONS) -> str:
    """A data dir holding ``sessions`` waiting sessions; returns the account id."""

    async def main() -> str:
        node = Node(data_dir, admin_key=admin_key, name="bench")
        await node.start()
        try:
            account = await node.create_account("Bench", "UTC")
            floor = node.engine.floor(account.id)
            for q in range(QUEUES):
                floor.create_queue(QueueConfig(id=f"q{q}", name=f"Queue {q}"))
            for r in range(RECIPIENTS):
                floor.create_recipient(RecipientConfig(id=f"r{r}", skills={"en": 5, f"s{r % 8}": 3}))
                floor.add_members(f"q{r % QUEUES}", [Member(f"r{r}")])
                floor.login(f"r{r}", ready=False)
            await node.journal.durable()
            for n in range(sessions):
                floor.enqueue(f"q{n % QUEUES}", caller_number=f"+3120{n:07d}", caller_name=f"Caller {n}",
                              priority=n % 3, skills={f"s{n % 8}": 2},
                              properties={"crm_id": f"c-{n}", "language": "en"})
                if n % 2_000 == 1_999:
                    await node.journal.durable()
            await node.journal.durable()
            return account.id
        finally:
            await node.stop()

    return asyncio.run(main())


def time_startup(data_dir: Path, admin_key: str, account_id: str, dispatcher_cls) -> dict[str, float]:
    """One ``Node.start()``: wall and CPU seconds, whole and by part."""
    figures: dict[str, float] = {}

    async def main() -> None:
        node = Node(data_dir, admin_key=admin_key, name="bench", dispatcher_cls=dispatcher_cls)
        load_all, restore = node.storage.load_all, node._restore_live

        def timed_load_all():
            wall, cpu = time.perf_counter(), time.process_time()
            snapshot = load_all()
            figures["load_wall"] = time.perf_counter() - wall
            figures["load_cpu"] = time.process_time() - cpu
            return snapshot

        async def timed_restore(snapshot):
            wall, cpu = time.perf_counter(), time.process_time()
            await restore(snapshot)
            figures["restore_wall"] = time.perf_counter() - wall
            figures["restore_cpu"] = time.process_time() - cpu

        node.storage.load_all, node._restore_live = timed_load_all, timed_restore
        gc.collect()
        wall, cpu = time.perf_counter(), time.process_time()
        await node.start()
        figures["start_wall"] = time.perf_counter() - wall
        figures["start_cpu"] = time.process_time() - cpu
        floor = node.engine.floor(account_id)
        assert len(floor.sessions) == SESSIONS, len(floor.sessions)
        await node.stop()

    asyncio.run(main())
    gc.collect()
    return figures


def startup_rounds(directory: Path, rounds: int) -> dict[str, list[dict[str, float]]]:
    admin_key = new_key("admin")[1]
    data_dir = directory / "startup"
    account_id = fill(data_dir, admin_key)
    results: dict[str, list[dict[str, float]]] = {name: [] for name in sorted(IMPLEMENTATIONS)}
    for name in results:
        time_startup(data_dir, admin_key, account_id, IMPLEMENTATIONS[name])  # warm-up
    for _ in range(rounds):
        for name, samples in results.items():
            samples.append(time_startup(data_dir, admin_key, account_id, IMPLEMENTATIONS[name]))
    return results


# --- enqueue throughput -----------------------------------------------------------

class Server:
    """``qroute serve`` as a child process on a fresh data dir."""

    def __init__(self, data_dir: Path, durable: bool) -> None:
        self.admin_key = new_key("admin")[1]
        env = dict(os.environ, QROUTE_ADMIN_KEY=self.admin_key)
        package_root = str(Path(__import__("qroute").__file__).parent.parent)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [package_root, env.get("PYTHONPATH")]))
        options = [] if durable else ["--no-durability"]
        self.process = subprocess.Popen(
            [sys.executable, "-m", "qroute", "serve", "--data-dir", str(data_dir), "--listen", "127.0.0.1:0",
             "--log-level", "warning", *options], env=env, stdout=subprocess.PIPE, text=True)
        line = self.process.stdout.readline()
        if not line.startswith("qroute serving on "):
            self.process.kill()
            raise RuntimeError(f"qroute serve did not start: {line!r}")
        self.target = line.split()[3]
        self.key = ""

    async def prepare(self) -> None:
        async with Client(self.target, self.admin_key) as admin:
            account = await admin.create_account("Bench")
            self.key = (await admin.create_api_key(account.id)).secret
        async with Client(self.target, self.key) as client:
            await client.create_queue(id=HOLD, name="Hold")

    def cpu_seconds(self) -> float:
        return procfs.cpu_seconds(self.process.pid) or 0.0

    def close(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=30)
        self.process.stdout.close()


async def stream_load(client: Client, seconds: float) -> int:
    """EnqueueStream on STREAMS streams for ``seconds``; returns the acknowledgements."""
    acks = 0
    deadline = time.perf_counter() + seconds
    request = enqueue_request(HOLD, caller_number="+31201234567", priority=1, properties={"crm_id": "c-1"})

    async def requests():
        for n in itertools.count():
            if time.perf_counter() >= deadline:
                return
            yield request
            if n % 64 == 63:
                await asyncio.sleep(0)

    async def one() -> None:
        nonlocal acks
        async for _ in client.enqueue_stream(requests()):
            acks += 1

    await asyncio.gather(*(one() for _ in range(STREAMS)))
    return acks


async def unary_load(client: Client, seconds: float) -> int:
    """Unary Enqueue, UNARY_IN_FLIGHT at a time, for ``seconds``."""
    acks = 0
    deadline = time.perf_counter() + seconds

    async def one() -> None:
        nonlocal acks
        while time.perf_counter() < deadline:
            await client.enqueue(HOLD, caller_number="+31201234567", priority=1, properties={"crm_id": "c-1"})
            acks += 1

    await asyncio.gather(*(one() for _ in range(UNARY_IN_FLIGHT)))
    return acks


LOADS = {"stream": stream_load, "unary": unary_load}


async def enqueue_rounds(directory: Path, rounds: int, seconds: float) -> dict:
    """{(load, mode): [(enqueues/s, server CPU ms per 1,000 enqueues), ...]}"""
    servers = {"durable": Server(directory / "durable", True), "off": Server(directory / "off", False)}
    results: dict[tuple[str, str], list[tuple[float, float]]] = {}
    try:
        clients = {}
        for mode, server in servers.items():
            await server.prepare()
            clients[mode] = Client(server.target, server.key)
        for load_name, load in LOADS.items():
            for mode in servers:  # warm-up
                await load(clients[mode], seconds / 2)
            for _ in range(rounds):
                for mode, server in servers.items():
                    cpu = server.cpu_seconds()
                    started = time.perf_counter()
                    acks = await load(clients[mode], seconds)
                    elapsed = time.perf_counter() - started
                    cpu = server.cpu_seconds() - cpu
                    results.setdefault((load_name, mode), []).append((acks / elapsed, cpu * 1e6 / max(acks, 1)))
        for client in clients.values():
            await client.close()
    finally:
        for server in servers.values():
            server.close()
    return results


# --- pytest-benchmark ----------------------------------------------------------------

@pytest.fixture(scope="module")
def filled(tmp_path_factory) -> tuple[Path, str, str]:
    """(data dir, admin key, account id) of a data dir holding SESSIONS waiting sessions."""
    data_dir = tmp_path_factory.mktemp("startup") / "data"
    admin_key = new_key("admin")[1]
    return data_dir, admin_key, fill(data_dir, admin_key)


@pytest.mark.parametrize("implementation", sorted(IMPLEMENTATIONS))
def test_startup_100k_waiting_sessions(benchmark, filled, implementation):
    samples = []
    benchmark.pedantic(lambda: samples.append(time_startup(*filled, IMPLEMENTATIONS[implementation])),
                       rounds=3, warmup_rounds=1)
    for key in samples[0]:
        benchmark.extra_info[f"{key}_median"] = statistics.median(s[key] for s in samples)


def test_enqueue_durable_vs_not(benchmark, tmp_path):
    results = {}

    def run():
        results.update(asyncio.run(enqueue_rounds(tmp_path / f"r{len(results)}", rounds=2, seconds=1.0)))

    benchmark.pedantic(run, rounds=1, warmup_rounds=0)
    for (load, mode), samples in results.items():
        benchmark.extra_info[f"{load}_{mode}_per_second"] = statistics.median(rate for rate, _ in samples)
        benchmark.extra_info[f"{load}_{mode}_server_cpu_us"] = statistics.median(cpu for _, cpu in samples)


# --- standalone ----------------------------------------------------------------------

def _summary(values: list[float], fmt: str) -> str:
    return f"{fmt.format(statistics.median(values))} [{fmt.format(min(values))} .. {fmt.format(max(values))}]"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer and shorter rounds")
    parser.add_argument("--only", choices=("startup", "enqueue"), help="run one of the two")
    args = parser.parse_args(argv)
    rounds, seconds = (3, 1.0) if args.quick else (5, 3.0)
    print(f"python {platform.python_version()}, {os.cpu_count()} cpus, load average "
          f"{os.getloadavg()[0]:.1f}; median [min .. max] of {rounds} rounds after a warm-up")
    with tempfile.TemporaryDirectory(dir=os.environ.get("QROUTE_BENCH_DIR")) as directory:
        directory = Path(directory)
        if args.only in (None, "startup"):
            started = time.perf_counter()
            results = startup_rounds(directory, rounds)
            print(f"startup with {SESSIONS:,} waiting sessions ({QUEUES} queues, {RECIPIENTS:,} recipients; "
                  f"setup {time.perf_counter() - started:.0f} s):")
            for name, samples in results.items():
                line = "  ".join(f"{part} {_summary([s[f'{part}_wall'] for s in samples], '{:.2f}')} s "
                                 f"(cpu {statistics.median(s[f'{part}_cpu'] for s in samples):.2f})"
                                 for part in ("start", "load", "restore"))
                print(f"  {name:9} {line}")
            medians = {name: statistics.median(s["start_wall"] for s in samples)
                       for name, samples in results.items()}
            print(f"startup: {', '.join(f'{n} {m:.2f} s' for n, m in medians.items())} "
                  f"(target at most {STARTUP_TARGET_S:.0f} s)")
        if args.only in (None, "enqueue"):
            results = asyncio.run(enqueue_rounds(directory, rounds, seconds))
            print(f"enqueue into a queue nobody serves, {seconds:.0f} s per round "
                  f"({STREAMS} streams; unary {UNARY_IN_FLIGHT} in flight):")
            for (load, mode), samples in results.items():
                print(f"  {load:6} {mode:7} {_summary([r for r, _ in samples], '{:>7,.0f}')} /s   "
                      f"server cpu {_summary([c for _, c in samples], '{:>4.0f}')} us per enqueue")
            for load in LOADS:
                rate = {mode: statistics.median(r for r, _ in results[load, mode]) for mode in ("durable", "off")}
                cpu = {mode: statistics.median(c for _, c in results[load, mode]) for mode in ("durable", "off")}
                print(f"enqueue {load}: durable/off {rate['durable'] / rate['off']:.2f}x throughput, "
                      f"{cpu['durable'] / cpu['off']:.2f}x server cpu per enqueue (target at least "
                      f"{RATIO_TARGET:.2f}x throughput)")
            # the machine may be shared: how busy it was by the end says how far to trust the ratios
            print(f"load average at the end {' '.join(f'{x:.1f}' for x in os.getloadavg())}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
