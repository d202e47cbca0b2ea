"""``wirekit connect tls://``: verified with --cafile, refused without it (with a
line that says what to do), and unverified with --insecure. The server is a
Python ssl server with a self-signed certificate made for the test."""

from __future__ import annotations

import datetime
import ipaddress
import socket
import ssl
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

x509 = pytest.importorskip("cryptography.x509")
from cryptography.hazmat.primitives import hashes, serialization  # noqa: E402
from cryptography.hazmat.primitives.asymmetric import ec  # noqa: E402
from cryptography.x509.oid import NameOID  # noqa: E402


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed certificate for localhost and 127.0.0.1, and its key."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "wirekit test server")])
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
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    folder = tmp_path_factory.mktemp("tls")
    cert_path, key_path = folder / "cert.pem", folder / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


@dataclass
class TLSServer:
    """Answers each connection's first line upper-cased, then closes."""

    port: int
    handshake_errors: list[str] = field(default_factory=list)
    answered: list[bytes] = field(default_factory=list)


@pytest.fixture
def tls_server(certificate: tuple[Path, Path]) -> Iterator[TLSServer]:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(*certificate)
    listener = socket.create_server(("127.0.0.1", 0))
    server = TLSServer(listener.getsockname()[1])
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                raw, _ = listener.accept()
            except OSError:
                return
            raw.settimeout(10)
            try:
                with ctx.wrap_socket(raw, server_side=True) as conn:
                    line = b""
                    while not line.endswith(b"\n") and (chunk := conn.recv(1024)):
                        line += chunk
                    server.answered.append(line)
                    conn.sendall(line.upper())
            except (ssl.SSLError, OSError) as exc:
                server.handshake_errors.append(str(exc))
                raw.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield server
    stop.set()
    listener.shutdown(socket.SHUT_RDWR)
    listener.close()
    thread.join(5)


def _connect(*args: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        ["wirekit", "connect", *args], input=b"secret\n", capture_output=True, timeout=10
    )


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
def test_cafile_verifies_the_server(
    host: str, tls_server: TLSServer, certificate: tuple[Path, Path]
) -> None:
    done = _connect("--cafile", str(certificate[0]), f"tls://{host}:{tls_server.port}")
    assert (done.returncode, done.stdout, done.stderr) == (0, b"SECRET\n", b"")
    assert tls_server.answered == [b"secret\n"]


def test_untrusted_certificate_fails_with_a_hint(tls_server: TLSServer) -> None:
    done = _connect(f"tls://127.0.0.1:{tls_server.port}")
    assert done.returncode == 1
    assert done.stdout == b""
    lines = done.stderr.decode().splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith(f"wirekit: cannot connect to 127.0.0.1:{tls_server.port}: ")
    assert "certificate not trusted" in lines[0]
    assert "--cafile" in lines[0] and "--insecure" in lines[0]
    assert tls_server.answered == []  # nothing was sent to an unverified server


def test_insecure_skips_the_check(tls_server: TLSServer) -> None:
    done = _connect("--insecure", f"tls://127.0.0.1:{tls_server.port}")
    assert (done.returncode, done.stdout, done.stderr) == (0, b"SECRET\n", b"")


def test_tls_to_a_plain_server_fails_in_one_line() -> None:
    with socket.create_server(("127.0.0.1", 0)) as plain:
        port = plain.getsockname()[1]

        def answer() -> None:
            conn, _ = plain.accept()
            with conn:
                conn.recv(1024)
                conn.sendall(b"HTTP/1.0 400 not tls\r\n\r\n")

        thread = threading.Thread(target=answer, daemon=True)
        thread.start()
        done = _connect("--insecure", f"tls://127.0.0.1:{port}")
        thread.join(5)
    assert done.returncode == 1
    lines = done.stderr.decode().splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith(f"wirekit: cannot connect to 127.0.0.1:{port}: TLS failed")
