"""``qroute bench e2e --desktops gateway``: the agent desktops behind
``ConnectGateway`` streams, as an edge that fronts many agents would hold
them. Each desktop does what ``Bench.agent`` does on its own ``Connect``
stream (on an offer: ring, accept, talk, hang up, wrap up, finish), driven
by timers instead of a task per desktop; the commands of one loop
iteration go out in one batch."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Callable

import grpc

from qroute.v1 import recipient_pb2 as pb

Command = pb.AgentCommand


class GatewayDesktops:
    """The desktops of ``recipient_ids`` on one ``ConnectGateway`` stream of ``bench``."""

    def __init__(self, bench, channel: grpc.aio.Channel, recipient_ids: list[str]) -> None:
        self.bench = bench
        self.recipient_ids = recipient_ids
        self.stub = channel.stream_stream("/qroute.v1.RecipientService/ConnectGateway",
                                          request_serializer=pb.AgentCommandBatch.SerializeToString,
                                          response_deserializer=pb.AgentEventBatch.FromString)
        self.call = None
        self.batch: list[Command] = []
        self.batches: asyncio.Queue = asyncio.Queue()
        # command_id -> (sent at, RPC name for the latency figures or None, what to do with the answer)
        self.waiting: dict[str, tuple[float, str | None, Callable[[pb.AgentEvent], None]]] = {}
        self.ids = itertools.count(1)
        self.opening: dict[str, asyncio.Future] = {}  # desktops not open yet: their readiness
        self.closed = False
        settings = bench.settings
        self.ring, self.talk, self.wrapup = settings.ring_ms / 1000, settings.talk_ms / 1000, settings.wrapup_ms / 1000
        self.loop = asyncio.get_running_loop()

    async def run(self, ready: list[asyncio.Future], task) -> None:
        """Open every desktop logged in READY (``ready[i]`` resolves for the
        i-th), then serve offers until cancelled."""
        bench = self.bench
        self.call = self.stub(metadata=bench.metadata)
        writer = self.loop.create_task(self._write())
        try:
            for recipient_id, opened in zip(self.recipient_ids, ready):
                self.opening[recipient_id] = opened
                self.send(recipient_id, Command(hello=Command.Hello(recipient_id=recipient_id)), None,
                          lambda event: None)
                self.send(recipient_id, Command(login=Command.Login(ready=True)), None,
                          lambda event, opened=opened: self._logged_in(opened, task))
            async for batch in self.call:
                for event in batch.events:
                    self._receive(event)
            if not bench.stopping:
                bench.tally.error("the server ended a gateway stream")
        except grpc.aio.AioRpcError as exc:
            if not bench.stopping:
                bench.tally.error(f"ConnectGateway {exc.code().name}: {exc.details()}")
        finally:
            self.closed = True
            for opened in ready:
                if not opened.done():
                    opened.set_exception(ConnectionError("the gateway stream ended before every desktop opened"))
            writer.cancel()
            self.call.cancel()

    def _logged_in(self, opened: asyncio.Future, task) -> None:
        bench = self.bench
        if opened.done():
            return
        bench.idle_agents += 1
        bench.connected_agents += 1
        bench.progress.advance(task)
        if not opened.done():
            opened.set_result(None)

    # -------------------------------------------------------------- sending

    def send(self, recipient_id: str, command: Command, name: str | None,
             then: Callable[[pb.AgentEvent], None]) -> None:
        if self.closed:
            return
        command.recipient_id = recipient_id
        command.command_id = command_id = str(next(self.ids))
        self.waiting[command_id] = (time.perf_counter(), name, then)
        if not self.batch:
            self.loop.call_soon(self._flush)
        self.batch.append(command)

    def _flush(self) -> None:
        batch, self.batch = self.batch, []
        self.batches.put_nowait(pb.AgentCommandBatch(commands=batch))

    async def _write(self) -> None:
        while True:
            await self.call.write(await self.batches.get())

    # ------------------------------------------------------------ receiving

    def _receive(self, event: pb.AgentEvent) -> None:
        bench = self.bench
        if event.correlation:
            sent, name, then = self.waiting.pop(event.correlation, (None, None, None))
            if then is None:
                return
            if name is not None and bench.tally.inside(sent):
                bench.tally.rpc_ms[name].append((time.perf_counter() - sent) * 1000.0)
            if event.HasField("error"):
                why = f"{event.recipient_id}: {name or 'command'}: {event.error.message} (code {event.error.code})"
                opened = self.opening.pop(event.recipient_id, None)
                if opened is not None and not opened.done():  # hello or login failed: the run cannot go on
                    opened.set_exception(ConnectionError(why))
                    return
                bench.tally.error(why)
                if name is not None:  # the agent waits for the next offer
                    bench.idle_agents += 1
                return
            then(event)
            return
        kind = event.WhichOneof("event")
        if kind == "offer":
            self._offered(event.recipient_id, event.offer)
        elif kind == "offer_cancelled":
            bench.tally.cancelled_offers += 1
        elif kind == "error":
            bench.tally.error(f"{event.recipient_id}: {event.error.message} (code {event.error.code})")

    # ------------------------------------------------- one call of a desktop

    def _after(self, delay: float, step, *args) -> None:
        if delay:
            self.loop.call_later(delay, step, *args)
        else:
            step(*args)

    def _offered(self, recipient_id: str, offer) -> None:
        self.bench.idle_agents -= 1
        self.bench.on_offer(offer.session.caller.number, time.perf_counter())
        self._after(self.ring, self._accept, recipient_id, offer.offer_id, offer.session.id)

    def _accept(self, recipient_id: str, offer_id: str, session_id: str) -> None:
        self.send(recipient_id, Command(accept=Command.Accept(offer_id=offer_id)), "ConnectGateway.accept",
                  lambda event: self._after(self.talk, self._hangup, recipient_id, session_id))

    def _hangup(self, recipient_id: str, session_id: str) -> None:
        self.send(recipient_id, Command(hangup=Command.Hangup(session_id=session_id)), "ConnectGateway.hangup",
                  lambda event: self._after(self.wrapup, self._finish, recipient_id))

    def _finish(self, recipient_id: str) -> None:
        self.send(recipient_id, Command(finish_wrapup=Command.FinishWrapup()), "ConnectGateway.finish_wrapup",
                  self._finished)

    def _finished(self, event: pb.AgentEvent) -> None:
        bench = self.bench
        bench.idle_agents += 1
        tally = bench.tally
        tally.lives_total += 1
        if tally.inside(time.perf_counter()):
            tally.lives += 1
