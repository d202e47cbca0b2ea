"""``wirekit shell`` in a real terminal: tmux runs it against a ``wirekit serve
exec`` subprocess, types into it and reads the screen.

Each tmux server has its own socket name (``-L``) and no config file, and the
shell's exit status and whether the terminal mode came back are printed by
the tmux command itself after ``wirekit shell`` ends.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from test_cli_exec import WAIT, Served, isolated_env, remote_pids, wait_for

pytestmark = pytest.mark.skipif(shutil.which("tmux") is None, reason="needs tmux")


@pytest.fixture(scope="module")
def user(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    env = isolated_env(tmp_path_factory.mktemp("user"))
    env.pop("TMUX", None)  # the tests may themselves run inside tmux
    env["TERM"] = "xterm-256color"
    return env


@pytest.fixture(scope="module")
def server(user: dict[str, str]) -> Iterator[Served]:
    served = Served(["--listen", "127.0.0.1:0"], user)
    yield served
    assert served.stop() == 0


class Tmux:
    """A detached tmux session of 120 x 40 running ``command``."""

    def __init__(self, command: str, env: dict[str, str], tmp: Path) -> None:
        self.socket = f"wirekit-test-{uuid.uuid4().hex[:12]}"
        self.env = env
        self.run("-f", "/dev/null", "new-session", "-d", "-x", "120", "-y", "40", command)

    def run(self, *args: str) -> str:
        done = subprocess.run(
            ["tmux", "-L", self.socket, *args],
            env=self.env,
            capture_output=True,
            timeout=WAIT,
            check=True,
        )
        return done.stdout.decode(errors="replace")

    def type(self, *keys: str) -> None:
        self.run("send-keys", *keys)

    def line(self, text: str) -> None:
        self.run("send-keys", "-l", text)
        self.run("send-keys", "Enter")

    def screen(self) -> str:
        return self.run("capture-pane", "-p", "-J", "-S", "-200")

    def expect(self, pattern: str, timeout: float = WAIT) -> re.Match[str]:
        found: list[re.Match[str]] = []

        def seen() -> bool:
            match = re.search(pattern, self.screen(), re.MULTILINE)
            if match:
                found.append(match)
            return match is not None

        try:
            wait_for(seen, f"screen showing {pattern!r}", timeout)
        except AssertionError as exc:
            raise AssertionError(f"{exc}; screen:\n{self.screen()}") from None
        return found[0]

    def kill(self) -> None:
        """Stop the tmux server and remove its socket file (tmux leaves it behind)."""
        path = subprocess.run(
            ["tmux", "-L", self.socket, "display-message", "-p", "#{socket_path}"],
            env=self.env,
            capture_output=True,
            text=True,
        ).stdout.strip()
        subprocess.run(
            ["tmux", "-L", self.socket, "kill-server"], env=self.env, capture_output=True
        )
        if path:
            Path(path).unlink(missing_ok=True)


@pytest.fixture
def tmux_shell(server: Served, user: dict[str, str], tmp_path: Path) -> Iterator[tuple[Tmux, Path]]:
    """tmux running ``wirekit shell``, then printing STATUS=<its exit status> and
    RESTORED when the terminal mode afterwards equals the one before."""
    saved = tmp_path / "stty-before"
    command = (
        f"stty -g > {saved}; wirekit shell {server.address}; echo STATUS=$?; "
        f"stty -g | cmp -s - {saved} && echo RESTORED; sleep 60"
    )
    tmux = Tmux(command, user, tmp_path)
    try:
        yield tmux, saved
    finally:
        tmux.kill()


def test_shell_session_cd_export_resize_ctrl_c_and_exit_status(
    tmux_shell: tuple[Tmux, Path],
) -> None:
    tmux, _ = tmux_shell
    tmux.line('cd /tmp; echo "P=$(pwd)"')
    tmux.expect(r"\bP=/tmp\s*$")
    tmux.line('echo "STILL=$(pwd)"')  # a second command, same shell: cd persisted
    tmux.expect(r"\bSTILL=/tmp\s*$")
    tmux.line('export X=1; echo "X=$X"')
    tmux.expect(r"\bX=1\s*$")
    tmux.line('echo "Y=$X"')
    tmux.expect(r"\bY=1\s*$")
    tmux.line('echo "SZ=$(stty size)"')
    tmux.expect(r"\bSZ=40 120\s*$")

    tmux.run("resize-window", "-x", "100", "-y", "30")
    deadline = time.monotonic() + WAIT
    while True:
        # The new size travels as a message next to the typed keys: ask until it
        # has arrived (at once, in practice).
        answers = _size_answers(tmux)
        if answers and answers[-1] == "30 100":
            break
        assert time.monotonic() < deadline, tmux.screen()
        tmux.line('echo "SZ2=$(stty size)"')
        _wait_for_more_answers(tmux, len(answers))

    argv = ["sleep", "30.75"]
    tmux.line(" ".join(argv))
    wait_for(lambda: remote_pids(argv), "the remote sleep running")
    tmux.type("C-c")
    tmux.line('echo "AFTER=$((6 * 7))"')
    tmux.expect(r"\bAFTER=42\s*$", timeout=5)  # well before the sleep would end
    assert not remote_pids(argv)

    tmux.line("exit 7")
    tmux.expect(r"\bSTATUS=7\s*$")
    tmux.expect(r"^RESTORED\s*$")


def _wait_for_more_answers(tmux: Tmux, count: int) -> None:
    wait_for(lambda: len(_size_answers(tmux)) > count, "an answer to stty size")


def _size_answers(tmux: Tmux) -> list[str]:
    return re.findall(r"\bSZ2=(\d+ \d+)", tmux.screen(), re.MULTILINE)


def test_ctrl_d_reaches_the_remote_side_as_a_byte(tmux_shell: tuple[Tmux, Path]) -> None:
    tmux, _ = tmux_shell
    argv = ["tr", "a-y", "A-Y"]  # an unusual command line, to find the remote process by
    tmux.line(f"{' '.join(argv)}; echo TR=$?")
    # Wait for the remote side before typing Ctrl-D: typed ahead while wirekit is
    # still connecting, the local terminal (not yet raw) would take it as its EOF.
    wait_for(lambda: remote_pids(argv), "the remote tr running")
    tmux.line("typed")
    tmux.expect(r"^TYPED\s*$")
    tmux.type("C-d")  # end of input for tr, on the remote terminal: the shell goes on
    tmux.expect(r"\bTR=0\s*$")
    tmux.type("C-d")  # at the prompt: the remote shell ends
    tmux.expect(r"\bSTATUS=0\s*$")
    tmux.expect(r"^RESTORED\s*$")


def _client_pid(address: str) -> int | None:
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/cmdline", "rb") as f:
                    words = f.read().split(b"\0")
            except OSError:
                continue
            if b"shell" in words and address.encode() in words and b"-c" not in words:
                return int(entry)
    return None


def test_terminal_restored_when_the_client_gets_sigterm(
    tmux_shell: tuple[Tmux, Path], server: Served
) -> None:
    tmux, _ = tmux_shell
    tmux.line('echo "UP=$((1 + 1))"')
    tmux.expect(r"\bUP=2\s*$")
    pid = _client_pid(server.address)
    assert pid is not None
    os.kill(pid, signal.SIGTERM)
    tmux.expect(r"\bSTATUS=143\s*$")
    tmux.expect(r"^RESTORED\s*$")


def test_shell_without_a_terminal_is_refused(server: Served, user: dict[str, str]) -> None:
    done = subprocess.run(
        ["wirekit", "shell", server.address],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        env=user,
        timeout=WAIT,
        start_new_session=True,  # no controlling terminal to ask on
    )
    assert done.returncode == 2
    assert done.stderr == (
        b"wirekit: wirekit shell needs a terminal on stdin; for scripts use: "
        b"wirekit exec ADDR -- CMD\n"
    )
