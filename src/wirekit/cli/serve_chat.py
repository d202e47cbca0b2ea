"""``wirekit serve chat``: the chat server for nc/telnet users and IRC clients.

Prints a table of endpoints with a command to try each (and the TLS
fingerprint when serving TLS), then serves until SIGINT/SIGTERM. Limits and
their defaults: docs/chat.md, "Limits".
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from ..addr import Address, parse_address
from .arguments import (
    UsageError,
    non_negative_int,
    non_negative_seconds,
    positive_int,
    positive_seconds,
)

if TYPE_CHECKING:
    import ssl

    from ..services.chat.config import ChatConfig

__all__ = ["add_arguments", "run"]

DEFAULT_PORT = 6667
#: A MOTD file larger than this is refused (it is sent to every client on connect).
MAX_MOTD_BYTES = 64 * 1024


def _rate(text: str) -> float:
    return non_negative_seconds(text)  # the same check: a finite number >= 0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``wirekit serve chat`` (the caller made the parser)."""
    from ..services.chat.config import ChatConfig
    from .tlsargs import add_server_tls_arguments

    d = ChatConfig()
    parser.add_argument(
        "-l",
        "--listen",
        action="append",
        metavar="ADDR",
        default=[],
        help=f"address to listen on; repeat for several (default 127.0.0.1:{DEFAULT_PORT}; "
        "port 0 picks a free one; tls:// without --tls-cert is --tls auto)",
    )
    add_server_tls_arguments(parser)
    parser.add_argument(
        "--server-name",
        default=d.server_name,
        metavar="NAME",
        help="name in server lines and the welcome (default %(default)s)",
    )
    parser.add_argument("--motd", type=Path, metavar="FILE", help="message of the day file")
    parser.add_argument(
        "--password", metavar="P", help="connection password (IRC PASS; plain users type /pass P)"
    )
    parser.add_argument(
        "--history",
        type=non_negative_int,
        default=d.history,
        metavar="N",
        help="messages per room replayed on join (default %(default)s)",
    )
    parser.add_argument(
        "--max-rooms",
        type=positive_int,
        default=d.max_rooms,
        metavar="N",
        help="rooms on the server at once; creating one more is refused (default %(default)s)",
    )
    parser.add_argument(
        "--max-clients",
        type=positive_int,
        default=d.max_clients,
        metavar="N",
        help="connections held at once (default %(default)s)",
    )
    parser.add_argument(
        "--max-per-ip",
        type=positive_int,
        default=d.max_clients_per_ip,
        metavar="N",
        help="connections per client address (default %(default)s)",
    )
    parser.add_argument(
        "--flood-rate",
        type=_rate,
        default=d.flood_rate,
        metavar="LINES",
        help="lines per second per client once its burst is spent; faster "
        "lines are delayed, not dropped; 0 = off (default %(default)s)",
    )
    parser.add_argument(
        "--flood-burst",
        type=positive_int,
        default=d.flood_burst,
        metavar="N",
        help="lines a client may send at once (default %(default)s)",
    )
    parser.add_argument(
        "--sendq",
        type=positive_int,
        default=d.sendq,
        metavar="BYTES",
        help="bytes queued for a client that does not read before it is "
        "disconnected (default %(default)s)",
    )
    parser.add_argument(
        "--ping-interval",
        type=positive_seconds,
        default=d.ping_interval,
        metavar="SECS",
        help="PING an IRC client silent this long (default %(default)s)",
    )
    parser.add_argument(
        "--ping-timeout",
        type=non_negative_seconds,
        default=d.ping_timeout,
        metavar="SECS",
        help="disconnect a client that does not answer a PING "
        "within this; 0 = never (default %(default)s)",
    )
    parser.add_argument(
        "--register-timeout",
        type=non_negative_seconds,
        default=d.register_timeout,
        metavar="SECS",
        help="time to register or send a first line; 0 = no limit (default %(default)s)",
    )
    parser.add_argument(
        "-v",
        "--verbose",
        action="store_const",
        dest="log_level",
        const=logging.INFO,
        default=logging.WARNING,
        help="log clients dropped for a limit",
    )
    parser.set_defaults(run=run)


