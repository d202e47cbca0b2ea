"""Shared pieces: result records, pinned child processes and worker-side helpers.

The driver (``python -m benchmarks``) never measures anything itself: every
figure comes from a child process started with ``taskset -c CPU`` through
:class:`Child`. A child announces itself with one-line messages on stdout,
``READY <port>`` once it listens and ``RESULT <json>`` when it has a figure.
"""

from __future__ import annotations

import contextlib
import json
import os
import resource
import select
import signal
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Hashable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import IO, Any, Generic, TypeVar

BENCH_DIR = Path(__file__).resolve().parent
ROOT = BENCH_DIR.parent
WORK_DIR = BENCH_DIR / ".work"
LOG_DIR = WORK_DIR / "logs"
HOST = "127.0.0.1"

T = TypeVar("T")
K = TypeVar("K", bound=Hashable)


class BenchError(Exception):
    """A measurement could not be taken; the report shows the reason."""


@dataclass(frozen=True)
class Config:
    """Options every section reads."""

    quick: bool = False
    repeats: int = 3

    def count(self, full: int, quick: int) -> int:
        return quick if self.quick else full


# -- placements -----------------------------------------------------------------


@dataclass(frozen=True)
class Placement:
    """Which CPU the server (or receiver) and the client (or sender) run on."""

    server_cpu: int
    client_cpu: int

    @property
    def label(self) -> str:
        if self.server_cpu == self.client_cpu:
            return f"same CPU (both on {self.server_cpu})"
        return f"server CPU {self.server_cpu}, client CPU {self.client_cpu}"

    @property
    def short(self) -> str:
        return "same CPU" if self.server_cpu == self.client_cpu else "split CPUs"


def _cpus() -> list[int]:
    return sorted(os.sched_getaffinity(0))


def split_placement() -> Placement:
    """Server on the first CPU, client on the second (same CPU on a 1-CPU machine)."""
    cpus = _cpus()
    return Placement(cpus[0], cpus[1] if len(cpus) > 1 else cpus[0])


def shared_placement() -> Placement:
    cpu = _cpus()[0]
    return Placement(cpu, cpu)


# -- results --------------------------------------------------------------------


@dataclass
class Figure:
    """One measured value (the median of ``runs``), or None with a ``note``."""

    tool: str
    case: str
    metric: str
    unit: str
    value: float | None
    placement: str
    runs: list[float] = field(default_factory=list)
    note: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Target:
    """A goal: ``ratio >= value`` or, when ``absolute``, ``figure <= value``."""

    op: str
    value: float
    absolute: bool = False
    unit: str = "x"

    @property
    def text(self) -> str:
        what = "" if self.absolute else " ratio"
        return f"{what} {self.op} {format_number(self.value)}{self.unit}".strip()

    def met(self, ratio: float | None, figure: float | None) -> bool | None:
        value = figure if self.absolute else ratio
        if value is None:
            return None
        return value >= self.value if self.op == ">=" else value <= self.value


@dataclass
class Row:
    """One line of the report table."""

    what: str
    wirekit: str
    reference: str
    ratio: float | None
    target: str
    met: bool | None
    placement: str
    lower_is_better: bool = False
    target_ratio: float | None = None  # drawn on the chart when the target is a ratio


@dataclass
class SectionResult:
    key: str
    title: str
    rows: list[Row] = field(default_factory=list)
    figures: list[Figure] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def format_number(value: float) -> str:
    if value >= 100:
        return f"{value:,.0f}"
    if value >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}".rstrip("0").rstrip(".") if value != int(value) else f"{value:.0f}"


def format_figure(fig: Figure | None) -> str:
    if fig is None:
        return "-"
    if fig.value is None:
        return f"{fig.tool}: {fig.note or 'no figure'}"
    return f"{fig.tool}: {format_number(fig.value)} {fig.unit}"


def ratio_of(a: Figure | None, b: Figure | None) -> float | None:
    if a is None or b is None or a.value is None or b.value is None or b.value == 0:
        return None
    return a.value / b.value


