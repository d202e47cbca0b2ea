"""(a) One-way framed messages over one connection: 64 B, 1 KiB and 64 KiB.

The sender sends N messages as fast as it can; the receiver times from the
first message (or first batch) it receives to the last one, so the rate is the
receiver's: ``(N - first_batch) / (t_last - t_first)``.

Compared: the wirekit async API (``write_many`` + ``drain`` in chunks), the wirekit
sync client (``send_many`` / ``send``) into the same async receiver, pyzmq
PUSH/PULL, and the textbook ``socketserver.ThreadingTCPServer`` receiver with a
``struct.pack('i', len)`` header and a ``recv(1024)`` accumulation loop.
"""

from __future__ import annotations

import os
import socket
import socketserver
import struct
import threading
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
    report,
    run_pair,
    split_placement,
)

KEY = "a"
TITLE = "(a) One-way framed messages, one connection"

SIZES = (64, 1024, 64 * 1024)
FULL_COUNTS = {64: 1_000_000, 1024: 300_000, 64 * 1024: 20_000}
QUICK_COUNTS = {64: 400_000, 1024: 100_000, 64 * 1024: 8_000}
# Payloads this big go through the per-message direct write (no copy into a batch).
DIRECT = 16 * 1024
# Bytes per write_many()/send_many() call before the sender drains.
CHUNK_BYTES = 256 * 1024


def size_label(size: int) -> str:
    return f"{size // 1024} KiB" if size >= 1024 else f"{size} B"


