"""Hostile peers against the chat server and the chat client: escapes smuggled
through room names and mode parameters, numbers that are not ASCII digits,
flood-held input that costs more memory than its bytes, and a client killed
by SIGTERM that must give the terminal back."""

from __future__ import annotations

import contextlib
import os
import select
import signal
import socket
import subprocess
import sys
import termios
import time
import tracemalloc
from collections.abc import Callable
from typing import Any

import pytest
from test_chat_core import irc, make, plain

from wirekit.services.chat.model import Mode

WAIT = 10.0


def _escapes(lines: list[str]) -> list[str]:
    """Lines that carry an ESC or a C1 control (CSI as U+009B, ...)."""
    return [ln for ln in lines if any(c == "\x1b" or "\x80" <= c <= "\x9f" for c in ln)]


@pytest.mark.parametrize("name", ["#\x1b[2Jwiped", "#x\x9b2J", "#\x1b]0;title\x1b\\", "#a\x7fb"])
def test_room_names_with_control_characters_are_refused(name: str) -> None:
    core, _ = make()
    mallory = irc(core, "mallory")
    bob = plain(core)
    mallory.say(f"JOIN {name}".encode())
    assert mallory.numerics() == ["403"]
    assert len(core.rooms) == 1  # only #lobby
    bob.say("/rooms")
    assert _escapes(bob.take()) == []


def test_mode_key_and_ban_mask_cannot_carry_terminal_escapes() -> None:
    core, _ = make()
    op = irc(core, "op")
    watcher = irc(core, "watcher")
    bob = plain(core)
    op.say("JOIN #r")
    watcher.say("JOIN #r")
    bob.say("/join #r")
    for peer in (op, watcher, bob):
        peer.take()
    op.say("MODE #r +k \x1b[2J\x1b[H", "MODE #r +b \x1b]0;pwned\x07", "MODE #r +b x\x9b31m")
    for peer in (op, watcher, bob):
        assert _escapes(peer.take()) == []
    watcher.say("MODE #r", "MODE #r b")
    assert _escapes(watcher.take()) == []


@pytest.mark.parametrize(
    "mode, line",
    [
        (Mode.IRC, "HISTORY #r \u00b2"),
        (Mode.IRC, "MODE #r +l \u00b2"),
        (Mode.PLAIN, "/history \u00b3"),
    ],
)
def test_superscript_digits_are_not_numbers(mode: Mode, line: str) -> None:
    """str.isdigit() is true for "²", which int() refuses: the command must be
    answered (or ignored), not end in an exception that costs the connection."""
    core, _ = make()
    peer = irc(core, "alice") if mode is Mode.IRC else plain(core)
    if mode is Mode.IRC:
        peer.say("JOIN #r", "PRIVMSG #r :one")
    else:
        peer.say("/join #r", "one")
    peer.take()
    peer.say(line)
    assert not peer.user.closed
    peer.say("PING :still" if mode is Mode.IRC else "/help")
    assert peer.take()


def test_flood_held_input_costs_no_more_memory_than_its_bytes(
    chat_server: Callable[..., Any],
) -> None:
    """A client over its flood rate has its lines held; the held input must stay
    raw bytes, not a Python object per three-byte line (fifteen times the memory).
    One read's worth (256 KiB, what the loop reads at once) is handed to the
    connection's stream as its transport would."""
    handle = chat_server(flood_rate=1.0, flood_burst=5)
    with socket.create_connection(handle.address, timeout=WAIT) as sock:
        sock.sendall(b"/nick flooder\r\n")
        deadline = time.monotonic() + WAIT
        while handle.call(lambda: handle.server.core.find("flooder")) is None:
            assert time.monotonic() < deadline, "never registered"
            time.sleep(0.01)
        chunk = b"ab\n" * (96 * 1024)

        def feed() -> int:
            (stream,) = list(handle.server.raw.streams)
            tracemalloc.start()
            try:
                stream.on_data(chunk)
                held = tracemalloc.get_traced_memory()[0]
            finally:
                tracemalloc.stop()
            assert stream.timer is not None, "flood control did not hold the input"
            return int(held)

        held = handle.call(feed)
    assert held < 2 * len(chunk), f"{held} bytes held for {len(chunk)} bytes of input"


def _lflag(fd: int) -> int:
    return int(termios.tcgetattr(fd)[3])


