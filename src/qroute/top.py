"""``qroute top``: a live wallboard of an account's queues and recipients.

``Board`` is the model, pure and synchronous: it is fed a snapshot, queue
statuses (``WatchQueueStatus``) and events (``Subscribe``), and knows
nothing of gRPC or the terminal, so it is tested without a server. Taking
an event is O(1) (amortized: the service level keeps one bucket per second
of the last 15 minutes); everything whose cost grows with the board (member
counts, sorting) is done when drawing. ``render`` draws a board as rich
tables. ``paint`` redraws at most ``--refresh`` times a second however many
events arrive (events only mark the board dirty), so the redraw rate and
its cost do not depend on the event rate.

``watch`` subscribes to the events first, then loads the snapshot in a few
calls whatever the number of recipients (``BatchGetQueueStatus`` with the
members' states, chunked by member count; ``ListRecipients`` for those in
no queue), then follows both streams: every change after the subscription
started is applied on top of the snapshot, so none falls between the two.
It says on screen when the server is unreachable (and keeps retrying,
resuming the event stream where it stopped) and exits with status 1 when
the key is refused. With ``--frames N`` it draws N frames to stdout and
exits, and any failure to reach the server or a refused key is a one-line
message on stderr and status 1.

Keys (when stdin is a terminal): ``s`` cycles the queue sort, ``f`` cycles
the queue filter (all, then each queue), ``q`` quits.
"""

from __future__ import annotations

import asyncio
import math
import os
import sys
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from rich.console import Console, Group
from rich.text import Span, Text

SL_WINDOW_MS = 15 * 60 * 1000
STATUS_INTERVAL_MS = 250  # waiting, longest wait, EWT: from WatchQueueStatus, at most this often per queue
SORTS = ("queue", "waiting", "longest wait")
STATE_NAMES = {1: "logged_out", 2: "ready", 3: "away", 4: "ringing", 5: "busy", 6: "wrapup"}
STATE_STYLES = {"ready": "green", "away": "yellow", "ringing": "bold magenta", "busy": "red",
                "wrapup": "cyan", "logged_out": "dim"}
COLUMNS = {"ready": "available", "ringing": "busy", "busy": "busy", "wrapup": "wrapup", "away": "away"}
AVAILABILITY_AWAY = 2  # qroute.v1.Availability
# What the board uses; the server filters the rest out of the stream (a call makes ~15 events, 2 of these).
BOARD_EVENTS = ("session.connected", "session.abandoned", "recipient.created", "recipient.deleted",
                "recipient.logged_in", "recipient.logged_out", "recipient.state_changed", "queue.created",
                "queue.deleted", "queue.member_added", "queue.member_removed")
MEMBERS_PER_CALL = 20_000  # members' states per BatchGetQueueStatus: ~1 MB, well under gRPC's 4 MB
LOAD_ATTEMPTS = 3  # a queue deleted while loading fails a batch call: load again
STATUS_CALLS_AT_ONCE = 16  # GetRecipientStatus in flight, only for recipients in no queue
REFUSED = ("UNAUTHENTICATED", "PERMISSION_DENIED")


@dataclass
class QueueView:
    id: str
    waiting: int = 0  # in line or under offer
    longest_wait_s: int = 0
    ewt_s: int = -1  # -1: nobody serves the queue
    abandoned: int = 0  # today, as the server counts
    answers: deque = field(default_factory=deque)  # [second, answered, within threshold], the last 15 min
    answered: int = 0  # summed over answers
    answered_in_time: int = 0
    members: set = field(default_factory=set)

    def answer(self, time_ms: int, in_time: bool) -> None:
        """One call answered; O(1) amortized."""
        second = time_ms // 1000
        answers = self.answers
        if answers and answers[-1][0] >= second:  # in time order: a late one counts in the newest second
            bucket = answers[-1]
        else:
            bucket = [second, 0, 0]
            answers.append(bucket)
        bucket[1] += 1
        bucket[2] += in_time
        self.answered += 1
        self.answered_in_time += in_time
        self.forget(time_ms)

    def forget(self, now_ms: int) -> None:
        """Drop the answers older than the service level's window."""
        cutoff = (now_ms - SL_WINDOW_MS) // 1000
        answers = self.answers
        while answers and answers[0][0] < cutoff:
            _, answered, in_time = answers.popleft()
            self.answered -= answered
            self.answered_in_time -= in_time


