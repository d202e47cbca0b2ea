"""The asyncio exec client: many concurrent commands on one connection.

One reader task per session routes frames to commands by channel; each
command's output is buffered only up to its window (exec.md §3), so a
command whose output nobody reads pauses on the server, not in memory here.
``run()`` collects output passively (no task per command).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from ...addr import Address
from ...aio.connection import Connection
from ...aio.secure import secure_connect
from ...busypoll import busy_poll_window
from ...errors import ConnectionClosed, ErrorCode, LocalProtocolError, RemoteProtocolError
from ...limits import DEFAULT_LIMITS, Limits
from ...proto import DataReceived, MessageReceived, WindowUpdate
from ...proto.exec import (
    DEFAULT_OUTPUT_WINDOW,
    EXEC_MESSAGES,
    STDIN_WINDOW,
    ChannelAllocator,
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
from ...proto.messages import Message
from .result import CommandRefused, Result, build_open, check_signal

__all__ = ["KEEPALIVE", "AsyncProcess", "AsyncSession", "OutputStream", "connect_async"]

#: Seconds between pings while commands run (below any sensible idle timeout).
KEEPALIVE = 60.0


class OutputStream:
    """stdout or stderr of an :class:`AsyncProcess`: ``async for chunk in
    proc.stdout`` or ``await proc.stdout.read()``. Taking bytes grants the
    server credit to send more."""

    def __init__(self, process: AsyncProcess, channel: int, window: int) -> None:
        self._process = process
        self.window = ReceiveWindow(channel, window)
        self._chunks: deque[bytes] = deque()
        self._eof = False
        self._waiter: asyncio.Future[None] | None = None
        self._collect: list[bytes] | None = None  # run(): keep everything, grant at once

    def _feed(self, data: bytes) -> None:
        self.window.receive(len(data))
        if self._collect is not None:
            self._collect.append(data)
            self._consumed(len(data))
        else:
            self._chunks.append(data)
        self._wake()

    def _end(self) -> None:
        self._eof = True
        self._wake()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _consumed(self, nbytes: int) -> None:
        increment = self.window.consume(nbytes)
        if increment:
            self._process._session._send_window(self.window.channel, increment)

    async def _wait(self) -> None:
        self._process._session._raise_if_lost()
        self._waiter = asyncio.get_running_loop().create_future()
        try:
            await self._waiter
        finally:
            self._waiter = None

    async def read_chunk(self) -> bytes:
        """The next chunk as it arrived; b"" at the end of the stream."""
        while not self._chunks:
            if self._eof:
                return b""
            await self._wait()
        chunk = self._chunks.popleft()
        self._consumed(len(chunk))
        return chunk

    async def read(self) -> bytes:
        """Everything until the end of the stream."""
        parts = []
        while chunk := await self.read_chunk():
            parts.append(chunk)
        return b"".join(parts)

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[bytes]:
        while chunk := await self.read_chunk():
            yield chunk


class AsyncProcess:
    """A command started with :meth:`AsyncSession.start`."""

    def __init__(self, session: AsyncSession, channel: int, window: int) -> None:
        self._session = session
        self.channel = channel
        self.pid: int | None = None
        #: Commands ahead of this one while the server's session limit is reached.
        self.queued: int | None = None
        #: Called with :attr:`queued` each time the server says the command waits
        #: (``wirekit exec`` tells a user at a terminal why nothing happens yet).
        self.on_queued: Callable[[int], None] | None = None
        self.stdout = OutputStream(self, channel, window)
        self.stderr = OutputStream(self, channel | 1, window)
        self._credit = SendCredit(STDIN_WINDOW)
        self._credit_waiter: asyncio.Future[None] | None = None
        self._exit: asyncio.Future[ExecExit] = asyncio.get_running_loop().create_future()
        self._stdin_closed = False

    # -- from the reader --------------------------------------------------------

    def _message(self, channel: int, message: Message) -> None:
        kind = type(message)
        if kind is ExecEof:
            (self.stdout if channel == self.channel else self.stderr)._end()
        elif kind is ExecExit:
            self._finish(message)
        elif kind is ExecStarted:
            self.pid = message.pid  # type: ignore[attr-defined]
            self.queued = None
        elif kind is ExecQueued:
            self.queued = message.position  # type: ignore[attr-defined]
            if self.on_queued is not None:
                self.on_queued(self.queued)
        elif kind is ExecRefused:
            refused = CommandRefused(message.code, message.reason)  # type: ignore[attr-defined]
            self._fail(refused)
        else:
            raise RemoteProtocolError(f"unexpected {kind.__name__} message from the server")

    def _finish(self, message: Message) -> None:
        self.stdout._end()
        self.stderr._end()
        if not self._exit.done():
            self._exit.set_result(message)  # type: ignore[arg-type]
        self._session._release(self.channel)
        self._wake_writer()

    def _fail(self, exc: BaseException) -> None:
        self.stdout._end()
        self.stderr._end()
        if not self._exit.done():
            self._exit.set_exception(exc)
            # Marked as seen: wait() still raises it, but a process nobody
            # waits for (the session was closed under it) logs nothing at exit.
            self._exit.exception()
        self._session._release(self.channel)
        self._wake_writer()

    def _grant(self, increment: int) -> None:
        self._credit.grant(increment)
        self._wake_writer()

    def _wake_writer(self) -> None:
        waiter = self._credit_waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    # -- the API ----------------------------------------------------------------

    @property
    def done(self) -> bool:
        return self._exit.done()

    async def write(self, data: bytes) -> None:
        """Send bytes to the command's stdin, waiting for credit as needed."""
        view = memoryview(data)
        limit = self._session.conn.proto.peer_max_frame_size or 65536
        while view:
            while not self._credit.credit and not self._exit.done():
                self._session._raise_if_lost()
                self._credit_waiter = asyncio.get_running_loop().create_future()
                await self._credit_waiter
            if self._exit.done():
                return  # the command ended; what it did not read is dropped
            size = min(len(view), self._credit.credit, limit)
            self._credit.take(size)
            self._session._send_data(bytes(view[:size]), self.channel)
            view = view[size:]
            await self._session.conn.drain()

    async def close_stdin(self) -> None:
        """End of stdin (the command reads EOF)."""
        if not self._stdin_closed and not self._exit.done():
            self._stdin_closed = True
            await self._session.conn.send_message(ExecEof(), self.channel)

    async def signal(self, name: str) -> None:
        """Send a signal ("INT", "TERM", ...) to the command's process group."""
        await self._control(ExecSignal(check_signal(name)))

    async def resize(self, rows: int, cols: int) -> None:
        """A pty command's terminal changed size."""
        await self._control(ExecResize(rows, cols))

    async def cancel(self) -> None:
        """Stop it: SIGTERM, then SIGKILL after the server's grace."""
        await self._control(ExecCancel())

    async def _control(self, message: Message) -> None:
        if not self._exit.done():
            await self._session.conn.send_message(message, self.channel)

    async def wait(self) -> ExecExit:
        """Wait for the end; returns the ExecExit (exit_code, signal, reason, cwd)."""
        return await asyncio.shield(self._exit)

    async def communicate(self, input: bytes | None = None) -> Result:
        """Send ``input``, close stdin, and collect all output until the end."""
        collected: tuple[list[bytes], list[bytes]] = ([], [])
        for stream, sink in zip((self.stdout, self.stderr), collected, strict=True):
            while stream._chunks:
                chunk = stream._chunks.popleft()
                sink.append(chunk)
                stream._consumed(len(chunk))
            stream._collect = sink
        if input:
            await self.write(input)
        await self.close_stdin()
        exit_message = await self.wait()
        out, err = collected
        return Result.from_exit(b"".join(out), b"".join(err), exit_message)


