"""netcat mode as a user runs it: ``wirekit connect`` and ``wirekit listen`` as
subprocesses, against nc and socat, over TCP, UDP and Unix sockets."""

from __future__ import annotations

import os
import select
import socket
import subprocess
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

LISTENING_SOCAT = rb"listening on AF=2 127\.0\.0\.1:(\d+)"


def test_connect_talks_both_ways_with_nc_listener(
    tool: Callable[[str], str], spawn: Callable[..., Any]
) -> None:
    tool("nc")
    server = spawn(["nc", "-N", "-l", "-v", "127.0.0.1", "0"])
    port = int(server.expect(rb"Listening on \S+ (\d+)", err=True).group(1))
    client = spawn(["wirekit", "connect", f"127.0.0.1:{port}"])

    client.send(b"from the client\n")
    server.expect(rb"from the client\n")
    server.send(b"from the server\n")
    client.expect(rb"from the server\n")

    server.close_stdin()  # nc -N half-closes; the client still sends
    client.send(b"after your EOF\n")
    server.expect(rb"after your EOF\n")
    client.close_stdin()
    assert client.wait() == 0, client.stderr_text
    assert server.wait() == 0
    assert bytes(client.out) == b"from the server\n"
    assert bytes(server.out) == b"from the client\nafter your EOF\n"
    assert client.stderr_text == ""


def test_half_close_lets_the_reply_arrive(
    tool: Callable[[str], str], spawn: Callable[..., Any]
) -> None:
    """tr answers only once it sees EOF: the reply must come back after our
    stdin ends and the socket is half-closed."""
    tool("socat")
    server = spawn(["socat", "-d", "-d", "TCP-LISTEN:0,bind=127.0.0.1", "SYSTEM:tr a-z A-Z"])
    port = int(server.expect(LISTENING_SOCAT, err=True).group(1))
    client = subprocess.run(
        ["wirekit", "connect", f"127.0.0.1:{port}"],
        input=b"shout this\nand this\n",
        capture_output=True,
        timeout=10,
    )
    assert client.returncode == 0, client.stderr
    assert client.stdout == b"SHOUT THIS\nAND THIS\n"
    assert server.wait() == 0


def test_connect_to_unix_socat_server(
    tool: Callable[[str], str], spawn: Callable[..., Any], tmp_path: Path, poll: Any
) -> None:
    tool("socat")
    path = tmp_path / "upper.sock"
    server = spawn(["socat", f"UNIX-LISTEN:{path}", "SYSTEM:tr a-z A-Z"])
    poll(path.exists, what="socat to create the socket")
    client = subprocess.run(
        ["wirekit", "connect", f"unix:{path}"], input=b"unix\n", capture_output=True, timeout=10
    )
    assert (client.returncode, client.stdout, client.stderr) == (0, b"UNIX\n", b"")
    assert server.wait() == 0


def test_unix_connect_to_unix_listen(
    tmp_path: Path, wirekit_listen: Callable[..., Any], spawn: Callable[..., Any]
) -> None:
    path = tmp_path / "nc.sock"
    listener, _ = wirekit_listen(f"unix:{path}")
    client = spawn(["wirekit", "connect", f"unix:{path}"])
    client.send(b"over unix\n")
    listener.expect(rb"over unix\n")
    listener.send(b"and back\n")
    client.expect(rb"and back\n")
    client.close_stdin()
    listener.close_stdin()
    assert client.wait() == 0, client.stderr_text
    assert listener.wait() == 0, listener.stderr_text
    assert not path.exists(), "listen leaves its socket file behind"


def test_udp_connect_to_udp_listen(
    wirekit_listen: Callable[..., Any], spawn: Callable[..., Any]
) -> None:
    listener, bound = wirekit_listen("udp://:0")
    assert bound.scheme == "udp" and bound.port != 0
    client = spawn(["wirekit", "connect", str(bound)])
    client.send(b"one datagram\n")
    listener.expect(rb"^one datagram\n$")
    listener.send(b"a reply\n")
    client.expect(rb"^a reply\n$")
    client.send(b"second\n")
    listener.expect(rb"^one datagram\nsecond\n$")
    client.close_stdin()  # waits a moment for late replies, then ends
    assert client.wait() == 0, client.stderr_text
    assert bytes(client.out) == b"a reply\n"