@dataclass
class RecipientView:
    id: str
    state: str = "logged_out"
    since_ms: int = 0
    queues: set = field(default_factory=set)  # of which it is a member
    away_queues: set = field(default_factory=set)  # away for these queues alone


class Board:
    """What the wallboard shows, from a snapshot, statuses and events."""

    def __init__(self, sl_threshold_s: float = 20.0) -> None:
        self.sl_threshold_ms = sl_threshold_s * 1000
        self.queues: dict[str, QueueView] = {}
        self.recipients: dict[str, RecipientView] = {}
        self.sort = SORTS[0]
        self.queue_filter: str | None = None
        self.problem = ""  # shown in red: unreachable server, refused key
        self.loaded = False  # the snapshot is in
        self.started_ms: int | None = None  # when answers began to be counted (the service level's start)
        self.deleted_queues: set[str] = set()  # since the snapshot
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
        """A ``QueueStatus`` message (its figures; members come from ``load``)."""
        if status.queue_id in self.deleted_queues:  # sent before the deletion, come after it on the other stream
            return
        stats = status.stats
        self.set_status(status.queue_id, stats.active_session_count, stats.longest_wait, stats.estimated_wait,
                        stats.abandoned_sessions)

    def set_recipient(self, recipient_id: str, state: str, since_ms: int) -> None:
        view = self.recipient(recipient_id)
        if view.state != state:
            view.state, view.since_ms = state, since_ms
        self.dirty = True

    def set_member(self, queue_id: str, recipient_id: str, member: bool) -> None:
        recipient = self.recipient(recipient_id)
        if member:
            self.queue(queue_id).members.add(recipient_id)
            recipient.queues.add(queue_id)
        else:
            if queue_id in self.queues:
                self.queues[queue_id].members.discard(recipient_id)
            recipient.queues.discard(queue_id)
        recipient.away_queues.discard(queue_id)  # a new membership starts ready, as the server's does

    def load(self, statuses: Iterable, recipient_statuses: Iterable = ()) -> None:
        """The snapshot: ``QueueStatus`` messages with their members' states,
        and ``RecipientStatus`` messages of recipients in no queue. Replaces
        what the board held, but for the service level of queues it keeps."""
        old, self.queues, self.recipients = self.queues, {}, {}
        self.deleted_queues.clear()
        for status in statuses:
            self.apply_status(status)
            view = self.queues[status.queue_id]
            if status.queue_id in old:
                kept = old[status.queue_id]
                view.answers, view.answered, view.answered_in_time = kept.answers, kept.answered, kept.answered_in_time
            for member in status.members:
                self.set_member(status.queue_id, member.recipient_id, True)
                self.set_recipient(member.recipient_id, STATE_NAMES.get(member.state, "?"), _ms(member.state_since))
                if member.availability == AVAILABILITY_AWAY:
                    self.recipients[member.recipient_id].away_queues.add(status.queue_id)
        for status in recipient_statuses:
            self.set_recipient(status.recipient_id, STATE_NAMES.get(status.state, "?"), _ms(status.state_since))
        if self.queue_filter not in self.queues:
            self.queue_filter = None
        self.loaded = self.dirty = True

    def apply(self, type_: str, time_ms: int, entity_id: str, queue_id: str = "", recipient_id: str = "",
              state: int = 0, wait_ms: int = 0, availability: int = 0) -> None:
        """One event, by its type and the few fields the board uses. O(1)
        but for deletions (O(the members or queues concerned))."""
        self.events_seen += 1
        self.dirty = True
        if type_ == "session.connected":
            if queue_id:
                self.queue(queue_id).answer(time_ms, wait_ms <= self.sl_threshold_ms)
        elif type_ == "session.abandoned":
            if queue_id:
                self.queue(queue_id).abandoned += 1  # until the next status says it
        elif type_ == "recipient.state_changed" and queue_id:  # availability for one queue
            recipient = self.recipient(entity_id)
            (recipient.away_queues.add if availability == AVAILABILITY_AWAY else recipient.away_queues.discard)(
                queue_id)
            if state:
                self.set_recipient(entity_id, STATE_NAMES.get(state, "?"), time_ms)
        elif type_ in ("recipient.logged_in", "recipient.state_changed"):
            if state:
                self.set_recipient(entity_id, STATE_NAMES.get(state, "?"), time_ms)
        elif type_ == "recipient.logged_out":
            self.set_recipient(entity_id, "logged_out", time_ms)
        elif type_ == "recipient.created":
            self.recipient(entity_id)
        elif type_ == "recipient.deleted":
            gone = self.recipients.pop(entity_id, None)
            for queue_id_ in gone.queues if gone else ():
                if queue_id_ in self.queues:
                    self.queues[queue_id_].members.discard(entity_id)
        elif type_ == "queue.created":
            self.deleted_queues.discard(entity_id)
            self.queue(entity_id)
        elif type_ == "queue.deleted":
            self.deleted_queues.add(entity_id)
            gone = self.queues.pop(entity_id, None)
            for recipient_id_ in gone.members if gone else ():
                if recipient_id_ in self.recipients:
                    self.recipients[recipient_id_].queues.discard(entity_id)
                    self.recipients[recipient_id_].away_queues.discard(entity_id)
            if self.queue_filter == entity_id:
                self.queue_filter = None
        elif type_ == "queue.member_added":
            self.set_member(entity_id, recipient_id, True)
        elif type_ == "queue.member_removed":
            self.set_member(entity_id, recipient_id, False)

    def apply_event(self, event) -> None:
        """An ``Event`` message: only the fields its type needs are read."""
        type_ = event.type
        if event.sequence > self.last_sequence:
            self.last_sequence = event.sequence
        if type_ not in BOARD_EVENTS:
            self.events_seen += 1
            return
        stamp = event.time
        time_ms = stamp.seconds * 1000 + stamp.nanos // 1_000_000
        if type_[0] == "s":  # session.*
            self.apply(type_, time_ms, event.entity_id, event.queue_id, wait_ms=event.session.wait_ms)
        elif type_[0] == "r":  # recipient.*
            payload = event.recipient
            self.apply(type_, time_ms, event.entity_id, event.queue_id, state=payload.state,
                       availability=payload.availability)
        else:
            self.apply(type_, time_ms, event.entity_id, event.queue_id, event.recipient_id)

    def absorb(self, batch) -> None:
        """An ``EventBatch``: what the ``Subscribe`` consumer calls per batch."""
        apply_event = self.apply_event
        for event in batch.events:
            apply_event(event)
        if batch.through_sequence > self.last_sequence:
            self.last_sequence = batch.through_sequence

    # ------------------------------------------------------------ figures

    def state_in(self, view: RecipientView, queue_id: str | None) -> str:
        """A recipient's state as a queue sees it: ready but away for that queue is away."""
        if view.state == "ready" and queue_id is not None and queue_id in view.away_queues:
            return "away"
        return view.state

    def counts(self, queue_id: str) -> dict[str, int]:
        """Members by wallboard column: available, busy (ringing or talking), wrapup, away."""
        counts = {"available": 0, "busy": 0, "wrapup": 0, "away": 0, None: 0}
        recipients = self.recipients
        for recipient_id in self.queues[queue_id].members:  # per frame, for the queues shown: kept lean
            view = recipients.get(recipient_id)
            if view is None:
                continue
            state = view.state
            if state == "ready" and queue_id in view.away_queues:
                state = "away"
            counts[COLUMNS.get(state)] += 1
        del counts[None]
        return counts

    def service_level(self, queue_id: str, now_ms: int) -> float | None:
        """Share of the calls answered in the last 15 minutes that waited at
        most the threshold; None when none was answered."""
        view = self.queues[queue_id]
        view.forget(now_ms)
        return view.answered_in_time / view.answered if view.answered else None

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


