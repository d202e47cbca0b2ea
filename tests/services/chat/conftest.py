"""Fixtures for the chat server tests (usable by any chat test in this directory).

- ``chat_server(**config)``: starts a chat server (``wirekit.services.chat``)
  on 127.0.0.1 port 0 on an event loop in a thread and returns a
  :class:`ChatHandle` (``.address`` as ``(host, port)``, ``.addr`` as a
  wirekit ``Address``, ``.server``, ``.call(fn)`` to look at server state on
  its loop). Keyword arguments are :class:`~wirekit.services.chat.ChatConfig`
  fields; ``ssl=`` an ``SSLContext`` for ``tls://`` listening, ``listen=`` a
  list of address strings. Flood control stays on unless ``flood_rate=0``.
- ``chat_addr``: the ``(host, port)`` of a server with the default settings.
- ``connect_lines()``: a :class:`LineClient` (raw socket reading CRLF/LF lines)
  to a ``(host, port)``; closed at teardown. ``.send("text")``,
  ``.expect(r"regex")`` (returns the first new line matching), ``.register(nick)``
  (IRC NICK/USER up to 001).
"""

from __future__ import annotations

import re
import socket
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

import pytest

from wirekit.addr import Address
from wirekit.services.chat import ChatConfig, ChatServer, start_chat

T = TypeVar("T")

#: Seconds any single wait in the chat tests may take before it counts as a failure.
WAIT = 5.0
#: The ``loop_thread`` fixture of tests/services/conftest.py (an event loop in a thread).
LoopThread = Any


@dataclass
class ChatHandle:
    server: ChatServer
    loop_thread: LoopThread

    @property
    def addr(self) -> Address:
        return self.server.addresses[0]

    @property
    def address(self) -> tuple[str, int]:
        return (self.addr.host, self.addr.port)

    def call(self, fn: Callable[[], T]) -> T:
        result: T = self.loop_thread.call(fn)
        return result


@pytest.fixture
def chat_server(loop_thread: LoopThread) -> Iterator[Callable[..., ChatHandle]]:
    started: list[ChatServer] = []

    def start(*, ssl: Any = None, listen: list[str] | None = None, **config: Any) -> ChatHandle:
        async def go() -> ChatServer:
            return await start_chat(listen or ["127.0.0.1:0"], config=ChatConfig(**config), ssl=ssl)

        server = loop_thread.run(go())
        started.append(server)
        return ChatHandle(server, loop_thread)

    yield start
    for server in started:
        loop_thread.run(server.close(grace=0))


@pytest.fixture
def chat_addr(chat_server: Callable[..., ChatHandle]) -> tuple[str, int]:
    return chat_server().address


class LineClient:
    """A raw TCP client that collects the lines it receives."""

    def __init__(self, address: tuple[str, int], timeout: float = WAIT) -> None:
        self.sock = socket.create_connection(address, timeout=timeout)
        self.buf = b""
        self.lines: list[str] = []
        self.seen = 0  # lines before this index were already matched or skipped
        self.closed = False

    def send(self, text: str | bytes) -> None:
        data = text.encode() if isinstance(text, str) else text
        if isinstance(text, str) and not data.endswith(b"\n"):
            data += b"\r\n"
        self.sock.sendall(data)

    def _read(self, deadline: float) -> bool:
        left = deadline - time.monotonic()
        if left <= 0 or self.closed:
            return False
        self.sock.settimeout(min(left, 0.2))
        try:
            chunk = self.sock.recv(65536)
        except TimeoutError:
            return True
        except ConnectionResetError:
            chunk = b""
        if not chunk:
            self.closed = True
            return False
        self.buf += chunk
        *done, self.buf = self.buf.split(b"\n")
        self.lines.extend(d.rstrip(b"\r").decode("utf-8", "replace") for d in done)
        return True

    def expect(self, pattern: str, timeout: float = WAIT) -> str:
        """The first line from ``seen`` on that matches ``pattern``; lines before it
        are passed over."""
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        while True:
            for i in range(self.seen, len(self.lines)):
                if regex.search(self.lines[i]):
                    self.seen = i + 1
                    return self.lines[i]
            if not self._read(deadline):
                tail = self.lines[self.seen :][-15:]
                raise AssertionError(f"no line matching {pattern!r} within {timeout} s; got {tail}")

    def wait_closed(self, timeout: float = WAIT) -> list[str]:
        deadline = time.monotonic() + timeout
        while not self.closed:
            if not self._read(deadline) and not self.closed:
                raise AssertionError(f"server did not close within {timeout} s")
        return self.lines

    def register(self, nick: str, user: str = "u") -> None:
        self.send(f"NICK {nick}")
        self.send(f"USER {user} 0 * :{nick} test")
        self.expect(r" 001 ")
        self.expect(r" (376|422) ")

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def connect_lines() -> Iterator[Callable[..., LineClient]]:
    clients: list[LineClient] = []

    def connect(address: tuple[str, int], timeout: float = WAIT) -> LineClient:
        client = LineClient(address, timeout)
        clients.append(client)
        return client

    yield connect
    for client in clients:
        client.close()
