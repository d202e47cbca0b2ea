"""``wirekit listen --keep-open`` under load: a bounded number of peers (--max-peers),
bounded memory per peer, -w as each peer's idle timeout, and an accept loop that
survives running out of file descriptors."""

from __future__ import annotations

import re
import resource
import socket
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest

#: Seconds any single wait may take; the default --max-peers.
WAIT = 5.0
MAX_PEERS = 64


def _rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS in /proc/PID/status")


def _connections(session: Any) -> int:
    return len(re.findall(rb"wirekit: connection from ", bytes(session.err)))


@pytest.fixture
def stack() -> Iterator[ExitStack]:
    with ExitStack() as sockets:
        yield sockets


def _connect(port: int, stack: ExitStack) -> socket.socket:
    return stack.enter_context(socket.create_connection(("127.0.0.1", port), timeout=WAIT))


def test_idle_peers_cost_little_memory_and_the_limit_refuses_the_next(
    wirekit_listen: Callable[..., Any], reader: Any, poll: Any, stack: ExitStack
) -> None:
    """Each peer used to cost a thread and a zero-filled 1 MiB buffer (500 idle peers:
    +520 MB). At the default limit the peers together now cost a few MB, and the next
    peer gets one line and is closed."""
    listener, bound = wirekit_listen(":0", "-k", "-v")
    before = _rss_kib(listener.proc.pid)
    peers = [_connect(bound.port, stack) for _ in range(MAX_PEERS)]
    for peer in peers:
        peer.sendall(b".")  # each peer's reader has run once
    poll(lambda: bytes(listener.out).count(b".") == MAX_PEERS, what="every peer read")
    grown = _rss_kib(listener.proc.pid) - before
    assert grown < MAX_PEERS * 128, f"{MAX_PEERS} idle peers took {grown} KiB"
    assert _connections(listener) == MAX_PEERS

    with socket.create_connection(("127.0.0.1", bound.port), timeout=WAIT) as extra:
        line = reader.all(extra)
    assert line == f"wirekit: listener holds {MAX_PEERS} peers, its limit; closing\n".encode()
    listener.expect(rb"wirekit: refused \('127\.0\.0\.1', \d+\): 64 peers, the limit\n", err=True)

    # The peers let in are served: the first and the last still reach stdout.
    peers[0].sendall(b"first\n")
    peers[-1].sendall(b"last\n")
    listener.expect(rb"first\n")
    listener.expect(rb"last\n")
    assert listener.proc.poll() is None
    assert b"Traceback" not in bytes(listener.err)


def test_max_peers_at_and_past_the_limit(
    wirekit_listen: Callable[..., Any], reader: Any, poll: Any, stack: ExitStack
) -> None:
    listener, bound = wirekit_listen(":0", "-k", "-v", "--max-peers", "2")
    first, second = _connect(bound.port, stack), _connect(bound.port, stack)
    poll(lambda: _connections(listener) == 2, what="both peers accepted")
    with socket.create_connection(("127.0.0.1", bound.port), timeout=WAIT) as third:
        assert reader.all(third) == b"wirekit: listener holds 2 peers, its limit; closing\n"
    # At the limit both are served, stdin goes to both.
    listener.send(b"to both\n")
    for peer in (first, second):
        assert reader.until(peer, lambda data: data.endswith(b"\n")) == b"to both\n"
    # One leaves: a new peer takes its place (once the listener has seen it leave).
    first.close()

    def let_in() -> socket.socket | None:
        sock = socket.create_connection(("127.0.0.1", bound.port), timeout=WAIT)
        sock.settimeout(0.2)
        try:
            refusal = sock.recv(100)
        except TimeoutError:
            return stack.enter_context(sock)  # held open: let in
        sock.close()
        assert refusal.startswith(b"wirekit: listener holds 2 peers"), refusal
        return None

    newcomer = poll(let_in, what="a place for the newcomer")
    newcomer.sendall(b"newcomer\n")
    listener.expect(rb"newcomer\n")
    assert b"Traceback" not in bytes(listener.err)


