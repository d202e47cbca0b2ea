"""The exec server: commands on channels of authenticated connections.

:class:`ExecService` holds what all connections share (the options, the
session slots of ``max_sessions`` and their FIFO queue); one
:class:`ExecConnection` per connection reads its frames and routes them to
its commands (command.py). ``start_exec`` serves it through
:func:`wirekit.aio.secure.secure_serve`: exec never runs without
authentication. docs/exec.md describes the behaviour, its §3 the protocol.
"""

from __future__ import annotations

import asyncio
import contextlib
import fnmatch
import logging
import os
import shlex
import shutil
import signal
import ssl as ssl_module
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import msgspec

from ...addr import Address
from ...aio.connection import Connection
from ...aio.secure import Peer, SecureServer, ServerAuth, secure_serve
from ...errors import ConnectionClosed, ErrorCode, ListenError, RemoteProtocolError
from ...limits import DEFAULT_LIMITS, Limits
from ...neterrors import printable
from ...proto import ChannelEOF, DataReceived, MessageReceived, WindowUpdate
from ...proto.exec import (
    EXEC_MESSAGES,
    FIRST_CHANNEL,
    SIGNALS,
    ExecCancel,
    ExecEof,
    ExecExit,
    ExecLimits,
    ExecOpen,
    ExecQueued,
    ExecRefused,
    ExecResize,
    ExecSignal,
    check_open,
)
from ...proto.messages import Message
from .command import Command, CommandState, OutStream
from .loopio import FdWatcher
from .process import SpawnSpec, direct_argv

__all__ = ["ExecConnection", "ExecOptions", "ExecService", "exec_handler", "start_exec"]

log = logging.getLogger("wirekit.exec")

#: Characters refused in a command string in allow mode: a shell would give
#: them meaning, and allow mode runs no shell (exec.md §4.2).
SHELL_METACHARACTERS = frozenset(";&|<>()$`*?[]{}~#!\n\r\\")


@dataclass(frozen=True, slots=True)
class ExecOptions:
    """How the server runs commands (``wirekit serve exec`` flags)."""

    #: Shell for command strings (``--shell``), run as ``SHELL -c COMMAND``.
    shell: str = "/bin/sh"
    #: Programs allowed (``--allow``, names or absolute paths); empty = any command.
    allow: tuple[str, ...] = ()
    #: Commands running at once on the server (``--max-sessions``); more queue.
    max_sessions: int = 64
    #: Seconds between SIGTERM and SIGKILL on a timeout, cancel or disconnect.
    kill_grace: float = 2.0
    #: Working directory of commands that name none; None = the server user's home.
    cwd: str | None = None
    #: In allow mode, the only environment variables a client may set (patterns).
    allow_env: tuple[str, ...] = ("LANG", "LC_*", "TERM", "TZ")
    limits: ExecLimits = field(default_factory=ExecLimits)

    def __post_init__(self) -> None:
        if self.max_sessions < 1:
            raise ValueError(f"max_sessions must be at least 1, got {self.max_sessions}")
        if self.kill_grace < 0:
            raise ValueError(f"kill_grace must not be negative, got {self.kill_grace}")


