"""(g) Chat servers: registered clients held by one process, and fan-out into a room.

Servers, each started by the benchmark on 127.0.0.1 and pinned to the first
CPU: ``wirekit serve chat``, ngircd (Debian package, a private config in a
scratch dir: no DNS/ident/PAM, no connection or join limits, ``MaxPenaltyTime =
0`` so its flood penalty is configured out) and miniircd (PyPI, no flood
control; it serves from one ``select()`` loop and dies near 1,020 clients).
wirekit runs with ``--flood-rate 0`` (flood control configured out alike).
A reference that is not installed is skipped with a note.

The load generator is one process on the second CPU (asyncio on uvloop,
non-blocking sockets, a few hundred bytes per client), spreading its
connections over source addresses 127.0.0.2, 127.0.0.3, ... (1,000 each).
Both sides raise their open-file limit.

(1) Clients held: register N clients (NICK/USER, wait for 001), 200 in flight
at a time; then every client sends PING and the ones that get a PONG are
held. Server RSS is read from /proc before the first connection and after the
last registration. (2) Fan-out: M clients register and join one room; one of
them sends 1,000 numbered messages in one burst; every other member checks
it gets all of them, in order. Server CPU time (all its threads, from
/proc/PID/task/*/schedstat) is read before the burst and after the last delivery.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .chatload import CONNECTS_IN_FLIGHT, IN_FLIGHT, PER_SOURCE
from .common import (
    HOST,
    WORK_DIR,
    BenchError,
    Child,
    Config,
    Figure,
    Row,
    SectionResult,
    Target,
    compare,
    free_port,
    median,
    raise_nofile,
    split_placement,
    wait_listening,
    worker,
)

KEY = "g"
TITLE = "(g) Chat server: clients held, fan-out"
NGIRCD = "/usr/sbin/ngircd"


# -- the servers (driver side) ---------------------------------------------------------


@dataclass(frozen=True)
class Server:
    label: str
    slug: str
    missing: str  # why it cannot run here, or "" when it can
    start: Callable[[int, str, int], tuple[Child, int]]


def _start_wirekit(cpu: int, name: str, max_clients: int) -> tuple[Child, int]:
    port = free_port()
    argv = [sys.executable, "-m", "wirekit", "serve", "chat", "--listen", f"{HOST}:{port}"]
    argv += ["--max-clients", str(max_clients), "--flood-rate", "0"]
    child = Child(name, argv, cpu, stdout=subprocess.DEVNULL)
    wait_listening(port, child)
    return child, port


def _ngircd_conf(port: int) -> Path:
    WORK_DIR.mkdir(parents=True, exist_ok=True)
    conf = WORK_DIR / "ngircd.conf"  # ngircd reads it as root, before dropping to nobody
    conf.write_text(
        "[Global]\nName = bench.local\nInfo = wirekit benchmark\n"
        f"Listen = {HOST}\nPorts = {port}\nMotdPhrase = benchmark\n"
        "[Limits]\nMaxConnections = 0\nMaxConnectionsIP = 0\nMaxJoins = 0\n"
        "MaxPenaltyTime = 0\nPingTimeout = 600\nPongTimeout = 600\n"
        "[Options]\nDNS = no\nIdent = no\nPAM = no\n"
    )
    return conf


def _start_ngircd(cpu: int, name: str, max_clients: int) -> tuple[Child, int]:
    port = free_port()
    conf = _ngircd_conf(port)
    child = Child(
        name, [NGIRCD, "--nodaemon", "--config", str(conf)], cpu, stdout=subprocess.DEVNULL
    )
    wait_listening(port, child)
    return child, port


MINIIRCD_MAIN = "import sys; from miniircd import main; sys.argv[0] = 'miniircd'; main()"


def _start_miniircd(cpu: int, name: str, max_clients: int) -> tuple[Child, int]:
    port = free_port()
    argv = [sys.executable, "-c", MINIIRCD_MAIN, "--listen", HOST, "--ports", str(port)]
    if os.geteuid() == 0:
        argv += ["--setuid", "root"]  # it refuses to run as root unless told so
    child = Child(name, argv, cpu, stdout=subprocess.DEVNULL)
    wait_listening(port, child)
    return child, port


def _missing_miniircd() -> str:
    import importlib.util

    return "" if importlib.util.find_spec("miniircd") else "not installed (pip install miniircd)"


def servers() -> list[Server]:
    return [
        Server("wirekit serve chat", "wirekit", "", _start_wirekit),
        Server(
            "ngircd",
            "ngircd",
            "" if os.path.exists(NGIRCD) else "not installed (Debian package ngircd)",
            _start_ngircd,
        ),
        Server("miniircd", "miniircd", _missing_miniircd(), _start_miniircd),
    ]


def _run_against(
    server: Server, name: str, max_clients: int, target: str, **kwargs: Any
) -> dict[str, Any]:
    """Start ``server`` on the server CPU, the load generator running ``target`` on
    the client CPU; return the load generator's RESULT."""
    child, port = server.start(_PLACEMENT.server_cpu, f"{name}-server", max_clients)
    try:
        load = worker(
            f"{name}-load", _PLACEMENT.client_cpu, target, port=port, server_pid=child.pid, **kwargs
        )
        try:
            return load.result(600)
        finally:
            load.stop()
    finally:
        child.stop()


