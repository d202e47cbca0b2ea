"""Commands under a pseudo-terminal (docs/exec.md §4.3).

The child becomes a session leader (``start_new_session``) and takes the pty
slave as its controlling terminal (TIOCSCTTY), so job control, Ctrl-C from
the line discipline and SIGWINCH on resize work as in a local terminal. The
session id is the child's pid, which is also its process group, so the
lifecycle of process.py applies unchanged. A pty merges stderr into stdout.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import struct
import subprocess
import termios

from .process import ChildProcess, SpawnError, SpawnSpec, spawn_error

__all__ = ["resize", "spawn_pty"]


def _take_terminal() -> None:  # pragma: no cover - runs in the child
    # stdin is the pty slave; as a new session leader the child adopts it.
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)


def resize(fd: int, rows: int, cols: int) -> None:
    """Set the terminal size; the kernel sends SIGWINCH to the foreground group."""
    with contextlib.suppress(OSError):
        fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))


def spawn_pty(spec: SpawnSpec, rows: int, cols: int) -> ChildProcess:
    """Start ``spec`` on a new pty; the returned child's stdin and stdout are
    both the master side (one fd), and it has no separate stderr."""
    try:
        master, slave = os.openpty()
    except OSError as exc:  # out of ptys or descriptors: a refusal, not a crash
        raise spawn_error(exc, spec) from None
    resize(slave, rows, cols)
    try:
        # preexec_fn makes subprocess fork instead of vfork: acceptable for
        # interactive sessions, which are not the per-command hot path.
        popen = subprocess.Popen(
            spec.argv,
            executable=spec.executable,
            stdin=slave,
            stdout=slave,
            stderr=slave,
            env=spec.env,
            cwd=spec.cwd,
            start_new_session=True,
            preexec_fn=_take_terminal,
            close_fds=True,
        )
    except OSError as exc:
        os.close(master)
        raise spawn_error(exc, spec) from None
    except ValueError as exc:  # an embedded NUL that slipped past the request checks
        os.close(master)
        raise SpawnError(f"cannot run {spec.argv[0]}: {exc}") from None
    finally:
        os.close(slave)
    os.set_blocking(master, False)
    return ChildProcess(popen, stdin=master, stdout=master, stderr=None, is_pty=True)
