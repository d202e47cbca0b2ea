"""``wirekit.cli.main(argv)`` in-process: help, version, usage errors and exit codes
(0 ok, 1 runtime error, 2 usage error, 3 could not start)."""

from __future__ import annotations

import socket
import subprocess

import pytest

import wirekit
from wirekit.cli import EXIT_ERROR, EXIT_START, EXIT_USAGE, main


def _one_line(err: str) -> str:
    lines = err.splitlines()
    assert len(lines) == 1, f"expected one line, got {err!r}"
    assert lines[0].startswith("wirekit: ")
    return lines[0]


def test_help_lists_the_commands_and_address_forms(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: wirekit")
    for command in ("serve", "connect", "listen"):
        assert command in out
    for form in ("HOST:PORT", ":PORT", "udp://HOST:PORT", "tls://HOST:PORT", "unix:/path"):
        assert form in out


@pytest.mark.parametrize("command", ["serve", "connect", "listen"])
def test_each_command_has_help(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main([command, "--help"])
    assert info.value.code == 0
    assert capsys.readouterr().out.startswith(f"usage: wirekit {command}")


def test_serve_help_names_services_and_default_ports(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["serve", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    for name, port in (("echo", 7007), ("daytime", 7013), ("time", 7037)):
        assert f"{name} ({port})" in out


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["--version"])
    assert info.value.code == 0
    assert capsys.readouterr().out == f"wirekit {wirekit.__version__}\n"


def test_no_command_prints_help_and_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == EXIT_USAGE
    assert capsys.readouterr().out.startswith("usage: wirekit")


def test_serve_listen_without_service_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    """A usage mistake (exit 2), not a server that could not start (3)."""
    assert main(["serve", "--listen", ":0"]) == EXIT_USAGE
    err = capsys.readouterr().err
    assert _one_line(err) == (
        "wirekit: --listen needs a SERVICE (e.g. wirekit serve echo --listen :0)"
    )


@pytest.mark.parametrize(
    ("service", "flag"), [("daytime", "--upper"), ("time", "--upper"), ("daytime", "--stamp")]
)
def test_echo_options_with_another_service_exit_2(
    service: str, flag: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["serve", service, flag, "--listen", ":0"]) == EXIT_USAGE
    assert _one_line(capsys.readouterr().err) == (
        "wirekit: --upper and --stamp apply to the echo service only"
    )


@pytest.mark.parametrize(
    ("argv", "problem"),
    [
        (["serve", "echo", "--listen", "127.0.0.1:99999"], "port 99999 is out of range"),
        (["serve", "echo", "--listen", ":0", "--listen", "gopher://h:70"], "unknown scheme"),
        (["connect", "ftp://127.0.0.1:21"], "unknown scheme 'ftp'"),
        (["connect", "127.0.0.1"], "missing port"),
        (["listen", "::1:7007"], "write IPv6 addresses in brackets"),
        (["listen", "[::1:7007"], "missing ']'"),
        (["listen", ""], "empty address"),
    ],
)
def test_bad_address_exits_2(
    argv: list[str], problem: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(argv) == EXIT_USAGE
    line = _one_line(capsys.readouterr().err)
    assert problem in line


@pytest.mark.parametrize(
    ("argv", "problem"),
    [
        (["serve", "chargen"], "invalid choice: 'chargen'"),
        (["connect", "-w", "0", ":1"], "the timeout must be positive"),
        (["connect", "-w", "soon", ":1"], "'soon' is not a number of seconds"),
        (["connect"], "the following arguments are required: ADDR"),
        (["frobnicate"], "invalid choice: 'frobnicate'"),
        (["serve", "echo", "--max-connections", "0"], "must be at least 1, got 0"),
        (["serve", "echo", "--max-connections", "-1"], "must be at least 1, got -1"),
        (["serve", "echo", "--max-connections", "many"], "'many' is not a whole number"),
        (["serve", "echo", "--max-per-ip", "0"], "must be at least 1, got 0"),
        (["serve", "echo", "--idle-timeout", "-1"], "must not be negative, got -1"),
        (["serve", "echo", "--idle-timeout", "nan"], "'nan' is not a number of seconds"),
        (["connect", "-w", "inf", ":1"], "'inf' is not a number of seconds"),
        (["listen", "-k", "--max-peers", "0", ":0"], "must be at least 1, got 0"),
    ],
)
def test_argument_errors_exit_2(
    argv: list[str], problem: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == EXIT_USAGE
    assert problem in capsys.readouterr().err


def test_serve_on_a_port_in_use_exits_3(capsys: pytest.CaptureFixture[str]) -> None:
    with socket.create_server(("127.0.0.1", 0)) as holder:
        port = holder.getsockname()[1]
        # The first address binds, the second cannot: nothing is left listening.
        code = main(["serve", "echo", "--listen", ":0", "--listen", f":{port}"])
    assert code == EXIT_START
    assert _one_line(capsys.readouterr().err) == (
        f"wirekit: port {port} on 127.0.0.1 is already in use (another server is listening there)"
    )


def test_connect_refused_exits_1(capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))  # bound, not listening: connections are refused
        port = holder.getsockname()[1]
        assert main(["connect", f"127.0.0.1:{port}"]) == EXIT_ERROR
    assert "connection refused" in _one_line(capsys.readouterr().err)


def test_debug_logs_the_traceback(
    capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    assert main(["--debug", "connect", "nowhere.invalid:1"]) == EXIT_ERROR
    assert "Traceback" in caplog.text and "ConnectError" in caplog.text
    assert _one_line(capsys.readouterr().err) == (
        "wirekit: cannot connect to nowhere.invalid:1: unknown host 'nowhere.invalid'"
    )


def test_without_debug_there_is_no_traceback(
    capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    assert main(["connect", "nowhere.invalid:1"]) == EXIT_ERROR
    assert "Traceback" not in caplog.text
    assert "Traceback" not in capsys.readouterr().err


def test_a_bad_limit_is_a_usage_error_not_a_traceback() -> None:
    """As the user meets it: one error line after the usage, exit 2, no ValueError."""
    done = subprocess.run(
        ["wirekit", "serve", "echo", "--max-connections", "0"],
        capture_output=True,
        text=True,
        timeout=10,
    )
    assert done.returncode == EXIT_USAGE
    assert "Traceback" not in done.stderr
    assert done.stderr.splitlines()[-1] == (
        "wirekit serve echo: error: argument --max-connections: must be at least 1, got 0"
    )


def test_idle_timeout_zero_still_means_never(capsys: pytest.CaptureFixture[str]) -> None:
    with socket.create_server(("127.0.0.1", 0)) as holder:
        port = holder.getsockname()[1]
        # Parsed and accepted (0 = never): the run then stops at the busy port.
        assert main(["serve", "echo", "--idle-timeout", "0", "--listen", f":{port}"]) == EXIT_START
    assert "already in use" in _one_line(capsys.readouterr().err)


def test_debug_after_the_command(
    capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    assert main(["connect", "nowhere.invalid:1", "--debug"]) == EXIT_ERROR
    assert "Traceback" in caplog.text and "ConnectError" in caplog.text
    assert _one_line(capsys.readouterr().err).startswith("wirekit: cannot connect to")


@pytest.mark.parametrize(
    ("value", "on"),
    [("1", True), ("true", True), ("YES", True), ("0", False), ("false", False), ("", False)],
)
def test_wirekit_debug_environment(
    value: str,
    on: bool,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.setenv("WIREKIT_DEBUG", value)
    assert main(["connect", "nowhere.invalid:1"]) == EXIT_ERROR
    assert ("Traceback" in caplog.text) is on
    _one_line(capsys.readouterr().err)


def test_an_error_carrying_peer_text_is_printed_escaped(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A close reason comes from the peer: an ESC in it must not reach the terminal."""
    import argparse

    from wirekit.cli import _fail
    from wirekit.errors import ConnectionClosed

    args = argparse.Namespace(debug=False)
    assert _fail(args, ConnectionClosed(15, "bye\x1b[2J\nforged"), EXIT_ERROR) == EXIT_ERROR
    line = _one_line(capsys.readouterr().err)
    assert "\x1b" not in line
    assert "\\x1b[2J\\nforged" in line
