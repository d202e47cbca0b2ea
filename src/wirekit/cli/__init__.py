"""The ``wirekit`` command: parses, prints, exits; the work is done below.

Exit codes: 0 ok, 1 runtime error, 2 usage error, 3 could not start.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import sys
from collections.abc import Sequence
from typing import Any

from .. import __version__
from ..errors import AddressError, ListenError, WirekitError
from ..neterrors import printable
from . import chat, keygen, netcat, serve
from . import exec as exec_cli
from .arguments import UsageError

__all__ = ["main"]

EXIT_OK, EXIT_ERROR, EXIT_USAGE, EXIT_START = 0, 1, 2, 3


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="wirekit",
        description="The classic socket programs, done right: echo/daytime/time servers, "
        "netcat mode, a framed message protocol, authenticated remote exec (a mini SSH) "
        "and a chat server for nc, telnet and IRC clients.",
        epilog="Addresses: HOST:PORT, :PORT, tcp://HOST:PORT, udp://HOST:PORT, "
        "tls://HOST:PORT, unix:/path, [::1]:PORT. Servers bind 127.0.0.1 unless told "
        "otherwise; port 0 picks a free port. Environment: WIREKIT_DEBUG=1 is --debug; "
        "WIREKIT_LOOPBACK_CONGESTION=system keeps the system's TCP congestion control on "
        "loopback connections (by default a pacing BBR is replaced by cubic there).",
    )
    parser.add_argument("--version", action="version", version=f"wirekit {__version__}")
    parser.add_argument(
        "--debug",
        action="store_true",
        default=_env_flag("WIREKIT_DEBUG"),
        help="show tracebacks and debug logs",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    serve.add_parser(commands)
    netcat.add_parsers(commands)
    exec_cli.add_parsers(commands)
    keygen.add_parser(commands)
    keygen.add_known_hosts_parser(commands)
    chat.add_parser(commands)
    _add_debug(commands)
    return parser


def _add_debug(commands: Any) -> None:
    """``--debug`` after the command too (wirekit connect ADDR --debug), and after
    a service's name (wirekit serve chat --debug)."""
    for subparser in commands.choices.values():
        # SUPPRESS: when absent there, the value from before the command (or
        # the environment) stays.
        subparser.add_argument(
            "--debug",
            action="store_true",
            default=argparse.SUPPRESS,
            help="show tracebacks and debug logs",
        )
        for action in subparser._actions:
            if isinstance(action, argparse._SubParsersAction):
                _add_debug(action)


def _env_flag(name: str) -> bool:
    """An on/off environment variable: 1, true or yes (any case) is on, anything
    else (0, false, no, empty) off."""
    return os.environ.get(name, "").strip().lower() in ("1", "true", "yes")


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return EXIT_USAGE
    logging.basicConfig(
        level=logging.DEBUG if args.debug else getattr(args, "log_level", logging.WARNING),
        format="wirekit: %(message)s",
        stream=sys.stderr,
    )
    try:
        code: int = args.run(args)
        return code
    except (AddressError, UsageError) as exc:
        return _fail(args, exc, EXIT_USAGE)
    except ListenError as exc:
        return _fail(args, exc, EXIT_START)
    except WirekitError as exc:
        return _fail(args, exc, EXIT_ERROR)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return EXIT_OK


def _fail(args: argparse.Namespace, exc: BaseException, code: int) -> int:
    if args.debug:
        logging.exception("failed")
    # The text may carry a peer's words (a close reason): escaped, so it
    # cannot drive the terminal.
    line = f"wirekit: {printable(str(exc))}\n"
    if sys.stderr is not None:
        print(line, end="", file=sys.stderr)
    else:  # started with stderr closed: descriptor 2 may still be usable, stdout is not it
        with contextlib.suppress(OSError):
            os.write(2, line.encode())
    return code
