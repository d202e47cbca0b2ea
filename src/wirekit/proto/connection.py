"""The sans-I/O frame connection: bytes in, events and bytes-to-send out.

:class:`FrameConnection` owns no socket and never blocks. The I/O layers
(``wirekit.aio``, ``wirekit.sync``) feed it what they read with
:meth:`~FrameConnection.receive_data` and write what
:meth:`~FrameConnection.data_to_send` returns.

Bad peer input never raises out of it: the connection records a
:class:`~wirekit.errors.RemoteProtocolError` in ``error``, queues an ERROR
frame (or, for a peer that is not speaking wirekit at all, one readable text
line) and moves to ``State.FAILED``; the failure is sticky.

For speed, DATA frames on channel 0 are returned as plain ``bytes`` objects
in the event list; every other event is one of the small classes below.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from dataclasses import dataclass
from enum import Enum
from typing import Final

from ..errors import (
    BadHello,
    ConnectionClosed,
    ErrorCode,
    FrameTooLarge,
    HelloMissing,
    LocalProtocolError,
    RemoteProtocolError,
)
from ..limits import DEFAULT_LIMITS
from .frames import (
    HEAD,
    HEAD_SIZE,
    HELLO,
    HELLO_FROM_SERVER,
    HELLO_SIZE,
    MAGIC,
    MAX_CHANNEL,
    VERSION,
    WINDOW,
    FrameType,
    Role,
    data_head,
    decode_code_reason,
    encode_close,
    encode_error,
    encode_frame,
    encode_hello,
    make_word,
)
from .messages import Message, MessageCodec, Ping, Pong

__all__ = [
    "ChannelEOF",
    "CloseReceived",
    "DataReceived",
    "ErrorReceived",
    "Event",
    "FrameConnection",
    "HelloReceived",
    "MessageReceived",
    "ProtocolViolation",
    "Role",
    "State",
    "WindowUpdate",
]


class State(Enum):
    HELLO = "hello"  # waiting for the peer's hello
    OPEN = "open"  # frames flow both ways
    CLOSING = "closing"  # we sent CLOSE; reading until the peer's CLOSE
    CLOSED = "closed"  # a CLOSE frame was sent or received
    FAILED = "failed"  # a protocol error ended the connection


@dataclass(frozen=True, slots=True)
class HelloReceived:
    version: int
    max_frame_size: int


@dataclass(frozen=True, slots=True)
class DataReceived:
    """DATA on a channel other than 0 (channel 0 data arrives as ``bytes``)."""

    channel: int
    data: bytes


@dataclass(frozen=True, slots=True)
class MessageReceived:
    channel: int
    message: Message


@dataclass(frozen=True, slots=True)
class ChannelEOF:
    channel: int


@dataclass(frozen=True, slots=True)
class WindowUpdate:
    channel: int
    increment: int


@dataclass(frozen=True, slots=True)
class ErrorReceived:
    """The peer reported an error; it closes the connection next."""

    code: int
    reason: str


@dataclass(frozen=True, slots=True)
class CloseReceived:
    code: int
    reason: str


@dataclass(frozen=True, slots=True)
class ProtocolViolation:
    """We detected a peer error; the error frame is queued in data_to_send()."""

    error: RemoteProtocolError


Event = (
    bytes
    | HelloReceived
    | DataReceived
    | MessageReceived
    | ChannelEOF
    | WindowUpdate
    | ErrorReceived
    | CloseReceived
    | ProtocolViolation
)

NOT_WIREKIT_LINE: Final = (
    b"wirekit: this port speaks the wirekit frame protocol; "
    b"use 'wirekit' or the wirekit library to talk to it\r\n"
)
_HTTP_METHODS: Final = (
    b"GET ",
    b"HEAD ",
    b"POST ",
    b"PUT ",
    b"DELETE ",
    b"OPTIONS ",
    b"PATCH ",
    b"CONNECT ",
    b"TRACE ",
    b"PRI ",
)
_HTTP_REPLY: Final = (
    b"HTTP/1.0 400 Bad Request\r\nContent-Type: text/plain\r\nConnection: close\r\n"
    b"Content-Length: %d\r\n\r\n" % len(NOT_WIREKIT_LINE)
) + NOT_WIREKIT_LINE
#: Payloads at least this big are copied straight out of the read buffer.
_LARGE_PAYLOAD: Final = 16 * 1024
#: An unfinished frame up to this size is carried to the next read in the
#: scratch buffer (one small copy); a bigger one gets a buffer of its own,
#: which grows with the bytes that arrive (protocol.md §3.1).
_MAX_CARRY: Final = 128 * 1024
_SCRATCH_SIZE: Final = 256 * 1024
_local = threading.local()


def _scratch() -> memoryview:
    """This thread's read buffer (reads are parsed before the next read)."""
    try:
        view: memoryview = _local.scratch
    except AttributeError:
        view = _local.scratch = memoryview(bytearray(_SCRATCH_SIZE + _MAX_CARRY + HEAD_SIZE))
    return view


