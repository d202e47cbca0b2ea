"""``wirekit chat`` against real servers: ngircd (Debian) and wirekit's own chat
server, a raw-socket IRC peer on the other side, and irssi-style use in tmux.

Servers listen on 127.0.0.1 only. A server that is not installed (or, for
wirekit's, not built yet) skips its tests with the reason.
"""

from __future__ import annotations

import contextlib
import os
import re
import shlex
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from wirekit.addr import parse_address
from wirekit.errors import WirekitError
from wirekit.services.chat.terminal import ChatOptions, run_chat

WAIT = 10.0
NGIRCD = "/usr/sbin/ngircd"


def chat_argv(*args: str) -> list[str]:
    return [sys.executable, "-m", "wirekit", "chat", *args]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_connectable(port: int, proc: subprocess.Popen[bytes], what: str) -> None:
    deadline = time.monotonic() + WAIT
    while True:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.5):
            return
        if proc.poll() is not None:
            raise AssertionError(f"{what} exited with code {proc.returncode}")
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not listening on port {port} within {WAIT} s")
        time.sleep(0.02)


@dataclass
class ChatServer:
    name: str
    port: int


def _start_ngircd(tmp: Path) -> tuple[subprocess.Popen[bytes], int]:
    if not os.path.exists(NGIRCD):
        pytest.skip("ngircd is not installed (Debian package ngircd)")
    port = _free_port()
    conf = tmp / "ngircd.conf"
    # MaxPenaltyTime = 0: no flood penalty, so scripted lines are not delayed by seconds.
    conf.write_text(
        f"[Global]\nName = irc.test.local\nInfo = wirekit tests\nListen = 127.0.0.1\n"
        f"Ports = {port}\nMotdPhrase = test\n[Limits]\nMaxConnectionsIP = 0\n"
        "MaxPenaltyTime = 0\n[Options]\nDNS = no\nIdent = no\nPAM = no\n"
    )
    proc = subprocess.Popen(
        [NGIRCD, "--nodaemon", "--config", str(conf)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    _wait_connectable(port, proc, "ngircd")
    return proc, port


@pytest.fixture(scope="module")
def ngircd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    """An ngircd for the whole module; yields its port."""
    proc, port = _start_ngircd(tmp_path_factory.mktemp("ngircd"))
    try:
        yield port
    finally:
        proc.terminate()
        try:
            proc.wait(WAIT)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture(params=["ngircd", "wirekit"])
def server(request: pytest.FixtureRequest) -> ChatServer:
    """Each test runs against ngircd and against wirekit's chat server (the
    ``chat_server`` fixture of this directory's conftest, default settings)."""
    if request.param == "ngircd":
        return ChatServer("ngircd", request.getfixturevalue("ngircd"))
    try:
        start = request.getfixturevalue("chat_server")
    except pytest.FixtureLookupError:
        pytest.skip("the wirekit chat server fixture is not there yet")
    return ChatServer("wirekit", start().address[1])


class Peer:
    """A raw-socket IRC user on the other side of the conversation."""

    def __init__(self, port: int, nick: str, room: str | None = None) -> None:
        self.nick = nick
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=WAIT)
        self.buf = b""
        self.send(f"NICK {nick}", f"USER {nick} 0 * :test peer")
        self.expect(rb" 001 ")
        if room:
            self.send(f"JOIN {room}")
            self.expect(rb" 366 ")

    def send(self, *lines: str | bytes) -> None:
        data = b"".join((ln.encode() if isinstance(ln, str) else ln) + b"\r\n" for ln in lines)
        self.sock.sendall(data)

    def expect(self, pattern: bytes, timeout: float = WAIT) -> re.Match[bytes]:
        """Read until ``pattern`` matches; consume up to the end of the match."""
        deadline = time.monotonic() + timeout
        while not (found := re.search(pattern, self.buf)):
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"{self.nick} never got {pattern!r}: {self.buf[-400:]!r}")
            self.sock.settimeout(left)
            with contextlib.suppress(TimeoutError):
                chunk = self.sock.recv(65536)
                if not chunk:
                    raise AssertionError(f"{self.nick}: closed; got {self.buf[-400:]!r}")
                self.buf += chunk
                for token in re.findall(rb"^PING :?(\S+)", self.buf, re.MULTILINE):
                    self.send(b"PONG :" + token)
        self.buf = self.buf[found.end() :]
        return found

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.send("QUIT")
        self.sock.close()


