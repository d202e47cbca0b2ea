"""The remote exec protocol, sans-I/O (docs/exec.md, "Wire protocol").

After authentication a connection carries commands on channels. The client
opens command *k* on an even channel ``c`` (2, 4, ... 65534); ``c`` carries
the command's stdin (client to server) and stdout (server to client), and
``c + 1`` its stderr. Control messages are the Structs below, sent as
MESSAGE frames on ``c``. The end of a stream is an :class:`ExecEof` message
on the stream's channel, not an EOF frame: an EOF frame closes a channel
number for good (protocol.md §4.1), and a long-lived session must be able to
reuse its channels once a command has exited.

Flow control (exec.md §3): every DATA stream has a window. The receiver
grants credit with WINDOW frames as its consumer takes the bytes; a sender
never sends more than it was granted, and a receiver treats an overrun as a
protocol error. :class:`SendCredit` is the sender's side, :class:`ReceiveWindow`
the receiver's; both the asyncio and the blocking clients and the server use
them.

Nothing here does I/O, reads a clock or knows about processes.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Annotated, Final

import msgspec

from ..errors import ErrorCode, LocalProtocolError, RemoteProtocolError
from ..proto.frames import MAX_CHANNEL
from .messages import Message

__all__ = [
    "DEFAULT_OUTPUT_WINDOW",
    "EXEC_MESSAGES",
    "FIRST_CHANNEL",
    "SIGNALS",
    "STDIN_WINDOW",
    "ChannelAllocator",
    "ExecCancel",
    "ExecEof",
    "ExecExit",
    "ExecLimits",
    "ExecOpen",
    "ExecQueued",
    "ExecRefused",
    "ExecResize",
    "ExecSignal",
    "ExecStarted",
    "Pty",
    "ReceiveWindow",
    "SendCredit",
    "check_open",
    "command_channel",
    "stderr_channel",
]

KiB: Final = 1024
MiB: Final = 1024 * KiB
#: The first channel a command may open on; channel 0 is the connection's own.
FIRST_CHANNEL: Final = 2
#: Credit the server grants for a command's stdin when it opens (exec.md §3).
STDIN_WINDOW: Final = 256 * KiB
#: The output window a client asks for unless told otherwise.
DEFAULT_OUTPUT_WINDOW: Final = 4 * MiB
#: Signal names a client may send (ExecSignal.name), without the "SIG" prefix.
SIGNALS: Final = frozenset(
    {"HUP", "INT", "QUIT", "KILL", "USR1", "USR2", "TERM", "CONT", "STOP", "TSTP", "WINCH"}
)

U16 = Annotated[int, msgspec.Meta(ge=1, le=0xFFFF)]
U32 = Annotated[int, msgspec.Meta(ge=1, le=0xFFFFFFFF)]


class Pty(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """A pseudo-terminal for the command: its TERM and size."""

    term: str = "xterm-256color"
    rows: U16 = 24
    cols: U16 = 80


class ExecOpen(Message, frozen=True, tag="exec-open"):
    """Client: run a command on this channel. Exactly one of ``argv`` (run
    directly) and ``command`` (run through the server's shell)."""

    argv: list[str] | None = None
    command: str | None = None
    env: dict[str, str] = {}
    cwd: str | None = None
    pty: Pty | None = None
    timeout: Annotated[float, msgspec.Meta(gt=0)] | None = None
    track_cwd: bool = False
    window: U32 = DEFAULT_OUTPUT_WINDOW


class ExecStarted(Message, frozen=True, tag="exec-started"):
    """Server: the command runs as ``pid`` (also its process group)."""

    pid: int


class ExecQueued(Message, frozen=True, tag="exec-queued"):
    """Server: the session limit is reached; the command waits, ``position``
    commands ahead of it (0 = next). ExecStarted follows."""

    position: int


class ExecRefused(Message, frozen=True, tag="exec-refused"):
    """Server: the command will not run; the channel is free again."""

    code: str
    reason: str


class ExecSignal(Message, frozen=True, tag="exec-signal"):
    """Client: send a signal (a name of :data:`SIGNALS`) to the process group."""

    name: str


class ExecResize(Message, frozen=True, tag="exec-resize"):
    """Client: the terminal changed size (pty commands only)."""

    rows: U16
    cols: U16


class ExecCancel(Message, frozen=True, tag="exec-cancel"):
    """Client: stop the command (SIGTERM, then SIGKILL after the grace)."""


class ExecEof(Message, frozen=True, tag="exec-eof"):
    """Either side: the stream of this channel ended (stdin, stdout or stderr)."""


class ExecExit(Message, frozen=True, tag="exec-exit"):
    """Server: the command ended and its output was sent; the channel is free.

    ``reason`` is "exit", "signal", "timeout" or "cancelled". ``cwd`` is the
    shell's last working directory when the command asked ``track_cwd``."""

    exit_code: int | None
    signal: str | None = None
    core_dumped: bool = False
    cwd: str | None = None
    reason: str = "exit"


EXEC_MESSAGES: Final[tuple[type[Message], ...]] = (
    ExecOpen,
    ExecStarted,
    ExecQueued,
    ExecRefused,
    ExecSignal,
    ExecResize,
    ExecCancel,
    ExecEof,
    ExecExit,
)


def command_channel(channel: int) -> int:
    """The command channel (even) a stdout or stderr channel belongs to."""
    return channel & ~1


def stderr_channel(channel: int) -> int:
    return channel | 1


# -- limits ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ExecLimits:
    """Sizes a client controls in an exec session (docs/exec.md §5)."""

    #: Bytes of argv (each argument plus one) or of the shell command.
    max_command_bytes: int = 256 * KiB
    #: Environment variables one command may set.
    max_env_vars: int = 256
    #: Bytes of those variables ("NAME=value" plus one each).
    max_env_bytes: int = 64 * KiB
    #: Commands open (running or queued) on one connection at once.
    max_channels: int = 1024
    #: Largest output window a client may ask for; larger asks are capped.
    max_window: int = 16 * MiB


DEFAULT_EXEC_LIMITS: Final = ExecLimits()


def _size_of_argv(argv: list[str]) -> int:
    return sum(len(a.encode("utf-8", "surrogateescape")) + 1 for a in argv)


def check_open(request: ExecOpen, limits: ExecLimits = DEFAULT_EXEC_LIMITS) -> ExecRefused | None:
    """Refusal for a malformed or oversized request, or None when it may run."""
    if (request.argv is None) == (request.command is None):
        return ExecRefused("bad-request", "exactly one of argv and command must be given")
    if request.argv is not None and not request.argv:
        return ExecRefused("bad-request", "argv must not be empty")
    size = (
        _size_of_argv(request.argv)
        if request.argv is not None
        else _size_of_argv([request.command or ""])
    )
    if size > limits.max_command_bytes:
        return ExecRefused(
            "too-large",
            f"command line of {size} bytes exceeds limit of {limits.max_command_bytes} bytes",
        )
    texts = [*(request.argv or ()), request.command or "", request.cwd or ""]
    if any("\0" in text for text in texts):
        return ExecRefused("bad-request", "command, arguments and cwd must not contain NUL")
    if request.pty is not None and not _TERM.fullmatch(request.pty.term):
        return ExecRefused(
            "bad-request",
            f"pty term must be 1 to {MAX_TERM} letters, digits or . _ + -",
        )
    return _check_env(request.env, limits)


#: The longest TERM a pty request may name; terminfo names are short words.
MAX_TERM = 64
_TERM = re.compile(rf"[A-Za-z0-9._+-]{{1,{MAX_TERM}}}")


def _check_env(env: dict[str, str], limits: ExecLimits) -> ExecRefused | None:
    if len(env) > limits.max_env_vars:
        return ExecRefused(
            "too-large",
            f"environment of {len(env)} variables exceeds limit of {limits.max_env_vars}",
        )
    size = _size_of_argv([f"{k}={v}" for k, v in env.items()])
    if size > limits.max_env_bytes:
        return ExecRefused(
            "too-large",
            f"environment of {size} bytes exceeds limit of {limits.max_env_bytes} bytes",
        )
    for name, value in env.items():
        if not name or "=" in name or "\0" in name or "\0" in value:
            return ExecRefused("bad-request", f"invalid environment variable name {name!r}")
    return None


# -- flow control --------------------------------------------------------------


class SendCredit:
    """The sender's side of one stream's window: bytes it may still send."""

    __slots__ = ("credit",)

    def __init__(self, initial: int) -> None:
        self.credit = initial

    def grant(self, increment: int) -> None:
        """A WINDOW frame arrived. Credit is capped at 2^32 - 1 so that a peer
        cannot make the number grow without bound."""
        self.credit = min(self.credit + increment, 0xFFFFFFFF)

    def take(self, size: int) -> None:
        if size > self.credit:
            raise LocalProtocolError(f"{size} bytes exceed the {self.credit} bytes of credit")
        self.credit -= size


class ReceiveWindow:
    """The receiver's side of one stream's window.

    ``receive`` checks the peer stays within the credit it was granted;
    ``consume`` returns the WINDOW increment to send once the consumer has
    taken a quarter of the window (fewer, larger WINDOW frames)."""

    __slots__ = ("_unacked", "channel", "outstanding", "size")

    def __init__(self, channel: int, size: int) -> None:
        self.channel = channel
        self.size = size
        self.outstanding = size  # credit the peer holds
        self._unacked = 0  # consumed but not yet granted back

    def receive(self, nbytes: int) -> None:
        if nbytes > self.outstanding:
            raise RemoteProtocolError(
                f"{nbytes} bytes of DATA on channel {self.channel} exceed "
                f"the {self.outstanding} bytes of window granted",
                ErrorCode.PROTOCOL_ERROR,
            )
        self.outstanding -= nbytes

    def consume(self, nbytes: int) -> int:
        """The consumer took ``nbytes``; the increment to grant now, or 0."""
        self._unacked += nbytes
        if self._unacked * 4 < self.size and self.outstanding:
            return 0
        increment, self._unacked = self._unacked, 0
        self.outstanding += increment
        return increment


class ChannelAllocator:
    """Client side: even channel numbers for commands, reused once free."""

    __slots__ = ("_free", "_next", "busy")

    def __init__(self) -> None:
        self._free: list[int] = []
        self._next = FIRST_CHANNEL
        self.busy: set[int] = set()

    def allocate(self) -> int:
        if self._free:
            channel = self._free.pop()
        elif self._next < MAX_CHANNEL:
            channel = self._next
            self._next += 2
        else:
            raise LocalProtocolError(f"all {len(self.busy)} command channels are in use")
        self.busy.add(channel)
        return channel

    def release(self, channel: int) -> None:
        if channel in self.busy:
            self.busy.discard(channel)
            self._free.append(channel)
