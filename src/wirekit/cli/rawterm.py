"""The local end of ``wirekit exec`` and ``wirekit shell``: stdin and stdout as
raw bytes, questions on /dev/tty, and for the shell the terminal's raw mode,
window size and SIGWINCH.

In raw mode every key goes to the remote PTY as a byte (Ctrl-C is 0x03,
Ctrl-D 0x04) and the remote side does the echoing and line editing, as with
``ssh -t``. A terminal left raw is unusable (no echo, no Ctrl-C), so the
saved mode is put back on every way out: normal exit, an exception, and
SIGTERM/SIGHUP (the caller's loop handlers turn those into a cancellation
that unwinds through the restore). An ``atexit`` hook is the last resort for an
interpreter that exits while the terminal is still raw.
"""

from __future__ import annotations

import atexit
import contextlib
import errno
import fcntl
import os
import select
import signal
import stat
import struct
import termios
from collections.abc import Callable, Iterator
from typing import Any

from ..neterrors import printable

__all__ = [
    "DEFAULT_SIZE",
    "READ_CHUNK",
    "InputReader",
    "RawTerminal",
    "ask_on_tty",
    "ensure_std_fds",
    "grow_pipe",
    "has_tty",
    "is_terminal",
    "on_resize",
    "window_size",
    "write_fd",
]

#: Bytes read from stdin at a time (big reads: the syscall count decides bulk speed).
READ_CHUNK = 256 * 1024
#: Pipe buffer asked for on stdin and stdout; F_SETPIPE_SZ is Linux's fcntl number.
PIPE_SIZE = 1024 * 1024
_F_SETPIPE_SZ = 1031

#: The size assumed when the terminal does not report one (the VT100's).
DEFAULT_SIZE = (24, 80)

# termios attribute indices (see termios(3)): iflag, oflag, cflag, lflag, ispeed, ospeed, cc.
_IFLAG, _OFLAG, _CFLAG, _LFLAG, _CC = 0, 1, 2, 3, 6


def is_terminal(fd: int) -> bool:
    """Whether ``fd`` is a terminal (and a valid descriptor)."""
    try:
        return os.isatty(fd)
    except OSError:
        return False


def ensure_std_fds() -> None:
    """Open /dev/null on any of descriptors 0-2 that is closed (``<&-``), as
    OpenSSH's sanitise_stdfd() does: otherwise the next descriptor opened (the
    event loop's, the connection) takes the free number, and stdin forwarding
    reads it or the remote output is written into it."""
    for fd in (0, 1, 2):
        try:
            os.fstat(fd)
        except OSError:
            null = os.open(os.devnull, os.O_RDWR)
            if null != fd:  # cannot happen when the lower ones are open; be sure
                os.dup2(null, fd)
                os.close(null)


def window_size(fd: int) -> tuple[int, int]:
    """``(rows, cols)`` of the terminal on ``fd``; :data:`DEFAULT_SIZE` when unknown
    (not a terminal, or a terminal that reports 0 x 0 such as a fresh serial line)."""
    try:
        packed = fcntl.ioctl(fd, termios.TIOCGWINSZ, b"\0" * 8)
    except OSError:
        return DEFAULT_SIZE
    rows, cols = struct.unpack("HHHH", packed)[:2]
    if rows == 0 or cols == 0:
        return DEFAULT_SIZE
    return rows, cols


def _raw(mode: list[Any]) -> list[Any]:
    """``mode`` changed as ``cfmakeraw(3)`` does: no echo, no line editing, no
    signal keys, no CR/NL translation, 8-bit bytes, reads return each byte."""
    new = list(mode)
    iflag = int(new[_IFLAG])
    iflag &= ~(
        termios.IGNBRK
        | termios.BRKINT
        | termios.PARMRK
        | termios.ISTRIP
        | termios.INLCR
        | termios.IGNCR
        | termios.ICRNL
        | termios.IXON
    )
    new[_IFLAG] = iflag
    new[_OFLAG] = int(new[_OFLAG]) & ~termios.OPOST
    cflag = int(new[_CFLAG]) & ~(termios.CSIZE | termios.PARENB)
    new[_CFLAG] = cflag | termios.CS8
    lflag = int(new[_LFLAG])
    new[_LFLAG] = lflag & ~(
        termios.ECHO | termios.ECHONL | termios.ICANON | termios.ISIG | termios.IEXTEN
    )
    cc = list(new[_CC])
    cc[termios.VMIN] = 1
    cc[termios.VTIME] = 0
    new[_CC] = cc
    return new


