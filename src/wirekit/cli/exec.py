"""``wirekit exec ADDR -- CMD`` and ``wirekit shell ADDR``: the remote exec client.

``exec`` runs one command and behaves like the command run locally: its
stdout and stderr arrive on ours as unchanged bytes, our stdin is streamed
to it, and its exit status is ours (death by signal N: a line on stderr and
128+N, as a shell reports it). ``shell`` opens an interactive shell over a
PTY, with the local terminal in raw mode (see :mod:`.rawterm`).

docs/exec-cli.md describes both for users, with the exit codes.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import sys
import time
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..addr import Address, parse_address
from ..busypoll import MAX_BUSY_POLL
from ..errors import ConnectionClosed, RemoteProtocolError, ServiceError
from ..neterrors import printable
from .arguments import UsageError, non_negative_seconds, positive_seconds
from .rawterm import (
    InputReader,
    RawTerminal,
    ask_on_tty,
    ensure_std_fds,
    grow_pipe,
    has_tty,
    is_terminal,
    on_resize,
    window_size,
    write_fd,
)
from .serve_exec import DEFAULT_PORT
from .tlsargs import add_client_tls_arguments

if TYPE_CHECKING:  # the runtime imports wait for a run: ``wirekit --help`` stays quick
    import asyncio

    from ..proto.exec import ExecExit
    from ..services.exec.client import AsyncProcess, AsyncSession, OutputStream

__all__ = [
    "EXIT_CONNECT",
    "EXIT_TIMEOUT",
    "InterruptPolicy",
    "add_parsers",
    "exit_status",
    "parse_env",
]

#: Our exit status when the connection or authentication fails, or the server refuses.
EXIT_CONNECT = 1
#: Our exit status when our stdout is a closed pipe (``| head``), as if SIGPIPE killed us.
EXIT_BROKEN_PIPE = 128 + signal.SIGPIPE
#: Our exit status when ``--timeout`` ended the command (GNU timeout(1) uses the same).
EXIT_TIMEOUT = 124
#: Seconds after one Ctrl-C within which a second one cancels the command.
CANCEL_WINDOW = 2.0

ADDR_HELP = "HOST:PORT (default port 7022), tls://HOST:PORT, [::1]:PORT or unix:/path"


def parse_env(text: str) -> tuple[str, str]:
    """``--env K=V``: a variable name (no ``=``, not empty, no NUL) and its value."""
    name, sep, value = text.partition("=")
    if not sep or not name:
        raise argparse.ArgumentTypeError(f"{text!r} is not NAME=VALUE")
    if "\0" in text:
        raise argparse.ArgumentTypeError("an environment variable cannot hold a NUL byte")
    return name, value


def exit_status(
    exit_code: int | None, signal_name: str | None, core_dumped: bool = False
) -> tuple[int, str | None]:
    """Our exit status for a remote exit, and the stderr line to print (or None).

    A shell reports death by signal N as 128+N; so do we, and say which
    signal, since 143 alone is cryptic (OpenSSH exits 255 here, losing both).
    """
    if signal_name is not None:
        name = signal_name if signal_name.startswith("SIG") else f"SIG{signal_name}"
        try:
            number = int(signal.Signals[name])
        except KeyError:
            return 255, f"remote command killed by unknown signal {printable(signal_name)}"
        dumped = " (core dumped)" if core_dumped else ""
        return 128 + number, f"remote command killed by {name}{dumped}"
    if exit_code is None:
        return 255, "remote command ended without an exit status"
    return exit_code & 0xFF, None


@dataclass
class InterruptPolicy:
    """What a Ctrl-C in ``wirekit exec`` does.

    The first press forwards SIGINT to the remote process group, so a
    program that catches it can clean up. A second press within
    :data:`CANCEL_WINDOW` seconds cancels the command (the server sends
    SIGTERM, then SIGKILL after its grace period); a press after that gives
    up waiting and closes the connection, which the server treats the same.
    """

    window: float = CANCEL_WINDOW
    _last: float | None = None
    _cancelled: bool = False

    def press(self, now: float | None = None) -> str:
        """Return ``"INT"``, ``"cancel"`` or ``"close"`` for one Ctrl-C at ``now``."""
        now = time.monotonic() if now is None else now
        if self._cancelled:
            return "close"
        if self._last is not None and now - self._last <= self.window:
            self._cancelled = True
            return "cancel"
        self._last = now
        return "INT"


def add_parsers(commands: Any) -> None:
    """Register ``exec`` and ``shell`` on the top-level subparsers object."""
    ex = commands.add_parser(
        "exec",
        help="run one command on a wirekit exec server",
        description="Run CMD on the server at ADDR. Its stdout and stderr arrive here "
        "as unchanged bytes, stdin is streamed to it (-n: none), and its exit status is "
        "ours; death by signal N is reported on stderr and exits 128+N. One word after "
        "-- runs through the server's shell (like ssh: pipes, globs, cd); several words "
        "run that program with exactly these arguments. Ctrl-C sends SIGINT to the "
        "remote command; a second Ctrl-C within 2 s cancels it. Exit status 1: "
        "connection, authentication or refusal; 124: --timeout; 2: usage.",
        usage="wirekit exec ADDR [options] -- CMD [ARGS...]",
    )
    ex.add_argument("address", metavar="ADDR", help=ADDR_HELP)
    ex.add_argument("argv", nargs="+", metavar="CMD", help="the command, after --")
    ex.add_argument(
        "-n",
        "--no-stdin",
        action="store_true",
        help="send no input: the command reads end of file (like ssh -n)",
    )
    ex.add_argument(
        "--timeout",
        type=positive_seconds,
        metavar="SECS",
        help="the server ends the command after SECS seconds (exit status 124)",
    )
    ex.add_argument(
        "-e",
        "--env",
        type=parse_env,
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="set an environment variable for the command (repeatable)",
    )
    ex.add_argument("--cwd", metavar="DIR", help="run the command in DIR on the server")
    add_client_arguments(ex)
    ex.set_defaults(run=run_exec)

    sh = commands.add_parser(
        "shell",
        help="open an interactive shell on a wirekit exec server",
        description="Open the server's shell on a PTY, like ssh: the local terminal is in "
        "raw mode until the shell ends (every key, Ctrl-C and Ctrl-D included, goes to "
        "the remote side), window size changes follow, and the shell's exit status is "
        "ours. Needs a terminal on stdin; for scripts use wirekit exec.",
    )
    sh.add_argument("address", metavar="ADDR", help=ADDR_HELP)
    add_client_arguments(sh)
    sh.set_defaults(run=run_shell)


def add_client_arguments(parser: argparse.ArgumentParser) -> None:
    """Credentials and host pinning, shared by ``exec`` and ``shell``."""
    parser.add_argument(
        "-i",
        "--identity",
        metavar="FILE",
        help="Ed25519 private key (default ~/.ssh/id_ed25519, else wirekit's own key)",
    )
    parser.add_argument(
        "--token-file",
        metavar="FILE",
        help="shared token file (default: the local server's, in the config dir)",
    )
    parser.add_argument(
        "--busy-poll",
        type=busy_poll_seconds,
        metavar="SECS",
        help="after traffic, keep polling for SECS before sleeping, so the server never "
        "has to wake this client while output flows: less server CPU, quicker answers "
        "(default 0.002; 0: off; always off on a one-CPU machine)",
    )
    add_client_tls_arguments(parser)


def busy_poll_seconds(text: str) -> float:
    """``--busy-poll``: 0 to 1 second."""
    value = non_negative_seconds(text)
    if value > MAX_BUSY_POLL:
        raise argparse.ArgumentTypeError(f"at most {MAX_BUSY_POLL:g} seconds, got {value:g}")
    return value


def run_exec(args: argparse.Namespace) -> int:
    ensure_std_fds()
    addr = parse_address(args.address, default_port=DEFAULT_PORT)
    # One word is a command line for the remote shell, as ssh sends it; several
    # words are argv, passed exactly (no re-quoting, no surprises with spaces).
    command: str | list[str] = args.argv[0] if len(args.argv) == 1 else list(args.argv)
    from ..aio import loop as aio_loop

    return aio_loop.run(_until_signal(lambda stopper: _exec(args, addr, command, stopper)))


def run_shell(args: argparse.Namespace) -> int:
    ensure_std_fds()
    if not is_terminal(0):
        raise UsageError(
            "wirekit shell needs a terminal on stdin; for scripts use: wirekit exec ADDR -- CMD"
        )
    addr = parse_address(args.address, default_port=DEFAULT_PORT)
    from ..aio import loop as aio_loop

    return aio_loop.run(_until_signal(lambda stopper: _shell(args, addr, stopper)))


async def _connect(args: argparse.Namespace, addr: Address) -> AsyncSession:
    from ..aio.secure import secure_connect
    from ..allocator import keep_freed_buffers
    from ..proto.exec import EXEC_MESSAGES
    from ..services.exec.client import AsyncSession

    # Output arrives in buffers of up to 1 MiB, decrypted into new ones over
    # TLS: without this, a page fault per 4 KiB of them (wirekit.allocator).
    keep_freed_buffers()
    conn = await secure_connect(
        addr,
        service="exec",
        identity=_path(args.identity),
        token_file=_path(args.token_file),
        accept_new=args.accept_new,
        confirm=ask_on_tty if has_tty() else None,
        known_hosts=_path(args.known_hosts),
        message_types=EXEC_MESSAGES,
    )
    conn.set_busy_poll(args.busy_poll)
    return AsyncSession(conn)


def _path(value: str | Path | None) -> Path | None:
    return None if value is None else Path(value)


class _Stopper:
    """Ends the command's main task from a signal handler, remembering why, so
    that every ``finally`` runs (terminal restored, connection closed: the
    server then ends the command) and we exit 128+N as if killed by signal N."""

    def __init__(self) -> None:
        self.task: asyncio.Task[int] | None = None
        self.signum: int | None = None

    def stop(self, signum: int) -> None:
        if self.signum is None:
            self.signum = signum
        if self.task is not None:
            self.task.cancel()


async def _exec(
    args: argparse.Namespace, addr: Address, command: str | list[str], stopper: _Stopper
) -> int:
    import asyncio

    async with await _connect(args, addr) as session:
        proc = await session.start(
            command, env=dict(args.env) or None, cwd=args.cwd, timeout=args.timeout
        )
        _tell_when_queued(proc)
        policy = InterruptPolicy()
        for fd in (0, 1):
            grow_pipe(fd)
        async with asyncio.TaskGroup() as tasks:
            with _on_signal(signal.SIGINT, lambda: _interrupt(policy, proc, tasks, stopper)):
                stdin = None if args.no_stdin else tasks.create_task(_pump_stdin(proc, 0))
                if stdin is None:
                    await proc.close_stdin()
                outputs = [
                    tasks.create_task(_copy(proc.stdout, 1, proc)),
                    tasks.create_task(_copy(proc.stderr, 2, proc)),
                ]
                try:
                    ended = await proc.wait()
                except ServiceError as exc:
                    return _refused(exc)
                finally:
                    if stdin is not None:
                        stdin.cancel()
                broken = [await out for out in outputs]
        if any(broken):
            return EXIT_BROKEN_PIPE
        return _report(ended)


def _tell_when_queued(proc: AsyncProcess) -> None:
    """A command queued by the server's ``--max-sessions`` starts later: say so
    to a user at a terminal, who would otherwise wait without knowing why.
    Not when stderr is a file or pipe, which carries the command's own stderr."""
    if os.isatty(2):  # False for a closed descriptor too

        def tell(ahead: int) -> None:
            print(
                f"wirekit: queued: the server runs its maximum of commands (--max-sessions); "
                f"{ahead} ahead of this one",
                end="\r\n",  # wirekit shell: the terminal may be in raw mode already
                file=sys.stderr,
                flush=True,
            )

        proc.on_queued = tell


