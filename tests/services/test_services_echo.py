"""Echo (RFC 862) over TCP, UDP and Unix sockets, driven by nc, socat and telnet,
and the classic servers' options: ``upper`` and ``stamp``."""

from __future__ import annotations

import re
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from wirekit.addr import Address
from wirekit.errors import ListenError
from wirekit.limits import Limits
from wirekit.services.classic import ClassicOptions, LineStamper, echo_server

LINES = b"hello\nworld, with spaces\n\nlast line\n"
#: ``[<ctime>] `` as time.ctime() writes it.
STAMP = rb"\[(\w{3} \w{3} [ \d]\d \d\d:\d\d:\d\d \d{4})\] "


def _start(
    loop_thread: Any, tmp_path: Path, options: ClassicOptions, limits: Limits | None = None
) -> dict[str, Address]:
    kwargs = {} if limits is None else {"limits": limits}
    _, bound = loop_thread.serve(
        lambda: echo_server(options, **kwargs), ":0", "udp://:0", f"unix:{tmp_path / 'echo.sock'}"
    )
    return {addr.scheme: addr for addr in bound}


@pytest.fixture
def echo(loop_thread: Any, tmp_path: Path) -> dict[str, Address]:
    """A plain echo server on tcp, udp and unix; the bound address by scheme."""
    return _start(loop_thread, tmp_path, ClassicOptions())


def _peer_command(tool: str, addr: Address) -> list[str]:
    if tool == "nc":
        if addr.is_unix:
            return ["nc", "-N", "-U", addr.path]
        return ["nc", "-N", addr.host, str(addr.port)]
    target = {
        "tcp": f"TCP:{addr.host}:{addr.port}",
        "udp": f"UDP:{addr.host}:{addr.port}",
        "unix": f"UNIX-CONNECT:{addr.path}",
    }[addr.scheme]
    # socat waits -t seconds after stdin EOF for more; a udp peer never sends EOF.
    return ["socat", "-t", "1" if addr.scheme == "udp" else "5", "-", target]