def test_udp_connect_each_read_is_one_datagram() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as server:
        server.bind(("127.0.0.1", 0))
        server.settimeout(10)
        port = server.getsockname()[1]
        client = subprocess.Popen(
            ["wirekit", "connect", f"udp://127.0.0.1:{port}"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        try:
            assert client.stdin is not None
            client.stdin.write(b"ping\n")
            client.stdin.flush()
            data, peer = server.recvfrom(65536)
            assert data == b"ping\n"
            server.sendto(b"pong\n", peer)
            out, err = client.communicate(timeout=10)
        finally:
            if client.poll() is None:
                client.kill()
                client.wait()
    assert (client.returncode, out, err) == (0, b"pong\n", b"")


def test_listen_keep_open_serves_two_peers_at_once(
    wirekit_listen: Callable[..., Any], reader: Any
) -> None:
    listener, bound = wirekit_listen(":0", "--keep-open")
    peers = [socket.create_connection(("127.0.0.1", bound.port), timeout=5) for _ in range(2)]
    try:
        peers[0].sendall(b"first peer\n")
        peers[1].sendall(b"second peer\n")
        listener.expect(rb"first peer\n")
        listener.expect(rb"second peer\n")
        # Both are connected at the same time: stdin goes to each of them.
        listener.send(b"to everyone\n")
        for peer in peers:
            assert reader.until(peer, lambda data: data.endswith(b"\n")) == b"to everyone\n"
        # One leaves; the other still talks.
        peers[0].close()
        peers[1].sendall(b"still here\n")
        listener.expect(rb"still here\n")
    finally:
        for peer in peers:
            peer.close()
    assert listener.proc.poll() is None, "--keep-open ended after a peer left"
    # And a third peer, later, is accepted as well.
    with socket.create_connection(("127.0.0.1", bound.port), timeout=5) as third:
        third.sendall(b"third\n")
        listener.expect(rb"third\n")


def test_listen_takes_one_peer_without_keep_open(
    wirekit_listen: Callable[..., Any], reader: Any
) -> None:
    listener, bound = wirekit_listen(":0")
    with socket.create_connection(("127.0.0.1", bound.port), timeout=5) as first:
        first.sendall(b"hello\n")
        listener.expect(rb"hello\n")
        # The listening socket is closed once the first peer is in.
        try:
            second = socket.create_connection(("127.0.0.1", bound.port), timeout=5)
        except ConnectionRefusedError:
            pass
        else:
            second.close()
            raise AssertionError("a second peer was let in without --keep-open")
        first.shutdown(socket.SHUT_WR)
        listener.close_stdin()
        assert reader.all(first) == b""
    assert listener.wait() == 0, listener.stderr_text


def test_connect_idle_timeout_exits_1(spawn: Callable[..., Any]) -> None:
    # A server that accepts (in the kernel backlog) and never says a word.
    with socket.create_server(("127.0.0.1", 0)) as silent:
        port = silent.getsockname()[1]
        client = spawn(["wirekit", "connect", "-w", "0.5", f"127.0.0.1:{port}"])
        assert client.wait(10) == 1
    assert client.stderr_text == "wirekit: idle for 0.5 s; closing\n"
    assert bytes(client.out) == b""


def test_connect_timeout_does_not_cut_a_live_connection(
    tool: Callable[[str], str], spawn: Callable[..., Any]
) -> None:
    """-w counts silence, not the connection's age: traffic keeps it open."""
    tool("socat")
    server = spawn(["socat", "-d", "-d", "TCP-LISTEN:0,bind=127.0.0.1", "-"])
    port = int(server.expect(LISTENING_SOCAT, err=True).group(1))
    client = spawn(["wirekit", "connect", "-w", "0.6", f"127.0.0.1:{port}"])
    for i in range(3):  # 3 x 0.35 s: longer than -w in total, never that silent at once
        server.send(b"tick %d\n" % i)
        client.expect(rb"tick %d\n" % i)
        with pytest.raises(subprocess.TimeoutExpired):
            client.proc.wait(0.35)
        client.send(b"tock %d\n" % i)
        server.expect(rb"tock %d\n" % i)
    assert client.proc.poll() is None
    client.close_stdin()
    server.close_stdin()
    assert client.wait() == 0, client.stderr_text


def test_listen_timeout_without_peer_exits_1(spawn: Callable[..., Any]) -> None:
    listener = spawn(["wirekit", "listen", "-w", "0.3", ":0"])
    assert listener.wait(10) == 1
    lines = listener.stderr_text.splitlines()
    assert lines[0].startswith("wirekit: listening on tcp://127.0.0.1:")
    assert lines[1:] == ["wirekit: no connection within 0.3 s"]


def test_connect_timeout_does_not_cut_a_slow_transfer(tmp_path: Path) -> None:
    """A peer that keeps reading, slowly, is not idle: -w must not cut a 12 MiB
    upload from a file (one sendfile call must not look like silence, nor must the
    kernel's send queue draining after our EOF)."""
    data = bytes(range(256)) * (12 * 4096)
    source = tmp_path / "upload.bin"
    source.write_bytes(data)
    with socket.socket() as server:
        server.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
        server.bind(("127.0.0.1", 0))
        server.listen()
        server.settimeout(5)
        with source.open("rb") as stdin:
            client = subprocess.Popen(
                ["wirekit", "connect", "-w", "0.3", f"127.0.0.1:{server.getsockname()[1]}"],
                stdin=stdin,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
            )
        try:
            conn, _ = server.accept()
            received = bytearray()
            throttle = threading.Event()  # never set: only paces the reads
            with conn:
                conn.settimeout(5)
                # About 12 MB/s: the upload takes about a second, several times -w.
                paced = 0
                while chunk := conn.recv(256 * 1024):
                    received += chunk
                    if len(received) - paced >= 256 * 1024:
                        paced = len(received)
                        throttle.wait(0.02)
            _, err = client.communicate(timeout=10)
        finally:
            if client.poll() is None:
                client.kill()
                client.wait()
    assert (client.returncode, err) == (0, b"")
    assert received == data


def test_stdout_pipe_can_be_read_while_the_peer_is_quiet() -> None:
    """What arrived must be readable from the stdout pipe at once, not only when the
    next bytes come (a splice sleeping on the socket holds the pipe's lock)."""
    with socket.create_server(("127.0.0.1", 0)) as server:
        server.settimeout(5)
        client = subprocess.Popen(
            ["wirekit", "connect", f"127.0.0.1:{server.getsockname()[1]}"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        try:
            conn, _ = server.accept()
            with conn:
                assert client.stdout is not None
                fd = client.stdout.fileno()
                for line in (b"first\n", b"second\n"):
                    conn.sendall(line)
                    ready, _, _ = select.select([fd], [], [], 5)
                    assert ready
                    got: list[bytes] = []
                    reading = threading.Thread(
                        target=lambda out: out.append(os.read(fd, 100)), args=(got,), daemon=True
                    )
                    reading.start()
                    reading.join(2)
                    assert got == [line], "reading wirekit's stdout blocked"
        finally:
            client.kill()
            client.communicate(timeout=5)


def test_udp_listen_keep_open_replies_to_the_latest_peer(
    wirekit_listen: Callable[..., Any],
) -> None:
    listener, bound = wirekit_listen("udp://:0", "-k")
    with (
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as first,
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as second,
    ):
        for sock in (first, second):
            sock.settimeout(5)
        first.sendto(b"from the first\n", ("127.0.0.1", bound.port))
        listener.expect(rb"from the first\n")
        listener.send(b"to the first\n")
        assert first.recv(100) == b"to the first\n"
        second.sendto(b"from the second\n", ("127.0.0.1", bound.port))
        listener.expect(rb"from the second\n")
        listener.send(b"to the second\n")
        assert second.recv(100) == b"to the second\n"
        first.close()  # a peer that leaves does not end the listener
        listener.send(b"again\n")
        assert second.recv(100) == b"again\n"
    assert listener.proc.poll() is None
    assert listener.stderr_text.count("\n") == 1  # only "listening on"
