"""Plain mode over real sockets: nc users and raw sockets in the same rooms."""

from __future__ import annotations

import socket
from collections.abc import Callable
from typing import Any

import pytest

from wirekit.services.chat.server import ChatStream


def lobby_user(connect_lines: Callable[..., Any], address: tuple[str, int], first: str) -> Any:
    client = connect_lines(address)
    client.send(first)
    client.expect(r"^\[#lobby\] -- you joined #lobby")
    return client


def test_nc_user_talks_to_a_socket_user(
    chat_addr: tuple[str, int], connect_lines: Callable[..., Any], spawn: Any, tool: Any
) -> None:
    nc = spawn([tool("nc"), *map(str, chat_addr)])
    nc.send(b"/nick ncuser\n")
    nc.expect(rb"\* you are ncuser; /nick NAME changes it\r\n")
    nc.expect(rb"\[#lobby\] -- you joined #lobby \(1: @ncuser\)\r\n")
    other = lobby_user(connect_lines, chat_addr, "/who")
    nc.expect(rb"\[#lobby\] -- guest-1 joined\r\n")
    other.expect(r"^\* #lobby \(2\): @ncuser, guest-1$")
    nc.send(b"hello from nc\n")
    assert other.expect(r"ncuser") == "[#lobby] <ncuser> hello from nc"
    other.send("hi nc")
    nc.expect(rb"\[#lobby\] <guest-1> hi nc\r\n")
    nc.send(b"/quit see you\n")
    nc.expect(rb"\* bye\r\n")
    nc.close_stdin()  # openbsd nc waits for its stdin even after the server closed
    assert nc.wait() == 0
    other.expect(r"^-- ncuser quit \(Quit: see you\)$")


def test_line_written_in_pieces_arrives_whole(
    chat_server: Callable[..., Any], connect_lines: Callable[..., Any], poll: Any
) -> None:
    chat = chat_server()
    writer = lobby_user(connect_lines, chat.address, "/nick writer")
    reader = lobby_user(connect_lines, chat.address, "/nick reader")
    writer.expect("reader joined")

    def buffered() -> int:
        streams = [s for s in chat.server.raw.streams if isinstance(s, ChatStream)]
        return sum(s.splitter.buffered for s in streams)

    pieces = [b"hel", b"lo, wo", b"rld\r", b"\n"]
    for i, piece in enumerate(pieces[:-1]):
        writer.send(piece)
        want = sum(len(p) for p in pieces[: i + 1])
        poll(lambda want=want: chat.call(buffered) == want, what=f"{want} bytes held")
    writer.send(pieces[-1])
    assert reader.expect(r"<writer>") == "[#lobby] <writer> hello, world"
    writer.send("second")
    reader.expect(r"<writer> second")
    assert [line for line in reader.lines if "<writer>" in line] == [
        "[#lobby] <writer> hello, world",
        "[#lobby] <writer> second",
    ]


def test_escape_sequences_and_bad_utf8_never_reach_a_terminal(
    chat_addr: tuple[str, int], connect_lines: Callable[..., Any]
) -> None:
    sender = lobby_user(connect_lines, chat_addr, "/nick evil")
    reader = lobby_user(connect_lines, chat_addr, "/nick victim")
    sender.send(b"\x1b[2J\x1b[H\x1b]0;pwned\x07\x07bell \x1b[31mred\x1b[0m \x9b31m caf\xe9\r\n")
    line = reader.expect(r"<evil>")
    # A lone C1 CSI byte (0x9b) is invalid UTF-8: it arrives as U+FFFD, harmless.
    assert line == "[#lobby] <evil> bell red \ufffd31m caf\ufffd"
    raw = reader.lines[-1].encode()
    assert not any(b < 0x20 or b == 0x7F for b in raw)