def compare(
    what: str,
    wirekit: Figure,
    reference: Figure | None,
    target: Target | None = None,
    lower_is_better: bool = False,
) -> Row:
    """A table row: ``wirekit`` against ``reference`` and, if given, a target."""
    ratio = ratio_of(wirekit, reference)
    return Row(
        what=what,
        wirekit=format_figure(wirekit),
        reference=format_figure(reference),
        ratio=ratio,
        target=target.text if target else "-",
        met=target.met(ratio, wirekit.value) if target else None,
        placement=wirekit.placement,
        lower_is_better=lower_is_better,
        target_ratio=target.value if target and not target.absolute else None,
    )


@dataclass
class Runs(Generic[T]):
    """Every result of one variant, or the reason it has none."""

    values: list[T] = field(default_factory=list)
    note: str = ""


def interleaved(keys: Sequence[K], repeats: int, once: Callable[[K, int], T]) -> dict[K, Runs[T]]:
    """Run ``once(key, i)`` for each repeat and key, round-robin (run 1 of every key,
    then run 2, ...) so that a burst of load elsewhere on the machine hits all keys
    alike. A key that fails once is not run again; its note says why."""
    runs: dict[K, Runs[T]] = {key: Runs() for key in keys}
    for i in range(repeats):
        for key in keys:
            entry = runs[key]
            if entry.note:
                continue
            try:
                entry.values.append(once(key, i))
            except BenchError as exc:
                entry.note = f"failed: {exc}"
    return runs


def median(values: Sequence[float]) -> float | None:
    return statistics.median(values) if values else None


def percentile(sorted_values: Sequence[float], pct: float) -> float:
    """Nearest-rank percentile of already sorted values."""
    if not sorted_values:
        raise ValueError("no values")
    rank = max(0, min(len(sorted_values) - 1, round(pct / 100 * len(sorted_values)) - 1))
    return sorted_values[rank]


# -- child processes (driver side) ------------------------------------------------


def byte_compile_wirekit() -> None:
    """Write the bytecode of the wirekit package being measured, as ``pip install``
    does for an install from a wheel.

    An editable checkout run with ``PYTHONDONTWRITEBYTECODE`` set would otherwise
    compile every module from source at each start of the command line (about
    40 ms of a ``wirekit exec`` start on these machines), a cost no installed
    copy pays. Stale bytecode is never used: Python checks the source's mtime."""
    import compileall
    import importlib.util

    spec = importlib.util.find_spec("wirekit")
    if spec is None or not spec.submodule_search_locations:
        return
    for directory in spec.submodule_search_locations:
        compileall.compile_dir(directory, quiet=1)


def _child_env() -> dict[str, str]:
    env = dict(os.environ)
    paths = [str(ROOT), *filter(None, env.get("PYTHONPATH", "").split(os.pathsep))]
    env["PYTHONPATH"] = os.pathsep.join(paths)
    return env


