"""``wirekit keygen`` and ``wirekit known-hosts``, run through a parser built here
(the commands expose ``add_parser``); keys are checked by loading them back and
by OpenSSH's ssh-keygen."""

from __future__ import annotations

import argparse
import shutil
import stat
import subprocess
from pathlib import Path

import pytest

from wirekit.cli import keygen
from wirekit.security import CredentialError, KnownHosts, fingerprint, load_private_key


@pytest.fixture(autouse=True)
def private_dirs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("WIREKIT_CONFIG_DIR", str(tmp_path / "config"))
    monkeypatch.delenv("XDG_CONFIG_HOME", raising=False)
    return tmp_path


def run(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="wirekit")
    commands = parser.add_subparsers(dest="command")
    keygen.add_parser(commands)
    keygen.add_known_hosts_parser(commands)
    args = parser.parse_args(argv)
    code: int = args.run(args)
    return code


def test_keygen_default_writes_wirekits_own_key(
    private_dirs: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(["keygen", "-C", "ci@build"]) == 0
    path = private_dirs / "config" / "id_ed25519"
    key = load_private_key(path)
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith(f"wirekit: wrote {path} (private, 0600)")
    assert out[1] == f"fingerprint {fingerprint(key.public_key())}"
    assert out[-1] == (path.parent / "id_ed25519.pub").read_text().strip()
    assert out[-1].startswith("ssh-ed25519 AAAA") and out[-1].endswith(" ci@build")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    # with no ~/.ssh/id_ed25519, clients use this key by default
    assert load_private_key().private_bytes_raw() == key.private_bytes_raw()


def test_keygen_refuses_to_overwrite_unless_forced(tmp_path: Path) -> None:
    target = tmp_path / "k"
    assert run(["keygen", "-f", str(target)]) == 0
    first = target.read_bytes()
    with pytest.raises(CredentialError, match="already exists; refusing to overwrite"):
        run(["keygen", "-f", str(target)])
    assert target.read_bytes() == first
    assert run(["keygen", "-f", str(target), "--force"]) == 0
    assert target.read_bytes() != first


def test_keygen_key_is_readable_by_ssh_keygen(tmp_path: Path) -> None:
    exe = shutil.which("ssh-keygen")
    if exe is None:
        pytest.skip("ssh-keygen not installed: OpenSSH interop not checked")
    target = tmp_path / "k"
    run(["keygen", "-f", str(target), "-C", "x@y"])
    done = subprocess.run(
        [exe, "-y", "-f", str(target)], capture_output=True, text=True, timeout=30, check=True
    )
    assert done.stdout.split()[:2] == (tmp_path / "k.pub").read_text().split()[:2]


def test_known_hosts_lists_and_forgets(capsys: pytest.CaptureFixture[str]) -> None:
    store = KnownHosts()
    pin = "SHA256:" + "A" * 43
    store.remember("example.org:7022", pin)
    assert run(["known-hosts"]) == 0
    assert capsys.readouterr().out == f"example.org:7022 {pin}\n"
    assert run(["known-hosts", "--forget", "EXAMPLE.org:7022"]) == 0
    assert "forgot example.org:7022" in capsys.readouterr().out
    assert store.lookup("example.org:7022") is None
    assert run(["known-hosts", "--forget", "example.org:7022"]) == 1
    assert capsys.readouterr().err.startswith("wirekit: no pin for example.org:7022")


def test_known_hosts_other_file(tmp_path: Path) -> None:
    other = KnownHosts(tmp_path / "pins")
    other.remember("[::1]:7022", "SHA256:" + "B" * 43)
    assert run(["known-hosts", "--known-hosts", str(other.path), "--forget", "[::1]:7022"]) == 0
    assert other.lookup("[::1]:7022") is None


def test_wirekit_keygen_command_exit_codes(tmp_path: Path) -> None:
    """Through the real ``wirekit`` entry point: 0, then 1 with one line on stderr."""
    import os
    import sys

    env = {**os.environ, "HOME": str(tmp_path / "home"), "WIREKIT_CONFIG_DIR": str(tmp_path)}
    argv = [sys.executable, "-m", "wirekit", "keygen", "-f", str(tmp_path / "k")]
    first = subprocess.run(argv, capture_output=True, text=True, timeout=30, env=env)
    assert first.returncode == 0, first.stderr
    assert first.stdout.splitlines()[-1].startswith("ssh-ed25519 ")
    again = subprocess.run(argv, capture_output=True, text=True, timeout=30, env=env)
    assert again.returncode == 1
    assert again.stderr.count("\n") == 1
    assert again.stderr.startswith(f"wirekit: {tmp_path / 'k'} already exists")
