"""One account's call center, live: queues, recipients, sessions, offers.

Commands are synchronous and fast: they validate everything first, then
change state, tell the dispatcher, and emit events. They never run a pass
themselves; they ask for one (``on_change``) and the scheduler runs it once
per loop iteration, so a burst of commands costs one pass. ``run_pass``
applies what the dispatcher returns: per pass, Python work is proportional to
the records returned (offers, misses, timeouts, wrap-up ends), never to the
number of waiting sessions.
"""

from __future__ import annotations

import dataclasses
import logging
import random
import uuid
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from qroute import routing
from qroute.domain.config import Member, QueueConfig, RecipientConfig, TierRule, validated
from qroute.domain.enums import (
    Availability,
    EndReason,
    EventSource,
    OfferOutcome,
    RecipientState,
    SessionState,
    lower_name,
)
from qroute.domain.events import DomainEvent
from qroute.domain.settings import DEVICE_CODES, THRESHOLD_METRICS, AgentSettings, effective, split_name
from qroute.engine.live import HandlePool, LiveQueue, LiveRecipient, LiveSession, Offer
from qroute.errors import (
    AlreadyExists,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    ResourceExhausted,
)

log = logging.getLogger("qroute.engine")

EventSink = Callable[[DomainEvent], None]
MAX_PRIORITY = 1000
MAX_REDIRECTS = 16  # queues a session may visit by timeout redirects before it just times out
RECENT_ENDED = 10_000  # ended sessions kept in memory for GetSession
SYSTEM_CODES = {"bounced", "rejected", "dnd", "personal_call", "not_reachable"}
THRESHOLD_CHECK_MS = 1000  # threshold profiles are checked by the passes at most this often


