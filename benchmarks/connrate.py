"""(c) New connections per second.

One client process opens and closes connections one after another, each time
completing the wirekit hello: with ``wirekit.sync.connect()`` + ``close()``, or
with a raw socket that sends the 12-byte client hello and reads the 12-byte
server hello. The reference is a bare asyncio Protocol server on uvloop that
closes every connection as it accepts it (the client waits for that close).
"""

from __future__ import annotations

import asyncio
import selectors
import socket
import time
from dataclasses import dataclass
from functools import partial
from typing import Any

from .common import (
    HOST,
    BenchError,
    Config,
    Figure,
    Placement,
    Runs,
    SectionResult,
    Side,
    Target,
    compare,
    interleaved,
    median,
    ready,
    recv_exactly,
    report,
    run_pair,
    split_placement,
)

KEY = "c"
TITLE = "(c) New connections per second"


def client_hello() -> bytes:
    from wirekit.limits import DEFAULT_LIMITS
    from wirekit.proto.frames import encode_hello

    return encode_hello(DEFAULT_LIMITS.max_frame_size)


# -- servers (worker side) ---------------------------------------------------------------


def serve_wirekit() -> None:
    """wirekit echo server, limits at their defaults."""
    import wirekit
    from wirekit.aio import run

    async def handler(conn: wirekit.Connection) -> None:
        async for msg in conn:
            await conn.send(msg)  # type: ignore[arg-type]

    async def main() -> None:
        async with wirekit.serve(handler, f"{HOST}:0") as server:
            ready(server.address.port)
            await server.serve_forever()

    run(main())


class _CloseAtOnce(asyncio.Protocol):
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        transport.close()


def serve_bare() -> None:
    """A bare asyncio Protocol server on uvloop that accepts and closes."""
    import uvloop

    async def main() -> None:
        loop = asyncio.get_running_loop()
        server = await loop.create_server(_CloseAtOnce, HOST, 0, backlog=4096)
        ready(server.sockets[0].getsockname()[1])
        await server.serve_forever()

    uvloop.run(main())


# -- clients (worker side) ----------------------------------------------------------------


def _timed(port: int, n: int, once: Any) -> None:
    for _ in range(min(100, n)):  # warm-up
        once(port)
    start = time.perf_counter()
    for _ in range(n):
        once(port)
    elapsed = time.perf_counter() - start
    report(n=n, seconds=elapsed, per_s=n / elapsed)


def client_sync(port: int, n: int) -> None:
    """``wirekit.sync.connect()`` then ``close()`` (CLOSE frames both ways)."""
    import wirekit.sync

    addr = f"{HOST}:{port}"

    def once(_: int) -> None:
        wirekit.sync.connect(addr, timeout=10).close()

    _timed(port, n, once)


def client_raw_hello(port: int, n: int) -> None:
    """Raw socket: send the 12-byte hello, read the 12-byte server hello, close."""
    hello = client_hello()
    reply = bytearray(len(hello))

    def once(p: int) -> None:
        with socket.create_connection((HOST, p), timeout=10) as sock:
            sock.sendall(hello)
            recv_exactly(sock, reply)

    _timed(port, n, once)


def client_raw_eof(port: int, n: int) -> None:
    """Raw socket: connect and wait for the server to close."""

    def once(p: int) -> None:
        with socket.create_connection((HOST, p), timeout=10) as sock:
            while sock.recv(64):
                pass

    _timed(port, n, once)


