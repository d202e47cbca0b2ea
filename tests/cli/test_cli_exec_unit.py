"""The parts of ``wirekit exec`` / ``serve exec`` that need no server: argument
parsing and checks, exit-status mapping, the Ctrl-C policy, stdin reading."""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import threading
from pathlib import Path

import pytest

from wirekit.addr import parse_address
from wirekit.cli import exec as cli_exec
from wirekit.cli import serve_exec
from wirekit.cli.arguments import UsageError
from wirekit.cli.exec import InterruptPolicy, exit_status, parse_env
from wirekit.cli.rawterm import InputReader, write_fd
from wirekit.errors import ConnectionClosed, ErrorCode, RemoteProtocolError


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="wirekit")
    cli_exec.add_parsers(parser.add_subparsers(dest="command"))
    return parser


def test_exec_arguments_after_double_dash_are_the_command_verbatim() -> None:
    args = _parser().parse_args(
        ["exec", "host:1", "--timeout", "3", "-e", "A=1=2", "--", "sh", "-c", "exit 3", "--", "-n"]
    )
    assert args.argv == ["sh", "-c", "exit 3", "--", "-n"]
    assert args.timeout == 3.0
    assert args.env == [("A", "1=2")]
    assert not args.no_stdin


def test_exec_options_before_the_command() -> None:
    args = _parser().parse_args(
        ["exec", "-n", "--cwd", "/tmp", "-i", "k", "--accept-new", "h", "--", "pwd"]
    )
    assert (args.no_stdin, args.cwd, args.identity, args.accept_new) == (True, "/tmp", "k", True)
    assert args.address == "h" and args.argv == ["pwd"]


