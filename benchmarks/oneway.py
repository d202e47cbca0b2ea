"""(a) One-way framed messages over one connection: 64 B, 1 KiB and 64 KiB.

The sender sends N messages as fast as it can; the receiver times from the
first message (or first batch) it receives to the last one, so the rate is the
receiver's: ``(N - first_batch) / (t_last - t_first)``.

Compared: the wirekit async API (``write_many`` + ``drain`` per batch into a
``recv_batch`` loop), the wirekit sync client as the sender (``send_many`` per
batch) into the same async receiver, the wirekit sync client as the receiver
(``recv_batch`` loop, fed by the async sender), pyzmq PUSH/PULL, and the textbook
``socketserver.ThreadingTCPServer`` receiver with a ``struct.pack('i', len)``
header and a ``recv(1024)`` accumulation loop.
"""

from __future__ import annotations

import os
import resource
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
# Payloads this big are queued uncopied: write_many() hands them to one writev per
# loop turn, the sync send_many() to one sendmsg (wirekit's large-payload path).
DIRECT = 16 * 1024
# Bytes per write_many()/send_many() call before the sender drains (small payloads).
CHUNK_BYTES = 256 * 1024
# Frames per write_many()/send_many() call for payloads of DIRECT bytes or more.
BIG_BATCH = 32


def size_label(size: int) -> str:
    return f"{size // 1024} KiB" if size >= 1024 else f"{size} B"


