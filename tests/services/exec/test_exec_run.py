"""Running commands through the Python API, asyncio and blocking, over real
authenticated connections on 127.0.0.1."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

import wirekit.exec
from wirekit.errors import ConnectionClosed
from wirekit.exec import CommandFailed, CommandRefused


def test_run_returns_stdout_stderr_and_exit_code(arun: Any, exec_server: Any) -> None:
    server = exec_server()

    async def main() -> wirekit.exec.Result:
        async with await wirekit.exec.connect_async(server.addr, token_file=server.token_file) as s:
            return await s.run("echo out; echo err >&2; exit 3")

    result = arun(main())
    assert (result.stdout, result.stderr, result.exit_code) == (b"out\n", b"err\n", 3)
    assert result.signal is None and result.reason == "exit"


def test_output_that_is_not_utf8_passes_byte_for_byte(arun: Any, exec_server: Any) -> None:
    server = exec_server()
    every_byte = bytes(range(256)) * 3

    async def main() -> tuple[wirekit.exec.Result, wirekit.exec.Result]:
        async with await wirekit.exec.connect_async(server.addr, token_file=server.token_file) as s:
            out = await s.run(["cat"], input=every_byte)
            err = await s.run("cat >&2", input=every_byte)
            return out, err

    out, err = arun(main())
    assert out.stdout == every_byte and out.stderr == b""
    assert err.stderr == every_byte and err.stdout == b""


def test_stdin_larger_than_the_window_streams_through(arun: Any, exec_server: Any) -> None:
    server = exec_server()
    data = bytes(range(251)) * 20_000  # 5 MB, twenty times the stdin window

    async def main() -> wirekit.exec.Result:
        async with await wirekit.exec.connect_async(server.addr, token_file=server.token_file) as s:
            return await s.run(["cat"], input=data)

    assert arun(main()).stdout == data


def test_session_keeps_the_working_directory_across_commands(
    arun: Any, exec_server: Any, tmp_path: Any
) -> None:
    server = exec_server()
    (tmp_path / "sub").mkdir()

    async def main() -> list[bytes]:
        async with await wirekit.exec.connect_async(server.addr, token_file=server.token_file) as s:
            await s.run(f"cd {tmp_path}")
            first = (await s.run("pwd")).stdout
            exited = await s.run("cd sub; exit 3")  # an exit in the command still reports
            second = (await s.run(["pwd"])).stdout  # argv commands run there too
            return [first, exited.stdout, str(exited.exit_code).encode(), second]

    first, _, code, second = arun(main())
    assert first == f"{tmp_path}\n".encode()
    assert code == b"3"
    assert second == f"{tmp_path / 'sub'}\n".encode()


def test_argv_runs_without_a_shell(arun: Any, exec_server: Any) -> None:
    server = exec_server()

    async def main() -> bytes:
        async with await wirekit.exec.connect_async(server.addr, token_file=server.token_file) as s:
            return (await s.run(["echo", "$HOME", "a;b"])).stdout

    assert arun(main()) == b"$HOME a;b\n"


def test_env_and_cwd_are_applied(arun: Any, exec_server: Any, tmp_path: Any) -> None:
    server = exec_server()

    async def main() -> bytes:
        async with await wirekit.exec.connect_async(server.addr, token_file=server.token_file) as s:
            result = await s.run('echo "$GREETING"; pwd', env={"GREETING": "hé"}, cwd=str(tmp_path))
            return result.stdout

    assert arun(main()) == f"hé\n{tmp_path}\n".encode()


def test_death_by_signal_is_reported_by_name(arun: Any, exec_server: Any) -> None:
    server = exec_server()

    async def main() -> wirekit.exec.Result:
        async with await wirekit.exec.connect_async(server.addr, token_file=server.token_file) as s:
            return await s.run("kill -USR1 $$")

    result = arun(main())
    assert (result.exit_code, result.signal, result.reason) == (None, "USR1", "signal")
    with pytest.raises(CommandFailed, match="killed by SIGUSR1"):
        result.check()


def test_missing_program_is_refused_with_its_reason(arun: Any, exec_server: Any) -> None:
    server = exec_server()

    async def main() -> None:
        async with await wirekit.exec.connect_async(server.addr, token_file=server.token_file) as s:
            with pytest.raises(CommandRefused, match="cannot run no-such-program") as info:
                await s.run(["no-such-program"])
            assert info.value.code == "spawn-failed"
            assert (await s.run("true")).exit_code == 0  # the session goes on

    arun(main())


def test_streaming_process_reads_chunks_writes_stdin_and_signals(
    arun: Any, exec_server: Any
) -> None:
    server = exec_server()

    async def main() -> None:
        async with await wirekit.exec.connect_async(server.addr, token_file=server.token_file) as s:
            loop = 'while :; do read x; echo "<$x>"; done'
            proc = await s.start(f"trap 'echo got-int; exit 7' INT; echo ready; {loop}")
            assert await proc.stdout.read_chunk() == b"ready\n"
            await proc.write(b"one\n")
            assert await proc.stdout.read_chunk() == b"<one>\n"
            await proc.signal("INT")
            assert await proc.stdout.read() == b"got-int\n"
            exit_message = await proc.wait()
            assert exit_message.exit_code == 7
            assert proc.pid is not None

    arun(main())


def test_hundred_concurrent_commands_on_one_connection_all_succeed(
    arun: Any, exec_server: Any
) -> None:
    server = exec_server(max_sessions=8)  # most of them queue, none fails

    async def main() -> list[wirekit.exec.Result]:
        async with await wirekit.exec.connect_async(server.addr, token_file=server.token_file) as s:
            return await asyncio.gather(*(s.run(["echo", str(i)]) for i in range(100)))

    results = arun(main())
    assert [r.stdout for r in results] == [f"{i}\n".encode() for i in range(100)]
    assert all(r.exit_code == 0 for r in results)


def test_blocking_session_runs_commands_and_keeps_cwd(exec_server: Any, tmp_path: Any) -> None:
    server = exec_server()
    with wirekit.exec.connect(server.addr, token_file=server.token_file, timeout=10) as s:
        assert s.run(["cat"], input=b"x" * 600_000).stdout == b"x" * 600_000
        s.run(f"cd {tmp_path} && true")
        assert s.run("pwd").stdout == f"{tmp_path}\n".encode()
        result = s.run("echo e >&2; exit 4")
        assert (result.stderr, result.exit_code) == (b"e\n", 4)
        with pytest.raises(CommandRefused):
            s.run(["no-such-program"])
        proc = s.start('echo ready; read x; echo "$x"')
        assert proc.read_chunk() == ("stdout", b"ready\n")
        proc.write(b"back\n")
        assert proc.read_chunk() == ("stdout", b"back\n")
        assert proc.wait().exit_code == 0


def test_quiet_command_outlives_the_idle_timeout_thanks_to_keepalive(
    arun: Any, exec_server: Any, monkeypatch: Any
) -> None:
    from wirekit.limits import Limits
    from wirekit.services.exec import client

    server = exec_server(conn_limits=Limits(idle_timeout=0.4))
    monkeypatch.setattr(client, "KEEPALIVE", 0.1)

    async def main() -> int | None:
        async with await wirekit.exec.connect_async(server.addr, token_file=server.token_file) as s:
            return (await s.run(["sleep", "1"])).exit_code

    assert arun(main()) == 0
    with wirekit.exec.connect(server.addr, token_file=server.token_file) as s:
        assert s.run(["sleep", "1"]).exit_code == 0
    monkeypatch.setattr(client, "KEEPALIVE", 5.0)  # past the idle timeout: cut off
    with (
        wirekit.exec.connect(server.addr, token_file=server.token_file) as s,
        pytest.raises(ConnectionClosed, match="idle"),
    ):
        s.run(["sleep", "1"])
