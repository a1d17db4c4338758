"""The journal's commit points: many callers share writes (one in flight at a
time), and each is answered only once what it published is committed; and a
request id's answer, committed with its change, answers its retries."""

from __future__ import annotations

import asyncio
import sqlite3

import pytest

from qroute.api.common import answer_once
from qroute.api.convert import session_message
from qroute.domain.config import QueueConfig
from qroute.keys import Principal
from qroute.node import DATABASE_FILE

from ._site import Site


@pytest.fixture
def site(tmp_path) -> Site:
    return Site(tmp_path / "data")


def stored_sessions(site: Site) -> set[str]:
    conn = sqlite3.connect(site.data_dir / DATABASE_FILE)
    try:
        return {row[0] for row in conn.execute("SELECT session_id FROM live_sessions")}
    finally:
        conn.close()


def test_a_commit_point_resolves_only_once_everything_before_it_is_stored(site):
    async def body(floor):
        floor.create_queue(QueueConfig(id="q", name="Q"))
        journal = site.node.journal
        points = []
        for n in range(60):
            session = floor.enqueue("q", caller_number=f"+31{n}")
            points.append((session.id, journal.commit_point()))
            if n % 4 == 3:
                await asyncio.sleep(0)  # later callers publish while earlier writes are on their way
        for n, (session_id, point) in enumerate(points):
            await point
            stored = stored_sessions(site)
            assert {sid for sid, _ in points[:n + 1]} <= stored, f"caller {n} acknowledged before its commit"
        return len(points)

    assert site.run(body) == 60


def test_a_failed_write_fails_the_callers_waiting_for_it_and_the_next_durable(site):
    async def body(floor):
        floor.create_queue(QueueConfig(id="q", name="Q"))
        journal = site.node.journal
        await journal.durable()

        def broken(*ops):
            raise RuntimeError("disk on fire")

        real, site.node.storage.write = site.node.storage.write, broken
        try:
            floor.enqueue("q")
            with pytest.raises(RuntimeError, match="disk on fire"):
                await journal.durable()  # waiting when the write fails
            floor.enqueue("q")
            await asyncio.sleep(0)  # its write fails with nobody waiting
            with pytest.raises(RuntimeError, match="disk on fire"):
                await journal.durable()
        finally:
            site.node.storage.write = real
        floor.enqueue("q")
        await journal.durable()  # a write that works is acknowledged again

    site.run(body)


def test_a_request_id_is_answered_once_even_while_its_first_call_runs_and_after_a_restart(site):
    calls = []

    def caller(floor):
        async def enqueue():
            calls.append(1)
            await asyncio.sleep(0.01)  # the retry comes while the first call is being answered
            return session_message(floor, floor.enqueue("q"), floor.clock.now_ms())
        return enqueue

    async def first(floor):
        floor.create_queue(QueueConfig(id="q", name="Q"))
        principal = Principal(site.account_id, "key")
        answers = await asyncio.gather(*(answer_once(site.node, principal, "SessionService/Enqueue", "call-1",
                                                     caller(floor)) for _ in range(3)))
        assert len(calls) == 1 and answers[0] == answers[1] == answers[2]
        return answers[0]

    answer = site.run(first)

    async def retried(floor):
        principal = Principal(site.account_id, "key")
        again = await answer_once(site.node, principal, "SessionService/Enqueue", "call-1", caller(floor))
        assert again == answer and len(calls) == 1
        assert list(floor.sessions) == [answer.id]

    site.run(retried)


class _HeldWrites:
    """A storage whose writes land when the test says so."""

    def __init__(self) -> None:
        self.writes: list[tuple] = []

    def write(self, *ops):
        future = asyncio.get_running_loop().create_future()
        self.writes.append((ops, future))
        return future

    def land_all(self) -> None:
        for _, future in self.writes:
            if not future.done():
                future.set_result(None)

    def events_of(self, n: int) -> list[str]:
        return [row[5] for op in self.writes[n][0] for row in getattr(op, "rows", ())]


def _waits_in_durable(journal) -> asyncio.Future:
    return asyncio.ensure_future(journal.durable())


def _held_by_a_stream(journal) -> asyncio.Future:
    # a stream answers its pipelined messages in order once committed (EnqueueStream, ConnectGateway)
    return journal.commit_point(answers=1)


@pytest.mark.parametrize("wait", [_waits_in_durable, _held_by_a_stream], ids=["durable", "stream"])
def test_the_commit_interval_makes_concurrent_callers_share_a_write_but_never_delays_a_lone_one(wait):
    """Callers in durable() and answers a stream holds count alike: without
    the latter a stream's every message went in its own commit."""
    from qroute.domain.events import DomainEvent
    from qroute.events.journal import Journal

    def event(entity_id: str) -> DomainEvent:
        return DomainEvent("session.created", entity_id, 0, {}, "acct")

    async def main() -> None:
        storage = _HeldWrites()
        journal = Journal(storage, commit_interval_s=2.0)  # long: a loaded machine must not start it early
        journal.publish(event("a"))
        first = wait(journal)
        for _ in range(3):
            await asyncio.sleep(0)
        assert len(storage.writes) == 1  # a lone caller's write starts at once

        waiting = []
        for entity_id in ("b", "c"):  # published while "a" is on its way to disk
            journal.publish(event(entity_id))
            waiting.append(wait(journal))
            await asyncio.sleep(0)
        storage.land_all()
        await first
        await asyncio.sleep(0.05)
        assert len(storage.writes) == 1  # several callers wait: the next write waits for more
        while len(storage.writes) == 1:
            await asyncio.sleep(0.01)
        assert storage.events_of(1) == ["b", "c"]
        assert not any(w.done() for w in waiting)  # acknowledged only once their write lands
        storage.land_all()
        await asyncio.gather(*waiting)

        journal.publish(event("d"))  # alone again, right after a write: no wait
        last = wait(journal)
        for _ in range(3):
            await asyncio.sleep(0)
        assert len(storage.writes) == 3 and storage.events_of(2) == ["d"]
        storage.land_all()
        await last

    asyncio.run(main())
