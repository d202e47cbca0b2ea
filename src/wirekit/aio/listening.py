"""Connection admission shared by every listener."""

from __future__ import annotations

import asyncio
from typing import Any

from ..limits import Limits

__all__ = ["Admission", "accept_backlog", "peer_ip"]


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


def accept_backlog(loop: asyncio.AbstractEventLoop) -> int:
    """The ``backlog`` to give ``create_server``/``create_unix_server`` on ``loop``.

    The stdlib loop's accept handler calls ``accept()`` up to ``backlog`` times
    per wakeup and goes on after EMFILE, logging a traceback and scheduling a
    retry for each failed call: with 4096, one EMFILE turns into thousands of
    tracebacks a second and starves the loop. uvloop (libuv) handles EMFILE
    itself and can take the long queue a connection burst needs.
    """
    return 4096 if type(loop).__module__.startswith("uvloop") else 100