def _interrupt(
    policy: InterruptPolicy, proc: AsyncProcess, tasks: asyncio.TaskGroup, stopper: _Stopper
) -> None:
    action = policy.press()
    if action == "INT":
        tasks.create_task(proc.signal("INT"))
    elif action == "cancel":
        _say("cancelling the remote command (Ctrl-C again to stop waiting)")
        tasks.create_task(proc.cancel())
    else:
        stopper.stop(signal.SIGINT)


async def _pump_stdin(proc: AsyncProcess, fd: int) -> None:
    """Stream our stdin to the command's, then its end; waits for credit, so a
    command that reads slowly slows the reading here (exec.md §3)."""
    reader = InputReader(fd)
    while chunk := await reader.read():
        await proc.write(chunk)
        if proc.done:
            return
    await proc.close_stdin()


async def _copy(stream: OutputStream, fd: int, proc: AsyncProcess) -> bool:
    """Copy a remote stream to ``fd`` as bytes; True when ``fd`` is a broken pipe.

    On a broken pipe (``| head``) the command is cancelled, as SIGPIPE would
    end it locally, and the rest of its output is read and dropped, so that
    its exit still arrives and the connection closes cleanly."""
    broken = False
    async for chunk in stream:
        if broken:
            continue
        try:
            write_fd(fd, chunk)
        except BrokenPipeError:
            broken = True
            await proc.cancel()
    return broken


