"""RawServer's connection limits, at the limit and one past it: total connections,
connections per client address, the idle timeout, and the memory a peer that
sends but never reads can make the server hold."""

from __future__ import annotations

import hashlib
import select
import socket
import subprocess
from collections.abc import Iterator
from contextlib import ExitStack
from typing import Any

import pytest

from wirekit.addr import Address
from wirekit.limits import Limits
from wirekit.services.classic import ClassicOptions, echo_server


def _echo(loop_thread: Any, limits: Limits, *addresses: str) -> tuple[Any, list[Address]]:
    return loop_thread.serve(lambda: echo_server(ClassicOptions(), limits=limits), *addresses)


def _connect(addr: Address, source: str = "127.0.0.1") -> socket.socket:
    if addr.is_unix:
        sock = socket.socket(socket.AF_UNIX)
        sock.settimeout(5)
        sock.connect(addr.path)
        return sock
    return socket.create_connection((addr.host, addr.port), timeout=5, source_address=(source, 0))


def _assert_echoes(sock: socket.socket, reader: Any, text: bytes = b"ping\n") -> None:
    sock.sendall(text)
    assert reader.until(sock, lambda data: len(data) >= len(text)) == text


@pytest.fixture
def stack() -> Iterator[ExitStack]:
    with ExitStack() as sockets:
        yield sockets


def test_max_connections_at_and_past(
    loop_thread: Any, reader: Any, poll: Any, stack: ExitStack
) -> None:
    server, (addr,) = _echo(loop_thread, Limits(max_connections=3), ":0")
    held = [stack.enter_context(_connect(addr)) for _ in range(3)]
    for sock in held:  # at the limit: every one is served
        _assert_echoes(sock, reader)
    assert loop_thread.call(lambda: server.admission.open) == 3

    with _connect(addr) as refused:  # one past: a line, then the server closes
        assert reader.all(refused) == b"wirekit: server holds 3 connections, its limit; closing\r\n"
    for sock in held:  # the refusal did not disturb the others
        _assert_echoes(sock, reader, b"still here\n")

    held.pop().close()  # one leaves: the next one is let in
    poll(lambda: loop_thread.call(lambda: server.admission.open) == 2, what="the close")
    with _connect(addr) as newcomer:
        _assert_echoes(newcomer, reader)


def test_max_connections_counts_every_listener(
    loop_thread: Any, reader: Any, tmp_path: Any, stack: ExitStack
) -> None:
    _, (tcp, unix) = _echo(
        loop_thread, Limits(max_connections=2), ":0", f"unix:{tmp_path / 'e.sock'}"
    )
    _assert_echoes(stack.enter_context(_connect(tcp)), reader)
    _assert_echoes(stack.enter_context(_connect(unix)), reader)
    with _connect(unix) as refused:
        assert reader.all(refused) == b"wirekit: server holds 2 connections, its limit; closing\r\n"


def test_max_connections_per_ip_at_and_past(
    loop_thread: Any, reader: Any, poll: Any, stack: ExitStack
) -> None:
    server, (addr,) = _echo(loop_thread, Limits(max_connections_per_ip=2), ":0")
    mine = [stack.enter_context(_connect(addr, "127.0.0.1")) for _ in range(2)]
    for sock in mine:
        _assert_echoes(sock, reader)
    with _connect(addr, "127.0.0.1") as refused:
        assert reader.all(refused) == (
            b"wirekit: 2 connections from 127.0.0.1 reach the limit of 2 per address; closing\r\n"
        )
    # Another address on the loopback network still gets in, twice.
    for _ in range(2):
        _assert_echoes(stack.enter_context(_connect(addr, "127.0.0.2")), reader)
    with _connect(addr, "127.0.0.2") as refused:
        assert b"from 127.0.0.2 reach the limit of 2" in reader.all(refused)
    # When one of mine closes, I may connect again.
    mine.pop().close()
    poll(lambda: loop_thread.call(lambda: server.admission.open) == 3, what="the close")
    _assert_echoes(stack.enter_context(_connect(addr, "127.0.0.1")), reader)


def test_idle_timeout_closes_a_silent_connection(
    any_loop_thread: Any, reader: Any, stack: ExitStack
) -> None:
    _, (addr,) = _echo(any_loop_thread, Limits(idle_timeout=0.4), ":0")
    silent = stack.enter_context(_connect(addr))
    chatty = stack.enter_context(_connect(addr))
    # The chatty one talks every 0.1 s for longer than the timeout.
    for _ in range(8):
        _assert_echoes(chatty, reader)
        ready, _, _ = select.select([silent], [], [], 0.1)
        if ready:
            break
    assert reader.all(silent, timeout=5) == b"wirekit: idle for 0.4 s; closing\r\n"
    _assert_echoes(chatty, reader, b"not idle\n")


