"""IRC mode: registration and the commands real clients send (RFC 1459/2812,
with the modern numerics irssi and weechat expect; docs/chat.md, "IRC").

Each handler takes the core, the user and the message parameters; a refused
command raises :class:`ChatError`, answered with its ERR_ numeric. Commands on
one connection are answered strictly in order.
"""

from __future__ import annotations

import hmac
import re
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from ... import __version__
from ...proto.irc import IrcParseError, casefold_irc, parse_line, sanitize_text
from .model import ChatError, Room, User

if TYPE_CHECKING:
    from .core import ChatCore

__all__ = ["ISUPPORT", "handle_line", "join_reply"]

Handler = Callable[["ChatCore", User, tuple[str, ...]], None]

#: RPL_ISUPPORT tokens (docs/chat.md lists what each means).
ISUPPORT = (
    "AWAYLEN=200",
    "CASEMAPPING=rfc1459",
    "CHANLIMIT=#:50",
    "CHANMODES=b,k,l,imnst",
    "CHANNELLEN=50",
    "CHANTYPES=#",
    "KICKLEN=390",
    "MAXLIST=b:50",
    "MODES=4",
    "NETWORK=wirekit",
    "NICKLEN=30",
    "PREFIX=(ov)@+",
    "TARGMAX=PRIVMSG:4,NOTICE:4,JOIN:,PART:,KICK:1,NAMES:1,WHOIS:1",
    "TOPICLEN=390",
)
#: Allowed before registration (everything else gets 451 ERR_NOTREGISTERED).
PRE_REGISTRATION = frozenset(("CAP", "PASS", "NICK", "USER", "PING", "PONG", "QUIT"))
AWAYLEN = 200
TARGETS = 4
_USERNAME = re.compile(r"[^A-Za-z0-9._-]")


def handle_line(core: ChatCore, user: User, line: bytes) -> None:
    try:
        msg = parse_line(line)
    except IrcParseError:
        word = sanitize_text(line.decode("utf-8", "replace")).split(" ", 1)[0][:20]
        core.numeric(user, "421", word or "*", "Unknown command")
        return
    entry = HANDLERS.get(msg.command)
    if entry is None:
        core.numeric(user, "421", msg.command, "Unknown command")
        return
    handler, needed = entry
    if not user.registered and msg.command not in PRE_REGISTRATION:
        core.numeric(user, "451", "You have not registered")
        return
    if len(msg.params) < needed:
        core.numeric(user, "461", msg.command, "Not enough parameters")
        return
    try:
        handler(core, user, msg.params)
    except ChatError as error:
        if msg.command != "NOTICE":  # RFC 2812 §3.3.2: never an automatic reply to a NOTICE
            core.fail(user, error)


def _number(text: str) -> bool:
    """ASCII digits only: str.isdigit() also says yes to "²", which int() refuses."""
    return text.isascii() and text.isdigit()


def clean(text: str) -> str:
    """User text made safe for every terminal; CTCP framing (\\x01) is kept."""
    if len(text) >= 2 and text[0] == "\x01":
        inner = text[1:-1] if text.endswith("\x01") else text[1:]
        return "\x01" + sanitize_text(inner) + "\x01"
    return sanitize_text(text)


# -- registration -------------------------------------------------------------


def cmd_cap(core: ChatCore, user: User, p: tuple[str, ...]) -> None:
    sub = p[0].upper()
    who = user.nick
    if sub == "LS":
        # No capabilities: an empty list, and registration waits for CAP END.
        user.negotiating = not user.registered
        user.sink.send(core.line(core.name, "CAP", who, "LS", ""))
    elif sub == "LIST":
        user.sink.send(core.line(core.name, "CAP", who, "LIST", ""))
    elif sub == "REQ":
        user.negotiating = not user.registered
        asked = sanitize_text(p[1]) if len(p) > 1 else ""
        user.sink.send(core.line(core.name, "CAP", who, "NAK", asked))
    elif sub == "END":
        user.negotiating = False
        try_register(core, user)
    else:
        core.numeric(user, "410", sub, "Invalid CAP command")


