"""``qroute top``: a live wallboard of an account's queues and recipients.

``Board`` is the model, pure and synchronous: it is fed queue statuses
(``WatchQueueStatus``) and events (``Subscribe``), and knows nothing of
gRPC or the terminal, so it is tested without a server. ``render`` draws a
board as rich tables. ``run`` connects, loads the current state, follows both
streams, and redraws at most ``--refresh`` times a second, however many
events arrive (events only mark the board dirty). It says on screen when the
server is unreachable (and keeps retrying, resuming the event stream where
it stopped) and exits when the key is refused.

Keys (when stdin is a terminal): ``s`` cycles the queue sort, ``f`` cycles
the queue filter (all, then each queue), ``q`` quits.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
from collections import deque
from dataclasses import dataclass, field

from rich.console import Console, Group
from rich.table import Table
from rich.text import Text

SL_WINDOW_MS = 15 * 60 * 1000
STATUS_INTERVAL_MS = 250  # waiting, longest wait, EWT: from WatchQueueStatus, at most this often per queue
SORTS = ("queue", "waiting", "longest wait")
STATE_NAMES = {1: "logged_out", 2: "ready", 3: "away", 4: "ringing", 5: "busy", 6: "wrapup"}
STATE_STYLES = {"ready": "green", "away": "yellow", "ringing": "bold magenta", "busy": "red",
                "wrapup": "cyan", "logged_out": "dim"}


@dataclass
class QueueView:
    id: str
    waiting: int = 0  # in line or under offer
    longest_wait_s: int = 0
    ewt_s: int = -1  # -1: nobody serves the queue
    abandoned: int = 0  # today, as the server counts
    answers: deque = field(default_factory=deque)  # (connected at ms, wait ms), the last 15 min
    members: set = field(default_factory=set)


@dataclass
class RecipientView:
    id: str
    state: str = "logged_out"
    since_ms: int = 0


class Board:
    """What the wallboard shows, from statuses and events."""

    def __init__(self, sl_threshold_s: float = 20.0) -> None:
        self.sl_threshold_ms = sl_threshold_s * 1000
        self.queues: dict[str, QueueView] = {}
        self.recipients: dict[str, RecipientView] = {}
        self.sort = SORTS[0]
        self.queue_filter: str | None = None
        self.problem = ""  # shown in red: unreachable server, refused key
        self.last_sequence = 0
        self.events_seen = 0
        self.dirty = True

    # ------------------------------------------------------------ feeding

    def queue(self, queue_id: str) -> QueueView:
        view = self.queues.get(queue_id)
        if view is None:
            view = self.queues[queue_id] = QueueView(queue_id)
        return view

    def recipient(self, recipient_id: str) -> RecipientView:
        view = self.recipients.get(recipient_id)
        if view is None:
            view = self.recipients[recipient_id] = RecipientView(recipient_id)
        return view

    def set_status(self, queue_id: str, waiting: int, longest_wait_s: int, ewt_s: int, abandoned: int) -> None:
        view = self.queue(queue_id)
        view.waiting, view.longest_wait_s, view.ewt_s, view.abandoned = waiting, longest_wait_s, ewt_s, abandoned
        self.dirty = True

    def apply_status(self, status) -> None:
        """A ``QueueStatus`` message."""
        stats = status.stats
        self.set_status(status.queue_id, stats.active_session_count, stats.longest_wait, stats.estimated_wait,
                        stats.abandoned_sessions)

    def set_recipient(self, recipient_id: str, state: str, since_ms: int) -> None:
        view = self.recipient(recipient_id)
        if view.state != state:
            view.state, view.since_ms = state, since_ms
        self.dirty = True

    def apply(self, type_: str, time_ms: int, entity_id: str, queue_id: str = "", recipient_id: str = "",
              state: int = 0, wait_ms: int = 0, waiting_count: int | None = None) -> None:
        """One event, by its type and the few fields the board uses."""
        self.events_seen += 1
        self.dirty = True
        if type_ == "session.connected":
            self.queue(queue_id).answers.append((time_ms, wait_ms))
        elif type_ == "session.abandoned" and queue_id:
            self.queue(queue_id).abandoned += 1
        elif type_ in ("recipient.logged_in", "recipient.state_changed") and state:
            self.set_recipient(entity_id, STATE_NAMES.get(state, "?"), time_ms)
        elif type_ == "recipient.logged_out":
            self.set_recipient(entity_id, "logged_out", time_ms)
        elif type_ == "recipient.created":
            self.recipient(entity_id)
        elif type_ == "recipient.deleted":
            self.recipients.pop(entity_id, None)
            for view in self.queues.values():
                view.members.discard(entity_id)
        elif type_ == "queue.created":
            self.queue(entity_id)
        elif type_ == "queue.deleted":
            self.queues.pop(entity_id, None)
            if self.queue_filter == entity_id:
                self.queue_filter = None
        elif type_ == "queue.member_added":
            self.queue(entity_id).members.add(recipient_id)
        elif type_ == "queue.member_removed":
            self.queue(entity_id).members.discard(recipient_id)

    def apply_event(self, event) -> None:
        """An ``Event`` message."""
        time_ms = event.time.seconds * 1000 + event.time.nanos // 1_000_000
        payload = event.WhichOneof("payload")
        state = wait_ms = 0
        waiting_count = None
        if payload == "session":
            wait_ms = event.session.wait_ms
        elif payload == "recipient":
            state = event.recipient.state
        elif payload == "queue":
            waiting_count = event.queue.waiting_count
        self.apply(event.type, time_ms, event.entity_id, event.queue_id, event.recipient_id, state, wait_ms,
                   waiting_count)
        self.last_sequence = max(self.last_sequence, event.sequence)

    # ------------------------------------------------------------ figures

    def counts(self, queue_id: str) -> dict[str, int]:
        """Members by wallboard column: available, busy (ringing or talking), wrapup, away."""
        counts = {"available": 0, "busy": 0, "wrapup": 0, "away": 0}
        for recipient_id in self.queues[queue_id].members:
            state = self.recipients.get(recipient_id, RecipientView(recipient_id)).state
            column = {"ready": "available", "ringing": "busy", "busy": "busy", "wrapup": "wrapup",
                      "away": "away"}.get(state)
            if column:
                counts[column] += 1
        return counts

    def service_level(self, queue_id: str, now_ms: int) -> float | None:
        """Share of the calls answered in the last 15 minutes that waited at
        most the threshold; None when none was answered."""
        answers = self.queues[queue_id].answers
        while answers and answers[0][0] < now_ms - SL_WINDOW_MS:
            answers.popleft()
        if not answers:
            return None
        return sum(1 for _, wait in answers if wait <= self.sl_threshold_ms) / len(answers)

    def shown_queues(self) -> list[QueueView]:
        views = [v for v in self.queues.values() if self.queue_filter in (None, v.id)]
        if self.sort == "waiting":
            return sorted(views, key=lambda v: (-v.waiting, v.id))
        if self.sort == "longest wait":
            return sorted(views, key=lambda v: (-v.longest_wait_s, v.id))
        return sorted(views, key=lambda v: v.id)

    def shown_recipients(self) -> list[RecipientView]:
        if self.queue_filter is None:
            ids = self.recipients
        else:
            ids = self.queues[self.queue_filter].members if self.queue_filter in self.queues else ()
        return sorted((self.recipients[r] for r in ids if r in self.recipients), key=lambda v: v.id)

    # --------------------------------------------------------------- keys

    def key(self, char: str) -> bool:
        """Handle a key; False means quit."""
        if char == "q":
            return False
        if char == "s":
            self.sort = SORTS[(SORTS.index(self.sort) + 1) % len(SORTS)]
        elif char == "f":
            order = [None, *sorted(self.queues)]
            current = order.index(self.queue_filter) if self.queue_filter in order else 0
            self.queue_filter = order[(current + 1) % len(order)]
        self.dirty = True
        return True


def _duration(seconds: float) -> str:
    seconds = max(0, int(seconds))
    if seconds >= 3600:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    return f"{seconds // 60}:{seconds % 60:02d}"


def render(board: Board, now_ms: int, title: str = "qroute top", max_recipients: int = 200) -> Group:
    """The board as rich renderables: a header, the queues, the recipients."""
    header = Text(f"{title}  sort: {board.sort}  filter: {board.queue_filter or 'all queues'}  "
                  f"SL: answered within {board.sl_threshold_ms / 1000:g} s, last 15 min  "
                  f"[s] sort [f] filter [q] quit", style="bold")
    parts: list = [header]
    if board.problem:
        parts.append(Text(board.problem, style="bold white on red"))
    queues = Table(expand=True, title="Queues", title_justify="left")
    for column in ("Queue", "Waiting", "Longest", "EWT", "Avail", "Busy", "Wrap", "Away", "SL 15m", "Abandons"):
        queues.add_column(column, justify="left" if column == "Queue" else "right")
    for view in board.shown_queues():
        counts = board.counts(view.id)
        level = board.service_level(view.id, now_ms)
        sl = Text("-" if level is None else f"{level:.0%}",
                  style="" if level is None else ("green" if level >= 0.8 else "red"))
        queues.add_row(view.id, str(view.waiting), _duration(view.longest_wait_s),
                       "-" if view.ewt_s < 0 else _duration(view.ewt_s), str(counts["available"]),
                       str(counts["busy"]), str(counts["wrapup"]), str(counts["away"]), sl, str(view.abandoned))
    parts.append(queues)
    recipients = Table(expand=True, title="Recipients", title_justify="left")
    recipients.add_column("Recipient")
    recipients.add_column("State")
    recipients.add_column("In state", justify="right")
    shown = board.shown_recipients()
    for view in shown[:max_recipients]:
        recipients.add_row(view.id, Text(view.state, style=STATE_STYLES.get(view.state, "")),
                           _duration((now_ms - view.since_ms) / 1000) if view.since_ms else "-")
    if len(shown) > max_recipients:
        recipients.caption = f"{len(shown) - max_recipients} more not shown (f: filter by queue)"
    parts.append(recipients)
    return Group(*parts)


# ------------------------------------------------------------------- live

def _ms(stamp) -> int:
    return stamp.seconds * 1000 + stamp.nanos // 1_000_000


async def load(client, board: Board) -> None:
    """The current state: queues, members, recipients' states, statuses."""
    for queue in await client.list_queues():
        board.queue(queue.id)
        board.queue(queue.id).members = {m.recipient_id for m in await client.list_members(queue.id)}
    for recipient in await client.list_recipients():
        status = await client.recipient_status(recipient.id)
        board.set_recipient(recipient.id, STATE_NAMES.get(status.state, "?"), _ms(status.state_since))
    for status in (await client.queue_statuses()).values():
        board.apply_status(status)


