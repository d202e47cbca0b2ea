"""wirekit: the classic socket programs, done right.

The public API::

    import wirekit

    async with wirekit.serve(handler, ":7000") as server: ...   # asyncio server
    async with wirekit.connect("127.0.0.1:7000") as conn: ...   # asyncio client
    with wirekit.sync.connect("127.0.0.1:7000") as conn: ...    # blocking client
"""

from typing import TYPE_CHECKING, Any

from .addr import Address, parse_address
from .errors import (
    AddressError,
    AuthenticationFailed,
    BadHello,
    ConnectError,
    ConnectionClosed,
    ErrorCode,
    FrameTooLarge,
    HelloMissing,
    ListenError,
    LocalProtocolError,
    RemoteProtocolError,
    ServiceError,
    WirekitError,
)
from .limits import DEFAULT_LIMITS, Limits

if TYPE_CHECKING:
    from . import sync
    from .aio import Connection, MessageHandler, Server, connect, run, serve
    from .proto import Message

# The runtime (asyncio, uvloop, msgspec) loads on first use, so the netcat
# commands, which need none of it, start fast.
_LAZY = {
    "Connection": "aio",
    "MessageHandler": "aio",
    "Server": "aio",
    "connect": "aio",
    "run": "aio",
    "serve": "aio",
    "Message": "proto",
}


def __getattr__(name: str) -> Any:
    import importlib

    if name == "sync":
        value: Any = importlib.import_module(".sync", __name__)
    elif name in _LAZY:
        value = getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    else:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    globals()[name] = value
    return value


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
    "HelloMissing",
    "Limits",
    "ListenError",
    "LocalProtocolError",
    "Message",
    "MessageHandler",
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
