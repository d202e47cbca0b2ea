"""A wirekit server in its own process (aio_server_proc.py): graceful shutdown on
SIGTERM, and an accept loop that survives running out of file descriptors."""

from __future__ import annotations

import os
import select
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import wirekit

SCRIPT = Path(__file__).with_name("aio_server_proc.py")


class ServerProcess:
    """The server script, its port, and its stdout read line by line with a deadline."""

    def __init__(self, *args: str, log: Path, env: dict[str, str] | None = None) -> None:
        # stderr goes to a file: a pipe nobody reads can fill up and block the server.
        self.log = log
        with log.open("wb") as stderr:
            self.proc = subprocess.Popen(
                [sys.executable, str(SCRIPT), *args],
                stdout=subprocess.PIPE,
                stderr=stderr,
                env={**os.environ, **(env or {})},
            )
        self._pending = b""
        first = self.read_line()
        assert first.startswith("PORT "), first
        self.port = int(first.split()[1])

    def read_line(self, timeout: float = 10.0) -> str:
        assert self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        deadline = time.monotonic() + timeout
        while b"\n" not in self._pending:
            left = deadline - time.monotonic()
            assert left > 0, f"no line from the server within {timeout:g} s"
            ready, _, _ = select.select([fd], [], [], left)
            if ready:
                chunk = os.read(fd, 4096)
                assert chunk, f"server exited: {self.stderr_text()}"
                self._pending += chunk
        line, self._pending = self._pending.split(b"\n", 1)
        return line.decode()

    def fd_count(self) -> int:
        return len(os.listdir(f"/proc/{self.proc.pid}/fd"))

    def stderr_text(self) -> str:
        return self.log.read_bytes().decode(errors="replace")[-3000:]

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(10)
        if self.proc.stdout is not None:
            self.proc.stdout.close()


@pytest.fixture
def start_server(tmp_path: Path) -> Iterator[type[ServerProcess]]:
    started: list[ServerProcess] = []

    def start(*args: str, env: dict[str, str] | None = None) -> ServerProcess:
        server = ServerProcess(*args, log=tmp_path / f"server{len(started)}.log", env=env)
        started.append(server)
        return server

    yield start  # type: ignore[misc]
    for server in started:
        server.stop()


def test_sigterm_lets_the_request_in_flight_finish_then_exits_0(start_server, wait_until) -> None:
    server = start_server("--grace", "10")
    addr = f"127.0.0.1:{server.port}"
    with wirekit.sync.connect(addr, timeout=5) as conn:
        conn.send(b"hold")
        assert conn.recv() == b"holding"  # the request is in flight in the handler

        server.proc.send_signal(signal.SIGTERM)
        assert server.read_line() == "STOPPING"

        def refuses() -> bool:
            try:
                wirekit.sync.connect(addr, timeout=2).close()
            except wirekit.ConnectError:
                return True  # the listener is closed
            except wirekit.BadHello as exc:  # accepted just before: refused with a reason
                assert "server shutting down" in str(exc)
                return True
            except wirekit.ConnectionClosed as exc:  # still queued when the listener closed
                assert "connection reset" in str(exc).lower()
                return True
            return False

        wait_until(refuses, what="the server stops accepting")
        assert server.proc.poll() is None, "the server waits for the handler"

        conn.send(b"finish")
        assert conn.recv() == b"released:finish"
    closed_at = time.monotonic()
    assert server.proc.wait(10) == 0, server.stderr_text()
    assert time.monotonic() - closed_at < 5, "exit did not wait out the 10 s grace"
    assert server.read_line() == "STOPPED"
    assert "Traceback" not in server.stderr_text()


@pytest.mark.parametrize("loop", ["uvloop", "asyncio"])
def test_accept_loop_survives_running_out_of_file_descriptors(
    start_server, wait_until, loop: str
) -> None:
    limit = 64
    env = {"WIREKIT_NO_UVLOOP": "1"} if loop == "asyncio" else {}
    if loop == "uvloop":
        pytest.importorskip("uvloop")
    server = start_server("--nofile", str(limit), env=env)
    addr = ("127.0.0.1", server.port)
    crowd = []
    try:
        for _ in range(100):
            crowd.append(socket.create_connection(addr, timeout=5))
        # The server takes file descriptors until it reaches its limit.
        wait_until(lambda: server.fd_count() >= limit - 2, what="server at its fd limit")
    finally:
        for sock in crowd:
            sock.close()
    assert server.proc.poll() is None, server.stderr_text()
    # The crowd is gone and the server has let go of its sockets (while it is
    # still at the limit, libuv sheds new connections by closing them at once).
    wait_until(lambda: server.fd_count() < limit // 2, what="server releases its descriptors")
    with wirekit.sync.connect(f"127.0.0.1:{server.port}", timeout=10) as conn:
        conn.send(b"after the storm")
        assert conn.recv() == b"after the storm"
    server.proc.send_signal(signal.SIGTERM)
    assert server.proc.wait(10) == 0, server.stderr_text()


def _refuses(addr: str) -> bool:
    try:
        wirekit.sync.connect(addr, timeout=2).close()
    except (wirekit.ConnectError, wirekit.BadHello, wirekit.ConnectionClosed):
        return True
    return False


def test_serve_forever_stops_gracefully_on_sigterm_by_itself(start_server, wait_until) -> None:
    server = start_server("--builtin", "--grace", "10")
    addr = f"127.0.0.1:{server.port}"
    with wirekit.sync.connect(addr, timeout=5) as conn:
        conn.send(b"hold")
        assert conn.recv() == b"holding"
        server.proc.send_signal(signal.SIGTERM)
        wait_until(lambda: _refuses(addr), what="the server stops accepting")
        assert server.proc.poll() is None, "the server waits for the handler in flight"
        conn.send(b"done")
        assert conn.recv() == b"released:done"
    assert server.read_line() == "STOPPED"
    assert server.proc.wait(10) == 0


def test_a_second_signal_cuts_the_grace_period_short(start_server, wait_until) -> None:
    server = start_server("--builtin", "--grace", "30")
    addr = f"127.0.0.1:{server.port}"
    with wirekit.sync.connect(addr, timeout=5) as conn:
        conn.send(b"hold")
        assert conn.recv() == b"holding"
        server.proc.send_signal(signal.SIGINT)
        wait_until(lambda: _refuses(addr), what="the server stops accepting")
        started = time.monotonic()
        server.proc.send_signal(signal.SIGINT)
        with pytest.raises(wirekit.ConnectionClosed) as closed:
            conn.recv()
        assert closed.value.code == wirekit.ErrorCode.GOING_AWAY
    assert server.read_line() == "STOPPED"
    assert server.proc.wait(10) == 0
    assert time.monotonic() - started < 5, "the 30 s grace period was not cut short"