# -- the driver --------------------------------------------------------------------------


def _figure(
    server: Server,
    case: str,
    metric: str,
    unit: str,
    runs: list[float],
    note: str = "",
    extra: dict[str, Any] | None = None,
) -> Figure:
    value = median(runs) if runs and not note.startswith(("failed", "incomplete")) else None
    return Figure(
        server.label, case, metric, unit, value, _PLACEMENT.label, runs, note, extra or {}
    )


def _held_figures(server: Server, n: int) -> list[Figure]:
    case = f"{n:,} clients attempted"
    note = server.missing
    res: dict[str, Any] = {}
    if not note:
        try:
            res = _run_against(server, f"g-hold-{server.slug}", n + 100, "chatload.hold", n=n)
        except BenchError as exc:
            note = f"failed: {exc}"
    if note:
        return [_figure(server, case, "clients held", "clients", [], note)]
    held, rss = float(res["held"]), res["rss_after"]
    if not res["server_alive"]:
        # It held them until it died; all were dropped with it.
        held = float(res["registered"])
        note = f"registered {res['registered']:,}, then the server died, dropping them all"
    per = [(rss - res["rss_before"]) / held] if rss is not None and held else []
    return [
        _figure(server, case, "clients held", "clients", [held], note, res),
        _figure(
            server, f"{held:,.0f} held", "server RSS per client", "B/client", per, note or "", res
        ),
    ]


def _fanout_figures(
    server: Server, members: int, messages: int, repeats: int
) -> tuple[Figure, Figure]:
    case = f"{messages:,} msgs into {members:,}-member room"
    cpu: list[float] = []
    wall: list[float] = []
    note = server.missing
    res: dict[str, Any] = {}
    for i in range(0 if note else repeats):
        try:
            res = _run_against(
                server,
                f"g-fan{members}-{server.slug}-{i}",
                members + 100,
                "chatload.fanout",
                members=members,
                messages=messages,
            )
        except BenchError as exc:
            note = f"failed: {exc}"
            break
        if "error" in res:
            note = f"failed: {res['error']}"
            break
        if not res["complete"]:
            note = f"incomplete: {res['delivered']:,} of {res['expected']:,} lines delivered"
            break
        cpu.append(res["server_cpu"] / res["delivered"] * 1e6)
        wall.append(res["wall"])
    return (
        _figure(server, case, "server CPU per delivered line", "µs/line", cpu, note, res),
        _figure(server, case, "wall time, all lines delivered", "s", wall, note, res),
    )


_PLACEMENT = split_placement()


