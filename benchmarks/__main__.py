"""``python -m benchmarks [--quick] [--only a,b,...] [--out DIR] [--repeats N]``

Runs the sections, each with wirekit and its reference tools in the same run,
and writes RESULTS.md, results.json and results.png (after every section, so an
interrupted run still leaves what it measured).
"""

from __future__ import annotations

import argparse
import importlib.metadata
import os
import platform
import resource
import shutil
import subprocess
import sys
import time
import traceback
from datetime import UTC, datetime
from pathlib import Path
from types import ModuleType
from typing import Any

from . import chat, connrate, execbench, idlemem, oneway, report, rtt, stream
from .common import BENCH_DIR, ROOT, Config, SectionResult, byte_compile_wirekit

SECTIONS: dict[str, ModuleType] = {
    "a": oneway,
    "b": rtt,
    "c": connrate,
    "d": idlemem,
    "e": stream,
    "f": execbench,
    "g": chat,
}
ALIASES = {
    "oneway": "a",
    "rtt": "b",
    "connrate": "c",
    "idlemem": "d",
    "stream": "e",
    "exec": "f",
    "chat": "g",
}


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description="Benchmark wirekit against pyzmq, ncat, socat, nc, iperf3 and the "
        "textbook socketserver approach; write RESULTS.md, results.json, results.png.",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="smaller counts and one run per figure (about 2 minutes)",
    )
    parser.add_argument(
        "--only",
        metavar="a,b,...",
        default="",
        help="sections to run: "
        + ", ".join(f"{key} ({mod.__name__.split('.')[-1]})" for key, mod in SECTIONS.items()),
    )
    parser.add_argument(
        "--out",
        metavar="DIR",
        type=Path,
        default=BENCH_DIR,
        help="where to write the results (default: the benchmarks folder)",
    )
    parser.add_argument(
        "--repeats",
        type=int,
        default=None,
        help="runs per figure, the median is reported (default 5, quick 1)",
    )
    return parser.parse_args(argv)


def pick_sections(only: str) -> list[str]:
    if not only:
        return list(SECTIONS)
    keys = []
    for name in filter(None, (part.strip().lower() for part in only.split(","))):
        key = ALIASES.get(name, name)
        if key not in SECTIONS:
            raise SystemExit(f"unknown section {name!r}; choose from {', '.join(SECTIONS)}")
        keys.append(key)
    return keys


def _version(dist: str) -> str:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def _tool_version(argv: list[str]) -> str:
    if shutil.which(argv[0]) is None:
        return "not installed"
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    lines = [ln.strip() for ln in (proc.stdout + proc.stderr).splitlines() if ln.strip()]
    wanted = [ln for ln in lines if "version" in ln.lower()] or lines
    return wanted[0].split(" (")[0][:80] if wanted else "unknown"


def _source_state() -> str:
    """The commit the measured wirekit comes from, and whether src/ had uncommitted
    changes (the suite measures the working tree)."""
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
            cwd=ROOT,
        )
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", "src"],
            capture_output=True,
            text=True,
            timeout=10,
            cwd=ROOT,
        )
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    if head.returncode != 0:
        return "unknown (not a git checkout)"
    changed = len(dirty.stdout.splitlines())
    state = f"{changed} file(s) under src/ with uncommitted changes" if changed else "clean"
    return f"commit {head.stdout.strip()}, {state}"


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _congestion() -> str:
    """The system's TCP congestion control and lo's qdisc, and what wirekit's
    loopback connections use (wirekit.pacing): BBR without fq paces senders."""
    try:
        system = Path("/proc/sys/net/ipv4/tcp_congestion_control").read_text().strip()
    except OSError:
        return "unknown"
    qdisc = subprocess.run(["tc", "qdisc", "show", "dev", "lo"], capture_output=True, text=True)
    lo = qdisc.stdout.split()[1] if qdisc.returncode == 0 and qdisc.stdout.split() else "?"
    choice = os.environ.get("WIREKIT_LOOPBACK_CONGESTION", "").strip()
    if choice == "system" or (not choice and not system.startswith("bbr")):
        ours = "the system's"
    else:
        ours = choice or "cubic (the system's paces)"
    return f"{system} (qdisc on lo: {lo}); the reference tools use it; wirekit on loopback: {ours}"