class Child:
    """A process pinned to one CPU, with line-based messages read from its stdout."""

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        cpu: int | None,
        *,
        stdin: IO[bytes] | int | None = subprocess.DEVNULL,
        stdout: IO[bytes] | int | None = subprocess.PIPE,
    ) -> None:
        self.name = name
        LOG_DIR.mkdir(parents=True, exist_ok=True)
        self.log_path = LOG_DIR / f"{name}.log"
        prefix = ["taskset", "-c", str(cpu)] if cpu is not None else []
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(
                [*prefix, *argv],
                stdin=stdin,
                stdout=stdout,
                stderr=log,
                cwd=ROOT,
                env=_child_env(),
                start_new_session=True,
            )
        self._buf = b""

    @property
    def pid(self) -> int:
        return self.proc.pid

    def log_tail(self, lines: int = 6) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        tail = [line for line in text.splitlines() if line.strip()][-lines:]
        return " | ".join(tail)

    def _fail(self, what: str) -> BenchError:
        tail = self.log_tail()
        return BenchError(f"{self.name}: {what}" + (f" ({tail})" if tail else ""))

    def line(self, tag: str, timeout: float, watch: Child | None = None) -> str:
        """Wait for a stdout line starting with ``tag``; return the rest of it.

        ``watch`` is the peer process: if it fails first, give up at once."""
        assert self.proc.stdout is not None, "child stdout is not a pipe"
        fd = self.proc.stdout.fileno()
        deadline = time.monotonic() + timeout
        while True:
            while b"\n" in self._buf:
                raw, self._buf = self._buf.split(b"\n", 1)
                text = raw.decode("utf-8", "replace")
                if text == tag or text.startswith(tag + " "):
                    return text[len(tag) :].strip()
            left = deadline - time.monotonic()
            if left <= 0:
                raise self._fail(f"no {tag} line within {timeout:g} s")
            if watch is not None and watch.proc.poll() not in (None, 0):
                raise watch._fail(f"exited with code {watch.proc.returncode}")
            readable, _, _ = select.select([fd], [], [], min(left, 0.25))
            if readable:
                chunk = os.read(fd, 65536)
                if not chunk:
                    code = self.proc.wait()
                    raise self._fail(f"exited with code {code} before {tag}")
                self._buf += chunk

    def ready(self, timeout: float = 30.0) -> int:
        return int(self.line("READY", timeout))

    def result(self, timeout: float, watch: Child | None = None) -> dict[str, Any]:
        data: dict[str, Any] = json.loads(self.line("RESULT", timeout, watch))
        return data

    def wait(self, timeout: float) -> int:
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.stop()
            raise self._fail(f"still running after {timeout:.0f} s") from None

    def wait_with_io(self, timeout: float) -> tuple[int, dict[str, int]]:
        """Wait for the child to exit and return its exit code plus its /proc I/O
        counters (``wchar`` = bytes it wrote), read while it is a zombie."""
        pidfd = os.pidfd_open(self.proc.pid)
        try:
            readable, _, _ = select.select([pidfd], [], [], timeout)
        finally:
            os.close(pidfd)
        if not readable:
            self.stop()
            raise self._fail(f"still running after {timeout:.0f} s")
        counters: dict[str, int] = {}
        with contextlib.suppress(OSError, ValueError):
            for line in Path(f"/proc/{self.proc.pid}/io").read_text().splitlines():
                key, _, value = line.partition(":")
                counters[key.strip()] = int(value)
        return self.proc.wait(), counters

    def stop(self) -> None:
        """End the child's process group: SIGTERM, then SIGKILL after a second."""
        if self.proc.poll() is None:
            self._signal(signal.SIGTERM)
            try:
                self.proc.wait(1.0)
            except subprocess.TimeoutExpired:
                self._signal(signal.SIGKILL)
                self.proc.wait()
        if self.proc.stdout is not None:
            self.proc.stdout.close()

    def _signal(self, sig: signal.Signals) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, sig)


def worker(name: str, cpu: int, target: str, **kwargs: Any) -> Child:
    """Start ``benchmarks.worker`` running ``target`` (``module.function``)."""
    argv = [sys.executable, "-m", "benchmarks.worker", target, json.dumps(kwargs)]
    return Child(name, argv, cpu)


@dataclass(frozen=True)
class Side:
    """One process of a pair: ``module.function`` and its keyword arguments."""

    target: str
    kwargs: dict[str, Any] = field(default_factory=dict)