def ask_on_tty(prompt: str) -> bool:
    """Ask a yes/no question on the controlling terminal, as OpenSSH does for an
    unknown host key: stdin may be the data being sent (``tar c . | wirekit exec``),
    so the question and the answer go through /dev/tty. No terminal: no."""
    try:
        fd = os.open("/dev/tty", os.O_RDWR | os.O_NOCTTY)
    except OSError:
        return False
    try:
        question = f"wirekit: {printable(prompt)} (yes/no) "
        for _ in range(3):
            write_fd(fd, question.encode())
            # The terminal is in line mode: one read returns the typed line.
            answer = os.read(fd, 1024).decode(errors="replace").strip().lower()
            if answer in ("yes", "y"):
                return True
            if answer in ("no", "n", ""):
                return False
            question = "Please type 'yes' or 'no': "
        return False
    except OSError:
        return False
    finally:
        os.close(fd)


def has_tty() -> bool:
    """Whether this process has a controlling terminal to ask questions on."""
    try:
        os.close(os.open("/dev/tty", os.O_RDWR | os.O_NOCTTY))
    except OSError:
        return False
    return True


class InputReader:
    """Reads our stdin (or the terminal) in chunks without blocking the loop.

    Readiness comes from the loop (``add_reader``), then one ``os.read``
    takes what is there. The descriptor is never switched to non-blocking:
    stdin usually shares its open file with stdout and with the parent
    shell, which would then see EAGAIN. Regular files (``< file``) cannot be
    polled and never block for long, so they are read directly.
    """

    def __init__(self, fd: int, chunk: int = READ_CHUNK) -> None:
        self.fd = fd
        self.chunk = chunk
        self._pollable = not stat.S_ISREG(os.fstat(fd).st_mode)

    async def read(self) -> bytes:
        """The next chunk, or ``b""`` at end of input (a hung-up terminal included)."""
        if self._pollable:
            self._pollable = await self._wait_readable()
        try:
            return os.read(self.fd, self.chunk)
        except OSError as exc:
            if exc.errno == errno.EIO:  # the terminal went away
                return b""
            raise

    async def _wait_readable(self) -> bool:
        import asyncio

        loop = asyncio.get_running_loop()
        ready = loop.create_future()

        def wake() -> None:
            if not ready.done():
                ready.set_result(None)

        try:
            loop.add_reader(self.fd, wake)
        except (OSError, ValueError):
            return False  # not pollable after all (e.g. /dev/null under epoll)
        try:
            await ready
        finally:
            loop.remove_reader(self.fd)
        return True


def write_fd(fd: int, data: bytes | memoryview) -> None:
    """Write all of ``data`` to ``fd``, as bytes (never decoded), blocking.

    Blocking is the back-pressure: while stdout is full the loop does not
    read from the connection, so the server stops granting credit and the
    remote command blocks on its pipe (exec.md, flow control). A descriptor
    another process made non-blocking is waited on instead of failing.
    """
    view = memoryview(data)
    while view:
        try:
            view = view[os.write(fd, view) :]
        except BlockingIOError:
            select.select([], [fd], [])


def grow_pipe(fd: int, size: int = PIPE_SIZE) -> None:
    """Give a pipe on ``fd`` a bigger buffer (Linux, best effort): with the
    default 64 KiB, bulk output through ``| cat`` costs many small writes."""
    try:
        if stat.S_ISFIFO(os.fstat(fd).st_mode):
            fcntl.fcntl(fd, _F_SETPIPE_SZ, size)
    except OSError:
        pass  # not Linux, or above /proc/sys/fs/pipe-max-size for this user


class RawTerminal:
    """A context manager that puts the terminal on ``fd`` in raw mode and restores it.

    Entering twice is a no-op; :meth:`restore` may be called any number of
    times (the ``atexit`` hook and ``__exit__`` both call it).
    """

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self._saved: list[Any] | None = None

    @property
    def active(self) -> bool:
        return self._saved is not None

    def enter(self) -> None:
        if self._saved is not None:
            return
        saved: list[Any] = termios.tcgetattr(self.fd)
        # TCSADRAIN, not TCSAFLUSH: what the user typed while we connected is
        # kept and goes to the remote shell (as OpenSSH does).
        termios.tcsetattr(self.fd, termios.TCSADRAIN, _raw(saved))
        self._saved = saved
        atexit.register(self.restore)

    def restore(self) -> None:
        saved, self._saved = self._saved, None
        if saved is None:
            return
        atexit.unregister(self.restore)
        # TCSADRAIN: let the remote's last output reach the screen before echo returns.
        with contextlib.suppress(OSError, termios.error):
            termios.tcsetattr(self.fd, termios.TCSADRAIN, saved)

    def __enter__(self) -> RawTerminal:
        self.enter()
        return self

    def __exit__(self, *exc: object) -> None:
        self.restore()


@contextlib.contextmanager
def on_resize(callback: Callable[[], None]) -> Iterator[None]:
    """Call ``callback`` on the running loop whenever SIGWINCH arrives (the
    terminal window changed size) while the block runs."""
    import asyncio

    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGWINCH, callback)
    try:
        yield
    finally:
        loop.remove_signal_handler(signal.SIGWINCH)
