"""Account agent settings (seed 004): defaults that recipients follow or
override, unavailable codes, threshold profiles."""

from __future__ import annotations

import grpc
import pytest

from qroute.domain.config import Member
from qroute.domain.enums import Availability
from qroute.domain.settings import AgentSettings, ThresholdProfile, UnavailableCode
from qroute.errors import FailedPrecondition, InvalidArgument
from qroute.v1 import account_pb2, common_pb2
from tests.api._util import call_center, eventually, fails

from ._helpers import get_settings, report_device, update_settings


def test_a_default_change_reaches_following_recipients_only(api):
    async def body(client):
        await call_center(client, recipients=())
        await client.create_recipient(id="ann", name="Ann", use_default_guard_timer=True,
                                      use_default_unavailable_settings=True)
        await client.create_recipient(id="bob", name="Bob", guard_timer_seconds=2, force_away_on_dnd=False)
        await client.add_members("sales", ["ann", "bob"])
        for rid in ("ann", "bob"):
            await client.login(rid, ready=True)
        settings = await get_settings(client)
        assert (settings.guard_timer_seconds, settings.bounced_call_limit, settings.enable_guard_timer) == (5, 3, False)
        floor = api.running.node.engine.floor(api.account_id)
        assert floor.effective_settings("ann").guard_timer_ms == 0
        settings = await update_settings(client, enable_guard_timer=True, guard_timer_seconds=9,
                                         force_away_on_dnd=True, force_away_on_bounced_call_limit=True,
                                         bounced_call_limit=4)
        assert settings.account_id == api.account_id and settings.guard_timer_seconds == 9
        ann, bob = floor.effective_settings("ann"), floor.effective_settings("bob")
        assert (ann.guard_timer_ms, ann.bounced_call_limit, ann.force_away_on_dnd) == (9_000, 4, True)
        assert (bob.guard_timer_ms, bob.bounced_call_limit, bob.force_away_on_dnd) == (2_000, 0, False)
        # the dispatcher has the new limits of the follower at once
        guard = {rid: floor.dispatcher._recipient(floor.recipients[rid].handle).guard_ms
                 for rid in ("ann", "bob")} if hasattr(floor.dispatcher, "_recipient") else None
        if guard is not None:
            assert guard == {"ann": 9_000, "bob": 2_000}
        # the default forcing rule acts on the follower only
        status = await report_device(client, "ann", dnd=True)
        assert status.state == common_pb2.RECIPIENT_STATE_AWAY and status.forced_by == common_pb2.FORCE_REASON_DND
        status = await report_device(client, "bob", dnd=True)
        assert status.state == common_pb2.RECIPIENT_STATE_READY and status.dnd
        # turning the default off releases the follower at once
        await update_settings(client, force_away_on_dnd=False)
        assert (await client.recipient_status("ann")).state == common_pb2.RECIPIENT_STATE_READY
        # bad values name their field
        error = await fails(update_settings(client, guard_timer_seconds=-1), grpc.StatusCode.INVALID_ARGUMENT)
        assert error.fields == ["settings.guard_timer_seconds"]

    api.run(body)

    async def after_restart(client):  # the settings are stored and followed again after a restart
        settings = await get_settings(client)
        assert settings.guard_timer_seconds == 9 and settings.bounced_call_limit == 4
        floor = api.running.node.engine.floor(api.account_id)
        assert floor.effective_settings("ann").guard_timer_ms == 9_000

    api.run(after_restart)


def test_unavailable_codes_are_account_data(api):
    async def body(client):
        await call_center(client, recipients=("ann",))
        await update_settings(client, unavailable_codes=[
            account_pb2.UnavailableCode(code="lunch", description="Lunch break", active=True),
            account_pb2.UnavailableCode(code="training", description="Training", active=False)])
        settings = await get_settings(client)
        assert [(c.code, c.description) for c in settings.unavailable_codes] == [
            ("lunch", "Lunch break"), ("training", "Training")]
        status = await client.set_availability("ann", False, unavailable_code="lunch")
        assert status.unavailable_code == "lunch"
        for code in ("training", "nap", "dnd"):  # inactive, unknown, a system code
            error = await fails(client.set_availability("ann", False, unavailable_code=code),
                                grpc.StatusCode.INVALID_ARGUMENT)
            assert error.fields == ["unavailable_code"]
        error = await fails(update_settings(client, unavailable_codes=[account_pb2.UnavailableCode(
            code="bounced", active=True)]), grpc.StatusCode.INVALID_ARGUMENT)
        assert error.fields == ["settings.unavailable_codes[0].code"]

    api.run(body)


