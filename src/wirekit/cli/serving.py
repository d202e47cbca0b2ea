"""The running part of ``wirekit serve``: listeners, the endpoint table, signals."""

from __future__ import annotations

import asyncio
import sys

from .. import __version__
from ..addr import Address
from ..aio import loop as aio_loop
from ..aio.raw import RawServer
from ..aio.signals import stop_on_signal
from ..limits import Limits
from ..services import ClassicOptions, ServiceSpec

__all__ = ["serve_plan"]


async def serve_plan(
    plan: list[tuple[ServiceSpec, list[Address]]], options: ClassicOptions, limits: Limits
) -> int:
    servers: list[RawServer] = []
    rows: list[tuple[str, Address, str]] = []
    # Catch the signals before the table says "Ctrl-C to stop", and keep them
    # through the shutdown: a second signal cuts the grace period short.
    with stop_on_signal() as (stop, hurry):
        try:
            for spec, addrs in plan:
                server = spec.make(options, limits)
                servers.append(server)
                for addr in addrs:
                    bound = await server.listen(addr)
                    rows.append((spec.name, bound, spec.client_hint(bound)))
            _print_table(rows)
            await stop.wait()
            print("wirekit: shutting down", file=sys.stderr, flush=True)
        finally:
            await asyncio.gather(*(s.close(hurry=hurry) for s in servers))
    return 0


def _print_table(rows: list[tuple[str, Address, str]]) -> None:
    width = max(len(str(addr)) for _, addr, _ in rows)
    lines = [f"wirekit {__version__} serving on {aio_loop.loop_name()}; Ctrl-C to stop", ""]
    lines.append(f"{'SERVICE':<8} {'ENDPOINT':<{width}}  TRY")
    for name, addr, hint in rows:
        lines.append(f"{name:<8} {addr!s:<{width}}  {hint}")
    print("\n".join(lines), flush=True)
