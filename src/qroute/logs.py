"""Logging of ``qroute serve``: one line per significant change at INFO.

``setup`` configures the root logger: lines for people (``console``) or one
JSON object per line (``json``), each with the event's fields. Every line
goes through ``redact``: an API key (``qr_<id>_<secret>``), a bearer token,
a URL's password or a secret-looking query parameter (a webhook's URL in a
delivery error) that slipped into a message or a field is shown masked.

``ChangeLog`` is a journal listener that turns the events people care about
(queues and recipients created or deleted, logins and logouts, recipients
forced away) into INFO lines, so the engine does not log itself. Webhook
failures are logged where they are known (``qroute.events.webhooks``:
INFO per failed attempt, WARNING when given up); accounts and keys by the
node (key ids, never secrets); RPCs only at DEBUG (``qroute.server``).
"""

from __future__ import annotations

import json
import logging
import re
import sys
import time
from typing import Any

from qroute.domain.events import DomainEvent

log = logging.getLogger("qroute.changes")

_KEY = re.compile(r"\b(qr_[A-Za-z0-9]+_)[A-Za-z0-9_\-]{8,}")
_BEARER = re.compile(r"(?i)\b(bearer\s+)(?!qr_)[A-Za-z0-9._~+/\-]{8,}=*")
_USERINFO = re.compile(r"(?i)\b([a-z][a-z0-9+.\-]*://[^/\s:@]*:)[^/\s@]+@")  # scheme://user:password@
_QUERY_SECRET = re.compile(r"(?i)([?&](?:[a-z_\-]*(?:token|key|secret)|password|passwd|pwd|sig|signature)=)"
                           r"[^&#\s'\"]+")
# attributes every LogRecord has: the rest were passed with extra= and are the line's fields
_STANDARD = frozenset(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime", "taskName"}


def redact(text: str) -> str:
    """``text`` with API keys (their key id kept), bearer tokens, URL
    passwords and secret query parameters masked."""
    if "qr_" in text:
        text = _KEY.sub(r"\1****", text)
    if "earer" in text or "EARER" in text:
        text = _BEARER.sub(r"\1****", text)
    if "://" in text:
        text = _QUERY_SECRET.sub(r"\1****", _USERINFO.sub(r"\1****@", text))
    return text


def fields_of(record: logging.LogRecord) -> dict[str, Any]:
    return {name: value for name, value in vars(record).items() if name not in _STANDARD}


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time (UTC, ISO 8601), level, logger, msg,
    the record's extra fields, and the exception if any."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
                    + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for name, value in fields_of(record).items():
            line.setdefault(name, value)
        if record.exc_info:
            line["exc"] = self.formatException(record.exc_info)
        return redact(json.dumps(line, default=str, separators=(",", ":")))


class ConsoleFormatter(logging.Formatter):
    """``time LEVEL logger: message key=value ...``"""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        extra = fields_of(record)
        if extra:
            first, newline, rest = text.partition("\n")
            first += " " + " ".join(f"{name}={value}" for name, value in extra.items())
            text = first + newline + rest
        return redact(text)


def setup(level: str = "info", fmt: str = "console", stream=None) -> logging.Handler:
    """Configure the root logger for ``serve``; returns its handler."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else ConsoleFormatter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    # httpx logs every webhook request at INFO: that is per event, not a significant change
    logging.getLogger("httpx").setLevel(max(logging.WARNING, root.level))
    return handler


class ChangeLog:
    """Journal listener: an INFO line for each significant change. Costs one
    dict lookup for the other events (most of them: sessions, offers)."""

    def __init__(self, logger: logging.Logger = log) -> None:
        self.log = logger
        self._handlers = {
            "queue.created": self._plain, "queue.deleted": self._plain,
            "recipient.created": self._plain, "recipient.deleted": self._plain,
            "recipient.logged_in": self._login, "recipient.logged_out": self._logout,
            "recipient.state_changed": self._state,
        }

    def __call__(self, event: DomainEvent) -> None:
        handler = self._handlers.get(event.type)
        if handler is not None and self.log.isEnabledFor(logging.INFO):
            handler(event)

    def _line(self, level: int, message: str, event: DomainEvent, **fields: Any) -> None:
        self.log.log(level, message, extra={"event": event.type, "account_id": event.account_id,
                                            "entity_id": event.entity_id, **fields})

    def _plain(self, event: DomainEvent) -> None:
        entity, _, change = event.type.partition(".")
        self._line(logging.INFO, f"{entity} {event.entity_id} {change}", event)

    def _login(self, event: DomainEvent) -> None:
        self._line(logging.INFO, f"recipient {event.entity_id} logged in", event,
                   state=event.data.get("state", ""), source=event.data.get("source", ""))

    def _logout(self, event: DomainEvent) -> None:
        forced = event.data.get("forced_by", "")
        self._line(logging.INFO, f"recipient {event.entity_id} logged out" + (f" (forced: {forced})" if forced else ""),
                   event, source=event.data.get("source", ""), forced_by=forced)

    def _state(self, event: DomainEvent) -> None:
        data = event.data
        forced = data.get("forced_by", "")
        if forced and data.get("state") == "away" and data.get("previous_state") != "away":
            self._line(logging.INFO, f"recipient {event.entity_id} forced away ({forced})", event,
                       forced_by=forced, unavailable_code=data.get("unavailable_code", ""),
                       queue_id=data.get("queue_id", ""))