def cmd_pass(core: ChatCore, user: User, p: tuple[str, ...]) -> None:
    if user.registered:
        raise ChatError("462", (), "You may not reregister", "you are registered already")
    password = core.config.password
    user.pass_ok = password is None or hmac.compare_digest(p[0].encode(), password.encode())


def cmd_nick(core: ChatCore, user: User, p: tuple[str, ...]) -> None:
    if not p or not p[0]:
        raise ChatError("431", (), "No nickname given", "no nick given")
    core.claim_nick(user, p[0])
    try_register(core, user)


def cmd_user(core: ChatCore, user: User, p: tuple[str, ...]) -> None:
    if user.registered:
        raise ChatError("462", (), "You may not reregister", "you are registered already")
    user.username = "~" + (_USERNAME.sub("", p[0])[:10] or "user")
    user.realname = sanitize_text(p[3])[:100]
    try_register(core, user)


def try_register(core: ChatCore, user: User) -> None:
    if user.registered or not user.key or not user.username or user.negotiating:
        return
    if core.config.password is not None and not user.pass_ok:
        core.numeric(user, "464", "Password incorrect")
        core.close_link(user, "Bad password")
        return
    user.set_nick(user.nick, user.key)  # the prefix now has the user name
    core.mark_registered(user)
    welcome(core, user)


def welcome(core: ChatCore, user: User) -> None:
    name = core.name
    created = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(core.started))
    core.numeric(user, "001", f"Welcome to the wirekit chat network, {user.prefix}")
    core.numeric(user, "002", f"Your host is {name}, running version wirekit-{__version__}")
    core.numeric(user, "003", f"This server was created {created}")
    core.numeric(user, "004", name, f"wirekit-{__version__}", "i", "biklmnostv", "bklov")
    isupport(core, user)
    cmd_lusers(core, user, ())
    cmd_motd(core, user, ())


def isupport(core: ChatCore, user: User) -> None:
    # At most 13 tokens a line: with the nick and the text, 15 parameters (RFC 1459 §2.3).
    for start in range(0, len(ISUPPORT), 13):
        core.numeric(user, "005", *ISUPPORT[start : start + 13], "are supported by this server")


def cmd_lusers(core: ChatCore, user: User, _p: tuple[str, ...]) -> None:
    users, most = core.registered, core.most_registered
    unknown = len(core.connections) - users
    core.numeric(user, "251", f"There are {users} users and 0 invisible on 1 servers")
    core.numeric(user, "252", "0", "operator(s) online")
    core.numeric(user, "253", str(unknown), "unknown connection(s)")
    core.numeric(user, "254", str(len(core.rooms)), "channels formed")
    core.numeric(user, "255", f"I have {users} clients and 0 servers")
    core.numeric(user, "265", str(users), str(most), f"Current local users {users}, max {most}")
    core.numeric(user, "266", str(users), str(most), f"Current global users {users}, max {most}")


def cmd_motd(core: ChatCore, user: User, _p: tuple[str, ...]) -> None:
    motd = core.config.motd
    if not motd:
        core.numeric(user, "422", "MOTD File is missing")
        return
    core.numeric(user, "375", f"- {core.name} Message of the day - ")
    for text in motd:
        core.numeric(user, "372", f"- {text}")
    core.numeric(user, "376", "End of /MOTD command.")


def cmd_ping(core: ChatCore, user: User, p: tuple[str, ...]) -> None:
    if not p or not p[0]:
        raise ChatError("409", (), "No origin specified", "PING needs a token")
    user.sink.send(core.line(core.name, "PONG", core.name, sanitize_text(p[0]) or "*"))


