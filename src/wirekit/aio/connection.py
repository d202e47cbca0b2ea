"""The asyncio connection: moves bytes between a transport and a FrameConnection.

A :class:`Connection` is itself the ``asyncio.Protocol`` of its transport
(one object per connection keeps idle connections small). It does no
parsing: every decision about bytes is made by
:class:`~wirekit.proto.FrameConnection`.

Writes are coalesced: the first write of a loop turn goes out at once (low
latency for request/reply), later ones in the same turn are buffered and
sent with one syscall when the turn ends (high throughput for bursts).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import time
from collections.abc import Callable, Iterable
from typing import Any

from ..errors import ConnectionClosed, ErrorCode, LocalProtocolError
from ..limits import DEFAULT_LIMITS, Limits
from ..proto import (
    CloseReceived,
    ErrorReceived,
    Event,
    FrameConnection,
    HelloReceived,
    Message,
    MessageReceived,
    Ping,
    Pong,
    ProtocolViolation,
    Role,
    State,
)

__all__ = ["Connection", "Received"]

log = logging.getLogger("wirekit.connection")

#: What ``recv()`` returns: DATA frames as bytes, MESSAGE frames as Message
#: objects, and other channel events as their event objects.
Received = bytes | Message | Event

# Payloads at least this big skip the coalescing buffer and are handed to the
# transport as they are (no copy); smaller ones are batched.
_DIRECT_WRITE = 16 * 1024


class Connection(asyncio.Protocol):
    """One framed connection, client or server side.

    Use ``send``/``recv`` (or ``async for``), ``write``/``write_many`` plus
    ``drain`` for bursts, ``recv_batch`` to take every message that has
    arrived at once, and ``close``.
    """

    __slots__ = (
        "_closed",
        "_drain_waiter",
        "_exc",
        "_flush_pending",
        "_handshake",
        "_inbox",
        "_last_activity",
        "_loop",
        "_on_close",
        "_pong",
        "_pos",
        "_queued",
        "_read_paused",
        "_transport",
        "_waiter",
        "_write_paused",
        "limits",
        "opened_at",
        "peer",
        "proto",
    )

    def __init__(
        self,
        role: Role,
        limits: Limits = DEFAULT_LIMITS,
        *,
        proto: FrameConnection | None = None,
        on_close: Callable[[Connection], None] | None = None,
    ) -> None:
        self.proto = proto or FrameConnection(role, max_frame_size=limits.max_frame_size)
        self.limits = limits
        self._loop = asyncio.get_running_loop()
        self._transport: asyncio.Transport | None = None
        self._inbox: list[Any] = []
        self._pos = 0
        self._queued = 0
        self._waiter: asyncio.Future[None] | None = None
        self._drain_waiter: asyncio.Future[None] | None = None
        self._handshake: asyncio.Future[None] | None = None
        self._pong: asyncio.Future[None] | None = None
        self._closed: asyncio.Future[None] | None = None
        self._exc: BaseException | None = None
        self._flush_pending = False
        self._read_paused = False
        self._write_paused = False
        self._on_close = on_close
        self.peer: Any = None
        self.opened_at = self._last_activity = self._loop.time()

    # -- asyncio.Protocol callbacks -----------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]
        self.peer = transport.get_extra_info("peername")
        sock = transport.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            # Small frames must not wait for Nagle + delayed ACK (~40-90 ms).
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        transport.set_write_buffer_limits(high=self.limits.write_high_water)
        if self.proto._out:
            transport.write(self.proto.data_to_send())

    def data_received(self, data: bytes) -> None:
        proto = self.proto
        controls = proto.controls
        events = proto.receive_data(data)
        self._last_activity = self._loop.time()
        if proto.controls != controls or proto._out:
            events = self._control_events(events)
        if events:
            self._inbox += events
            self._queued += len(data)
            if self._queued > self.limits.read_high_water and not self._read_paused:
                self._read_paused = True
                self._transport.pause_reading()  # type: ignore[union-attr]
            waiter = self._waiter
            if waiter is not None:
                self._waiter = None
                if not waiter.done():
                    waiter.set_result(None)

    def eof_received(self) -> bool:
        self._control_events(self.proto.receive_eof())
        return False  # let the transport close itself

    def connection_lost(self, exc: Exception | None) -> None:
        if self._exc is None:
            proto = self.proto
            if proto.state is State.CLOSED and proto.close_code is not None:
                self._exc = ConnectionClosed(proto.close_code, proto.close_reason)
            elif proto.error is not None:
                self._exc = proto.error
            else:
                reason = f"connection lost: {exc}" if exc else "connection lost"
                self._exc = ConnectionClosed(ErrorCode.GOING_AWAY, reason)
        self._wake_all()
        if self._closed is not None and not self._closed.done():
            self._closed.set_result(None)
        if self._on_close is not None:
            self._on_close(self)

    def pause_writing(self) -> None:
        # Limits.write_high_water: stop reading from a peer that does not drain.
        self._write_paused = True
        if not self._read_paused and self._transport is not None:
            self._transport.pause_reading()

    def resume_writing(self) -> None:
        self._write_paused = False
        if not self._read_paused and self._transport is not None:
            self._transport.resume_reading()
        waiter = self._drain_waiter
        if waiter is not None:
            self._drain_waiter = None
            if not waiter.done():
                waiter.set_result(None)

    # -- event handling off the fast path ------------------------------------

    def _control_events(self, events: list[Event]) -> list[Any]:
        proto = self.proto
        kept: list[Any] = []
        for event in events:
            if type(event) is bytes:
                kept.append(event)
            elif type(event) is MessageReceived and event.channel == 0:
                message = event.message
                pong = self._pong
                if type(message) is Pong and pong is not None:
                    self._pong = None
                    if not pong.done():
                        pong.set_result(None)
                else:
                    kept.append(message)
            elif type(event) is HelloReceived:
                if self._handshake is not None and not self._handshake.done():
                    self._handshake.set_result(None)
            elif type(event) is ProtocolViolation:
                self._fail(event.error)
            elif type(event) is ErrorReceived:
                self._fail(ConnectionClosed(event.code, event.reason))
            elif type(event) is CloseReceived:
                self._exc = ConnectionClosed(event.code, event.reason)
            else:
                kept.append(event)
        if proto._out and self._transport is not None:
            self._transport.write(proto.data_to_send())
        if proto.state is State.CLOSED or proto.state is State.FAILED:
            self._wake_all()
            if self._transport is not None:
                self._transport.close()
        return kept

    def _fail(self, exc: BaseException) -> None:
        if self._exc is None:
            self._exc = exc
        handshake = self._handshake
        if handshake is not None and not handshake.done():
            handshake.set_exception(exc)
            handshake.exception()  # mark retrieved: connect() re-raises it

    def _wake_all(self) -> None:
        for waiter in (self._waiter, self._drain_waiter):
            if waiter is not None and not waiter.done():
                waiter.set_result(None)
        self._waiter = self._drain_waiter = None
        if self._pong is not None and not self._pong.done():
            self._pong.set_result(None)
        handshake = self._handshake
        if handshake is not None and not handshake.done():
            handshake.set_exception(self._exc or ConnectionClosed(ErrorCode.GOING_AWAY))
            handshake.exception()

    # -- receiving -------------------------------------------------------------

    async def recv(self) -> Received:
        """Return the next DATA payload (bytes) or Message; raise ConnectionClosed at the end."""
        while True:
            inbox = self._inbox
            pos = self._pos
            if pos < len(inbox):
                item = inbox[pos]
                pos += 1
                if pos == len(inbox):
                    inbox.clear()
                    self._pos = 0
                    self._consumed()
                else:
                    self._pos = pos
                return item
            await self._wait_for_input()

    async def recv_batch(self) -> list[Received]:
        """Return every message that has arrived (at least one), in order."""
        while True:
            inbox = self._inbox
            if self._pos < len(inbox):
                if self._pos:
                    batch = inbox[self._pos :]
                    inbox.clear()
                else:
                    batch, self._inbox = inbox, []
                self._pos = 0
                self._consumed()
                return batch
            await self._wait_for_input()

    def __aiter__(self) -> Connection:
        return self

    async def __anext__(self) -> Received:
        try:
            return await self.recv()
        except ConnectionClosed as exc:
            if exc.code == ErrorCode.NORMAL:
                raise StopAsyncIteration from None
            raise

    async def _wait_for_input(self) -> None:
        if self._exc is not None:
            raise self._exc.with_traceback(None)
        waiter = self._loop.create_future()
        self._waiter = waiter
        await waiter

    def _consumed(self) -> None:
        self._queued = 0
        if self._read_paused:
            self._read_paused = False
            if not self._write_paused and self._transport is not None:
                self._transport.resume_reading()

    # -- sending ---------------------------------------------------------------

    def write(self, data: bytes) -> None:
        """Queue one DATA frame without waiting; call :meth:`drain` in loops."""
        proto = self.proto
        if len(data) >= _DIRECT_WRITE:
            self._flush()
            head = proto.data_head(len(data))
            if self._is_lost():
                raise self._exc or ConnectionClosed(ErrorCode.GOING_AWAY, "connection lost")
            self._transport.writelines((head, data))  # type: ignore[union-attr]
            return
        proto.send_data(data)
        self._schedule_flush()

    def write_many(self, payloads: Iterable[bytes]) -> None:
        """Queue one DATA frame per payload: the fast path for many small messages."""
        self.proto.send_many(payloads)
        self._schedule_flush()

    def write_message(self, message: Message, channel: int = 0) -> None:
        self.proto.send_message(message, channel)
        self._schedule_flush()

    async def send(self, data: bytes) -> None:
        """Send one DATA frame; waits only while the peer is not keeping up."""
        self.write(data)
        # Small frames are coalesced in proto._out until the loop turns; a
        # loop of sends that never yields must still meet write_high_water.
        if self._write_paused or len(self.proto._out) >= self.limits.write_high_water:
            await self.drain()

    async def send_message(self, message: Message, channel: int = 0) -> None:
        self.write_message(message, channel)
        if self._write_paused or len(self.proto._out) >= self.limits.write_high_water:
            await self.drain()

    async def drain(self) -> None:
        """Wait until the send buffer is below the high-water mark."""
        self._flush()
        if self._is_lost():
            raise self._exc or ConnectionClosed(ErrorCode.GOING_AWAY)
        while self._write_paused:
            waiter = self._loop.create_future()
            self._drain_waiter = waiter
            await waiter
            if self._is_lost():
                raise self._exc or ConnectionClosed(ErrorCode.GOING_AWAY)

    def _is_lost(self) -> bool:
        transport = self._transport
        return transport is None or transport.is_closing()

    def _schedule_flush(self) -> None:
        if self._flush_pending:
            return
        # First write of this loop turn goes out now; the rest of the turn's
        # writes are joined and sent by _flush_later. If the connection is
        # lost, _flush raises and no flush stays pending: the next write
        # raises too instead of queueing into a dead connection.
        self._flush()
        self._flush_pending = True
        self._loop.call_soon(self._flush_later)

    def _flush_later(self) -> None:
        self._flush_pending = False
        # A loop callback must not raise: a connection lost since the last
        # write drops its queue here, and the next send() reports the loss.
        with contextlib.suppress(ConnectionClosed):
            self._flush()

    def _flush(self) -> None:
        proto = self.proto
        if proto._out:
            transport = self._transport
            if transport is None:
                raise LocalProtocolError("connection is not open yet")
            if transport.is_closing():
                proto._out.clear()
                raise self._exc or ConnectionClosed(ErrorCode.GOING_AWAY, "connection lost")
            transport.write(proto.data_to_send())

    # -- closing -------------------------------------------------------------

    async def close(self, code: int = ErrorCode.NORMAL, reason: str = "") -> None:
        """Send CLOSE, wait briefly for the peer's CLOSE, then close the socket."""
        transport = self._transport
        if transport is None or transport.is_closing():
            return
        self.proto.send_close(code, reason)
        self._flush()
        if self._closed is None:
            self._closed = self._loop.create_future()
        try:
            async with asyncio.timeout(self.limits.shutdown_grace):
                await asyncio.shield(self._closed)
        except TimeoutError:
            pass
        finally:
            transport.close()

    def abort(self, code: int, reason: str) -> None:
        """Send an ERROR frame and close now (used for timeouts and limits)."""
        transport = self._transport
        if transport is None or transport.is_closing():
            return
        if self.proto.state is State.HELLO and self.proto.role is Role.SERVER:
            self.proto.refuse(code, reason)
        else:
            self.proto.send_error(code, reason)
        if self._exc is None:
            self._exc = ConnectionClosed(code, reason)
        if self.proto._out:
            transport.write(self.proto.data_to_send())
        transport.close()

    @property
    def closed(self) -> bool:
        return self._exc is not None or self._is_lost()

    @property
    def last_activity(self) -> float:
        return self._last_activity

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        if self._transport is None:
            return default
        return self._transport.get_extra_info(name, default)

    async def ping(self) -> float:
        """Measure one round trip through the peer's protocol layer, in seconds.

        The Pong is taken out of the message stream, so ping() may run while
        another task is reading."""
        if self._pong is not None:
            raise LocalProtocolError("a ping is already in flight on this connection")
        start = time.perf_counter()
        pong = self._pong = self._loop.create_future()
        self.write_message(Ping(int(start * 1e6) & 0x7FFFFFFF))
        await pong
        if self._exc is not None and self.proto.state is not State.OPEN:
            raise self._exc.with_traceback(None)
        return time.perf_counter() - start

    async def wait_handshake(self) -> None:
        if self.proto.state is State.OPEN:
            return
        if self._exc is not None:
            raise self._exc.with_traceback(None)
        if self._handshake is None:
            self._handshake = self._loop.create_future()
        await self._handshake
