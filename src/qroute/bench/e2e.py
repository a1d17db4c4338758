"""``qroute bench e2e``: qroute end to end over gRPC, against the bare
grpc.aio ceiling measured in the same run.

What one run does, in order:

1. Starts ``qroute serve`` as a child process on a temporary data dir (or
   uses ``--target``), and the bare grpc.aio server of ``qroute.bench.bare``
   as another child. Children, so their CPU time and peak memory can be read
   from /proc apart from the load generator's.
2. Creates an account, a queue ``bench`` served by ``--agents`` recipients
   (wrap-up lasts until the agent finishes it) and a queue ``hold`` that
   nobody serves, and connects one simulated agent desktop (a ``Connect``
   stream) per recipient, logged in READY.
3. Probes, in ``--rounds`` interleaved rounds so a change in the machine's
   load touches both sides alike: the bare ``Unary`` method, the bare
   ``Shaped`` one (Unary with qroute's messages and API key: what gRPC
   itself charges for Enqueue's shape) and qroute's ``Enqueue`` (into
   ``hold``), with the same number of calls in flight;
   the bare ``Flood`` server stream, the bare ``Echo`` bidirectional stream
   and qroute's ``EnqueueStream`` (into ``hold``), with the same window of
   outstanding messages. The ratios qroute / bare are the figures the
   targets are about.
4. Optionally parks ``--hold`` more sessions in ``hold`` (memory figure).
5. The main phase, ``--duration`` seconds: callers arrive (Poisson at
   ``--calls-per-second``, or, by default, as fast as the server takes them:
   a new caller whenever fewer than ``--max-waiting`` callers wait for an
   offer) through ``EnqueueStream`` (default) or ``Enqueue``; each agent
   desktop, on an offer, waits ``--ring-ms``, accepts, talks ``--talk-ms``,
   hangs up, wraps up ``--wrapup-ms`` and finishes wrap-up. ``--subscribers``
   event subscriptions (``EventService.Subscribe``) count what they receive.
   The first tenth of the phase (1 s at most) is warm-up and not counted.
6. A light-load phase, ``--latency-seconds`` at ``--latency-rate`` Poisson
   callers per second, where agents are free: the enqueue->offer latency
   the 5 ms target is about (under the main phase's saturation a caller's
   wait includes the server's backlog).

Figures: full call lives per second (finish_wrapup answered), enqueue->offer
latency (client side: from sending the caller to its offer reaching the
desktop), and separately for callers who found an agent free; latency per
RPC method; event deliveries per second; server CPU (cores busy) and peak
resident memory (VmHWM); errors (every failed RPC, error reply or broken
stream), which must be zero. ``--json FILE`` writes them all.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import itertools
import json
import math
import os
import platform
import random
import shutil
import signal
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from typing import Any

import grpc

from qroute.bench import bare, procfs
from qroute.bench.gateway import GatewayDesktops

TARGET_CALLS_PER_S = 1500  # full call lives, with 2,000 agents
TARGET_RATIO = 0.70  # qroute / bare, unary and stream
TARGET_OFFER_P99_MS = 5.0  # while agents are free
TARGET_RSS_MB = 1024  # with 100,000 waiting sessions and 10,000 agents
BENCH_QUEUE, HOLD_QUEUE = "bench", "hold"
WRAPUP_SECONDS = 3600  # the bench queue's wrap-up: agents end it themselves
AGENTS_PER_CHANNEL = 500  # desktops sharing one HTTP/2 connection
CHANNEL_OPTIONS = [("grpc.use_local_subchannel_pool", 1)]  # one connection per channel


# ------------------------------------------------------------------ settings

@dataclass(frozen=True)
class Settings:
    target: str | None = None
    admin_key: str | None = None
    server_pid: int | None = None  # of --target, when it runs on this machine
    server_options: tuple[str, ...] = ()  # more `qroute serve` options for our own server
    duration: float = 30.0
    agents: int = 2000
    calls_per_second: float | None = None
    ring_ms: int = 10
    talk_ms: int = 500
    wrapup_ms: int = 10
    subscribers: int = 0
    enqueue: str = "stream"
    desktops: str = "connect"  # a Connect stream per desktop, or ConnectGateway streams
    enqueue_streams: int = 1  # EnqueueStream calls the callers take turns on
    concurrency: int = 64
    window: int = 256
    max_waiting: int = 64
    probe_seconds: float = 2.0
    rounds: int = 3
    hold: int = 0
    latency_rate: float = 100.0
    latency_seconds: float = 5.0
    seed: int = 1
    progress: bool = True

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> Settings:
        fields = {name: getattr(args, name) for name in cls.__dataclass_fields__ if hasattr(args, name)}
        fields["server_options"] = tuple(fields.get("server_options") or ())
        return cls(**fields)


# ------------------------------------------------------------ child servers

class Child:
    """A server in a child process that prints ``<marker> HOST:PORT`` once it serves."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str], marker: str) -> None:
        self.name, self.argv, self.env, self.marker = name, argv, env, marker
        self.process: asyncio.subprocess.Process | None = None
        self.target = ""
        self._log = tempfile.TemporaryFile()
        self._drain: asyncio.Task | None = None

    @property
    def pid(self) -> int:
        return self.process.pid

    async def start(self, timeout: float = 60.0) -> str:
        self.process = await asyncio.create_subprocess_exec(
            *self.argv, env=self.env, stdout=asyncio.subprocess.PIPE, stderr=self._log)

        async def ready() -> str:
            while True:
                line = await self.process.stdout.readline()
                if not line:
                    raise RuntimeError(f"{self.name} exited before serving:\n{self.log()}")
                text = line.decode(errors="replace")
                if text.startswith(self.marker):
                    # "qroute serving on 127.0.0.1:PORT (plaintext), ..." / "bare serving on 127.0.0.1:PORT"
                    return text[len(self.marker):].split()[0]

        self.target = await asyncio.wait_for(ready(), timeout)
        self._drain = asyncio.get_running_loop().create_task(self._discard_stdout())
        return self.target

    async def _discard_stdout(self) -> None:
        while await self.process.stdout.read(65536):
            pass

    def log(self) -> str:
        self._log.seek(0)
        return self._log.read().decode(errors="replace")[-4000:]

    async def stop(self, timeout: float = 15.0) -> None:
        if self.process is None or self.process.returncode is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(self.process.wait(), timeout)
        except asyncio.TimeoutError:
            self.process.kill()
            await self.process.wait()
        if self._drain is not None:
            self._drain.cancel()


