"""Shared pieces of every listener: connection admission and Unix socket files."""

from __future__ import annotations

import os
import socket
import stat
from typing import Any

from ..errors import ListenError
from ..limits import Limits

__all__ = ["Admission", "peer_ip", "prepare_unix_path", "unlink_socket"]


class Admission:
    """Counts open connections in total and per IP against the limits."""

    __slots__ = ("_per_ip", "limits", "open")

    def __init__(self, limits: Limits) -> None:
        self.limits = limits
        self.open = 0
        self._per_ip: dict[str, int] = {}

    def admit(self, ip: str) -> str | None:
        """Count a new connection from ``ip``; return a refusal reason instead if over a limit."""
        limits = self.limits
        if self.open >= limits.max_connections:
            return f"server holds {limits.max_connections} connections, its limit"
        count = self._per_ip.get(ip, 0)
        if count >= limits.max_connections_per_ip:
            return (
                f"{count} connections from {ip} reach the limit of "
                f"{limits.max_connections_per_ip} per address"
            )
        self._per_ip[ip] = count + 1
        self.open += 1
        return None

    def release(self, ip: str) -> None:
        self.open -= 1
        left = self._per_ip.get(ip, 1) - 1
        if left > 0:
            self._per_ip[ip] = left
        else:
            self._per_ip.pop(ip, None)


def peer_ip(peer: Any) -> str:
    if isinstance(peer, tuple) and peer:
        return str(peer[0])
    return "unix"


def prepare_unix_path(path: str) -> None:
    """Remove a stale socket file left by a dead server; refuse a live one."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(st.st_mode):
        raise ListenError(f"cannot bind unix socket {path}: a non-socket file is in the way")
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.settimeout(1.0)
        probe.connect(path)
    except (ConnectionRefusedError, FileNotFoundError):
        unlink_socket(path)
    except OSError:
        pass
    else:
        raise ListenError(f"unix socket {path} is already in use (another server is listening)")
    finally:
        probe.close()


def unlink_socket(path: str) -> None:
    try:
        if stat.S_ISSOCK(os.lstat(path).st_mode):
            os.unlink(path)
    except OSError:
        pass
