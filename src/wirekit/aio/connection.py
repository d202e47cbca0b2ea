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
import time
from collections.abc import Callable, Iterable
from typing import Any, cast

from ..busypoll import LoopPoller, busy_poll_window
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

__all__ = ["Connection", "MessageHandler", "Received"]

log = logging.getLogger("wirekit.connection")

#: What ``recv()`` returns: DATA frames as bytes, MESSAGE frames as Message
#: objects, and other channel events as their event objects.
Received = bytes | Message | Event

# An idle connection holds this shared empty tuple, not a list of its own.
_NO_INBOX: tuple[()] = ()

# Payloads at least this big skip the coalescing buffer and are handed to the
# transport as they are (no copy); smaller ones are batched.
_DIRECT_WRITE = 16 * 1024


class MessageHandler:
    """A callback-style handler: ``serve(MyHandler(), addr)``.

    One instance serves every connection and no task is created per
    connection, so an idle connection costs least and a message is answered
    in the same loop turn it arrives in. Writes made in a callback are sent
    with one syscall when the callback returns. Keep per-connection state in
    ``conn.state``. A callback that raises closes its connection with
    INTERNAL_ERROR; the server goes on.
    """

    def connection_open(self, conn: Connection) -> None:
        """The hello is done; ``conn`` may send."""

    def messages_received(self, conn: Connection, messages: list[Received]) -> None:
        """Every message of one read, in order; calls message_received for each."""
        for message in messages:
            self.message_received(conn, message)

    def message_received(self, conn: Connection, message: Received) -> None:
        """One DATA payload (bytes) or Message."""

    def connection_closed(self, conn: Connection, exc: BaseException | None) -> None:
        """The connection is gone; ``exc`` says why (a ConnectionClosed for a clean close)."""