QUEUE_HEADS = ("Queue", "Waiting", "Longest", "EWT", "Avail", "Busy", "Wrap", "Away", "SL 15m", "Abandons")
RECIPIENT_HEADS = ("Recipient", "State", "In state")
ID_WIDTH = 40  # longer ids are cut, so one cannot push the figures off the screen


def _grid(title: str, heads: tuple[str, ...], rows: list[list[tuple[str, str]]], left: int = 1,
          caption: str = "") -> Text:
    """A table of (text, style) cells as one Text, boxed like rich's: a rich
    Table pads, measures and wraps every cell, which costs ~20x more per
    frame; these cells never wrap. The first ``left`` columns are
    left-aligned, the others right-aligned."""
    widths = [len(head) for head in heads]
    for row in rows:
        for i, (cell, _) in enumerate(row):
            if len(cell) > widths[i]:
                widths[i] = len(cell)
    parts = [f"{title}\n"]
    spans: list[Span] = [Span(0, len(title), "italic")]
    at = len(parts[0])

    def edge(left_end: str, middle: str, right_end: str) -> None:
        nonlocal at
        text = left_end + middle.join("─" * (width + 2) for width in widths) + right_end + "\n"
        parts.append(text)
        at += len(text)

    def line(cells: Iterable[tuple[str, str]]) -> None:
        nonlocal at
        text = "│"
        for i, (cell, style) in enumerate(cells):
            if style:
                spans.append(Span(at + len(text) + 1, at + len(text) + 1 + widths[i], style))
            text += " " + (cell.ljust(widths[i]) if i < left else cell.rjust(widths[i])) + " │"
        parts.append(text + "\n")
        at += len(text) + 1

    edge("┌", "┬", "┐")
    line((head, "bold") for head in heads)
    edge("├", "┼", "┤")
    for row in rows:
        line(row)
    edge("└", "┴", "┘")
    if caption:
        spans.append(Span(at, at + len(caption), "dim"))
        parts.append(caption)
    return Text("".join(parts).rstrip("\n"), spans=spans, no_wrap=True, overflow="crop")


