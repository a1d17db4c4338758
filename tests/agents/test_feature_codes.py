"""The callflow feature codes (seed 000's qubicle_recipient module) through
the real server: ExecuteAction links a call to a recipient by caller id or
pin, applies LOGIN / LOGOUT / READY / AWAY / LOGIN_READY / TOGGLE, answers
with the success or failure media, and emits the change with source phone;
a caller it cannot link changes nothing, and wrong pins are throttled."""

from __future__ import annotations

import grpc
import pytest

from qroute.api.feature_codes import PinThrottle, caller_digits
from qroute.v1 import common_pb2, recipient_pb2
from tests.api._util import eventually, fails
from tests.events._util import read_through, subscribe
from tests.webhooks._util import FAST, GET, Receiver, WebhookApi, create_webhook

PIN, CALLER_ID = recipient_pb2.LINK_METHOD_PIN, recipient_pb2.LINK_METHOD_CALLER_ID
LOGIN, LOGOUT, READY, AWAY, LOGIN_READY, TOGGLE = (
    recipient_pb2.RECIPIENT_ACTION_LOGIN, recipient_pb2.RECIPIENT_ACTION_LOGOUT, recipient_pb2.RECIPIENT_ACTION_READY,
    recipient_pb2.RECIPIENT_ACTION_AWAY, recipient_pb2.RECIPIENT_ACTION_LOGIN_READY,
    recipient_pb2.RECIPIENT_ACTION_TOGGLE)
S = common_pb2  # RecipientState, Availability, EventSource
MEDIA = {"success_media": "media-ok", "failure_media": "media-fail"}


async def agents(client) -> None:
    """Queues sales and support; ann (pin 1234, two caller ids) in both,
    bob (pin 9876) in sales only; nobody logged in."""
    for queue_id in ("sales", "support"):
        await client.create_queue(id=queue_id, name=queue_id.title())
    await client.create_recipient(id="ann", name="Ann", pincode="1234",
                                  caller_ids=["+1 (555) 010-0100", "sip-ann"], extension_name="000*094@x")
    await client.create_recipient(id="bob", name="Bob", pincode="9876", caller_ids=["+15550100200"])
    await client.add_members("sales", ["ann", "bob"])
    await client.add_members("support", ["ann"])


def newest(api) -> int:
    return api.running.node.journal.sequences.get(api.account_id, 0)


def test_pin_login_works_emits_phone_and_a_wrong_pin_changes_nothing(api):
    async def body(client):
        await agents(client)
        before = newest(api)
        wrong = await client.execute_action(PIN, LOGIN, pin="1111", caller_number="+15550199999", **MEDIA)
        assert (wrong.ok, wrong.media_id, wrong.recipient_id, wrong.failure) == (
            False, "media-fail", "", recipient_pb2.ACTION_FAILURE_NOT_LINKED)
        assert not wrong.HasField("status")
        assert newest(api) == before  # nothing emitted, nothing journaled
        assert (await client.recipient_status("ann")).state == S.RECIPIENT_STATE_LOGGED_OUT

        answer = await client.execute_action(PIN, LOGIN, pin="1234", caller_number="+15550199999", **MEDIA)
        assert (answer.ok, answer.media_id, answer.recipient_id, answer.failure) == (True, "media-ok", "ann", 0)
        assert answer.status.state == S.RECIPIENT_STATE_AWAY  # LOGIN starts away, as in Qubicle
        events = await read_through(subscribe(client, from_sequence=before + 1), newest(api))
        assert {(e.type, e.recipient.source) for e in events if e.recipient_id == "ann"} >= {
            ("recipient.logged_in", S.EVENT_SOURCE_PHONE), ("recipient.state_changed", S.EVENT_SOURCE_PHONE)}
        assert all(e.recipient_id == "ann" for e in events)

        # an explicit source wins over the phone default
        answer = await client.execute_action(PIN, LOGOUT, pin="1234", source=S.EVENT_SOURCE_API, **MEDIA)
        assert answer.ok and answer.status.state == S.RECIPIENT_STATE_LOGGED_OUT
        last = (await read_through(subscribe(client, from_sequence=newest(api)), newest(api)))[-1]
        assert (last.type, last.recipient.source) == ("recipient.state_changed", S.EVENT_SOURCE_API)

    api.run(body)


