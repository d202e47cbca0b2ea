"""Spawning commands and ending them (docs/exec.md §4).

Each command runs in its own process group (``process_group=0``, which
``subprocess`` still spawns with ``vfork``), with its pipes' parent ends
non-blocking so the event loop reads them with ``add_reader`` and no thread.
Its exit is watched through a pidfd (Linux 5.3+), so no SIGCHLD handler and
no waiter thread is needed, and nothing else's children are reaped.

When the group leader exits, whatever it left running in its group gets
SIGKILL *before* the leader is reaped: the unreaped leader keeps the group id
reserved, so the signal cannot reach an unrelated process that reused it.
That is what makes "no orphans" hold for ``sleep 100 &`` too.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import signal
import subprocess
from dataclasses import dataclass
from typing import Final

__all__ = ["ChildProcess", "SpawnError", "SpawnSpec", "spawn"]

#: F_SETPIPE_SZ (Linux): bigger pipes mean fewer, larger reads of output.
_F_SETPIPE_SZ: Final = 1031
PIPE_SIZE: Final = 1024 * 1024


class SpawnError(Exception):
    """The command could not be started; ``str()`` is a one-line reason."""


@dataclass(frozen=True, slots=True)
class SpawnSpec:
    #: With ``track_cwd`` the last item is a shell command, wrapped by
    #: :func:`track_cwd_script` once the fd it reports on is known.
    argv: list[str]
    executable: str | None
    env: dict[str, str]
    cwd: str | None
    track_cwd: bool = False


class ChildProcess:
    """A running command: its pid (= process group), fds and exit status."""

    __slots__ = (
        "cwd_fd",
        "is_pty",
        "pid",
        "pidfd",
        "popen",
        "returncode",
        "status",
        "stderr",
        "stdin",
        "stdout",
    )

    def __init__(
        self,
        popen: subprocess.Popen[bytes],
        *,
        stdin: int | None,
        stdout: int,
        stderr: int | None,
        cwd_fd: int | None = None,
        is_pty: bool = False,
    ) -> None:
        self.popen = popen
        self.pid = popen.pid
        self.stdin = stdin
        self.stdout = stdout
        self.stderr = stderr
        self.cwd_fd = cwd_fd
        self.is_pty = is_pty
        self.pidfd = os.pidfd_open(popen.pid)
        self.returncode: int | None = None
        self.status = 0

    def signal_group(self, signum: int) -> None:
        """Signal the whole group, unless the leader is already reaped (then
        the group id may belong to someone else)."""
        if self.returncode is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.pid, signum)

    def reap(self) -> bool:
        """Collect the leader's exit status if it has exited; True once reaped."""
        if self.returncode is not None:
            return True
        try:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
        except ChildProcessError:
            pid, status = self.pid, 0
        if pid == 0:
            return False
        # Kill what the leader left behind while its zombie still holds the
        # group id (module docstring), then record the status.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, signal.SIGKILL)
        self.status = status
        self.returncode = os.waitstatus_to_exitcode(status) if pid == self.pid else 0
        self.popen.returncode = self.returncode  # so Popen never waits for it again
        return True

    def close_pidfd(self) -> None:
        """Close the pidfd (after removing it from the event loop)."""
        if self.pidfd >= 0:
            fd, self.pidfd = self.pidfd, -1
            os.close(fd)

    def kill_and_reap(self) -> None:
        """SIGKILL the group and wait for the leader (last-resort cleanup)."""
        if self.returncode is not None:
            return
        self.signal_group(signal.SIGKILL)
        with contextlib.suppress(ChildProcessError):
            os.waitpid(self.pid, 0)
        self.reap()

    @property
    def core_dumped(self) -> bool:
        return os.WIFSIGNALED(self.status) and os.WCOREDUMP(self.status)

    def read_cwd(self) -> str | None:
        """The working directory the shell reported at exit (track_cwd)."""
        fd = self.cwd_fd
        if fd is None:
            return None
        self.cwd_fd = None
        try:
            raw = os.read(fd, 65536)
        except OSError:
            raw = b""
        finally:
            os.close(fd)
        text = raw.decode("utf-8", "surrogateescape").removesuffix("\n")
        return text if text.startswith("/") and "\n" not in text else None

    def close_fds(self) -> None:
        """Close the parent's ends (a pty's stdin and stdout are one fd)."""
        fds = {fd for fd in (self.stdin, self.stdout, self.stderr, self.cwd_fd) if fd is not None}
        self.stdin = self.stderr = self.cwd_fd = None
        self.stdout = -1
        for fd in fds:
            with contextlib.suppress(OSError):
                os.close(fd)


def _pipe() -> tuple[int, int]:
    return os.pipe2(os.O_CLOEXEC)


def _close_all(fds: list[int]) -> None:
    for fd in fds:
        with contextlib.suppress(OSError):
            os.close(fd)


def spawn_error(exc: OSError, spec: SpawnSpec) -> SpawnError:
    what = exc.filename if exc.filename is not None else spec.argv[0]
    if spec.cwd is not None and what == spec.cwd:
        return SpawnError(f"cannot change to directory {spec.cwd}: {exc.strerror}")
    return SpawnError(f"cannot run {what}: {exc.strerror or exc}")


def spawn(spec: SpawnSpec) -> ChildProcess:
    """Start ``spec`` in a new process group with three pipes (and a fourth
    for the reported working directory with ``track_cwd``)."""
    in_r, in_w = _pipe()
    out_r, out_w = _pipe()
    err_r, err_w = _pipe()
    child_ends = [in_r, out_w, err_w]
    parent_ends = [in_w, out_r, err_r]
    cwd_r = cwd_w = None
    if spec.track_cwd:
        cwd_r, cwd_w = _pipe()
        child_ends.append(cwd_w)
        parent_ends.append(cwd_r)
    with contextlib.suppress(OSError):
        fcntl.fcntl(out_r, _F_SETPIPE_SZ, PIPE_SIZE)
    argv = spec.argv
    if cwd_w is not None:
        argv = [*argv[:-1], track_cwd_script(argv[-1], cwd_w)]
    try:
        popen = subprocess.Popen(
            argv,
            executable=spec.executable,
            stdin=in_r,
            stdout=out_w,
            stderr=err_w,
            env=spec.env,
            cwd=spec.cwd,
            process_group=0,
            close_fds=True,
            pass_fds=(cwd_w,) if cwd_w is not None else (),
        )
    except OSError as exc:
        _close_all(child_ends + parent_ends)
        raise spawn_error(exc, spec) from None
    _close_all(child_ends)
    for fd in parent_ends:
        os.set_blocking(fd, False)
    return ChildProcess(popen, stdin=in_w, stdout=out_r, stderr=err_r, cwd_fd=cwd_r)


def track_cwd_script(command: str, fd: int) -> str:
    """The shell script that runs ``command`` and reports its last working
    directory on ``fd`` when the shell exits, even through ``exit`` (an EXIT
    trap; ``$?`` and the exit status are kept, POSIX trap rules). The fd is
    named as /dev/fd/N because dash redirects only fds 0-9."""
    return f"trap '{{ pwd >/dev/fd/{fd}; }} 2>/dev/null' EXIT\n{command}"
