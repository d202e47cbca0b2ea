"""serve()/connect() over real sockets: TCP, IPv6, Unix, TLS; iteration, batches,
write_many + drain, typed messages and ping."""

from __future__ import annotations

import asyncio
import hashlib
import os
import socket
import ssl
from pathlib import Path

import pytest

import wirekit
from wirekit import (
    ConnectionClosed,
    ErrorCode,
    Limits,
    LocalProtocolError,
    Message,
    RemoteProtocolError,
)
from wirekit.aio import Connection


async def echo(conn: Connection) -> None:
    async for item in conn:
        if isinstance(item, bytes):
            await conn.send(item)
        else:
            await conn.send_message(item)


def ipv6_loopback_works() -> bool:
    if not socket.has_ipv6:
        return False
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as s:
            s.bind(("::1", 0))
    except OSError:
        return False
    return True


@pytest.fixture(params=["uvloop", "asyncio"])
def loop_kind(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Run a test on uvloop (the default) and on the stdlib loop (the fallback)."""
    if request.param == "asyncio":
        monkeypatch.setenv("WIREKIT_NO_UVLOOP", "1")
    else:
        pytest.importorskip("uvloop")
        monkeypatch.delenv("WIREKIT_NO_UVLOOP", raising=False)
    return str(request.param)


def test_tcp_round_trip_on_port_0(arun, loop_kind: str) -> None:
    peers: list[object] = []

    async def handler(conn: Connection) -> None:
        peers.append(conn.peer)
        await echo(conn)

    async def main() -> None:
        async with wirekit.serve(handler, "127.0.0.1:0") as server:
            port = server.address.port
            assert port != 0
            assert server.address.host == "127.0.0.1"
            async with wirekit.connect(f"127.0.0.1:{port}") as conn:
                assert conn.get_extra_info("peername") == ("127.0.0.1", port)
                for payload in (b"hello", b"", b"\x00" * 1000, bytes(range(256))):
                    await conn.send(payload)
                    assert await conn.recv() == payload
                assert server.connections == 1
        assert peers and peers[0][0] == "127.0.0.1"  # type: ignore[index]

    arun(main())


def test_bare_port_0_binds_the_default_host(arun) -> None:
    async def main() -> None:
        async with wirekit.serve(echo, ":0") as server:
            assert server.requested.port == 0
            assert (server.address.host, server.address.scheme) == ("127.0.0.1", "tcp")
            assert server.address.port > 0
            assert str(server.address) == f"tcp://127.0.0.1:{server.address.port}"
            async with wirekit.connect(str(server.address)) as conn:
                await conn.send(b"default host")
                assert await conn.recv() == b"default host"

    arun(main())


@pytest.mark.skipif(not ipv6_loopback_works(), reason="IPv6 loopback ::1 is not available")
def test_ipv6_round_trip(arun) -> None:
    peers: list[object] = []

    async def handler(conn: Connection) -> None:
        peers.append(conn.peer)
        await echo(conn)

    async def main() -> None:
        async with wirekit.serve(handler, "[::1]:0") as server:
            assert server.address.port != 0
            assert str(server.address) == f"tcp://[::1]:{server.address.port}"
            async with wirekit.connect(f"[::1]:{server.address.port}") as conn:
                await conn.send(b"over v6")
                assert await conn.recv() == b"over v6"
        assert peers[0][0] == "::1"  # type: ignore[index]

    arun(main())


def test_unix_socket_round_trip(arun, tmp_path: Path, loop_kind: str) -> None:
    path = tmp_path / "wk.sock"

    async def main() -> None:
        async with wirekit.serve(echo, f"unix:{path}") as server:
            assert path.exists()
            assert server.address.path == str(path)
            async with wirekit.connect(f"unix:{path}") as conn:
                await conn.send(b"over unix")
                assert await conn.recv() == b"over unix"
                assert await conn.ping() > 0
        assert not path.exists(), "shutdown removes the socket file"

    arun(main())


def test_unix_socket_in_use_is_refused_and_stale_file_reused(arun, tmp_path: Path) -> None:
    path = tmp_path / "wk.sock"

    async def main() -> None:
        async with wirekit.serve(echo, f"unix:{path}"):
            with pytest.raises(wirekit.ListenError, match="already in use"):
                async with wirekit.serve(echo, f"unix:{path}"):
                    pass
        # A stale socket file (no server behind it) is replaced.
        stale = socket.socket(socket.AF_UNIX)
        stale.bind(str(path))
        stale.close()
        async with wirekit.serve(echo, f"unix:{path}"), wirekit.connect(f"unix:{path}") as conn:
            await conn.send(b"again")
            assert await conn.recv() == b"again"

    arun(main())


def test_tls_round_trip(arun, tls, loop_kind: str) -> None:
    seen: list[str | None] = []

    async def handler(conn: Connection) -> None:
        seen.append(conn.get_extra_info("ssl_object").version())
        await echo(conn)

    async def main() -> None:
        server_ctx = tls.server_context()
        async with wirekit.serve(handler, "tls://127.0.0.1:0", ssl=server_ctx) as server:
            port = server.address.port
            async with wirekit.connect(f"tls://127.0.0.1:{port}", ssl=tls.client_context()) as c:
                ssl_object = c.get_extra_info("ssl_object")
                assert ssl_object is not None
                assert ssl_object.getpeercert()["subject"] == ((("commonName", "localhost"),),)
                big = os.urandom(300_000)
                await c.send(b"secret")
                await c.send(big)
                assert await c.recv() == b"secret"
                assert await c.recv() == big
            async with wirekit.connect(
                f"tls://127.0.0.1:{port}", ssl=tls.client_context(), server_hostname="localhost"
            ) as c:
                assert await c.ping() > 0
            # A client that does not trust the certificate refuses to talk.
            with pytest.raises(wirekit.ConnectError, match="certificate verify failed"):
                await wirekit.connect(f"tls://127.0.0.1:{port}", ssl=ssl.create_default_context())
        assert seen[0] in ("TLSv1.2", "TLSv1.3")

    arun(main())


def test_async_for_ends_cleanly_on_normal_close(arun) -> None:
    received: list[bytes] = []

    async def main() -> None:
        done = asyncio.Event()

        async def handler(conn: Connection) -> None:
            # Server side: iterate until the client's CLOSE.
            async for item in conn:
                received.append(item)  # type: ignore[arg-type]
            done.set()

        async def sender(conn: Connection) -> None:
            for i in range(5):
                await conn.send(b"item %d" % i)

        async with wirekit.serve(handler, "127.0.0.1:0") as server:
            conn = await wirekit.connect(str(server.address))
            for i in range(20):
                await conn.send(b"msg %d" % i)
            await conn.close()
            async with asyncio.timeout(5):
                await done.wait()
        assert received == [b"msg %d" % i for i in range(20)]

        # Client side: the server sends, then its handler returns (CLOSE).
        async with wirekit.serve(sender, "127.0.0.1:0") as server:
            conn = await wirekit.connect(str(server.address))
            got = [item async for item in conn]  # ends with StopAsyncIteration, no error
            assert got == [b"item %d" % i for i in range(5)]
            assert conn.closed
            with pytest.raises(ConnectionClosed) as info:
                await conn.recv()
            assert info.value.code == ErrorCode.NORMAL

    arun(main())


def test_recv_batch_returns_everything_in_order(arun) -> None:
    count = 500

    async def main() -> None:
        sent = asyncio.Event()

        async def handler(conn: Connection) -> None:
            conn.write_many(b"%d" % i for i in range(count))
            await conn.drain()
            sent.set()
            async for _ in conn:  # read (and drop) until the client's close
                pass

        async with (
            wirekit.serve(handler, "127.0.0.1:0") as server,
            wirekit.connect(str(server.address)) as conn,
        ):
            await sent.wait()
            # The pong comes after every frame the server sent before it,
            # so once ping() returns all 500 frames are in the inbox.
            await conn.ping()
            batch = await conn.recv_batch()
            assert batch == [b"%d" % i for i in range(count)]
            # And recv_batch waits for the next arrival when empty.
            await conn.send(b"x")  # not echoed; nothing else arrives
            with pytest.raises(TimeoutError):
                async with asyncio.timeout(0.1):
                    await conn.recv_batch()

    arun(main())


def test_write_many_and_drain_deliver_every_payload(arun) -> None:
    payloads = [os.urandom(i % 2000) for i in range(10_000)]  # includes empty payloads
    expected = hashlib.sha256(b"".join(len(p).to_bytes(4, "big") + p for p in payloads)).digest()

    async def handler(conn: Connection) -> None:
        digest = hashlib.sha256()
        n = 0
        while n < len(payloads):
            for item in await conn.recv_batch():
                digest.update(len(item).to_bytes(4, "big") + item)  # type: ignore[arg-type]
                n += 1
        await conn.send(b"%d:" % n + digest.digest())

    async def main() -> None:
        async with (
            wirekit.serve(handler, "127.0.0.1:0") as server,
            wirekit.connect(str(server.address)) as conn,
        ):
            for start in range(0, len(payloads), 1000):
                conn.write_many(payloads[start : start + 1000])
                await conn.drain()
            assert await conn.recv() == b"%d:" % len(payloads) + expected

    arun(main())


class Order(Message, tag="order"):
    item: str
    quantity: int


class Receipt(Message, tag="receipt"):
    item: str
    total: int


class Unknown(Message, tag="not-known-to-the-server"):
    value: int


def test_service_messages_arrive_typed(arun) -> None:
    async def handler(conn: Connection) -> None:
        async for item in conn:
            assert isinstance(item, Order)
            await conn.send_message(Receipt(item.item, item.quantity * 3))

    async def main() -> None:
        types = [Order, Receipt]
        async with (
            wirekit.serve(handler, "127.0.0.1:0", message_types=types) as server,
            wirekit.connect(str(server.address), message_types=types) as conn,
        ):
            await conn.send_message(Order("tea", 2))
            await conn.send(b"not a message")  # the handler's assert fails on this
            reply = await conn.recv()
            assert type(reply) is Receipt
            assert reply == Receipt("tea", 6)
            with pytest.raises(ConnectionClosed) as info:
                await conn.recv()
            assert info.value.code == ErrorCode.INTERNAL_ERROR

    arun(main())


def test_unknown_message_type_fails_the_connection_with_schema_mismatch(arun) -> None:
    errors: list[BaseException] = []

    async def handler(conn: Connection) -> None:
        try:
            await conn.recv()
        except RemoteProtocolError as exc:
            errors.append(exc)
            raise

    async def main() -> None:
        async with (
            wirekit.serve(handler, "127.0.0.1:0", message_types=[Order]) as server,
            wirekit.connect(str(server.address), message_types=[Unknown]) as conn,
        ):
            await conn.send_message(Unknown(1))
            with pytest.raises(ConnectionClosed) as info:
                await conn.recv()
            assert info.value.code == ErrorCode.SCHEMA_MISMATCH
            assert "not-known-to-the-server" in info.value.reason
        assert len(errors) == 1
        assert errors[0].code == ErrorCode.SCHEMA_MISMATCH  # type: ignore[attr-defined]

    arun(main())


def test_ping_measures_a_round_trip_while_data_flows(arun) -> None:
    async def handler(conn: Connection) -> None:
        for i in range(100):
            await conn.send(b"data %d" % i)
        await conn.recv()

    async def main() -> None:
        async with (
            wirekit.serve(handler, "127.0.0.1:0") as server,
            wirekit.connect(str(server.address)) as conn,
        ):
            rtt = await conn.ping()
            assert 0 < rtt < 5
            pinging = asyncio.ensure_future(conn.ping())
            await asyncio.sleep(0)
            with pytest.raises(wirekit.LocalProtocolError, match="already in flight"):
                await conn.ping()
            await pinging
            # The pongs never show up as messages; all the data does.
            got = [await conn.recv() for _ in range(100)]
            assert got == [b"data %d" % i for i in range(100)]

    arun(main())


def test_a_second_task_waiting_in_recv_is_refused(arun, until, loop_kind: str) -> None:
    async def main() -> None:
        release = asyncio.Event()

        async def handler(conn: Connection) -> None:
            await conn.recv()
            await conn.send(b"for the first")
            await release.wait()  # then returns: the server closes normally

        async with wirekit.serve(handler, "127.0.0.1:0") as server:
            conn = await wirekit.connect(str(server.address))
            first = asyncio.ensure_future(conn.recv())
            await until(lambda: conn._waiter is not None, what="the first task waits")
            async with asyncio.timeout(2):
                with pytest.raises(
                    LocalProtocolError, match=r"^another task is already waiting in recv\(\)$"
                ):
                    await conn.recv()
                with pytest.raises(LocalProtocolError):
                    await conn.recv_batch()
            await conn.send(b"go")
            async with asyncio.timeout(5):
                assert await first == b"for the first"
            # A waiter is woken by the end of the connection too.
            waiting = asyncio.ensure_future(conn.recv())
            await until(lambda: conn._waiter is not None, what="the task waits again")
            release.set()
            with pytest.raises(ConnectionClosed) as info:
                async with asyncio.timeout(5):
                    await waiting
            assert info.value.code == ErrorCode.NORMAL
            await conn.close()

    arun(main())


def test_every_task_blocked_in_send_wakes_when_the_connection_ends(
    arun, until, loop_kind: str
) -> None:
    """Two tasks sending on one connection to a peer that stopped reading both
    wait in drain(); when the peer goes away both get ConnectionClosed."""

    async def main() -> None:
        release = asyncio.Event()

        async def stalled(conn: Connection) -> None:
            await release.wait()  # never reads; then drops the connection
            conn.abort(ErrorCode.GOING_AWAY, "going")

        server_limits = Limits(read_high_water=64 * 1024)
        async with wirekit.serve(stalled, "127.0.0.1:0", limits=server_limits) as server:
            conn = await wirekit.connect(
                str(server.address), limits=Limits(write_high_water=64 * 1024)
            )
            chunk = b"d" * (64 * 1024)
            entered = [0, 0]

            async def sender(i: int, times: int) -> None:
                for _ in range(times):
                    entered[i] += 1
                    await conn.send(chunk)

            first = asyncio.ensure_future(sender(0, 10_000))
            await until(lambda: conn._write_paused, what="the first sender blocks")
            second = asyncio.ensure_future(sender(1, 1))
            await until(lambda: entered[1] == 1, what="the second sender blocks")
            assert not first.done() and not second.done()
            release.set()
            async with asyncio.timeout(5):
                results = await asyncio.gather(first, second, return_exceptions=True)
            assert [type(r) for r in results] == [ConnectionClosed, ConnectionClosed]

    arun(main())
