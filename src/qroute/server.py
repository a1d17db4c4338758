"""Build and run the gRPC server around a node.

One process, one event loop (uvloop when available). The port is bound with
SO_REUSEPORT off: a second server on a port in use fails loudly instead of
silently sharing callers with the first (two engines would disagree).
"""

from __future__ import annotations

import asyncio
import gc
import logging
import signal
from dataclasses import dataclass
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1._async import HealthServicer
from grpc_reflection.v1alpha import reflection

from qroute.api import common
from qroute.api.accounts import AccountServicer
from qroute.api.callbacks import CallbackServicer
from qroute.api.events import EventServicer, add_EventServiceServicer_to_server
from qroute.api.queues import QueueServicer
from qroute.api.recipients import RecipientServicer
from qroute.api.reports import ReportServicer
from qroute.api.sessions import SessionServicer
from qroute.api.settings import AgentSettingsServicer
from qroute.api.webhooks import WebhookServicer
from qroute.node import Node
from qroute.v1 import account_pb2, account_pb2_grpc, queue_pb2, queue_pb2_grpc, recipient_pb2
from qroute.v1 import recipient_pb2_grpc, session_pb2, session_pb2_grpc
from qroute.v1 import webhook_pb2, webhook_pb2_grpc
from qroute.v1 import event_pb2
from qroute.v1 import report_pb2, report_pb2_grpc
from qroute.v1 import callback_pb2, callback_pb2_grpc

log = logging.getLogger("qroute.server")

SERVICES = [
    (queue_pb2, "QueueService", queue_pb2_grpc.add_QueueServiceServicer_to_server, QueueServicer),
    (recipient_pb2, "RecipientService", recipient_pb2_grpc.add_RecipientServiceServicer_to_server,
     RecipientServicer),
    (session_pb2, "SessionService", session_pb2_grpc.add_SessionServiceServicer_to_server, SessionServicer),
    (account_pb2, "AccountService", account_pb2_grpc.add_AccountServiceServicer_to_server, AccountServicer),
    (webhook_pb2, "WebhookService", webhook_pb2_grpc.add_WebhookServiceServicer_to_server, WebhookServicer),
    (event_pb2, "EventService", add_EventServiceServicer_to_server, EventServicer),
    (report_pb2, "ReportService", report_pb2_grpc.add_ReportServiceServicer_to_server, ReportServicer),
    (account_pb2, "AgentSettingsService", account_pb2_grpc.add_AgentSettingsServiceServicer_to_server,
     AgentSettingsServicer),
    (callback_pb2, "CallbackService", callback_pb2_grpc.add_CallbackServiceServicer_to_server, CallbackServicer),
]
GRACE_SECONDS = 5.0


class _OneLookup(grpc.GenericRpcHandler):
    """Every method of every service, found by one dict lookup.

    The generated ``add_*_to_server`` functions hand their methods to this
    instead of the server (``collect``): grpc.aio's accept loop waits
    (``asyncio.wait``) on one future per *registered* method each time a
    call comes in, which with qroute's sixty-odd methods was about 14% of
    the server's CPU on unary Enqueue; and a generic handler per service
    would be asked in turn. One generic handler answers them all."""

    def __init__(self) -> None:
        self.methods: dict[str, grpc.RpcMethodHandler] = {}
        self.others: list[grpc.GenericRpcHandler] = []

    def service(self, handler_call_details):
        return self.methods.get(handler_call_details.method)

    # What the generated functions call on "the server":
    def add_registered_method_handlers(self, service: str, handlers: dict) -> None:
        for name, handler in handlers.items():
            self.methods[f"/{service}/{name}"] = handler

    def add_generic_rpc_handlers(self, handlers) -> None:
        # Generated code adds the same methods both ways; a handler that was
        # not also registered is kept and asked after the dict.
        self.others.extend(handlers)

    def install(self, server: grpc.aio.Server) -> None:
        server.add_generic_rpc_handlers((self, *self.others))


class BindError(RuntimeError):
    """The listen address could not be bound (in use, or not ours)."""


@dataclass
class Running:
    server: grpc.aio.Server
    node: Node
    port: int
    health: HealthServicer
    metrics: object | None = None  # qroute.metrics.Metrics, with --metrics-listen
    metrics_server: object | None = None
    metrics_port: int = 0

    async def stop(self, grace: float = GRACE_SECONDS) -> None:
        await self.health.enter_graceful_shutdown()
        self.node.events.close()  # event streams end now (UNAVAILABLE, with where to resume), not at the grace's end
        await self.server.stop(grace)
        await self.node.stop()
        if self.metrics_server is not None:
            await self.metrics_server.stop()
        if self.metrics is not None:
            self.metrics.uninstall()
        if _log_rpc in common.rpc_observers:
            common.rpc_observers.remove(_log_rpc)
        log.info("server stopped", extra={"port": self.port})


