"""Prometheus metrics of a node (``qroute serve --metrics-listen HOST:PORT``).

What costs something on the hot path is only what must be counted as it
happens: one counter increment and one histogram ``observe`` per RPC (an
observer of ``qroute.api.common``), one ``observe`` per dispatch pass (the
``PassScheduler.on_pass`` hook), two per group commit (commit latency and
batch size, from the storage writer's thread: the storage's ``on_commit``
hook), and a plain integer increment per offer (a journal listener).
Everything else — queues' waiting sessions, recipients by state, storage
counters, webhooks, event streams — is read from the node when
Prometheus scrapes (``NodeCollector``), on the event loop, so it sees a
consistent state and nothing is maintained between scrapes.

Label sets are bounded: RPC method and status code; account and queue (as
configured) and recipient state. No session or recipient id is a label.

The endpoint is served on the node's event loop (``MetricsServer``, plain
asyncio), not on prometheus-client's thread: reading the floors from another
thread would race with the engine.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, disable_created_metrics
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest

from qroute.api import common
from qroute.domain.enums import RecipientState

log = logging.getLogger("qroute.metrics")

RPC_BUCKETS = (.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1.0, 2.5, 10.0)
PASS_BUCKETS = (.00001, .000025, .00005, .0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25)
COMMIT_BUCKETS = (.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1.0, 2.5)
BATCH_BUCKETS = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000)  # ops; 5000 is the writer's cap
STATES = {state: state.name.lower() for state in RecipientState}
SUBSCRIBE = "EventService/Subscribe"


class Metrics:
    """A node's metrics in their own registry; ``install`` hooks them up,
    ``uninstall`` unhooks them (the RPC observers are process-wide)."""

    def __init__(self, node) -> None:
        self.node = node
        disable_created_metrics()  # process-wide: no *_created series beside every counter
        self.registry = CollectorRegistry(auto_describe=True)
        self.rpcs = Counter("qroute_rpcs", "RPCs finished, by method and status code",
                            ("method", "code"), registry=self.registry)
        self.rpc_seconds = Histogram("qroute_rpc_duration_seconds", "Time to answer a unary RPC",
                                     ("method",), buckets=RPC_BUCKETS, registry=self.registry)
        self.streams = Gauge("qroute_rpc_streams_open", "Streaming RPCs open now, by method", ("method",),
                             registry=self.registry)
        self.pass_seconds = Histogram("qroute_dispatch_pass_duration_seconds",
                                      "Duration of a dispatch pass (the pass's count is this histogram's _count)",
                                      buckets=PASS_BUCKETS, registry=self.registry)
        self.pass_records = Counter("qroute_dispatch_records", "Records applied by dispatch passes "
                                    "(offers, misses, timeouts, wrap-up ends)", registry=self.registry)
        self.commit_seconds = Histogram("qroute_storage_commit_seconds", "Duration of a group commit "
                                        "(BEGIN .. COMMIT; the commits' count is this histogram's _count)",
                                        buckets=COMMIT_BUCKETS, registry=self.registry)
        self.batch_ops = Histogram("qroute_storage_batch_ops", "Ops per group commit (the batch size)",
                                   buckets=BATCH_BUCKETS, registry=self.registry)
        self.offers = 0  # session.offered events: the matches
        self.events = 0  # events published
        self.subscribers = 0  # Subscribe streams open
        self._histograms: dict[str, object] = {}
        self._counters: dict[tuple[str, str], object] = {}
        self.registry.register(NodeCollector(node, self))

    # --------------------------------------------------------------- hooks

    def on_rpc(self, method: str, code: str, seconds: float, streaming: bool) -> None:
        counter = self._counters.get((method, code))
        if counter is None:
            counter = self._counters[(method, code)] = self.rpcs.labels(method, code)
        counter.inc()
        if not streaming:
            histogram = self._histograms.get(method)
            if histogram is None:
                histogram = self._histograms[method] = self.rpc_seconds.labels(method)
            histogram.observe(seconds)

    def on_stream(self, method: str, delta: int) -> None:
        self.streams.labels(method).inc(delta)
        if method == SUBSCRIBE:
            self.subscribers += delta

    def on_pass(self, seconds: float, records: int) -> None:
        self.pass_seconds.observe(seconds)
        if records:
            self.pass_records.inc(records)

    def on_commit(self, seconds: float, ops: int) -> None:
        """A group commit, reported by the storage writer's thread (``observe`` takes a lock)."""
        self.commit_seconds.observe(seconds)
        self.batch_ops.observe(ops)

    def on_event(self, event) -> None:
        self.events += 1
        if event.type == "session.offered":
            self.offers += 1

    def install(self) -> None:
        common.rpc_observers.append(self.on_rpc)
        common.stream_observers.append(self.on_stream)
        self.node.scheduler.on_pass = self.on_pass
        self.node.journal.listeners.append(self.on_event)
        self.node.storage.on_commit = self.on_commit

    def uninstall(self) -> None:
        for hooks, hook in ((common.rpc_observers, self.on_rpc), (common.stream_observers, self.on_stream),
                            (self.node.journal.listeners, self.on_event)):
            if hook in hooks:
                hooks.remove(hook)
        if self.node.scheduler.on_pass == self.on_pass:
            self.node.scheduler.on_pass = None
        if getattr(self.node.storage, "on_commit", None) == self.on_commit:
            self.node.storage.on_commit = None

    def text(self) -> bytes:
        """The exposition text, as scraped."""
        return generate_latest(self.registry)


