"""IRC mode with real clients: the Python ``irc`` library, irssi in tmux, raw lines."""

from __future__ import annotations

import re
import shutil
import socket
import ssl
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

irc_client = pytest.importorskip("irc.client", reason="the irc package (pip install irc)")


class PyIrc:
    """An ``irc.client`` connection whose events are recorded."""

    def __init__(self, address: tuple[str, int], nick: str) -> None:
        self.reactor = irc_client.Reactor()
        self.events: list[Any] = []
        self.reactor.add_global_handler("all_events", self._record, -10)
        self.conn = self.reactor.server().connect(address[0], address[1], nick)

    def _record(self, _conn: Any, event: Any) -> None:
        self.events.append(event)

    def wait_for(
        self, kind: str, test: Callable[[Any], bool] = lambda e: True, timeout: float = 5
    ) -> Any:
        deadline = time.monotonic() + timeout
        seen = 0
        while time.monotonic() < deadline:
            for event in self.events[seen:]:
                if event.type == kind and test(event):
                    return event
            seen = len(self.events)
            self.reactor.process_once(0.02)
        kinds = [e.type for e in self.events][-20:]
        raise AssertionError(f"no {kind} event within {timeout} s; saw {kinds}")

    def pump(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            self.reactor.process_once(0.02)

    def close(self) -> None:
        self.conn.close()


@pytest.fixture
def pyirc() -> Iterator[Callable[..., PyIrc]]:
    made: list[PyIrc] = []

    def make(address: tuple[str, int], nick: str) -> PyIrc:
        client = PyIrc(address, nick)
        made.append(client)
        return client

    yield make
    for client in made:
        client.close()


def test_irc_library_and_plain_user_talk(
    chat_addr: tuple[str, int], pyirc: Callable[..., PyIrc], connect_lines: Callable[..., Any]
) -> None:
    bot = pyirc(chat_addr, "pybot")
    bot.wait_for("welcome")
    bot.conn.join("#lobby")
    bot.wait_for("endofnames")
    human = connect_lines(chat_addr)
    human.send("/nick human")
    human.expect(r"you joined #lobby \(2: @pybot, human\)")
    bot.wait_for("join", lambda e: e.source.nick == "human")
    human.send("hello bot")
    event = bot.wait_for("pubmsg")
    assert (event.source.nick, event.target, event.arguments) == ("human", "#lobby", ["hello bot"])
    bot.conn.privmsg("#lobby", "hello human")
    bot.conn.action("#lobby", "beeps")
    bot.conn.privmsg("human", "psst")
    human.expect(r"^\[#lobby\] <pybot> hello human$")
    human.expect(r"^\[#lobby\] \* pybot beeps$")
    human.expect(r"^\[pm\] <pybot> psst$")
    human.send("/msg pybot private reply")
    event = bot.wait_for("privmsg")
    assert (event.source.nick, event.arguments) == ("human", ["private reply"])


def test_irc_library_nick_collision_and_change(
    chat_addr: tuple[str, int], pyirc: Callable[..., PyIrc]
) -> None:
    first = pyirc(chat_addr, "same")
    first.wait_for("welcome")
    second = pyirc(chat_addr, "SAME")
    event = second.wait_for("nicknameinuse")
    assert event.arguments[0] == "SAME"
    second.conn.nick("other")
    second.wait_for("welcome")
    first.conn.join("#n")
    first.wait_for("endofnames")
    second.conn.join("#n")
    first.wait_for("join", lambda e: e.source.nick == "other")
    second.conn.nick("renamed")
    event = first.wait_for("nick")
    assert (event.source.nick, event.target) == ("other", "renamed")


def test_irc_library_answers_pings_and_stays(
    chat_server: Callable[..., Any], pyirc: Callable[..., PyIrc]
) -> None:
    chat = chat_server(ping_interval=0.1, ping_timeout=0.3)
    client = pyirc(chat.address, "pinged")
    client.wait_for("welcome")
    client.wait_for("ping")
    client.pump(0.8)  # well past the ping timeout: the library's PONGs keep it in
    assert client.conn.is_connected()
    assert chat.call(lambda: chat.server.core.find("pinged")) is not None


def test_irssi_style_registration_and_join_numerics(
    chat_addr: tuple[str, int], connect_lines: Callable[..., Any]
) -> None:
    client = connect_lines(chat_addr)
    client.send("CAP LS 302\r\nNICK irssi\r\nUSER irssi irssi 127.0.0.1 :real name")
    assert client.expect(r"CAP") == ":wirekit CAP * LS :"
    client.send("CAP END")
    codes: list[str] = []
    while not codes or codes[-1] not in ("376", "422"):
        codes.append(client.expect(r"^:wirekit \d{3} ").split(" ")[1])
    assert codes[:5] == ["001", "002", "003", "004", "005"]
    assert {"251", "252", "253", "254", "255", "265", "266"} <= set(codes)
    client.send("JOIN #room\r\nMODE #room\r\nWHO #room\r\nMODE #room b")
    order = [
        r"^:irssi!~irssi@127\.0\.0\.1 JOIN #room$",
        r" 353 irssi = #room :?@irssi$",
        r" 366 irssi #room ",
        r" 324 irssi #room \+nt$",
        r" 329 irssi #room \d+$",
        r" 352 irssi #room ~irssi 127\.0\.0\.1 wirekit irssi H@ :0 real name$",
        r" 315 irssi #room ",
        r" 368 irssi #room ",
    ]
    start = client.seen
    for pattern in order:
        client.expect(pattern)
    # Answered strictly in order, nothing in between.
    assert client.seen - start == len(order)


def test_irc_over_tls(chat_server: Callable[..., Any], tls: Any) -> None:
    chat = chat_server(ssl=tls.server_context(), listen=["tls://127.0.0.1:0"])
    assert chat.addr.scheme == "tls"
    raw = socket.create_connection(chat.address, timeout=5)
    with tls.client_context().wrap_socket(raw, server_hostname="localhost") as conn:
        conn.sendall(b"NICK secure\r\nUSER s 0 * :s\r\n")
        data = b""
        while b" 001 secure " not in data:
            chunk = conn.recv(65536)
            assert chunk, f"closed early: {data!r}"
            data += chunk
        assert data.startswith(b":wirekit NOTICE * :*** wirekit chat")
    with pytest.raises((ssl.SSLError, OSError)):
        # Plain text on a TLS port is not a chat session.
        plain = socket.create_connection(chat.address, timeout=5)
        plain.sendall(b"hello\r\n")
        if not plain.recv(100):
            raise OSError("closed")


# --- irssi ---------------------------------------------------------------------------------


class Tmux:
    def __init__(self, name: str) -> None:
        self.name = name

    def run(self, *args: str) -> str:
        done = subprocess.run(
            ["tmux", "-L", self.name, *args], capture_output=True, text=True, timeout=10
        )
        return done.stdout

    def keys(self, text: str) -> None:
        self.run("send-keys", "-t", "chat", "-l", text)
        self.run("send-keys", "-t", "chat", "Enter")

    def screen(self) -> str:
        return self.run("capture-pane", "-p", "-t", "chat", "-S", "-200")

    def wait_for(self, pattern: str, timeout: float = 10) -> str:
        deadline = time.monotonic() + timeout
        while True:
            text = self.screen()
            if re.search(pattern, text):
                return text
            if time.monotonic() > deadline:
                raise AssertionError(f"irssi did not show {pattern!r} in {timeout} s:\n{text}")
            time.sleep(0.05)


@pytest.fixture
def irssi(tmp_path: Path) -> Iterator[Tmux]:
    for tool in ("irssi", "tmux"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} is not installed (Debian package {tool})")
    home = tmp_path / "irssi"
    home.mkdir()
    tmux = Tmux(f"wirekit-chat-{tmp_path.name}")
    tmux.run(
        "new-session", "-d", "-s", "chat", "-x", "200", "-y", "50",
        f"irssi --noconnect --home={home} -n irssiuser",
    )  # fmt: skip
    try:
        yield tmux
    finally:
        tmux.run("kill-server")


def test_irssi_and_nc_share_a_room(
    chat_server: Callable[..., Any], irssi: Tmux, spawn: Any, tool: Any, poll: Any
) -> None:
    chat = chat_server()
    host, port = chat.address
    irssi.wait_for(r"\[\(status\)\]|\[1:")
    # irssi paces its own commands (2.2 s apart by default); the test need not wait.
    irssi.keys("/set cmd_queue_speed 0")
    irssi.keys(f"/connect {host} {port}")
    poll(lambda: chat.call(lambda: chat.server.core.find("irssiuser")) is not None, timeout=10)
    irssi.keys("/join #lobby")
    # irssi asks MODE #lobby (324/329: "created"), WHO #lobby and MODE #lobby b on
    # join, and calls the channel synced once all three are answered.
    irssi.wait_for(r"Total of 1 nicks \[1 ops")
    irssi.wait_for(r"Channel #lobby created")
    irssi.wait_for(r"Join to #lobby was synced in [0-4] secs")
    nc = spawn([tool("nc"), host, str(port)])
    nc.send(b"/nick ncuser\n")
    nc.expect(rb"you joined #lobby \(2: @irssiuser, ncuser\)")
    irssi.wait_for(r"ncuser \[ncuser@127\.0\.0\.1\] has joined #lobby")
    irssi.keys("hello from irssi")
    nc.expect(rb"\[#lobby\] <irssiuser> hello from irssi\r\n")
    nc.send(b"hello from nc\n")
    irssi.wait_for(r"<.?ncuser> hello from nc")
    irssi.keys("/nick ncuser")
    irssi.keys("/window 1")  # irssi shows server numerics in its status window
    irssi.wait_for(r"Nick ncuser is already in use")


def test_wrong_protocol_lines_over_sockets(
    chat_addr: tuple[str, int], connect_lines: Callable[..., Any]
) -> None:
    early = connect_lines(chat_addr)
    early.send("NICK early\r\nJOIN #x\r\nPRIVMSG #x :hi")
    assert early.expect(r" 451 ") == ":wirekit 451 early :You have not registered"
    assert early.expect(r" 451 ") == ":wirekit 451 early :You have not registered"
    early.register("early2")
    early.send("hello, is this a chat?")
    assert early.expect(r" 421 ") == ":wirekit 421 early2 hello, :Unknown command"
    person = connect_lines(chat_addr)
    person.send("hi all")
    person.expect(r"you joined #lobby")
    person.send("NICK bob")
    assert person.expect(r"^! ").startswith("! this connection is in plain mode")
    person.send("/nick bob")
    person.expect(r"^-- guest-\d+ is now known as bob$")