def test_one_mib_line_without_newline_is_dropped_and_bounded(
    chat_server: Callable[..., Any], connect_lines: Callable[..., Any], poll: Any
) -> None:
    chat = chat_server(flood_rate=0)
    sender = lobby_user(connect_lines, chat.address, "/nick big")
    reader = lobby_user(connect_lines, chat.address, "/nick small")
    sender.sock.sendall(b"x" * (1 << 20))
    sender.expect(r"^! line longer than 512 bytes dropped$")

    def held() -> int:
        return max(
            s.splitter.buffered for s in chat.server.raw.streams if isinstance(s, ChatStream)
        )

    assert chat.call(held) <= 511
    sender.send(b"\nstill here\n")
    assert reader.expect(r"<big>") == "[#lobby] <big> still here"
    assert not any("xxx" in line for line in reader.lines)
    assert sum("longer than" in line for line in sender.lines) == 1


def test_plain_line_at_the_limit_and_past_it(
    chat_addr: tuple[str, int], connect_lines: Callable[..., Any]
) -> None:
    sender = lobby_user(connect_lines, chat_addr, "/nick s")
    reader = lobby_user(connect_lines, chat_addr, "/nick r")
    at_limit = "a" * 510  # + CRLF = 512 bytes
    sender.send(at_limit)
    assert reader.expect(r"<s>") == f"[#lobby] <s> {at_limit}"
    sender.send("b" * 511)
    sender.expect(r"^! line longer than 512 bytes dropped$")
    sender.send("after")
    assert reader.expect(r"<s>") == "[#lobby] <s> after"


def test_many_nc_style_clients_share_a_room(
    chat_server: Callable[..., Any], connect_lines: Callable[..., Any]
) -> None:
    chat = chat_server()
    reader = lobby_user(connect_lines, chat.address, "/nick reader")
    count = 150
    clients = []
    for i in range(count):
        sock = socket.create_connection(chat.address, timeout=5)
        sock.sendall(f"/nick n{i}\r\nline from n{i}\r\n".encode())
        clients.append(sock)
    try:
        for i in range(count):
            reader.expect(rf"^\[#lobby\] <n{i}> line from n{i}$", timeout=10)
        assert chat.call(lambda: len(chat.server.core.rooms["#lobby"].members)) == count + 1
    finally:
        for sock in clients:
            sock.close()


def test_join_replays_history(
    chat_server: Callable[..., Any], connect_lines: Callable[..., Any]
) -> None:
    chat = chat_server(history=3)
    talker = lobby_user(connect_lines, chat.address, "/nick talker")
    for i in range(5):
        talker.send(f"message {i}")
    talker.send("/history 1")
    talker.expect(r"message 4$")
    late = connect_lines(chat.address)
    late.send("/nick late")
    late.expect(r"-- last 3 messages:")
    assert [late.expect(r"<talker>").split("<talker> ")[1] for _ in range(3)] == [
        "message 2",
        "message 3",
        "message 4",
    ]
    late.expect(r"-- end of history")


def test_unix_socket_and_ipv6_listeners_share_rooms(
    chat_server: Callable[..., Any], spawn: Any, tool: Any, tmp_path: Any
) -> None:
    if not socket.has_ipv6:
        pytest.skip("no IPv6")
    path = tmp_path / "chat.sock"
    chat = chat_server(listen=[f"unix:{path}", "[::1]:0"])
    nc = spawn([tool("nc"), "-U", str(path)])
    nc.send(b"/nick local\n")
    nc.expect(rb"you joined #lobby \(1: @local\)")
    port = chat.server.addresses[1].port
    with socket.create_connection(("::1", port), timeout=5) as v6:
        v6.sendall(b"NICK six\r\nUSER s 0 * :s\r\nJOIN #lobby\r\nWHO #lobby\r\n")
        data = b""
        while b" 315 " not in data:
            data += v6.recv(65536)
        # "::1" would read as a trailing parameter: hosts starting with ":" get a "0".
        assert b" 352 six #lobby ~s 0::1 wirekit six H :0 s\r\n" in data
        nc.expect(rb"\[#lobby\] -- six joined\r\n")
        nc.send(b"hi six\n")
        while b"hi six" not in data:
            data += v6.recv(65536)
        assert b":local!local@unix PRIVMSG #lobby :hi six\r\n" in data
