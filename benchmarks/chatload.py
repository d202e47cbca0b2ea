"""The load generator of section (g), run as a pinned worker process.

``hold`` registers N IRC clients and reports how many the server holds and its
RSS; ``fanout`` fills one room and times a burst of numbered messages into it,
checking every member gets all of them in order. asyncio on uvloop with one
small Protocol per client, so 10,000 clients fit in one process.
"""

from __future__ import annotations

import asyncio
import re
import socket
import time
from pathlib import Path

from .common import HOST, BenchError, raise_nofile, report, rss_bytes

ROOM = "#bench"
#: Connections per source address (127.0.0.2, .3, ...), so no per-address cap or
#: ephemeral port range is what a figure measures.
PER_SOURCE = 1_000
IN_FLIGHT = 200
#: Connects in progress at once: ngircd listens with a backlog of 10, and a SYN
#: that overflows it is retried by the kernel only after 1, 3, 7... seconds.
CONNECTS_IN_FLIGHT = 8
#: Registration of this many in a row failing means the server stopped serving.
GIVE_UP_AFTER = 50
TEXT = "x" * 56  # message text after the sequence number: 64 bytes in all


def _server_alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")


def server_cpu(pid: int) -> float:
    """CPU-seconds (user + system) the process has used, all threads.

    From /proc/PID/task/*/schedstat (nanoseconds), because /proc/PID/stat's
    utime+stime count 10 ms ticks, too coarse for a burst of 0.1 s."""
    total = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            total += int((task / "schedstat").read_text().split()[0])
        except (OSError, IndexError, ValueError):
            continue  # the thread ended meanwhile
    return total / 1e9


