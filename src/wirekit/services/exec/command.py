"""One command on the server: its process, pipes, windows and timers.

Everything here runs in event-loop callbacks (``add_reader``/``add_writer``
on the pipes, a pidfd for the exit): no task per command and no thread, so
a ``true`` costs little more than its spawn. The connection-wide parts
(sending, the drain wait, the session slots) are the :class:`Host`'s.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
from collections import deque
from enum import Enum
from typing import Protocol

from ...errors import RemoteProtocolError
from ...proto.exec import (
    STDIN_WINDOW,
    ExecEof,
    ExecExit,
    ExecOpen,
    ExecRefused,
    ExecStarted,
    ReceiveWindow,
    SendCredit,
)
from ...proto.messages import Message
from .process import ChildProcess, SpawnError, SpawnSpec, spawn
from .pty import resize, spawn_pty

__all__ = ["Command", "CommandState", "Host"]

log = logging.getLogger("wirekit.exec")


class CommandState(Enum):
    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"


class Host(Protocol):
    """What a command needs from its connection (server.py's ExecConnection)."""

    loop: asyncio.AbstractEventLoop
    chunk: int
    kill_grace: float
    closed: bool

    def send_data(self, data: bytes, channel: int) -> None: ...
    def send_window(self, channel: int, increment: int) -> None: ...
    def send_message(self, message: Message, channel: int) -> None: ...
    def write_paused(self) -> bool: ...
    def wait_drain(self, stream: OutStream) -> None: ...
    def command_done(self, command: Command) -> None: ...
    def process_ended(self, command: Command) -> None: ...


class OutStream:
    """Moves one output pipe (stdout, stderr or a pty master) to a channel,
    never past the client's credit: a client that stops reading stops this
    reader, the pipe fills and the command blocks (exec.md §3)."""

    __slots__ = ("channel", "command", "credit", "done", "fd", "reading")

    def __init__(self, command: Command, fd: int | None, channel: int, window: int) -> None:
        self.command = command
        self.fd = fd
        self.channel = channel
        self.credit = SendCredit(window)
        self.done = fd is None
        self.reading = False

    def resume(self) -> None:
        host = self.command.host
        if not (self.done or self.reading or host.closed) and self.credit.credit:
            self.reading = True
            host.loop.add_reader(self.fd, self._readable)  # type: ignore[arg-type]

    def pause(self) -> None:
        if self.reading:
            self.reading = False
            self.command.host.loop.remove_reader(self.fd)  # type: ignore[arg-type]

    def _readable(self) -> None:
        host = self.command.host
        if host.write_paused():
            self.pause()
            host.wait_drain(self)
            return
        try:
            data = os.read(self.fd, min(self.credit.credit, host.chunk))  # type: ignore[arg-type]
        except BlockingIOError:
            return
        except OSError:
            data = b""  # EIO: a pty master whose slave side is closed
        if not data:
            self.finish()
            return
        self.credit.take(len(data))
        host.send_data(data, self.channel)
        if not self.credit.credit:
            self.pause()

    def grant(self, increment: int) -> None:
        self.credit.grant(increment)
        self.resume()

    def finish(self) -> None:
        """End of the stream: tell the client, then see if the command is done."""
        self.pause()
        if self.done:
            return
        self.done = True
        if not self.command.host.closed:
            self.command.host.send_message(ExecEof(), self.channel)
        self.command.maybe_done()


class Command:
    """One ExecOpen from queueing to ExecExit."""

    def __init__(self, host: Host, channel: int, request: ExecOpen, spec: SpawnSpec) -> None:
        self.host = host
        self.channel = channel
        self.request = request
        self.spec = spec
        self.state = CommandState.QUEUED
        self.child: ChildProcess | None = None
        self.stdin_window = ReceiveWindow(channel, STDIN_WINDOW)
        self._stdin: deque[memoryview] = deque()
        self._stdin_eof = False
        self._writing = False
        self.streams: list[OutStream] = []
        self.reason: str | None = None  # set by a timeout or a cancel
        self._timers: list[asyncio.TimerHandle] = []

    # -- starting --------------------------------------------------------------

    def start(self) -> bool:
        """Spawn; False (and ExecRefused sent) when it could not start."""
        request, host = self.request, self.host
        try:
            if request.pty is not None:
                child = spawn_pty(self.spec, request.pty.rows, request.pty.cols)
            else:
                child = spawn(self.spec)
        except SpawnError as exc:
            self.state = CommandState.DONE
            host.send_message(ExecRefused("spawn-failed", str(exc)), self.channel)
            host.command_done(self)
            return False
        self.child = child
        self.state = CommandState.RUNNING
        window = request.window
        self.streams = [
            OutStream(self, child.stdout, self.channel, window),
            OutStream(self, child.stderr, self.channel | 1, window),
        ]
        host.send_message(ExecStarted(child.pid), self.channel)
        host.loop.add_reader(child.pidfd, self._exited)
        for stream in self.streams:
            if stream.done:
                host.send_message(ExecEof(), stream.channel)  # a pty has no stderr
            stream.resume()
        if request.timeout is not None:
            self._timers.append(host.loop.call_later(request.timeout, self.stop, "timeout"))
        self._write_stdin()
        return True

    # -- stdin ---------------------------------------------------------------

    def stdin_data(self, data: bytes) -> None:
        """DATA from the client; raises RemoteProtocolError past the window."""
        self.stdin_window.receive(len(data))
        if self._stdin_eof:
            raise RemoteProtocolError(f"stdin DATA on channel {self.channel} after its end")
        if self.child is not None and self.child.stdin is None:
            self._granted(len(data))  # stdin already closed: discard, keep the client going
            return
        if data:
            self._stdin.append(memoryview(data))
            self._write_stdin()

    def stdin_eof(self) -> None:
        self._stdin_eof = True
        self._write_stdin()

    def _granted(self, nbytes: int) -> None:
        increment = self.stdin_window.consume(nbytes)
        if increment and not self.host.closed:
            self.host.send_window(self.channel, increment)

    def _write_stdin(self) -> None:
        child = self.child
        if child is None or child.stdin is None:
            return
        queue, fd = self._stdin, child.stdin
        while queue:
            try:
                n = os.write(fd, queue[0])
            except BlockingIOError:
                break
            except OSError:  # EPIPE: the command closed its stdin
                self._close_stdin()
                self._granted(sum(len(v) for v in queue))
                queue.clear()
                return
            head = queue[0]
            if n == len(head):
                queue.popleft()
            else:
                queue[0] = head[n:]
            self._granted(n)
        self._want_writable(bool(queue))
        if not queue and self._stdin_eof and not child.is_pty:
            self._close_stdin()  # a pty keeps its master: closing it would hang up

    def _want_writable(self, want: bool) -> None:
        child = self.child
        if child is None or child.stdin is None or want == self._writing:
            return
        self._writing = want
        if want:
            self.host.loop.add_writer(child.stdin, self._write_stdin)
        else:
            self.host.loop.remove_writer(child.stdin)

    def _close_stdin(self) -> None:
        child = self.child
        if child is None or child.stdin is None:
            return
        self._want_writable(False)
        if not child.is_pty:
            fd, child.stdin = child.stdin, None
            os.close(fd)

    # -- control -----------------------------------------------------------------

    def signal(self, signum: int) -> None:
        if self.child is not None:
            self.child.signal_group(signum)

    def resize(self, rows: int, cols: int) -> None:
        if self.child is not None and self.child.is_pty and self.child.stdout >= 0:
            resize(self.child.stdout, rows, cols)

    def stop(self, reason: str) -> None:
        """Timeout, cancel or disconnect: SIGTERM (and SIGHUP on a pty, which
        an interactive shell obeys), then SIGKILL after the grace (exec.md §4)."""
        if self.state is not CommandState.RUNNING or self.child is None:
            return
        if self.reason is None:
            self.reason = reason
        if self.child.is_pty:
            self.child.signal_group(signal.SIGHUP)
        self.child.signal_group(signal.SIGTERM)
        self._timers.append(
            self.host.loop.call_later(self.host.kill_grace, self.signal, signal.SIGKILL)
        )

    # -- ending ----------------------------------------------------------------

    def _exited(self) -> None:
        child = self.child
        assert child is not None
        if not child.reap():
            return
        self.host.loop.remove_reader(child.pidfd)
        child.close_pidfd()
        self.host.process_ended(self)
        self._close_stdin()
        self._stdin.clear()
        for timer in self._timers:
            timer.cancel()
        self._timers.clear()
        self.maybe_done()

    def maybe_done(self) -> None:
        child = self.child
        if self.state is not CommandState.RUNNING or child is None or child.returncode is None:
            return
        if not all(stream.done for stream in self.streams):
            return
        self.state = CommandState.DONE
        cwd = child.read_cwd()
        child.close_fds()
        if not self.host.closed:
            self.host.send_message(self.exit_message(child, cwd), self.channel)
        self.host.command_done(self)

    def exit_message(self, child: ChildProcess, cwd: str | None) -> ExecExit:
        code = child.returncode
        assert code is not None
        if code >= 0:
            return ExecExit(code, None, False, cwd, self.reason or "exit")
        try:
            name = signal.Signals(-code).name.removeprefix("SIG")
        except ValueError:
            name = str(-code)
        return ExecExit(None, name, child.core_dumped, cwd, self.reason or "signal")

    def abandon(self) -> None:
        """The connection is gone: stop reading output and end the process."""
        for stream in self.streams:
            stream.pause()
            stream.done = True
        self._close_stdin()
        self.stop("disconnected")

    def force_kill(self) -> bool:
        """Last resort when the owner is cancelled: SIGKILL and reap now.
        True when the process was still running (its slot is then freed)."""
        child = self.child
        self.state = CommandState.DONE
        for stream in self.streams:
            stream.pause()
        for timer in self._timers:
            timer.cancel()
        if child is None:
            return False
        alive = child.returncode is None
        if child.pidfd >= 0:
            with contextlib.suppress(Exception):
                self.host.loop.remove_reader(child.pidfd)
        self._want_writable(False)
        child.kill_and_reap()
        child.close_pidfd()
        child.close_fds()
        return alive
