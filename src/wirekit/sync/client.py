"""A blocking client over a plain socket, driving the same FrameConnection as
the asyncio layer. No event loop and no thread: every call is a syscall or
two, reading with ``recv_into`` into the buffer the FrameConnection gives
(a preallocated per-thread buffer, or a large frame's own)."""

from __future__ import annotations

import contextlib
import os
import socket
import ssl as ssl_module
import time
from collections import deque
from collections.abc import Iterable, Iterator
from typing import Any

from ..addr import Address, parse_address
from ..busypoll import busy_poll_window
from ..errors import AddressError, ConnectionClosed, ErrorCode, HelloMissing
from ..limits import DEFAULT_LIMITS, Limits
from ..neterrors import connect_error, hello_missing
from ..pacing import unpace_peer
from ..proto import (
    CloseReceived,
    ErrorReceived,
    FrameConnection,
    HelloReceived,
    Message,
    MessageCodec,
    MessageReceived,
    Ping,
    Pong,
    ProtocolViolation,
    Role,
    State,
)

__all__ = ["Connection", "connect"]

_DIRECT_WRITE = 16 * 1024


class Connection:
    """A blocking framed connection: ``send``, ``recv``, ``close``, iteration."""

    def __init__(
        self,
        sock: socket.socket,
        proto: FrameConnection,
        timeout: float | None,
        limits: Limits = DEFAULT_LIMITS,
    ) -> None:
        self._sock = sock
        self.proto = proto
        self.timeout = timeout
        self.limits = limits
        self._inbox: deque[Any] = deque()
        self._exc: BaseException | None = None
        self._pong = False
        self._poll_window = 0.0  # busy polling (set_busy_poll)
        self._poll_until = 0.0
        sock.settimeout(timeout)

    def set_busy_poll(self, window: float | None) -> float:
        """Poll the socket for ``window`` seconds after each send or receive
        before blocking (None: the default, 0: off): the peer then never pays
        to wake this process while traffic flows (:mod:`wirekit.busypoll`).
        Off on a one-CPU machine. Returns the window in effect."""
        self._poll_window = busy_poll_window(window)
        return self._poll_window

    # -- sending ---------------------------------------------------------------

    def send(self, data: bytes, channel: int = 0) -> None:
        """Send one DATA frame."""
        proto = self.proto
        if len(data) >= _DIRECT_WRITE:
            self._flush()
            head = proto.data_head(len(data), channel)
            self._sendall_parts(head, data)
            return
        proto.send_data(data, channel)
        self._flush()

    def send_window(self, channel: int, increment: int) -> None:
        """Grant the peer ``increment`` more bytes of DATA on ``channel``."""
        self.proto.send_window(channel, increment)
        self._flush()

    def send_many(self, payloads: Iterable[bytes]) -> None:
        """Send one DATA frame per payload in as few syscalls as possible: small
        payloads are packed into one buffer, large ones (as decided by the first)
        go out uncopied in one ``sendmsg`` per 1024 buffers."""
        if not isinstance(payloads, list):
            payloads = list(payloads)
        if not payloads or len(payloads[0]) < _DIRECT_WRITE:
            self.proto.send_many(payloads)
            self._flush()
            return
        self._flush()
        buffers: list[bytes] = []
        for data in payloads:
            buffers.append(self.proto.data_head(len(data)))
            buffers.append(data)
        self._send_buffers(buffers)

    def send_message(self, message: Message, channel: int = 0) -> None:
        self.proto.send_message(message, channel)
        self._flush()

    def _flush(self) -> None:
        if self.proto._out:
            self._sendall(self.proto.data_to_send())

    def _sendall(self, data: bytes) -> None:
        if self._poll_window:
            self._poll_until = time.monotonic() + self._poll_window
        try:
            self._sock.sendall(data)
        except TimeoutError:
            raise self._send_timed_out() from None
        except OSError as exc:
            raise self._lost(exc) from None

    def _send_timed_out(self) -> TimeoutError:
        # Part of a frame may be on the wire: the stream cannot be resumed.
        text = f"peer did not accept data within {self.timeout:g} s"
        if self._exc is None:
            self._exc = ConnectionClosed(ErrorCode.GOING_AWAY, f"{text}; connection dropped")
        self._sock.close()
        return TimeoutError(text)

    def _sendall_parts(self, head: bytes, data: bytes) -> None:
        self._send_buffers([head, data])

    def _send_buffers(self, buffers: list[bytes]) -> None:
        """Send every buffer, in order, with vectored writes where the socket has them."""
        if isinstance(self._sock, ssl_module.SSLSocket):  # TLS sockets have no sendmsg
            for data in buffers:
                self._sendall(data)
            return
        if self._poll_window:
            self._poll_until = time.monotonic() + self._poll_window
        views = [memoryview(b) for b in buffers]
        first = 0
        while first < len(views):
            try:
                sent = self._sock.sendmsg(views[first : first + 1024])  # IOV_MAX
            except TimeoutError:
                raise self._send_timed_out() from None
            except OSError as exc:
                raise self._lost(exc) from None
            while sent and sent >= len(views[first]):
                sent -= len(views[first])
                first += 1
            if sent:
                views[first] = views[first][sent:]

    # -- receiving -------------------------------------------------------------

    def recv(self, timeout: float | None = -1.0) -> Any:
        """Return the next payload (bytes) or Message; raise ConnectionClosed at the end.

        ``timeout`` overrides the connection's timeout for this call (None waits
        forever, 0 only takes what has already arrived).
        """
        inbox = self._inbox
        while not inbox:
            self._read(timeout)
        return inbox.popleft()

    def recv_batch(self, timeout: float | None = -1.0) -> list[Any]:
        """Return every message received so far (at least one)."""
        while not self._inbox:
            self._read(timeout)
        batch = list(self._inbox)
        self._inbox.clear()
        return batch

    def __iter__(self) -> Iterator[Any]:
        while True:
            try:
                yield self.recv()
            except ConnectionClosed as exc:
                if exc.code == ErrorCode.NORMAL:
                    return
                raise

    def _read(self, timeout: float | None = -1.0) -> None:
        if self._exc is not None:
            raise self._exc.with_traceback(None)
        sock = self._sock
        buf = self.proto.get_buffer()
        wait = self.timeout if timeout == -1.0 else timeout
        n = None
        if self._poll_window and wait != 0:
            start = time.monotonic()
            if start < self._poll_until:
                until = self._poll_until if wait is None else min(self._poll_until, start + wait)
                n = self._poll_read(sock, buf, until)
                if n is None and wait is not None:  # the timeout counts the polling too
                    timeout = max(0.0, wait - (time.monotonic() - start))
        if n is None:
            n = self._wait_read(sock, buf, timeout, wait)
        if n and self._poll_window:
            self._poll_until = time.monotonic() + self._poll_window
        proto = self.proto
        controls = proto.controls
        events = proto.buffer_updated(n) if n else proto.receive_eof()
        if n == 0 and proto.error is None and self._exc is None:
            self._exc = ConnectionClosed(proto.close_code or ErrorCode.NORMAL, proto.close_reason)
        if proto.controls == controls and not proto._out and n:
            self._inbox.extend(events)
            return
        for event in events:
            if type(event) is bytes:
                self._inbox.append(event)
            elif type(event) is MessageReceived and event.channel == 0:
                if type(event.message) is Pong and self._pong:
                    self._pong = False
                else:
                    self._inbox.append(event.message)
            elif type(event) is HelloReceived:
                pass
            elif type(event) is ProtocolViolation:
                self._exc = event.error
            elif type(event) in (ErrorReceived, CloseReceived):
                self._exc = ConnectionClosed(event.code, event.reason)  # type: ignore[union-attr]
            else:
                self._inbox.append(event)
        if proto._out:
            with contextlib.suppress(OSError):
                sock.sendall(proto.data_to_send())
        if self._exc is not None and not self._inbox:
            self._sock.close()
            raise self._exc.with_traceback(None)

    def _wait_read(
        self, sock: socket.socket, buf: memoryview, timeout: float | None, wait: float | None
    ) -> int:
        """A blocking read; ``timeout`` as for :meth:`recv`, ``wait`` what a
        timeout error reports."""
        if timeout != -1.0:
            sock.settimeout(timeout)
        try:
            return sock.recv_into(buf)
        except (TimeoutError, BlockingIOError, ssl_module.SSLWantReadError):
            # A zero timeout makes the socket non-blocking: a poll that found
            # nothing, which leaves the connection as usable as a timeout does.
            raise TimeoutError(f"no data from the peer within {wait:g} s") from None
        except OSError as exc:
            raise self._lost(exc) from None
        finally:
            if timeout != -1.0:
                sock.settimeout(self.timeout)

    def _poll_read(self, sock: socket.socket, buf: memoryview, until: float) -> int | None:
        """Read without sleeping until ``until`` (monotonic); None when nothing
        came by then (the caller then blocks as usual)."""
        sock.settimeout(0)
        try:
            while True:
                try:
                    return sock.recv_into(buf)
                except (BlockingIOError, ssl_module.SSLWantReadError):
                    if time.monotonic() >= until:
                        return None
                    os.sched_yield()  # whoever else is runnable on this CPU goes first
                except OSError as exc:
                    raise self._lost(exc) from None
        finally:
            sock.settimeout(self.timeout)

    def _lost(self, exc: OSError) -> ConnectionClosed:
        if self._exc is None:
            self._exc = ConnectionClosed(ErrorCode.GOING_AWAY, f"connection lost: {exc}")
        return self._exc  # type: ignore[return-value]

    # -- control -----------------------------------------------------------------

    def ping(self) -> float:
        """Round trip through the peer's protocol layer, in seconds.

        Payloads that arrive before the Pong are kept for ``recv()``."""
        start = time.perf_counter()
        self._pong = True
        self.send_message(Ping(int(start * 1e6) & 0x7FFFFFFF))
        while self._pong:
            self._read()
        return time.perf_counter() - start

    def _closing(self) -> bool:
        return self.proto.state is State.CLOSING

    def wait_handshake(self, timeout: float | None = -1.0) -> None:
        while self.proto.state is State.HELLO:
            self._read(timeout)

    def close(self, code: int = ErrorCode.NORMAL, reason: str = "") -> None:
        """Send CLOSE, wait up to ``limits.shutdown_grace`` for the peer's CLOSE,
        close the socket."""
        if self._sock.fileno() < 0:
            return
        try:
            if self.proto.state is State.OPEN:
                self.proto.send_close(code, reason)
                self._flush()
                deadline = time.monotonic() + self.limits.shutdown_grace
                while self._closing() and time.monotonic() < deadline:
                    self._read(max(0.01, deadline - time.monotonic()))
        except (OSError, ConnectionClosed, TimeoutError):
            pass
        finally:
            self._sock.close()

    def __enter__(self) -> Connection:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def fileno(self) -> int:
        return self._sock.fileno()