def _window(board: Board, now_ms: int) -> str:
    """The service level's window: 15 minutes, or since top started (it sees answers as they come)."""
    if board.started_ms is None or now_ms - board.started_ms >= SL_WINDOW_MS:
        return "last 15 min"
    return f"last {_duration((now_ms - board.started_ms) / 1000)} (since top started)"


def _id(text: str) -> str:
    return text if len(text) <= ID_WIDTH else text[:ID_WIDTH - 1] + "…"


def render(board: Board, now_ms: int, title: str = "qroute top", max_recipients: int = 200,
           max_queues: int | None = None) -> Group:
    """The board as rich renderables: a header, the queues (at most
    ``max_queues`` rows, None: all), the recipients (at most
    ``max_recipients`` rows)."""
    header = Text(f"{title}  sort: {board.sort}  filter: {board.queue_filter or 'all queues'}  "
                  f"SL: answered within {board.sl_threshold_ms / 1000:g} s, {_window(board, now_ms)}  "
                  f"keys s/f/q: sort/filter/quit", style="bold", no_wrap=True, overflow="ellipsis")
    parts: list = [header]
    if board.problem:
        parts.append(Text(board.problem, style="bold white on red"))
    elif not board.loaded and not board.queues:
        parts.append(Text("loading...", style="dim"))
    rows = []
    queues = board.shown_queues()
    for view in queues[:max_queues]:
        counts = board.counts(view.id)
        level = board.service_level(view.id, now_ms)
        sl = ("-", "") if level is None else (f"{level:.0%}", "green" if level >= 0.8 else "red")
        rows.append([(_id(view.id), ""), (str(view.waiting), ""), (_duration(view.longest_wait_s), ""),
                     ("-" if view.ewt_s < 0 else _duration(view.ewt_s), ""), (str(counts["available"]), ""),
                     (str(counts["busy"]), ""), (str(counts["wrapup"]), ""), (str(counts["away"]), ""), sl,
                     (str(view.abandoned), "")])
    hidden = len(queues) - len(rows)
    parts.append(_grid("Queues", QUEUE_HEADS, rows,
                       caption=f"{hidden} more not shown (s: sort, f: filter)" if hidden > 0 else ""))
    shown = board.shown_recipients()
    rows = []
    for view in shown[:max_recipients]:
        state = board.state_in(view, board.queue_filter)
        rows.append([(_id(view.id), ""), (state, STATE_STYLES.get(state, "")),
                     (_duration((now_ms - view.since_ms) / 1000) if view.since_ms else "-", "")])
    hidden = len(shown) - max_recipients
    parts.append(_grid("\nRecipients", RECIPIENT_HEADS, rows, left=2,
                       caption=f"{hidden} more not shown (f: filter by queue)" if hidden > 0 else ""))
    return Group(*parts)


