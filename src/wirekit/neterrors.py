"""The one place where socket OSErrors become wirekit errors with one-line text."""

from __future__ import annotations

import errno
import socket

from .addr import Address
from .errors import ConnectError, ListenError

__all__ = ["bind_error", "connect_error"]


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
    else:
        detail = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        text = f"cannot connect to {where}: {detail}"
    return ConnectError(text)


def bind_error(addr: Address, exc: OSError) -> ListenError:
    """Describe a failed bind in one line naming the address and the cause."""
    where = f"unix socket {addr.path}" if addr.is_unix else f"port {addr.port} on {addr.host}"
    if exc.errno == errno.EADDRINUSE:
        text = f"{where} is already in use (another server is listening there)"
    elif exc.errno == errno.EACCES:
        hint = " (ports below 1024 need root)" if not addr.is_unix and addr.port < 1024 else ""
        text = f"permission denied binding {where}{hint}"
    elif exc.errno == errno.EADDRNOTAVAIL:
        text = f"cannot bind {where}: {addr.host} is not an address of this machine"
    elif isinstance(exc, socket.gaierror):
        text = f"cannot bind {where}: unknown host {addr.host!r}"
    else:
        text = f"cannot bind {where}: {exc.strerror or exc}"
    return ListenError(text)