class Connection(asyncio.BufferedProtocol):
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
        "_handler",
        "_handshake",
        "_inbox",
        "_last_activity",
        "_loop",
        "_on_close",
        "_pending",
        "_pending_size",
        "_poller",
        "_pong",
        "_pos",
        "_queued",
        "_read_paused",
        "_transport",
        "_waiter",
        "_write_paused",
        "ip",
        "limits",
        "opened_at",
        "proto",
        "state",
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
        self._inbox: list[Any] | tuple[()] = _NO_INBOX  # a list once messages queue
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
        self._handler: MessageHandler | None = None
        self._pending: list[bytes] | None = None  # large frames queued without copying
        self._pending_size = 0
        self._poller: LoopPoller | None = None
        #: Free for the application (e.g. a MessageHandler's per-connection state).
        self.state: Any = None
        #: The peer's IP address ("unix" for Unix sockets), set by servers.
        self.ip = ""
        self.opened_at = self._last_activity = self._loop.time()

    def set_busy_poll(self, window: float | None) -> float:
        """Keep the event loop polling for ``window`` seconds after each send
        or receive instead of sleeping at once (None: the default, 0: off):
        the peer then never pays to wake this process while traffic flows
        (:mod:`wirekit.busypoll`). For clients; off on a one-CPU machine.
        Returns the window in effect."""
        window = busy_poll_window(window)
        self._poller = LoopPoller(self._loop, window) if window else None
        return window

    # -- asyncio.Protocol callbacks -----------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # TCP_NODELAY is already set: uvloop and asyncio both set it on TCP
        # transports, so small frames never wait for Nagle + delayed ACK.
        stream = cast(asyncio.Transport, transport)  # uvloop's classes do not subclass it
        self._transport = stream
        stream.set_write_buffer_limits(high=self.limits.write_high_water)
        if self.proto._out:
            stream.write(self.proto.data_to_send())

    def get_buffer(self, sizehint: int) -> memoryview:
        return self.proto.get_buffer(sizehint)

    def buffer_updated(self, nbytes: int) -> None:
        proto = self.proto
        controls = proto.controls
        self._received(proto.buffer_updated(nbytes), controls, nbytes)

    def data_received(self, data: bytes) -> None:
        """For transports that do not read into buffers."""
        proto = self.proto
        controls = proto.controls
        self._received(proto.receive_data(data), controls, len(data))

    def _received(self, events: list[Any], controls: int, nbytes: int) -> None:
        proto = self.proto
        self._last_activity = self._loop.time()
        if self._poller is not None:
            self._poller.poke()
        if proto.controls != controls or proto._out:
            events = self._control_events(events)
        if events:
            if self._handler is not None:
                self._dispatch(self._handler, events)
                return
            if self._inbox:
                self._inbox += events
            else:
                self._inbox = events
            self._queued += nbytes
            if self._queued > self.limits.read_high_water and not self._read_paused:
                self._read_paused = True
                self._transport.pause_reading()  # type: ignore[union-attr]
            waiter = self._waiter
            if waiter is not None:
                self._waiter = None
                if not waiter.done():
                    waiter.set_result(None)

    def _dispatch(self, handler: MessageHandler, events: list[Any]) -> None:
        """Hand one read's messages to a callback handler; its writes go out
        in one syscall when it returns."""
        pending = self._flush_pending
        self._flush_pending = True
        try:
            handler.messages_received(self, events)
        except (ConnectionClosed, LocalProtocolError) as exc:
            log.debug("handler stopped for %s: %s", self.peer, exc)
        except Exception as exc:
            log.error("handler failed for %s: %r", self.peer, exc, exc_info=exc)
            self.abort(ErrorCode.INTERNAL_ERROR, "internal server error")
            return
        finally:
            self._flush_pending = pending
        if not pending:
            with contextlib.suppress(ConnectionClosed):
                self._flush()

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
        handler = self._handler
        if handler is not None:
            self._handler = None
            try:
                handler.connection_closed(self, self._exc)
            except Exception as error:
                log.error("connection_closed failed for %s: %r", self.peer, error, exc_info=error)
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
                self._opened()
            elif type(event) is ProtocolViolation:
                self._fail(event.error)
            elif type(event) is ErrorReceived:
                self._fail(ConnectionClosed(event.code, event.reason))
            elif type(event) is CloseReceived:
                self._exc = ConnectionClosed(event.code, event.reason)
            else:
                kept.append(event)
        if proto._out:
            self._write_queued()  # a PONG or WINDOW, after what is queued
        if proto.state is State.CLOSED or proto.state is State.FAILED:
            self._wake_all()
            if self._transport is not None:
                self._close_transport(self._transport)
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
                item: Received = inbox[pos]
                pos += 1
                if pos == len(inbox):
                    self._inbox = _NO_INBOX
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
                batch = list(inbox[self._pos :]) if self._pos else cast(list[Received], inbox)
                self._inbox = _NO_INBOX
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
        if self._waiter is not None and not self._waiter.done():
            # Which task would get the next message is undefined, and a second
            # waiter would replace the first, leaving it waiting for ever.
            raise LocalProtocolError("another task is already waiting in recv()")
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

    def write(self, data: bytes, channel: int = 0) -> None:
        """Queue one DATA frame without waiting; call :meth:`drain` in loops."""
        if len(data) >= _DIRECT_WRITE:
            self._queue_direct(data, channel)
        else:
            self.proto.send_data(data, channel)
        self._schedule_flush()

    def write_window(self, channel: int, increment: int) -> None:
        """Grant the peer ``increment`` more bytes of DATA on ``channel`` (a WINDOW
        frame, protocol.md §4); it leaves this loop turn."""
        self.proto.send_window(channel, increment)
        self._schedule_flush()

    @property
    def write_paused(self) -> bool:
        """True while the transport holds more than ``write_high_water`` bytes:
        producers should stop until :meth:`drain` returns."""
        return self._write_paused

    def write_many(self, payloads: Iterable[bytes]) -> None:
        """Queue one DATA frame per payload: the fast path for many messages.

        Small payloads are packed into one buffer; large ones (as decided by
        the first) are queued as they are, without a copy."""
        if not isinstance(payloads, list):
            payloads = list(payloads)
        if payloads and len(payloads[0]) >= _DIRECT_WRITE:
            for data in payloads:
                self._queue_direct(data)
        else:
            self.proto.send_many(payloads)
        self._schedule_flush()

    def _queued_out(self) -> int:
        """Bytes written but not yet handed to the transport."""
        return len(self.proto._out) + self._pending_size

    def _queue_direct(self, data: bytes, channel: int = 0) -> None:
        """Queue a frame whose payload is passed to the transport uncopied."""
        proto = self.proto
        pending = self._pending
        if pending is None:
            pending = self._pending = []
        if proto._out:
            pending.append(proto.data_to_send())  # keep the order of frames
        pending.append(proto.data_head(len(data), channel))
        pending.append(data)
        self._pending_size += len(data)

    def write_message(self, message: Message, channel: int = 0) -> None:
        self.proto.send_message(message, channel)
        self._schedule_flush()

    def write_messages(self, messages: Iterable[tuple[Message, int]]) -> None:
        """Queue several (message, channel) MESSAGE frames; they leave in one write."""
        send = self.proto.send_message
        for message, channel in messages:
            send(message, channel)
        self._schedule_flush()

    async def send(self, data: bytes) -> None:
        """Send one DATA frame; waits only while the peer is not keeping up."""
        self.write(data)
        # Small frames are coalesced in proto._out until the loop turns; a
        # loop of sends that never yields must still meet write_high_water.
        if self._write_paused or self._queued_out() >= self.limits.write_high_water:
            await self.drain()

    async def send_message(self, message: Message, channel: int = 0) -> None:
        self.write_message(message, channel)
        if self._write_paused or self._queued_out() >= self.limits.write_high_water:
            await self.drain()

    async def drain(self) -> None:
        """Wait until the send buffer is below the high-water mark."""
        self._flush()
        if self._is_lost():
            raise self._exc or ConnectionClosed(ErrorCode.GOING_AWAY)
        while self._write_paused:
            # Tasks sending on one connection share the wake-up; shielded, so
            # that one of them being cancelled does not cancel it for the others.
            waiter = self._drain_waiter
            if waiter is None or waiter.done():
                waiter = self._drain_waiter = self._loop.create_future()
            await asyncio.shield(waiter)
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
        pending = self._pending
        if not proto._out and not pending:
            return
        transport = self._transport
        if transport is None:
            raise LocalProtocolError("connection is not open yet")
        if transport.is_closing():
            proto._out.clear()
            self._pending = None
            self._pending_size = 0
            raise self._exc or ConnectionClosed(ErrorCode.GOING_AWAY, "connection lost")
        if self._poller is not None:
            self._poller.poke()
        self._write_queued()

    def _write_queued(self) -> None:
        """Hand every queued frame to the transport, in the order written: the
        large frames waiting in ``_pending`` first, with ``proto._out`` (queued
        after them) behind. Writing ``proto._out`` alone would let it overtake."""
        transport = self._transport
        if transport is None:
            return
        proto = self.proto
        pending = self._pending
        if pending:
            if proto._out:
                pending.append(proto.data_to_send())
            self._pending = None
            self._pending_size = 0
            transport.writelines(pending)  # one writev for the whole turn
        elif proto._out:
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
            self._close_transport(transport)

    def abort(self, code: int, reason: str) -> None:
        """Send an ERROR frame and close now (used for timeouts and limits).

        Tasks waiting in recv() or send() get ConnectionClosed at once; the
        socket goes once the ERROR frame is sent, or after
        ``Limits.shutdown_grace`` when the peer does not read it."""
        transport = self._transport
        if transport is None or transport.is_closing():
            return
        if self.proto.state is State.HELLO and self.proto.role is Role.SERVER:
            self.proto.refuse(code, reason)
        else:
            self.proto.send_error(code, reason)
        if self._exc is None:
            self._exc = ConnectionClosed(code, reason)
        self._write_queued()  # the ERROR after the frames queued before it
        self._wake_all()
        self._close_transport(transport)

    def _close_transport(self, transport: asyncio.Transport) -> None:
        """Close once what is queued has been sent, within a bound.

        ``transport.close()`` waits for the peer to read the write buffer: a
        peer that stops reading would keep the connection, its server slot and
        any task blocked in send() for ever. Such a connection is dropped
        (``transport.abort()``) after ``Limits.shutdown_grace``, as the raw
        services drop theirs."""
        if transport.is_closing():
            return  # bounded by the first close
        # Only a connection with bytes still queued can linger (TLS queues below
        # the transport, where the size does not show).
        lingers = transport.get_write_buffer_size() or transport.get_extra_info("ssl_object")
        transport.close()
        if lingers:
            self._loop.call_later(self.limits.shutdown_grace, transport.abort)

    def _opened(self) -> None:
        """The hello completed (servers start their handler here)."""

    @property
    def peer(self) -> Any:
        """The peer's address as the socket reports it."""
        return self.get_extra_info("peername")

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
