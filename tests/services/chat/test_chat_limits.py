"""Limits over real sockets: send queue, flood control, timeouts, client limit, line limit."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest


def irc_user(
    connect_lines: Callable[..., Any], address: tuple[str, int], nick: str, *rooms: str
) -> Any:
    client = connect_lines(address)
    client.register(nick)
    for room in rooms:
        client.send(f"JOIN {room}")
        client.expect(rf" 366 {nick} {room} ")
    return client


def test_client_that_never_reads_is_dropped_and_slows_no_one(
    chat_server: Callable[..., Any], connect_lines: Callable[..., Any], poll: Any
) -> None:
    # Flood control (a high rate) keeps any one loop turn's output small, so the
    # reader, which reads all the time, stays far below the limit.
    chat = chat_server(flood_rate=4000, flood_burst=100, sendq=128 * 1024)
    sleeper = socket.socket()
    sleeper.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # fills fast
    sleeper.connect(chat.address)
    sleeper.sendall(b"NICK sleeper\r\nUSER s 0 * :s\r\nJOIN #flood\r\n")
    reader = irc_user(connect_lines, chat.address, "reader", "#flood")
    flooder = irc_user(connect_lines, chat.address, "flooder", "#flood")
    poll(lambda: chat.call(lambda: len(chat.server.core.rooms["#flood"].members)) == 3)
    count = 4000
    text = "y" * 300
    data = b"".join(f"PRIVMSG #flood :{i} {text}\r\n".encode() for i in range(count))
    # Send from a thread: this one must keep reading for the reader meanwhile.
    sending = threading.Thread(target=flooder.sock.sendall, args=(data,))
    started = time.monotonic()
    sending.start()
    reader.expect(r"QUIT :Excess send queue \(\d+ bytes > 131072\)", timeout=10)
    got = [
        int(line.split(":", 2)[2].split(" ")[0])
        for line in reader.lines[: reader.seen]
        if "PRIVMSG #flood" in line
    ]
    while len(got) < count:
        line = reader.expect(r"PRIVMSG #flood", timeout=10)
        got.append(int(line.split(":", 2)[2].split(" ")[0]))
    sending.join(10)
    assert got == list(range(count))  # every line, in order
    assert not reader.closed
    assert time.monotonic() - started < 10
    assert chat.call(lambda: chat.server.core.find("sleeper")) is None
    sleeper.close()


def test_flood_control_delays_and_never_drops(
    chat_server: Callable[..., Any], connect_lines: Callable[..., Any]
) -> None:
    chat = chat_server(flood_rate=20, flood_burst=5)
    reader = irc_user(connect_lines, chat.address, "reader", "#f")
    sender = irc_user(connect_lines, chat.address, "sender", "#f")
    time.sleep(0.3)  # let the bucket refill after registering (a rate, not a wait for a condition)
    started = time.monotonic()
    sender.sock.sendall(b"".join(f"PRIVMSG #f :n{i}\r\n".encode() for i in range(15)))
    for i in range(15):
        reader.expect(rf"PRIVMSG #f :?n{i}$")
    elapsed = time.monotonic() - started
    # 5 at once, then 10 more at 20 per second: about 0.5 s, and nothing lost.
    assert 0.4 <= elapsed < 3, elapsed


def test_nick_then_nothing_is_closed_after_the_registration_timeout(
    chat_server: Callable[..., Any], connect_lines: Callable[..., Any]
) -> None:
    chat = chat_server(register_timeout=0.3)
    lazy = connect_lines(chat.address)
    lazy.send("NICK lazy")
    started = time.monotonic()
    lines = lazy.wait_closed()
    assert lines[-1] == "ERROR :Closing link: lazy[127.0.0.1] (registration timed out after 0.3 s)"
    assert time.monotonic() - started >= 0.25
    assert chat.call(lambda: chat.server.core.users) == {}


def test_ping_timeout_closes_dead_clients_only(
    chat_server: Callable[..., Any], connect_lines: Callable[..., Any]
) -> None:
    chat = chat_server(ping_interval=0.2, ping_timeout=0.3)
    dead = irc_user(connect_lines, chat.address, "dead", "#p")
    alive = irc_user(connect_lines, chat.address, "alive", "#p")
    deadline = time.monotonic() + 5
    while not dead.closed and time.monotonic() < deadline:
        alive.expect(r"^(PING wirekit|:dead!\S+ QUIT)")
        if "QUIT" in alive.lines[alive.seen - 1]:
            break
        alive.send("PONG wirekit")
    assert "Ping timeout" in alive.lines[alive.seen - 1]
    assert dead.wait_closed()[-1].startswith("ERROR :Closing link: dead[127.0.0.1] (Ping timeout:")
    assert any(line == "PING wirekit" for line in dead.lines)
    assert not alive.closed


def test_irc_line_at_512_bytes_and_past(
    chat_addr: tuple[str, int], connect_lines: Callable[..., Any]
) -> None:
    sender = irc_user(connect_lines, chat_addr, "s", "#l")
    reader = irc_user(connect_lines, chat_addr, "r", "#l")
    head = "PRIVMSG #l :"
    text = "z" * (510 - len(head))
    sender.send(head + text)  # 512 bytes with CRLF
    # Relayed with the sender's prefix in front: cut to 512 bytes, as IRC servers do.
    relayed = reader.expect(r"PRIVMSG #l")
    assert len(relayed) == 510 and relayed.startswith(":s!~u@127.0.0.1 PRIVMSG #l zzz")
    sender.send(head + text + "z")
    assert sender.expect(r" 417 ") == ":wirekit 417 s :Input line was too long (limit 512 bytes)"
    sender.send("PRIVMSG #l :ok")
    assert reader.expect(r"PRIVMSG #l") == ":s!~u@127.0.0.1 PRIVMSG #l ok"


def test_client_limit_at_and_past(
    chat_server: Callable[..., Any], connect_lines: Callable[..., Any], poll: Any
) -> None:
    chat = chat_server(max_clients=20)
    clients = [connect_lines(chat.address) for _ in range(20)]
    for client in clients:
        client.expect(r"NOTICE \* :\*\*\* wirekit chat")
    extra = connect_lines(chat.address)
    assert extra.wait_closed() == [
        "ERROR :Closing link: wirekit: server holds 20 connections, its limit"
    ]
    clients[-1].register("last")  # the ones inside are served as before
    clients[0].close()
    poll(lambda: chat.call(lambda: chat.server.raw.admission.open) == 19)
    again = connect_lines(chat.address)
    again.expect(r"NOTICE \* :\*\*\* wirekit chat")


SERVER = """
import asyncio, sys
from wirekit.aio import loop
from wirekit.services.chat import ChatConfig, start_chat

