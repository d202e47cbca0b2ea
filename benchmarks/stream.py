"""(e) A byte stream through netcat-style tools: ``wirekit connect`` -> ``wirekit listen``
against ncat, socat and nc (netcat-openbsd), with iperf3 as the ceiling.

The receiver starts first (pinned to the server CPU) with stdout on /dev/null and
a pseudo-terminal as stdin (as when typed in a shell); once its port shows up as
listening in /proc/net/tcp, the sender starts (pinned to the client CPU) with the
data file as stdin. The figure is bytes / (receiver exit -
sender start). Every transfer is checked through the receiver's own count of
bytes written (/proc/PID/io ``wchar``, read when it exits): a transfer that lost
data gives no figure.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

from .common import (
    HOST,
    ROOT,
    WORK_DIR,
    BenchError,
    Child,
    Config,
    Figure,
    Placement,
    Runs,
    SectionResult,
    Target,
    compare,
    free_port,
    interleaved,
    median,
    split_placement,
    wait_listening,
)

KEY = "e"
TITLE = "(e) Byte stream through netcat-style tools"

MiB = 1024 * 1024
GiB = 1024 * MiB
TIMEOUT = 30.0  # seconds, plus 1 s per 100 MB

WIREKIT_CLI = (sys.executable, "-m", "wirekit")


@dataclass(frozen=True)
class Tool:
    label: str
    slug: str
    binary: str
    listen: tuple[str, ...]
    send: tuple[str, ...]

    def argv(self, template: tuple[str, ...], port: int, size: int) -> list[str]:
        return [part.format(port=port, host=HOST, mib=size // MiB) for part in template]


WIREKIT = Tool(
    "wirekit listen/connect",
    "wirekit",
    "wirekit",
    (*WIREKIT_CLI, "listen", "tcp://{host}:{port}"),
    (*WIREKIT_CLI, "connect", "{host}:{port}"),
)
NCAT = Tool(
    "ncat",
    "ncat",
    "ncat",
    ("ncat", "-l", "{host}", "{port}"),
    ("ncat", "--send-only", "{host}", "{port}"),
)
SOCAT = Tool(
    "socat",
    "socat",
    "socat",
    ("socat", "-u", "TCP-LISTEN:{port},reuseaddr,bind={host}", "-"),
    ("socat", "-u", "-", "TCP:{host}:{port}"),
)
NC = Tool(
    "nc (netcat-openbsd)",
    "nc",
    "nc",
    ("nc", "-l", "{host}", "{port}"),
    ("nc", "-N", "{host}", "{port}"),
)
IPERF3 = Tool(
    "iperf3 (ceiling)",
    "iperf3",
    "iperf3",
    ("iperf3", "-s", "-1", "-B", "{host}", "-p", "{port}"),
    ("iperf3", "-c", "{host}", "-p", "{port}", "-n", "{mib}M", "-J"),
)
TOOLS = (WIREKIT, NCAT, SOCAT, NC, IPERF3)


def wirekit_cli_missing() -> str | None:
    """Why ``wirekit listen``/``connect`` cannot run yet, or None when they can."""
    try:
        proc = subprocess.run(
            [*WIREKIT_CLI, "--help"], capture_output=True, text=True, timeout=30, cwd=ROOT
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"wirekit CLI did not run: {exc}"
    text = proc.stdout + proc.stderr
    if proc.returncode != 0 or "listen" not in text or "connect" not in text:
        return "wirekit CLI has no listen/connect commands yet"
    return None


def unavailable(tool: Tool) -> str | None:
    if tool is WIREKIT:
        return wirekit_cli_missing()
    return None if shutil.which(tool.binary) else "not installed"


def data_file(size: int) -> Path:
    """A file of ``size`` bytes under benchmarks/.work (made once, then reused)."""
    WORK_DIR.mkdir(parents=True, exist_ok=True)
    path = WORK_DIR / f"stream-{size // MiB}MiB.bin"
    if path.exists() and path.stat().st_size == size:
        return path
    block = os.urandom(MiB)
    with open(path, "wb") as out:
        for _ in range(size // MiB):
            out.write(block)
        out.write(block[: size % MiB])
    return path


# What the receiver gets as stdin: a pseudo-terminal (as when the command is typed in
# a shell), /dev/null (as in scripts and CI), or an idle pipe that stays open.
LISTENER_STDIN = {"tty": "a terminal", "devnull": "/dev/null", "pipe": "an idle open pipe"}


@dataclass(frozen=True)
class Mode:
    """How a transfer is fed: ``via_pipe`` puts ``cat file |`` (on the client CPU)
    in front of the sender instead of ``< file``; ``listener_stdin`` is a key of
    LISTENER_STDIN."""

    via_pipe: bool = False
    listener_stdin: str = "tty"

    @property
    def suffix(self) -> str:
        return ("-cat" if self.via_pipe else "") + (
            "" if self.listener_stdin == "tty" else f"-{self.listener_stdin}"
        )

    @property
    def label(self) -> str:
        parts = ["stdin from cat |"] if self.via_pipe else []
        if self.listener_stdin != "tty":
            parts.append(f"listener stdin {LISTENER_STDIN[self.listener_stdin]}")
        return ", ".join(parts)


def _listener_stdin(kind: str) -> tuple[Any, list[int], list[int]]:
    """(stdin for the receiver, fds to close once it started, fds to close at the end)."""
    if kind == "devnull":
        return subprocess.DEVNULL, [], []
    if kind == "tty":
        keep, give = os.openpty()
    else:
        give, keep = os.pipe()
    return give, [give], [keep]


def _close(fds: list[int]) -> None:
    for fd in fds:
        os.close(fd)


def _transfer(
    tool: Tool, placement: Placement, source: Path, size: int, mode: Mode, name: str
) -> tuple[float, dict[str, Any]]:
    """Run one transfer; return (seconds from sender start to receiver exit, extra)."""
    port = free_port()
    timeout = TIMEOUT + size / 100e6
    stdin_of_receiver, close_now, close_later = _listener_stdin(mode.listener_stdin)
    with open(os.devnull, "wb") as out, open(source, "rb") as data:
        try:
            receiver = Child(
                f"{name}-recv",
                tool.argv(tool.listen, port, size),
                placement.server_cpu,
                stdin=stdin_of_receiver,
                stdout=out,
            )
        finally:
            _close(close_now)
        children = [receiver]
        try:
            wait_listening(port, receiver)
            stdout = subprocess.PIPE if tool is IPERF3 else subprocess.DEVNULL
            start = time.perf_counter()
            stdin: Any = data
            if mode.via_pipe:
                cat = Child(f"{name}-cat", ["cat"], placement.client_cpu, stdin=data)
                children.append(cat)
                stdin = cat.proc.stdout
            sender = Child(
                f"{name}-send",
                tool.argv(tool.send, port, size),
                placement.client_cpu,
                stdin=stdin,
                stdout=stdout,
            )
            children.append(sender)
            code, counters = receiver.wait_with_io(timeout)
            seconds = time.perf_counter() - start
            extra = _sender_output(sender) if tool is IPERF3 else {}
            send_code = sender.wait(timeout)
        finally:
            for child in reversed(children):
                child.stop()
            _close(close_later)
    if code != 0 or send_code != 0:
        raise BenchError(
            f"{tool.label}: receiver exited {code}, sender {send_code} "
            f"({receiver.log_tail()} {sender.log_tail()})".strip()
        )
    written = counters.get("wchar", -1)
    if tool is not IPERF3 and written < size:
        raise BenchError(
            f"incomplete transfer: the receiver wrote {written:,} of {size:,} "
            f"bytes in {seconds:.3f} s, and both ends exited 0"
        )
    return seconds, extra


def _sender_output(sender: Child) -> dict[str, Any]:
    """iperf3's own figure from its JSON report."""
    assert sender.proc.stdout is not None
    text = sender.proc.stdout.read().decode("utf-8", "replace")
    try:
        end = json.loads(text)["end"]["sum_received"]
        return {"iperf3_reported_MBps": end["bits_per_second"] / 8 / 1e6}
    except (ValueError, KeyError, TypeError):
        return {}


