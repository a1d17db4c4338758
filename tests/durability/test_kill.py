"""Acknowledged means kept: a real ``qroute serve`` killed with SIGKILL in
the middle of an enqueue load (EnqueueStream and unary Enqueue at once),
restarted on the same data dir.

Nothing acknowledged is lost (every session is back with its entered_at, in
its place in line), nothing is duplicated, a ringing session waits again, a
connected one stays connected, recipients keep their state, and the event
sequence goes on without reuse."""

from __future__ import annotations

import asyncio
import itertools
import json
import sqlite3
from collections import Counter

import grpc

from qroute.client import Client, ClientError, enqueue_request
from qroute.v1 import common_pb2

from ._server import ServerProcess

STREAMS = 3           # EnqueueStream calls at once
UNARY_WORKERS = 2     # unary Enqueue loops at once
QUIET_ACKS = 600      # acknowledged before the quiet listing
KILL_AFTER_ACKS = 600  # acknowledged in the second burst before the kill
RUN_TIMEOUT = 30.0


class Load:
    """Streams and unary loops enqueueing into ``sales`` until stopped or
    the server dies; ``acks`` holds every acknowledged session in the order
    each caller saw them: (caller, id, priority, entered_at_ms)."""

    def __init__(self, client: Client, burst: int) -> None:
        self.client = client
        self.burst = burst
        self.acks: list[tuple[str, str, int, int]] = []
        self.sent = 0
        self.stopping = False
        self.enough = asyncio.Event()
        self.target = 0

    def _request(self, caller: str, n: int):
        self.sent += 1
        return enqueue_request("sales", caller_number=f"{caller}-{n}", priority=(n * 7 + self.burst) % 3,
                               properties={"burst": self.burst, "n": n})

    def _ack(self, caller: str, session) -> None:
        self.acks.append((caller, session.id, session.priority, session.entered_at.ToMilliseconds()))
        if len(self.acks) >= self.target:
            self.enough.set()

    async def _stream(self, caller: str) -> None:
        async def requests():
            for n in itertools.count():
                if self.stopping:
                    return
                yield self._request(caller, n)
                if n % 32 == 31:
                    await asyncio.sleep(0)

        try:
            async for session in self.client.enqueue_stream(requests()):
                self._ack(caller, session)
        except ClientError as exc:
            assert exc.code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED), exc

    async def _unary(self, caller: str) -> None:
        for n in itertools.count():
            if self.stopping:
                return
            try:
                session = await self.client.enqueue(**_fields(self._request(caller, n)))
            except ClientError as exc:
                assert exc.code == grpc.StatusCode.UNAVAILABLE, exc
                return
            self._ack(caller, session)

    async def run_until(self, target: int, then, min_seconds: float = 0.0) -> None:
        """Load until ``target`` acknowledgements (and ``min_seconds``), call
        ``then()``, and wait for every caller to finish."""
        self.target = target
        callers = [asyncio.create_task(self._stream(f"b{self.burst}s{i}")) for i in range(STREAMS)]
        callers += [asyncio.create_task(self._unary(f"b{self.burst}u{i}")) for i in range(UNARY_WORKERS)]
        await asyncio.gather(self.enough.wait(), asyncio.sleep(min_seconds))
        then()
        self.stopping = True
        await asyncio.gather(*callers)


def _fields(request) -> dict:
    return {"queue_id": request.queue_id, "caller_number": request.caller.number, "priority": request.priority,
            "properties": {"burst": int(request.properties["burst"]), "n": int(request.properties["n"])}}


async def eventually(probe, timeout: float = 5.0):
    for _ in range(int(timeout / 0.02)):
        value = await probe()
        if value:
            return value
        await asyncio.sleep(0.02)
    raise AssertionError(f"still {value!r} after {timeout} s")


async def new_account(server: ServerProcess, name: str) -> str:
    """A new account on ``server``; returns an API key of it."""
    async with Client(server.target, server.admin_key) as admin:
        account = await admin.create_account(name)
        return (await admin.create_api_key(account.id, name.lower())).secret


def line_key(session) -> tuple[int, int]:
    return (-session.priority, session.entered_at.ToMilliseconds())