class ExecService:
    """The exec service of one server: ``await service.handle(conn, peer)``."""

    def __init__(self, options: ExecOptions | None = None) -> None:
        self.options = options or ExecOptions()
        self.programs = resolve_allowed(self.options.allow)
        self.running = 0
        self.waiting: deque[Command] = deque()
        self.connections: set[ExecConnection] = set()
        self.home = self.options.cwd or str(Path.home())
        #: The environment commands start from, read once (os.environ decodes per access).
        self.base_env = dict(os.environ)

    async def handle(self, conn: Connection, peer: Peer) -> None:
        session = ExecConnection(self, conn, peer)
        self.connections.add(session)
        try:
            await session.run()
        finally:
            self.connections.discard(session)

    # -- session slots (max_sessions): excess commands queue, never fail ------------

    def admit(self, command: Command) -> None:
        if self.running < self.options.max_sessions:
            self._start(command)
            return
        self.waiting.append(command)
        command.host.send_message(ExecQueued(len(self.waiting) - 1), command.channel)

    def _start(self, command: Command) -> None:
        self.running += 1
        try:
            started = command.start()
        except BaseException:
            self.release(command)  # the slot must not leak with the error
            raise
        if not started:
            self.release(command)

    def release(self, _command: Command) -> None:
        """A slot is free: start the next waiting command (skipping cancelled ones)."""
        self.running -= 1
        while self.waiting and self.running < self.options.max_sessions:
            command = self.waiting.popleft()
            if command.state is CommandState.QUEUED and not command.host.closed:
                self._start(command)

    def unqueue(self, command: Command) -> bool:
        try:
            self.waiting.remove(command)
        except ValueError:
            return False
        return True

    # -- requests ---------------------------------------------------------------

    def spawn_spec(self, request: ExecOpen) -> SpawnSpec | ExecRefused:
        """How to run ``request``, or why it is refused."""
        refusal = check_open(request, self.options.limits)
        if refusal is not None:
            return refusal
        env = self.base_env.copy()
        argv: list[str]
        executable: str | None
        if self.programs:
            if request.argv is not None:
                argv = list(request.argv)
            else:
                words = split_allowed_command(request.command or "")
                if isinstance(words, ExecRefused):
                    return words
                argv = words
            executable = self.programs.get(argv[0])
            if executable is None:
                return ExecRefused("not-allowed", f"{argv[0]!r} is not an allowed program")
            for name in request.env:
                if not any(fnmatch.fnmatchcase(name, p) for p in self.options.allow_env):
                    return ExecRefused("not-allowed", f"environment variable {name} is not allowed")
            track = False
        elif request.argv is not None:
            argv, executable, track = list(request.argv), None, False
        else:
            argv, executable = [self.options.shell, "-c", request.command or ""], None
            track = request.track_cwd
        env.update(request.env)
        cwd = request.cwd or self.home
        env["PWD"] = cwd  # the shell keeps a logical path (symlinks) when it matches
        if request.pty is not None:
            env["TERM"] = request.pty.term
        spec = SpawnSpec(argv, executable, env, cwd, track)
        if request.command is not None and request.pty is None and not self.programs:
            return self._without_shell(spec, request.command)
        return spec

    def _without_shell(self, spec: SpawnSpec, command: str) -> SpawnSpec:
        """``sh -c 'make -j4'`` as ``make -j4`` when the shell would exec just
        that (process.direct_argv): one exec instead of two, and no EXIT trap
        to run for the working directory, which such a command cannot change
        (a path like ``/a/../b`` is left to the shell, which reports it its way)."""
        cwd = spec.cwd
        if cwd is None or not cwd.startswith("/") or os.path.normpath(cwd) != cwd:
            return spec
        argv = direct_argv(self.options.shell, command, spec.env, cwd)
        if argv is None:
            return spec
        program = argv.pop()
        return SpawnSpec(argv, program, spec.env, cwd, False, shell_spec=spec)

    def close(self) -> None:
        """Kill every command now (server shutdown after its grace)."""
        for session in list(self.connections):
            session.force_kill()


def resolve_allowed(allow: Iterable[str]) -> dict[str, str]:
    """Map each allowed name (or path) to the absolute program it runs,
    resolved once at start on the server's PATH: a client cannot change which
    file runs, since allow mode also refuses PATH in the environment."""
    programs: dict[str, str] = {}
    for name in allow:
        path = shutil.which(name)
        if path is None:
            raise ListenError(f"allowed program {name!r} not found (on PATH or as a file)")
        programs[name] = os.path.abspath(path)
    return programs


def split_allowed_command(command: str) -> list[str] | ExecRefused:
    """Allow mode: split a command string into words without a shell."""
    bad = sorted(set(command) & SHELL_METACHARACTERS)
    if bad:
        return ExecRefused(
            "not-allowed",
            f"shell metacharacters {''.join(bad)!r} are refused: allow mode runs no shell",
        )
    try:
        words = shlex.split(command)
    except ValueError as exc:
        return ExecRefused("bad-request", f"cannot split the command: {exc}")
    if not words:
        return ExecRefused("bad-request", "the command is empty")
    return words