async def follow_events(client, board: Board) -> None:
    from qroute.v1 import event_pb2, event_pb2_grpc

    stub = event_pb2_grpc.EventServiceStub(client.channel)
    call = stub.Subscribe(event_pb2.SubscribeRequest(
        from_sequence=board.last_sequence + 1 if board.last_sequence else 0), metadata=client.metadata)
    try:
        async for batch in call:
            for event in batch.events:
                board.apply_event(event)
            board.last_sequence = max(board.last_sequence, batch.through_sequence)
    finally:
        call.cancel()


async def follow_statuses(client, board: Board) -> None:
    async for status in client.watch_queue_status(interval_ms=STATUS_INTERVAL_MS):
        board.apply_status(status)


class _Keys:
    """Non-blocking single keys from a terminal's stdin (cbreak mode), restored on exit."""

    def __init__(self, on_key) -> None:
        self.on_key = on_key
        self.fd = sys.stdin.fileno() if sys.stdin.isatty() else None
        self.saved = None

    def __enter__(self) -> _Keys:
        if self.fd is not None:
            import termios
            import tty

            self.saved = termios.tcgetattr(self.fd)
            tty.setcbreak(self.fd)
            asyncio.get_running_loop().add_reader(self.fd, self._read)
        return self

    def _read(self) -> None:
        for char in os.read(self.fd, 32).decode(errors="ignore"):
            self.on_key(char)

    def __exit__(self, *exc_info) -> None:
        if self.fd is not None:
            import termios

            asyncio.get_running_loop().remove_reader(self.fd)
            termios.tcsetattr(self.fd, termios.TCSADRAIN, self.saved)


