"""Requests that fail while a command is being started, and peer text in the
server's log: the connection, its other commands and the session slots stay
sound."""

from __future__ import annotations

import logging
from typing import Any

import pytest

import wirekit.exec
from wirekit.exec import CommandRefused, Pty
from wirekit.proto.messages import Message


@pytest.mark.parametrize("term", ["x\0y", "x\x1b[2J", "x" * 65])
def test_a_bad_terminal_name_is_refused_and_nothing_leaks(
    arun: Any, exec_server: Any, probe: Any, term: str
) -> None:
    """With one session slot held by ``sleep``, a bad pty request is refused,
    the slot count stays right (a new connection's command runs instead of
    queueing forever) and the ``sleep`` still dies with its connection."""
    server = exec_server(max_sessions=2, kill_grace=0.5)

    async def main() -> int:
        async with await wirekit.exec.connect_async(server.addr, token_file=server.token_file) as s:
            sleeper = await s.start(["sleep", "100"])
            bad = await s.start("true", pty=Pty(term=term))
            with pytest.raises(CommandRefused) as info:
                await bad.wait()
            assert info.value.code == "bad-request"
            assert "pty term must be 1 to 64" in info.value.reason
            assert (await s.run("echo still here")).stdout == b"still here\n"
            pid = sleeper.pid
        async with await wirekit.exec.connect_async(server.addr, token_file=server.token_file) as s:
            assert (await s.run("true", timeout=5)).exit_code == 0
        return pid

    pid = arun(main())
    probe.wait_for(lambda: probe.gone(pid), timeout=5, what="the sleep to go")


def test_a_pty_term_at_the_limit_runs(arun: Any, exec_server: Any) -> None:
    server = exec_server()

    async def main() -> bytes:
        async with await wirekit.exec.connect_async(server.addr, token_file=server.token_file) as s:
            proc = await s.start("echo $TERM", pty=Pty(term="x" * 64))
            out = b""
            async for chunk in proc.stdout:
                out += chunk
            await proc.wait()
            return out

    assert arun(main()).strip() == b"x" * 64


def test_an_internal_error_ends_only_that_connection_and_frees_its_slots(
    arun: Any, exec_server: Any, probe: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A defect while starting a command (simulated): the connection is closed
    with INTERNAL_ERROR and no traceback, its running command is killed, and
    neither its slot nor the failed command's is lost."""
    import wirekit.services.exec.command as command_module
    from wirekit.errors import ConnectionClosed, ErrorCode

    real_spawn = command_module.spawn

    def spawn(spec: Any) -> Any:
        if spec.argv[-1] == "boom":
            raise RuntimeError("a defect")
        return real_spawn(spec)

    monkeypatch.setattr(command_module, "spawn", spawn)
    server = exec_server(max_sessions=2, kill_grace=0.5)

    async def main() -> tuple[int, ConnectionClosed]:
        s = await wirekit.exec.connect_async(server.addr, token_file=server.token_file)
        sleeper = await s.start(["sleep", "100"])
        assert (await s.run("echo ok")).stdout == b"ok\n"
        with pytest.raises(ConnectionClosed) as info:
            await s.run(["echo", "boom"])
        await s.close()
        async with await wirekit.exec.connect_async(server.addr, token_file=server.token_file) as t:
            assert (await t.run("true", timeout=5)).exit_code == 0
            assert (await t.run("true", timeout=5)).exit_code == 0
        return sleeper.pid, info.value

    pid, closed = arun(main())
    assert closed.code == ErrorCode.INTERNAL_ERROR
    assert "defect" not in closed.reason
    probe.wait_for(lambda: probe.gone(pid), timeout=5, what="the sleep to go")


class _Forged(Message, frozen=True, tag="x\x1b[2J\nwirekit: exec: forged line"):
    """A message type the server does not know, named by a hostile client."""

    n: int


def test_peer_text_in_the_exec_log_is_escaped(
    arun: Any, exec_server: Any, probe: Any, caplog: pytest.LogCaptureFixture
) -> None:
    from wirekit.aio.secure import secure_connect
    from wirekit.errors import ConnectionClosed
    from wirekit.proto.exec import EXEC_MESSAGES

    server = exec_server()

    async def main() -> None:
        conn = await secure_connect(
            server.addr,
            service="exec",
            token_file=server.token_file,
            message_types=[*EXEC_MESSAGES, _Forged],
        )
        await conn.send_message(_Forged(1), 2)
        with pytest.raises(ConnectionClosed):
            while True:
                await conn.recv()

    def messages() -> list[str]:
        return [r.getMessage() for r in caplog.records if r.name == "wirekit.exec"]

    with caplog.at_level(logging.WARNING, logger="wirekit.exec"):
        arun(main())
        # The protocol layer closes the connection before the service's reader
        # wakes up and logs, in the server's thread: the client may see the
        # close first, so wait for the line rather than expect it already.
        probe.wait_for(
            lambda: any("broke the protocol" in m for m in messages()),
            timeout=5,
            what="the protocol error in the exec log",
        )
    messages = messages()
    assert all(m.isprintable() for m in messages), messages