@pytest.fixture
def peers() -> Iterator[Callable[..., Peer]]:
    made: list[Peer] = []

    def make(port: int, nick: str, room: str | None = None) -> Peer:
        made.append(Peer(port, nick, room))
        return made[-1]

    yield make
    for peer in made:
        peer.close()


def _unique(stem: str) -> str:
    """Nicks and rooms unique per test (the server lives for the whole module)."""
    _unique.count = getattr(_unique, "count", 0) + 1  # type: ignore[attr-defined]
    return f"{stem}{_unique.count}"  # type: ignore[attr-defined]


# -- scripts (stdin not a terminal) ------------------------------------------------------


def test_script_joins_talks_and_quits_at_end_of_input(
    server: ChatServer, peers: Callable[..., Peer], spawn: Callable[..., Any]
) -> None:
    room, nick = "#" + _unique("room"), _unique("script")
    peer = peers(server.port, _unique("peer"), room)
    session = spawn(chat_argv(f"127.0.0.1:{server.port}", "--nick", nick))
    session.send(f"/join {room}\nhello from a script\n/me waves\n/msg {peer.nick} psst\n".encode())
    session.close_stdin()
    peer.expect(rf":{nick}!\S+ PRIVMSG {room} :hello from a script\r\n".encode())
    peer.expect(rf":{nick}!\S+ PRIVMSG {room} :\x01ACTION waves\x01\r\n".encode())
    peer.expect(rf":{nick}!\S+ PRIVMSG {peer.nick} :?psst\r\n".encode())
    peer.expect(rf":{nick}!\S+ QUIT".encode())
    assert session.wait(WAIT) == 0, session.stderr_text
    assert session.stderr_text == ""
    out = bytes(session.out).decode()
    assert f"[{room}] <{nick}> hello from a script" in out
    assert f"[{room}] * {nick} waves" in out


def test_taken_nick_gets_a_suffix_and_still_talks(
    server: ChatServer, peers: Callable[..., Peer], spawn: Callable[..., Any]
) -> None:
    room, nick = "#" + _unique("room"), _unique("taken")
    peer = peers(server.port, nick, room)
    session = spawn(chat_argv(f"127.0.0.1:{server.port}", "--nick", nick, "--room", room))
    session.send(b"still me\n")
    session.close_stdin()
    peer.expect(rf":{nick}_!\S+ PRIVMSG {room} :still me\r\n".encode())
    assert session.wait(WAIT) == 0, session.stderr_text


def test_incoming_messages_and_room_replies_are_shown_with_escapes_visible(
    server: ChatServer, peers: Callable[..., Peer], spawn: Callable[..., Any]
) -> None:
    room, nick = "#" + _unique("room"), _unique("reader")
    peer = peers(server.port, _unique("peer"), room)
    session = spawn(chat_argv(f"127.0.0.1:{server.port}", "--nick", nick, "--room", room))
    session.expect(rf"\* you joined {room}\n".encode())
    peer.send(f"PRIVMSG {room} :plain hello", f"PRIVMSG {room} :\x1b]0;pwned\x07\x1b[2Jgotcha")
    session.expect(rf"\[{room}\] <{peer.nick}> plain hello\n".encode())
    session.expect(rb"gotcha\n")
    session.send(b"/who\n")
    session.expect(rf"\[{room}\] 2 here: .*{peer.nick}".encode())
    session.close_stdin()
    assert session.wait(WAIT) == 0, session.stderr_text
    out = bytes(session.out)
    assert b"\x1b" not in out and b"\x07" not in out
    if server.name == "ngircd":  # ngircd relays the escapes; the client shows them escaped
        assert rb"\x1b]0;pwned\x07\x1b[2Jgotcha" in out


