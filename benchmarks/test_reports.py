"""Report benchmark: RunReport over a year of generated history.

The history (generated once, deterministic): an account in America/New_York
with 100 queues and 300 recipients; every local day of 2023, each queue ends
``CALLS_PER_QUEUE_DAY`` (40) sessions at random times: 80 % completed
(answered by a random recipient: an accepted offer, 2-20 s of ringing,
30-600 s of talk), 10 % abandoned, 7 % timed out, 2 % rejected_full, 1 %
rejected_empty; a quarter of the sessions also have a missed offer and one
in twenty a rejected one. That is 1.46 million finished sessions and 1.6
million offers, inserted directly with the storage ops (InsertFinishedSession,
InsertOffer) through the server's own storage, as the engine would.

What is timed: one RunReport over the gRPC API (a real server on
127.0.0.1, one client), from the call to the whole response received: the
whole year 2023, every metric, every entity (identifiers empty). Cases:

- ``queues-daily-json``: 100 queues x 365 days x 4 metrics (146,000 points);
- ``queues-daily-csv``: the same as CSV;
- ``queues-weekly-json``, ``queues-monthly-json``;
- ``recipients-daily-json``: 300 recipients x 365 days x 5 metrics;
- ``recipients-monthly-queues-json``: recipients, monthly, only 10 queues' calls.

The server's own split (execution_times load / filter / render ms) is shown
too. Run: ``python benchmarks/test_reports.py`` (a table: median and range
over the repeats, after a warm-up), or ``pytest benchmarks/test_reports.py``
(pytest-benchmark). Generating the history takes a few minutes; with
``QROUTE_REPORTS_BENCH_DATA=<dir>`` it is kept in that data dir and the
next run reuses it.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import statistics
import sys
import tempfile
import time
from datetime import date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from qroute import server
from qroute.client import Client
from qroute.keys import new_key
from qroute.node import Node
from qroute.storage import InsertFinishedSession, InsertOffer
from qroute.v1 import report_pb2, report_pb2_grpc

QUEUES = 100
RECIPIENTS = 300
CALLS_PER_QUEUE_DAY = 40
YEAR = 2023
TIME_ZONE = "America/New_York"
SEED = 1
WRITE_CHUNK = 5000  # ops per storage write (the writer's batch limit)
MAX_MESSAGE = 64 * 1024 * 1024  # a daily year of 300 recipients is ~12 MB of protobuf

R = report_pb2
CASES = {
    "queues-daily-json": dict(report=R.REPORT_KIND_QUEUES, period=R.REPORT_PERIOD_DAILY),
    "queues-daily-csv": dict(report=R.REPORT_KIND_QUEUES, period=R.REPORT_PERIOD_DAILY,
                             format=R.REPORT_FORMAT_CSV),
    "queues-weekly-json": dict(report=R.REPORT_KIND_QUEUES, period=R.REPORT_PERIOD_WEEKLY),
    "queues-monthly-json": dict(report=R.REPORT_KIND_QUEUES, period=R.REPORT_PERIOD_MONTHLY),
    "recipients-daily-json": dict(report=R.REPORT_KIND_RECIPIENTS, period=R.REPORT_PERIOD_DAILY),
    "recipients-monthly-queues-json": dict(report=R.REPORT_KIND_RECIPIENTS, period=R.REPORT_PERIOD_MONTHLY,
                                           queue_ids=[f"q{n:03d}" for n in range(10)]),
}

_END_REASONS = [("completed", 80), ("abandoned", 10), ("timed_out", 7), ("rejected_full", 2),
                ("rejected_empty", 1)]


def history(account_id: str, seed: int = SEED):
    """Yields lists of ops (about WRITE_CHUNK each): the year's records."""
    rng = random.Random(seed)
    reasons = [reason for reason, weight in _END_REASONS for _ in range(weight)]
    zone = ZoneInfo(TIME_ZONE)
    recipients = [f"r{n:03d}" for n in range(RECIPIENTS)]
    day = date(YEAR, 1, 1)
    n = 0
    ops: list = []
    while day.year == YEAR:
        start_ms = int(datetime(day.year, day.month, day.day, tzinfo=zone).timestamp() * 1000)
        day_ms = int(datetime.combine(day + timedelta(days=1), datetime.min.time(), zone).timestamp()
                     * 1000) - start_ms
        for q in range(QUEUES):
            queue_id = f"q{q:03d}"
            for _ in range(CALLS_PER_QUEUE_DAY):
                n += 1
                session_id = f"s{n}"
                ended = start_ms + rng.randrange(day_ms)
                reason = rng.choice(reasons)
                wait = rng.randrange(1000, 300_000)
                recipient_id = None
                ring = talk = 0
                answered = ended
                if reason == "completed":
                    recipient_id = rng.choice(recipients)
                    ring = rng.randrange(2000, 20_000)
                    talk = rng.randrange(30_000, 600_000)
                    answered = ended - talk
                    ops.append(InsertOffer(account_id, f"o{n}", session_id, queue_id, recipient_id,
                                           answered - ring, answered, "accepted", ring))
                if rng.random() < 0.25:
                    ops.append(InsertOffer(account_id, f"m{n}", session_id, queue_id, rng.choice(recipients),
                                           answered - wait // 2 - 20_000, answered - wait // 2, "missed",
                                           20_000))
                if rng.random() < 0.05:
                    ops.append(InsertOffer(account_id, f"j{n}", session_id, queue_id, rng.choice(recipients),
                                           answered - wait // 3 - 3000, answered - wait // 3, "rejected", 3000))
                ops.append(InsertFinishedSession(
                    account_id, session_id, queue_id, recipient_id, answered - wait, ended, reason, wait,
                    ring, talk, [queue_id], {}))
                if len(ops) >= WRITE_CHUNK:
                    yield ops
                    ops = []
        day += timedelta(days=1)
    if ops:
        yield ops


PARAMETERS = {"queues": QUEUES, "recipients": RECIPIENTS, "calls_per_queue_day": CALLS_PER_QUEUE_DAY,
              "year": YEAR, "time_zone": TIME_ZONE, "seed": SEED}
MARKER = "reports-bench.json"  # in a kept data dir: the account and what was generated


class ReportBench:
    """A server over a data dir holding the generated year, and a client.
    A data dir with a MARKER of the same PARAMETERS is reused as it is."""

    def __init__(self, directory: Path):
        self.loop = asyncio.new_event_loop()
        started = time.perf_counter()
        self.loop.run_until_complete(self._start(Path(directory)))
        self.setup_seconds = time.perf_counter() - started

    async def _start(self, directory: Path) -> None:
        marker_path = directory / MARKER
        marker = json.loads(marker_path.read_text()) if marker_path.exists() else None
        if marker is not None and marker["parameters"] != PARAMETERS:
            raise SystemExit(f"{directory} holds history generated with {marker['parameters']}; "
                             f"use another directory")
        admin_key = marker["admin_key"] if marker else new_key("admin")[1]
        self.running = await server.start(Node(directory, admin_key=admin_key, name="bench"), "127.0.0.1:0")
        target = f"127.0.0.1:{self.running.port}"
        async with Client(target, admin_key) as admin:
            if marker is None:
                account_id = (await admin.create_account("Bench", time_zone=TIME_ZONE)).id
            else:
                account_id = marker["account_id"]
            key = (await admin.create_api_key(account_id, "bench")).secret
        options = [("grpc.max_receive_message_length", MAX_MESSAGE)]
        self.client = Client(target, key, options=options, timeout=300)
        self.stub = report_pb2_grpc.ReportServiceStub(self.client.channel)
        if marker is not None:
            self.sessions, self.offers = marker["sessions"], marker["offers"]
            return
        for q in range(QUEUES):
            await self.client.create_queue(id=f"q{q:03d}", name=f"Queue {q}")
        for r in range(RECIPIENTS):
            await self.client.create_recipient(id=f"r{r:03d}", name=f"Recipient {r}")
        storage = self.running.node.storage
        pending = None
        self.sessions = self.offers = 0
        for ops in history(account_id):
            self.sessions += sum(isinstance(op, InsertFinishedSession) for op in ops)
            self.offers += sum(isinstance(op, InsertOffer) for op in ops)
            if pending is not None:
                await pending  # one write committing while the next chunk is built
            pending = storage.write(*ops)
        await pending
        marker_path.write_text(json.dumps({"parameters": PARAMETERS, "account_id": account_id,
                                           "admin_key": admin_key, "sessions": self.sessions,
                                           "offers": self.offers}))

    async def _report(self, case: str) -> report_pb2.RunReportResponse:
        request = report_pb2.RunReportRequest(start_date=f"{YEAR}-01-01", end_date=f"{YEAR}-12-31",
                                              **CASES[case])
        return await self.stub.RunReport(request, metadata=self.client.metadata, timeout=300)

    def round(self, case: str) -> tuple[float, report_pb2.RunReportResponse]:
        """(seconds, response) of one RunReport."""
        started = time.perf_counter()
        response = self.loop.run_until_complete(self._report(case))
        return time.perf_counter() - started, response

    def close(self) -> None:
        async def stop():
            await self.client.close()
            await self.running.stop(0)
        self.loop.run_until_complete(stop())
        self.loop.close()


def _check(case: str, response: report_pb2.RunReportResponse) -> None:
    kind = CASES[case]
    entities = QUEUES if kind["report"] == R.REPORT_KIND_QUEUES else RECIPIENTS
    if kind.get("format") == R.REPORT_FORMAT_CSV:
        assert response.csv.count("\n") == 1 + entities * len(response.period_keys)
    else:
        assert len(response.reports) == entities


# --- pytest-benchmark --------------------------------------------------------

@pytest.fixture(scope="module")
def bench(tmp_path_factory):
    kept = os.environ.get("QROUTE_REPORTS_BENCH_DATA")
    bench = ReportBench(Path(kept) if kept else tmp_path_factory.mktemp("reports"))
    yield bench
    bench.close()


@pytest.mark.timeout(1800)
@pytest.mark.parametrize("case", list(CASES))
def test_run_report(benchmark, bench, case):
    responses = []
    benchmark.pedantic(lambda: responses.append(bench.round(case)[1]), rounds=5, warmup_rounds=1)
    _check(case, responses[-1])
    times = responses[-1].execution_times
    benchmark.extra_info.update(sessions=bench.sessions, offers=bench.offers, load_ms=times.load_ms,
                                filter_ms=times.filter_ms, render_ms=times.render_ms)


# --- standalone ----------------------------------------------------------------

def _summary(values: list[float], fmt: str) -> str:
    return (f"{fmt.format(statistics.median(values))}  "
            f"[{fmt.format(min(values))} .. {fmt.format(max(values))}]")


def main(repeats: int = 5) -> None:
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} cpus, load average {os.getloadavg()[0]:.1f}; "
          f"median [min .. max] of {repeats} rounds after 1 warm-up")
    kept = os.environ.get("QROUTE_REPORTS_BENCH_DATA")
    with tempfile.TemporaryDirectory(dir=os.environ.get("QROUTE_BENCH_DIR")) as directory:
        bench = ReportBench(Path(kept or directory))
        try:
            print(f"history: {bench.sessions:,} finished sessions, {bench.offers:,} offers, "
                  f"{QUEUES} queues, {RECIPIENTS} recipients, {TIME_ZONE}; setup "
                  f"(generating unless kept) {bench.setup_seconds:.0f} s")
            for case in CASES:
                bench.round(case)
                results = [bench.round(case) for _ in range(repeats)]
                _check(case, results[-1][1])
                seconds = [elapsed for elapsed, _ in results]
                split = [(r.execution_times.load_ms, r.execution_times.filter_ms, r.execution_times.render_ms)
                         for _, r in results]
                load, filt, render = (statistics.median(column) for column in zip(*split))
                size = results[-1][1].ByteSize()
                print(f"{case:32} RunReport s {_summary(seconds, '{:.3f}')}  server load/filter/render ms "
                      f"{load:.0f}/{filt:.0f}/{render:.0f}  response {size / 1e6:.1f} MB")
            print(f"load average {os.getloadavg()[0]:.1f}")
        finally:
            bench.close()


if __name__ == "__main__":
    main()
