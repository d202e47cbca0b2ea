"""How the blocking client fails: refused, unknown host, missing socket file,
a silent server, a refusal over a limit, a peer that is not wirekit."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from pathlib import Path

import pytest

import wirekit
from wirekit import ErrorCode, Limits
from wirekit.aio import Connection


async def echo(conn: Connection) -> None:
    async for item in conn:
        await conn.send(item)  # type: ignore[arg-type]


def unused_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_connection_refused() -> None:
    port = unused_port()
    with pytest.raises(wirekit.ConnectError) as info:
        wirekit.sync.connect(f"127.0.0.1:{port}", timeout=5)
    assert str(info.value) == (
        f"cannot connect to 127.0.0.1:{port}: connection refused (is a server listening there?)"
    )


def test_unknown_host() -> None:
    began = time.monotonic()
    with pytest.raises(wirekit.ConnectError) as info:
        wirekit.sync.connect("no-such-host.invalid:7000", timeout=5)
    assert "unknown host 'no-such-host.invalid'" in str(info.value)
    assert time.monotonic() - began < 30


def test_missing_unix_socket_file(tmp_path: Path) -> None:
    with pytest.raises(wirekit.ConnectError, match="no such socket file"):
        wirekit.sync.connect(f"unix:{tmp_path / 'absent.sock'}", timeout=5)


def test_a_server_that_never_answers_the_hello_times_out_as_a_connect_error() -> None:
    with socket.socket() as listener:  # accepts TCP connections, never says a word
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        port = listener.getsockname()[1]
        began = time.monotonic()
        with pytest.raises(wirekit.ConnectError) as info:
            wirekit.sync.connect(f"127.0.0.1:{port}", timeout=0.3)
        assert str(info.value) == f"cannot connect to 127.0.0.1:{port}: no answer within 0.3 s"
        assert 0.3 <= time.monotonic() - began < 3
        # The client closed its socket: the listener reads its hello, then EOF.
        peer, _ = listener.accept()
        with peer:
            peer.settimeout(2)
            data = b""
            while chunk := peer.recv(100):
                data += chunk
        assert data == b"WKIT\x01\x00\x00\x00" + (1 << 20).to_bytes(4, "big")


def test_a_server_over_its_limit_reports_why(start_server, wait_until) -> None:
    server = start_server(echo, limits=Limits(max_connections=1, shutdown_grace=1.0))
    addr = str(server.address)
    with wirekit.sync.connect(addr, timeout=5) as first:
        with pytest.raises(wirekit.BadHello) as info:
            wirekit.sync.connect(addr, timeout=5)
        assert str(info.value).startswith(
            "server refused the connection: server holds 1 connections, its limit"
        )
        first.send(b"unaffected")
        assert first.recv() == b"unaffected"
    wait_until(lambda: server.connections == 0, what="the first connection is released")
    with wirekit.sync.connect(addr, timeout=5) as second:
        second.send(b"my turn")
        assert second.recv() == b"my turn"


def test_a_peer_that_is_not_wirekit_is_a_bad_hello() -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        port = listener.getsockname()[1]

        def talk() -> None:
            peer, _ = listener.accept()
            with peer:
                peer.sendall(b"SSH-2.0-OpenSSH_9.6\r\n")
                peer.recv(100)

        thread = threading.Thread(target=talk)
        thread.start()
        try:
            with pytest.raises(wirekit.BadHello) as info:
                wirekit.sync.connect(f"127.0.0.1:{port}", timeout=5)
            assert info.value.code == ErrorCode.BAD_MAGIC
            assert "peer is not a wirekit server: it sent b'SSH-2.0-" in str(info.value)
        finally:
            thread.join(5)


def test_an_echo_service_is_a_bad_hello_not_a_server() -> None:
    """protocol.md §2.3 step 5: our own hello echoed back is not a server hello."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        port = listener.getsockname()[1]
        echoed: list[bytes] = []

        def echo_service() -> None:
            peer, _ = listener.accept()
            with peer, contextlib.suppress(OSError):
                peer.settimeout(5)
                while data := peer.recv(4096):
                    echoed.append(data)
                    peer.sendall(data)

        thread = threading.Thread(target=echo_service)
        thread.start()
        try:
            with pytest.raises(wirekit.BadHello) as info:
                wirekit.sync.connect(f"127.0.0.1:{port}", timeout=5)
            assert str(info.value) == "peer echoed our hello: is this an echo service?"
            assert info.value.code == ErrorCode.PROTOCOL_ERROR
        finally:
            thread.join(5)
        assert b"".join(echoed).startswith(b"WKIT\x01\x00")  # our hello, server flag clear


def test_udp_address_is_refused_for_framed_connections() -> None:
    with pytest.raises(wirekit.AddressError) as info:
        wirekit.sync.connect("udp://127.0.0.1:9", timeout=1)
    assert str(info.value) == (
        "framed connections need tcp, tls or unix, not udp: udp://127.0.0.1:9"
    )
