"""The local terminal handling of ``wirekit shell`` on a real pseudo-terminal pair:
raw mode on and off, restore on an exception and more than once, window size."""

from __future__ import annotations

import asyncio
import fcntl
import os
import signal
import struct
import termios
from collections.abc import Iterator

import pytest

from wirekit.cli.rawterm import DEFAULT_SIZE, RawTerminal, is_terminal, on_resize, window_size


@pytest.fixture
def pty_pair() -> Iterator[tuple[int, int]]:
    master, slave = os.openpty()
    yield master, slave
    os.close(master)
    os.close(slave)


def _set_size(fd: int, rows: int, cols: int) -> None:
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))


def test_raw_mode_turns_off_echo_lines_and_signal_keys(pty_pair: tuple[int, int]) -> None:
    master, slave = pty_pair
    before = termios.tcgetattr(slave)
    assert before[3] & termios.ICANON and before[3] & termios.ECHO and before[3] & termios.ISIG
    with RawTerminal(slave) as term:
        assert term.active
        mode = termios.tcgetattr(slave)
        assert not mode[3] & (termios.ICANON | termios.ECHO | termios.ISIG | termios.IEXTEN)
        assert not mode[1] & termios.OPOST
        assert not mode[0] & (termios.ICRNL | termios.IXON)
        # Ctrl-C and Ctrl-D arrive as bytes, not as a signal or an end of file.
        os.write(master, b"\x03\x04x")
        assert os.read(slave, 16) == b"\x03\x04x"
    assert not term.active
    assert termios.tcgetattr(slave) == before


def test_restored_when_the_block_raises(pty_pair: tuple[int, int]) -> None:
    _, slave = pty_pair
    before = termios.tcgetattr(slave)
    with pytest.raises(RuntimeError), RawTerminal(slave):
        raise RuntimeError("boom")
    assert termios.tcgetattr(slave) == before


def test_restore_is_idempotent_and_enter_twice_keeps_the_first_mode(
    pty_pair: tuple[int, int],
) -> None:
    _, slave = pty_pair
    before = termios.tcgetattr(slave)
    term = RawTerminal(slave)
    term.enter()
    term.enter()  # must not save the raw mode as "the mode to restore"
    term.restore()
    term.restore()
    assert termios.tcgetattr(slave) == before


def test_window_size_reads_the_terminal_and_defaults_elsewhere(
    pty_pair: tuple[int, int],
) -> None:
    master, slave = pty_pair
    _set_size(master, 40, 120)
    assert window_size(slave) == (40, 120)
    _set_size(master, 0, 0)
    assert window_size(slave) == DEFAULT_SIZE
    r, w = os.pipe()
    try:
        assert window_size(r) == DEFAULT_SIZE
        assert not is_terminal(r)
    finally:
        os.close(r)
        os.close(w)
    assert is_terminal(slave)
    assert not is_terminal(9999)


def test_on_resize_calls_back_on_sigwinch() -> None:
    async def main() -> int:
        seen = asyncio.Event()
        calls = []

        def resized() -> None:
            calls.append(1)
            seen.set()

        with on_resize(resized):
            os.kill(os.getpid(), signal.SIGWINCH)
            async with asyncio.timeout(5):
                await seen.wait()
        return len(calls)

    assert asyncio.run(main()) == 1
    # The handler is gone afterwards: the default action (ignore) is back.
    assert signal.getsignal(signal.SIGWINCH) in (signal.SIG_DFL, signal.SIG_IGN)
