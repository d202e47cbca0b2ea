"""Every peer-controlled size and time, named, with a documented default.

docs/limits.md lists the same table; a test exercises each limit at the
limit and one past it.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

__all__ = ["DEFAULT_LIMITS", "NETCAT_MAX_PEERS", "Limits"]

KiB = 1024
MiB = 1024 * KiB

#: ``wirekit listen --keep-open``: peers served at once unless --max-peers says
#: otherwise (here, not in services.netcat, so the CLI parser need not import it).
NETCAT_MAX_PEERS = 64


@dataclass(frozen=True, slots=True)
class Limits:
    """Bounds applied to every connection a wirekit server or client handles."""

    #: Largest frame payload accepted or sent, in bytes (protocol.md §4).
    max_frame_size: int = 1 * MiB
    #: Connections a server holds at once; the next one is refused with an error.
    max_connections: int = 10_000
    #: Connections one client IP address may hold at once.
    max_connections_per_ip: int = 1_024
    #: Seconds a new connection has to complete the hello.
    handshake_timeout: float = 10.0
    #: Seconds a connection may stay silent before the server closes it (0 = never).
    idle_timeout: float = 300.0
    #: Bytes queued for sending before ``send()`` waits and reading pauses.
    write_high_water: int = 1 * MiB
    #: Bytes received but not yet consumed by the application before reading pauses.
    read_high_water: int = 4 * MiB
    #: Longest line accepted by line-oriented services (echo --stamp, netcat tools).
    max_line_length: int = 64 * KiB
    #: Largest UDP datagram a service accepts; larger ones get an error reply.
    max_datagram_size: int = 8 * KiB
    #: Seconds handlers get to finish on shutdown, a peer gets to answer CLOSE, and a
    #: closing connection gets to drain its queued output before it is aborted.
    shutdown_grace: float = 5.0

    def replace(self, **changes: float) -> Limits:
        """Return a copy with some limits changed."""
        return dataclasses.replace(self, **changes)  # type: ignore[arg-type]

    def __post_init__(self) -> None:
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if value < 0:
                raise ValueError(f"limit {field.name} must not be negative, got {value}")
        for name in _POSITIVE:
            if getattr(self, name) == 0:
                raise ValueError(f"limit {name} must be at least 1, got 0")
        if not 0 < self.max_frame_size < 2**32:
            raise ValueError(
                f"limit max_frame_size must be between 1 and {2**32 - 1}, got {self.max_frame_size}"
            )


#: Sizes and counts for which 0 would make the service unusable (timeouts may be 0 = never).
_POSITIVE = (
    "max_connections",
    "max_connections_per_ip",
    "write_high_water",
    "read_high_water",
    "max_line_length",
    "max_datagram_size",
)

DEFAULT_LIMITS = Limits()
