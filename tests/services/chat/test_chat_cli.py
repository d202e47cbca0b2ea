"""``wirekit serve chat``: options, the endpoint table, TLS, shutdown (add_arguments + run)."""

from __future__ import annotations

import argparse
import re
import signal
import socket
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from wirekit.cli import serve_chat
from wirekit.cli.arguments import UsageError
from wirekit.errors import AddressError

#: Runs the command as ``wirekit serve chat`` will: a parser made by add_arguments, then run.
RUNNER = (
    "import argparse, sys\n"
    "from wirekit.cli import serve_chat\n"
    "parser = argparse.ArgumentParser(prog='wirekit serve chat')\n"
    "serve_chat.add_arguments(parser)\n"
    "sys.exit(serve_chat.run(parser.parse_args(sys.argv[1:])))\n"
)


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    serve_chat.add_arguments(parser)
    return parser.parse_args(list(argv))


def test_defaults() -> None:
    args = parse()
    assert (args.listen, args.history, args.max_clients, args.flood_rate) == ([], 20, 10_000, 10.0)
    assert (args.sendq, args.ping_interval, args.ping_timeout) == (262_144, 120.0, 60.0)
    assert args.run is serve_chat.run


@pytest.mark.parametrize(
    "argv",
    [["--max-clients", "0"], ["--history", "-1"], ["--flood-rate", "x"], ["--ping-interval", "0"]],
)
def test_bad_numbers_are_usage_errors(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        parse(*argv)
    assert exc.value.code == 2


@pytest.mark.parametrize(
    ("argv", "error", "message"),
    [
        (["--listen", "udp://127.0.0.1:0"], UsageError, "chat runs over tcp, tls or unix"),
        (["--motd", "/nonexistent/motd"], UsageError, "cannot read --motd"),
        (["--server-name", "bad name"], UsageError, "server name"),
        (["--tls-cert", "x.pem"], UsageError, "go together"),
        (["--listen", "nohost:port"], AddressError, "port"),
    ],
)
def test_bad_options_fail_before_starting(argv: list[str], error: type, message: str) -> None:
    with pytest.raises(error, match=message):
        serve_chat.run(parse(*argv))


def _start(spawn: Callable[..., Any], *argv: str) -> tuple[Any, list[str]]:
    session = spawn([sys.executable, "-c", RUNNER, *argv])
    session.expect(rb"SERVICE +ENDPOINT +TRY\n(.*\n)+")
    table = bytes(session.out).decode()
    return session, re.findall(r"^chat +(\S+)", table, re.M)


def _lines(sock: socket.socket, until: bytes) -> bytes:
    data = b""
    while until not in data:
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    return data


def test_serves_prints_table_and_shuts_down_gracefully(
    spawn: Callable[..., Any], tmp_path: Path
) -> None:
    motd = tmp_path / "motd.txt"
    motd.write_bytes(b"Welcome \x1b[31mfriends\nsecond line\n")
    session, endpoints = _start(
        spawn, "--listen", "127.0.0.1:0", "--server-name", "chat.test", "--motd", str(motd)
    )
    assert len(endpoints) == 1 and endpoints[0].startswith("tcp://127.0.0.1:")
    assert b"nc 127.0.0.1 " in session.out and b"irssi -c 127.0.0.1 -p " in session.out
    port = int(endpoints[0].rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(b"NICK cli\r\nUSER c 0 * :c\r\n")
        data = _lines(sock, b" 376 ")
        assert b":chat.test 372 cli :- Welcome friends\r\n" in data
        assert b":chat.test 372 cli :- second line\r\n" in data
        session.proc.send_signal(signal.SIGTERM)
        data = _lines(sock, b"\r\n")
        assert data == b"ERROR :Closing link: cli[127.0.0.1] (Server shutting down)\r\n"
        assert sock.recv(100) == b""
    assert session.wait() == 0
    assert "shutting down" in session.stderr_text


def test_tls_listener_prints_the_fingerprint(
    spawn: Callable[..., Any], tls: Any, tmp_path: Path
) -> None:
    key = tmp_path / "key.pem"
    key.write_bytes(tls.key.read_bytes())
    key.chmod(0o600)  # a key others can read is refused
    session, endpoints = _start(
        spawn, "--listen", "127.0.0.1:0", "--tls-cert", str(tls.cert), "--tls-key", str(key)
    )
    assert endpoints[0].startswith("tls://127.0.0.1:")  # --tls makes every tcp listener TLS
    assert re.search(rb"TLS certificate fingerprint SHA256:\S+", bytes(session.out))
    port = int(endpoints[0].rsplit(":", 1)[1])
    raw = socket.create_connection(("127.0.0.1", port), timeout=5)
    with tls.client_context().wrap_socket(raw, server_hostname="localhost") as conn:
        conn.sendall(b"hi over tls\r\n")
        assert b"you joined #lobby" in _lines(conn, b"you joined #lobby")
    session.proc.send_signal(signal.SIGTERM)
    assert session.wait() == 0


def test_wirekit_serve_chat_port_in_use_exits_3(spawn: Callable[..., Any]) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        argv = [sys.executable, "-m", "wirekit", "serve", "chat", "--listen", f"127.0.0.1:{port}"]
        session = spawn(argv)
        assert session.wait() == 3
        assert session.stderr_text == (
            f"wirekit: port {port} on 127.0.0.1 is already in use "
            "(another server is listening there)\n"
        )


def test_docs_state_the_defaults() -> None:
    doc = (Path(__file__).resolve().parents[3] / "docs" / "chat.md").read_text()
    args = parse()
    for option, dest in [
        ("--history N", "history"),
        ("--max-rooms N", "max_rooms"),
        ("--max-clients N", "max_clients"),
        ("--max-per-ip N", "max_per_ip"),
        ("--flood-rate LINES", "flood_rate"),
        ("--flood-burst N", "flood_burst"),
        ("--sendq BYTES", "sendq"),
        ("--ping-interval SECS", "ping_interval"),
        ("--ping-timeout SECS", "ping_timeout"),
        ("--register-timeout SECS", "register_timeout"),
    ]:
        row = re.search(rf"^\| `{re.escape(option)}` \| (\d+) \|", doc, re.MULTILINE)
        assert row, f"docs/chat.md has no row for {option}"
        assert float(row.group(1)) == getattr(args, dest), option