def chunk_count(size: int) -> int:
    """Messages per batch: 1000 small ones, fewer big ones (about CHUNK_BYTES)."""
    return max(1, min(1000, CHUNK_BYTES // size))


# -- receivers (worker side) ---------------------------------------------------------


def _stats(n: int, first: int, t_first: float, t_last: float, last_size: int) -> dict[str, Any]:
    return {
        "n": n,
        "first_batch": first,
        "seconds": t_last - t_first,
        "msgs_per_s": (n - first) / (t_last - t_first) if t_last > t_first else None,
        "last_size": last_size,
    }


def recv_wirekit(n: int) -> None:
    """A wirekit server taking N messages on its first connection with recv_batch()."""
    import wirekit
    from wirekit.aio import run

    async def main() -> None:
        import asyncio

        done: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()

        async def handler(conn: wirekit.Connection) -> None:
            batch = await conn.recv_batch()
            t_first = time.perf_counter()
            first = count = len(batch)
            while count < n:
                batch = await conn.recv_batch()
                count += len(batch)
            t_last = time.perf_counter()
            last = batch[-1]
            size = len(last) if isinstance(last, bytes) else -1
            done.set_result(_stats(count, first, t_first, t_last, size))

        async with wirekit.serve(handler, f"{HOST}:0") as server:
            ready(server.address.port)
            report(**(await done))
            await asyncio.sleep(0.2)  # let the handler's CLOSE reach the sender

    run(main())


def recv_zmq(n: int) -> None:
    """A pyzmq PULL socket receiving N messages with recv()."""
    import zmq

    ctx = zmq.Context()
    sock = ctx.socket(zmq.PULL)
    port = sock.bind_to_random_port(f"tcp://{HOST}")
    ready(port)
    msg = sock.recv()
    t_first = time.perf_counter()
    for _ in range(n - 1):
        msg = sock.recv()
    t_last = time.perf_counter()
    report(**_stats(n, 1, t_first, t_last, len(msg)))
    sock.close(linger=0)
    ctx.term()


def recv_textbook(n: int) -> None:
    """``socketserver.ThreadingTCPServer`` with the classic length-prefix loop."""
    done = threading.Event()
    stats: dict[str, Any] = {}

    class Handler(socketserver.BaseRequestHandler):
        def handle(self) -> None:
            conn: socket.socket = self.request
            data = b""
            payload_size = struct.calcsize("i")
            count = 0
            t_first = 0.0
            frame = b""
            while count < n:
                while len(data) < payload_size:
                    packet = conn.recv(1024)
                    if not packet:
                        return
                    data += packet
                packed_msg_size = data[:payload_size]
                data = data[payload_size:]
                msg_size = struct.unpack("i", packed_msg_size)[0]
                while len(data) < msg_size:
                    packet = conn.recv(1024)
                    if not packet:
                        return
                    data += packet
                frame = data[:msg_size]
                data = data[msg_size:]
                count += 1
                if count == 1:
                    t_first = time.perf_counter()
            stats.update(_stats(n, 1, t_first, time.perf_counter(), len(frame)))
            done.set()

    server = socketserver.ThreadingTCPServer((HOST, 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    ready(server.server_address[1])
    done.wait()
    report(**stats)
    os._exit(0)


# -- senders (worker side) -----------------------------------------------------------

# Senders wait this long after connecting so the receiver is blocked in its first
# read when the first message leaves: otherwise the kernel and library buffers
# fill while the receiver is still starting its handler, and the receiver-side
# rate would count buffered messages as if they had just arrived.
SETTLE = 0.2


def send_wirekit_async(port: int, n: int, size: int) -> None:
    """wirekit.connect(): write_many() per batch (write() per big message), then drain()."""
    import wirekit
    from wirekit.aio import run

    async def main() -> None:
        import asyncio

        payload = b"x" * size
        per = chunk_count(size)
        chunk = [payload] * per
        async with wirekit.connect(f"{HOST}:{port}", timeout=30) as conn:
            await asyncio.sleep(SETTLE)
            sent = 0
            while sent < n:
                k = min(per, n - sent)
                if size >= DIRECT:
                    for _ in range(k):
                        conn.write(payload)
                else:
                    conn.write_many(chunk if k == per else chunk[:k])
                await conn.drain()
                sent += k

    run(main())


def send_wirekit_sync(port: int, n: int, size: int) -> None:
    """wirekit.sync.connect(): send_many() per batch, send() per big message."""
    import wirekit.sync

    payload = b"x" * size
    per = chunk_count(size)
    chunk = [payload] * per
    with wirekit.sync.connect(f"{HOST}:{port}", timeout=60) as conn:
        time.sleep(SETTLE)
        sent = 0
        while sent < n:
            k = min(per, n - sent)
            if size >= DIRECT:
                for _ in range(k):
                    conn.send(payload)
            else:
                conn.send_many(chunk if k == per else chunk[:k])
            sent += k


def send_zmq(port: int, n: int, size: int) -> None:
    import zmq

    payload = b"x" * size
    ctx = zmq.Context()
    sock = ctx.socket(zmq.PUSH)
    sock.setsockopt(zmq.LINGER, 30_000)
    sock.connect(f"tcp://{HOST}:{port}")
    time.sleep(SETTLE)
    for _ in range(n):
        sock.send(payload)
    sock.close()
    ctx.term()


def send_textbook(port: int, n: int, size: int) -> None:
    """The classic client: one ``sendall(struct.pack('i', len(data)) + data)`` per message."""
    data = b"x" * size
    sock = socket.create_connection((HOST, port))
    time.sleep(SETTLE)
    for _ in range(n):
        sock.sendall(struct.pack("i", len(data)) + data)
    sock.close()


# -- driver ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Tool:
    label: str
    slug: str
    receiver: str
    sender: str


TOOLS = (
    Tool("wirekit async", "wk-async", "oneway.recv_wirekit", "oneway.send_wirekit_async"),
    Tool("wirekit sync client", "wk-sync", "oneway.recv_wirekit", "oneway.send_wirekit_sync"),
    Tool("pyzmq PUSH/PULL", "zmq", "oneway.recv_zmq", "oneway.send_zmq"),
    Tool("textbook socketserver", "textbook", "oneway.recv_textbook", "oneway.send_textbook"),
)


def _rate(tool: Tool, run: int, *, size: int, n: int, placement: Placement) -> float:
    result = run_pair(
        f"a-{tool.slug}-{size}-{run}",
        placement,
        Side(tool.receiver, {"n": n}),
        Side(tool.sender, {"n": n, "size": size}),
        result_from="server",
    )
    if result["last_size"] != size or not result["msgs_per_s"]:
        raise BenchError(f"bad result: {result}")
    return float(result["msgs_per_s"])


def _figures(tool: Tool, size: int, n: int, placement: Placement,
             runs: Runs[float]) -> list[Figure]:
    rates, note = runs.values, runs.note
    rate = median(rates) if not note else None
    case = size_label(size)
    extra = {"n": n, "receiver": tool.receiver, "sender": tool.sender}
    mbps = [r * size / 1e6 for r in rates]
    return [
        Figure(tool.label, case, "rate", "msgs/s", rate, placement.label, rates, note, extra),
        Figure(tool.label, case, "throughput", "MB/s", rate * size / 1e6 if rate else None,
               placement.label, mbps, note, extra),
    ]


def _pick(figures: list[Figure], tool: str, case: str, unit: str) -> Figure:
    for fig in figures:
        if fig.tool == tool and fig.case == case and fig.unit == unit:
            return fig
    raise KeyError((tool, case, unit))


def _target(size: int) -> Target | None:
    if size == 64:
        return Target(">=", 2.0)
    if size == 64 * 1024:
        return Target(">=", 1.0)
    return None


def run(cfg: Config) -> SectionResult:
    result = SectionResult(KEY, TITLE)
    placement = split_placement()
    counts = QUICK_COUNTS if cfg.quick else FULL_COUNTS
    for size in SIZES:
        once = partial(_rate, size=size, n=counts[size], placement=placement)
        runs = interleaved(TOOLS, cfg.repeats, once)
        for tool in TOOLS:
            result.figures += _figures(tool, size, counts[size], placement, runs[tool])
    for size in SIZES:
        case = size_label(size)
        unit = "MB/s" if size >= DIRECT else "msgs/s"
        ref = _pick(result.figures, "pyzmq PUSH/PULL", case, unit)
        for tool in TOOLS:
            if tool.slug == "zmq":
                continue
            fig = _pick(result.figures, tool.label, case, unit)
            target = _target(size) if tool.slug.startswith("wk") else None
            what = f"{case} one-way {unit}, {tool.label} vs pyzmq"
            result.rows.append(compare(what, fig, ref, target))
    result.notes += [
        "Receiver-side rate: time from the first received message (or batch) to the "
        "last; the sender sends as fast as it can. MB/s counts payload bytes (10^6).",
        "Both wirekit rows use the same wirekit async receiver (recv_batch loop); "
        "'sync client' is the blocking client as the sender. The receiver runs on the "
        "server CPU, the sender on the client CPU; senders wait 0.2 s after connecting so "
        "that buffered messages do not inflate the receiver's rate.",
        f"Messages per run: {', '.join(f'{size_label(s)}: {counts[s]:,}' for s in SIZES)}; "
        f"median of {cfg.repeats} run(s).",
        "pyzmq uses its defaults (recv() copies, one I/O thread, on the same pinned CPU).",
    ]
    return result