def machine_meta(cfg: Config, keys: list[str]) -> dict[str, Any]:
    return {
        "command": " ".join(["python -m benchmarks", *sys.argv[1:]]),
        "started (UTC)": datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S"),
        "mode": "quick" if cfg.quick else "full",
        "runs per figure": cfg.repeats,
        "sections": ",".join(keys),
        "CPU": f"{_cpu_model()}, {os.cpu_count()} logical CPUs",
        "kernel": platform.release(),
        "TCP congestion control": _congestion(),
        "Python": platform.python_version(),
        "wirekit": _version("wirekit"),
        "wirekit source": _source_state(),
        "uvloop": _version("uvloop"),
        "pyzmq": _version("pyzmq"),
        "ncat": _tool_version(["ncat", "--version"]),
        "socat": _tool_version(["socat", "-V"]),
        "nc": _tool_version(["nc", "-h"]),
        "iperf3": _tool_version(["iperf3", "--version"]),
        "load average at start": " ".join(f"{x:.2f}" for x in os.getloadavg()),
    }


def cpu_counters() -> tuple[float, float, float]:
    """(CPU-seconds in user+system mode machine-wide, steal, used by us and our children)."""
    hz = os.sysconf("SC_CLK_TCK")
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    busy = (fields[0] + fields[1] + fields[2]) / hz
    steal = fields[7] / hz if len(fields) > 7 else 0.0
    own = sum(
        r.ru_utime + r.ru_stime
        for r in (
            resource.getrusage(resource.RUSAGE_SELF),
            resource.getrusage(resource.RUSAGE_CHILDREN),
        )
    )
    return busy, steal, own


def interference_note(before: tuple[float, float, float], seconds: float) -> str:
    """How much CPU other processes (and the hypervisor) took while a section ran."""
    busy, steal, own = (b - a for a, b in zip(before, cpu_counters(), strict=True))
    available = seconds * (os.cpu_count() or 1)
    other = max(0.0, busy - own)
    return (
        f"While this section ran, processes outside the benchmark used about "
        f"{other:.1f} of {available:.0f} CPU-seconds ({100 * other / available:.0f}%), "
        f"hypervisor steal {steal:.1f} CPU-seconds; load average after it: "
        + " ".join(f"{x:.2f}" for x in os.getloadavg())
        + "."
    )


def run_section(key: str, cfg: Config) -> SectionResult:
    module = SECTIONS[key]
    counters = cpu_counters()
    start = time.monotonic()
    try:
        result: SectionResult = module.run(cfg)
    except Exception as exc:  # one broken section must not lose the others
        traceback.print_exc()
        result = SectionResult(key, module.TITLE, notes=[f"section failed: {exc!r}"])
    result.seconds = time.monotonic() - start
    result.notes.append(interference_note(counters, result.seconds))
    return result


def write_all(out: Path, sections: list[SectionResult], meta: dict[str, Any]) -> None:
    out.mkdir(parents=True, exist_ok=True)
    report.write_markdown(out / "RESULTS.md", sections, meta)
    report.write_json(out / "results.json", sections, meta)
    report.write_png(out / "results.png", sections)


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    if shutil.which("taskset") is None:
        print("benchmarks: taskset is required to pin processes to CPUs", file=sys.stderr)
        return 2
    repeats = args.repeats if args.repeats else (1 if args.quick else 5)
    cfg = Config(quick=args.quick, repeats=repeats)
    keys = pick_sections(args.only)
    byte_compile_wirekit()
    meta = machine_meta(cfg, keys)
    results: list[SectionResult] = []
    start = time.monotonic()
    for key in keys:
        print(f"== {SECTIONS[key].TITLE}", flush=True)
        result = run_section(key, cfg)
        results.append(result)
        for row in result.rows:
            ratio = f"{row.ratio:.2f}x" if row.ratio is not None else "-"
            print(
                f"   {row.what}: {row.wirekit} | {row.reference} | {ratio} | {row.target}"
                f"{'' if row.met is None else (' met' if row.met else ' MISSED')}",
                flush=True,
            )
        meta["total time"] = f"{time.monotonic() - start:.0f} s"
        write_all(args.out, results, meta)
    print(f"wrote {args.out / 'RESULTS.md'} in {time.monotonic() - start:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