@pytest.mark.parametrize(
    ("peer", "scheme"),
    [("nc", "tcp"), ("nc", "unix"), ("socat", "tcp"), ("socat", "udp"), ("socat", "unix")],
)
def test_echo_with_classic_peers(
    peer: str, scheme: str, echo: dict[str, Address], tool: Callable[[str], str]
) -> None:
    tool(peer)
    # For udp, socat sends each read of its stdin as one datagram: one line.
    data = b"one datagram\n" if scheme == "udp" else LINES
    done = subprocess.run(
        _peer_command(peer, echo[scheme]), input=data, capture_output=True, timeout=10
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout == data


def test_echo_udp_with_nc(
    echo: dict[str, Address], tool: Callable[[str], str], spawn: Callable[..., Any]
) -> None:
    tool("nc")
    addr = echo["udp"]
    peer = spawn(["nc", "-u", addr.host, str(addr.port)])
    for line in (b"first\n", b"second\n"):
        peer.send(line)
        peer.expect(re.escape(line))
    assert bytes(peer.out) == b"first\nsecond\n"


def test_echo_large_stream_with_socat(echo: dict[str, Address], tool: Callable[[str], str]) -> None:
    """Four MiB out and back while socat writes and reads at once."""
    tool("socat")
    data = bytes(range(256)) * (4 * 4096)
    addr = echo["tcp"]
    done = subprocess.run(
        ["socat", "-t", "2", "-", f"TCP:{addr.host}:{addr.port}"],
        input=data,
        capture_output=True,
        timeout=20,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout == data


def test_telnet_session_gets_echo(
    echo: dict[str, Address], tool: Callable[[str], str], spawn: Callable[..., Any]
) -> None:
    tool("telnet")
    addr = echo["tcp"]
    session = spawn(["telnet", addr.host, str(addr.port)])
    session.expect(rb"Escape character is")
    session.send(b"hello from telnet\n")
    session.expect(rb"\nhello from telnet\r?\n")
    session.send(b"again\n")
    session.expect(rb"\nagain\r?\n")
    session.close_stdin()
    assert session.wait() == 0


def test_upper_over_tcp_udp_unix(loop_thread: Any, tmp_path: Path, reader: Any) -> None:
    addrs = _start(loop_thread, tmp_path, ClassicOptions(upper=True))
    with socket.create_connection((addrs["tcp"].host, addrs["tcp"].port), timeout=5) as tcp:
        tcp.sendall(b"Mixed Case 123 \xc3\xa9\n")
        tcp.shutdown(socket.SHUT_WR)
        assert reader.all(tcp) == b"MIXED CASE 123 \xc3\xa9\n"  # bytes.upper: ASCII only
    with socket.socket(socket.AF_UNIX) as unix:
        unix.settimeout(5)
        unix.connect(addrs["unix"].path)
        unix.sendall(b"over unix\n")
        unix.shutdown(socket.SHUT_WR)
        assert reader.all(unix) == b"OVER UNIX\n"
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
        udp.settimeout(5)
        udp.sendto(b"datagram", (addrs["udp"].host, addrs["udp"].port))
        assert udp.recv(65536) == b"DATAGRAM"


def test_upper_with_telnet(
    loop_thread: Any, tmp_path: Path, tool: Callable[[str], str], spawn: Callable[..., Any]
) -> None:
    tool("telnet")
    addr = _start(loop_thread, tmp_path, ClassicOptions(upper=True))["tcp"]
    session = spawn(["telnet", addr.host, str(addr.port)])
    session.send(b"quiet please\n")
    session.expect(rb"QUIET PLEASE\r?\n")
    session.close_stdin()
    assert session.wait() == 0


def _stamps(data: bytes) -> list[float]:
    """The time of each ``[<ctime>] `` stamp in ``data``, as seconds since the epoch."""
    return [
        time.mktime(time.strptime(text.decode(), "%a %b %d %H:%M:%S %Y"))
        for text in re.findall(STAMP, data)
    ]


def _assert_recent(stamps: list[float]) -> None:
    now = time.time()
    assert stamps
    for stamp in stamps:
        assert now - 5 <= stamp <= now + 1


def test_stamp_prefixes_each_line(loop_thread: Any, tmp_path: Path, reader: Any) -> None:
    addrs = _start(loop_thread, tmp_path, ClassicOptions(stamp=True))
    with socket.create_connection((addrs["tcp"].host, addrs["tcp"].port), timeout=5) as sock:
        sock.sendall(b"one\ntwo\n\nthree\n")
        sock.shutdown(socket.SHUT_WR)
        data = reader.all(sock)
    lines = data.splitlines(keepends=True)
    assert len(lines) == 4
    for line, text in zip(lines, [b"one\n", b"two\n", b"\n", b"three\n"], strict=True):
        assert re.fullmatch(STAMP + re.escape(text), line), line
    _assert_recent(_stamps(data))


def test_stamp_client_that_sends_hi_and_waits(
    loop_thread: Any, tmp_path: Path, reader: Any
) -> None:
    """The classic client sends ``hi`` without a newline and waits for the answer."""
    addrs = _start(loop_thread, tmp_path, ClassicOptions(stamp=True))
    for scheme in ("tcp", "unix"):
        addr = addrs[scheme]
        family = socket.AF_UNIX if addr.is_unix else socket.AF_INET
        with socket.socket(family) as sock:
            sock.settimeout(5)
            sock.connect(addr.path if addr.is_unix else (addr.host, addr.port))
            sock.sendall(b"hi")
            answer = reader.until(sock, lambda data: data.endswith(b"hi"))
            assert re.fullmatch(STAMP + rb"hi", answer), answer
            _assert_recent(_stamps(answer))
            # The connection stays usable: the next line is stamped as well.
            sock.sendall(b"there\n")
            more = reader.until(sock, lambda data: data.endswith(b"\n"))
            assert re.fullmatch(STAMP + rb"there\n", more), more


def test_stamp_and_upper_over_udp(loop_thread: Any, tmp_path: Path) -> None:
    addrs = _start(loop_thread, tmp_path, ClassicOptions(upper=True, stamp=True))
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
        udp.settimeout(5)
        udp.sendto(b"hi", (addrs["udp"].host, addrs["udp"].port))
        answer = udp.recv(65536)
    assert re.fullmatch(STAMP + rb"HI", answer), answer
    _assert_recent(_stamps(answer))


def test_stamp_flushes_a_partial_line_at_eof(loop_thread: Any, tmp_path: Path, reader: Any) -> None:
    addrs = _start(loop_thread, tmp_path, ClassicOptions(stamp=True))
    with socket.create_connection((addrs["tcp"].host, addrs["tcp"].port), timeout=5) as sock:
        sock.sendall(b"done\nno newline")
        sock.shutdown(socket.SHUT_WR)
        data = reader.all(sock)
    assert re.fullmatch(STAMP + rb"done\n" + STAMP + rb"no newline", data), data


# -- Limits.max_line_length with --stamp ----------------------------------------------

MAX_LINE = 16


@pytest.fixture
def stamped(loop_thread: Any, tmp_path: Path) -> Iterator[socket.socket]:
    addr = _start(
        loop_thread,
        tmp_path,
        ClassicOptions(stamp=True),
        Limits(max_line_length=MAX_LINE),
    )["tcp"]
    sock = socket.create_connection((addr.host, addr.port), timeout=5)
    yield sock
    sock.close()


def _pieces(data: bytes) -> list[bytes]:
    """Split stamped output back into the pieces that were stamped."""
    parts = re.split(STAMP, data)
    assert parts[0] == b"", data
    return parts[2::2]  # re.split keeps the captured time: drop it


def test_line_at_the_limit_is_one_piece(stamped: socket.socket, reader: Any) -> None:
    line = b"x" * (MAX_LINE - 1) + b"\n"  # MAX_LINE bytes with its newline
    stamped.sendall(line)
    stamped.shutdown(socket.SHUT_WR)
    assert _pieces(reader.all(stamped)) == [line]


def test_partial_at_the_limit_is_sent_without_waiting_for_more(
    stamped: socket.socket, reader: Any
) -> None:
    stamped.sendall(b"y" * MAX_LINE)
    data = reader.until(stamped, lambda data: data.endswith(b"y" * MAX_LINE))
    assert _pieces(data) == [b"y" * MAX_LINE]
    # One below the limit is held until the pause, then sent whole.
    stamped.sendall(b"z" * (MAX_LINE - 1))
    data = reader.until(stamped, lambda data: data.endswith(b"z" * (MAX_LINE - 1)))
    assert _pieces(data) == [b"z" * (MAX_LINE - 1)]


def test_partial_past_the_limit_is_cut_at_the_limit(stamped: socket.socket, reader: Any) -> None:
    stamped.sendall(b"a" * (2 * MAX_LINE + 5))
    data = reader.until(stamped, lambda data: data.endswith(b"a" * 5) and len(_pieces(data)) == 3)
    assert _pieces(data) == [b"a" * MAX_LINE, b"a" * MAX_LINE, b"a" * 5]


def test_line_past_the_limit_is_cut_at_the_limit(stamped: socket.socket, reader: Any) -> None:
    stamped.sendall(b"b" * (MAX_LINE + 4) + b"\n" + b"short\n")
    stamped.shutdown(socket.SHUT_WR)
    assert _pieces(reader.all(stamped)) == [b"b" * MAX_LINE, b"bbbb\n", b"short\n"]


@pytest.mark.parametrize("cuts", [[], [5], [16], [17], [3, 20], list(range(1, 45))])
def test_stamped_pieces_do_not_depend_on_how_tcp_splits_the_stream(cuts: list[int]) -> None:
    """The stamper sees the same pieces whether a long line comes in one read or many."""
    stream = b"c" * 20 + b"\n" + b"d" * 16 + b"\n" + b"tail"
    stamper = LineStamper(MAX_LINE)
    out = b""
    for start, end in zip([0, *cuts], [*cuts, len(stream)], strict=True):
        out += stamper.feed(stream[start:end])
    out += stamper.flush()
    assert _pieces(out) == [b"c" * 16, b"cccc\n", b"d" * 16, b"\n", b"tail"]


def test_echo_over_ipv6_loopback(loop_thread: Any, tool: Callable[[str], str], reader: Any) -> None:
    if not socket.has_ipv6:
        pytest.skip("no IPv6 in this Python")
    try:
        _, (tcp, udp) = loop_thread.serve(
            lambda: echo_server(ClassicOptions(upper=True)), "[::1]:0", "udp://[::1]:0"
        )
    except ListenError as exc:  # a machine without ::1
        pytest.skip(f"cannot listen on ::1: {exc}")
    assert str(tcp).startswith("tcp://[::1]:") and tcp.port
    with socket.create_connection(("::1", tcp.port), timeout=5) as sock:
        sock.sendall(b"six\n")
        sock.shutdown(socket.SHUT_WR)
        assert reader.all(sock) == b"SIX\n"
    with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as sock:
        sock.settimeout(5)
        sock.sendto(b"six", ("::1", udp.port))
        assert sock.recv(100) == b"SIX"
    tool("nc")
    done = subprocess.run(
        ["nc", "-N", "::1", str(tcp.port)], input=b"nc six\n", capture_output=True, timeout=10
    )
    assert (done.returncode, done.stdout) == (0, b"NC SIX\n")
