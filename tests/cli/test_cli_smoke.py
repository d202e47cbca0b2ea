"""One run of each command as a user types it: ``wirekit serve`` (all services on
their default ports, and one service on a port it picks), ``wirekit connect``,
``wirekit listen``, stopping ``serve`` with SIGINT and SIGTERM, ``python -m wirekit``."""

from __future__ import annotations

import os
import re
import select
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import wirekit
from wirekit.addr import parse_address

DEFAULT_PORTS = {"echo": 7007, "daytime": 7013, "time": 7037}
#: Served by ``wirekit serve`` on tcp only.
STREAM_PORTS = {"chat": 6667, "exec": 7022}
DAYTIME = r"\w+, \w+ \d\d, \d{4} \d\d:\d\d:\d\d-\S*\r\n"


def _ports_free(ports: list[int]) -> bool:
    """Whether ``wirekit serve`` can bind each port, probed the way it binds: TCP
    with SO_REUSEADDR (so a port in TIME_WAIT after an earlier run counts as free,
    as it is for the server), UDP without."""
    for port in ports:
        for kind in (socket.SOCK_STREAM, socket.SOCK_DGRAM):
            with socket.socket(socket.AF_INET, kind) as probe:
                if kind == socket.SOCK_STREAM:
                    probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                try:
                    probe.bind(("127.0.0.1", port))
                    if kind == socket.SOCK_STREAM:
                        probe.listen()  # as the server does: fails if another listens
                except OSError:
                    return False
    return True


def test_ports_free_sees_a_port_in_time_wait_as_free() -> None:
    """A TCP port whose last connection is in TIME_WAIT is free for the server
    (SO_REUSEADDR): the default-port test must not skip itself for that."""
    with socket.socket() as server:
        server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = server.getsockname()[1]
        client = socket.create_connection(("127.0.0.1", port), timeout=5)
        conn, _ = server.accept()
        conn.close()  # the server side closes first: its end goes to TIME_WAIT
        client.recv(1)
        client.close()
        assert not _ports_free([port])  # still listening: busy
    # Only the TIME_WAIT connection is left on the port.
    assert _ports_free([port])


def _rdate_time(output: str) -> float:
    match = re.search(r"\w{3} (\w{3}) +(\d+) (\d\d:\d\d:\d\d) \S+ (\d{4})", output)
    assert match, output
    month, day, clock, year = match.groups()
    return time.mktime(time.strptime(f"{month} {int(day)} {clock} {year}", "%b %d %H:%M:%S %Y"))


