"""IRC ``MODE``: channel modes o v k l i t n m s b, their queries, and user mode i.

irssi sends ``MODE #chan`` and ``MODE #chan b`` on every join and waits for
the answers (324/329 and 367/368), so both are always answered, even empty.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ...proto.irc import sanitize_text
from .model import ChatError, Room, User

if TYPE_CHECKING:
    from .core import ChatCore

__all__ = ["mode"]

FLAGS = frozenset("imnst")
#: RPL_ISUPPORT MODES=4: parameter-taking changes honoured per command.
MAX_PARAM_CHANGES = 4


def mode(core: ChatCore, user: User, p: tuple[str, ...]) -> None:
    if p[0].startswith("#"):
        room = core.room(p[0])
        if len(p) == 1:
            query(core, user, room)
        elif p[1].lstrip("+") == "b" and len(p) == 2:
            ban_list(core, user, room)
        else:
            change(core, user, room, p[1], list(p[2:]))
        return
    user_mode(core, user, p)


def query(core: ChatCore, user: User, room: Room) -> None:
    letters = "+" + "".join(sorted(room.flags))
    args: list[str] = []
    if room.password is not None:
        letters += "k"
        args.append(room.password if user in room.members else "*")
    if room.limit:
        letters += "l"
        args.append(str(room.limit))
    core.numeric(user, "324", room.name, letters, *args)
    core.numeric(user, "329", room.name, str(int(room.created)))


def ban_list(core: ChatCore, user: User, room: Room) -> None:
    for mask in room.bans:
        core.numeric(user, "367", room.name, mask)
    core.numeric(user, "368", room.name, "End of channel ban list")


def change(core: ChatCore, user: User, room: Room, modes: str, args: list[str]) -> None:
    core.need_op(user, room)
    # A key or a ban mask is echoed to every member in the MODE line (its last
    # parameter, which is not cleaned on the way out): no controls in them.
    args = [sanitize_text(arg) for arg in args]
    sign = "+"
    applied: list[tuple[str, str, str | None]] = []
    with_params = 0
    for letter in modes:
        if letter in "+-":
            sign = letter
            continue
        takes = letter in "ovb" or (letter in "kl" and sign == "+") or letter == "k"
        arg = args.pop(0) if takes and args else None
        if takes:
            with_params += 1
            if with_params > MAX_PARAM_CHANGES:
                break
        try:
            done = apply(core, room, sign, letter, arg)
        except ChatError as error:
            core.fail(user, error)
            continue
        if done:
            applied.append((sign, letter, done if done is not True else None))
    if applied:
        announce(core, user, room, applied)


def apply(core: ChatCore, room: Room, sign: str, letter: str, arg: str | None) -> str | bool:
    """Apply one change; returns its parameter (or True) if it changed anything."""
    on = sign == "+"
    if letter in FLAGS:
        if on == (letter in room.flags):
            return False
        (room.flags.add if on else room.flags.discard)(letter)
        return True
    if letter in "ov":
        return _status(core, room, on, letter, arg)
    if letter == "b":
        return _ban(core, room, on, arg)
    if letter == "k":
        if on:
            if not arg or " " in arg:
                return False
            room.password = arg[:23]
            return room.password
        if room.password is None:
            return False
        room.password = None
        return "*"
    if letter == "l":
        if on:
            if arg is None or not _number(arg) or int(arg) < 1:
                return False
            room.limit = min(int(arg), 1_000_000)
            return str(room.limit)
        changed = room.limit != 0
        room.limit = 0
        return changed
    raise ChatError("472", (letter,), "is unknown mode char to me", f"unknown mode {letter}")


def _number(text: str) -> bool:
    """ASCII digits only: str.isdigit() also says yes to "²", which int() refuses."""
    return text.isascii() and text.isdigit()


def _status(core: ChatCore, room: Room, on: bool, letter: str, nick: str | None) -> str | bool:
    if nick is None:
        return False
    target = core.find(nick)
    if target is None:
        raise ChatError("401", (nick,), "No such nick/channel", f"no one is called {nick[:30]}")
    status = room.members.get(target)
    if status is None:
        raise ChatError(
            "441", (nick, room.name), "They aren't on that channel", f"{nick} is not in {room.name}"
        )
    if on == (letter in status):
        return False
    room.members[target] = (
        "".join(sorted(set(status) | {letter})) if on else status.replace(letter, "")
    )
    return target.nick


def _ban(core: ChatCore, room: Room, on: bool, mask: str | None) -> str | bool:
    if not mask:
        return False
    if "!" not in mask and "@" not in mask:
        mask += "!*@*"  # a bare nick bans that nick from anywhere
    if on:
        if mask in room.bans:
            return False
        if len(room.bans) >= core.config.max_bans:
            raise ChatError(
                "478", (room.name, mask), "Channel ban list is full", "ban list is full"
            )
        room.bans.append(mask)
        return mask
    if mask not in room.bans:
        return False
    room.bans.remove(mask)
    return mask


def announce(
    core: ChatCore, user: User, room: Room, applied: list[tuple[str, str, str | None]]
) -> None:
    letters, sign, args = "", "", []
    for s, letter, arg in applied:
        if s != sign:
            letters += s
            sign = s
        letters += letter
        if arg is not None:
            args.append(arg)
    text = " ".join([letters, *args])
    core.tell(
        room.members,
        core.line(user.prefix, "MODE", room.name, letters, *args),
        f"[{room.name}] -- {user.nick} sets mode {text}",
    )


def user_mode(core: ChatCore, user: User, p: tuple[str, ...]) -> None:
    if core.find(p[0]) is not user:
        if core.find(p[0]) is None:
            raise ChatError("401", (p[0],), "No such nick/channel", "")
        raise ChatError("502", (), "Cant change mode for other users", "")
    if len(p) == 1:
        core.numeric(user, "221", "+i")
        return
    unknown = set(p[1]) - set("+-iw")
    if unknown:
        raise ChatError("501", (), "Unknown MODE flag", "")
    # Every user is invisible already (no global WHO listing): +i/-i/+w change nothing
    # but are answered, since clients send MODE nick +i right after registering.
    user.sink.send(core.line(user.prefix, "MODE", user.nick, p[1]))