async def main():
    server = await start_chat(["127.0.0.1:0"], config=ChatConfig(max_clients=10_000))
    print(server.addresses[0].port, flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
    await server.close(grace=0)

loop.run(main())
"""


def test_eleven_thousand_connections_against_ten_thousand(tmp_path: Any) -> None:
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard < 11_100:
        pytest.skip(f"needs 11,100 file descriptors, the hard limit is {hard}")
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    proc = subprocess.Popen(
        [sys.executable, "-c", SERVER],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    socks: list[socket.socket] = []
    try:
        assert proc.stdout is not None
        port = int(proc.stdout.readline())
        for _ in range(11_000):
            sock = socket.socket()
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            sock.connect(("127.0.0.1", port))
            socks.append(sock)
        refused = b"ERROR :Closing link: wirekit: server holds 10000 connections, its limit\r\n"
        for sock in socks[10_000:]:
            sock.settimeout(10)
            data = b""
            while chunk := sock.recv(4096):
                data += chunk
            assert data == refused
        first = socks[0]
        first.settimeout(10)
        first.sendall(b"hello\r\n")
        data = b""
        while b"you joined #lobby" not in data:
            data += first.recv(65536)
    finally:
        for sock in socks:
            sock.close()
        proc.communicate(b"", timeout=30)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_lines_held_by_flood_control_survive_the_senders_eof(
    chat_server: Callable[..., Any], connect_lines: Callable[..., Any]
) -> None:
    chat = chat_server(flood_rate=50, flood_burst=2)
    reader = irc_user(connect_lines, chat.address, "reader", "#e")
    with socket.create_connection(chat.address, timeout=5) as sender:
        lines = [b"NICK sender", b"USER s 0 * :s", b"JOIN #e"]
        lines += [f"PRIVMSG #e :last words {i}".encode() for i in range(10)]
        sender.sendall(b"\r\n".join(lines) + b"\r\nQUIT :done")  # the last line has no newline
        sender.shutdown(socket.SHUT_WR)
        for i in range(10):
            reader.expect(rf"PRIVMSG #e :last words {i}$")
        assert reader.expect(r"QUIT") == ":sender!~s@127.0.0.1 QUIT :Quit: done"
        data = b""
        while chunk := sender.recv(65536):
            data += chunk
        assert data.endswith(b"ERROR :Closing link: sender[127.0.0.1] (Quit: done)\r\n")