def test_caller_id_links_by_digits_and_toggle_goes_both_ways(api):
    async def body(client):
        await agents(client)
        answer = await client.execute_action(CALLER_ID, TOGGLE, caller_number="15550100100", **MEDIA)
        assert (answer.ok, answer.recipient_id, answer.status.state) == (True, "ann", S.RECIPIENT_STATE_READY)
        answer = await client.execute_action(CALLER_ID, TOGGLE, caller_number="+1 555 010 0100", **MEDIA)
        assert (answer.ok, answer.status.state) == (True, S.RECIPIENT_STATE_LOGGED_OUT)
        answer = await client.execute_action(CALLER_ID, LOGIN_READY, caller_number="sip-ann", **MEDIA)
        assert (answer.ok, answer.status.state) == (True, S.RECIPIENT_STATE_READY)
        # LOGIN_READY when logged in away: ready
        await client.set_availability("ann", False)
        answer = await client.execute_action(CALLER_ID, LOGIN_READY, caller_number="sip-ann", **MEDIA)
        assert answer.status.state == S.RECIPIENT_STATE_READY
        # unknown and anonymous callers are not linked; nothing changes
        for number in ("+15550100999", ""):
            answer = await client.execute_action(CALLER_ID, LOGOUT, caller_number=number, **MEDIA)
            assert (answer.ok, answer.media_id, answer.failure) == (
                False, "media-fail", recipient_pb2.ACTION_FAILURE_NOT_LINKED)
        assert (await client.recipient_status("ann")).state == S.RECIPIENT_STATE_READY
        # a caller id two recipients share links neither
        await client.update_recipient("bob", caller_ids=["sip-ann"])
        answer = await client.execute_action(CALLER_ID, LOGOUT, caller_number="sip-ann", **MEDIA)
        assert (answer.ok, answer.failure) == (False, recipient_pb2.ACTION_FAILURE_AMBIGUOUS)
        assert (await client.recipient_status("ann")).state == S.RECIPIENT_STATE_READY

    api.run(body)


def test_ready_and_away_for_one_target_queue(api):
    async def body(client):
        await agents(client)
        # READY for a logged-out recipient: linked, but it fails and changes nothing
        answer = await client.execute_action(PIN, READY, pin="1234", **MEDIA)
        assert (answer.ok, answer.recipient_id, answer.media_id, answer.failure, answer.status.state) == (
            False, "ann", "media-fail", recipient_pb2.ACTION_FAILURE_LOGGED_OUT, S.RECIPIENT_STATE_LOGGED_OUT)
        await client.login("ann", ready=True)
        answer = await client.execute_action(PIN, AWAY, pin="1234", target_queue="support", **MEDIA)
        assert answer.ok
        assert dict(answer.status.queue_availability) == {"sales": S.AVAILABILITY_READY,
                                                          "support": S.AVAILABILITY_AWAY}
        assert answer.status.availability == S.AVAILABILITY_READY  # only that queue changed
        answer = await client.execute_action(PIN, READY, pin="1234", target_queue="support", **MEDIA)
        assert dict(answer.status.queue_availability)["support"] == S.AVAILABILITY_READY
        answer = await client.execute_action(PIN, AWAY, pin="1234", **MEDIA)  # no target: globally
        assert (answer.status.state, answer.status.availability) == (S.RECIPIENT_STATE_AWAY, S.AVAILABILITY_AWAY)
        # bob is not a member of support
        await client.login("bob", ready=True)
        answer = await client.execute_action(PIN, AWAY, pin="9876", target_queue="support", **MEDIA)
        assert (answer.ok, answer.failure) == (False, recipient_pb2.ACTION_FAILURE_NOT_MEMBER)
        assert (await client.recipient_status("bob")).state == S.RECIPIENT_STATE_READY

    api.run(body)


def test_malformed_requests_name_the_field(api):
    async def body(client):
        await agents(client)
        cases = [
            (dict(link_method=0, action=LOGIN, pin="1234"), "link_method"),
            (dict(link_method=PIN, action=0, pin="1234"), "action"),
            (dict(link_method=PIN, action=77, pin="1234"), "action"),
            (dict(link_method=PIN, action=READY, pin="1234", target_queue="nowhere"), "target_queue"),
            (dict(link_method=PIN, action=LOGIN, pin="1" * 65), "pin"),
            (dict(link_method=CALLER_ID, action=LOGIN, caller_number="5" * 65), "caller_number"),
            (dict(link_method=PIN, action=LOGIN, pin="1234", source=S.EVENT_SOURCE_SYSTEM), "source"),
        ]
        for fields, field in cases:
            error = await fails(client._call(client.recipients.ExecuteAction,
                                             recipient_pb2.ExecuteActionRequest(**fields)),
                                grpc.StatusCode.INVALID_ARGUMENT)
            assert error.fields == [field], (fields, error)
        assert (await client.recipient_status("ann")).state == S.RECIPIENT_STATE_LOGGED_OUT

    api.run(body)


