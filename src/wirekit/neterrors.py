"""The one place where socket OSErrors become wirekit errors with one-line text."""

from __future__ import annotations

import errno
import socket

from .addr import Address
from .errors import ConnectError, HelloMissing, ListenError

__all__ = ["bind_error", "connect_error", "hello_missing", "printable"]

#: OpenSSL's reasons (ssl.SSLError.reason) when the answer is not TLS at all.
_NOT_TLS = frozenset(
    {"WRONG_VERSION_NUMBER", "PACKET_LENGTH_TOO_LONG", "RECORD_LAYER_FAILURE", "UNKNOWN_PROTOCOL"}
)


def printable(text: object) -> str:
    """``text`` (a peer's address, a Unix socket path) safe to print on a terminal.

    Whatever a peer controls reaches our messages through here: control
    characters (ESC, newline, C1), lone surrogates (undecodable bytes of a
    path) and other unprintable characters are written as Python escapes
    (``\\x1b``), so a peer cannot move the cursor, recolour the terminal or
    forge a second line."""
    text = text if isinstance(text, str) else str(text)
    if text.isprintable():
        return text
    return "".join(ch if ch.isprintable() else _escape(ch) for ch in text)


def _escape(ch: str) -> str:
    code = ord(ch)
    if ch in "\t\n\r":
        return repr(ch)[1:-1]
    if code <= 0xFF:
        return f"\\x{code:02x}"
    if code <= 0xFFFF:
        return f"\\u{code:04x}"
    return f"\\U{code:08x}"


def _chain(exc: BaseException) -> list[BaseException]:
    """``exc`` and what it wraps (``__cause__``, else ``__context__``), a few deep."""
    chain = [exc]
    while len(chain) < 8:
        inner = chain[-1].__cause__ or chain[-1].__context__
        if inner is None or inner in chain:
            break
        chain.append(inner)
    return chain


def _root_errno(exc: BaseException) -> int | None:
    """The errno of ``exc``, or of the OSError it wraps.

    uvloop's ``create_datagram_endpoint`` raises a bare "could not bind to
    local_addr" OSError whose errno is None; the kernel's error (EADDRINUSE,
    EACCES) is its ``__cause__`` or ``__context__``."""
    for error in _chain(exc):
        if isinstance(error, OSError) and error.errno is not None:
            return error.errno
    return None


def _strerror(exc: BaseException) -> str:
    for error in _chain(exc):
        if isinstance(error, OSError) and error.strerror:
            return error.strerror
    return str(exc)


def connect_error(addr: Address, exc: BaseException) -> ConnectError:
    """Describe a failed connect in one line naming the address and the cause."""
    where = f"unix socket {addr.path}" if addr.is_unix else addr.hostport()
    if isinstance(exc, socket.gaierror):
        text = f"cannot connect to {where}: unknown host {addr.host!r}"
    elif isinstance(exc, TimeoutError):
        text = f"cannot connect to {where}: {exc or 'timed out'}"
    elif isinstance(exc, ConnectionRefusedError):
        text = f"cannot connect to {where}: connection refused (is a server listening there?)"
    elif isinstance(exc, FileNotFoundError):
        text = f"cannot connect to {where}: no such socket file"
    elif isinstance(exc, OSError) and exc.errno in (errno.ENETUNREACH, errno.EHOSTUNREACH):
        text = f"cannot connect to {where}: network unreachable"
    elif isinstance(exc, OSError) and exc.errno == errno.EACCES:
        text = f"cannot connect to {where}: permission denied"
    elif getattr(exc, "reason", None) in _NOT_TLS and not addr.is_unix:
        # ssl.SSLError: what came back is not a TLS record.
        text = (
            f"cannot connect to {where}: the server does not speak TLS "
            f"(if it is a plain wirekit server, connect to {addr.hostport()} without tls://)"
        )
    else:
        detail = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        text = f"cannot connect to {where}: {detail}"
    return ConnectError(text)


def hello_missing(addr: Address, exc: HelloMissing) -> HelloMissing:
    """The server closed before its hello: over plain TCP, say that a TLS
    server does exactly this to a client that does not start TLS."""
    if addr.scheme != "tcp":
        return exc
    return HelloMissing(
        f"{addr.hostport()} closed the connection before its hello "
        f"(if it is a TLS server, connect to tls://{addr.hostport()})"
    )


def bind_error(addr: Address, exc: OSError) -> ListenError:
    """Describe a failed bind in one line naming the address and the cause."""
    where = f"unix socket {addr.path}" if addr.is_unix else f"port {addr.port} on {addr.host}"
    code = _root_errno(exc)
    if code == errno.EADDRINUSE:
        text = f"{where} is already in use (another server is listening there)"
    elif code == errno.EACCES:
        hint = " (ports below 1024 need root)" if not addr.is_unix and addr.port < 1024 else ""
        text = f"permission denied binding {where}{hint}"
    elif code == errno.EADDRNOTAVAIL:
        text = f"cannot bind {where}: {addr.host} is not an address of this machine"
    elif isinstance(exc, socket.gaierror):
        text = f"cannot bind {where}: unknown host {addr.host!r}"
    else:
        text = f"cannot bind {where}: {_strerror(exc)}"
    return ListenError(text)
