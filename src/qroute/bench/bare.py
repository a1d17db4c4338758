"""The bare grpc.aio ceiling: what this machine's gRPC stack does with no
qroute in it, measured in the same run as qroute so the two compare.

``python -m qroute.bench.bare --listen HOST:PORT`` serves three trivial
methods of a service that has no ``.proto`` (raw bytes in and out, no
protobuf), on the same event loop qroute uses (uvloop when installed):

- ``Unary``: answers each request with the same small payload;
- ``Flood``: a server stream that sends one small message after another,
  unbatched, until the client cancels;
- ``Echo``: a bidirectional stream that answers every message with one;
- ``Shaped``: ``Unary`` in qroute's clothes: an ``EnqueueRequest`` in, with
  an API key in its metadata, a waiting ``Session`` out (protobuf both
  ways), and nothing done. What gRPC charges for the shape of qroute's
  ``Enqueue`` before qroute does any work: the part of the unary ceiling
  no implementation of that RPC can reach.

It prints ``bare serving on HOST:PORT`` once it accepts calls. The probes
below drive it (and qroute, with the same shapes) from a client; each
returns the operations completed per second over its measured window.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import sys
import time
from collections.abc import Awaitable, Callable

import grpc

from qroute.v1 import common_pb2, session_pb2

SERVICE = "qroute.bench.Bare"
PAYLOAD = b"x" * 32  # about an EnqueueRequest's size
SHAPED_SESSION_ID = "0190f3a4c2b1e6d7a8b9c0d1e2f3"  # as long as the ids qroute makes


def _identity(data: bytes) -> bytes:
    return data


async def _unary(request: bytes, context) -> bytes:
    return PAYLOAD


async def _flood(request: bytes, context):
    while True:
        yield PAYLOAD


async def _echo(request_iterator, context):
    async for request in request_iterator:
        yield request


async def _shaped(request, context):
    context.invocation_metadata()  # qroute reads its API key there
    return session_pb2.Session(id=SHAPED_SESSION_ID, queue_id=request.queue_id, state=common_pb2.SESSION_STATE_WAITING,
                               caller=request.caller, queues_visited=[request.queue_id], position=1)


def handlers() -> grpc.GenericRpcHandler:
    return grpc.method_handlers_generic_handler(SERVICE, {
        "Unary": grpc.unary_unary_rpc_method_handler(_unary, _identity, _identity),
        "Flood": grpc.unary_stream_rpc_method_handler(_flood, _identity, _identity),
        "Echo": grpc.stream_stream_rpc_method_handler(_echo, _identity, _identity),
        "Shaped": grpc.unary_unary_rpc_method_handler(_shaped, session_pb2.EnqueueRequest.FromString,
                                                      session_pb2.Session.SerializeToString),
    })


async def serve(listen: str) -> None:
    server = grpc.aio.server(options=[("grpc.so_reuseport", 0)])
    server.add_generic_rpc_handlers((handlers(),))
    port = server.add_insecure_port(listen)
    if not port:
        print(f"bare: cannot listen on {listen}", file=sys.stderr, flush=True)
        raise SystemExit(1)
    await server.start()
    print(f"bare serving on {listen.rsplit(':', 1)[0]}:{port}", flush=True)
    await server.wait_for_termination()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m qroute.bench.bare", description=__doc__.split("\n\n")[0])
    parser.add_argument("--listen", default="127.0.0.1:0", metavar="HOST:PORT")
    args = parser.parse_args(argv)
    from qroute import server

    try:
        server.run(serve(args.listen))
    except KeyboardInterrupt:
        pass


# ------------------------------------------------------------------ probes


class Window:
    """When a probe counts: after ``warmup`` seconds, for ``seconds``."""

    def __init__(self, warmup: float, seconds: float) -> None:
        now = time.perf_counter()
        self.begin = now + warmup
        self.end = self.begin + seconds
        self.count = 0

    def done(self, now: float) -> bool:
        return now >= self.end

    def tick(self, now: float) -> None:
        if self.begin <= now < self.end:
            self.count += 1

    @property
    def rate(self) -> float:
        return self.count / (self.end - self.begin)


async def unary_probe(call: Callable[[], Awaitable[object]], concurrency: int, warmup: float,
                      seconds: float, latencies: list[float] | None = None) -> float:
    """Calls per second with ``concurrency`` calls in flight; ``call()`` makes one.
    Appends each counted call's latency (ms) to ``latencies`` if given."""
    window = Window(warmup, seconds)

    async def worker() -> None:
        clock = time.perf_counter
        while True:
            sent = clock()
            if window.done(sent):
                return
            await call()
            now = clock()
            if latencies is not None and window.begin <= sent and now < window.end:
                latencies.append((now - sent) * 1000.0)
            window.tick(now)

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return window.rate


