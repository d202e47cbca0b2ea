"""Frames leave in the order they were written: large payloads queued
uncopied, small frames queued behind them, and the control frames (a PONG,
a WINDOW) written in answer to what arrives must never overtake each other."""

from __future__ import annotations

import os

import pytest

import wirekit
from wirekit.aio import Connection
from wirekit.proto import FrameType, MessageCodec, Ping
from wirekit.proto.frames import encode_frame

BIG = 64 * 1024  # past the size that is queued uncopied (16 KiB)


@pytest.fixture(params=["uvloop", "asyncio"])
def loop_kind(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    if request.param == "asyncio":
        monkeypatch.setenv("WIREKIT_NO_UVLOOP", "1")
    else:
        pytest.importorskip("uvloop")
        monkeypatch.delenv("WIREKIT_NO_UVLOOP", raising=False)
    return str(request.param)


def test_a_ping_arriving_mid_turn_does_not_reorder_queued_frames(arun, loop_kind: str) -> None:
    big = os.urandom(BIG)
    ping = encode_frame(FrameType.MESSAGE, MessageCodec().encode(Ping(7)))

    async def handler(conn: Connection) -> None:
        await conn.recv()
        conn.write(b"first")  # the turn's first write leaves at once
        conn.write(big)  # queued uncopied until the turn ends
        conn.write(b"after")  # queued behind it
        # A PING read in this same turn (as the transport would hand it over):
        # its PONG goes out with everything queued, after it.
        conn.data_received(ping)
        await conn.recv()

    async def main() -> None:
        async with (
            wirekit.serve(handler, "127.0.0.1:0") as server,
            wirekit.connect(str(server.address)) as conn,
        ):
            await conn.send(b"go")
            got = [await conn.recv() for _ in range(3)]
            assert got == [b"first", big, b"after"]

    arun(main())


def test_echoing_mixed_sizes_keeps_their_order(arun, loop_kind: str) -> None:
    """The stress form: small and large frames echoed while more arrive (the
    order used to break in about one run of ten before the fix)."""

    async def echo(conn: Connection) -> None:
        async for item in conn:
            await conn.send(item)

    async def main() -> None:
        async with wirekit.serve(echo, "127.0.0.1:0") as server:
            for _ in range(20):
                async with wirekit.connect(str(server.address)) as conn:
                    sizes = (0, 1, 100, 16384, 65536, 300_000) * 5
                    payloads = [os.urandom(n) for n in sizes]
                    for data in payloads:
                        await conn.send(data)
                    got = [await conn.recv() for _ in payloads]
                    assert [len(g) for g in got] == list(sizes)
                    assert got == payloads

    arun(main())
