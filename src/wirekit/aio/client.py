"""``connect()``: open a framed connection and complete the hello."""

from __future__ import annotations

import asyncio
import ssl as ssl_module
from collections.abc import Generator, Iterable
from typing import Any

from ..addr import Address, parse_address
from ..errors import AddressError, HelloMissing
from ..limits import DEFAULT_LIMITS, Limits
from ..neterrors import connect_error, hello_missing
from ..pacing import unpace_peer
from ..proto import FrameConnection, Message, MessageCodec, Role
from .connection import Connection

__all__ = ["connect"]


class _Connecting:
    """Awaitable and async context manager returned by :func:`connect`."""

    def __init__(self, coro_args: dict[str, Any]) -> None:
        self._args = coro_args
        self._conn: Connection | None = None

    def __await__(self) -> Generator[Any, None, Connection]:
        return _open(**self._args).__await__()

    async def __aenter__(self) -> Connection:
        self._conn = await _open(**self._args)
        return self._conn

    async def __aexit__(self, *exc_info: object) -> None:
        if self._conn is not None:
            await self._conn.close()


def connect(
    addr: str | Address,
    *,
    limits: Limits = DEFAULT_LIMITS,
    ssl: ssl_module.SSLContext | None = None,
    server_hostname: str | None = None,
    timeout: float | None = None,
    message_types: Iterable[type[Message]] = (),
) -> _Connecting:
    """Connect to a wirekit server: ``conn = await connect("127.0.0.1:7000")``
    or ``async with connect(...) as conn``.

    ``timeout`` bounds connecting plus the hello (default: the limits'
    handshake timeout). ``tls://`` addresses use ``ssl`` or a default
    verifying context.
    """
    address = addr if isinstance(addr, Address) else parse_address(addr)
    if address.scheme == "udp":
        raise AddressError(f"framed connections need tcp, tls or unix, not udp: {address}")
    return _Connecting(
        dict(
            address=address,
            limits=limits,
            ssl=ssl,
            server_hostname=server_hostname,
            timeout=timeout if timeout is not None else limits.handshake_timeout,
            message_types=tuple(message_types),
        )
    )


async def _open(
    address: Address,
    limits: Limits,
    ssl: ssl_module.SSLContext | None,
    server_hostname: str | None,
    timeout: float,
    message_types: tuple[type[Message], ...],
) -> Connection:
    loop = asyncio.get_running_loop()
    if address.scheme == "tls" and ssl is None:
        ssl = ssl_module.create_default_context()
    codec = MessageCodec(message_types)

    def factory() -> Connection:
        proto = FrameConnection(Role.CLIENT, max_frame_size=limits.max_frame_size, codec=codec)
        return Connection(Role.CLIENT, limits, proto=proto)

    # The TLS handshake is bounded like the hello (and the whole of connecting
    # by ``timeout``).
    handshake = limits.handshake_timeout
    tls_timeout = handshake if ssl is not None and handshake > 0 else None
    conn: Connection | None = None
    try:
        async with asyncio.timeout(timeout):
            if address.is_unix:
                _, conn = await loop.create_unix_connection(
                    factory,
                    address.path,
                    ssl=ssl,
                    server_hostname=server_hostname,
                    ssl_handshake_timeout=tls_timeout,
                )
            else:
                _, conn = await loop.create_connection(
                    factory,
                    address.host,
                    address.port,
                    ssl=ssl,
                    server_hostname=(server_hostname or address.host) if ssl else None,
                    ssl_handshake_timeout=tls_timeout,
                )
                unpace_peer(conn.get_extra_info("socket"))  # wirekit.pacing
            await conn.wait_handshake()
    except BaseException as exc:
        if conn is not None and conn._transport is not None:
            conn._transport.close()  # a hello that failed or timed out must not leak the socket
        if isinstance(exc, TimeoutError):
            raise connect_error(address, TimeoutError(f"no answer within {timeout:g} s")) from None
        if isinstance(exc, OSError):
            raise connect_error(address, exc) from None
        if isinstance(exc, HelloMissing):
            raise hello_missing(address, exc) from None
        raise
    return conn
