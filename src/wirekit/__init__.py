"""wirekit: the classic socket programs, done right.

The public API::

    import wirekit

    async with wirekit.serve(handler, ":7000") as server: ...   # asyncio server
    async with wirekit.connect("127.0.0.1:7000") as conn: ...   # asyncio client
    with wirekit.sync.connect("127.0.0.1:7000") as conn: ...    # blocking client
"""

from . import sync
from .addr import Address, parse_address
from .aio import Connection, Server, connect, run, serve
from .errors import (
    AddressError,
    AuthenticationFailed,
    BadHello,
    ConnectError,
    ConnectionClosed,
    ErrorCode,
    FrameTooLarge,
    ListenError,
    LocalProtocolError,
    RemoteProtocolError,
    ServiceError,
    WirekitError,
)
from .limits import DEFAULT_LIMITS, Limits
from .proto import Message

__version__ = "0.1.0"

__all__ = [
    "DEFAULT_LIMITS",
    "Address",
    "AddressError",
    "AuthenticationFailed",
    "BadHello",
    "ConnectError",
    "Connection",
    "ConnectionClosed",
    "ErrorCode",
    "FrameTooLarge",
    "Limits",
    "ListenError",
    "LocalProtocolError",
    "Message",
    "RemoteProtocolError",
    "Server",
    "ServiceError",
    "WirekitError",
    "__version__",
    "connect",
    "parse_address",
    "run",
    "serve",
    "sync",
]
