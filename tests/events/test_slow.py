"""A subscriber that stops reading: cut off with RESOURCE_EXHAUSTED naming
the last sequence it was sent, resumes from there without loss; meanwhile
routing and the other subscribers go on at full speed."""

from __future__ import annotations

import asyncio
import statistics
import time

import grpc
import pytest

from qroute.events.bus import Retention

from ..api._util import call_center
from ._util import EventsApi, churn, next_batch, read_through, subscribe

RING = 2000


async def enqueue_to_offer(client, desk) -> float:
    """Seconds from an Enqueue's answer to the offer on the desktop; the call is then refused."""
    session = await client.enqueue("sales", caller_number="+15550100")
    started = time.perf_counter()
    offer = (await desk.wait_for("offer", timeout=2)).offer
    took = time.perf_counter() - started
    assert offer.session.id == session.id
    await client.abandon(session.id)
    return took


def test_stuck_subscriber_is_cut_off_and_resumes_without_loss(tmp_path):
    api = EventsApi(tmp_path / "data", Retention(ring_size=RING))

    async def body(client):
        await call_center(client, ("ann",), ring_timeout=60)
        await client.create_queue(id="churn", name="Churn")
        # a small HTTP/2 window (no BDP probing): the server feels a stuck reader after ~64 KB
        stuck_client = api.client()
        stuck_client.channel = grpc.aio.insecure_channel(api.target, options=[("grpc.http2.bdp_probe", 0)])
        stuck = subscribe(stuck_client, from_sequence=1, max_batch=50)
        healthy = subscribe(client)
        received = list((await next_batch(stuck)).events)
        start = (await next_batch(healthy)).through_sequence
        healthy_events = []

        async def keep_reading():
            while True:
                healthy_events.extend((await next_batch(healthy)).events)

        reading = asyncio.ensure_future(keep_reading())

        async with client.agent("ann") as desk:
            baseline = [await enqueue_to_offer(client, desk) for _ in range(5)]
            await churn(api.floor(), 1_500, pause_every=5, pause=0.001)  # 7,500 events: past window and ring
            stream = api.node.events.stream(api.account_id)
            assert len(stream) == RING and stream.base > len(received) + RING
            # the stuck subscriber is far behind, and costs routing nothing
            during = [await enqueue_to_offer(client, desk) for _ in range(20)]
            assert statistics.median(during) < max(0.1, 5 * statistics.median(baseline)), (baseline, during)
            # the other subscriber got everything, at once
            newest = api.newest
            for _ in range(200):
                if healthy_events[-1].sequence == newest or reading.done():
                    break
                await asyncio.sleep(0.01)
            assert not reading.done(), reading.exception()
            reading.cancel()
            assert [e.sequence for e in healthy_events] == list(range(start + 1, newest + 1))

        # the stuck one reads again: what was sent, then RESOURCE_EXHAUSTED naming its last sequence
        through = 0
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            while True:
                batch = await asyncio.wait_for(stuck.read(), 2)
                received.extend(batch.events)
                through = batch.through_sequence
        error = caught.value
        assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert f"last sequence sent {through}" in error.details()
        assert ("qroute-last-sequence", str(through)) in tuple(error.trailing_metadata())
        assert received[-1].sequence == through < newest - RING

        resumed = subscribe(client, from_sequence=through + 1)
        received.extend(await read_through(resumed, api.newest))
        assert [e.sequence for e in received] == list(range(1, api.newest + 1))
        await stuck_client.close()

    api.run(body, timeout=20)