def test_timeout_closes_idle_peers_only(wirekit_listen: Callable[..., Any], reader: Any) -> None:
    """-w is each peer's idle timeout with -k: a silent peer is closed (and named on
    stderr with -v), one that keeps talking stays."""
    listener, bound = wirekit_listen(":0", "-k", "-v", "-w", "0.5")
    with (
        socket.create_connection(("127.0.0.1", bound.port), timeout=WAIT) as idle,
        socket.create_connection(("127.0.0.1", bound.port), timeout=WAIT) as busy,
    ):
        started = time.monotonic()
        # The busy one talks every 0.1 s for 1 s, twice -w: never closed meanwhile.
        for _ in range(10):
            busy.settimeout(0.1)
            with pytest.raises(TimeoutError):
                busy.recv(1)  # an EOF (b"") here would be the listener closing it
            busy.sendall(b".")
        listener.expect(rb"\.{10}")
        assert reader.all(idle) == b""  # the silent one was closed
        closed_after = time.monotonic() - started
        assert closed_after >= 0.4, closed_after
        idle_port, busy_port = idle.getsockname()[1], busy.getsockname()[1]
        listener.expect(
            rb"wirekit: closing \('127\.0\.0\.1', %d\): idle for 0\.5 s\n" % idle_port, err=True
        )
        busy.sendall(b"alive\n")
        listener.expect(rb"alive\n")
        assert f"{busy_port}): idle" not in listener.stderr_text
    assert listener.proc.poll() is None


def test_survives_running_out_of_file_descriptors(
    spawn: Callable[..., Any], stack: ExitStack, poll: Any
) -> None:
    """With ``ulimit -n 16``, 20 peers: accept() fails with EMFILE. The listener says
    so once, retries, and takes the waiting peers as the first ones leave."""

    def few_fds() -> None:
        hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
        resource.setrlimit(resource.RLIMIT_NOFILE, (16, hard))

    listener = spawn(["wirekit", "listen", "-k", ":0"], preexec_fn=few_fds)
    port = int(listener.expect(rb"listening on tcp://127\.0\.0\.1:(\d+)", err=True).group(1))
    peers = [_connect(port, stack) for _ in range(20)]
    for i, peer in enumerate(peers):
        peer.sendall(b"peer %02d\n" % i)
    listener.expect(
        rb"wirekit: cannot accept a connection: Too many open files; retrying every 0\.1 s\n",
        err=True,
    )
    seen: set[int] = set()

    def everyone_heard() -> bool:
        for match in re.finditer(rb"peer (\d\d)\n", bytes(listener.out)):
            i = int(match.group(1))
            if i not in seen:
                seen.add(i)
                peers[i].close()  # make room for the peers still waiting
        return len(seen) == len(peers)

    poll(everyone_heard, timeout=2 * WAIT, what="every peer to get through")
    assert listener.proc.poll() is None
    lines = listener.stderr_text.splitlines()
    assert len(lines) == 2, lines  # "listening on" and one "cannot accept"
    assert "Traceback" not in listener.stderr_text


def test_verbose_escapes_a_peers_unix_socket_path(
    tmp_path: Path, wirekit_listen: Callable[..., Any]
) -> None:
    """The peer names its own socket: an ESC in it must not reach the terminal."""
    for flags in ([], ["-k"]):
        server = tmp_path / f"listen{len(flags)}.sock"
        listener, _ = wirekit_listen(f"unix:{server}", "-v", *flags)
        client_path = tmp_path / f"peer{len(flags)}\x1b[31mred\n"
        with socket.socket(socket.AF_UNIX) as peer:
            peer.bind(str(client_path))
            peer.settimeout(WAIT)
            peer.connect(str(server))
            peer.sendall(b"hi\n")
            listener.expect(rb"hi\n")
            escaped = str(tmp_path / f"peer{len(flags)}").encode() + rb"\\x1b\[31mred\\n"
            listener.expect(rb"wirekit: connection from " + escaped + rb"\n", err=True)
        assert b"\x1b" not in bytes(listener.err)
        listener.stop()
