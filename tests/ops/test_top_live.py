"""``qroute top`` against a real server: the snapshot, live events, and the
two ways it cannot go on (server unreachable, key refused)."""

from __future__ import annotations

import argparse
import asyncio
import socket

from rich.console import Console

from qroute import cli, top

from ._server import after_call_flow, bob_ready_but_away_for_sales, http_get, serve
from .test_metrics import value
from .test_top import row


def top_args(target: str, key: str, frames: int | None = 1, **options) -> argparse.Namespace:
    args = cli.build_parser().parse_args(["top", "--target", target, "--key", key])
    args.frames = frames
    vars(args).update(options)
    return args


def recording() -> Console:
    return Console(record=True, width=120, height=60, color_system=None, force_terminal=False)


async def until(condition, timeout: float = 5.0) -> None:
    """Wait for ``condition()`` to hold (the board is fed by another task)."""
    async def poll():
        while not condition():
            await asyncio.sleep(0.01)

    await asyncio.wait_for(poll(), timeout)


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_top_shows_the_state_after_a_call_flow(tmp_path, capsys):
    async def then(served, client):
        await client.create_recipient(id="cy", name="Cy")  # in no queue
        await client.login("cy", ready=True)
        console = recording()
        status = await top.watch(top_args(served.target, served.key), console)
        metrics = (await http_get(served.running.metrics_port))[1]
        # the snapshot in a few calls: no status call per recipient but for the one in no queue
        rpcs = {method: value(metrics, f'qroute_rpcs_total{{code="OK",method="{method}"}}')
                for method in ("QueueService/BatchGetQueueStatus", "RecipientService/GetRecipientStatus")}
        assert rpcs == {"QueueService/BatchGetQueueStatus": 2, "RecipientService/GetRecipientStatus": 1}
        return status, console.export_text()

    status, text = asyncio.run(asyncio.wait_for(after_call_flow(tmp_path / "data", then, metrics=True), 15))
    assert status == 0 and capsys.readouterr().err == ""
    # queue, waiting, longest, EWT, avail, busy, wrap, away, SL 15m, abandons: one caller waits, ann is
    # away, bob logged out; one abandoned; the answered call came before top started (no SL yet)
    sales = row(text, "sales")
    assert sales[:2] == ["sales", "1"] and sales[4:] == ["0", "0", "0", "1", "-", "1"]
    assert row(text, "support") == ["support", "0", "0:00", "-", "0", "0", "0", "0", "-", "0"]
    assert row(text, "ann")[:2] == ["ann", "away"] and row(text, "bob")[:2] == ["bob", "logged_out"]
    assert row(text, "cy")[:2] == ["cy", "ready"]


def test_top_follows_live_changes(tmp_path):
    async def then(served, client):
        board = top.Board(sl_threshold_s=20)
        feeder = asyncio.ensure_future(top.feed(served.client, board, served.target, retry=False))
        await until(lambda: board.loaded)
        await bob_ready_but_away_for_sales(client)
        await client.create_queue(id="billing", name="Billing")
        await client.add_members("billing", ["bob"])
        await until(lambda: "billing" in board.queues and "bob" in board.queues["billing"].members)
        assert board.counts("billing")["available"] == 1 and board.counts("sales")["away"] == 2
        async with client.agent("bob") as bob:
            await bob.set_availability(True, queue_id="sales")
            offer = await bob.wait_for("offer", timeout=5)  # the caller waiting in sales
            await bob.accept(offer.offer.offer_id)
            await until(lambda: board.queues["sales"].answered == 1 and board.queues["sales"].waiting == 0)
            assert board.recipients["bob"].state == "busy" and board.counts("sales")["busy"] == 1
            text = draw(board)
        feeder.cancel()
        return text

    text = asyncio.run(asyncio.wait_for(after_call_flow(tmp_path / "data", then), 15))
    assert row(text, "sales")[-2] == "100%"  # the caller waited less than 20 s
    assert row(text, "billing")[4:8] == ["0", "1", "0", "0"]


def draw(board: top.Board) -> str:
    console = recording()
    console.print(top.render(board, int(top.time.time() * 1000)))
    return console.export_text()


def test_top_says_when_the_key_is_refused(tmp_path, capsys):
    async def body():
        served = await serve(tmp_path / "data", metrics=False)
        try:
            await (await served.account()).close()
            statuses = []
            for frames in (1, None):  # the check, and the live board: both stop
                console = recording()
                statuses.append(await top.watch(top_args(served.target, "qr_nope_" + "x" * 40, frames), console))
            return statuses, console.export_text()
        finally:
            await served.running.stop(0)

    statuses, screen = asyncio.run(asyncio.wait_for(body(), 15))
    err = capsys.readouterr().err
    assert statuses == [1, 1]
    assert err.count(f"qroute top: API key refused by 127.0.0.1:") == 2 and "UNAUTHENTICATED" in err
    assert "API key refused" in screen  # the live board shows it before it exits
    assert "Traceback" not in err and "x" * 10 not in err + screen


def test_top_says_when_the_server_is_unreachable(capsys):
    target = f"127.0.0.1:{closed_port()}"
    status = cli.main(["top", "--target", target, "--key", "qr_k_" + "s" * 40, "--frames", "1"])
    err = capsys.readouterr().err
    assert status == 1
    assert err.startswith(f"qroute top: server {target} unreachable (UNAVAILABLE") and err.count("\n") == 1
    assert "Traceback" not in err and "s" * 10 not in err


def test_top_live_board_retries_an_unreachable_server():
    async def body():
        board = top.Board()
        args = top_args(f"127.0.0.1:{closed_port()}", "k", frames=None, refresh=20.0)
        watching = asyncio.ensure_future(top.watch(args, recording(), board))
        await until(lambda: board.problem.endswith(": retrying"))
        assert "unreachable (UNAVAILABLE" in board.problem and not watching.done()
        watching.cancel()

    asyncio.run(asyncio.wait_for(body(), 10))


def test_top_without_a_key_is_a_usage_error(monkeypatch, capsys):
    monkeypatch.delenv("QROUTE_API_KEY", raising=False)
    assert cli.main(["top", "--target", "127.0.0.1:1", "--frames", "1"]) == 2
    assert capsys.readouterr().err.startswith("qroute top: no API key")


def test_batch_queue_status_lists_members_states_on_request(tmp_path):
    from qroute.v1 import common_pb2, queue_pb2

    async def then(served, client):
        await bob_ready_but_away_for_sales(client)
        plain = await client.queues.BatchGetQueueStatus(queue_pb2.BatchGetQueueStatusRequest(),
                                                        metadata=client.metadata)
        full = await client.queues.BatchGetQueueStatus(
            queue_pb2.BatchGetQueueStatusRequest(queue_ids=["sales", "support"], include_members=True),
            metadata=client.metadata)
        return plain, full

    plain, full = asyncio.run(asyncio.wait_for(after_call_flow(tmp_path / "data", then), 15))
    assert not any(status.members for status in plain.statuses.values())
    assert not full.statuses["support"].members
    ann, bob = full.statuses["sales"].members  # in member order
    assert (ann.recipient_id, ann.state, ann.availability) == ("ann", common_pb2.RECIPIENT_STATE_AWAY,
                                                              common_pb2.AVAILABILITY_READY)
    assert (bob.recipient_id, bob.state, bob.availability) == ("bob", common_pb2.RECIPIENT_STATE_READY,
                                                              common_pb2.AVAILABILITY_AWAY)
    assert ann.state_since.seconds > 0 and bob.state_since.ToMilliseconds() >= ann.state_since.ToMilliseconds()
