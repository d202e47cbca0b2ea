"""``wirekit connect tls://``: verified with --cafile, refused without it (with a
line that says what to do), and unverified with --insecure; bulk data both ways
at once, stdin's EOF as a close_notify, and -w. The servers are Python ssl
servers (and socat) with a self-signed certificate made for the test."""

from __future__ import annotations

import hashlib
import random
import socket
import ssl
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("cryptography.x509")


@pytest.fixture(scope="module")
def certificate(tls: Any) -> tuple[Path, Path]:
    """The suite's self-signed certificate (tests/conftest.py) and its key."""
    return tls.cert, tls.key


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


# -- one connection, one handler ---------------------------------------------------

#: Seconds any one wait on a TLS peer may take before it counts as a failure.
WAIT = 10.0


@dataclass
class TLSPeer:
    """One TLS connection served by ``handler(conn, seen)`` in a thread. The
    server socket has ``suppress_ragged_eofs=False``: ``recv`` returns ``b""`` only
    on the client's close_notify, a bare TCP EOF raises (into ``errors``)."""

    port: int
    seen: dict[str, Any] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    release: threading.Event = field(default_factory=threading.Event)


@pytest.fixture
def tls_peer(certificate: tuple[Path, Path]) -> Iterator[Callable[..., TLSPeer]]:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(*certificate)
    started: list[tuple[socket.socket, threading.Thread, TLSPeer]] = []

    def start(handler: Callable[[ssl.SSLSocket, TLSPeer], None]) -> TLSPeer:
        listener = socket.create_server(("127.0.0.1", 0))
        listener.settimeout(WAIT)
        peer = TLSPeer(listener.getsockname()[1])

        def serve() -> None:
            try:
                raw, _ = listener.accept()
                raw.settimeout(WAIT)
                with ctx.wrap_socket(raw, server_side=True, suppress_ragged_eofs=False) as conn:
                    handler(conn, peer)
            except (ssl.SSLError, OSError) as exc:
                peer.errors.append(repr(exc))

        thread = threading.Thread(target=serve, daemon=True)
        thread.start()
        started.append((listener, thread, peer))
        return peer

    yield start
    for listener, thread, peer in started:
        peer.release.set()
        listener.close()
        thread.join(WAIT)


SIZE = 20 * 1024 * 1024
TRANSFER = 60.0  # seconds 20 MiB each way through TLS may take at most
FLIP = bytes(255 - b for b in range(256))


@pytest.fixture(scope="module")
def payload(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, bytes]:
    path = tmp_path_factory.mktemp("tls-data") / "payload.bin"
    data = random.Random(443).randbytes(SIZE)
    path.write_bytes(data)
    return path, data


def _flip_echo(conn: ssl.SSLSocket, peer: TLSPeer) -> None:
    """Send every byte back inverted as it comes, until the client's close_notify."""
    digest, size = hashlib.sha256(), 0
    while data := conn.recv(65536):
        digest.update(data)
        size += len(data)
        conn.sendall(data.translate(FLIP))
    peer.seen.update(sha256=digest.hexdigest(), size=size)
    conn.unwrap()  # our close_notify: the client's reads end cleanly


def _hash_pipe(pipe: Any, result: dict[str, Any]) -> None:
    digest, size = hashlib.sha256(), 0
    while chunk := pipe.read1(1 << 20):
        digest.update(chunk)
        size += len(chunk)
    result.update(sha256=digest.hexdigest(), size=size)


def _feed_pipe(pipe: Any, data: bytes) -> None:
    view = memoryview(data)
    for start in range(0, len(view), 1 << 20):
        pipe.write(view[start : start + (1 << 20)])
    pipe.close()


@pytest.mark.parametrize("stdin_kind", ["file", "pipe"])
def test_20_mib_both_ways_at_once_arrive_byte_exact(
    stdin_kind: str,
    payload: tuple[Path, bytes],
    certificate: tuple[Path, Path],
    tls_peer: Callable[..., TLSPeer],
    spawn: Callable[..., Any],
) -> None:
    """The server answers each piece as it reads it, so its answer flows back while
    the client still sends: one TLS connection read and written at once."""
    source, data = payload
    peer = tls_peer(_flip_echo)
    with source.open("rb") as src:
        client = spawn(
            ["wirekit", "connect", "--cafile", str(certificate[0]), f"tls://127.0.0.1:{peer.port}"],
            stdin=src if stdin_kind == "file" else subprocess.PIPE,
            collect_stdout=False,
        )
    hashed: dict[str, Any] = {}
    hasher = threading.Thread(target=_hash_pipe, args=(client.proc.stdout, hashed), daemon=True)
    hasher.start()
    if stdin_kind == "pipe":
        threading.Thread(target=_feed_pipe, args=(client.proc.stdin, data), daemon=True).start()

    assert client.wait(TRANSFER) == 0, client.stderr_text
    hasher.join(TRANSFER)
    assert client.stderr_text == ""
    assert peer.errors == []
    assert peer.seen == {"sha256": hashlib.sha256(data).hexdigest(), "size": SIZE}
    assert hashed == {"sha256": hashlib.sha256(data.translate(FLIP)).hexdigest(), "size": SIZE}


