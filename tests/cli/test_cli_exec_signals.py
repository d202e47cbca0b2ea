"""``wirekit exec`` and signals: Ctrl-C forwarded to the remote process group, a
second Ctrl-C cancelling, and a client killed outright leaving nothing running."""

from __future__ import annotations

import shlex
import signal
import subprocess
import time
from collections.abc import Iterator

import pytest
from test_cli_exec import WAIT, Served, isolated_env, remote_pids, wait_for


@pytest.fixture(scope="module")
def user(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    return isolated_env(tmp_path_factory.mktemp("user"))


@pytest.fixture(scope="module")
def server(user: dict[str, str]) -> Iterator[Served]:
    served = Served(["--listen", "127.0.0.1:0"], user)
    yield served
    assert served.stop() == 0


def _start_client(env: dict[str, str], address: str, *argv: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        ["wirekit", "exec", address, "-n", "--", *argv],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
        start_new_session=True,  # no controlling terminal to ask on
    )


def test_ctrl_c_forwards_sigint_to_the_remote_command(server: Served, user: dict[str, str]) -> None:
    argv = ["sleep", "31.25"]
    client = _start_client(user, server.address, *argv)
    try:
        wait_for(lambda: remote_pids(argv), "the remote sleep running")
        client.send_signal(signal.SIGINT)
        assert client.wait(WAIT) == 130
        assert client.stderr is not None
        assert client.stderr.read() == b"wirekit: remote command killed by SIGINT\n"
        assert not remote_pids(argv)  # it was gone before the client heard of it
    finally:
        client.kill()
        client.wait()


def test_second_ctrl_c_cancels_a_command_that_ignores_sigint(
    server: Served, user: dict[str, str]
) -> None:
    argv = ["sleep", "31.5"]
    client = _start_client(user, server.address, f"trap '' INT; {shlex.join(argv)}")
    try:
        wait_for(lambda: remote_pids(argv), "the remote sleep running")
        client.send_signal(signal.SIGINT)
        # The first press reached the remote side, which ignores it.
        time_limit = time.monotonic() + 0.3
        while time.monotonic() < time_limit:
            assert client.poll() is None and remote_pids(argv)
            time.sleep(0.02)
        client.send_signal(signal.SIGINT)
        assert client.wait(WAIT) == 130
        assert client.stderr is not None
        err = client.stderr.read().decode()
        assert "cancelling the remote command" in err
        assert err.endswith("wirekit: remote command cancelled\n")
        assert not remote_pids(argv)
    finally:
        client.kill()
        client.wait()


@pytest.mark.parametrize(("sig", "code"), [(signal.SIGKILL, -9), (signal.SIGTERM, 143)])
def test_killed_client_leaves_no_remote_process(
    sig: signal.Signals, code: int, server: Served, user: dict[str, str]
) -> None:
    argv = ["sleep", f"100.{int(sig)}"]
    client = _start_client(user, server.address, *argv)
    try:
        wait_for(lambda: remote_pids(argv), "the remote sleep running")
        client.send_signal(sig)
        assert client.wait(WAIT) == code
        wait_for(lambda: not remote_pids(argv), "the remote sleep gone", timeout=5)
    finally:
        client.kill()
        client.wait()
