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
import re
import signal
import stat
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

# subprocess's own spawn primitive; 3.11 to 3.13 call it with the same arguments.
_fork_exec: Any = None
if (3, 11) <= sys.version_info[:2] <= (3, 13):
    with contextlib.suppress(ImportError):
        from _posixsubprocess import fork_exec as _fork_exec

__all__ = ["ChildProcess", "SpawnError", "SpawnSpec", "direct_argv", "grow_pipe", "spawn"]

#: F_SETPIPE_SZ (Linux): bigger pipes mean fewer, larger reads of output.
_F_SETPIPE_SZ: Final = 1031
PIPE_SIZE: Final = 256 * 1024
#: A pipe's default capacity; a read this big found it full.
SMALL_PIPE: Final = 65536


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
    #: A shell command run without its shell (:func:`direct_argv`): the spec
    #: to fall back on if the program cannot be started directly after all.
    shell_spec: SpawnSpec | None = None

    @property
    def exit_cwd(self) -> str | None:
        """The directory to report at the end when no shell reports one: a
        program run instead of its shell cannot change the shell's directory."""
        return self.cwd if self.shell_spec is not None and self.shell_spec.track_cwd else None


class ChildProcess:
    """A running command: its pid (= process group), fds and exit status."""

    __slots__ = (
        "cwd_fd",
        "exit_cwd",
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
        popen: subprocess.Popen[bytes] | None,
        *,
        pid: int | None = None,
        stdin: int | None,
        stdout: int,
        stderr: int | None,
        cwd_fd: int | None = None,
        exit_cwd: str | None = None,
        is_pty: bool = False,
    ) -> None:
        self.popen = popen
        if popen is not None:
            pid = popen.pid
        assert pid is not None
        self.pid = pid
        self.stdin = stdin
        self.stdout = stdout
        self.stderr = stderr
        self.cwd_fd = cwd_fd
        self.exit_cwd = exit_cwd
        self.is_pty = is_pty
        try:
            self.pidfd = os.pidfd_open(pid)
        except OSError:
            # Out of descriptors: a child we could not watch must not live on.
            with contextlib.suppress(OSError):
                os.killpg(pid, signal.SIGKILL)
            with contextlib.suppress(OSError):
                os.waitpid(pid, 0)
            raise
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
        if self.popen is not None:
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
        """The working directory the shell reported at exit (track_cwd), or
        the one a program run without its shell started in."""
        fd = self.cwd_fd
        if fd is None:
            return self.exit_cwd
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


