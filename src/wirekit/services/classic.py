"""The classic services: echo (RFC 862), daytime (RFC 867), time (RFC 868).

Each runs on TCP, UDP and Unix stream sockets through
:class:`~wirekit.aio.raw.RawServer`. Echo takes two options from the classic
course's servers: ``upper`` (reply upper-cased) and ``stamp`` (prefix each
line with ``[<ctime>] ``; a piece without a newline is stamped once the
sender pauses for ``STAMP_PAUSE`` seconds, or when it reaches the line limit).
Over UDP every line of a datagram is stamped, an unterminated last one too; a
stamped reply longer than the datagram limit (plus ``REPLY_ROOM``) and than the
request gets a one-line error instead, so a datagram of many empty lines cannot
be turned into a reply many times its size.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import struct
import time
from typing import Any

from ..aio.raw import RawServer, RawStream
from ..limits import DEFAULT_LIMITS, Limits
from ..neterrors import printable
from . import ClassicOptions

__all__ = [
    "STAMP_PAUSE",
    "ClassicOptions",
    "daytime_server",
    "daytime_text",
    "echo_server",
    "rfc868_now",
    "stamp_datagram",
    "time_server",
]

log = logging.getLogger("wirekit.services")

#: Seconds of silence after which ``--stamp`` sends a piece that has no newline.
STAMP_PAUSE = 0.05
#: UDP: a reply may be this much longer than the request or the datagram limit,
#: whichever is larger (room for one stamp); a longer one gets an error instead.
REPLY_ROOM = 64
#: RFC 868: seconds from 1900-01-01 to the Unix epoch.
RFC868_OFFSET = 2_208_988_800


def stamp_prefix() -> bytes:
    return f"[{time.ctime()}] ".encode()


def daytime_text() -> bytes:
    """RFC 867 suggests ``Weekday, Month Day, Year HH:MM:SS-Zone``."""
    return time.strftime("%A, %B %d, %Y %H:%M:%S-%Z\r\n").encode()


def rfc868_now() -> bytes:
    """RFC 868: 32-bit big-endian seconds since 1900 (wraps in 2036, as the RFC says)."""
    return struct.pack(">I", (int(time.time()) + RFC868_OFFSET) & 0xFFFFFFFF)


class LineStamper:
    """Splits a byte stream into lines and stamps each; holds a partial line."""

    __slots__ = ("max_line", "partial")

    def __init__(self, max_line: int) -> None:
        self.partial = bytearray()
        self.max_line = max_line

    def feed(self, data: bytes) -> bytes:
        """Stamp every complete line in ``partial + data``; keep the rest."""
        buf = self.partial
        buf += data
        end = buf.rfind(b"\n") + 1
        out = bytearray()
        if end:
            prefix = stamp_prefix()
            max_line = self.max_line
            # Lines end at "\n" only (a lone "\r" is data, as telnet sends "\r\n").
            for line in bytes(buf[:end]).split(b"\n")[:-1]:
                line += b"\n"
                # Cut long lines as a partial line is cut below, so the pieces do
                # not depend on how the stream was split into reads.
                for start in range(0, len(line), max_line):
                    out += prefix + line[start : start + max_line]
            del buf[:end]
        while len(buf) >= self.max_line:  # Limits.max_line_length: never hold more
            out += stamp_prefix() + bytes(buf[: self.max_line])
            del buf[: self.max_line]
        return bytes(out)

    def flush(self) -> bytes:
        if not self.partial:
            return b""
        out = stamp_prefix() + bytes(self.partial)
        self.partial.clear()
        return out


def transform(data: bytes, options: ClassicOptions) -> bytes:
    return data.upper() if options.upper else data


class EchoStream(RawStream):
    def __init__(self, server: RawServer, options: ClassicOptions) -> None:
        super().__init__(server)
        self.options = options
        self.stamper = LineStamper(server.limits.max_line_length) if options.stamp else None
        self.timer: asyncio.TimerHandle | None = None

    def on_data(self, data: bytes) -> None:
        data = transform(data, self.options)
        stamper = self.stamper
        if stamper is None:
            self.transport.write(data)
            return
        out = stamper.feed(data)
        if out:
            self.transport.write(out)
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        if stamper.partial:
            self.timer = self.server.loop.call_later(STAMP_PAUSE, self._flush_partial)

    def _flush_partial(self) -> None:
        self.timer = None
        if self.stamper is not None and not self.transport.is_closing():
            out = self.stamper.flush()
            if out:
                self.transport.write(out)

    def on_eof(self) -> bool | None:
        if self.timer is not None:
            self.timer.cancel()
            self._flush_partial()
        return None  # close after the echo is flushed

    def on_close(self) -> None:
        if self.timer is not None:
            self.timer.cancel()


class OneShotStream(RawStream):
    """Sends one reply on connect and closes (daytime, time)."""

    def __init__(self, server: RawServer, reply: Any) -> None:
        super().__init__(server)
        self.reply = reply

    def on_open(self) -> None:
        self.transport.write(self.reply())
        self.transport.close()


class DatagramService(asyncio.DatagramProtocol):
    """Answers each datagram; oversize ones get a one-line error instead."""

    def __init__(self, server: RawServer, answer: Any) -> None:
        self.server = server
        self.answer = answer
        self.transport: asyncio.DatagramTransport | None = None
        self._raw: socket.socket | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def connection_lost(self, exc: Exception | None) -> None:
        if self._raw is not None:
            self._raw.close()

    def _send_empty(self, addr: Any) -> None:
        """RFC 862 echoes an empty datagram too, but asyncio's and uvloop's
        sendto() silently drop empty data: send it on a duplicate of the socket."""
        if self._raw is None:
            sock = self.transport.get_extra_info("socket")  # type: ignore[union-attr]
            self._raw = socket.socket(sock.family, socket.SOCK_DGRAM, fileno=os.dup(sock.fileno()))
            self._raw.setblocking(False)
        with contextlib.suppress(OSError):
            self._raw.sendto(b"", addr)

    def datagram_received(self, data: bytes, addr: Any) -> None:
        assert self.transport is not None
        limit = self.server.limits.max_datagram_size
        if len(data) > limit:
            log.info("refused datagram of %d bytes from %s", len(data), printable(addr))
            error = f"wirekit: datagram of {len(data)} bytes exceeds limit of {limit} bytes\n"
            if len(error) <= len(data):  # never an amplifier: the reply is not longer
                self.transport.sendto(error.encode(), addr)
            return
        reply = self.answer(data)
        if len(reply) > max(len(data), limit) + REPLY_ROOM:
            # --stamp adds a stamp per line: many short lines would make a reply
            # many times the request, and too long for one datagram.
            log.info("refused reply of %d bytes to %s", len(reply), printable(addr))
            error = f"wirekit: reply of {len(reply)} bytes exceeds limit of {limit} bytes\n"
            if len(error) <= len(data):
                self.transport.sendto(error.encode(), addr)
            return
        if reply:
            self.transport.sendto(reply, addr)
        else:
            self._send_empty(addr)

    def error_received(self, exc: Exception) -> None:
        log.debug("udp error: %s", exc)


def stamp_datagram(data: bytes, max_line: int) -> bytes:
    """``--stamp`` over UDP: every line of ``data`` stamped as the TCP echo stamps
    it, the last one too when it has no newline (the datagram ends it). An empty
    datagram is answered with the stamp alone."""
    if not data:
        return stamp_prefix()
    stamper = LineStamper(max_line)
    return stamper.feed(data) + stamper.flush()


def echo_server(options: ClassicOptions, **kwargs: Any) -> RawServer:
    limits: Limits = kwargs.get("limits", DEFAULT_LIMITS)

    def answer(data: bytes) -> bytes:
        data = transform(data, options)
        return stamp_datagram(data, limits.max_line_length) if options.stamp else data

    return RawServer(
        lambda server: EchoStream(server, options),
        lambda server: DatagramService(server, answer),
        name="echo",
        **kwargs,
    )


def daytime_server(**kwargs: Any) -> RawServer:
    return RawServer(
        lambda server: OneShotStream(server, daytime_text),
        lambda server: DatagramService(server, lambda _data: daytime_text()),
        name="daytime",
        **kwargs,
    )


def time_server(**kwargs: Any) -> RawServer:
    return RawServer(
        lambda server: OneShotStream(server, rfc868_now),
        lambda server: DatagramService(server, lambda _data: rfc868_now()),
        name="time",
        **kwargs,
    )
