"""The OpenSSH and asyncssh references of section (f): a private sshd and its clients.

:class:`PrivateSshd` starts ``sshd -D -e -f CONFIG`` on a free loopback port with
everything in its own temporary directory: host key, client key, authorized_keys,
known_hosts, PID file and a HOME for the session. Nothing outside that directory is
read or written (``-F /dev/null`` on every client, no ``~/.ssh``), except that sshd
run as root needs its privilege-separation directory ``/run/sshd`` to exist.

sshd runs commands as ``$SHELL -c CMD`` with the login shell of the user, which
sources that user's ``~/.bashrc`` when bash is started by sshd; ``SetEnv HOME=...``
points HOME at an empty directory of the temporary tree so that no rc file adds
latency (``PermitUserRC no`` skips ``~/.ssh/rc`` too).

The worker functions below run in pinned child processes (``benchmarks.worker``).
"""

from __future__ import annotations

import asyncio
import os
import pwd
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .common import HOST, BenchError, Child, free_port, report, wait_listening

SSHD = "/usr/sbin/sshd"
AES_GCM = "aes128-gcm@openssh.com"
CHACHA = "chacha20-poly1305@openssh.com"


def missing() -> str | None:
    """Why the OpenSSH reference cannot run, or None."""
    for tool in (SSHD, "ssh", "ssh-keygen"):
        if shutil.which(tool) is None:
            return f"{tool} not installed"
    return None


def asyncssh_missing() -> str | None:
    try:
        import asyncssh  # noqa: F401
    except ImportError:
        return "asyncssh not installed (pip install asyncssh)"
    return None


def _keygen(path: Path) -> None:
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "execbench", "-f", str(path)],
        check=True,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        timeout=30,
    )


@dataclass(frozen=True)
class SshClient:
    """What a client needs to reach a :class:`PrivateSshd` (plain data: it goes to
    workers as JSON)."""

    port: int
    user: str
    key: str
    known_hosts: str

    def argv(self, *options: str, control: str | None = None) -> list[str]:
        """``ssh`` with nothing read from ``~/.ssh``; with ``control``, through the
        ControlMaster socket at that path (and port 1, so a client that fails to use
        the master fails instead of quietly opening its own connection)."""
        base = [
            "ssh",
            "-F",
            "/dev/null",
            "-o",
            f"UserKnownHostsFile={self.known_hosts}",
            "-o",
            "StrictHostKeyChecking=accept-new",
            "-o",
            "BatchMode=yes",
            "-o",
            "LogLevel=ERROR",
            "-i",
            self.key,
        ]
        if control is not None:
            base += ["-o", "ControlMaster=no", "-o", f"ControlPath={control}", "-p", "1"]
        else:
            base += ["-p", str(self.port)]
        return [*base, *options, f"{self.user}@{HOST}"]


class PrivateSshd:
    """An sshd of our own on 127.0.0.1, pinned to ``cpu``; use as a context manager."""

    def __init__(self, name: str, cpu: int, max_sessions: int | None = None) -> None:
        self.name = name
        self.cpu = cpu
        self.max_sessions = max_sessions
        self.dir = Path(tempfile.mkdtemp(prefix="wirekit-execbench-ssh-"))
        self.port = free_port()
        self.user = pwd.getpwuid(os.getuid()).pw_name
        self.child: Child | None = None

    def _config(self) -> str:
        d = self.dir
        lines = [
            f"Port {self.port}",
            f"ListenAddress {HOST}",
            f"HostKey {d / 'host_ed25519'}",
            f"AuthorizedKeysFile {d / 'authorized_keys'}",
            f"PidFile {d / 'sshd.pid'}",
            "StrictModes no",
            "UsePAM no",
            "PubkeyAuthentication yes",
            "PasswordAuthentication no",
            "KbdInteractiveAuthentication no",
            "PermitRootLogin prohibit-password",
            "PermitUserRC no",
            "PrintMotd no",
            "PrintLastLog no",
            "UseDNS no",
            "MaxStartups 200:30:400",
            f"SetEnv HOME={d / 'home'}",
        ]
        if self.max_sessions is not None:
            lines.append(f"MaxSessions {self.max_sessions}")
        return "\n".join(lines) + "\n"

    def start(self) -> SshClient:
        d = self.dir
        (d / "home").mkdir()
        _keygen(d / "host_ed25519")
        _keygen(d / "client_key")
        (d / "authorized_keys").write_bytes((d / "client_key.pub").read_bytes())
        host_pub = (d / "host_ed25519.pub").read_text().split()
        (d / "known_hosts").write_text(f"[{HOST}]:{self.port} {host_pub[0]} {host_pub[1]}\n")
        (d / "sshd_config").write_text(self._config())
        if os.geteuid() == 0:
            Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)
        argv = [SSHD, "-D", "-e", "-f", str(d / "sshd_config")]
        self.child = Child(self.name, argv, self.cpu, stdout=subprocess.DEVNULL)
        wait_listening(self.port, self.child)
        return SshClient(self.port, self.user, str(d / "client_key"), str(d / "known_hosts"))

    def stop(self) -> None:
        if self.child is not None:
            self.child.stop()
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> SshClient:
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(self, *exc: object) -> None:
        self.stop()


