"""The wirekit side of section (f): the exec server and its clients.

:class:`ExecServer` starts ``wirekit serve exec --listen 127.0.0.1:0`` (pinned to
the server CPU) with a token file and, for the TLS rows, ``--tls auto``. Every
wirekit process of the section gets ``WIREKIT_CONFIG_DIR`` pointing at a
temporary directory, so the self-signed certificate, the token and the pinned
fingerprints never touch the user's own config dir.

The worker functions below run in pinned child processes (``benchmarks.worker``)
and use the public Python API, ``wirekit.exec``.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .common import BenchError, Child, report, worker
from .exec_ssh import cpu_seconds, cpu_used

WIREKIT_CLI = (sys.executable, "-m", "wirekit")
CONFIG_ENV = "WIREKIT_CONFIG_DIR"


def missing() -> str | None:
    """Why the wirekit exec rows cannot run, or None."""
    try:
        api()
    except ImportError as exc:
        return f"no wirekit exec client ({exc})"
    return None


def api() -> Any:
    """The public exec API, ``wirekit.exec`` (imported by the workers that use it)."""
    import wirekit.exec

    return wirekit.exec


@contextlib.contextmanager
def config_dir() -> Iterator[Path]:
    """A temporary wirekit config dir, exported to every child started meanwhile."""
    path = Path(tempfile.mkdtemp(prefix="wirekit-execbench-"))
    old = os.environ.get(CONFIG_ENV)
    os.environ[CONFIG_ENV] = str(path)
    try:
        yield path
    finally:
        if old is None:
            os.environ.pop(CONFIG_ENV, None)
        else:
            os.environ[CONFIG_ENV] = old
        shutil.rmtree(path, ignore_errors=True)


def make_token(directory: Path) -> Path:
    from wirekit.security.token import ensure_token

    path = directory / "bench.token"
    ensure_token(path)
    return path


@dataclass(frozen=True)
class WirekitClient:
    """What a client needs to reach an :class:`ExecServer` (goes to workers as JSON)."""

    address: str
    token_file: str
    known_hosts: str
    pid: int  # the server's

    def cli(self, *command: str) -> list[str]:
        """``wirekit exec ADDR ... -- COMMAND`` with no stdin (``-n``)."""
        return [
            *WIREKIT_CLI,
            "exec",
            self.address,
            "-n",
            "--token-file",
            self.token_file,
            "--accept-new",
            "--known-hosts",
            self.known_hosts,
            "--",
            *command,
        ]


_ADDRESS = re.compile(r"exec server on (\S+?);")


class ExecServer:
    """``wirekit serve exec`` on 127.0.0.1, pinned to ``cpu``; a context manager."""

    def __init__(
        self, name: str, cpu: int, directory: Path, *, tls: bool, max_sessions: int | None = None
    ) -> None:
        self.name = name
        self.cpu = cpu
        self.tls = tls
        self.dir = directory
        self.max_sessions = max_sessions
        self.child: Child | None = None
        #: Why ``wirekit serve exec`` did not start (then the worker fallback runs).
        self.cli_error = ""

    def argv(self, token: Path) -> list[str]:
        argv = [*WIREKIT_CLI, "serve", "exec", "--listen", "127.0.0.1:0", "-q"]
        argv += ["--token-file", str(token)]
        if self.tls:
            argv += ["--tls", "auto"]
        if self.max_sessions is not None:
            argv += ["--max-sessions", str(self.max_sessions)]
        return argv

    def _start(self, token: Path) -> str:
        """Start ``wirekit serve exec``, or ``start_exec`` in a worker when the
        command cannot start a server yet; return the banner line."""
        self.child = Child(self.name, self.argv(token), self.cpu)
        try:
            return self.child.line("wirekit", 30)
        except BenchError as exc:
            self.child.stop()
            self.cli_error = str(exc)
        kwargs = {"token_file": str(token), "tls": self.tls, "max_sessions": self.max_sessions}
        self.child = worker(self.name, self.cpu, "exec_wirekit.serve_exec", **kwargs)
        try:
            return self.child.line("wirekit", 30)
        except BenchError:
            self.child.stop()
            raise

    def __enter__(self) -> WirekitClient:
        token = make_token(self.dir)
        line = self._start(token)
        assert self.child is not None
        match = _ADDRESS.search(line)
        if match is None:
            self.child.stop()
            raise BenchError(f"{self.name}: no address in its banner {line!r}")
        address = match.group(1).removeprefix("tcp://")
        known = self.dir / f"{self.name}.known_hosts"
        return WirekitClient(address, str(token), str(known), self.child.pid)

    def __exit__(self, *exc: object) -> None:
        if self.child is not None:
            self.child.stop()


# -- worker side -----------------------------------------------------------------------------


def serve_exec(token_file: str, tls: bool, max_sessions: int | None) -> None:
    """``start_exec`` from Python, with the banner ``wirekit serve exec`` prints: the
    fallback while the ``serve exec`` command cannot start a server."""
    from wirekit.aio.loop import run
    from wirekit.aio.secure import ServerAuth
    from wirekit.exec import ExecOptions, start_exec
    from wirekit.security.tlscert import auto_certificate, load_certificate

    async def main() -> None:
        auth, _ = ServerAuth.for_service(
            authorized_keys=None, token_file=Path(token_file), service="exec"
        )
        context = load_certificate(*auto_certificate()[:2])[0] if tls else None
        options = ExecOptions() if max_sessions is None else ExecOptions(max_sessions=max_sessions)
        server = await start_exec("127.0.0.1:0", auth=auth, ssl=context, options=options)
        scheme = "tls" if tls else "tcp"
        print(f"wirekit exec server on {scheme}://127.0.0.1:{server.address.port};", flush=True)
        await server.serve_forever()

    run(main())


def _connect(client: dict[str, Any]) -> Any:
    return api().connect(
        client["address"],
        token_file=Path(client["token_file"]),
        accept_new=True,
        known_hosts=Path(client["known_hosts"]),
    )


async def _connect_async(client: dict[str, Any]) -> Any:
    return await api().connect_async(
        client["address"],
        token_file=Path(client["token_file"]),
        accept_new=True,
        known_hosts=Path(client["known_hosts"]),
    )


def wirekit_seq(client: dict[str, Any], command: str, n: int, warmup: int, argv: bool) -> None:
    """``Session.run(command)`` ``n`` times on one connection; with ``argv`` the
    command runs as a program with arguments (no shell)."""
    what: Any = command.split() if argv else command
    with _connect(client) as session:
        for _ in range(warmup):
            session.run(what)
        failed = 0
        start, cpu = time.perf_counter(), cpu_seconds()
        for _ in range(n):
            failed += session.run(what).exit_code != 0
        elapsed = time.perf_counter() - start
    report(n=n, seconds=elapsed, per_command=elapsed / n, failed=failed, cpu=cpu_used(cpu, n))


def wirekit_concurrent(client: dict[str, Any], command: str, n: int, expect: str) -> None:
    """``n`` ``AsyncSession.run(command)`` at once on one connection (asyncio.gather)."""

    async def main() -> None:
        async with await _connect_async(client) as session:
            start = time.perf_counter()
            results = await asyncio.gather(
                *(session.run(command) for _ in range(n)), return_exceptions=True
            )
            elapsed = time.perf_counter() - start
        ok = sum(
            1
            for r in results
            if not isinstance(r, BaseException) and r.exit_code == 0 and r.stdout == expect.encode()
        )
        errors = sorted({repr(r) for r in results if isinstance(r, BaseException)})
        report(n=n, seconds=elapsed, ok=ok, errors=errors[:3])

    from wirekit.aio import run

    run(main())


def wirekit_seq_async(client: dict[str, Any], command: str, n: int, warmup: int) -> None:
    """``await AsyncSession.run(command)`` ``n`` times on one connection."""

    async def main() -> None:
        async with await _connect_async(client) as session:
            for _ in range(warmup):
                await session.run(command)
            failed = 0
            start, cpu = time.perf_counter(), cpu_seconds()
            for _ in range(n):
                failed += (await session.run(command)).exit_code != 0
            elapsed = time.perf_counter() - start
        report(n=n, seconds=elapsed, per_command=elapsed / n, failed=failed, cpu=cpu_used(cpu, n))

    from wirekit.aio import run

    run(main())


def wirekit_output(client: dict[str, Any], command: str, size: int) -> None:
    """Stream ``command``'s stdout with ``AsyncSession.start()``, counting and
    dropping the chunks; time from the start to the exit status."""

    async def main() -> None:
        async with await _connect_async(client) as session:
            start, cpu = time.perf_counter(), cpu_seconds()
            received = 0
            proc = await session.start(command)
            await proc.close_stdin()
            async for chunk in proc.stdout:
                received += len(chunk)
            status = await proc.wait()
            elapsed = time.perf_counter() - start
            tls = session.conn.get_extra_info("ssl_object")
        cipher = tls.cipher()[0] if tls is not None else "none"
        report(
            cpu=cpu_used(cpu, 1),
            size=size,
            seconds=elapsed,
            received=received,
            exit_status=status.exit_code,
            cipher=cipher,
        )

    from wirekit.aio import run

    run(main())


# -- worker side: what a command costs without any network ---------------------------------


def spawn_floor(shell: list[str], command: str, n: int, warmup: int, home: str) -> None:
    """``shell + [command]`` run ``n`` times locally (``subprocess.run``), HOME set to
    ``home``: the cost of starting a command that any exec server pays."""
    env = {**os.environ, "HOME": home}
    argv = [*shell, command]
    for _ in range(warmup):
        subprocess.run(argv, env=env, stdin=subprocess.DEVNULL)
    start, cpu = time.perf_counter(), cpu_seconds()
    for _ in range(n):
        subprocess.run(argv, env=env, stdin=subprocess.DEVNULL)
    elapsed = time.perf_counter() - start
    report(n=n, seconds=elapsed, per_command=elapsed / n, failed=0, cpu=cpu_used(cpu, n))


def generator_ceiling(command: str, size: int, gen_cpu: int) -> None:
    """``command`` (pinned to ``gen_cpu``) into a pipe that this process reads and drops,
    1 MiB at a time: what the output generator gives with no network at all."""
    buf = bytearray(1 << 20)
    start = time.perf_counter()
    proc = subprocess.Popen(
        ["taskset", "-c", str(gen_cpu), "/bin/sh", "-c", command],
        stdout=subprocess.PIPE,
        bufsize=0,
    )
    assert proc.stdout is not None
    fd = proc.stdout.fileno()
    received = 0
    while n := os.readv(fd, [buf]):
        received += n
    status = proc.wait()
    elapsed = time.perf_counter() - start
    report(size=size, seconds=elapsed, received=received, exit_status=status)
