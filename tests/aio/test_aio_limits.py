"""Every limit of wirekit.Limits that the asyncio runtime enforces, at the limit
and one past it, over real sockets."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
import time

import pytest

import wirekit
from wirekit import ConnectionClosed, ErrorCode, Limits, LocalProtocolError
from wirekit.aio import Connection
from wirekit.proto import FrameConnection, Role

KiB = 1024
MiB = 1024 * KiB


def hello(max_frame_size: int = MiB) -> bytes:
    return b"WKIT\x01\x00\x00\x00" + max_frame_size.to_bytes(4, "big")


def server_hello(max_frame_size: int = MiB) -> bytes:
    """A server's hello has flag 0x01 set (protocol.md §2.1)."""
    return b"WKIT\x01\x01\x00\x00" + max_frame_size.to_bytes(4, "big")


async def echo(conn: Connection) -> None:
    async for item in conn:
        await conn.send(item)  # type: ignore[arg-type]


async def read_to_eof(reader: asyncio.StreamReader, timeout: float = 5.0) -> bytes:
    async with asyncio.timeout(timeout):
        return await reader.read()


async def read_exactly(reader: asyncio.StreamReader, n: int, timeout: float = 5.0) -> bytes:
    async with asyncio.timeout(timeout):
        return await reader.readexactly(n)


async def nothing_arrives(reader: asyncio.StreamReader, seconds: float) -> None:
    """Assert the server sends nothing (and does not close) for ``seconds``."""
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(seconds):
            await reader.read(1)


async def sock_read(sock: socket.socket, n: int = -1, timeout: float = 5.0) -> bytes:
    """Read ``n`` bytes, or (n=-1) everything until EOF or a reset, from a raw socket.

    A server that closes with our bytes unread resets the connection; what it
    sent before is still readable, which asyncio streams would drop."""
    loop = asyncio.get_running_loop()
    data = bytearray()
    async with asyncio.timeout(timeout):
        while n < 0 or len(data) < n:
            try:
                chunk = await loop.sock_recv(sock, 1 << 20 if n < 0 else n - len(data))
            except ConnectionResetError:
                chunk = b""
            if not chunk:
                assert n < 0, f"connection ended after {len(data)} of {n} bytes"
                break
            data += chunk
    return bytes(data)


def error_frame(code: ErrorCode, reason: str) -> bytes:
    payload = code.to_bytes(2, "big") + reason.encode()
    return struct.pack(">II", len(payload), 4 << 24) + payload


def data_frame(payload: bytes) -> bytes:
    return struct.pack(">II", len(payload), 0) + payload


# -- max_frame_size ------------------------------------------------------------


@pytest.mark.parametrize("limit", [4 * KiB, MiB], ids=["4KiB", "1MiB"])
def test_max_frame_size_of_the_server(arun, limit: int) -> None:
    async def main() -> None:
        async with wirekit.serve(echo, "127.0.0.1:0", limits=Limits(max_frame_size=limit)) as s:
            # A wirekit client learns the limit from the hello and refuses locally.
            async with wirekit.connect(str(s.address)) as conn:
                at_limit = b"m" * limit
                await conn.send(at_limit)
                assert await conn.recv() == at_limit
                with pytest.raises(
                    LocalProtocolError,
                    match=f"^frame of {limit + 1} bytes exceeds limit of {limit} bytes$",
                ):
                    await conn.send(at_limit + b"!")
                await conn.send(b"still open")
                assert await conn.recv() == b"still open"

            # A peer that sends one byte more anyway is refused by the server.
            loop = asyncio.get_running_loop()
            with socket.socket() as sock:
                sock.setblocking(False)
                await loop.sock_connect(sock, ("127.0.0.1", s.address.port))
                await loop.sock_sendall(sock, hello() + data_frame(b"k" * limit))
                reply = server_hello(limit) + data_frame(b"k" * limit)
                assert await sock_read(sock, len(reply)) == reply
                with contextlib.suppress(ConnectionResetError, BrokenPipeError):
                    await loop.sock_sendall(sock, data_frame(b"k" * (limit + 1)))
                assert await sock_read(sock) == error_frame(
                    ErrorCode.FRAME_TOO_LARGE,
                    f"frame of {limit + 1} bytes exceeds limit of {limit} bytes",
                )

    arun(main())


