"""Unframed listeners for byte and line services (echo, daytime, time, chat).

:class:`RawServer` runs an ``asyncio.Protocol`` subclass of
:class:`RawStream` on TCP, TLS or Unix sockets, and a
``asyncio.DatagramProtocol`` on UDP, with the same connection limits as the
framed server: total, per IP and idle timeout. A stream whose peer stops
reading has its own reading paused (write high-water mark), so echo cannot
grow memory without bound.
"""

from __future__ import annotations

import asyncio
import logging
import ssl as ssl_module
from collections.abc import Callable
from typing import Any

from ..addr import Address
from ..errors import ListenError
from ..limits import DEFAULT_LIMITS, Limits
from ..neterrors import bind_error, printable
from ..pacing import is_loopback, unpace, unpace_listeners
from ..unixsock import prepare_unix_path, unlink_socket
from .listening import Admission, accept_backlog, peer_ip

__all__ = ["RawServer", "RawStream"]

log = logging.getLogger("wirekit.server")


class RawStream(asyncio.Protocol):
    """Base protocol for unframed stream services; subclasses override
    ``on_open``, ``on_data`` and ``on_eof``."""

    transport: asyncio.Transport
    server: RawServer

    def __init__(self, server: RawServer) -> None:
        self.server = server
        self.peer: Any = None
        self.admitted = False
        self.last_activity = 0.0
        self._write_paused = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.peer = transport.get_extra_info("peername")
        self.last_activity = self.server.loop.time()
        refusal = self.server.admission.admit(peer_ip(self.peer))
        if refusal is not None:
            log.warning("refused %s: %s", printable(self.peer), refusal)
            self.transport.write(self.refusal_line(refusal))
            self.transport.close()
            return
        self.admitted = True
        self.server.streams.add(self)
        if self.server._unpace_each and isinstance(self.peer, tuple) and is_loopback(self.peer[0]):
            unpace(transport.get_extra_info("socket"))
        self.transport.set_write_buffer_limits(high=self.server.limits.write_high_water)
        self.on_open()

    def data_received(self, data: bytes) -> None:
        self.last_activity = self.server.loop.time()
        self.on_data(data)

    def eof_received(self) -> bool | None:
        return self.on_eof()

    def connection_lost(self, exc: Exception | None) -> None:
        if self.admitted:
            self.admitted = False
            self.server.streams.discard(self)
            self.server.admission.release(peer_ip(self.peer))
        self.on_close()

    def pause_writing(self) -> None:
        # Limits.write_high_water: a peer that does not read stops being read.
        self._write_paused = True
        self.transport.pause_reading()

    def resume_writing(self) -> None:
        self._write_paused = False
        self.transport.resume_reading()

    # -- for subclasses ------------------------------------------------------

    def refusal_line(self, reason: str) -> bytes:
        """The one line a connection refused for a limit gets before the close."""
        return f"wirekit: {reason}; closing\r\n".encode()

    def on_open(self) -> None:
        """The connection was admitted."""

    def on_data(self, data: bytes) -> None:
        """Bytes arrived."""

    def on_eof(self) -> bool | None:
        """The peer half-closed; return True to keep our side open."""
        return None

    def on_close(self) -> None:
        """The connection is gone."""


