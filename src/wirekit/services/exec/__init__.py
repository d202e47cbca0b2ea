"""Remote exec: the server (server.py, command.py, process.py, pty.py) and
the clients (client.py asyncio, syncclient.py blocking). See docs/exec.md."""

from .client import AsyncProcess, AsyncSession, OutputStream, connect_async
from .result import CommandFailed, CommandRefused, Result
from .server import ExecConnection, ExecOptions, ExecService, exec_handler, start_exec
from .syncclient import Process, Session, connect

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
