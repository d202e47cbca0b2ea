"""The wirekit exception tree.

Every error says whose fault it is::

    WirekitError
     ├── LocalProtocolError        you (the caller) misused the API
     ├── RemoteProtocolError       the peer broke the protocol; has .code
     │    ├── BadHello             wrong magic or version at connection start
     │    │    └── HelloMissing    the server closed before sending any hello
     │    └── FrameTooLarge        a frame head announced more than the limit
     ├── ConnectionClosed          the connection is gone; has .code and .reason
     ├── ConnectError              could not connect (refused, unknown host, timeout)
     ├── ListenError               could not listen (port in use, permission denied)
     ├── AddressError              an address string could not be parsed
     ├── AuthenticationFailed      credentials were refused
     └── ServiceError              the service understood and said no

Messages are lowercase and state the limit or the value at fault, e.g.
"frame of 2000000 bytes exceeds limit of 1048576 bytes".
"""

from __future__ import annotations

from enum import IntEnum

__all__ = [
    "AddressError",
    "AuthenticationFailed",
    "BadHello",
    "ConnectError",
    "ConnectionClosed",
    "ErrorCode",
    "FrameTooLarge",
    "HelloMissing",
    "ListenError",
    "LocalProtocolError",
    "RemoteProtocolError",
    "ServiceError",
    "WirekitError",
]


class ErrorCode(IntEnum):
    """Codes carried by ERROR and CLOSE frames (docs/protocol.md §6)."""

    NORMAL = 0
    PROTOCOL_ERROR = 1
    BAD_MAGIC = 2
    BAD_VERSION = 3
    FRAME_TOO_LARGE = 4
    UNKNOWN_TYPE = 5
    BAD_ENCODING = 6
    SCHEMA_MISMATCH = 7
    WRONG_STATE = 8
    HANDSHAKE_TIMEOUT = 9
    IDLE_TIMEOUT = 10
    TOO_MANY_CONNECTIONS = 11
    GOING_AWAY = 12
    AUTH_FAILED = 13
    SERVICE_ERROR = 14
    INTERNAL_ERROR = 15

    @classmethod
    def name_of(cls, code: int) -> str:
        try:
            return cls(code).name.lower()
        except ValueError:
            return f"code {code}"


class WirekitError(Exception):
    """Base of every error wirekit raises on purpose."""


class LocalProtocolError(WirekitError):
    """The caller misused the API (e.g. sent after close, oversize send)."""


class RemoteProtocolError(WirekitError):
    """The peer sent something the protocol forbids."""

    def __init__(self, message: str, code: ErrorCode = ErrorCode.PROTOCOL_ERROR) -> None:
        super().__init__(message)
        self.code = code


class BadHello(RemoteProtocolError):
    """The connection did not start with a valid wirekit hello."""


class HelloMissing(BadHello):
    """The server closed the connection before sending any of its hello: often
    a TLS server reached without TLS (the message then says so)."""


class FrameTooLarge(RemoteProtocolError):
    """A frame head announced a payload longer than the limit."""

    def __init__(self, size: int, limit: int) -> None:
        super().__init__(
            f"frame of {size} bytes exceeds limit of {limit} bytes", ErrorCode.FRAME_TOO_LARGE
        )
        self.size = size
        self.limit = limit


class ConnectionClosed(WirekitError):
    """The connection is closed; ``code`` and ``reason`` say why."""

    def __init__(self, code: int = ErrorCode.NORMAL, reason: str = "") -> None:
        self.code = code
        self.reason = reason
        text = "connection closed"
        if code != ErrorCode.NORMAL:
            text += f" ({ErrorCode.name_of(code)})"
        if reason:
            text += f": {reason}"
        super().__init__(text)


class ConnectError(WirekitError):
    """Connecting failed: refused, unreachable, unknown host or timed out."""


class ListenError(WirekitError):
    """A server could not start listening: address in use, permission denied."""


class AddressError(WirekitError, ValueError):
    """An address string is malformed."""


class AuthenticationFailed(WirekitError):
    """The peer refused our credentials, or we refused theirs."""


class ServiceError(WirekitError):
    """A service understood the request and refused it."""