def fitting_rows(board: Board, console: Console) -> dict[str, int | None]:
    """``render``'s row limits: on a terminal, the rows that fit on the
    screen (drawing rows that are cut off anyway would only cost time), the
    queues first but leaving the recipients a few; else every queue and at
    most 200 recipients."""
    if not console.is_terminal:
        return {"max_queues": None, "max_recipients": 200}
    room = max(6, console.height - 16)  # header, problem, two tables' titles, heads, borders, captions
    queues = min(len(board.queues) if board.queue_filter is None else 1, room - 3)
    return {"max_queues": queues, "max_recipients": room - queues}


# ------------------------------------------------------------------- live

def _ms(stamp) -> int:
    return stamp.seconds * 1000 + stamp.nanos // 1_000_000


class Stop(Exception):
    """Why the wallboard cannot go on: ``message`` for the operator, and
    whether a later attempt could succeed (``retry``)."""

    def __init__(self, message: str, retry: bool) -> None:
        super().__init__(message)
        self.message = message
        self.retry = retry


def _stop(error, target: str) -> Stop:
    """A failed call, as the operator needs to read it."""
    code, detail = error.code.name, f"{error.code.name}: {error.message}" if error.message else error.code.name
    if code in REFUSED:
        return Stop(f"API key refused by {target} ({detail})", retry=False)
    if code in ("UNAVAILABLE", "DEADLINE_EXCEEDED"):
        return Stop(f"server {target} unreachable ({detail})", retry=True)
    return Stop(f"server {target} failed a call ({detail})", retry=True)


async def _unary(client, method, request):
    import grpc

    from qroute.client import ClientError

    try:
        return await method(request, metadata=client.metadata, timeout=client.timeout)
    except grpc.aio.AioRpcError as exc:
        raise ClientError.from_rpc_error(exc) from None


def _chunks(statuses: dict, budget: int) -> list[list[str]]:
    """Queue ids in groups of at most ``budget`` members (a bigger queue alone)."""
    chunks: list[list[str]] = [[]]
    members = 0
    for queue_id, status in sorted(statuses.items()):
        count = status.stats.recipient_count
        if chunks[-1] and members + count > budget:
            chunks.append([])
            members = 0
        chunks[-1].append(queue_id)
        members += count
    return [chunk for chunk in chunks if chunk]


