"""``wirekit serve exec``: the remote exec server.

Closed by default (DESIGN.md §4): every connection authenticates, by key
(``--authorized-keys``, default ~/.ssh/authorized_keys) or by shared token
(``--token-file``). With neither configured the server makes a token in the
config dir and says how a local client uses it (it finds the token by
itself). A non-loopback address needs TLS, or ``--insecure``.

Prints, then serves until SIGINT/SIGTERM: the endpoint, the TLS fingerprint
to compare on first connect, and how to connect.
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import logging
import shlex
import sys
from pathlib import Path

from ..addr import Address, parse_address
from .arguments import UsageError, positive_int

__all__ = ["DEFAULT_LISTEN", "DEFAULT_PORT", "add_arguments", "run"]

DEFAULT_PORT = 7022
DEFAULT_LISTEN = f"127.0.0.1:{DEFAULT_PORT}"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``wirekit serve exec`` (the caller made the parser)."""
    from .tlsargs import add_server_tls_arguments

    parser.add_argument(
        "-l",
        "--listen",
        metavar="ADDR",
        default=DEFAULT_LISTEN,
        help="address to listen on (default %(default)s; port 0 picks a free one; "
        "tls:// is the same as --tls auto)",
    )
    parser.add_argument(
        "--authorized-keys",
        metavar="FILE",
        type=Path,
        help="accept the Ed25519 keys listed in FILE (OpenSSH format; default "
        "~/.ssh/authorized_keys when it exists)",
    )
    parser.add_argument(
        "--token-file",
        metavar="FILE",
        type=Path,
        help="accept clients that know the token in FILE (HMAC challenge, never sent)",
    )
    add_server_tls_arguments(parser)
    parser.add_argument(
        "--shell",
        metavar="PATH",
        default="/bin/sh",
        help="shell that runs command lines and wirekit shell (default %(default)s)",
    )
    parser.add_argument(
        "--max-sessions",
        type=positive_int,
        metavar="N",
        help="commands running at once over all connections (default 64); more wait "
        "in a queue instead of failing",
    )
    parser.add_argument(
        "--allow",
        action="append",
        metavar="CMD",
        default=[],
        help="run only this program (repeatable; no shell command lines, no wirekit "
        "shell); default: anything, through the shell, like ssh",
    )
    parser.add_argument(
        "--insecure",
        action="store_true",
        help="allow a non-loopback address without TLS (commands and output in clear)",
    )
    parser.add_argument(
        "-q",
        "--quiet",
        action="store_const",
        dest="log_level",
        const=logging.WARNING,
        default=logging.INFO,
        help="log only problems; by default each connection is logged (who, from "
        "where, with which key)",
    )


def listen_address(text: str) -> Address:
    """The ``--listen`` address: TCP or Unix; ``tls://`` is TCP with ``--tls auto``."""
    addr = parse_address(text, default_port=DEFAULT_PORT)
    if addr.scheme == "udp":
        raise UsageError("exec runs over a stream: use HOST:PORT, tls://HOST:PORT or unix:/path")
    return addr


def client_address(bound: Address, tls: bool) -> str:
    """How a client on this machine names the server: a wildcard bind is
    reached on loopback; TLS needs the ``tls://`` scheme on the client side."""
    if bound.is_unix:
        return str(bound)
    host = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(bound.host, bound.host)
    plain = Address("tcp", host, bound.port).hostport()
    return f"tls://{plain}" if tls else plain


def client_hint(bound: Address, tls: bool, token_file: Path | None) -> str:
    """The command that runs something on this server from the same machine."""
    words = ["wirekit", "exec", client_address(bound, tls)]
    if token_file is not None:
        words += ["--token-file", str(token_file)]
    return shlex.join([*words, "--", "uname", "-a"])


def run(args: argparse.Namespace) -> int:
    """Serve until SIGINT/SIGTERM; returns the exit status."""
    from ..aio import loop as aio_loop  # asyncio and uvloop load only to serve

    addr = listen_address(args.listen)
    return aio_loop.run(_serve(args, addr))


async def _serve(args: argparse.Namespace, addr: Address) -> int:
    from ..aio.secure import ServerAuth
    from ..aio.signals import stop_on_signal
    from ..allocator import keep_freed_buffers
    from ..services.exec import ExecOptions, start_exec
    from .tlsargs import server_tls

    # A process-wide malloc setting (exec.md §7): the program's to make, not the
    # library's, so it is made here rather than in start_exec.
    keep_freed_buffers()

    want_tls = addr.scheme == "tls"
    if want_tls:
        addr = Address("tcp", addr.host, addr.port)
        if args.tls is None and args.tls_cert is None:
            args.tls = "auto"
    context, fingerprint = server_tls(args)
    auth, hint = ServerAuth.for_service(
        authorized_keys=args.authorized_keys, token_file=args.token_file, service="exec"
    )
    options = ExecOptions(shell=args.shell, allow=tuple(args.allow))
    if args.max_sessions is not None:
        options = dataclasses.replace(options, max_sessions=args.max_sessions)
    with stop_on_signal() as (stop, hurry):
        server = await start_exec(
            addr, auth=auth, ssl=context, insecure=args.insecure, options=options
        )
        try:
            bound = server.address
            _announce(bound, fingerprint, hint, args.token_file)
            # Everything loaded so far lives as long as the server: out of the
            # collector's sight, a full collection no longer walks the ~100,000
            # objects of the imported modules every few hundred commands
            # (exec.md §7). Process-wide, like keep_freed_buffers.
            gc.freeze()
            await stop.wait()
            print("wirekit: shutting down", file=sys.stderr, flush=True)
        finally:
            await server.shutdown(hurry=hurry)
    return 0


def _announce(
    bound: Address, fingerprint: str | None, hint: str | None, token_file: Path | None
) -> None:
    from .. import __version__

    shown = client_address(bound, fingerprint is not None)
    lines = [f"wirekit {__version__} exec server on {shown}; Ctrl-C to stop"]
    if fingerprint:
        lines.append(f"TLS fingerprint {fingerprint} (clients pin it on first connect)")
    if hint:
        lines.append(hint)
    lines.append(f"try: {client_hint(bound, fingerprint is not None, token_file)}")
    print("\n".join(lines), flush=True)
