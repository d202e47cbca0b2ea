"""Loopback TCP connections without pacing (docs/performance.md).

Linux machines that use BBR congestion control without the ``fq`` queueing
discipline (BBR as the default with ``pfifo_fast`` or ``noqueue``, as on
the machines we measure on) pace every TCP sender inside the kernel: when a
write runs ahead of BBR's bandwidth estimate, the rest goes out later from a
high-resolution timer. Between two processes on one host there is no
bottleneck to pace for, and BBR's estimate of one is noise: from one
connection to the next it lands anywhere between a few and hundreds of
Gbit/s. Each connection that lands low pays for the timers: streaming 1 GiB
of command output took the exec server 0.83-0.90 s of CPU instead of
0.51-0.58 s through TLS, and 0.34 s instead of 0.20 s without.

So wirekit gives each TCP connection to or from a loopback address
(127.0.0.0/8, ::1) a congestion control that does not pace, ``cubic`` (or
``reno``, which every user may choose), when the socket's own is a BBR.
Connections to other addresses keep the system's choice: there pacing is
what BBR is for. The environment variable ``WIREKIT_LOOPBACK_CONGESTION``
changes this: ``system`` keeps the system's choice on loopback too; an
algorithm's name gives loopback connections that algorithm whatever the
system uses.

Listeners bound to a loopback address are switched once: the connections
they accept inherit it. A listener on a wildcard address switches each
connection that arrives from a loopback address, one ``setsockopt``.
"""

from __future__ import annotations

import logging
import os
import socket
from typing import Any, Final

__all__ = [
    "ENV",
    "current",
    "is_loopback",
    "unpace",
    "unpace_listener",
    "unpace_listeners",
    "unpace_peer",
]

#: The environment variable that overrides the choice.
ENV: Final = "WIREKIT_LOOPBACK_CONGESTION"
#: Tried in order when a loopback socket's congestion control paces.
DEFAULT_CHOICES: Final = (b"cubic", b"reno")

_TCP_CONGESTION: Final = getattr(socket, "TCP_CONGESTION", None)  # Linux only
_NAME_MAX: Final = 16  # TCP_CA_NAME_MAX

_settings: tuple[tuple[bytes, ...], bool] | None = None
_warned = False


def _config() -> tuple[tuple[bytes, ...], bool]:
    """``(choices, always)``: the algorithms to try, and whether to set them
    whatever the socket has (an explicit choice) or only over a BBR."""
    global _settings
    if _settings is None:
        value = os.environ.get(ENV, "").strip()
        if _TCP_CONGESTION is None or value == "system":
            _settings = ((), False)
        elif value:
            _settings = ((value.encode(),), True)
        else:
            _settings = (DEFAULT_CHOICES, False)
    return _settings


def _reset_config() -> None:
    """Read the environment again at the next call (for tests)."""
    global _settings, _warned
    _settings, _warned = None, False


def is_loopback(host: Any) -> bool:
    """Whether ``host`` (an IP address string) is a loopback address."""
    return isinstance(host, str) and (
        host.startswith("127.") or host == "::1" or host.startswith("::ffff:127.")
    )


def current(sock: Any) -> str | None:
    """The congestion control ``sock`` uses, or None where it cannot be told."""
    if _TCP_CONGESTION is None:
        return None
    try:
        raw = sock.getsockopt(socket.IPPROTO_TCP, _TCP_CONGESTION, _NAME_MAX)
    except (OSError, AttributeError):
        return None
    return bytes(raw).split(b"\0", 1)[0].decode("ascii", "replace")


def unpace(sock: Any) -> str | None:
    """Give TCP socket ``sock`` a congestion control that does not pace, if
    its own paces (or whatever ``WIREKIT_LOOPBACK_CONGESTION`` names).
    Returns the name set, or None when nothing changed. Never raises: a
    socket that keeps its algorithm still works."""
    choices, always = _config()
    if not choices:
        return None
    if not always and not _paces(sock):
        return None
    for choice in choices:
        try:
            sock.setsockopt(socket.IPPROTO_TCP, _TCP_CONGESTION, choice)
        except (OSError, AttributeError):
            continue  # not built in, or not allowed for this user
        return choice.decode()
    if always:
        _warn_once(choices[0])
    return None


def _warn_once(choice: bytes) -> None:
    global _warned
    if not _warned:
        _warned = True
        logging.getLogger("wirekit").warning(
            "%s=%s: this system cannot give TCP connections that congestion control; "
            "they keep the system's",
            ENV,
            choice.decode(errors="replace"),
        )


def unpace_peer(sock: Any) -> str | None:
    """:func:`unpace` a connected TCP socket if its peer is on loopback."""
    try:
        peer = sock.getpeername()
    except (OSError, AttributeError):
        return None
    if isinstance(peer, tuple) and is_loopback(peer[0]):
        return unpace(sock)
    return None


def unpace_listener(sock: Any) -> bool:
    """Prepare a listening TCP socket. Bound to a loopback address, it is
    switched now and the connections it accepts inherit that. Returns True
    when each accepted connection has to be looked at instead (a wildcard
    address, with a pacing default): call :func:`unpace` on those whose peer
    :func:`is_loopback`."""
    try:
        host = sock.getsockname()[0]
    except (OSError, AttributeError, IndexError, TypeError):
        return False
    if is_loopback(host):
        unpace(sock)
        return False
    if host not in ("0.0.0.0", "::"):
        return False
    choices, always = _config()
    if not choices:
        return False
    return always or _paces(sock)


def unpace_listeners(socks: Any) -> bool:
    """:func:`unpace_listener` each of a server's listening sockets; True when
    any of them needs its accepted connections looked at one by one."""
    return True in [unpace_listener(sock) for sock in socks]


def _paces(sock: Any) -> bool:
    """Whether ``sock``'s congestion control is one that paces (a BBR)."""
    name = current(sock)
    return name is not None and name.startswith("bbr")
