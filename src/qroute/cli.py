"""The ``qroute`` command line.

Every command is an entry of ``COMMANDS``: its help, a function declaring its
options, and a handler that imports the command's module only when it runs,
so ``qroute --help`` and each command load nothing the others need (grpc,
the compiled core, rich). A ``Group`` holds sub-commands (``bench core``).
To add a command, write ``_<name>_arguments`` and ``_<name>`` below and list
them in ``COMMANDS``.
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
    parser.add_argument("--log-level", default="info", choices=("debug", "info", "warning", "error"))


def _serve(args: argparse.Namespace) -> int | None:
    import logging

    from qroute import server
    from qroute.node import ADMIN_KEY_ENV, Node

    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    node = Node(args.data_dir, synchronous=args.sync.upper())

    def ready(running) -> None:
        where = (f"in {running.node.admin_key_path}" if running.node.admin_key_path
                 else f"from ${ADMIN_KEY_ENV}")
        scheme = "TLS" if args.tls_cert else "plaintext"
        print(f"qroute serving on {args.listen.rsplit(':', 1)[0]}:{running.port} ({scheme}), "
              f"data in {args.data_dir}; admin key {where}", flush=True)

    try:
        server.run(server.serve_forever(node, args.listen, args.tls_cert, args.tls_key, ready=ready))
    except server.BindError as exc:
        print(f"qroute: {exc}", file=sys.stderr)
        return 1
    return 0


COMMANDS: dict[str, Command | Group] = {
    "serve": Command("serve the gRPC API (embedded SQLite in --data-dir)", _serve_arguments, _serve),
    "bench": Group("measure qroute", {
        "core": Command(
            "the dispatcher alone on the standard workload (full pass, incremental pass, "
            "churn, memory), compiled against reference in one process",
            _bench_core_arguments, _bench_core),
    }),
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


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command in ``argv`` (default ``sys.argv[1:]``); returns the exit status."""
    args = build_parser().parse_args(argv)
    try:
        status = args.handler(args)
    except KeyboardInterrupt:
        return 130
    return int(status or 0)


if __name__ == "__main__":
    sys.exit(main())
