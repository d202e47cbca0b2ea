"""How section (f) takes one run of a variant and turns runs into figures."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .common import (
    BenchError,
    Child,
    Figure,
    Placement,
    Runs,
    interleaved,
    median,
    worker,
)
from .exec_ssh import SshClient
from .exec_wirekit import WirekitClient

TIMEOUT = 180.0  # seconds for one run of any variant
MiB = 1024 * 1024
SEQ_COMMAND = "true"
CONCURRENT_COMMAND = "sleep 0.2; echo ok"
EXPECT = "ok\n"
QUEUE_SESSIONS = 10  # the extra wirekit server's --max-sessions, as sshd's MaxSessions

Metrics = dict[str, Any]
Check = Callable[[dict[str, Any]], Metrics]


@dataclass(frozen=True)
class Variant:
    """One tool in one figure: how to take one run, or why it cannot run."""

    slug: str
    label: str
    case: str
    once: Callable[[int], Metrics] | None
    note: str = ""
    #: Where it ran, when not the section's usual server/client split.
    placement: str = ""


# -- checks -------------------------------------------------------------------------------------


def seq_check(res: dict[str, Any]) -> Metrics:
    if res["failed"]:
        raise BenchError(f"{res['failed']} of {res['n']} commands failed")
    return {"ms": 1000 * float(res["per_command"]), "client_cpu_ms": 1000 * float(res["cpu"])}


def concurrent_check(res: dict[str, Any]) -> Metrics:
    return {"ok": float(res["ok"]), "s": float(res["seconds"]), "errors": res["errors"]}


def output_check(size: int) -> Check:
    def check(res: dict[str, Any]) -> Metrics:
        if res["received"] != size or res["exit_status"] != 0:
            raise BenchError(
                f"received {res['received']:,} of {size:,} bytes, exit status {res['exit_status']}"
            )
        metrics = {"MBps": size / float(res["seconds"]) / 1e6, "cipher": res.get("cipher", "")}
        if "cpu" in res:
            metrics["client_cpu_ms"] = 1000 * float(res["cpu"])
        return metrics

    return check


def proc_cpu(pid: int) -> tuple[float, float]:
    """(own user+system, reaped children's user+system) CPU seconds of ``pid``."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    hz = os.sysconf("SC_CLK_TCK")
    utime, stime, cutime, cstime = (int(x) for x in fields[11:15])
    return (utime + stime) / hz, (cutime + cstime) / hz


def worker_variant(
    slug: str,
    label: str,
    case: str,
    why: str,
    cpu: int,
    target: str,
    check: Check,
    *,
    watch: int | None = None,
    where: str = "",
    **kw: Any,
) -> Variant:
    """A variant measured by ``benchmarks.worker target`` pinned to ``cpu``. With
    ``watch`` (a server's pid), also the server's CPU and that of the commands it
    reaped, per command (/proc/PID/stat, 10 ms ticks). ``where`` overrides the
    placement shown."""
    if why:
        return Variant(slug, label, case, None, why)

    def once(run: int) -> Metrics:
        before = proc_cpu(watch) if watch else (0.0, 0.0)
        child = worker(f"f-{slug}-{run}", cpu, target, **kw)
        try:
            res = child.result(TIMEOUT)
        finally:
            child.stop()
        metrics = check(res)
        if watch:
            own, kids = (b - a for a, b in zip(before, proc_cpu(watch), strict=True))
            per = res.get("n", 1)  # per command, or per transfer
            metrics["server_cpu_ms"] = 1000 * own / per
            metrics["commands_cpu_ms"] = 1000 * kids / per
        return metrics

    return Variant(slug, label, case, once, placement=where)


def cli_output_variant(
    slug: str, label: str, case: str, why: str, cpu: int, argv: list[str], size: int
) -> Variant:
    """A command-line client with stdout on /dev/null; MB/s from its start to its exit,
    checked by the bytes it wrote (/proc/PID/io wchar, read at its exit)."""
    if why:
        return Variant(slug, label, case, None, why)

    def once(run: int) -> Metrics:
        with open(os.devnull, "wb") as out:
            start = time.perf_counter()
            child = Child(f"f-{slug}-{run}", argv, cpu, stdout=out)
            try:
                code, counters = child.wait_with_io(TIMEOUT)
                seconds = time.perf_counter() - start
            finally:
                child.stop()
        written = counters.get("wchar", -1)
        if code != 0 or written < size:
            raise BenchError(
                f"exit status {code}, wrote {written:,} of {size:,} bytes ({child.log_tail()})"
            )
        return {"MBps": size / seconds / 1e6}

    return Variant(slug, label, case, once)


def measure(variants: list[Variant], repeats: int) -> dict[str, Runs[Metrics]]:
    usable = [v for v in variants if v.once is not None]
    runs = interleaved(usable, repeats, lambda v, i: v.once(i))  # type: ignore[misc]
    return {v.slug: runs.get(v, Runs(note=v.note)) for v in variants}


def figure(
    variant: Variant, runs: Runs[Metrics], metric: str, unit: str, placement: Placement
) -> Figure:
    values = [float(r[metric]) for r in runs.values]
    extra: dict[str, Any] = {}
    for r in runs.values:
        for key, value in r.items():
            if key != metric:
                extra.setdefault(key, []).append(value)
    value = median(values) if not runs.note else None
    return Figure(
        variant.label,
        variant.case,
        metric,
        unit,
        value,
        variant.placement or placement.label,
        values,
        runs.note,
        extra,
    )


@dataclass
class Env:
    """The servers of the section (None where a tool is missing, with the reason)."""

    placement: Placement
    ssh: SshClient | None = None
    ssh100: SshClient | None = None
    master: str | None = None
    master100: str | None = None
    wk: WirekitClient | None = None
    wk_tls: WirekitClient | None = None
    wk_queue: WirekitClient | None = None
    ssh_note: str = ""
    asyncssh_note: str = ""
    wk_note: str = ""
    #: Why ``wirekit serve exec`` could not start a server ("": it did).
    wk_fallback: str = ""


def generator(size: int) -> str:
    return f"head -c {size} /dev/zero"