# -- against a scripted server: PING, ERROR, exit codes ------------------------------------


class OneShotServer:
    """Accepts one client and plays ``script(conn)`` with it in a thread."""

    def __init__(self, script: Callable[[socket.socket], None]) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._serve, args=(script,), daemon=True)
        self.thread.start()

    def _serve(self, script: Callable[[socket.socket], None]) -> None:
        self.listener.settimeout(WAIT)
        try:
            conn, _ = self.listener.accept()
            with conn:
                conn.settimeout(WAIT)
                script(conn)
        except BaseException as exc:  # reported by the test
            self.error = exc

    def join(self) -> None:
        self.thread.join(WAIT)
        self.listener.close()
        if self.error is not None:
            raise self.error


def _read_until(conn: socket.socket, marker: bytes) -> bytes:
    data = b""
    while marker not in data:
        chunk = conn.recv(4096)
        if not chunk:
            raise AssertionError(f"closed before {marker!r}; got {data!r}")
        data += chunk
    return data


def test_ping_is_answered_and_a_server_error_ends_with_exit_1(spawn: Callable[..., Any]) -> None:
    def script(conn: socket.socket) -> None:
        hello = _read_until(conn, b"USER ")
        assert hello.startswith(b"NICK pinged\r\n")
        conn.sendall(b"PING :token-123\r\n")
        assert b"PONG token-123\r\n" in _read_until(conn, b"token-123\r\n")
        conn.sendall(b":srv 001 pinged :Welcome\r\nERROR :Closing link: go away\r\n")

    fake = OneShotServer(script)
    session = spawn(chat_argv(f"127.0.0.1:{fake.port}", "--nick", "pinged"))
    assert session.wait(WAIT) == 1
    fake.join()
    assert session.stderr_text == "wirekit: the server closed the connection\n"
    assert b"! the server closed the connection: Closing link: go away\n" in bytes(session.out)


def test_refused_connection_is_one_line_and_exit_1(spawn: Callable[..., Any]) -> None:
    port = _free_port()
    session = spawn(chat_argv(f"127.0.0.1:{port}", "--nick", "nobody"), stdin=subprocess.DEVNULL)
    assert session.wait(WAIT) == 1
    assert re.fullmatch(
        rf"wirekit: cannot connect to 127\.0\.0\.1:{port}: connection refused.*\n",
        session.stderr_text,
    )


@pytest.mark.parametrize("flag", [["--nick", "9lives"], ["--room", "#bad,room"]])
def test_bad_nick_or_room_is_a_usage_error(flag: list[str], spawn: Callable[..., Any]) -> None:
    session = spawn(chat_argv("127.0.0.1:1", *flag), stdin=subprocess.DEVNULL)
    assert session.wait(WAIT) == 2
    assert "is not a valid" in session.stderr_text


def _drain_until_closed(conn: socket.socket) -> bytes:
    data = b""
    while chunk := conn.recv(4096):
        data += chunk
    return data


def _options(nick: str, **timeouts: float) -> ChatOptions:
    return ChatOptions(nick=nick, **timeouts)


def _empty_input() -> int:
    """A descriptor that gives EOF at once, as stdin would from an empty file."""
    read_end, write_end = os.pipe()
    os.close(write_end)
    return read_end