_REFUSAL: Final = b"wirekit: "
_MAX_REFUSAL: Final = 512
_DATA: Final = int(FrameType.DATA)
_EOF0: Final = make_word(FrameType.EOF, 0)  # the word of an EOF frame on channel 0
_MAX_TYPE: Final = max(FrameType)


class FrameConnection:
    """One side of a wirekit connection, without I/O.

    A client queues its hello at construction; a server answers with its own
    hello once the client's has arrived (protocol.md §2), so a person who
    types into a wirekit port sees only a readable error line.
    """

    __slots__ = (
        "_buf",
        "_carried",
        "_codec",
        "_eof_channels",
        "_have",
        "_max",
        "_out",
        "_parts",
        "_plen",
        "_pword",
        "_target",
        "close_code",
        "close_reason",
        "controls",
        "error",
        "peer_max_frame_size",
        "receive_limit",
        "role",
        "state",
    )

    def __init__(
        self,
        role: Role,
        *,
        max_frame_size: int = DEFAULT_LIMITS.max_frame_size,
        codec: MessageCodec | None = None,
    ) -> None:
        self.role = role
        self.state = State.HELLO
        self._max = max_frame_size
        #: The largest frame accepted from the peer: the max_frame_size our hello
        #: announces, unless lowered (an authenticating server reads only small
        #: frames until the peer has proved who it is, protocol.md §9).
        self.receive_limit = max_frame_size
        self._codec = codec if codec is not None else _DEFAULT_CODEC
        self._buf = b""  # a partial hello or frame head (rare, small: bytes, no buffer)
        self._out = bytearray()
        self._eof_channels: set[int] | None = None  # made on the first EOF
        self._parts: list[bytes] | None = None  # payload pieces of an unfinished frame
        self._have = self._plen = self._pword = 0
        self._target: bytearray | None = None  # what has arrived of a large frame
        self._carried = 0  # bytes of self._buf copied to the scratch buffer's start
        self.peer_max_frame_size: int | None = None
        self.error: RemoteProtocolError | None = None
        self.close_code: int | None = None
        self.close_reason = ""
        #: Count of events other than channel-0 data produced so far; the I/O
        #: layer compares it before and after receive_data() to skip scanning.
        self.controls = 0
        if role is Role.CLIENT:
            self._out += encode_hello(max_frame_size)

    # -- output ------------------------------------------------------------

    def data_to_send(self) -> bytes:
        """Return and clear the bytes queued for the peer."""
        out = bytes(self._out)
        self._out.clear()
        return out

    def _check_send(self, size: int) -> None:
        if self.state is not State.OPEN:
            self._check_state()
        limit = self.peer_max_frame_size or self._max
        if size > limit:
            raise LocalProtocolError(f"frame of {size} bytes exceeds limit of {limit} bytes")

    def send_data(self, data: bytes, channel: int = 0) -> None:
        self._check_send(len(data))
        if channel:
            self._check_channel(channel)
            self._out += HEAD.pack(len(data), make_word(_DATA, channel))
        else:
            self._out += data_head(len(data))
        self._out += data

    def _check_state(self) -> None:
        if self.state is State.HELLO:
            if self.role is Role.SERVER:
                raise LocalProtocolError("cannot send before the client's hello has arrived")
            return  # a client may pipeline frames behind its hello (protocol.md §2)
        raise ConnectionClosed(
            self.close_code if self.close_code is not None else ErrorCode.NORMAL,
            self.close_reason,
        )

    def data_head(self, length: int, channel: int = 0) -> bytes:
        """Check and return the head of a DATA frame whose payload the caller
        writes itself, right after this head (large payloads, no copy)."""
        self._check_send(length)
        if self._out:
            raise LocalProtocolError("flush data_to_send() before writing a frame directly")
        if channel:
            self._check_channel(channel)
            return HEAD.pack(length, make_word(_DATA, channel))
        return data_head(length)

    def send_many(self, payloads: Iterable[bytes]) -> None:
        """Queue one channel-0 DATA frame per payload (the batch fast path)."""
        if self.state is not State.OPEN:
            self._check_state()
        limit = self.peer_max_frame_size or self._max
        out = self._out
        start = len(out)
        for data in payloads:
            n = len(data)
            if n > limit:
                del out[start:]  # all or nothing: drop the batch's frames queued so far
                raise LocalProtocolError(f"frame of {n} bytes exceeds limit of {limit} bytes")
            out += data_head(n) if n < 1024 else HEAD.pack(n, 0)
            out += data

    def send_message(self, message: Message, channel: int = 0) -> None:
        payload = self._codec.encode(message)
        self._check_send(len(payload))
        self._check_channel(channel)
        self._out += encode_frame(FrameType.MESSAGE, payload, channel)

    def send_eof(self, channel: int = 0) -> None:
        self._check_send(0)
        self._check_channel(channel)
        self._out += encode_frame(FrameType.EOF, b"", channel)

    def send_window(self, channel: int, increment: int) -> None:
        self._check_send(4)
        self._check_channel(channel)
        if not 0 < increment < 2**32:
            raise LocalProtocolError(f"window increment {increment} is out of range 1-{2**32 - 1}")
        self._out += encode_frame(FrameType.WINDOW, WINDOW.pack(increment), channel)

    def send_close(self, code: int = ErrorCode.NORMAL, reason: str = "") -> None:
        """Queue a CLOSE frame; nothing may be sent after it."""
        if self.state is not State.OPEN and self.state is not State.HELLO:
            return
        if self.state is State.HELLO and self.role is Role.SERVER:
            self._out += encode_hello(self._max, role=Role.SERVER)
        self._out += encode_close(code, reason)
        self.state = State.CLOSING
        self.close_code, self.close_reason = code, reason

    def send_error(self, code: int, reason: str) -> None:
        """Queue an ERROR frame and fail the connection (e.g. on a timeout)."""
        if self.state is not State.OPEN and self.state is not State.HELLO:
            return
        if self.state is State.HELLO and self.role is Role.SERVER:
            self._out += encode_hello(self._max, role=Role.SERVER)
        self._out += encode_error(code, reason)
        self.state = State.FAILED
        self.close_code, self.close_reason = code, reason

    def refuse(self, code: int, reason: str) -> None:
        """Fail before the hello is complete (a limit, a timeout). The server
        says why in one text line rather than a frame: the peer has not shown
        it speaks wirekit, and a wirekit client reports the line (§2.5)."""
        if self.state is not State.HELLO:
            return
        if self.role is Role.SERVER:
            self._out += _REFUSAL + reason.encode("utf-8", "replace") + b"; closing\r\n"
        self.state = State.FAILED
        self.close_code, self.close_reason = code, reason
        self.error = BadHello(
            reason,
            ErrorCode(code) if code in ErrorCode._value2member_map_ else ErrorCode.PROTOCOL_ERROR,
        )

    def handshake_timeout(self, reason: str) -> None:
        """The peer sent no complete hello in time."""
        self.refuse(ErrorCode.HANDSHAKE_TIMEOUT, reason)

    @staticmethod
    def _check_channel(channel: int) -> None:
        if not 0 <= channel <= MAX_CHANNEL:
            raise LocalProtocolError(f"channel {channel} is out of range 0-{MAX_CHANNEL}")

    # -- input -------------------------------------------------------------

    def receive_eof(self) -> list[Event]:
        """The peer closed its side; returns a violation if that was abrupt."""
        if self.state is State.HELLO or self.state is State.OPEN or self.state is State.CLOSING:
            if self.role is Role.CLIENT and self.peer_max_frame_size is None and self._buf:
                buffered = bytes(self._buf)
                if _REFUSAL.startswith(buffered[: len(_REFUSAL)]) and len(buffered) > len(MAGIC):
                    events: list[Event] = []
                    self._not_wirekit(buffered[:16], events, eof=True)
                    return events
            unfinished = self._parts is not None or self._target is not None
            if self.role is Role.CLIENT and self.peer_max_frame_size is None and not self._buf:
                error = HelloMissing("the server closed the connection before its hello")
                return self._fail(error)
            if self._buf or unfinished or self.state is State.HELLO:
                what = "hello" if self.peer_max_frame_size is None else "frame"
                return self._fail(RemoteProtocolError(f"connection ended inside a {what}"))
            self.state = State.CLOSED
            self.close_code, self.close_reason = ErrorCode.NORMAL, "peer closed without CLOSE"
        return []

    def receive_data(self, data: bytes) -> list[Event]:
        """Feed bytes read from the peer; return the events they complete."""
        events: list[Event] = []
        if self.state is State.OPEN or (
            self.state is State.CLOSING and self.peer_max_frame_size is not None
        ):
            self._parse(data, events)
        elif self.state is State.HELLO or self.state is State.CLOSING:
            # CLOSING without the peer's hello: we closed first, its hello is still due.
            self._receive_hello(data, events)
        return events

    # -- zero-copy input: asyncio BufferedProtocol and recv_into -------------

    def get_buffer(self, sizehint: int = -1) -> memoryview:
        """Where the next read should land; then call :meth:`buffer_updated`.

        Reads land in a per-thread scratch buffer, after whatever partial
        frame is carried over. The payload of a large frame that spans reads
        is appended to a buffer of its own, which grows with what arrives:
        never allocated at the length a head announces, so a peer cannot make
        us hold memory it has not sent (protocol.md §3.1).
        """
        if self._parts is not None:
            self._settle_pending()
        scratch = _scratch()
        carry = self._buf
        k = len(carry)
        if k:
            scratch[:k] = carry  # _buf is cleared once the read has happened
        self._carried = k
        return scratch[k:]

    def buffer_updated(self, nbytes: int) -> list[Event]:
        """``nbytes`` were read into the buffer from :meth:`get_buffer`."""
        target = self._target
        if target is not None:
            return self._extend_target(target, nbytes)
        events: list[Event] = []
        view = _scratch()[: self._carried + nbytes]
        if self._carried:
            self._buf = b""
            self._carried = 0
        if self.state is not State.OPEN or len(view) < HEAD_SIZE:
            return self.receive_data(bytes(view))
        if HEAD.unpack_from(view)[0] < _LARGE_PAYLOAD:
            return self.receive_data(bytes(view))  # small frames: slicing bytes is cheapest
        self._parse_view(view, events)
        return events

    def _extend_target(self, target: bytearray, nbytes: int) -> list[Event]:
        """A read while a large frame is unfinished: append its payload bytes,
        then parse what follows the frame in the same read."""
        view = _scratch()[:nbytes]
        missing = self._plen - len(target)
        if nbytes < missing:
            target += view
            return []
        target += view[:missing]
        events: list[Event] = []
        if not self._finish_target(events) or nbytes == missing:
            return events
        rest = view[missing:]
        if (
            self.state is State.OPEN
            and len(rest) >= HEAD_SIZE
            and HEAD.unpack_from(rest)[0] >= _LARGE_PAYLOAD
        ):
            self._parse_view(rest, events)
        else:
            events += self.receive_data(bytes(rest))
        return events

    def _finish_target(self, events: list[Event]) -> bool:
        """Deliver the completed large frame; False when the connection ended."""
        payload = bytes(self._target)  # type: ignore[arg-type]  # the final copy
        self._target = None
        word = self._pword
        if word == 0 and not (self._eof_channels and 0 in self._eof_channels):
            events.append(payload)
            return True
        return self._control(word, payload, events)

    def _parse_view(self, view: memoryview, events: list[Event]) -> None:
        """Parse frames straight out of the scratch buffer (large payloads)."""
        unpack = HEAD.unpack_from
        limit = self.receive_limit
        end = len(view)
        pos = 0
        while end - pos >= HEAD_SIZE:
            length, word = unpack(view, pos)
            if length > limit:
                self._fail(FrameTooLarge(length, limit), events)
                return
            start = pos + HEAD_SIZE
            stop = start + length
            if stop > end:
                if length > _MAX_CARRY:
                    # Keep what has arrived, not the announced length (§3.1).
                    self._target = bytearray(view[start:end])
                    self._plen, self._pword = length, word
                    return
                break
            payload = bytes(view[start:stop])
            if word == 0 and not (self._eof_channels and 0 in self._eof_channels):
                events.append(payload)
            elif not self._control(word, payload, events):
                return
            pos = stop
        if pos < end:
            self._buf = bytes(view[pos:])  # a partial head or small frame: carried over

    def _settle_pending(self) -> None:
        """Turn a frame left unfinished by receive_data() into buffered-read state."""
        parts = self._parts
        if parts is None:
            return
        self._parts = None
        if self._plen > _MAX_CARRY:
            self._target = bytearray().join(parts)  # what has arrived, not the length (§3.1)
        else:
            self._buf = HEAD.pack(self._plen, self._pword) + b"".join(parts)

    def _receive_hello(self, data: bytes, events: list[Event]) -> None:
        self.controls += 1
        buf = self._buf = self._buf + data
        prefix = buf[: len(MAGIC)]
        if not MAGIC.startswith(prefix):
            self._not_wirekit(bytes(buf[:16]), events)
            return
        if len(buf) < HELLO_SIZE:
            return
        __magic, version, flags, reserved, peer_max = HELLO.unpack_from(buf)
        rest = buf[HELLO_SIZE:]
        self._buf = b""
        if version != VERSION:
            self._fail(
                BadHello(
                    f"protocol version {version} is not supported (this side speaks {VERSION})",
                    ErrorCode.BAD_VERSION,
                ),
                events,
            )
            return
        if flags & ~HELLO_FROM_SERVER or reserved or peer_max == 0:
            self._fail(BadHello("malformed hello: reserved fields must be zero"), events)
            return
        # §2.3 step 5: the server flag must name the other side, so a client that
        # reaches an echo service fails instead of taking its own hello back.
        if bool(flags & HELLO_FROM_SERVER) is (self.role is Role.SERVER):
            self._fail(BadHello(self._wrong_role(buf)), events)
            return
        if self.state is State.HELLO:
            if self.role is Role.SERVER:
                self._out += encode_hello(self._max, role=Role.SERVER)
            self.state = State.OPEN
        self.peer_max_frame_size = self._max if peer_max == self._max else peer_max
        events.append(HelloReceived(version, peer_max))
        if rest:
            self._parse(rest, events)

    def _wrong_role(self, hello: bytes) -> str:
        if self.role is Role.SERVER:
            return "peer sent a server hello (flag 0x01 set), not a client hello"
        if hello[:HELLO_SIZE] == encode_hello(self._max):
            return "peer echoed our hello: is this an echo service?"
        return "peer sent a client hello (flag 0x01 clear), not a server hello"

    def _not_wirekit(self, seen: bytes, events: list[Event], *, eof: bool = False) -> None:
        if self.role is Role.SERVER:
            # A method name split across reads: wait (bounded by the hello timeout).
            if len(seen) < 8 and any(m.startswith(seen) for m in _HTTP_METHODS):
                return
            is_http = seen.startswith(_HTTP_METHODS)
            error = BadHello(
                "peer is not speaking wirekit" + (" (HTTP request)" if is_http else ""),
                ErrorCode.BAD_MAGIC,
            )
            if self.state is State.HELLO:  # nothing follows our own CLOSE
                self._out += _HTTP_REPLY if is_http else NOT_WIREKIT_LINE
        elif _REFUSAL.startswith(seen[: len(_REFUSAL)]):
            # protocol.md §2: a server that refuses before its hello (a limit, a
            # timeout) says why in one "wirekit: ..." line; report that line.
            line = bytes(self._buf)
            if b"\n" not in line and len(line) < _MAX_REFUSAL and not eof:
                return
            text = line.split(b"\n", 1)[0][len(_REFUSAL) :].decode("utf-8", "replace").strip()
            text = text.removesuffix("; closing")
            error = BadHello(f"server refused the connection: {text}", ErrorCode.PROTOCOL_ERROR)
        else:
            error = BadHello(f"peer is not a wirekit server: it sent {seen!r}", ErrorCode.BAD_MAGIC)
        self._buf = b""
        self.error = error
        self.state = State.FAILED
        self.close_code, self.close_reason = error.code, str(error)
        events.append(ProtocolViolation(error))

    def _fail(self, error: RemoteProtocolError, events: list[Event] | None = None) -> list[Event]:
        if events is None:
            events = []
        self.controls += 1
        if self.state is State.HELLO and self.role is Role.SERVER:
            self._out += encode_hello(self._max, role=Role.SERVER)
        if self.state is State.OPEN or self.state is State.HELLO:
            self._out += encode_error(error.code, str(error))
        self._buf = b""
        self.error = error
        self.state = State.FAILED
        self.close_code, self.close_reason = error.code, str(error)
        self._parts = None
        self._target = None
        events.append(ProtocolViolation(error))
        return events

    def _parse(self, data: bytes, events: list[Event]) -> None:
        pos = 0
        target = self._target
        if target is not None:  # a large frame begun by a buffered read
            pos = min(len(data), self._plen - len(target))
            target += memoryview(data)[:pos]
            if len(target) < self._plen or not self._finish_target(events) or pos == len(data):
                return
        if len(self._buf) >= HEAD_SIZE:  # a frame carried by a buffered read
            carried = self._buf
            self._plen, self._pword = HEAD.unpack_from(carried)
            self._parts, self._have = [carried[HEAD_SIZE:]], len(carried) - HEAD_SIZE
            self._buf = b""
        if self._parts is not None or self._buf:
            pos = self._resume(data, events)
            if pos < 0:
                return
        unpack = HEAD.unpack_from
        limit = self.receive_limit
        # The fast path skips every check, so it closes once channel 0 has seen EOF.
        fast = -1 if self._eof_channels and 0 in self._eof_channels else 0
        append = events.append
        end = len(data)
        # protocol.md §3: the length is checked before any payload is kept.
        while end - pos >= HEAD_SIZE:
            length, word = unpack(data, pos)
            if length > limit:
                self._fail(FrameTooLarge(length, limit), events)
                return
            start = pos + HEAD_SIZE
            stop = start + length
            if stop > end:
                # Keep the payload's first piece; later reads add theirs (no rescans).
                self._parts = [data[start:]]
                self._have = end - start
                self._plen = length
                self._pword = word
                return
            if word == fast:
                append(data[start:stop])
            elif not self._control(word, data[start:stop], events):
                return
            elif word == _EOF0:
                fast = -1
            pos = stop
        if pos < end:
            self._buf += data[pos:]  # a partial head, under 8 bytes

    def _resume(self, data: bytes, events: list[Event]) -> int:
        """Complete the frame a previous read left unfinished; return where the
        next frame starts in ``data``, or -1 when ``data`` is used up (or the
        connection ended)."""
        pos = 0
        if self._parts is None:
            pos = HEAD_SIZE - len(self._buf)
            buf = self._buf = self._buf + data[:pos]
            if len(buf) < HEAD_SIZE:
                return -1
            length, word = HEAD.unpack(buf)
            self._buf = b""
            if length > self.receive_limit:
                self._fail(FrameTooLarge(length, self.receive_limit), events)
                return -1
            self._parts, self._have, self._plen, self._pword = [], 0, length, word
        parts = self._parts
        missing = self._plen - self._have
        if len(data) - pos < missing:
            if pos < len(data):
                parts.append(data[pos:] if pos else data)
            self._have += len(data) - pos
            return -1
        stop = pos + missing
        parts.append(data[pos:stop] if pos or stop < len(data) else data)
        payload = parts[0] if len(parts) == 1 else b"".join(parts)  # the one copy
        self._parts = None
        word = self._pword
        if word == 0 and not (self._eof_channels and 0 in self._eof_channels):
            events.append(payload)
        elif not self._control(word, payload, events):
            return -1
        return stop if stop < len(data) else -1

    def _control(self, word: int, payload: bytes, events: list[Event]) -> bool:
        """Handle a frame off the fast path; False when the connection ended."""
        self.controls += 1
        ftype, flags, channel = word >> 24, (word >> 16) & 0xFF, word & 0xFFFF
        try:
            if flags:
                raise RemoteProtocolError(f"frame flags 0x{flags:02x} are not defined in version 1")
            if ftype > _MAX_TYPE:
                raise RemoteProtocolError(f"unknown frame type {ftype}", ErrorCode.UNKNOWN_TYPE)
            event = self._decode_frame(FrameType(ftype), channel, payload)
        except RemoteProtocolError as exc:
            self._fail(exc, events)
            return False
        if event is not None:
            events.append(event)
        return self.state is State.OPEN or self.state is State.CLOSING

    def _decode_frame(self, ftype: FrameType, channel: int, payload: bytes) -> Event | None:
        if ftype in (FrameType.DATA, FrameType.EOF, FrameType.MESSAGE, FrameType.WINDOW):
            eofs = self._eof_channels
            if eofs and channel in eofs and ftype is not FrameType.WINDOW:
                raise RemoteProtocolError(
                    f"{ftype.name} frame on channel {channel} after its EOF", ErrorCode.WRONG_STATE
                )
        elif channel:
            raise RemoteProtocolError(f"{ftype.name} frame must use channel 0, not {channel}")
        if ftype is FrameType.DATA:
            return payload if channel == 0 else DataReceived(channel, payload)
        if ftype is FrameType.MESSAGE:
            message = self._codec.decode(payload)
            if type(message) is Ping:
                if self.state is not State.OPEN:
                    return None  # nothing follows our own CLOSE (§6.2)
                self._out += encode_frame(
                    FrameType.MESSAGE, self._codec.encode(Pong(message.nonce)), channel
                )
                return None
            return MessageReceived(channel, message)
        if ftype is FrameType.EOF:
            if payload:
                raise RemoteProtocolError(f"EOF frame carries {len(payload)} bytes, must be empty")
            if self._eof_channels is None:
                self._eof_channels = set()
            self._eof_channels.add(channel)
            return ChannelEOF(channel)
        if ftype is FrameType.WINDOW:
            if len(payload) != 4:
                raise RemoteProtocolError(f"WINDOW frame of {len(payload)} bytes, must be 4")
            (increment,) = WINDOW.unpack(payload)
            if increment == 0:
                raise RemoteProtocolError("WINDOW increment must not be zero")
            return WindowUpdate(channel, increment)
        try:
            code, reason = decode_code_reason(payload)
        except (ValueError, UnicodeDecodeError) as exc:
            raise RemoteProtocolError(
                f"malformed {ftype.name} frame: {exc}", ErrorCode.BAD_ENCODING
            ) from None
        self.close_code, self.close_reason = code, reason
        if ftype is FrameType.CLOSE:
            if self.state is State.OPEN:
                self._out += encode_close(ErrorCode.NORMAL, "")  # protocol.md §6.2: echo CLOSE
            self.state = State.CLOSED
            return CloseReceived(code, reason)
        self.state = State.FAILED
        return ErrorReceived(code, reason)


_DEFAULT_CODEC = MessageCodec()
