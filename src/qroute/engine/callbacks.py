"""Virtual queueing (seed 003, virtualQ): callers lined up for a queue (a
*line*) who keep their place without holding the line.

A lined-up caller's place is its line-up time (``created_at_ms``):

- CALL_BACK: the place is a real waiting session of the line's queue,
  entered at the line-up time, marked as a callback, with the phone as its
  caller number. The dispatcher offers it like any caller; the offer says
  ``callback`` so the desktop (or dialer) places the outbound call.
  Offered -> NOTIFIED, accepted -> CONNECTED, session ended -> FINISHED.
- CALL_IN: the place is virtual: no session, nothing to route. Its
  position is the number of the queue's waiting sessions that entered
  before it lined up, plus the CALL_IN callers lined up before it that have
  not called in yet; its EWT is the queue's for that position
  (``Floor.estimate_wait_ms``). Once the EWT is at most the queue's
  ``callback_lead_time`` (so also: at the head with a recipient free) it is
  NOTIFIED and ``callback.notified`` tells an SMS or dialer integration.
  When it calls in, the gateway asks ``verify`` and then says ``connect``:
  it is enqueued with top priority and its line-up time as entered_at, so it
  goes before everyone who came after it lined up -> CONNECTED; its session
  ended (or ``transferred``) -> FINISHED.

A NOTIFIED caller not connected within the queue's ``callback_window``
becomes TIME_OUT (a CALL_BACK session still in line leaves it). DEFERRED
(the call center did not reach it) puts it back in line at its original
place. A phone may line up again on a line once its last line-up there is
FINISHED or TIME_OUT; those are kept for ``get`` for RETENTION_MS.

Every change is a ``callback.*`` event carrying the caller's whole record
(``data["caller"]``); ``stored_ops`` makes it the stored document, so a
change is durable exactly when its event is, and ``restore`` brings the
callers back after a restart. The events are session events whose entity
id is the caller's id, which is also the id of the session that holds
(CALL_BACK) or takes (CALL_IN, when it calls in) its place, when that id is
free.
"""

from __future__ import annotations

import random
import re
import uuid
from collections import OrderedDict
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from qroute.domain.enums import CallerState, Channel, ServiceState, SessionState, lower_name
from qroute.domain.events import DomainEvent
from qroute.engine.floor import MAX_PRIORITY, Floor
from qroute.engine.live import LiveQueue, LiveSession
from qroute.errors import AlreadyExists, FailedPrecondition, InvalidArgument, NotFound
from qroute.storage import Op, PutConfig

KIND = "callback"  # lined-up callers are stored as configuration documents of this kind
CHECK_MS = 1000  # the passes look at lined-up callers at most this often
RETENTION_MS = 24 * 3600 * 1000  # FINISHED and TIME_OUT callers are kept this long
SOURCES = ("Widget", "Phone", "Mobile", "App", "Other")
_E164 = re.compile(r"^\+[1-9][0-9]{7,14}$")
_LANG = re.compile(r"^[A-Za-z]{2}$")


OVER = (CallerState.FINISHED, CallerState.TIME_OUT)
IN_LINE = (CallerState.WAITING, CallerState.NOTIFIED)


@dataclass(slots=True, eq=False)
class LinedUpCaller:
    id: str
    line_id: str
    phone: str
    channel: Channel
    source: str
    created_at_ms: int  # its place in line
    lang: str = ""
    skills: list[str] = field(default_factory=list)
    properties: dict[str, Any] = field(default_factory=dict)
    state: CallerState = CallerState.WAITING
    updated_at_ms: int = 0
    notified_at_ms: int = 0
    connected_at_ms: int = 0
    ended_at_ms: int = 0  # when it became FINISHED or TIME_OUT
    session_id: str = ""  # the session holding (or that held) its place
    service_state: ServiceState | None = None  # last reported by the call center
    agent_id: str = ""
    reported_ewt: int | None = None  # seconds, as the call center computed it
    wait_time_when_up: int | None = None  # seconds
    talk_time: int | None = None  # seconds

    @property
    def key(self) -> tuple[str, str]:
        return (self.line_id, self.phone)

    def to_doc(self) -> dict[str, Any]:
        doc = asdict(self)
        doc["channel"] = lower_name(self.channel)
        doc["state"] = lower_name(self.state)
        doc["service_state"] = lower_name(self.service_state) if self.service_state else ""
        return doc

    @classmethod
    def from_doc(cls, doc: Mapping[str, Any]) -> LinedUpCaller:
        doc = dict(doc)
        doc["channel"] = Channel[doc["channel"].upper()]
        doc["state"] = CallerState[doc["state"].upper()]
        doc["service_state"] = ServiceState[doc["service_state"].upper()] if doc.get("service_state") else None
        known = cls.__dataclass_fields__
        return cls(**{k: v for k, v in doc.items() if k in known})


