"""A wirekit server facing peers that misbehave, driven by raw sockets:
people typing, HTTP clients, huge frame heads, byte-at-a-time writers,
crowds of silent connections; and the errors of connect and bind."""

from __future__ import annotations

import asyncio
import contextlib
import resource
import socket
import struct
import time

import pytest

import wirekit
from wirekit import ErrorCode
from wirekit.aio import Connection
from wirekit.proto import FrameConnection, Message, MessageReceived, Ping, Pong, Role

# The exact replies of protocol.md §2.4 and §2.6, spelled out rather than imported.
NOT_WIREKIT_LINE = (
    b"wirekit: this port speaks the wirekit frame protocol; "
    b"use 'wirekit' or the wirekit library to talk to it\r\n"
)
HTTP_400 = (
    b"HTTP/1.0 400 Bad Request\r\n"
    b"Content-Type: text/plain\r\n"
    b"Connection: close\r\n"
    b"Content-Length: 106\r\n"
    b"\r\n" + NOT_WIREKIT_LINE
)
HELLO = b"WKIT\x01\x00\x00\x00" + (1 << 20).to_bytes(4, "big")
SERVER_HELLO = b"WKIT\x01\x01\x00\x00" + (1 << 20).to_bytes(4, "big")  # flag 0x01: the server's


async def echo(conn: Connection) -> None:
    async for item in conn:
        await conn.send(item)  # type: ignore[arg-type]


async def read_to_eof(reader: asyncio.StreamReader, timeout: float = 5.0) -> bytes:
    async with asyncio.timeout(timeout):
        return await reader.read()


def parse_frames(data: bytes) -> list[tuple[int, int, bytes]]:
    """Split bytes after a hello into (type, channel, payload) frames."""
    frames = []
    pos = 0
    while pos < len(data):
        length, word = struct.unpack_from(">II", data, pos)
        frames.append((word >> 24, word & 0xFFFF, data[pos + 8 : pos + 8 + length]))
        pos += 8 + length
    assert pos == len(data), "the stream ended inside a frame"
    return frames


async def served(port: int) -> None:
    """A well-behaved client gets its echo."""
    async with wirekit.connect(f"127.0.0.1:{port}", timeout=5) as conn:
        await conn.send(b"still serving")
        assert await conn.recv() == b"still serving"


