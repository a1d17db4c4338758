"""The admin verbs of ``qroute``: configure a running server and show what it
holds, for people. ``qroute.cli`` declares the options; each verb here is
``<group>_<verb>(args) -> exit status`` and talks through ``qroute.client``.

A failed call prints one line on stderr (``qroute: CODE: message``, naming
each bad field) and returns 1; never a traceback.
"""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path

from rich.console import Console
from rich.table import Table
from rich.text import Text

from qroute.client import Client, ClientError
from qroute.v1 import common_pb2

DEFAULT_TARGET = "127.0.0.1:50051"
TARGET_ENV = "QROUTE_TARGET"
API_KEY_ENV = "QROUTE_API_KEY"
# as in qroute.node, which is not imported here: it loads the whole engine
ADMIN_KEY_ENV = "QROUTE_ADMIN_KEY"
ADMIN_KEY_FILE = "admin.key"


class UsageError(Exception):
    """Something to fix on the command line (no key, unreadable file)."""


def _api_key(args, admin: bool) -> str:
    """``--key``; for admin verbs then $QROUTE_ADMIN_KEY and the server's
    ``<data dir>/admin.key``; then $QROUTE_API_KEY."""
    if args.key:
        return args.key
    if admin:
        if os.environ.get(ADMIN_KEY_ENV):
            return os.environ[ADMIN_KEY_ENV]
        path = Path(args.data_dir) / ADMIN_KEY_FILE
        if path.is_file():
            try:
                return path.read_text().strip()
            except OSError as exc:
                raise UsageError(f"cannot read the admin key in {path}: {exc.strerror}") from None
    if os.environ.get(API_KEY_ENV):
        return os.environ[API_KEY_ENV]
    where = f", or run on the server's data dir (--data-dir, holding {ADMIN_KEY_FILE})" if admin else ""
    raise UsageError(f"no API key: pass --key or set ${API_KEY_ENV}{where}")


def _run(args, action: Callable[[Client], Awaitable[None]], admin: bool = False) -> int:
    """Run ``action(client)`` against ``--target``; errors become one line and status 1."""
    try:
        key = _api_key(args, admin)
        target = args.target or os.environ.get(TARGET_ENV) or DEFAULT_TARGET
        if args.tls_ca and not Path(args.tls_ca).is_file():
            raise UsageError(f"--tls-ca {args.tls_ca}: no such file")

        async def session() -> None:
            async with Client(target, key, tls_ca=args.tls_ca) as client:
                await action(client)

        asyncio.run(session())
    except ClientError as exc:
        print(f"qroute: {_one_line(str(exc))}", file=sys.stderr)
        return 1
    except UsageError as exc:
        print(f"qroute: {exc}", file=sys.stderr)
        return 1
    return 0


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _console() -> Console:
    # piped output keeps whole ids instead of folding them to a terminal's width
    return Console(width=None if sys.stdout.isatty() else 200, highlight=False)


def _table(*columns: str) -> Table:
    table = Table(box=None, pad_edge=False, header_style="bold")
    for column in columns:
        table.add_column(column, no_wrap=True)
    return table


def _row(table: Table, *cells) -> None:
    table.add_row(*(Text(str(cell)) for cell in cells))  # Text: names are not rich markup


def _say(line: str) -> None:
    print(line, flush=True)


def _time(stamp) -> str:
    return stamp.ToDatetime().strftime("%Y-%m-%d %H:%M:%S") if stamp.seconds else "-"


def _duration(seconds: int) -> str:
    if seconds < 0:
        return "-"  # unbounded: nobody serves the queue
    hours, rest = divmod(seconds, 3600)
    return f"{hours}:{rest // 60:02}:{rest % 60:02}" if hours else f"{rest // 60}:{rest % 60:02}"


def _router_name(value: int) -> str:
    return common_pb2.Router.Name(value).removeprefix("ROUTER_").lower()


# -------------------------------------------------------------- accounts

def account_create(args) -> int:
    async def action(client: Client) -> None:
        account = await client.create_account(args.name, args.time_zone)
        _say(f"created account {account.id} ({account.name}, {account.time_zone})")

    return _run(args, action, admin=True)


def account_list(args) -> int:
    async def action(client: Client) -> None:
        table = _table("ID", "NAME", "TIME ZONE", "CREATED")
        for account in await client.list_accounts():
            _row(table, account.id, account.name, account.time_zone, _time(account.create_time))
        _console().print(table)

    return _run(args, action, admin=True)


def key_create(args) -> int:
    async def action(client: Client) -> None:
        key = await client.create_api_key(args.account_id, args.description, recipient_id=args.recipient)
        scope = f", acting for recipient {key.recipient_id} only" if key.recipient_id else ""
        _say(f"created API key {key.id} for account {key.account_id}{scope}; its secret, shown only now:")
        _say(key.secret)

    return _run(args, action, admin=True)


def key_list(args) -> int:
    async def action(client: Client) -> None:
        table = _table("ID", "DESCRIPTION", "RECIPIENT", "CREATED")
        for key in await client.list_api_keys(args.account_id):
            _row(table, key.id, key.description, key.recipient_id or "-", _time(key.create_time))
        _console().print(table)

    return _run(args, action, admin=True)


