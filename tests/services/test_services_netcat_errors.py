"""netcat mode errors: each is one ``wirekit: ...`` line on stderr and an exit code
(1 runtime, 2 usage, 3 could not start), never a traceback."""

from __future__ import annotations

import errno
import os
import socket
import subprocess
from pathlib import Path
from typing import Any

import pytest

from wirekit.addr import parse_address
from wirekit.errors import ListenError
from wirekit.neterrors import bind_error


def _wirekit(*args: str, stdin: bytes = b"") -> tuple[int, bytes, str]:
    done = subprocess.run(["wirekit", *args], input=stdin, capture_output=True, timeout=20)
    return done.returncode, done.stdout, done.stderr.decode()


def _one_line(stderr: str) -> str:
    lines = stderr.splitlines()
    assert len(lines) == 1, f"expected one line, got {stderr!r}"
    assert lines[0].startswith("wirekit: ")
    return lines[0]


def test_connect_refused_exits_1() -> None:
    # A bound but not listening socket holds the port: connecting is refused.
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        port = holder.getsockname()[1]
        code, out, err = _wirekit("connect", f"127.0.0.1:{port}")
    assert (code, out) == (1, b"")
    assert _one_line(err) == (
        f"wirekit: cannot connect to 127.0.0.1:{port}: "
        "connection refused (is a server listening there?)"
    )


def test_connect_to_missing_unix_socket_exits_1(tmp_path: Path) -> None:
    path = tmp_path / "nobody.sock"
    code, _, err = _wirekit("connect", f"unix:{path}")
    assert code == 1
    assert _one_line(err) == f"wirekit: cannot connect to unix socket {path}: no such socket file"


def test_udp_connect_to_closed_port_says_unreachable() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as holder:
        holder.bind(("127.0.0.1", 0))
        port = holder.getsockname()[1]
    # Nobody on the port now: the kernel answers with ICMP port unreachable.
    code, _, err = _wirekit("connect", f"udp://127.0.0.1:{port}", stdin=b"anyone?\n")
    assert code == 1
    assert _one_line(err) == (
        f"wirekit: cannot reach 127.0.0.1:{port}: port unreachable (no udp server there)"
    )


def test_unknown_host_exits_1() -> None:
    code, out, err = _wirekit("connect", "no-such-host.invalid:7007")
    assert (code, out) == (1, b"")
    assert _one_line(err) == (
        "wirekit: cannot connect to no-such-host.invalid:7007: unknown host 'no-such-host.invalid'"
    )


@pytest.mark.parametrize("scheme", ["tcp", "udp"])
def test_listen_on_a_port_in_use_exits_3(scheme: str) -> None:
    kind = socket.SOCK_DGRAM if scheme == "udp" else socket.SOCK_STREAM
    with socket.socket(socket.AF_INET, kind) as holder:
        holder.bind(("127.0.0.1", 0))
        if scheme == "tcp":
            holder.listen()
        port = holder.getsockname()[1]
        code, out, err = _wirekit("listen", f"{scheme}://127.0.0.1:{port}")
    assert (code, out) == (3, b"")
    assert _one_line(err) == (
        f"wirekit: port {port} on 127.0.0.1 is already in use (another server is listening there)"
    )


def test_listen_on_a_live_unix_socket_exits_3(tmp_path: Path) -> None:
    path = tmp_path / "busy.sock"
    with socket.socket(socket.AF_UNIX) as holder:
        holder.bind(str(path))
        holder.listen()
        code, _, err = _wirekit("listen", f"unix:{path}")
    assert code == 3
    assert _one_line(err) == (
        f"wirekit: unix socket {path} is already in use (another server is listening)"
    )


def test_listen_replaces_a_stale_unix_socket(tmp_path: Path, spawn: Any, poll: Any) -> None:
    path = tmp_path / "stale.sock"
    with socket.socket(socket.AF_UNIX) as dead:
        dead.bind(str(path))  # bound, then closed: a socket file nobody listens on
    listener = spawn(["wirekit", "listen", f"unix:{path}"])

    def connected() -> socket.socket | None:
        probe = socket.socket(socket.AF_UNIX)
        try:
            probe.connect(str(path))
        except (ConnectionRefusedError, FileNotFoundError):
            probe.close()
            assert listener.proc.poll() is None, listener.stderr_text
            return None
        return probe

    with poll(connected, what="the listener to take over the stale socket") as peer:
        peer.sendall(b"took over\n")
        listener.expect(rb"took over\n")
    listener.close_stdin()
    assert listener.wait() == 0, listener.stderr_text
    assert listener.stderr_text == ""


