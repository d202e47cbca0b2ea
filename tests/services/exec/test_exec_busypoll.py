"""Busy polling in the exec clients (wirekit.busypoll, exec.md §7.3), against
a server in its own process: while a command's answer is due the client
polls instead of sleeping, and once traffic stops it sleeps again."""

from __future__ import annotations

import asyncio
import resource
import time
from pathlib import Path
from typing import Any

import pytest

import wirekit.exec


def sleeps() -> int:
    """How often this thread has slept (voluntary context switches)."""
    return resource.getrusage(resource.RUSAGE_THREAD).ru_nvcsw


@pytest.fixture(autouse=True)
def two_cpus(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("os.cpu_count", lambda: 2)  # as on a one-CPU CI runner too


def test_blocking_client_polls_for_quick_answers_and_sleeps_without(
    server_process: Any, token_file: Path
) -> None:
    _, addr = server_process()
    counts = {}
    for window in (1.0, 0.0):  # a second is far longer than `true` takes
        with wirekit.exec.connect(addr, token_file=token_file, busy_poll=window) as session:
            session.run("true")
            before = sleeps()
            for _ in range(20):
                assert session.run("echo hi").stdout == b"hi\n"
            counts[window] = sleeps() - before
    assert counts[1.0] <= 2, counts  # answered while polling
    assert counts[0.0] >= 20, counts  # one sleep per answer


def test_blocking_client_stops_polling_when_traffic_stops(
    server_process: Any, token_file: Path
) -> None:
    _, addr = server_process()
    with wirekit.exec.connect(addr, token_file=token_file, busy_poll=0.05) as session:
        start = time.thread_time()
        assert session.run("sleep 0.6").exit_code == 0
        cpu = time.thread_time() - start
    assert cpu < 0.3, cpu  # polled for 0.05 s, then slept through the rest


def test_async_client_polls_for_quick_answers_and_sleeps_without(
    arun: Any, server_process: Any, token_file: Path
) -> None:
    _, addr = server_process()

    async def count(window: float) -> int:
        async with await wirekit.exec.connect_async(
            addr, token_file=token_file, busy_poll=window
        ) as session:
            await session.run("true")
            before = sleeps()
            for _ in range(20):
                assert (await session.run("echo hi")).stdout == b"hi\n"
            return sleeps() - before

    polled, slept = arun(count(1.0)), arun(count(0.0))
    assert polled <= 2, polled
    assert slept >= 20, slept


def test_async_client_stops_polling_when_traffic_stops(
    arun: Any, server_process: Any, token_file: Path
) -> None:
    _, addr = server_process()

    async def main() -> float:
        async with await wirekit.exec.connect_async(
            addr, token_file=token_file, busy_poll=0.05
        ) as session:
            start = time.thread_time()
            results = await asyncio.gather(session.run("sleep 0.6"), asyncio.sleep(0.6))
            assert results[0].exit_code == 0
            return time.thread_time() - start

    assert arun(main()) < 0.3


def test_a_bad_window_fails_before_connecting(token_file: Path) -> None:
    with pytest.raises(ValueError, match="between 0 and 1 seconds"):
        wirekit.exec.connect("127.0.0.1:9", token_file=token_file, busy_poll=1.5)
    with pytest.raises(ValueError, match="between 0 and 1 seconds"):
        asyncio.run(wirekit.exec.connect_async("127.0.0.1:9", token_file=token_file, busy_poll=-1))
