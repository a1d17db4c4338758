"""The server as a whole: restart on the same data dir, health, reflection, binding."""

import asyncio
import shutil
import subprocess

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from qroute import server
from qroute.cli import main
from qroute.client import Client
from qroute.node import Node
from qroute.v1 import common_pb2 as v1

from ._util import Api, fails

QROUTE_SERVICES = ["qroute.v1.AccountService", "qroute.v1.QueueService", "qroute.v1.RecipientService",
                   "qroute.v1.SessionService"]


def test_a_restart_keeps_the_configuration(api):
    seen = {}

    async def configure(client):
        await client.create_queue(id="overflow", name="Overflow", timeout=60)
        await client.create_queue(
            id="sales", name="Sales", router=v1.ROUTER_MOST_IDLE, ring_timeout=15, agent_wrapup_time=30,
            timeout_redirect="overflow", hold_treatment="moh.wav",
            tier_expansion=[v1.TierExpansion(after_seconds=20, max_tier=2)])
        await client.create_recipient(id="ann", name="Ann", skills={"en": 5, "de": 2}, bounced_call_limit=3,
                                      unavailable_codes=["lunch"])
        await client.create_recipient(id="bob", name="Bob")
        await client.create_recipient(id="gone", name="Gone")
        await client.add_members("sales", ["ann", v1.Member(recipient_id="bob", tier=2, weight=3)])
        await client.add_members("overflow", ["bob"])
        await client.update_queue("overflow", name="Overflow line")
        await client.delete_recipient("gone")
        async with api.admin() as admin:
            other = await admin.create_account("Other", time_zone="Europe/Paris")
            seen["other_key"] = (await admin.create_api_key(other.id, "other")).secret
            revoked = await admin.create_api_key(api.account_id, "revoked")
            await admin.revoke_api_key(revoked.id)
            seen["revoked_key"] = revoked.secret
            seen["accounts"] = await admin.list_accounts()
            seen["keys"] = await admin.list_api_keys(api.account_id)
        async with api.client(seen["other_key"]) as other_client:
            await other_client.create_queue(id="sales", name="Paris sales")
        seen["queues"] = await client.list_queues()
        seen["recipients"] = await client.list_recipients()
        seen["members"] = {q: await client.list_members(q) for q in ("sales", "overflow")}

    async def check(client):
        assert await client.list_queues() == seen["queues"]
        assert await client.list_recipients() == seen["recipients"]
        assert {q: await client.list_members(q) for q in ("sales", "overflow")} == seen["members"]
        assert [r.id for r in seen["recipients"]] == ["ann", "bob"]
        assert (await client.get_queue("overflow")).name == "Overflow line"
        async with api.admin() as admin:
            assert await admin.list_accounts() == seen["accounts"]
            assert await admin.list_api_keys(api.account_id) == seen["keys"]
        async with api.client(seen["other_key"]) as other_client:
            assert [q.name for q in await other_client.list_queues()] == ["Paris sales"]
        async with api.client(seen["revoked_key"]) as revoked:
            await fails(revoked.list_queues(), grpc.StatusCode.UNAUTHENTICATED)
        # and the restored floor routes
        await client.login("ann", ready=True)
        async with client.agent("ann") as desk:
            session = await client.enqueue("sales", skills={"de": 2})
            offer = (await desk.wait_for("offer", timeout=2)).offer
            assert offer.session.id == session.id and offer.ring_timeout_ms == 15_000

    api.run(configure)
    api.run(check)  # a new server on the same data dir


def test_health_and_reflection_answer(api):
    async def body(client):
        health = health_pb2_grpc.HealthStub(client.channel)
        for service in ["", *QROUTE_SERVICES]:
            response = await health.Check(health_pb2.HealthCheckRequest(service=service))
            assert response.status == health_pb2.HealthCheckResponse.SERVING, service

        reflection = reflection_pb2_grpc.ServerReflectionStub(client.channel)

        async def ask(**request):
            responses = reflection.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(**request)]))
            return [response async for response in responses][0]

        listed = {s.name for s in (await ask(list_services="")).list_services_response.service}
        assert set(QROUTE_SERVICES) | {"grpc.health.v1.Health"} <= listed
        found = await ask(file_containing_symbol="qroute.v1.QueueService")
        assert found.file_descriptor_response.file_descriptor_proto

    api.run(body)


def test_every_method_of_every_service_is_served(api):
    """Methods are looked up in one table (``server._OneLookup``): each
    declared method answers (an empty request may fail, but not as
    UNIMPLEMENTED), and a method nobody declared is UNIMPLEMENTED."""
    methods = [(f"/{module.DESCRIPTOR.services_by_name[service].full_name}/{method.name}", method)
               for module, service, *_ in server.SERVICES
               for method in module.DESCRIPTOR.services_by_name[service].methods]
    methods += [(f"/grpc.health.v1.Health/{m.name}", m)  # List: grpc_health's servicer has none
                for m in health_pb2.DESCRIPTOR.services_by_name["Health"].methods if m.name != "List"]
    assert len(methods) > 60

    async def call(channel, path: str, method) -> grpc.StatusCode:
        kind = (method.client_streaming, method.server_streaming)
        metadata = (("authorization", f"Bearer {api.key}"),)
        try:
            if kind == (False, False):
                await channel.unary_unary(path)(b"", metadata=metadata, timeout=5)
            elif kind == (False, True):
                async for _ in channel.unary_stream(path)(b"", metadata=metadata, timeout=0.3):
                    break
            else:
                stream = channel.stream_stream(path)(iter([]), metadata=metadata, timeout=0.3)
                async for _ in stream:
                    break
        except grpc.aio.AioRpcError as exc:
            return exc.code()
        return grpc.StatusCode.OK

    async def body(client):
        table = server._OneLookup()  # every qroute method in the one table, none left to the slow path
        for _, _, add, servicer_cls in server.SERVICES:
            add(servicer_cls(api.running.node), table)
        assert {path for path, _ in methods if path.startswith("/qroute.")} <= table.methods.keys()
        for path, method in methods:
            assert await call(client.channel, path, method) != grpc.StatusCode.UNIMPLEMENTED, path
        unknown = await call(client.channel, "/qroute.v1.SessionService/NoSuchMethod", methods[0][1])
        assert unknown == grpc.StatusCode.UNIMPLEMENTED

    api.run(body)


def test_a_second_server_on_a_port_in_use_fails_loudly(api, tmp_path):
    async def body(client):
        with pytest.raises(server.BindError):
            await server.start(Node(tmp_path / "second", admin_key=api.admin_key), api.target)
        assert (await client.list_queues()) == []  # the first one still serves

    api.run(body)


@pytest.fixture
def certificate(tmp_path):
    """A self-signed certificate for 127.0.0.1 and localhost: (cert, key) paths."""
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                    "-nodes", "-days", "1", "-subj", "/CN=localhost", "-keyout", str(key), "-out", str(cert),
                    "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"], check=True, capture_output=True)
    return cert, key


def test_tls(tmp_path, certificate, capsys):
    cert, key = certificate
    api = Api(tmp_path / "data", tls_cert=cert, tls_key=key)

    async def body(client):
        await client.create_queue(id="sales", name="Sales")  # over TLS, trusting the cert
        async with Client(api.target, api.key) as plaintext:
            await fails(plaintext.list_queues(), grpc.StatusCode.UNAVAILABLE)
        status = await asyncio.to_thread(main, ["queue", "list", "--target", api.target, "--key", api.key,
                                                "--tls-ca", str(cert)])
        assert status == 0 and "Sales" in capsys.readouterr().out

    api.run(body)