def cmd_pong(_core: ChatCore, _user: User, _p: tuple[str, ...]) -> None:
    """Any line resets the PING clock (ChatCore.receive); nothing to answer."""


def cmd_quit(core: ChatCore, user: User, p: tuple[str, ...]) -> None:
    reason = "Quit: " + sanitize_text(p[0])[:200] if p and p[0] else "Quit"
    core.user_error(user, reason)
    core.disconnect(user, reason)


# -- rooms --------------------------------------------------------------------


def cmd_join(core: ChatCore, user: User, p: tuple[str, ...]) -> None:
    if p[0] == "0":  # RFC 2812 §3.2.1: leave every channel
        for joined in list(user.rooms.values()):
            core.part(user, joined, "Left all channels")
        return
    keys = p[1].split(",") if len(p) > 1 else []
    for i, name in enumerate(p[0].split(",")):
        try:
            room = core.join(user, name, keys[i] if i < len(keys) else None)
        except ChatError as error:
            core.fail(user, error)
            continue
        if room is not None:
            join_reply(core, user, room)


def join_reply(core: ChatCore, user: User, room: Room) -> None:
    user.sink.send(core.line(user.prefix, "JOIN", room.name))
    if room.topic:
        topic_reply(core, user, room)
    names_reply(core, user, room)
    history_reply(core, user, room, len(room.history))


def history_reply(core: ChatCore, user: User, room: Room, count: int) -> None:
    """The room's last ``count`` messages as server NOTICEs (on JOIN, and for
    HISTORY)."""
    for entry in list(room.history)[len(room.history) - count :]:
        stamp = time.strftime("%H:%M", time.gmtime(entry.when))
        text = f"* {entry.nick} {entry.text}" if entry.action else f"<{entry.nick}> {entry.text}"
        user.sink.send(core.line(core.name, "NOTICE", room.name, f"[{stamp}] {text}"))


def cmd_history(core: ChatCore, user: User, p: tuple[str, ...]) -> None:
    """``HISTORY #room [N]`` (wirekit's own, what plain mode's /history does):
    the last N messages (all kept, by default) of a room the user is in, then
    an end NOTICE so a client knows the answer is complete."""
    room = core.room(p[0])
    if user not in room.members:
        raise ChatError("442", (room.name,), "You're not on that channel", "")
    kept = len(room.history)
    count = min(int(p[1]), kept) if len(p) > 1 and _number(p[1]) else kept
    history_reply(core, user, room, count)
    user.sink.send(core.line(core.name, "NOTICE", room.name, "-- end of history"))


def topic_reply(core: ChatCore, user: User, room: Room) -> None:
    core.numeric(user, "332", room.name, room.topic)
    core.numeric(user, "333", room.name, room.topic_by, str(int(room.topic_at)))


def names_reply(core: ChatCore, user: User, room: Room) -> None:
    kind = "@" if "s" in room.flags else "="
    names: list[str] = []
    size = 0
    for member in room.members:
        name = room.prefixed(member)
        if size + len(name) > 400:
            core.numeric(user, "353", kind, room.name, " ".join(names))
            names, size = [], 0
        names.append(name)
        size += len(name) + 1
    if names:
        core.numeric(user, "353", kind, room.name, " ".join(names))
    core.numeric(user, "366", room.name, "End of /NAMES list.")


def visible(room: Room, user: User) -> bool:
    return "s" not in room.flags or user in room.members


def cmd_part(core: ChatCore, user: User, p: tuple[str, ...]) -> None:
    reason = sanitize_text(p[1])[:200] if len(p) > 1 else ""
    for name in p[0].split(","):
        try:
            core.part(user, core.room(name), reason)
        except ChatError as error:
            core.fail(user, error)


def cmd_names(core: ChatCore, user: User, p: tuple[str, ...]) -> None:
    name = p[0].split(",")[0] if p else "*"
    room = core.rooms.get(casefold_irc(name))
    if room is not None and visible(room, user):
        names_reply(core, user, room)
    else:
        core.numeric(user, "366", name, "End of /NAMES list.")


