"""A node over a data dir on a virtual clock, restarted at will.

``site.run(body)`` starts a ``Node`` on the site's data dir, runs
``body(floor)`` (sync or async) on the account's floor, waits until
everything it did is committed, and stops the node; the next ``run`` is a
restart. The clock carries over, so ``site.clock.advance`` between runs is
time the node was down. ``site.rows(sql)`` reads the database between runs.
"""

from __future__ import annotations

import asyncio
import inspect
import sqlite3
from pathlib import Path

from qroute.engine import VirtualClock
from qroute.keys import new_key
from qroute.node import DATABASE_FILE, Node

RUN_TIMEOUT = 10.0


class Site:
    def __init__(self, data_dir: Path, dispatcher_cls=None, durable: bool = True) -> None:
        self.data_dir = data_dir
        self.dispatcher_cls = dispatcher_cls
        self.durable = durable
        self.clock = VirtualClock()
        self.admin_key = new_key("admin")[1]
        self.account_id = ""
        self.node: Node | None = None

    def run(self, body=None, timeout: float = RUN_TIMEOUT):
        return asyncio.run(self._run(body, timeout))

    async def _run(self, body, timeout: float):
        loop_errors: list[dict] = []
        asyncio.get_running_loop().set_exception_handler(lambda loop, context: loop_errors.append(context))
        node = self.node = Node(self.data_dir, clock=self.clock, dispatcher_cls=self.dispatcher_cls,
                                admin_key=self.admin_key, name="test-node", durable=self.durable)
        await node.start()
        try:
            if not self.account_id:
                self.account_id = (await node.create_account("Durable", "UTC")).id
            floor = node.engine.floor(self.account_id)
            result = None
            if body is not None:
                result = body(floor)
                if inspect.isawaitable(result):
                    result = await asyncio.wait_for(result, timeout)
            await node.journal.durable()
            return result
        finally:
            await node.stop()
            self.node = None
            assert not loop_errors, f"unhandled in the event loop: {loop_errors}"

    def rows(self, sql: str, *params) -> list[tuple]:
        """Rows of a query on the stored database (between runs)."""
        conn = sqlite3.connect(self.data_dir / DATABASE_FILE)
        try:
            return conn.execute(sql, params).fetchall()
        finally:
            conn.close()


async def settle() -> None:
    """Let the scheduler run the pass that a restore or a command asked for."""
    for _ in range(3):
        await asyncio.sleep(0)


def check(floor) -> None:
    """Cross-checks between a (restored) floor's books and its dispatcher's."""
    from qroute import routing
    from qroute.domain.enums import SessionState

    floor.dispatcher._check()
    for queue in floor.queues.values():
        mine = [s for s in floor.sessions.values() if s.queue_id == queue.id]
        waiting = [s for s in mine if s.state == SessionState.WAITING]
        assert len(queue.line) == len(waiting) == floor.dispatcher.waiting_count(queue.handle)
        assert queue.offering == sum(1 for s in mine if s.state == SessionState.OFFERING)
        assert sum(queue.priorities.values()) == len(waiting)
        assert [key[3] for key in queue.line] == [
            floor._session_at[h].id for h in floor.dispatcher.queue_order(queue.handle)]
    for recipient in floor.recipients.values():
        assert recipient.state == recipient.derived_state(), recipient.id
        dispatcher_state = floor.dispatcher.recipient_stats(recipient.handle)[0]
        if recipient.session is not None:
            assert dispatcher_state == routing.BUSY and recipient.session.recipient_id == recipient.id
        elif recipient.in_wrapup:
            assert dispatcher_state == routing.WRAPUP
        elif recipient.offer is None:
            assert dispatcher_state == routing.FREE
