"""Shell commands that run without their shell (a simple word list naming a
program), and the batching of a command's last messages (docs/exec.md §7):
the results must be those the shell would give."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any

import pytest

import wirekit.exec
from wirekit.exec import CommandRefused
from wirekit.services.exec.process import direct_argv

ENV = {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": "/"}


@pytest.mark.parametrize(
    ("command", "expected"),
    [
        ("true", ["true"]),
        ("ls -l /tmp", ["ls", "-l", "/tmp"]),
        ("  seq\t3  ", ["seq", "3"]),
        ("dd if=/dev/zero count=1", ["dd", "if=/dev/zero", "count=1"]),
        ("true x", None),  # the builtin, not the program, takes arguments
        ("echo hi", None),  # a builtin
        ("cd /tmp", None),
        ("X=1 env", None),  # an assignment
        ("ls *.py", None),  # globbing
        ("ls $HOME", None),  # expansion
        ("ls 'a b'", None),  # quoting
        ("ls ~", None),
        ("ls; true", None),
        ("ls\ntrue", None),
        ("ls # comment", None),
        ("no-such-program-here", None),  # the shell reports it
        ("", None),
    ],
)
def test_direct_argv_accepts_only_what_the_shell_would_exec(
    command: str, expected: list[str] | None
) -> None:
    argv = direct_argv("/bin/sh", command, ENV, "/")
    if expected is None:
        assert argv is None
    else:
        assert argv is not None and argv[:-1] == expected
        assert os.path.isabs(argv[-1]) and os.access(argv[-1], os.X_OK)


@pytest.mark.parametrize(
    ("shell", "env"),
    [
        ("/bin/zsh", ENV),  # not a shell known to exec a lone command
        ("/bin/bash", {**ENV, "BASH_ENV": "/tmp/rc"}),  # bash would source it first
        ("/bin/bash", {**ENV, "BASH_FUNC_ls%%": "() { :; }"}),  # an exported function
        ("/bin/sh", {"HOME": "/"}),  # no PATH
        ("/bin/sh", {**ENV, "PATH": ":/usr/bin"}),  # PATH searches the cwd
    ],
)
def test_direct_argv_leaves_other_shells_and_environments_to_the_shell(
    shell: str, env: dict[str, str]
) -> None:
    assert direct_argv(shell, "ls -l", env, "/") is None


def test_a_simple_command_is_the_started_process_itself(
    arun: Any, exec_server: Any, private_home: Path
) -> None:
    """``readlink /proc/self`` prints its own pid: the pid of exec-started, so no
    shell forked it; the session's directory is reported as for a shell."""
    server = exec_server()

    async def main() -> tuple[int | None, bytes, str | None, bytes]:
        async with await wirekit.exec.connect_async(server.addr, token_file=server.token_file) as s:
            proc = await s.start("readlink /proc/self")
            out = await proc.stdout.read()
            await proc.wait()
            builtin = await s.run("type true")
            return proc.pid, out, s.cwd, builtin.stdout

    pid, out, cwd, builtin = arun(main())
    assert out == f"{pid}\n".encode()
    assert cwd == str(private_home)
    assert b"builtin" in builtin  # builtins still run in the shell


def test_what_cannot_run_directly_gets_the_shell_s_own_answer(
    arun: Any, exec_server: Any, tmp_path: Path
) -> None:
    server = exec_server()
    script = tmp_path / "no_interpreter_line"
    script.write_text("echo from-script\n")
    script.chmod(0o755)

    async def main() -> tuple[wirekit.exec.Result, wirekit.exec.Result]:
        async with await wirekit.exec.connect_async(server.addr, token_file=server.token_file) as s:
            missing = await s.run("no-such-program-here --flag")
            plain = await s.run(str(script))  # exec fails (ENOEXEC): the shell runs it
            return missing, plain

    missing, plain = arun(main())
    assert missing.exit_code == 127 and b"not found" in missing.stderr
    assert (plain.exit_code, plain.stdout) == (0, b"from-script\n")


def test_a_missing_directory_is_refused_as_before(arun: Any, exec_server: Any) -> None:
    server = exec_server()

    async def main() -> None:
        async with await wirekit.exec.connect_async(server.addr, token_file=server.token_file) as s:
            await s.run("true", cwd="/nonexistent-dir")

    with pytest.raises(CommandRefused) as info:
        arun(main())
    assert info.value.code == "spawn-failed"
    assert "cannot change to directory /nonexistent-dir" in info.value.reason


def test_output_written_before_the_pipes_are_watched_arrives_whole(exec_server: Any) -> None:
    """3 MB fills the pipe before the server watches it (SETTLE); 300 kB fits and
    is read at the exit; the blocking client's 256 KiB window applies to both."""
    server = exec_server()
    with wirekit.exec.connect(server.addr, token_file=server.token_file, timeout=10) as s:
        big = s.run("head -c 3000000 /dev/zero")
        small = s.run("head -c 300000 /dev/zero")
        lines = s.run("seq 3")
    assert big.stdout == bytes(3_000_000) and big.exit_code == 0
    assert small.stdout == bytes(300_000) and small.exit_code == 0
    assert lines.stdout == b"1\n2\n3\n"


def test_a_stream_closed_early_ends_before_its_command(arun: Any, exec_server: Any) -> None:
    """exec-eof is held only briefly for the exit (EOF_HOLD): a command that
    closes its stdout and goes on running ends that stream first."""
    server = exec_server()

    async def main() -> tuple[bytes, bool, int | None]:
        async with await wirekit.exec.connect_async(server.addr, token_file=server.token_file) as s:
            proc = await s.start("echo early; exec >&-; sleep 1")
            out = await asyncio.wait_for(proc.stdout.read(), 5)
            running = not proc.done
            status = await proc.wait()
            return out, running, status.exit_code

    out, running, code = arun(main())
    assert out == b"early\n" and running and code == 0