async def load(client, board: Board) -> None:
    """The snapshot, in a few calls whatever the number of recipients: the
    queues' statuses with their members' states (``BatchGetQueueStatus``,
    chunked by member count), then ``GetRecipientStatus`` only for the
    recipients that are in no queue (usually none)."""
    from qroute.client import ClientError
    from qroute.v1 import queue_pb2, recipient_pb2

    for attempt in range(LOAD_ATTEMPTS):
        try:
            counts = await _unary(client, client.queues.BatchGetQueueStatus, queue_pb2.BatchGetQueueStatusRequest())
            statuses = []
            for chunk in _chunks(dict(counts.statuses), MEMBERS_PER_CALL):
                response = await _unary(client, client.queues.BatchGetQueueStatus,
                                        queue_pb2.BatchGetQueueStatusRequest(queue_ids=chunk, include_members=True))
                statuses.extend(response.statuses.values())
            break
        except ClientError as exc:
            if exc.code.name != "NOT_FOUND" or attempt == LOAD_ATTEMPTS - 1:
                raise
    members = {member.recipient_id for status in statuses for member in status.members}
    alone = [r.id for r in await client.list_recipients() if r.id not in members]
    limit = asyncio.Semaphore(STATUS_CALLS_AT_ONCE)

    async def status_of(recipient_id: str):
        async with limit:
            try:
                return await _unary(client, client.recipients.GetRecipientStatus,
                                    recipient_pb2.GetRecipientStatusRequest(recipient_id=recipient_id))
            except ClientError as exc:
                if exc.code.name == "NOT_FOUND":  # deleted since the list
                    return None
                raise

    found = await asyncio.gather(*(status_of(r) for r in alone))
    board.load(statuses, [status for status in found if status is not None])


async def follow(client, board: Board) -> None:
    """Subscribe, load the snapshot if the board has none, then follow the
    events and the queue statuses until a stream fails (raises ClientError)."""
    import grpc

    from qroute.client import ClientError
    from qroute.v1 import event_pb2, event_pb2_grpc

    stub = event_pb2_grpc.EventServiceStub(client.channel)
    resume = board.last_sequence + 1 if board.loaded and board.last_sequence else 0
    call = stub.Subscribe(event_pb2.SubscribeRequest(from_sequence=resume, types=BOARD_EVENTS),
                          metadata=client.metadata)

    async def events() -> None:
        while (batch := await call.read()) is not grpc.aio.EOF:  # read(), as the first batch was
            board.absorb(batch)

    async def statuses() -> None:
        async for status in client.watch_queue_status(interval_ms=STATUS_INTERVAL_MS):
            board.apply_status(status)

    tasks: list[asyncio.Future] = []
    try:
        first = await call.read()  # comes at once: where the subscription starts
        if first is grpc.aio.EOF:
            raise ClientError(grpc.StatusCode.UNAVAILABLE, "the event stream ended")
        if not board.loaded:
            await load(client, board)  # after the subscription started: no change falls in between
        board.absorb(first)
        tasks = [asyncio.ensure_future(events()), asyncio.ensure_future(statuses())]
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        for task in done:
            task.result()
        raise ClientError(grpc.StatusCode.UNAVAILABLE, "the server ended a stream")
    except grpc.aio.AioRpcError as exc:
        raise ClientError.from_rpc_error(exc) from None
    finally:
        for task in tasks:
            task.cancel()
        call.cancel()


async def feed(connect: Callable, board: Board, target: str, retry: bool) -> str:
    """Keep the board fed from the server: on a failure say why on the
    board and, if ``retry`` and it may pass, connect again (backing off);
    resume the events where they stopped. Returns the message of the
    failure that ended it."""
    from qroute.client import ClientError

    backoff = 0.5
    while True:
        try:
            async with connect() as client:
                await follow(client, board)
        except ClientError as exc:
            name = exc.code.name
            if name == "RESOURCE_EXHAUSTED":  # fell behind the event stream: resume where it stopped
                continue
            if name == "OUT_OF_RANGE":  # the resume point is no longer retained: load afresh
                board.loaded, board.last_sequence = False, 0
            stop = _stop(exc, target)
            if not (retry and stop.retry):
                board.problem, board.dirty = stop.message, True
                return stop.message
            board.problem, board.dirty = f"{stop.message}: retrying", True
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, 5.0)
            continue
        backoff = 0.5


