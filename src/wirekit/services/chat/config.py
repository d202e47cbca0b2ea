"""Settings of the chat server, with the documented defaults (docs/chat.md, "Limits")."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

__all__ = ["DEFAULT_PORT", "LOBBY", "ChatConfig"]

#: IRC's own port (DESIGN §1).
DEFAULT_PORT = 6667
#: Where every plain user starts; it can always be made, whatever max_rooms says.
LOBBY = "#lobby"


@dataclass(frozen=True, slots=True)
class ChatConfig:
    """Everything a chat server is told; ``0`` turns a rate or timeout off."""

    #: Name in the prefix of every server line and in the welcome.
    server_name: str = "wirekit"
    #: Message of the day, one entry per line (empty: ERR_NOMOTD).
    motd: tuple[str, ...] = ()
    #: Connection password (IRC ``PASS``); plain users give it with ``/pass``.
    password: str | None = None
    #: Messages a room keeps for replay on join and ``/history``.
    history: int = 20
    #: Connections held at once; the next one gets a one-line refusal.
    max_clients: int = 10_000
    #: Connections one client address may hold at once.
    max_clients_per_ip: int = 10_000
    #: Flood control: lines per second a client may send once its burst is spent
    #: (0 = no flood control). Lines over the rate are delayed, never dropped.
    flood_rate: float = 10.0
    #: Flood control: lines a client may send at once before the rate applies.
    flood_burst: int = 20
    #: Bytes queued for a client that does not read before it is disconnected.
    sendq: int = 256 * 1024
    #: Seconds of silence from a registered IRC client before the server PINGs it.
    ping_interval: float = 120.0
    #: Seconds a PINGed client has to answer before it is disconnected (0 = never).
    ping_timeout: float = 60.0
    #: Seconds a connection has to register (IRC) or send its first line (plain).
    register_timeout: float = 60.0
    #: Rooms one user may be in.
    max_rooms_per_user: int = 50
    #: Rooms on the server at once: with each room's history this bounds what
    #: users can make the server keep (about 15 KiB per room with a full
    #: history of 20, so about 30 MiB at the default).
    max_rooms: int = 2000
    #: Entries in a room's ban list.
    max_bans: int = 50

    def replace(self, **changes: object) -> ChatConfig:
        return dataclasses.replace(self, **changes)  # type: ignore[arg-type]

    def __post_init__(self) -> None:
        for name in ("history", "flood_rate", "ping_interval", "ping_timeout", "register_timeout"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must not be negative, got {getattr(self, name)}")
        for name in ("max_clients", "max_clients_per_ip", "flood_burst", "sendq", "max_rooms"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        if not self.server_name or any(c in self.server_name for c in " \r\n\0:!@"):
            raise ValueError(f"server name {self.server_name!r} is empty or has a space or :!@")
