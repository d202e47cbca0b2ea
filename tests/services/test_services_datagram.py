"""UDP services and Limits.max_datagram_size: a datagram of exactly the limit is
answered; one byte more gets a one-line error reply, shorter than the request."""

from __future__ import annotations

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
