"""scripts/run and scripts/test, read as a reviewer would: what they install and
which checks they run (running them would reinstall the package)."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

SCRIPTS = Path(__file__).resolve().parents[2] / "scripts"


def _commands(name: str) -> list[list[str]]:
    """The script's command lines (comments and blank lines dropped), split as sh would."""
    lines = (SCRIPTS / name).read_text().splitlines()
    return [shlex.split(line, comments=True) for line in lines if shlex.split(line, comments=True)]


def _pip_installs(name: str) -> list[list[str]]:
    return [argv for argv in _commands(name) if argv[:4] == ["python3", "-m", "pip", "install"]]


def test_run_installs_editable() -> None:
    """``pip install .`` would replace a developer's editable install with a copy
    (and leave build/ behind): scripts/run installs editable, as scripts/test does."""
    (install,) = _pip_installs("run")
    assert "-e" in install, install
    (install,) = _pip_installs("test")
    assert "-e" in install, install


def test_test_runs_ruff_then_mypy_then_pytest() -> None:
    steps = [
        argv[2]
        for argv in _commands("test")
        if argv[:2] == ["python3", "-m"] and argv[2] in ("ruff", "mypy", "pytest")
    ]
    assert steps == ["ruff", "mypy", "pytest"]


def test_the_tools_the_tests_drive_are_installed_by_scripts_test() -> None:
    text = (SCRIPTS / "test").read_text()
    match = re.search(r"DEB_PACKAGES=\(([^)]*)\)", text)
    assert match
    packages = match.group(1).split()
    for package in (
        "netcat-openbsd",
        "socat",
        "rdate",
        "telnet",
        "ncat",
        "iproute2",
        "tmux",
        "irssi",
        "openssh-client",
    ):
        assert package in packages
