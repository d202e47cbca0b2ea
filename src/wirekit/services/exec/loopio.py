"""Event-loop plumbing of the exec server: one epoll instance for a
connection's pipes and pidfds, and the allocator setting for its buffers
(docs/exec.md §7)."""

from __future__ import annotations

import asyncio
import ctypes
import select
from collections.abc import Callable

__all__ = ["FdWatcher", "keep_freed_buffers"]


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


#: glibc's mallopt parameters (malloc.h) and the values keep_freed_buffers sets.
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
TRIM_THRESHOLD = 32 * 1024 * 1024
MMAP_THRESHOLD = 4 * 1024 * 1024


def keep_freed_buffers() -> None:
    """Let glibc keep freed heap memory (up to 32 MiB) instead of returning it
    to the system at once. Output moves in buffers of up to 1 MiB; through
    TLS each one is also encrypted into a new buffer, and with glibc's default
    thresholds the heap top is trimmed and regrown for every one of them: a
    page fault per 4 KiB, about half the server's CPU time (exec.md §7).
    Process-wide and harmless elsewhere; does nothing without glibc."""
    global _malloc_tuned
    if _malloc_tuned:
        return
    _malloc_tuned = True
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return
    mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)
    mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD)


_malloc_tuned = False
