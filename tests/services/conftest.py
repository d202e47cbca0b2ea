"""Fixtures for the classic services: servers run on an event loop in a thread.

Each test gets real sockets on 127.0.0.1 (port 0) or in ``tmp_path``; the peers
are the classic Debian tools (nc, socat, telnet, rdate) or raw Python sockets.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Coroutine, Iterator
from typing import Any, TypeVar

import pytest

from wirekit.addr import Address, parse_address
from wirekit.aio import loop as aio_loop
from wirekit.aio.raw import RawServer

T = TypeVar("T")

#: Seconds any single wait in these tests may take before it counts as a failure.
WAIT = 5.0

#: Debian package that provides each tool the tests drive.
DEBIAN_PACKAGE = {
    "nc": "netcat-openbsd",
    "socat": "socat",
    "telnet": "telnet",
    "rdate": "rdate",
    "ss": "iproute2",
}


class LoopThread:
    """An event loop (uvloop when installed, as the CLI uses) running in a thread."""

    def __init__(self) -> None:
        self.loop = aio_loop.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="services-loop")
        self.thread.start()
        self.servers: list[RawServer] = []

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = WAIT) -> T:
        """Run ``coro`` on the loop and wait for its result."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def call(self, fn: Callable[[], T], timeout: float = WAIT) -> T:
        """Call ``fn`` on the loop thread (to look at server state safely)."""

        async def wrapper() -> T:
            return fn()

        return self.run(wrapper(), timeout)

    def serve(
        self, make: Callable[[], RawServer], *addresses: str
    ) -> tuple[RawServer, list[Address]]:
        """Build a server on the loop with ``make`` and listen on each address."""

        async def start() -> tuple[RawServer, list[Address]]:
            server = make()
            self.servers.append(server)
            bound = [await server.listen(parse_address(text)) for text in addresses]
            return server, bound

        return self.run(start())

    def stop(self) -> None:
        async def close_all() -> None:
            await asyncio.gather(*(server.close(grace=0) for server in self.servers))

        try:
            self.run(close_all())
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(WAIT)
            self.loop.close()


@pytest.fixture
def loop_thread() -> Iterator[LoopThread]:
    lt = LoopThread()
    try:
        yield lt
    finally:
        lt.stop()


