"""Fixtures shared by the runtime tests (tests/aio, tests/sync).

- ``arun(coro)`` runs a coroutine on wirekit's own event loop
  (``wirekit.aio.run``, uvloop when installed), bounded by a timeout;
- ``until`` / ``wait_until`` poll a condition, async and blocking, with a timeout;
- ``tls`` makes a throwaway self-signed certificate and SSL contexts for it;
- ``rss`` reads this process's resident memory.
"""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
import os
import ssl
import time
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pytest

import wirekit.aio

T = TypeVar("T")

#: Runs a coroutine to completion on wirekit's loop; ``timeout`` bounds it.
AsyncRunner = Callable[..., Any]


def _run_async(coro: Coroutine[Any, Any, T], *, timeout: float = 30.0) -> T:
    async def bounded() -> T:
        async with asyncio.timeout(timeout):
            return await coro

    return wirekit.aio.run(bounded())


@pytest.fixture
def arun() -> AsyncRunner:
    """``arun(main())`` runs ``main()`` with ``wirekit.aio.run`` and returns its result."""
    return _run_async


async def _until(
    predicate: Callable[[], object], timeout: float = 5.0, what: str = "condition"
) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not reached within {timeout:g} s")
        await asyncio.sleep(0.005)


def _wait_until(
    predicate: Callable[[], object], timeout: float = 5.0, what: str = "condition"
) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not reached within {timeout:g} s")
        time.sleep(0.005)


@pytest.fixture
def until() -> Callable[..., Awaitable[None]]:
    """``await until(lambda: cond, timeout=5, what="...")``: poll inside a coroutine."""
    return _until


@pytest.fixture
def wait_until() -> Callable[..., None]:
    """``wait_until(lambda: cond, timeout=5, what="...")``: poll from blocking code."""
    return _wait_until


def _rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


@pytest.fixture
def rss() -> Callable[[], int]:
    """Resident memory of this process in bytes (Linux /proc)."""
    if not os.path.exists("/proc/self/statm"):
        pytest.skip("needs /proc/self/statm")
    return _rss


@dataclass(frozen=True)
class TLSFiles:
    """A self-signed certificate for ``localhost`` and 127.0.0.1 / ::1."""

    cert: Path
    key: Path

    def server_context(self) -> ssl.SSLContext:
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(self.cert, self.key)
        return ctx

    def client_context(self) -> ssl.SSLContext:
        """A verifying client context that trusts only this certificate."""
        return ssl.create_default_context(cafile=str(self.cert))


@pytest.fixture(scope="session")
def tls(tmp_path_factory: pytest.TempPathFactory) -> TLSFiles:
    """A throwaway certificate made with the ``cryptography`` package."""
    x509 = pytest.importorskip("cryptography.x509")
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [
                    x509.DNSName("localhost"),
                    x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                    x509.IPAddress(ipaddress.ip_address("::1")),
                ]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    directory = tmp_path_factory.mktemp("tls")
    files = TLSFiles(directory / "cert.pem", directory / "key.pem")
    files.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    files.key.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return files