def test_sigkill_in_the_middle_of_an_enqueue_load_loses_and_duplicates_nothing(tmp_path):
    data_dir = tmp_path / "data"
    server = ServerProcess(data_dir)
    server.start()
    before = {}

    async def load_then_kill():
        key = await new_account(server, "Durable")
        before["key"] = key
        async with Client(server.target, key) as client:
            await client.create_queue(id="sales", name="Sales", ring_timeout=60, tick_time=250)
            for recipient_id in ("ann", "bob", "cy"):
                await client.create_recipient(id=recipient_id, name=recipient_id, unavailable_codes=["lunch"])
            await client.add_members("sales", ["ann", "bob", "cy"])
            await client.login("ann", ready=True)
            talking = await client.enqueue("sales", caller_number="talking", priority=1000)
            offer = (await eventually(lambda: _ringing(client, "ann"))).current_offer_id
            await client.accept_offer(offer)
            await client.login("bob", ready=True)
            ringing = await client.enqueue("sales", caller_number="ringing", priority=1000)
            before["bob_offer"] = (await eventually(lambda: _ringing(client, "bob"))).current_offer_id
            await client.login("cy")
            await client.set_availability("cy", False, unavailable_code="lunch")
            before.update(talking=talking.id, ringing=ringing.id)

            quiet = Load(client, 1)
            await quiet.run_until(QUIET_ACKS, lambda: None)
            listed = await client.list_sessions("sales", states=[common_pb2.SESSION_STATE_WAITING])
            before["quiet_line"] = [s.id for s in listed]
            burst = Load(client, 2)
            await burst.run_until(KILL_AFTER_ACKS, server.kill)  # SIGKILL mid-load
            before["loads"] = (quiet, burst)

    try:
        asyncio.run(asyncio.wait_for(load_then_kill(), RUN_TIMEOUT))
    finally:
        server.kill()
    quiet, burst = before["loads"]
    acks = quiet.acks + burst.acks
    sent = quiet.sent + burst.sent
    assert len(burst.acks) >= KILL_AFTER_ACKS
    last_sequence_before = _rows(data_dir, "SELECT max(sequence) FROM events")[0][0]

    server.start()
    after = {}

    async def check_restarted():
        async with Client(server.target, before["key"]) as client:
            sessions = await client.list_sessions("sales")  # waiting in line order, then the others
            ids = [s.id for s in sessions]
            assert len(ids) == len(set(ids)), "a session came back twice"
            assert len(ids) <= sent + 2, "more sessions than were ever sent"
            by_id = {s.id: s for s in sessions}
            for caller, session_id, priority, entered_at_ms in acks:
                restored = by_id.get(session_id)
                assert restored is not None, f"acknowledged session {session_id} of {caller} lost"
                assert (restored.priority, restored.entered_at.ToMilliseconds()) == (priority, entered_at_ms)
            # in line as before: the quiet listing's order, and every acknowledged caller's own order
            line = [s for s in sessions if s.state == common_pb2.SESSION_STATE_WAITING]
            assert [line_key(s) for s in line] == sorted(line_key(s) for s in line)
            positions = {s.id: i for i, s in enumerate(line)}
            assert [i for i in before["quiet_line"] if i in positions] == before["quiet_line"]
            for caller in {a[0] for a in acks}:
                mine = [(a[2], a[3], positions[a[1]]) for a in acks if a[0] == caller]
                for (p1, t1, pos1), (p2, t2, pos2) in zip(mine, mine[1:]):
                    if (p1, t1) == (p2, t2):
                        assert pos1 < pos2, f"{caller}: arrival order lost"
            # the connected call stays connected; what rang waits again (and rings anew)
            talking = by_id[before["talking"]]
            assert talking.state == common_pb2.SESSION_STATE_CONNECTED and talking.recipient_id == "ann"
            assert by_id[before["ringing"]].state in (common_pb2.SESSION_STATE_WAITING,
                                                      common_pb2.SESSION_STATE_OFFERING)
            assert (await client.recipient_status("ann")).state == common_pb2.RECIPIENT_STATE_BUSY
            cy = await client.recipient_status("cy")
            assert (cy.state, cy.unavailable_code) == (common_pb2.RECIPIENT_STATE_AWAY, "lunch")
            bob = await eventually(lambda: _ringing(client, "bob"))
            assert bob.current_offer_id != before["bob_offer"]
            try:
                await client.accept_offer(before["bob_offer"])
                raise AssertionError("an offer from before the kill was accepted")
            except ClientError as exc:
                assert exc.code == grpc.StatusCode.FAILED_PRECONDITION, exc
            ended = await client.hangup(before["talking"])
            assert ended.state == common_pb2.SESSION_STATE_ENDED
            after["live"] = len(ids) - 1

    try:
        asyncio.run(asyncio.wait_for(check_restarted(), RUN_TIMEOUT))
    finally:
        server.stop()

    sequences = [row[0] for row in _rows(data_dir, "SELECT sequence FROM events ORDER BY sequence")]
    assert sequences == list(range(1, len(sequences) + 1)), "an event sequence was skipped or reused"
    assert sequences[-1] > last_sequence_before
    created = Counter(row[0] for row in _rows(data_dir, "SELECT entity_id FROM events "
                                                         "WHERE type = 'session.created'"))
    assert all(created[a[1]] == 1 for a in acks) and max(created.values()) == 1
    assert _rows(data_dir, "SELECT count(*) FROM live_sessions")[0][0] == after["live"]
    offers = dict(_rows(data_dir, "SELECT recipient_id || ':' || outcome, count(*) FROM offers GROUP BY 1"))
    assert offers["ann:accepted"] == 1 and offers["bob:cancelled"] == 1
    [(end_reason, visited)] = _rows(data_dir, "SELECT end_reason, queues_visited FROM finished_sessions")
    assert (end_reason, json.loads(visited)) == ("completed", ["sales"])
    restarted = _rows(data_dir, "SELECT type, payload FROM events WHERE sequence > ? AND type = "
                                "'recipient.offer_cancelled'", last_sequence_before)
    assert [json.loads(payload)["reason"] for _, payload in restarted] == ["restarted"]


