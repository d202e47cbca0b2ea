"""Fixtures for the ``wirekit`` command: in-process ``main(argv)`` runs, and
``wirekit`` subprocesses whose output is collected by reader threads."""

from __future__ import annotations

import logging
import re
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

#: Seconds any single wait in these tests may take before it counts as a failure.
WAIT = 5.0


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    """``main()`` calls logging.basicConfig; leave the root logger as it was."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


class Wirekit:
    """A ``wirekit`` subprocess; stdout and stderr are read as they come."""

    def __init__(self, args: list[str], **popen: Any) -> None:
        popen.setdefault("stdin", subprocess.DEVNULL)
        self.proc = subprocess.Popen(
            ["wirekit", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, **popen
        )
        self.out = bytearray()
        self.err = bytearray()
        self._lock = threading.Lock()
        self._threads = [
            threading.Thread(target=self._drain, args=(pipe, buf), daemon=True)
            for pipe, buf in ((self.proc.stdout, self.out), (self.proc.stderr, self.err))
        ]
        for thread in self._threads:
            thread.start()

    def _drain(self, pipe: Any, buf: bytearray) -> None:
        while chunk := pipe.read1(65536):
            with self._lock:
                buf += chunk

    @property
    def stdout(self) -> str:
        with self._lock:
            return bytes(self.out).decode()

    @property
    def stderr(self) -> str:
        with self._lock:
            return bytes(self.err).decode()

    def expect(self, pattern: str, *, err: bool = False, timeout: float = WAIT) -> re.Match[str]:
        """Wait until stdout (or stderr) matches the regular expression ``pattern``."""
        deadline = time.monotonic() + timeout
        while True:
            match = re.search(pattern, self.stderr if err else self.stdout, re.MULTILINE)
            if match:
                return match
            if self.proc.poll() is not None or time.monotonic() > deadline:
                for thread in self._threads:
                    thread.join(1)
                match = re.search(pattern, self.stderr if err else self.stdout, re.MULTILINE)
                if match:
                    return match
                raise AssertionError(
                    f"wirekit did not print {pattern!r} (exit {self.proc.poll()}); "
                    f"stdout {self.stdout!r}, stderr {self.stderr!r}"
                )
            time.sleep(0.01)

    def wait(self, timeout: float = WAIT) -> int:
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(
                f"wirekit still runs after {timeout} s; stderr {self.stderr!r}"
            ) from None
        for thread in self._threads:
            thread.join(timeout)
        return code

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(WAIT)
        for thread in self._threads:
            thread.join(WAIT)
        for pipe in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            if pipe is not None:
                pipe.close()


@pytest.fixture
def wirekit() -> Iterator[Callable[..., Wirekit]]:
    """``wirekit(args, **popen)``: start the command; killed at teardown if still running."""
    started: list[Wirekit] = []

    def start(args: list[str], **popen: Any) -> Wirekit:
        proc = Wirekit(args, **popen)
        started.append(proc)
        return proc

    yield start
    for proc in started:
        proc.stop()


#: One row of the ``wirekit serve`` table: service, endpoint, command to try it.
ROW = r"^(echo|daytime|time|chat|exec) +(\S+) +(.+)$"


def table_rows(stdout: str) -> list[tuple[str, str, str]]:
    return [m.groups() for m in re.finditer(ROW, stdout, re.MULTILINE)]


@pytest.fixture
def served(wirekit: Callable[..., Wirekit]) -> Callable[..., tuple[Wirekit, list[Any]]]:
    """``served(args, rows)``: start ``wirekit serve ARGS`` and wait for a table of
    ``rows`` endpoints; returns the process and the rows."""

    def start(args: list[str], rows: int, **popen: Any) -> tuple[Wirekit, list[Any]]:
        proc = wirekit(["serve", *args], **popen)
        pattern = r"^SERVICE +ENDPOINT +TRY\n" + r"(?:(?:echo|daytime|time|chat|exec) .+\n)"
        pattern += f"{{{rows}}}"
        proc.expect(pattern)
        return proc, table_rows(proc.stdout)

    return start