# ------------------------------------------------------------------ figures

def percentiles(samples: list[float]) -> dict[str, float | int | None]:
    """p50 / p99 / p99.9 (nearest rank) of ``samples``, and their count."""
    if not samples:
        return {"p50": None, "p99": None, "p999": None, "count": 0}
    ordered = sorted(samples)

    def rank(q: float) -> float:
        return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]

    return {"p50": rank(0.50), "p99": rank(0.99), "p999": rank(0.999), "count": len(ordered)}


def spread(values: list[float]) -> dict[str, Any]:
    """Median and range of repeated measurements."""
    if not values:
        return {"median": None, "min": None, "max": None, "samples": []}
    return {"median": statistics.median(values), "min": min(values), "max": max(values), "samples": values}


@dataclass
class Tally:
    """What the load generator saw in the main phase."""

    begin: float = math.inf  # the measured window (perf_counter seconds)
    end: float = math.inf
    sent: int = 0
    answered: int = 0  # enqueue responses
    offered: int = 0
    lives: int = 0  # finish_wrapup answered inside the window
    lives_total: int = 0
    enqueued_in_window: int = 0
    deliveries: int = 0  # events received by subscribers inside the window
    cancelled_offers: int = 0
    late_arrivals: int = 0  # Poisson arrivals sent late because the cap of calls in flight was reached
    errors: int = 0
    error_samples: list[str] = field(default_factory=list)
    rpc_ms: dict[str, list[float]] = field(default_factory=lambda: collections.defaultdict(list))
    sent_at: list[float] = field(default_factory=list)  # by caller index
    agent_free: list[bool] = field(default_factory=list)  # by caller index: an agent was idle when it was sent
    offer_ms: list[float] = field(default_factory=list)
    offer_free_ms: list[float] = field(default_factory=list)

    def inside(self, when: float) -> bool:
        return self.begin <= when < self.end

    def error(self, what: str) -> None:
        self.errors += 1
        if len(self.error_samples) < 20:
            self.error_samples.append(what)


# ------------------------------------------------------------------ the run

class BenchFailed(Exception):
    """The run could not go on (a setup call failed, a server died): why, with the server's log."""


