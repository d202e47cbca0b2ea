"""``serve()``: a framed server that runs one handler task per connection.

Limits enforced here (see :class:`~wirekit.limits.Limits`): total connections,
connections per IP, the hello timeout and the idle timeout. Timeouts are
checked by one sweeper task per server rather than a timer per connection,
which keeps an idle connection small.
"""

from __future__ import annotations

import asyncio
import logging
import ssl as ssl_module
import sys
from collections.abc import Awaitable, Callable, Iterable

from ..addr import Address, parse_address
from ..errors import ConnectionClosed, ErrorCode, ListenError, RemoteProtocolError
from ..limits import DEFAULT_LIMITS, Limits
from ..neterrors import bind_error
from ..pacing import is_loopback, unpace, unpace_listeners
from ..proto import FrameConnection, Message, MessageCodec, Role, State
from ..unixsock import prepare_unix_path, unlink_socket
from .connection import Connection, MessageHandler
from .listening import Admission, accept_backlog, peer_ip
from .signals import STOP_SIGNALS, stop_on_signal

__all__ = ["Handler", "Server", "serve"]

log = logging.getLogger("wirekit.server")

#: A coroutine function run once per connection, or a MessageHandler instance.
Handler = Callable[[Connection], Awaitable[None]] | MessageHandler


