"""``wirekit chat ADDR``: the terminal chat client (docs/chat-client.md)."""

from __future__ import annotations

import argparse
import getpass
import os
import re
from typing import Any

from ..addr import parse_address
from .tlsargs import add_client_tls_arguments

__all__ = ["add_parser"]

#: IRC's own port (RFC 7194 lists 6667 as the plain-text default).
DEFAULT_PORT = 6667


def add_parser(commands: Any) -> None:
    chat = commands.add_parser(
        "chat",
        help="terminal chat client for wirekit's chat server or any IRC server",
        description="Connect to an IRC server (wirekit serve chat, ngircd, ...) and chat. "
        "Type a line to talk in the current room; /help lists the commands (/join /part "
        "/nick /msg /me /who /rooms /topic /history /quit). On a terminal the input line "
        "stays intact while messages arrive; otherwise stdin is read line by line and the "
        "client quits at its end. Exits 1 when the server closes the connection.",
    )
    chat.add_argument(
        "address",
        metavar="ADDR",
        help=f"HOST[:PORT] (default port {DEFAULT_PORT}), tls://HOST:PORT or unix:/path",
    )
    chat.add_argument(
        "--nick",
        type=_nick,
        default=None,
        help="nick to use (default: $WIREKIT_NICK, else your login name); "
        "a taken nick gets a suffix",
    )
    chat.add_argument("--room", type=_room, default=None, help="room to join at once")
    chat.add_argument("--password", default=None, help="server password (IRC PASS)")
    chat.add_argument(
        "--cafile",
        metavar="FILE",
        help="CA bundle to verify a tls:// server (default: the system's CAs; a server "
        "no CA vouches for, such as wirekit serve chat --tls auto, is trusted by its "
        "pinned fingerprint instead)",
    )
    chat.add_argument(
        "--insecure", action="store_true", help="tls:// without verifying the certificate"
    )
    add_client_tls_arguments(chat)
    chat.set_defaults(run=_run)


def _nick(text: str) -> str:
    # The IRC rules load only when used (wirekit.proto brings msgspec).
    from ..proto.irc import valid_nick

    if not valid_nick(text):
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a valid nick (a letter first, then letters, digits or "
            "[]\\^_`{|}-, at most 30)"
        )
    return text


def _room(text: str) -> str:
    from ..proto.irc import valid_channel
    from ..services.chat.client import room_name

    name = room_name(text)
    if not valid_channel(name):
        raise argparse.ArgumentTypeError(f"{text!r} is not a valid room name")
    return name


def default_nick() -> str:
    """$WIREKIT_NICK, else the login name made into a nick, else ``guest``."""
    from ..proto.irc import valid_nick

    wanted = os.environ.get("WIREKIT_NICK", "")
    if valid_nick(wanted):
        return wanted
    try:
        login = getpass.getuser()
    except (KeyError, OSError):
        login = ""
    nick = re.sub(r"[^A-Za-z0-9_\-\[\]\\^`{|}]", "", login)[:9]
    return nick if valid_nick(nick) else "guest"


def _run(args: argparse.Namespace) -> int:
    # asyncio, ssl and the terminal code load only to chat: --help stays quick.
    from ..aio import run
    from ..services.chat.terminal import ChatOptions, run_chat
    from .rawterm import ensure_std_fds

    # A closed stdin/stdout/stderr (<&-) would be taken by the event loop's or the
    # connection's descriptor (libuv aborts when it closes one of 0-2).
    ensure_std_fds()
    addr = parse_address(args.address, default_port=DEFAULT_PORT)
    options = ChatOptions(
        nick=args.nick or default_nick(),
        room=args.room,
        password=args.password,
        cafile=args.cafile,
        insecure=args.insecure,
        accept_new=args.accept_new,
        known_hosts=args.known_hosts,
    )
    return run(run_chat(addr, options))