@pytest.fixture(params=["uvloop", "asyncio"])
def any_loop_thread(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> Iterator[LoopThread]:
    """:func:`loop_thread` on uvloop and on the standard asyncio loop."""
    if request.param == "asyncio":
        monkeypatch.setenv("WIREKIT_NO_UVLOOP", "1")
    elif aio_loop.loop_name() != "uvloop":
        pytest.skip("uvloop is not installed")
    lt = LoopThread()
    try:
        yield lt
    finally:
        lt.stop()


@pytest.fixture
def tool() -> Callable[[str], str]:
    """``tool("socat")``: the tool's path, or skip the test when it is not installed."""

    def find(name: str) -> str:
        path = shutil.which(name)
        if path is None:
            package = DEBIAN_PACKAGE.get(name, name)
            pytest.skip(f"{name} is not installed (Debian package {package})")
        return path

    return find


def wait_until(condition: Callable[[], Any], timeout: float = WAIT, what: str = "") -> Any:
    """Poll ``condition`` until it returns something true; fail after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what or condition}")
        time.sleep(0.01)


@pytest.fixture
def poll() -> Callable[..., Any]:
    """``poll(condition, timeout=..., what=...)``: see :func:`wait_until`."""
    return wait_until


def recv_until(
    sock: socket.socket,
    done: Callable[[bytes], bool],
    timeout: float = WAIT,
    what: str = "timed out after {timeout} s",
) -> bytes:
    """Read from ``sock`` until ``done(data)`` or EOF; fail on timeout."""
    data = b""
    deadline = time.monotonic() + timeout
    while not done(data):
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError(f"{what.format(timeout=timeout)}; got {data[:200]!r}")
        sock.settimeout(left)
        try:
            chunk = sock.recv(65536)
        except TimeoutError:
            continue
        if not chunk:
            break
        data += chunk
    return data


def recv_all(sock: socket.socket, timeout: float = WAIT) -> bytes:
    """Read from ``sock`` until the peer closes."""
    return recv_until(sock, lambda _data: False, timeout, "peer did not close within {timeout} s")


@pytest.fixture
def reader() -> Any:
    """Socket reading helpers: ``reader.until(sock, done)`` and ``reader.all(sock)``."""

    class Reader:
        until = staticmethod(recv_until)
        all = staticmethod(recv_all)

    return Reader


class Session:
    """A subprocess whose piped stdout and stderr are collected by reader threads
    (stdout left to the caller with ``collect_stdout=False``)."""

    def __init__(self, argv: list[str], *, collect_stdout: bool = True, **popen: Any) -> None:
        popen.setdefault("stdin", subprocess.PIPE)
        popen.setdefault("stdout", subprocess.PIPE)
        popen.setdefault("stderr", subprocess.PIPE)
        self.argv = argv
        self.proc = subprocess.Popen(argv, **popen)
        self.out = bytearray()
        self.err = bytearray()
        self._lock = threading.Lock()
        self._readers = [
            threading.Thread(target=self._drain, args=(pipe, buf), daemon=True)
            for pipe, buf in ((self.proc.stdout, self.out), (self.proc.stderr, self.err))
            if pipe is not None and (collect_stdout or pipe is self.proc.stderr)
        ]
        for thread in self._readers:
            thread.start()

    def _drain(self, pipe: Any, buf: bytearray) -> None:
        while chunk := pipe.read1(65536):
            with self._lock:
                buf += chunk

    def send(self, data: bytes) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(data)
        self.proc.stdin.flush()

    def close_stdin(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()

    def expect(
        self, pattern: bytes, timeout: float = WAIT, *, err: bool = False
    ) -> re.Match[bytes]:
        """Wait until stdout (or stderr) matches the regular expression ``pattern``."""
        buf = self.err if err else self.out

        def found() -> re.Match[bytes] | None:
            with self._lock:
                return re.search(pattern, bytes(buf))

        try:
            return wait_until(found, timeout)
        except AssertionError:
            raise AssertionError(
                f"{self.argv[:3]} did not print {pattern!r} within {timeout} s; "
                f"stdout {bytes(self.out)[-300:]!r}, stderr {bytes(self.err)[-300:]!r}"
            ) from None

    def wait(self, timeout: float = WAIT) -> int:
        """Wait for the exit and for the pipes to drain; return the exit code."""
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(
                f"{self.argv[:3]} still runs after {timeout} s; "
                f"stdout {bytes(self.out)[-300:]!r}, stderr {bytes(self.err)[-300:]!r}"
            ) from None
        for thread in self._readers:
            thread.join(timeout)
        return code

    @property
    def stderr_text(self) -> str:
        return bytes(self.err).decode(errors="replace")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(WAIT)
        for pipe in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            if pipe is not None:
                with contextlib.suppress(OSError):
                    pipe.close()


@pytest.fixture
def spawn() -> Iterator[Callable[..., Session]]:
    """``spawn(argv, **popen)``: start a :class:`Session`; killed at teardown."""
    sessions: list[Session] = []

    def start(argv: list[str], **popen: Any) -> Session:
        session = Session(argv, **popen)
        sessions.append(session)
        return session

    yield start
    for session in sessions:
        session.stop()


#: The line ``wirekit listen`` prints on stderr once it listens on a port it picked.
LISTENING = rb"wirekit: listening on (\S+)\n"


@pytest.fixture
def wirekit_listen(spawn: Callable[..., Session]) -> Callable[..., tuple[Session, Address]]:
    """``wirekit_listen(addr, *flags, **popen)``: start ``wirekit listen`` and wait until
    it listens; returns the session and the bound address."""

    def start(addr: str, *flags: str, **popen: Any) -> tuple[Session, Address]:
        session = spawn(["wirekit", "listen", *flags, addr], **popen)
        if addr.startswith("unix:"):
            path = parse_address(addr).path
            wait_until(lambda: os.path.exists(path), what=f"{path} to appear")
            return session, parse_address(addr)
        match = session.expect(LISTENING, err=True)
        return session, parse_address(match.group(1).decode())

    return start
