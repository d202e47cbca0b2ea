"""(b) 64 B request/reply round trip, p50 and p99.

Every client sends one 64 B request, waits for the 64 B reply, and times each
round trip with ``perf_counter_ns``. Compared: a wirekit echo server written as
a ``wirekit.MessageHandler`` (callbacks, no task per connection; the headline
rows) and as a coroutine handler (``async for m in conn: await conn.send(m)``;
extra rows), each with the sync client and with the async client, against the
floor: a plain blocking socket pair (4-byte length + 64 B payload each way,
TCP_NODELAY on both ends). Measured with both processes on one CPU and with
server and client on two.
"""

from __future__ import annotations

import socket
import struct
import time
from dataclasses import dataclass
from functools import partial
from typing import Any

from .common import (
    CALLBACK,
    COROUTINE,
    HANDLER_LABELS,
    HOST,
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
    percentile,
    ready,
    recv_exactly,
    report,
    run_pair,
    serve_wirekit_echo,
    shared_placement,
    split_placement,
)

KEY = "b"
TITLE = "(b) 64 B request/reply round trip"
SIZE = 64
FRAME = struct.Struct(">I")


def _summary(samples_ns: list[int]) -> dict[str, Any]:
    samples = sorted(samples_ns)
    return {
        "n": len(samples),
        "p50_us": percentile(samples, 50) / 1000,
        "p99_us": percentile(samples, 99) / 1000,
        "p999_us": percentile(samples, 99.9) / 1000,
        "min_us": samples[0] / 1000,
        "mean_us": sum(samples) / len(samples) / 1000,
    }


# -- servers (worker side) ------------------------------------------------------------


def serve_wirekit(handler: str) -> None:
    """wirekit echo server; ``handler`` is CALLBACK or COROUTINE (see common)."""
    serve_wirekit_echo(handler)


def serve_blocking() -> None:
    """The floor: a blocking socket server echoing 4-byte length + payload frames."""
    listener = socket.create_server((HOST, 0))
    ready(listener.getsockname()[1])
    while True:
        conn, _ = listener.accept()
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        buf = bytearray(FRAME.size + SIZE)
        try:
            while True:
                recv_exactly(conn, buf)
                conn.sendall(buf)
        except ConnectionError:
            conn.close()


# -- clients (worker side) --------------------------------------------------------------


def client_wirekit_sync(port: int, n: int, warmup: int) -> None:
    import wirekit.sync

    payload = b"x" * SIZE
    samples: list[int] = []
    clock = time.perf_counter_ns
    with wirekit.sync.connect(f"{HOST}:{port}", connect_timeout=30) as conn:
        for i in range(warmup + n):
            t0 = clock()
            conn.send(payload)
            conn.recv()
            t1 = clock()
            if i >= warmup:
                samples.append(t1 - t0)
    report(**_summary(samples))


def client_wirekit_async(port: int, n: int, warmup: int) -> None:
    import wirekit
    from wirekit.aio import run

    async def main() -> list[int]:
        payload = b"x" * SIZE
        samples: list[int] = []
        clock = time.perf_counter_ns
        async with wirekit.connect(f"{HOST}:{port}", timeout=30) as conn:
            for i in range(warmup + n):
                t0 = clock()
                await conn.send(payload)
                await conn.recv()
                t1 = clock()
                if i >= warmup:
                    samples.append(t1 - t0)
        return samples

    report(**_summary(run(main())))


def client_blocking(port: int, n: int, warmup: int) -> None:
    request = FRAME.pack(SIZE) + b"x" * SIZE
    reply = bytearray(len(request))
    samples: list[int] = []
    clock = time.perf_counter_ns
    sock = socket.create_connection((HOST, port))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    for i in range(warmup + n):
        t0 = clock()
        sock.sendall(request)
        recv_exactly(sock, reply)
        t1 = clock()
        if i >= warmup:
            samples.append(t1 - t0)
    sock.close()
    report(**_summary(samples))


# -- driver -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Variant:
    label: str
    slug: str
    server: str
    client: str
    handler: str = ""  # the wirekit server's handler kind; "" for the floor

    @property
    def client_kind(self) -> str:
        return "sync client" if self.client.endswith("_sync") else "async client"


