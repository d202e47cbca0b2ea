"""Loopback TCP connections get a congestion control that does not pace
(wirekit.pacing): over real sockets, read back with getsockopt and ``ss``.

The machines may or may not default to BBR, so the wiring is checked with an
explicit choice (``WIREKIT_LOOPBACK_CONGESTION=reno``, set on both ends), and
the default rule (only a BBR is replaced) on sockets given BBR by the test.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import wirekit
import wirekit.sync
from wirekit import pacing
from wirekit.addr import parse_address
from wirekit.services.classic import ClassicOptions, echo_server
from wirekit.services.netcat import NetcatOptions, open_stream

pytestmark = pytest.mark.skipif(
    not hasattr(socket, "TCP_CONGESTION"), reason="TCP_CONGESTION is Linux only"
)

SYSTEM = Path("/proc/sys/net/ipv4/tcp_congestion_control").read_text().strip()


def _can_use(name: str) -> bool:
    with socket.socket() as probe:
        try:
            probe.setsockopt(socket.IPPROTO_TCP, socket.TCP_CONGESTION, name.encode())
        except OSError:
            return False
    return True


needs_bbr = pytest.mark.skipif(not _can_use("bbr"), reason="no BBR on this kernel")


@pytest.fixture
def choose(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """``choose(value)`` sets WIREKIT_LOOPBACK_CONGESTION for this process (None:
    unset) and makes wirekit read it again."""

    def set_to(value: str | None) -> None:
        if value is None:
            monkeypatch.delenv(pacing.ENV, raising=False)
        else:
            monkeypatch.setenv(pacing.ENV, value)
        pacing._reset_config()

    yield set_to
    pacing._reset_config()


def _ss_congestion(port: int) -> str:
    """The congestion control of the established socket whose local port is ``port``."""
    out = subprocess.run(
        ["ss", "-tinH", "state", "established", f"( sport = :{port} )"],
        capture_output=True,
        text=True,
        timeout=10,
        check=True,
    ).stdout
    lines = out.splitlines()
    assert len(lines) >= 2, out
    return lines[1].split()[0].split(":")[0]


async def _echo(conn: Any) -> None:
    async for message in conn:
        await conn.send(message)


# -- the rule, on sockets ---------------------------------------------------------


@needs_bbr
def test_a_bbr_listener_on_loopback_is_switched_and_its_connections_inherit(
    choose: Any,
) -> None:
    choose(None)
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.setsockopt(socket.IPPROTO_TCP, socket.TCP_CONGESTION, b"bbr")
        listener.listen()
        assert pacing.unpace_listener(listener) is False  # nothing left per connection
        assert pacing.current(listener) in ("cubic", "reno")
        with socket.create_connection(listener.getsockname()) as client:
            accepted, _ = listener.accept()
            with accepted:
                assert pacing.current(accepted) == pacing.current(listener)
                client.setsockopt(socket.IPPROTO_TCP, socket.TCP_CONGESTION, b"bbr")
                assert pacing.unpace_peer(client) in ("cubic", "reno")
                assert pacing.current(client) in ("cubic", "reno")


@needs_bbr
def test_a_bbr_wildcard_listener_keeps_bbr_and_asks_for_each_connection(
    choose: Any,
) -> None:
    choose(None)
    with socket.socket() as listener:
        listener.bind(("0.0.0.0", 0))
        listener.setsockopt(socket.IPPROTO_TCP, socket.TCP_CONGESTION, b"bbr")
        listener.listen()
        # Remote peers keep BBR: the listener itself is left alone.
        assert pacing.unpace_listener(listener) is True
        assert pacing.current(listener) == "bbr"
        with socket.create_connection(("127.0.0.1", listener.getsockname()[1])) as _client:
            accepted, peer = listener.accept()
            with accepted:
                assert pacing.current(accepted) == "bbr"
                assert pacing.is_loopback(peer[0])
                assert pacing.unpace(accepted) in ("cubic", "reno")
                assert pacing.current(accepted) in ("cubic", "reno")


def test_an_algorithm_that_does_not_pace_is_left_alone(choose: Any) -> None:
    choose(None)
    with socket.socket() as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_CONGESTION, b"reno")
        assert pacing.unpace(sock) is None
        assert pacing.current(sock) == "reno"


def test_a_listener_on_another_address_is_left_alone(choose: Any) -> None:
    choose("reno")
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        # A fake sockname: the rule looks at the address only.
        fake = _Named(listener, ("192.0.2.1", 1))
        assert pacing.unpace_listener(fake) is False
        assert pacing.current(listener) == SYSTEM


class _Named:
    def __init__(self, sock: socket.socket, name: tuple[str, int]) -> None:
        self.sock, self.name = sock, name

    def getsockname(self) -> tuple[str, int]:
        return self.name

    def getsockopt(self, *args: Any) -> Any:
        return self.sock.getsockopt(*args)

    def setsockopt(self, *args: Any) -> Any:
        return self.sock.setsockopt(*args)


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.255.0.9", True),
        ("::1", True),
        ("::ffff:127.0.0.1", True),
        ("128.0.0.1", False),
        ("10.127.0.1", False),
        ("::2", False),
        ("::ffff:10.0.0.1", False),
        ("0.0.0.0", False),
        (None, False),
    ],
)
def test_loopback_addresses(host: Any, loopback: bool) -> None:
    assert pacing.is_loopback(host) is loopback


# -- every kind of wirekit connection ----------------------------------------------


@pytest.mark.parametrize("host", ["127.0.0.1", "0.0.0.0"])
def test_a_framed_connection_over_loopback_gets_the_choice_at_both_ends(
    choose: Any, arun: Any, host: str
) -> None:
    choose("reno")

    async def main() -> tuple[str | None, str | None, str | None, bytes]:
        async with wirekit.serve(_echo, f"{host}:0") as server:
            listener = pacing.current(server._server.sockets[0])
            conn = await wirekit.connect(f"127.0.0.1:{server.address.port}")
            try:
                await conn.send(b"ping")
                reply = await conn.recv()
                (accepted,) = server._connections
                return (
                    listener,
                    pacing.current(accepted._transport.get_extra_info("socket")),
                    pacing.current(conn._transport.get_extra_info("socket")),
                    reply,
                )
            finally:
                await conn.close()

    listener, accepted, client, reply = arun(main())
    assert reply == b"ping"
    assert (accepted, client) == ("reno", "reno")
    # A wildcard listener keeps the system's choice for peers elsewhere.
    assert listener == ("reno" if host == "127.0.0.1" else SYSTEM)


@pytest.mark.parametrize("host", ["127.0.0.1", "[::1]"])
def test_a_tls_connection_over_loopback_gets_the_choice_at_both_ends(
    choose: Any, arun: Any, tls: Any, host: str
) -> None:
    choose("reno")

    async def main() -> tuple[str | None, str | None]:
        server_ctx = tls.server_context()
        async with wirekit.serve(_echo, f"{host}:0", ssl=server_ctx) as server:
            port = server.address.port
            conn = await wirekit.connect(f"tls://{host}:{port}", ssl=tls.client_context())
            try:
                await conn.send(b"ping")
                assert await conn.recv() == b"ping"
                (accepted,) = server._connections
                return (
                    pacing.current(accepted.get_extra_info("socket")),
                    pacing.current(conn.get_extra_info("socket")),
                )
            finally:
                await conn.close()

    assert arun(main()) == ("reno", "reno")


def test_the_blocking_client_gets_the_choice(choose: Any, arun: Any) -> None:
    choose("reno")

    async def main() -> str | None:
        async with wirekit.serve(_echo, "127.0.0.1:0") as server:

            def blocking() -> str | None:
                with wirekit.sync.connect(f"127.0.0.1:{server.address.port}") as conn:
                    conn.send(b"ping")
                    assert conn.recv() == b"ping"
                    return pacing.current(conn._sock)

            return await asyncio.to_thread(blocking)

    assert arun(main()) == "reno"


def test_system_keeps_the_systems_choice(choose: Any, arun: Any) -> None:
    choose("system")

    async def main() -> tuple[str | None, str | None]:
        async with wirekit.serve(_echo, "127.0.0.1:0") as server:
            conn = await wirekit.connect(f"127.0.0.1:{server.address.port}")
            try:
                await conn.send(b"ping")
                await conn.recv()
                (accepted,) = server._connections
                return (
                    pacing.current(accepted._transport.get_extra_info("socket")),
                    pacing.current(conn._transport.get_extra_info("socket")),
                )
            finally:
                await conn.close()

    assert arun(main()) == (SYSTEM, SYSTEM)


def test_an_unknown_choice_is_reported_once_and_changes_nothing(
    choose: Any, arun: Any, caplog: pytest.LogCaptureFixture
) -> None:
    choose("no-such-algorithm")

    async def main() -> list[str | None]:
        async with wirekit.serve(_echo, "127.0.0.1:0") as server:
            seen = []
            for _ in range(2):
                conn = await wirekit.connect(f"127.0.0.1:{server.address.port}")
                await conn.send(b"ping")
                assert await conn.recv() == b"ping"
                seen.append(pacing.current(conn._transport.get_extra_info("socket")))
                await conn.close()
            return seen

    with caplog.at_level(logging.WARNING, logger="wirekit"):
        assert arun(main()) == [SYSTEM, SYSTEM]
    warnings = [r.getMessage() for r in caplog.records if pacing.ENV in r.getMessage()]
    assert warnings == [
        f"{pacing.ENV}=no-such-algorithm: this system cannot give TCP connections "
        "that congestion control; they keep the system's"
    ]


def test_a_raw_service_connection_gets_the_choice(choose: Any, arun: Any) -> None:
    choose("reno")

    async def main() -> str:
        server = echo_server(ClassicOptions())
        addr = await server.listen(parse_address("127.0.0.1:0"))
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", addr.port)
            writer.write(b"hello\n")
            assert await reader.readline() == b"hello\n"
            (stream,) = server.streams
            name = pacing.current(stream.transport.get_extra_info("socket"))
            writer.close()
            return str(name)
        finally:
            await server.close()

    assert arun(main()) == "reno"


def test_netcat_connect_gets_the_choice(choose: Any) -> None:
    choose("reno")
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        addr = parse_address(f"127.0.0.1:{listener.getsockname()[1]}")
        sock = open_stream(addr, NetcatOptions(timeout=5))
        assert isinstance(sock, socket.socket)
        with sock:
            assert pacing.current(sock) == "reno"


def test_netcat_listen_gets_the_choice(tmp_path: Path) -> None:
    env = {**os.environ, pacing.ENV: "reno"}
    listen = subprocess.Popen(
        [sys.executable, "-m", "wirekit", "listen", "127.0.0.1:0"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
    )
    try:
        assert listen.stderr is not None
        line = listen.stderr.readline().decode()
        port = int(line.rsplit(":", 1)[1].split()[0])
        with socket.create_connection(("127.0.0.1", port), timeout=5) as peer:
            peer.sendall(b"hi\n")
            assert listen.stdout is not None
            assert listen.stdout.readline() == b"hi\n"  # connected and accepted
            assert _ss_congestion(port) == "reno"
    finally:
        listen.kill()
        listen.wait(10)
