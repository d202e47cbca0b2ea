"""Wire constants and encoders for the wirekit frame protocol (docs/protocol.md).

A connection starts with a 12-byte hello from each side (§2), then carries
frames, each an 8-byte head and a payload (§3)::

    hello  = magic "WKIT" | version u8 | flags u8 | reserved u16 | max_frame_size u32
             (flags: 0x01 = sent by the server, the other bits reserved)
    head   = length u32 | type u8 | flags u8 | channel u16        (all big-endian)

The head is read as two u32 words, ``length`` and ``word``; the fast path
(DATA on channel 0, no flags) is exactly ``word == 0``.
"""

from __future__ import annotations

import struct
from enum import Enum, IntEnum

from ..errors import ErrorCode

__all__ = [
    "HEAD",
    "HEAD_SIZE",
    "HELLO",
    "HELLO_FROM_SERVER",
    "HELLO_SIZE",
    "MAGIC",
    "MAX_REASON_BYTES",
    "VERSION",
    "FrameType",
    "Role",
    "data_head",
    "encode_close",
    "encode_error",
    "encode_frame",
    "encode_hello",
    "encode_window",
    "make_word",
]

MAGIC = b"WKIT"
VERSION = 1
HELLO = struct.Struct(">4sBBHI")
HELLO_SIZE = HELLO.size  # 12
#: Hello flag bit 0: the hello was sent by the server (§2.1), so a client that
#: gets its own hello back (an echo service) can tell.
HELLO_FROM_SERVER = 0x01
HEAD = struct.Struct(">II")
HEAD_SIZE = HEAD.size  # 8
WINDOW = struct.Struct(">I")
CODE = struct.Struct(">H")
MAX_REASON_BYTES = 256
MAX_CHANNEL = 0xFFFF


class Role(Enum):
    """The side that opened the connection is the client (§1)."""

    CLIENT = "client"
    SERVER = "server"


class FrameType(IntEnum):
    """Frame types of protocol version 1 (§4)."""

    DATA = 0
    MESSAGE = 1
    EOF = 2
    WINDOW = 3
    ERROR = 4
    CLOSE = 5


def make_word(ftype: int, channel: int = 0, flags: int = 0) -> int:
    return (ftype << 24) | (flags << 16) | channel


def encode_hello(max_frame_size: int, version: int = VERSION, role: Role = Role.CLIENT) -> bytes:
    flags = HELLO_FROM_SERVER if role is Role.SERVER else 0
    return HELLO.pack(MAGIC, version, flags, 0, max_frame_size)


# Heads of small channel-0 DATA frames, precomputed: the hot path of tiny
# messages then costs one list index instead of a struct.pack call.
_SMALL_HEADS = [HEAD.pack(n, 0) for n in range(1024)]


def data_head(length: int) -> bytes:
    """The head of a channel-0 DATA frame carrying ``length`` bytes."""
    if length < 1024:
        return _SMALL_HEADS[length]
    return HEAD.pack(length, 0)


def encode_frame(ftype: int, payload: bytes = b"", channel: int = 0) -> bytes:
    return HEAD.pack(len(payload), make_word(ftype, channel)) + payload


def encode_window(channel: int, increment: int) -> bytes:
    return encode_frame(FrameType.WINDOW, WINDOW.pack(increment), channel)


def _code_reason(code: int, reason: str) -> bytes:
    raw = reason.encode("utf-8", "replace")
    if len(raw) > MAX_REASON_BYTES:
        # Cut on a character boundary so the reason stays valid UTF-8.
        raw = raw[:MAX_REASON_BYTES].decode("utf-8", "ignore").encode("utf-8")
    return CODE.pack(code) + raw


def encode_error(code: ErrorCode | int, reason: str) -> bytes:
    return encode_frame(FrameType.ERROR, _code_reason(code, reason))


def encode_close(code: ErrorCode | int = ErrorCode.NORMAL, reason: str = "") -> bytes:
    return encode_frame(FrameType.CLOSE, _code_reason(code, reason))


def decode_code_reason(payload: bytes) -> tuple[int, str]:
    """Split an ERROR/CLOSE payload; raises ValueError when malformed."""
    if len(payload) < 2:
        raise ValueError(f"payload of {len(payload)} bytes is shorter than the 2-byte code")
    if len(payload) > 2 + MAX_REASON_BYTES:
        raise ValueError(
            f"reason of {len(payload) - 2} bytes exceeds limit of {MAX_REASON_BYTES} bytes"
        )
    (code,) = CODE.unpack_from(payload)
    return code, payload[2:].decode("utf-8")
