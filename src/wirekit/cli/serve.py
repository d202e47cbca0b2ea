"""``wirekit serve [SERVICE]``: run one service, or every service on its default port."""

from __future__ import annotations

import argparse
import logging
from typing import Any

from ..addr import Address, parse_address
from ..limits import DEFAULT_LIMITS, Limits
from ..services import SERVICES, ClassicOptions, ServiceSpec
from .arguments import UsageError, non_negative_seconds, positive_int

log = logging.getLogger("wirekit.server")


def add_parser(commands: Any) -> None:
    names = ", ".join([*SERVICES, "chat", "exec"])
    parser = commands.add_parser(
        "serve",
        help=f"run a service ({names}), or all of them",
        description="Run SERVICE, or with no SERVICE every service on 127.0.0.1 with its "
        "default port, and print a table of endpoints with a command to try each. "
        + " ".join(f"{s.name} ({s.default_port}): {s.summary}." for s in SERVICES.values())
        + " chat (6667): nc, telnet and IRC users in shared rooms."
        + " exec (7022): authenticated remote commands; with no SERVICE it runs on"
        + " loopback only, with a token made in the config dir."
        + " `wirekit serve SERVICE --help` lists a service's own options.",
    )
    _classic_arguments(parser, suppress=False)
    parser.set_defaults(run=run, service=None)
    services = parser.add_subparsers(dest="service", metavar="SERVICE", title="services")
    for spec in SERVICES.values():
        sub = services.add_parser(
            spec.name,
            help=f"{spec.summary} (port {spec.default_port})",
            description=f"{spec.summary}. Default: tcp and udp on 127.0.0.1:{spec.default_port}.",
        )
        # SUPPRESS: an option given before the service name (wirekit serve
        # --listen :0 echo) is not overwritten by the subcommand's default.
        _classic_arguments(sub, suppress=True)
    for name, port, summary, module in _own_services():
        sub = services.add_parser(name, help=f"{summary} (port {port})", description=f"{summary}.")
        module.add_arguments(sub)
        sub.set_defaults(run=module.run)


def _own_services() -> list[tuple[str, int, str, Any]]:
    """The services with command lines of their own: (name, port, summary, module
    with ``add_arguments(parser)`` and ``run(args) -> int``)."""
    from . import serve_chat, serve_exec

    return [
        ("chat", 6667, "multi-user chat for nc, telnet and IRC clients", serve_chat),
        (
            "exec",
            serve_exec.DEFAULT_PORT,
            "authenticated remote command execution (wirekit exec, wirekit shell)",
            serve_exec,
        ),
    ]


def _classic_arguments(parser: argparse.ArgumentParser, *, suppress: bool) -> None:
    def default(value: Any) -> Any:
        return argparse.SUPPRESS if suppress else value

    parser.add_argument(
        "-l",
        "--listen",
        action="append",
        metavar="ADDR",
        default=default([]),
        help="address to listen on; repeat for several (e.g. --listen :7007 --listen "
        "udp://:7007 --listen unix:/tmp/echo.sock); default tcp and udp on 127.0.0.1 "
        "and the service's port",
    )
    parser.add_argument(
        "--host",
        default=default("127.0.0.1"),
        help="host for the default addresses (default 127.0.0.1)",
    )
    parser.add_argument(
        "--upper", action="store_true", default=default(False), help="echo: reply upper-cased"
    )
    parser.add_argument(
        "--stamp",
        action="store_true",
        default=default(False),
        help="echo: prefix each line with [<ctime>]",
    )
    parser.add_argument(
        "--max-connections",
        type=positive_int,
        default=default(DEFAULT_LIMITS.max_connections),
        metavar="N",
        help=f"connections held at once (default {DEFAULT_LIMITS.max_connections})",
    )
    parser.add_argument(
        "--max-per-ip",
        type=positive_int,
        metavar="N",
        default=default(DEFAULT_LIMITS.max_connections_per_ip),
        help=f"connections per client address (default {DEFAULT_LIMITS.max_connections_per_ip})",
    )
    parser.add_argument(
        "--idle-timeout",
        type=non_negative_seconds,
        metavar="SECS",
        default=default(DEFAULT_LIMITS.idle_timeout),
        help="close connections silent this long, 0 = never "
        f"(default {DEFAULT_LIMITS.idle_timeout:g})",
    )
    parser.add_argument(
        "-v",
        "--verbose",
        action="store_const",
        dest="log_level",
        const=logging.INFO,
        default=default(logging.WARNING),
        help="log connections refused or closed for a limit",
    )


def run(args: argparse.Namespace) -> int:
    if args.listen and args.service is None:
        raise UsageError("--listen needs a SERVICE (e.g. wirekit serve echo --listen :0)")
    if (args.upper or args.stamp) and args.service not in (None, "echo"):
        raise UsageError("--upper and --stamp apply to the echo service only")
    limits = Limits(
        max_connections=args.max_connections,
        max_connections_per_ip=args.max_per_ip,
        idle_timeout=args.idle_timeout,
    )
    plan = _plan(args)
    options = ClassicOptions(upper=args.upper, stamp=args.stamp)
    from ..aio import loop as aio_loop  # asyncio and uvloop load only to serve
    from .serving import serve_plan

    everything_on = args.host if args.service is None else None
    return aio_loop.run(serve_plan(plan, options, limits, everything_on=everything_on))


def _plan(args: argparse.Namespace) -> list[tuple[ServiceSpec, list[Address]]]:
    specs = [SERVICES[args.service]] if args.service else list(SERVICES.values())
    plan = []
    for spec in specs:
        if args.listen:
            addrs = [parse_address(a, default_port=spec.default_port) for a in args.listen]
        else:
            addrs = [
                parse_address(f"{scheme}://{_bracket(args.host)}:{spec.default_port}")
                for scheme in spec.default_schemes
            ]
        plan.append((spec, addrs))
    return plan


def _bracket(host: str) -> str:
    return f"[{host}]" if ":" in host else host
