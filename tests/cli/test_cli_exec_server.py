"""``wirekit serve exec`` options seen from the client: --allow, --max-sessions,
--token-file, --shell, and a server that goes away under a running command."""

from __future__ import annotations

import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from test_cli_exec import WAIT, Served, isolated_env, remote_pids, wait_for, wirekit_exec


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    return isolated_env(tmp_path)


@pytest.fixture
def serve(env: dict[str, str]) -> Iterator[Callable[..., Served]]:
    started: list[Served] = []

    def start(*args: str) -> Served:
        served = Served(["--listen", "127.0.0.1:0", *args], env)
        started.append(served)
        return served

    yield start
    for served in started:
        served.stop()


def test_allow_runs_only_listed_programs_and_no_shell(
    serve: Callable[..., Served], env: dict[str, str]
) -> None:
    served = serve("--allow", "echo")
    ok = wirekit_exec(env, served.address, "-n", "--", "echo", "a;b")
    assert (ok.returncode, ok.stdout) == (0, b"a;b\n")
    line = wirekit_exec(env, served.address, "-n", "--", "echo hi; id")
    assert line.returncode == 1
    assert line.stderr.startswith(b"wirekit: server refused the command: shell metacharacters")
    other = wirekit_exec(env, served.address, "-n", "--", "id")
    assert other.returncode == 1
    assert other.stderr == b"wirekit: server refused the command: 'id' is not an allowed program\n"


def test_token_file_given_to_both_ends(
    serve: Callable[..., Served], env: dict[str, str], tmp_path: Path
) -> None:
    token = tmp_path / "shared.token"
    token.write_text("ab" * 32 + "\n")
    token.chmod(0o600)
    served = serve("--token-file", str(token))
    assert "token in" not in served.stdout  # nothing was created
    assert f"--token-file {token}" in served.stdout  # the try line names it
    ok = wirekit_exec(env, served.address, "-n", "--token-file", str(token), "--", "echo", "ok")
    assert (ok.returncode, ok.stdout) == (0, b"ok\n"), ok.stderr
    # Without it the client looks for the local automatic token, which this server
    # does not accept.
    bad = wirekit_exec(env, served.address, "-n", "--", "echo", "ok")
    assert bad.returncode == 1 and bad.stderr.count(b"\n") == 1


def test_shell_option_runs_command_lines(serve: Callable[..., Served], env: dict[str, str]) -> None:
    served = serve("--shell", "/bin/bash")
    done = wirekit_exec(env, served.address, "-n", "--", "echo ${BASH_VERSINFO[0]:-none}")
    assert done.returncode == 0 and done.stdout.strip().isdigit(), done


def test_max_sessions_queues_instead_of_failing(
    serve: Callable[..., Served], env: dict[str, str]
) -> None:
    served = serve("--max-sessions", "1", "--debug")  # --debug logs each command it gets
    holder = subprocess.Popen(
        ["wirekit", "exec", served.address, "--", "cat"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
        start_new_session=True,  # no controlling terminal to ask on
    )
    waiter = None
    try:
        wait_for(lambda: remote_pids(["cat"]), "the first command running")
        waiter = subprocess.Popen(
            ["wirekit", "exec", served.address, "-n", "--", "echo", "second"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
            start_new_session=True,  # no controlling terminal to ask on
        )
        wait_for(lambda: b"'echo', 'second'" in served.err, "the server getting the second")
        # A bounded negative check: for a while after the server got it, it must wait.
        until = time.monotonic() + 0.3
        while time.monotonic() < until:
            assert waiter.poll() is None
            time.sleep(0.02)
        assert holder.stdin is not None
        holder.stdin.close()  # the first command ends: the second starts
        assert holder.wait(WAIT) == 0
        assert waiter.wait(WAIT) == 0
        assert waiter.stdout is not None and waiter.stdout.read() == b"second\n"
    finally:
        for proc in (holder, waiter):
            if proc is not None:
                proc.kill()
                proc.wait()


def test_server_shutting_down_under_a_command_is_one_line_exit_1(
    serve: Callable[..., Served], env: dict[str, str]
) -> None:
    served = serve()
    argv = ["sleep", "100.5"]
    client = subprocess.Popen(
        ["wirekit", "exec", served.address, "-n", "--", *argv],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
        start_new_session=True,  # no controlling terminal to ask on
    )
    try:
        wait_for(lambda: remote_pids(argv), "the remote sleep running")
        served.proc.send_signal(signal.SIGTERM)
        wait_for(lambda: b"shutting down" in served.err, "the server shutting down")
        served.proc.send_signal(signal.SIGTERM)  # a second signal: no grace period
        assert client.wait(WAIT) == 1
        assert client.stderr is not None
        err = client.stderr.read()
        assert err.startswith(b"wirekit: ") and err.count(b"\n") == 1, err
        wait_for(lambda: not remote_pids(argv), "the remote sleep gone")
    finally:
        client.kill()
        client.wait()