def _report(ended: ExecExit) -> int:
    if ended.reason == "timeout":
        _say("remote command timed out")
        return EXIT_TIMEOUT
    if ended.reason == "cancelled":
        _say("remote command cancelled")
        return 128 + signal.SIGINT
    code, line = exit_status(ended.exit_code, ended.signal, ended.core_dumped)
    if line is not None:
        _say(line)
    return code


def _refused(exc: ServiceError) -> int:
    """The server did not run the command (CommandRefused, a ServiceError)."""
    _say(f"server refused the command: {printable(exc)}")
    text = str(exc)
    if getattr(exc, "code", None) == "spawn-failed" and text.startswith("cannot run "):
        # What a shell answers for a program that is missing (127) or not runnable (126).
        return 127 if "No such file" in text else 126
    return EXIT_CONNECT


def _say(line: str) -> None:
    if sys.stderr is None:  # started with descriptor 2 closed: not on stdout (the data)
        write_fd(2, f"wirekit: {line}\n".encode(errors="backslashreplace"))
        return
    print(f"wirekit: {line}", file=sys.stderr, flush=True)


@contextlib.contextmanager
def _on_signal(signum: int, callback: Callable[[], None]) -> Iterator[None]:
    import asyncio

    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signum, callback)
    try:
        yield
    finally:
        loop.remove_signal_handler(signum)


