"""The running part of ``wirekit serve``: listeners, the endpoint table, signals."""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any

from .. import __version__
from ..addr import Address
from ..aio import loop as aio_loop
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
    plan: list[tuple[ServiceSpec, list[Address]]],
    options: ClassicOptions,
    limits: Limits,
    *,
    everything_on: str | None = None,
) -> int:
    """Serve ``plan``; with ``everything_on`` (a host), also chat and exec on
    their default ports there (``wirekit serve`` with no service)."""
    asyncio.get_running_loop().set_exception_handler(_AcceptTrouble())
    closers: list[Callable[..., Awaitable[None]]] = []
    rows: list[tuple[str, Address, str]] = []
    notes: list[str] = []
    # Catch the signals before the table says "Ctrl-C to stop", and keep them
    # through the shutdown: a second signal cuts the grace period short.
    with stop_on_signal() as (stop, hurry):
        try:
            for spec, addrs in plan:
                server = spec.make(options, limits)
                closers.append(server.close)
                for addr in addrs:
                    bound = await server.listen(addr)
                    rows.append((spec.name, bound, spec.client_hint(bound)))
            if everything_on is not None:
                await _start_chat(everything_on, limits, rows, closers)
                await _start_exec(everything_on, rows, notes, closers)
            _print_table(rows, notes)
            await stop.wait()
            print("wirekit: shutting down", file=sys.stderr, flush=True)
        finally:
            await asyncio.gather(*(close(hurry=hurry) for close in closers))
    return 0


async def _start_chat(
    host: str,
    limits: Limits,
    rows: list[tuple[str, Address, str]],
    closers: list[Callable[..., Awaitable[None]]],
) -> None:
    from ..services.chat import DEFAULT_PORT, ChatConfig, start_chat

    config = ChatConfig(max_clients=limits.max_connections)
    server = await start_chat([Address("tcp", host, DEFAULT_PORT)], config=config)
    closers.append(server.close)
    for bound in server.addresses:
        rows.append(("chat", bound, f"wirekit chat {bound.hostport()}"))


async def _start_exec(
    host: str,
    rows: list[tuple[str, Address, str]],
    notes: list[str],
    closers: list[Callable[..., Awaitable[None]]],
) -> None:
    """exec only on loopback: elsewhere it needs TLS, which is a choice for
    ``wirekit serve exec --tls auto`` to make, not a default."""
    from ..aio.secure import ServerAuth, is_loopback
    from ..services.exec import start_exec
    from .serve_exec import DEFAULT_PORT, client_hint

    addr = Address("tcp", host, DEFAULT_PORT)
    if not is_loopback(addr):
        notes.append(
            f"exec is not started on {host} without TLS: run wirekit serve exec "
            f"--tls auto --listen {addr.hostport()}"
        )
        return
    auth, hint = ServerAuth.for_service(authorized_keys=None, token_file=None, service="exec")
    server = await start_exec(addr, auth=auth)
    closers.append(server.shutdown)
    rows.append(("exec", server.address, client_hint(server.address, False, None)))
    if hint:
        notes.append(f"exec: {hint}")


def _print_table(rows: list[tuple[str, Address, str]], notes: list[str]) -> None:
    width = max(len(str(addr)) for _, addr, _ in rows)
    lines = [f"wirekit {__version__} serving on {aio_loop.loop_name()}; Ctrl-C to stop", ""]
    lines.append(f"{'SERVICE':<8} {'ENDPOINT':<{width}}  TRY")
    for name, addr, hint in rows:
        lines.append(f"{name:<8} {addr!s:<{width}}  {hint}")
    if notes:
        lines.append("")
        lines.extend(notes)
    print("\n".join(lines), flush=True)
