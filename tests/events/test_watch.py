"""WatchQueueStatus: a status at once, then on change as soon as the
interval allows (woken by events, not by polling), and at the interval."""

from __future__ import annotations

import asyncio
import time

import grpc
import pytest

from qroute.client import ClientError

from ..api._util import call_center


PROMPT = 0.3  # seconds: "at once" on a busy shared machine, well under the interval


def test_watch_emits_promptly_on_change_within_the_interval(api):
    async def body(client):
        await call_center(client, ready=False)
        await client.create_queue(id="support", name="Support")
        watch = client.watch_queue_status(["sales"], interval_ms=1000)
        started = time.perf_counter()
        first = await asyncio.wait_for(anext(watch), 1)
        assert first.queue_id == "sales" and time.perf_counter() - started < PROMPT

        await asyncio.sleep(1.05)  # the interval since the first status is over: a change goes out at once
        await client.enqueue("sales")
        changed_at = time.perf_counter()
        changed = await asyncio.wait_for(anext(watch), 1)
        latency = time.perf_counter() - changed_at
        assert changed.stats.active_session_count == 1 and latency < PROMPT, latency

        # a change right after one was sent waits for the interval, then goes out
        await client.enqueue("sales")
        await client.enqueue("support")  # not watched: no status for it
        second = await asyncio.wait_for(anext(watch), 2)
        gap = time.perf_counter() - changed_at
        assert second.queue_id == "sales" and second.stats.active_session_count == 2
        assert 0.9 < gap < 1.0 + PROMPT + latency, gap

        # a change of a member's state changes the queue's counts: it goes out too
        await asyncio.sleep(1.05)
        await client.login("ann", ready=True)
        logged_in_at = time.perf_counter()
        logged_in = await asyncio.wait_for(anext(watch), 1)
        assert logged_in.active_recipient_count == 1 and time.perf_counter() - logged_in_at < PROMPT
        await watch.aclose()

    api.run(body)


def test_watch_every_queue_and_bad_requests(api):
    async def body(client):
        await call_center(client, ready=False)
        watch = client.watch_queue_status(interval_ms=100)  # none named: every queue, new ones too
        assert (await asyncio.wait_for(anext(watch), 1)).queue_id == "sales"
        await client.create_queue(id="support", name="Support")
        assert (await asyncio.wait_for(anext(watch), 1)).queue_id == "support"
        await client.delete_queue("support")
        await client.enqueue("sales")
        assert (await asyncio.wait_for(anext(watch), 1)).queue_id == "sales"
        await watch.aclose()

        for request, code in (({"queue_ids": ["nowhere"]}, grpc.StatusCode.NOT_FOUND),
                              ({"interval_ms": 50}, grpc.StatusCode.INVALID_ARGUMENT)):
            with pytest.raises(ClientError) as caught:
                await anext(client.watch_queue_status(**request))
            assert caught.value.code == code

    api.run(body)
