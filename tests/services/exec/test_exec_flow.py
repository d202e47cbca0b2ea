"""Flow control: a slow reader pauses its own command on the server (memory
bounded) and does not stall the other channels; every byte still arrives."""

from __future__ import annotations

import asyncio
import hashlib
import time
from typing import Any

import wirekit.exec

GiB = 1 << 30
LINE = b"wirekit flow-control test line, 64 bytes long, all the same....\n"
assert len(LINE) == 64 and GiB % (1024 * len(LINE)) == 0


def test_slow_reader_on_one_channel_does_not_stall_another(arun: Any, exec_server: Any) -> None:
    server = exec_server()

    async def main() -> tuple[int, float]:
        async with await wirekit.exec.connect_async(
            server.addr, token_file=server.token_file, window=256 * 1024
        ) as s:
            stalled = await s.start("head -c 50000000 /dev/zero")
            await asyncio.sleep(0)  # its output fills its window and stops there
            start = time.monotonic()
            for i in range(50):
                assert (await s.run(["echo", str(i)])).stdout == f"{i}\n".encode()
            took = time.monotonic() - start
            assert not stalled.done  # paused by flow control, not finished
            total = 0
            async for chunk in stalled.stdout:
                total += len(chunk)
            assert (await stalled.wait()).exit_code == 0
            return total, took

    total, took = arun(main())
    assert total == 50_000_000
    assert took < 5


def test_gigabyte_to_a_slow_reader_keeps_server_memory_bounded(
    arun: Any, server_process: Any, token_file: Any, probe: Any
) -> None:
    proc, addr = server_process()
    expected = hashlib.sha256()
    count = GiB // len(LINE)
    for _ in range(count // 1024):
        expected.update(LINE * 1024)

    async def main() -> tuple[int, str, int, int]:
        async with await wirekit.exec.connect_async(addr, token_file=token_file) as s:
            await s.run("true")
            base = probe.rss_of(proc.pid)
            cmd = f"yes '{LINE[:-1].decode()}' | head -c {count * len(LINE)}"
            running = await s.start(cmd)
            peak = base
            digest = hashlib.sha256()
            total = 0
            slow_until = time.monotonic() + 1.0
            while time.monotonic() < slow_until:  # slow: a chunk every 20 ms for a second
                chunk = await running.stdout.read_chunk()
                digest.update(chunk)
                total += len(chunk)
                peak = max(peak, probe.rss_of(proc.pid))
                await asyncio.sleep(0.02)
            async for chunk in running.stdout:  # then drain fast
                digest.update(chunk)
                total += len(chunk)
            peak = max(peak, probe.rss_of(proc.pid))
            assert (await running.wait()).exit_code == 0
            return total, digest.hexdigest(), peak - base, base

    total, digest, growth, base = arun(main(), timeout=60)
    assert total == count * len(LINE)
    assert digest == expected.hexdigest()
    assert growth < 16 * 1024 * 1024, f"server RSS grew by {growth} bytes from {base}"
