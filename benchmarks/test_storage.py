"""Storage benchmarks: durable write throughput and startup load time.

What is measured (each on a fresh SQLite file in a temporary directory):

- ``writes/s``: acknowledged writes per second, each write one
  ``PutLiveSession`` upsert (~300-byte JSON doc) of an existing session.
  ``concurrency`` C: C writes are submitted at once and all awaited, then the
  next C (like C RPC handlers each awaiting its own write); C = 1 is one
  write at a time, i.e. one commit per write. With ``synchronous`` NORMAL
  (survives kill -9) and FULL (also survives power loss: one fsync per group
  commit). ``commits/1k`` is how many commits 1,000 writes took.
- ``load``: ``load_all()`` of 100,000 live sessions (50 queues).

Run: ``python benchmarks/test_storage.py`` (a table: median and range over
the repeats, after a warm-up), or ``pytest benchmarks/test_storage.py``
(pytest-benchmark).
"""

from __future__ import annotations

import asyncio
import gc
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import pytest

from qroute.storage import PutLiveSession, SqliteStorage

SESSIONS = 100_000
WRITES_PER_ROUND = {1: 500, 100: 5_000, 1000: 10_000}


def session_doc(n: int) -> dict:
    return {
        "queue_id": f"q{n % 50}", "state": "waiting", "priority": n % 3,
        "skills": {"english": 3, "billing": 1},
        "properties": {"caller": f"+3161234{n:05d}", "crm_id": f"c-{n}"},
        "entered_at_ms": 1_700_000_000_000 + n, "joined_at_ms": 1_700_000_000_000 + n,
        "seq": n, "recipient_id": None, "offer_count": 0, "queues_visited": [f"q{n % 50}"],
    }


class WriteBench:
    """A started storage on its own loop, and one timed round of writes."""

    def __init__(self, directory: Path, synchronous: str, concurrency: int):
        self.loop = asyncio.new_event_loop()
        self.storage = SqliteStorage(directory / f"w-{synchronous}-{concurrency}.db", synchronous)
        self.concurrency = concurrency
        self.writes = WRITES_PER_ROUND[concurrency]
        # Ops are built outside the timed part: this measures the storage.
        self.ops = [PutLiveSession("acc", f"s{n % 1000}", session_doc(n))
                    for n in range(self.writes)]
        self.loop.run_until_complete(self.storage.start())

    async def _round(self) -> None:
        write, ops, step = self.storage.write, self.ops, self.concurrency
        if step == 1:
            for op in ops:
                await write(op)
            return
        for start in range(0, len(ops), step):
            await asyncio.gather(*[write(op) for op in ops[start:start + step]])

    def round(self) -> tuple[float, float]:
        """(writes per second, commits per 1,000 writes) of one round."""
        commits = self.storage.stats.commits
        started = time.perf_counter()
        self.loop.run_until_complete(self._round())
        elapsed = time.perf_counter() - started
        commits = self.storage.stats.commits - commits
        return self.writes / elapsed, commits * 1000 / self.writes

    def close(self) -> None:
        self.loop.run_until_complete(self.storage.stop())
        self.loop.close()


class LoadBench:
    """A storage holding SESSIONS live sessions; one timed load_all()."""

    def __init__(self, directory: Path):
        self.loop = asyncio.new_event_loop()
        self.storage = SqliteStorage(directory / "load.db")
        self.loop.run_until_complete(self._fill())

    async def _fill(self) -> None:
        await self.storage.start()
        for start in range(0, SESSIONS, 5000):
            await self.storage.write(*[PutLiveSession("acc", f"s{n}", session_doc(n))
                                       for n in range(start, start + 5000)])

        self.snapshot = None

    def load(self) -> None:
        """The timed part: load_all() alone."""
        self.snapshot = self.storage.load_all()

    def release(self) -> None:
        """Untimed: check and free the previous snapshot (freeing 10^5 dicts
        takes a while too, but is not loading)."""
        if self.snapshot is not None:
            assert len(self.snapshot.live_sessions) == SESSIONS
        self.snapshot = None
        gc.collect()

    def round(self) -> float:
        self.release()
        started = time.perf_counter()
        self.load()
        return time.perf_counter() - started

    def close(self) -> None:
        self.loop.run_until_complete(self.storage.stop())
        self.loop.close()


# --- pytest-benchmark --------------------------------------------------------

@pytest.mark.parametrize("concurrency", sorted(WRITES_PER_ROUND))
@pytest.mark.parametrize("synchronous", ["NORMAL", "FULL"])
def test_durable_writes(benchmark, tmp_path, synchronous, concurrency):
    bench = WriteBench(tmp_path, synchronous, concurrency)
    try:
        results = []
        benchmark.pedantic(lambda: results.append(bench.round()), rounds=5, warmup_rounds=1)
        rates = [rate for rate, _ in results]
        benchmark.extra_info["writes_per_second_median"] = statistics.median(rates)
        benchmark.extra_info["commits_per_1000_writes"] = statistics.median(
            commits for _, commits in results)
    finally:
        bench.close()


def test_load_100k_sessions(benchmark, tmp_path):
    bench = LoadBench(tmp_path)
    try:
        benchmark.pedantic(bench.load, setup=bench.release, rounds=5, warmup_rounds=1)
        bench.release()
    finally:
        bench.close()


# --- standalone ----------------------------------------------------------------

def _summary(values: list[float], fmt: str) -> str:
    return (f"{fmt.format(statistics.median(values))}  "
            f"[{fmt.format(min(values))} .. {fmt.format(max(values))}]")


def main(repeats: int = 5) -> None:
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} cpus; median [min .. max] "
          f"of {repeats} rounds after 1 warm-up")
    with tempfile.TemporaryDirectory(dir=os.environ.get("QROUTE_BENCH_DIR")) as directory:
        directory = Path(directory)
        medians = {}
        for synchronous in ("NORMAL", "FULL"):
            for concurrency in sorted(WRITES_PER_ROUND):
                bench = WriteBench(directory, synchronous, concurrency)
                try:
                    bench.round()
                    results = [bench.round() for _ in range(repeats)]
                finally:
                    bench.close()
                rates = [rate for rate, _ in results]
                medians[synchronous, concurrency] = statistics.median(rates)
                print(f"writes  sync={synchronous:6} concurrency={concurrency:<5} "
                      f"writes/s {_summary(rates, '{:>9,.0f}')}  "
                      f"commits/1k {_summary([c for _, c in results], '{:.1f}')}")
        for concurrency in sorted(WRITES_PER_ROUND):
            ratio = medians["NORMAL", concurrency] / medians["FULL", concurrency]
            print(f"NORMAL/FULL at concurrency {concurrency}: {ratio:.2f}x")
        bench = LoadBench(directory)
        try:
            bench.round()
            times = [bench.round() for _ in range(repeats)]
        finally:
            bench.close()
        print(f"load_all {SESSIONS:,} live sessions: {_summary(times, '{:.3f}')} s")


if __name__ == "__main__":
    main()
