"""Fixtures for the credential tests: a private home and config dir for every test.

Nothing here may read or write the real ``~/.ssh`` or ``~/.config``: every
test gets ``HOME``, ``WIREKIT_CONFIG_DIR`` and ``XDG_CONFIG_HOME`` under its
own tmp_path, and the usual 022 umask (tests that need another set it).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest


@dataclass(frozen=True)
class Dirs:
    """The fake home and the wirekit config dir (not created yet) of one test."""

    home: Path
    config: Path


@pytest.fixture(autouse=True)
def dirs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Dirs]:
    home = tmp_path / "home"
    home.mkdir()
    config = tmp_path / "config" / "wirekit"
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("WIREKIT_CONFIG_DIR", str(config))
    monkeypatch.delenv("XDG_CONFIG_HOME", raising=False)
    old_umask = os.umask(0o022)
    try:
        yield Dirs(home, config)
    finally:
        os.umask(old_umask)


@pytest.fixture
def work(tmp_path: Path) -> Path:
    """An empty dir of its own (tmp_path also holds the fake home and config dir)."""
    path = tmp_path / "work"
    path.mkdir(mode=0o700)
    return path


#: Runs ssh-keygen with arguments; returns its stdout. Fails the test on a non-zero exit.
SshKeygen = Callable[..., str]


@pytest.fixture
def ssh_keygen() -> SshKeygen:
    """OpenSSH's ssh-keygen, or a skip that says the interop checks did not run."""
    exe = shutil.which("ssh-keygen")
    if exe is None:
        pytest.skip(
            "ssh-keygen not installed (Debian package openssh-client): OpenSSH interop not checked"
        )

    def run(*args: str) -> str:
        done = subprocess.run(
            [exe, *args], capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL
        )
        assert done.returncode == 0, f"ssh-keygen {' '.join(args)} failed: {done.stderr.strip()}"
        return done.stdout

    return run