def run_pair(
    name: str,
    placement: Placement,
    server: Side,
    client: Side,
    *,
    result_from: str = "client",
    timeout: float = 120.0,
) -> dict[str, Any]:
    """Start ``server`` (it prints READY <port>), then ``client`` with ``port=``;
    return the RESULT of the side named by ``result_from``, then stop both."""
    srv = worker(f"{name}-server", placement.server_cpu, server.target, **server.kwargs)
    try:
        port = srv.ready()
        cli = worker(
            f"{name}-client", placement.client_cpu, client.target, port=port, **client.kwargs
        )
        try:
            if result_from == "server":
                result = srv.result(timeout, watch=cli)
                cli.wait(timeout)
            else:
                result = cli.result(timeout, watch=srv)
            return result
        finally:
            cli.stop()
    finally:
        srv.stop()


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def is_listening(port: int) -> bool:
    """True when a TCP socket listens on ``port`` (read from /proc, no probe connection)."""
    lines: list[str] = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError):
            lines += Path(table).read_text().splitlines()[1:]
    for line in lines:
        parts = line.split()
        if len(parts) > 3 and parts[3] == "0A" and int(parts[1].split(":")[1], 16) == port:
            return True
    return False


def wait_listening(port: int, child: Child, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not is_listening(port):
        if child.proc.poll() is not None:
            raise BenchError(f"{child.name}: exited before listening ({child.log_tail()})")
        if time.monotonic() > deadline:
            raise BenchError(f"{child.name}: not listening on port {port} after {timeout:g} s")
        time.sleep(0.005)


def rss_bytes(pid: int) -> int:
    """Resident set size of a process, from /proc/PID/status."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise BenchError(f"no VmRSS for process {pid}")


# -- worker side ------------------------------------------------------------------


def announce(tag: str, payload: Any = None) -> None:
    text = tag if payload is None else f"{tag} {json.dumps(payload)}"
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def ready(port: int) -> None:
    announce("READY", port)


def report(**result: Any) -> None:
    announce("RESULT", result)


def raise_nofile(wanted: int = 1 << 20) -> int:
    """Raise this process's open-file limit as far as allowed; return the new soft limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    new = min(wanted, hard) if hard != resource.RLIM_INFINITY else wanted
    if new > soft:
        resource.setrlimit(resource.RLIMIT_NOFILE, (new, hard))
        return new
    return soft


#: The two ways to write a wirekit server handler, as the report names them.
CALLBACK = "callback"  # a wirekit.MessageHandler: no task per connection
COROUTINE = "coroutine"  # async def handler(conn): one task per connection
HANDLER_LABELS = {CALLBACK: "wirekit MessageHandler", COROUTINE: "wirekit coroutine handler"}


def serve_wirekit_echo(handler: str, max_connections_per_ip: int | None = None) -> None:
    """A wirekit echo server on HOST, port 0: print READY <port>, then serve forever.

    ``handler`` is CALLBACK (a ``wirekit.MessageHandler`` whose ``message_received``
    does ``conn.write(message)``) or COROUTINE (``async for m in conn: await
    conn.send(m)``). Limits are the defaults except ``max_connections_per_ip``."""
    import wirekit
    from wirekit.aio import run

    class Echo(wirekit.MessageHandler):
        def message_received(self, conn: wirekit.Connection, message: Any) -> None:
            conn.write(message)

    async def echo(conn: wirekit.Connection) -> None:
        async for msg in conn:
            await conn.send(msg)  # type: ignore[arg-type]

    if handler not in HANDLER_LABELS:
        raise SystemExit(f"unknown handler kind {handler!r}")
    limits = wirekit.DEFAULT_LIMITS
    if max_connections_per_ip is not None:
        limits = limits.replace(max_connections_per_ip=max_connections_per_ip)

    async def main() -> None:
        serving = Echo() if handler == CALLBACK else echo
        async with wirekit.serve(serving, f"{HOST}:0", limits=limits) as server:
            ready(server.address.port)
            await server.serve_forever()

    run(main())


def recv_exactly(sock: socket.socket, buf: bytearray) -> None:
    """Fill ``buf`` from ``sock``; raise ConnectionError on EOF."""
    view = memoryview(buf)
    got = 0
    while got < len(buf):
        n = sock.recv_into(view[got:])
        if not n:
            raise ConnectionError("peer closed")
        got += n