async def _until_signal(work: Callable[[_Stopper], Coroutine[Any, Any, int]]) -> int:
    """Run ``work``; SIGTERM and SIGHUP stop it (see :class:`_Stopper`)."""
    import asyncio

    loop = asyncio.get_running_loop()
    stopper = _Stopper()
    task = stopper.task = loop.create_task(work(stopper))
    for signum in (signal.SIGTERM, signal.SIGHUP):
        loop.add_signal_handler(signum, stopper.stop, signum)
    try:
        return await task
    except asyncio.CancelledError:
        if stopper.signum is not None:
            return 128 + stopper.signum
        raise
    except BaseExceptionGroup as group:
        # A task of a TaskGroup failed (the connection broke under a signal
        # forward, say): report the error itself, as one line.
        raise escaped(_first(group)) from None
    except (ConnectionClosed, RemoteProtocolError) as exc:
        raise escaped(exc) from None
    finally:
        for signum in (signal.SIGTERM, signal.SIGHUP):
            loop.remove_signal_handler(signum)


def escaped(exc: BaseException) -> BaseException:
    """``exc`` with the peer's text made safe to print: the reason of a CLOSE
    or ERROR frame is the server's, and must not move the cursor or forge a
    line on our terminal (DESIGN.md §4)."""
    if isinstance(exc, ConnectionClosed) and not exc.reason.isprintable():
        return ConnectionClosed(exc.code, printable(exc.reason))
    if isinstance(exc, RemoteProtocolError) and not str(exc).isprintable():
        return RemoteProtocolError(printable(str(exc)), exc.code)
    return exc


def _first(group: BaseExceptionGroup[BaseException]) -> BaseException:
    exc: BaseException = group
    while isinstance(exc, BaseExceptionGroup):
        exc = exc.exceptions[0]
    return exc


#: The command ``wirekit shell`` runs: the server's shell (``$0`` of ``SHELL -c``,
#: i.e. its ``--shell``), interactive, replacing the ``-c`` shell.
SHELL_COMMAND = 'exec "$0" -i'


async def _shell(args: argparse.Namespace, addr: Address, stopper: _Stopper) -> int:
    import asyncio

    async with await _connect(args, addr) as session:
        from ..proto.exec import Pty

        rows, cols = window_size(0)
        pty = Pty(term=os.environ.get("TERM") or "xterm-256color", rows=rows, cols=cols)
        proc = await session.start(SHELL_COMMAND, pty=pty)
        _tell_when_queued(proc)
        async with asyncio.TaskGroup() as tasks:

            def resized() -> None:
                tasks.create_task(proc.resize(*window_size(0)))

            with RawTerminal(0), on_resize(resized):
                stdin = tasks.create_task(_pump_stdin(proc, 0))
                output = tasks.create_task(_copy(proc.stdout, 1, proc))
                try:
                    ended = await proc.wait()
                except ServiceError as exc:
                    return _refused(exc)
                finally:
                    stdin.cancel()
                await output
        return _report(ended)
