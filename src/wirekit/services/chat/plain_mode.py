"""Plain mode: ``nc`` and ``telnet`` users (docs/chat.md, "Plain mode").

A line is a message to the current room; a line starting with ``/`` is a
command; ``//`` sends a line that starts with ``/``. Everyone starts as
``guest-N`` in ``#lobby``. Output lines look like ``[#lobby] <alice> hello``;
events start with ``--``, server answers with ``*`` and errors with ``!``.
"""

from __future__ import annotations

import hmac
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from ...proto.irc import sanitize_text
from .config import LOBBY
from .model import ChatError, Room, User

if TYPE_CHECKING:
    from .core import ChatCore

__all__ = ["HELP", "LOBBY", "handle_line", "start"]

HELP = (
    "* commands: /nick NAME, /join #ROOM [KEY], /part [#ROOM] [REASON], /msg NICK|#ROOM TEXT,",
    "*   /me ACTION, /who [#ROOM], /rooms, /topic [TEXT], /history [N], /quit [REASON], /help",
    "* a line without / is a message to your current room; start it with // to send a /",
)
#: What an IRC client sends; in plain mode such a line gets a hint and is not sent on.
IRC_WORDS = frozenset(
    ("CAP", "PASS", "NICK", "USER", "JOIN", "PART", "PRIVMSG", "NOTICE", "PING", "PONG", "QUIT")
)

Command = Callable[["ChatCore", User, str], None]


def start(core: ChatCore, user: User, first: bytes) -> bool:
    """The first line made this a plain connection: greet, name, seat in #lobby.

    Returns True when ``first`` was used up: a first ``/nick NAME`` names the
    user at once (no ``guest-N`` joins and renames)."""
    core.plain(user, f"* welcome to wirekit chat on {core.name}")
    if core.config.password is not None:
        core.plain(user, "* this server needs a password: type /pass PASSWORD")
        return False
    word, _, rest = first.decode("utf-8", "replace").strip().partition(" ")
    nick = rest.strip()
    if word.lower() == "/nick" and nick and core.nick_free(nick):
        enter(core, user, nick)
        return True
    enter(core, user)
    return False


def enter(core: ChatCore, user: User, nick: str | None = None) -> None:
    core.claim_nick(user, nick or core.guest_nick())
    core.mark_registered(user)
    core.plain(user, f"* you are {user.nick}; /nick NAME changes it")
    for line in HELP:
        core.plain(user, line)
    try:
        room = core.join(user, LOBBY)
    except ChatError as error:
        core.fail(user, error)
        return
    if room is not None:
        joined(core, user, room)


def handle_line(core: ChatCore, user: User, line: bytes) -> None:
    text = sanitize_text(line.decode("utf-8", "replace")).strip()
    if not text:
        return
    try:
        if text.startswith("//"):
            say(core, user, text[1:])
        elif text.startswith("/"):
            word, _, rest = text[1:].partition(" ")
            command(core, user, word.lower(), rest.strip())
        elif not user.registered:
            core.plain(user, "! type /pass PASSWORD first")
        elif text.split(" ", 1)[0] in IRC_WORDS:
            core.plain(
                user,
                "! this connection is in plain mode: that looks like an IRC command and was "
                "not sent (IRC clients must start with CAP, PASS, NICK or USER; here use /help)",
            )
        else:
            say(core, user, text)
    except ChatError as error:
        core.fail(user, error)


def command(core: ChatCore, user: User, word: str, rest: str) -> None:
    if not user.registered and word not in ("pass", "quit", "help"):
        core.plain(user, "! type /pass PASSWORD first")
        return
    handler = COMMANDS.get(word)
    if handler is None:
        core.plain(user, f"! unknown command /{word[:20]}; /help lists the commands")
        return
    handler(core, user, rest)


def say(core: ChatCore, user: User, text: str) -> None:
    if user.current is None:
        core.plain(user, "! you are in no room: /join #ROOM first")
        return
    core.message(user, user.current.name, text)


def joined(core: ChatCore, user: User, room: Room) -> None:
    user.current = room
    names = ", ".join(room.prefixed(m) for m in room.members)
    core.plain(user, f"[{room.name}] -- you joined {room.name} ({len(room.members)}: {names})")
    if room.topic:
        core.plain(user, f"[{room.name}] -- topic: {room.topic}")
    history(core, user, room, len(room.history))


def history(core: ChatCore, user: User, room: Room, count: int) -> None:
    entries = list(room.history)[-count:] if count else []
    if not entries:
        return
    core.plain(user, f"[{room.name}] -- last {len(entries)} messages:")
    for entry in entries:
        stamp = time.strftime("%H:%M", time.gmtime(entry.when))
        who = f"* {entry.nick}" if entry.action else f"<{entry.nick}>"
        core.plain(user, f"[{room.name}] {stamp} {who} {entry.text}")
    core.plain(user, f"[{room.name}] -- end of history")


