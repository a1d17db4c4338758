"""Agent desktops: what ``Connect`` (one desktop on a stream) and
``ConnectGateway`` (many on one stream, in batches) share."""

from __future__ import annotations

import asyncio
import collections
import logging
from collections.abc import Callable

import grpc

from qroute.api import convert
from qroute.api.errors import status_of
from qroute.domain.enums import OfferOutcome
from qroute.errors import FailedPrecondition, InvalidArgument, QrouteError
from qroute.events.journal import shielded
from qroute.v1 import recipient_pb2

log = logging.getLogger("qroute.api.agent")
OUTBOX_LIMIT = 1000  # events queued for one desktop before its stream counts as gone
GATEWAY_BATCH = 1000  # events in one AgentEventBatch at most
GATEWAY_AHEAD = 64  # command batches of a gateway applied but not yet answered (durable) at once

AgentEvent = recipient_pb2.AgentEvent


def status(floor, recipient_id: str):
    return convert.recipient_status_message(floor.recipient_status(recipient_id))


def error_event(exc: BaseException, correlation: str = "") -> AgentEvent:
    """A failed command's answer, coded like its unary twin's status: a bug is a bare INTERNAL."""
    if not isinstance(exc, QrouteError):
        log.exception("internal error in an agent command", exc_info=exc)
    code, message = status_of(exc)
    return AgentEvent(correlation=correlation, error=AgentEvent.Error(code=code.value[0], message=message))


def offer_event(floor, offer_id: str, session, ring_timeout_ms: int, time_ms: int) -> AgentEvent:
    return AgentEvent(time=convert.stamp(time_ms), offer=AgentEvent.Offer(
        offer_id=offer_id, session=convert.session_message(floor, session, time_ms),
        ring_timeout_ms=ring_timeout_ms, callback=session.callback))


def agent_event(floor, event, supervised: bool = False) -> AgentEvent | None:
    """The desktop's view of a floor event, or None if it shows none."""
    data = event.data
    if event.type == "recipient.offered":
        session = floor.sessions.get(data["session_id"])
        if session is None:
            return None
        return offer_event(floor, data["offer_id"], session, data["ring_timeout_ms"], event.time_ms)
    if event.type in ("recipient.offer_cancelled", "recipient.missed"):
        reason = (OfferOutcome.MISSED if event.type == "recipient.missed"
                  else OfferOutcome[data["reason"].upper()] if data["reason"].upper() in OfferOutcome.__members__
                  else OfferOutcome.WITHDRAWN)
        return AgentEvent(time=convert.stamp(event.time_ms), offer_cancelled=AgentEvent.OfferCancelled(
            offer_id=data["offer_id"], reason=int(reason)))
    if event.type == "recipient.state_changed" and event.entity_id in floor.recipients:
        if supervised:  # one of its agents
            return AgentEvent(time=convert.stamp(event.time_ms),
                              supervised_state_changed=status(floor, event.entity_id))
        return AgentEvent(time=convert.stamp(event.time_ms), state_changed=status(floor, event.entity_id))
    return None


