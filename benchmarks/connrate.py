"""(c) New connections per second.

One client process opens and closes connections, each time completing the
wirekit hello: with ``wirekit.sync.connect()`` + ``close()``, or with a raw
socket that sends the 12-byte client hello and reads (and checks) the 12-byte
server hello; one after another, or 32 in flight. The wirekit echo server runs
with a ``wirekit.MessageHandler`` (no task per connection; the headline rows)
and with a coroutine handler (extra rows). The reference is a bare asyncio
Protocol server on uvloop that closes every connection as it accepts it (the
client waits for that close).
"""

from __future__ import annotations

import asyncio
import selectors
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
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
    Runs,
    SectionResult,
    Side,
    Target,
    compare,
    format_number,
    interleaved,
    median,
    ready,
    recv_exactly,
    report,
    run_pair,
    serve_wirekit_echo,
    split_placement,
)

KEY = "c"
TITLE = "(c) New connections per second"


def client_hello() -> bytes:
    """The 12-byte hello a wirekit client sends with the default limits."""
    from wirekit.limits import DEFAULT_LIMITS
    from wirekit.proto.frames import encode_hello

    return encode_hello(DEFAULT_LIMITS.max_frame_size)


def server_hello() -> bytes:
    """The 12-byte hello a wirekit server with the default limits answers with
    (the client's, with the server flag set: protocol.md §2)."""
    from wirekit.limits import DEFAULT_LIMITS
    from wirekit.proto.frames import Role, encode_hello

    return encode_hello(DEFAULT_LIMITS.max_frame_size, role=Role.SERVER)


# -- servers (worker side) ---------------------------------------------------------------


def serve_wirekit(handler: str) -> None:
    """wirekit echo server, limits at their defaults; ``handler`` is CALLBACK or
    COROUTINE (see common)."""
    serve_wirekit_echo(handler)


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


def _timed(port: int, n: int, once: Callable[[int], bool]) -> None:
    """Warm up, then time ``n`` calls of ``once(port)``; each returns True when its
    connection did what it should (a wrong reply counts as failed)."""
    for _ in range(min(100, n)):
        once(port)
    failed = 0
    start = time.perf_counter()
    for _ in range(n):
        failed += not once(port)
    elapsed = time.perf_counter() - start
    report(n=n, seconds=elapsed, per_s=(n - failed) / elapsed, failed=failed)


def client_sync(port: int, n: int) -> None:
    """``wirekit.sync.connect()`` (which completes the hello or raises) then ``close()``
    (CLOSE frames both ways)."""
    import wirekit.sync
    from wirekit.proto import State

    addr = f"{HOST}:{port}"

    def once(_: int) -> bool:
        conn = wirekit.sync.connect(addr, connect_timeout=10)
        opened = conn.proto.state is State.OPEN  # both hellos are done
        conn.close()
        return opened

    _timed(port, n, once)


def client_raw_hello(port: int, n: int) -> None:
    """Raw socket: send the 12-byte hello, read the 12-byte server hello and check
    it, close."""
    hello = client_hello()
    expected = server_hello()
    reply = bytearray(len(hello))

    def once(p: int) -> bool:
        with socket.create_connection((HOST, p), timeout=10) as sock:
            sock.sendall(hello)
            recv_exactly(sock, reply)
        return reply == expected

    _timed(port, n, once)


def client_raw_eof(port: int, n: int) -> None:
    """Raw socket: connect and wait for the server to close."""

    def once(p: int) -> bool:
        with socket.create_connection((HOST, p), timeout=10) as sock:
            while sock.recv(64):
                pass
        return True

    _timed(port, n, once)


def client_parallel(port: int, n: int, inflight: int, hello: bool) -> None:
    """Non-blocking raw sockets, ``inflight`` at a time: with ``hello`` each sends the
    12-byte hello and closes once the 12-byte reply is in (and equals the expected
    server hello), else each waits for the server's close. Measures what the server
    sustains rather than one round trip after another."""
    request = client_hello() if hello else b""
    expected = server_hello() if hello else b""
    want = len(request)
    sel = selectors.DefaultSelector()
    counts = {"started": 0, "done": 0, "failed": 0}

    def start() -> None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setblocking(False)
        sock.connect_ex((HOST, port))
        sel.register(sock, selectors.EVENT_WRITE, [False, b""])
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
        state[1] += data
        if not data:
            finish(sock, state[1] == expected)
        elif want and len(state[1]) >= want:
            finish(sock, state[1] == expected)  # the server's hello, nothing else

    begin = time.perf_counter()
    for _ in range(min(inflight, n)):
        start()
    while counts["done"] + counts["failed"] < n:
        events = sel.select(10.0)
        if not events:
            raise SystemExit(f"stalled: nothing happened for 10 s ({counts})")
        for key, _ in events:
            step(key.fileobj, key.data)  # type: ignore[arg-type]
    elapsed = time.perf_counter() - begin
    report(
        n=n,
        seconds=elapsed,
        per_s=counts["done"] / elapsed,
        failed=counts["failed"],
        inflight=inflight,
    )


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
    handler: str = ""  # the wirekit server's handler kind; "" for the bare reference

    @property
    def server_kwargs(self) -> dict[str, Any]:
        return {"handler": self.handler} if self.handler else {}