class NodeCollector:
    """Reads the node at scrape time: per-queue gauges, storage, webhooks, events."""

    def __init__(self, node, metrics: Metrics) -> None:
        self.node = node
        self.metrics = metrics

    def describe(self) -> Iterable:
        return []  # collected fresh at each scrape

    def collect(self) -> Iterable:
        yield from self._queues()
        yield from self._storage()
        yield from self._webhooks()
        yield from self._events()

    def _queues(self) -> Iterable:
        labels = ("account", "queue")
        waiting = GaugeMetricFamily("qroute_queue_waiting_sessions", "Sessions waiting in line", labels=labels)
        offering = GaugeMetricFamily("qroute_queue_offering_sessions", "Sessions of the queue under offer",
                                     labels=labels)
        longest = GaugeMetricFamily("qroute_queue_longest_wait_seconds", "Wait of the longest-waiting session",
                                    labels=labels)
        members = GaugeMetricFamily("qroute_queue_recipients", "Members of the queue by state (away: "
                                    "logged in, away globally or for this queue)", labels=labels + ("state",))
        today = GaugeMetricFamily("qroute_queue_sessions_today", "Sessions of the queue since the start of "
                                  "the account's day, by outcome", labels=labels + ("outcome",))
        for account_id, floor in list(self.node.engine.floors.items()):
            now = floor.clock.now_ms()
            for queue_id, queue in list(floor.queues.items()):
                key = [account_id, queue_id]
                waiting.add_metric(key, len(queue.line))
                offering.add_metric(key, queue.offering)
                # the line is ordered by priority first: the oldest is the first of one of its priorities
                oldest = min((queue.line[queue.line.bisect_left((-priority,))][1] for priority in queue.priorities
                              if queue.priorities[priority]), default=None) if queue.line else None
                longest.add_metric(key, 0 if oldest is None else max(0, now - oldest) / 1000)
                counts = dict.fromkeys(STATES.values(), 0)
                for recipient_id in queue.members:
                    recipient = floor.recipients.get(recipient_id)
                    if recipient is None:
                        continue
                    state = recipient.state
                    if state == RecipientState.READY and queue_id in recipient.away_queues:
                        state = RecipientState.AWAY
                    counts[STATES[state]] += 1
                for state, count in counts.items():
                    members.add_metric(key + [state], count)
                counters = queue.counters
                for outcome, value in (("entered", counters.total_sessions),
                                       ("answered", counters.answered_sessions),
                                       ("missed", counters.missed_sessions),
                                       ("abandoned", counters.abandoned_sessions),
                                       ("timed_out", counters.timed_out_sessions)):
                    today.add_metric(key + [outcome], value)
        yield from (waiting, offering, longest, members, today)

    def _storage(self) -> Iterable:
        stats = self.node.storage.stats
        yield GaugeMetricFamily("qroute_storage_commit_seconds_max", "Longest commit so far",
                                value=stats.max_commit_seconds)
        yield GaugeMetricFamily("qroute_storage_commit_seconds_last", "Duration of the last commit",
                                value=stats.last_commit_seconds)
        yield GaugeMetricFamily("qroute_storage_batch_ops_last", "Ops in the last group commit",
                                value=stats.last_batch_size)
        yield GaugeMetricFamily("qroute_storage_batch_ops_max", "Most ops in one group commit",
                                value=stats.max_batch_size)
        yield CounterMetricFamily("qroute_storage_writes", "Writes (one write() call each) committed",
                                  value=stats.writes_committed)
        yield CounterMetricFamily("qroute_storage_writes_failed", "Writes that failed", value=stats.writes_failed)

    def _webhooks(self) -> Iterable:
        hooks = self.node.webhooks
        yield CounterMetricFamily("qroute_webhook_deliveries", "Webhook deliveries that succeeded",
                                  value=hooks.delivered)
        yield CounterMetricFamily("qroute_webhook_attempts_failed", "Webhook delivery attempts that failed "
                                  "(each is retried until the max age)", value=hooks.failed_attempts)
        yield CounterMetricFamily("qroute_webhook_deliveries_given_up", "Webhook deliveries given up",
                                  value=hooks.given_up)
        yield GaugeMetricFamily("qroute_webhook_deliveries_pending", "Webhook deliveries waiting to be sent",
                                value=sum(len(queue) for queue in list(hooks.pending.values())))

    def _events(self) -> Iterable:
        metrics = self.metrics
        yield CounterMetricFamily("qroute_events_published", "Events published", value=metrics.events)
        yield CounterMetricFamily("qroute_dispatch_matches", "Offers made by dispatch passes (session.offered)",
                                  value=metrics.offers)
        yield GaugeMetricFamily("qroute_event_subscribers", "EventService.Subscribe streams open",
                                value=metrics.subscribers)
        ring = GaugeMetricFamily("qroute_event_ring_events", "Events held in memory for subscribers, per account "
                                 "(a subscriber further behind than the ring's size is cut off)",
                                 labels=("account",))
        for account_id, stream in list(self.node.events.streams.items()):
            ring.add_metric([account_id], len(stream))
        yield ring
        lag = GaugeMetricFamily("qroute_event_subscriber_lag_events",
                                "Events not yet sent to the account's furthest-behind subscriber",
                                labels=("account",))
        for account_id, behind in self.node.events.lag().items():
            lag.add_metric([account_id], behind)
        yield lag


