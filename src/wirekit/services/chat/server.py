"""The asyncio side of the chat server: sockets in, lines to :class:`ChatCore`,
lines out. No task per connection: a :class:`ChatStream` is an
``asyncio.Protocol`` (docs/chat.md, "Performance").

Output queued during one loop turn leaves in one ``writelines`` per client;
a client whose transport holds more than ``ChatConfig.sendq`` bytes after
that is dropped, so it never slows the others. Flood control delays a
client's lines with a timer and pauses reading from it meanwhile.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import ssl as ssl_module
from collections.abc import Sequence

from ...addr import Address, parse_address
from ...aio.raw import RawServer, RawStream
from ...limits import DEFAULT_LIMITS
from ...neterrors import printable
from ...proto.irc import MAX_LINE, IrcMessage, LineOverflow, LineSplitter, format_message
from .config import DEFAULT_PORT, ChatConfig
from .core import ChatCore
from .model import User

__all__ = ["ChatServer", "ChatStream", "start_chat"]

log = logging.getLogger("wirekit.chat")

#: TCP keepalive for peers that vanish without a FIN (plain users answer no PING):
#: first probe after this many idle seconds, then every KEEPALIVE_INTERVAL, dropped
#: after KEEPALIVE_COUNT unanswered probes.
KEEPALIVE_IDLE, KEEPALIVE_INTERVAL, KEEPALIVE_COUNT = 60, 10, 6
#: Bounds of the kernel send buffer asked for each client (the kernel doubles it).
MIN_SNDBUF, MAX_SNDBUF = 16 * 1024, 1024 * 1024


class ChatStream(RawStream):
    """One chat connection, either mode."""

    def __init__(self, server: RawServer, chat: ChatServer) -> None:
        super().__init__(server)
        self.chat = chat
        self.user: User | None = None
        self.splitter = LineSplitter(MAX_LINE)
        self.pending: list[bytes] | None = None  # output of this loop turn
        # Flood control holds input as the raw bytes that arrived, split only when
        # their turn comes: a list of two-byte lines costs twenty times their size.
        self.held = b""
        self.held_at = 0  # where the unhandled part of ``held`` starts (no copying)
        self.ready: list[bytes | LineOverflow] = []  # split, its token not yet granted
        self.timer: asyncio.TimerHandle | None = None  # set while flood control holds
        self.want_close = False
        self.eof = False

    def refusal_line(self, reason: str) -> bytes:
        # An ERROR line is shown by IRC clients and readable in nc.
        return format_message(IrcMessage("ERROR", (f"Closing link: wirekit: {reason}",)))

    def on_open(self) -> None:
        sock = self.transport.get_extra_info("socket")
        _keepalive(sock)
        _bound_send_buffer(sock, self.chat.config.sendq)
        host = self.peer[0] if isinstance(self.peer, tuple) and self.peer else "unix"
        if host.startswith(":"):
            host = "0" + host  # "::1" would read as a trailing parameter in numerics
        self.user = self.chat.core.connect(self, host)

    # -- input ---------------------------------------------------------------

    def on_data(self, data: bytes) -> None:
        user = self.user
        if user is None or user.closed:
            return
        user.last_seen = self.server.loop.time()
        if self.timer is not None:
            self._hold_more(data)  # one read at most: reading is paused while held
            self.transport.pause_reading()  # resume_writing() may have resumed it
            return
        self._run(data)

    def _hold_more(self, data: bytes) -> None:
        self.held = self.held[self.held_at :] + data
        self.held_at = 0

    def _run(self, data: bytes, pos: int = 0) -> None:
        core = self.chat.core
        user = self.user
        assert user is not None
        size = len(data)
        while not user.closed:
            if not self.ready:
                if pos >= size:
                    break
                # One line at a time, so that what flood control holds stays raw.
                nl = data.find(b"\n", pos)
                end = size if nl < 0 else nl + 1
                self.ready = self.splitter.feed(data[pos:end])
                pos = end
                continue
            delay = core.flood_delay(user)
            if delay:
                # Flood control delays, never drops: hold the rest, stop reading.
                self.held, self.held_at = data, pos
                self.transport.pause_reading()
                self.timer = self.server.loop.call_later(delay, self._release)
                return
            if not self._handle(user, self.ready.pop(0)):
                return
        if self.eof and not user.closed:
            core.disconnect(user, "Remote host closed the connection")

    def _handle(self, user: User, item: bytes | LineOverflow) -> bool:
        core = self.chat.core
        try:
            if isinstance(item, LineOverflow):
                core.line_too_long(user, item.limit)
            else:
                core.receive(user, item)
        except Exception:
            # A bug must cost one connection, not the server (and never a
            # traceback to the peer).
            log.exception("closing %s: internal error", printable(self.peer))
            core.close_link(user, "internal server error")
            return False
        return True

    def _release(self) -> None:
        self.timer = None
        data, pos = self.held, self.held_at
        self.held, self.held_at = b"", 0
        self._run(data, pos)
        if self.timer is None and not self._write_paused and not self.transport.is_closing():
            self.transport.resume_reading()

    def on_eof(self) -> bool | None:
        self.eof = True
        if self.user is None:
            return None
        # A last line without its newline still counts.
        if self.timer is not None:
            self._hold_more(b"\n")
            return True  # keep the socket until flood control has let the lines through
        self._run(b"\n")
        return True  # closed by the flush after the last replies are written

    def on_close(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        self.held, self.held_at = b"", 0
        self.ready = []
        self.pending = None
        if self.user is not None and not self.user.closed:
            self.chat.core.disconnect(self.user, "Connection closed")

    # -- output (the Sink protocol) ------------------------------------------

    def send(self, data: bytes) -> None:
        pending = self.pending
        if pending is None:
            self.pending = [data]
            self.chat.mark_dirty(self)
        else:
            pending.append(data)

    def close(self) -> None:
        self.want_close = True
        if self.pending is None:
            self.pending = []
            self.chat.mark_dirty(self)

    def flush(self) -> None:
        pending, self.pending = self.pending, None
        transport = self.transport
        if transport.is_closing():
            return
        if pending:
            transport.writelines(pending)
        if self.want_close:
            transport.close()
            return
        queued = transport.get_write_buffer_size()
        limit = self.chat.config.sendq
        if queued > limit and self.user is not None:
            reason = f"Excess send queue ({queued} bytes > {limit})"
            log.info("dropping %s: %s", printable(self.peer), reason)
            self.chat.core.disconnect(self.user, reason)
            self.pending = None
            transport.abort()  # what is queued would never be read: free it now


def _keepalive(sock: socket.socket | None) -> None:
    if sock is None or sock.family not in (socket.AF_INET, socket.AF_INET6):
        return
    with contextlib.suppress(OSError, AttributeError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, KEEPALIVE_IDLE)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL, KEEPALIVE_INTERVAL)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT, KEEPALIVE_COUNT)


def _bound_send_buffer(sock: socket.socket | None, sendq: int) -> None:
    """Cap the kernel's send buffer near ``sendq``: autotuned, it grows to megabytes
    per client (tcp_wmem), hiding a client that does not read for that long and
    holding that much kernel memory for each of ten thousand clients."""
    if sock is None or sock.family not in (socket.AF_INET, socket.AF_INET6):
        return
    with contextlib.suppress(OSError):
        sock.setsockopt(
            socket.SOL_SOCKET, socket.SO_SNDBUF, max(MIN_SNDBUF, min(sendq, MAX_SNDBUF))
        )


class ChatServer:
    """A running chat server: ``addresses`` it listens on, ``close()`` to stop."""

    def __init__(self, config: ChatConfig) -> None:
        self.config = config
        loop = asyncio.get_running_loop()
        self.loop = loop
        self.core = ChatCore(config, clock=loop.time)
        limits = DEFAULT_LIMITS.replace(
            max_connections=config.max_clients,
            max_connections_per_ip=config.max_clients_per_ip,
            idle_timeout=0,  # chat has its own: registration and PING timeouts
            # Stop reading a client only once it is about to be dropped anyway.
            write_high_water=config.sendq * 2,
        )
        self.raw = RawServer(lambda raw: ChatStream(raw, self), None, limits=limits, name="chat")
        self.addresses: list[Address] = []
        self._dirty: list[ChatStream] = []
        self._ticker: asyncio.Task[None] | None = None

    async def listen(self, addr: Address, ssl: ssl_module.SSLContext | None = None) -> Address:
        bound = await self.raw.listen(addr, ssl)
        self.addresses.append(bound)
        if self._ticker is None:
            self._ticker = self.loop.create_task(self._tick())
        return bound

    def mark_dirty(self, stream: ChatStream) -> None:
        if not self._dirty:
            self.loop.call_soon(self._flush)
        self._dirty.append(stream)

    def _flush(self) -> None:
        # A flush can queue more output (a dropped client's QUIT): loop until calm.
        while self._dirty:
            batch, self._dirty = self._dirty, []
            for stream in batch:
                try:
                    stream.flush()
                except Exception:  # one broken client must not stop everyone's output
                    log.exception("closing %s: cannot write", printable(stream.peer))
                    stream.transport.abort()

    def _tick_interval(self) -> float:
        cfg = self.config
        times = [t for t in (cfg.ping_interval, cfg.ping_timeout, cfg.register_timeout) if t]
        return max(0.02, min([1.0, *(t / 4 for t in times)]))

    async def _tick(self) -> None:
        interval = self._tick_interval()
        while True:
            await asyncio.sleep(interval)
            self.core.tick()

    async def close(self, grace: float | None = None, hurry: asyncio.Event | None = None) -> None:
        """Tell every client, stop listening, close connections once their output is sent."""
        if self._ticker is not None:
            self._ticker.cancel()
            await asyncio.gather(self._ticker, return_exceptions=True)
            self._ticker = None
        self.core.shutting_down = True
        for user in list(self.core.connections):
            self.core.close_link(user, "Server shutting down")
        self._flush()
        await self.raw.close(grace, hurry)

    async def __aenter__(self) -> ChatServer:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close(grace=0)


async def start_chat(
    addresses: Sequence[str | Address] = (f"127.0.0.1:{DEFAULT_PORT}",),
    *,
    config: ChatConfig | None = None,
    ssl: ssl_module.SSLContext | None = None,
) -> ChatServer:
    """Start a chat server listening on every address (``tls://`` ones need ``ssl``).

    Returns the running :class:`ChatServer`; ``await server.close()`` stops it.
    Raises :class:`~wirekit.errors.ListenError` when an address cannot be bound.
    """
    server = ChatServer(config or ChatConfig())
    try:
        for addr in addresses:
            parsed = (
                parse_address(addr, default_port=DEFAULT_PORT) if isinstance(addr, str) else addr
            )
            await server.listen(parsed, ssl if parsed.scheme == "tls" else None)
    except BaseException:
        await server.close(grace=0)
        raise
    return server
