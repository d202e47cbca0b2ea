"""Address parsing: one syntax for every command and API.

Forms accepted (docs/addresses in the README)::

    HOST:PORT            tcp
    :PORT                tcp on the default host (127.0.0.1)
    tcp://HOST:PORT      tcp
    udp://HOST:PORT      udp
    tls://HOST:PORT      tcp + TLS
    unix:/path/to.sock   Unix stream socket (also unix:///path, unix:relative)
    [::1]:PORT           IPv6 literal in brackets, with any scheme
    PORT                 a bare number: tcp on the default host
"""

from __future__ import annotations

import socket
from dataclasses import dataclass
from typing import Literal

from .errors import AddressError

__all__ = ["Address", "Scheme", "parse_address"]

Scheme = Literal["tcp", "udp", "tls", "unix"]
_SCHEMES: tuple[Scheme, ...] = ("tcp", "udp", "tls", "unix")
DEFAULT_HOST = "127.0.0.1"


@dataclass(frozen=True, slots=True)
class Address:
    """A parsed address. ``path`` is set for unix, ``host``/``port`` otherwise."""

    scheme: Scheme
    host: str = ""
    port: int = 0
    path: str = ""

    @property
    def is_unix(self) -> bool:
        return self.scheme == "unix"

    @property
    def is_datagram(self) -> bool:
        return self.scheme == "udp"

    @property
    def family(self) -> socket.AddressFamily:
        if self.scheme == "unix":
            return socket.AF_UNIX
        return socket.AF_INET6 if ":" in self.host else socket.AF_INET

    def with_port(self, port: int) -> Address:
        return Address(self.scheme, self.host, port, self.path)

    def hostport(self) -> str:
        """``HOST:PORT`` with IPv6 hosts bracketed (no scheme)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"

    def __str__(self) -> str:
        if self.scheme == "unix":
            return f"unix:{self.path}"
        return f"{self.scheme}://{self.hostport()}"


def parse_address(
    text: str,
    *,
    default_port: int | None = None,
    default_host: str = DEFAULT_HOST,
    default_scheme: Scheme = "tcp",
) -> Address:
    """Parse ``text`` into an :class:`Address`, or raise :class:`AddressError`.

    ``default_port`` fills in a missing port (``localhost`` or ``tcp://host``);
    without it a port is required.
    """
    raw = text.strip()
    if not raw:
        raise AddressError("empty address")
    scheme: Scheme = default_scheme
    rest = raw
    if raw.startswith("unix:"):
        path = raw[len("unix:") :]
        if path.startswith("//"):
            path = path[2:]
        if not path:
            raise AddressError(f"bad address {text!r}: unix socket path is empty")
        if "\0" in path:
            raise AddressError(f"bad address {text!r}: unix socket path contains a NUL byte")
        return Address("unix", path=path)
    if "://" in raw:
        name, rest = raw.split("://", 1)
        if name not in _SCHEMES:
            known = ", ".join(f"{s}://" for s in _SCHEMES if s != "unix")
            raise AddressError(
                f"bad address {text!r}: unknown scheme {name!r} (use {known} or unix:)"
            )
        scheme = name
    host, port_text = _split_host_port(text, rest)
    if not host:
        host = default_host
    if port_text is None:
        if default_port is None:
            raise AddressError(f"bad address {text!r}: missing port (write HOST:PORT)")
        port = default_port
    else:
        port = _parse_port(text, port_text)
    return Address(scheme, host=host, port=port)


def _split_host_port(text: str, rest: str) -> tuple[str, str | None]:
    if rest.startswith("["):
        end = rest.find("]")
        if end < 0:
            raise AddressError(f"bad address {text!r}: missing ']' after IPv6 address")
        host = rest[1:end]
        _check_ipv6(text, host)
        tail = rest[end + 1 :]
        if not tail:
            return host, None
        if not tail.startswith(":"):
            raise AddressError(f"bad address {text!r}: expected ':PORT' after ']'")
        return host, tail[1:]
    if rest.isdigit():
        return "", rest
    if rest.count(":") > 1:
        raise AddressError(
            f"bad address {text!r}: write IPv6 addresses in brackets, e.g. [::1]:7007"
        )
    host, sep, port = rest.partition(":")
    if "/" in host or any(c.isspace() for c in host):
        raise AddressError(f"bad address {text!r}: {host!r} is not a valid host name")
    return host, (port if sep else None)


def _check_ipv6(text: str, host: str) -> None:
    try:
        socket.inet_pton(socket.AF_INET6, host.split("%", 1)[0])
    except OSError:
        raise AddressError(f"bad address {text!r}: {host!r} is not an IPv6 address") from None


def _parse_port(text: str, port_text: str) -> int:
    if not port_text:
        raise AddressError(f"bad address {text!r}: missing port after ':'")
    if not (port_text.isascii() and port_text.isdigit()):  # not "٣" or "²"
        raise AddressError(f"bad address {text!r}: port {port_text!r} is not a number")
    port = int(port_text)
    if port > 65535:
        raise AddressError(f"bad address {text!r}: port {port} is out of range 0-65535")
    return port