class Bench:
    """One end-to-end run; ``await Bench(settings, progress).run()`` returns the report."""

    def __init__(self, settings: Settings, progress) -> None:
        from qroute.v1 import common_pb2, event_pb2, recipient_pb2, session_pb2

        self.settings = settings
        self.progress = progress
        self.tally = Tally()  # the phase of calls under way
        self.phase_number = 0
        self.rate: float | None = None  # its Poisson arrival rate; None: closed loop
        self.pb_common, self.pb_event, self.pb_recipient, self.pb_session = (
            common_pb2, event_pb2, recipient_pb2, session_pb2)
        self.children: list[Child] = []
        self.channels: list[grpc.aio.Channel] = []
        self.metadata: tuple[tuple[str, str], ...] = ()
        self.idle_agents = 0
        self.connected_agents = 0
        self.stopping = False
        self.wake = asyncio.Event()  # an offer or an enqueue answer came: a closed-loop sender may go on
        self.notes: list[str] = []
        self.server_pid: int | None = None
        self.bare_pid: int | None = None
        self.tasks: list[asyncio.Task] = []

    # -------------------------------------------------------------- helpers

    def channel(self, target: str) -> grpc.aio.Channel:
        channel = grpc.aio.insecure_channel(target, options=CHANNEL_OPTIONS)
        self.channels.append(channel)
        return channel

    def note(self, text: str) -> None:
        self.notes.append(text)

    def phase(self, description: str, total: float | None = None):
        return self.progress.add_task(description, total=total)

    # ------------------------------------------------------------------ run

    async def run(self) -> dict[str, Any]:
        from qroute.keys import new_key

        s = self.settings
        env = dict(os.environ)
        data_dir = None
        task = self.phase("starting the servers", total=None)
        try:
            if s.target:
                target = s.target
                admin_key = s.admin_key or os.environ.get("QROUTE_ADMIN_KEY")
                if not admin_key:
                    raise SystemExit("qroute: --target needs the server's admin key (--admin-key or "
                                     "$QROUTE_ADMIN_KEY) to create the bench account")
                self.server_pid = s.server_pid
            else:
                admin_key = new_key("admin")[1]
                data_dir = tempfile.mkdtemp(prefix="qroute-bench-")
                server = Child("qroute serve", [sys.executable, "-m", "qroute", "serve", "--listen", "127.0.0.1:0",
                                                "--data-dir", data_dir, "--log-level", "warning",
                                                *s.server_options],
                               env | {"QROUTE_ADMIN_KEY": admin_key}, "qroute serving on ")
                self.children.append(server)
                target = await server.start()
                self.server_pid = server.pid
            ceiling = Child("bare grpc.aio server", [sys.executable, "-m", "qroute.bench.bare",
                                                     "--listen", "127.0.0.1:0"], env, "bare serving on ")
            self.children.append(ceiling)
            bare_target = await ceiling.start()
            self.bare_pid = ceiling.pid
            self.progress.update(task, total=1, completed=1)

            await self.set_up(target, admin_key)
            probes = await self.probe(bare_target)
            if s.hold:
                await self.hold(s.hold)
            subscribers = [asyncio.get_running_loop().create_task(self.subscriber(self.channel(target)))
                           for _ in range(s.subscribers)]
            self.tasks.extend(subscribers)
            if subscribers:
                await asyncio.sleep(0.2)  # let the subscriptions open before the calls start
            main = await self.calls_phase(s.duration, s.calls_per_second)
            light = (await self.calls_phase(s.latency_seconds, s.latency_rate)
                     if s.latency_seconds and s.latency_rate else None)
            peak_rss = procfs.memory_mb(self.server_pid, "VmHWM") if self.server_pid else None
            rss_now = procfs.memory_mb(self.server_pid, "VmRSS") if self.server_pid else None
            if s.target:
                await self.clean_up()
        except Exception as exc:
            from qroute.client import ClientError

            if not isinstance(exc, (ClientError, grpc.aio.AioRpcError, ConnectionError, RuntimeError)):
                raise
            logs = "".join(f"\n--- {child.name}, last lines of its log ---\n{child.log()}"
                           for child in self.children if child.log().strip())
            raise BenchFailed(f"{type(exc).__name__}: {exc}{logs}") from exc
        finally:
            self.stopping = True
            for running in self.tasks:
                running.cancel()
            await asyncio.gather(*self.tasks, return_exceptions=True)
            for channel in self.channels:
                await channel.close()
            for child in self.children:
                await child.stop()
            if data_dir:
                shutil.rmtree(data_dir, ignore_errors=True)
        return self.report(probes, main, light, peak_rss, rss_now)

    # ---------------------------------------------------------------- setup

    async def set_up(self, target: str, admin_key: str) -> None:
        from qroute.client import Client

        s = self.settings
        async with Client(target, admin_key) as admin:
            account = await admin.create_account(f"bench {time.strftime('%Y-%m-%d %H:%M:%S')}")
            key = (await admin.create_api_key(account.id, "qroute bench e2e")).secret
        self.metadata = (("authorization", f"Bearer {key}"),)
        self.client = Client(target, key, options=CHANNEL_OPTIONS)
        self.channels.append(self.client.channel)
        client = self.client
        await client.create_queue(id=BENCH_QUEUE, name="Bench", ring_timeout=60, timeout=86_400,
                                  agent_wrapup_time=WRAPUP_SECONDS)
        await client.create_queue(id=HOLD_QUEUE, name="Hold (nobody serves it)", timeout=86_400)
        ids = [f"agent-{i:05d}" for i in range(s.agents)]
        task = self.phase(f"creating {s.agents:,} recipients", total=s.agents)
        room = asyncio.Semaphore(64)

        async def create(recipient_id: str) -> None:
            async with room:
                await client.create_recipient(id=recipient_id)
            self.progress.advance(task)

        await asyncio.gather(*(create(recipient_id) for recipient_id in ids))
        for begin in range(0, len(ids), 1000):
            await client.add_members(BENCH_QUEUE, ids[begin:begin + 1000])

        task = self.phase(f"connecting {s.agents:,} agent desktops", total=s.agents)
        ready = [asyncio.get_running_loop().create_future() for _ in ids]
        channels = [self.channel(target) for _ in range(math.ceil(s.agents / AGENTS_PER_CHANNEL))]
        if s.desktops == "gateway":  # one ConnectGateway stream per channel
            for c, channel in enumerate(channels):
                group = range(c, len(ids), len(channels))
                desktops = GatewayDesktops(self, channel, [ids[i] for i in group])
                self.tasks.append(asyncio.get_running_loop().create_task(
                    desktops.run([ready[i] for i in group], task)))
        else:
            room = asyncio.Semaphore(128)
            for i, recipient_id in enumerate(ids):
                self.tasks.append(asyncio.get_running_loop().create_task(
                    self.agent(channels[i % len(channels)], recipient_id, ready[i], room, task)))
        await asyncio.gather(*ready)

    async def clean_up(self) -> None:
        """On a server we did not start: end the sessions we parked."""
        for queue_id in (HOLD_QUEUE, BENCH_QUEUE):
            with contextlib.suppress(Exception):
                await self.client.delete_queue(queue_id, force=True)

    # ------------------------------------------------------------ the agent

    async def agent(self, channel: grpc.aio.Channel, recipient_id: str, ready: asyncio.Future,
                    room: asyncio.Semaphore, task) -> None:
        """One desktop: on each offer, ring, accept, talk, hang up, wrap up, finish."""
        pb = self.pb_recipient
        s = self.settings
        Command = pb.AgentCommand
        clock = time.perf_counter
        ids = itertools.count(1)
        pending: collections.deque = collections.deque()
        stub = channel.stream_stream("/qroute.v1.RecipientService/Connect",
                                     request_serializer=pb.AgentCommand.SerializeToString,
                                     response_deserializer=pb.AgentEvent.FromString)
        call = None

        async def command(message, name: str | None):
            """Send ``message``; its reply, skipping (and keeping) what the server sent on its own."""
            message.command_id = command_id = str(next(ids))
            sent = clock()
            try:
                await call.write(message)
            except asyncio.InvalidStateError:  # the server ended the stream: say how
                raise ConnectionError(f"{recipient_id}: the agent stream ended: "
                                      f"{(await call.code()).name} {await call.details()}") from None
            while True:
                event = await call.read()
                if event is grpc.aio.EOF:
                    raise ConnectionError(f"{recipient_id}: the agent stream ended")
                if event.correlation == command_id:
                    now = clock()
                    if name is not None and self.tally.inside(sent):
                        self.tally.rpc_ms[name].append((now - sent) * 1000.0)
                    if event.HasField("error"):
                        raise LookupError(f"{name or 'command'}: {event.error.message} (code {event.error.code})")
                    return event
                if event.HasField("offer") or event.HasField("offer_cancelled"):
                    pending.append(event)

        try:
            try:
                async with room:  # open the stream only when it can say hello at once
                    call = stub(metadata=self.metadata)
                    await command(Command(hello=Command.Hello(recipient_id=recipient_id)), None)
                    await command(Command(login=Command.Login(ready=True)), None)
            except BaseException as exc:
                if not ready.done():
                    ready.set_exception(exc)
                raise
            self.idle_agents += 1
            self.connected_agents += 1
            self.progress.advance(task)
            ready.set_result(None)
            ring, talk, wrapup = s.ring_ms / 1000.0, s.talk_ms / 1000.0, s.wrapup_ms / 1000.0
            while not self.stopping:
                event = pending.popleft() if pending else await call.read()
                if event is grpc.aio.EOF:
                    if not self.stopping:
                        self.tally.error(f"{recipient_id}: the server ended the agent stream")
                    return
                if not event.HasField("offer"):
                    if event.HasField("offer_cancelled"):
                        self.tally.cancelled_offers += 1
                    continue
                self.idle_agents -= 1
                self.on_offer(event.offer.session.caller.number, clock())
                finished = False
                try:
                    if ring:
                        await asyncio.sleep(ring)
                    await command(Command(accept=Command.Accept(offer_id=event.offer.offer_id)), "Connect.accept")
                    if talk:
                        await asyncio.sleep(talk)
                    await command(Command(hangup=Command.Hangup(session_id=event.offer.session.id)),
                                  "Connect.hangup")
                    if wrapup:
                        await asyncio.sleep(wrapup)
                    await command(Command(finish_wrapup=Command.FinishWrapup()), "Connect.finish_wrapup")
                    finished = True
                except LookupError as exc:  # an error reply: counted, and the agent waits for the next offer
                    self.tally.error(f"{recipient_id}: {exc}")
                finally:
                    self.idle_agents += 1
                if finished:
                    tally = self.tally
                    tally.lives_total += 1
                    if tally.inside(clock()):
                        tally.lives += 1
        except asyncio.CancelledError:
            raise
        except grpc.aio.AioRpcError as exc:
            if not self.stopping:
                self.tally.error(f"{recipient_id}: Connect {exc.code().name}: {exc.details()}")
        except ConnectionError as exc:
            if not self.stopping:
                self.tally.error(str(exc))
        finally:
            if call is not None:
                call.cancel()

    def on_offer(self, number: str, now: float) -> None:
        tally = self.tally
        tally.offered += 1
        self.wake.set()
        phase, _, index_text = number.partition(".")
        if phase != str(self.phase_number) or not index_text.isdigit():
            return
        index = int(index_text)
        if index >= len(tally.sent_at):
            return
        sent = tally.sent_at[index]
        if tally.inside(sent):
            latency = (now - sent) * 1000.0
            tally.offer_ms.append(latency)
            if tally.agent_free[index]:
                tally.offer_free_ms.append(latency)

    # --------------------------------------------------------------- probes

    async def probe(self, bare_target: str) -> dict[str, Any]:
        s = self.settings
        qroute_channel = self.client.channel
        bare_channel = self.channel(bare_target)
        session_stub = self.pb_session
        enqueue = qroute_channel.unary_unary(
            "/qroute.v1.SessionService/Enqueue",
            request_serializer=session_stub.EnqueueRequest.SerializeToString,
            response_deserializer=session_stub.Session.FromString)
        enqueue_stream = qroute_channel.stream_stream(
            "/qroute.v1.SessionService/EnqueueStream",
            request_serializer=session_stub.EnqueueRequest.SerializeToString,
            response_deserializer=session_stub.Session.FromString)
        request = session_stub.EnqueueRequest(queue_id=HOLD_QUEUE, caller=self.pb_common.Caller(number="hold"))
        metadata = self.metadata
        figures: dict[str, list[float]] = {name: [] for name in
                                           ("bare_unary", "bare_shaped", "qroute_enqueue", "bare_flood", "bare_echo",
                                            "qroute_enqueue_stream")}
        latency: dict[str, list[float]] = {"bare Unary": [], "bare Shaped": [], "Enqueue (probe)": [], "bare Echo": [],
                                            "EnqueueStream (probe)": []}
        warmup = min(0.5, s.probe_seconds / 4)
        task = self.phase(f"ceiling and enqueue probes ({s.rounds} rounds)", total=s.rounds * 6)
        bare_unary = bare.unary_caller(bare_channel)
        # Server CPU per message (per call or request/answer pair): where the
        # ratios come from. Measured over the probe with its warm-up.
        cpu_us: dict[str, list[float]] = {name: [] for name in figures}

        async def measured(name: str, pid: int | None, probe) -> None:
            began, used = time.perf_counter(), procfs.cpu_seconds(pid) if pid else None
            rate = await probe
            figures[name].append(rate)
            after = procfs.cpu_seconds(pid) if pid else None
            if used is not None and after is not None and rate:
                cpu_us[name].append(1e6 * (after - used) / (rate * (time.perf_counter() - began)))
            self.progress.advance(task)

        for _ in range(s.rounds):
            await measured("bare_unary", self.bare_pid, bare.unary_probe(
                bare_unary, s.concurrency, warmup, s.probe_seconds, latency["bare Unary"]))
            await measured("bare_shaped", self.bare_pid, bare.unary_probe(
                bare.shaped_caller(bare_channel, request, metadata), s.concurrency, warmup, s.probe_seconds,
                latency["bare Shaped"]))
            await measured("qroute_enqueue", self.server_pid, bare.unary_probe(
                lambda: enqueue(request, metadata=metadata), s.concurrency, warmup, s.probe_seconds,
                latency["Enqueue (probe)"]))
            await measured("bare_flood", self.bare_pid, bare.flood_probe(bare_channel, warmup, s.probe_seconds))
            await measured("bare_echo", self.bare_pid, bare.pipelined_probe(
                bare.echo_call(bare_channel), lambda: bare.PAYLOAD, s.window, warmup, s.probe_seconds,
                latency["bare Echo"]))
            await measured("qroute_enqueue_stream", self.server_pid, bare.pipelined_probe(
                enqueue_stream(metadata=metadata), lambda: request, s.window, warmup, s.probe_seconds,
                latency["EnqueueStream (probe)"]))
        return {"rates": figures, "latency_ms": {name: percentiles(v) for name, v in latency.items()},
                "server_cpu_us": {name: statistics.median(v) if v else None for name, v in cpu_us.items()}}

    async def hold(self, count: int) -> None:
        """Park ``count`` more sessions in the queue nobody serves."""
        task = self.phase(f"parking {count:,} waiting sessions", total=count)
        session_pb = self.pb_session
        call = self.client.channel.stream_stream(
            "/qroute.v1.SessionService/EnqueueStream",
            request_serializer=session_pb.EnqueueRequest.SerializeToString,
            response_deserializer=session_pb.Session.FromString)(metadata=self.metadata)
        request = session_pb.EnqueueRequest(queue_id=HOLD_QUEUE, caller=self.pb_common.Caller(number="hold"))
        room = asyncio.Semaphore(self.settings.window)

        async def write() -> None:
            for _ in range(count):
                await room.acquire()
                await call.write(request)
            await call.done_writing()

        writer = asyncio.get_running_loop().create_task(write())
        for _ in range(count):
            if await call.read() is grpc.aio.EOF:
                raise RuntimeError(f"EnqueueStream ended early while parking sessions: "
                                   f"{(await call.code()).name} {await call.details()}")
            room.release()
            self.progress.advance(task)
        await writer

    # ----------------------------------------------------------- main phase

    async def calls_phase(self, duration: float, rate: float | None) -> dict[str, Any]:
        """Callers for ``duration`` seconds (Poisson at ``rate``, or closed loop), then a drain."""
        s = self.settings
        self.tally = tally = Tally()
        self.phase_number += 1
        self.rate = rate
        loop = asyncio.get_running_loop()
        server_cpu = procfs.CpuMeter(self.server_pid) if self.server_pid else None
        client_cpu = procfs.CpuMeter(os.getpid(), children=False)  # the servers are its children
        start = time.perf_counter()
        warmup = min(1.0, duration / 10)
        tally.begin, tally.end = start + warmup, start + duration
        mode = f"Poisson {rate:g}/s" if rate else "as fast as it takes them"
        task = self.phase(f"calls ({s.enqueue}, {mode})", total=duration)
        meters_started = False

        async def show() -> None:
            nonlocal meters_started
            last_lives, last_time = 0, time.perf_counter()
            while True:
                await asyncio.sleep(0.25)
                now = time.perf_counter()
                if not meters_started and now >= tally.begin:
                    meters_started = True
                    if server_cpu:
                        server_cpu.start(now)
                    client_cpu.start(now)
                rate = (tally.lives_total - last_lives) / (now - last_time)
                last_lives, last_time = tally.lives_total, now
                self.progress.update(task, completed=min(duration, now - start), description=(
                    f"calls ({s.enqueue}, {mode}): {rate:,.0f}/s, {tally.sent - tally.offered:,} waiting, "
                    f"{self.idle_agents:,} agents idle, {tally.errors} errors"))

        shower = loop.create_task(show())
        sender = self.stream_callers if s.enqueue == "stream" else self.unary_callers
        try:
            await sender(start + duration)
            now = time.perf_counter()
            if server_cpu:
                server_cpu.stop(now)
            client_cpu.stop(now)
            # drain: every caller offered and every agent done, so errors show up
            drain = self.phase("draining", total=None)
            deadline = now + max(5.0, 3 * (s.ring_ms + s.talk_ms + s.wrapup_ms) / 1000.0)
            while time.perf_counter() < deadline and (
                    tally.offered < tally.sent or self.idle_agents < self.connected_agents):
                await asyncio.sleep(0.05)
            self.progress.update(drain, total=1, completed=1)
        finally:
            shower.cancel()
        unserved = tally.sent - tally.offered
        if unserved > 0:
            self.note(f"{unserved:,} callers were still waiting for an offer when the run ended")
        window = tally.end - tally.begin
        return {
            "window_s": window,
            "server_cpu": server_cpu,
            "client_cpu": client_cpu,
            "unserved": unserved,
            "tally": tally,
        }

    async def next_arrival(self, deadline: float, rng: random.Random, state: dict) -> bool:
        """Wait until the next caller may be sent; False once ``deadline`` passed."""
        s, tally = self.settings, self.tally
        clock = time.perf_counter
        if self.rate:
            state["due"] = state.get("due", clock()) + rng.expovariate(self.rate)
            delay = state["due"] - clock()
            if delay > 0:
                await asyncio.sleep(delay)
            return clock() < deadline
        while True:
            self.wake.clear()  # before the test, so an offer landing after it still wakes us
            if tally.sent - tally.offered < s.max_waiting and tally.sent - tally.answered < s.window:
                return clock() < deadline
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self.wake.wait(), max(0.0, deadline - clock()))
            if clock() >= deadline:
                return False

    def new_caller(self) -> Any:
        """The next caller's request (its number is its index), recorded as sent now."""
        tally = self.tally
        index = len(tally.sent_at)
        now = time.perf_counter()
        tally.sent_at.append(now)
        tally.agent_free.append(self.idle_agents > 0)
        tally.sent += 1
        if tally.inside(now):
            tally.enqueued_in_window += 1
        return self.pb_session.EnqueueRequest(queue_id=BENCH_QUEUE,
                                              caller=self.pb_common.Caller(number=f"{self.phase_number}.{index}"))

    async def stream_callers(self, deadline: float) -> None:
        """Callers through ``--enqueue-streams`` EnqueueStream calls, taking turns."""
        tally = self.tally
        pb = self.pb_session
        method = self.client.channel.stream_stream(
            "/qroute.v1.SessionService/EnqueueStream", request_serializer=pb.EnqueueRequest.SerializeToString,
            response_deserializer=pb.Session.FromString)
        calls = [method(metadata=self.metadata) for _ in range(self.settings.enqueue_streams)]
        rng = random.Random(self.settings.seed)
        state: dict = {}
        clock = time.perf_counter

        async def read(call, sent_at: collections.deque) -> None:
            while True:
                response = await call.read()
                if response is grpc.aio.EOF:
                    return
                now = clock()
                sent = sent_at.popleft()
                tally.answered += 1
                self.wake.set()
                if tally.inside(sent):
                    tally.rpc_ms["EnqueueStream"].append((now - sent) * 1000.0)

        sent_ats = [collections.deque() for _ in calls]
        readers = [asyncio.get_running_loop().create_task(read(call, sent_at))
                   for call, sent_at in zip(calls, sent_ats)]
        turn = itertools.cycle(range(len(calls)))
        try:
            while await self.next_arrival(deadline, rng, state):
                request = self.new_caller()
                i = next(turn)
                sent_ats[i].append(tally.sent_at[-1])
                await calls[i].write(request)
            for call in calls:
                await call.done_writing()
            await asyncio.gather(*readers)
            for call in calls:
                if await call.code() != grpc.StatusCode.OK:
                    tally.error(f"EnqueueStream {(await call.code()).name}: {await call.details()}")
        except grpc.aio.AioRpcError as exc:
            tally.error(f"EnqueueStream {exc.code().name}: {exc.details()}")
        finally:
            for reader in readers:
                reader.cancel()

    async def unary_callers(self, deadline: float) -> None:
        s, tally = self.settings, self.tally
        pb = self.pb_session
        enqueue = self.client.channel.unary_unary(
            "/qroute.v1.SessionService/Enqueue", request_serializer=pb.EnqueueRequest.SerializeToString,
            response_deserializer=pb.Session.FromString)
        rng = random.Random(s.seed)
        state: dict = {}
        # closed loop: `concurrency` calls in flight at most; Poisson: a cap only against runaway
        room = asyncio.Semaphore(4096 if self.rate else s.concurrency)
        running: set[asyncio.Task] = set()
        clock = time.perf_counter

        async def one(request, sent: float) -> None:
            try:
                await enqueue(request, metadata=self.metadata)
                now = clock()
                tally.answered += 1
                self.wake.set()
                if tally.inside(sent):
                    tally.rpc_ms["Enqueue"].append((now - sent) * 1000.0)
            except grpc.aio.AioRpcError as exc:
                tally.error(f"Enqueue {exc.code().name}: {exc.details()}")
                tally.answered += 1
                tally.offered += 1  # it will never be offered
            finally:
                room.release()

        loop = asyncio.get_running_loop()
        while await self.next_arrival(deadline, rng, state):
            if room.locked():
                tally.late_arrivals += 1
            await room.acquire()
            request = self.new_caller()
            task = loop.create_task(one(request, tally.sent_at[-1]))
            running.add(task)
            task.add_done_callback(running.discard)
        if running:
            await asyncio.gather(*running)

    async def subscriber(self, channel: grpc.aio.Channel) -> None:
        pb = self.pb_event
        call = channel.unary_stream("/qroute.v1.EventService/Subscribe",
                                    request_serializer=pb.SubscribeRequest.SerializeToString,
                                    response_deserializer=pb.EventBatch.FromString)(
            pb.SubscribeRequest(max_batch=1000), metadata=self.metadata)
        try:
            async for batch in call:
                tally = self.tally  # the phase under way
                if tally.inside(time.perf_counter()):
                    tally.deliveries += len(batch.events)
        except grpc.aio.AioRpcError as exc:
            if exc.code() == grpc.StatusCode.UNIMPLEMENTED:
                note = "EventService.Subscribe is not served by this server: no event figures"
                if note not in self.notes:
                    self.note(note)
            elif not self.stopping and exc.code() != grpc.StatusCode.CANCELLED:
                self.tally.error(f"Subscribe {exc.code().name}: {exc.details()}")

    # --------------------------------------------------------------- report

    def report(self, probes: dict[str, Any], main: dict[str, Any], light: dict[str, Any] | None,
               peak_rss: float | None, rss_now: float | None) -> dict[str, Any]:
        s = self.settings
        tally = main["tally"]
        rates = probes["rates"]
        window = main["window_s"]
        light_tally = light["tally"] if light else None

        def median(name: str) -> float | None:
            return statistics.median(rates[name]) if rates[name] else None

        def ratio(mine: str, theirs: str) -> float | None:
            a, b = median(mine), median(theirs)
            return a / b if a and b else None

        events_served = not any("Subscribe is not served" in n for n in self.notes)
        server_cpu, client_cpu = main["server_cpu"], main["client_cpu"]
        return {
            "calls_per_s": tally.lives / window if window > 0 else 0.0,
            "enqueued_per_s": tally.enqueued_in_window / window if window > 0 else 0.0,
            "offer_latency_ms": percentiles(tally.offer_ms),
            "offer_latency_agent_free_ms": percentiles(tally.offer_free_ms),
            "rpc_latency_ms": {name: percentiles(samples) for name, samples in sorted(tally.rpc_ms.items())}
                               | probes["latency_ms"],
            "event_deliveries_per_s": (tally.deliveries / window if s.subscribers and events_served and window > 0
                                       else None),
            "light_load": None if light is None else {
                "calls_per_second": s.latency_rate,
                "calls_per_s": light_tally.lives / light["window_s"],
                "offer_latency_ms": percentiles(light_tally.offer_ms),
                "offer_latency_agent_free_ms": percentiles(light_tally.offer_free_ms),
                "rpc_latency_ms": {name: percentiles(samples)
                                   for name, samples in sorted(light_tally.rpc_ms.items())},
                "server_cpu_cores": light["server_cpu"].cores if light["server_cpu"] else None,
            },
            "errors": tally.errors + (light_tally.errors if light_tally else 0),
            "error_samples": (tally.error_samples + (light_tally.error_samples if light_tally else []))[:20],
            "cancelled_offers": tally.cancelled_offers,
            "late_arrivals": tally.late_arrivals,
            "unserved_callers": main["unserved"],
            "server_cpu_cores": server_cpu.cores if server_cpu else None,
            "client_cpu_cores": client_cpu.cores,
            "server_peak_rss_mb": peak_rss,
            "server_rss_mb_at_end": rss_now,
            "ceiling": {
                "unary_per_s": median("bare_unary"),
                "shaped_unary_per_s": median("bare_shaped"),
                "stream_msgs_per_s": median("bare_flood"),
                "stream_echo_per_s": median("bare_echo"),
                "unary": spread(rates["bare_unary"]),
                "shaped": spread(rates["bare_shaped"]),
                "shaped_vs_unary": ratio("bare_shaped", "bare_unary"),
                "stream": spread(rates["bare_flood"]),
                "echo": spread(rates["bare_echo"]),
            },
            "server_cpu_us_per_message": probes["server_cpu_us"],
            "qroute": {
                "enqueue_per_s": median("qroute_enqueue"),
                "enqueue_stream_per_s": median("qroute_enqueue_stream"),
                "enqueue": spread(rates["qroute_enqueue"]),
                "enqueue_stream": spread(rates["qroute_enqueue_stream"]),
                "enqueue_vs_unary": ratio("qroute_enqueue", "bare_unary"),
                "enqueue_vs_shaped": ratio("qroute_enqueue", "bare_shaped"),
                "enqueue_stream_vs_stream": ratio("qroute_enqueue_stream", "bare_flood"),
                "enqueue_stream_vs_echo": ratio("qroute_enqueue_stream", "bare_echo"),
            },
            "main_phase": {
                "window_s": window, "lives": tally.lives, "enqueued": tally.enqueued_in_window,
                "offered_total": tally.offered, "sent_total": tally.sent,
            },
            "settings": {name: getattr(s, name) for name in s.__dataclass_fields__ if name != "admin_key"},
            "server": {"target": s.target or "own child process",
                       "dispatcher": "unknown" if s.target else _dispatcher_name()},
            "machine": {"python": platform.python_version(), "cpus": os.cpu_count(),
                        "load_average": _load()},
            "notes": self.notes,
        }


