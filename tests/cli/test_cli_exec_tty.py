"""``wirekit exec`` asking about an unknown TLS fingerprint on the terminal.

The question and the answer go through /dev/tty, not stdin: stdin may be the
data for the remote command (``tar c . | wirekit exec tls://...``). tmux
provides the terminal.
"""

from __future__ import annotations

import re
import shlex
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from test_cli_exec import Served, isolated_env, remote_pids, wait_for
from test_cli_shell import Tmux

pytestmark = pytest.mark.skipif(shutil.which("tmux") is None, reason="needs tmux")


@pytest.fixture
def tls_server(tmp_path: Path) -> Iterator[tuple[Served, dict[str, str]]]:
    env = isolated_env(tmp_path)
    env.pop("TMUX", None)
    served = Served(["--listen", "127.0.0.1:0", "--tls", "auto"], env)
    yield served, env
    assert served.stop() == 0


def test_unknown_fingerprint_is_asked_on_the_terminal_while_stdin_is_data(
    tls_server: tuple[Served, dict[str, str]], tmp_path: Path
) -> None:
    served, env = tls_server
    fingerprint = served.expect(r"^TLS fingerprint (SHA256:\S+)").group(1)
    known = tmp_path / "known_hosts"
    client = (
        f"printf piped-data | wirekit exec {served.address} --known-hosts {known} -- cat; "
        "echo STATUS=$?"
    )
    command = f"{client}; {client}; sleep 60"
    tmux = Tmux(f"sh -c {shlex.quote(command)}", env, tmp_path)
    try:
        question = rf"{re.escape(fingerprint)}\. Trust it and remember it\? \(yes/no\)"
        tmux.expect(question)
        tmux.line("no")
        tmux.expect(r"\bSTATUS=1\s*$")
        assert "--accept-new" in tmux.screen()
        assert not known.exists() or fingerprint not in known.read_text()
        tmux.expect(rf"(?s)STATUS=1.*{question}")  # asked again by the second run
        tmux.line("yes")
        tmux.expect(r"^piped-dataSTATUS=0\s*$")
        assert fingerprint in known.read_text()
    finally:
        tmux.kill()


def test_terminal_stdin_is_forwarded_and_ctrl_c_is_sigint(tmp_path: Path) -> None:
    env = isolated_env(tmp_path)
    env.pop("TMUX", None)
    served = Served(["--listen", "127.0.0.1:0"], env)
    sleep = ["sleep", "30.875"]
    command = (
        f"wirekit exec {served.address} -- 'read line; echo \"GOT=$line\"'; echo STATUS=$?; "
        f"wirekit exec {served.address} -- {' '.join(sleep)}; echo STATUS2=$?; sleep 60"
    )
    # set -m: job control, as in an interactive shell, so that Ctrl-C reaches the
    # foreground command (the client) and not the script running it.
    tmux = Tmux(f"bash -c {shlex.quote('set -m; ' + command)}", env, tmp_path)
    try:
        tmux.line("hello there")
        tmux.expect(r"^GOT=hello there\s*$")
        tmux.expect(r"^STATUS=0\s*$")
        wait_for(lambda: remote_pids(sleep), "the remote sleep running")
        tmux.type("C-c")  # the terminal sends SIGINT to the client's process group
        tmux.expect(r"\^Cwirekit: remote command killed by SIGINT\s*$")
        tmux.expect(r"^STATUS2=130\s*$")
        assert not remote_pids(sleep)
    finally:
        tmux.kill()
        assert served.stop() == 0
