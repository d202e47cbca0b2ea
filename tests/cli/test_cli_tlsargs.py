"""The TLS options of the secure commands: parsing, combinations, and errors."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from wirekit.cli.arguments import UsageError
from wirekit.cli.tlsargs import (
    add_client_tls_arguments,
    add_server_tls_arguments,
    server_tls,
    terminal_confirm,
)
from wirekit.errors import ListenError
from wirekit.security.tlscert import auto_certificate


@pytest.fixture(autouse=True)
def private_dirs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("WIREKIT_CONFIG_DIR", str(tmp_path / "config"))
    return tmp_path


def server_args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_server_tls_arguments(parser)
    return parser.parse_args(argv)


def test_no_tls_options_means_no_tls() -> None:
    assert server_tls(server_args()) == (None, None)


def test_tls_auto_makes_the_certificate_once(private_dirs: Path) -> None:
    context, fingerprint = server_tls(server_args("--tls", "auto"))
    assert context is not None and fingerprint is not None
    assert server_tls(server_args("--tls", "auto"))[1] == fingerprint
    assert (private_dirs / "config" / "tls-key.pem").exists()


def test_given_files(tmp_path: Path) -> None:
    cert, key, fingerprint = auto_certificate(tmp_path / "given")
    context, got = server_tls(server_args("--tls-cert", str(cert), "--tls-key", str(key)))
    assert context is not None and got == fingerprint


@pytest.mark.parametrize(
    ("argv", "text"),
    [
        (["--tls", "auto", "--tls-cert", "c"], "--tls auto makes its own certificate"),
        (["--tls-cert", "c"], "--tls-cert and --tls-key go together"),
        (["--tls-key", "k"], "--tls-cert and --tls-key go together"),
    ],
)
def test_bad_combinations_are_usage_errors(argv: list[str], text: str) -> None:
    with pytest.raises(UsageError, match=text):
        server_tls(server_args(*argv))


def test_unusable_files_cannot_start(tmp_path: Path) -> None:
    with pytest.raises(ListenError, match="cannot read certificate"):
        server_tls(server_args("--tls-cert", str(tmp_path / "no"), "--tls-key", "k"))


def test_tls_other_values_refused_by_argparse() -> None:
    with pytest.raises(SystemExit) as info:
        server_args("--tls", "on")
    assert info.value.code == 2


def test_client_arguments() -> None:
    parser = argparse.ArgumentParser()
    add_client_tls_arguments(parser)
    args = parser.parse_args(["--accept-new", "--known-hosts", "/tmp/pins"])
    assert args.accept_new is True and args.known_hosts == Path("/tmp/pins")
    assert parser.parse_args([]).accept_new is False


def test_no_question_without_a_terminal() -> None:
    assert terminal_confirm() is None  # pytest's stdin is not a terminal
