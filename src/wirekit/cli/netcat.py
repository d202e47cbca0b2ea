"""``wirekit connect`` and ``wirekit listen``: netcat mode."""

from __future__ import annotations

import argparse
import logging
import sys
from typing import TYPE_CHECKING, Any

from ..addr import Address, parse_address
from ..limits import NETCAT_MAX_PEERS as MAX_PEERS
from .arguments import positive_int, positive_seconds

if TYPE_CHECKING:
    from ..services.netcat import NetcatOptions

# services.netcat is imported when a netcat command runs: building the parser
# for another command must not load it.

ADDR_HELP = "tcp (HOST:PORT), udp://HOST:PORT, tls://HOST:PORT, unix:/path or [::1]:PORT"


def add_parsers(commands: Any) -> None:
    connect = commands.add_parser(
        "connect",
        help="netcat client: stdin to the socket, the socket to stdout",
        description="Connect to ADDR and copy stdin to the socket and the socket to stdout. "
        "On stdin EOF the socket is half-closed (over TLS: a close_notify, once the peer "
        "has been quiet for 0.5 s); the command ends when the peer closes "
        "(after that, what stdin still delivers is sent, unless stdin is a terminal or "
        "stays quiet for 1 s). "
        "Exits 1 when the connection fails (refused, unknown host, reset, -w timeout).",
    )
    connect.add_argument("address", metavar="ADDR", help=ADDR_HELP)
    _common(connect)
    connect.add_argument("--cafile", metavar="FILE", help="CA bundle to verify a tls:// server")
    connect.add_argument(
        "--insecure", action="store_true", help="tls:// without verifying the certificate"
    )
    connect.set_defaults(run=_run_connect)

    listen = commands.add_parser(
        "listen",
        help="netcat server: accept a peer, copy it to stdout and stdin to it",
        description="Listen on ADDR (127.0.0.1 unless a host is given) for one peer, or for "
        "many with --keep-open (every peer's bytes go to stdout, stdin goes to every peer; "
        "for udp, replies go to the latest peer). Port 0 picks a free port and prints it. "
        "Without -k, -w bounds the wait for the peer and its idle time; with -k it is each "
        "peer's idle timeout (nothing from it, nothing taken by it for SECS seconds).",
    )
    listen.add_argument("address", metavar="ADDR", help=ADDR_HELP)
    _common(listen)
    listen.add_argument(
        "-k",
        "--keep-open",
        action="store_true",
        help="accept many peers, one after another or at once",
    )
    listen.add_argument(
        "--max-peers",
        type=positive_int,
        default=MAX_PEERS,
        metavar="N",
        help="with -k, peers served at once; the next one gets a line and is closed "
        "(default %(default)s)",
    )
    listen.set_defaults(run=_run_listen)


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "-w",
        "--timeout",
        type=positive_seconds,
        metavar="SECS",
        help="give up connecting, or close an idle connection, after SECS seconds "
        "(listen -k: each idle peer)",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="say what happens on stderr")


def _options(args: argparse.Namespace) -> NetcatOptions:
    from ..services.netcat import NetcatOptions

    return NetcatOptions(
        timeout=args.timeout,
        cafile=getattr(args, "cafile", None),
        insecure=getattr(args, "insecure", False),
        keep_open=getattr(args, "keep_open", False),
        verbose=args.verbose,
        max_peers=getattr(args, "max_peers", MAX_PEERS),
    )


def _run_connect(args: argparse.Namespace) -> int:
    addr = parse_address(args.address)
    if args.verbose:
        logging.getLogger("wirekit").setLevel(logging.INFO)
    from ..services.netcat import run_connect

    run_connect(addr, _options(args))
    return 0


def _run_listen(args: argparse.Namespace) -> int:
    addr = parse_address(args.address)

    def announce(bound: Address) -> None:
        if args.verbose or (not addr.is_unix and addr.port == 0):
            print(f"wirekit: listening on {bound}", file=sys.stderr, flush=True)

    from ..services.netcat import run_listen

    run_listen(addr, _options(args), announce=announce)
    return 0
