"""``qroute demo``: a server, a demo call center, and its calls on screen.

One command starts a qroute server (embedded SQLite in a temporary data dir
unless ``--data-dir`` is given) in this process, creates an account
``Demo`` with three queues and a dozen agents, connects an agent desktop
(``Connect`` stream, through ``qroute.client``) for each agent, and sends
callers (Poisson arrivals, some needing Spanish, some impatient) through
the public gRPC API, exactly as a phone system and agent desktops would.
For ``--duration`` seconds the terminal shows, live, each queue's waiting
callers and longest wait, each agent's state and call, offers per second
and waits. Then the callers stop, and it prints the address, the account's
API key and the commands to connect a real client; the server and the
agents stay up (a call you enqueue is answered) until Ctrl-C, or stop at
once with ``--exit``.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import random
import shutil
import signal
import sys
import tempfile
import time
from dataclasses import dataclass, field

QUEUES = [
    # id, name, router, wrap-up seconds, share of the callers
    ("sales", "Sales", "ROUTER_MOST_IDLE", 1, 0.45),
    ("support", "Support", "ROUTER_ROUND_ROBIN", 2, 0.40),
    ("billing", "Billing", "ROUTER_LEAST_CALLS", 1, 0.15),
]
NAMES = ["Ada", "Bo", "Cleo", "Dev", "Eli", "Fay", "Gus", "Hana", "Ivo", "Jun", "Kai", "Lea", "Max", "Nia",
         "Oto", "Pia", "Quin", "Rui", "Sol", "Tao", "Uma", "Vik", "Wen", "Xia", "Yul", "Zoe"]
SPANISH_SHARE = 0.2  # callers who need an agent speaking Spanish
IMPATIENT_SHARE = 0.3  # callers who hang up if they wait longer than their patience
BREAK_CHANCE = 0.04  # an agent takes a short break after a call


@dataclass
class AgentView:
    name: str
    queues: list[str]
    spanish: bool
    state: str = "LOGGED_OUT"
    caller: str = ""
    queue: str = ""
    calls: int = 0


@dataclass
class Board:
    """What the screen shows, kept up to date by the agents and callers."""

    started: float = field(default_factory=time.monotonic)
    agents: dict[str, AgentView] = field(default_factory=dict)
    queues: dict[str, object] = field(default_factory=dict)  # queue id -> QueueStatus
    offers: collections.deque = field(default_factory=collections.deque)  # monotonic times
    waits: collections.deque = field(default_factory=lambda: collections.deque(maxlen=200))  # seconds
    callers: int = 0
    answered: int = 0
    abandoned: int = 0
    log: collections.deque = field(default_factory=lambda: collections.deque(maxlen=6))

    def offers_per_second(self, span: float = 5.0) -> float:
        now = time.monotonic()
        while self.offers and self.offers[0] < now - span:
            self.offers.popleft()
        return len(self.offers) / min(span, max(0.5, now - self.started))


def _state_name(value: int) -> str:
    from qroute.v1 import common_pb2

    return common_pb2.RecipientState.Name(value).removeprefix("RECIPIENT_STATE_")


async def set_up(client, agents: int) -> dict[str, AgentView]:
    """The demo account's queues, agents (names, skills) and memberships."""
    from qroute.v1 import common_pb2, queue_pb2

    for queue_id, name, router, wrapup, _ in QUEUES:
        await client.create_queue(queue_pb2.Queue(
            id=queue_id, name=name, router=common_pb2.Router.Value(router), agent_wrapup_time=wrapup,
            ring_timeout=8, tick_time=250, hold_treatment="music/jazz.wav",
            tier_expansion=[common_pb2.TierExpansion(after_seconds=6, max_tier=2)]))
    views = {}
    for i in range(agents):
        name = NAMES[i % len(NAMES)] + ("" if i < len(NAMES) else str(i // len(NAMES) + 1))
        recipient_id = name.lower()
        spanish = i % 3 == 0
        # everyone takes sales or support first; billing is the overflow (tier 2) of a few
        home = [QUEUES[i % 2][0]]
        if i % 4 == 0:
            home.append(QUEUES[(i + 1) % 2][0])
        await client.create_recipient(id=recipient_id, name=name,
                                      skills={"en": 7, **({"es": 6} if spanish else {})},
                                      unavailable_codes=["break"])
        views[recipient_id] = AgentView(name, home + (["billing"] if i % 3 != 1 else []), spanish)
    for queue_id, *_ in QUEUES:
        members = []
        for recipient_id, view in views.items():
            if queue_id in view.queues:
                tier = 2 if queue_id == "billing" and len(view.queues) > 2 else 1
                members.append(common_pb2.Member(recipient_id=recipient_id, tier=tier))
        await client.add_members(queue_id, members)
    return views


async def agent(client, recipient_id: str, board: Board, rng: random.Random, talk_mean: float) -> None:
    """One simulated desktop: rings a moment, accepts, talks, hangs up (the
    queue's wrap-up follows), and now and then takes a short break."""
    from qroute.client import ClientError

    view = board.agents[recipient_id]
    async with client.agent(recipient_id) as desk:
        view.state = _state_name((await desk.login(ready=True)).state)
        while True:
            event = await desk.next_event()
            kind = event.WhichOneof("event")
            if kind == "state_changed":
                view.state = _state_name(event.state_changed.state)
                if view.state in ("READY", "AWAY"):
                    view.caller = view.queue = ""
                continue
            if kind == "offer_cancelled":
                view.caller = view.queue = ""
                continue
            if kind != "offer":
                continue
            session = event.offer.session
            view.caller, view.queue = session.caller.name or session.caller.number, session.queue_id
            view.state = "RINGING"
            board.offers.append(time.monotonic())
            await asyncio.sleep(rng.uniform(0.4, 1.5))  # it rings
            # the desktop's events queue up while it talks: show what each command answers
            try:
                view.state = _state_name((await desk.accept(event.offer.offer_id)).state)
            except ClientError:  # the caller hung up while it rang
                continue
            board.waits.append(session.wait_ms / 1000.0)
            board.answered += 1
            view.calls += 1
            await asyncio.sleep(min(30.0, rng.expovariate(1.0 / talk_mean)))
            with contextlib.suppress(ClientError):
                view.state = _state_name((await desk.hangup(session.id)).state)
            if rng.random() < BREAK_CHANCE:
                board.log.append(f"{view.name} takes a short break")
                with contextlib.suppress(ClientError):
                    view.state = _state_name((await desk.set_availability(False, unavailable_code="break")).state)
                    await asyncio.sleep(rng.uniform(3.0, 8.0))
                    view.state = _state_name((await desk.set_availability(True)).state)


CALLER_NAMES = ["Alice", "Bob", "Carol", "Dan", "Erin", "Frank", "Grace", "Heidi", "Ivan", "Judy", "Mallory",
                "Niaj", "Olivia", "Peggy", "Rupert", "Sybil", "Trent", "Victor", "Walter"]


async def callers(client, board: Board, rng: random.Random, per_second: float, until: float) -> None:
    """Poisson arrivals into the queues; an impatient caller hangs up after its patience."""
    shares = [share for *_, share in QUEUES]
    pending: set[asyncio.Task] = set()
    loop = asyncio.get_running_loop()

    async def impatient(session_id: str, patience: float) -> None:
        from qroute.client import ClientError
        from qroute.v1 import common_pb2

        await asyncio.sleep(patience)
        with contextlib.suppress(ClientError):
            session = await client.get_session(session_id)
            if session.state == common_pb2.SESSION_STATE_WAITING:
                await client.abandon(session_id)
                board.abandoned += 1

    while time.monotonic() < until:
        await asyncio.sleep(rng.expovariate(per_second))
        queue_id = rng.choices([q[0] for q in QUEUES], shares)[0]
        spanish = rng.random() < SPANISH_SHARE
        name = rng.choice(CALLER_NAMES)
        session = await client.enqueue(queue_id, caller_number=f"+1555{rng.randrange(10**6):06d}",
                                       caller_name=name, priority=1 if rng.random() < 0.1 else 0,
                                       skills={"es": 1} if spanish else None)
        board.callers += 1
        if rng.random() < IMPATIENT_SHARE:
            task = loop.create_task(impatient(session.id, rng.uniform(4.0, 12.0)))
            pending.add(task)
            task.add_done_callback(pending.discard)
    for task in list(pending):
        task.cancel()


async def watch(client, board: Board) -> None:
    while True:
        board.queues = await client.queue_statuses()
        await asyncio.sleep(0.5)


def render(board: Board, remaining: float, target: str):
    from rich.console import Group
    from rich.panel import Panel
    from rich.table import Table

    waits = sorted(board.waits)
    median_wait = waits[len(waits) // 2] if waits else 0.0
    header = (f"[b]qroute demo[/b] on {target}   offers/s {board.offers_per_second():.1f}   "
              f"callers {board.callers}   answered {board.answered}   abandoned {board.abandoned}   "
              f"median wait {median_wait:.1f} s   {max(0.0, remaining):.0f} s left")
    queues = Table(title="queues", title_justify="left", expand=True)
    for column in ("queue", "waiting + ringing", "longest wait", "estimated wait", "agents ready / logged in",
                   "total", "abandoned"):
        queues.add_column(column, justify="left" if column == "queue" else "right")
    for queue_id, *_ in QUEUES:
        status = board.queues.get(queue_id)
        if status is None:
            continue
        stats = status.stats
        bar = "▇" * min(20, stats.active_session_count)
        queues.add_row(queue_id, f"{bar} {stats.active_session_count}", f"{stats.longest_wait} s",
                       "-" if stats.estimated_wait < 0 else f"{stats.estimated_wait} s",
                       f"{status.available_recipient_count} / {status.active_recipient_count}",
                       str(stats.total_sessions), str(stats.abandoned_sessions))
    colors = {"READY": "green", "RINGING": "yellow", "BUSY": "red", "WRAPUP": "magenta", "AWAY": "blue",
              "LOGGED_OUT": "dim"}
    agents = Table(title="agents", title_justify="left", expand=True)
    for column in ("agent", "state", "call", "queues", "calls"):
        agents.add_column(column, justify="right" if column == "calls" else "left")
    for view in board.agents.values():
        color = colors.get(view.state, "white")
        call = f"{view.caller} ({view.queue})" if view.caller else ""
        agents.add_row(view.name + (" (es)" if view.spanish else ""), f"[{color}]{view.state}[/{color}]", call,
                       ", ".join(view.queues), str(view.calls))
    parts = [header, queues, agents]
    if board.log:
        parts.append("\n".join(board.log))
    return Panel(Group(*parts), border_style="cyan")


def instructions(target: str, account_id: str, key: str, data_dir: str, serving: bool) -> str:
    python = (
        "import asyncio\n"
        "from qroute.client import Client\n\n"
        "async def main():\n"
        f"    async with Client(\"{target}\", \"{key}\") as client:\n"
        "        session = await client.enqueue(\"sales\", caller_number=\"+15550100\", caller_name=\"You\")\n"
        "        print(session.id, session.state, session.position)\n\n"
        "asyncio.run(main())")
    lines = [
        "",
        f"The demo account {account_id} lives on {target} (data in {data_dir}).",
        f"Its API key:  {key}",
        "",
        "Enqueue a caller with grpcurl (reflection is on); a demo agent answers it:",
        f"  grpcurl -plaintext -H 'authorization: Bearer {key}' \\",
        "    -d '{\"queue_id\": \"sales\", \"caller\": {\"number\": \"+15550100\", \"name\": \"You\"}}' \\",
        f"    {target} qroute.v1.SessionService/Enqueue",
        "",
        "Watch the queues with the command line:",
        f"  QROUTE_TARGET={target} QROUTE_API_KEY={key} qroute queue status",
        "",
        "Or from Python (qroute.client):",
        *("  " + line for line in python.splitlines()),
        "",
    ]
    if serving:
        lines.append("The server and the demo agents keep running; Ctrl-C stops them.")
    return "\n".join(lines)


async def main(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.live import Live

    from qroute import server
    from qroute.client import Client
    from qroute.keys import new_key
    from qroute.node import Node

    console = Console()
    data_dir = args.data_dir or tempfile.mkdtemp(prefix="qroute-demo-")
    admin_key = new_key("admin")[1]
    try:
        running = await server.start(Node(data_dir, admin_key=admin_key, name="demo"), args.listen)
    except server.BindError as exc:
        print(f"qroute: {exc} (pick another address with --listen HOST:PORT)", file=sys.stderr)
        return 1
    target = f"{args.listen.rsplit(':', 1)[0]}:{running.port}"
    tasks: list[asyncio.Task] = []
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    client = None
    try:
        async with Client(target, admin_key) as admin:
            account = await admin.create_account("Demo")
            key = (await admin.create_api_key(account.id, "qroute demo")).secret
        client = Client(target, key)
        board = Board()
        board.agents = await set_up(client, args.agents)
        rng = random.Random(args.seed)
        # agents busy about 80% of the time at the chosen arrival rate
        talk_mean = max(1.0, 0.8 * args.agents / args.calls_per_second - 2.5)
        for recipient_id in board.agents:
            tasks.append(loop.create_task(agent(client, recipient_id, board,
                                                random.Random(rng.random()), talk_mean)))
        tasks.append(loop.create_task(watch(client, board)))
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        until = time.monotonic() + args.duration
        show = loop.create_task(callers(client, board, rng, args.calls_per_second, until))
        stopped = loop.create_task(stop.wait())
        tasks.append(stopped)
        with Live(render(board, args.duration, target), console=console, refresh_per_second=4,
                  transient=False) as live:
            while not show.done() and not stop.is_set():
                await asyncio.wait([show, stopped], timeout=0.25, return_when=asyncio.FIRST_COMPLETED)
                live.update(render(board, until - time.monotonic(), target))
        if show.done() and not show.cancelled() and show.exception() is not None:
            raise show.exception()
        show.cancel()
        serving = not args.exit and not stop.is_set()
        console.print(instructions(target, account.id, key, data_dir, serving), highlight=False, markup=False,
                      soft_wrap=True)
        if serving:
            await stop.wait()
        return 0
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if client is not None:
            await client.close()
        await running.stop(1.0)
        if not args.data_dir:
            shutil.rmtree(data_dir, ignore_errors=True)


def run(args: argparse.Namespace) -> int:
    """``qroute demo``; returns the exit status."""
    from qroute import server

    status = 0

    async def wrapped() -> None:
        nonlocal status
        status = await main(args)

    server.run(wrapped())
    return status