class Server:
    """A running framed server; use ``async with serve(...) as server``."""

    def __init__(
        self,
        handler: Handler,
        address: Address,
        *,
        limits: Limits = DEFAULT_LIMITS,
        ssl: ssl_module.SSLContext | None = None,
        message_types: Iterable[type[Message]] = (),
    ) -> None:
        if address.scheme == "udp":
            raise ListenError(f"cannot serve framed connections on {address}: udp is not a stream")
        if address.scheme == "tls" and ssl is None:
            raise ListenError(f"{address} needs an ssl.SSLContext (ssl=...)")
        self.handler = handler
        self.requested = address
        self.address = address
        self.limits = limits
        self._ssl = ssl
        self._codec = MessageCodec(message_types)
        self._server: asyncio.AbstractServer | None = None
        self._connections: set[Connection] = set()
        self._admission = Admission(limits)
        self._tasks: set[asyncio.Task[None]] = set()
        self._sweeper: asyncio.Task[None] | None = None
        self._closing = False
        self.total_accepted = 0
        self._unpace_each = False  # wirekit.pacing: a wildcard listener's loopback peers

    # -- lifecycle -----------------------------------------------------------

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        addr = self.requested
        backlog = accept_backlog(loop)
        # A TLS connection reaches connection_made(), and so the admission count
        # and the sweeper, only once its TLS handshake is done: bound that
        # handshake by the hello timeout too, or silent TLS peers stay for the
        # loop's default of 60 s.
        handshake = self.limits.handshake_timeout
        tls_timeout = handshake if self._ssl is not None and handshake > 0 else None
        try:
            if addr.is_unix:
                prepare_unix_path(addr.path)
                self._server = await loop.create_unix_server(
                    self._make_connection,
                    addr.path,
                    ssl=self._ssl,
                    backlog=backlog,
                    ssl_handshake_timeout=tls_timeout,
                )
            else:
                self._server = await loop.create_server(
                    self._make_connection,
                    addr.host,
                    addr.port,
                    ssl=self._ssl,
                    reuse_address=True,
                    backlog=backlog,
                    ssl_handshake_timeout=tls_timeout,
                )
        except OSError as exc:
            raise bind_error(addr, exc) from None
        if not addr.is_unix:
            sockname = self._server.sockets[0].getsockname()
            self.address = addr.with_port(sockname[1])
            # Loopback connections do not pace (wirekit.pacing).
            self._unpace_each = unpace_listeners(self._server.sockets)
        self._sweeper = loop.create_task(self._sweep())

    async def __aenter__(self) -> Server:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.shutdown()

    async def serve_forever(self, *, stop_signals: Iterable[int] = STOP_SIGNALS) -> None:
        """Serve until SIGINT or SIGTERM, then :meth:`shutdown` gracefully; a
        second signal cuts the grace period short. Cancelling the calling task
        shuts down the same way. ``stop_signals=()`` installs no handlers."""
        assert self._server is not None, "start() the server first"
        with stop_on_signal(stop_signals) as (stop, hurry):
            try:
                await stop.wait()
            finally:
                await self.shutdown(hurry=hurry)

    @property
    def connections(self) -> int:
        return len(self._connections)

    async def shutdown(
        self, grace: float | None = None, *, hurry: asyncio.Event | None = None
    ) -> None:
        """Stop accepting, let handlers finish up to ``grace`` seconds (default
        ``Limits.shutdown_grace``; until ``hurry`` is set), then close every
        connection that is left with GOING_AWAY."""
        if self._closing:
            return
        self._closing = True
        if self._server is not None:
            self._server.close()
        grace = self.limits.shutdown_grace if grace is None else grace
        loop = asyncio.get_running_loop()
        deadline = loop.time() + grace
        while self._tasks and loop.time() < deadline and not (hurry and hurry.is_set()):
            await asyncio.wait(set(self._tasks), timeout=min(0.05, deadline - loop.time()))
        if self._tasks:
            pending = set(self._tasks)
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.wait(pending, timeout=1.0)
        for conn in list(self._connections):
            conn.abort(ErrorCode.GOING_AWAY, "server shutting down")
        # Each goes once its ERROR frame is sent; one whose peer does not read
        # it is dropped after the grace, or now when hurried, rather than left
        # open behind a stopped server.
        deadline = loop.time() + grace
        while self._connections and loop.time() < deadline and not (hurry and hurry.is_set()):
            await asyncio.sleep(0.02)
        for conn in list(self._connections):
            if conn._transport is not None:
                conn._transport.abort()
        if self._sweeper is not None:
            self._sweeper.cancel()
            await asyncio.gather(self._sweeper, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()
        if self.requested.is_unix:
            unlink_socket(self.requested.path)

    # -- per connection ----------------------------------------------------

    def _make_connection(self) -> Connection:
        proto = FrameConnection(
            Role.SERVER, max_frame_size=self.limits.max_frame_size, codec=self._codec
        )
        conn = _ServerConnection(self, proto)
        return conn

    def _admit(self, conn: Connection) -> bool:
        """Apply the connection limits; returns False after refusing ``conn``."""
        self.total_accepted += 1
        if self._closing:
            conn.abort(ErrorCode.GOING_AWAY, "server shutting down")
            return False
        conn.ip = sys.intern(peer_ip(conn.peer))  # one string per address, not per connection
        refusal = self._admission.admit(conn.ip)
        if refusal is not None:
            log.warning("refused %s: %s", conn.peer, refusal)
            conn.abort(ErrorCode.TOO_MANY_CONNECTIONS, refusal)
            return False
        self._connections.add(conn)
        if self._unpace_each and is_loopback(conn.ip):
            unpace(conn.get_extra_info("socket"))
        return True

    def _start_handler(self, conn: Connection) -> None:
        handler = self.handler
        if isinstance(handler, MessageHandler):
            conn._handler = handler  # no task: messages arrive by callback
            try:
                handler.connection_open(conn)
            except Exception as exc:
                log.error("connection_open failed for %s: %r", conn.peer, exc, exc_info=exc)
                conn.abort(ErrorCode.INTERNAL_ERROR, "internal server error")
            return
        task: asyncio.Task[None] = asyncio.ensure_future(handler(conn))
        self._tasks.add(task)
        task.add_done_callback(lambda t: self._handler_done(conn, t))

    def _handler_done(self, conn: Connection, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if task.cancelled() and self._closing:
            # Cut off by shutdown(): tell the peer, rather than a normal CLOSE.
            conn.abort(ErrorCode.GOING_AWAY, "server shutting down")
            return
        exc = None if task.cancelled() else task.exception()
        if exc is None or isinstance(exc, ConnectionClosed | RemoteProtocolError):
            if not conn.closed:
                close = asyncio.get_running_loop().create_task(conn.close())
                self._tasks.add(close)
                close.add_done_callback(self._tasks.discard)
            return
        log.error("handler failed for %s: %r", conn.peer, exc, exc_info=exc)
        conn.abort(ErrorCode.INTERNAL_ERROR, "internal server error")

    def _forget(self, conn: Connection) -> None:
        if conn in self._connections:
            self._connections.discard(conn)
            self._admission.release(conn.ip)

    async def _sweep(self) -> None:
        """Close connections past the hello or idle timeout (Limits)."""
        limits = self.limits
        timeouts = [t for t in (limits.handshake_timeout, limits.idle_timeout) if t > 0]
        if not timeouts:
            return
        interval = min(1.0, max(0.02, min(timeouts) / 5))
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(interval)
            now = loop.time()
            for conn in list(self._connections):
                state = conn.proto.state
                if state is State.HELLO:
                    if limits.handshake_timeout and now - conn.opened_at > limits.handshake_timeout:
                        log.info(
                            "closing %s: no hello within %gs", conn.peer, limits.handshake_timeout
                        )
                        conn.abort(
                            ErrorCode.HANDSHAKE_TIMEOUT,
                            f"no hello within {limits.handshake_timeout:g} s",
                        )
                elif (
                    limits.idle_timeout
                    and now - conn.last_activity > limits.idle_timeout
                    and state is State.OPEN
                ):
                    log.info("closing %s: idle for %gs", conn.peer, limits.idle_timeout)
                    conn.abort(ErrorCode.IDLE_TIMEOUT, f"idle for {limits.idle_timeout:g} s")


class _ServerConnection(Connection):
    """A Connection that reports to its Server: admission, handler start, exit."""

    __slots__ = ("_server",)

    def __init__(self, server: Server, proto: FrameConnection) -> None:
        super().__init__(Role.SERVER, server.limits, proto=proto)
        self._server = server

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self._server._admit(self)

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        self._server._forget(self)  # no bound method kept per connection

    def _opened(self) -> None:
        if self in self._server._connections:
            self._server._start_handler(self)


def serve(
    handler: Handler,
    addr: str | Address,
    *,
    limits: Limits = DEFAULT_LIMITS,
    ssl: ssl_module.SSLContext | None = None,
    message_types: Iterable[type[Message]] = (),
) -> Server:
    """Create a framed server; ``async with serve(handler, ":0") as server:``.

    ``handler(conn)`` runs once per connection after the hello; when it
    returns the connection is closed cleanly. ``server.address`` is the
    bound address (port 0 picks a free port).
    """
    address = addr if isinstance(addr, Address) else parse_address(addr, default_port=None)
    return Server(handler, address, limits=limits, ssl=ssl, message_types=message_types)