def test_a_threshold_breach_is_one_event_and_its_clearing_another(api):
    async def body(client):
        await call_center(client, recipients=("ann",), ready=False)
        await update_settings(client, threshold_profiles=[account_pb2.ThresholdProfile(
            name="busy floor", max_waiting_calls=1)])
        error = await fails(client.update_recipient("ann", threshold_profile="nope"),
                            grpc.StatusCode.INVALID_ARGUMENT)
        assert error.fields == ["recipient.threshold_profile"]
        await client.update_recipient("ann", threshold_profile="busy floor")
        calls = [await client.enqueue("sales") for _ in range(3)]
        status = await eventually(lambda: _breached(client, "ann", True), timeout=4)
        assert list(status.thresholds_exceeded) == ["waiting_calls"]
        for session in calls[:2]:
            await client.abandon(session.id)
        await eventually(lambda: _breached(client, "ann", False), timeout=4)
        floor_events = [e for e in _logged(api) if e.type.startswith("recipient.threshold")]
        assert [(e.type, e.data["metric"]) for e in floor_events] == [
            ("recipient.threshold_exceeded", "waiting_calls"), ("recipient.threshold_cleared", "waiting_calls")]
        assert floor_events[0].data["value"] in (2, 3) and floor_events[0].data["limit"] == 1
        # a profile in use cannot be removed
        await fails(update_settings(client, threshold_profiles=[]), grpc.StatusCode.FAILED_PRECONDITION)

    api.run(body)


async def _breached(client, recipient_id, breached):
    status = await client.recipient_status(recipient_id)
    return status if bool(status.thresholds_exceeded) == breached else None


def _logged(api):
    return api.captured


@pytest.fixture(autouse=True)
def _capture(api, monkeypatch):
    """Keep every event the journal publishes, in order, on ``api.captured``."""
    from qroute.events import Journal
    api.captured = []
    publish = Journal.publish

    def capturing(self, event):
        api.captured.append(event)
        return publish(self, event)

    monkeypatch.setattr(Journal, "publish", capturing)


# ----------------------------------------------------------- on the virtual clock

def test_threshold_profiles_on_the_virtual_clock(center):
    center.queue(agent_wrapup_time=60)
    floor = center.floor
    floor.set_agent_settings(AgentSettings(threshold_profiles=(
        ThresholdProfile("strict", max_wrapup_seconds=30, max_away_seconds=10, max_ringing_seconds=5),),
        default_threshold_profile="strict"))
    center.agent("alice", "q", ready=False)
    center.tick(9_000)
    assert not center.of("recipient.threshold_exceeded")
    for _ in range(3):  # breached once, however many passes see it
        center.tick(1_000)
    assert [e.data["metric"] for e in center.of("recipient.threshold_exceeded")] == ["away"]
    floor.set_availability("alice", Availability.READY)
    center.tick(1_000)
    assert [e.data["metric"] for e in center.of("recipient.threshold_cleared")] == ["away"]
    center.call()
    center.tick(1_000)
    assert center.state("alice") == "RINGING"
    center.tick(5_000)
    assert [e.data["metric"] for e in center.of("recipient.threshold_exceeded")] == ["away", "ringing"]
    session = center.answer("alice")
    center.tick(1_000)
    floor.hangup(session.id)
    center.tick(31_000)
    center.tick(1_000)
    assert [e.data["metric"] for e in center.of("recipient.threshold_exceeded")] == ["away", "ringing", "wrapup"]
    assert [e.data["metric"] for e in center.of("recipient.threshold_cleared")] == ["away", "ringing"]
    floor.finish_wrapup("alice")
    center.tick(1_000)
    assert [e.data["metric"] for e in center.of("recipient.threshold_cleared")] == ["away", "ringing", "wrapup"]
    center.check()


def test_settings_are_validated_and_profiles_in_use_kept(center):
    floor = center.floor
    with pytest.raises(InvalidArgument) as err:
        floor.set_agent_settings(AgentSettings(bounced_call_limit=0, default_threshold_profile="x",
                                               unavailable_codes=(UnavailableCode("a"), UnavailableCode("a"))))
    assert [field for field, _ in err.value.violations] == [
        "bounced_call_limit", "unavailable_codes[1].code", "default_threshold_profile"]
    floor.set_agent_settings(AgentSettings(threshold_profiles=(ThresholdProfile("p"),)))
    center.queue()
    center.agent("alice", "q", threshold_profile="p")
    with pytest.raises(FailedPrecondition):
        floor.set_agent_settings(AgentSettings())


def test_the_bounced_limit_default_forces_away(center):
    center.queue(ring_timeout=5)
    center.floor.set_agent_settings(AgentSettings(force_away_on_bounced_call_limit=True, bounced_call_limit=2))
    center.agent("alice", "q", use_default_unavailable_settings=True, bounced_call_limit=0)
    center.floor.add_members("q", [Member("alice")])
    center.call()
    center.tick()
    center.tick(5_000)  # first miss
    center.tick()
    assert center.state("alice") == "RINGING"
    center.tick(5_000)  # second miss: the account's limit
    assert center.floor.recipients["alice"].forced_by == "bounced"
    center.check()