class Floor:
    """Live state of one account. Not thread-safe: one event loop owns it."""

    def __init__(self, account_id: str, clock, sink: EventSink | None = None,
                 dispatcher_cls=None, seed: int = 0,
                 on_change: Callable[[Floor], None] | None = None) -> None:
        self.account_id = account_id
        self.clock = clock
        self.sink = sink or (lambda event: None)
        self.dispatcher = (dispatcher_cls or routing.Dispatcher)(seed)
        self.on_change = on_change or (lambda floor: None)
        self.queues: dict[str, LiveQueue] = {}
        self.recipients: dict[str, LiveRecipient] = {}
        self.sessions: dict[str, LiveSession] = {}  # not ended
        self.ended: OrderedDict[str, LiveSession] = OrderedDict()
        # ids of offers that stopped ringing: answering one is FAILED_PRECONDITION, an unknown id NOT_FOUND
        self.closed_offers: OrderedDict[str, None] = OrderedDict()
        self.offers: dict[str, Offer] = {}
        self._queue_at: dict[int, LiveQueue] = {}
        self._recipient_at: dict[int, LiveRecipient] = {}
        self._session_at: dict[int, LiveSession] = {}
        self._queue_handles = HandlePool()
        self._recipient_handles = HandlePool()
        self._session_handles = HandlePool()
        self._skill_index: dict[str, int] = {}
        self._seq = 0
        self._staffing = 0  # bumped whenever who serves which queue may have changed
        self._ids = random.Random(uuid.uuid4().int)  # seeded from the OS: ids differ across restarts
        self._agent_listeners: dict[str, list[Callable[[DomainEvent], None]]] = {}
        self.pass_requested = False
        # hook(now_ms) after each pass: what follows time outside the dispatcher (engine.callbacks)
        self.pass_hooks: list[Callable[[int], None]] = []
        self.agent_settings = AgentSettings()  # the account's defaults, codes and threshold profiles (seed 004)
        self.supervision: dict[tuple[str, str], list[str]] = {}  # (supervisor, queue) -> supervised ids
        self._supervised_sets: dict[str, frozenset[str]] = {}  # supervisor -> its agents in any queue
        self._supervisors_of: dict[str, tuple[str, ...]] | None = None  # agent -> supervisors; None: stale
        self._supervisor_watchers: dict[str, list[Callable[[DomainEvent], None]]] = {}
        self._next_threshold_check_ms = 0
        # restore: (recipient, offer id, session id, queue id) of what rang when the node stopped,
        # and the line keys of restored sessions by queue (added at once: a bulk sort beats 10^5 inserts)
        self._restored_offers: list[tuple[LiveRecipient, str, str, str]] = []
        self._restored_keys: dict[str, list[tuple[int, int, int, str]]] = {}

    # ============================================================== restore

    def restore_queue(self, config: QueueConfig) -> LiveQueue:
        """Bring back a stored queue as it was: no validation, no event. A
        timeout_redirect may name a queue restored after it."""
        queue = LiveQueue(config, self._queue_handles.take())
        self._configure_dispatcher_queue(queue)
        self.queues[config.id] = queue
        self._queue_at[queue.handle] = queue
        return queue

    def restore_recipient(self, config: RecipientConfig) -> LiveRecipient:
        recipient = LiveRecipient(config, self._recipient_handles.take(), state_since_ms=self.clock.now_ms())
        self.dispatcher.add_recipient(recipient.handle, self._skill_levels(config.skills, "skills"),
                                      *self._dispatch_limits(config))
        self.recipients[config.id] = recipient
        self._recipient_at[recipient.handle] = recipient
        return recipient

    def restore_member(self, queue_id: str, member: Member) -> None:
        queue, recipient = self.queues.get(queue_id), self.recipients.get(member.recipient_id)
        if queue is None or recipient is None:
            return  # a membership outliving its queue or recipient: nothing to route
        self.dispatcher.add_member(queue.handle, recipient.handle, member.tier)
        queue.members[member.recipient_id] = member
        self._staffing += 1
        recipient.queues.add(queue_id)

    def restore_queue_stats(self, queue_id: str, doc: Mapping[str, Any]) -> None:
        """Bring back a queue's counters and service rate (``LiveQueue.stats_doc``),
        so its status and estimated waits go on from where they were."""
        queue = self.queues.get(queue_id)
        if queue is not None:  # stats outliving their queue: nothing to count for
            queue.restore_stats(doc)

    def restore_recipient_state(self, recipient_id: str, *, logged_in: bool,
                                availability: Availability = Availability.AWAY, unavailable_code: str = "",
                                forced_by: str = "", away_queues: Iterable[str] = (),
                                state: RecipientState = RecipientState.LOGGED_OUT, state_since_ms: int = 0,
                                wrapup_session_id: str = "", wrapup_until_ms: int = 0,
                                logout_pending: EventSource | None = None, calls: int = 0, offers: int = 0,
                                talk_ms: int = 0, idle_since_ms: int = 0, misses: int = 0,
                                logout_pending_by: str = "",
                                offer: tuple[str, str, str] | None = None) -> LiveRecipient | None:
        """Bring back a recipient's stored live state, after ``restore_recipient``
        and its memberships: no validation, no event. Login, availability
        (global and per queue), a pending logout, the routers' counters, and
        a wrap-up, resumed until its stored end (one already over ends at the
        next pass, as of that end). Ready since ``idle_since_ms``, so a guard
        timer runs from then. ``offer`` (offer id, session id, queue id) is
        what rang at it when the node stopped: gone; ``finish_restore`` says
        so. ``state`` is the stored one, until ``finish_restore`` moves it
        to the true one. None when the recipient is unknown."""
        recipient = self.recipients.get(recipient_id)
        if recipient is None:
            return None
        now = self.clock.now_ms()
        handle = recipient.handle
        idle_since = min(now, idle_since_ms) if idle_since_ms else now
        recipient.state = state
        recipient.state_since_ms = state_since_ms or now
        for queue_id in away_queues:  # kept across a logout, as set_availability left them
            queue = self.queues.get(queue_id)
            if queue is not None and queue_id in recipient.queues:
                recipient.away_queues.add(queue_id)
                self.dispatcher.set_member_ready(queue.handle, handle, False)
        if logged_in:
            away = availability != Availability.READY
            recipient.logged_in = True
            recipient.availability = Availability.AWAY if away else Availability.READY
            recipient.unavailable_code = unavailable_code if away else ""
            recipient.forced_by = forced_by if away else ""
            recipient.logout_pending = (None if logout_pending is None
                                        else (logout_pending, "", logout_pending_by))
            if wrapup_until_ms:
                # a call ending at ``at`` followed by the rest of the wrap-up
                at = min(now, wrapup_until_ms - 1)
                self.dispatcher.start_call(handle, at)
                self.dispatcher.hangup(handle, at, wrapup_until_ms - at)
                recipient.in_wrapup = True
                recipient.wrapup_until_ms = wrapup_until_ms
                recipient.wrapup_session_id = wrapup_session_id
            self.dispatcher.set_ready(handle, recipient.routable, idle_since)
        self._staffing += 1
        recipient.misses = misses
        self.dispatcher.restore_recipient(handle, calls, offers, talk_ms, idle_since, misses)
        if offer is not None:
            self._restored_offers.append((recipient, *offer))
        return recipient

    def restore_session(self, session_id: str, queue_id: str, *, priority: int, entered_at_ms: int,
                        joined_at_ms: int, seq: int, state: SessionState = SessionState.WAITING,
                        caller_number: str = "", caller_name: str = "", skills: Mapping[str, int] | None = None,
                        properties: Mapping[str, Any] | None = None, callback: bool = False,
                        queues_visited: Iterable[str] = (), estimated_wait_ms: int = -1,
                        recipient_id: str = "", answered_at_ms: int = 0, wait_ms: int = 0, ring_ms: int = 0,
                        talk_ms: int = 0) -> LiveSession | None:
        """Bring back a stored live session, after the recipients' state: no
        validation, no event. WAITING (a session that rang when the node
        stopped is stored as waiting) goes back in line at its old place,
        by its original entered_at and seq, its queue timeout counting from
        ``joined_at_ms``; later sessions get a higher seq. CONNECTED stays
        connected, its recipient busy on it since ``answered_at_ms`` (the
        stored call wins over a stored wrap-up). None when the queue is gone.
        It takes its place in the queue's line (``waiting_sessions``,
        ``position``) at ``finish_restore``. ``skills`` and ``properties``
        dicts are kept, not copied (10^5 sessions restore). O(log n)."""
        queue = self.queues.get(queue_id)
        if queue is None:
            return None
        if seq > self._seq:
            self._seq = seq
        session = LiveSession(id=session_id, queue_id=queue_id, seq=seq, priority=priority,
                              entered_at_ms=entered_at_ms, joined_at_ms=joined_at_ms, caller_number=caller_number,
                              caller_name=caller_name,
                              skills=skills if type(skills) is dict else dict(skills or {}),
                              properties=properties if type(properties) is dict else dict(properties or {}),
                              recipient_id=recipient_id,
                              queues_visited=list(queues_visited) or [queue_id],
                              estimated_wait_ms=estimated_wait_ms, answered_at_ms=answered_at_ms,
                              wait_ms=wait_ms, ring_ms=ring_ms, talk_ms=talk_ms, callback=callback)
        self.sessions[session_id] = session
        if state == SessionState.CONNECTED:
            session.state = SessionState.CONNECTED
            recipient = self.recipients.get(recipient_id)
            if recipient is not None and recipient.session is None:
                if recipient.in_wrapup:
                    self.dispatcher.end_wrapup(recipient.handle, self.clock.now_ms())
                    recipient.in_wrapup = False
                    recipient.wrapup_until_ms = 0
                    recipient.wrapup_session_id = ""
                self.dispatcher.start_call(recipient.handle, answered_at_ms or self.clock.now_ms())
                recipient.session = session
            return session
        levels = self._skill_levels(session.skills, "skills")
        session.handle = self._session_handles.take()
        self._session_at[session.handle] = session
        self.dispatcher.enqueue(session.handle, queue.handle, priority, entered_at_ms, seq, levels, joined_at_ms)
        keys = self._restored_keys.get(queue_id)
        if keys is None:
            keys = self._restored_keys[queue_id] = []
        keys.append((-priority, entered_at_ms, seq, session_id))
        queue.priorities[priority] = queue.priorities.get(priority, 0) + 1
        return session

    def finish_restore(self) -> None:
        """After the ``restore_*`` calls: each offer that rang when the node
        stopped is cancelled and its session is back in line (events with
        reason "restarted"), each recipient moves from its stored state to
        the true one (``recipient.state_changed`` where they differ: ringing
        becomes free; busy stays busy only on a restored connected call),
        and a pass is requested."""
        now = self.clock.now_ms()
        restored_keys, self._restored_keys = self._restored_keys, {}
        for queue_id, keys in restored_keys.items():
            self.queues[queue_id].line.update(keys)
        restored_offers, self._restored_offers = self._restored_offers, []
        requeued: dict[str, tuple[LiveSession, LiveRecipient, str]] = {}
        for recipient, offer_id, session_id, queue_id in restored_offers:
            self._remember_closed(offer_id)
            self._emit("recipient.offer_cancelled", recipient.id, session_id=session_id, offer_id=offer_id,
                       queue_id=queue_id, reason="restarted")
            session = self.sessions.get(session_id)
            if session is not None and session.state == SessionState.WAITING:
                requeued[session_id] = (session, recipient, offer_id)
        for session, recipient, offer_id in requeued.values():
            self._emit("session.requeued", session.id, queue_id=session.queue_id, recipient_id=recipient.id,
                       offer_id=offer_id, outcome=lower_name(OfferOutcome.WITHDRAWN),
                       position=self.position(session))
        for recipient in self.recipients.values():
            self._sync_state(recipient, now, EventSource.SYSTEM, "restarted")
        self._changed()

    # ================================================================ queues

    def create_queue(self, config: QueueConfig) -> LiveQueue:
        now = self.clock.now_ms()
        if not config.id:
            config = dataclasses.replace(config, id=uuid.uuid4().hex)
        self._validated_queue(config)
        if config.id in self.queues:
            raise AlreadyExists(f"queue {config.id} already exists")
        config = dataclasses.replace(config, create_time_ms=now, update_time_ms=now)
        queue = LiveQueue(config, self._queue_handles.take())
        self._configure_dispatcher_queue(queue)
        self.queues[config.id] = queue
        self._queue_at[queue.handle] = queue
        self._emit("queue.created", config.id, config=config.to_doc())
        self._changed()
        return queue

    def update_queue(self, queue_id: str, changes: Mapping[str, Any]) -> LiveQueue:
        queue = self.queue(queue_id)
        changes = dict(changes)
        for fixed in ("id", "create_time_ms", "update_time_ms"):
            if fixed in changes:
                raise InvalidArgument.field(fixed.removesuffix("_ms"), "cannot be changed")
        config = self._validated_queue(dataclasses.replace(queue.config, **changes,
                                                           update_time_ms=self.clock.now_ms()))
        queue.config = config
        self._configure_dispatcher_queue(queue)
        self._emit("queue.updated", queue_id, config=config.to_doc())
        self._changed()
        return queue

    def delete_queue(self, queue_id: str, force: bool = False) -> None:
        queue = self.queue(queue_id)
        redirecting = sorted(q.id for q in self.queues.values()
                             if q.config.timeout_redirect == queue_id and q is not queue)
        if redirecting:
            raise FailedPrecondition(f"queue {queue_id} is the timeout_redirect of {', '.join(redirecting)}")
        present = [s for s in self.sessions.values()
                   if s.queue_id == queue_id and s.state in (SessionState.WAITING, SessionState.OFFERING)]
        if present and not force:
            raise FailedPrecondition(f"queue {queue_id} holds {len(present)} sessions; delete with force "
                                     "to end them")
        now = self.clock.now_ms()
        for session in present:
            self._take_out(session, "queue_deleted", now)
            self._end(session, EndReason.REMOVED, now)
        for recipient_id in list(queue.members):
            self._drop_member(queue, self.recipients[recipient_id])
        self.dispatcher.remove_queue(queue.handle)
        del self._queue_at[queue.handle]
        self._queue_handles.give(queue.handle)
        del self.queues[queue_id]
        self._emit("queue.deleted", queue_id)

    def add_members(self, queue_id: str, members: Iterable[Member]) -> list[Member]:
        queue = self.queue(queue_id)
        members = list(members)
        problems = [p for i, m in enumerate(members) for p in m.problems(i)]
        seen: set[str] = set()
        for i, member in enumerate(members):
            if member.recipient_id in seen:
                problems.append((f"members[{i}].recipient_id", "appears twice"))
            seen.add(member.recipient_id)
        if problems:
            raise InvalidArgument(*problems)
        for member in members:
            self.recipient(member.recipient_id)
        for member in members:
            recipient = self.recipients[member.recipient_id]
            self.dispatcher.add_member(queue.handle, recipient.handle, member.tier)
            if member.recipient_id not in queue.members and queue_id in recipient.away_queues:
                recipient.away_queues.discard(queue_id)
            queue.members[member.recipient_id] = member
            self._staffing += 1
            recipient.queues.add(queue_id)
            self._emit("queue.member_added", queue_id, recipient_id=member.recipient_id,
                       tier=member.tier, weight=member.weight)
        self._changed()
        return members

    def remove_members(self, queue_id: str, recipient_ids: Iterable[str]) -> list[str]:
        """Remove members (ids that are not members are ignored); returns those
        removed. What rings at one of them for this queue is withdrawn, back
        to its place in line; a connected call goes on."""
        queue = self.queue(queue_id)
        removed = [rid for rid in dict.fromkeys(recipient_ids) if rid in queue.members]
        now = self.clock.now_ms()
        for recipient_id in removed:
            recipient = self.recipients[recipient_id]
            if recipient.offer is not None and recipient.offer.queue_id == queue_id:
                self._withdraw_offer(recipient, "member_removed", now)
                self._sync_state(recipient, now, EventSource.API, "member_removed")
            self._drop_member(queue, recipient)
        if removed:
            self._changed()
        return removed

    def _drop_member(self, queue: LiveQueue, recipient: LiveRecipient) -> None:
        self.dispatcher.remove_member(queue.handle, recipient.handle)
        del queue.members[recipient.id]
        self._staffing += 1
        recipient.queues.discard(queue.id)
        recipient.away_queues.discard(queue.id)
        self._emit("queue.member_removed", queue.id, recipient_id=recipient.id)

    def _validated_queue(self, config: QueueConfig) -> QueueConfig:
        """``config`` if valid here, else InvalidArgument naming every bad field
        (the bounds, and a timeout_redirect naming no queue of the account)."""
        found = config.problems()
        if (config.timeout_redirect and config.timeout_redirect != config.id
                and config.timeout_redirect not in self.queues):
            found.append(("timeout_redirect", f"unknown queue {config.timeout_redirect}"))
        if found:
            raise InvalidArgument(*found)
        return config

    def _configure_dispatcher_queue(self, queue: LiveQueue) -> None:
        config = queue.config
        self.dispatcher.set_queue(
            queue.handle, int(config.router), config.ring_timeout * 1000, config.timeout * 1000,
            [(rule.after_seconds * 1000, rule.max_tier) for rule in config.tier_expansion])

    # ============================================================ recipients

    def create_recipient(self, config: RecipientConfig) -> LiveRecipient:
        now = self.clock.now_ms()
        if not config.id:
            config = dataclasses.replace(config, id=uuid.uuid4().hex)
        self._validated_recipient(config)
        if config.id in self.recipients:
            raise AlreadyExists(f"recipient {config.id} already exists")
        skills = self._skill_levels(config.skills, "skills")
        config = dataclasses.replace(config, create_time_ms=now, update_time_ms=now)
        recipient = LiveRecipient(config, self._recipient_handles.take(), state_since_ms=now)
        self.dispatcher.add_recipient(recipient.handle, skills, *self._dispatch_limits(config))
        self.recipients[config.id] = recipient
        self._recipient_at[recipient.handle] = recipient
        self._emit("recipient.created", config.id, config=config.to_doc())
        return recipient

    def update_recipient(self, recipient_id: str, changes: Mapping[str, Any]) -> LiveRecipient:
        recipient = self.recipient(recipient_id)
        changes = dict(changes)
        for fixed in ("id", "create_time_ms", "update_time_ms"):
            if fixed in changes:
                raise InvalidArgument.field(fixed.removesuffix("_ms"), "cannot be changed")
        config = self._validated_recipient(dataclasses.replace(recipient.config, **changes,
                                                               update_time_ms=self.clock.now_ms()))
        skills = self._skill_levels(config.skills, "skills")
        self.dispatcher.update_recipient(recipient.handle, skills, *self._dispatch_limits(config))
        recipient.config = config
        self._emit("recipient.updated", recipient_id, config=config.to_doc())
        self._apply_device(recipient, self.clock.now_ms())
        self._changed()
        return recipient

    def delete_recipient(self, recipient_id: str) -> None:
        recipient = self.recipient(recipient_id)
        if recipient.session is not None:
            raise FailedPrecondition(f"recipient {recipient_id} is on a call; hang up first")
        now = self.clock.now_ms()
        if recipient.offer is not None:
            self._withdraw_offer(recipient, "recipient_deleted", now)
        for queue_id in list(recipient.queues):
            self._drop_member(self.queues[queue_id], recipient)
        self.dispatcher.remove_recipient(recipient.handle)
        del self._recipient_at[recipient.handle]
        self._recipient_handles.give(recipient.handle)
        del self.recipients[recipient_id]
        self._agent_listeners.pop(recipient_id, None)
        for key in [k for k in self.supervision if k[0] == recipient_id]:
            del self.supervision[key]
        for key, ids in self.supervision.items():
            if recipient_id in ids:
                ids.remove(recipient_id)
        self._supervision_changed()
        self._emit("recipient.deleted", recipient_id)
        self._changed()

    def _skill_levels(self, skills: Mapping[str, int], field: str) -> dict[int, int]:
        """Skill names to the dispatcher's indices (0..255), allotted on first use."""
        levels = {}
        for name, level in skills.items():
            index = self._skill_index.get(name)
            if index is None:
                if len(self._skill_index) >= routing.MAX_SKILLS:
                    raise ResourceExhausted(f"{field}: an account may use at most {routing.MAX_SKILLS} "
                                            f"distinct skills; {name!r} would be one more")
                index = self._skill_index[name] = len(self._skill_index)
            levels[index] = level
        return levels

    # ================================================================ agents

    def login(self, recipient_id: str, ready: bool = False,
              source: EventSource = EventSource.API, changed_by: str = "") -> LiveRecipient:
        """Log in, AWAY (as in Qubicle) unless ``ready``. Logging in again changes nothing.
        ``changed_by``: the supervisor acting for the recipient, if one is."""
        recipient = self.recipient(recipient_id)
        if recipient.logged_in:
            if recipient.logout_pending is not None:  # changed its mind before the call ended
                recipient.logout_pending = None
                self._sync_state(recipient, self.clock.now_ms(), source, "logout_cancelled", force=True,
                                 changed_by=changed_by)
            return recipient
        now = self.clock.now_ms()
        recipient.logged_in = True
        self._staffing += 1
        recipient.availability = Availability.READY if ready else Availability.AWAY
        recipient.unavailable_code = ""
        recipient.forced_by = ""
        self.dispatcher.set_ready(recipient.handle, recipient.routable, now)
        self._emit("recipient.logged_in", recipient_id, state=lower_name(recipient.derived_state()),
                   source=lower_name(source), forced_by="", **_by(changed_by))
        self._sync_state(recipient, now, source, "login", changed_by=changed_by)
        recipient.device_causes, recipient.before_forcing = frozenset(), None
        self._apply_device(recipient, now)  # logging in with DND on (say) is forced away at once
        self._changed()
        return recipient

    def logout(self, recipient_id: str, source: EventSource = EventSource.API,
               forced_by: str = "", changed_by: str = "") -> LiveRecipient:
        """Log out. A ringing offer is withdrawn; on a call, the recipient takes
        nothing more and is logged out when the call ends (no wrap-up)."""
        recipient = self.recipient(recipient_id)
        if not recipient.logged_in:
            return recipient
        now = self.clock.now_ms()
        if recipient.session is not None:
            recipient.logout_pending = (source, forced_by, changed_by)
            recipient.availability = Availability.AWAY
            self._staffing += 1
            self.dispatcher.set_ready(recipient.handle, False, now)
            self._sync_state(recipient, now, source, "logout_pending", force=True, changed_by=changed_by)
            self._changed()
            return recipient
        self._log_out(recipient, now, source, forced_by, changed_by)
        self._changed()
        return recipient

    def _log_out(self, recipient: LiveRecipient, now: int, source: EventSource, forced_by: str,
                 changed_by: str = "") -> None:
        previous = recipient.state
        recipient.logout_pending = None
        if recipient.offer is not None:
            self._withdraw_offer(recipient, "logged_out", now)
        if recipient.in_wrapup:
            self.dispatcher.end_wrapup(recipient.handle, now)
            self._finish_wrapup(recipient, now)
        recipient.logged_in = False
        recipient.availability = Availability.AWAY
        self._staffing += 1
        recipient.unavailable_code = ""
        self.dispatcher.set_ready(recipient.handle, False, now)
        self._emit("recipient.logged_out", recipient.id, previous_state=lower_name(previous),
                   source=lower_name(source), forced_by=forced_by, **_by(changed_by))
        self._sync_state(recipient, now, source, "logout", changed_by=changed_by)

    def set_availability(self, recipient_id: str, availability: Availability, queue_id: str = "",
                         unavailable_code: str = "", source: EventSource = EventSource.API,
                         forced_by: str = "", changed_by: str = "") -> LiveRecipient:
        """READY or AWAY, globally or (with ``queue_id``) for one queue.

        An AWAY code must be one of the recipient's ``unavailable_codes``;
        the system's own codes (bounced, rejected, ...) are set only by rules.
        """
        recipient = self.recipient(recipient_id)
        if availability not in (Availability.READY, Availability.AWAY):
            raise InvalidArgument.field("availability", "must be READY or AWAY")
        if unavailable_code and availability == Availability.READY:
            raise InvalidArgument.field("unavailable_code", "only goes with AWAY")
        if unavailable_code and not forced_by:
            self._check_unavailable_code(recipient, unavailable_code)
        if queue_id and queue_id not in recipient.queues:
            if queue_id not in self.queues:
                raise NotFound(f"queue {queue_id} not found")
            raise InvalidArgument.field("queue_id", f"recipient {recipient_id} is not a member of {queue_id}")
        if not recipient.logged_in:
            raise FailedPrecondition(f"recipient {recipient_id} is logged out; log in first")
        now = self.clock.now_ms()
        if queue_id:
            ready = availability == Availability.READY
            (recipient.away_queues.discard if ready else recipient.away_queues.add)(queue_id)
            self._staffing += 1
            self.dispatcher.set_member_ready(self.queues[queue_id].handle, recipient.handle, ready)
            self._emit_state(recipient, recipient.state, now, source, "queue_availability",
                             queue_id=queue_id, availability=lower_name(availability), changed_by=changed_by)
        else:
            recipient.availability = availability
            self._staffing += 1
            recipient.unavailable_code = unavailable_code if availability == Availability.AWAY else ""
            recipient.forced_by = forced_by if availability == Availability.AWAY else ""
            if not forced_by:
                recipient.before_forcing = None  # its own choice now: a cleared cause restores nothing
            self.dispatcher.set_ready(recipient.handle, recipient.routable, now)
            self._sync_state(recipient, now, source, forced_by or "availability", force=True,
                             changed_by=changed_by)
        self._changed()
        return recipient

    def accept(self, offer_id: str, recipient_id: str = "") -> LiveSession:
        offer = self._ringing_offer(offer_id, recipient_id)
        now = self.clock.now_ms()
        session, recipient = offer.session, offer.recipient
        queue = self.queues[session.queue_id]
        cancelled = self.dispatcher.accept(session.handle, recipient.handle, now)
        del self.offers[offer_id]
        self._remember_closed(offer_id)
        session.offers.pop(offer_id)
        recipient.offer = None
        recipient.session = session
        recipient.misses = 0
        for handle in cancelled:
            other = self._recipient_at[handle]
            self._drop_offer(other, OfferOutcome.ANSWERED_ELSEWHERE, now)
        self._release_handle(session)
        queue.offering -= 1
        session.state = SessionState.CONNECTED
        session.recipient_id = recipient.id
        session.answered_at_ms = now
        session.wait_ms = now - session.entered_at_ms
        session.ring_ms += now - session.ringing_since_ms
        waited_here = now - session.joined_at_ms
        queue.counters.answered_sessions += 1
        queue.counters.answered_wait_ms += waited_here
        queue.rate.record_wait(session.estimated_wait_ms, waited_here)
        self._emit("session.connected", session.id, queue_id=queue.id, recipient_id=recipient.id,
                   offer_id=offer_id, wait_ms=session.wait_ms, ring_ms=session.ring_ms)
        self._emit("recipient.connected", recipient.id, session_id=session.id, offer_id=offer_id,
                   queue_id=queue.id, ring_ms=session.ring_ms)
        self._emit("queue.session_left", queue.id, session_id=session.id, reason="answered",
                   wait_ms=waited_here, waiting_count=len(queue.line))
        self._sync_state(recipient, now, EventSource.API, "accepted")
        self._changed()
        return session

    def reject(self, offer_id: str, recipient_id: str = "") -> LiveSession:
        offer = self._ringing_offer(offer_id, recipient_id)
        now = self.clock.now_ms()
        session, recipient = offer.session, offer.recipient
        back, _ = self.dispatcher.reject(session.handle, recipient.handle, now, False)
        self._close_offer(offer, now)
        self._emit("recipient.rejected", recipient.id, session_id=session.id, offer_id=offer_id,
                   queue_id=offer.queue_id)
        if back:
            self._requeue(session, offer, OfferOutcome.REJECTED, now)
        queue = self.queues.get(offer.queue_id)
        if queue is not None and queue.config.force_away_on_reject:
            self._force_away(recipient, "rejected", now)
        else:
            self._sync_state(recipient, now, EventSource.API, "rejected")
        self._changed()
        return session

    def miss(self, recipient_id: str) -> None:
        """The recipient cannot answer what rings (its desktop went away): a miss."""
        recipient = self.recipient(recipient_id)
        offer = recipient.offer
        if offer is None:
            return
        now = self.clock.now_ms()
        _, bounced = self.dispatcher.reject(offer.session.handle, recipient.handle, now, True)
        self._missed(offer, bounced, now)
        self._changed()

    def finish_wrapup(self, recipient_id: str) -> LiveRecipient:
        recipient = self.recipient(recipient_id)
        if not recipient.in_wrapup:
            raise FailedPrecondition(f"recipient {recipient_id} is not in wrap-up")
        now = self.clock.now_ms()
        self.dispatcher.end_wrapup(recipient.handle, now)
        self._finish_wrapup(recipient, now)
        self._changed()
        return recipient

    def attach_agent(self, recipient_id: str, listener: Callable[[DomainEvent], None]) -> Callable[[], None]:
        """Deliver the recipient's events to ``listener`` (an agent desktop);
        returns the function that detaches it."""
        self.recipient(recipient_id)
        listeners = self._agent_listeners.setdefault(recipient_id, [])
        listeners.append(listener)

        def detach() -> None:
            if listener in listeners:
                listeners.remove(listener)

        return detach

    def agent_attached(self, recipient_id: str) -> bool:
        return bool(self._agent_listeners.get(recipient_id))

    # ============================================================== sessions

    def enqueue(self, queue_id: str, caller_number: str = "", caller_name: str = "", priority: int = 0,
                skills: Mapping[str, int] | None = None, properties: Mapping[str, Any] | None = None,
                session_id: str = "", callback: bool = False,
                entered_at_ms: int | None = None) -> LiveSession:
        """A caller joins ``queue_id``. It may end at once (REJECTED_FULL or
        REJECTED_EMPTY, after any timeout redirect): the returned session says so."""
        queue = self.queue(queue_id)
        skills = dict(skills or {})
        problems = []
        if not 0 <= priority <= MAX_PRIORITY:
            problems.append(("priority", f"must be 0 to {MAX_PRIORITY}"))
        for name, level in skills.items():
            if not name or len(name) > 64:
                problems.append((f"skills[{name}]", "skill names are 1 to 64 characters"))
            if not 0 <= level <= routing.MAX_LEVEL:
                problems.append((f"skills[{name}]", "level must be 0 (any) to 10"))
        if len(caller_number) > 64:
            problems.append(("caller.number", "must be at most 64 characters"))
        if len(caller_name) > 256:
            problems.append(("caller.name", "must be at most 256 characters"))
        if session_id and (session_id in self.sessions or session_id in self.ended):
            raise AlreadyExists(f"session {session_id} already exists")
        if problems:
            raise InvalidArgument(*problems)
        self._skill_levels(skills, "skills")
        now = self.clock.now_ms()
        self._seq += 1
        session = LiveSession(id=session_id or self._new_id(now), queue_id=queue_id, seq=self._seq,
                              priority=priority, entered_at_ms=now if entered_at_ms is None else entered_at_ms,
                              joined_at_ms=now, caller_number=caller_number, caller_name=caller_name,
                              skills=skills, properties=dict(properties or {}), callback=callback)
        self.sessions[session.id] = session
        self._emit("session.created", session.id, queue_id=queue_id, caller_number=caller_number,
                   caller_name=caller_name, priority=priority, skills=skills,
                   entered_at_ms=session.entered_at_ms, properties=session.properties, seq=session.seq,
                   callback=callback)
        self._enter(session, queue, now)
        self._changed()
        return session

    def abandon(self, session_id: str) -> LiveSession:
        session = self.session(session_id)
        if session.state not in (SessionState.WAITING, SessionState.OFFERING):
            raise FailedPrecondition(f"session {session_id} is {session.state.name.lower()}; "
                                     "only a waiting or ringing session can be abandoned")
        now = self.clock.now_ms()
        queue = self.queues[session.queue_id]
        state = session.state
        self._take_out(session, "abandoned", now)
        queue.counters.abandoned_sessions += 1
        self._emit("session.abandoned", session_id, queue_id=queue.id, state=lower_name(state),
                   wait_ms=now - session.entered_at_ms)
        self._end(session, EndReason.ABANDONED, now)
        self._changed()
        return session

    def hangup(self, session_id: str) -> LiveSession:
        session = self.session(session_id)
        if session.state != SessionState.CONNECTED:
            raise FailedPrecondition(f"session {session_id} is {session.state.name.lower()}, not connected")
        now = self.clock.now_ms()
        self._end_call(session, now)
        self._end(session, EndReason.COMPLETED, now)
        self._changed()
        return session

    def transfer(self, session_id: str, queue_id: str) -> LiveSession:
        """Move a session to another queue; it keeps its entered_at, so its
        place in line. A connected call ends for its recipient (wrap-up follows)."""
        session = self.session(session_id)
        target = self.queue(queue_id)
        if session.state == SessionState.ENDED:
            raise FailedPrecondition(f"session {session_id} has ended")
        if queue_id == session.queue_id and session.state != SessionState.CONNECTED:
            raise FailedPrecondition(f"session {session_id} is already in queue {queue_id}")
        now = self.clock.now_ms()
        from_queue = session.queue_id
        if session.state == SessionState.CONNECTED:
            self._end_call(session, now)
        else:
            self._take_out(session, "transferred", now)
        self._emit("session.transferred", session_id, queue_id=queue_id, from_queue_id=from_queue,
                   reason="transfer", entered_at_ms=session.entered_at_ms)
        self._enter(session, target, now)
        self._changed()
        return session

    # ============================================================ the pass

    def run_pass(self, now_ms: int | None = None) -> int:
        """One dispatch pass; applies its records. Returns how many there were."""
        self.pass_requested = False
        now = self.clock.now_ms() if now_ms is None else now_ms
        records = self.dispatcher.dispatch(now)
        count = len(records) // routing.RECORD_SIZE
        for i in range(0, len(records), routing.RECORD_SIZE):
            kind = records[i]
            if kind == routing.OFFER:
                self._offered(self._session_at[records[i + 1]], self._recipient_at[records[i + 2]], now)
            elif kind == routing.MISSED:
                recipient = self._recipient_at[records[i + 2]]
                bounced = (i + 4 < len(records) and records[i + 4] == routing.BOUNCED
                           and records[i + 6] == records[i + 2])
                self._missed(recipient.offer, bounced, now)
            elif kind == routing.TIMEOUT:
                self._timed_out(self._session_at[records[i + 1]], now)
            elif kind == routing.WRAPUP_END:
                self._finish_wrapup(self._recipient_at[records[i + 2]], now)
            # BOUNCED is applied with the MISSED record before it
        if self.agent_settings.threshold_profiles and now >= self._next_threshold_check_ms:
            self._next_threshold_check_ms = now + THRESHOLD_CHECK_MS
            self.check_thresholds(now)
        for hook in self.pass_hooks:
            hook(now)
        return count

    def _offered(self, session: LiveSession, recipient: LiveRecipient, now: int) -> None:
        queue = self.queues[session.queue_id]
        if session.state == SessionState.WAITING:
            self._leave_line(session, queue)
            session.state = SessionState.OFFERING
            session.ringing_since_ms = now
            queue.offering += 1
        ring_ms = queue.config.ring_timeout * 1000
        offer = Offer(self._new_id(now), session, recipient, queue.id, now, ring_ms)
        self.offers[offer.id] = offer
        session.offers[offer.id] = offer
        recipient.offer = offer
        self._emit("session.offered", session.id, queue_id=queue.id, recipient_id=recipient.id,
                   offer_id=offer.id, ring_timeout_ms=ring_ms)
        self._emit("recipient.offered", recipient.id, session_id=session.id, offer_id=offer.id,
                   queue_id=queue.id, ring_timeout_ms=ring_ms, caller_number=session.caller_number,
                   caller_name=session.caller_name, hold_treatment=queue.config.hold_treatment,
                   properties=session.properties, callback=session.callback)
        self._sync_state(recipient, now, EventSource.SYSTEM, "offered")

    def _missed(self, offer: Offer, bounced: bool, now: int) -> None:
        session, recipient = offer.session, offer.recipient
        recipient.misses += 1
        queue = self.queues.get(offer.queue_id)
        if queue is not None:
            queue.counters.missed_sessions += 1
        self._close_offer(offer, now)
        self._emit("recipient.missed", recipient.id, session_id=session.id, offer_id=offer.id,
                   queue_id=offer.queue_id, consecutive_misses=recipient.misses)
        if not session.offers:
            self._requeue(session, offer, OfferOutcome.MISSED, now)
        if bounced:
            recipient.misses = 0
            self._force_away(recipient, "bounced", now, already_unready=True)
        else:
            self._sync_state(recipient, now, EventSource.SYSTEM, "missed")

    def _timed_out(self, session: LiveSession, now: int) -> None:
        queue = self.queues[session.queue_id]
        self._release_handle(session)
        self._leave_line(session, queue)
        queue.counters.timed_out_sessions += 1
        self._leave_for(session, queue, EndReason.TIMED_OUT, now)

    # ============================================================= helpers

    def _enter(self, session: LiveSession, queue: LiveQueue, now: int) -> None:
        """Join ``queue``, or be turned away by its entry rules (then its
        timeout redirect applies, as for any timeout)."""
        session.queue_id = queue.id
        session.joined_at_ms = now
        session.queues_visited.append(queue.id)
        session.state = SessionState.WAITING
        queue.counters.total_sessions += 1
        config = queue.config
        if config.timeout_if_size_exceeds and len(queue.line) >= config.timeout_if_size_exceeds:
            self._leave_for(session, queue, EndReason.REJECTED_FULL, now, joined=False)
            return
        if config.timeout_immediately_if_empty and not any(
                self.recipients[rid].logged_in for rid in queue.members):
            self._leave_for(session, queue, EndReason.REJECTED_EMPTY, now, joined=False)
            return
        session.handle = self._session_handles.take()
        self._session_at[session.handle] = session
        self.dispatcher.enqueue(session.handle, queue.handle, session.priority, session.entered_at_ms,
                                session.seq, self._skill_levels(session.skills, "skills"), now)
        position = self._join_line(session, queue)
        session.estimated_wait_ms = self._estimate(queue, position - 1)
        self._emit("queue.session_joined", queue.id, session_id=session.id, priority=session.priority,
                   position=position, estimated_wait_ms=session.estimated_wait_ms,
                   waiting_count=len(queue.line))

    def _leave_for(self, session: LiveSession, queue: LiveQueue, reason: EndReason, now: int,
                   joined: bool = True) -> None:
        """Time out of ``queue`` (``reason`` says why): to its timeout_redirect
        if it has one, otherwise the session ends."""
        redirect = queue.config.timeout_redirect
        target = self.queues.get(redirect) if redirect else None
        if target is not None and len(session.queues_visited) >= MAX_REDIRECTS:
            target = None
        self._emit("session.timed_out", session.id, queue_id=queue.id, wait_ms=now - session.joined_at_ms,
                   redirect_queue_id=target.id if target else "", reason=lower_name(reason))
        if joined:
            self._emit("queue.session_left", queue.id, session_id=session.id, reason=lower_name(reason),
                       wait_ms=now - session.joined_at_ms, waiting_count=len(queue.line))
        if target is None:
            self._end(session, reason, now)
            return
        self._emit("session.transferred", session.id, queue_id=target.id, from_queue_id=queue.id,
                   reason="timeout_redirect", entered_at_ms=session.entered_at_ms)
        self._enter(session, target, now)

    def _take_out(self, session: LiveSession, reason: str, now: int) -> None:
        """Remove a waiting or ringing session from its queue and the dispatcher."""
        queue = self.queues[session.queue_id]
        withdrawn = self.dispatcher.remove_session(session.handle)
        for handle in withdrawn:
            outcome = OfferOutcome.ABANDONED if reason == "abandoned" else OfferOutcome.WITHDRAWN
            self._drop_offer(self._recipient_at[handle], outcome, now)
        if session.state == SessionState.OFFERING:
            queue.offering -= 1
            session.ring_ms += now - session.ringing_since_ms
        else:
            self._leave_line(session, queue)
        self._release_handle(session)
        self._emit("queue.session_left", queue.id, session_id=session.id, reason=reason,
                   wait_ms=now - session.joined_at_ms, waiting_count=len(queue.line))

    def _end_call(self, session: LiveSession, now: int) -> None:
        """The recipient's call with ``session`` is over; wrap-up starts."""
        recipient = self.recipients.get(session.recipient_id)
        queue = self.queues.get(session.queue_id)
        wrapup_ms = queue.config.agent_wrapup_time * 1000 if queue is not None else 0
        talk_ms = now - session.answered_at_ms
        session.talk_ms += talk_ms
        if queue is not None:
            queue.rate.record_handled(talk_ms, wrapup_ms)
        if recipient is None:
            return
        if recipient.logout_pending is not None:
            self.dispatcher.hangup(recipient.handle, now, 0)  # leaving: no wrap-up
            recipient.session = None
            self._log_out(recipient, now, *recipient.logout_pending)
            return
        self.dispatcher.hangup(recipient.handle, now, wrapup_ms)
        recipient.session = None
        if wrapup_ms:
            recipient.in_wrapup = True
            recipient.wrapup_until_ms = now + wrapup_ms
            recipient.wrapup_session_id = session.id
            self._emit("recipient.wrapup_started", recipient.id, session_id=session.id,
                       queue_id=session.queue_id, talk_ms=talk_ms, wrapup_ms=wrapup_ms)
        self._sync_state(recipient, now, EventSource.API, "hangup")

    def _finish_wrapup(self, recipient: LiveRecipient, now: int) -> None:
        recipient.in_wrapup = False
        self._emit("recipient.wrapup_ended", recipient.id, session_id=recipient.wrapup_session_id)
        recipient.wrapup_session_id = ""
        self._sync_state(recipient, now, EventSource.SYSTEM, "wrapup_ended")

    def _end(self, session: LiveSession, reason: EndReason, now: int) -> None:
        session.state = SessionState.ENDED
        session.end_reason = reason
        session.ended_at_ms = now
        if not session.answered_at_ms:
            session.wait_ms = now - session.entered_at_ms
        self.sessions.pop(session.id, None)
        self.ended[session.id] = session
        if len(self.ended) > RECENT_ENDED:
            self.ended.popitem(last=False)
        self._emit("session.ended", session.id, queue_id=session.queue_id, recipient_id=session.recipient_id,
                   end_reason=lower_name(reason), wait_ms=session.wait_ms, ring_ms=session.ring_ms,
                   talk_ms=session.talk_ms, queues_visited=list(session.queues_visited),
                   entered_at_ms=session.entered_at_ms, estimated_wait_ms=session.estimated_wait_ms,
                   answered_at_ms=session.answered_at_ms)

    def _requeue(self, session: LiveSession, offer: Offer, outcome: OfferOutcome, now: int) -> None:
        """Every offer of ``session`` failed: back to its place in line."""
        queue = self.queues[session.queue_id]
        session.state = SessionState.WAITING
        session.ring_ms += now - session.ringing_since_ms
        queue.offering -= 1
        position = self._join_line(session, queue)
        self._emit("session.requeued", session.id, queue_id=queue.id, recipient_id=offer.recipient.id,
                   offer_id=offer.id, outcome=lower_name(outcome), position=position)

    def _withdraw_offer(self, recipient: LiveRecipient, reason: str, now: int) -> None:
        """Take back what rings at ``recipient`` (logout, deletion): not a miss."""
        offer = recipient.offer
        back, _ = self.dispatcher.reject(offer.session.handle, recipient.handle, now, False)
        self._close_offer(offer, now)
        self._emit("recipient.offer_cancelled", recipient.id, session_id=offer.session.id,
                   offer_id=offer.id, queue_id=offer.queue_id, reason=reason)
        if back:
            self._requeue(offer.session, offer, OfferOutcome.WITHDRAWN, now)

    def _drop_offer(self, recipient: LiveRecipient, outcome: OfferOutcome, now: int) -> None:
        """The dispatcher already freed ``recipient``; close its offer here."""
        offer = recipient.offer
        self._close_offer(offer, now)
        self._emit("recipient.offer_cancelled", recipient.id, session_id=offer.session.id,
                   offer_id=offer.id, queue_id=offer.queue_id, reason=lower_name(outcome))
        self._sync_state(recipient, now, EventSource.SYSTEM, lower_name(outcome))

    def _remember_closed(self, offer_id: str) -> None:
        self.closed_offers[offer_id] = None
        if len(self.closed_offers) > RECENT_ENDED:
            self.closed_offers.popitem(last=False)

    def _close_offer(self, offer: Offer, now: int) -> None:
        self.offers.pop(offer.id, None)
        self._remember_closed(offer.id)
        offer.session.offers.pop(offer.id, None)
        offer.recipient.offer = None

    def _force_away(self, recipient: LiveRecipient, code: str, now: int, already_unready: bool = False) -> None:
        recipient.availability = Availability.AWAY
        self._staffing += 1
        recipient.unavailable_code = code
        recipient.forced_by = code
        if not already_unready:
            self.dispatcher.set_ready(recipient.handle, False, now)
        self._sync_state(recipient, now, EventSource.SYSTEM, code, force=True)

    def _ringing_offer(self, offer_id: str, recipient_id: str) -> Offer:
        offer = self.offers.get(offer_id)
        if offer is None:
            if offer_id not in self.closed_offers:
                raise NotFound(f"offer {offer_id} not found")
            raise FailedPrecondition(f"offer {offer_id} is not ringing (it was answered, cancelled or timed out)")
        if recipient_id and offer.recipient.id != recipient_id:
            raise FailedPrecondition(f"offer {offer_id} rings at another recipient")
        return offer

    def _join_line(self, session: LiveSession, queue: LiveQueue) -> int:
        key = session.line_key()
        queue.line.add(key)
        queue.priorities[session.priority] = queue.priorities.get(session.priority, 0) + 1
        return queue.line.index(key) + 1

    def _leave_line(self, session: LiveSession, queue: LiveQueue) -> None:
        queue.line.remove(session.line_key())
        left = queue.priorities[session.priority] - 1
        if left:
            queue.priorities[session.priority] = left
        else:
            del queue.priorities[session.priority]

    def _release_handle(self, session: LiveSession) -> None:
        if session.handle >= 0:
            del self._session_at[session.handle]
            self._session_handles.give(session.handle)
            session.handle = -1

    def _sync_state(self, recipient: LiveRecipient, now: int, source: EventSource, reason: str,
                    force: bool = False, changed_by: str = "") -> None:
        """Emit ``recipient.state_changed`` when the derived state moved (or ``force``)."""
        state = recipient.derived_state()
        if state == recipient.state and not force:
            return
        previous = recipient.state
        if state != previous:
            recipient.state = state
            recipient.state_since_ms = now
        self._emit_state(recipient, previous, now, source, reason, changed_by=changed_by)

    def _emit_state(self, recipient: LiveRecipient, previous: RecipientState, now: int,
                    source: EventSource, reason: str, queue_id: str = "", availability: str = "",
                    changed_by: str = "") -> None:
        _, calls, offers, talk_ms, misses, idle_since = self.dispatcher.recipient_stats(recipient.handle)
        self._emit("recipient.state_changed", recipient.id, state=lower_name(recipient.state),
                   previous_state=lower_name(previous),
                   availability=availability or lower_name(recipient.availability),
                   unavailable_code=recipient.unavailable_code, queue_id=queue_id,
                   source=lower_name(source), reason=reason, forced_by=recipient.forced_by,
                   calls_taken=calls, offers=offers, talk_ms=talk_ms, idle_since_ms=idle_since,
                   consecutive_misses=misses, **_by(changed_by))

    def _emit(self, type_: str, entity_id: str, **data: Any) -> None:
        event = DomainEvent(type_, entity_id, self.clock.now_ms(), data, self.account_id)
        self.sink(event)
        if type_.startswith("recipient."):
            for listener in self._agent_listeners.get(entity_id, ()):
                try:
                    listener(event)
                except Exception:  # a desktop's trouble must never break a pass half-applied
                    log.exception("agent listener of %s failed on %s", entity_id, type_)
            if self._supervisor_watchers and type_ == "recipient.state_changed":
                self._tell_supervisors(event)

    def _new_id(self, now_ms: int) -> str:
        """A unique id that sorts by creation time (48-bit ms, then 64 random bits):
        stored rows keyed by it are appended in order, not scattered over the index."""
        return f"{now_ms:012x}{self._ids.getrandbits(64):016x}"

    def _changed(self) -> None:
        if not self.pass_requested:
            self.pass_requested = True
            self.on_change(self)

    # ===================================================== agent settings (seed 004)

    def _dispatch_limits(self, config: RecipientConfig) -> tuple[int, int]:
        """(bounced-call limit, guard timer ms) as the dispatcher takes them: effective values."""
        applied = effective(config, self.agent_settings)
        return applied.bounced_call_limit, applied.guard_timer_ms

    def effective_settings(self, recipient_id: str):
        """The recipient's settings as they apply (its own or the account's defaults)."""
        return effective(self.recipient(recipient_id).config, self.agent_settings)

    def _validated_recipient(self, config: RecipientConfig) -> RecipientConfig:
        """``config`` if valid here: its bounds, plus a threshold_profile and an
        outgoing_call_dnis naming what the account has."""
        found = config.problems()
        if config.threshold_profile and self.agent_settings.profile(config.threshold_profile) is None:
            found.append(("threshold_profile", f"unknown threshold profile {config.threshold_profile!r}"))
        if config.outgoing_call_dnis and self.dnis_queue(config.outgoing_call_dnis) is None:
            found.append(("outgoing_call_dnis", f"no queue answers DNIS {config.outgoing_call_dnis!r}"))
        if found:
            raise InvalidArgument(*found)
        return config

    def _check_unavailable_code(self, recipient: LiveRecipient, code: str) -> None:
        """An agent's AWAY code: an active account code when the account lists
        any, and one of the recipient's own when it lists any."""
        account_codes = self.agent_settings.active_codes()
        own = recipient.config.unavailable_codes
        if account_codes and code not in account_codes:
            raise InvalidArgument.field("unavailable_code", f"{code!r} is not one of the account's active "
                                                            "unavailable codes")
        if own and code not in own:
            raise InvalidArgument.field("unavailable_code",
                                        f"{code!r} is not one of the recipient's unavailable_codes")
        if not account_codes and not own:
            raise InvalidArgument.field("unavailable_code",
                                        f"{code!r} is not one of the recipient's unavailable_codes")

    def set_agent_settings(self, settings: AgentSettings) -> AgentSettings:
        """Replace the account's agent settings. Every recipient following a
        default gets the new value at once (dispatcher limits, device forcing).
        A threshold profile still named by a recipient cannot go."""
        found = settings.problems()
        if found:
            raise InvalidArgument(*found)
        names = {profile.name for profile in settings.threshold_profiles}
        using = sorted(r.id for r in self.recipients.values()
                       if r.config.threshold_profile and r.config.threshold_profile not in names)
        if using:
            raise FailedPrecondition(f"threshold profile still used by recipients {', '.join(using[:10])}")
        now = self.clock.now_ms()
        settings = dataclasses.replace(settings, update_time_ms=now)
        self.agent_settings = settings
        for recipient in self.recipients.values():
            config = recipient.config
            if config.use_default_guard_timer or config.use_default_unavailable_settings:
                self.dispatcher.update_recipient(recipient.handle, self._skill_levels(config.skills, "skills"),
                                                 *self._dispatch_limits(config))
                self._apply_device(recipient, now)
        self._next_threshold_check_ms = 0
        self._changed()
        return settings

    def restore_agent_settings(self, settings: AgentSettings) -> None:
        """Bring back stored settings, before the recipients: no validation."""
        self.agent_settings = settings

    # ======================================================== device state

    def report_device_state(self, recipient_id: str, dnd: bool | None = None, personal_call: bool | None = None,
                            reachable: bool | None = None) -> LiveRecipient:
        """The phone system's view of the recipient's device (None = unchanged).
        DND, a personal call or an unreachable device force a logged-in
        recipient AWAY (codes dnd, personal_call, not_reachable) where its
        effective settings say so; when every cause has cleared it gets back
        the availability it had, unless it changed availability itself
        meanwhile."""
        recipient = self.recipient(recipient_id)
        if dnd is not None:
            recipient.dnd = dnd
        if personal_call is not None:
            recipient.personal_call = personal_call
        if reachable is not None:
            recipient.reachable = reachable
        self._apply_device(recipient, self.clock.now_ms())
        self._changed()
        return recipient

    def set_desktop_connected(self, recipient_id: str, connected: bool) -> None:
        """The agent's Connect stream opened or dropped: a drop counts as not reachable."""
        recipient = self.recipients.get(recipient_id)
        if recipient is None or recipient.desktop_lost == (not connected):
            return
        recipient.desktop_lost = not connected
        self._apply_device(recipient, self.clock.now_ms())
        self._changed()

    def _apply_device(self, recipient: LiveRecipient, now: int) -> None:
        if not recipient.logged_in:
            recipient.device_causes, recipient.before_forcing = frozenset(), None
            return
        applied = effective(recipient.config, self.agent_settings)
        causes = frozenset(cause for cause, on in (
            ("dnd", recipient.dnd and applied.force_away_on_dnd),
            ("personal_call", recipient.personal_call and applied.force_away_on_personal_calls),
            ("not_reachable", (not recipient.reachable or recipient.desktop_lost)
             and applied.force_away_on_not_reachable)) if on)
        old = recipient.device_causes
        if causes == old:
            return
        recipient.device_causes = causes
        device_forced = recipient.forced_by in DEVICE_CODES and recipient.before_forcing is not None
        if causes:
            code = next(c for c in DEVICE_CODES if c in causes)
            if causes - old and not device_forced:
                recipient.before_forcing = (recipient.availability, recipient.unavailable_code, recipient.forced_by)
                self._force_away(recipient, code, now)
            elif device_forced and code != recipient.forced_by:
                self._force_away(recipient, code, now, already_unready=True)
            return
        before, recipient.before_forcing = recipient.before_forcing, None
        if device_forced:
            recipient.availability, recipient.unavailable_code, recipient.forced_by = before
            self._staffing += 1
            self.dispatcher.set_ready(recipient.handle, recipient.routable, now)
            self._sync_state(recipient, now, EventSource.SYSTEM, "device_restored", force=True)

    # ========================================================== memberships

    def recipient_queues(self, recipient_id: str) -> list[dict[str, Any]]:
        """The recipient's queues (the seed's call_centers), in queue order."""
        recipient = self.recipient(recipient_id)
        return [{"queue_id": queue.id, "name": queue.config.name,
                 "available": recipient.logged_in and queue.id not in recipient.away_queues,
                 "tier": queue.members[recipient_id].tier, "log_off_allowed": queue.config.allow_self_join}
                for queue in self.queues.values() if recipient_id in queue.members]

    def joinable_queues(self, recipient_id: str) -> list[LiveQueue]:
        """Queues allowing self-join that the recipient is not a member of."""
        self.recipient(recipient_id)
        return [q for q in self.queues.values() if q.config.allow_self_join and recipient_id not in q.members]

    def set_recipient_queues(self, recipient_id: str, queue_ids: Iterable[str]) -> list[dict[str, Any]]:
        """Replace the recipient's memberships of self-join queues with
        ``queue_ids`` (tier 1 when joining). Memberships of other queues are
        kept; naming one it is not a member of is FAILED_PRECONDITION."""
        recipient = self.recipient(recipient_id)
        wanted = list(dict.fromkeys(queue_ids))
        for i, queue_id in enumerate(wanted):
            if not queue_id:
                raise InvalidArgument.field(f"queue_ids[{i}]", "is empty")
            queue = self.queue(queue_id)
            if not queue.config.allow_self_join and recipient_id not in queue.members:
                raise FailedPrecondition(f"queue {queue_id} does not allow agents to join it themselves "
                                         "(allow_self_join is off)")
        for queue_id in wanted:
            if recipient_id not in self.queues[queue_id].members:
                self.add_members(queue_id, [Member(recipient_id)])
        leaving = [q.id for q in self.queues.values()
                   if q.config.allow_self_join and recipient_id in q.members and q.id not in wanted]
        for queue_id in leaving:
            self.remove_members(queue_id, [recipient_id])
        return self.recipient_queues(recipient.id)

    # ================================================================= DNIS

    def dnis_queue(self, number: str) -> LiveQueue | None:
        for queue in self.queues.values():
            if any(d.number == number for d in queue.config.dnis):
                return queue
        return None

    def recipient_dnis(self, recipient_id: str) -> list[tuple[str, Any]]:
        """(queue id, Dnis) of the recipient's queues: what it may present."""
        self.recipient(recipient_id)
        return [(q.id, d) for q in self.queues.values() if recipient_id in q.members for d in q.config.dnis]

    # ========================================================== supervision

    def supervised(self, supervisor_id: str, queue_id: str) -> list[str]:
        self.recipient(supervisor_id)
        self.queue(queue_id)
        return list(self.supervision.get((supervisor_id, queue_id), ()))

    def set_supervised(self, supervisor_id: str, queue_id: str, recipient_ids: Iterable[str],
                       mode: str = "set") -> list[str]:
        """``mode`` set (replace), add or remove; returns the list, ordered by id."""
        current = self.supervised(supervisor_id, queue_id)
        ids = list(dict.fromkeys(recipient_ids))
        problems = [(f"recipient_ids[{i}]", "is empty") for i, rid in enumerate(ids) if not rid]
        problems += [(f"recipient_ids[{i}]", "cannot supervise itself") for i, rid in enumerate(ids)
                     if rid == supervisor_id]
        if problems:
            raise InvalidArgument(*problems)
        if mode != "remove":
            for rid in ids:
                self.recipient(rid)
        if mode == "set":
            result = ids
        elif mode == "add":
            result = current + [rid for rid in ids if rid not in current]
        else:
            result = [rid for rid in current if rid not in ids]
        result = sorted(result)
        if result:
            self.supervision[(supervisor_id, queue_id)] = result
        else:
            self.supervision.pop((supervisor_id, queue_id), None)
        self._supervision_changed()
        return result

    def _supervision_changed(self) -> None:
        self._supervised_sets.clear()
        self._supervisors_of = None

    def supervised_by(self, supervisor_id: str) -> frozenset[str]:
        """The recipients ``supervisor_id`` supervises in any queue (cached:
        event filters ask for every event)."""
        found = self._supervised_sets.get(supervisor_id)
        if found is None:
            found = self._supervised_sets[supervisor_id] = frozenset(
                rid for (sid, _), ids in self.supervision.items() if sid == supervisor_id for rid in ids)
        return found

    def check_supervises(self, supervisor_id: str, recipient_id: str) -> None:
        """PermissionDenied unless ``supervisor_id`` is ``recipient_id`` or supervises it."""
        if supervisor_id != recipient_id and recipient_id not in self.supervised_by(supervisor_id):
            raise PermissionDenied(f"recipient {supervisor_id} does not supervise {recipient_id}")

    def watch_supervised(self, supervisor_id: str, listener: Callable[[DomainEvent], None]) -> Callable[[], None]:
        """Call ``listener`` with every ``recipient.state_changed`` of the
        recipients ``supervisor_id`` supervises at the time; returns the detach."""
        self._supervisor_watchers.setdefault(supervisor_id, []).append(listener)

        def detach() -> None:
            watchers = self._supervisor_watchers.get(supervisor_id, [])
            if listener in watchers:
                watchers.remove(listener)
            if not watchers:
                self._supervisor_watchers.pop(supervisor_id, None)

        return detach

    def _tell_supervisors(self, event: DomainEvent) -> None:
        if self._supervisors_of is None:  # rebuilt after a change: per event, a lookup, not a scan
            index: dict[str, list[str]] = {}
            for (supervisor_id, _), ids in self.supervision.items():
                for rid in ids:
                    index.setdefault(rid, []).append(supervisor_id)
            self._supervisors_of = {rid: tuple(dict.fromkeys(sids)) for rid, sids in index.items()}
        for supervisor_id in self._supervisors_of.get(event.entity_id, ()):
            for listener in list(self._supervisor_watchers.get(supervisor_id, ())):
                try:
                    listener(event)
                except Exception:  # as with agent listeners: never break a pass half-applied
                    log.exception("supervisor listener of %s failed on %s", supervisor_id, event.type)

    def search_supervised(self, supervisor_id: str, queue_id: str, criteria: list[tuple[str, str, str, bool]],
                          combine_with_or: bool = False, limit: int = 0) -> list[LiveRecipient]:
        """The supervised recipients matching ``criteria`` ((field, mode,
        value, case_insensitive); field last_name, first_name, user_id,
        extension or dn; mode starts, contains or equals), all of them (AND)
        or any (OR); at most ``limit`` (0 = all)."""
        if combine_with_or and not criteria:
            raise InvalidArgument.field("criteria", "combine_with_or needs at least one criterion")
        if limit < 0:
            raise InvalidArgument.field("response_size_limit", "must be >= 0 (0 is no limit)")
        found = []
        for rid in self.supervised(supervisor_id, queue_id):
            recipient = self.recipients.get(rid)
            if recipient is None:
                continue
            matches = [_matches(recipient.config, *criterion) for criterion in criteria]
            if not criteria or (any(matches) if combine_with_or else all(matches)):
                found.append(recipient)
                if limit and len(found) >= limit:
                    break
        return found

    # ========================================================== thresholds

    def check_thresholds(self, now: int | None = None) -> None:
        """Compare every logged-in recipient having a threshold profile with
        its limits: ``recipient.threshold_exceeded`` once when a limit is
        breached, ``recipient.threshold_cleared`` once when it no longer is.
        The passes call it (at most every THRESHOLD_CHECK_MS)."""
        now = self.clock.now_ms() if now is None else now
        settings = self.agent_settings
        for recipient in self.recipients.values():
            name = recipient.config.threshold_profile or settings.default_threshold_profile
            profile = settings.profile(name) if name and recipient.logged_in else None
            breached: dict[str, tuple[int, int]] = {}
            if profile is not None:
                in_state_s = (now - recipient.state_since_ms) // 1000
                for metric, state in (("wrapup", RecipientState.WRAPUP), ("away", RecipientState.AWAY),
                                      ("ringing", RecipientState.RINGING)):
                    limit = profile.limit(metric)
                    if limit and recipient.state == state and in_state_s >= limit:
                        breached[metric] = (limit, in_state_s)
                limit = profile.max_waiting_calls
                if limit:
                    waiting = sum(len(self.queues[qid].line) for qid in recipient.queues)
                    if waiting > limit:
                        breached["waiting_calls"] = (limit, waiting)
            for metric in THRESHOLD_METRICS:
                if metric in breached and metric not in recipient.thresholds:
                    limit, value = breached[metric]
                    recipient.thresholds[metric] = limit
                    self._emit("recipient.threshold_exceeded", recipient.id, profile=name, metric=metric,
                               reason=metric, limit=limit, value=value)
                elif metric not in breached and metric in recipient.thresholds:
                    limit = recipient.thresholds.pop(metric)
                    self._emit("recipient.threshold_cleared", recipient.id, profile=name, metric=metric,
                               reason=metric, limit=limit)

    # ============================================================ queries

    def queue(self, queue_id: str) -> LiveQueue:
        queue = self.queues.get(queue_id)
        if queue is None:
            raise NotFound(f"queue {queue_id} not found")
        return queue

    def recipient(self, recipient_id: str) -> LiveRecipient:
        recipient = self.recipients.get(recipient_id)
        if recipient is None:
            raise NotFound(f"recipient {recipient_id} not found")
        return recipient

    def session(self, session_id: str) -> LiveSession:
        session = self.sessions.get(session_id) or self.ended.get(session_id)
        if session is None:
            raise NotFound(f"session {session_id} not found")
        return session

    def position(self, session: LiveSession) -> int:
        """1-based place in its queue's line; 0 unless waiting. O(log n)."""
        if session.state != SessionState.WAITING:
            return 0
        return self.queues[session.queue_id].line.index(session.line_key()) + 1

    def estimated_wait_ms(self, session: LiveSession, position: int = 0) -> int:
        """EWT of a waiting session now; 0 once offered; -1 when unbounded.
        ``position``: its ``position()`` if the caller has it (a search of the line less)."""
        if session.state != SessionState.WAITING:
            return 0
        queue = self.queues[session.queue_id]
        return self._estimate(queue, (position or self.position(session)) - 1)

    def _estimate(self, queue: LiveQueue, ahead: int) -> int:
        free = self.dispatcher.eligible_count(queue.handle)
        version, serving = queue.serving
        if version != self._staffing:
            serving = sum(1 for rid in queue.members if self._serving(self.recipients[rid], queue.id))
            queue.serving = (self._staffing, serving)
        return queue.rate.estimate_ms(ahead, free, serving)

    def estimate_wait_ms(self, queue_id: str, ahead: int) -> int:
        """EWT of a place behind ``ahead`` waiting sessions of the queue (a
        caller holding a virtual place); -1 when nobody serves the queue."""
        return self._estimate(self.queue(queue_id), ahead)

    def _serving(self, recipient: LiveRecipient, queue_id: str) -> bool:
        return recipient.routable and queue_id not in recipient.away_queues

    def queue_status(self, queue_id: str) -> dict[str, Any]:
        """The Qubicle queue status: counts, waits in seconds."""
        queue = self.queue(queue_id)
        now = self.clock.now_ms()
        members = [self.recipients[rid] for rid in queue.members]
        active = sum(1 for r in members if r.logged_in)
        available = sum(1 for r in members if r.state == RecipientState.READY and queue_id not in r.away_queues)
        counters = queue.counters
        average_ms = counters.answered_wait_ms / counters.answered_sessions if counters.answered_sessions else 0
        estimate = self._estimate(queue, len(queue.line))
        longest = 0
        for priority in queue.priorities:
            first = queue.line[queue.line.bisect_left((-priority,))]
            longest = max(longest, now - first[1])
        return {
            "queue_id": queue_id,
            "active_recipient_count": active,
            "available_recipient_count": available,
            "estimated_wait": -1 if estimate < 0 else round(estimate / 1000),
            "average_wait": round(average_ms / 1000),
            "recipient_count": len(members),
            "active_session_count": len(queue.line) + queue.offering,
            "waiting_count": len(queue.line),
            "total_sessions": counters.total_sessions,
            "missed_sessions": counters.missed_sessions,
            "abandoned_sessions": counters.abandoned_sessions,
            "longest_wait": round(longest / 1000),
            "ewt_mean_abs_error_ms": queue.rate.mean_abs_error_ms,
        }

    def recipient_status(self, recipient_id: str) -> dict[str, Any]:
        recipient = self.recipient(recipient_id)
        _, calls, offers, talk_ms, misses, idle_since = self.dispatcher.recipient_stats(recipient.handle)
        return {
            "recipient_id": recipient_id,
            "state": recipient.state,
            "availability": recipient.availability,
            "queue_availability": {
                qid: Availability.AWAY if qid in recipient.away_queues else Availability.READY
                for qid in sorted(recipient.queues)},
            "unavailable_code": recipient.unavailable_code,
            "forced_by": recipient.forced_by,
            "current_session_id": recipient.session.id if recipient.session else
            (recipient.offer.session.id if recipient.offer else ""),
            "current_offer_id": recipient.offer.id if recipient.offer else "",
            "idle_since_ms": idle_since,
            "state_since_ms": recipient.state_since_ms,
            "wrapup_until_ms": recipient.wrapup_until_ms if recipient.in_wrapup else 0,
            "calls_taken": calls,
            "offers": offers,
            "talk_ms": talk_ms,
            "consecutive_misses": misses,
            "dnd": recipient.dnd,
            "personal_call": recipient.personal_call,
            "reachable": recipient.reachable,
            "thresholds_exceeded": sorted(recipient.thresholds),
        }

    def waiting_sessions(self, queue_id: str) -> list[LiveSession]:
        """Waiting sessions of a queue in the order they will be served."""
        queue = self.queue(queue_id)
        return [self.sessions[key[3]] for key in queue.line]


def _by(changed_by: str) -> dict[str, str]:
    """The ``changed_by`` of an event's data: only when a supervisor acted."""
    return {"changed_by": changed_by} if changed_by else {}


def _matches(config: RecipientConfig, field: str, mode: str, value: str, case_insensitive: bool) -> bool:
    first, last = split_name(config)
    text = {"last_name": last, "first_name": first, "user_id": config.id,
            "extension": config.extension_name, "dn": config.agent_number}[field]
    if case_insensitive:
        text, value = text.casefold(), value.casefold()
    if mode == "starts":
        return text.startswith(value)
    if mode == "contains":
        return value in text
    return text == value