def test_max_frame_size_of_the_client(arun) -> None:
    limit = 4 * KiB
    outcomes: list[object] = []

    async def handler(conn: Connection) -> None:
        await conn.send(b"c" * limit)
        outcomes.append("sent at the limit")
        try:
            await conn.send(b"c" * (limit + 1))
        except LocalProtocolError as exc:
            outcomes.append(str(exc))
        await conn.recv()

    async def main() -> None:
        async with wirekit.serve(handler, "127.0.0.1:0") as server:
            limits = Limits(max_frame_size=limit)
            async with wirekit.connect(str(server.address), limits=limits) as conn:
                assert await conn.recv() == b"c" * limit
                await conn.ping()  # the handler has tried the second send by now
        assert outcomes == [
            "sent at the limit",
            f"frame of {limit + 1} bytes exceeds limit of {limit} bytes",
        ]

    arun(main())


def test_client_refuses_a_frame_over_its_limit(arun) -> None:
    limit = 4 * KiB

    async def main() -> None:
        server_got = asyncio.get_running_loop().create_future()

        async def raw_server(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            assert await read_exactly(reader, 12) == hello(limit)
            # The head of a frame one byte over is enough: its payload is not needed.
            over = struct.pack(">II", limit + 1, 0)
            writer.write(server_hello() + data_frame(b"a" * limit) + over)
            server_got.set_result(await read_to_eof(reader))
            writer.close()

        server = await asyncio.start_server(raw_server, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        async with server:
            conn = await wirekit.connect(f"127.0.0.1:{port}", limits=Limits(max_frame_size=limit))
            assert await conn.recv() == b"a" * limit
            with pytest.raises(wirekit.FrameTooLarge) as info:
                await conn.recv()
            assert info.value.code == ErrorCode.FRAME_TOO_LARGE
            reason = f"frame of {limit + 1} bytes exceeds limit of {limit} bytes"
            assert str(info.value) == reason
            assert await asyncio.wait_for(server_got, 5) == error_frame(
                ErrorCode.FRAME_TOO_LARGE, reason
            )

    arun(main())


# -- max_connections and max_connections_per_ip ---------------------------------


def test_max_connections(arun, until) -> None:
    async def main() -> None:
        limits = Limits(max_connections=3)
        async with wirekit.serve(echo, "127.0.0.1:0", limits=limits) as server:
            addr = str(server.address)
            admitted = [await wirekit.connect(addr) for _ in range(3)]
            for conn in admitted:
                await conn.send(b"in")
                assert await conn.recv() == b"in"
            with pytest.raises(wirekit.BadHello) as info:
                await wirekit.connect(addr)
            assert str(info.value).startswith(
                "server refused the connection: server holds 3 connections, its limit"
            )
            assert server.connections == 3
            # Closing one frees its place.
            await admitted.pop().close()
            await until(lambda: server.connections == 2, what="the server forgets the closed one")
            admitted.append(await wirekit.connect(addr))
            await admitted[-1].send(b"late")
            assert await admitted[-1].recv() == b"late"
            for conn in admitted:
                await conn.close()

    arun(main())


async def raw_client(port: int, source: str) -> socket.socket:
    """A raw connection from ``source`` (any 127.0.0.0/8 address) that sends a hello."""
    sock = socket.socket()
    sock.setblocking(False)
    sock.bind((source, 0))
    loop = asyncio.get_running_loop()
    await loop.sock_connect(sock, ("127.0.0.1", port))
    await loop.sock_sendall(sock, hello())
    return sock


def refusal(source: str) -> bytes:
    return (
        f"wirekit: 2 connections from {source} reach the limit of 2 per address; closing\r\n"
    ).encode()


def test_max_connections_per_ip(arun) -> None:
    try:
        with socket.socket() as probe:
            probe.bind(("127.0.0.2", 0))
    except OSError:
        pytest.skip("127.0.0.2 is not usable as a source address here")

    async def main() -> None:
        limits = Limits(max_connections_per_ip=2)
        async with wirekit.serve(echo, "127.0.0.1:0", limits=limits) as server:
            port = server.address.port
            admitted = []
            try:
                for _ in range(2):
                    admitted.append(await raw_client(port, "127.0.0.1"))
                    assert await sock_read(admitted[-1], 12) == server_hello()
                # The third from 127.0.0.1 is refused with a reason line...
                with await raw_client(port, "127.0.0.1") as third:
                    assert await sock_read(third) == refusal("127.0.0.1")
                # ... which a wirekit client reports.
                with pytest.raises(wirekit.BadHello, match="server refused the connection: 2 c"):
                    await wirekit.connect(f"127.0.0.1:{port}")
                # Another address has its own count.
                for _ in range(2):
                    admitted.append(await raw_client(port, "127.0.0.2"))
                    assert await sock_read(admitted[-1], 12) == server_hello()
                with await raw_client(port, "127.0.0.2") as third:
                    assert await sock_read(third) == refusal("127.0.0.2")
                assert server.connections == 4
            finally:
                for sock in admitted:
                    sock.close()

    arun(main())


# -- handshake_timeout -------------------------------------------------------------


def test_handshake_timeout(arun) -> None:
    timeout = 1.0
    line = b"wirekit: no hello within 1 s; closing\r\n"

    async def main() -> None:
        limits = Limits(handshake_timeout=timeout)
        async with wirekit.serve(echo, "127.0.0.1:0", limits=limits) as server:
            port = server.address.port
            opened = time.monotonic()
            late = await asyncio.open_connection("127.0.0.1", port)
            silent = await asyncio.open_connection("127.0.0.1", port)
            half = await asyncio.open_connection("127.0.0.1", port)
            half[1].write(hello()[:6])  # half a hello does not count

            # Just before the deadline the server is still waiting...
            await nothing_arrives(late[0], 0.7 * timeout)
            # ... and a hello then is fine.
            client = FrameConnection(Role.CLIENT)
            client.send_data(b"just in time")
            late[1].write(client.data_to_send())
            assert await read_exactly(late[0], 12) == server_hello()
            assert await read_exactly(late[0], 8 + 12) == data_frame(b"just in time")

            for reader, writer in (silent, half):
                assert await read_to_eof(reader) == line
                writer.close()
            elapsed = time.monotonic() - opened
            assert 0.9 * timeout <= elapsed < timeout + 1.5

            # The late one is a normal connection and stays open past the timeout.
            await nothing_arrives(late[0], 0.5 * timeout)
            assert server.connections == 1
            late[1].close()

    arun(main())


def test_handshake_timeout_bounds_the_tls_handshake(arun, tls) -> None:
    """Silent peers of a tls:// server are dropped by the handshake timeout
    while the TLS handshake still runs (docs/limits.md), not after the event
    loop's default of 60 s."""
    timeout = 1.0

    async def main() -> None:
        loop = asyncio.get_running_loop()
        limits = Limits(handshake_timeout=timeout)
        async with wirekit.serve(
            echo, "tls://127.0.0.1:0", limits=limits, ssl=tls.server_context()
        ) as server:
            port = server.address.port
            began = time.monotonic()
            silent = []
            try:
                for _ in range(10):
                    sock = socket.socket()
                    sock.setblocking(False)
                    silent.append(sock)
                    await loop.sock_connect(sock, ("127.0.0.1", port))
                # Each is closed without a byte of TLS from the server.
                for sock in silent:
                    assert await sock_read(sock, timeout=timeout + 4) == b""
            finally:
                for sock in silent:
                    sock.close()
            assert time.monotonic() - began < timeout + 3
            assert server.connections == 0  # never admitted: no hello was possible
            # A TLS client that completes its handshakes is served.
            async with wirekit.connect(
                f"tls://127.0.0.1:{port}", ssl=tls.client_context(), limits=limits
            ) as conn:
                await conn.send(b"private")
                assert await conn.recv() == b"private"

    arun(main())


# -- idle_timeout ------------------------------------------------------------------


def test_idle_timeout(arun) -> None:
    idle = 0.5
    handler_saw: list[BaseException] = []

    async def handler(conn: Connection) -> None:
        try:
            await echo(conn)
        except ConnectionClosed as exc:
            handler_saw.append(exc)
            raise

    async def main() -> None:
        async with (
            wirekit.serve(handler, "127.0.0.1:0", limits=Limits(idle_timeout=idle)) as s,
            wirekit.connect(str(s.address)) as conn,
        ):
            # Activity well past the idle timeout keeps the connection.
            start = time.monotonic()
            turn = 0
            while time.monotonic() - start < 3 * idle:
                if turn % 2:
                    await conn.ping()
                else:
                    await conn.send(b"tick")
                    assert await conn.recv() == b"tick"
                turn += 1
                with pytest.raises(TimeoutError):  # nothing else arrives in between
                    async with asyncio.timeout(0.4 * idle):
                        await conn.recv()
            assert not conn.closed
            # Silence closes it with IDLE_TIMEOUT.
            quiet_since = time.monotonic()
            with pytest.raises(ConnectionClosed) as info:
                async with asyncio.timeout(5):
                    await conn.recv()
            waited = time.monotonic() - quiet_since
            assert info.value.code == ErrorCode.IDLE_TIMEOUT
            assert info.value.reason == "idle for 0.5 s"
            assert 0.5 * idle <= waited < idle + 1.0
        assert len(handler_saw) == 1
        assert handler_saw[0].code == ErrorCode.IDLE_TIMEOUT  # type: ignore[attr-defined]

    arun(main())


def test_idle_timeout_frees_a_connection_whose_peer_does_not_read(arun, until) -> None:
    """A handler streaming to a peer that sends nothing and reads nothing: the
    idle timeout (nothing received) aborts it, send() raises at once, and the
    slot is freed although the ERROR frame can never be delivered."""
    idle = 1.0
    grace = 0.5  # Limits.shutdown_grace: how long the ERROR frame may take to go out
    ended: list[BaseException] = []

    async def streamer(conn: Connection) -> None:
        conn.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 65536)
        chunk = b"s" * (64 * KiB)
        try:
            while True:
                await conn.send(chunk)
        except ConnectionClosed as exc:
            ended.append(exc)
            raise

    async def main() -> None:
        loop = asyncio.get_running_loop()
        limits = Limits(idle_timeout=idle, shutdown_grace=grace)
        async with wirekit.serve(streamer, "127.0.0.1:0", limits=limits) as server:
            with socket.socket() as sock:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8192)
                sock.setblocking(False)
                await loop.sock_connect(sock, ("127.0.0.1", server.address.port))
                await loop.sock_sendall(sock, hello())
                began = time.monotonic()
                await until(lambda: ended, timeout=idle + 3, what="the blocked send() raises")
                raised = time.monotonic() - began
                assert isinstance(ended[0], ConnectionClosed)
                assert ended[0].code == ErrorCode.IDLE_TIMEOUT
                assert 0.9 * idle <= raised < idle + 1.5
                await until(
                    lambda: server.connections == 0,
                    timeout=grace + 3,
                    what="the server frees the connection",
                )
                # The ERROR frame had its chance: the drop waited for the grace.
                assert time.monotonic() - began - raised >= 0.5 * grace

    arun(main())