def cmd_topic(core: ChatCore, user: User, p: tuple[str, ...]) -> None:
    room = core.room(p[0])
    if len(p) > 1:
        core.set_topic(user, room, sanitize_text(p[1]))
    elif not visible(room, user):
        raise ChatError("442", (room.name,), "You're not on that channel", "")
    elif room.topic:
        topic_reply(core, user, room)
    else:
        core.numeric(user, "331", room.name, "No topic is set")


def cmd_list(core: ChatCore, user: User, p: tuple[str, ...]) -> None:
    wanted = {casefold_irc(n) for n in p[0].split(",")} if p and p[0] else None
    core.numeric(user, "321", "Channel", "Users  Name")
    for key, room in core.rooms.items():
        if (wanted is None or key in wanted) and visible(room, user):
            core.numeric(user, "322", room.name, str(len(room.members)), room.topic)
    core.charge(user, len(core.rooms))
    core.numeric(user, "323", "End of /LIST")


def cmd_kick(core: ChatCore, user: User, p: tuple[str, ...]) -> None:
    room = core.room(p[0])
    reason = sanitize_text(p[2])[:390] if len(p) > 2 else ""
    for nick in p[1].split(",")[:TARGETS]:
        core.kick(user, room, nick, reason)


def cmd_invite(core: ChatCore, user: User, p: tuple[str, ...]) -> None:
    target = core.find(p[0])
    if target is None:
        raise ChatError("401", (p[0],), "No such nick/channel", "")
    room = core.room(p[1])
    if user not in room.members:
        raise ChatError("442", (room.name,), "You're not on that channel", "")
    if "i" in room.flags:
        core.need_op(user, room)
    if target in room.members:
        raise ChatError("443", (target.nick, room.name), "is already on channel", "")
    target.invite(room)
    core.numeric(user, "341", target.nick, room.name)
    core.tell(
        (target,),
        core.line(user.prefix, "INVITE", target.nick, room.name),
        f"* {user.nick} invites you to {room.name}: /join {room.name}",
    )


# -- messages and people -------------------------------------------------------


def cmd_message(command: str) -> Handler:
    def handler(core: ChatCore, user: User, p: tuple[str, ...]) -> None:
        if not p or not p[0]:
            raise ChatError("411", (), f"No recipient given ({command})", "")
        if len(p) < 2 or not p[1]:
            raise ChatError("412", (), "No text to send", "")
        text = clean(p[1])
        for target in p[0].split(",")[:TARGETS]:
            try:
                core.message(user, target, text, command)
            except ChatError as error:
                if command != "NOTICE":
                    core.fail(user, error)

    return handler


def cmd_who(core: ChatCore, user: User, p: tuple[str, ...]) -> None:
    mask = p[0] if p else "*"
    room = core.rooms.get(casefold_irc(mask))
    if room is not None and visible(room, user):
        for member in room.members:
            who_reply(core, user, member, room)
        core.charge(user, len(room.members))
    elif (target := core.find(mask)) is not None:
        who_reply(core, user, target, None)
    core.numeric(user, "315", mask, "End of /WHO list.")


def who_reply(core: ChatCore, user: User, member: User, room: Room | None) -> None:
    status = "G" if member.away is not None else "H"
    if room is not None:
        status += room.prefixed(member)[: -len(member.nick)]
    core.numeric(
        user,
        "352",
        room.name if room is not None else "*",
        member.username or "~" + member.nick[:9],
        member.host,
        core.name,
        member.nick,
        status,
        f"0 {member.realname or member.nick}",
    )