class ControlMaster:
    """``ssh -M -N`` in the foreground, pinned to ``cpu``: one connection that later
    ``ssh -S`` clients share. Use as a context manager; yields the socket path."""

    def __init__(self, name: str, client: SshClient, cpu: int, *options: str) -> None:
        self.path = str(Path(client.key).parent / f"{name}.cm")
        argv = client.argv("-M", "-N", "-o", f"ControlPath={self.path}", *options)
        self.child = Child(name, argv, cpu, stdout=subprocess.DEVNULL)

    def __enter__(self) -> str:
        deadline = time.monotonic() + 15
        while not os.path.exists(self.path):
            if self.child.proc.poll() is not None or time.monotonic() > deadline:
                self.child.stop()
                raise BenchError(f"ssh ControlMaster did not start ({self.child.log_tail()})")
            time.sleep(0.01)
        return self.path

    def __exit__(self, *exc: object) -> None:
        self.child.stop()


# -- worker side -----------------------------------------------------------------------------


def cpu_seconds() -> float:
    """CPU time of this process and its waited-for children, user + system."""
    times = os.times()
    return times.user + times.system + times.children_user + times.children_system


def cpu_used(since: float, n: int) -> float:
    """CPU seconds per command since ``since`` (a :func:`cpu_seconds` reading)."""
    return (cpu_seconds() - since) / n


# -- worker side: OpenSSH clients ------------------------------------------------------------


def cli_seq(argv: list[str], command: str, n: int, warmup: int) -> None:
    """Run the command-line client ``argv + [command]`` ``n`` times one after another
    (after ``warmup`` runs); report the seconds per command."""
    for _ in range(warmup):
        subprocess.run([*argv, command], stdin=subprocess.DEVNULL, capture_output=True)
    failed = 0
    start, cpu = time.perf_counter(), cpu_seconds()
    for _ in range(n):
        proc = subprocess.run([*argv, command], stdin=subprocess.DEVNULL, capture_output=True)
        failed += proc.returncode != 0
    elapsed = time.perf_counter() - start
    report(n=n, seconds=elapsed, per_command=elapsed / n, failed=failed, cpu=cpu_used(cpu, n))


def ssh_concurrent(argv: list[str], command: str, n: int, expect: str) -> None:
    """Start ``n`` clients at once, wait for all; a success exits 0 printing ``expect``."""
    start = time.perf_counter()
    procs = [
        subprocess.Popen(
            [*argv, command],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        for _ in range(n)
    ]
    outputs = [proc.communicate() for proc in procs]
    elapsed = time.perf_counter() - start
    ok = sum(
        1
        for proc, (out, _) in zip(procs, outputs, strict=True)
        if proc.returncode == 0 and out.decode(errors="replace") == expect
    )
    errors = sorted({err.decode(errors="replace").strip() for _, err in outputs} - {""})
    report(n=n, seconds=elapsed, ok=ok, errors=errors[:3])


# -- worker side: asyncssh ------------------------------------------------------------------


async def _asyncssh_connect(client: dict[str, Any], cipher: str | None = None) -> Any:
    import asyncssh

    options: dict[str, Any] = {"encryption_algs": [cipher]} if cipher else {}
    return await asyncssh.connect(
        HOST,
        client["port"],
        username=client["user"],
        client_keys=[client["key"]],
        known_hosts=client["known_hosts"],
        config=None,
        agent_path=None,
        **options,
    )


def _run_async(main: Any) -> None:
    import uvloop

    uvloop.run(main)


def asyncssh_seq(client: dict[str, Any], command: str, n: int, warmup: int) -> None:
    """``conn.run(command)`` ``n`` times on one connection."""

    async def main() -> None:
        async with await _asyncssh_connect(client) as conn:
            for _ in range(warmup):
                await conn.run(command)
            failed = 0
            start, cpu = time.perf_counter(), cpu_seconds()
            for _ in range(n):
                result = await conn.run(command)
                failed += result.exit_status != 0
            elapsed = time.perf_counter() - start
        report(n=n, seconds=elapsed, per_command=elapsed / n, failed=failed, cpu=cpu_used(cpu, n))

    _run_async(main())


def asyncssh_concurrent(client: dict[str, Any], command: str, n: int, expect: str) -> None:
    """``n`` ``conn.run(command)`` at once on one connection (asyncio.gather)."""

    async def main() -> None:
        async with await _asyncssh_connect(client) as conn:
            start = time.perf_counter()
            results = await asyncio.gather(
                *(conn.run(command) for _ in range(n)), return_exceptions=True
            )
            elapsed = time.perf_counter() - start
        ok = sum(
            1
            for r in results
            if not isinstance(r, BaseException) and r.exit_status == 0 and r.stdout == expect
        )
        errors = sorted({str(r) for r in results if isinstance(r, BaseException)})
        report(n=n, seconds=elapsed, ok=ok, errors=errors[:3])

    _run_async(main())


def asyncssh_output(client: dict[str, Any], command: str, size: int, cipher: str) -> None:
    """Read ``command``'s stdout through a session whose data_received only counts
    bytes (asyncssh's lowest-overhead API); time from the channel open to its close."""
    import asyncssh

    class Count(asyncssh.SSHClientSession[bytes]):
        received = 0

        def data_received(self, data: bytes, datatype: asyncssh.DataType) -> None:
            self.received += len(data)

    async def main() -> None:
        async with await _asyncssh_connect(client, cipher) as conn:
            start, cpu = time.perf_counter(), cpu_seconds()
            chan, session = await conn.create_session(Count, command, encoding=None)
            await chan.wait_closed()
            elapsed = time.perf_counter() - start
            status = chan.get_exit_status()
            used = conn.get_extra_info("recv_cipher")
        report(
            cpu=cpu_used(cpu, 1),
            size=size,
            seconds=elapsed,
            received=session.received,
            exit_status=status,
            cipher=str(used),
        )

    _run_async(main())
