"""What a command returns, and the errors the exec clients raise (shared by
the asyncio and the blocking client)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from ...errors import ServiceError
from ...proto.exec import SIGNALS, ExecExit, ExecOpen, Pty

__all__ = ["CommandFailed", "CommandRefused", "Result", "build_open", "check_signal"]


@dataclass(frozen=True, slots=True)
class Result:
    """A finished command. ``exit_code`` is None when a signal ended it
    (``signal`` names it, e.g. "TERM"); ``reason`` is "exit", "signal",
    "timeout" or "cancelled"; ``cwd`` is the shell's last directory."""

    stdout: bytes
    stderr: bytes
    exit_code: int | None
    signal: str | None = None
    core_dumped: bool = False
    reason: str = "exit"
    cwd: str | None = None

    @property
    def ok(self) -> bool:
        return self.exit_code == 0

    def check(self) -> Result:
        """Return self, or raise CommandFailed unless the command exited 0."""
        if not self.ok:
            raise CommandFailed(self)
        return self

    @classmethod
    def from_exit(cls, stdout: bytes, stderr: bytes, message: ExecExit) -> Result:
        return cls(
            stdout,
            stderr,
            message.exit_code,
            message.signal,
            message.core_dumped,
            message.reason,
            message.cwd,
        )


class CommandRefused(ServiceError):
    """The server did not run the command; ``code`` is machine-readable
    ("too-large", "not-allowed", "spawn-failed", "bad-request", ...)."""

    def __init__(self, code: str, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


class CommandFailed(ServiceError):
    """``check=True``: the command did not exit 0; ``result`` has its output."""

    def __init__(self, result: Result) -> None:
        if result.exit_code is None:
            how = f"was killed by SIG{result.signal}"
            if result.reason in ("timeout", "cancelled"):
                how += f" ({result.reason})"
        else:
            how = f"exited with {result.exit_code}"
        super().__init__(f"command {how}")
        self.result = result


def check_signal(name: str) -> str:
    """Normalise "SIGINT"/"int" to "INT"; ValueError for an unknown name."""
    bare = name.upper().removeprefix("SIG")
    if bare not in SIGNALS:
        raise ValueError(f"unknown signal {name!r}; one of {', '.join(sorted(SIGNALS))}")
    return bare


def build_open(
    cmd: str | Sequence[str],
    *,
    env: Mapping[str, str] | None,
    cwd: str | None,
    timeout: float | None,
    pty: Pty | None,
    track_cwd: bool,
    window: int,
) -> ExecOpen:
    """A string runs through the server's shell; a sequence runs as argv."""
    if isinstance(cmd, str):
        return ExecOpen(
            command=cmd,
            env=dict(env or {}),
            cwd=cwd,
            pty=pty,
            timeout=timeout,
            track_cwd=track_cwd,
            window=window,
        )
    if isinstance(cmd, bytes):
        raise TypeError("give the command as str or a sequence of str, not bytes")
    return ExecOpen(
        argv=[str(a) for a in cmd],
        env=dict(env or {}),
        cwd=cwd,
        pty=pty,
        timeout=timeout,
        window=window,
    )