SEQ = "one at a time"
PAR = f"{INFLIGHT} in flight"
WK_SERVER = "connrate.serve_wirekit"
BARE_SERVER = "connrate.serve_bare"
PARALLEL = "connrate.client_parallel"
BARE_LABEL = "bare uvloop Protocol (accept+close)"
# (client label, slug, case, client function, its kwargs, the bare reference's slug)
CLIENTS = (
    ("sync connect()+close()", "sync", SEQ, "connrate.client_sync", (), "bare"),
    ("raw hello+close", "raw", SEQ, "connrate.client_raw_hello", (), "bare"),
    (
        "raw hello+close",
        "par",
        PAR,
        PARALLEL,
        (("inflight", INFLIGHT), ("hello", True)),
        "bare-par",
    ),
)


def _wirekit(handler: str) -> list[tuple[Variant, str]]:
    """One variant per client against a wirekit server with ``handler``, each with
    the slug of its reference."""
    short = "cb" if handler == CALLBACK else "co"
    return [
        (
            Variant(
                f"{HANDLER_LABELS[handler]}, {label}",
                f"wk-{short}-{slug}",
                case,
                WK_SERVER,
                client,
                kwargs,
                handler,
            ),
            ref,
        )
        for label, slug, case, client, kwargs, ref in CLIENTS
    ]


# The MessageHandler server carries the target (wirekit's fastest server API); the
# coroutine-handler server gives extra rows without a target.
HEADLINE = _wirekit(CALLBACK)
EXTRA = _wirekit(COROUTINE)
BARE = (
    Variant(BARE_LABEL, "bare", SEQ, BARE_SERVER, "connrate.client_raw_eof"),
    Variant(
        BARE_LABEL,
        "bare-par",
        PAR,
        BARE_SERVER,
        PARALLEL,
        (("inflight", INFLIGHT), ("hello", False)),
    ),
)
VARIANTS = (*(v for v, _ in HEADLINE), *(v for v, _ in EXTRA), *BARE)


def _rate(variant: Variant, run: int, *, placement: Placement, n: int) -> float:
    result = run_pair(
        f"c-{variant.slug}-{run}",
        placement,
        Side(variant.server, variant.server_kwargs),
        Side(variant.client, {"n": n, **dict(variant.kwargs)}),
    )
    if result.get("failed"):
        raise BenchError(
            f"{result['failed']} of {n} connections failed "
            "(no connection, or a reply other than the server hello)"
        )
    return float(result["per_s"])


def _figure(variant: Variant, placement: Placement, n: int, runs: Runs[float]) -> Figure:
    value = median(runs.values) if not runs.note else None
    return Figure(
        variant.label,
        variant.case,
        "connections",
        "conn/s",
        value,
        placement.label,
        runs.values,
        runs.note,
        {"n": n, "client": variant.client},
    )


def run(cfg: Config) -> SectionResult:
    result = SectionResult(KEY, TITLE)
    placement = split_placement()
    n = cfg.count(10_000, 5_000)
    runs = interleaved(VARIANTS, cfg.repeats, partial(_rate, placement=placement, n=n))
    figures = {v.slug: _figure(v, placement, n, runs[v]) for v in VARIANTS}
    result.figures += figures.values()
    target = Target(">=", 10_000, absolute=True, unit="/s")
    for pairs, goal in ((HEADLINE, target), (EXTRA, None)):
        for variant, ref in pairs:
            fig = figures[variant.slug]
            what = f"new conn/s, {fig.tool.removeprefix('wirekit ')}, {fig.case}"
            result.rows.append(compare(what, fig, figures[ref], goal))
    for (head, _), (extra, _) in zip(HEADLINE, EXTRA, strict=True):
        fast, slow = figures[head.slug].value, figures[extra.slug].value
        if fast is not None and slow is not None and slow > fast:
            result.notes.append(
                f"In this run the coroutine handler ({format_number(slow)} conn/s) beat the "
                f"MessageHandler ({format_number(fast)} conn/s) for '{head.label}', "
                f"{head.case}."
            )
    result.notes += [
        f"{n:,} connections per run from one client process; median of {cfg.repeats} "
        "run(s). 'one at a time': blocking connect, hello, close, repeat (latency-bound: "
        f"each connection is two or three round trips). '{PAR}': non-blocking raw "
        "sockets, a new one opened as each finishes (what the server sustains).",
        "Every wirekit connection completes the hello: the sync client's connect() "
        "returns only once both 12-byte hellos are exchanged (the client checks the "
        "connection is open before close()); the raw clients send the client hello and "
        "count a connection only if the reply is exactly the 12-byte server hello (a "
        "refusal line or a short read counts as failed, and any failure voids the run).",
        "Headline rows (with the target): the server is a wirekit.MessageHandler echo "
        "(no task per connection). Extra rows (no target): the same server with a "
        "coroutine handler (`async for m in conn: await conn.send(m)`, one task per "
        "connection). Limits at their defaults.",
        "The bare reference closes each connection as it accepts it; its client waits "
        "for that close. Ratio = wirekit / bare; the target is the wirekit rate itself.",
    ]
    return result