def test_shutdown_frees_a_connection_whose_peer_does_not_read(arun, until) -> None:
    """The GOING_AWAY ERROR frame cannot reach a peer that does not read: the
    connection is dropped after the grace instead of outliving the server."""
    grace = 0.3
    conns: list[Connection] = []
    cancelled: list[bool] = []

    async def streamer(conn: Connection) -> None:
        conns.append(conn)
        conn.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 65536)
        try:
            while True:
                await conn.send(b"s" * (64 * KiB))
        except asyncio.CancelledError:
            cancelled.append(True)
            raise

    async def main() -> None:
        loop = asyncio.get_running_loop()
        server = wirekit.serve(streamer, "127.0.0.1:0", limits=Limits(shutdown_grace=grace))
        await server.start()
        with socket.socket() as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8192)
            sock.setblocking(False)
            await loop.sock_connect(sock, ("127.0.0.1", server.address.port))
            await loop.sock_sendall(sock, hello())
            await until(lambda: conns and conns[0]._write_paused, what="the handler blocks")
            began = time.monotonic()
            await server.shutdown()
            assert time.monotonic() - began < 2 * grace + 1.5
            assert cancelled == [True]
            await until(lambda: server.connections == 0, timeout=2, what="the slot is freed")

    arun(main())


# -- write_high_water ----------------------------------------------------------------