def run(cfg: Config) -> SectionResult:
    result = SectionResult(KEY, TITLE)
    raise_nofile()  # children (servers and the load generator) inherit it
    # --quick: past miniircd's limit but far below the target, and a smaller
    # second room (its joins cost O(members^2) lines).
    n = cfg.count(10_000, 1_100)
    messages = 1_000
    rooms = (100, 1_000) if not cfg.quick else (100, 300)
    repeats = 1 if cfg.quick else min(cfg.repeats, 3)
    by: dict[tuple[str, str], Figure] = {}
    for server in servers():
        for fig in _held_figures(server, n):
            by[(server.slug, fig.metric)] = fig
        for members in rooms:
            cpu, wall = _fanout_figures(server, members, messages, repeats)
            by[(server.slug, f"cpu{members}")] = cpu
            by[(server.slug, f"wall{members}")] = wall
    result.figures += by.values()
    result.rows += _rows(by, n, rooms)
    result.notes += _notes(n, messages, repeats)
    return result


def _rows(by: dict[tuple[str, str], Figure], n: int, rooms: tuple[int, ...]) -> list[Row]:
    rows = []
    held_goal = Target(">=", 10_000, absolute=True, unit=" clients")
    for ref in ("ngircd", "miniircd"):
        # No target when fewer are attempted (--quick): it could not be met.
        goal = held_goal if ref == "ngircd" and n >= 10_000 else None
        rows.append(
            compare(
                f"registered clients held ({n:,} attempted) vs {ref}",
                by[("wirekit", "clients held")],
                by[(ref, "clients held")],
                goal,
            )
        )
    for ref in ("ngircd", "miniircd"):
        rows.append(
            compare(
                f"server RSS per held client vs {ref}",
                by[("wirekit", "server RSS per client")],
                by.get((ref, "server RSS per client")),
                lower_is_better=True,
            )
        )
    for members in rooms:
        for ref in ("ngircd", "miniircd"):
            cpu_goal = Target("<=", 1.0) if ref == "ngircd" else None
            rows.append(
                compare(
                    f"fan-out into {members:,} members: server CPU per delivered line vs {ref}",
                    by[("wirekit", f"cpu{members}")],
                    by[(ref, f"cpu{members}")],
                    cpu_goal,
                    lower_is_better=True,
                )
            )
        rows.append(
            compare(
                f"fan-out into {members:,} members: wall time vs ngircd",
                by[("wirekit", f"wall{members}")],
                by[("ngircd", f"wall{members}")],
                lower_is_better=True,
            )
        )
    return rows


def _notes(n: int, messages: int, repeats: int) -> list[str]:
    return [
        f"Clients held: one load-generator process registers {n:,} clients (NICK/USER, "
        f"then 001), {IN_FLIGHT} registrations and {CONNECTS_IN_FLIGHT} connects in "
        f"flight, from source addresses 127.0.0.2, .3, ... ({PER_SOURCE:,} each); held = "
        "clients answering a PING afterwards. RSS per client = (server RSS after - "
        "before) / held; kernel socket memory is not counted. The figure's extra data "
        "has the seconds registration took.",
        f"Fan-out: the room's members register and join one by one; once the server has "
        f"used no CPU for 0.3 s, one member sends {messages:,} numbered 64-byte messages "
        "in one write; every other member checks all arrive, in order (a gap or "
        "reordering fails the figure). Delivered lines = messages x (members - 1). "
        "Server CPU = run time of all its threads from /proc/PID/task/*/schedstat "
        "(nanoseconds; utime+stime count 10 ms ticks) between the burst and the last "
        f"delivery; median of {repeats} run(s). Wall time includes the load generator "
        "parsing every line in Python.",
        "Flood control is configured out on all sides: wirekit with --flood-rate 0, "
        "ngircd with MaxPenaltyTime = 0 (no penalty delays); miniircd has none. ngircd "
        "also runs with DNS, Ident and PAM off and no connection, per-address or join "
        "limits.",
        "miniircd serves from one select() loop, which cannot watch descriptors past "
        "1,023: it dies near 1,020 clients, so its 1,000-member room is near its limit.",
    ]