def test_serve_everything_on_default_ports(served: Callable[..., Any], tmp_path: Path) -> None:
    busy = "a default port (6667, 7007, 7013, 7022, 7037) is busy on 127.0.0.1"
    if not _ports_free([*DEFAULT_PORTS.values(), *STREAM_PORTS.values()]):
        pytest.skip(busy)
    # exec makes its token in the config dir: a private one, found by the
    # client below through the same environment.
    env = dict(os.environ, HOME=str(tmp_path), WIREKIT_CONFIG_DIR=str(tmp_path / "config"))
    try:
        proc, rows = served([], rows=8, env=env)
    except AssertionError as exc:
        if "already in use" in str(exc):  # taken since the check
            pytest.skip(busy)
        raise
    assert proc.stdout.startswith(f"wirekit {wirekit.__version__} serving on ")
    assert "Ctrl-C to stop" in proc.stdout.splitlines()[0]
    expected = [
        (name, f"{scheme}://127.0.0.1:{port}")
        for name, port in DEFAULT_PORTS.items()
        for scheme in ("tcp", "udp")
    ] + [(name, f"tcp://127.0.0.1:{port}") for name, port in STREAM_PORTS.items()]
    assert [(name, endpoint) for name, endpoint, _ in rows] == expected
    assert f"token in {tmp_path / 'config' / 'exec.token'}" in proc.stdout

    # Each row's command is ready to paste (into a shell): run them all, at once.
    # daytime and time answer without input; the chat client sends a line and
    # leaves at the end of its input.
    inputs = {"echo": b"paste me\n", "daytime": b"", "time": b"", "chat": b"hi all\n", "exec": b""}
    runs = []
    for name, endpoint, hint in rows:
        argv = shlex.split(hint)
        if argv[0] == "rdate" and shutil.which("rdate") is None:
            continue  # the hint is still checked below
        runs.append(
            (
                name,
                endpoint,
                argv,
                subprocess.Popen(
                    hint,
                    shell=True,
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                    env=env,
                ),
            )
        )
    port = DEFAULT_PORTS["time"]
    assert rows[4][2] == f"rdate -p -o {port} 127.0.0.1"
    assert rows[5][2] == f"rdate -p -u -o {port} 127.0.0.1"
    assert rows[0][2] == "wirekit connect 127.0.0.1:7007"
    assert rows[1][2] == "wirekit connect udp://127.0.0.1:7007"
    assert rows[2][2] == "wirekit connect 127.0.0.1:7013"
    assert rows[3][2] == "echo | wirekit connect udp://127.0.0.1:7013"
    assert rows[6][2] == "wirekit chat 127.0.0.1:6667"
    assert rows[7][2] == "wirekit exec 127.0.0.1:7022 -- uname -a"
    for name, endpoint, argv, run in runs:
        out, err = run.communicate(inputs[name], timeout=10)
        assert run.returncode == 0, (argv, err)
        if name == "echo":
            assert out == b"paste me\n", endpoint
        elif name == "daytime":
            assert re.fullmatch(DAYTIME, out.decode()), (endpoint, out)
        elif name == "time":
            assert abs(_rdate_time(out.decode()) - time.time()) < 5, (endpoint, out)
        elif name == "exec":
            assert out == subprocess.run(["uname", "-a"], capture_output=True).stdout
        else:
            assert b"#lobby" in out, out

    proc.proc.send_signal(signal.SIGINT)
    assert proc.wait() == 0
    assert proc.stderr == "wirekit: shutting down\n"


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_serve_echo_on_a_picked_port_and_stop(
    sig: signal.Signals, served: Callable[..., Any], tmp_path: Path
) -> None:
    sock_path = tmp_path / "echo.sock"
    proc, rows = served(
        ["echo", "--listen", ":0", "--listen", "udp://:0", "--listen", f"unix:{sock_path}"],
        rows=3,
    )
    (_, tcp, tcp_hint), (_, udp, udp_hint), (_, unix, unix_hint) = rows
    tcp_addr, udp_addr = parse_address(tcp), parse_address(udp)
    assert tcp_addr.port != 0 and udp_addr.port != 0
    assert tcp_hint == f"wirekit connect 127.0.0.1:{tcp_addr.port}"
    assert udp_hint == f"wirekit connect udp://127.0.0.1:{udp_addr.port}"
    assert (unix, unix_hint) == (f"unix:{sock_path}", f"wirekit connect unix:{sock_path}")

    with socket.create_connection(("127.0.0.1", tcp_addr.port), timeout=5) as conn:
        conn.sendall(b"echo me\n")
        conn.shutdown(socket.SHUT_WR)
        assert conn.recv(100) == b"echo me\n"

    started = time.monotonic()
    proc.proc.send_signal(sig)
    assert proc.wait() == 0
    assert time.monotonic() - started < 3
    assert proc.stderr == "wirekit: shutting down\n"
    assert not sock_path.exists(), "serve left its unix socket file behind"
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", tcp_addr.port), timeout=5).close()


def test_serve_echo_upper_stamp_flags(served: Callable[..., Any]) -> None:
    _, rows = served(["echo", "--upper", "--stamp", "--listen", ":0"], rows=1)
    addr = parse_address(rows[0][1])
    with socket.create_connection((addr.host, addr.port), timeout=5) as conn:
        conn.sendall(b"hi\n")
        conn.shutdown(socket.SHUT_WR)
        data = b""
        while chunk := conn.recv(100):
            data += chunk
    assert re.fullmatch(rb"\[\w{3} \w{3} [ \d]\d \d\d:\d\d:\d\d \d{4}\] HI\n", data), data