def stored_ops(event: DomainEvent) -> list[Op]:
    """The journal's op source for lined-up callers: each ``callback.*``
    event stores the caller's record it carries."""
    if not event.type.startswith("callback."):
        return []
    return [PutConfig(event.account_id, KIND, event.entity_id, event.data["caller"])]


def _lines_before(queue: LiveQueue, entered_at_ms: int) -> int:
    """Waiting sessions of ``queue`` that entered before ``entered_at_ms``,
    whatever their priority. O(priorities x log n)."""
    line = queue.line
    return sum(line.bisect_left((-priority, entered_at_ms)) - line.bisect_left((-priority,))
               for priority in queue.priorities)


class Callbacks:
    """The lined-up callers of one floor (one account).

    It follows the floor's session events (it wraps ``floor.sink``: nothing
    to pay for an account without callers, and its own events come right
    after the event they answer) and looks at its callers after the floor's
    passes (``floor.pass_hooks``). Commands validate everything first, then
    change state and emit, like the floor's.
    """

    def __init__(self, floor: Floor) -> None:
        self.floor = floor
        self.callers: dict[str, LinedUpCaller] = {}  # by id, every caller kept
        self._current: dict[tuple[str, str], LinedUpCaller] = {}  # (line, phone) -> its latest line-up
        self._in_line: dict[str, LinedUpCaller] = {}  # WAITING and NOTIFIED, by id
        self._over: OrderedDict[str, LinedUpCaller] = OrderedDict()  # FINISHED and TIME_OUT, oldest first
        self._by_session: dict[str, LinedUpCaller] = {}  # live session id -> its caller
        self._ids = random.Random(uuid.uuid4().int)
        self._next_check_ms = 0
        self._sink = floor.sink
        floor.sink = self._observe
        floor.pass_hooks.append(self._after_pass)

    # ============================================================== commands

    def line_up(self, line_id: str, phone: str, channel: int, source: str, lang: str = "",
                skills: Iterable[str] = (), properties: Mapping[str, Any] | None = None) -> LinedUpCaller:
        """Line up ``phone`` on ``line_id`` (see the module docstring).
        InvalidArgument names each bad field; NotFound for an unknown line;
        AlreadyExists while the phone's last line-up there is not over."""
        skills = list(skills)
        problems = _key_problems(line_id, phone)
        if channel not in (Channel.CALL_BACK, Channel.CALL_IN):
            problems.append(("channel", "must be CALLBACK_CHANNEL_CALL_BACK or CALLBACK_CHANNEL_CALL_IN"))
        canonical = {name.lower(): name for name in SOURCES}.get(source.lower())
        if canonical is None:
            problems.append(("source", "is required" if not source else
                             f"must be one of {', '.join(SOURCES)}, not {source!r}"))
        if lang and not _LANG.match(lang):
            problems.append(("lang", "must be a two-letter language code, e.g. en"))
        problems += _skill_problems(skills)
        if problems:
            raise InvalidArgument(*problems)
        self._line(line_id)
        existing = self._current.get((line_id, phone))
        if existing is not None and existing.state not in OVER:
            raise AlreadyExists(f"phone {phone} is already lined up on line {line_id} "
                                f"(caller {existing.id}, {lower_name(existing.state)})")
        now = self.floor.clock.now_ms()
        caller = LinedUpCaller(id=self._new_id(now), line_id=line_id, phone=phone, channel=Channel(channel),
                               source=canonical, created_at_ms=now, lang=lang.lower(),
                               skills=list(dict.fromkeys(skills)), properties=dict(properties or {}))
        session = self._enqueue(caller, priority=0) if caller.channel == Channel.CALL_BACK else None
        self.callers[caller.id] = caller
        self._current[caller.key] = caller
        self._in_line[caller.id] = caller
        if session is not None and session.state == SessionState.ENDED:
            self._finish(caller, now, take_out=False)  # turned away at once (queue full, nobody logged in)
        ahead, estimate = self.place(caller)
        self._emit("callback.lined_up", caller, now, position=ahead + 1, estimated_wait_ms=estimate)
        if caller.channel == Channel.CALL_IN:
            self._check_line(line_id, self._lines(line_id).get(line_id, []), now)
        return caller

    def verify(self, line_id: str, phone: str) -> tuple[bool, LinedUpCaller | None]:
        """Whether the caller is up now (NOTIFIED), and the caller if any."""
        problems = _key_problems(line_id, phone)
        if problems:
            raise InvalidArgument(*problems)
        caller = self._current.get((line_id, phone))
        return (caller is not None and caller.state == CallerState.NOTIFIED), caller

    def get(self, line_id: str, phone: str) -> LinedUpCaller:
        """The phone's latest line-up on the line; NotFound if none."""
        problems = _key_problems(line_id, phone)
        if problems:
            raise InvalidArgument(*problems)
        caller = self._current.get((line_id, phone))
        if caller is None:
            raise NotFound(f"no caller with phone {phone} lined up on line {line_id}")
        return caller

    def connect(self, line_id: str, phone: str) -> LinedUpCaller:
        """The caller called in (CALL_IN: it takes its place in the queue now)
        or picked up the callback. Connecting again changes nothing."""
        caller = self.get(line_id, phone)
        self._check_transition(caller, ServiceState.CONNECTED)
        now = self.floor.clock.now_ms()
        type_ = self._connect(caller, now)
        if type_:
            self._emit(type_, caller, now)
        return caller

    def transferred(self, line_id: str, phone: str, wait_time_when_up: int | None = None,
                    agent_id: str = "") -> LinedUpCaller:
        """The caller was put through to an agent: waiting is over (FINISHED).
        ``wait_time_when_up`` (s) defaults to the time since it connected."""
        problems = _seconds_problems(wait_time_when_up=wait_time_when_up)
        if problems:
            raise InvalidArgument(*problems)
        caller = self.get(line_id, phone)
        if caller.state == CallerState.TIME_OUT:
            raise FailedPrecondition(f"caller {caller.id} timed out; line it up again")
        if caller.state == CallerState.WAITING:
            raise FailedPrecondition(f"caller {caller.id} is still waiting: it was not notified yet")
        now = self.floor.clock.now_ms()
        if wait_time_when_up is None and caller.wait_time_when_up is None and caller.connected_at_ms:
            wait_time_when_up = (now - caller.connected_at_ms) // 1000
        if wait_time_when_up is not None:
            caller.wait_time_when_up = wait_time_when_up
        if agent_id:
            caller.agent_id = agent_id
        self._finish(caller, now, take_out=True)  # served elsewhere: a session still waiting is not needed
        self._emit("callback.finished", caller, now)
        return caller

    def update(self, line_id: str, phone: str, *, skills: Iterable[str] = (),
               properties: Mapping[str, Any] | None = None, ewt: int | None = None,
               service_state: int = 0, wait_time_when_up: int | None = None, talk_time: int | None = None,
               agent_id: str = "") -> LinedUpCaller:
        """What the call center tells about the caller: ``skills`` (replaced
        when not empty) and ``properties`` (merged) are the record's, for the
        session it gets next; ``service_state`` moves it: CONNECTED as
        ``connect``; DEFERRED back in line at its place; CANCELED and
        FINISHED end its waiting (a CALL_BACK session leaves the line)."""
        skills = list(skills)
        problems = _skill_problems(skills) + _seconds_problems(ewt=ewt, wait_time_when_up=wait_time_when_up,
                                                               talk_time=talk_time)
        if service_state and service_state not in set(ServiceState):
            problems.append(("service_state", f"unknown service state {service_state}"))
        if problems:
            raise InvalidArgument(*problems)
        caller = self.get(line_id, phone)
        state = ServiceState(service_state) if service_state else None
        if state is not None:
            self._check_transition(caller, state)
        now = self.floor.clock.now_ms()
        before = (caller.skills, caller.properties)
        if skills:  # before the state changes: a session made for it now takes them
            caller.skills = list(dict.fromkeys(skills))
        if properties:
            caller.properties = {**caller.properties, **properties}
        type_ = "callback.updated"
        try:
            if state == ServiceState.CONNECTED:
                type_ = self._connect(caller, now) or type_
            elif state == ServiceState.DEFERRED:
                self._defer(caller, now)
                type_ = "callback.deferred"
            elif state is not None and caller.state not in OVER:
                self._finish(caller, now, take_out=True)
                type_ = "callback.finished"
        except Exception:  # the queue refused its session (e.g. too many skills): nothing changes
            caller.skills, caller.properties = before
            raise
        if state is not None:
            caller.service_state = state
        for name, value in (("reported_ewt", ewt), ("wait_time_when_up", wait_time_when_up),
                            ("talk_time", talk_time)):
            if value is not None:
                setattr(caller, name, value)
        if agent_id:
            caller.agent_id = agent_id
        self._emit(type_, caller, now)
        return caller

    # =============================================================== queries

    def place(self, caller: LinedUpCaller) -> tuple[int, int]:
        """(callers ahead, EWT in ms) of a WAITING or NOTIFIED caller; EWT -1
        when nobody serves its line. (0, 0) for the others."""
        if caller.state not in IN_LINE:
            return 0, 0
        for other, ahead, estimate in self._places(caller.line_id, self._lines(caller.line_id).get(caller.line_id, [])):
            if other is caller:
                return ahead, estimate
        return 0, 0

    def waiting(self, line_id: str = "") -> list[tuple[LinedUpCaller, int, int]]:
        """(caller, ahead, EWT ms) of the WAITING and NOTIFIED callers of one
        line (or of every line), in the order they will be served: soonest
        expected first, then by place."""
        if line_id:
            self._line(line_id)
        places = [place for line, callers in self._lines(line_id).items() for place in self._places(line, callers)]
        places.sort(key=lambda p: (p[2] < 0, p[2], p[1], _order(p[0])))
        return places

    def _lines(self, line_id: str = "") -> dict[str, list[LinedUpCaller]]:
        """WAITING and NOTIFIED callers by line (of ``line_id`` only, if
        given), in line-up order."""
        lines: dict[str, list[LinedUpCaller]] = {}
        for caller in sorted(self._in_line.values(), key=_order):
            if not line_id or caller.line_id == line_id:
                lines.setdefault(caller.line_id, []).append(caller)
        return lines

    def _places(self, line_id: str, callers: list[LinedUpCaller]) -> list[tuple[LinedUpCaller, int, int]]:
        """(caller, ahead, EWT ms) of ``callers`` (one line's, in line-up
        order). A CALL_IN caller is behind the sessions that entered before it
        lined up; a CALL_BACK caller behind those before its session in line;
        both behind the CALL_IN callers lined up before them that have not
        called in yet (they will, with the highest priority)."""
        queue = self.floor.queues.get(line_id)
        if queue is None:
            return []
        places = []
        virtual = 0
        for caller in callers:
            if caller.channel == Channel.CALL_IN:
                ahead = _lines_before(queue, caller.created_at_ms) + virtual
                virtual += 1
                places.append((caller, ahead, self.floor.estimate_wait_ms(line_id, ahead)))
                continue
            session = self.floor.sessions.get(caller.session_id)
            if session is not None and session.state == SessionState.WAITING:
                ahead = self.floor.position(session) - 1 + virtual
                places.append((caller, ahead, self.floor.estimate_wait_ms(line_id, ahead)))
            else:
                places.append((caller, 0, 0))  # ringing at a recipient
        return places

    # ========================================================== the passes

    def _after_pass(self, now: int) -> None:
        if not self._in_line and not self._over:
            return
        if now < self._next_check_ms:
            return
        self._next_check_ms = now + CHECK_MS
        for line_id, callers in self._lines().items():
            self._check_line(line_id, callers, now)
        while self._over:
            oldest = next(iter(self._over.values()))
            if oldest.ended_at_ms > now - RETENTION_MS:
                break
            self._forget(oldest)

    def _check_line(self, line_id: str, callers: list[LinedUpCaller], now: int) -> None:
        """Notify the line's CALL_IN callers whose turn nears; time out the
        notified ones whose window has passed."""
        queue = self.floor.queues.get(line_id)
        if queue is None:
            return
        lead_ms, window_ms = queue.config.callback_lead_time * 1000, queue.config.callback_window * 1000
        for caller, ahead, estimate in self._places(line_id, callers):
            if caller.state == CallerState.NOTIFIED:
                if now >= caller.notified_at_ms + window_ms:
                    self._time_out(caller, now)
            elif caller.channel == Channel.CALL_IN and 0 <= estimate <= lead_ms:
                caller.state = CallerState.NOTIFIED
                caller.notified_at_ms = now
                self._emit("callback.notified", caller, now, position=ahead + 1, estimated_wait_ms=estimate)

    def _time_out(self, caller: LinedUpCaller, now: int) -> None:
        self._finish(caller, now, take_out=True, state=CallerState.TIME_OUT)
        self._emit("callback.timed_out", caller, now)

    # ===================================================== session events

    def _observe(self, event: DomainEvent) -> None:
        self._sink(event)
        type_ = event.type
        if type_ == "queue.deleted":
            self._line_deleted(event)
            return
        if not type_.startswith("session.") or not self._by_session:
            return
        caller = self._by_session.get(event.entity_id)
        if caller is None:
            return
        if type_ == "session.ended":
            self._by_session.pop(event.entity_id, None)
        if caller.state in OVER:
            return
        now = event.time_ms
        if type_ == "session.offered" and caller.state == CallerState.WAITING:
            caller.state = CallerState.NOTIFIED
            caller.notified_at_ms = now
            self._emit("callback.notified", caller, now, position=1, estimated_wait_ms=0)
        elif type_ == "session.connected":
            caller.agent_id = event.data.get("recipient_id", "")
            if caller.state == CallerState.CONNECTED:  # connected before: called in, or said so
                if caller.wait_time_when_up is None:
                    caller.wait_time_when_up = (now - caller.connected_at_ms) // 1000
                self._emit("callback.updated", caller, now)
            else:
                self._connected(caller, now)
                self._emit("callback.connected", caller, now)
        elif type_ == "session.ended":
            timed_out = event.data.get("end_reason") == "timed_out"
            self._finish(caller, now, take_out=False,
                         state=CallerState.TIME_OUT if timed_out else CallerState.FINISHED)
            self._emit("callback.timed_out" if timed_out else "callback.finished", caller, now)

    def _line_deleted(self, event: DomainEvent) -> None:
        for caller in [c for c in self._in_line.values() if c.line_id == event.entity_id]:
            self._finish(caller, event.time_ms, take_out=False)
            self._emit("callback.finished", caller, event.time_ms, reason="line_deleted")

    # ============================================================ helpers

    def _check_transition(self, caller: LinedUpCaller, state: ServiceState) -> None:
        """FailedPrecondition unless ``caller`` may take ``state`` now."""
        if state == ServiceState.CONNECTED:
            if caller.state in OVER:
                raise FailedPrecondition(f"caller {caller.id} is {lower_name(caller.state)}; "
                                         "line it up again")
            if caller.state == CallerState.WAITING:
                raise FailedPrecondition(
                    f"caller {caller.id} is not up yet (see VerifyCaller): "
                    + ("it may call in once notified" if caller.channel == Channel.CALL_IN
                       else "its call-back has not been offered"))
        elif state == ServiceState.DEFERRED:
            self._line(caller.line_id)

    def _connect(self, caller: LinedUpCaller, now: int) -> str:
        """CONNECTED (after ``_check_transition``); the event type, or "" if it already was."""
        if caller.state == CallerState.CONNECTED:
            return ""
        if caller.channel == Channel.CALL_IN:
            session = self._enqueue(caller, priority=MAX_PRIORITY)
            if session.state == SessionState.ENDED:
                self._finish(caller, now, take_out=False)
                return "callback.finished"
        self._connected(caller, now)
        return "callback.connected"

    def _connected(self, caller: LinedUpCaller, now: int) -> None:
        caller.state = CallerState.CONNECTED
        caller.connected_at_ms = now
        self._in_line.pop(caller.id, None)

    def _defer(self, caller: LinedUpCaller, now: int) -> None:
        """Back in line at its original place: a CALL_BACK session (a new one
        if its last has ended) waits entered at the line-up time; a CALL_IN
        caller's place is virtual again (a session of it still waiting leaves)."""
        session = self.floor.sessions.get(caller.session_id)
        self._by_session.pop(caller.session_id, None)  # our own changes to it are not news
        if caller.channel == Channel.CALL_BACK:
            if session is None:
                session = self._enqueue(caller, priority=0)
            elif session.state == SessionState.CONNECTED:
                self.floor.transfer(session.id, caller.line_id)  # keeps its entered_at
            if session.state != SessionState.ENDED:
                self._by_session[session.id] = caller
        elif session is not None and session.state in (SessionState.WAITING, SessionState.OFFERING):
            self.floor.abandon(session.id)
        caller.state = CallerState.WAITING
        caller.notified_at_ms = caller.connected_at_ms = caller.ended_at_ms = 0
        self._over.pop(caller.id, None)
        self._in_line[caller.id] = caller
        if caller.channel == Channel.CALL_BACK and session.state == SessionState.ENDED:
            self._finish(caller, now, take_out=False)  # the queue turned it away

    def _finish(self, caller: LinedUpCaller, now: int, take_out: bool,
                state: CallerState = CallerState.FINISHED) -> None:
        """FINISHED or TIME_OUT; with ``take_out`` a session of it still in line leaves it."""
        caller.state = state
        caller.ended_at_ms = now
        self._in_line.pop(caller.id, None)
        self._over[caller.id] = caller
        session = self.floor.sessions.get(caller.session_id) if take_out else None
        if session is not None and session.state in (SessionState.WAITING, SessionState.OFFERING):
            self._by_session.pop(session.id, None)
            self.floor.abandon(session.id)

    def _enqueue(self, caller: LinedUpCaller, priority: int) -> LiveSession:
        """A session for the caller's place, entered at its line-up time; it
        may have ended at once (the queue turned it away): the caller says."""
        session_id = caller.id
        if session_id in self.floor.sessions or session_id in self.floor.ended:
            session_id = self._new_id(self.floor.clock.now_ms())
        session = self.floor.enqueue(
            caller.line_id, caller_number=caller.phone, priority=priority,
            skills={name: 0 for name in caller.skills}, properties=caller.properties, session_id=session_id,
            callback=caller.channel == Channel.CALL_BACK, entered_at_ms=caller.created_at_ms)
        caller.session_id = session.id
        if session.state != SessionState.ENDED:
            self._by_session[session.id] = caller
        return session

    def _forget(self, caller: LinedUpCaller) -> None:
        self._over.pop(caller.id, None)
        self.callers.pop(caller.id, None)
        if self._current.get(caller.key) is caller:
            del self._current[caller.key]

    def _line(self, line_id: str) -> LiveQueue:
        queue = self.floor.queues.get(line_id)
        if queue is None:
            raise NotFound(f"line {line_id} not found (no queue has that id)")
        return queue

    def _emit(self, type_: str, caller: LinedUpCaller, now: int, **extra: Any) -> None:
        caller.updated_at_ms = now
        data = {"queue_id": caller.line_id, "caller_number": caller.phone,
                "callback": caller.channel == Channel.CALL_BACK, "entered_at_ms": caller.created_at_ms,
                "properties": caller.properties, **extra, "caller": caller.to_doc()}
        self._sink(DomainEvent(type_, caller.id, now, data, self.floor.account_id))

    def _new_id(self, now_ms: int) -> str:
        return f"{now_ms:012x}{self._ids.getrandbits(64):016x}"  # sorts by creation, as the floor's ids

    # ============================================================ restore

    def restore(self, docs: Iterable[Mapping[str, Any]]) -> list[str]:
        """Bring back stored callers (in line-up order), after the floor's
        live state: no validation, no event. Returns the ids of those over
        for longer than RETENTION_MS, which are not kept."""
        now = self.floor.clock.now_ms()
        dropped = []
        for doc in docs:
            caller = LinedUpCaller.from_doc(doc)
            if caller.state in OVER and caller.ended_at_ms <= now - RETENTION_MS:
                dropped.append(caller.id)
                continue
            self.callers[caller.id] = caller
            current = self._current.get(caller.key)
            if current is None or _order(current) < _order(caller):
                self._current[caller.key] = caller
            if caller.state in OVER:
                self._over[caller.id] = caller
            else:
                if caller.state in IN_LINE:
                    self._in_line[caller.id] = caller
                if caller.session_id in self.floor.sessions:
                    self._by_session[caller.session_id] = caller
        return dropped


def _order(caller: LinedUpCaller) -> tuple[int, str]:
    return (caller.created_at_ms, caller.id)


def _key_problems(line_id: str, phone: str) -> list[tuple[str, str]]:
    problems = []
    if not line_id:
        problems.append(("line_id", "is required"))
    if not phone:
        problems.append(("phone", "is required"))
    elif not _E164.match(phone):
        problems.append(("phone", f"{phone!r} is not an E.164 number: + then 8 to 15 digits, "
                                  "the first not 0 (e.g. +4917111112233)"))
    return problems


def _skill_problems(skills: list[str]) -> list[tuple[str, str]]:
    return [(f"skills[{i}]", "skill names are 1 to 64 characters") for i, name in enumerate(skills)
            if not 1 <= len(name) <= 64]


def _seconds_problems(**values: int | None) -> list[tuple[str, str]]:
    return [(name, "must be >= 0 seconds") for name, value in values.items() if value is not None and value < 0]
