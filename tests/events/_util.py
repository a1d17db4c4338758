"""The event tests' harness.

``EventsApi`` is the API tests' real-server harness (``tests.api._util.Api``)
whose node gets an event ``Retention``. ``subscribe`` opens ``EventService.Subscribe`` with the client's
key; ``read_through`` reads a subscription's batches until one reaches a
sequence. ``churn`` drives the account's floor directly (no RPC per event)
to make many events fast, as a gateway under load would.
"""

from __future__ import annotations

import asyncio

import grpc

from qroute.client import Client, ClientError
from qroute.events.bus import Retention
from qroute.node import Node
from qroute.v1 import event_pb2, event_pb2_grpc

from ..api._util import Api

EVENT_TIMEOUT = 5.0  # seconds a read of a subscription may wait for its next batch


class EventsApi(Api):
    """``Api`` whose node gets ``retention`` (see the module docstring)."""

    def __init__(self, data_dir, retention: Retention | None = None) -> None:
        super().__init__(data_dir, event_retention=retention)

    @property
    def node(self) -> Node:
        return self.running.node

    @property
    def newest(self) -> int:
        """The newest sequence of the test account."""
        return self.node.journal.sequences.get(self.account_id, 0)

    def floor(self):
        return self.node.engine.floor(self.account_id)


def subscribe(client: Client, **request) -> grpc.aio.UnaryStreamCall:
    """An open Subscribe call (``request``: SubscribeRequest fields)."""
    stub = event_pb2_grpc.EventServiceStub(client.channel)
    return stub.Subscribe(event_pb2.SubscribeRequest(**request), metadata=client.metadata)


async def next_batch(call, timeout: float = EVENT_TIMEOUT) -> event_pb2.EventBatch:
    try:
        batch = await asyncio.wait_for(call.read(), timeout)
    except grpc.aio.AioRpcError as exc:
        raise ClientError.from_rpc_error(exc) from exc
    assert batch is not grpc.aio.EOF, "the subscription ended"
    return batch


async def read_through(call, sequence: int, timeout: float = EVENT_TIMEOUT,
                       through: int = -1) -> list[event_pb2.Event]:
    """The events of ``call``'s batches until one's through_sequence reaches
    ``sequence`` (``through``: that of the batch read last); checks that
    through_sequence only grows and that events come in increasing order,
    each within its batch's through_sequence."""
    events: list[event_pb2.Event] = []
    while through < sequence:
        batch = await next_batch(call, timeout)
        assert batch.through_sequence >= through, (batch.through_sequence, through)
        for event in batch.events:
            assert not events or event.sequence > events[-1].sequence
            assert through < event.sequence <= batch.through_sequence
        events.extend(batch.events)
        through = batch.through_sequence
    return events


async def churn(floor, calls: int, queue_id: str = "churn", pause_every: int = 10, pause: float = 0) -> None:
    """``calls`` callers enter ``queue_id`` and hang up while waiting (5
    events each: created, joined, left, abandoned, ended), giving the loop
    back (for ``pause`` seconds) every ``pause_every`` calls."""
    for n in range(calls):
        session = floor.enqueue(queue_id, caller_number=f"+1555{n:07d}")
        floor.abandon(session.id)
        if n % pause_every == pause_every - 1:
            await asyncio.sleep(pause)