async def paint(board: Board, draw: Callable[[], None], refresh_hz: float, done: asyncio.Future) -> None:
    """Call ``draw`` when the board changed, at most ``refresh_hz`` times a
    second (and once a second anyway: waits grow), until ``done``."""
    loop = asyncio.get_running_loop()
    interval = 1.0 / refresh_hz
    last_draw = -math.inf
    while not done.done():
        began = loop.time()
        if board.dirty or began - last_draw >= 1.0:
            board.dirty = False
            last_draw = began
            draw()
        ended = loop.time()
        # the next look is an interval after this one began; a frame that took longer than that
        # is followed by as long a pause, so drawing never takes more than half of the loop
        await asyncio.wait([done], timeout=max(began + interval - ended, ended - began))


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


async def watch(args, console: Console | None = None, board: Board | None = None) -> int:
    """Run the wallboard (``args``: qroute top's options); returns the exit status."""
    from qroute.admin import DEFAULT_TARGET, TARGET_ENV, UsageError, _api_key
    from qroute.client import Client

    target = args.target or os.environ.get(TARGET_ENV) or DEFAULT_TARGET
    key = _api_key(args, admin=False)
    if args.tls_ca and not os.path.isfile(args.tls_ca):
        raise UsageError(f"--tls-ca {args.tls_ca}: no such file")
    frames = getattr(args, "frames", None)
    board = board or Board(args.sl_threshold)
    if args.queues:
        board.queue_filter = args.queues[0]
    console = console or Console()
    board.started_ms = int(time.time() * 1000)
    title = f"qroute top {target}"
    failed = asyncio.get_running_loop().create_future()  # set when the feed gives up
    quit_ = asyncio.get_running_loop().create_future()

    def connect() -> Client:
        return Client(target, key, tls_ca=args.tls_ca)

    def on_feed_done(task: asyncio.Task) -> None:
        if task.cancelled() or failed.done():
            return
        if task.exception() is not None:  # a bug: shown as one, not hidden by a board that never ends
            failed.set_exception(task.exception())
        else:
            failed.set_result(task.result())

    def now_ms() -> int:
        return int(time.time() * 1000)

    feeder = asyncio.ensure_future(feed(connect, board, target, retry=frames is None))
    feeder.add_done_callback(on_feed_done)
    done = asyncio.ensure_future(asyncio.wait([failed, quit_], return_when=asyncio.FIRST_COMPLETED))
    try:
        if frames is not None:
            drawn = 0

            def draw() -> None:
                nonlocal drawn
                if not board.loaded:  # the first frame shows the loaded state, not "loading"
                    board.dirty = True
                    return
                console.print(render(board, now_ms(), title=title, **fitting_rows(board, console)))
                drawn += 1
                if drawn >= frames and not quit_.done():
                    quit_.set_result(None)

            await paint(board, draw, args.refresh, done)
        else:
            from rich.live import Live

            def on_key(char: str) -> None:
                if not board.key(char) and not quit_.done():
                    quit_.set_result(None)

            with Live(render(board, now_ms(), title=title), console=console, auto_refresh=False,
                      screen=console.is_terminal) as live, _Keys(on_key):

                def draw() -> None:
                    live.update(render(board, now_ms(), title=title,
                                       **fitting_rows(board, console)), refresh=True)

                await paint(board, draw, args.refresh, done)
                if failed.done():
                    draw()
    finally:
        feeder.cancel()
        done.cancel()
    if failed.done():
        print(f"qroute top: {failed.result()}", file=sys.stderr)
        return 1
    return 0


def run(args) -> int:
    from qroute.admin import UsageError

    try:
        return asyncio.run(watch(args))
    except UsageError as exc:
        print(f"qroute top: {exc}", file=sys.stderr)
        return 2
