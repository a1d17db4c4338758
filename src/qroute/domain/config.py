"""Queue and recipient configuration: fields, defaults and bounds.

Defaults and bounds of queues are the Qubicle queue schema's (seed 000);
recipient settings are BroadWorks' call-center agent settings (seed 004).
Every check names the field it refuses, and nothing is changed unless the
whole configuration is valid.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field
from typing import Any

from qroute.domain.enums import AgentType, Router
from qroute.errors import InvalidArgument

MAX_NAME = 128
MAX_SKILL_NAME = 64
MIN_LEVEL, MAX_LEVEL = 1, 10
_SKILL_NAME = re.compile(r"^[A-Za-z0-9_.:\-]{1,64}$")
_PINCODE = re.compile(r"^[0-9]{4,12}$")
_CODE = re.compile(r"^[A-Za-z0-9_.\-]{1,32}$")


@dataclass(frozen=True)
class TierRule:
    """After a session waited ``after_seconds``, members up to ``max_tier`` may take it."""

    after_seconds: int
    max_tier: int


@dataclass(frozen=True)
class Dnis:
    """A phone number a queue answers, which its agents may present on outgoing calls (seed 004)."""

    number: str
    name: str = ""


@dataclass(frozen=True)
class QueueConfig:
    id: str
    name: str
    router: Router = Router.ROUND_ROBIN
    agent_wrapup_time: int = 0
    force_away_on_reject: bool = False
    hold_treatment: str = ""
    ring_timeout: int = 20
    tick_time: int = 1000
    timeout: int = 3600
    timeout_if_size_exceeds: int = 0
    timeout_immediately_if_empty: bool = False
    timeout_redirect: str = ""
    tier_expansion: tuple[TierRule, ...] = ()
    allow_self_join: bool = False  # agents may join and leave it themselves (seed 004)
    dnis: tuple[Dnis, ...] = ()  # the numbers it answers (seed 004)
    # virtual queueing (seed 003): a lined-up caller is notified once its EWT falls to
    # callback_lead_time (s), and times out when not connected callback_window (s) after that
    callback_lead_time: int = 120
    callback_window: int = 600
    create_time_ms: int = 0
    update_time_ms: int = 0

    def problems(self) -> list[tuple[str, str]]:
        """Every violated bound as ``(field, reason)``; empty when valid."""
        found = []
        if not 1 <= len(self.name) <= MAX_NAME:
            found.append(("name", f"must be 1 to {MAX_NAME} characters"))
        if self.router not in set(Router):
            found.append(("router", f"unknown router {int(self.router)}"))
        if self.agent_wrapup_time < 0:
            found.append(("agent_wrapup_time", "must be >= 0"))
        if self.ring_timeout < 1:
            found.append(("ring_timeout", "must be >= 1"))
        if self.tick_time < 250:
            found.append(("tick_time", "must be >= 250"))
        if self.timeout < 10:
            found.append(("timeout", "must be >= 10"))
        if self.timeout_if_size_exceeds < 0:
            found.append(("timeout_if_size_exceeds", "must be >= 0 (0 is off)"))
        if len(self.hold_treatment) > 1024:
            found.append(("hold_treatment", "must be at most 1024 characters"))
        if self.timeout_redirect and self.timeout_redirect == self.id:
            found.append(("timeout_redirect", "cannot be the queue itself"))
        for i, rule in enumerate(self.tier_expansion):
            if rule.after_seconds < 0:
                found.append((f"tier_expansion[{i}].after_seconds", "must be >= 0"))
            if rule.max_tier < 1:
                found.append((f"tier_expansion[{i}].max_tier", "must be >= 1"))
        numbers: set[str] = set()
        for i, dnis in enumerate(self.dnis):
            if not 1 <= len(dnis.number) <= 64:
                found.append((f"dnis[{i}].number", "must be 1 to 64 characters"))
            elif dnis.number in numbers:
                found.append((f"dnis[{i}].number", f"{dnis.number!r} appears twice"))
            numbers.add(dnis.number)
            if len(dnis.name) > MAX_NAME:
                found.append((f"dnis[{i}].name", f"must be at most {MAX_NAME} characters"))
        if not 0 <= self.callback_lead_time <= 86_400:
            found.append(("callback_lead_time", "must be 0 to 86400 seconds"))
        if not 10 <= self.callback_window <= 86_400:
            found.append(("callback_window", "must be 10 to 86400 seconds"))
        return found

    def to_doc(self) -> dict[str, Any]:
        doc = dataclasses.asdict(self)
        doc["router"] = int(self.router)
        return doc

    @classmethod
    def from_doc(cls, doc: dict[str, Any]) -> QueueConfig:
        doc = dict(doc)
        doc["router"] = Router(doc.get("router", Router.ROUND_ROBIN))
        doc["tier_expansion"] = tuple(TierRule(**rule) for rule in doc.get("tier_expansion", ()))
        doc["dnis"] = tuple(Dnis(**dnis) for dnis in doc.get("dnis", ()))
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in doc.items() if k in known})


@dataclass(frozen=True)
class RecipientConfig:
    id: str
    name: str = ""
    skills: dict[str, int] = field(default_factory=dict)
    agent_type: AgentType = AgentType.LOCAL
    extension_name: str = ""
    agent_number: str = ""
    caller_ids: tuple[str, ...] = ()
    pincode: str = ""
    guard_timer_seconds: int = 0
    bounced_call_limit: int = 0
    force_away_on_dnd: bool = False
    force_away_on_personal_calls: bool = False
    force_away_on_not_reachable: bool = False
    unavailable_codes: tuple[str, ...] = ()
    use_default_guard_timer: bool = False
    use_default_unavailable_settings: bool = False
    make_outgoing_calls_as_call_center: bool = False
    outgoing_call_dnis: str = ""
    threshold_profile: str = ""
    first_name: str = ""
    last_name: str = ""
    create_time_ms: int = 0
    update_time_ms: int = 0

    def problems(self) -> list[tuple[str, str]]:
        found = []
        for name_field in ("name", "first_name", "last_name"):
            if len(getattr(self, name_field)) > MAX_NAME:
                found.append((name_field, f"must be at most {MAX_NAME} characters"))
        for skill, level in self.skills.items():
            if not _SKILL_NAME.match(skill):
                found.append((f"skills[{skill}]", "skill names are 1 to 64 of A-Z a-z 0-9 _ . : -"))
            if not MIN_LEVEL <= level <= MAX_LEVEL:
                found.append((f"skills[{skill}]", f"level must be {MIN_LEVEL} to {MAX_LEVEL}"))
        if self.agent_type not in set(AgentType):
            found.append(("agent_type", f"unknown agent type {int(self.agent_type)}"))
        if self.pincode and not _PINCODE.match(self.pincode):
            found.append(("pincode", "must be 4 to 12 digits"))
        if not 0 <= self.guard_timer_seconds <= 3600:
            found.append(("guard_timer_seconds", "must be 0 to 3600"))
        if not 0 <= self.bounced_call_limit <= 100:
            found.append(("bounced_call_limit", "must be 0 (off) to 100"))
        for code in self.unavailable_codes:
            if not _CODE.match(code):
                found.append(("unavailable_codes", f"code {code!r} must be 1 to 32 of A-Z a-z 0-9 _ . -"))
        if self.make_outgoing_calls_as_call_center and not self.outgoing_call_dnis:
            found.append(("outgoing_call_dnis", "Outgoing Call Center is required when make "
                          "outgoing call as call center is enabled."))
        return found

    def to_doc(self) -> dict[str, Any]:
        doc = dataclasses.asdict(self)
        doc["agent_type"] = int(self.agent_type)
        doc["caller_ids"] = list(self.caller_ids)
        doc["unavailable_codes"] = list(self.unavailable_codes)
        return doc

    @classmethod
    def from_doc(cls, doc: dict[str, Any]) -> RecipientConfig:
        doc = dict(doc)
        doc["agent_type"] = AgentType(doc.get("agent_type", AgentType.LOCAL))
        doc["caller_ids"] = tuple(doc.get("caller_ids", ()))
        doc["unavailable_codes"] = tuple(doc.get("unavailable_codes", ()))
        doc["skills"] = dict(doc.get("skills", {}))
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in doc.items() if k in known})


def validated(config):
    """``config`` if it has no problem, else InvalidArgument naming every bad field."""
    found = config.problems()
    if found:
        raise InvalidArgument(*found)
    return config


@dataclass(frozen=True)
class Member:
    recipient_id: str
    tier: int = 1
    weight: int = 0

    def problems(self, index: int) -> list[tuple[str, str]]:
        found = []
        if not self.recipient_id:
            found.append((f"members[{index}].recipient_id", "is required"))
        if self.tier < 1:
            found.append((f"members[{index}].tier", "must be >= 1"))
        if self.weight < 0:
            found.append((f"members[{index}].weight", "must be >= 0"))
        return found