class Outbox:
    """Events waiting to go out on one stream, taken in batches. A stream
    that falls ``limit`` events behind is gone: it ends RESOURCE_EXHAUSTED
    (what was queued before still goes out)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._items: collections.deque = collections.deque()
        self._ready = asyncio.Event()
        self.end: tuple | None = None  # once set: the stream ends, with () or (code, details) to abort with

    def put(self, message) -> None:
        if self.end is not None:
            return
        if len(self._items) >= self.limit:
            self.finish((grpc.StatusCode.RESOURCE_EXHAUSTED,
                         f"more than {self.limit} events waited to be read: the stream was too slow"))
            return
        self._items.append(message)
        self._ready.set()

    def finish(self, abort: tuple = ()) -> None:
        if self.end is None:
            self.end = abort
            self._ready.set()

    async def take(self, most: int) -> list:
        """Up to ``most`` queued messages, waiting for one; [] once the stream ends."""
        items = self._items
        while not items:
            if self.end is not None:
                return []
            self._ready.clear()
            await self._ready.wait()
        if len(items) <= most:
            taken = list(items)
            items.clear()
            return taken
        return [items.popleft() for _ in range(most)]


class Desktops:
    """The open desktops of the node, one per recipient: a newer one takes over."""

    def __init__(self) -> None:
        self._open: dict[tuple[str, str], Desktop] = {}

    def take_over(self, desktop: Desktop) -> None:
        key = (desktop.floor.account_id, desktop.recipient_id)
        older = self._open.get(key)
        self._open[key] = desktop
        if older is not None:
            older.replaced()

    def release(self, desktop: Desktop) -> None:
        key = (desktop.floor.account_id, desktop.recipient_id)
        if self._open.get(key) is desktop:
            del self._open[key]


class Desktop:
    """One agent desktop: attached to its recipient's events on the floor,
    applying its commands. ``send`` puts an event on its stream;
    ``replaced`` is called when a newer desktop of the recipient takes over."""

    def __init__(self, desktops: Desktops, floor, recipient_id: str, send: Callable[[AgentEvent], None],
                 replaced: Callable[[], None]) -> None:
        self.desktops, self.floor, self.recipient_id = desktops, floor, recipient_id
        self.send, self.replaced = send, replaced
        self.muted = False  # true while its own command runs: the answer carries the state
        self.closed = False
        self._detach: Callable[[], None] = lambda: None
        self._unwatch: Callable[[], None] = lambda: None

    def open(self, correlation: str) -> None:
        """Attach; the desktop learns the recipient's status and what rings now."""
        floor, recipient_id = self.floor, self.recipient_id
        floor.set_desktop_connected(recipient_id, True)  # reachable again, if a dropped desktop had forced it away
        self._detach = floor.attach_agent(recipient_id, self._forward)
        # its agents' state changes, if it supervises any (now or later)
        self._unwatch = floor.watch_supervised(recipient_id, lambda event: self._forward(event, supervised=True))
        self.desktops.take_over(self)
        self.send(AgentEvent(correlation=correlation, state_changed=status(floor, recipient_id)))
        ringing = floor.recipients[recipient_id].offer
        if ringing is not None:  # a desktop taking over learns what rings now
            self.send(offer_event(floor, ringing.id, ringing.session, ringing.ring_timeout_ms,
                                  floor.clock.now_ms()))

    def close(self) -> bool:
        """Detach (idempotent). If no other desktop of the recipient is open,
        what rings is missed and the recipient counts as not reachable;
        returns True when that changed something to make durable."""
        if self.closed:
            return False
        self.closed = True
        self._detach()
        self._unwatch()
        self.desktops.release(self)
        floor, recipient_id = self.floor, self.recipient_id
        if recipient_id in floor.recipients and not floor.agent_attached(recipient_id):
            floor.miss(recipient_id)
            floor.set_desktop_connected(recipient_id, False)  # counts as not reachable (seed 004)
            return True
        return False

    def _forward(self, event, supervised: bool = False) -> None:
        if self.muted and event.type == "recipient.state_changed":
            return  # caused by this desktop's own command: its answer carries the state
        message = agent_event(self.floor, event, supervised)
        if message is not None:
            self.send(message)

    def command(self, command) -> AgentEvent:
        """Apply ``command`` now; its answer, to send once the change is
        durable: the status it left, or the error (then nothing changed)."""
        correlation = command.command_id
        try:
            self.muted = True
            try:
                agent_id = self._apply(command)
            finally:
                self.muted = False
            if agent_id:  # forced on one of its agents: answered with that agent's status
                return AgentEvent(correlation=correlation, supervised_state_changed=status(self.floor, agent_id))
            return AgentEvent(correlation=correlation, state_changed=status(self.floor, self.recipient_id))
        except Exception as exc:
            return error_event(exc, correlation)

    def _apply(self, command) -> str:
        """Returns the supervised recipient the command was forced on, or
        "" when it acted on the desktop's own recipient."""
        floor, recipient_id = self.floor, self.recipient_id
        kind = command.WhichOneof("command")
        if kind == "accept":
            floor.accept(command.accept.offer_id, recipient_id)
        elif kind == "hangup":
            session = floor.session(command.hangup.session_id)
            if session.recipient_id != recipient_id:
                raise InvalidArgument.field("hangup.session_id", "is not this recipient's call")
            floor.hangup(session.id)
        elif kind == "finish_wrapup":
            floor.finish_wrapup(recipient_id)
        elif kind == "reject":
            floor.reject(command.reject.offer_id, recipient_id)
        elif kind in ("set_availability", "logout"):
            target = getattr(command, kind).recipient_id or recipient_id
            changed_by = ""
            if target != recipient_id:
                floor.check_supervises(recipient_id, target)
                changed_by = recipient_id
            if kind == "logout":
                floor.logout(target, changed_by=changed_by)
            else:
                request = command.set_availability
                floor.set_availability(target, convert.availability(request.availability,
                                                                    "set_availability.availability"),
                                       queue_id=request.queue_id, unavailable_code=request.unavailable_code,
                                       changed_by=changed_by)
            return target if changed_by else ""
        elif kind == "login":
            floor.login(recipient_id, ready=command.login.ready)
        elif kind == "goodbye":
            self.close()
        elif kind == "hello":
            raise InvalidArgument.field("hello", "is only the first command")
        else:
            raise InvalidArgument.field("command", "is empty")
        return ""