FLOOR = Variant("blocking sockets", "floor", "rtt.serve_blocking", "rtt.client_blocking")


def _wirekit(handler: str, client: str) -> Variant:
    kind = "sync" if client == "sync" else "async"
    return Variant(
        f"{HANDLER_LABELS[handler]} server + {kind} client",
        f"wk-{'cb' if handler == CALLBACK else 'co'}-{kind}",
        "rtt.serve_wirekit",
        f"rtt.client_wirekit_{kind}",
        handler,
    )


# The first two carry the target (the MessageHandler is wirekit's fastest server
# API); the coroutine-handler pair are extra rows without a target.
HEADLINE = (_wirekit(CALLBACK, "sync"), _wirekit(CALLBACK, "async"))
EXTRA = (_wirekit(COROUTINE, "sync"), _wirekit(COROUTINE, "async"))
VARIANTS = (*HEADLINE, *EXTRA, FLOOR)


def _latency(variant: Variant, run: int, *, placement: Placement, n: int) -> dict[str, Any]:
    server_kwargs = {"handler": variant.handler} if variant.handler else {}
    return run_pair(
        f"b-{variant.slug}-{placement.short.replace(' ', '')}-{run}",
        placement,
        Side(variant.server, server_kwargs),
        Side(variant.client, {"n": n, "warmup": max(200, n // 20)}),
    )


def _figures(
    variant: Variant, placement: Placement, n: int, runs: Runs[dict[str, Any]]
) -> tuple[Figure, Figure]:
    figures = []
    for key, case in (("p50_us", "p50"), ("p99_us", "p99")):
        values = [float(r[key]) for r in runs.values]
        value = median(values) if not runs.note else None
        extra = {"n": n, "runs": runs.values}
        figures.append(
            Figure(
                variant.label,
                case,
                "round trip",
                "µs",
                value,
                placement.label,
                values,
                runs.note,
                extra,
            )
        )
    return figures[0], figures[1]


def run(cfg: Config) -> SectionResult:
    result = SectionResult(KEY, TITLE)
    n = cfg.count(20_000, 10_000)
    for placement in (shared_placement(), split_placement()):
        runs = interleaved(VARIANTS, cfg.repeats, partial(_latency, placement=placement, n=n))
        measured = {v.slug: _figures(v, placement, n, runs[v]) for v in VARIANTS}
        result.figures += [fig for pair in measured.values() for fig in pair]
        floor_p50, floor_p99 = measured[FLOOR.slug]
        for variant in (*HEADLINE, *EXTRA):
            p50, p99 = measured[variant.slug]
            what = (
                f"64 B RTT {{}}, {HANDLER_LABELS[variant.handler].removeprefix('wirekit ')}"
                f" + {variant.client_kind}, {placement.short}"
            )
            target = Target("<=", 1.3) if variant in HEADLINE else None
            result.rows.append(compare(what.format("p50"), p50, floor_p50, target, True))
            result.rows.append(compare(what.format("p99"), p99, floor_p99, None, True))
        for head, extra in zip(HEADLINE, EXTRA, strict=True):
            fast, slow = measured[head.slug][0].value, measured[extra.slug][0].value
            if fast is not None and slow is not None and slow < fast:
                result.notes.append(
                    f"In this run the coroutine handler's p50 ({format_number(slow)} µs) beat "
                    f"the MessageHandler's ({format_number(fast)} µs) with the "
                    f"{head.client_kind}, {placement.short}."
                )
    result.notes += [
        f"{n:,} timed round trips per run after a warm-up; median of {cfg.repeats} run(s). "
        "Ratio = wirekit / blocking floor (lower is better).",
        "Headline rows (with the target): the echo server is a wirekit.MessageHandler "
        "(message_received does conn.write(message); no task per connection, the reply "
        "leaves in the same loop turn). Extra rows (no target): the same server with a "
        "coroutine handler, `async for m in conn: await conn.send(m)`. The sync client is "
        "`wirekit.sync.connect()` with send() + recv() (its default timeout=None: plain "
        "blocking calls); the async client is `wirekit.connect()` with await send() + "
        "await recv().",
        "Floor: blocking client and blocking server, 4-byte length + 64 B each way, "
        "one sendall and exact recv_into per direction, TCP_NODELAY on both ends.",
    ]
    return result
