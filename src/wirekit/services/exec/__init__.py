"""Remote exec: the server (server.py, command.py, process.py, pty.py) and
the clients (client.py asyncio, syncclient.py blocking). See docs/exec.md.

Names are imported on first use (``wirekit._lazy``), so that the ``wirekit
exec`` client does not load the server's modules."""

from typing import TYPE_CHECKING

from ..._lazy import lazy_exports

if TYPE_CHECKING:
    from .client import AsyncProcess, AsyncSession, OutputStream, connect_async
    from .result import CommandFailed, CommandRefused, Result
    from .server import ExecConnection, ExecOptions, ExecService, exec_handler, start_exec
    from .syncclient import Process, Session, connect

__getattr__, __dir__ = lazy_exports(
    __name__,
    globals(),
    {
        ".client": ("AsyncProcess", "AsyncSession", "OutputStream", "connect_async"),
        ".result": ("CommandFailed", "CommandRefused", "Result"),
        ".server": ("ExecConnection", "ExecOptions", "ExecService", "exec_handler", "start_exec"),
        ".syncclient": ("Process", "Session", "connect"),
    },
)

__all__ = [
    "AsyncProcess",
    "AsyncSession",
    "CommandFailed",
    "CommandRefused",
    "ExecConnection",
    "ExecOptions",
    "ExecService",
    "OutputStream",
    "Process",
    "Result",
    "Session",
    "connect",
    "connect_async",
    "exec_handler",
    "start_exec",
]
