"""One command on the server: its process, pipes, windows and timers.

Everything here runs in event-loop callbacks (the host's ``watch`` on the
pipes and a pidfd for the exit, ``add_writer`` for stdin): no task per command and no thread, so
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
from collections.abc import Callable
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
from .process import SMALL_PIPE, ChildProcess, SpawnError, SpawnSpec, grow_pipe, spawn
from .pty import resize, spawn_pty

__all__ = ["Command", "CommandState", "Host"]

log = logging.getLogger("wirekit.exec")

#: Seconds an ended output stream's exec-eof waits for the process to exit, so
#: that both exec-eof and the exec-exit leave in one write (a command's pipes
#: close a moment before its exit is seen); longer-lived processes get it then.
EOF_HOLD = 0.02
#: Seconds a command's pipes go unwatched at its start: a command that ends
#: sooner costs one wake-up (its exit), its output is read then, and its
#: exec-started, exec-eofs and exec-exit leave in one write (exec.md §7).
SETTLE = 0.005


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
    def watch(self, fd: int, callback: Callable[[], None]) -> None: ...
    def unwatch(self, fd: int) -> None: ...
    def send_messages(self, messages: list[tuple[Message, int]]) -> None: ...
    def write_paused(self) -> bool: ...
    def wait_drain(self, stream: OutStream) -> None: ...
    def command_done(self, command: Command) -> None: ...
    def process_ended(self, command: Command) -> None: ...


class OutStream:
    """Moves one output pipe (stdout, stderr or a pty master) to a channel,
    never past the client's credit: a client that stops reading stops this
    reader, the pipe fills and the command blocks (exec.md §3)."""

    __slots__ = ("channel", "command", "credit", "done", "fd", "reading", "small")

    def __init__(
        self, command: Command, fd: int | None, channel: int, window: int, *, pipe: bool = True
    ) -> None:
        self.command = command
        self.small = pipe  # a pipe of the default size, grown once found full
        self.fd = fd
        self.channel = channel
        self.credit = SendCredit(window)
        self.done = fd is None
        self.reading = False

    def resume(self) -> None:
        host = self.command.host
        if not (self.done or self.reading or host.closed) and self.credit.credit:
            self.reading = True
            host.watch(self.fd, self.readable)  # type: ignore[arg-type]

    def pause(self) -> None:
        if self.reading:
            self.reading = False
            self.command.host.unwatch(self.fd)  # type: ignore[arg-type]

    def readable(self) -> None:
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
        if self.small and len(data) >= SMALL_PIPE:
            self.small = False
            grow_pipe(self.fd)  # type: ignore[arg-type]
        self.credit.take(len(data))
        self.command.announce()
        host.send_data(data, self.channel)
        if not self.credit.credit:
            self.pause()

    def grant(self, increment: int) -> None:
        self.credit.grant(increment)
        self.resume()

    def finish(self) -> None:
        """End of the stream: tell the client (with the exit when it follows
        soon, EOF_HOLD), then see if the command is done."""
        self.pause()
        if self.done:
            return
        self.done = True
        self.command.stream_ended(self.channel)


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
        self._eofs: list[int] = []  # ended streams whose exec-eof is held (EOF_HOLD)
        self._eof_timer: asyncio.TimerHandle | None = None
        self._settle_timer: asyncio.TimerHandle | None = None  # pipes not watched yet
        self._announced = False  # exec-started sent
        self._draining = False

    # -- starting --------------------------------------------------------------

    def start(self) -> bool:
        """Spawn; False (and ExecRefused sent) when it could not start."""
        request, host = self.request, self.host
        try:
            if request.pty is not None:
                child = spawn_pty(self.spec, request.pty.rows, request.pty.cols)
            else:
                child = spawn(self.spec)
        except (SpawnError, OSError) as exc:  # OSError: out of descriptors for pipes
            self.state = CommandState.DONE
            host.send_message(ExecRefused("spawn-failed", str(exc)), self.channel)
            host.command_done(self)
            return False
        self.child = child
        self.state = CommandState.RUNNING
        window = request.window
        pipes = not child.is_pty
        self.streams = [
            OutStream(self, child.stdout, self.channel, window, pipe=pipes),
            OutStream(self, child.stderr, self.channel | 1, window, pipe=pipes),
        ]
        host.watch(child.pidfd, self._exited)
        if request.pty is None:
            self._settle_timer = host.loop.call_later(SETTLE, self._settle)
        else:
            self.announce()
            host.send_message(ExecEof(), self.channel | 1)  # a pty has no stderr
            self.streams[0].resume()
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
            self.announce()
            self.host.send_window(self.channel, increment)

    def announce(self) -> None:
        """Send exec-started if not yet sent: it precedes anything else about
        the running command (exec.md §6.1)."""
        if not self._announced and self.child is not None:
            self._announced = True
            if not self.host.closed:
                self.host.send_message(ExecStarted(self.child.pid), self.channel)

    def _settle(self) -> None:
        """SETTLE later and still running: announce it and watch its pipes."""
        self._settle_timer = None
        self.announce()
        for stream in self.streams:
            stream.resume()

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
        self._close_stdin()
        self._stdin.clear()
        for timer in self._timers:
            timer.cancel()
        self._timers.clear()
        self._drain_output()
        self._end()
        # After the exit has left: this clean-up overlaps with its trip.
        self.host.unwatch(child.pidfd)
        child.close_pidfd()
        self.host.process_ended(self)

    def _drain_output(self) -> None:
        """At the exit, read what the pipes hold (and see their end) in this
        same turn; a pipe held open by a process that left the group, or
        with more than the window allows, goes on being watched."""
        if self._settle_timer is not None:
            self._settle_timer.cancel()
            self._settle_timer = None
        self._draining = True
        try:
            for stream in self.streams:
                stream.resume()
                if stream.reading:
                    stream.readable()
        finally:
            self._draining = False

    def stream_ended(self, channel: int) -> None:
        """An output stream is at its end: hold its exec-eof until the exit
        (or EOF_HOLD), so the last messages of a command leave together."""
        self._eofs.append(channel)
        if self._draining:
            return  # _exited sends everything at once
        child = self.child
        if child is None or child.returncode is not None or self.host.closed:
            self._end()
        elif self._eof_timer is None:
            self._eof_timer = self.host.loop.call_later(EOF_HOLD, self._end)

    def _end(self) -> None:
        """Send the held exec-eofs, and the exec-exit once everything ended."""
        if self._eof_timer is not None:
            self._eof_timer.cancel()
            self._eof_timer = None
        messages: list[tuple[Message, int]] = [(ExecEof(), channel) for channel in self._eofs]
        self._eofs.clear()
        if not self._announced and self.child is not None:
            self._announced = True
            messages.insert(0, (ExecStarted(self.child.pid), self.channel))
        child = self.child
        done = (
            self.state is CommandState.RUNNING
            and child is not None
            and child.returncode is not None
            and all(stream.done for stream in self.streams)
        )
        if done:
            assert child is not None
            self.state = CommandState.DONE
            messages.append((self.exit_message(child, child.read_cwd()), self.channel))
        if messages and not self.host.closed:
            self.host.send_messages(messages)
        if done:
            assert child is not None
            child.close_fds()
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
        if self._eof_timer is not None:
            self._eof_timer.cancel()
        if self._settle_timer is not None:
            self._settle_timer.cancel()
        if child is None:
            return False
        alive = child.returncode is None
        if child.pidfd >= 0:
            with contextlib.suppress(Exception):
                self.host.unwatch(child.pidfd)
        self._want_writable(False)
        child.kill_and_reap()
        child.close_pidfd()
        child.close_fds()
        return alive