def chunk_count(size: int) -> int:
    """Messages per batch: up to 1000 small ones (about CHUNK_BYTES), BIG_BATCH big ones."""
    if size >= DIRECT:
        return BIG_BATCH
    return max(1, min(1000, CHUNK_BYTES // size))


# -- receivers (worker side) ---------------------------------------------------------


Mark = tuple[float, int]


def _mark() -> Mark:
    """(perf_counter, the receiver's minor page faults so far)."""
    return time.perf_counter(), resource.getrusage(resource.RUSAGE_SELF).ru_minflt


def _stats(n: int, first: int, m_first: Mark, m_last: Mark, last_size: int) -> dict[str, Any]:
    (t_first, f_first), (t_last, f_last) = m_first, m_last
    return {
        "n": n,
        "first_batch": first,
        "seconds": t_last - t_first,
        "msgs_per_s": (n - first) / (t_last - t_first) if t_last > t_first else None,
        "last_size": last_size,
        "minor_faults_per_msg": (f_last - f_first) / max(1, n - first),
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
            t_first = _mark()
            first = count = len(batch)
            while count < n:
                batch = await conn.recv_batch()
                count += len(batch)
            t_last = _mark()
            last = batch[-1]
            size = len(last) if isinstance(last, bytes) else -1
            done.set_result(_stats(count, first, t_first, t_last, size))

        async with wirekit.serve(handler, f"{HOST}:0") as server:
            ready(server.address.port)
            report(**(await done))
            await asyncio.sleep(0.2)  # let the handler's CLOSE reach the sender

    run(main())


def recv_wirekit_callback(n: int) -> None:
    """A wirekit server taking N messages on its first connection with a
    MessageHandler (messages_received gets every message of one read)."""
    import wirekit
    from wirekit.aio import run

    async def main() -> None:
        import asyncio

        done: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()

        class Count(wirekit.MessageHandler):
            def __init__(self) -> None:
                self.count = self.first = 0
                self.t_first: Mark = (0.0, 0)

            def messages_received(self, conn: wirekit.Connection, messages: list[Any]) -> None:
                if not self.count:
                    self.t_first = _mark()
                    self.first = len(messages)
                self.count += len(messages)
                if self.count >= n and not done.done():
                    t_last = _mark()
                    last = messages[-1]
                    size = len(last) if isinstance(last, bytes) else -1
                    done.set_result(_stats(self.count, self.first, self.t_first, t_last, size))

        async with wirekit.serve(Count(), f"{HOST}:0") as server:
            ready(server.address.port)
            report(**(await done))
            await asyncio.sleep(0.2)  # let the sender finish before the server closes

    run(main())


def recv_wirekit_sync(port: int, n: int) -> None:
    """wirekit.sync.connect() as the receiver: N messages with recv_batch(); the
    server at ``port`` is the sender (send_wirekit_server)."""
    import wirekit.sync

    with wirekit.sync.connect(f"{HOST}:{port}", connect_timeout=30) as conn:
        batch = conn.recv_batch()
        t_first = _mark()
        first = count = len(batch)
        while count < n:
            batch = conn.recv_batch()
            count += len(batch)
        t_last = _mark()
        last = batch[-1]
        size = len(last) if isinstance(last, bytes) else -1
        report(**_stats(count, first, t_first, t_last, size))


def recv_zmq(n: int) -> None:
    """A pyzmq PULL socket receiving N messages with recv()."""
    import zmq

    ctx = zmq.Context()
    sock = ctx.socket(zmq.PULL)
    port = sock.bind_to_random_port(f"tcp://{HOST}")
    ready(port)
    msg = sock.recv()
    t_first = _mark()
    for _ in range(n - 1):
        msg = sock.recv()
    t_last = _mark()
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
            t_first: Mark = (0.0, 0)
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
                    t_first = _mark()
            stats.update(_stats(n, 1, t_first, _mark(), len(frame)))
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


async def _send_batches(conn: Any, n: int, size: int) -> None:
    """write_many() one batch (chunk_count(size) messages), drain(), repeat."""
    payload = b"x" * size
    per = chunk_count(size)
    chunk = [payload] * per
    sent = 0
    while sent < n:
        k = min(per, n - sent)
        conn.write_many(chunk if k == per else chunk[:k])
        await conn.drain()
        sent += k


def send_wirekit_async(port: int, n: int, size: int) -> None:
    """wirekit.connect(): write_many() per batch, then drain()."""
    import wirekit
    from wirekit.aio import run

    async def main() -> None:
        import asyncio

        async with wirekit.connect(f"{HOST}:{port}", timeout=30) as conn:
            await asyncio.sleep(SETTLE)
            await _send_batches(conn, n, size)

    run(main())


def send_wirekit_server(n: int, size: int) -> None:
    """A wirekit server that sends N messages to its first connection (write_many()
    per batch, then drain()) and then waits for the peer to close."""
    import wirekit
    from wirekit.aio import run

    async def handler(conn: wirekit.Connection) -> None:
        import asyncio

        await asyncio.sleep(SETTLE)
        await _send_batches(conn, n, size)
        async for _ in conn:
            pass

    async def main() -> None:
        async with wirekit.serve(handler, f"{HOST}:0") as server:
            ready(server.address.port)
            await server.serve_forever()

    run(main())


def send_wirekit_sync(port: int, n: int, size: int) -> None:
    """wirekit.sync.connect(): send_many() per batch."""
    import wirekit.sync

    payload = b"x" * size
    per = chunk_count(size)
    chunk = [payload] * per
    with wirekit.sync.connect(f"{HOST}:{port}", connect_timeout=30) as conn:
        time.sleep(SETTLE)
        sent = 0
        while sent < n:
            k = min(per, n - sent)
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
    receiver_is_client: bool = False  # the sender listens, the receiver connects
    extra: bool = False  # a wirekit row shown without the target


TOOLS = (
    Tool("wirekit async", "wk-async", "oneway.recv_wirekit", "oneway.send_wirekit_async"),
    Tool(
        "wirekit sync client sending", "wk-sync", "oneway.recv_wirekit", "oneway.send_wirekit_sync"
    ),
    Tool(
        "wirekit sync client receiving",
        "wk-sync-recv",
        "oneway.recv_wirekit_sync",
        "oneway.send_wirekit_server",
        receiver_is_client=True,
    ),
    Tool(
        "wirekit async into a MessageHandler",
        "wk-cb",
        "oneway.recv_wirekit_callback",
        "oneway.send_wirekit_async",
        extra=True,
    ),
    Tool("pyzmq PUSH/PULL", "zmq", "oneway.recv_zmq", "oneway.send_zmq"),
    Tool("textbook socketserver", "textbook", "oneway.recv_textbook", "oneway.send_textbook"),
)


def _rate(tool: Tool, run: int, *, size: int, n: int, placement: Placement) -> tuple[float, float]:
    """One run: (receiver msgs/s, receiver minor page faults per message)."""
    name = f"a-{tool.slug}-{size}-{run}"
    if tool.receiver_is_client:
        # The receiver still runs on the first CPU and the sender on the second.
        result = run_pair(
            name,
            Placement(placement.client_cpu, placement.server_cpu),
            Side(tool.sender, {"n": n, "size": size}),
            Side(tool.receiver, {"n": n}),
            result_from="client",
        )
    else:
        result = run_pair(
            name,
            placement,
            Side(tool.receiver, {"n": n}),
            Side(tool.sender, {"n": n, "size": size}),
            result_from="server",
        )
    if result["last_size"] != size or not result["msgs_per_s"]:
        raise BenchError(f"bad result: {result}")
    return float(result["msgs_per_s"]), float(result["minor_faults_per_msg"])


def _figures(
    tool: Tool, size: int, n: int, placement: Placement, runs: Runs[tuple[float, float]]
) -> list[Figure]:
    rates, note = [r for r, _ in runs.values], runs.note
    rate = median(rates) if not note else None
    case = size_label(size)
    faults = [f for _, f in runs.values]
    extra = {
        "n": n,
        "receiver": tool.receiver,
        "sender": tool.sender,
        "batch": chunk_count(size) if tool.slug.startswith("wk") else None,
        "receiver_minor_faults_per_msg": faults,
        "receiver_minor_faults_per_msg_median": median(faults),
    }
    mbps = [r * size / 1e6 for r in rates]
    where = f"receiver CPU {placement.server_cpu}, sender CPU {placement.client_cpu}"
    return [
        Figure(tool.label, case, "rate", "msgs/s", rate, where, rates, note, extra),
        Figure(
            tool.label,
            case,
            "throughput",
            "MB/s",
            rate * size / 1e6 if rate else None,
            where,
            mbps,
            note,
            extra,
        ),
    ]


def _pick(figures: list[Figure], tool: str, case: str, unit: str) -> Figure:
    for fig in figures:
        if fig.tool == tool and fig.case == case and fig.unit == unit:
            return fig
    raise KeyError((tool, case, unit))


def _faults_note(figures: list[Figure], case: str) -> str:
    """The receivers' minor page faults per message at ``case``, from this run."""
    parts = []
    for fig in figures:
        value = fig.extra.get("receiver_minor_faults_per_msg_median")
        if fig.case == case and fig.unit == "MB/s" and value is not None:
            parts.append(f"{fig.tool}: {value:.1f}")
    return (
        f"Receiver minor page faults per {case} message (getrusage in the receiver, "
        "median of the runs; a 64 KiB payload spans 16 pages, so 16 would mean every "
        "message landed in memory fresh from the kernel): " + "; ".join(parts) + "."
    )


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
            wirekit = tool.slug.startswith("wk") and not tool.extra
            target = _target(size) if wirekit else None
            what = f"{case} one-way {unit}, {tool.label} vs pyzmq"
            result.rows.append(compare(what, fig, ref, target))
    result.notes += [
        "Receiver-side rate: time from the first received message (or batch) to the "
        "last; the sender sends as fast as it can. MB/s counts payload bytes (10^6).",
        "wirekit rows: 'async' is wirekit.connect() sending into a wirekit.serve() "
        "receiver; 'sync client sending' is wirekit.sync.connect() sending into the same "
        "async receiver; 'sync client receiving' is wirekit.sync.connect() receiving from "
        "a wirekit.serve() handler that sends (wirekit has no blocking server). Senders "
        f"batch: write_many() (async) or send_many() (sync) of min(1,000, "
        f"{CHUNK_BYTES // 1024} KiB / size) small messages, or of {BIG_BATCH} messages of "
        f"{DIRECT // 1024} KiB or more, which wirekit queues uncopied and sends with one "
        "writev (async) or one sendmsg (sync); the async sender awaits drain() after each batch.",
        "Receivers: recv_batch() on the async Connection and on the sync client, one call "
        "per read, for every size. Checked on the benchmark machine against one call per "
        "message, it was clearly faster at 64 B (sync recv() 0.84x its rate, async "
        "`async for` 0.48x), level at 1 KiB, and slower at 64 KiB (sync recv() 1.07x, "
        "async `async for` 1.24x: the async recv_batch() receiver takes more page faults, "
        "see below). The wirekit API's fastest receiver at every size was a "
        "MessageHandler (extra row).",
        "Extra row without a target: 'async into a MessageHandler' is the same async "
        "sender into a wirekit.MessageHandler whose messages_received() counts each read's "
        "messages (no task wake-up per read).",
        _faults_note(result.figures, size_label(SIZES[-1])),
        "The receiver always runs on the first CPU and the sender on the second (for "
        "'sync client receiving' the sending server is on the second CPU); senders wait "
        "0.2 s after connecting so that buffered messages do not inflate the receiver's "
        "rate.",
        f"Messages per run: {', '.join(f'{size_label(s)}: {counts[s]:,}' for s in SIZES)}; "
        f"median of {cfg.repeats} run(s).",
        "pyzmq uses its defaults (recv() copies, one I/O thread, on the same pinned CPU).",
    ]
    return result