def key_revoke(args) -> int:
    async def action(client: Client) -> None:
        await client.revoke_api_key(args.key_id)
        _say(f"revoked API key {args.key_id}")

    return _run(args, action, admin=True)


# ---------------------------------------------------------------- queues

QUEUE_OPTIONS = ("router", "ring_timeout", "tick_time", "timeout", "agent_wrapup_time", "hold_treatment",
                 "timeout_redirect", "timeout_if_size_exceeds")
QUEUE_FLAGS = ("timeout_immediately_if_empty", "force_away_on_reject", "allow_self_join")


def queue_create(args) -> int:
    fields = {name: getattr(args, name) for name in QUEUE_OPTIONS if getattr(args, name) is not None}
    fields.update({name: True for name in QUEUE_FLAGS if getattr(args, name)})
    if "router" in fields:
        fields["router"] = common_pb2.Router.Value("ROUTER_" + fields["router"].upper())
    if args.tier_expansion:
        fields["tier_expansion"] = [common_pb2.TierExpansion(after_seconds=after, max_tier=tier)
                                    for after, tier in args.tier_expansion]

    async def action(client: Client) -> None:
        queue = await client.create_queue(id=args.id, name=args.name, **fields)
        _say(f"created queue {queue.id} ({queue.name}): router {_router_name(queue.router)}, "
             f"ring timeout {queue.ring_timeout} s, wrap-up {queue.agent_wrapup_time} s, "
             f"timeout {queue.timeout} s" + (f" then {queue.timeout_redirect}" if queue.timeout_redirect else ""))

    return _run(args, action)


def queue_list(args) -> int:
    async def action(client: Client) -> None:
        table = _table("ID", "NAME", "ROUTER", "RING", "WRAP-UP", "TIMEOUT", "REDIRECT", "HOLD TREATMENT")
        for queue in await client.list_queues():
            _row(table, queue.id, queue.name, _router_name(queue.router), f"{queue.ring_timeout} s",
                 f"{queue.agent_wrapup_time} s", f"{queue.timeout} s", queue.timeout_redirect or "-",
                 queue.hold_treatment or "-")
        _console().print(table)

    return _run(args, action)


def queue_status(args) -> int:
    async def action(client: Client) -> None:
        statuses = await client.queue_statuses(args.queue_ids)
        table = _table("QUEUE", "WAITING", "LONGEST", "EWT", "AVG WAIT", "AGENTS", "AVAILABLE",
                       "TOTAL", "MISSED", "ABANDONED")
        for column in table.columns[1:]:
            column.justify = "right"
        for queue_id in args.queue_ids or sorted(statuses):
            status = statuses[queue_id]
            stats = status.stats
            _row(table, queue_id, stats.active_session_count, _duration(stats.longest_wait),
                 _duration(stats.estimated_wait), _duration(stats.average_wait),
                 f"{status.active_recipient_count}/{stats.recipient_count}", status.available_recipient_count,
                 stats.total_sessions, stats.missed_sessions, stats.abandoned_sessions)
        _console().print(table)

    return _run(args, action)


# ------------------------------------------------------------ recipients

def recipient_create(args) -> int:
    fields = {"skills": dict(args.skill or ())}
    for name in ("name", "extension_name", "agent_number", "bounced_call_limit"):
        if getattr(args, name) is not None:
            fields[name] = getattr(args, name)
    if args.unavailable_code:
        fields["unavailable_codes"] = args.unavailable_code

    async def action(client: Client) -> None:
        recipient = await client.create_recipient(id=args.id, **fields)
        skills = ", ".join(f"{name}={level}" for name, level in sorted(recipient.skills.items()))
        _say(f"created recipient {recipient.id}" + (f" ({recipient.name})" if recipient.name else "")
             + (f": skills {skills}" if skills else ""))

    return _run(args, action)


def recipient_list(args) -> int:
    async def action(client: Client) -> None:
        table = _table("ID", "NAME", "SKILLS", "EXTENSION / NUMBER")
        for recipient in await client.list_recipients():
            skills = " ".join(f"{name}={level}" for name, level in sorted(recipient.skills.items()))
            _row(table, recipient.id, recipient.name or "-", skills or "-",
                 recipient.extension_name or recipient.agent_number or "-")
        _console().print(table)

    return _run(args, action)


# --------------------------------------------------------------- members

def member_add(args) -> int:
    members = [common_pb2.Member(recipient_id=rid, tier=args.tier, weight=args.weight) for rid in args.recipient_ids]

    async def action(client: Client) -> None:
        added = await client.add_members(args.queue_id, members)
        _say(f"queue {args.queue_id}: " + ", ".join(f"{m.recipient_id} (tier {m.tier})" for m in added))

    return _run(args, action)


def member_list(args) -> int:
    async def action(client: Client) -> None:
        table = _table("RECIPIENT", "TIER", "WEIGHT")
        for member in await client.list_members(args.queue_id):
            _row(table, member.recipient_id, member.tier, member.weight)
        _console().print(table)

    return _run(args, action)
