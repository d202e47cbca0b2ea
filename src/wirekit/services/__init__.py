"""Services: each a server (and, where it has one, a client).

This registry is light on purpose: a service's module (and asyncio) is
imported only when the service is started.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..addr import Address
from ..limits import Limits

if TYPE_CHECKING:
    from ..aio.raw import RawServer

__all__ = ["SERVICES", "ClassicOptions", "ServiceSpec"]


@dataclass(frozen=True, slots=True)
class ClassicOptions:
    upper: bool = False
    stamp: bool = False


@dataclass(frozen=True, slots=True)
class ServiceSpec:
    name: str
    default_port: int
    summary: str
    make: Callable[[ClassicOptions, Limits], RawServer]
    default_schemes: tuple[str, ...] = ("tcp", "udp")

    def client_hint(self, addr: Address) -> str:
        """A ready-to-paste command that talks to this endpoint."""
        if self.name == "time" and addr.scheme in ("tcp", "udp"):
            udp = "-u " if addr.scheme == "udp" else ""
            return f"rdate -p {udp}-o {addr.port} {addr.host}"
        if addr.scheme == "tcp":
            return f"wirekit connect {addr.hostport()}"
        if addr.scheme == "udp" and self.name != "echo":
            # A udp server answers a datagram: send one at once rather than wait
            # for the user to type a line (echo's user types anyway).
            return f"echo | wirekit connect {addr}"
        return f"wirekit connect {addr}"


def _echo(options: ClassicOptions, limits: Limits) -> RawServer:
    from .classic import echo_server

    return echo_server(options, limits=limits)


def _daytime(_options: ClassicOptions, limits: Limits) -> RawServer:
    from .classic import daytime_server

    return daytime_server(limits=limits)


def _time(_options: ClassicOptions, limits: Limits) -> RawServer:
    from .classic import time_server

    return time_server(limits=limits)


SERVICES: dict[str, ServiceSpec] = {
    "echo": ServiceSpec(
        "echo", 7007, "RFC 862 echo; --upper and --stamp as the classic servers", _echo
    ),
    "daytime": ServiceSpec("daytime", 7013, "RFC 867 daytime: the date as text", _daytime),
    "time": ServiceSpec("time", 7037, "RFC 868 time: 32-bit seconds since 1900 (rdate)", _time),
}
