"""The chat server's logic, fed lines and writing lines to sinks: no I/O here.

:class:`ChatCore` holds the nick registry and the rooms and carries out what
both modes share (nick changes, join, part, messages, topic, kick, quit). The
IRC commands live in :mod:`.irc_mode`, the slash commands in :mod:`.plain_mode`.
Fan-out formats each event once per mode and hands the same bytes to every
member's sink (docs/chat.md, "Performance").
"""

from __future__ import annotations

import fnmatch
import time
from collections.abc import Callable, Iterable

from ...proto.irc import (
    IrcMessage,
    casefold_irc,
    format_message,
    sanitize_text,
    valid_channel,
    valid_nick,
)
from . import irc_mode, plain_mode
from .config import LOBBY, ChatConfig
from .model import ChatError, HistoryEntry, Mode, Room, Sink, TokenBucket, User

__all__ = ["TOPICLEN", "ChatCore"]

TOPICLEN = 390
#: Reply lines that cost one flood token (WHO on a 10,000-member room: 100 tokens).
REPLY_LINES_PER_TOKEN = 100
#: First words that make a connection IRC (docs/chat.md, "Modes").
IRC_OPENERS = frozenset((b"CAP", b"PASS", b"NICK", b"USER"))


def _param(text: str) -> str:
    """A middle parameter must be one non-empty word not starting with ':'; one
    echoed from a peer (a bad nick, an unknown command) loses its control codes."""
    text = sanitize_text(text)
    if not text or " " in text or text.startswith(":"):
        return "*"
    return text


