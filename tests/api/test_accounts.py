"""Keys and accounts: who may call, and what one account sees of another."""

import grpc

from qroute.client import ClientError
from qroute.v1 import queue_pb2, queue_pb2_grpc

from ._util import call_center, fails

NOT_FOUND = grpc.StatusCode.NOT_FOUND
UNAUTHENTICATED = grpc.StatusCode.UNAUTHENTICATED
PERMISSION_DENIED = grpc.StatusCode.PERMISSION_DENIED


def test_calls_without_a_valid_key_are_unauthenticated(api):
    async def body(client):
        await call_center(client)
        key_id = api.key.split("_")[1]
        async with api.channel() as channel:
            stub = queue_pb2_grpc.QueueServiceStub(channel)
            request = queue_pb2.GetQueueRequest(queue_id="sales")
            for metadata in [(), (("authorization", "Basic abc"),), (("authorization", "Bearer"),),
                             (("authorization", "Bearer not-a-key"),),
                             (("authorization", f"Bearer qr_{key_id}_wrong-secret"),),
                             (("authorization", "Bearer qr_nosuchkey_secret"),)]:
                await fails(stub.GetQueue(request, metadata=metadata), UNAUTHENTICATED)
            assert (await stub.GetQueue(request, metadata=client.metadata)).id == "sales"

        async with api.admin() as admin:
            spare = await admin.create_api_key(api.account_id, "spare")
            async with api.client(spare.secret) as other:
                assert (await other.get_queue("sales")).name == "Sales"
                await admin.revoke_api_key(spare.id)
                await fails(other.get_queue("sales"), UNAUTHENTICATED)
                await fails(other.agent("ann"), UNAUTHENTICATED)
                await fails(admin.revoke_api_key(spare.id), NOT_FOUND)
            assert [k.id for k in await admin.list_api_keys(api.account_id)] != [spare.id]
        assert (await client.get_queue("sales")).id == "sales"  # the account's own key still works

    api.run(body)


def test_admin_and_account_keys_do_different_things(api):
    async def body(client):
        for call in (client.list_accounts(), client.create_account("Mine"),
                     client.create_api_key(api.account_id), client.list_api_keys(api.account_id)):
            await fails(call, PERMISSION_DENIED)
        assert (await client.get_account(api.account_id)).name == "Test account"

        async with api.admin() as admin:
            await fails(admin.create_queue(id="q", name="Q"), PERMISSION_DENIED)
            error = await fails(admin.create_account(""), grpc.StatusCode.INVALID_ARGUMENT)
            assert error.fields == ["name"]
            error = await fails(admin.create_account("n" * 129, time_zone="Mars/Olympus_Mons"),
                                grpc.StatusCode.INVALID_ARGUMENT)
            assert error.fields == ["name", "time_zone"]
            berlin = await admin.create_account("Berlin", time_zone="Europe/Berlin")
            assert berlin.time_zone == "Europe/Berlin"
            assert (await admin.create_account("Default")).time_zone == "UTC"
            assert {a.name for a in await admin.list_accounts()} == {"Test account", "Berlin", "Default"}
            await fails(admin.create_api_key("nosuchaccount"), NOT_FOUND)
            await fails(admin.get_account("nosuchaccount"), NOT_FOUND)
            keys = await admin.list_api_keys(api.account_id)
            assert [k.description for k in keys] == ["tests"] and keys[0].secret == ""

    api.run(body)


def test_another_accounts_ids_answer_not_found(api):
    async def body(client):
        await call_center(client, ring_timeout=30)
        async with client.agent("ann") as desk:
            session = await client.enqueue("sales")
            offer = (await desk.wait_for("offer", timeout=2)).offer

            async with api.admin() as admin:
                other_account = await admin.create_account("Other")
                other_key = (await admin.create_api_key(other_account.id)).secret
            async with api.client(other_key) as other:
                for call in (other.get_queue("sales"), other.queue_status("sales"), other.list_members("sales"),
                             other.update_queue("sales", name="Mine"), other.delete_queue("sales"),
                             other.add_members("sales", ["ann"]), other.enqueue("sales"),
                             other.get_recipient("ann"), other.recipient_status("ann"), other.login("ann"),
                             other.delete_recipient("ann"), other.agent("ann"),
                             other.get_session(session.id), other.abandon(session.id),
                             other.hangup(session.id), other.accept_offer(offer.offer_id),
                             other.reject_offer(offer.offer_id), other.get_account(api.account_id)):
                    await fails(call, NOT_FOUND)
                assert await other.list_queues() == [] and await other.list_recipients() == []
                assert await other.list_sessions() == [] and await other.queue_statuses() == {}
                # the same ids are free in another account
                await other.create_queue(id="sales", name="Their sales")
                await other.create_recipient(id="ann", name="Their Ann")
                assert (await other.get_account(other_account.id)).name == "Other"

            assert (await client.get_queue("sales")).name == "Sales"
            assert (await client.get_session(session.id)).state == 2  # still OFFERING
            await desk.accept(offer.offer_id)

    api.run(body)


def test_client_error_reads_bad_request_details(api):
    async def body(client):
        try:
            await client.create_queue(id="q", name="", ring_timeout=0)
        except ClientError as exc:
            assert exc.code == grpc.StatusCode.INVALID_ARGUMENT
            assert exc.violations == [("queue.name", "must be 1 to 128 characters"),
                                      ("queue.ring_timeout", "must be >= 1")]
            assert str(exc) == ("INVALID_ARGUMENT: queue.name: must be 1 to 128 characters; "
                                "queue.ring_timeout: must be >= 1")
        else:
            raise AssertionError("should have failed")

    api.run(body)