@pytest.mark.parametrize("size", [1000, 64 * KiB], ids=["small-sends", "large-sends"])
def test_write_high_water_blocks_send_to_a_peer_that_never_reads(arun, rss, size: int) -> None:
    high = 256 * KiB
    total = 8 * MiB
    count = total // size
    progress = [0]
    conns: list[Connection] = []

    async def main() -> None:
        done = asyncio.Event()

        async def handler(conn: Connection) -> None:
            conns.append(conn)
            # A fixed, small kernel send buffer: what is not sent waits in the process.
            conn.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 65536)
            chunk = b"w" * size
            for _ in range(count):
                await conn.send(chunk)
                progress[0] += 1
            done.set()
            await conn.recv()

        limits = Limits(write_high_water=high)
        loop = asyncio.get_running_loop()
        async with wirekit.serve(handler, "127.0.0.1:0", limits=limits) as server:
            sock = socket.socket()
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8192)
            sock.setblocking(False)
            await loop.sock_connect(sock, ("127.0.0.1", server.address.port))
            before = rss()
            await loop.sock_sendall(sock, hello())

            # The handler cannot push 32 MiB into a peer that does not read.
            with pytest.raises(TimeoutError):
                async with asyncio.timeout(1.0):
                    await done.wait()
            stalled_at = progress[0] * size
            assert stalled_at < total // 4, f"send() did not block: {stalled_at} bytes sent"
            conn = conns[0]
            transport = conn._transport
            assert transport is not None
            # Queued in the process: at most the transport's buffer past the high-water
            # mark plus one high-water mark of coalesced frames.
            assert transport.get_write_buffer_size() <= 2 * high + size
            assert not transport.is_reading(), "reading pauses while writing is paused"
            assert rss() - before < 12 * MiB

            # Once the peer reads, every byte arrives and the handler finishes.
            expected = 12 + count * (8 + size)
            received = 0
            async with asyncio.timeout(20):
                while received < expected:
                    data = await loop.sock_recv(sock, 1 << 20)
                    assert data
                    received += len(data)
                await done.wait()
            assert received == expected
            assert transport.is_reading()
            sock.close()

    arun(main(), timeout=40)


