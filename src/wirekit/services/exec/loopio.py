"""Event-loop plumbing of the exec server: one epoll instance for a
connection's pipes and pidfds (docs/exec.md §7)."""

from __future__ import annotations

import asyncio
import select
from collections.abc import Callable

__all__ = ["FdWatcher"]


class FdWatcher:
    """Readiness of a connection's pipes and pidfds through one epoll instance
    of its own, which the event loop watches: registering an fd is then one
    system call, where the loop's ``add_reader`` and ``remove_reader`` take
    several for each of the three fds every command opens (exec.md §7)."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._epoll = select.epoll()
        self._callbacks: dict[int, Callable[[], None]] = {}
        loop.add_reader(self._epoll.fileno(), self._ready)

    def add(self, fd: int, callback: Callable[[], None]) -> None:
        """Call ``callback`` while ``fd`` is readable (or hung up)."""
        self._epoll.register(fd, select.EPOLLIN)
        self._callbacks[fd] = callback

    def remove(self, fd: int) -> None:
        if self._callbacks.pop(fd, None) is not None:
            self._epoll.unregister(fd)

    def _ready(self) -> None:
        callbacks = self._callbacks
        for fd, _ in self._epoll.poll(0):
            callback = callbacks.get(fd)  # None: removed by an earlier callback
            if callback is not None:
                callback()

    def close(self) -> None:
        if not self._epoll.closed:
            self._loop.remove_reader(self._epoll.fileno())
            self._epoll.close()
        self._callbacks.clear()
