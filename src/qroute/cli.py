"""The ``qroute`` command line.

Every command is an entry of ``COMMANDS``: its help, a function declaring its
options, and a handler that imports the command's module only when it runs,
so ``qroute --help`` and each command load nothing the others need (grpc,
the compiled core, rich). A ``Group`` holds sub-commands (``bench core``).
To add a command, write ``_<name>_arguments`` and ``_<name>`` below and list
them in ``COMMANDS``. The admin verbs (``account``, ``key``, ``queue``,
``recipient``, ``member``) talk to a running server; their work is in
``qroute.admin``.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Command:
    help: str
    arguments: Callable[[argparse.ArgumentParser], None]
    handler: Callable[[argparse.Namespace], int | None]


@dataclass(frozen=True)
class Group:
    help: str
    commands: dict[str, Command | Group]


# ------------------------------------------------------------------ bench core

def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _bench_core_arguments(parser: argparse.ArgumentParser) -> None:
    # defaults are the standard workload (qroute.bench.workload.STANDARD)
    parser.add_argument("--sessions", type=_positive_int, default=100_000,
                        help="waiting sessions (default %(default)s)")
    parser.add_argument("--recipients", type=_positive_int, default=10_000,
                        help="recipients, each in 1 to 5 queues (default %(default)s)")
    parser.add_argument("--queues", type=_positive_int, default=500,
                        help="queues (default %(default)s)")
    parser.add_argument("--repeat", type=_positive_int, default=5,
                        help="samples of each figure; the reference gets fewer full passes "
                             "(default %(default)s)")
    parser.add_argument("--seed", type=int, default=1, help="workload seed (default %(default)s)")
    parser.add_argument("--json", metavar="FILE", help="also write every sample to FILE")
    parser.add_argument("--impl", choices=("both", "compiled", "reference"), default="both",
                        help="implementations to measure (default %(default)s)")


def _bench_core(args: argparse.Namespace) -> int | None:
    from qroute.bench import core

    return core.run(args)


# ------------------------------------------------------------------- bench e2e

def _positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
    return value


def _non_negative_float(text: str) -> float:
    value = float(text)
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {text}")
    return value


def _bench_e2e_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--target", metavar="HOST:PORT",
                        help="a running server (default: start one on a temporary data dir)")
    parser.add_argument("--admin-key", dest="admin_key", metavar="KEY",
                        help="admin key of --target, to create the bench account (default $QROUTE_ADMIN_KEY)")
    parser.add_argument("--server-pid", dest="server_pid", type=_positive_int, metavar="PID",
                        help="process id of --target when it runs here: its CPU and memory are then reported")
    parser.add_argument("--server-option", dest="server_options", action="append", metavar="OPTION",
                        help="pass OPTION to the `qroute serve` the bench starts, e.g. "
                             "--server-option=--sync=full (repeatable)")
    parser.add_argument("--duration", type=_positive_float, default=30.0, metavar="SECONDS",
                        help="length of the main phase (default %(default)s)")
    parser.add_argument("--agents", type=_positive_int, default=2000, help="agent desktops (default %(default)s)")
    parser.add_argument("--calls-per-second", dest="calls_per_second", type=_positive_float, metavar="R",
                        help="Poisson arrivals at R callers/s (default: as fast as the server takes them)")
    parser.add_argument("--ring-ms", dest="ring_ms", type=_non_negative_int, default=10,
                        help="an agent accepts an offer after it rang this long (default %(default)s)")
    parser.add_argument("--talk-ms", dest="talk_ms", type=_non_negative_int, default=500,
                        help="talk time of every call (default %(default)s)")
    parser.add_argument("--wrapup-ms", dest="wrapup_ms", type=_non_negative_int, default=10,
                        help="wrap-up before the agent finishes it (default %(default)s)")
    parser.add_argument("--subscribers", type=_non_negative_int, default=0,
                        help="event subscriptions held during the main phase (default %(default)s)")
    parser.add_argument("--enqueue", choices=("stream", "unary"), default="stream",
                        help="callers arrive through EnqueueStream or Enqueue (default %(default)s)")
    parser.add_argument("--enqueue-streams", dest="enqueue_streams", type=_positive_int, default=1, metavar="N",
                        help="with --enqueue stream: callers take turns on N EnqueueStream calls, as several "
                             "gateways would send them (default %(default)s)")
    parser.add_argument("--desktops", choices=("connect", "gateway"), default="connect",
                        help="agent desktops each on its own Connect stream, or many on each ConnectGateway "
                             "stream, as an edge fronting them holds them (default %(default)s)")
    parser.add_argument("--hold", type=_non_negative_int, default=0, metavar="N",
                        help="park N more waiting sessions in a queue nobody serves (default %(default)s)")
    parser.add_argument("--latency-rate", dest="latency_rate", type=_positive_float, default=100.0, metavar="R",
                        help="after the main phase, callers at R/s for the enqueue→offer latency with agents "
                             "free (default %(default)s)")
    parser.add_argument("--latency-seconds", dest="latency_seconds", type=float, default=5.0, metavar="SECONDS",
                        help="length of that phase; 0 skips it (default %(default)s)")
    probes = parser.add_argument_group("probes and pacing")
    probes.add_argument("--rounds", type=_positive_int, default=3,
                        help="interleaved rounds of the ceiling and enqueue probes (default %(default)s)")
    probes.add_argument("--probe-seconds", dest="probe_seconds", type=_positive_float, default=2.0,
                        help="measured length of each probe (default %(default)s)")
    probes.add_argument("--concurrency", type=_positive_int, default=64,
                        help="unary calls in flight, bare and qroute alike: enough that the bare server "
                             "reaches its ceiling (default %(default)s)")
    probes.add_argument("--window", type=_positive_int, default=256,
                        help="outstanding stream messages, bare and qroute alike (default %(default)s)")
    probes.add_argument("--max-waiting", dest="max_waiting", type=_positive_int, default=64,
                        help="without --calls-per-second: callers waiting for an offer at most "
                             "(default %(default)s)")
    parser.add_argument("--seed", type=int, default=1, help="arrivals seed (default %(default)s)")
    parser.add_argument("--json", metavar="FILE", help="also write every figure to FILE")
    parser.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bar")


def _bench_e2e(args: argparse.Namespace) -> int | None:
    from qroute.bench import e2e

    return e2e.run(args)


# -------------------------------------------------------------------- simulate

def _agents_range(text: str) -> list[int]:
    from qroute.simulate import agent_range

    return agent_range(text)


def _simulate_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--agents", type=_agents_range, default=[10], metavar="N|A-B[:STEP]",
                        help="agents, or a range of staffing levels (default 10)")
    parser.add_argument("--calls-per-hour", dest="calls_per_hour", type=_positive_float, default=160.0,
                        metavar="R", help="Poisson arrivals (default %(default)s)")
    parser.add_argument("--aht", type=_positive_float, default=180.0, metavar="SECONDS",
                        help="average handle (talk) time (default %(default)s)")
    parser.add_argument("--handle", default="exponential", metavar="DIST",
                        help="handle-time distribution: exponential, constant, lognormal:CV, or file:PATH "
                             "of observed handle times in seconds (default %(default)s)")
    parser.add_argument("--calls", type=_positive_int, default=100_000, help="callers (default %(default)s)")
    parser.add_argument("--seed", type=int, default=1, help="random seed (default %(default)s)")
    parser.add_argument("--sl-threshold", dest="sl_threshold", type=float, default=20.0, metavar="SECONDS",
                        help="service level: answered within this wait (default %(default)s)")
    parser.add_argument("--patience", type=_positive_float, metavar="SECONDS",
                        help="mean (exponential) time before a waiting caller hangs up (default: never)")
    parser.add_argument("--wrapup", type=_non_negative_int, default=0, metavar="SECONDS",
                        help="wrap-up after every call (default %(default)s)")
    parser.add_argument("--queues", type=_positive_int, default=1, help="queues sharing the calls (default 1)")
    parser.add_argument("--agent-queues", dest="agent_queues", type=_non_negative_int, default=0, metavar="K",
                        help="queues each agent serves (default 0: all)")
    parser.add_argument("--skills", type=_non_negative_int, default=0,
                        help="each call needs one of this many skills (default 0: none)")
    parser.add_argument("--agent-skills", dest="agent_skills", type=_non_negative_int, default=0, metavar="K",
                        help="skills each agent has (default 0: all)")
    parser.add_argument("--router", choices=ROUTERS, default="round_robin", help="the queues' router")
    parser.add_argument("--queue-timeout", dest="queue_timeout", type=_positive_int, default=3600,
                        metavar="SECONDS", help="the queues' timeout (default %(default)s)")
    parser.add_argument("--warmup-calls", dest="warmup_calls", type=_non_negative_int, metavar="N",
                        help="first calls left out of the figures (default 2%% of --calls)")
    parser.add_argument("--json", metavar="FILE", help="write the figures to FILE (a list for a range)")
    parser.add_argument("--plot", metavar="FILE.png",
                        help="chart of service level and ASA against staffing (needs qroute[plot])")


def _simulate(args: argparse.Namespace) -> int | None:
    from qroute import simulate

    return simulate.run(args)


# ------------------------------------------------------------------------ demo

def _demo_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--listen", default="127.0.0.1:50051", metavar="HOST:PORT",
                        help="address to serve gRPC on (default %(default)s)")
    parser.add_argument("--data-dir", metavar="DIR",
                        help="the SQLite data dir (default: a temporary one, removed at exit)")
    parser.add_argument("--duration", type=_positive_float, default=60.0, metavar="SECONDS",
                        help="how long calls flow on screen (default %(default)s)")
    parser.add_argument("--agents", type=_positive_int, default=12, help="demo agents (default %(default)s)")
    parser.add_argument("--calls-per-second", dest="calls_per_second", type=_positive_float, default=4.0,
                        metavar="R", help="demo callers per second (default %(default)s)")
    parser.add_argument("--exit", action="store_true",
                        help="stop the server after the show instead of serving until Ctrl-C")
    parser.add_argument("--seed", type=int, default=1, help="random seed (default %(default)s)")


def _demo(args: argparse.Namespace) -> int | None:
    from qroute import demo

    return demo.run(args)


# ----------------------------------------------------------------- admin verbs

ROUTERS = ("round_robin", "most_idle", "least_calls", "least_offers", "least_talk_time", "linear", "random",
           "most_skilled", "ring_all")


def _admin(verb: str) -> Callable[[argparse.Namespace], int | None]:
    """The handler of an admin verb: ``qroute.admin.<verb>``, imported when it runs."""

    def handler(args: argparse.Namespace) -> int | None:
        from qroute import admin

        return getattr(admin, verb)(args)

    return handler


def _remote(parser: argparse.ArgumentParser, admin: bool = False) -> None:
    """The options of every verb that calls a server."""
    group = parser.add_argument_group("connection")
    group.add_argument("--target", metavar="HOST:PORT",
                       help="the server (default $QROUTE_TARGET, else 127.0.0.1:50051)")
    group.add_argument("--key", metavar="API_KEY",
                       help="API key (default $QROUTE_ADMIN_KEY, then DIR/admin.key, then $QROUTE_API_KEY)"
                       if admin else "API key of the account (default $QROUTE_API_KEY)")
    group.add_argument("--tls-ca", metavar="FILE", help="PEM CA certificate: connect with TLS and trust it")
    if admin:
        group.add_argument("--data-dir", default="./qroute-data", metavar="DIR",
                           help="the server's data dir, where its admin.key is (default %(default)s)")


def _admin_remote(parser: argparse.ArgumentParser) -> None:
    _remote(parser, admin=True)


def _non_negative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be at least 0, got {value}")
    return value


def _skill(text: str) -> tuple[str, int]:
    name, equals, level = text.partition("=")
    if not name or not equals or not level.isdigit():
        raise argparse.ArgumentTypeError(f"expected NAME=LEVEL (e.g. en=5), got {text!r}")
    return name, int(level)


def _tier_step(text: str) -> tuple[int, int]:
    after, colon, tier = text.partition(":")
    if not colon or not after.isdigit() or not tier.isdigit():
        raise argparse.ArgumentTypeError(f"expected AFTER_SECONDS:MAX_TIER (e.g. 30:2), got {text!r}")
    return int(after), int(tier)


def _account_create_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("name", metavar="NAME", help="display name, 1 to 128 characters")
    parser.add_argument("--time-zone", default="", metavar="ZONE", help="IANA time zone (default UTC)")
    _admin_remote(parser)


def _key_create_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("account_id", metavar="ACCOUNT_ID")
    parser.add_argument("--description", default="", help="who or what uses the key")
    parser.add_argument("--recipient", default="", metavar="RECIPIENT_ID",
                        help="the key acts only for this recipient and the recipients it supervises")
    _admin_remote(parser)


def _key_list_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("account_id", metavar="ACCOUNT_ID")
    _admin_remote(parser)


def _key_revoke_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("key_id", metavar="KEY_ID")
    _admin_remote(parser)


def _queue_create_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("id", metavar="ID", help="the queue's id")
    parser.add_argument("--name", required=True, help="display name, 1 to 128 characters")
    parser.add_argument("--router", choices=ROUTERS, metavar="ROUTER",
                        help=f"how members are picked: {', '.join(ROUTERS)} (default round_robin)")
    parser.add_argument("--ring-timeout", dest="ring_timeout", type=int, metavar="SECONDS",
                        help="an offer rings this long before it is missed, >= 1 (default 20)")
    parser.add_argument("--tick-time", dest="tick_time", type=int, metavar="MS",
                        help="longest time between two dispatch passes, >= 250 (default 1000)")
    parser.add_argument("--timeout", type=int, metavar="SECONDS",
                        help="longest wait in the queue, >= 10 (default 3600)")
    parser.add_argument("--agent-wrapup-time", dest="agent_wrapup_time", type=int, metavar="SECONDS",
                        help="wrap-up after each call (default 0)")
    parser.add_argument("--hold-treatment", dest="hold_treatment", metavar="MEDIA",
                        help="what the phone system plays to waiting callers")
    parser.add_argument("--timeout-redirect", dest="timeout_redirect", metavar="QUEUE_ID",
                        help="queue a timed-out session moves to")
    parser.add_argument("--timeout-if-size-exceeds", dest="timeout_if_size_exceeds", type=int, metavar="N",
                        help="refuse sessions while N are waiting (default 0: off)")
    parser.add_argument("--timeout-immediately-if-empty", dest="timeout_immediately_if_empty",
                        action="store_true", help="refuse sessions while no member is logged in")
    parser.add_argument("--force-away-on-reject", dest="force_away_on_reject", action="store_true",
                        help="a member who rejects an offer is made AWAY")
    parser.add_argument("--allow-self-join", dest="allow_self_join", action="store_true",
                        help="recipients may join and leave the queue themselves")
    parser.add_argument("--tier-expansion", dest="tier_expansion", type=_tier_step, action="append",
                        metavar="AFTER_SECONDS:MAX_TIER", help="after a wait, widen to higher tiers (repeatable)")
    _remote(parser)


def _queue_status_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("queue_ids", nargs="*", metavar="QUEUE_ID", help="queues to show (default: all)")
    _remote(parser)


def _recipient_create_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("id", metavar="ID", help="the recipient's id")
    parser.add_argument("--name", help="display name")
    parser.add_argument("--skill", type=_skill, action="extend", nargs="+", metavar="NAME=LEVEL",
                        help="a skill and its level 1 to 10 (repeatable: --skill en=5 fr=3)")
    parser.add_argument("--extension", dest="extension_name", metavar="EXTENSION",
                        help="the phone system's extension (local agents)")
    parser.add_argument("--agent-number", dest="agent_number", metavar="NUMBER",
                        help="external number (remote agents)")
    parser.add_argument("--bounced-call-limit", dest="bounced_call_limit", type=_non_negative_int, metavar="N",
                        help="missed offers in a row that make it AWAY (default 0: off)")
    parser.add_argument("--unavailable-code", dest="unavailable_code", action="append", metavar="CODE",
                        help="a reason code it may give with AWAY (repeatable)")
    _remote(parser)


def _member_add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("queue_id", metavar="QUEUE_ID")
    parser.add_argument("recipient_ids", nargs="+", metavar="RECIPIENT_ID")
    parser.add_argument("--tier", type=_positive_int, default=1, help="membership tier (default %(default)s)")
    parser.add_argument("--weight", type=_non_negative_int, default=0, help="member weight (default %(default)s)")
    _remote(parser)


def _member_list_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("queue_id", metavar="QUEUE_ID")
    _remote(parser)


# ----------------------------------------------------------------------- serve

def _serve_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--listen", default="127.0.0.1:50051", metavar="HOST:PORT",
                        help="address to serve gRPC on (default %(default)s)")
    parser.add_argument("--data-dir", default="./qroute-data", metavar="DIR",
                        help="where the SQLite database and the admin key live (default %(default)s)")
    parser.add_argument("--tls-cert", metavar="FILE", help="PEM certificate chain: serve TLS")
    parser.add_argument("--tls-key", metavar="FILE", help="PEM private key of --tls-cert")
    parser.add_argument("--sync", choices=("normal", "full"), default="normal",
                        help="SQLite synchronous mode: full also survives power loss (default %(default)s)")
    parser.add_argument("--commit-interval-ms", type=_non_negative_float, default=2.0, metavar="MS",
                        help="while several mutations wait for a commit, start one at most every MS ms so "
                             "more of them share it; a lone caller never waits (default %(default)s, 0 = off)")
    parser.add_argument("--storage-writer", choices=("process", "thread"), default="process",
                        help="run SQLite's write connection in a child process, away from the event loop's "
                             "GIL (commits wait far less under load), or in a thread of the server "
                             "(default %(default)s)")
    parser.add_argument("--no-durability", action="store_true",
                        help="store nothing the engine does and answer without waiting for a commit "
                             "(benchmarks only: a restart loses sessions, state and configuration changes)")
    parser.add_argument("--log-level", default="info", choices=("debug", "info", "warning", "error"),
                        help="debug also logs every RPC (default %(default)s)")
    parser.add_argument("--log-format", default="console", choices=("console", "json"),
                        help="log lines for people, or one JSON object per line (default %(default)s)")
    parser.add_argument("--metrics-listen", dest="metrics_listen", metavar="HOST:PORT",
                        help="serve Prometheus metrics on http://HOST:PORT/metrics (default: off)")
    parser.add_argument("--config", metavar="FILE",
                        help="TOML file of these settings (keys as the flags, with _: data_dir = ...); "
                             "$QROUTE_<SETTING> overrides it and flags override both "
                             "(default $QROUTE_CONFIG)")
    hooks = parser.add_argument_group("webhooks")
    hooks.add_argument("--webhook-allow", dest="webhook_allow", type=_network, action="append", default=[],
                       metavar="CIDR", help="let webhooks call this non-public network (loopback, private...), "
                                            "e.g. 127.0.0.1/32 (repeatable; default: public addresses only)")
    hooks.add_argument("--webhook-max-age", dest="webhook_max_age", type=_positive_int, default=86_400,
                       metavar="SECONDS", help="stop retrying a delivery this long after its event "
                                               "(default %(default)s)")
    hooks.add_argument("--webhook-timeout", dest="webhook_timeout", type=_positive_int, default=10,
                       metavar="SECONDS", help="time one delivery attempt may take (default %(default)s)")
    events = parser.add_argument_group("event stream (EventService.Subscribe)")
    events.add_argument("--event-retention-count", dest="event_retention_count", type=_non_negative_int,
                        default=1_000_000, metavar="N",
                        help="events kept per account for replays (0: no limit; default %(default)s)")
    events.add_argument("--event-retention-hours", dest="event_retention_hours", type=_non_negative_int,
                        default=168, metavar="HOURS",
                        help="hours events are kept for replays (0: no limit; default %(default)s)")
    events.add_argument("--event-buffer", dest="event_buffer", type=_positive_int, default=65_536, metavar="N",
                        help="recent events kept in memory per account; a subscriber further behind is "
                             "cut off and resumes (default %(default)s)")


def _network(text: str):
    from qroute.events.webhooks import parse_networks

    try:
        return parse_networks([text])[0]
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _serve(args: argparse.Namespace) -> int | None:
    from qroute import server
    from qroute.events.bus import Retention
    from qroute.events.webhooks import WebhookSettings
    from qroute.node import ADMIN_KEY_ENV, Node

    from qroute import logs

    logs.setup(args.log_level, args.log_format)
    webhooks = WebhookSettings(allow=tuple(args.webhook_allow), max_age_ms=args.webhook_max_age * 1000,
                               timeout_s=float(args.webhook_timeout))
    retention = Retention(count=args.event_retention_count, age_ms=args.event_retention_hours * 3_600_000,
                          ring_size=args.event_buffer)
    node = Node(args.data_dir, synchronous=args.sync.upper(), webhooks=webhooks,
                durable=not args.no_durability, event_retention=retention,
                commit_interval_ms=args.commit_interval_ms, writer_process=args.storage_writer == "process")

    def ready(running) -> None:
        where = (f"in {running.node.admin_key_path}" if running.node.admin_key_path
                 else f"from ${ADMIN_KEY_ENV}")
        scheme = "TLS" if args.tls_cert else "plaintext"
        print(f"qroute serving on {args.listen.rsplit(':', 1)[0]}:{running.port} ({scheme}), "
              f"data in {args.data_dir}; admin key {where}", flush=True)

    try:
        server.run(server.serve_forever(node, args.listen, args.tls_cert, args.tls_key, ready=ready,
                                        metrics_listen=args.metrics_listen))
    except server.BindError as exc:
        print(f"qroute: {exc}", file=sys.stderr)
        return 1
    return 0


# ---------------------------------------------------------------- config show

def _config_show(args: argparse.Namespace) -> int | None:
    from qroute import config

    base = _subparser(build_parser(), ("config", "show"))  # flags' own defaults
    sys.stdout.write(config.show(base, args.setting_parser or base, args, args.setting_sources))
    return 0


# ------------------------------------------------------------------------- top

def _top_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--queue", dest="queues", action="append", metavar="QUEUE_ID",
                        help="show only this queue (repeatable; default: all; key f filters live)")
    parser.add_argument("--sl-threshold", dest="sl_threshold", type=_positive_float, default=20.0,
                        metavar="SECONDS", help="service level: answered within this wait (default %(default)s)")
    parser.add_argument("--refresh", type=_positive_float, default=10.0, metavar="HZ",
                        help="redraws per second at most (default %(default)s)")
    parser.add_argument("--frames", type=_positive_int, metavar="N",
                        help="draw N frames to stdout, without keys or full screen, then exit; a server that "
                             "cannot be reached is an error, not retried (for scripts and checks)")
    _remote(parser)


def _top(args: argparse.Namespace) -> int | None:
    from qroute import top

    return top.run(args)


# Commands whose options are serve's settings: a config file and $QROUTE_* are their defaults.
LAYERED = {("serve",), ("config", "show")}

COMMANDS: dict[str, Command | Group] = {
    "serve": Command("serve the gRPC API (embedded SQLite in --data-dir)", _serve_arguments, _serve),
    "config": Group("settings of serve", {
        "show": Command("print the effective settings of serve (file, then $QROUTE_*, then flags; "
                        "secrets masked)", _serve_arguments, _config_show),
    }),
    "top": Command("a live wallboard of the account's queues and recipients (keys: s sort, f filter, q quit)",
                   _top_arguments, _top),
    "account": Group("accounts (admin key)", {
        "create": Command("create an account", _account_create_arguments, _admin("account_create")),
        "list": Command("list the accounts", _admin_remote, _admin("account_list")),
    }),
    "key": Group("API keys of accounts (admin key)", {
        "create": Command("create an API key for an account; shows its secret once",
                          _key_create_arguments, _admin("key_create")),
        "list": Command("list an account's API keys", _key_list_arguments, _admin("key_list")),
        "revoke": Command("revoke an API key", _key_revoke_arguments, _admin("key_revoke")),
    }),
    "queue": Group("queues of an account", {
        "create": Command("create a queue", _queue_create_arguments, _admin("queue_create")),
        "list": Command("list the queues", _remote, _admin("queue_list")),
        "status": Command("live status of queues, as a table", _queue_status_arguments, _admin("queue_status")),
    }),
    "recipient": Group("recipients (agents) of an account", {
        "create": Command("create a recipient", _recipient_create_arguments, _admin("recipient_create")),
        "list": Command("list the recipients", _remote, _admin("recipient_list")),
    }),
    "member": Group("queue membership", {
        "add": Command("add recipients to a queue (or change their tier)", _member_add_arguments,
                       _admin("member_add")),
        "list": Command("list a queue's members", _member_list_arguments, _admin("member_list")),
    }),
    "bench": Group("measure qroute", {
        "core": Command(
            "the dispatcher alone on the standard workload (full pass, incremental pass, "
            "churn, memory), compiled against reference in one process",
            _bench_core_arguments, _bench_core),
        "e2e": Command(
            "end to end over gRPC: agent desktops, callers and subscribers against a server, "
            "with the bare grpc.aio ceiling measured in the same run",
            _bench_e2e_arguments, _bench_e2e),
    }),
    "simulate": Command("the real engine and dispatcher on a virtual clock: service level, ASA, "
                        "P(wait), abandonment, occupancy and EWT error, against Erlang C",
                        _simulate_arguments, _simulate),
    "demo": Command("a server with a demo account, calls flowing live on screen, then how to connect",
                    _demo_arguments, _demo),
}


# --------------------------------------------------------------------- parsing

def _add_commands(parser: argparse.ArgumentParser, commands: dict[str, Command | Group],
                  dest: str) -> None:
    subparsers = parser.add_subparsers(dest=dest, metavar="COMMAND", required=True)
    for name, entry in commands.items():
        sub = subparsers.add_parser(name, help=entry.help, description=entry.help)
        if isinstance(entry, Group):
            _add_commands(sub, entry.commands, f"{dest}_{name}")
        else:
            entry.arguments(sub)
            sub.set_defaults(handler=entry.handler)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every command (imports no command module)."""
    parser = argparse.ArgumentParser(prog="qroute", description="qroute: call-queue routing")
    _add_commands(parser, COMMANDS, "command")
    return parser


def _subparser(parser: argparse.ArgumentParser, names: Sequence[str]) -> argparse.ArgumentParser:
    """The parser of the sub-command ``names`` (e.g. ``("config", "show")``)."""
    for name in names:
        parser = next(action for action in parser._actions  # noqa: SLF001
                      if isinstance(action, argparse._SubParsersAction)).choices[name]  # noqa: SLF001
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command in ``argv`` (default ``sys.argv[1:]``); returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    sources: dict[str, str] = {}
    layered = None
    for names in LAYERED:
        if tuple(argv[:len(names)]) == names:
            from qroute import config

            layered = _subparser(parser, names)
            try:
                sources = config.layer(layered, argv[len(names):])
            except config.ConfigError as exc:
                print(f"qroute: {exc}", file=sys.stderr)
                return 2
    args = parser.parse_args(argv)
    args.setting_sources, args.setting_parser = sources, layered
    try:
        status = args.handler(args)
    except KeyboardInterrupt:
        return 130
    return int(status or 0)


if __name__ == "__main__":
    sys.exit(main())