class Gateway:
    """The desktops of one ``ConnectGateway`` stream: commands come in
    batches, are applied in order and answered once durable, in order;
    every event names its desktop's recipient."""

    def __init__(self, desktops: Desktops, floor, journal) -> None:
        self.desktops, self.floor, self.journal = desktops, floor, journal
        self.outbox = Outbox(OUTBOX_LIMIT * 100)
        self.open: dict[str, Desktop] = {}
        self._unanswered: collections.deque = collections.deque()  # (commit point, answers), in order
        self._answering: asyncio.Task | None = None

    def _sender(self, recipient_id: str) -> Callable[[AgentEvent], None]:
        put = self.outbox.put

        def send(message: AgentEvent) -> None:
            message.recipient_id = recipient_id
            put(message)

        return send

    async def read(self, batches) -> None:
        """Apply what the gateway sends until it stops or the stream ends."""
        try:
            async for batch in batches:
                answers = [self._command(command) for command in batch.commands]
                self._unanswered.append((self.journal.commit_point(answers=len(answers)), answers))
                if self._answering is None or self._answering.done():
                    self._answering = asyncio.get_running_loop().create_task(self._answer())
                if len(self._unanswered) >= GATEWAY_AHEAD:
                    await asyncio.shield(self._answering)  # the gateway sends faster than the disk commits
            if self._answering is not None:
                await self._answering
        except Exception:  # the client went away mid-read
            log.debug("agent gateway stream closed", exc_info=True)
        finally:
            self.outbox.finish()

    async def _answer(self) -> None:
        """Send each batch's answers once its changes are committed, batch after batch."""
        unanswered = self._unanswered
        while unanswered:
            committed, answers = unanswered[0]
            failed = None
            if committed is not None:
                try:
                    await shielded(committed)
                except Exception as exc:  # not durable: its commands fail, as on Connect
                    failed = exc
            unanswered.popleft()
            for recipient_id, answer in answers:
                if answer is None:  # hello: answered when it was applied
                    continue
                if failed is not None and not answer.HasField("error"):
                    answer = error_event(failed, answer.correlation)
                answer.recipient_id = recipient_id
                self.outbox.put(answer)

    def _command(self, command) -> tuple[str, AgentEvent | None]:
        """(its desktop's recipient, its answer; None for hello, answered at once)."""
        recipient_id = command.recipient_id
        try:
            if command.WhichOneof("command") == "hello":
                recipient_id = recipient_id or command.hello.recipient_id
                return recipient_id, self._hello(command)
            desktop = self.open.get(recipient_id)
            if desktop is None:
                if not recipient_id:
                    raise InvalidArgument.field("recipient_id", "names the desktop's recipient on ConnectGateway")
                raise FailedPrecondition(f"recipient {recipient_id} has no desktop on this stream: send hello first")
        except Exception as exc:
            return recipient_id, error_event(exc, command.command_id)
        answer = desktop.command(command)
        if desktop.closed:  # goodbye
            del self.open[recipient_id]
        return recipient_id, answer

    def _hello(self, command) -> None:
        recipient_id = command.hello.recipient_id
        if command.recipient_id and command.recipient_id != recipient_id:
            raise InvalidArgument.field("recipient_id", "must be empty or hello.recipient_id")
        if recipient_id in self.open:
            raise InvalidArgument.field("hello", f"recipient {recipient_id} already has a desktop on this stream")
        self.floor.recipient(recipient_id)
        desktop = Desktop(self.desktops, self.floor, recipient_id, self._sender(recipient_id),
                          lambda: self._replaced(recipient_id))
        self.open[recipient_id] = desktop
        # Its status goes out at once, as on Connect: hello changes nothing that needs a commit
        # but reachability, which the next answers wait for anyway.
        desktop.open(command.command_id)

    def _replaced(self, recipient_id: str) -> None:
        desktop = self.open.pop(recipient_id, None)
        if desktop is not None:
            desktop.close()
            desktop.send(AgentEvent(error=AgentEvent.Error(
                code=grpc.StatusCode.ABORTED.value[0],
                message=f"another desktop connected for recipient {recipient_id}")))

    def close(self) -> bool:
        """Detach every desktop (the stream ended); True if that changed something to make durable."""
        if self._answering is not None:
            self._answering.cancel()  # nobody reads the answers any more
        changed = False
        for desktop in list(self.open.values()):
            changed = desktop.close() or changed
        self.open.clear()
        return changed
