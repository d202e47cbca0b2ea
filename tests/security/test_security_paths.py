"""The config dir, atomic 0600 writes, and reads that refuse files others can read."""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from wirekit.errors import WirekitError
from wirekit.security import (
    CredentialError,
    atomic_write,
    config_dir,
    read_secret_file,
    read_trusted_file,
)

if TYPE_CHECKING:
    from conftest import Dirs


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_config_dir_env_override_wins(dirs: Dirs, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(dirs.home / "xdg"))
    assert config_dir(create=False) == dirs.config
    assert not dirs.config.exists()


def test_config_dir_xdg_then_home(dirs: Dirs, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("WIREKIT_CONFIG_DIR")
    monkeypatch.setenv("XDG_CONFIG_HOME", str(dirs.home / "xdg"))
    assert config_dir(create=False) == dirs.home / "xdg" / "wirekit"
    monkeypatch.setenv("XDG_CONFIG_HOME", "relative/xdg")  # invalid per the XDG spec: ignored
    assert config_dir(create=False) == dirs.home / ".config" / "wirekit"
    monkeypatch.setenv("XDG_CONFIG_HOME", "")
    assert config_dir(create=False) == dirs.home / ".config" / "wirekit"
    monkeypatch.delenv("XDG_CONFIG_HOME")
    assert config_dir(create=False) == dirs.home / ".config" / "wirekit"


def test_config_dir_created_0700_despite_umask(dirs: Dirs) -> None:
    os.umask(0)
    path = config_dir()
    assert path == dirs.config
    assert path.is_dir()
    assert mode(path) == 0o700
    assert config_dir() == path  # second call: exists already, fine


def test_config_dir_keeps_mode_of_existing_dir(dirs: Dirs) -> None:
    dirs.config.mkdir(parents=True, mode=0o755)
    os.chmod(dirs.config, 0o750)
    config_dir()
    assert mode(dirs.config) == 0o750


@pytest.mark.parametrize("umask", [0o000, 0o022, 0o077])
def test_atomic_write_sets_exact_mode(work: Path, umask: int) -> None:
    os.umask(umask)
    secret = work / "secret"
    atomic_write(secret, b"s3cret")
    assert secret.read_bytes() == b"s3cret"
    assert mode(secret) == 0o600
    public = work / "public"
    atomic_write(public, b"hello", mode=0o644)
    assert mode(public) == 0o644
    assert sorted(p.name for p in work.iterdir()) == ["public", "secret"]


def test_atomic_write_replaces_and_leaves_no_temp_files(work: Path) -> None:
    path = work / "file"
    for i in range(5):
        atomic_write(path, f"version {i}".encode())
    assert path.read_text() == "version 4"
    assert [p.name for p in work.iterdir()] == ["file"]


def test_atomic_write_no_overwrite_refuses_and_keeps_old(work: Path) -> None:
    path = work / "file"
    atomic_write(path, b"first", overwrite=False)
    with pytest.raises(FileExistsError):
        atomic_write(path, b"second", overwrite=False)
    assert path.read_bytes() == b"first"
    assert [p.name for p in work.iterdir()] == ["file"]


def test_atomic_write_failure_keeps_old_file_and_cleans_up(
    work: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = work / "file"
    atomic_write(path, b"old")

    def broken_fsync(fd: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", broken_fsync)
    with pytest.raises(OSError, match="No space left"):
        atomic_write(path, b"new")
    assert path.read_bytes() == b"old"
    assert [p.name for p in work.iterdir()] == ["file"]


def test_read_secret_file_accepts_0600_and_0400(work: Path) -> None:
    path = work / "secret"
    atomic_write(path, b"x")
    assert read_secret_file(path) == b"x"
    os.chmod(path, 0o400)
    assert read_secret_file(path) == b"x"


@pytest.mark.parametrize("bad_mode", [0o644, 0o640, 0o604, 0o660, 0o602])
def test_read_secret_file_refuses_open_modes_with_chmod_hint(work: Path, bad_mode: int) -> None:
    path = work / "my secret"
    path.write_bytes(b"x")
    os.chmod(path, bad_mode)
    with pytest.raises(CredentialError) as info:
        read_secret_file(path)
    text = str(info.value)
    assert "\n" not in text
    assert f"permissions {bad_mode:04o}" in text
    assert f"run: chmod 600 '{path}'" in text  # quoted: the name has a space
    assert isinstance(info.value, WirekitError)


def test_read_trusted_file_refuses_only_writable_by_others(work: Path) -> None:
    path = work / "authorized_keys"
    path.write_bytes(b"x")
    os.chmod(path, 0o644)
    assert read_trusted_file(path) == b"x"
    os.chmod(path, 0o664)
    with pytest.raises(CredentialError, match=r"permissions 0664 .* run: chmod go-w "):
        read_trusted_file(path)


def test_read_refuses_directory_and_reports_missing(work: Path) -> None:
    with pytest.raises(FileNotFoundError):
        read_secret_file(work / "missing")
    sub = work / "dir"
    sub.mkdir(mode=0o700)
    with pytest.raises((CredentialError, IsADirectoryError)):
        read_secret_file(sub)


@pytest.mark.skipif(os.geteuid() != 0, reason="changing a file's owner needs root")
def test_read_refuses_file_owned_by_someone_else(work: Path) -> None:
    path = work / "secret"
    atomic_write(path, b"x")
    os.chown(path, 54321, -1)
    with pytest.raises(CredentialError, match="owned by uid 54321"):
        read_secret_file(path)


def test_config_dir_that_is_a_file_refused(dirs: Dirs) -> None:
    dirs.config.parent.mkdir(parents=True)
    dirs.config.write_text("oops")
    with pytest.raises(CredentialError, match="exists but is not a directory"):
        config_dir()


def test_read_refuses_fifo_without_hanging(work: Path) -> None:
    fifo = work / "token"
    os.mkfifo(fifo, 0o600)
    with pytest.raises(CredentialError, match="is not a regular file"):
        read_secret_file(fifo)
