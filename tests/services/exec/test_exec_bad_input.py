"""Bad requests over real connections: refusals keep the session, protocol
violations end it with one clear error; allow mode runs no shell."""

from __future__ import annotations

from typing import Any

import pytest

import wirekit.exec
from wirekit.aio.secure import secure_connect
from wirekit.errors import ConnectionClosed, ErrorCode
from wirekit.exec import CommandRefused, ExecLimits
from wirekit.proto.exec import EXEC_MESSAGES, STDIN_WINDOW, ExecOpen


def test_oversized_command_and_environment_are_refused_and_the_session_goes_on(
    arun: Any, exec_server: Any
) -> None:
    server = exec_server(limits=ExecLimits(max_command_bytes=1000, max_env_bytes=200))

    async def main() -> None:
        async with await wirekit.exec.connect_async(server.addr, token_file=server.token_file) as s:
            assert (await s.run(["echo", "x" * 994])).stdout == b"x" * 994 + b"\n"  # 1000 bytes
            with pytest.raises(CommandRefused, match="1001 bytes exceeds limit of 1000") as info:
                await s.run(["echo", "x" * 995])
            assert info.value.code == "too-large"
            with pytest.raises(CommandRefused, match="exceeds limit of 200 bytes"):
                await s.run("true", env={"BIG": "v" * 300})
            assert (await s.run("echo ok")).stdout == b"ok\n"

    arun(main())


def test_open_channels_at_the_limit_run_and_one_more_is_refused(
    arun: Any, exec_server: Any
) -> None:
    server = exec_server(limits=ExecLimits(max_channels=3))

    async def main() -> None:
        async with await wirekit.exec.connect_async(server.addr, token_file=server.token_file) as s:
            held = [await s.start(["cat"]) for _ in range(3)]
            with pytest.raises(CommandRefused, match="3 commands open on this connection"):
                await s.run("true")
            for proc in held:
                await proc.close_stdin()
                assert (await proc.wait()).exit_code == 0
            assert (await s.run("true")).exit_code == 0

    arun(main())


async def _raw(server: Any) -> Any:
    return await secure_connect(
        server.addr, service="exec", token_file=server.token_file, message_types=EXEC_MESSAGES
    )


def test_open_on_an_odd_channel_is_a_protocol_error(arun: Any, exec_server: Any) -> None:
    server = exec_server()

    async def main() -> ConnectionClosed:
        conn = await _raw(server)
        await conn.send_message(ExecOpen(argv=["true"]), 3)
        with pytest.raises(ConnectionClosed) as info:
            await conn.recv()
        return info.value

    error = arun(main())
    assert error.code == ErrorCode.PROTOCOL_ERROR
    assert "even channels" in error.reason


def test_stdin_past_the_granted_window_is_a_protocol_error(arun: Any, exec_server: Any) -> None:
    server = exec_server(max_sessions=1)

    async def main() -> ConnectionClosed:
        conn = await _raw(server)
        await conn.send_message(ExecOpen(argv=["sleep", "10"]), 2)
        await conn.send_message(ExecOpen(argv=["cat"]), 4)  # queued: its stdin stays buffered
        conn.write(b"x" * STDIN_WINDOW, 4)  # at the limit: accepted
        conn.write(b"y", 4)  # one byte past it
        with pytest.raises(ConnectionClosed) as info:
            while True:
                await conn.recv()
        return info.value

    error = arun(main())
    assert error.code == ErrorCode.PROTOCOL_ERROR
    assert "exceed the 0 bytes of window granted" in error.reason


def test_allow_mode_runs_listed_programs_without_a_shell(arun: Any, exec_server: Any) -> None:
    server = exec_server(allow=("echo", "cat"))

    async def main() -> None:
        async with await wirekit.exec.connect_async(server.addr, token_file=server.token_file) as s:
            assert (await s.run("echo 'a  b' c")).stdout == b"a  b c\n"
            assert (await s.run(["cat"], input=b"in")).stdout == b"in"
            for command, why in [
                ("ls", "'ls' is not an allowed program"),
                ("echo a; ls", "shell metacharacters"),
                ("/bin/echo x", "is not an allowed program"),
            ]:
                with pytest.raises(CommandRefused, match=why):
                    await s.run(command)
            with pytest.raises(CommandRefused, match="PATH is not allowed"):
                await s.run("echo x", env={"PATH": "/tmp"})
            assert (await s.run("echo x", env={"LANG": "C"})).stdout == b"x\n"

    arun(main())
