"""Where the time of one sequential wirekit exec command goes.

``python -m benchmarks.exec_profile [-n 3000] [--argv] [--py-spy]``

Starts ``wirekit serve exec`` pinned to the first CPU and a client worker
(``Session.run`` N times on one connection) pinned to the second, as section (f)
does, and prints per command: wall time, client CPU, the server's own CPU and the
CPU of the commands it ran (its reaped children), read from /proc/PID/stat
before and after the run. With ``--py-spy`` it then samples the server during a
second run (py-spy, 1 kHz) and prints where its CPU goes, by function.
"""

from __future__ import annotations

import argparse
import collections
import dataclasses
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from .common import split_placement, worker
from .exec_runs import proc_cpu
from .exec_wirekit import ExecServer, config_dir


def run_client(client: Any, cpu: int, n: int, argv: bool, name: str) -> dict[str, Any]:
    child = worker(
        name,
        cpu,
        "exec_wirekit.wirekit_seq",
        client=dataclasses.asdict(client),
        command="true",
        n=n,
        warmup=20,
        argv=argv,
    )
    try:
        return child.result(600)
    finally:
        child.stop()


def breakdown(client: Any, server_pid: int, cpu: int, n: int, argv: bool) -> None:
    own0, kids0 = proc_cpu(server_pid)
    res = run_client(client, cpu, n, argv, "f-profile-cpu")
    own1, kids1 = proc_cpu(server_pid)
    per = 1000 / n
    print(f"{n} x `true` ({'argv' if argv else 'shell'} mode), per command:")
    print(f"  wall time            {1000 * res['per_command']:.3f} ms")
    print(f"  client CPU           {1000 * res['cpu']:.3f} ms")
    print(f"  server CPU (itself)  {per * (own1 - own0):.3f} ms")
    print(f"  commands' CPU        {per * (kids1 - kids0):.3f} ms (reaped children of the server)")


def sample(client: Any, server_pid: int, cpu: int, n: int, argv: bool) -> None:
    if shutil.which("py-spy") is None:
        print("py-spy is not installed: no per-function breakdown")
        return
    raw = Path(tempfile.mkdtemp(prefix="wirekit-profile-")) / "server.txt"
    spy = subprocess.Popen(
        [
            "py-spy",
            "record",
            "--rate",
            "1000",
            "--format",
            "raw",
            "-o",
            str(raw),
            "-p",
            str(server_pid),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        res = run_client(client, cpu, n, argv, "f-profile-spy")
    finally:
        spy.send_signal(signal.SIGINT)
        spy.wait(60)
    print(f"\nunder py-spy: {1000 * res['per_command']:.3f} ms per command (sampling slows it)")
    show(raw, n)
    shutil.rmtree(raw.parent, ignore_errors=True)


def show(raw: Path, n: int) -> None:
    """Samples (1 ms each) per command, by function: self time and inclusive time."""
    own: collections.Counter[str] = collections.Counter()
    inclusive: collections.Counter[str] = collections.Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, text = line.rpartition(" ")
        samples = int(text)
        frames = [f.split(" (")[0] for f in stack.split(";")]
        total += samples
        own[frames[-1]] += samples
        for frame in set(frames):
            inclusive[frame] += samples
    print(f"server samples: {total} (1 ms each) over {n} commands; ms per command:")
    print("  self time (the function itself, not its callees):")
    for name, hits in own.most_common(12):
        print(f"    {hits / n:7.3f}  {name}")
    print("  inclusive time (with its callees):")
    for name, hits in inclusive.most_common(30):
        print(f"    {hits / n:7.3f}  {name}")


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.exec_profile")
    parser.add_argument("-n", type=int, default=3000, help="commands per run (default 3000)")
    parser.add_argument("--argv", action="store_true", help="argv mode instead of the shell")
    parser.add_argument("--py-spy", action="store_true", help="also sample the server")
    args = parser.parse_args(argv)
    placement = split_placement()
    with config_dir() as tmp:
        server = ExecServer("f-profile-server", placement.server_cpu, tmp, tls=False)
        with server as client:
            assert server.child is not None
            pid = server.child.pid  # taskset execs the server: same pid
            print(
                f"server pid {pid} on CPU {placement.server_cpu}, client on CPU "
                f"{placement.client_cpu}" + (" (fallback server)" if server.cli_error else "")
            )
            breakdown(client, pid, placement.client_cpu, args.n, args.argv)
            if args.py_spy:
                sample(client, pid, placement.client_cpu, args.n, args.argv)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
