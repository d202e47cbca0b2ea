"""``wirekit.exec``: run commands on a ``wirekit serve exec`` server.

Blocking::

    import wirekit.exec

    with wirekit.exec.connect("127.0.0.1:7022") as session:
        session.run("cd /tmp")
        print(session.run("pwd").stdout)          # b'/tmp\\n'

asyncio::

    async with await wirekit.exec.connect_async("127.0.0.1:7022") as session:
        results = await asyncio.gather(*(session.run(["echo", str(i)]) for i in range(100)))

docs/exec.md is the guide; the server side is :func:`start_exec`.
"""

from .proto.exec import ExecExit, ExecLimits, Pty
from .services.exec import (
    AsyncProcess,
    AsyncSession,
    CommandFailed,
    CommandRefused,
    ExecOptions,
    ExecService,
    OutputStream,
    Process,
    Result,
    Session,
    connect,
    connect_async,
    exec_handler,
    start_exec,
)

__all__ = [
    "AsyncProcess",
    "AsyncSession",
    "CommandFailed",
    "CommandRefused",
    "ExecExit",
    "ExecLimits",
    "ExecOptions",
    "ExecService",
    "OutputStream",
    "Process",
    "Pty",
    "Result",
    "Session",
    "connect",
    "connect_async",
    "exec_handler",
    "start_exec",
]
