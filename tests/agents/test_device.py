"""Device and call state from the phone system (seed 004): DND, personal
calls and an unreachable device (or a dropped agent stream) force a
recipient away where its settings say so, and clearing gives back what it had."""

from __future__ import annotations

import asyncio

from qroute.domain.enums import Availability
from qroute.v1 import common_pb2
from tests.api._util import call_center, eventually

from ._helpers import report_device

AWAY, READY = common_pb2.RECIPIENT_STATE_AWAY, common_pb2.RECIPIENT_STATE_READY


def test_dnd_forces_away_and_clearing_restores(api):
    async def body(client):
        await call_center(client, recipients=("ann",), recipient_fields={
            "force_away_on_dnd": True, "force_away_on_personal_calls": True, "unavailable_codes": ["lunch"]})
        status = await report_device(client, "ann", dnd=True)
        assert (status.state, status.unavailable_code, status.forced_by, status.dnd) == (
            AWAY, "dnd", common_pb2.FORCE_REASON_DND, True)
        status = await report_device(client, "ann", personal_call=True)  # a second cause
        assert status.forced_by == common_pb2.FORCE_REASON_DND
        status = await report_device(client, "ann", dnd=False)  # one cause left: still away, for it
        assert (status.state, status.unavailable_code) == (AWAY, "personal_call")
        status = await report_device(client, "ann", personal_call=False)
        assert (status.state, status.unavailable_code, status.forced_by) == (READY, "", 0)
        # away by choice before the forcing: back to that choice, code included
        await client.set_availability("ann", False, unavailable_code="lunch")
        await report_device(client, "ann", dnd=True)
        status = await report_device(client, "ann", dnd=False)
        assert (status.state, status.unavailable_code) == (AWAY, "lunch")
        # a change of its own meanwhile wins: clearing restores nothing
        await client.set_availability("ann", True)
        await report_device(client, "ann", dnd=True)
        await client.set_availability("ann", False, unavailable_code="lunch")
        status = await report_device(client, "ann", dnd=False)
        assert (status.state, status.unavailable_code) == (AWAY, "lunch")
        # without the setting, DND changes nothing but the reported state
        await client.set_availability("ann", True)
        await client.update_recipient("ann", force_away_on_dnd=False)
        status = await report_device(client, "ann", dnd=True)
        assert status.state == READY and status.dnd
        # turning the setting on while DND is on forces at once
        await client.update_recipient("ann", force_away_on_dnd=True)
        assert (await client.recipient_status("ann")).unavailable_code == "dnd"

    api.run(body)


def test_a_dropped_agent_stream_counts_as_not_reachable(api):
    async def body(client):
        await call_center(client, recipients=("ann", "bob"),
                          recipient_fields={"force_away_on_not_reachable": True})
        await client.update_recipient("bob", force_away_on_not_reachable=False)
        for rid in ("ann", "bob"):
            desktop = await client.agent(rid)
            assert desktop.status.state == READY
            await desktop.close()

        async def ann_forced():
            status = await client.recipient_status("ann")
            return status if status.forced_by == common_pb2.FORCE_REASON_NOT_REACHABLE else None

        status = await eventually(ann_forced)
        assert (status.state, status.unavailable_code) == (AWAY, "not_reachable")
        await asyncio.sleep(0.05)
        assert (await client.recipient_status("bob")).state == READY  # its settings do not force
        # the desktop back: reachable again, ready as before
        desktop = await client.agent("ann")
        assert desktop.status.state == READY
        # the phone system's own report forces too, and its clearing restores
        status = await report_device(client, "ann", reachable=False)
        assert (status.state, status.reachable) == (AWAY, False)
        status = await report_device(client, "ann", reachable=True)
        assert status.state == READY
        await desktop.close()

    api.run(body)


def test_login_with_dnd_on_is_forced_away_and_logout_forgets(center):
    center.queue()
    center.agent("alice", "q", force_away_on_dnd=True)
    floor = center.floor
    floor.report_device_state("alice", dnd=True)
    floor.logout("alice")
    floor.login("alice", ready=True)
    recipient = floor.recipients["alice"]
    assert (recipient.availability, recipient.forced_by) == (Availability.AWAY, "dnd")
    floor.report_device_state("alice", dnd=False)
    assert recipient.availability == Availability.READY and recipient.forced_by == ""
    center.check()