class MetricsServer:
    """``GET /metrics`` on the event loop (HTTP/1.0, one response per connection)."""

    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics
        self.server: asyncio.base_events.Server | None = None
        self.port = 0

    async def start(self, listen: str) -> int:
        host, _, port = listen.rpartition(":")
        host = host.strip("[]") or "0.0.0.0"
        try:
            self.server = await asyncio.start_server(self._serve, host, int(port))
        except (OSError, ValueError) as exc:
            raise OSError(f"cannot serve metrics on {listen}: {exc}") from None
        self.port = self.server.sockets[0].getsockname()[1]
        return self.port

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()
            self.server = None

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            request = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
            method, path = (request.split(b"\r\n", 1)[0].split(b" ") + [b"", b""])[:2]
            if method not in (b"GET", b"HEAD"):
                status, body, kind = b"405 Method Not Allowed", b"GET only\n", b"text/plain"
            elif path.split(b"?")[0] in (b"/metrics", b"/"):
                status, body, kind = b"200 OK", self.metrics.text(), CONTENT_TYPE_LATEST.encode()
            else:
                status, body, kind = b"404 Not Found", b"see /metrics\n", b"text/plain"
            writer.write(b"HTTP/1.0 " + status + b"\r\nContent-Type: " + kind + b"\r\nContent-Length: "
                         + str(len(body)).encode() + b"\r\nConnection: close\r\n\r\n"
                         + (body if method != b"HEAD" else b""))
            await writer.drain()
        except (asyncio.TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
            pass
        except Exception:  # a bug in a collector: say so, keep serving
            log.exception("metrics scrape failed")
        finally:
            writer.close()