def _dispatcher_name() -> str:
    from qroute import routing

    return routing.IMPLEMENTATION


def _load() -> float | None:
    try:
        return os.getloadavg()[0]
    except OSError:
        return None


# ------------------------------------------------------------------ output

def _ms(value: float | None) -> str:
    return "n/a" if value is None else f"{value:,.2f}"


def _rate(value: float | None) -> str:
    return "n/a" if value is None else f"{value:,.0f}"


def _latency(figures: dict[str, Any]) -> str:
    if not figures["count"]:
        return "n/a"
    return f"{_ms(figures['p50'])} / {_ms(figures['p99'])} / {_ms(figures['p999'])}  (n={figures['count']:,})"


def _range(figure: dict[str, Any]) -> str:
    if figure["median"] is None:
        return "n/a"
    if len(figure["samples"]) == 1:
        return _rate(figure["median"])
    return f"{_rate(figure['median'])}  ({_rate(figure['min'])}–{_rate(figure['max'])})"


def _verdict(met: bool | None, target: str) -> str:
    if met is None:
        return target
    return f"{target}: {'met' if met else 'MISSED'}"


def table_rows(report: dict[str, Any]) -> list[tuple[str, str, str]]:
    s = report["settings"]
    q, c = report["qroute"], report["ceiling"]
    free = report["offer_latency_agent_free_ms"]
    unary_ratio, stream_ratio = q["enqueue_vs_unary"], q["enqueue_stream_vs_stream"]
    mode = f"Poisson {s['calls_per_second']:g}/s" if s["calls_per_second"] else "as fast as the server takes them"
    rss = report["server_peak_rss_mb"]
    rows = [
        ("full call lives/s (enqueue, offer, accept, hang-up, wrap-up)",
         _rate(report["calls_per_s"]),
         _verdict(report["calls_per_s"] >= TARGET_CALLS_PER_S if s["agents"] >= 2000 else None,
                  f"≥ {TARGET_CALLS_PER_S:,} with 2,000 agents")),
        ("callers enqueued/s", _rate(report["enqueued_per_s"]), f"{s['enqueue']}, {mode}"),
        ("enqueue→offer ms p50 / p99 / p99.9", _latency(report["offer_latency_ms"]), "all callers"),
        ("enqueue→offer ms, an agent free", _latency(free), "callers sent while an agent was idle"),
    ]
    light = report["light_load"]
    if light is not None:
        light_free = light["offer_latency_agent_free_ms"]
        rows.append((f"enqueue→offer ms at {light['calls_per_second']:g} calls/s, an agent free",
                     _latency(light_free),
                     _verdict(light_free["p99"] <= TARGET_OFFER_P99_MS if light_free["count"] else None,
                              f"p99 ≤ {TARGET_OFFER_P99_MS:g} ms")))
    for name, figures in report["rpc_latency_ms"].items():
        rows.append((f"RPC {name} ms p50 / p99 / p99.9", _latency(figures), ""))
    rows += [
        (f"event deliveries/s ({s['subscribers']} subscribers)", _rate(report["event_deliveries_per_s"]), ""),
        ("server CPU (cores busy)", "n/a" if report["server_cpu_cores"] is None
         else f"{report['server_cpu_cores']:.2f}", "main phase"),
        ("load generator CPU (cores busy)", "n/a" if report["client_cpu_cores"] is None
         else f"{report['client_cpu_cores']:.2f}", "main phase"),
        ("server peak memory (MiB, VmHWM)", "n/a" if rss is None else f"{rss:,.0f}",
         _verdict(rss < TARGET_RSS_MB if rss is not None and s["agents"] >= 10_000 and s["hold"] >= 100_000
                  else None, "< 1,024 with 100,000 waiting and 10,000 agents")),
        ("errors", str(report["errors"]), _verdict(report["errors"] == 0, "0")),
        ("bare grpc.aio unary calls/s", _range(c["unary"]), f"{s['concurrency']} in flight"),
        ("bare grpc.aio unary in Enqueue's shape calls/s", _range(c["shaped"]),
         f"{_percent(c['shaped_vs_unary'])} of bare unary: qroute's messages and API key, no work"),
        ("qroute Enqueue calls/s", _range(q["enqueue"]),
         _verdict(None if unary_ratio is None else unary_ratio >= TARGET_RATIO,
                  f"{'n/a' if unary_ratio is None else f'{unary_ratio:.0%}'} of bare unary; "
                  f"≥ {TARGET_RATIO:.0%}")),
        ("bare grpc.aio server-stream msgs/s", _range(c["stream"]), "unbatched"),
        ("bare grpc.aio bidi echo msgs/s", _range(c["echo"]), f"window {s['window']}"),
        ("qroute EnqueueStream msgs/s", _range(q["enqueue_stream"]),
         _verdict(None if stream_ratio is None else stream_ratio >= TARGET_RATIO,
                  f"{'n/a' if stream_ratio is None else f'{stream_ratio:.0%}'} of bare server stream; "
                  f"≥ {TARGET_RATIO:.0%}")),
    ]
    cpu = report["server_cpu_us_per_message"]
    if any(value is not None for value in cpu.values()):
        rows += [
            ("server CPU µs per call: bare Unary / Shaped / qroute Enqueue",
             f"{_us(cpu['bare_unary'])} / {_us(cpu['bare_shaped'])} / {_us(cpu['qroute_enqueue'])}",
             "median over the rounds"),
            ("server CPU µs per message: bare Flood / Echo pair / EnqueueStream pair",
             f"{_us(cpu['bare_flood'])} / {_us(cpu['bare_echo'])} / {_us(cpu['qroute_enqueue_stream'])}",
             "a pair: one request in, one answer out"),
        ]
    return rows


