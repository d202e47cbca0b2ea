"""The callback-style handler: no task per connection, replies in the same turn."""

from __future__ import annotations

import asyncio
import socket
from typing import Any

import wirekit
from wirekit import ConnectionClosed, ErrorCode
from wirekit.aio import Connection, MessageHandler
from wirekit.proto.frames import HEAD, encode_frame, encode_hello


class Upper(MessageHandler):
    def __init__(self) -> None:
        self.opened = 0
        self.closed: list[BaseException | None] = []
        self.reads: list[int] = []

    def connection_open(self, conn: Connection) -> None:
        self.opened += 1
        conn.state = 0
        conn.write(b"welcome")  # a handler may speak first

    def messages_received(self, conn: Connection, messages: list[Any]) -> None:
        self.reads.append(len(messages))
        super().messages_received(conn, messages)

    def message_received(self, conn: Connection, message: Any) -> None:
        conn.state += 1
        if message == b"boom":
            raise RuntimeError("handler bug")
        conn.write(message.upper())

    def connection_closed(self, conn: Connection, exc: BaseException | None) -> None:
        self.closed.append(exc)


def test_callback_handler_answers_speaks_first_and_sees_the_close(arun, until) -> None:
    handler = Upper()

    async def main() -> None:
        async with wirekit.serve(handler, "127.0.0.1:0") as server:
            async with wirekit.connect(server.address) as conn:
                assert await conn.recv() == b"welcome"
                for word in (b"a", b"bc", b"def"):
                    await conn.send(word)
                    assert await conn.recv() == word.upper()
            await until(lambda: handler.closed)
            assert server.connections == 0
            assert server._tasks == set(), "a callback handler needs no task"

    arun(main())
    assert handler.opened == 1
    assert isinstance(handler.closed[0], ConnectionClosed)
    assert handler.closed[0].code == ErrorCode.NORMAL


def test_messages_pipelined_behind_the_hello_reach_the_handler_in_one_read(arun) -> None:
    handler = Upper()

    async def main() -> bytes:
        async with wirekit.serve(handler, "127.0.0.1:0") as server:
            loop = asyncio.get_running_loop()
            sock = socket.socket()
            sock.setblocking(False)
            await loop.sock_connect(sock, ("127.0.0.1", server.address.port))
            frames = b"".join(encode_frame(0, b"m%d" % i) for i in range(50))
            await loop.sock_sendall(sock, encode_hello(1 << 20) + frames)
            want = 12 + sum(8 + n for n in [7] + [len(b"M%d" % i) for i in range(50)])
            got = b""
            async with asyncio.timeout(5):
                while len(got) < want:
                    got += await loop.sock_recv(sock, 65536)
            sock.close()
            return got

    got = arun(main())
    payloads = []
    pos = 12
    while pos < len(got):
        length, _word = HEAD.unpack_from(got, pos)
        payloads.append(got[pos + 8 : pos + 8 + length])
        pos += 8 + length
    assert payloads == [b"welcome"] + [b"M%d" % i for i in range(50)]
    assert handler.reads[0] == 50, "every frame of the first segment is one callback"


def test_a_raising_callback_closes_only_its_connection(arun) -> None:
    handler = Upper()

    async def main() -> None:
        async with (
            wirekit.serve(handler, "127.0.0.1:0") as server,
            wirekit.connect(server.address) as bad,
            wirekit.connect(server.address) as good,
        ):
            assert await bad.recv() == b"welcome"
            assert await good.recv() == b"welcome"
            await bad.send(b"boom")
            try:
                await bad.recv()
            except ConnectionClosed as exc:
                assert exc.code == ErrorCode.INTERNAL_ERROR
                assert exc.reason == "internal server error"
            else:
                raise AssertionError("the failing connection stayed open")
            await good.send(b"still here")
            assert await good.recv() == b"STILL HERE"

    arun(main())