def test_chat_client_killed_by_sigterm_restores_the_terminal(
    chat_server: Callable[..., Any],
) -> None:
    handle = chat_server()
    master, slave = os.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "wirekit", "chat", f"127.0.0.1:{handle.address[1]}",
         "--nick", "termuser"],
        stdin=slave,
        stdout=slave,
        stderr=slave,
        start_new_session=True,
        env={**os.environ, "LANG": "C.UTF-8", "TERM": "xterm"},
    )  # fmt: skip
    try:
        deadline = time.monotonic() + WAIT
        seen = b""
        while handle.call(lambda: handle.server.core.find("termuser")) is None or (
            _lflag(slave) & termios.ECHO
        ):
            assert time.monotonic() < deadline, f"client never registered raw: {seen[-300:]!r}"
            if select.select([master], [], [], 0.05)[0]:
                seen += os.read(master, 4096)
        proc.send_signal(signal.SIGTERM)
        while proc.poll() is None:
            assert time.monotonic() < deadline + WAIT, "client did not exit on SIGTERM"
            if select.select([master], [], [], 0.05)[0]:
                with contextlib.suppress(OSError):
                    seen += os.read(master, 4096)
        assert proc.returncode == 128 + signal.SIGTERM
        flags = _lflag(slave)
        assert flags & termios.ECHO and flags & termios.ICANON, "terminal left raw"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        os.close(master)
        os.close(slave)


def test_an_invitation_belongs_to_the_person_not_the_nick() -> None:
    """bob is invited to an invite-only room and leaves; whoever takes the nick
    bob next must not walk in on his invitation (nor past a ban)."""
    core, _ = make()
    op = irc(core, "op")
    op.say("JOIN #vip", "MODE #vip +i")
    bob = irc(core, "bob")
    op.say("INVITE bob #vip")
    bob.say("QUIT :bye")
    eve = irc(core, "eve")
    eve.say("NICK bob")
    eve.take()
    eve.say("JOIN #vip")
    assert eve.numerics() == ["473"]
    assert eve.user not in core.rooms["#vip"].members


def _invitations(core: object) -> int:
    rooms = core.rooms.values()  # type: ignore[attr-defined]
    users = core.connections  # type: ignore[attr-defined]
    return sum(len(getattr(r, "invited", ())) for r in rooms) + sum(
        len(getattr(u, "invites", ())) for u in users
    )


def test_invitations_do_not_pile_up() -> None:
    """Invite, rename, invite again (or invite to room after room): what the
    server remembers stays bounded."""
    core, _ = make(flood_rate=0)
    op = irc(core, "op")
    op.say("JOIN #keep")
    target = irc(core, "t0")
    for i in range(1, 301):
        op.say(f"INVITE t{i - 1} #keep")
        target.say(f"NICK t{i}")
        op.say(f"JOIN #r{i}", f"INVITE t{i} #r{i}", f"PART #r{i}")
    assert _invitations(core) <= 100


def test_a_huge_who_reply_costs_flood_tokens() -> None:
    """WHO on a big room is one short line in and a line per member out (10,000
    members: about 0.1 s of server time and 600 KB): the reply is paid for in
    flood tokens, so a burst of them cannot stall everyone for seconds."""
    core, _ = make(flood_rate=10, flood_burst=20)
    members = [irc(core, f"m{i}") for i in range(500)]
    for member in members:
        member.say("JOIN #big")
    asker = members[0]
    asker.take()
    for _ in range(4):
        assert core.flood_delay(asker.user) == 0
        asker.say("WHO #big")
    assert core.flood_delay(asker.user) > 0, "2,000 reply lines cost no more than 4 lines"


def test_chat_client_with_stdin_closed_joins_and_quits_cleanly(
    chat_server: Callable[..., Any],
) -> None:
    """Started with descriptor 0 closed (``<&-``), the event loop or the socket
    must not take it over (libuv aborts closing it): stdin reads as empty."""
    handle = chat_server()
    done = subprocess.run(
        ["sh", "-c", 'exec "$@" 0>&-', "sh", sys.executable, "-m", "wirekit", "chat",
         f"127.0.0.1:{handle.address[1]}", "--nick", "nostdin"],
        capture_output=True,
        timeout=WAIT,
    )  # fmt: skip
    assert (done.returncode, done.stderr) == (0, b"")
