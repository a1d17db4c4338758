"""The durable state each event stands for, as storage ops.

Storage is written from events, so a change is durable exactly when its
event is: the engine never talks to storage itself.

- ``state_ops``: configuration (queues, recipients, memberships), a pure
  function of each event.
- ``LiveState``: live sessions, recipient state, offers with their outcome,
  finished sessions and recipient activity intervals. A ``PutLiveSession``
  or ``PutRecipientState`` replaces a whole document while most events name
  only what changed, so it keeps the stored document of every live session
  and recipient, built from the events alone (and, after a restart, from
  the snapshot), and writes it again when an event changes it.

``session_restore_args`` and ``recipient_restore_args`` turn those stored
documents back into the keyword arguments of ``Floor.restore_session`` and
``Floor.restore_recipient_state``.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from typing import Any

from qroute.domain.enums import Availability, EventSource, RecipientState, SessionState
from qroute.domain.events import DomainEvent
from qroute.storage import (
    DeleteConfig,
    DeleteLiveSession,
    DeleteMembership,
    DeleteRecipientState,
    InsertActivity,
    InsertFinishedSession,
    InsertOffer,
    Op,
    PutConfig,
    PutLiveSession,
    PutMembership,
    PutRecipientState,
)


def state_ops(event: DomainEvent) -> list[Op]:
    """The configuration changes an event stands for."""
    account, entity_id = event.account_id, event.entity_id
    kind, _, action = event.type.partition(".")
    if action in ("created", "updated") and kind in ("queue", "recipient"):
        return [PutConfig(account, kind, entity_id, event.data["config"])]
    if event.type == "queue.deleted":
        return [DeleteConfig(account, kind, entity_id), DeleteConfig(account, QUEUE_STATS, entity_id)]
    if action == "deleted" and kind == "recipient":
        return [DeleteConfig(account, kind, entity_id)]
    if event.type == "queue.member_added":
        doc = {"tier": event.data["tier"], "weight": event.data["weight"]}
        return [PutMembership(account, entity_id, event.data["recipient_id"], doc)]
    if event.type == "queue.member_removed":
        return [DeleteMembership(account, entity_id, event.data["recipient_id"])]
    return []


# --- queue counters ------------------------------------------------------------

QUEUE_STATS = "queue_stats"  # the config kind of a queue's counters and service rate

# Events after which a queue's counters or service rate may have changed: it was
# entered (or refused entry), left (answered, abandoned, timed out), an offer of it
# was missed, or a call of it ended (the handle time).
_COUNTED = frozenset({"queue.session_joined", "queue.session_left", "session.timed_out", "recipient.missed",
                      "session.ended", "session.transferred", "recipient.wrapup_started"})


class QueueStats:
    """A batch op source of the journal: once per write, the counters and
    service rate of every queue its events touched, as ``stats_of(account_id,
    queue_id)`` has them then (None: the queue is gone). One document per
    queue however many callers a write holds."""

    def __init__(self, stats_of: Callable[[str, str], dict | None]) -> None:
        self._stats_of = stats_of

    def __call__(self, events: list[DomainEvent]) -> list[Op]:
        touched: dict[tuple[str, str], None] = {}
        for event in events:
            if event.type not in _COUNTED:
                continue
            if event.type.startswith("queue."):
                touched[(event.account_id, event.entity_id)] = None
                continue
            for key in ("queue_id", "from_queue_id"):
                queue_id = event.data.get(key)
                if queue_id:
                    touched[(event.account_id, queue_id)] = None
        ops: list[Op] = []
        for account_id, queue_id in touched:
            doc = self._stats_of(account_id, queue_id)
            if doc is not None:
                ops.append(PutConfig(account_id, QUEUE_STATS, queue_id, doc))
        return ops


# --- stored documents ----------------------------------------------------------
#
# A live session's document (``live_sessions.doc``):
#   queue_id, state ("waiting" | "connected"; a ringing session is stored as
#   waiting, since that is what it becomes after a restart), priority,
#   entered_at_ms, seq (arrival order), joined_at_ms (when it joined its
#   current queue: its queue timeout counts from there), queues_visited,
#   estimated_wait_ms, and unless empty, zero or false: caller_number,
#   caller_name, skills, properties, callback, recipient_id, answered_at_ms,
#   wait_ms, ring_ms, talk_ms.
#
# A recipient's document (``recipient_states.doc``):
#   logged_in, availability ("ready" | "away"), unavailable_code, forced_by,
#   away_queues (ids of queues it is away for), state (as in
#   recipient.state_changed), state_since_ms, session_id (its connected
#   call), offer (what rings at it: offer_id, session_id, queue_id,
#   offered_at_ms, ring_timeout_ms; or null), wrapup_session_id,
#   wrapup_until_ms (0 unless in wrap-up), wrapup_since_ms, logout_pending
#   (the source of a logout waiting for the call to end, or ""),
#   logout_pending_by (the supervisor who forced that logout, or ""),
#   calls_taken, offers, talk_ms, idle_since_ms (the routers' counters),
#   consecutive_misses (towards the bounced-call limit),
#   logged_in_since_ms and activity ([kind, code, since_ms] of the open
#   ready/away interval, or null).

_RECIPIENT_DEFAULTS: dict[str, Any] = {
    "logged_in": False, "availability": "away", "unavailable_code": "", "forced_by": "",
    "away_queues": [], "state": "logged_out", "state_since_ms": 0, "session_id": "", "offer": None,
    "wrapup_session_id": "", "wrapup_until_ms": 0, "wrapup_since_ms": 0, "logout_pending": "",
    "calls_taken": 0, "offers": 0, "talk_ms": 0, "idle_since_ms": 0, "consecutive_misses": 0,
    "logout_pending_by": "", "logged_in_since_ms": 0, "activity": None,
}

_SESSION_OPTIONAL = ("caller_number", "caller_name", "skills", "properties", "callback")

# Recipient events whose counters ride along (recipient.state_changed).
_COUNTERS = ("calls_taken", "offers", "talk_ms", "idle_since_ms", "consecutive_misses")


class _Account:
    __slots__ = ("sessions", "ringing", "recipients")

    def __init__(self) -> None:
        self.sessions: dict[str, dict | str] = {}  # session id -> its stored document (or its JSON)
        self.ringing: dict[str, int] = {}          # session id -> since when it rings (not stored)
        self.recipients: dict[str, dict] = {}      # recipient id -> its stored document


class LiveState:
    """A batch op source of the journal for live state (see the module docstring).

    Called with the events of each journal write, in sequence order; the
    ops it returns commit in the same transaction as them. Documents are
    kept per account; ``load`` seeds them from a startup snapshot.
    """

    def __init__(self) -> None:
        self._accounts: dict[str, _Account] = {}
        # (account, id) of the documents the batch being turned into ops changed, in order
        self._changed_sessions: dict[tuple[str, str], None] = {}
        self._changed_recipients: dict[tuple[str, str], None] = {}
        self._handlers: dict[str, Callable[[_Account, DomainEvent], list[Op] | None]] = {
            "session.created": self._session_created,
            "queue.session_joined": self._session_joined,
            "session.offered": self._session_offered,
            "session.requeued": self._session_requeued,
            "session.connected": self._session_connected,
            "session.transferred": self._session_transferred,
            "session.ended": self._session_ended,
            "recipient.logged_in": self._logged_in,
            "recipient.logged_out": self._logged_out,
            "recipient.state_changed": self._state_changed,
            "recipient.offered": self._recipient_offered,
            "recipient.connected": self._offer_accepted,
            "recipient.rejected": self._offer_rejected,
            "recipient.missed": self._offer_missed,
            "recipient.offer_cancelled": self._offer_cancelled,
            "recipient.wrapup_started": self._wrapup_started,
            "recipient.wrapup_ended": self._wrapup_ended,
            "recipient.deleted": self._recipient_deleted,
            "queue.member_removed": self._member_removed,
        }

    def __call__(self, events: list[DomainEvent]) -> list[Op]:
        """The ops of ``events`` (one journal write). A document that several
        of them change is encoded and written once, as the last one left it:
        the row is replaced whole anyway."""
        ops: list[Op] = []
        self._changed_sessions.clear()
        self._changed_recipients.clear()
        handlers, accounts = self._handlers, self._accounts
        for event in events:
            handler = handlers.get(event.type)
            if handler is None:
                continue
            account = accounts.get(event.account_id)
            if account is None:
                account = accounts[event.account_id] = _Account()
            produced = handler(account, event)
            if produced:
                ops.extend(produced)
        for account_id, session_id in self._changed_sessions:
            account = accounts[account_id]
            doc = account.sessions.get(session_id)
            if isinstance(doc, dict):  # not ended meanwhile
                op = PutLiveSession(account_id, session_id, doc)
                account.sessions[session_id] = op.doc_json
                ops.append(op)
        for account_id, recipient_id in self._changed_recipients:
            doc = accounts[account_id].recipients.get(recipient_id)
            if doc is not None:  # not deleted meanwhile
                ops.append(PutRecipientState(account_id, recipient_id, doc))
        return ops

    # ------------------------------------------------------------- startup

    def load(self, account_id: str, sessions: Iterable[tuple[str, dict]],
             recipients: Iterable[tuple[str, dict]]) -> None:
        """Seed an account's documents from what storage holds (startup),
        before the engine emits anything. The dicts are kept, not copied."""
        account = self._accounts.setdefault(account_id, _Account())
        account.sessions.update(sessions)
        for recipient_id, doc in recipients:
            account.recipients[recipient_id] = {**_RECIPIENT_DEFAULTS, **doc}

    def forget_account(self, account_id: str) -> None:
        self._accounts.pop(account_id, None)

    def session_doc(self, account_id: str, session_id: str) -> dict | None:
        """The stored document of a live session (for tests and tools)."""
        account = self._accounts.get(account_id)
        doc = account.sessions.get(session_id) if account else None
        return json.loads(doc) if isinstance(doc, str) else doc

    def recipient_doc(self, account_id: str, recipient_id: str) -> dict | None:
        account = self._accounts.get(account_id)
        return account.recipients.get(recipient_id) if account else None

    # ------------------------------------------------------------ sessions
    #
    # A session's document is kept as the JSON its last PutLiveSession wrote
    # (a third of the memory of the dict, and already encoded), and decoded
    # when an event changes it; a dict until its first write, or as loaded.

    @staticmethod
    def _doc(account: _Account, session_id: str) -> dict | None:
        doc = account.sessions.get(session_id)
        if isinstance(doc, str):
            doc = account.sessions[session_id] = json.loads(doc)
        return doc

    def _put(self, account: _Account, event: DomainEvent, session_id: str, doc: dict) -> None:
        self._changed_sessions[event.account_id, session_id] = None  # written at the end of the batch

    @staticmethod
    def _session_created(account: _Account, event: DomainEvent) -> None:
        data = event.data
        # Stored once it joins a queue (queue.session_joined follows, unless
        # the queue turns it away and it ends at once). Fields at their
        # default are left out: smaller to write, quicker to load.
        doc = {"queue_id": data["queue_id"], "state": "waiting", "priority": data["priority"],
               "entered_at_ms": data["entered_at_ms"], "seq": data.get("seq", 0), "joined_at_ms": event.time_ms,
               "queues_visited": [data["queue_id"]]}
        for key in _SESSION_OPTIONAL:
            value = data.get(key)
            if value:
                doc[key] = value
        account.sessions[event.entity_id] = doc

    def _session_joined(self, account: _Account, event: DomainEvent) -> list[Op] | None:
        session_id = event.data["session_id"]
        doc = self._doc(account, session_id)
        if doc is None:
            return None
        doc["queue_id"] = event.entity_id
        doc["state"] = "waiting"
        doc["joined_at_ms"] = event.time_ms
        doc["estimated_wait_ms"] = event.data["estimated_wait_ms"]
        return self._put(account, event, session_id, doc)

    @staticmethod
    def _session_offered(account: _Account, event: DomainEvent) -> None:
        # Not stored: a session ringing when the node stops waits again after
        # the restart, which its stored "waiting" already says.
        account.ringing.setdefault(event.entity_id, event.time_ms)  # its first offer (ring_all)

    def _session_requeued(self, account: _Account, event: DomainEvent) -> list[Op] | None:
        doc = self._doc(account, event.entity_id)
        if doc is None:
            return None
        ringing_since = account.ringing.pop(event.entity_id, 0)
        if ringing_since:
            doc["ring_ms"] = doc.get("ring_ms", 0) + event.time_ms - ringing_since
        doc["state"] = "waiting"
        return self._put(account, event, event.entity_id, doc)

    def _session_connected(self, account: _Account, event: DomainEvent) -> list[Op] | None:
        account.ringing.pop(event.entity_id, None)
        doc = self._doc(account, event.entity_id)
        if doc is None:
            return None
        data = event.data
        doc["state"] = "connected"
        doc["recipient_id"] = data["recipient_id"]
        doc["answered_at_ms"] = event.time_ms
        doc["wait_ms"] = data["wait_ms"]
        doc["ring_ms"] = data["ring_ms"]
        return self._put(account, event, event.entity_id, doc)

    def _session_transferred(self, account: _Account, event: DomainEvent) -> None:
        # Stored when it joins the new queue (queue.session_joined follows) or ends.
        ringing_since = account.ringing.pop(event.entity_id, 0)
        doc = self._doc(account, event.entity_id)
        if doc is None:
            return
        if doc["state"] == "connected":
            doc["talk_ms"] = doc.get("talk_ms", 0) + event.time_ms - doc["answered_at_ms"]
        elif ringing_since:
            doc["ring_ms"] = doc.get("ring_ms", 0) + event.time_ms - ringing_since
        doc["state"] = "waiting"
        doc["queue_id"] = event.data["queue_id"]
        doc["queues_visited"].append(event.data["queue_id"])

    def _session_ended(self, account: _Account, event: DomainEvent) -> list[Op]:
        data = event.data
        account.ringing.pop(event.entity_id, None)
        doc = self._doc(account, event.entity_id) or {}
        account.sessions.pop(event.entity_id, None)
        record = {key: doc[key] for key in ("caller_number", "caller_name", "priority", "skills", "properties",
                                            "callback", "seq", "joined_at_ms") if key in doc}
        record["answered_at_ms"] = data.get("answered_at_ms", doc.get("answered_at_ms", 0))
        record["estimated_wait_ms"] = data["estimated_wait_ms"]
        return [
            DeleteLiveSession(event.account_id, event.entity_id),
            InsertFinishedSession(event.account_id, event.entity_id, data["queue_id"] or None,
                                  data["recipient_id"] or None, data["entered_at_ms"], event.time_ms,
                                  data["end_reason"], data["wait_ms"], data["ring_ms"], data["talk_ms"],
                                  data["queues_visited"], record),
        ]

    # ---------------------------------------------------------- recipients

    @staticmethod
    def _recipient(account: _Account, recipient_id: str) -> dict:
        doc = account.recipients.get(recipient_id)
        if doc is None:
            doc = account.recipients[recipient_id] = {**_RECIPIENT_DEFAULTS, "away_queues": []}
        return doc

    def _logged_in(self, account: _Account, event: DomainEvent) -> None:
        doc = self._recipient(account, event.entity_id)
        doc["logged_in"] = True
        doc["logged_in_since_ms"] = event.time_ms
        # stored with the recipient.state_changed that follows

    def _logged_out(self, account: _Account, event: DomainEvent) -> None:
        # the logged-in interval closes, and the document is stored, with the
        # recipient.state_changed that follows
        doc = self._recipient(account, event.entity_id)
        doc["logout_pending"] = doc["logout_pending_by"] = ""

    def _state_changed(self, account: _Account, event: DomainEvent) -> list[Op]:
        data = event.data
        doc = self._recipient(account, event.entity_id)
        ops: list[Op] = []
        if data["queue_id"]:  # availability for one queue
            away = set(doc["away_queues"])
            (away.add if data["availability"] == "away" else away.discard)(data["queue_id"])
            doc["away_queues"] = sorted(away)
        else:
            state = data["state"]
            logged_in = state != "logged_out"
            doc["logged_in"] = logged_in
            doc["availability"] = data["availability"]
            doc["unavailable_code"] = data["unavailable_code"]
            doc["forced_by"] = data["forced_by"]
            if state != doc["state"]:
                doc["state"] = state
                doc["state_since_ms"] = event.time_ms
            if state != "busy":
                doc["session_id"] = ""
            if state != "ringing":
                doc["offer"] = None
            reason = data["reason"]
            if reason == "logout_pending":
                doc["logout_pending"] = data["source"]
                doc["logout_pending_by"] = data.get("changed_by", "")
            elif reason == "logout_cancelled" or not logged_in:
                doc["logout_pending"] = doc["logout_pending_by"] = ""
            # the open ready/away interval: closes when availability or code changes
            interval = [data["availability"], data["unavailable_code"]] if logged_in else None
            current = doc["activity"]
            if current is not None and (interval is None or current[:2] != interval):
                kind, code, since = current
                ops.append(InsertActivity(event.account_id, event.entity_id, kind, code or None, since,
                                          event.time_ms))
                current = None
            if current is None and interval is not None:
                current = [*interval, event.time_ms]
            doc["activity"] = current
            if not logged_in and doc["logged_in_since_ms"]:
                ops.append(InsertActivity(event.account_id, event.entity_id, "logged_in", None,
                                          doc["logged_in_since_ms"], event.time_ms))
                doc["logged_in_since_ms"] = 0
        for key in _COUNTERS:
            if key in data:
                doc[key] = data[key]
        self._changed_recipients[event.account_id, event.entity_id] = None  # written at the end of the batch
        return ops

    def _recipient_offered(self, account: _Account, event: DomainEvent) -> None:
        data = event.data
        self._recipient(account, event.entity_id)["offer"] = {
            "offer_id": data["offer_id"], "session_id": data["session_id"], "queue_id": data["queue_id"],
            "offered_at_ms": event.time_ms, "ring_timeout_ms": data["ring_timeout_ms"]}

    def _offer_ended(self, account: _Account, event: DomainEvent, outcome: str, capped: bool) -> list[Op]:
        """The offer that rang at the event's recipient is over; ``capped``:
        it ended by its ring deadline at the latest (a miss, a restart)."""
        doc = self._recipient(account, event.entity_id)
        offer = doc["offer"]
        if offer is None or offer["offer_id"] != event.data["offer_id"]:
            return []
        doc["offer"] = None
        offered_at = offer["offered_at_ms"]
        ended_at = event.time_ms
        if capped:
            ended_at = max(offered_at, min(ended_at, offered_at + offer["ring_timeout_ms"]))
        return [InsertOffer(event.account_id, offer["offer_id"], offer["session_id"], offer["queue_id"] or None,
                            event.entity_id, offered_at, ended_at, outcome, ended_at - offered_at)]

    def _offer_accepted(self, account: _Account, event: DomainEvent) -> list[Op]:
        self._recipient(account, event.entity_id)["session_id"] = event.data["session_id"]
        return self._offer_ended(account, event, "accepted", False)

    def _offer_rejected(self, account: _Account, event: DomainEvent) -> list[Op]:
        return self._offer_ended(account, event, "rejected", False)

    def _offer_missed(self, account: _Account, event: DomainEvent) -> list[Op]:
        return self._offer_ended(account, event, "missed", True)

    def _offer_cancelled(self, account: _Account, event: DomainEvent) -> list[Op]:
        return self._offer_ended(account, event, "cancelled", event.data["reason"] == "restarted")

    def _wrapup_started(self, account: _Account, event: DomainEvent) -> None:
        doc = self._recipient(account, event.entity_id)
        doc["session_id"] = ""
        doc["wrapup_session_id"] = event.data["session_id"]
        doc["wrapup_since_ms"] = event.time_ms
        doc["wrapup_until_ms"] = event.time_ms + event.data["wrapup_ms"]
        # stored with the recipient.state_changed that follows

    def _wrapup_ended(self, account: _Account, event: DomainEvent) -> list[Op]:
        doc = self._recipient(account, event.entity_id)
        ops = []
        if doc["wrapup_since_ms"]:
            # the pass that ends a wrap-up may run after its deadline: it ended then
            ended_at = max(doc["wrapup_since_ms"], min(event.time_ms, doc["wrapup_until_ms"]))
            ops.append(InsertActivity(event.account_id, event.entity_id, "wrapup", None, doc["wrapup_since_ms"],
                                      ended_at))
        doc["wrapup_session_id"] = ""
        doc["wrapup_since_ms"] = doc["wrapup_until_ms"] = 0
        return ops

    @staticmethod
    def _recipient_deleted(account: _Account, event: DomainEvent) -> list[Op]:
        doc = account.recipients.pop(event.entity_id, None)
        ops: list[Op] = []
        if doc is not None:
            now = event.time_ms
            if doc["activity"] is not None:
                kind, code, since = doc["activity"]
                ops.append(InsertActivity(event.account_id, event.entity_id, kind, code or None, since, now))
            if doc["wrapup_since_ms"]:
                ops.append(InsertActivity(event.account_id, event.entity_id, "wrapup", None,
                                          doc["wrapup_since_ms"], now))
            if doc["logged_in"] and doc["logged_in_since_ms"]:
                ops.append(InsertActivity(event.account_id, event.entity_id, "logged_in", None,
                                          doc["logged_in_since_ms"], now))
        ops.append(DeleteRecipientState(event.account_id, event.entity_id))
        return ops

    @staticmethod
    def _member_removed(account: _Account, event: DomainEvent) -> None:
        doc = account.recipients.get(event.data["recipient_id"])
        if doc is not None and event.entity_id in doc["away_queues"]:
            doc["away_queues"] = [q for q in doc["away_queues"] if q != event.entity_id]


# --- restore -------------------------------------------------------------------

_SESSION_ARGS = frozenset({
    "queue_id", "state", "priority", "entered_at_ms", "joined_at_ms", "seq", "caller_number", "caller_name",
    "skills", "properties", "callback", "queues_visited", "estimated_wait_ms", "recipient_id",
    "answered_at_ms", "wait_ms", "ring_ms", "talk_ms"})


def session_restore_args(doc: dict) -> dict[str, Any]:
    """``Floor.restore_session`` keyword arguments (but the id) from a stored
    live session document. Cheap: it runs for every stored session at startup."""
    args = dict(doc) if doc.keys() <= _SESSION_ARGS else {k: v for k, v in doc.items() if k in _SESSION_ARGS}
    args["state"] = SessionState.CONNECTED if args.get("state") == "connected" else SessionState.WAITING
    args.setdefault("priority", 0)
    args.setdefault("seq", 0)
    args.setdefault("joined_at_ms", args["entered_at_ms"])
    return args


def _enum(enum_cls, name: str, default):
    member = enum_cls.__members__.get(str(name).upper())
    return default if member is None else member


def recipient_restore_args(doc: dict) -> dict[str, Any]:
    """``Floor.restore_recipient_state`` keyword arguments (but the id) from
    a stored recipient document."""
    doc = {**_RECIPIENT_DEFAULTS, **doc}
    offer = doc["offer"]
    return {
        "logged_in": bool(doc["logged_in"]),
        "availability": _enum(Availability, doc["availability"], Availability.AWAY),
        "unavailable_code": doc["unavailable_code"],
        "forced_by": doc["forced_by"],
        "away_queues": list(doc["away_queues"]),
        "state": _enum(RecipientState, doc["state"], RecipientState.LOGGED_OUT),
        "state_since_ms": doc["state_since_ms"],
        "wrapup_session_id": doc["wrapup_session_id"],
        "wrapup_until_ms": doc["wrapup_until_ms"],
        "logout_pending": (_enum(EventSource, doc["logout_pending"], EventSource.API)
                           if doc["logout_pending"] else None),
        "calls": doc["calls_taken"],
        "offers": doc["offers"],
        "talk_ms": doc["talk_ms"],
        "idle_since_ms": doc["idle_since_ms"],
        "misses": doc["consecutive_misses"],
        "logout_pending_by": doc["logout_pending_by"],
        "offer": (offer["offer_id"], offer["session_id"], offer["queue_id"]) if offer else None,
    }
