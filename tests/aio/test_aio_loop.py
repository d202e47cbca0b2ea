"""wirekit.aio.run picks uvloop when it is installed; WIREKIT_NO_UVLOOP=1 falls back."""

from __future__ import annotations

import asyncio

import pytest

import wirekit
from wirekit.aio.loop import loop_name


async def running_loop() -> asyncio.AbstractEventLoop:
    return asyncio.get_running_loop()


def test_run_uses_uvloop_when_installed(monkeypatch: pytest.MonkeyPatch) -> None:
    uvloop = pytest.importorskip("uvloop")
    monkeypatch.delenv("WIREKIT_NO_UVLOOP", raising=False)
    loop = wirekit.run(running_loop())
    assert isinstance(loop, uvloop.Loop)
    assert loop.is_closed(), "run() closes its loop"
    assert loop_name() == "uvloop"
    assert wirekit.aio.run is wirekit.run


def test_no_uvloop_variable_falls_back_to_the_stdlib_loop(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WIREKIT_NO_UVLOOP", "1")
    loop = wirekit.run(running_loop())
    assert type(loop).__module__.startswith("asyncio")
    assert isinstance(loop, asyncio.BaseEventLoop)
    assert loop_name() == "asyncio"


def test_run_returns_the_result_and_raises_the_error() -> None:
    async def answer() -> int:
        await asyncio.sleep(0)
        return 42

    async def fail() -> None:
        raise wirekit.ServiceError("no")

    assert wirekit.run(answer()) == 42
    with pytest.raises(wirekit.ServiceError, match="no"):
        wirekit.run(fail())