def _once(
    tool: Tool, run: int, *, placement: Placement, size: int, mode: Mode
) -> tuple[float, dict[str, Any]]:
    seconds, more = _transfer(
        tool, placement, data_file(size), size, mode, f"e-{tool.slug}{mode.suffix}-{run}"
    )
    return seconds, more


def _figure(
    tool: Tool,
    placement: Placement,
    size: int,
    mode: Mode,
    runs: Runs[tuple[float, dict[str, Any]]] | None,
) -> Figure:
    extra: dict[str, Any] = {
        "bytes": size,
        "source": "cat file |" if mode.via_pipe else "< file",
        "listener_stdin": LISTENER_STDIN[mode.listener_stdin],
    }
    rates: list[float] = []
    note = (unavailable(tool) or "not run") if runs is None else runs.note
    for seconds, more in runs.values if runs is not None else []:
        rates.append(size / seconds / 1e6)
        extra.setdefault("seconds", []).append(seconds)
        for key, value in more.items():
            extra.setdefault(key, []).append(value)
    value = median(rates) if not note else None
    label = tool.label + (f", {mode.label}" if mode.label else "")
    return Figure(
        label, f"{size // MiB} MiB", "stream", "MB/s", value, placement.label, rates, note, extra
    )


def _measure(
    tools: tuple[Tool, ...], placement: Placement, size: int, repeats: int, mode: Mode
) -> dict[str, Figure]:
    """The installed tools run round-robin; missing ones get a 'not installed' figure."""
    usable = tuple(tool for tool in tools if unavailable(tool) is None)
    runs = interleaved(usable, repeats, partial(_once, placement=placement, size=size, mode=mode))
    return {tool.slug: _figure(tool, placement, size, mode, runs.get(tool)) for tool in tools}