def _digest_at_the_end(conn: ssl.SSLSocket, peer: TLSPeer) -> None:
    """Read until the client's close_notify, then answer with what was read."""
    digest = hashlib.sha256()
    while data := conn.recv(65536):
        digest.update(data)
    conn.sendall(digest.hexdigest().encode() + b"\n")
    peer.seen["answered"] = True


def test_stdin_eof_is_a_close_notify_and_the_answer_still_arrives(
    certificate: tuple[Path, Path], tls_peer: Callable[..., TLSPeer]
) -> None:
    peer = tls_peer(_digest_at_the_end)
    request = b"every line counts\n" * 5000
    done = subprocess.run(
        ["wirekit", "connect", "--cafile", str(certificate[0]), f"tls://127.0.0.1:{peer.port}"],
        input=request,
        capture_output=True,
        timeout=WAIT,
    )
    assert (done.returncode, done.stderr) == (0, b"")
    assert done.stdout == hashlib.sha256(request).hexdigest().encode() + b"\n"
    assert (peer.errors, peer.seen) == ([], {"answered": True})


def test_stdin_eof_over_tls_with_socat(
    tool: Callable[[str], str], spawn: Callable[..., Any], certificate: tuple[Path, Path]
) -> None:
    """tr answers only once it sees EOF: socat (OpenSSL) must get our close_notify."""
    tool("socat")
    cert, key = certificate
    server = spawn(
        [
            "socat",
            "-d",
            "-d",
            f"OPENSSL-LISTEN:0,bind=127.0.0.1,cert={cert},key={key},verify=0",
            "SYSTEM:tr a-z A-Z",
        ]
    )
    port = int(server.expect(rb"listening on AF=2 127\.0\.0\.1:(\d+)", err=True).group(1))
    done = subprocess.run(
        ["wirekit", "connect", "--cafile", str(cert), f"tls://localhost:{port}"],
        input=b"shout this\nand this\n",
        capture_output=True,
        timeout=WAIT,
    )
    assert (done.returncode, done.stdout, done.stderr) == (0, b"SHOUT THIS\nAND THIS\n", b"")
    assert server.wait() == 0, server.stderr_text


ANSWER = bytes(range(256)) * 4096  # 1 MiB


def _answer_and_close(conn: ssl.SSLSocket, peer: TLSPeer) -> None:
    """Read one line, answer at length and close without reading further: data
    still unread at close makes the kernel reset the connection, dropping what
    it had not sent yet."""
    line = b""
    while not line.endswith(b"\n") and (chunk := conn.recv(1024)):
        line += chunk
    conn.sendall(ANSWER)
    peer.seen["line"] = line


def test_a_server_that_answers_and_closes_gets_its_whole_answer_across(
    certificate: tuple[Path, Path], tls_peer: Callable[..., TLSPeer]
) -> None:
    """Our close_notify waits until the peer is quiet, so it is not unread data
    when such a server closes."""
    peer = tls_peer(_answer_and_close)
    done = subprocess.run(
        ["wirekit", "connect", "--cafile", str(certificate[0]), f"tls://127.0.0.1:{peer.port}"],
        input=b"request\n",
        capture_output=True,
        timeout=WAIT,
    )
    assert (done.returncode, done.stderr) == (0, b"")
    assert done.stdout == ANSWER
    assert (peer.errors, peer.seen) == ([], {"line": b"request\n"})


def _say_nothing(conn: ssl.SSLSocket, peer: TLSPeer) -> None:
    peer.release.wait(WAIT)


def test_idle_timeout_over_tls_exits_1(
    certificate: tuple[Path, Path], tls_peer: Callable[..., TLSPeer], spawn: Callable[..., Any]
) -> None:
    peer = tls_peer(_say_nothing)
    client = spawn(
        [
            "wirekit",
            "connect",
            "-w",
            "0.5",
            "--cafile",
            str(certificate[0]),
            f"tls://127.0.0.1:{peer.port}",
        ]
    )  # stdin stays open: only -w can end this
    assert client.wait(WAIT) == 1
    assert client.stderr_text == "wirekit: idle for 0.5 s; closing\n"
    assert bytes(client.out) == b""


def test_plain_tcp_does_not_load_ssl() -> None:
    """ssl (and OpenSSL) is loaded only for tls:// addresses."""
    script = (
        "import sys\n"
        "from wirekit.cli import main\n"
        "code = main(sys.argv[1:])\n"
        "print('ssl' in sys.modules, code, file=sys.stderr)\n"
    )
    with socket.create_server(("127.0.0.1", 0)) as server:
        server.settimeout(WAIT)

        def greet() -> None:
            conn, _ = server.accept()
            with conn:
                conn.sendall(b"plain\n")

        thread = threading.Thread(target=greet, daemon=True)
        thread.start()
        done = subprocess.run(
            [sys.executable, "-c", script, "connect", f"127.0.0.1:{server.getsockname()[1]}"],
            input=b"",
            capture_output=True,
            timeout=WAIT,
        )
        thread.join(WAIT)
    assert (done.returncode, done.stdout, done.stderr) == (0, b"plain\n", b"False 0\n")