def test_listen_refuses_a_regular_file_in_the_way(tmp_path: Path) -> None:
    path = tmp_path / "data.txt"
    path.write_text("keep me\n")
    code, _, err = _wirekit("listen", f"unix:{path}")
    assert code == 3
    assert "a non-socket file is in the way" in _one_line(err)
    assert path.read_text() == "keep me\n"


@pytest.mark.parametrize(
    ("address", "problem"),
    [
        ("127.0.0.1:99999", "port 99999 is out of range 0-65535"),
        ("ftp://127.0.0.1:21", "unknown scheme 'ftp'"),
        ("::1:7007", "write IPv6 addresses in brackets"),
        ("127.0.0.1", "missing port"),
    ],
)
@pytest.mark.parametrize("command", ["connect", "listen"])
def test_bad_address_exits_2(command: str, address: str, problem: str) -> None:
    code, out, err = _wirekit(command, address)
    assert (code, out) == (2, b"")
    line = _one_line(err)
    assert line.startswith(f"wirekit: bad address {address!r}: ")
    assert problem in line


def test_listen_tls_is_refused_in_one_line() -> None:
    code, _, err = _wirekit("listen", "tls://127.0.0.1:0")
    assert code == 1
    assert "listen does not do TLS" in _one_line(err)


def _real_eacces(tmp_path: Path) -> PermissionError:
    """An EACCES straight from the kernel: bind port 1 as a user; as root (who may
    bind it) run a file that is not executable."""
    if os.geteuid() != 0:
        with socket.socket() as sock, pytest.raises(PermissionError) as info:
            sock.bind(("127.0.0.1", 1))
        return info.value
    script = tmp_path / "not-executable"
    script.write_text("")
    with pytest.raises(PermissionError) as info:
        subprocess.run([str(script)], check=False)
    return info.value


def test_permission_denied_message_from_a_real_eacces(tmp_path: Path) -> None:
    exc = _real_eacces(tmp_path)
    assert exc.errno == errno.EACCES
    error = bind_error(parse_address(":80"), exc)
    assert isinstance(error, ListenError)
    assert str(error) == (
        "permission denied binding port 80 on 127.0.0.1 (ports below 1024 need root)"
    )
    # Above 1024 (a firewall or a security module said no) there is no root hint.
    assert str(bind_error(parse_address(":8080"), exc)) == (
        "permission denied binding port 8080 on 127.0.0.1"
    )
    assert str(bind_error(parse_address("unix:/run/x.sock"), exc)) == (
        "permission denied binding unix socket /run/x.sock"
    )


@pytest.mark.skipif(os.geteuid() == 0, reason="root may bind ports below 1024")
def test_listen_below_1024_as_user_exits_3() -> None:
    code, _, err = _wirekit("listen", "127.0.0.1:1")
    assert code == 3
    assert _one_line(err) == (
        "wirekit: permission denied binding port 1 on 127.0.0.1 (ports below 1024 need root)"
    )


def test_bind_error_looks_at_the_os_error_a_loop_wraps() -> None:
    """uvloop's create_datagram_endpoint raises "could not bind to local_addr" (errno
    None) from the kernel's OSError; the message must still say what happened."""
    for inner, expected in (
        (
            OSError(errno.EADDRINUSE, "Address already in use"),
            "port 7007 on 127.0.0.1 is already in use (another server is listening there)",
        ),
        (PermissionError(errno.EACCES, "Permission denied"), "permission denied binding port 7007"),
        (OSError(errno.EIO, "Input/output error"), "cannot bind port 7007 on 127.0.0.1: "),
    ):
        for link in ("__cause__", "__context__"):
            outer = OSError("could not bind to local_addr ('127.0.0.1', 7007)")
            setattr(outer, link, inner)
            text = str(bind_error(parse_address("udp://127.0.0.1:7007"), outer))
            assert text.startswith(expected), (link, text)
    outer = OSError("could not bind to local_addr ('127.0.0.1', 7007)")
    outer.__cause__ = OSError(errno.EIO, "Input/output error")
    assert str(bind_error(parse_address("udp://127.0.0.1:7007"), outer)) == (
        "cannot bind port 7007 on 127.0.0.1: Input/output error"
    )


# -- local I/O errors blame stdin or stdout, never the connection ---------------------

FULL = "/dev/full"
needs_dev_full = pytest.mark.skipif(not os.path.exists(FULL), reason="no /dev/full")
NO_SPACE = "wirekit: cannot write to stdout: No space left on device"


def _udp_echo() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.settimeout(5)
    return sock