async def _ringing(client: Client, recipient_id: str):
    status = await client.recipient_status(recipient_id)
    return status if status.current_offer_id and status.state == common_pb2.RECIPIENT_STATE_RINGING else None


def _rows(data_dir, sql: str, *params) -> list[tuple]:
    conn = sqlite3.connect(data_dir / "qroute.db")
    try:
        return conn.execute(sql, params).fetchall()
    finally:
        conn.close()


def test_sigkill_while_agents_answer_reject_and_miss_leaves_one_consistent_story(tmp_path):
    """Churn: callers arrive and abandon while agent desktops accept (and hang
    up), reject or let offers ring out; SIGKILL mid-way. After the restart
    every session is either live or finished, never both and never twice;
    every acknowledged abandon and hang-up is a finished record."""
    data_dir = tmp_path / "data"
    server = ServerProcess(data_dir)
    server.start()
    agents = [f"a{i}" for i in range(6)]
    seen: dict = {"abandoned": set(), "completed": set()}

    async def churn_then_kill():
        seen["key"] = await new_account(server, "Churn")
        async with Client(server.target, seen["key"]) as client:
            await client.create_queue(id="sales", name="Sales", ring_timeout=1, tick_time=250)
            for agent in agents:
                await client.create_recipient(id=agent, name=agent)
            await client.add_members("sales", agents)
            stopping = asyncio.Event()

            async def desk(agent: str) -> None:
                try:
                    async with client.agent(agent) as desktop:
                        await desktop.login(ready=True)
                        for n in itertools.count():
                            offer = (await desktop.wait_for("offer")).offer
                            if n % 3 == 0:
                                await desktop.accept(offer.offer_id)
                                await desktop.hangup(offer.session.id)
                                seen["completed"].add(offer.session.id)
                            elif n % 3 == 1:
                                await desktop.reject(offer.offer_id)
                            # else: let it ring out (missed)
                except ClientError:
                    pass  # the server was killed

            async def abandon(load: Load) -> None:
                n = 0
                while True:
                    if len(load.acks) > n * 3 + 10:
                        session_id = load.acks[n * 3][1]
                        n += 1
                        try:
                            await client.abandon(session_id)
                            seen["abandoned"].add(session_id)
                        except ClientError as exc:
                            if exc.code == grpc.StatusCode.UNAVAILABLE:
                                return
                            assert exc.code == grpc.StatusCode.FAILED_PRECONDITION, exc  # already answered
                    else:
                        await asyncio.sleep(0.005)
                    if stopping.is_set():
                        return

            desks = [asyncio.create_task(desk(agent)) for agent in agents]
            load = Load(client, 1)
            abandoner = asyncio.create_task(abandon(load))
            await asyncio.sleep(0.5)  # desktops connected and ready
            # SIGKILL mid-churn, after offers had time to ring out (ring_timeout 1 s)
            await load.run_until(500, server.kill, min_seconds=1.6)
            stopping.set()
            await asyncio.gather(abandoner, *desks)
            seen["acks"] = load.acks

    try:
        asyncio.run(asyncio.wait_for(churn_then_kill(), RUN_TIMEOUT))
    finally:
        server.kill()
    assert seen["completed"] and seen["abandoned"], "the churn did not churn"

    server.start()

    async def check_restarted():
        async with Client(server.target, seen["key"]) as client:
            statuses = [await client.recipient_status(agent) for agent in agents]
            assert all(s.state != common_pb2.RECIPIENT_STATE_LOGGED_OUT for s in statuses)
            busy_on = [s.current_session_id for s in statuses if s.state == common_pb2.RECIPIENT_STATE_BUSY]
            assert len(busy_on) == len(set(busy_on))
            sessions = {s.id: s for s in await client.list_sessions("sales")}
            for session_id in busy_on:
                assert sessions[session_id].state == common_pb2.SESSION_STATE_CONNECTED

    try:
        asyncio.run(asyncio.wait_for(check_restarted(), RUN_TIMEOUT))
    finally:
        server.stop()

    live = {row[0] for row in _rows(data_dir, "SELECT session_id FROM live_sessions")}
    finished = dict(_rows(data_dir, "SELECT session_id, end_reason FROM finished_sessions"))
    assert not live & set(finished), "a session is both live and finished"
    for _, session_id, _, _ in seen["acks"]:
        assert session_id in live or session_id in finished, f"acknowledged session {session_id} lost"
    assert all(finished[s] == "abandoned" for s in seen["abandoned"])
    assert all(finished[s] == "completed" for s in seen["completed"])
    outcomes = Counter(row[0] for row in _rows(data_dir, "SELECT outcome FROM offers"))
    assert outcomes["accepted"] >= len(seen["completed"]) and outcomes["rejected"] and outcomes["missed"]
    accepted = {row[0] for row in _rows(data_dir, "SELECT session_id FROM offers WHERE outcome = 'accepted'")}
    assert accepted <= live | set(finished)
    sequences = [row[0] for row in _rows(data_dir, "SELECT sequence FROM events ORDER BY sequence")]
    assert sequences == list(range(1, len(sequences) + 1))