async def watch(args, console: Console | None = None) -> int:
    import grpc
    from rich.live import Live

    from qroute.admin import _api_key
    from qroute.client import Client, ClientError

    target = args.target or os.environ.get("QROUTE_TARGET", "127.0.0.1:50051")
    key = _api_key(args, admin=False)
    board = Board(args.sl_threshold)
    if args.queues:
        board.queue_filter = args.queues[0]
    quit_ = asyncio.Event()

    def on_key(char: str) -> None:
        if not board.key(char):
            quit_.set()

    async def feed() -> int:
        backoff = 0.5
        while True:
            try:
                async with Client(target, key, tls_ca=args.tls_ca) as client:
                    if not board.queues and not board.recipients:
                        await load(client, board)
                    board.problem = ""
                    backoff = 0.5
                    tasks = [asyncio.ensure_future(follow_events(client, board)),
                             asyncio.ensure_future(follow_statuses(client, board))]
                    try:
                        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
                        for task in done:
                            task.result()
                    finally:
                        for task in tasks:
                            task.cancel()
                    raise ClientError(grpc.StatusCode.UNAVAILABLE, "the stream ended")
            except (ClientError, grpc.aio.AioRpcError) as exc:
                error = exc if isinstance(exc, ClientError) else ClientError.from_rpc_error(exc)
                if error.code in (grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED):
                    board.problem = f"API key refused by {target}: {error.message}"
                    board.dirty = True
                    return 1
                if error.code == grpc.StatusCode.OUT_OF_RANGE:  # resume point trimmed: start live
                    board.last_sequence = 0
                board.problem = f"server {target} unreachable ({error.code.name}): retrying"
                board.dirty = True
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)

    console = console or Console()
    interval = 1.0 / args.refresh
    status = 0
    with Live(render(board, int(time.time() * 1000)), console=console, auto_refresh=False,
              screen=console.is_terminal) as live, _Keys(on_key):
        feeder = asyncio.ensure_future(feed())
        quitter = asyncio.ensure_future(quit_.wait())
        last_draw = 0.0
        try:
            while not feeder.done() and not quit_.is_set():
                await asyncio.wait([feeder, quitter], timeout=interval)
                now = time.monotonic()
                # redraw at most `refresh` times a second, and once a second anyway (waits grow)
                if board.dirty or now - last_draw >= 1.0:
                    board.dirty = False
                    last_draw = now
                    live.update(render(board, int(time.time() * 1000), title=f"qroute top {target}"),
                                refresh=True)
            if feeder.done():
                status = feeder.result()
                live.update(render(board, int(time.time() * 1000), title=f"qroute top {target}"), refresh=True)
        finally:
            feeder.cancel()
            quitter.cancel()
    if board.problem and status:
        print(f"qroute top: {board.problem}", file=sys.stderr)
    return status


def run(args) -> int:
    from qroute.admin import UsageError

    try:
        return asyncio.run(watch(args))
    except UsageError as exc:
        print(f"qroute top: {exc}", file=sys.stderr)
        return 2
