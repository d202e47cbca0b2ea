"""A handler that raises: its client gets ERROR INTERNAL_ERROR "internal server
error" (no traceback or exception text on the wire), and the server goes on."""

from __future__ import annotations

import asyncio
import logging
import struct

import pytest

import wirekit
from wirekit import ConnectionClosed, ErrorCode
from wirekit.aio import Connection

HELLO = b"WKIT\x01\x00\x00\x00" + (1 << 20).to_bytes(4, "big")
SERVER_HELLO = b"WKIT\x01\x01\x00\x00" + (1 << 20).to_bytes(4, "big")  # flag 0x01: the server's
SECRET = "database password is hunter2"


async def handler(conn: Connection) -> None:
    async for item in conn:
        if item == b"crash":
            raise RuntimeError(SECRET)
        await conn.send(item)  # type: ignore[arg-type]


def test_handler_exception_becomes_internal_error(
    arun, until, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR, logger="wirekit.server")

    async def main() -> None:
        async with wirekit.serve(handler, "127.0.0.1:0") as server:
            addr = str(server.address)
            bystander = await wirekit.connect(addr)
            await bystander.send(b"before")
            assert await bystander.recv() == b"before"

            async with wirekit.connect(addr) as victim:
                await victim.send(b"crash")
                with pytest.raises(ConnectionClosed) as info:
                    await victim.recv()
                assert info.value.code == ErrorCode.INTERNAL_ERROR
                assert info.value.reason == "internal server error"

            # The exact bytes on the wire: the server hello, one ERROR frame, EOF.
            reader, writer = await asyncio.open_connection("127.0.0.1", server.address.port)
            writer.write(HELLO + struct.pack(">II", 5, 0) + b"crash")
            async with asyncio.timeout(5):
                wire = await reader.read()
            writer.close()
            reason = b"internal server error"
            assert wire == SERVER_HELLO + struct.pack(">IIH", 2 + len(reason), 4 << 24, 15) + reason
            assert SECRET.encode() not in wire and b"Traceback" not in wire

            # Others are still served: the open connection and a new one.
            await bystander.send(b"after")
            assert await bystander.recv() == b"after"
            async with wirekit.connect(addr) as fresh:
                await fresh.send(b"fresh")
                assert await fresh.recv() == b"fresh"
            await bystander.close()
            await until(lambda: server.connections == 0, what="all connections closed")

    arun(main())
    # The details go to the server's log instead.
    failures = [r for r in caplog.records if "handler failed" in r.getMessage()]
    assert len(failures) == 2
    assert failures[0].exc_info is not None and SECRET in str(failures[0].exc_info[1])


def test_handler_that_returns_closes_the_connection_normally(arun) -> None:
    async def quick(conn: Connection) -> None:
        await conn.send(b"bye")

    async def main() -> None:
        async with wirekit.serve(quick, "127.0.0.1:0") as server:
            conn = await wirekit.connect(str(server.address))
            assert await conn.recv() == b"bye"
            with pytest.raises(ConnectionClosed) as info:
                await conn.recv()
            assert info.value.code == ErrorCode.NORMAL
            assert conn.closed

    arun(main())