def _log_rpc(method: str, code: str, seconds: float, streaming: bool) -> None:
    """At --log-level debug: a line per RPC."""
    log.debug("rpc %s %s %.3f ms", method, code, seconds * 1000,
              extra={"method": method, "code": code, "duration_ms": round(seconds * 1000, 3)})


async def start(node: Node, listen: str = "127.0.0.1:50051", tls_cert: str | None = None,
                tls_key: str | None = None, metrics_listen: str | None = None) -> Running:
    """Start ``node`` and serve it on ``listen``; returns once accepting calls.
    With ``metrics_listen`` (HOST:PORT), Prometheus metrics are served there."""
    server = grpc.aio.server(options=[
        ("grpc.so_reuseport", 0),
        ("grpc.keepalive_time_ms", 30_000),
        ("grpc.http2.max_pings_without_data", 0),
        ("grpc.keepalive_permit_without_calls", 1),
    ])
    names = [reflection.SERVICE_NAME, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name]
    methods = _OneLookup()
    for module, service, add, servicer_cls in SERVICES:
        add(servicer_cls(node), methods)
        names.append(module.DESCRIPTOR.services_by_name[service].full_name)
    health = HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health, methods)
    methods.install(server)
    reflection.enable_server_reflection(names, server)  # needs the aio server itself: one registered method
    try:
        if tls_cert or tls_key:
            if not (tls_cert and tls_key):
                raise BindError("TLS needs both --tls-cert and --tls-key")
            credentials = grpc.ssl_server_credentials([(Path(tls_key).read_bytes(), Path(tls_cert).read_bytes())])
            port = server.add_secure_port(listen, credentials)
        else:
            port = server.add_insecure_port(listen)
    except RuntimeError as exc:
        raise BindError(f"cannot listen on {listen}: {exc}") from None
    if not port:
        raise BindError(f"cannot listen on {listen}: the address is in use or not available")
    running = Running(server, node, port, health)
    if metrics_listen:
        from qroute.metrics import Metrics, MetricsServer

        running.metrics = Metrics(node)
        running.metrics_server = MetricsServer(running.metrics)
        try:
            running.metrics_port = await running.metrics_server.start(metrics_listen)
        except OSError as exc:
            raise BindError(str(exc)) from None
        running.metrics.install()
    if log.isEnabledFor(logging.DEBUG) and _log_rpc not in common.rpc_observers:
        common.rpc_observers.append(_log_rpc)
    await node.start()
    await server.start()
    for name in names:
        await health.set(name, health_pb2.HealthCheckResponse.SERVING)
    await health.set("", health_pb2.HealthCheckResponse.SERVING)
    log.info("server started on %s", listen.rsplit(":", 1)[0] + f":{port}",
             extra={"port": port, "tls": bool(tls_cert), "node": node.name,
                    "metrics_port": running.metrics_port or None})
    return running


async def serve_forever(node: Node, listen: str, tls_cert: str | None = None, tls_key: str | None = None,
                        ready=None, metrics_listen: str | None = None) -> None:
    """Serve until SIGTERM or SIGINT, then stop gracefully (pending writes flushed)."""
    running = await start(node, listen, tls_cert, tls_key, metrics_listen=metrics_listen)
    _tune_gc()
    if ready is not None:
        ready(running)
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stopping.set)
    await stopping.wait()
    log.info("stopping: finishing calls in flight (%.0f s at most)", GRACE_SECONDS)
    await running.stop()


# Young collections every 50,000 net allocations instead of 700, and a full
# one about 400 times rarer: with the default thresholds, full collections
# walking every live session and recipient stalled the loop for 80-190 ms
# after a busy minute (enqueue->offer p99 at 100 calls/s: 80-98 ms against
# 3.4-3.7 ms with these; `qroute bench e2e --duration 8 --latency-seconds 12`).
GC_THRESHOLDS = (50_000, 20, 20)


def _tune_gc() -> None:
    """What was built before serving (a restored floor of up to 10^5
    sessions, the servicers) lives as long as the process: ``gc.freeze``
    takes it out of every later collection; then collections run rarer."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


def run(coroutine) -> None:
    """Run on uvloop when it is installed."""
    try:
        import uvloop
    except ImportError:
        asyncio.run(coroutine)
    else:
        uvloop.run(coroutine)
