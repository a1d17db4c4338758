"""The engine: every account's live floor, and when their passes run."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from qroute.domain.events import DomainEvent
from qroute.engine.clock import SystemClock
from qroute.engine.floor import Floor
from qroute.errors import AlreadyExists, NotFound

DEFAULT_TICK_MS = 1000
MIN_TICK_MS = 250


class Engine:
    """Owns the floors (one per account). Synchronous; see ``PassScheduler``
    for how passes are driven on an event loop."""

    def __init__(self, clock=None, sink: Callable[[DomainEvent], None] | None = None,
                 dispatcher_cls=None, seed: int = 0) -> None:
        self.clock = clock or SystemClock()
        self.sink = sink or (lambda event: None)
        self.dispatcher_cls = dispatcher_cls
        self.seed = seed
        self.floors: dict[str, Floor] = {}
        self.on_change: Callable[[Floor], None] = lambda floor: None

    def open_floor(self, account_id: str) -> Floor:
        if account_id in self.floors:
            raise AlreadyExists(f"account {account_id} already has a floor")
        floor = Floor(account_id, self.clock, self.sink, self.dispatcher_cls, self.seed,
                      on_change=lambda f: self.on_change(f))
        self.floors[account_id] = floor
        return floor

    def floor(self, account_id: str) -> Floor:
        floor = self.floors.get(account_id)
        if floor is None:
            raise NotFound(f"account {account_id} not found")
        return floor

    def close_floor(self, account_id: str) -> None:
        self.floors.pop(account_id, None)

    def run_passes(self, now_ms: int | None = None) -> int:
        """A pass on every floor (ticks and tests); returns the records applied."""
        now = self.clock.now_ms() if now_ms is None else now_ms
        return sum(floor.run_pass(now) for floor in list(self.floors.values()))


def tick_ms(floor: Floor) -> int:
    """How often the floor must pass at least: its queues' smallest tick_time."""
    ticks = [queue.config.tick_time for queue in floor.queues.values()]
    return max(MIN_TICK_MS, min(ticks)) if ticks else DEFAULT_TICK_MS


class PassScheduler:
    """Runs a floor's pass as soon as something changed (once per loop
    iteration, however many commands came in it) and at least every tick."""

    def __init__(self, engine: Engine, on_error: Callable[[BaseException], None] | None = None) -> None:
        self.engine = engine
        self.on_error = on_error or (lambda exc: None)
        self._pending: dict[str, Floor] = {}
        self._scheduled = False
        self._ticker: asyncio.Task | None = None
        self._last_pass: dict[str, int] = {}
        # called after each pass as on_pass(seconds, records) when set (metrics)
        self.on_pass: Callable[[float, int], None] | None = None
        engine.on_change = self.request

    def request(self, floor: Floor) -> None:
        self._pending[floor.account_id] = floor
        if not self._scheduled:
            self._scheduled = True
            asyncio.get_running_loop().call_soon(self._run_pending)

    def _run_pending(self) -> None:
        self._scheduled = False
        pending, self._pending = self._pending, {}
        for floor in pending.values():
            self._pass(floor)

    def _pass(self, floor: Floor) -> None:
        now = self.engine.clock.now_ms()
        self._last_pass[floor.account_id] = now
        try:
            if self.on_pass is None:
                floor.run_pass(now)
            else:
                started = time.perf_counter()
                records = floor.run_pass(now)
                self.on_pass(time.perf_counter() - started, records)
        except Exception as exc:  # a bug: report it, keep routing the other accounts
            self.on_error(exc)

    async def _tick(self) -> None:
        while True:
            await asyncio.sleep(MIN_TICK_MS / 1000)
            now = self.engine.clock.now_ms()
            for floor in list(self.engine.floors.values()):
                if now - self._last_pass.get(floor.account_id, 0) >= tick_ms(floor):
                    self._pass(floor)

    def start(self) -> None:
        if self._ticker is None:
            self._ticker = asyncio.get_running_loop().create_task(self._tick(), name="qroute-ticker")

    async def stop(self) -> None:
        if self._ticker is not None:
            self._ticker.cancel()
            try:
                await self._ticker
            except asyncio.CancelledError:
                pass
            self._ticker = None
