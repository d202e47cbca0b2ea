"""A wirekit asyncio server in a background thread, for the blocking client tests."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest

import wirekit
from wirekit.aio import Handler

#: ``start(handler, addr="127.0.0.1:0", **serve_kwargs) -> wirekit.Server``
ServerStarter = Callable[..., wirekit.Server]


class ThreadServer:
    def __init__(self, handler: Handler, addr: str, kwargs: dict[str, Any]) -> None:
        kwargs.setdefault("limits", wirekit.Limits(shutdown_grace=1.0))
        self._handler, self._addr, self._kwargs = handler, addr, kwargs
        self._ready = threading.Event()
        self._stop: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self.server: wirekit.Server | None = None
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, name="wirekit-test-server", daemon=True)

    def _run(self) -> None:
        try:
            wirekit.run(self._main())
        except BaseException as exc:
            self.error = exc
        finally:
            self._ready.set()

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        async with wirekit.serve(self._handler, self._addr, **self._kwargs) as server:
            self.server = server
            self._ready.set()
            await self._stop.wait()

    def start(self) -> wirekit.Server:
        self.thread.start()
        assert self._ready.wait(10), "server thread did not start"
        if self.error is not None:
            raise self.error
        assert self.server is not None
        return self.server

    def stop(self) -> None:
        if self._loop is not None and self._stop is not None and self.thread.is_alive():
            self._loop.call_soon_threadsafe(self._stop.set)
        self.thread.join(10)
        assert not self.thread.is_alive(), "server thread did not stop"
        if self.error is not None:
            raise self.error


@pytest.fixture
def start_server() -> Iterator[ServerStarter]:
    """Start servers on background threads; they are shut down after the test."""
    servers: list[ThreadServer] = []

    def start(handler: Handler, addr: str = "127.0.0.1:0", **kwargs: Any) -> wirekit.Server:
        server = ThreadServer(handler, addr, kwargs)
        servers.append(server)
        return server.start()

    yield start
    for server in servers:
        server.stop()