class BenchClient(asyncio.Protocol):
    """One IRC user of the load generator: registers, answers PING, and as a
    fan-out receiver checks the numbered messages arrive all and in order."""

    __slots__ = (
        "_tail",
        "error",
        "expected",
        "joined",
        "lost",
        "pongs",
        "registered",
        "transport",
    )

    def __init__(self) -> None:
        loop = asyncio.get_running_loop()
        self.registered: asyncio.Future[None] = loop.create_future()
        self.joined: asyncio.Future[None] = loop.create_future()
        self.lost = False
        self.pongs = 0
        self.expected = -1  # next message number, once armed; -1: not counting
        self.error = ""
        self._tail = b""
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        data = self._tail + data
        cut = data.rfind(b"\n") + 1
        self._tail = data[cut:]
        lines = data[:cut]
        if not self.registered.done() and b" 001 " in lines:
            self.registered.set_result(None)
        if not self.joined.done() and b" 366 " in lines:
            self.joined.set_result(None)
        if b"PING" in lines:
            for token in re.findall(rb"^PING (:?\S+)", lines, re.MULTILINE):
                self.send(b"PONG " + token)
        if b"PONG" in lines:
            self.pongs += lines.count(b" PONG ")
        if self.expected >= 0:
            self._count(lines)

    def _count(self, lines: bytes) -> None:
        for number in re.findall(rb" PRIVMSG #bench :?m(\d{7})", lines):
            if int(number) != self.expected and not self.error:
                self.error = f"message {int(number)} arrived where {self.expected} was due"
            self.expected += 1

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        for fut in (self.registered, self.joined):
            if not fut.done():
                fut.set_exception(ConnectionError("closed by the server"))

    def send(self, data: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(data + b"\r\n")


async def _open(
    port: int, index: int, nick: str, timeout: float, connects: asyncio.Semaphore
) -> BenchClient:
    loop = asyncio.get_running_loop()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.setblocking(False)
        sock.bind((f"127.0.0.{2 + index // PER_SOURCE}", 0))
        async with asyncio.timeout(timeout):
            async with connects:
                await loop.sock_connect(sock, (HOST, port))
            _, client = await loop.create_connection(BenchClient, sock=sock)
            client.send(f"NICK {nick}\r\nUSER {nick} 0 * :load".encode())
            await client.registered
    except BaseException:
        sock.close()
        raise
    return client


async def register(port: int, n: int, server_pid: int, prefix: str) -> list[BenchClient]:
    """Register up to ``n`` clients, IN_FLIGHT at a time; stop when the server
    stops accepting (GIVE_UP_AFTER failures in a row, or the process is gone)."""
    clients: list[BenchClient] = []
    failures = 0
    slots = asyncio.Semaphore(IN_FLIGHT)
    connects = asyncio.Semaphore(CONNECTS_IN_FLIGHT)
    stop = asyncio.Event()

    async def one(i: int) -> None:
        nonlocal failures
        async with slots:
            if stop.is_set():
                return
            try:
                clients.append(await _open(port, i, f"{prefix}{i}", 30.0, connects))
                failures = 0
            except (OSError, TimeoutError, ConnectionError):
                failures += 1
                if failures >= GIVE_UP_AFTER or not _server_alive(server_pid):
                    stop.set()

    await asyncio.gather(*(one(i) for i in range(n)))
    return clients


async def _count_alive(clients: list[BenchClient], timeout: float = 20.0) -> int:
    """Clients that answer a PING with a PONG (the server still serves them)."""
    live = [c for c in clients if not c.lost]
    for c in live:
        c.pongs = 0
        c.send(b"PING :held")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if all(c.pongs or c.lost for c in live):
            break
        await asyncio.sleep(0.05)
    return sum(1 for c in live if c.pongs and not c.lost)


def hold(port: int, n: int, server_pid: int) -> None:
    """Worker: register ``n`` clients, report how many the server holds and its RSS."""
    raise_nofile()
    import uvloop

    async def main() -> None:
        rss_before = rss_bytes(server_pid)
        start = time.monotonic()
        clients = await register(port, n, server_pid, "h")
        seconds = time.monotonic() - start
        await asyncio.sleep(1.0)  # let a dying server finish dying
        held = await _count_alive(clients) if _server_alive(server_pid) else 0
        rss_after = rss_bytes(server_pid) if _server_alive(server_pid) else None
        report(
            attempted=n,
            registered=len(clients),
            held=held,
            server_alive=_server_alive(server_pid),
            rss_before=rss_before,
            rss_after=rss_after,
            seconds=seconds,
        )
        await asyncio.sleep(3600)  # hold until the driver stops us

    uvloop.run(main())


async def _join_all(clients: list[BenchClient]) -> None:
    slots = asyncio.Semaphore(IN_FLIGHT)

    async def one(c: BenchClient) -> None:
        async with slots, asyncio.timeout(60):
            c.send(f"JOIN {ROOM}".encode())
            await c.joined

    for c in clients:  # one by one: the room's join notices are O(members^2)
        await one(c)


async def _quiet(clients: list[BenchClient], pid: int, still: float = 0.3) -> None:
    """Wait until the server has used no CPU for ``still`` seconds (join notices sent)."""
    last = server_cpu(pid)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        await asyncio.sleep(still)
        now = server_cpu(pid)
        if now == last:
            return
        last = now


def fanout(port: int, members: int, messages: int, server_pid: int) -> None:
    """Worker: ``members`` clients join ROOM; the first sends ``messages`` numbered
    lines at once; report delivery, order, wall time and server CPU."""
    raise_nofile()
    import uvloop

    async def main() -> None:
        clients = await register(port, members, server_pid, "f")
        if len(clients) < members:
            raise BenchError(f"registered {len(clients)} of {members} clients")
        await _join_all(clients)
        sender, receivers = clients[0], clients[1:]
        await _quiet(clients, server_pid)
        for r in receivers:
            r.expected = 0
        burst = b"".join(f"PRIVMSG {ROOM} :m{i:07d}{TEXT}\r\n".encode() for i in range(messages))
        cpu0, t0 = server_cpu(server_pid), time.perf_counter()
        assert sender.transport is not None
        sender.transport.write(burst)
        done = await _delivered(receivers, messages, 120.0)
        wall = time.perf_counter() - t0
        cpu = server_cpu(server_pid) - cpu0
        delivered = sum(r.expected for r in receivers)
        errors = [r.error for r in receivers if r.error]
        if errors:
            raise BenchError(f"out of order on {len(errors)} receivers, first: {errors[0]}")
        report(
            members=members,
            messages=messages,
            delivered=delivered,
            expected=messages * len(receivers),
            complete=done,
            wall=wall,
            server_cpu=cpu,
        )

    try:
        uvloop.run(main())
    except BenchError as exc:
        report(error=str(exc))


async def _delivered(receivers: list[BenchClient], messages: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if all(r.expected >= messages or r.lost for r in receivers):
            return all(r.expected == messages for r in receivers)
        await asyncio.sleep(0.002)
    return False
