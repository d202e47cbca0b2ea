"""(d) Memory per idle connection, with 5,000 connections open.

The server's RSS is read from /proc before any client connects and again after
all clients have connected and handshaken (each client socket sends the
12-byte wirekit hello and reads 12 bytes back). Servers: a wirekit echo server
written as a ``wirekit.MessageHandler`` (no task per connection; the headline
rows) and as a coroutine handler (one task per connection; extra rows), a bare
asyncio Protocol echo server on uvloop, and an asyncio streams echo server on
uvloop. Both processes raise their open-file limit.
"""

from __future__ import annotations

import asyncio
import socket
import time
from dataclasses import dataclass
from typing import Any

from .common import (
    CALLBACK,
    COROUTINE,
    HANDLER_LABELS,
    HOST,
    BenchError,
    Config,
    Figure,
    Placement,
    SectionResult,
    Target,
    announce,
    compare,
    median,
    raise_nofile,
    ready,
    recv_exactly,
    rss_bytes,
    serve_wirekit_echo,
    split_placement,
    worker,
)

KEY = "d"
TITLE = "(d) Memory per idle connection"
SETTLE = 0.5


# -- servers (worker side) ------------------------------------------------------------------


def serve_wirekit(handler: str) -> None:
    """wirekit echo server (``handler`` is CALLBACK or COROUTINE, see common) with
    Limits(max_connections_per_ip=10_000), other limits at their defaults."""
    raise_nofile()
    serve_wirekit_echo(handler, max_connections_per_ip=10_000)


class _Echo(asyncio.Protocol):
    __slots__ = ("transport",)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport: asyncio.Transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.transport.write(data)


def serve_bare() -> None:
    """A bare asyncio Protocol echo server on uvloop."""
    raise_nofile()
    import uvloop

    async def main() -> None:
        loop = asyncio.get_running_loop()
        server = await loop.create_server(_Echo, HOST, 0, backlog=4096)
        ready(server.sockets[0].getsockname()[1])
        await server.serve_forever()

    uvloop.run(main())


def serve_streams() -> None:
    """An asyncio streams echo server on uvloop (one task per connection)."""
    raise_nofile()
    import uvloop

    async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
        writer.close()

    async def main() -> None:
        server = await asyncio.start_server(echo, HOST, 0, backlog=4096)
        ready(server.sockets[0].getsockname()[1])
        await server.serve_forever()

    uvloop.run(main())


# -- client (worker side) -----------------------------------------------------------------------


def client_hold(port: int, n: int) -> None:
    """Open ``n`` connections, each sending the hello and reading 12 bytes; hold them."""
    raise_nofile()
    from .connrate import client_hello

    hello = client_hello()
    reply = bytearray(len(hello))
    held: list[socket.socket] = []
    for _ in range(n):
        sock = socket.create_connection((HOST, port), timeout=30)
        sock.sendall(hello)
        recv_exactly(sock, reply)
        held.append(sock)
    announce("HELD", len(held))
    time.sleep(600)


# -- driver -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Variant:
    label: str
    slug: str
    server: str
    handler: str = ""  # the wirekit server's handler kind; "" for the references

    @property
    def server_kwargs(self) -> dict[str, Any]:
        return {"handler": self.handler} if self.handler else {}


# The MessageHandler server carries the target (wirekit's leanest server API); the
# coroutine-handler server gives extra rows without a target.
WIREKIT = Variant(
    f"{HANDLER_LABELS[CALLBACK]} echo server", "wk-cb", "idlemem.serve_wirekit", CALLBACK
)
WIREKIT_TASK = Variant(
    f"{HANDLER_LABELS[COROUTINE]} echo server", "wk-co", "idlemem.serve_wirekit", COROUTINE
)
BARE = Variant("bare uvloop Protocol", "bare", "idlemem.serve_bare")
STREAMS = Variant("asyncio streams on uvloop", "streams", "idlemem.serve_streams")
VARIANTS = (WIREKIT, WIREKIT_TASK, BARE, STREAMS)


def _once(variant: Variant, placement: Placement, n: int, run: int) -> float:
    name = f"d-{variant.slug}-{run}"
    server = worker(f"{name}-server", placement.server_cpu, variant.server, **variant.server_kwargs)
    try:
        port = server.ready()
        time.sleep(SETTLE)
        before = rss_bytes(server.pid)
        client = worker(
            f"{name}-client", placement.client_cpu, "idlemem.client_hold", port=port, n=n
        )
        try:
            held = int(client.line("HELD", 120, watch=server))
            time.sleep(SETTLE)
            after = rss_bytes(server.pid)
        finally:
            client.stop()
    finally:
        server.stop()
    if held != n:
        raise BenchError(f"{name}: held {held} of {n} connections")
    return (after - before) / n


def _measure(variant: Variant, placement: Placement, n: int, repeats: int) -> Figure:
    values: list[float] = []
    note = ""
    for i in range(repeats):
        try:
            values.append(_once(variant, placement, n, i))
        except BenchError as exc:
            note = f"failed: {exc}"
            break
    value = median(values) if not note else None
    return Figure(
        variant.label,
        f"{n:,} idle",
        "RSS growth per connection",
        "B/conn",
        value,
        placement.label,
        values,
        note,
        {"n": n},
    )


def run(cfg: Config) -> SectionResult:
    result = SectionResult(KEY, TITLE)
    placement = split_placement()
    n = 5_000
    repeats = 1 if cfg.quick else 2
    figures = {v.slug: _measure(v, placement, n, repeats) for v in VARIANTS}
    result.figures += figures.values()
    target = Target("<=", 2048, absolute=True, unit=" B/conn")
    for variant, goal in ((WIREKIT, target), (WIREKIT_TASK, None)):
        short = HANDLER_LABELS[variant.handler].removeprefix("wirekit ")
        for ref in (BARE, STREAMS):
            result.rows.append(
                compare(
                    f"RSS per idle conn, {short}, vs {ref.label}",
                    figures[variant.slug],
                    figures[ref.slug],
                    goal,
                    lower_is_better=True,
                )
            )
    result.notes += [
        f"(server RSS after {n:,} handshaken connections - RSS before) / {n:,}; median of "
        f"{repeats} run(s). Kernel socket memory is not part of RSS and is not counted.",
        "Headline rows (with the target): the wirekit server is a wirekit.MessageHandler "
        "echo (no asyncio Task per connection). Extra rows (no target): the same server "
        "with a coroutine handler (`async for m in conn: await conn.send(m)`, one Task "
        "per connection). Both run with Limits(max_connections_per_ip=10000), other "
        "limits at their defaults.",
    ]
    return result
