"""daytime (RFC 867) and time (RFC 868) over TCP, UDP and Unix sockets, read with
nc, socat and rdate, and decoded by hand."""

from __future__ import annotations

import re
import socket
import struct
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from wirekit.addr import Address
from wirekit.services.classic import RFC868_OFFSET, daytime_server, time_server

#: What RFC 867 suggests and the server writes: ``Weekday, Month Day, Year HH:MM:SS-Zone``.
DAYTIME = re.compile(rb"(\w+, \w+ \d\d, \d{4} \d\d:\d\d:\d\d)-(\S*)\r\n")


def _servers(loop_thread: Any, make: Callable[[], Any], tmp_path: Path) -> dict[str, Address]:
    _, bound = loop_thread.serve(make, ":0", "udp://:0", f"unix:{tmp_path / 'svc.sock'}")
    return {addr.scheme: addr for addr in bound}


@pytest.fixture
def daytime(loop_thread: Any, tmp_path: Path) -> dict[str, Address]:
    return _servers(loop_thread, daytime_server, tmp_path)


@pytest.fixture
def timesvc(loop_thread: Any, tmp_path: Path) -> dict[str, Address]:
    return _servers(loop_thread, time_server, tmp_path)


def _assert_daytime(reply: bytes) -> None:
    match = DAYTIME.fullmatch(reply)
    assert match, reply
    when = time.mktime(time.strptime(match.group(1).decode(), "%A, %B %d, %Y %H:%M:%S"))
    assert abs(when - time.time()) < 5
    assert match.group(2).decode() == time.strftime("%Z")


def test_daytime_tcp_with_nc(daytime: dict[str, Address], tool: Callable[[str], str]) -> None:
    tool("nc")
    addr = daytime["tcp"]
    done = subprocess.run(
        ["nc", "-N", addr.host, str(addr.port)],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        timeout=10,
    )
    assert done.returncode == 0, done.stderr
    _assert_daytime(done.stdout)


def test_daytime_unix_with_nc(daytime: dict[str, Address], tool: Callable[[str], str]) -> None:
    tool("nc")
    done = subprocess.run(
        ["nc", "-N", "-U", daytime["unix"].path],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        timeout=10,
    )
    assert done.returncode == 0, done.stderr
    _assert_daytime(done.stdout)


@pytest.mark.parametrize("scheme", ["tcp", "udp"])
def test_daytime_with_socat(
    scheme: str, daytime: dict[str, Address], tool: Callable[[str], str]
) -> None:
    tool("socat")
    addr = daytime[scheme]
    # Over udp the request is any datagram; socat sends the newline as one.
    done = subprocess.run(
        ["socat", "-t", "1", "-", f"{scheme.upper()}:{addr.host}:{addr.port}"],
        input=b"\n",
        capture_output=True,
        timeout=10,
    )
    assert done.returncode == 0, done.stderr
    _assert_daytime(done.stdout)


def _rdate_time(output: str) -> float:
    """rdate -p prints the date as ``date`` does: ``Sun Nov 22 02:24:36 UTC 2026``."""
    match = re.search(r"(\w{3}) (\w{3}) +(\d+) (\d\d:\d\d:\d\d) \S+ (\d{4})", output)
    assert match, output
    weekday, month, day, clock, year = match.groups()
    text = f"{weekday} {month} {int(day)} {clock} {year}"
    return time.mktime(time.strptime(text, "%a %b %d %H:%M:%S %Y"))


@pytest.mark.parametrize("scheme", ["tcp", "udp"])
def test_time_with_rdate(
    scheme: str, timesvc: dict[str, Address], tool: Callable[[str], str]
) -> None:
    tool("rdate")
    addr = timesvc[scheme]
    udp = ["-u"] if scheme == "udp" else []
    done = subprocess.run(
        ["rdate", "-p", *udp, "-o", str(addr.port), addr.host],
        capture_output=True,
        text=True,
        timeout=10,
    )
    assert done.returncode == 0, done.stderr
    assert abs(_rdate_time(done.stdout) - time.time()) < 5


def _decode(reply: bytes) -> float:
    assert len(reply) == 4, reply
    (seconds,) = struct.unpack(">I", reply)
    return seconds - RFC868_OFFSET


def test_time_tcp_decoded_by_hand(timesvc: dict[str, Address], reader: Any) -> None:
    addr = timesvc["tcp"]
    with socket.create_connection((addr.host, addr.port), timeout=5) as sock:
        reply = reader.all(sock)  # four bytes, then the server closes
    assert abs(_decode(reply) - time.time()) < 5


def test_time_unix_decoded_by_hand(timesvc: dict[str, Address], reader: Any) -> None:
    with socket.socket(socket.AF_UNIX) as sock:
        sock.settimeout(5)
        sock.connect(timesvc["unix"].path)
        reply = reader.all(sock)
    assert abs(_decode(reply) - time.time()) < 5


def test_time_udp_decoded_by_hand(timesvc: dict[str, Address]) -> None:
    addr = timesvc["udp"]
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(5)
        sock.sendto(b"", (addr.host, addr.port))  # RFC 868: an empty datagram asks
        reply = sock.recv(65536)
    seconds_since_1900 = struct.unpack(">I", reply)[0]
    assert abs(seconds_since_1900 - (time.time() + 2_208_988_800)) < 5
