"""The blocking client (wirekit.sync) against a real wirekit server on a thread:
send/recv, iteration, context manager, timeouts, send_many, ping, large frames,
TLS and Unix sockets."""

from __future__ import annotations

import asyncio
import hashlib
import os
import socket
import ssl
import threading
import time
from pathlib import Path

import pytest

import wirekit
from wirekit import ConnectionClosed, ErrorCode, Limits, LocalProtocolError, Message
from wirekit.aio import Connection
from wirekit.proto import FrameConnection, Role, State
from wirekit.proto.frames import encode_close

MiB = 1 << 20


async def echo(conn: Connection) -> None:
    async for item in conn:
        if isinstance(item, bytes):
            await conn.send(item)
        else:
            await conn.send_message(item)


def test_send_recv_and_context_manager(start_server, wait_until) -> None:
    ended: list[str] = []

    async def handler(conn: Connection) -> None:
        try:
            await echo(conn)
        except ConnectionClosed as exc:
            ended.append(f"error {exc.code}")
            raise
        ended.append("normal")

    server = start_server(handler)
    with wirekit.sync.connect(str(server.address), timeout=5) as conn:
        assert isinstance(conn, wirekit.sync.Connection)
        for payload in (b"hello", b"", b"\xff" * 5000, b"x" * 20_000):
            conn.send(payload)
            assert conn.recv() == payload
        assert conn.fileno() >= 0
    assert conn.fileno() == -1, "leaving the with block closes the socket"
    conn.close()  # closing twice is harmless
    wait_until(lambda: ended, what="the handler sees the close")
    assert ended == ["normal"], "the client closed with CLOSE, not by dropping the socket"
    wait_until(lambda: server.connections == 0, what="the server forgets the connection")


def test_iteration_ends_on_a_normal_close(start_server) -> None:
    async def handler(conn: Connection) -> None:
        for i in range(5):
            await conn.send(b"line %d" % i)

    server = start_server(handler)
    with wirekit.sync.connect(str(server.address), timeout=5) as conn:
        assert list(conn) == [b"line %d" % i for i in range(5)]
        with pytest.raises(ConnectionClosed) as info:
            conn.recv()
        assert info.value.code == ErrorCode.NORMAL


def test_iteration_raises_when_the_server_fails(start_server) -> None:
    async def handler(conn: Connection) -> None:
        await conn.send(b"first")
        raise RuntimeError("handler bug")

    server = start_server(handler)
    with wirekit.sync.connect(str(server.address), timeout=5) as conn:
        got = []
        with pytest.raises(ConnectionClosed) as info:
            for item in conn:
                got.append(item)
        assert got == [b"first"]
        assert info.value.code == ErrorCode.INTERNAL_ERROR
        assert info.value.reason == "internal server error"


def test_recv_timeout_raises_a_clear_timeout_error(start_server) -> None:
    server = start_server(echo)
    with wirekit.sync.connect(str(server.address), timeout=5) as conn:
        began = time.monotonic()
        with pytest.raises(TimeoutError) as info:
            conn.recv(timeout=0.2)
        assert str(info.value) == "no data from the peer within 0.2 s"
        assert 0.2 <= time.monotonic() - began < 2
        # The connection is still good, and the per-call timeout did not stick.
        assert conn.timeout == 5
        conn.send(b"still there")
        assert conn.recv() == b"still there"

    with wirekit.sync.connect(str(server.address), timeout=0.3) as conn:
        with pytest.raises(TimeoutError, match=r"^no data from the peer within 0\.3 s$"):
            conn.recv()
        with pytest.raises(TimeoutError, match=r"^no data from the peer within 0\.3 s$"):
            conn.recv_batch()


def test_recv_with_a_zero_timeout_polls(start_server, wait_until) -> None:
    server = start_server(echo)
    with wirekit.sync.connect(str(server.address), timeout=5) as conn:
        # Nothing has arrived: a timeout, and the connection stays usable.
        with pytest.raises(TimeoutError, match=r"^no data from the peer within 0 s$"):
            conn.recv(timeout=0)
        with pytest.raises(TimeoutError):
            conn.recv_batch(timeout=0)
        conn.send(b"polled")
        got: list[object] = []

        def poll() -> bool:
            try:
                got.append(conn.recv(timeout=0))
            except TimeoutError:
                return False
            return True

        wait_until(poll, what="the echo is polled")
        assert got == [b"polled"]
        assert conn.timeout == 5
        conn.send(b"still open")
        assert conn.recv() == b"still open"


def test_close_waits_for_the_peer_close_no_longer_than_the_shutdown_grace() -> None:
    """A server that never answers our CLOSE: close() gives up after
    Limits.shutdown_grace (docs/limits.md), not after a fixed time."""
    grace = 0.2
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        port = listener.getsockname()[1]
        after_hello: list[bytes] = []

        def mute_server() -> None:
            peer, _ = listener.accept()
            with peer:
                peer.settimeout(10)
                server = FrameConnection(Role.SERVER)
                while server.state is State.HELLO:
                    server.receive_data(peer.recv(12))
                peer.sendall(server.data_to_send())
                while data := peer.recv(4096):  # reads our CLOSE, never answers it
                    after_hello.append(data)

        thread = threading.Thread(target=mute_server)
        thread.start()
        try:
            conn = wirekit.sync.connect(
                f"127.0.0.1:{port}", timeout=5, limits=Limits(shutdown_grace=grace)
            )
            began = time.monotonic()
            conn.close()
            took = time.monotonic() - began
        finally:
            thread.join(10)
        assert grace <= took < grace + 0.8
        assert conn.fileno() == -1
        assert b"".join(after_hello) == encode_close()


