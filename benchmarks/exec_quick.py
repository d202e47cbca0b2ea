"""Quick look at the exec output figures while tuning, without the reference tools.

``python -m benchmarks.exec_quick [--size MiB] [--runs N] [--tls] [--cli]``

Starts ``wirekit serve exec`` pinned to the first CPU (with ``--tls auto`` for
``--tls``), then streams ``head -c SIZE /dev/zero`` to a client pinned to the
second: through ``AsyncSession.start()`` (the API row of section f), and with
``--cli`` through ``wirekit exec`` into /dev/null as well. Prints MB/s per run
and the server's CPU seconds per GiB.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import time

from .common import Child, byte_compile_wirekit, split_placement, worker
from .exec_runs import generator, proc_cpu
from .exec_wirekit import ExecServer, config_dir

MiB = 1 << 20


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.exec_quick")
    parser.add_argument("--size", type=int, default=1024, help="MiB of output (default 1024)")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--tls", action="store_true")
    parser.add_argument("--cli", action="store_true", help="also time the wirekit exec CLI")
    args = parser.parse_args(argv)
    size = args.size * MiB
    placement = split_placement()
    byte_compile_wirekit()
    command = generator(size)
    with config_dir() as tmp:
        server = ExecServer("quick-server", placement.server_cpu, tmp, tls=args.tls)
        with server as client:
            pid = client.pid
            for run in range(args.runs):
                own0, _ = proc_cpu(pid)
                child = worker(
                    f"quick-api-{run}",
                    placement.client_cpu,
                    "exec_wirekit.wirekit_output",
                    client=dataclasses.asdict(client),
                    command=command,
                    size=size,
                )
                try:
                    res = child.result(600)
                finally:
                    child.stop()
                own1, _ = proc_cpu(pid)
                print(
                    f"api  {size / res['seconds'] / 1e6:8.0f} MB/s  client cpu "
                    f"{res['cpu'] * (1 << 30) / size:.3f} s/GiB  server cpu "
                    f"{(own1 - own0) * (1 << 30) / size:.3f} s/GiB  {res['cipher']}"
                )
                if args.cli:
                    own0, _ = proc_cpu(pid)
                    with open(os.devnull, "wb") as out:
                        start = time.perf_counter()
                        proc = Child(
                            f"quick-cli-{run}",
                            client.cli(command),
                            placement.client_cpu,
                            stdout=out,
                        )
                        code, counters = proc.wait_with_io(600)
                        seconds = time.perf_counter() - start
                        proc.stop()
                    own1, _ = proc_cpu(pid)
                    print(
                        f"cli  {size / seconds / 1e6:8.0f} MB/s  exit {code} wrote "
                        f"{counters.get('wchar', -1):,}  server cpu "
                        f"{(own1 - own0) * (1 << 30) / size:.3f} s/GiB"
                    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