def _seconds_note(mode: Mode, *figures: Figure) -> str:
    """Median seconds per transfer (sender start to receiver exit) for ``mode``."""
    parts = []
    for fig in figures:
        seconds = median(fig.extra.get("seconds", []))
        parts.append(f"{fig.tool.split(',')[0]} " + (f"{seconds:.2f} s" if seconds else "-"))
    return f"Seconds per transfer, {mode.label} (median): " + "; ".join(parts) + "."


def run(cfg: Config) -> SectionResult:
    result = SectionResult(KEY, TITLE)
    placement = split_placement()
    size = GiB  # also in --quick: a smaller stream would mostly time process start-up
    data_file(size)
    figures = _measure(TOOLS, placement, size, cfg.repeats, Mode())
    result.figures += figures.values()
    wirekit = figures[WIREKIT.slug]
    targets = {"ncat": Target(">=", 1.0), "iperf3": Target(">=", 0.8)}
    for tool in TOOLS[1:]:
        result.rows.append(
            compare(
                f"{size // MiB} MiB stream vs {tool.label}",
                wirekit,
                figures[tool.slug],
                targets.get(tool.slug),
            )
        )
    # Not in the issue, no targets: a pipe as the sender's stdin (no regular-file fast
    # path such as sendfile), and other kinds of stdin for the listener.
    for mode in (Mode(via_pipe=True), Mode(listener_stdin="devnull"), Mode(listener_stdin="pipe")):
        pair = _measure((WIREKIT, NCAT), placement, size, cfg.repeats, mode)
        result.figures += pair.values()
        result.rows.append(
            compare(
                f"{size // MiB} MiB stream, {mode.label}, vs ncat",
                pair[WIREKIT.slug],
                pair[NCAT.slug],
            )
        )
        if mode.listener_stdin == "pipe":
            result.notes.append(_seconds_note(mode, pair[WIREKIT.slug], pair[NCAT.slug]))
    result.notes += [
        f"{size // MiB} MiB from a file on stdin (`< file`) to /dev/null; MB/s = bytes / "
        "(receiver exit - sender start) / 10^6, so it includes process start-up. "
        f"Median of {cfg.repeats} run(s). Receiver on the server CPU, sender on the client CPU. "
        "The receiver's stdin is a pseudo-terminal where nothing is typed, as when the "
        "command is run from a shell.",
        "Every transfer is checked: the receiver must have written all bytes (its "
        "/proc/PID/io wchar at exit), or the row shows 'incomplete transfer'.",
        "Commands: `wirekit listen tcp://127.0.0.1:PORT` / `wirekit connect 127.0.0.1:PORT` "
        "(run as `python -m wirekit`); `ncat -l` / `ncat --send-only`; `socat -u "
        "TCP-LISTEN:PORT,reuseaddr,bind=127.0.0.1 -` / `socat -u - TCP:127.0.0.1:PORT`; "
        "`nc -l` / `nc -N`; `iperf3 -s -1` / `iperf3 -c 127.0.0.1 -n SIZE` (iperf3 sends "
        "from memory, not from the file).",
        "Extra rows (no target): the sender's stdin from `cat file |` (cat on the client "
        "CPU), where a regular-file fast path such as sendfile() cannot apply; the "
        "receiver's stdin at EOF from the start (`< /dev/null`, as in scripts and CI); "
        "and the receiver's stdin an open pipe that never delivers data (`producer | "
        "listen` with a quiet producer). ncat, socat and nc all exit when the peer closes "
        "in each case. `wirekit listen` does too when its stdin is a terminal or at EOF; "
        "with a pipe it keeps sending stdin after the peer's EOF while the pipe delivers "
        "data and stops once it has been quiet for 1 s, so its idle-pipe figure includes "
        "about 1 s of waiting after the last byte (the 1 GiB itself moves in well under "
        f"a second). A transfer gets {TIMEOUT:g} s plus 1 s per 100 MB.",
    ]
    return result