def client_parallel(port: int, n: int, inflight: int, hello: bool) -> None:
    """Non-blocking raw sockets, ``inflight`` at a time: with ``hello`` each sends the
    12-byte hello and closes after the 12-byte reply, else each waits for the
    server's close. Measures what the server sustains rather than one round trip
    after another."""
    request = client_hello() if hello else b""
    want = len(request)
    sel = selectors.DefaultSelector()
    counts = {"started": 0, "done": 0, "failed": 0}

    def start() -> None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setblocking(False)
        sock.connect_ex((HOST, port))
        sel.register(sock, selectors.EVENT_WRITE, [False, 0])
        counts["started"] += 1

    def finish(sock: socket.socket, ok: bool) -> None:
        sel.unregister(sock)
        sock.close()
        counts["done" if ok else "failed"] += 1
        if counts["started"] < n:
            start()

    def step(sock: socket.socket, state: list[Any]) -> None:
        if not state[0]:  # connected (or failed)
            if sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR):
                finish(sock, False)
                return
            if request:
                sock.send(request)
            state[0] = True
            sel.modify(sock, selectors.EVENT_READ, state)
            return
        try:
            data = sock.recv(64)
        except OSError:
            finish(sock, False)
            return
        state[1] += len(data)
        if not data:
            finish(sock, state[1] >= want)
        elif want and state[1] >= want:
            finish(sock, True)

    begin = time.perf_counter()
    for _ in range(min(inflight, n)):
        start()
    while counts["done"] + counts["failed"] < n:
        for key, _ in sel.select(10.0):
            step(key.fileobj, key.data)  # type: ignore[arg-type]
    elapsed = time.perf_counter() - begin
    report(n=n, seconds=elapsed, per_s=counts["done"] / elapsed, failed=counts["failed"],
           inflight=inflight)


# -- driver --------------------------------------------------------------------------------

INFLIGHT = 32


@dataclass(frozen=True)
class Variant:
    label: str
    slug: str
    case: str
    server: str
    client: str
    kwargs: tuple[tuple[str, Any], ...] = ()


SEQ = "one at a time"
PAR = f"{INFLIGHT} in flight"
WK_SERVER = "connrate.serve_wirekit"
BARE_SERVER = "connrate.serve_bare"
PARALLEL = "connrate.client_parallel"
BARE_LABEL = "bare uvloop Protocol (accept+close)"
VARIANTS = (
    Variant("wirekit, sync connect()+close()", "wk-sync", SEQ, WK_SERVER, "connrate.client_sync"),
    Variant("wirekit, raw hello+close", "wk-raw", SEQ, WK_SERVER, "connrate.client_raw_hello"),
    Variant(BARE_LABEL, "bare", SEQ, BARE_SERVER, "connrate.client_raw_eof"),
    Variant("wirekit, raw hello+close", "wk-par", PAR, WK_SERVER, PARALLEL,
            (("inflight", INFLIGHT), ("hello", True))),
    Variant(BARE_LABEL, "bare-par", PAR, BARE_SERVER, PARALLEL,
            (("inflight", INFLIGHT), ("hello", False))),
)


def _rate(variant: Variant, run: int, *, placement: Placement, n: int) -> float:
    result = run_pair(
        f"c-{variant.slug}-{run}",
        placement,
        Side(variant.server),
        Side(variant.client, {"n": n, **dict(variant.kwargs)}),
    )
    if result.get("failed"):
        raise BenchError(f"{result['failed']} of {n} connections failed")
    return float(result["per_s"])


def _figure(variant: Variant, placement: Placement, n: int, runs: Runs[float]) -> Figure:
    value = median(runs.values) if not runs.note else None
    return Figure(variant.label, variant.case, "connections", "conn/s", value, placement.label,
                  runs.values, runs.note, {"n": n, "client": variant.client})


def run(cfg: Config) -> SectionResult:
    result = SectionResult(KEY, TITLE)
    placement = split_placement()
    n = cfg.count(10_000, 5_000)
    runs = interleaved(VARIANTS, cfg.repeats, partial(_rate, placement=placement, n=n))
    figures = {v.slug: _figure(v, placement, n, runs[v]) for v in VARIANTS}
    result.figures += figures.values()
    target = Target(">=", 10_000, absolute=True, unit="/s")
    for slug, ref in (("wk-sync", "bare"), ("wk-raw", "bare"), ("wk-par", "bare-par")):
        fig = figures[slug]
        what = f"new conn/s, {fig.tool.removeprefix('wirekit, ')}, {fig.case}"
        result.rows.append(compare(what, fig, figures[ref], target))
    result.notes += [
        f"{n:,} connections per run from one client process; median of {cfg.repeats} "
        "run(s). 'one at a time': blocking connect, hello, close, repeat (latency-bound: "
        f"each connection is two or three round trips). '{PAR}': non-blocking raw "
        "sockets, a new one opened as each finishes (what the server sustains).",
        "The bare reference closes each connection as it accepts it; its client waits "
        "for that close. Ratio = wirekit / bare; the target is the wirekit rate itself.",
    ]
    return result
