"""The API tests' harness: a real qroute server on 127.0.0.1:0 over a data dir.

``api.run(body)`` runs ``async def body(client)`` in a new event loop with a
server started on the harness's data dir: the first run creates an account
and an API key for it (``api.account_id``, ``api.key``) with the admin key
(``api.admin_key``); ``client`` is a ``qroute.client.Client`` acting with the
account key. Each run is bounded by ``timeout`` seconds and fails on any
exception left unhandled in the loop. A second ``run`` starts a new server
on the same data dir: a restart.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import grpc

from qroute import server
from qroute.client import Client, ClientError
from qroute.keys import new_key
from qroute.node import Node

RUN_TIMEOUT = 10.0  # seconds for one run's body


class Api:
    """A server harness over ``data_dir`` (see the module docstring)."""

    def __init__(self, data_dir: Path, tls_cert: Path | None = None, tls_key: Path | None = None,
                 **node_options) -> None:
        self.data_dir = data_dir
        self.node_options = node_options  # passed to every Node this harness starts
        self.tls_cert, self.tls_key = tls_cert, tls_key  # serve TLS with them; clients trust the cert
        self.admin_key = new_key("admin")[1]
        self.account_id = ""
        self.key = ""
        self.port = 0
        self.running: server.Running | None = None

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"

    def run(self, body, timeout: float = RUN_TIMEOUT) -> None:
        asyncio.run(self._run(body, timeout))

    async def _run(self, body, timeout: float) -> None:
        loop_errors: list[dict] = []
        asyncio.get_running_loop().set_exception_handler(lambda loop, context: loop_errors.append(context))
        node = Node(self.data_dir, admin_key=self.admin_key, name="test-node", **self.node_options)
        self.running = await server.start(node,
                                          "127.0.0.1:0", tls_cert=self.tls_cert and str(self.tls_cert),
                                          tls_key=self.tls_key and str(self.tls_key))
        self.port = self.running.port
        try:
            if not self.account_id:
                async with self.admin() as admin:
                    account = await admin.create_account("Test account")
                    self.account_id = account.id
                    self.key = (await admin.create_api_key(account.id, "tests")).secret
            async with self.client() as client:
                await asyncio.wait_for(body(client), timeout)
        finally:
            await self.running.stop(0)
            self.running = None
        assert not loop_errors, f"unhandled in the event loop: {loop_errors}"

    def client(self, key: str | None = None) -> Client:
        """A client acting with ``key`` (default: the account's key)."""
        return Client(self.target, self.key if key is None else key, tls_ca=self.tls_cert)

    def admin(self) -> Client:
        return self.client(self.admin_key)

    def channel(self) -> grpc.aio.Channel:
        """A bare channel, for calls with hand-made metadata."""
        return grpc.aio.insecure_channel(self.target)


async def fails(awaitable, code: grpc.StatusCode) -> ClientError:
    """Await ``awaitable``, which must fail with ``code``; returns the error."""
    try:
        result = await awaitable
    except ClientError as exc:
        assert exc.code == code, f"expected {code.name}, got {exc}"
        assert "Traceback" not in exc.message and 'File "' not in exc.message
        return exc
    except grpc.aio.AioRpcError as exc:
        error = ClientError.from_rpc_error(exc)
        assert error.code == code, f"expected {code.name}, got {error}"
        assert "Traceback" not in error.message
        return error
    raise AssertionError(f"expected {code.name}, got {result!r}")


async def eventually(probe, timeout: float = 3.0, interval: float = 0.02):
    """Await ``probe()`` until it returns something truthy (real clock)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        value = await probe()
        if value:
            return value
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"still {value!r} after {timeout} s")
        await asyncio.sleep(interval)


async def call_center(client: Client, recipients=("ann",), ready: bool = True, recipient_fields=None,
                      **queue_fields):
    """Queue ``sales`` (ring_timeout 5 s, tick 250 ms unless overridden) whose
    members are ``recipients``, each with skill en=5, logged in (READY if ``ready``)."""
    queue = await client.create_queue(**{"id": "sales", "name": "Sales", "ring_timeout": 5, "tick_time": 250,
                                         **queue_fields})
    for recipient_id in recipients:
        await client.create_recipient(id=recipient_id, name=recipient_id.title(), skills={"en": 5},
                                      **(recipient_fields or {}))
    await client.add_members(queue.id, recipients)
    for recipient_id in recipients:
        await client.login(recipient_id, ready=ready)
    return queue
