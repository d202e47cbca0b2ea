"""The running part of ``wirekit serve``: listeners, the endpoint table, signals."""

from __future__ import annotations

import asyncio
import sys
import time
from typing import Any

from .. import __version__
from ..addr import Address
from ..aio import loop as aio_loop
from ..aio.raw import RawServer
from ..aio.signals import stop_on_signal
from ..limits import Limits
from ..services import ClassicOptions, ServiceSpec

__all__ = ["serve_plan"]

#: A repeat of the out-of-resources warning is shown only after this many seconds
#: without one: once per episode, however often the loop retries meanwhile.
RESOURCE_QUIET = 60.0


class _AcceptTrouble:
    """A loop exception handler that turns the stdlib loop's "socket.accept() out
    of system resource" (EMFILE, ENFILE, ENOBUFS, ENOMEM: logged with a traceback
    on every retry) into one line per episode; anything else goes to the default
    handler."""

    def __init__(self) -> None:
        self.last: float | None = None

    def __call__(self, loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        exc = context.get("exception")
        if context.get("message") != "socket.accept() out of system resource" or not isinstance(
            exc, OSError
        ):
            loop.default_exception_handler(context)
            return
        now = time.monotonic()
        if self.last is None or now - self.last > RESOURCE_QUIET:
            detail = exc.strerror or exc
            print(
                f"wirekit: cannot accept connections: {detail}; retrying every second",
                file=sys.stderr,
                flush=True,
            )
        self.last = now


async def serve_plan(
    plan: list[tuple[ServiceSpec, list[Address]]], options: ClassicOptions, limits: Limits
) -> int:
    asyncio.get_running_loop().set_exception_handler(_AcceptTrouble())
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