def _room_name(text: str) -> str:
    return text if text.startswith("#") else "#" + text


def cmd_pass(core: ChatCore, user: User, rest: str) -> None:
    if user.registered:
        core.plain(user, "! you are in already")
        return
    password = core.config.password or ""
    if not hmac.compare_digest(rest.encode(), password.encode()):
        core.close_link(user, "bad password")
        return
    enter(core, user)


def cmd_nick(core: ChatCore, user: User, rest: str) -> None:
    if not rest:
        core.plain(user, f"* you are {user.nick}; /nick NAME changes it")
        return
    core.claim_nick(user, rest.split(" ", 1)[0])


def cmd_join(core: ChatCore, user: User, rest: str) -> None:
    if not rest:
        core.plain(user, "! /join #ROOM [KEY]")
        return
    name, _, key = rest.partition(" ")
    room = core.join(user, _room_name(name), key.strip() or None)
    if room is None:
        room = core.room(_room_name(name))
        user.current = room
        core.plain(user, f"* now talking in {room.name}")
        return
    joined(core, user, room)


def cmd_part(core: ChatCore, user: User, rest: str) -> None:
    if rest.startswith("#"):
        name, _, reason = rest.partition(" ")
        room = core.room(name)
    elif user.current is not None:
        room, reason = user.current, rest
    else:
        core.plain(user, "! you are in no room")
        return
    core.part(user, room, reason.strip())
    if user.current is not None:
        core.plain(user, f"* now talking in {user.current.name}")


def cmd_msg(core: ChatCore, user: User, rest: str) -> None:
    target, _, text = rest.partition(" ")
    if not target or not text.strip():
        core.plain(user, "! /msg NICK|#ROOM TEXT")
        return
    core.message(user, target, text.strip())


def cmd_me(core: ChatCore, user: User, rest: str) -> None:
    if not rest:
        core.plain(user, "! /me ACTION")
        return
    if user.current is None:
        core.plain(user, "! you are in no room: /join #ROOM first")
        return
    core.message(user, user.current.name, f"\x01ACTION {rest}\x01")


def cmd_who(core: ChatCore, user: User, rest: str) -> None:
    room = core.room(_room_name(rest)) if rest else user.current
    if room is None:
        core.plain(user, "! you are in no room: /who #ROOM")
        return
    if "s" in room.flags and user not in room.members:
        raise ChatError("403", (), "", f"there is no room {room.name}")
    names = ", ".join(room.prefixed(m) for m in room.members)
    core.plain(user, f"* {room.name} ({len(room.members)}): {names}")


def cmd_rooms(core: ChatCore, user: User, _rest: str) -> None:
    shown = [r for r in core.rooms.values() if "s" not in r.flags or user in r.members]
    core.plain(user, f"* {len(shown)} rooms:")
    for room in shown:
        topic = f" - {room.topic}" if room.topic else ""
        core.plain(user, f"*   {room.name} ({len(room.members)}){topic}")
    core.charge(user, len(shown))


def cmd_topic(core: ChatCore, user: User, rest: str) -> None:
    room = user.current
    if room is None:
        core.plain(user, "! you are in no room")
    elif rest:
        core.set_topic(user, room, rest)
    else:
        core.plain(user, f"* topic of {room.name}: {room.topic or '(none)'}")


def cmd_history(core: ChatCore, user: User, rest: str) -> None:
    room = user.current
    if room is None:
        core.plain(user, "! you are in no room")
        return
    count = int(rest) if rest.isascii() and rest.isdigit() else len(room.history)
    if not room.history:
        core.plain(user, f"* no messages in {room.name} yet")
    history(core, user, room, count)


def cmd_quit(core: ChatCore, user: User, rest: str) -> None:
    reason = f"Quit: {rest[:200]}" if rest else "Quit"
    core.plain(user, "* bye")
    core.disconnect(user, reason)


def cmd_help(core: ChatCore, user: User, _rest: str) -> None:
    for line in HELP:
        core.plain(user, line)


COMMANDS: dict[str, Command] = {
    "pass": cmd_pass,
    "nick": cmd_nick,
    "join": cmd_join,
    "part": cmd_part,
    "leave": cmd_part,
    "msg": cmd_msg,
    "me": cmd_me,
    "who": cmd_who,
    "names": cmd_who,
    "rooms": cmd_rooms,
    "list": cmd_rooms,
    "topic": cmd_topic,
    "history": cmd_history,
    "quit": cmd_quit,
    "help": cmd_help,
}