@pytest.mark.parametrize("size", [1000, MiB], ids=["small", "1MiB"])
def test_send_timeout_to_a_server_that_does_not_read(start_server, size: int) -> None:
    async def sluggish(conn: Connection) -> None:
        await conn.recv()
        await asyncio.Event().wait()  # never reads again; cancelled at shutdown

    limits = Limits(read_high_water=64 * 1024, shutdown_grace=0.2)
    server = start_server(sluggish, limits=limits)
    with wirekit.sync.connect(str(server.address), timeout=0.3) as conn:
        chunk = b"s" * size
        began = time.monotonic()
        with pytest.raises(TimeoutError, match=r"^peer did not accept data within 0\.3 s$"):
            for _ in range(256 * MiB // size):
                conn.send(chunk)
        assert time.monotonic() - began < 20


def test_send_many_delivers_every_payload(start_server) -> None:
    payloads = [os.urandom(i % 1500) for i in range(3000)]  # includes empty ones
    digest = hashlib.sha256(b"".join(len(p).to_bytes(4, "big") + p for p in payloads)).digest()

    async def handler(conn: Connection) -> None:
        h = hashlib.sha256()
        n = 0
        while n < len(payloads):
            for item in await conn.recv_batch():
                h.update(len(item).to_bytes(4, "big") + item)  # type: ignore[arg-type]
                n += 1
        await conn.send(b"%d:" % n + h.digest())
        await conn.recv()

    server = start_server(handler)
    with wirekit.sync.connect(str(server.address), timeout=5) as conn:
        conn.send_many(payloads[:1000])
        conn.send_many(iter(payloads[1000:]))
        assert conn.recv() == b"%d:" % len(payloads) + digest


def test_ping_keeps_the_payloads_that_arrive_first(start_server) -> None:
    async def handler(conn: Connection) -> None:
        for i in range(3):
            await conn.send(b"early %d" % i)
        await echo(conn)

    server = start_server(handler)
    with wirekit.sync.connect(str(server.address), timeout=5) as conn:
        rtt = conn.ping()
        assert 0 < rtt < 5
        assert [conn.recv() for _ in range(3)] == [b"early %d" % i for i in range(3)]
        assert conn.ping() > 0
        conn.send(b"after")
        assert conn.recv() == b"after"  # no pong left over in the stream


def test_frames_of_exactly_the_limit_and_one_past(start_server) -> None:
    server = start_server(echo)
    with wirekit.sync.connect(str(server.address), timeout=10) as conn:
        big = os.urandom(MiB)
        conn.send(big)
        assert conn.recv() == big
        with pytest.raises(
            LocalProtocolError, match=f"^frame of {MiB + 1} bytes exceeds limit of {MiB} bytes$"
        ):
            conn.send(big + b"!")
        with pytest.raises(LocalProtocolError, match="exceeds limit"):
            conn.send_many([big + b"!"])
        conn.send(b"still fine")
        assert conn.recv() == b"still fine"

    # A smaller server limit, learnt from its hello.
    small = start_server(echo, limits=Limits(max_frame_size=1000, shutdown_grace=1.0))
    with wirekit.sync.connect(str(small.address), timeout=5) as conn:
        conn.send(b"a" * 1000)
        assert conn.recv() == b"a" * 1000
        with pytest.raises(LocalProtocolError, match="frame of 1001 bytes exceeds limit of 1000"):
            conn.send(b"a" * 1001)


class Greeting(Message, tag="greeting"):
    name: str


def test_typed_messages(start_server) -> None:
    server = start_server(echo, message_types=[Greeting])
    with wirekit.sync.connect(str(server.address), timeout=5, message_types=[Greeting]) as c:
        c.send_message(Greeting("sync"))
        reply = c.recv()
        assert type(reply) is Greeting and reply.name == "sync"


def test_tls(start_server, tls) -> None:
    server = start_server(echo, "tls://127.0.0.1:0", ssl=tls.server_context())
    addr = f"tls://127.0.0.1:{server.address.port}"
    with wirekit.sync.connect(addr, timeout=5, ssl=tls.client_context()) as conn:
        conn.send(b"private")
        assert conn.recv() == b"private"
        big = os.urandom(256 * 1024)
        conn.send(big)
        assert conn.recv() == big
        assert conn.ping() > 0
    # ssl= alone turns TLS on for a plain address too, checked against server_hostname.
    with wirekit.sync.connect(
        f"127.0.0.1:{server.address.port}",
        timeout=5,
        ssl=tls.client_context(),
        server_hostname="localhost",
    ) as conn:
        conn.send(b"by name")
        assert conn.recv() == b"by name"
    with pytest.raises(wirekit.ConnectError, match="certificate verify failed"):
        wirekit.sync.connect(addr, timeout=5, ssl=ssl.create_default_context())


def test_unix_socket(start_server, tmp_path: Path) -> None:
    path = tmp_path / "sync.sock"
    start_server(echo, f"unix:{path}")
    with wirekit.sync.connect(f"unix:{path}", timeout=5) as conn:
        conn.send(b"local")
        assert conn.recv() == b"local"


def test_many_threads_with_their_own_connections(start_server) -> None:
    server = start_server(echo)
    errors: list[BaseException] = []

    def worker(n: int) -> None:
        try:
            with wirekit.sync.connect(str(server.address), timeout=5) as conn:
                for i in range(50):
                    conn.send(b"%d/%d" % (n, i))
                    assert conn.recv() == b"%d/%d" % (n, i)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(20)
    assert not errors