def test_connect(wirekit: Callable[..., Any]) -> None:
    with socket.create_server(("127.0.0.1", 0)) as server:
        port = server.getsockname()[1]
        proc = wirekit(["connect", f"127.0.0.1:{port}"], stdin=subprocess.PIPE)
        server.settimeout(5)
        conn, _ = server.accept()
        with conn:
            conn.settimeout(5)
            conn.sendall(b"welcome\n")
            proc.expect(r"^welcome\n")
            proc.proc.stdin.write(b"thanks\n")
            proc.proc.stdin.close()  # EOF: connect half-closes
            data = b""
            while chunk := conn.recv(100):
                data += chunk
            assert data == b"thanks\n"
            conn.sendall(b"bye\n")
    assert proc.wait() == 0
    assert (proc.stdout, proc.stderr) == ("welcome\nbye\n", "")


def test_listen(wirekit: Callable[..., Any]) -> None:
    proc = wirekit(["listen", ":0"], stdin=subprocess.PIPE)
    line = proc.expect(r"^wirekit: listening on (tcp://127\.0\.0\.1:(\d+))$", err=True)
    port = int(line.group(2))
    with socket.create_connection(("127.0.0.1", port), timeout=5) as conn:
        conn.sendall(b"knock knock\n")
        proc.expect(r"^knock knock\n")
        proc.proc.stdin.write(b"who is there\n")
        proc.proc.stdin.close()
        conn.shutdown(socket.SHUT_WR)
        data = b""
        while chunk := conn.recv(100):
            data += chunk
    assert data == b"who is there\n"
    assert proc.wait() == 0
    assert proc.stdout == "knock knock\n"


def test_listen_verbose_names_the_peer(wirekit: Callable[..., Any]) -> None:
    proc = wirekit(["listen", "-v", ":0"])
    port = int(proc.expect(r"listening on tcp://127\.0\.0\.1:(\d+)", err=True).group(1))
    with socket.create_connection(("127.0.0.1", port), timeout=5, source_address=("127.0.0.3", 0)):
        proc.expect(r"^wirekit: connection from \('127\.0\.0\.3', \d+\)$", err=True)
    assert proc.wait() == 0


def test_python_dash_m_version() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "wirekit", "--version"], capture_output=True, text=True, timeout=10
    )
    assert (done.returncode, done.stdout) == (0, f"wirekit {wirekit.__version__}\n")


def test_python_dash_m_runs_a_command(tmp_path: Path) -> None:
    """``python -m wirekit`` is the whole command, exit codes included."""
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        port = holder.getsockname()[1]
        done = subprocess.run(
            [sys.executable, "-m", "wirekit", "connect", f"127.0.0.1:{port}"],
            capture_output=True,
            text=True,
            timeout=10,
        )
    assert done.returncode == 1
    assert done.stderr.startswith("wirekit: cannot connect to")


def test_serve_stops_cleanly_on_a_signal_right_after_the_table() -> None:
    """The table says Ctrl-C to stop: from the moment it shows, a signal must stop
    the server gracefully (not kill it). Several servers, each signalled as soon as
    its table appears."""
    procs = [
        subprocess.Popen(
            ["wirekit", "serve", "echo", "--listen", ":0"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        for _ in range(8)
    ]
    try:
        for i, proc in enumerate(procs):
            assert proc.stdout is not None
            fd, seen, deadline = proc.stdout.fileno(), b"", time.monotonic() + 10
            while b"\necho " not in seen:
                ready, _, _ = select.select([fd], [], [], max(0.0, deadline - time.monotonic()))
                assert ready, f"no table within 10 s: {seen!r}"
                chunk = os.read(fd, 4096)
                assert chunk, f"serve ended before its table: {seen!r}"
                seen += chunk
            proc.send_signal(signal.SIGTERM if i % 2 else signal.SIGINT)
        for proc in procs:
            _, err = proc.communicate(timeout=10)
            assert (proc.returncode, err) == (0, b"wirekit: shutting down\n")
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