# -- read_high_water -----------------------------------------------------------------


def test_read_high_water_pauses_reading_from_a_fast_sender(arun, until) -> None:
    high = 256 * KiB
    size = 64 * KiB
    count = 512  # 32 MiB
    conns: list[Connection] = []

    async def main() -> None:
        release = asyncio.Event()

        async def handler(conn: Connection) -> None:
            conns.append(conn)
            await release.wait()
            got = 0
            while got < count:
                for item in await conn.recv_batch():
                    assert item[:4] == got.to_bytes(4, "big")  # type: ignore[index]
                    got += 1
            await conn.send(b"got %d" % got)
            await conn.recv()

        async with (
            wirekit.serve(handler, "127.0.0.1:0", limits=Limits(read_high_water=high)) as s,
            wirekit.connect(str(s.address)) as client,
        ):
            filler = b"r" * (size - 4)

            async def send_all() -> None:
                for i in range(count):
                    await client.send(i.to_bytes(4, "big") + filler)

            sender = asyncio.ensure_future(send_all())
            await until(lambda: conns, what="handler started")
            conn = conns[0]
            transport = conn._transport
            assert transport is not None
            await until(lambda: not transport.is_reading(), what="server pauses reading")
            # The sender is held back, and the server holds a bounded amount.
            with pytest.raises(TimeoutError):
                async with asyncio.timeout(0.5):
                    await asyncio.shield(sender)
            buffered = sum(len(item) for item in conn._inbox)
            assert buffered <= high + MiB, f"server buffered {buffered} bytes"

            release.set()
            async with asyncio.timeout(20):
                await sender
                assert await client.recv() == b"got %d" % count
            assert transport.is_reading()

    arun(main(), timeout=40)