def _percent(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.0%}"


def _us(value: float | None) -> str:
    return "n/a" if value is None else f"{value:,.0f}"


def title(report: dict[str, Any]) -> str:
    s, machine = report["settings"], report["machine"]
    load = machine["load_average"]
    desktops = "on ConnectGateway streams" if s.get("desktops") == "gateway" else "on Connect streams"
    return (f"qroute bench e2e: {s['agents']:,} agents {desktops} (ring {s['ring_ms']} ms, talk {s['talk_ms']} ms, "
            f"wrap-up {s['wrapup_ms']} ms), {s['duration']:g} s, {s['subscribers']} subscribers, "
            f"{s['hold']:,} parked sessions; {report['server']['dispatcher']} dispatcher; "
            f"Python {machine['python']}, {machine['cpus']} CPUs, load average "
            f"{'n/a' if load is None else f'{load:.1f}'}")


def summary_line(report: dict[str, Any]) -> str:
    q = report["qroute"]
    light = report["light_load"]
    offer = (light or report)["offer_latency_agent_free_ms"]

    where = f"at {light['calls_per_second']:g} calls/s" if light else "agent free"
    return (f"e2e: {report['calls_per_s']:,.0f} calls/s, offer p99 {_ms(offer['p99'])} ms ({where}), "
            f"Enqueue {_percent(q['enqueue_vs_unary'])} of bare unary, "
            f"EnqueueStream {_percent(q['enqueue_stream_vs_stream'])} of bare stream, errors {report['errors']}")


