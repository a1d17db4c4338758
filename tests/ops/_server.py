"""A real server with metrics for the operations tests (the API harness's way)."""

from __future__ import annotations

import asyncio

from qroute import server
from qroute.client import Client
from qroute.keys import new_key
from qroute.node import Node


class Served:
    def __init__(self, running: server.Running, admin_key: str) -> None:
        self.running = running
        self.admin_key = admin_key
        self.target = f"127.0.0.1:{running.port}"
        self.key = ""
        self.account_id = ""

    async def account(self) -> Client:
        async with Client(self.target, self.admin_key) as admin:
            account = await admin.create_account("Ops")
            self.account_id = account.id
            self.key = (await admin.create_api_key(account.id, "ops tests")).secret
        return self.client()

    def client(self) -> Client:
        """Another client acting with the account's key."""
        return Client(self.target, self.key)


async def serve(data_dir, metrics: bool = True) -> Served:
    admin_key = new_key("admin")[1]
    node = Node(data_dir, admin_key=admin_key, name="ops-node")
    running = await server.start(node, "127.0.0.1:0", metrics_listen="127.0.0.1:0" if metrics else None)
    return Served(running, admin_key)


async def http_get(port: int, path: str = "/metrics") -> tuple[int, str]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(f"GET {path} HTTP/1.0\r\nHost: x\r\n\r\n".encode())
    data = await reader.read()
    writer.close()
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split(b" ")[1]), body.decode()


async def call_flow(client: Client) -> None:
    """A queue, two agents, three callers: one answered and ended, one abandoned, one waiting."""
    await client.create_queue(id="sales", name="Sales", ring_timeout=5, tick_time=250)
    await client.create_queue(id="support", name="Support")
    for rid in ("ann", "bob"):
        await client.create_recipient(id=rid, name=rid.title())
    await client.add_members("sales", ["ann", "bob"])
    async with client.agent("ann") as ann:
        await ann.login(ready=True)
        first = await client.enqueue("sales", caller_number="+15550100")
        event = await ann.wait_for("offer", timeout=5)
        await ann.accept(event.offer.offer_id)
        await ann.hangup(first.id)
        await ann.set_availability(False)
        second = await client.enqueue("sales", caller_number="+15550101")
        await client.abandon(second.id)
        await client.enqueue("sales", caller_number="+15550102")


async def after_call_flow(data_dir, then, metrics: bool = False):
    """Serve, run ``call_flow`` with the account's client, then return
    ``await then(served, client)``; the server is stopped in any case."""
    served = await serve(data_dir, metrics=metrics)
    try:
        async with await served.account() as client:
            await call_flow(client)
            return await then(served, client)
    finally:
        await served.running.stop(0)


async def bob_ready_but_away_for_sales(client: Client) -> None:
    """Bob logs in, sets himself away for sales alone, then ready: so he is
    not offered the caller call_flow left waiting in sales."""
    await client.login("bob")
    await client.set_availability("bob", ready=False, queue_id="sales")
    await client.set_availability("bob", ready=True)