@needs_dev_full
def test_udp_connect_to_a_full_stdout() -> None:
    with _udp_echo() as server, open(FULL, "wb") as full:
        client = subprocess.Popen(
            ["wirekit", "connect", f"udp://127.0.0.1:{server.getsockname()[1]}"],
            stdin=subprocess.PIPE,
            stdout=full,
            stderr=subprocess.PIPE,
        )
        try:
            assert client.stdin is not None
            client.stdin.write(b"hi\n")
            client.stdin.flush()
            data, peer = server.recvfrom(100)
            server.sendto(data, peer)  # the reply cannot be written to stdout
            _, err = client.communicate(timeout=10)
        finally:
            _reap(client)
    assert client.returncode == 1
    assert _one_line(err.decode()) == NO_SPACE


def _reap(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.kill()
        proc.communicate()


@needs_dev_full
@pytest.mark.parametrize("keep_open", [False, True], ids=["once", "keep-open"])
def test_udp_listen_to_a_full_stdout(keep_open: bool, spawn: Any) -> None:
    with open(FULL, "wb") as full:
        flags = ["-k"] if keep_open else []
        listener = spawn(["wirekit", "listen", *flags, "udp://:0"], stdout=full)
    port = int(listener.expect(rb"listening on udp://127\.0\.0\.1:(\d+)", err=True).group(1))
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as peer:
        peer.sendto(b"to a full disk\n", ("127.0.0.1", port))
        assert listener.wait() == 1
    lines = listener.stderr_text.splitlines()
    assert lines[1:] == [NO_SPACE], listener.stderr_text


@needs_dev_full
@pytest.mark.parametrize("keep_open", [False, True], ids=["once", "keep-open"])
def test_tcp_listen_to_a_full_stdout(keep_open: bool, spawn: Any) -> None:
    with open(FULL, "wb") as full:
        flags = ["-k"] if keep_open else []
        listener = spawn(["wirekit", "listen", *flags, ":0"], stdout=full)
    port = int(listener.expect(rb"listening on tcp://127\.0\.0\.1:(\d+)", err=True).group(1))
    with socket.create_connection(("127.0.0.1", port), timeout=5) as peer:
        peer.sendall(b"to a full disk\n")
        assert listener.wait() == 1
    lines = listener.stderr_text.splitlines()
    assert lines[1:] == [NO_SPACE], listener.stderr_text


@needs_dev_full
def test_tcp_connect_to_a_full_stdout_blames_stdout() -> None:
    """Not "connection failed": the connection is fine, stdout is not."""
    with socket.create_server(("127.0.0.1", 0)) as server, open(FULL, "wb") as full:
        server.settimeout(5)
        client = subprocess.Popen(
            ["wirekit", "connect", f"127.0.0.1:{server.getsockname()[1]}"],
            stdin=subprocess.PIPE,
            stdout=full,
            stderr=subprocess.PIPE,
        )
        try:
            conn, _ = server.accept()
            with conn:
                conn.sendall(b"nowhere to put this\n")
                _, err = client.communicate(timeout=10)
        finally:
            _reap(client)
    assert client.returncode == 1
    assert _one_line(err.decode()) == NO_SPACE


@pytest.mark.parametrize("scheme", ["tcp", "udp"])
def test_unreadable_stdin_blames_stdin(scheme: str, tmp_path: Path) -> None:
    """stdin open for writing only (read() fails with EBADF): not "sending failed"."""
    kind = socket.SOCK_DGRAM if scheme == "udp" else socket.SOCK_STREAM
    with socket.socket(socket.AF_INET, kind) as server:
        server.bind(("127.0.0.1", 0))
        if scheme == "tcp":
            server.listen()
        port = server.getsockname()[1]
        write_only = os.open(tmp_path / "out", os.O_WRONLY | os.O_CREAT)
        try:
            done = subprocess.run(
                ["wirekit", "connect", f"{scheme}://127.0.0.1:{port}"],
                stdin=write_only,
                capture_output=True,
                timeout=10,
            )
        finally:
            os.close(write_only)
    assert done.returncode == 1
    assert _one_line(done.stderr.decode()) == "wirekit: cannot read stdin: Bad file descriptor"


def test_udp_listen_names_the_peer_that_went_away(spawn: Any) -> None:
    """The peer's port is unreachable: say so with its address, not ours."""
    listener = spawn(["wirekit", "listen", "udp://:0"])
    port = int(listener.expect(rb"listening on udp://127\.0\.0\.1:(\d+)", err=True).group(1))
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as peer:
        peer.sendto(b"hello, then gone\n", ("127.0.0.1", port))
        peer_port = peer.getsockname()[1]
        listener.expect(rb"hello, then gone\n")
    listener.send(b"anyone there?\n")  # to a closed port: ICMP port unreachable
    assert listener.wait() == 1
    lines = listener.stderr_text.splitlines()
    assert lines[1:] == [
        f"wirekit: cannot reach 127.0.0.1:{peer_port}: port unreachable (the peer has gone)"
    ], listener.stderr_text