class ExecConnection:
    """One authenticated connection: routes frames to commands by channel."""

    def __init__(self, service: ExecService, conn: Connection, peer: Peer) -> None:
        self.service = service
        self.conn = conn
        self.peer = peer
        self.loop = asyncio.get_running_loop()
        self.kill_grace = service.options.kill_grace
        self.commands: dict[int, Command] = {}
        self.closed = False
        self._blocked: list[OutStream] = []
        self._drainer: asyncio.Task[None] | None = None
        self._idle = asyncio.Event()
        self._idle.set()
        # DATA frames up to the peer's frame limit, read from the pipe in one go.
        self.chunk = min(conn.proto.peer_max_frame_size or 65536, 1024 * 1024)
        self._watcher = FdWatcher(self.loop)

    async def run(self) -> None:
        try:
            await self._serve()
        finally:
            self._watcher.close()

    async def _serve(self) -> None:
        try:
            while True:
                for item in await self.conn.recv_batch():
                    self.dispatch(item)
        except ConnectionClosed:
            pass
        except RemoteProtocolError as exc:
            log.warning(
                "exec: %s broke the protocol: %s",
                printable(self.peer.principal),
                printable(str(exc)),
            )
            self.conn.abort(exc.code, str(exc))
        except Exception:
            # A defect of ours: logged, the peer told no more than that, and the
            # connection's commands still wound down below (no orphans).
            log.exception("exec: internal error serving %s", printable(self.peer.principal))
            self.conn.abort(ErrorCode.INTERNAL_ERROR, "internal error")
        except asyncio.CancelledError:
            # Server shutdown, after its grace: no second grace, SIGKILL now.
            self.closed = True
            self.force_kill()
            raise
        await self._wind_down()

    async def _wind_down(self) -> None:
        """Disconnect: every command gets SIGTERM, then SIGKILL after the grace;
        return once all are reaped (a cancelled wait kills them at once)."""
        self.closed = True
        for command in list(self.commands.values()):
            if command.state is CommandState.QUEUED:
                self.service.unqueue(command)
                self.commands.pop(command.channel, None)
            else:
                command.abandon()
        if self._drainer is not None:
            self._drainer.cancel()
        try:
            async with asyncio.timeout(self.kill_grace + 5.0):
                await self._idle.wait()
        finally:
            self.force_kill()

    def force_kill(self) -> None:
        for command in list(self.commands.values()):
            if command.state is CommandState.QUEUED:
                self.service.unqueue(command)
            elif command.force_kill():
                self.process_ended(command)
            command.state = CommandState.DONE
            self.command_done(command)

    # -- Host interface for commands ----------------------------------------------

    def watch(self, fd: int, callback: Callable[[], None]) -> None:
        self._watcher.add(fd, callback)

    def unwatch(self, fd: int) -> None:
        self._watcher.remove(fd)

    def send_data(self, data: bytes, channel: int) -> None:
        self.conn.write(data, channel)

    def send_window(self, channel: int, increment: int) -> None:
        self.conn.write_window(channel, increment)

    def send_message(self, message: Message, channel: int) -> None:
        with contextlib.suppress(ConnectionClosed):
            self.conn.write_message(message, channel)

    def send_messages(self, messages: list[tuple[Message, int]]) -> None:
        """Several messages in one write (a command's last exec-eof and exec-exit)."""
        with contextlib.suppress(ConnectionClosed):
            self.conn.write_messages(messages)

    def write_paused(self) -> bool:
        return self.conn.write_paused

    def wait_drain(self, stream: OutStream) -> None:
        """Resume ``stream`` once the connection drains (one task for all)."""
        self._blocked.append(stream)
        if self._drainer is None:
            self._drainer = self.loop.create_task(self._drain())

    async def _drain(self) -> None:
        try:
            await self.conn.drain()
        except ConnectionClosed:
            return
        finally:
            self._drainer = None
        blocked, self._blocked = self._blocked, []
        for stream in blocked:
            stream.resume()

    def process_ended(self, command: Command) -> None:
        self.service.release(command)

    def command_done(self, command: Command) -> None:
        if self.commands.get(command.channel) is command:
            del self.commands[command.channel]
        if not self.commands:
            self._idle.set()

    # -- routing ------------------------------------------------------------------

    def dispatch(self, item: object) -> None:
        """One received frame; raises RemoteProtocolError for a broken peer."""
        kind = type(item)
        if kind is DataReceived:
            command = self.commands.get(item.channel)  # type: ignore[attr-defined]
            if command is not None and not item.channel & 1:  # type: ignore[attr-defined]
                command.stdin_data(item.data)  # type: ignore[attr-defined]
            # else: late stdin for a command that has exited (its ExecExit crossed it)
        elif kind is WindowUpdate:
            self._window(item.channel, item.increment)  # type: ignore[attr-defined]
        elif kind is MessageReceived:
            self._message(item.channel, item.message)  # type: ignore[attr-defined]
        elif kind is ChannelEOF:
            raise RemoteProtocolError("exec ends streams with exec-eof messages, not EOF frames")
        else:
            raise RemoteProtocolError("exec carries no data or messages on channel 0")

    def _window(self, channel: int, increment: int) -> None:
        command = self.commands.get(channel & ~1)
        if command is not None and command.streams:
            command.streams[channel & 1].grant(increment)

    def _message(self, channel: int, message: Message) -> None:
        if type(message) is ExecOpen:
            self._open(channel, message)
            return
        command = self.commands.get(channel)
        kind = type(message)
        if kind is ExecEof:
            if command is not None:
                command.stdin_eof()
        elif kind is ExecSignal:
            name = message.name  # type: ignore[attr-defined]
            if name not in SIGNALS:
                raise RemoteProtocolError(f"unknown signal name {name!r}")
            if command is not None:
                command.signal(signal.Signals[f"SIG{name}"])
        elif kind is ExecResize:
            if command is not None:
                command.resize(message.rows, message.cols)  # type: ignore[attr-defined]
        elif kind is ExecCancel:
            if command is not None:
                self._cancel(command)
        else:
            raise RemoteProtocolError(f"unexpected {kind.__name__} message from a client")

    def _open(self, channel: int, request: ExecOpen) -> None:
        if channel < FIRST_CHANNEL or channel & 1:
            raise RemoteProtocolError(
                f"exec-open on channel {channel}: commands open on even channels 2-65534"
            )
        if channel in self.commands:
            raise RemoteProtocolError(f"exec-open on channel {channel}, which is still open")
        limits = self.service.options.limits
        if len(self.commands) >= limits.max_channels:
            self.send_message(
                ExecRefused(
                    "too-many-channels",
                    f"{len(self.commands)} commands open on this connection, "
                    f"its limit of {limits.max_channels}",
                ),
                channel,
            )
            return
        spec = self.service.spawn_spec(request)
        if isinstance(spec, ExecRefused):
            self.send_message(spec, channel)
            return
        if request.window > limits.max_window:
            request = msgspec.structs.replace(request, window=limits.max_window)
        command = Command(self, channel, request, spec)
        self.commands[channel] = command
        self._idle.clear()
        log.debug("exec: %s runs %r on channel %d", self.peer.principal, spec.argv, channel)
        self.service.admit(command)

    def _cancel(self, command: Command) -> None:
        if command.state is CommandState.QUEUED and self.service.unqueue(command):
            command.state = CommandState.DONE
            self.send_message(ExecExit(None, None, False, None, "cancelled"), command.channel)
            self.command_done(command)
        else:
            command.stop("cancelled")


async def exec_handler(conn: Connection, peer: Peer, options: ExecOptions) -> None:
    """Serve one connection with a service of its own (its own session slots).

    A server serves all connections with one :class:`ExecService`
    (``start_exec`` does), so that ``max_sessions`` bounds the whole server."""
    await ExecService(options).handle(conn, peer)


async def start_exec(
    addr: str | Address,
    *,
    auth: ServerAuth,
    options: ExecOptions | None = None,
    ssl: ssl_module.SSLContext | None = None,
    insecure: bool = False,
    limits: Limits = DEFAULT_LIMITS,
) -> SecureServer:
    """Start the exec service on ``addr`` behind authentication (and TLS when
    ``ssl`` is given); ``await server.serve_forever()`` runs it. Raises
    ListenError (address in use, no TLS on a public address, an allowed
    program not found)."""
    service = ExecService(options)
    server = await secure_serve(
        service.handle,
        addr,
        service="exec",
        auth=auth,
        ssl=ssl,
        insecure=insecure,
        limits=limits,
        message_types=EXEC_MESSAGES,
    )
    return server
