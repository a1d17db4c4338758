"""Prometheus metrics after a scripted call flow, scraped over HTTP."""

from __future__ import annotations

import asyncio
import re

import pytest

from qroute.api import common
from qroute.v1 import event_pb2, event_pb2_grpc

from ._server import call_flow, http_get, serve


def _labels(text: str) -> dict[str, str]:
    return dict(re.findall(r'(\w+)="([^"]*)"', text))


def value(text: str, series: str) -> float:
    """The value of one series (name and labels, in any order) in exposition text."""
    name, _, labels = series.partition("{")
    for line in text.splitlines():
        line_name, _, rest = line.partition("{") if "{" in line.split(" ")[0] else (line.split(" ")[0], "", "")
        if line_name == name and _labels(rest.rpartition("}")[0]) == _labels(labels):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"no {series} in:\n{text}")


def test_metrics_after_a_call_flow(tmp_path):
    async def body():
        served = await serve(tmp_path / "data")
        try:
            async with await served.account() as client:
                await call_flow(client)
                with pytest.raises(Exception):
                    await client.get_queue("nope")
                status, text = await http_get(served.running.metrics_port)
                assert status == 200
                account = served.account_id
                q = f'account="{account}",queue="sales"'
                # RPCs by method and code, with latency histograms
                assert value(text, 'qroute_rpcs_total{code="OK",method="QueueService/CreateQueue"}') == 2
                assert value(text, 'qroute_rpcs_total{code="NOT_FOUND",method="QueueService/GetQueue"}') == 1
                assert value(text, 'qroute_rpc_duration_seconds_count{method="SessionService/Enqueue"}') == 3
                assert 'qroute_rpc_duration_seconds_bucket{le="0.001",method="SessionService/Enqueue"}' in text
                # dispatch passes, duration, matches
                assert value(text, "qroute_dispatch_pass_duration_seconds_count") >= 1
                assert value(text, "qroute_dispatch_matches_total") == 1
                # per queue: waiting, recipients by state (bounded labels)
                assert value(text, f"qroute_queue_waiting_sessions{{{q}}}") == 1
                assert value(text, f'qroute_queue_waiting_sessions{{account="{account}",queue="support"}}') == 0
                assert value(text, f"qroute_queue_longest_wait_seconds{{{q}}}") >= 0
                assert value(text, f'qroute_queue_recipients{{{q},state="away"}}') == 1  # ann, away
                assert value(text, f'qroute_queue_recipients{{{q},state="logged_out"}}') == 1  # bob
                assert value(text, f'qroute_queue_sessions_today{{{q},outcome="abandoned"}}') == 1
                assert value(text, f'qroute_queue_sessions_today{{{q},outcome="entered"}}') == 3
                # storage, webhooks, events
                commits = value(text, "qroute_storage_commit_seconds_count")
                assert commits >= 1 and "# TYPE qroute_storage_commit_seconds histogram" in text
                assert value(text, 'qroute_storage_commit_seconds_bucket{le="+Inf"}') == commits
                assert value(text, 'qroute_storage_commit_seconds_bucket{le="0.0001"}') <= commits
                assert "# TYPE qroute_storage_batch_ops histogram" in text
                assert value(text, 'qroute_storage_batch_ops_bucket{le="+Inf"}') == commits
                assert value(text, "qroute_storage_batch_ops_sum") >= commits  # a commit has at least one op
                assert value(text, 'qroute_storage_batch_ops_bucket{le="5000.0"}') == commits  # the writer's cap
                assert value(text, "qroute_webhook_deliveries_total") == 0
                assert value(text, "qroute_webhook_attempts_failed_total") == 0
                assert value(text, "qroute_event_subscribers") == 0
                stub = event_pb2_grpc.EventServiceStub(client.channel)
                subscription = stub.Subscribe(event_pb2.SubscribeRequest(), metadata=client.metadata)
                await subscription.read()  # the first batch comes at once
                text = (await http_get(served.running.metrics_port))[1]
                assert value(text, "qroute_event_subscribers") == 1
                assert value(text, f'qroute_event_subscriber_lag_events{{account="{account}"}}') == 0  # caught up
                assert value(text, 'qroute_rpc_streams_open{method="EventService/Subscribe"}') == 1
                subscription.cancel()
                assert value(text, "qroute_events_published_total") > 10
                assert "session_id" not in text and "+1555" not in text
                # bounded label sets: no id of a session, recipient, offer or key is a label
                labels = {name for line in text.splitlines() if not line.startswith("#")
                          for name in _labels(line.partition("{")[2].rpartition("}")[0])}
                assert labels == {"method", "code", "account", "queue", "state", "outcome", "le"}
                assert (await http_get(served.running.metrics_port, "/nope"))[0] == 404
        finally:
            await served.running.stop(0)
        assert not common.rpc_observers and not common.stream_observers
        assert served.running.node.storage.on_commit is None

    asyncio.run(asyncio.wait_for(body(), 15))


def test_a_server_without_metrics_observes_nothing(tmp_path):
    async def body():
        served = await serve(tmp_path / "data", metrics=False)
        try:
            assert served.running.metrics is None and not common.rpc_observers
            assert served.running.node.scheduler.on_pass is None
        finally:
            await served.running.stop(0)

    asyncio.run(asyncio.wait_for(body(), 10))