async def flood_probe(channel: grpc.aio.Channel, warmup: float, seconds: float) -> float:
    """Messages per second the bare ``Flood`` server stream delivers."""
    call = channel.unary_stream(f"/{SERVICE}/Flood", request_serializer=_identity,
                                response_deserializer=_identity)(b"")
    window = Window(warmup, seconds)
    clock = time.perf_counter
    try:
        while True:
            message = await call.read()
            if message is grpc.aio.EOF:
                raise RuntimeError("the bare Flood stream ended early")
            now = clock()
            if window.done(now):
                return window.rate
            window.tick(now)
    finally:
        call.cancel()


async def pipelined_probe(call: grpc.aio.StreamStreamCall, next_request: Callable[[], object], window_size: int,
                          warmup: float, seconds: float, latencies: list[float] | None = None) -> float:
    """Request/response pairs per second on one bidirectional stream that
    answers each request in order, with up to ``window_size`` outstanding."""
    window = Window(warmup, seconds)
    room = asyncio.Semaphore(window_size)
    sent_at: collections.deque[float] = collections.deque()
    clock = time.perf_counter
    stop = False

    async def write() -> None:
        while not stop:
            await room.acquire()
            if stop:
                return
            sent_at.append(clock())
            await call.write(next_request())

    writer = asyncio.get_running_loop().create_task(write())
    try:
        while True:
            response = await call.read()
            if response is grpc.aio.EOF:
                raise RuntimeError(f"the stream ended early: {(await call.code()).name} {await call.details()}")
            now = clock()
            sent = sent_at.popleft()
            room.release()
            if window.done(now):
                return window.rate
            if latencies is not None and window.begin <= sent:
                latencies.append((now - sent) * 1000.0)
            window.tick(now)
    finally:
        stop = True
        room.release()
        writer.cancel()
        try:
            await writer
        except (asyncio.CancelledError, grpc.aio.AioRpcError, grpc.aio.UsageError):
            pass
        call.cancel()


def unary_caller(channel: grpc.aio.Channel) -> Callable[[], Awaitable[object]]:
    method = channel.unary_unary(f"/{SERVICE}/Unary", request_serializer=_identity,
                                 response_deserializer=_identity)
    return lambda: method(PAYLOAD)


def shaped_caller(channel: grpc.aio.Channel, request, metadata) -> Callable[[], Awaitable[object]]:
    """``Shaped`` called as qroute's Enqueue is: ``request`` with ``metadata``."""
    method = channel.unary_unary(f"/{SERVICE}/Shaped", request_serializer=session_pb2.EnqueueRequest.SerializeToString,
                                 response_deserializer=session_pb2.Session.FromString)
    return lambda: method(request, metadata=metadata)


def echo_call(channel: grpc.aio.Channel) -> grpc.aio.StreamStreamCall:
    return channel.stream_stream(f"/{SERVICE}/Echo", request_serializer=_identity,
                                 response_deserializer=_identity)()


if __name__ == "__main__":
    main()
