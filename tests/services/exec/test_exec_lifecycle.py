"""Process lifecycle: process groups, SIGTERM then SIGKILL on disconnect,
timeout and cancel, no orphans and no zombies, and commands under a pty."""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
import time
from typing import Any

import pytest

import wirekit.exec
from wirekit.exec import Pty

CLIENT = """
import sys, wirekit.exec
s = wirekit.exec.connect(sys.argv[1], token_file=sys.argv[2])
p = s.start(["sleep", "100"])
while p.pid is None:
    s._pump()
print(p.pid, flush=True)
p.wait()
"""


def test_client_killed_during_sleep_100_leaves_no_sleep(exec_server: Any, probe: Any) -> None:
    server = exec_server(kill_grace=1.0)
    client = subprocess.Popen(
        [sys.executable, "-c", CLIENT, server.addr, str(server.token_file)],
        stdout=subprocess.PIPE,
    )
    try:
        assert client.stdout is not None
        pid = int(client.stdout.readline())
        assert not probe.gone(pid)
        client.kill()  # SIGKILL: the client gets no chance to say anything
        client.wait()
        probe.wait_for(
            lambda: probe.gone(pid) and probe.group_gone(pid),
            timeout=5,
            what="the remote sleep to go",
        )
    finally:
        client.kill()
        client.wait()


def test_pty_program_that_never_exits_is_killed_when_the_connection_drops(
    arun: Any, exec_server: Any, probe: Any
) -> None:
    server = exec_server(kill_grace=0.3)
    stubborn = "trap '' HUP TERM INT; echo ready; while :; do sleep 1; done"

    async def main() -> int:
        session = await wirekit.exec.connect_async(server.addr, token_file=server.token_file)
        proc = await session.start(stubborn, pty=Pty())
        assert b"ready" in await proc.stdout.read_chunk()
        assert proc.pid is not None
        session.conn._transport.abort()  # type: ignore[union-attr]  # the connection drops
        return proc.pid

    pid = arun(main())
    started = time.monotonic()
    probe.wait_for(
        lambda: probe.gone(pid) and probe.group_gone(pid), timeout=5, what="the pty program to go"
    )
    assert time.monotonic() - started < 4


def test_timeout_sends_sigterm_then_sigkill_after_the_grace(
    arun: Any, exec_server: Any, probe: Any
) -> None:
    server = exec_server(kill_grace=0.3)

    async def main() -> tuple[wirekit.exec.Result, wirekit.exec.Result, float]:
        async with await wirekit.exec.connect_async(server.addr, token_file=server.token_file) as s:
            polite = await s.run(["sleep", "100"], timeout=0.2)
            start = time.monotonic()
            stubborn = await s.run("trap '' TERM; sleep 100 & wait; sleep 100", timeout=0.2)
            return polite, stubborn, time.monotonic() - start

    polite, stubborn, took = arun(main())
    assert (polite.exit_code, polite.signal, polite.reason) == (None, "TERM", "timeout")
    assert (stubborn.signal, stubborn.reason) == ("KILL", "timeout")
    assert 0.4 < took < 3


def test_cancel_stops_a_running_and_a_queued_command(
    arun: Any, exec_server: Any, probe: Any
) -> None:
    server = exec_server(max_sessions=1)

    async def main() -> None:
        async with await wirekit.exec.connect_async(server.addr, token_file=server.token_file) as s:
            running = await s.start(["sleep", "100"])
            queued = await s.start(["sleep", "100"])
            third = await s.start(["echo", "third"])
            await queued.cancel()
            assert (await queued.wait()).reason == "cancelled"
            assert queued.pid is None  # never started
            await running.cancel()
            exit_message = await running.wait()
            assert (exit_message.signal, exit_message.reason) == ("TERM", "cancelled")
            assert await third.stdout.read() == b"third\n"  # the slot went to the next one

    arun(main())


def test_background_children_are_killed_and_no_zombies_remain(
    arun: Any, exec_server: Any, probe: Any
) -> None:
    server = exec_server()

    async def main() -> int:
        async with await wirekit.exec.connect_async(server.addr, token_file=server.token_file) as s:
            result = await s.run("sleep 100 & echo $!")
            for _ in range(20):
                await s.run("true")
            return int(result.stdout)

    orphan = arun(main())
    probe.wait_for(lambda: probe.gone(orphan), timeout=5, what="the background sleep to go")
    probe.wait_for(lambda: not probe.zombies_of(os.getpid()), timeout=5, what="no zombie children")


def test_pty_gives_a_terminal_of_the_asked_size_and_resizes(
    arun: Any, exec_server: Any, probe: Any
) -> None:
    server = exec_server()

    async def main() -> bytes:
        async with await wirekit.exec.connect_async(server.addr, token_file=server.token_file) as s:
            proc = await s.start(["sh", "-i"], pty=Pty(rows=30, cols=100), env={"PS1": "$ "})
            await proc.write(b"tty; stty size; echo $TERM\n")
            seen = b""
            while b"30 100" not in seen or b"xterm" not in seen.split(b"30 100")[-1]:
                seen += await proc.stdout.read_chunk()
            await proc.resize(40, 120)
            await proc.write(b"stty size; exit 5\n")
            seen += await proc.stdout.read()
            assert (await proc.wait()).exit_code == 5
            return seen

    seen = arun(main())
    assert re.search(rb"/dev/pts/\d+", seen)
    assert b"40 120" in seen


def test_server_shutdown_kills_running_commands(
    arun: Any, exec_server: Any, loop_thread: Any, probe: Any
) -> None:
    server = exec_server(kill_grace=5.0)

    async def start() -> tuple[Any, int]:
        session = await wirekit.exec.connect_async(server.addr, token_file=server.token_file)
        proc = await session.start("trap '' TERM; echo up; sleep 100")
        assert await proc.stdout.read_chunk() == b"up\n"
        assert proc.pid is not None
        return session, proc.pid

    async def both() -> int:
        session, pid = await start()
        await asyncio.wrap_future(
            asyncio.run_coroutine_threadsafe(server.server.shutdown(grace=0.2), loop_thread.loop)
        )
        await session.close()
        return pid

    pid = arun(both())
    probe.wait_for(lambda: probe.gone(pid) and probe.group_gone(pid), timeout=5)


def test_closing_a_session_under_a_running_command_logs_nothing(
    arun: Any, exec_server: Any, caplog: Any
) -> None:
    """A process nobody waits for ends with its session: wait() raises, but no
    "exception was never retrieved" reaches the log when it is freed."""
    import gc
    import logging

    server = exec_server()

    async def main() -> None:
        for waited in (True, False):
            session = await wirekit.exec.connect_async(server.addr, token_file=server.token_file)
            proc = await session.start(["sleep", "5"])  # argv: no cwd tracking looks at it
            await session.close()
            if waited:
                with pytest.raises(wirekit.ConnectionClosed, match="session closed"):
                    await proc.wait()
            del proc, session

    with caplog.at_level(logging.ERROR, logger="asyncio"):
        arun(main())
        gc.collect()
    assert "never retrieved" not in caplog.text