def test_no_welcome_within_the_register_timeout_is_an_error(arun: Any) -> None:
    def script(conn: socket.socket) -> None:
        _drain_until_closed(conn)  # reads NICK/USER, never answers

    fake = OneShotServer(script)
    addr = parse_address(f"127.0.0.1:{fake.port}")
    stdin = _empty_input()
    start = time.monotonic()
    try:
        with pytest.raises(WirekitError, match=r"^no IRC welcome within 0\.3 s"):
            arun(run_chat(addr, _options("slow", register_timeout=0.3), input_fd=stdin))
    finally:
        os.close(stdin)
    assert 0.3 <= time.monotonic() - start < 3
    fake.join()


def test_a_welcome_within_the_register_timeout_is_enough(arun: Any) -> None:
    def script(conn: socket.socket) -> None:
        _read_until(conn, b"USER ")
        conn.sendall(b":srv 001 quick :Welcome\r\n")
        assert b"QUIT" in _read_until(conn, b"QUIT")

    fake = OneShotServer(script)
    addr = parse_address(f"127.0.0.1:{fake.port}")
    stdin = _empty_input()
    try:
        options = _options("quick", register_timeout=0.3, quit_wait=0.2)
        assert arun(run_chat(addr, options, input_fd=stdin, write=lambda _: None)) == 0
    finally:
        os.close(stdin)
    fake.join()


@pytest.mark.parametrize("server_closes", [True, False])
def test_after_quit_the_client_waits_for_the_close_at_most_quit_wait(
    server_closes: bool, arun: Any
) -> None:
    def script(conn: socket.socket) -> None:
        _read_until(conn, b"USER ")
        conn.sendall(b":srv 001 leaver :Welcome\r\n")
        assert b"QUIT :bye now\r\n" in _read_until(conn, b"bye now\r\n")
        if server_closes:
            conn.sendall(b"ERROR :Closing link\r\n")
            return
        _drain_until_closed(conn)  # the client has to give up waiting and close

    fake = OneShotServer(script)
    addr = parse_address(f"127.0.0.1:{fake.port}")
    read_end, write_end = os.pipe()
    os.write(write_end, b"/quit bye now\n")
    shown: list[str] = []
    start = time.monotonic()
    try:
        options = _options("leaver", quit_wait=1.0)
        assert arun(run_chat(addr, options, input_fd=read_end, write=shown.append)) == 0
    finally:
        os.close(read_end)
        os.close(write_end)
    took = time.monotonic() - start
    assert (took < 0.9) if server_closes else (1.0 <= took < 4)
    fake.join()
    if server_closes:
        assert "- closing: Closing link\n" in shown


# -- a real terminal: tmux ----------------------------------------------------------------------


class Tmux:
    def __init__(self, name: str) -> None:
        self.base = ["tmux", "-u", "-L", name]

    def __call__(self, *args: str) -> str:
        done = subprocess.run([*self.base, *args], capture_output=True, text=True, timeout=WAIT)
        if done.returncode != 0:
            raise AssertionError(f"tmux {args[0]}: {done.stderr.strip()}")
        return done.stdout

    def screen(self) -> list[str]:
        return [line.rstrip() for line in self("capture-pane", "-p", "-t", "chat").splitlines()]

    def wait_screen(self, check: Callable[[list[str]], bool], what: str) -> list[str]:
        deadline = time.monotonic() + WAIT
        while not check(lines := self.screen()):
            if time.monotonic() > deadline:
                raise AssertionError(f"screen never showed {what}:\n" + "\n".join(lines))
            time.sleep(0.02)
        return lines


def _last(lines: list[str]) -> str:
    return next((line for line in reversed(lines) if line), "")