class ChatCore:
    """Users, rooms and the operations on them."""

    def __init__(
        self,
        config: ChatConfig,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self.config = config
        self.name = config.server_name
        self.clock = clock
        self.wall = wall
        self.started = wall()
        self.users: dict[str, User] = {}  # casefolded nick -> holder, registered or not
        self.rooms: dict[str, Room] = {}
        self.connections: set[User] = set()
        self.registered = 0
        self.most_registered = 0
        self.shutting_down = False  # no QUIT fan-out when everyone leaves at once
        self._guests = 0

    # -- lines ---------------------------------------------------------------

    def line(self, prefix: str | None, command: str, *params: str) -> bytes:
        safe = tuple(_param(p) for p in params[:-1]) + params[-1:]
        return format_message(IrcMessage(command, safe, prefix))

    def numeric(self, user: User, code: str, *params: str) -> None:
        # The text may quote the peer (an error about its input): sanitized too.
        text = params[-1:] and (sanitize_text(params[-1]),)
        user.sink.send(self.line(self.name, code, user.nick, *params[:-1], *text))

    def plain(self, user: User, text: str) -> None:
        user.sink.send(text.encode("utf-8", "replace") + b"\r\n")

    def fail(self, user: User, error: ChatError) -> None:
        if user.mode is Mode.IRC:
            self.numeric(user, error.code, *error.params, error.text)
        else:
            self.plain(user, "! " + error.plain)

    def tell(
        self,
        users: Iterable[User],
        irc: bytes | None,
        plain: str | None,
        skip: User | None = None,
    ) -> None:
        """Send one event to many users (but ``skip``): the same bytes to every
        user of a mode, formatted once."""
        plain_bytes = None if plain is None else plain.encode("utf-8", "replace") + b"\r\n"
        irc_mode_ = Mode.IRC
        for user in users:
            if user is skip:
                continue
            data = irc if user.mode is irc_mode_ else plain_bytes
            if data is not None:
                user.sink.send(data)

    # -- connections ---------------------------------------------------------

    def connect(self, sink: Sink, host: str) -> User:
        now = self.clock()
        user = User(sink, host, now)
        if self.config.flood_rate:
            user.bucket = TokenBucket(self.config.flood_rate, self.config.flood_burst, now)
        self.connections.add(user)
        # Valid IRC and readable by a person: IRC servers greet with NOTICEs too.
        sink.send(
            self.line(
                self.name,
                "NOTICE",
                "*",
                f"*** wirekit chat {self.name}: IRC clients register as usual; "
                "nc/telnet users type a line to enter #lobby (/help lists commands)",
            )
        )
        return user

    def receive(self, user: User, line: bytes) -> None:
        """One complete line from ``user`` (without its line ending)."""
        if user.closed:
            return
        user.last_seen = self.clock()
        user.pinged = 0.0
        if user.mode is Mode.UNKNOWN:
            # docs/chat.md "Modes": IRC when the first line starts with CAP, PASS,
            # NICK or USER (as real clients send them: upper case), plain otherwise.
            opener = line.lstrip(b" ").split(b" ", 1)[0]
            if opener in IRC_OPENERS:
                user.mode = Mode.IRC
            else:
                user.mode = Mode.PLAIN
                if plain_mode.start(self, user, line):
                    return
        if user.mode is Mode.IRC:
            irc_mode.handle_line(self, user, line)
        else:
            plain_mode.handle_line(self, user, line)

    def line_too_long(self, user: User, limit: int) -> None:
        if user.mode is Mode.PLAIN:
            self.plain(user, f"! line longer than {limit} bytes dropped")
        else:
            self.numeric(user, "417", f"Input line was too long (limit {limit} bytes)")

    def charge(self, user: User, lines: int) -> None:
        """A reply of ``lines`` lines (WHO, NAMES, LIST on big rooms or many
        rooms) costs flood tokens as well: one short line in must not buy
        thousands out for free (docs/chat.md, "Flood control")."""
        if user.bucket is not None and lines > REPLY_LINES_PER_TOKEN:
            user.bucket.tokens -= lines / REPLY_LINES_PER_TOKEN

    def flood_delay(self, user: User) -> float:
        """Seconds before ``user``'s next line may be handled (flood control)."""
        return 0.0 if user.bucket is None else user.bucket.take(self.clock())

    def close_link(self, user: User, reason: str) -> None:
        """Disconnect ``user`` with a last line saying why."""
        if user.closed:
            return
        if user.mode is Mode.PLAIN:
            self.plain(user, f"! closing: {reason}")
        else:
            self.user_error(user, reason)
        self.disconnect(user, reason)

    def user_error(self, user: User, reason: str) -> None:
        user.sink.send(
            self.line(None, "ERROR", f"Closing link: {user.nick}[{user.host}] ({reason})")
        )

    def disconnect(self, user: User, reason: str) -> None:
        """The connection is gone or going: leave every room, free the nick."""
        if user.closed:
            return
        user.closed = True
        self.connections.discard(user)
        if user.registered:
            self.registered -= 1
        if user.registered and not self.shutting_down:
            others = self.neighbours(user)
            self.tell(
                others, self.line(user.prefix, "QUIT", reason), f"-- {user.nick} quit ({reason})"
            )
        for room in user.rooms.values():
            self._remove(room, user)
        user.rooms.clear()
        user.invites.clear()
        user.current = None
        if user.key and self.users.get(user.key) is user:
            del self.users[user.key]
        user.sink.close()

    def tick(self) -> None:
        """Registration and PING timeouts; call about once a second."""
        now = self.clock()
        cfg = self.config
        for user in list(self.connections):
            if not user.registered:
                if cfg.register_timeout and now - user.connected > cfg.register_timeout:
                    self.close_link(
                        user, f"registration timed out after {cfg.register_timeout:g} s"
                    )
            elif user.mode is Mode.IRC and cfg.ping_timeout:
                if user.pinged:
                    if now - user.pinged > cfg.ping_timeout:
                        waited = int(now - user.last_seen)
                        self.close_link(user, f"Ping timeout: {waited} seconds")
                elif now - user.last_seen > cfg.ping_interval:
                    user.pinged = now
                    user.sink.send(self.line(None, "PING", self.name))

    # -- nicks ---------------------------------------------------------------

    def find(self, nick: str) -> User | None:
        user = self.users.get(casefold_irc(nick))
        return user if user is not None and user.registered else None

    def claim_nick(self, user: User, nick: str) -> None:
        if not valid_nick(nick):
            raise ChatError(
                "432",
                (nick,),
                "Erroneous nickname",
                f"{nick[:40]} is not a valid nick (a letter or one of []\\^_`{{|}} first, "
                "then letters, digits, those or '-', at most 30)",
            )
        key = casefold_irc(nick)
        holder = self.users.get(key)
        if holder is not None and holder is not user:
            raise ChatError("433", (nick,), "Nickname is already in use", f"nick {nick} is taken")
        old_nick, old_prefix = user.nick, user.prefix
        if user.key:
            del self.users[user.key]
        self.users[key] = user
        user.set_nick(nick, key)
        if user.registered and old_nick != nick:
            self.tell(
                [user, *self.neighbours(user)],
                self.line(old_prefix, "NICK", nick),
                f"-- {old_nick} is now known as {nick}",
            )

    def nick_free(self, nick: str) -> bool:
        return valid_nick(nick) and casefold_irc(nick) not in self.users

    def guest_nick(self) -> str:
        while True:
            self._guests += 1
            nick = f"guest-{self._guests}"
            if casefold_irc(nick) not in self.users:
                return nick

    def mark_registered(self, user: User) -> None:
        user.registered = True
        self.registered += 1
        self.most_registered = max(self.most_registered, self.registered)

    def neighbours(self, user: User) -> set[User]:
        """Everyone sharing a room with ``user``, once each, without ``user``."""
        found: set[User] = set()
        for room in user.rooms.values():
            found.update(room.members)
        found.discard(user)
        return found

    # -- rooms ---------------------------------------------------------------

    def room(self, name: str) -> Room:
        room = self.rooms.get(casefold_irc(name))
        if room is None:
            raise ChatError("403", (name,), "No such channel", f"there is no room {name[:50]}")
        return room

    def join(self, user: User, name: str, password: str | None = None) -> Room | None:
        """Join (or create) room ``name``; None when ``user`` is in it already."""
        # A room name is shown to everyone (/rooms, LIST, JOIN lines), so it must
        # be clean text: valid_channel refuses control characters, sanitize_text
        # what else it would strip (IRC formatting codes).
        if not valid_channel(name) or sanitize_text(name) != name:
            raise ChatError(
                "403",
                (name,),
                "No such channel",
                f"{sanitize_text(name)[:50]} is not a valid room name (# then 1-49 "
                "characters, no space, comma, colon or control character)",
            )
        key = casefold_irc(name)
        room = self.rooms.get(key)
        if room is not None and user in room.members:
            return None
        if len(user.rooms) >= self.config.max_rooms_per_user:
            limit = self.config.max_rooms_per_user
            raise ChatError(
                "405", (name,), "You have joined too many channels", f"you are in {limit} rooms"
            )
        if room is None:
            if len(self.rooms) >= self.config.max_rooms and key != LOBBY:
                limit = self.config.max_rooms
                raise ChatError(
                    "403",
                    (name,),
                    f"Cannot create channel: the server holds {limit} rooms, its limit",
                    f"cannot create {name}: the server holds {limit} rooms, its limit",
                )
            room = Room(name, key, self.config.history, self.wall())
            self.rooms[key] = room
            room.members[user] = "o"  # the creator runs the room
        else:
            self._check_entry(user, room, password)
            room.members[user] = ""
        user.invites.pop(room, None)
        user.rooms[key] = room
        self.tell(
            room.members,
            self.line(user.prefix, "JOIN", room.name),
            f"[{room.name}] -- {user.nick} joined",
            skip=user,
        )
        return room

    def _check_entry(self, user: User, room: Room, password: str | None) -> None:
        invited = room in user.invites
        name = room.name
        if self.banned(room, user) and not invited:
            raise ChatError(
                "474", (name,), "Cannot join channel (+b)", f"you are banned from {name}"
            )
        if "i" in room.flags and not invited:
            raise ChatError("473", (name,), "Cannot join channel (+i)", f"{name} is invite-only")
        if room.password is not None and password != room.password:
            raise ChatError(
                "475", (name,), "Cannot join channel (+k)", f"{name} needs a key: /join {name} KEY"
            )
        if room.limit and len(room.members) >= room.limit:
            raise ChatError("471", (name,), "Cannot join channel (+l)", f"{name} is full")

    def banned(self, room: Room, user: User) -> bool:
        if not room.bans:
            return False
        who = casefold_irc(user.prefix)
        # Casefolding maps [ and ] to { and }, so fnmatch sees only * and ? (IRC masks).
        return any(fnmatch.fnmatchcase(who, casefold_irc(mask)) for mask in room.bans)

    def part(self, user: User, room: Room, reason: str) -> None:
        if user not in room.members:
            raise ChatError(
                "442", (room.name,), "You're not on that channel", f"you are not in {room.name}"
            )
        suffix = f" ({reason})" if reason else ""
        params = (room.name, reason) if reason else (room.name,)
        self.tell(
            room.members,
            self.line(user.prefix, "PART", *params),
            f"[{room.name}] -- {user.nick} left{suffix}",
        )
        self._leave(user, room)

    def _leave(self, user: User, room: Room) -> None:
        self._remove(room, user)
        del user.rooms[room.key]
        if user.current is room:
            user.current = next(iter(user.rooms.values()), None)

    def _remove(self, room: Room, user: User) -> None:
        room.members.pop(user, None)
        if not room.members:
            self.rooms.pop(room.key, None)

    def kick(self, user: User, room: Room, nick: str, reason: str) -> None:
        self.need_op(user, room)
        target = self.find(nick)
        if target is None or target not in room.members:
            raise ChatError(
                "441",
                (nick, room.name),
                "They aren't on that channel",
                f"{nick[:30]} is not in {room.name}",
            )
        self.tell(
            room.members,
            self.line(user.prefix, "KICK", room.name, target.nick, reason or user.nick),
            f"[{room.name}] -- {target.nick} was kicked by {user.nick} ({reason or 'no reason'})",
        )
        self._leave(target, room)

    def need_op(self, user: User, room: Room) -> None:
        if user not in room.members:
            raise ChatError(
                "442", (room.name,), "You're not on that channel", f"you are not in {room.name}"
            )
        if not room.is_op(user):
            raise ChatError(
                "482",
                (room.name,),
                "You're not channel operator",
                f"only operators of {room.name} may do that",
            )

    def set_topic(self, user: User, room: Room, text: str) -> None:
        if user not in room.members:
            raise ChatError(
                "442", (room.name,), "You're not on that channel", f"you are not in {room.name}"
            )
        if "t" in room.flags:
            self.need_op(user, room)
        room.topic = text[:TOPICLEN]
        room.topic_by = user.nick
        room.topic_at = self.wall()
        self.tell(
            room.members,
            self.line(user.prefix, "TOPIC", room.name, room.topic),
            f"[{room.name}] -- {user.nick} set the topic: {room.topic}",
        )

    # -- messages ------------------------------------------------------------

    def message(self, user: User, target: str, text: str, command: str = "PRIVMSG") -> None:
        """PRIVMSG/NOTICE ``text`` (CTCP-framed for actions) to a room or a nick."""
        action = text.startswith("\x01ACTION ") and text.endswith("\x01")
        body = text[8:-1] if action else text
        ctcp = text.startswith("\x01") and not action
        if target.startswith("#"):
            self._to_room(user, self.room(target), text, body, command, action, ctcp)
            return
        peer = self.find(target)
        if peer is None:
            raise ChatError(
                "401", (target,), "No such nick/channel", f"no one is called {target[:30]}"
            )
        if action:
            plain = f"[pm] * {user.nick} {body}"
        elif ctcp:
            plain = None
        else:
            plain = (
                f"[pm] -{user.nick}- {body}"
                if command == "NOTICE"
                else f"[pm] <{user.nick}> {body}"
            )
        self.tell((peer,), self.line(user.prefix, command, peer.nick, text), plain)
        if peer.away is not None and command == "PRIVMSG":
            if user.mode is Mode.IRC:
                self.numeric(user, "301", peer.nick, peer.away)
            else:
                self.plain(user, f"* {peer.nick} is away: {peer.away}")

    def _to_room(
        self, user: User, room: Room, text: str, body: str, command: str, action: bool, ctcp: bool
    ) -> None:
        if not room.can_speak(user) or (self.banned(room, user) and not room.members.get(user)):
            raise ChatError(
                "404", (room.name,), "Cannot send to channel", f"you cannot talk in {room.name}"
            )
        name = room.name
        if action:
            plain: str | None = f"[{name}] * {user.nick} {body}"
        elif ctcp:
            plain = None
        elif command == "NOTICE":
            plain = f"[{name}] -{user.nick}- {body}"
        else:
            plain = f"[{name}] <{user.nick}> {body}"
        if command == "PRIVMSG" and not ctcp and room.history.maxlen:
            room.history.append(HistoryEntry(self.wall(), user.nick, body, action))
        self.tell(room.members, self.line(user.prefix, command, name, text), plain, skip=user)