@pytest.mark.parametrize(
    ("typed", "reply"),
    [
        (b"hello\r\n", NOT_WIREKIT_LINE),
        (b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n", HTTP_400),
        (b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", HTTP_400),
        (b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", NOT_WIREKIT_LINE),  # a TLS hello
    ],
    ids=["person", "http-get", "http2-preface", "tls-client"],
)
def test_non_wirekit_peer_gets_one_readable_reply_and_a_close(
    arun, typed: bytes, reply: bytes
) -> None:
    async def main() -> None:
        async with wirekit.serve(echo, "127.0.0.1:0") as server:
            reader, writer = await asyncio.open_connection("127.0.0.1", server.address.port)
            writer.write(typed)
            assert await read_to_eof(reader) == reply  # exactly this, then EOF
            writer.close()
            await served(server.address.port)

    arun(main())


def test_http_method_split_across_writes_still_gets_http_reply(arun) -> None:
    async def main() -> None:
        async with wirekit.serve(echo, "127.0.0.1:0") as server:
            reader, writer = await asyncio.open_connection("127.0.0.1", server.address.port)
            sock = writer.get_extra_info("socket")
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            writer.write(b"GE")
            await writer.drain()
            # The server waits for more: nothing comes back yet.
            with pytest.raises(TimeoutError):
                async with asyncio.timeout(0.1):
                    await reader.read(1)
            writer.write(b"T / HTTP/1.0\r\n\r\n")
            assert await read_to_eof(reader) == HTTP_400
            writer.close()

    arun(main())


async def read_raw_to_eof(sock: socket.socket, timeout: float = 5.0) -> bytes:
    """Everything the server sent before it closed (EOF or reset)."""
    loop = asyncio.get_running_loop()
    chunks = []
    async with asyncio.timeout(timeout):
        while True:
            try:
                data = await loop.sock_recv(sock, 65536)
            except ConnectionResetError:
                break
            if not data:
                break
            chunks.append(data)
    return b"".join(chunks)


def test_four_gib_frame_head_gets_frame_too_large_and_memory_stays_flat(arun, rss) -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        async with wirekit.serve(echo, "127.0.0.1:0") as server:
            port = server.address.port
            await served(port)  # warm up every code path once
            junk = b"\xaa" * (4 << 20)
            before = rss()
            for _ in range(5):
                with socket.socket() as sock:
                    sock.setblocking(False)
                    await loop.sock_connect(sock, ("127.0.0.1", port))
                    # A valid hello, a head announcing 4 GiB - 1, then 4 MiB of its payload
                    # (the server closes before taking it all: the send may fail).
                    head = struct.pack(">II", 0xFFFFFFFF, 0)
                    with contextlib.suppress(ConnectionResetError, BrokenPipeError):
                        await loop.sock_sendall(sock, HELLO + head)
                        await loop.sock_sendall(sock, junk)
                    reply = await read_raw_to_eof(sock)
                assert reply[:12] == SERVER_HELLO
                assert parse_frames(reply[12:]) == [
                    (
                        4,  # ERROR
                        0,
                        ErrorCode.FRAME_TOO_LARGE.to_bytes(2, "big")
                        + b"frame of 4294967295 bytes exceeds limit of 1048576 bytes",
                    )
                ]
            grown = rss() - before
            assert grown < 4 << 20, f"server memory grew by {grown >> 20} MiB"
            await served(port)

    arun(main())


@pytest.mark.parametrize("pipelined", [False, True], ids=["head-after-hello", "pipelined"])
def test_heads_announcing_large_frames_cost_only_the_bytes_sent(
    arun, rss, until, pipelined: bool
) -> None:
    """protocol.md §3.1: a hello, the head of a 1 MiB frame and two bytes of it
    (22 bytes) on each of many connections must not make the server hold a
    megabyte for each."""
    count = 300
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    needed = 2 * count + 200
    if soft < needed:
        if hard != resource.RLIM_INFINITY and hard < needed:
            pytest.skip(f"needs {needed} file descriptors, the hard limit is {hard}")
        resource.setrlimit(resource.RLIMIT_NOFILE, (needed, hard))
    head = struct.pack(">II", 1 << 20, 0)  # exactly the default limit: a valid frame

    async def main() -> None:
        loop = asyncio.get_running_loop()
        async with wirekit.serve(echo, "127.0.0.1:0") as server:
            port = server.address.port
            await served(port)  # warm up every code path once
            socks = []
            try:
                for _ in range(count):
                    sock = socket.socket()
                    sock.setblocking(False)
                    socks.append(sock)
                    await loop.sock_connect(sock, ("127.0.0.1", port))
                    if pipelined:  # parsed as the tail of the hello's read
                        await loop.sock_sendall(sock, HELLO + head + b"ab")
                    else:
                        await loop.sock_sendall(sock, HELLO)
                for sock in socks:
                    assert await sock_recv_exactly(sock, 12) == SERVER_HELLO
                before = rss()
                sent_at = loop.time()
                for sock in socks:  # one more read of the frame on every connection
                    await loop.sock_sendall(sock, b"c" if pipelined else head + b"ab")
                await until(
                    lambda: sum(c.last_activity > sent_at for c in server._connections) == count,
                    timeout=10,
                    what="the server reads every connection's bytes",
                )
                grown = rss() - before
                assert grown < 8 << 20, f"server memory grew by {grown >> 20} MiB"
            finally:
                for sock in socks:
                    sock.close()
            await served(port)

    try:
        arun(main(), timeout=60)
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


async def sock_recv_exactly(sock: socket.socket, n: int, timeout: float = 5.0) -> bytes:
    loop = asyncio.get_running_loop()
    data = b""
    async with asyncio.timeout(timeout):
        while len(data) < n:
            chunk = await loop.sock_recv(sock, n - len(data))
            assert chunk, "the server closed the connection"
            data += chunk
    return data


def test_frames_split_one_byte_at_a_time_arrive_intact(arun) -> None:
    class Note(Message, tag="note"):
        text: str

    payloads = [b"", b"a", b"hello", bytes(range(256)), b"x" * 3000, b"last"]

    async def main() -> None:
        got: list[object] = []
        done = asyncio.Event()

        async def handler(conn: Connection) -> None:
            while len(got) < len(payloads) + 1:
                got.append(await conn.recv())
            done.set()
            await conn.send(b"thanks")
            await conn.recv()

        async with wirekit.serve(handler, "127.0.0.1:0", message_types=[Note]) as server:
            client = FrameConnection(Role.CLIENT)
            for p in payloads[:3]:
                client.send_data(p)
            client.send_message(Note("in the middle"))
            for p in payloads[3:]:
                client.send_data(p)
            wire = client.data_to_send()
            reader, writer = await asyncio.open_connection("127.0.0.1", server.address.port)
            sock = writer.get_extra_info("socket")
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            for i in range(len(wire)):
                writer.write(wire[i : i + 1])
                await writer.drain()
                await asyncio.sleep(0)  # let the server read each byte on its own
            async with asyncio.timeout(5):
                await done.wait()
            assert got == [*payloads[:3], Note("in the middle"), *payloads[3:]]
            # The server's answer, parsed by a sans-I/O client.
            events = []
            while b"thanks" not in events:
                data = await reader.read(65536)
                assert data, "server closed early"
                events += client.receive_data(data)
            writer.close()

    arun(main())


def test_many_frames_in_one_segment_arrive_in_order(arun) -> None:
    count = 2000

    async def main() -> None:
        got: list[object] = []
        done = asyncio.Event()

        async def handler(conn: Connection) -> None:
            while len(got) < count:
                got.extend(await conn.recv_batch())
            done.set()
            await conn.recv()

        async with wirekit.serve(handler, "127.0.0.1:0") as server:
            client = FrameConnection(Role.CLIENT)
            client.send_many(b"#%d" % i for i in range(count))
            _, writer = await asyncio.open_connection("127.0.0.1", server.address.port)
            writer.write(client.data_to_send())  # one write: hello plus 2000 frames
            async with asyncio.timeout(5):
                await done.wait()
            assert got == [b"#%d" % i for i in range(count)]
            writer.close()

    arun(main())


def test_a_thousand_silent_connections_are_closed_by_the_handshake_timeout(arun, until) -> None:
    count = 1000
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    needed = 2 * count + 200
    if soft < needed:
        if hard != resource.RLIM_INFINITY and hard < needed:
            pytest.skip(f"needs {needed} file descriptors, the hard limit is {hard}")
        resource.setrlimit(resource.RLIMIT_NOFILE, (needed, hard))
    limits = wirekit.Limits(handshake_timeout=0.5)
    line = b"wirekit: no hello within 0.5 s; closing\r\n"

    async def main() -> None:
        async with wirekit.serve(echo, "127.0.0.1:0", limits=limits) as server:
            port = server.address.port
            silent = []
            try:
                for _ in range(count):
                    silent.append(await asyncio.open_connection("127.0.0.1", port))
                # A real client is served while (the last of) the crowd still waits.
                async with wirekit.connect(f"127.0.0.1:{port}", timeout=5) as conn:
                    await conn.send(b"served")
                    assert await conn.recv() == b"served"
                    crowd_left = server.connections - 1
                assert crowd_left > 0
                replies = await asyncio.gather(*(read_to_eof(r, 10) for r, _ in silent))
                assert replies == [line] * count
            finally:
                for _, writer in silent:
                    writer.close()
                await asyncio.gather(*(w.wait_closed() for _, w in silent), return_exceptions=True)
            await until(lambda: server.connections == 0, what="server forgets them")
            assert server.total_accepted >= count + 1
            await served(port)

    try:
        arun(main(), timeout=40)
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def unused_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_connect_to_a_closed_port_raises_connect_error(arun) -> None:
    port = unused_port()

    async def main() -> None:
        with pytest.raises(wirekit.ConnectError, match="connection refused") as info:
            await wirekit.connect(f"127.0.0.1:{port}")
        assert f"127.0.0.1:{port}" in str(info.value)

    arun(main())


def test_connect_to_a_missing_unix_socket_raises_connect_error(arun, tmp_path) -> None:
    async def main() -> None:
        with pytest.raises(wirekit.ConnectError, match="no such socket file"):
            await wirekit.connect(f"unix:{tmp_path / 'absent.sock'}")

    arun(main())


def test_a_server_that_never_answers_the_hello_times_out_as_a_connect_error(arun) -> None:
    with socket.socket() as listener:  # accepts TCP connections, never says a word
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        listener.setblocking(False)
        port = listener.getsockname()[1]

        async def main() -> None:
            began = time.monotonic()
            with pytest.raises(wirekit.ConnectError) as info:
                await wirekit.connect(f"127.0.0.1:{port}", timeout=0.3)
            assert str(info.value) == f"cannot connect to 127.0.0.1:{port}: no answer within 0.3 s"
            assert 0.25 <= time.monotonic() - began < 3  # loop clocks may run a bit early
            # The client gave up and closed its socket: its hello, then EOF.
            peer, _ = await asyncio.get_running_loop().sock_accept(listener)
            with peer:
                assert await read_raw_to_eof(peer, timeout=2) == HELLO

        arun(main())


def test_binding_a_taken_port_raises_listen_error_naming_it(arun) -> None:
    async def main() -> None:
        async with wirekit.serve(echo, "127.0.0.1:0") as server:
            port = server.address.port
            with pytest.raises(wirekit.ListenError) as info:
                async with wirekit.serve(echo, f"127.0.0.1:{port}"):
                    pass
            assert str(info.value) == (
                f"port {port} on 127.0.0.1 is already in use (another server is listening there)"
            )
            await served(port)  # the first server is unharmed

    arun(main())


def test_connect_to_a_non_wirekit_server_is_a_bad_hello(arun) -> None:
    async def main() -> None:
        async def talker(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            writer.write(b"220 smtp.example ESMTP ready\r\n")
            await writer.drain()
            await reader.read()
            writer.close()

        server = await asyncio.start_server(talker, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        async with server:
            with pytest.raises(wirekit.BadHello, match="peer is not a wirekit server") as info:
                await wirekit.connect(f"127.0.0.1:{port}")
            assert info.value.code == ErrorCode.BAD_MAGIC

    arun(main())


def test_connect_to_an_echo_service_is_a_bad_hello(arun) -> None:
    async def main() -> None:
        async def echo_service(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            while data := await reader.read(4096):
                writer.write(data)
            writer.close()

        server = await asyncio.start_server(echo_service, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        async with server:
            with pytest.raises(wirekit.BadHello) as info:
                await wirekit.connect(f"127.0.0.1:{port}", timeout=5)
            assert str(info.value) == "peer echoed our hello: is this an echo service?"
            assert info.value.code == ErrorCode.PROTOCOL_ERROR

    arun(main())


def test_connect_to_a_udp_address_is_an_address_error(arun) -> None:
    async def main() -> None:
        with pytest.raises(wirekit.AddressError) as info:
            await wirekit.connect("udp://127.0.0.1:9")
        assert str(info.value) == (
            "framed connections need tcp, tls or unix, not udp: udp://127.0.0.1:9"
        )

    arun(main())


def test_ping_from_a_raw_peer_is_answered_by_the_protocol_layer(arun) -> None:
    async def main() -> None:
        async def quiet(conn: Connection) -> None:
            await conn.recv()

        async with wirekit.serve(quiet, "127.0.0.1:0") as server:
            client = FrameConnection(Role.CLIENT)
            client.send_message(Ping(42))
            reader, writer = await asyncio.open_connection("127.0.0.1", server.address.port)
            writer.write(client.data_to_send())
            events: list[object] = []
            async with asyncio.timeout(5):
                while not any(isinstance(e, MessageReceived) for e in events):
                    events += client.receive_data(await reader.read(4096))
            assert MessageReceived(0, Pong(42)) in events
            writer.close()

    arun(main())


def test_every_send_after_a_reset_raises(arun) -> None:
    async def main() -> None:
        async def resetting_server(
            reader: asyncio.StreamReader, writer: asyncio.StreamWriter
        ) -> None:
            await reader.readexactly(12)
            writer.write(SERVER_HELLO)
            await reader.readexactly(8 + 5)  # one DATA frame, then a hard reset (RST)
            sock = writer.get_extra_info("socket")
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            writer.transport.abort()

        server = await asyncio.start_server(resetting_server, "127.0.0.1", 0)
        async with server:
            conn = await wirekit.connect(f"127.0.0.1:{server.sockets[0].getsockname()[1]}")
            await conn.send(b"hello")
            with pytest.raises(wirekit.ConnectionClosed) as info:
                await conn.recv()
            assert info.value.code == ErrorCode.GOING_AWAY
            assert "connection lost" in info.value.reason
            assert conn.closed
            # No send may look successful on a dead connection, the first or a later one.
            for i in range(3):
                with pytest.raises(wirekit.ConnectionClosed):
                    await conn.send(b"lost %d" % i)
            with pytest.raises(wirekit.ConnectionClosed):
                conn.write_many([b"a", b"b"])
            with pytest.raises(wirekit.ConnectionClosed):
                await conn.drain()

    arun(main())