def test_tmux_input_line_stays_intact_while_a_message_arrives(
    server: ChatServer, peers: Callable[..., Peer]
) -> None:
    if shutil.which("tmux") is None:
        pytest.skip("tmux is not installed (Debian package tmux)")
    room, nick = "#" + _unique("tui"), _unique("tui")
    peer = peers(server.port, _unique("peer"), room)
    tmux = Tmux(f"wirekit-chat-test-{os.getpid()}")
    command = shlex.join(chat_argv(f"127.0.0.1:{server.port}", "--nick", nick, "--room", room))
    env = {**os.environ, "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8"}
    subprocess.run(
        [*tmux.base, "new-session", "-d", "-s", "chat", "-x", "100", "-y", "20", command],
        check=True,
        env=env,
        timeout=WAIT,
    )
    try:
        prompt = f"[{room}] {nick}> "
        tmux.wait_screen(lambda s: f"* you joined {room}" in s, "the join")
        tmux("send-keys", "-t", "chat", "-l", "half typed é")
        tmux.wait_screen(lambda s: _last(s) == prompt + "half typed é", "the typed text")
        peer.send(f"PRIVMSG {room} :a message arrives")
        lines = tmux.wait_screen(
            lambda s: any("a message arrives" in line for line in s), "the message"
        )
        shown = lines.index(f"[{room}] <{peer.nick}> a message arrives")
        assert _last(lines) == prompt + "half typed é"
        assert lines.index(_last(lines)) > shown
        assert lines.count(prompt + "half typed é") == 1
        cursor = int(tmux("display-message", "-p", "-t", "chat", "#{cursor_x}"))
        assert cursor == len(prompt + "half typed é")
        tmux("send-keys", "-t", "chat", "-l", " done")
        tmux("send-keys", "-t", "chat", "Enter")
        peer.expect(rf":{nick}!\S+ PRIVMSG {room} :half typed é done\r\n".encode())
        tmux.wait_screen(lambda s: _last(s) == prompt.rstrip(), "an empty input line")
        tmux("send-keys", "-t", "chat", "C-c")
        peer.expect(rf":{nick}!\S+ QUIT".encode())
    finally:
        subprocess.run([*tmux.base, "kill-server"], capture_output=True, timeout=WAIT)


# -- tls:// to a server no CA vouches for: pinned, as exec -------------------------------------


def _pinned_run(arun: Any, addr: Any, known_hosts: Path, accept_new: bool) -> list[str]:
    read_end, write_end = os.pipe()
    os.write(write_end, b"over tls\n/quit\n")
    os.close(write_end)
    shown: list[str] = []
    options = ChatOptions(
        nick="pinner", accept_new=accept_new, known_hosts=known_hosts, quit_wait=1.0
    )
    try:
        assert arun(run_chat(addr, options, input_fd=read_end, write=shown.append)) == 0
    finally:
        os.close(read_end)
    return shown


def test_tls_to_a_self_signed_server_pins_on_accept_new_then_refuses_a_change(
    arun: Any, chat_server: Callable[..., Any], tmp_path: Path
) -> None:
    from wirekit.errors import AuthenticationFailed
    from wirekit.security import ChangedFingerprint, KnownHosts
    from wirekit.security.tlscert import auto_certificate, load_certificate

    cert, key, fingerprint = auto_certificate(tmp_path / "server")
    context, _ = load_certificate(cert, key)
    server = chat_server(ssl=context, listen=["tls://127.0.0.1:0"])
    addr = parse_address(f"tls://127.0.0.1:{server.address[1]}")
    known = tmp_path / "known_hosts"

    # Unknown and not accepted: refused before a byte is sent, with what to do.
    with pytest.raises(AuthenticationFailed, match="--accept-new") as info:
        _pinned_run(arun, addr, known, accept_new=False)
    assert fingerprint in str(info.value)
    assert not known.exists()

    shown = _pinned_run(arun, addr, known, accept_new=True)
    assert any("#lobby" in line for line in shown), shown
    assert KnownHosts(known).lookup(addr.hostport()) == fingerprint
    _pinned_run(arun, addr, known, accept_new=False)  # pinned: no question now

    # The same HOST:PORT with another certificate: refused, even with --accept-new.
    KnownHosts(known).forget(addr.hostport())
    KnownHosts(known).remember(addr.hostport(), "SHA256:" + "A" * 43)
    with pytest.raises(ChangedFingerprint):
        _pinned_run(arun, addr, known, accept_new=True)