def _flood(sock: socket.socket, cap: int, digest: Any) -> int:
    """Send until the peer stops taking bytes for 0.5 s (or ``cap`` bytes); return the count."""
    chunk = bytes(range(256)) * 256  # 64 KiB
    sent = 0
    sock.setblocking(False)
    while sent < cap:
        _, writable, _ = select.select([], [sock], [], 0.5)
        if not writable:
            return sent
        try:
            n = sock.send(chunk)
        except BlockingIOError:
            continue
        except (ConnectionResetError, BrokenPipeError):
            return sent  # the server dropped us
        digest.update(chunk[:n])
        sent += n
    return sent


def _write_buffers(server: Any) -> list[tuple[int, bool]]:
    return [(s.transport.get_write_buffer_size(), s._write_paused) for s in server.streams]


def test_peer_that_never_reads_cannot_grow_server_memory(any_loop_thread: Any, poll: Any) -> None:
    high_water = 64 * 1024
    cap = 512 * 1024 * 1024
    server, (addr,) = _echo(any_loop_thread, Limits(write_high_water=high_water), ":0")
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)  # before connect
    sock.connect((addr.host, addr.port))
    with sock:
        sent_digest = hashlib.sha256()
        sent = _flood(sock, cap, sent_digest)
        assert sent < cap, "the server kept reading from a peer that does not read"
        ((buffered, paused),) = any_loop_thread.call(lambda: _write_buffers(server))
        assert paused, "reading was not paused"
        # What the server holds is bounded by the high-water mark plus one read,
        # however much the peer pushed into the kernel's buffers.
        assert buffered <= high_water + 512 * 1024 < sent

        # Reading again lets everything through, in order.
        sock.setblocking(True)
        sock.shutdown(socket.SHUT_WR)
        got_digest, got = hashlib.sha256(), 0
        sock.settimeout(10)
        while chunk := sock.recv(1 << 20):
            got_digest.update(chunk)
            got += len(chunk)
    assert got == sent
    assert got_digest.hexdigest() == sent_digest.hexdigest()


def test_idle_timeout_also_drops_a_peer_that_never_reads(any_loop_thread: Any, poll: Any) -> None:
    """Closing politely waits for the peer to read its buffer; a peer that never
    reads must still be dropped, or it holds its slot (and memory) for ever."""
    server, (addr,) = _echo(
        any_loop_thread, Limits(idle_timeout=0.3, write_high_water=64 * 1024), ":0"
    )
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
    sock.connect((addr.host, addr.port))
    with sock:
        _flood(sock, 512 * 1024 * 1024, hashlib.sha256())
        poll(
            lambda: any_loop_thread.call(lambda: not server.streams and server.admission.open == 0),
            timeout=5,
            what="the idle peer to be dropped",
        )
        # The peer learns it: its connection was reset (or, at best, ended).
        sock.setblocking(True)
        sock.settimeout(5)
        with pytest.raises((ConnectionResetError, BrokenPipeError)):
            while sock.recv(1 << 20):
                pass
            sock.sendall(b"anyone there?")


def _listen_backlog(ss: str, *query: str) -> int:
    """The backlog of a listening socket as the kernel holds it (ss's Send-Q)."""
    out = subprocess.run([ss, "-lH", *query], capture_output=True, text=True, timeout=10).stdout
    fields = out.split()
    assert "LISTEN" in fields, out
    return int(fields[fields.index("LISTEN") + 2])  # State, Recv-Q, Send-Q


def test_accept_backlog_is_small_on_the_stdlib_loop(
    any_loop_thread: Any, tmp_path: Any, tool: Any
) -> None:
    """The stdlib loop calls accept() up to `backlog` times per wakeup and logs a
    traceback for each EMFILE: 100 there; uvloop handles EMFILE and gets 4096."""
    from wirekit.aio.listening import accept_backlog

    ss = tool("ss")
    path = tmp_path / "e.sock"
    _, (tcp, _unix) = _echo(any_loop_thread, Limits(), ":0", f"unix:{path}")
    uvloop = type(any_loop_thread.loop).__module__.startswith("uvloop")
    expected = 4096 if uvloop else 100
    assert accept_backlog(any_loop_thread.loop) == expected
    assert _listen_backlog(ss, "-tn", f"sport = :{tcp.port}") == expected
    assert _listen_backlog(ss, "-x", "src", str(path)) == expected