@pytest.mark.parametrize(
    "argv",
    [
        ["exec", "host:1"],  # no command
        ["exec", "host:1", "--timeout", "0", "--", "true"],
        ["exec", "host:1", "--timeout", "nan", "--", "true"],
        ["exec", "host:1", "--env", "NOVALUE", "--", "true"],
        ["exec", "host:1", "--env", "=x", "--", "true"],
        ["exec", "host:1", "--env", "A=\0", "--", "true"],
        ["shell"],
        ["shell", "host:1", "extra"],
    ],
)
def test_bad_command_lines_are_usage_errors(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exc:
        _parser().parse_args(argv)
    assert exc.value.code == 2
    assert "error:" in capsys.readouterr().err


def test_parse_env_keeps_everything_after_the_first_equals() -> None:
    assert parse_env("PATH=/a:/b=c") == ("PATH", "/a:/b=c")
    assert parse_env("EMPTY=") == ("EMPTY", "")


@pytest.mark.parametrize(
    ("code", "sig", "core", "expected"),
    [
        (0, None, False, (0, None)),
        (7, None, False, (7, None)),
        (255, None, False, (255, None)),
        (None, "TERM", False, (143, "remote command killed by SIGTERM")),
        (None, "SIGKILL", False, (137, "remote command killed by SIGKILL")),
        (None, "INT", False, (130, "remote command killed by SIGINT")),
        (None, "SEGV", True, (139, "remote command killed by SIGSEGV (core dumped)")),
        (None, "NOPE\x1b[2J", False, (255, "remote command killed by unknown signal NOPE\\x1b[2J")),
        (None, None, False, (255, "remote command ended without an exit status")),
    ],
)
def test_exit_status_mapping(
    code: int | None, sig: str | None, core: bool, expected: tuple[int, str | None]
) -> None:
    assert exit_status(code, sig, core) == expected


def test_signal_numbers_follow_this_platform() -> None:
    assert exit_status(None, "USR1")[0] == 128 + int(signal.SIGUSR1)


def test_interrupt_policy_second_press_within_window_cancels() -> None:
    policy = InterruptPolicy(window=2.0)
    assert policy.press(10.0) == "INT"
    assert policy.press(12.0) == "cancel"  # exactly at the window edge
    assert policy.press(100.0) == "close"  # once cancelled, the next press gives up


def test_interrupt_policy_presses_apart_each_forward_sigint() -> None:
    policy = InterruptPolicy(window=2.0)
    assert policy.press(10.0) == "INT"
    assert policy.press(12.001) == "INT"  # just past the window
    assert policy.press(15.0) == "INT"
    assert policy.press(15.5) == "cancel"


def test_input_reader_pipe_chunks_and_eof() -> None:
    r, w = os.pipe()

    async def main() -> list[bytes]:
        reader = InputReader(r, chunk=4)
        got = []
        os.write(w, b"abcdef")
        got.append(await reader.read())
        got.append(await reader.read())
        loop = asyncio.get_running_loop()
        loop.call_later(0.01, os.close, w)  # EOF arrives while the read waits
        got.append(await reader.read())
        return got

    try:
        assert asyncio.run(main()) == [b"abcd", b"ef", b""]
    finally:
        os.close(r)


def test_input_reader_leaves_the_descriptor_blocking() -> None:
    r, w = os.pipe()
    try:
        os.write(w, b"x")
        assert asyncio.run(InputReader(r).read()) == b"x"
        assert os.get_blocking(r)
    finally:
        os.close(r)
        os.close(w)


def test_input_reader_regular_file_and_dev_null(tmp_path: Path) -> None:
    path = tmp_path / "data"
    path.write_bytes(b"\xff\x00" * 10)

    async def drain(fd: int) -> bytes:
        reader, out = InputReader(fd, chunk=7), b""
        while chunk := await reader.read():
            out += chunk
        return out

    with open(path, "rb") as f, open(os.devnull, "rb") as null:
        assert asyncio.run(drain(f.fileno())) == b"\xff\x00" * 10
        assert asyncio.run(drain(null.fileno())) == b""


def test_write_fd_waits_on_a_nonblocking_full_pipe() -> None:
    r, w = os.pipe()
    os.set_blocking(w, False)
    data = bytes(range(256)) * 1024  # 256 KiB: more than a pipe holds
    got = bytearray()

    def drain() -> None:
        while len(got) < len(data):
            got.extend(os.read(r, 65536))

    thread = threading.Thread(target=drain)
    thread.start()
    try:
        write_fd(w, data)
        thread.join(10)
    finally:
        os.close(r)
        os.close(w)
    assert bytes(got) == data


def test_serve_exec_defaults_through_the_real_parser() -> None:
    from wirekit.cli import build_parser

    args = build_parser().parse_args(["serve", "exec"])
    assert args.listen == "127.0.0.1:7022"
    assert (args.shell, args.allow, args.max_sessions, args.insecure) == (
        "/bin/sh",
        [],
        None,
        False,
    )
    assert args.run is serve_exec.run
    args = build_parser().parse_args(["exec", "h", "--", "true"])
    assert args.run is cli_exec.run_exec


@pytest.mark.parametrize(
    ("bound", "tls", "expected"),
    [
        ("tcp://127.0.0.1:7022", False, "127.0.0.1:7022"),
        ("tcp://0.0.0.0:9000", True, "tls://127.0.0.1:9000"),
        ("tcp://[::]:9000", False, "[::1]:9000"),
        ("tcp://[::1]:9000", True, "tls://[::1]:9000"),
        ("unix:/tmp/e.sock", False, "unix:/tmp/e.sock"),
    ],
)
def test_client_address_for_the_try_line(bound: str, tls: bool, expected: str) -> None:
    assert serve_exec.client_address(parse_address(bound), tls) == expected


def test_client_hint_quotes_for_a_shell() -> None:
    hint = serve_exec.client_hint(parse_address("[::1]:9"), False, Path("/t/my token"))
    assert hint == "wirekit exec '[::1]:9' --token-file '/t/my token' -- uname -a"


@pytest.mark.parametrize("text", ["udp://127.0.0.1:0", "udp://[::1]:7"])
def test_listen_address_refuses_udp(text: str) -> None:
    with pytest.raises(UsageError, match="stream"):
        serve_exec.listen_address(text)


def test_listen_address_default_port() -> None:
    assert serve_exec.listen_address("0.0.0.0").port == 7022


def test_peer_text_in_errors_is_escaped() -> None:
    closed = cli_exec.escaped(ConnectionClosed(ErrorCode.GOING_AWAY, "bye\x1b[2J\nwirekit: fake"))
    assert isinstance(closed, ConnectionClosed) and closed.code == ErrorCode.GOING_AWAY
    assert str(closed) == "connection closed (going_away): bye\\x1b[2J\\nwirekit: fake"
    broke = cli_exec.escaped(RemoteProtocolError("bad\x07", ErrorCode.WRONG_STATE))
    assert isinstance(broke, RemoteProtocolError) and broke.code == ErrorCode.WRONG_STATE
    assert str(broke) == "bad\\x07"
    plain = ConnectionClosed(ErrorCode.GOING_AWAY, "server shutting down")
    assert cli_exec.escaped(plain) is plain