class RawServer:
    """Listeners for one unframed service on one or more addresses."""

    def __init__(
        self,
        stream_factory: Callable[[RawServer], RawStream] | None,
        datagram_factory: Callable[[RawServer], asyncio.DatagramProtocol] | None,
        *,
        limits: Limits = DEFAULT_LIMITS,
        name: str = "service",
    ) -> None:
        self.stream_factory = stream_factory
        self.datagram_factory = datagram_factory
        self.limits = limits
        self.name = name
        self.admission = Admission(limits)
        self.streams: set[RawStream] = set()
        self.bound: list[Address] = []
        self._servers: list[asyncio.AbstractServer] = []
        self._datagrams: list[asyncio.BaseTransport] = []
        self._unix_paths: list[str] = []
        self._unpace_each = False  # wirekit.pacing: a wildcard listener's loopback peers
        self._sweeper: asyncio.Task[None] | None = None
        self.loop = asyncio.get_running_loop()

    async def listen(self, addr: Address, ssl: ssl_module.SSLContext | None = None) -> Address:
        """Start listening on ``addr``; returns the bound address (real port)."""
        loop = self.loop
        try:
            if addr.scheme == "udp":
                if self.datagram_factory is None:
                    raise ListenError(f"{self.name} does not run over udp")
                transport, _ = await loop.create_datagram_endpoint(
                    lambda: self.datagram_factory(self),  # type: ignore[misc]
                    local_addr=(addr.host, addr.port),
                    reuse_port=False,
                )
                self._datagrams.append(transport)
                bound = addr.with_port(transport.get_extra_info("sockname")[1])
            else:
                if self.stream_factory is None:
                    raise ListenError(f"{self.name} does not run over {addr.scheme}")
                if addr.scheme == "tls" and ssl is None:
                    raise ListenError(f"{addr} needs a TLS certificate")
                factory = lambda: self.stream_factory(self)  # noqa: E731
                if addr.is_unix:
                    prepare_unix_path(addr.path)
                    server = await loop.create_unix_server(
                        factory, addr.path, ssl=ssl, backlog=accept_backlog(loop)
                    )
                    self._unix_paths.append(addr.path)
                    bound = addr
                else:
                    server = await loop.create_server(
                        factory,
                        addr.host,
                        addr.port,
                        ssl=ssl,
                        reuse_address=True,
                        backlog=accept_backlog(loop),
                    )
                    bound = addr.with_port(server.sockets[0].getsockname()[1])
                    # Loopback connections do not pace (wirekit.pacing).
                    if unpace_listeners(server.sockets):
                        self._unpace_each = True
                self._servers.append(server)
        except OSError as exc:
            raise bind_error(addr, exc) from None
        if self._sweeper is None and self.limits.idle_timeout:
            self._sweeper = loop.create_task(self._sweep())
        self.bound.append(bound)
        return bound

    async def _sweep(self) -> None:
        idle = self.limits.idle_timeout
        interval = min(1.0, max(0.02, idle / 5))
        while True:
            await asyncio.sleep(interval)
            now = self.loop.time()
            for stream in list(self.streams):
                if stream.transport.is_closing():
                    # Closing waits for the peer to read what is queued; one that
                    # never reads would keep its slot for ever: drop it.
                    if now - stream.last_activity > 2 * idle:
                        stream.transport.abort()
                    continue
                if now - stream.last_activity > idle:
                    log.info("closing %s: idle for %gs", printable(stream.peer), idle)
                    stream.transport.write(f"wirekit: idle for {idle:g} s; closing\r\n".encode())
                    stream.transport.close()

    async def close(self, grace: float | None = None, hurry: asyncio.Event | None = None) -> None:
        """Stop listening and close every stream once its queued output is sent.

        Streams whose peer does not read within ``grace`` seconds (default
        ``Limits.shutdown_grace``), or all of them once ``hurry`` is set, are
        aborted."""
        for server in self._servers:
            server.close()
        for transport in self._datagrams:
            transport.close()
        for stream in list(self.streams):
            stream.transport.close()  # flushes what is queued, then closes
        grace = self.limits.shutdown_grace if grace is None else grace
        deadline = self.loop.time() + grace
        while self.streams and self.loop.time() < deadline:
            if hurry is not None and hurry.is_set():
                break
            await asyncio.sleep(0.02)
        for stream in list(self.streams):
            stream.transport.abort()
        if self._sweeper is not None:
            self._sweeper.cancel()
            await asyncio.gather(self._sweeper, return_exceptions=True)
        for server in self._servers:
            await server.wait_closed()
        for path in self._unix_paths:
            unlink_socket(path)
