"""``wirekit exec`` started with a standard descriptor closed (``<&-``, as cron
jobs and daemons do): the connection must not land on descriptor 0, where
stdin forwarding would read our own socket."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from test_cli_exec import WAIT, Served, isolated_env


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    return isolated_env(tmp_path)


@pytest.fixture
def served(env: dict[str, str]) -> Iterator[Served]:
    server = Served(["--listen", "127.0.0.1:0"], env)
    yield server
    server.stop()


def _exec_with_closed(fd: int, served: Served, env: dict[str, str], *cmd: str) -> Any:
    # The shell closes ``fd`` and then becomes wirekit (exec keeps it closed).
    return subprocess.run(
        ["sh", "-c", f'exec "$@" {fd}>&-', "sh", "wirekit", "exec", served.address, "--", *cmd],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        env=env,
        timeout=WAIT,
        start_new_session=True,
    )


def test_closed_stdin_reads_as_end_of_file(served: Served, env: dict[str, str]) -> None:
    done = _exec_with_closed(0, served, env, "cat; echo after-cat")
    assert (done.returncode, done.stdout, done.stderr) == (0, b"after-cat\n", b"")


def test_closed_stderr_still_runs_and_keeps_stdout(served: Served, env: dict[str, str]) -> None:
    done = _exec_with_closed(2, served, env, "echo out; echo err >&2; exit 3")
    assert (done.returncode, done.stdout) == (3, b"out\n")
