"""UDP services and Limits.max_datagram_size: a datagram of exactly the limit is
answered; one byte more gets a one-line error reply, shorter than the request."""

from __future__ import annotations

import re
import socket
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from wirekit.addr import Address
from wirekit.limits import DEFAULT_LIMITS, Limits
from wirekit.services.classic import ClassicOptions, daytime_server, echo_server


@pytest.fixture
def udp() -> Iterator[socket.socket]:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(5)
        yield sock


def _udp_server(loop_thread: Any, make: Callable[[], Any]) -> tuple[str, int]:
    _, (addr,) = loop_thread.serve(make, "udp://:0")
    assert isinstance(addr, Address) and addr.port
    return addr.host, addr.port


def _error(size: int, limit: int) -> bytes:
    return f"wirekit: datagram of {size} bytes exceeds limit of {limit} bytes\n".encode()


@pytest.mark.parametrize("limit", [512, DEFAULT_LIMITS.max_datagram_size])
def test_echo_datagram_at_and_past_the_limit(
    limit: int, loop_thread: Any, udp: socket.socket
) -> None:
    where = _udp_server(
        loop_thread,
        lambda: echo_server(ClassicOptions(), limits=Limits(max_datagram_size=limit)),
    )
    at_limit = bytes(i % 251 for i in range(limit))
    udp.sendto(at_limit, where)
    assert udp.recvfrom(65536) == (at_limit, where)

    past = at_limit + b"!"
    udp.sendto(past, where)
    reply = udp.recv(65536)
    assert reply == _error(limit + 1, limit)
    assert reply.count(b"\n") == 1 and reply.endswith(b"\n")
    assert len(reply) < len(past)  # never an amplifier

    # The server goes on answering after a refusal.
    udp.sendto(b"small", where)
    assert udp.recv(65536) == b"small"


def test_echo_far_past_the_limit(loop_thread: Any, udp: socket.socket) -> None:
    where = _udp_server(loop_thread, lambda: echo_server(ClassicOptions()))
    udp.sendto(b"x" * 60000, where)
    assert udp.recv(65536) == _error(60000, DEFAULT_LIMITS.max_datagram_size)


def test_daytime_refuses_an_oversize_request_too(loop_thread: Any, udp: socket.socket) -> None:
    where = _udp_server(loop_thread, lambda: daytime_server(limits=Limits(max_datagram_size=64)))
    udp.sendto(b"q" * 64, where)
    assert udp.recv(65536).endswith(b"\r\n")
    udp.sendto(b"q" * 65, where)
    assert udp.recv(65536) == _error(65, 64)


def test_each_udp_peer_gets_its_own_answer(loop_thread: Any) -> None:
    where = _udp_server(loop_thread, lambda: echo_server(ClassicOptions(upper=True)))
    peers = []
    try:
        for host in ("127.0.0.1", "127.0.0.2", "127.0.0.3"):
            sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            sock.settimeout(5)
            sock.bind((host, 0))
            peers.append(sock)
        for i, sock in enumerate(peers):
            sock.sendto(b"peer %d" % i, where)
        for i, sock in enumerate(peers):
            assert sock.recvfrom(65536) == (b"PEER %d" % i, where)
    finally:
        for sock in peers:
            sock.close()


def test_an_empty_datagram_is_echoed_empty(loop_thread: Any, udp: socket.socket) -> None:
    # RFC 862; asyncio's and uvloop's sendto() would drop an empty reply.
    where = _udp_server(loop_thread, lambda: echo_server(ClassicOptions()))
    udp.sendto(b"", where)
    assert udp.recvfrom(100) == (b"", where)
    udp.sendto(b"after", where)
    assert udp.recv(100) == b"after"


def test_a_tiny_limit_never_replies_longer_than_the_request(
    loop_thread: Any, udp: socket.socket
) -> None:
    where = _udp_server(
        loop_thread, lambda: echo_server(ClassicOptions(), limits=Limits(max_datagram_size=4))
    )
    udp.sendto(b"12345", where)  # past the limit, and shorter than the error line
    udp.settimeout(0.3)
    with pytest.raises(TimeoutError):
        udp.recv(100)
    udp.sendto(b"1234", where)
    assert udp.recv(100) == b"1234"


#: ``[<ctime>] `` as time.ctime() writes it.
STAMP = rb"\[\w{3} \w{3} [ \d]\d \d\d:\d\d:\d\d \d{4}\] "


@pytest.mark.parametrize(
    ("datagram", "lines"),
    [
        (b"one\ntwo\n\nthree\n", [b"one\n", b"two\n", b"\n", b"three\n"]),
        (b"first\nno newline", [b"first\n", b"no newline"]),
        (b"hi", [b"hi"]),
    ],
)
def test_stamp_prefixes_every_line_of_a_datagram(
    datagram: bytes, lines: list[bytes], loop_thread: Any, udp: socket.socket
) -> None:
    """As over TCP: each line stamped, an unterminated last one too."""
    where = _udp_server(loop_thread, lambda: echo_server(ClassicOptions(upper=True, stamp=True)))
    udp.sendto(datagram, where)
    reply = udp.recv(65536)
    expected = b"".join(STAMP + re.escape(line.upper()) for line in lines)
    assert re.fullmatch(expected, reply), reply


def test_stamped_reply_past_the_limit_is_refused(loop_thread: Any, udp: socket.socket) -> None:
    """A stamp per line makes a datagram of short lines many times longer: past the
    datagram limit the reply is the one-line error (never longer than the request)."""
    limit = 256
    where = _udp_server(
        loop_thread,
        lambda: echo_server(ClassicOptions(stamp=True), limits=Limits(max_datagram_size=limit)),
    )
    at_limit = b"x" * (limit - 1) + b"\n"  # one line: one stamp, sent whole
    udp.sendto(at_limit, where)
    assert re.fullmatch(STAMP + re.escape(at_limit), udp.recv(65536))

    many = b"a\n" * 100  # 200 bytes; stamped, 100 stamps
    udp.sendto(many, where)
    reply = udp.recv(65536)
    assert re.fullmatch(rb"wirekit: reply of \d+ bytes exceeds limit of 256 bytes\n", reply)
    assert len(reply) <= len(many)
    udp.sendto(b"\n" * 20, where)  # the error would be longer than this: no reply at all
    udp.settimeout(0.3)
    with pytest.raises(TimeoutError):
        udp.recv(100)
