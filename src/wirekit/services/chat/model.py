"""The chat server's state: users, rooms, errors, flood buckets (no I/O).

A :class:`User` writes through a :class:`Sink`; the asyncio layer provides one
per connection and the tests a list. Everything here is plain objects with
``__slots__``: a server holds ten thousand users (docs/chat.md, "Limits").
"""

from __future__ import annotations

import enum
from collections import deque
from typing import Protocol

__all__ = [
    "MAX_INVITES",
    "ChatError",
    "HistoryEntry",
    "Mode",
    "Room",
    "Sink",
    "TokenBucket",
    "User",
]

#: Invitations one user holds; a new one past this drops the oldest.
MAX_INVITES = 20


class Mode(enum.Enum):
    """How a connection speaks; decided by its first line (docs/chat.md, "Modes")."""

    UNKNOWN = "unknown"
    IRC = "irc"
    PLAIN = "plain"


class Sink(Protocol):
    """Where a user's output goes, in order."""

    def send(self, data: bytes) -> None:
        """Queue one line (with its line ending)."""

    def close(self) -> None:
        """Close once the queued lines are sent."""


class ChatError(Exception):
    """A command was refused: an IRC numeric for IRC users, ``plain`` for plain users."""

    def __init__(self, code: str, params: tuple[str, ...], text: str, plain: str) -> None:
        super().__init__(plain)
        self.code = code
        self.params = params
        self.text = text
        self.plain = plain


class TokenBucket:
    """Flood control that delays: ``burst`` lines at once, then ``rate`` per second."""

    __slots__ = ("burst", "rate", "stamp", "tokens")

    def __init__(self, rate: float, burst: int, now: float) -> None:
        self.rate = rate
        self.burst = burst
        self.tokens = float(burst)
        self.stamp = now

    def take(self, now: float) -> float:
        """Take a token and return 0, or return the seconds until one is there."""
        tokens = min(float(self.burst), self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if tokens >= 0.999_999:  # a timer due exactly at the refill may fire a hair early
            self.tokens = max(0.0, tokens - 1.0)
            return 0.0
        self.tokens = tokens
        return (1.0 - tokens) / self.rate


class User:
    """One connection, registered or not, in either mode."""

    __slots__ = (
        "away",
        "bucket",
        "closed",
        "connected",
        "current",
        "host",
        "invites",
        "key",
        "last_seen",
        "mode",
        "negotiating",
        "nick",
        "pass_ok",
        "pinged",
        "prefix",
        "realname",
        "registered",
        "rooms",
        "sink",
        "username",
    )

    def __init__(self, sink: Sink, host: str, now: float) -> None:
        self.sink = sink
        self.host = host
        self.mode = Mode.UNKNOWN
        self.nick = "*"
        self.key = ""  # casefolded nick once one is held
        self.username = ""
        self.realname = ""
        self.prefix = "*"
        self.registered = False
        self.negotiating = False  # between CAP LS/REQ and CAP END
        self.pass_ok = False
        self.rooms: dict[str, Room] = {}
        self.current: Room | None = None  # plain mode: where a typed line goes
        self.away: str | None = None
        # Rooms this connection was invited to, oldest first (at most MAX_INVITES):
        # an invitation belongs to the person, not to whoever holds the nick next.
        self.invites: dict[Room, None] = {}
        self.connected = now
        self.last_seen = now
        self.pinged = 0.0  # when a PING went out unanswered, else 0
        self.closed = False
        self.bucket: TokenBucket | None = None

    def invite(self, room: Room) -> None:
        self.invites.pop(room, None)
        self.invites[room] = None
        if len(self.invites) > MAX_INVITES:
            del self.invites[next(iter(self.invites))]

    def set_nick(self, nick: str, key: str) -> None:
        self.nick = nick
        self.key = key
        self.prefix = f"{nick}!{self.username or nick}@{self.host}"

    def __repr__(self) -> str:
        return f"<User {self.nick} {self.mode.value}>"


class HistoryEntry:
    __slots__ = ("action", "nick", "text", "when")

    def __init__(self, when: float, nick: str, text: str, action: bool) -> None:
        self.when = when
        self.nick = nick
        self.text = text
        self.action = action


class Room:
    """A channel; ``members`` maps each user to its status letters ("o", "v")."""

    __slots__ = (
        "bans",
        "created",
        "flags",
        "history",
        "key",
        "limit",
        "members",
        "name",
        "password",
        "topic",
        "topic_at",
        "topic_by",
    )

    def __init__(self, name: str, key: str, history: int, now: float) -> None:
        self.name = name
        self.key = key
        self.members: dict[User, str] = {}
        self.topic = ""
        self.topic_by = ""
        self.topic_at = 0.0
        self.created = now
        self.flags: set[str] = {"n", "t"}  # the usual defaults: no outside messages, ops set topic
        self.password: str | None = None
        self.limit = 0
        self.bans: list[str] = []
        self.history: deque[HistoryEntry] = deque(maxlen=history)

    def is_op(self, user: User) -> bool:
        return "o" in self.members.get(user, "")

    def can_speak(self, user: User) -> bool:
        status = self.members.get(user)
        if status is None:
            return "n" not in self.flags
        return "m" not in self.flags or bool(status)

    def prefixed(self, user: User) -> str:
        status = self.members[user]
        return ("@" if "o" in status else "+" if "v" in status else "") + user.nick