def cmd_whois(core: ChatCore, user: User, p: tuple[str, ...]) -> None:
    nick = p[-1].split(",")[0]
    target = core.find(nick)
    if target is None:
        core.numeric(user, "401", nick, "No such nick/channel")
        core.numeric(user, "318", nick, "End of /WHOIS list.")
        return
    username = target.username or "~" + target.nick[:9]
    core.numeric(user, "311", target.nick, username, target.host, "*", target.realname or "plain")
    rooms = [
        r.prefixed(target)[: -len(target.nick)] + r.name
        for r in target.rooms.values()
        if visible(r, user)
    ]
    if rooms:
        core.numeric(user, "319", target.nick, " ".join(rooms))
    core.numeric(user, "312", target.nick, core.name, "wirekit chat")
    if target.away is not None:
        core.numeric(user, "301", target.nick, target.away)
    idle = int(core.clock() - target.last_seen)
    signon = int(core.wall() - (core.clock() - target.connected))
    core.numeric(user, "317", target.nick, str(idle), str(signon), "seconds idle, signon time")
    core.numeric(user, "318", target.nick, "End of /WHOIS list.")


def cmd_away(core: ChatCore, user: User, p: tuple[str, ...]) -> None:
    if p and p[0]:
        user.away = sanitize_text(p[0])[:AWAYLEN]
        core.numeric(user, "306", "You have been marked as being away")
    else:
        user.away = None
        core.numeric(user, "305", "You are no longer marked as being away")


def cmd_userhost(core: ChatCore, user: User, p: tuple[str, ...]) -> None:
    found = []
    for nick in p[:5]:
        target = core.find(nick)
        if target is not None:
            away = "-" if target.away is not None else "+"
            found.append(f"{target.nick}={away}{target.username}@{target.host}")
    core.numeric(user, "302", " ".join(found))


def cmd_ison(core: ChatCore, user: User, p: tuple[str, ...]) -> None:
    nicks = " ".join(p).split()
    core.numeric(user, "303", " ".join(t.nick for n in nicks if (t := core.find(n)) is not None))


def cmd_version(core: ChatCore, user: User, _p: tuple[str, ...]) -> None:
    core.numeric(user, "351", f"wirekit-{__version__}", core.name, "wirekit chat")
    isupport(core, user)


def cmd_time(core: ChatCore, user: User, _p: tuple[str, ...]) -> None:
    core.numeric(user, "391", core.name, time.strftime("%a %b %d %Y %H:%M:%S UTC", time.gmtime()))


def cmd_mode(core: ChatCore, user: User, p: tuple[str, ...]) -> None:
    from .modes import mode  # a module of its own: channel modes are the longest part

    mode(core, user, p)


HANDLERS: dict[str, tuple[Handler, int]] = {
    "CAP": (cmd_cap, 1),
    "PASS": (cmd_pass, 1),
    "NICK": (cmd_nick, 0),
    "USER": (cmd_user, 4),
    "PING": (cmd_ping, 0),
    "PONG": (cmd_pong, 0),
    "QUIT": (cmd_quit, 0),
    "JOIN": (cmd_join, 1),
    "PART": (cmd_part, 1),
    "PRIVMSG": (cmd_message("PRIVMSG"), 0),
    "NOTICE": (cmd_message("NOTICE"), 0),
    "NAMES": (cmd_names, 0),
    "TOPIC": (cmd_topic, 1),
    "LIST": (cmd_list, 0),
    "KICK": (cmd_kick, 2),
    "INVITE": (cmd_invite, 2),
    "WHO": (cmd_who, 0),
    "WHOIS": (cmd_whois, 1),
    "AWAY": (cmd_away, 0),
    "MODE": (cmd_mode, 1),
    "LUSERS": (cmd_lusers, 0),
    "MOTD": (cmd_motd, 0),
    "USERHOST": (cmd_userhost, 1),
    "ISON": (cmd_ison, 1),
    "VERSION": (cmd_version, 0),
    "TIME": (cmd_time, 0),
    "HISTORY": (cmd_history, 1),
}