# -- shutdown_grace --------------------------------------------------------------------


def test_shutdown_lets_a_handler_finish_within_the_grace(arun, until) -> None:
    async def main() -> None:
        started = asyncio.Event()
        release = asyncio.Event()

        async def handler(conn: Connection) -> None:
            request = await conn.recv()
            started.set()
            await release.wait()
            await conn.send(b"reply to " + request)  # type: ignore[operator]

        limits = Limits(shutdown_grace=5.0)
        server = wirekit.serve(handler, "127.0.0.1:0", limits=limits)
        await server.start()
        port = server.address.port
        conn = await wirekit.connect(str(server.address))
        await conn.send(b"work")
        await started.wait()
        began = time.monotonic()
        stopping = asyncio.ensure_future(server.shutdown())

        async def refused() -> bool:
            try:
                await (await wirekit.connect(f"127.0.0.1:{port}", timeout=1)).close()
            except wirekit.ConnectError:
                return True  # the listener is closed
            except wirekit.BadHello as exc:
                # Accepted just before the listener closed: refused with a reason.
                assert str(exc).startswith("server refused the connection: server shutting down")
            return False

        while not await refused():  # the listener closes at once
            assert time.monotonic() - began < 5
        assert not stopping.done()
        release.set()
        assert await conn.recv() == b"reply to work"
        with pytest.raises(ConnectionClosed) as info:
            await conn.recv()
        assert info.value.code == ErrorCode.NORMAL
        await stopping
        assert time.monotonic() - began < 2.0, "shutdown did not wait out the whole grace"
        assert server.connections == 0

    arun(main())


def test_shutdown_cancels_a_handler_that_overruns_the_grace(arun) -> None:
    grace = 0.3
    cancelled = []

    async def main() -> None:
        started = asyncio.Event()

        async def handler(conn: Connection) -> None:
            await conn.recv()
            started.set()
            try:
                await asyncio.Event().wait()  # never finishes on its own
            except asyncio.CancelledError:
                cancelled.append(True)
                raise

        server = wirekit.serve(handler, "127.0.0.1:0", limits=Limits(shutdown_grace=grace))
        await server.start()
        conn = await wirekit.connect(str(server.address))
        await conn.send(b"work")
        await started.wait()
        began = time.monotonic()
        await server.shutdown()
        took = time.monotonic() - began
        assert 0.9 * grace <= took < grace + 1.5
        assert cancelled == [True]
        with pytest.raises(ConnectionClosed) as info:
            await conn.recv()
        assert info.value.code == ErrorCode.GOING_AWAY
        assert info.value.reason == "server shutting down"
        assert server.connections == 0

    arun(main())