def print_report(report: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title(report), title_justify="left")
    table.add_column("figure")
    table.add_column("value", justify="right")
    table.add_column("target / note")
    for row in table_rows(report):
        table.add_row(*row)
    Console(width=max(150, Console().width)).print(table)
    for text in report["notes"]:
        print(f"note: {text}")
    for text in report["error_samples"]:
        print(f"error: {text}")
    print(summary_line(report))


class _NoProgress:
    def add_task(self, *args, **kwargs) -> int:
        return 0

    def update(self, *args, **kwargs) -> None:
        pass

    def advance(self, *args, **kwargs) -> None:
        pass


async def _main(settings: Settings) -> dict[str, Any]:
    if not settings.progress:
        return await Bench(settings, _NoProgress()).run()
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    with Progress(TextColumn("{task.description}"), BarColumn(), TimeElapsedColumn(),
                  console=Console(stderr=True)) as progress:
        return await Bench(settings, progress).run()


def run(args: argparse.Namespace) -> int:
    """``qroute bench e2e``; returns the exit status (1 if there were errors)."""
    settings = Settings.from_args(args)
    try:
        import uvloop
    except ImportError:
        runner = asyncio.run
    else:
        runner = uvloop.run
    try:
        report = runner(_main(settings))
    except BenchFailed as exc:
        print(f"qroute: the benchmark failed: {exc}", file=sys.stderr)
        return 1
    if args.json:
        with open(args.json, "w", encoding="utf-8") as handle:
            json.dump(report | {"table": table_rows(report), "title": title(report),
                                "line": summary_line(report)}, handle, indent=2)
            handle.write("\n")
    print_report(report)
    return 1 if report["errors"] else 0
