"""``wirekit serve`` when things go wrong: a busy UDP port, running out of file
descriptors, peers with hostile names; and TRY hints that answer at once."""

from __future__ import annotations

import os
import re
import resource
import select
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest

WAIT = 5.0


@pytest.fixture(params=["uvloop", "asyncio"])
def loop_env(request: pytest.FixtureRequest) -> dict[str, str]:
    """The environment for a ``wirekit`` run on uvloop, or on the stdlib loop."""
    env = dict(os.environ)
    env.pop("WIREKIT_NO_UVLOOP", None)
    if request.param == "asyncio":
        env["WIREKIT_NO_UVLOOP"] = "1"
    else:
        pytest.importorskip("uvloop")
    return env


@pytest.fixture
def stack() -> Iterator[ExitStack]:
    with ExitStack() as sockets:
        yield sockets


def test_busy_udp_port_says_in_use(loop_env: dict[str, str]) -> None:
    """uvloop wraps the kernel's EADDRINUSE in "could not bind to local_addr"."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as holder:
        holder.bind(("127.0.0.1", 0))
        port = holder.getsockname()[1]
        done = subprocess.run(
            ["wirekit", "serve", "echo", "--listen", f"udp://127.0.0.1:{port}"],
            capture_output=True,
            text=True,
            timeout=10,
            env=loop_env,
        )
    assert done.returncode == 3
    assert done.stderr == (
        f"wirekit: port {port} on 127.0.0.1 is already in use (another server is listening there)\n"
    )


def test_out_of_file_descriptors_is_one_line_not_a_flood(
    wirekit: Callable[..., Any], stack: ExitStack
) -> None:
    """The stdlib loop logged a traceback for every failed accept() (218k lines in
    2 s): now one line, and the server serves again once descriptors are free."""
    env = dict(os.environ, WIREKIT_NO_UVLOOP="1")

    def few_fds() -> None:
        hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
        resource.setrlimit(resource.RLIMIT_NOFILE, (32, hard))

    proc = wirekit(["serve", "echo", "--listen", ":0"], env=env, preexec_fn=few_fds)
    port = int(proc.expect(r"^echo +tcp://127\.0\.0\.1:(\d+) ").group(1))
    peers = [
        stack.enter_context(socket.create_connection(("127.0.0.1", port), timeout=WAIT))
        for _ in range(60)
    ]
    proc.expect(r"^wirekit: cannot accept connections: Too many open files", err=True)
    # Give the loop a few of its one-second retries to flood stderr, if it would.
    deadline = time.monotonic() + 2.5
    while time.monotonic() < deadline:
        assert proc.proc.poll() is None, proc.stderr
        assert len(proc.stderr.splitlines()) == 1, proc.stderr[:2000]
        time.sleep(0.05)
    for peer in peers:
        peer.close()
    with socket.create_connection(("127.0.0.1", port), timeout=WAIT) as conn:
        conn.sendall(b"served again\n")
        assert conn.recv(100) == b"served again\n"
    assert "Traceback" not in proc.stderr
    assert len(proc.stderr.splitlines()) == 1, proc.stderr


def test_verbose_escapes_a_refused_peers_unix_socket_path(
    wirekit: Callable[..., Any], tmp_path: Path
) -> None:
    server = tmp_path / "echo.sock"
    proc = wirekit(["serve", "echo", "-v", "--max-connections", "1", "--listen", f"unix:{server}"])
    proc.expect(r"^echo ")
    with socket.socket(socket.AF_UNIX) as first, socket.socket(socket.AF_UNIX) as second:
        first.settimeout(WAIT)
        first.connect(str(server))
        first.sendall(b"in\n")
        assert first.recv(100) == b"in\n"  # admitted: the next one is one too many
        second.bind(str(tmp_path / "evil\x1b]0;owned\x07"))
        second.settimeout(WAIT)
        second.connect(str(server))
        assert second.recv(200).startswith(b"wirekit: server holds 1 connections")
        escaped = re.escape(str(tmp_path / "evil")) + r"\\x1b\]0;owned\\x07"
        proc.expect(rf"^wirekit: refused {escaped}: server holds 1 connections", err=True)
    assert "\x1b" not in proc.stderr and "\x07" not in proc.stderr


def test_udp_daytime_hint_answers_without_input(served: Callable[..., Any]) -> None:
    """The TRY command for daytime over UDP must print the date at once, not wait
    for the user to press Enter."""
    _, rows = served(["daytime", "--listen", "udp://:0"], rows=1)
    (_, endpoint, hint) = rows[0]
    assert hint == f"echo | wirekit connect {endpoint}"
    # stdin stays open and silent, as a terminal nobody types into.
    shell = subprocess.Popen(
        ["sh", "-c", hint], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    try:
        assert shell.stdout is not None
        ready, _, _ = select.select([shell.stdout], [], [], WAIT)
        assert ready, "the hint printed nothing"
        out = os.read(shell.stdout.fileno(), 200)
        assert re.fullmatch(rb"\w+, \w+ \d\d, \d{4} \d\d:\d\d:\d\d-\S*\r\n", out), out
        _, err = shell.communicate(timeout=WAIT)
        assert (shell.returncode, err) == (0, b"")
    finally:
        if shell.poll() is None:
            shell.kill()
            shell.communicate()
