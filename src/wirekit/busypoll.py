"""Busy polling: a client that keeps polling its socket for a moment after
traffic instead of going to sleep at once (docs/exec.md §7.3).

Waking a process that sleeps in ``epoll_wait`` or ``recv`` is paid for by
the process that sends to it, inside its ``send``: on the virtual machines
we measured, about 30 µs of the *sender's* CPU per wake-up, and the wake-up
latency on top. A client that polls without sleeping while traffic flows
needs no wake-up: an exec server streaming to such a client used a fifth
less CPU per GiB, and a quick command's answer arrived sooner.

The window is short and counted from the last byte sent or received, so an
idle connection costs nothing: polling stops ``window`` seconds after the
traffic does. Every round of polling yields the CPU (``sched_yield``), so a
peer or command that shares this CPU runs first, as it would have while we
slept. On a one-CPU machine it is off: there is no other CPU to wake.

:class:`LoopPoller` does it for an event loop: a callback that reschedules
itself keeps the loop polling with a zero timeout. The blocking client
(:mod:`wirekit.sync.client`) polls its socket itself.
"""

from __future__ import annotations

import os
import time
from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:  # the blocking client uses this module too: no asyncio import for it
    import asyncio

__all__ = ["DEFAULT_BUSY_POLL", "LoopPoller", "busy_poll_window"]

#: Seconds a client keeps polling after its last traffic: longer than the gap
#: between two reads of a stream, and than a quick command takes.
DEFAULT_BUSY_POLL: Final = 0.002
#: The longest window accepted: polling is for gaps, not for waiting.
MAX_BUSY_POLL: Final = 1.0


def busy_poll_window(requested: float | None) -> float:
    """The window to poll for: ``requested`` seconds (None: the default),
    0 on a one-CPU machine. Raises ValueError for a negative or too long
    window."""
    window = DEFAULT_BUSY_POLL if requested is None else requested
    if not 0 <= window <= MAX_BUSY_POLL:
        raise ValueError(
            f"busy_poll must be between 0 and {MAX_BUSY_POLL:g} seconds, not {window!r}"
        )
    if window and (os.cpu_count() or 1) < 2:
        return 0.0
    return float(window)


class LoopPoller:
    """Keeps ``loop`` polling (zero timeouts) until ``window`` seconds after
    the last :meth:`poke`. One callback per loop turn while it lasts."""

    __slots__ = ("_loop", "_polling", "_until", "window")

    def __init__(self, loop: asyncio.AbstractEventLoop, window: float) -> None:
        self._loop = loop
        self.window = window
        self._until = 0.0
        self._polling = False

    def poke(self) -> None:
        """Traffic now: poll until ``window`` from now."""
        self._until = time.monotonic() + self.window
        if not self._polling:
            self._polling = True
            self._loop.call_soon(self._poll)

    def _poll(self) -> None:
        # A ready callback makes the loop's next wait a zero-timeout poll.
        os.sched_yield()
        if time.monotonic() < self._until:
            self._loop.call_soon(self._poll)
        else:
            self._polling = False
