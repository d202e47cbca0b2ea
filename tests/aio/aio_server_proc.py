"""A wirekit server in its own process, for the SIGTERM and EMFILE tests.

Usage: ``python aio_server_proc.py [--nofile N] [--grace SECONDS] [--builtin]``.
It serves on 127.0.0.1 (port 0), prints ``PORT <n>`` on stdout once it
listens, and shuts down gracefully on SIGTERM, then prints ``STOPPED`` and
exits 0. With ``--builtin`` it relies on ``Server.serve_forever()``'s own
signal handling (a second signal cuts the grace short) and prints no
``STOPPING`` line.

Each DATA payload is echoed, except ``hold``: the handler answers
``holding``, waits for the next payload and answers ``released:<payload>``,
so a test can keep a request in flight while it signals the process.
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import signal

import wirekit
from wirekit.aio import Connection


async def handler(conn: Connection) -> None:
    async for data in conn:
        if data == b"hold":
            await conn.send(b"holding")
            await conn.send(b"released:" + await conn.recv())  # type: ignore[operator]
        else:
            await conn.send(data)  # type: ignore[arg-type]


async def builtin(grace: float) -> None:
    limits = wirekit.Limits(shutdown_grace=grace, handshake_timeout=30.0)
    async with wirekit.serve(handler, "127.0.0.1:0", limits=limits) as server:
        print(f"PORT {server.address.port}", flush=True)
        await server.serve_forever()
    print("STOPPED", flush=True)


async def main(grace: float) -> None:
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    limits = wirekit.Limits(shutdown_grace=grace, handshake_timeout=30.0)
    async with wirekit.serve(handler, "127.0.0.1:0", limits=limits) as server:
        print(f"PORT {server.address.port}", flush=True)
        await stop.wait()
        print("STOPPING", flush=True)
    print("STOPPED", flush=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--nofile", type=int, default=0)
    parser.add_argument("--grace", type=float, default=5.0)
    parser.add_argument("--builtin", action="store_true")
    args = parser.parse_args()
    if args.nofile:
        _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        resource.setrlimit(resource.RLIMIT_NOFILE, (args.nofile, hard))
    wirekit.run(builtin(args.grace) if args.builtin else main(args.grace))
