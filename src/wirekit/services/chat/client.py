"""The state of ``wirekit chat``: IRC registration, rooms, slash commands, display lines.

Sans-I/O like ``proto/``: :class:`ChatClient` is fed the server's bytes
(:meth:`~ChatClient.receive_data`) and the user's typed lines
(:meth:`~ChatClient.user_input`); it returns the lines to show and queues the
bytes to send (:meth:`~ChatClient.data_to_send`). No socket, no terminal, no
clock, so every rule here is tested without either (docs/chat-client.md).

It speaks plain RFC 1459 / RFC 2812 IRC, so it works with any IRC server:
``NICK``/``USER`` registration, ``PONG`` to every ``PING``, and a suffixed nick
when the wanted one is taken (433) before registration completes. Everything a
peer sent passes through :func:`display` before it is shown: terminal escapes
and other control characters are written as visible ``\\x1b`` escapes, so no
peer can move the cursor, recolour or retitle the user's terminal.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from ...neterrors import printable
from ...proto.irc import (
    MAX_LINE,
    IrcMessage,
    IrcParseError,
    LineOverflow,
    LineSplitter,
    casefold_irc,
    format_message,
    parse_line,
    valid_nick,
)

__all__ = ["HELP", "ChatClient", "display", "room_name", "text_budget"]

#: Incoming lines may be longer than 512 bytes when a server adds IRCv3 tags
#: (up to 8191 bytes of tags, then the 512-byte message); longer ones are dropped.
MAX_INCOMING_LINE = 8192 + 512
#: Room kept for the ``:nick!user@host `` prefix a server puts in front of our
#: PRIVMSG when it relays it (user name up to 10, host name up to 63 bytes): the
#: relayed line must still fit in 512 bytes (RFC 1459 §2.3), or the end is cut.
RELAY_PREFIX = 1 + 1 + 10 + 1 + 63 + 1
#: RFC 2812 §1.2.1: servers may refuse nicks over 9 characters, so suffixes keep to 9.
SAFE_NICKLEN = 9
#: Attempts at a free nick (``alice_``, ``alice2``...) before registration gives up.
MAX_NICK_ATTEMPTS = 20

HELP = """\
commands (anything else is a message to the current room):
  /join #room        join a room and make it the current one (again: switch to it)
  /part [#room]      leave the current room (or the one named)
  /nick NAME         change your nick
  /msg NICK text     a private message (also to a room: /msg #room text)
  /me text           an action: * you text
  /who [#room]       who is in the room
  /rooms             list the server's rooms (IRC LIST)
  /topic [text]      show or set the room's topic
  /history [N]       ask the server for the room's last N messages
  /raw LINE          send a raw IRC line
  /quit [reason]     leave the server
  /help              this text"""

# mIRC formatting (bold, colour with digits, italics, underline, reverse, reset):
# harmless, but shown escaped it would be noise, so it is dropped before escaping.
_FORMATTING = re.compile(r"\x03(?:[0-9]{1,2}(?:,[0-9]{1,2})?)?|[\x02\x0f\x11\x16\x1d\x1e\x1f]")
# Typed text keeps tabs as spaces and loses every other control but formatting codes.
_TYPED_CONTROL = re.compile(r"[\x00-\x01\x04-\x0e\x10\x12-\x15\x17-\x1c\x7f]")


def display(text: str) -> str:
    """Peer text made safe for a terminal: formatting dropped, controls escaped."""
    return printable(_FORMATTING.sub("", text))


def room_name(name: str) -> str:
    """``lobby`` -> ``#lobby``; names that already carry a channel prefix stay."""
    return name if _is_room(name) else "#" + name


def _nick_of(prefix: str | None) -> str:
    return (prefix or "").split("!", 1)[0]


def _is_room(name: str) -> bool:
    return name[:1] in ("#", "&", "+", "!")


def text_budget(nick: str, target: str) -> int:
    """Bytes of text that fit in one PRIVMSG to ``target``, relayed with our prefix."""
    overhead = RELAY_PREFIX + len(nick.encode()) + len(f"PRIVMSG {target} :\r\n".encode())
    return max(64, MAX_LINE - overhead)


def _split_text(text: str, limit: int) -> list[str]:
    """``text`` in pieces of at most ``limit`` UTF-8 bytes, cut between characters."""
    pieces: list[str] = []
    data = text.encode("utf-8", "replace")
    while len(data) > limit:
        cut = limit
        while cut > 0 and (data[cut] & 0xC0) == 0x80:  # not inside a character
            cut -= 1
        pieces.append(data[:cut].decode())
        data = data[cut:]
    pieces.append(data.decode())
    return pieces


@dataclass(frozen=True, slots=True)
class _Command:
    usage: str
    needs_arg: bool
    needs_room: bool


_COMMANDS = {
    "join": _Command("/join #room", True, False),
    "part": _Command("/part [#room] [reason]", False, False),
    "nick": _Command("/nick NAME", True, False),
    "msg": _Command("/msg NICK text", True, False),
    "me": _Command("/me text", True, True),
    "who": _Command("/who [#room]", False, False),
    "rooms": _Command("/rooms", False, False),
    "topic": _Command("/topic [text]", False, True),
    "history": _Command("/history [N]", False, True),
    "raw": _Command("/raw LINE", True, False),
    "quit": _Command("/quit [reason]", False, False),
    "help": _Command("/help", False, False),
}


class ChatClient:
    """One user's IRC session, without I/O. See the module docstring."""

    def __init__(
        self,
        nick: str,
        room: str | None = None,
        *,
        password: str | None = None,
        realname: str = "wirekit chat",
    ) -> None:
        self.nick = nick
        #: The room messages go to (the prompt's ``[#room]``), or None.
        self.room: str | None = None
        #: Rooms joined, in the order joined.
        self.rooms: list[str] = []
        self.registered = False
        #: The server said ERROR (or registration failed): the connection should close.
        self.finished = False
        #: The user quit: QUIT is queued, the server will close.
        self.quitting = False
        self._wanted = nick
        self._attempt = 0
        self._password = password
        self._realname = realname
        self._first_room = room_name(room) if room else None
        self._out = bytearray()
        self._held: list[str] = []  # typed before registration; replayed after 001
        self._splitter = LineSplitter(MAX_INCOMING_LINE)
        self._names: dict[str, list[str]] = {}

    # -- outside interface ---------------------------------------------------------

    @property
    def prompt(self) -> str:
        """The status shown before the input line: ``[#room] nick> ``."""
        where = self.room or ("no room" if self.registered else "connecting")
        return f"[{display(where)}] {display(self.nick)}> "

    def start(self) -> None:
        """Queue the registration (RFC 2812 §3.1: PASS, then NICK and USER)."""
        if self._password is not None:
            self._send("PASS", self._password)
        self._send("NICK", self.nick)
        self._send("USER", "wirekit", "0", "*", self._realname)

    def data_to_send(self) -> bytes:
        data = bytes(self._out)
        self._out.clear()
        return data

    def receive_data(self, data: bytes) -> list[str]:
        """Feed bytes from the server; returns the lines to show."""
        shown: list[str] = []
        for line in self._splitter.feed(data):
            if isinstance(line, LineOverflow):
                shown.append(f"! the server sent a line over {line.limit} bytes; dropped")
                continue
            try:
                msg = parse_line(line)
            except IrcParseError as exc:
                shown.append(f"! unreadable line from the server: {exc}")
                continue
            shown += self.handle(msg)
        return shown

    def receive_eof(self) -> list[str]:
        was_finished, self.finished = self.finished, True
        if was_finished or self.quitting:
            return []
        return ["! the server closed the connection"]

    def user_input(self, text: str) -> list[str]:
        """One typed line: a slash command or a message to the current room."""
        text = _TYPED_CONTROL.sub("", text.replace("\t", " ")).rstrip("\r\n")
        if not text.strip():
            return []
        if not self.registered:
            self._held.append(text)
            return []
        if text.startswith("//"):  # "//etc" sends "/etc" as a message
            return self._say(text[1:])
        if text.startswith("/"):
            name, _, arg = text[1:].partition(" ")
            return self._command(name.lower(), arg.strip())
        return self._say(text)

    @property
    def idle(self) -> bool:
        """Registered, with nothing typed still waiting to be sent."""
        return self.registered and not self._held

    # -- sending ---------------------------------------------------------------------

    def _send(self, command: str, *params: str) -> None:
        self._out += format_message(IrcMessage(command, params))

    def _say(self, text: str, target: str | None = None) -> list[str]:
        target = target or self.room
        if target is None:
            return ["! you are in no room: /join #room first (or /msg NICK text)"]
        shown = []
        for piece in _split_text(text, text_budget(self.nick, target)):
            self._send("PRIVMSG", target, piece)
            # Servers do not echo our own PRIVMSG back, so it is shown here.
            shown.append(self._format_privmsg(target, self.nick, piece, outgoing=True))
        return shown

    def _command(self, name: str, arg: str) -> list[str]:
        spec = _COMMANDS.get(name)
        if spec is None:
            return [f"! unknown command /{display(name)} (try /help)"]
        if spec.needs_arg and not arg:
            return [f"! usage: {spec.usage}"]
        if spec.needs_room and self.room is None:
            return [f"! /{name} needs a room: /join #room first"]
        handler: Callable[[str], list[str]] = getattr(self, f"_cmd_{name}")
        return handler(arg)

    def _cmd_join(self, arg: str) -> list[str]:
        room = room_name(arg.split()[0])
        if any(casefold_irc(r) == casefold_irc(room) for r in self.rooms):
            self.room = room
            return [f"* now talking in {display(room)}"]
        self._send("JOIN", room, *arg.split()[1:2])  # the second word is a key
        # Optimistic: a script's next line goes to this room, and the server
        # handles JOIN before the PRIVMSG sent after it.
        self.room = room
        return []

    def _cmd_part(self, arg: str) -> list[str]:
        first, _, reason = arg.partition(" ")
        if _is_room(first):
            room = first
        else:
            room, reason = self.room or "", arg
        if not room:
            return ["! you are in no room"]
        self._send("PART", room, *((reason,) if reason else ()))
        return []

    def _cmd_nick(self, arg: str) -> list[str]:
        self._send("NICK", arg.split()[0])
        return []

    def _cmd_msg(self, arg: str) -> list[str]:
        target, _, text = arg.partition(" ")
        if not text.strip():
            return ["! usage: /msg NICK text"]
        return self._say(text, target)

    def _cmd_me(self, arg: str) -> list[str]:
        assert self.room is not None
        self._send("PRIVMSG", self.room, f"\x01ACTION {arg}\x01")
        return [self._format_privmsg(self.room, self.nick, f"\x01ACTION {arg}\x01", outgoing=True)]

    def _cmd_who(self, arg: str) -> list[str]:
        target = arg.split()[0] if arg else self.room
        if target is None:
            return ["! usage: /who #room (you are in no room)"]
        if _is_room(target):
            self._send("NAMES", target)
        else:
            self._send("WHOIS", target)  # /who NICK: who that person is
        return []

    def _cmd_rooms(self, arg: str) -> list[str]:
        self._send("LIST")
        return []

    def _cmd_topic(self, arg: str) -> list[str]:
        assert self.room is not None
        self._send("TOPIC", self.room, *((arg,) if arg else ()))
        return []

    def _cmd_history(self, arg: str) -> list[str]:
        assert self.room is not None
        count = arg.split()[0] if arg else ""
        if count and not count.isdigit():
            return ["! usage: /history [N]"]
        # Not an RFC command: a server that keeps history answers it, others
        # say 421 (unknown command), shown as such.
        self._send("HISTORY", self.room, *((count,) if count else ()))
        return []

    def _cmd_raw(self, arg: str) -> list[str]:
        try:
            msg = parse_line(arg.encode())
            self._out += format_message(msg)
        except (IrcParseError, ValueError) as exc:
            return [f"! cannot send that line: {display(str(exc))}"]
        return []

    def _cmd_quit(self, arg: str) -> list[str]:
        self.quit(arg)
        return []

    def quit(self, reason: str = "") -> None:
        """Queue QUIT now, registered or not; the server answers ERROR and closes."""
        self._send("QUIT", reason or "leaving")
        self.quitting = True

    def _cmd_help(self, arg: str) -> list[str]:
        return HELP.splitlines()

    # -- receiving -------------------------------------------------------------------

    def handle(self, msg: IrcMessage) -> list[str]:
        """One message from the server; returns the lines to show."""
        if msg.command.isdigit():
            return self._numeric(int(msg.command), msg)
        handler = getattr(self, f"_on_{msg.command.lower()}", None)
        if handler is None:
            return []  # unknown commands (CAP, MODE of others...) are not worth a line
        shown: list[str] = handler(msg)
        return shown

    def _on_ping(self, msg: IrcMessage) -> list[str]:
        self._send("PONG", *(msg.params or ("wirekit",)))
        return []

    def _on_error(self, msg: IrcMessage) -> list[str]:
        self.finished = True
        reason = display(msg.params[0] if msg.params else "no reason given")
        if self.quitting:  # RFC 2812 §3.1.7: the answer to our QUIT
            return [f"- closing: {reason}"]
        return [f"! the server closed the connection: {reason}"]

    def _on_privmsg(self, msg: IrcMessage) -> list[str]:
        if len(msg.params) < 2:
            return []
        return [self._format_privmsg(msg.params[0], _nick_of(msg.prefix), msg.params[1])]

    def _on_notice(self, msg: IrcMessage) -> list[str]:
        if len(msg.params) < 2:
            return []
        sender = _nick_of(msg.prefix) or "server"
        where = f"[{display(msg.params[0])}] " if _is_room(msg.params[0]) else ""
        return [f"{where}-{display(sender)}- {display(msg.params[1])}"]

    def _format_privmsg(self, target: str, sender: str, text: str, outgoing: bool = False) -> str:
        if _is_room(target):
            where = f"[{display(target)}] "
        elif outgoing:
            where = f"[to {display(target)}] "
        else:
            where = "[private] "
        if text.startswith("\x01ACTION ") or text == "\x01ACTION\x01":
            action = text[len("\x01ACTION ") :].rstrip("\x01")
            return f"{where}* {display(sender)} {display(action)}"
        if text.startswith("\x01"):
            return f"{where}({display(sender)} sent a CTCP {display(text.strip(chr(1)))})"
        return f"{where}<{display(sender)}> {display(text)}"

    def _is_me(self, prefix: str | None) -> bool:
        return casefold_irc(_nick_of(prefix)) == casefold_irc(self.nick)

    def _on_join(self, msg: IrcMessage) -> list[str]:
        if not msg.params:
            return []
        room = msg.params[0]
        if self._is_me(msg.prefix):
            if all(casefold_irc(r) != casefold_irc(room) for r in self.rooms):
                self.rooms.append(room)
            self.room = room
            return [f"* you joined {display(room)}"]
        return [f"[{display(room)}] * {display(_nick_of(msg.prefix))} joined"]

    def _leave(self, room: str) -> None:
        self.rooms = [r for r in self.rooms if casefold_irc(r) != casefold_irc(room)]
        if self.room is not None and casefold_irc(self.room) == casefold_irc(room):
            self.room = self.rooms[-1] if self.rooms else None

    def _on_part(self, msg: IrcMessage) -> list[str]:
        if not msg.params:
            return []
        room = msg.params[0]
        reason = f" ({display(msg.params[1])})" if len(msg.params) > 1 and msg.params[1] else ""
        if self._is_me(msg.prefix):
            self._leave(room)
            return [f"* you left {display(room)}"]
        return [f"[{display(room)}] * {display(_nick_of(msg.prefix))} left{reason}"]

    def _on_kick(self, msg: IrcMessage) -> list[str]:
        if len(msg.params) < 2:
            return []
        room, victim = msg.params[0], msg.params[1]
        reason = f" ({display(msg.params[2])})" if len(msg.params) > 2 else ""
        by = display(_nick_of(msg.prefix))
        if casefold_irc(victim) == casefold_irc(self.nick):
            self._leave(room)
            return [f"* {by} kicked you from {display(room)}{reason}"]
        return [f"[{display(room)}] * {by} kicked {display(victim)}{reason}"]

    def _on_quit(self, msg: IrcMessage) -> list[str]:
        reason = f" ({display(msg.params[0])})" if msg.params and msg.params[0] else ""
        return [f"* {display(_nick_of(msg.prefix))} quit{reason}"]

    def _on_nick(self, msg: IrcMessage) -> list[str]:
        if not msg.params:
            return []
        old, new = _nick_of(msg.prefix), msg.params[0]
        if self._is_me(msg.prefix):
            self.nick = new
            return [f"* you are now {display(new)}"]
        return [f"* {display(old)} is now {display(new)}"]

    def _on_topic(self, msg: IrcMessage) -> list[str]:
        if len(msg.params) < 2:
            return []
        who, room = display(_nick_of(msg.prefix)), display(msg.params[0])
        return [f"[{room}] * {who} set the topic: {display(msg.params[1])}"]

    # -- numerics --------------------------------------------------------------------

    def _numeric(self, code: int, msg: IrcMessage) -> list[str]:
        args = msg.params[1:]  # params[0] is our own nick (or * before registration)
        special = _NUMERICS.get(code)
        if special is not None:
            return special(self, args)
        text = display(" ".join(a for a in args if a))
        if 400 <= code < 600:
            return [f"! {text}"]
        return [f"- {text}"] if text else []

    def _welcome(self, args: tuple[str, ...]) -> list[str]:
        self.registered = True
        # The server's 001 names us as it registered us (it may have truncated).
        shown = [f"- {display(args[-1])}" if args else "- registered"]
        if self._first_room:
            self._send("JOIN", self._first_room)
            self.room = self._first_room
        held, self._held = self._held, []
        for text in held:
            shown += self.user_input(text)
        return shown

    def _nick_refused(self, args: tuple[str, ...]) -> list[str]:
        reason = display(args[-1]) if args else "nick refused"
        if self.registered:
            return [f"! {display(args[0])}: {reason}" if len(args) > 1 else f"! {reason}"]
        self._attempt += 1
        if self._attempt > MAX_NICK_ATTEMPTS:
            self.finished = True
            return [f"! no free nick after {MAX_NICK_ATTEMPTS} attempts: {reason}"]
        base = self._wanted if valid_nick(self._wanted) else "guest"
        suffix = "_" if self._attempt == 1 else str(self._attempt)
        self.nick = base[: SAFE_NICKLEN - len(suffix)] + suffix
        self._send("NICK", self.nick)
        return [f"- {reason}; trying {display(self.nick)}"]

    def _names_reply(self, args: tuple[str, ...]) -> list[str]:
        if len(args) >= 2:  # RFC 2812: "= #room :nick nick"; RFC 1459 omits the "="
            names = self._names.setdefault(casefold_irc(args[-2]), [])
            names += args[-1].split()
        return []

    def _names_end(self, args: tuple[str, ...]) -> list[str]:
        room = args[0] if args else "*"
        names = self._names.pop(casefold_irc(room), [])
        listed = " ".join(display(n) for n in names) or "nobody"
        return [f"[{display(room)}] {len(names)} here: {listed}"]

    def _topic_reply(self, args: tuple[str, ...]) -> list[str]:
        if len(args) < 2:
            return []
        return [f"[{display(args[0])}] topic: {display(args[1])}"]

    def _list_item(self, args: tuple[str, ...]) -> list[str]:
        if len(args) < 2:
            return []
        topic = f"  {display(args[2])}" if len(args) > 2 and args[2] else ""
        return [f"  {display(args[0])} ({display(args[1])} here){topic}"]

    def _unknown_command(self, args: tuple[str, ...]) -> list[str]:
        if args and args[0].upper() == "HISTORY":
            return [
                "! this server does not answer /history (some show a room's last messages on /join)"
            ]
        return [f"! {display(' '.join(args))}"]


_NUMERICS: dict[int, Callable[[ChatClient, tuple[str, ...]], list[str]]] = {
    1: ChatClient._welcome,
    321: lambda client, args: ["rooms:"],
    322: ChatClient._list_item,
    323: lambda client, args: ["- end of the room list"],
    331: lambda client, args: [f"[{display(args[0])}] no topic"] if args else [],
    332: ChatClient._topic_reply,
    333: lambda client, args: [],
    353: ChatClient._names_reply,
    366: ChatClient._names_end,
    421: ChatClient._unknown_command,
    432: ChatClient._nick_refused,
    433: ChatClient._nick_refused,
    436: ChatClient._nick_refused,
    437: ChatClient._nick_refused,
}
