"""AgentSettingsService: an account's call-center agent settings (seed 004).

Settings and supervisors' lists are configuration documents of the account
(``PutConfig`` kinds "account_settings" and "supervision"), written straight
to storage and awaited there, so durable on return; ``Node`` restores them.
"""

from __future__ import annotations

import dataclasses

from qroute.api import convert
from qroute.api.common import Servicer, mutation, request_fields, unary
from qroute.domain.settings import AgentSettings, ThresholdProfile, UnavailableCode
from qroute.errors import InvalidArgument
from qroute.storage import DeleteConfig, PutConfig
from qroute.v1 import account_pb2, account_pb2_grpc

SETTINGS_KIND = "account_settings"
SETTINGS_ID = "agent"  # the one settings document of an account
SUPERVISION_KIND = "supervision"
_FIELDS = {f.name for f in dataclasses.fields(AgentSettings)} - {"update_time_ms"}


def settings_message(account_id: str, settings: AgentSettings) -> account_pb2.AgentSettings:
    return account_pb2.AgentSettings(
        account_id=account_id, enable_guard_timer=settings.enable_guard_timer,
        guard_timer_seconds=settings.guard_timer_seconds, force_away_on_dnd=settings.force_away_on_dnd,
        force_away_on_personal_calls=settings.force_away_on_personal_calls,
        force_away_on_bounced_call_limit=settings.force_away_on_bounced_call_limit,
        bounced_call_limit=settings.bounced_call_limit,
        force_away_on_not_reachable=settings.force_away_on_not_reachable,
        unavailable_codes=[account_pb2.UnavailableCode(code=c.code, description=c.description, active=c.active)
                           for c in settings.unavailable_codes],
        threshold_profiles=[account_pb2.ThresholdProfile(**dataclasses.asdict(p))
                            for p in settings.threshold_profiles],
        default_threshold_profile=settings.default_threshold_profile,
        update_time=convert.timestamp(settings.update_time_ms))


def _value(message: account_pb2.AgentSettings, field: str):
    if field == "unavailable_codes":
        return tuple(UnavailableCode(c.code, c.description, c.active) for c in message.unavailable_codes)
    if field == "threshold_profiles":
        return tuple(ThresholdProfile(p.name, p.max_wrapup_seconds, p.max_away_seconds, p.max_ringing_seconds,
                                      p.max_waiting_calls) for p in message.threshold_profiles)
    return getattr(message, field)


def settings_changes(message: account_pb2.AgentSettings, update_mask) -> dict:
    paths = list(update_mask.paths) if update_mask is not None and update_mask.paths else sorted(_FIELDS)
    bad = [("update_mask", f"settings.{path} cannot be updated") for path in paths if path not in _FIELDS]
    if bad:
        raise InvalidArgument(*bad)
    return {path: _value(message, path) for path in paths}


async def save_settings(node, account_id: str, settings: AgentSettings) -> None:
    if node.durable:
        await node.storage.write(PutConfig(account_id, SETTINGS_KIND, SETTINGS_ID, settings.to_doc()))


async def save_supervision(node, account_id: str, supervisor_id: str, queue_id: str, ids: list[str]) -> None:
    if not node.durable:
        return
    entity_id = f"{len(supervisor_id)}:{supervisor_id}{queue_id}"  # unambiguous whatever the ids hold
    if ids:
        await node.storage.write(PutConfig(account_id, SUPERVISION_KIND, entity_id, {
            "supervisor_id": supervisor_id, "queue_id": queue_id, "recipient_ids": list(ids)}))
    else:
        await node.storage.write(DeleteConfig(account_id, SUPERVISION_KIND, entity_id))


class AgentSettingsServicer(Servicer, account_pb2_grpc.AgentSettingsServiceServicer):
    @unary
    async def GetAgentSettings(self, request, context, principal):
        floor = self.floor(principal)
        return settings_message(floor.account_id, floor.agent_settings)

    @mutation
    async def UpdateAgentSettings(self, request, context, principal):
        floor = self.floor(principal)
        with request_fields("settings"):
            changes = settings_changes(request.settings, request.update_mask)
            settings = floor.set_agent_settings(dataclasses.replace(floor.agent_settings, **changes))
        await save_settings(self.node, floor.account_id, settings)
        return settings_message(floor.account_id, settings)
