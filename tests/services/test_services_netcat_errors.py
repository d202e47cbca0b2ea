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