def test_wrong_pins_from_one_number_are_throttled(api):
    async def body(client):
        await agents(client)
        guesser, other = "+15550111111", "+15550122222"
        for pin in ("0000", "0001", "0002", "0003", "0004"):
            answer = await client.execute_action(PIN, LOGIN, pin=pin, caller_number=guesser, **MEDIA)
            assert answer.failure == recipient_pb2.ACTION_FAILURE_NOT_LINKED
        before = newest(api)
        # the right pin from that number is no longer even looked at
        answer = await client.execute_action(PIN, LOGIN, pin="1234", caller_number=guesser, **MEDIA)
        assert (answer.ok, answer.media_id, answer.recipient_id, answer.failure) == (
            False, "media-fail", "", recipient_pb2.ACTION_FAILURE_THROTTLED)
        assert newest(api) == before
        assert (await client.recipient_status("ann")).state == S.RECIPIENT_STATE_LOGGED_OUT
        # the same number written differently is the same number
        answer = await client.execute_action(PIN, LOGIN, pin="1234", caller_number="1 555 011 1111", **MEDIA)
        assert answer.failure == recipient_pb2.ACTION_FAILURE_THROTTLED
        # another number, and linking by caller id, still work
        answer = await client.execute_action(PIN, LOGIN, pin="1234", caller_number=other, **MEDIA)
        assert answer.ok and answer.recipient_id == "ann"
        answer = await client.execute_action(CALLER_ID, LOGIN, caller_number="+15550100200", **MEDIA)
        assert answer.ok and answer.recipient_id == "bob"

    api.run(body)


class FakeClock:
    def __init__(self) -> None:
        self.ms = 1_000_000

    def now_ms(self) -> int:
        return self.ms


def test_throttle_window_cooldown_account_limit_and_reset():
    clock = FakeClock()
    throttle = PinThrottle(clock, per_number=3, per_account=6, window_ms=1000, cooldown_ms=5000)
    throttle.wrong("a", "+1 555")
    clock.ms += 1001  # out of the window: forgotten
    throttle.wrong("a", "1555")
    throttle.wrong("a", "1555")
    assert not throttle.blocked("a", "+1555")
    throttle.right("a", "1555")  # a right pin clears its number's count
    throttle.wrong("a", "1555")
    throttle.wrong("a", "1555")
    assert not throttle.blocked("a", "1555")
    throttle.wrong("a", "1555")  # third within the window
    assert throttle.blocked("a", "+1 (555)") and not throttle.blocked("a", "1666") and not throttle.blocked("b", "1555")
    clock.ms += 4999
    assert throttle.blocked("a", "1555")
    clock.ms += 1
    assert not throttle.blocked("a", "1555")  # cooled down
    # the account's limit: wrong pins from many numbers block every number of that account only
    for number in ("1", "2", "3", "4", "5", "6"):
        throttle.wrong("a", number)
    assert throttle.blocked("a", "999") and not throttle.blocked("b", "999")


@pytest.mark.parametrize("number, digits", [("+1 (555) 010-0100", "15550100100"), ("555.010.0100", "5550100100"),
                                            ("sip-ann", "sipann"), ("", "")])
def test_caller_digits(number, digits):
    assert caller_digits(number) == digits


def test_pin_login_webhook_says_event_source_phone(tmp_path):
    api = WebhookApi(tmp_path / "data", FAST)
    receiver = Receiver()

    async def body(client):
        await receiver.start()
        try:
            await agents(client)
            hook = await create_webhook(client, event_type="agent-login", method=GET, url=receiver.url("/login"))
            answer = await client.execute_action(PIN, LOGIN_READY, pin="1234", **MEDIA)
            assert answer.ok
            delivered = await eventually(lambda: _async(receiver.deliveries(hook.id)))
            assert delivered[0].fields == {"agent_id": "ann", "agent_status": "available", "agent_type": "local",
                                           "extension_name": "000*094@x", "event_source": "phone"}
        finally:
            await receiver.stop()

    api.run(body)


async def _async(value):
    return value
