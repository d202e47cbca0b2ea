"""netcat mode moves bulk data byte-exact: 50 MiB through ``wirekit connect`` into
``wirekit listen``, with stdin and stdout each a regular file or a pipe (the paths
are sendfile, splice and plain copies)."""

from __future__ import annotations

import hashlib
import random
import subprocess
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

SIZE = 50 * 1024 * 1024
TRANSFER = 30.0  # seconds a 50 MiB loopback transfer may take at most


@pytest.fixture(scope="module")
def payload(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """50 MiB of seeded random bytes in a file, and their sha256."""
    path = tmp_path_factory.mktemp("netcat") / "payload.bin"
    data = random.Random(868).randbytes(SIZE)
    path.write_bytes(data)
    return path, hashlib.sha256(data).hexdigest()


def _hash_pipe(pipe: Any, result: dict[str, Any]) -> None:
    digest = hashlib.sha256()
    size = 0
    while chunk := pipe.read1(1 << 20):
        digest.update(chunk)
        size += len(chunk)
    result["sha256"], result["size"] = digest.hexdigest(), size


def _feed_pipe(pipe: Any, path: Path) -> None:
    with path.open("rb") as src:
        while chunk := src.read(1 << 20):
            pipe.write(chunk)
    pipe.close()


@pytest.mark.parametrize("stdout_kind", ["file", "pipe"])
@pytest.mark.parametrize("stdin_kind", ["file", "pipe"])
def test_50_mib_arrive_byte_exact(
    stdin_kind: str,
    stdout_kind: str,
    payload: tuple[Path, str],
    tmp_path: Path,
    wirekit_listen: Callable[..., Any],
    spawn: Callable[..., Any],
) -> None:
    source, expected = payload
    received = tmp_path / "received.bin"
    hashed: dict[str, Any] = {}
    with received.open("wb") as sink:
        # The listener's stdin is /dev/null: it half-closes at once, and the
        # sender must still deliver everything.
        listener, bound = wirekit_listen(
            ":0",
            stdin=subprocess.DEVNULL,
            stdout=sink if stdout_kind == "file" else subprocess.PIPE,
            collect_stdout=False,
        )
    hasher = None
    if stdout_kind == "pipe":
        hasher = threading.Thread(target=_hash_pipe, args=(listener.proc.stdout, hashed))
    with source.open("rb") as src:
        sender = spawn(
            ["wirekit", "connect", bound.hostport()],
            stdin=src if stdin_kind == "file" else subprocess.PIPE,
            stdout=subprocess.DEVNULL,
        )
    feeder = None
    if stdin_kind == "pipe":
        feeder = threading.Thread(target=_feed_pipe, args=(sender.proc.stdin, source))
        feeder.start()
    if hasher is not None:
        hasher.start()

    assert sender.wait(TRANSFER) == 0, sender.stderr_text
    assert listener.wait(TRANSFER) == 0, listener.stderr_text
    if feeder is not None:
        feeder.join(TRANSFER)
    if hasher is not None:
        hasher.join(TRANSFER)
    else:
        digest = hashlib.sha256()
        with received.open("rb") as got:
            while chunk := got.read(1 << 20):
                digest.update(chunk)
        hashed = {"sha256": digest.hexdigest(), "size": received.stat().st_size}
    assert hashed == {"sha256": expected, "size": SIZE}


def _send_file_through(
    source: Any, wirekit_listen: Callable[..., Any], spawn: Callable[..., Any]
) -> bytes:
    """``wirekit connect < source`` into ``wirekit listen``; what the listener printed."""
    listener, bound = wirekit_listen(":0", stdin=subprocess.DEVNULL)
    sender = spawn(
        ["wirekit", "connect", bound.hostport()], stdin=source, stdout=subprocess.DEVNULL
    )
    assert sender.wait(TRANSFER) == 0, sender.stderr_text
    assert listener.wait(TRANSFER) == 0, listener.stderr_text
    return bytes(listener.out)


def test_a_file_on_stdin_is_sent_from_its_current_offset(
    tmp_path: Path, wirekit_listen: Callable[..., Any], spawn: Callable[..., Any]
) -> None:
    data = random.Random(7).randbytes(3 * 1024 * 1024 + 123)
    path = tmp_path / "offset.bin"
    path.write_bytes(data)
    with path.open("rb") as src:
        src.seek(1_000_001)  # as `(head -c 1000001 >/dev/null; wirekit connect ...) < file`
        got = _send_file_through(src, wirekit_listen, spawn)
    assert got == data[1_000_001:]


@pytest.mark.parametrize("name", ["empty", "proc"])
def test_files_whose_size_is_zero_are_read_not_mapped(
    name: str, tmp_path: Path, wirekit_listen: Callable[..., Any], spawn: Callable[..., Any]
) -> None:
    if name == "empty":
        path = tmp_path / "empty.bin"
        path.write_bytes(b"")
    else:
        path = Path("/proc/self/cmdline")  # reports size 0, yet has content
    expected = path.read_bytes()  # /proc/self: this process, which also opens it below
    with path.open("rb") as src:
        got = _send_file_through(src, wirekit_listen, spawn)
    assert got == expected
    assert name == "empty" or got
