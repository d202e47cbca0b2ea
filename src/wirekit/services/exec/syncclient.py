"""The blocking exec client: one command at a time over a plain socket.

It drives the same sans-I/O objects as the asyncio client (proto/exec.py:
windows, credit, channels) over :class:`wirekit.sync.client.Connection`;
there is no event loop and no thread. Its output window is small (256 KiB
per stream) so that the server never holds enough of its output to stop
reading the socket while this client is still sending stdin: a blocking
client that writes and reads in turn cannot deadlock.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ...addr import Address
from ...busypoll import busy_poll_window
from ...errors import ConnectionClosed, ErrorCode, LocalProtocolError, RemoteProtocolError
from ...limits import DEFAULT_LIMITS, Limits
from ...proto import DataReceived, MessageReceived, WindowUpdate
from ...proto.exec import (
    EXEC_MESSAGES,
    FIRST_CHANNEL,
    STDIN_WINDOW,
    ExecCancel,
    ExecEof,
    ExecExit,
    ExecQueued,
    ExecRefused,
    ExecResize,
    ExecSignal,
    ExecStarted,
    Pty,
    ReceiveWindow,
    SendCredit,
)
from ...proto.messages import Message, Ping, Pong
from ...sync.client import Connection
from ...sync.secure import secure_connect
from . import client as _client
from .result import CommandRefused, Result, build_open, check_signal

__all__ = ["SYNC_WINDOW", "Process", "Session", "connect"]

#: Output window of the blocking client, per stream (module docstring).
SYNC_WINDOW = 256 * 1024


class Process:
    """A running command (blocking): ``write``, ``read_chunk``, ``signal``,
    ``resize``, ``wait``. A terminal front end selects on :meth:`fileno`
    and stdin, and calls ``read_chunk(timeout=0)`` when the socket is readable."""

    def __init__(self, session: Session, channel: int, window: int) -> None:
        self._session = session
        self.channel = channel
        self.pid: int | None = None
        self.queued: int | None = None
        self.exit: ExecExit | None = None
        self._windows = (ReceiveWindow(channel, window), ReceiveWindow(channel | 1, window))
        self._ended = [False, False]
        self._credit = SendCredit(STDIN_WINDOW)
        self._chunks: list[tuple[str, bytes]] = []
        self._stdin_closed = False
        self._refused: CommandRefused | None = None

    @property
    def done(self) -> bool:
        return self.exit is not None or self._refused is not None

    def fileno(self) -> int:
        return self._session.conn.fileno()

    # -- events ----------------------------------------------------------------

    def _event(self, item: Any) -> None:
        kind = type(item)
        if kind is DataReceived:
            stream = item.channel & 1
            self._windows[stream].receive(len(item.data))
            self._chunks.append(("stderr" if stream else "stdout", item.data))
        elif kind is WindowUpdate:
            if item.channel == self.channel:
                self._credit.grant(item.increment)
        elif kind is MessageReceived:
            self._message(item.channel, item.message)
        else:
            raise RemoteProtocolError(f"unexpected {kind.__name__} from an exec server")

    def _message(self, channel: int, message: Message) -> None:
        kind = type(message)
        if kind is ExecEof:
            self._ended[channel & 1] = True
        elif kind is ExecExit:
            self.exit = message  # type: ignore[assignment]
            self._session._release(self)
        elif kind is ExecStarted:
            self.pid, self.queued = message.pid, None  # type: ignore[attr-defined]
        elif kind is ExecQueued:
            self.queued = message.position  # type: ignore[attr-defined]
        elif kind is ExecRefused:
            self._refused = CommandRefused(message.code, message.reason)  # type: ignore[attr-defined]
            self._session._release(self)
        else:
            raise RemoteProtocolError(f"unexpected {kind.__name__} message from the server")

    def _consumed(self, stream: str, nbytes: int) -> None:
        index = stream == "stderr"
        increment = self._windows[index].consume(nbytes)
        if increment and not self.done:
            self._session.conn.send_window(self._windows[index].channel, increment)

    # -- the API ----------------------------------------------------------------

    def read_chunk(self, timeout: float | None = -1.0) -> tuple[str, bytes] | None:
        """The next piece of output as ("stdout" | "stderr", bytes); None once
        the command has ended (then see ``exit``). ``timeout`` (default: the
        session's; None waits for ever) raises TimeoutError; 0 only looks at
        what has arrived."""
        while not self._chunks:
            if self._refused is not None:
                raise self._refused
            if self.exit is not None:
                return None
            self._session._pump(timeout)
        stream, data = self._chunks.pop(0)
        self._consumed(stream, len(data))
        return stream, data

    def write(self, data: bytes) -> None:
        """Send stdin bytes, reading output meanwhile while out of credit."""
        view = memoryview(data)
        limit = self._session.conn.proto.peer_max_frame_size or 65536
        while view and not self.done:
            if not self._credit.credit:
                self._session._pump(-1.0)
                continue
            size = min(len(view), self._credit.credit, limit)
            self._credit.take(size)
            self._session.conn.send(bytes(view[:size]), self.channel)
            view = view[size:]

    def close_stdin(self) -> None:
        if not self._stdin_closed and not self.done:
            self._stdin_closed = True
            self._session.conn.send_message(ExecEof(), self.channel)

    def signal(self, name: str) -> None:
        """Send "INT", "TERM", ... to the command's process group."""
        self._control(ExecSignal(check_signal(name)))

    def resize(self, rows: int, cols: int) -> None:
        self._control(ExecResize(rows, cols))

    def cancel(self) -> None:
        self._control(ExecCancel())

    def _control(self, message: Message) -> None:
        if not self.done:
            self._session.conn.send_message(message, self.channel)

    def communicate(self, input: bytes | None = None) -> Result:
        """Send ``input``, close stdin, collect everything until the end."""
        out: list[bytes] = []
        err: list[bytes] = []
        if input:
            self.write(input)
        self.close_stdin()
        while (chunk := self.read_chunk()) is not None:
            (err if chunk[0] == "stderr" else out).append(chunk[1])
        assert self.exit is not None
        return Result.from_exit(b"".join(out), b"".join(err), self.exit)

    def wait(self) -> ExecExit:
        """Wait for the end, dropping output not read yet."""
        while self.read_chunk() is not None:
            pass
        assert self.exit is not None
        return self.exit


class Session:
    """A blocking exec connection: ``with wirekit.exec.connect(addr) as s: s.run("ls")``."""

    def __init__(self, conn: Connection, *, window: int = SYNC_WINDOW) -> None:
        self.conn = conn
        self.window = window
        #: Working directory kept across commands (see AsyncSession.cwd).
        self.cwd: str | None = None
        self._current: Process | None = None
        self._tracked = False

    def __enter__(self) -> Session:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        self.conn.close()

    def start(
        self,
        cmd: str | Sequence[str],
        *,
        env: Mapping[str, str] | None = None,
        cwd: str | None = None,
        timeout: float | None = None,
        pty: Pty | None = None,
    ) -> Process:
        """Start a command; one at a time on a blocking session."""
        return self._start(cmd, env=env, cwd=cwd, timeout=timeout, pty=pty)

    def _start(
        self,
        cmd: str | Sequence[str],
        *,
        env: Mapping[str, str] | None = None,
        cwd: str | None = None,
        timeout: float | None = None,
        pty: Pty | None = None,
        no_stdin: bool = False,
    ) -> Process:
        if self._current is not None:
            raise LocalProtocolError("a blocking session runs one command at a time")
        tracked = isinstance(cmd, str) and cwd is None
        request = build_open(
            cmd,
            env=env,
            cwd=cwd or self.cwd,
            timeout=timeout,
            pty=pty,
            track_cwd=tracked,
            window=self.window,
        )
        process = Process(self, FIRST_CHANNEL, self.window)
        self._current = process
        self._tracked = tracked
        if no_stdin:
            # exec-open and exec-eof in one write: the server reads both at once.
            self.conn.proto.send_message(request, FIRST_CHANNEL)
            process.close_stdin()
        else:
            self.conn.send_message(request, FIRST_CHANNEL)
        return process

    def run(
        self,
        cmd: str | Sequence[str],
        *,
        input: bytes | None = None,
        env: Mapping[str, str] | None = None,
        cwd: str | None = None,
        timeout: float | None = None,
        check: bool = False,
    ) -> Result:
        """Run a command to the end; see :meth:`AsyncSession.run`."""
        process = self._start(cmd, env=env, cwd=cwd, timeout=timeout, no_stdin=not input)
        result = process.communicate(input)
        return result.check() if check else result

    def _release(self, process: Process) -> None:
        if self._current is process:
            self._current = None
            if process.exit is not None and process.exit.cwd is not None and self._tracked:
                self.cwd = process.exit.cwd

    def _pump(self, timeout: float | None = -1.0) -> None:
        """Read once and route what arrived to the current command. Waiting
        without a timeout, it pings every ``client.KEEPALIVE`` seconds so that a quiet
        command does not run into the server's idle timeout."""
        process = self._current
        wait = self.conn.timeout if timeout == -1.0 else timeout
        try:
            while True:
                try:
                    items = self.conn.recv_batch(_client.KEEPALIVE if wait is None else timeout)
                    break
                except TimeoutError:
                    if wait is not None:
                        raise
                    self.conn.send_message(Ping(0))
        except ConnectionClosed as exc:
            if process is not None and exc.code == ErrorCode.NORMAL:
                raise ConnectionClosed(ErrorCode.GOING_AWAY, "server closed the session") from None
            raise
        for item in items:
            if type(item) is Pong:
                continue  # the answer to a keepalive ping
            if process is None:
                raise RemoteProtocolError(f"unexpected {type(item).__name__}: no command is open")
            try:
                process._event(item)
            except RemoteProtocolError as exc:
                self.conn.close(exc.code, str(exc))
                raise


def connect(
    addr: str | Address,
    *,
    identity: Path | None = None,
    token_file: Path | None = None,
    accept_new: bool = False,
    known_hosts: Path | None = None,
    tls: bool = False,
    limits: Limits = DEFAULT_LIMITS,
    timeout: float | None = None,
    busy_poll: float | None = None,
) -> Session:
    """Connect to ``wirekit serve exec`` and authenticate, blocking.
    ``timeout`` bounds connecting and every later read or write;
    ``busy_poll`` as for :func:`connect_async`."""
    busy_poll = busy_poll_window(busy_poll)  # a bad value fails before connecting
    conn = secure_connect(
        addr,
        service="exec",
        identity=identity,
        token_file=token_file,
        accept_new=accept_new,
        known_hosts=known_hosts,
        tls=tls,
        limits=limits,
        timeout=timeout,
        message_types=EXEC_MESSAGES,
    )
    conn.set_busy_poll(busy_poll)
    return Session(conn)