def test_a_retry_after_sigkill_gets_the_first_answer_not_a_second_session(tmp_path):
    """Acknowledged enqueues with a request_id (unary and on a stream), SIGKILL,
    restart: retrying them by either RPC answers the same sessions, once each."""
    data_dir = tmp_path / "data"
    server = ServerProcess(data_dir)
    server.start()
    first = {}

    async def enqueue_then_kill():
        first["key"] = await new_account(server, "Retries")
        async with Client(server.target, first["key"]) as client:
            await client.create_queue(id="sales", name="Sales")
            first["unary"] = await client.enqueue("sales", caller_number="+1", request_id="call-1")
            requests = [enqueue_request("sales", caller_number="+2", request_id="call-2"),
                        enqueue_request("sales", caller_number="+1", request_id="call-1")]  # a retry on a stream
            first["stream"] = [s async for s in client.enqueue_stream(requests)]
        server.kill()

    try:
        asyncio.run(asyncio.wait_for(enqueue_then_kill(), RUN_TIMEOUT))
    finally:
        server.kill()
    assert first["stream"][1] == first["unary"]

    server.start()

    async def retry():
        async with Client(server.target, first["key"]) as client:
            assert await client.enqueue("sales", caller_number="+1", request_id="call-1") == first["unary"]
            assert await client.enqueue("sales", caller_number="+2", request_id="call-2") == first["stream"][0]
            again = [s async for s in client.enqueue_stream([
                enqueue_request("sales", caller_number="+2", request_id="call-2"),
                enqueue_request("sales", caller_number="+3", request_id="call-3")])]
            assert again[0] == first["stream"][0]
            assert again[1].id not in (first["unary"].id, first["stream"][0].id)
            sessions = await client.list_sessions("sales")
            assert sorted(s.id for s in sessions) == sorted([first["unary"].id, first["stream"][0].id, again[1].id])

    try:
        asyncio.run(asyncio.wait_for(retry(), RUN_TIMEOUT))
    finally:
        server.stop()
    created = _rows(data_dir, "SELECT count(*) FROM events WHERE type = 'session.created'")[0][0]
    assert created == 3