def connect(
    addr: str | Address,
    *,
    timeout: float | None = None,
    connect_timeout: float = 30.0,
    limits: Limits = DEFAULT_LIMITS,
    ssl: ssl_module.SSLContext | None = None,
    server_hostname: str | None = None,
    message_types: Iterable[type[Message]] = (),
) -> Connection:
    """Open a blocking framed connection and complete the hello.

    ``timeout`` (seconds) bounds every later send and recv unless a call
    overrides it; the default None blocks, which is also fastest (a socket
    with a timeout polls before every syscall). Connecting and the hello are
    bounded by ``timeout`` when given, else by ``connect_timeout``.
    """
    opening = timeout if timeout is not None else connect_timeout
    address = addr if isinstance(addr, Address) else parse_address(addr)
    if address.scheme == "udp":
        raise AddressError(f"framed connections need tcp, tls or unix, not udp: {address}")
    try:
        if address.is_unix:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.settimeout(opening)
            try:
                sock.connect(address.path)
            except BaseException:
                sock.close()
                raise
        else:
            sock = socket.create_connection((address.host, address.port), timeout=opening)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            unpace_peer(sock)  # wirekit.pacing
        if address.scheme == "tls" or ssl is not None:
            ctx = ssl or ssl_module.create_default_context()
            sock = ctx.wrap_socket(sock, server_hostname=server_hostname or address.host)
    except (OSError, TimeoutError) as exc:
        raise connect_error(address, exc) from None
    proto = FrameConnection(
        Role.CLIENT, max_frame_size=limits.max_frame_size, codec=MessageCodec(message_types)
    )
    conn = Connection(sock, proto, timeout, limits)
    try:
        conn._flush()
        conn.wait_handshake(opening)
    except TimeoutError:
        sock.close()  # the same error as the asyncio connect()
        raise connect_error(address, TimeoutError(f"no answer within {opening:g} s")) from None
    except HelloMissing as exc:
        sock.close()
        raise hello_missing(address, exc) from None
    except BaseException:
        sock.close()
        raise
    return conn