def grow_pipe(fd: int) -> None:
    """Give an output pipe found full PIPE_SIZE bytes where the system allows:
    done on the first full read, not at the spawn, since it costs a system
    call and an allocation that most commands never need."""
    with contextlib.suppress(OSError):
        fcntl.fcntl(fd, _F_SETPIPE_SZ, PIPE_SIZE)


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
    for the reported working directory with ``track_cwd``). A shell command
    run without its shell that cannot start (a script with no ``#!`` line, a
    program gone meanwhile) runs through the shell after all, which then
    reports the error as it would have."""
    if spec.shell_spec is None:
        return _spawn(spec)
    try:
        return _spawn(spec)
    except SpawnError:
        return _spawn(spec.shell_spec)


def _spawn(spec: SpawnSpec) -> ChildProcess:
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
    argv = spec.argv
    if cwd_w is not None:
        argv = [*argv[:-1], track_cwd_script(argv[-1], cwd_w)]
    keep = (cwd_w,) if cwd_w is not None else ()
    popen: subprocess.Popen[bytes] | None = None
    try:
        if _fork_exec is not None:
            pid = _vfork_exec(argv, spec, in_r, out_w, err_w, keep)
        else:
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
                pass_fds=keep,
            )
            pid = popen.pid
    except (OSError, ValueError) as exc:
        _close_all(child_ends + parent_ends)
        if isinstance(exc, OSError):
            raise spawn_error(exc, spec) from None
        raise SpawnError(f"cannot run {spec.argv[0]}: {exc}") from None
    _close_all(child_ends)
    for fd in parent_ends:
        os.set_blocking(fd, False)
    return ChildProcess(
        popen,
        pid=pid,
        stdin=in_w,
        stdout=out_r,
        stderr=err_r,
        cwd_fd=cwd_r,
        exit_cwd=spec.exit_cwd,
    )


def _vfork_exec(
    argv: list[str], spec: SpawnSpec, stdin: int, stdout: int, stderr: int, keep: tuple[int, ...]
) -> int:
    """What ``subprocess.Popen(..., process_group=0, close_fds=True)`` does on
    POSIX (its own ``fork_exec`` call, with vfork), without its Python layer:
    the parent's share of a spawn drops to a third (exec.md §7). Raises
    OSError like Popen (``filename`` the cwd or program that failed)."""
    executable = spec.executable or argv[0]
    if "/" in executable:
        programs: tuple[bytes, ...] = (os.fsencode(executable),)
    else:
        name = os.fsencode(executable)
        programs = tuple(os.path.join(os.fsencode(d), name) for d in os.get_exec_path(spec.env))
    errpipe_read, errpipe_write = os.pipe2(os.O_CLOEXEC)
    try:
        assert _fork_exec is not None
        pid: int = _fork_exec(
            [os.fsencode(arg) for arg in argv], programs,
            True, tuple(sorted((*keep, errpipe_write))),
            spec.cwd, _env_list(spec.env),
            stdin, -1, -1, stdout, -1, stderr,
            errpipe_read, errpipe_write,
            True, False, 0, None, None, None, -1, None, True,
        )  # fmt: skip
        # (..., restore_signals, setsid, process_group=0, gid, groups, uid, umask,
        #  preexec_fn, allow_vfork), as subprocess passes them.
    finally:
        os.close(errpipe_write)
    try:
        failure = _read_all(errpipe_read)
    finally:
        os.close(errpipe_read)
    if failure:
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, 0)
        raise _child_error(failure, spec.cwd, executable)
    return pid


def _read_all(fd: int) -> bytes:
    data = b""
    while part := os.read(fd, 50000):
        data += part
        if len(data) > 50000:
            break
    return data


def _child_error(data: bytes, cwd: str | None, program: str) -> OSError:
    """The OSError the child reported before exec (subprocess's format)."""
    _, hex_errno, raw = [*data.split(b":", 2), b"", b""][:3]
    message = raw.decode("utf-8", "replace")
    number = int(hex_errno, 16) if hex_errno else 0
    filename = cwd if message == "noexec" else program  # "noexec": chdir failed (subprocess)
    return OSError(number, os.strerror(number) if number else message, filename)


#: Encoded ``NAME=value`` items, reused: the server's environment is the same
#: for every command.
_encoded_env: dict[tuple[str, str], bytes] = {}


def _env_list(env: Mapping[str, str]) -> list[bytes]:
    items = []
    for item in env.items():
        encoded = _encoded_env.get(item)
        if encoded is None:
            name = os.fsencode(item[0])
            if b"=" in name:
                raise ValueError("illegal environment variable name")
            encoded = name + b"=" + os.fsencode(item[1])
            if len(_encoded_env) < 4096:
                _encoded_env[item] = encoded
        items.append(encoded)
    return items


def track_cwd_script(command: str, fd: int) -> str:
    """The shell script that runs ``command`` and reports its last working
    directory on ``fd`` when the shell exits, even through ``exit`` (an EXIT
    trap; ``$?`` and the exit status are kept, POSIX trap rules). The fd is
    named as /dev/fd/N because dash redirects only fds 0-9."""
    return f"trap '{{ pwd >/dev/fd/{fd}; }} 2>/dev/null' EXIT\n{command}"


# -- shell commands that need no shell (docs/exec.md §7) ----------------------------------

#: Shells whose ``-c`` runs a lone simple command by exec'ing it, no rc file read
#: (dash and bash exec the last simple command of a ``-c`` string without forking).
DIRECT_SHELLS: Final = frozenset({"sh", "dash", "bash"})
#: Words such a shell handles itself (builtins and reserved words of dash and bash):
#: these always go through the shell.
_SHELL_WORDS = (
    ". : [ [[ ]] { } ! alias bg bind break builtin caller case cd chdir command compgen"
    " complete compopt continue coproc declare dirs disown do done echo elif else enable"
    " esac eval exec exit export false fc fg fi for function getopts hash help history if"
    " in jobs kill let local logout mapfile popd printf pushd pwd read readarray readonly"
    " return select set shift shopt source suspend test then time times trap true type"
    " typeset ulimit umask unalias unset until wait while"
)
SHELL_WORDS: Final = frozenset(_SHELL_WORDS.split())
#: Builtins that do exactly what their program does when given no argument.
SAME_AS_PROGRAM: Final = frozenset({"true", "false"})
#: A word with no quoting, expansion, globbing, redirection or separator in it.
_PLAIN_WORD: Final = re.compile(r"[A-Za-z0-9_./,:+@%=-]+")
#: Environment variables that make a shell run code before the command.
_SHELL_STARTUP_ENV: Final = ("BASH_ENV", "ENV", "SHELLOPTS", "BASHOPTS")


def direct_argv(shell: str, command: str, env: Mapping[str, str], cwd: str) -> list[str] | None:
    """The argv to exec instead of ``shell -c command`` when that is what the
    shell itself would exec: ``command`` is words of plain characters
    separated by blanks, the first one a program (not a builtin, keyword or
    assignment) found on ``PATH``. None when the shell must run it. The last
    item is the program's absolute path, taken off by the caller."""
    if os.path.basename(shell) not in DIRECT_SHELLS:
        return None
    words = command.replace("\t", " ").split(" ")
    words = [word for word in words if word]
    if not words or not all(_PLAIN_WORD.fullmatch(word) for word in words):
        return None
    name = words[0]
    if "=" in name or (name in SHELL_WORDS and not (name in SAME_AS_PROGRAM and len(words) == 1)):
        return None
    if any(key in env for key in _SHELL_STARTUP_ENV) or any(
        key.startswith("BASH_FUNC_") for key in env
    ):
        return None
    program = _find_program(name, env.get("PATH"), cwd)
    return None if program is None else [*words, program]


#: Seconds a PATH search result is reused (a shell's own hash table keeps them
#: for its lifetime); a cached program that is gone is searched for again.
PATH_CACHE_SECONDS: Final = 1.0
_path_cache: dict[tuple[str, str], tuple[float, str]] = {}


def _find_program(name: str, path: str | None, cwd: str) -> str | None:
    """What the shell would exec for ``name``: a path as given (relative to
    ``cwd``), else the first executable file of that name on ``path``."""
    if "/" in name or path is None:
        return _search(name, path, cwd)
    now = time.monotonic()
    cached = _path_cache.get((path, name))
    if cached is not None and now - cached[0] < PATH_CACHE_SECONDS and _executable(cached[1]):
        return cached[1]
    program = _search(name, path, cwd)
    if program is not None:
        if len(_path_cache) >= 256:
            _path_cache.clear()
        _path_cache[path, name] = (now, program)
    return program


def _executable(candidate: str) -> bool:
    try:
        mode = os.stat(candidate).st_mode
    except OSError:
        return False
    return stat.S_ISREG(mode) and os.access(candidate, os.X_OK)


def _search(name: str, path: str | None, cwd: str) -> str | None:
    if "/" in name:
        candidates = [os.path.join(cwd, name)]
    elif path is None:
        return None
    else:
        dirs = path.split(":")
        if not all(d.startswith("/") for d in dirs):
            return None  # an empty or relative entry means the shell's cwd: leave it to the shell
        candidates = [os.path.join(d, name) for d in dirs]
    for candidate in candidates:
        if _executable(candidate):
            return candidate
    return None
