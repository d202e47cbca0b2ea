"""Fixtures for the exec engine: an authenticated exec server on 127.0.0.1
(port 0) in a loop thread, a token in a temporary config dir, and clients.

Every test runs with ``WIREKIT_CONFIG_DIR`` and ``HOME`` in temporary dirs,
so no real credentials are read or written.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from wirekit.addr import Address
from wirekit.aio.secure import SecureServer, ServerAuth
from wirekit.limits import DEFAULT_LIMITS, Limits
from wirekit.security.token import ensure_token
from wirekit.services.exec import ExecOptions, start_exec

HERE = Path(__file__).resolve().parent
WAIT = 10.0


@pytest.fixture(autouse=True)
def private_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("WIREKIT_CONFIG_DIR", str(tmp_path / "config"))
    monkeypatch.delenv("WIREKIT_TOKEN_FILE", raising=False)
    return home


@pytest.fixture
def token_file(tmp_path: Path, private_home: Path) -> Path:
    path = tmp_path / "exec.token"
    ensure_token(path)
    return path


@dataclass
class ExecServer:
    server: SecureServer
    address: Address
    token_file: Path

    @property
    def addr(self) -> str:
        return str(self.address)


@pytest.fixture
def exec_server(loop_thread: Any, token_file: Path) -> Iterator[Callable[..., ExecServer]]:
    """``exec_server(**ExecOptions fields)``: start an exec server in the loop thread."""
    servers: list[SecureServer] = []

    def start(conn_limits: Limits = DEFAULT_LIMITS, **options: Any) -> ExecServer:
        async def go() -> SecureServer:
            auth, _ = ServerAuth.for_service(
                authorized_keys=None, token_file=token_file, service="exec"
            )
            return await start_exec(
                "127.0.0.1:0", auth=auth, options=ExecOptions(**options), limits=conn_limits
            )

        server = loop_thread.run(go())
        servers.append(server)
        return ExecServer(server, server.address, token_file)

    yield start
    for server in servers:
        loop_thread.run(server.shutdown(grace=1.0), timeout=WAIT)


def gone(pid: int) -> bool:
    """True once ``pid`` no longer exists (reaped, not a zombie)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "X"
    except (FileNotFoundError, ProcessLookupError):  # it went while being read
        return True


def group_gone(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return True
    return False


def zombies_of(pid: int) -> list[int]:
    """Zombie children of ``pid``, read from /proc."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except (FileNotFoundError, ProcessLookupError):
            continue
        if fields[0] == "Z" and int(fields[1]) == pid:
            found.append(int(entry))
    return found


def rss_of(pid: int) -> int:
    with open(f"/proc/{pid}/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def wait_for(condition: Callable[[], Any], timeout: float = WAIT, what: str = "") -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what or condition} not reached within {timeout} s")
        time.sleep(0.01)


@pytest.fixture
def server_process(token_file: Path) -> Iterator[Callable[..., tuple[Any, str]]]:
    """``server_process(*args)``: an exec server in its own process (for RSS);
    returns (Popen, address)."""
    import subprocess

    procs: list[subprocess.Popen[bytes]] = []

    def start(*args: str) -> tuple[subprocess.Popen[bytes], str]:
        proc = subprocess.Popen(
            [sys.executable, str(HERE / "exec_server_proc.py"), str(token_file), *args],
            stdout=subprocess.PIPE,
        )
        procs.append(proc)
        assert proc.stdout is not None
        line = proc.stdout.readline().decode().strip()
        assert line.startswith("listening "), line
        return proc, line.split()[1]

    yield start
    for proc in procs:
        proc.terminate()
        try:
            proc.wait(WAIT)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


class Probe:
    """Process checks from /proc: ``probe.gone(pid)``, ``probe.group_gone(pgid)``,
    ``probe.zombies_of(pid)``, ``probe.rss_of(pid)``, ``probe.wait_for(cond)``."""

    gone = staticmethod(gone)
    group_gone = staticmethod(group_gone)
    zombies_of = staticmethod(zombies_of)
    rss_of = staticmethod(rss_of)
    wait_for = staticmethod(wait_for)


@pytest.fixture
def probe() -> type[Probe]:
    return Probe