class AsyncSession:
    """An authenticated exec connection; ``async with await connect_async(...)``."""

    def __init__(self, conn: Connection, *, window: int = DEFAULT_OUTPUT_WINDOW) -> None:
        self.conn = conn
        self.window = window
        #: The session's working directory: where commands run when they name
        #: none; a shell command's last ``cd`` moves it. None = the server's default.
        self.cwd: str | None = None
        self._channels = ChannelAllocator()
        self._processes: dict[int, AsyncProcess] = {}
        self._lost: BaseException | None = None
        self._reader = asyncio.get_running_loop().create_task(self._read())
        self._keepalive: asyncio.Task[None] | None = None

    async def __aenter__(self) -> AsyncSession:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def close(self) -> None:
        """Close the connection; the server then ends any command still running."""
        for task in (self._reader, self._keepalive):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
        await self.conn.close()
        self._lost_all(ConnectionClosed(ErrorCode.NORMAL, "session closed"))

    async def start(
        self,
        cmd: str | Sequence[str],
        *,
        env: Mapping[str, str] | None = None,
        cwd: str | None = None,
        timeout: float | None = None,
        pty: Pty | None = None,
        window: int | None = None,
    ) -> AsyncProcess:
        """Start a command and return at once (streaming form). A ``str``
        runs through the server's shell, a sequence as argv; ``pty`` gives it
        a terminal. Raises CommandRefused (later, from wait()) if refused."""
        return await self._start(cmd, env=env, cwd=cwd, timeout=timeout, pty=pty, window=window)

    async def _start(
        self,
        cmd: str | Sequence[str],
        *,
        env: Mapping[str, str] | None = None,
        cwd: str | None = None,
        timeout: float | None = None,
        pty: Pty | None = None,
        window: int | None = None,
        no_stdin: bool = False,
    ) -> AsyncProcess:
        self._raise_if_lost()
        channel = self._channels.allocate()
        size = window or self.window
        process = AsyncProcess(self, channel, size)
        self._processes[channel] = process
        tracked = isinstance(cmd, str) and cwd is None
        request = build_open(
            cmd,
            env=env,
            cwd=cwd or self.cwd,
            timeout=timeout,
            pty=pty,
            track_cwd=tracked,
            window=size,
        )
        if tracked:
            process._exit.add_done_callback(self._track_cwd)
        if self._keepalive is None:
            self._keepalive = asyncio.get_running_loop().create_task(self._keep_alive())
        if no_stdin:
            # exec-open and exec-eof in one write: the server reads both at once.
            self.conn.proto.send_message(request, channel)
            await process.close_stdin()
        else:
            await self.conn.send_message(request, channel)
        return process

    async def _keep_alive(self) -> None:
        """The server's idle timeout counts bytes from the client only: while a
        command runs quietly, ping now and then so the connection is not idle."""
        while True:
            await asyncio.sleep(KEEPALIVE)
            if self._processes:
                with contextlib.suppress(ConnectionClosed, LocalProtocolError):
                    await self.conn.ping()

    def _track_cwd(self, future: asyncio.Future[ExecExit]) -> None:
        if not future.cancelled() and future.exception() is None:
            cwd = future.result().cwd
            if cwd is not None:
                self.cwd = cwd

    async def run(
        self,
        cmd: str | Sequence[str],
        *,
        input: bytes | None = None,
        env: Mapping[str, str] | None = None,
        cwd: str | None = None,
        timeout: float | None = None,
        check: bool = False,
    ) -> Result:
        """Run a command to the end and return its output and status.

        ``timeout`` is enforced by the server (SIGTERM, then SIGKILL): the
        Result then says ``reason="timeout"``. ``check=True`` raises
        CommandFailed unless it exited 0; a refused command raises
        CommandRefused."""
        process = await self._start(cmd, env=env, cwd=cwd, timeout=timeout, no_stdin=not input)
        result = await process.communicate(input)
        return result.check() if check else result

    # -- the reader ---------------------------------------------------------------

    async def _read(self) -> None:
        try:
            while True:
                for item in await self.conn.recv_batch():
                    self._dispatch(item)
        except RemoteProtocolError as exc:
            self.conn.abort(exc.code, str(exc))
            self._lost_all(exc)
        except ConnectionClosed as exc:
            self._lost_all(exc)

    def _dispatch(self, item: Any) -> None:
        kind = type(item)
        if kind is DataReceived:
            process = self._processes.get(item.channel & ~1)
            if process is None:
                raise RemoteProtocolError(f"DATA on channel {item.channel}, which is not open")
            (process.stderr if item.channel & 1 else process.stdout)._feed(item.data)
        elif kind is MessageReceived:
            process = self._processes.get(item.channel & ~1)
            if process is None:
                raise RemoteProtocolError(
                    f"{type(item.message).__name__} on channel {item.channel}, which is not open"
                )
            process._message(item.channel, item.message)
        elif kind is WindowUpdate:
            process = self._processes.get(item.channel)
            if process is not None:
                process._grant(item.increment)
        else:
            raise RemoteProtocolError(f"unexpected {kind.__name__} from an exec server")

    def _release(self, channel: int) -> None:
        if self._processes.pop(channel, None) is not None:
            self._channels.release(channel)

    def _lost_all(self, exc: BaseException) -> None:
        if self._lost is None:
            self._lost = exc
        for process in list(self._processes.values()):
            process._fail(self._lost)

    def _raise_if_lost(self) -> None:
        if self._lost is not None:
            raise self._lost
        if self.conn.closed:
            raise ConnectionClosed(ErrorCode.GOING_AWAY, "connection lost")

    def _send_data(self, data: bytes, channel: int) -> None:
        self.conn.write(data, channel)

    def _send_window(self, channel: int, increment: int) -> None:
        with contextlib.suppress(ConnectionClosed, LocalProtocolError):
            self.conn.write_window(channel, increment)


async def connect_async(
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
    window: int = DEFAULT_OUTPUT_WINDOW,
) -> AsyncSession:
    """Connect to ``wirekit serve exec`` and authenticate (key or token, found
    as :func:`wirekit.aio.secure.secure_connect` finds them); ``tls://``
    addresses pin the server's certificate. ``busy_poll`` is how long the
    client keeps polling after traffic instead of sleeping (seconds; None:
    :data:`wirekit.busypoll.DEFAULT_BUSY_POLL`, 0: never; exec.md §7.3).
    """
    busy_poll = busy_poll_window(busy_poll)  # a bad value fails before connecting
    conn = await secure_connect(
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
    return AsyncSession(conn, window=window)
