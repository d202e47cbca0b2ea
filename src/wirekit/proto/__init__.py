"""Sans-I/O protocol layer: no sockets, no event loop, no clocks."""

from .connection import (
    ChannelEOF,
    CloseReceived,
    DataReceived,
    ErrorReceived,
    Event,
    FrameConnection,
    HelloReceived,
    MessageReceived,
    ProtocolViolation,
    Role,
    State,
    WindowUpdate,
)
from .frames import FrameType
from .messages import Message, MessageCodec, Ping, Pong

__all__ = [
    "ChannelEOF",
    "CloseReceived",
    "DataReceived",
    "ErrorReceived",
    "Event",
    "FrameConnection",
    "FrameType",
    "HelloReceived",
    "Message",
    "MessageCodec",
    "MessageReceived",
    "Ping",
    "Pong",
    "ProtocolViolation",
    "Role",
    "State",
    "WindowUpdate",
]
