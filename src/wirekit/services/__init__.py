"""Services: each a server (and, where it has one, a client)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from ..addr import Address
from ..aio.raw import RawServer
from ..limits import Limits
from .classic import ClassicOptions, daytime_server, echo_server, time_server

__all__ = ["SERVICES", "ServiceSpec"]


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
        return f"wirekit connect {addr}"


SERVICES: dict[str, ServiceSpec] = {
    "echo": ServiceSpec(
        "echo",
        7007,
        "RFC 862 echo; --upper and --stamp as the classic servers",
        lambda options, limits: echo_server(options, limits=limits),
    ),
    "daytime": ServiceSpec(
        "daytime",
        7013,
        "RFC 867 daytime: the date as text",
        lambda _options, limits: daytime_server(limits=limits),
    ),
    "time": ServiceSpec(
        "time",
        7037,
        "RFC 868 time: 32-bit seconds since 1900 (rdate)",
        lambda _options, limits: time_server(limits=limits),
    ),
}
