"""An account's call-center agent settings (seed 004), and what they make of
each recipient's own settings.

The account holds defaults (guard timer; forcing AWAY on DND, personal calls,
the bounced-call limit and an unreachable device), the unavailable codes
agents may give with AWAY, and threshold profiles. A recipient with
``use_default_guard_timer`` / ``use_default_unavailable_settings`` follows
the defaults; otherwise its own fields apply (``effective``).
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from typing import Any

from qroute.domain.config import RecipientConfig

SYSTEM_CODES = frozenset({"bounced", "rejected", "dnd", "personal_call", "not_reachable"})
DEVICE_CODES = ("dnd", "personal_call", "not_reachable")  # in the order one is shown when several apply
THRESHOLD_METRICS = ("wrapup", "away", "ringing", "waiting_calls")
_CODE = re.compile(r"^[A-Za-z0-9_.\-]{1,32}$")


@dataclass(frozen=True)
class UnavailableCode:
    code: str
    description: str = ""
    active: bool = True


@dataclass(frozen=True)
class ThresholdProfile:
    """Limits (0 = none): seconds in WRAPUP, AWAY, RINGING; sessions waiting
    in the recipient's queues together."""

    name: str
    max_wrapup_seconds: int = 0
    max_away_seconds: int = 0
    max_ringing_seconds: int = 0
    max_waiting_calls: int = 0

    def limit(self, metric: str) -> int:
        return {"wrapup": self.max_wrapup_seconds, "away": self.max_away_seconds,
                "ringing": self.max_ringing_seconds, "waiting_calls": self.max_waiting_calls}[metric]


@dataclass(frozen=True)
class AgentSettings:
    enable_guard_timer: bool = False
    guard_timer_seconds: int = 5  # BroadWorks' default
    force_away_on_dnd: bool = False
    force_away_on_personal_calls: bool = False
    force_away_on_bounced_call_limit: bool = False
    bounced_call_limit: int = 3  # BroadWorks' default
    force_away_on_not_reachable: bool = False
    unavailable_codes: tuple[UnavailableCode, ...] = ()
    threshold_profiles: tuple[ThresholdProfile, ...] = ()
    default_threshold_profile: str = ""
    update_time_ms: int = 0

    def problems(self) -> list[tuple[str, str]]:
        """Every violated rule as ``(field, reason)``; empty when valid."""
        found = []
        if not 0 <= self.guard_timer_seconds <= 3600:
            found.append(("guard_timer_seconds", "must be 0 to 3600"))
        if not 1 <= self.bounced_call_limit <= 100:
            found.append(("bounced_call_limit", "must be 1 to 100"))
        seen: set[str] = set()
        for i, code in enumerate(self.unavailable_codes):
            if not _CODE.match(code.code):
                found.append((f"unavailable_codes[{i}].code", "must be 1 to 32 of A-Z a-z 0-9 _ . -"))
            elif code.code in SYSTEM_CODES:
                found.append((f"unavailable_codes[{i}].code", f"{code.code!r} is a system code"))
            elif code.code in seen:
                found.append((f"unavailable_codes[{i}].code", f"{code.code!r} appears twice"))
            seen.add(code.code)
            if len(code.description) > 256:
                found.append((f"unavailable_codes[{i}].description", "must be at most 256 characters"))
        names: set[str] = set()
        for i, profile in enumerate(self.threshold_profiles):
            if not 1 <= len(profile.name) <= 64:
                found.append((f"threshold_profiles[{i}].name", "must be 1 to 64 characters"))
            elif profile.name in names:
                found.append((f"threshold_profiles[{i}].name", f"{profile.name!r} appears twice"))
            names.add(profile.name)
            for limit in ("max_wrapup_seconds", "max_away_seconds", "max_ringing_seconds", "max_waiting_calls"):
                if getattr(profile, limit) < 0:
                    found.append((f"threshold_profiles[{i}].{limit}", "must be >= 0 (0 is no limit)"))
        if self.default_threshold_profile and self.default_threshold_profile not in names:
            found.append(("default_threshold_profile", f"unknown profile {self.default_threshold_profile!r}"))
        return found

    def active_codes(self) -> set[str]:
        return {code.code for code in self.unavailable_codes if code.active}

    def profile(self, name: str) -> ThresholdProfile | None:
        for profile in self.threshold_profiles:
            if profile.name == name:
                return profile
        return None

    def to_doc(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_doc(cls, doc: dict[str, Any]) -> AgentSettings:
        doc = dict(doc)
        doc["unavailable_codes"] = tuple(UnavailableCode(**c) for c in doc.get("unavailable_codes", ()))
        doc["threshold_profiles"] = tuple(ThresholdProfile(**p) for p in doc.get("threshold_profiles", ()))
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in doc.items() if k in known})


@dataclass(frozen=True, slots=True)
class Effective:
    """A recipient's settings as they apply: its own, or the account's defaults."""

    guard_timer_ms: int
    bounced_call_limit: int  # 0 = off
    force_away_on_dnd: bool
    force_away_on_personal_calls: bool
    force_away_on_not_reachable: bool


def effective(config: RecipientConfig, settings: AgentSettings) -> Effective:
    if config.use_default_guard_timer:
        guard_s = settings.guard_timer_seconds if settings.enable_guard_timer else 0
    else:
        guard_s = config.guard_timer_seconds
    if config.use_default_unavailable_settings:
        return Effective(guard_s * 1000,
                         settings.bounced_call_limit if settings.force_away_on_bounced_call_limit else 0,
                         settings.force_away_on_dnd, settings.force_away_on_personal_calls,
                         settings.force_away_on_not_reachable)
    return Effective(guard_s * 1000, config.bounced_call_limit, config.force_away_on_dnd,
                     config.force_away_on_personal_calls, config.force_away_on_not_reachable)


def split_name(config: RecipientConfig) -> tuple[str, str]:
    """(first name, last name): the recipient's own, else from its ``name``."""
    first, _, last = config.name.strip().partition(" ")
    return config.first_name or first, config.last_name or last.strip()
