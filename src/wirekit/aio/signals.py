"""Graceful stop on SIGINT/SIGTERM, shared by every server."""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Iterable, Iterator

__all__ = ["STOP_SIGNALS", "stop_on_signal"]

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


@contextlib.contextmanager
def stop_on_signal(
    signals: Iterable[int] = STOP_SIGNALS,
) -> Iterator[tuple[asyncio.Event, asyncio.Event]]:
    """``stop`` is set by the first signal (stop gracefully), ``hurry`` by the
    second (close every connection now). Outside the main thread no handler
    can be installed and the events are only set by the caller."""
    loop = asyncio.get_running_loop()
    stop, hurry = asyncio.Event(), asyncio.Event()

    def on_signal() -> None:
        (hurry if stop.is_set() else stop).set()

    installed = []
    for sig in signals:
        try:
            loop.add_signal_handler(sig, on_signal)
        except (ValueError, RuntimeError, NotImplementedError):
            continue  # not the main thread, or a loop without signal support
        installed.append(sig)
    try:
        yield stop, hurry
    finally:
        for sig in installed:
            loop.remove_signal_handler(sig)