def _config(args: argparse.Namespace) -> ChatConfig:
    from ..services.chat.config import ChatConfig

    motd: tuple[str, ...] = ()
    if args.motd is not None:
        try:
            data = args.motd.read_bytes()
        except OSError as exc:
            raise UsageError(f"cannot read --motd {args.motd}: {exc.strerror or exc}") from None
        if len(data) > MAX_MOTD_BYTES:
            raise UsageError(f"--motd {args.motd} exceeds {MAX_MOTD_BYTES} bytes")
        from ..proto.irc import sanitize_text

        motd = tuple(sanitize_text(x)[:400] for x in data.decode("utf-8", "replace").splitlines())
    try:
        return ChatConfig(
            server_name=args.server_name,
            motd=motd,
            password=args.password,
            history=args.history,
            max_rooms=args.max_rooms,
            max_clients=args.max_clients,
            max_clients_per_ip=args.max_per_ip,
            flood_rate=args.flood_rate,
            flood_burst=args.flood_burst,
            sendq=args.sendq,
            ping_interval=args.ping_interval,
            ping_timeout=args.ping_timeout,
            register_timeout=args.register_timeout,
        )
    except ValueError as exc:
        raise UsageError(str(exc)) from None


def _addresses(args: argparse.Namespace) -> list[Address]:
    texts = args.listen or [f"127.0.0.1:{DEFAULT_PORT}"]
    addrs = [parse_address(t, default_port=DEFAULT_PORT) for t in texts]
    for addr in addrs:
        if addr.scheme == "udp":
            raise UsageError(f"chat runs over tcp, tls or unix, not {addr}")
    return addrs


def _tls(
    args: argparse.Namespace, addrs: list[Address]
) -> tuple[ssl.SSLContext | None, str | None]:
    from .tlsargs import server_tls

    if any(a.scheme == "tls" for a in addrs) and not (args.tls or args.tls_cert):
        args.tls = "auto"  # tls:// alone: a self-signed certificate, as --tls auto
    return server_tls(args)


def run(args: argparse.Namespace) -> int:
    config = _config(args)
    addrs = _addresses(args)
    context, fingerprint = _tls(args, addrs)
    if context is not None:
        # --tls: every tcp listener speaks TLS (IRC clients: irssi -tls / -ssl).
        addrs = [dataclasses.replace(a, scheme="tls") if a.scheme == "tcp" else a for a in addrs]
    from ..aio import loop as aio_loop

    return aio_loop.run(_serve(config, addrs, context, fingerprint))


async def _serve(
    config: ChatConfig,
    addrs: list[Address],
    context: ssl.SSLContext | None,
    fingerprint: str | None,
) -> int:
    from .. import __version__
    from ..aio import loop as aio_loop
    from ..aio.signals import stop_on_signal
    from ..services.chat import start_chat

    with stop_on_signal() as (stop, hurry):
        server = await start_chat(addrs, config=config, ssl=context)
        try:
            lines = [
                f"wirekit {__version__} chat serving on {aio_loop.loop_name()}; Ctrl-C to stop"
            ]
            if fingerprint is not None:
                lines.append(f"TLS certificate fingerprint {fingerprint}")
            width = max(len(str(a)) for a in server.addresses)
            lines.append(f"{'SERVICE':<8} {'ENDPOINT':<{width}}  TRY")
            for addr in server.addresses:
                lines.append(f"{'chat':<8} {addr!s:<{width}}  {_hint(addr)}")
            print("\n".join(lines), flush=True)
            await stop.wait()
            print("wirekit: shutting down", file=sys.stderr, flush=True)
        finally:
            await server.close(hurry=hurry)
    return 0


def _hint(addr: Address) -> str:
    if addr.is_unix:
        return f"nc -U {addr.path}"
    host = addr.host
    if addr.scheme == "tls":
        return f"irssi -c {host} -p {addr.port} -tls  (or: ncat --ssl {host} {addr.port})"
    return f"nc {host} {addr.port}  (or: irssi -c {host} -p {addr.port})"
