"""Busy polling in the blocking client (wirekit.busypoll): the window's
bounds, traffic over plain TCP and TLS while polling, and timeouts that
still hold while a poll window is open."""

from __future__ import annotations

import math
import os
import time

import pytest

import wirekit
from wirekit.aio import Connection
from wirekit.busypoll import DEFAULT_BUSY_POLL, MAX_BUSY_POLL, busy_poll_window


async def echo(conn: Connection) -> None:
    async for item in conn:
        await conn.send(item)


def test_window_defaults_and_limits(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "cpu_count", lambda: 2)
    assert busy_poll_window(None) == DEFAULT_BUSY_POLL
    assert busy_poll_window(0) == 0.0
    assert busy_poll_window(MAX_BUSY_POLL) == MAX_BUSY_POLL  # at the limit
    for bad in (MAX_BUSY_POLL + 0.001, -0.001, math.nan):  # past it, below 0, not a number
        with pytest.raises(ValueError, match="between 0 and 1 seconds"):
            busy_poll_window(bad)
    monkeypatch.setattr(os, "cpu_count", lambda: 1)  # nothing to gain, the CPU to lose
    assert busy_poll_window(None) == 0.0
    assert busy_poll_window(0.5) == 0.0


@pytest.mark.parametrize("scheme", ["tcp", "tls"])
def test_traffic_while_polling_arrives_intact(start_server, tls, scheme: str) -> None:
    ssl = tls.server_context() if scheme == "tls" else None
    server = start_server(echo, f"{scheme}://127.0.0.1:0", ssl=ssl)
    addr = f"{scheme}://127.0.0.1:{server.address.port}"
    client_ssl = tls.client_context() if scheme == "tls" else None
    with wirekit.sync.connect(addr, timeout=5, ssl=client_ssl, server_hostname="localhost") as c:
        assert c.set_busy_poll(1.0) == 1.0
        payloads = [os.urandom(n) for n in (0, 1, 100, 16384, 65536, 300_000) * 20]
        for data in payloads:  # every reply lands while the client polls
            c.send(data)
            assert c.recv() == data
        c.send_many(payloads[:30])
        assert [c.recv() for _ in range(30)] == payloads[:30]
        assert c.set_busy_poll(0) == 0.0  # and off again
        c.send(b"after")
        assert c.recv() == b"after"


def test_a_timeout_holds_inside_the_poll_window(start_server) -> None:
    server = start_server(echo)
    with wirekit.sync.connect(str(server.address), timeout=5) as c:
        c.set_busy_poll(1.0)
        c.send(b"x")
        assert c.recv() == b"x"  # the window is open for a second from here
        start = time.monotonic()
        with pytest.raises(TimeoutError, match=r"within 0\.2 s"):
            c.recv(timeout=0.2)
        assert time.monotonic() - start < 0.7
        c.send(b"still here")
        assert c.recv() == b"still here"
