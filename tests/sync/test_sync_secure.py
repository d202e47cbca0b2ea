"""wirekit.sync.secure.secure_connect against a real secure server on a background
thread: key and token auth, TLS pinning, refusals, timeouts."""

from __future__ import annotations

import asyncio
import re
import secrets
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import wirekit
import wirekit.aio
import wirekit.sync
from wirekit import AuthenticationFailed, ConnectError, HelloMissing
from wirekit.aio import Connection
from wirekit.aio.secure import Peer, ServerAuth, secure_serve
from wirekit.security import ChangedFingerprint, KnownHosts, generate_keypair, public_key_line
from wirekit.security.tlscert import auto_certificate, load_certificate
from wirekit.sync.secure import secure_connect


@pytest.fixture(autouse=True)
def private_dirs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Own HOME and config dir: the real user's keys and pins are never touched."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("WIREKIT_CONFIG_DIR", str(tmp_path / "config"))
    monkeypatch.delenv("XDG_CONFIG_HOME", raising=False)
    monkeypatch.delenv("WIREKIT_TOKEN_FILE", raising=False)
    return tmp_path


async def greet(conn: Connection, peer: Peer) -> None:
    await conn.send(f"{peer.method}|{peer.principal}".encode())
    async for item in conn:
        if isinstance(item, bytes):
            await conn.send(item)


class SecureThreadServer:
    """secure_serve() on its own thread and event loop."""

    def __init__(self, kwargs: dict[str, Any]) -> None:
        self.kwargs = kwargs
        self.address: wirekit.Address | None = None
        self.server: wirekit.Server | None = None
        self.error: BaseException | None = None
        self._ready = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        try:
            wirekit.run(self._main())
        except BaseException as exc:
            self.error = exc
        finally:
            self._ready.set()

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        async with await secure_serve(greet, "127.0.0.1:0", service="exec", **self.kwargs) as s:
            self.address, self.server = s.address, s
            self._ready.set()
            await self._stop.wait()

    def stop(self) -> None:
        if self._loop is not None and self._stop is not None and self.thread.is_alive():
            self._loop.call_soon_threadsafe(self._stop.set)
        self.thread.join(10)


@pytest.fixture
def server() -> Iterator[Callable[..., wirekit.Address]]:
    """``server(**secure_serve_kwargs) -> bound address``; ``server.last`` is the thread."""
    started: list[SecureThreadServer] = []

    def start(**kwargs: Any) -> wirekit.Address:
        kwargs.setdefault("limits", wirekit.Limits(shutdown_grace=1.0))
        srv = SecureThreadServer(kwargs)
        started.append(srv)
        srv.thread.start()
        assert srv._ready.wait(10)
        if srv.error is not None:
            raise srv.error
        assert srv.address is not None
        start.last = srv  # type: ignore[attr-defined]
        return srv.address

    yield start
    for srv in started:
        srv.stop()


def token_file(path: Path) -> Path:
    path.write_text(secrets.token_hex(32))
    path.chmod(0o600)
    return path


def test_token_auth_then_framed_traffic(server: Any, tmp_path: Path) -> None:
    token = token_file(tmp_path / "tok")
    address = server(auth=ServerAuth(token=token.read_bytes(), failure_delay=0.05))
    with secure_connect(address, service="exec", token_file=token, timeout=5) as conn:
        assert conn.recv() == b"token|token"
        conn.send(b"data")
        assert conn.recv() == b"data"


def test_key_auth_over_tls_pins_then_refuses_a_change(server: Any, tmp_path: Path) -> None:
    key = generate_keypair(tmp_path / "id", comment="bob@desk")
    keys = tmp_path / "authorized_keys"
    keys.write_text(public_key_line(key.public_key(), "bob@desk") + "\n")
    cert, cert_key, fingerprint = auto_certificate()
    context, _ = load_certificate(cert, cert_key)
    address = server(auth=ServerAuth(authorized_keys=keys, failure_delay=0.05), ssl=context)
    tls = f"tls://{address.hostport()}"
    with pytest.raises(AuthenticationFailed, match="not a known host"):
        secure_connect(tls, service="exec", identity=tmp_path / "id")
    with secure_connect(tls, service="exec", identity=tmp_path / "id", accept_new=True) as conn:
        method, principal = conn.recv().decode().split("|")
    assert method == "key" and principal.endswith(" bob@desk")
    assert KnownHosts().lookup(address.hostport()) == fingerprint
    KnownHosts().remember(address.hostport(), "SHA256:" + "B" * 43, replace=True)
    with pytest.raises(ChangedFingerprint, match="has changed"):
        secure_connect(tls, service="exec", identity=tmp_path / "id")


def test_wrong_token_refused(server: Any, tmp_path: Path) -> None:
    good, bad = token_file(tmp_path / "good"), token_file(tmp_path / "bad")
    address = server(auth=ServerAuth(token=good.read_bytes(), failure_delay=0.05))
    start = time.monotonic()
    with pytest.raises(AuthenticationFailed) as info:
        secure_connect(address, service="exec", token_file=bad)
    assert str(info.value) == "authentication failed: token refused"
    assert time.monotonic() - start >= 0.05  # the server's failure delay


def test_client_handshake_timeout(tmp_path: Path) -> None:
    """A listener that never answers: the blocking client gives up in time."""
    import socket

    token = token_file(tmp_path / "tok")
    with socket.create_server(("127.0.0.1", 0)) as listener:
        port = listener.getsockname()[1]
        start = time.monotonic()
        with pytest.raises(ConnectError):
            secure_connect(f"127.0.0.1:{port}", service="exec", token_file=token, timeout=0.3)
        assert time.monotonic() - start < 3


def test_slow_answer_to_the_pin_question_reconnects(
    server: Any, tmp_path: Path, wait_until: Callable[..., None]
) -> None:
    """The person answers after the server gave up on the first connection."""
    token = token_file(tmp_path / "tok")
    cert, cert_key, fingerprint = auto_certificate()
    context, _ = load_certificate(cert, cert_key)
    address = server(
        auth=ServerAuth(token=token.read_bytes(), failure_delay=0.05),
        ssl=context,
        limits=wirekit.Limits(handshake_timeout=0.3, shutdown_grace=1.0),
    )
    thread = server.last
    questions: list[str] = []

    def slow_yes(question: str) -> bool:
        questions.append(question)
        wait_until(lambda: thread.server.connections == 0, what="server dropped us")
        return True

    tls = f"tls://{address.hostport()}"
    with secure_connect(tls, service="exec", token_file=token, confirm=slow_yes) as conn:
        assert conn.recv() == b"token|token"
    assert len(questions) == 1 and fingerprint in questions[0]
    assert KnownHosts().lookup(address.hostport()) == fingerprint


def test_plain_client_at_a_tls_server_is_told_to_use_tls(server: Any, tmp_path: Path) -> None:
    """A TLS server closes on a client that does not start TLS: the client
    says so in one line, with the address to use, blocking and asyncio alike."""
    token = token_file(tmp_path / "tok")
    cert, cert_key, _ = auto_certificate()
    context, _ = load_certificate(cert, cert_key)
    address = server(auth=ServerAuth(token=token.read_bytes(), failure_delay=0.05), ssl=context)
    hint = f"connect to tls://{address.hostport()}"
    with pytest.raises(HelloMissing) as info:
        secure_connect(address.hostport(), service="exec", token_file=token, timeout=5)
    assert str(info.value) == (
        f"{address.hostport()} closed the connection before its hello (if it is a TLS server, "
        f"{hint})"
    )
    with pytest.raises(HelloMissing, match=re.escape(hint)):
        wirekit.sync.connect(address.hostport(), timeout=5)

    async def plain() -> None:
        async with wirekit.aio.connect(address.hostport(), timeout=5):
            pass

    with pytest.raises(HelloMissing, match=re.escape(hint)):
        wirekit.run(plain())
    # The same address over TLS works.
    tls = f"tls://{address.hostport()}"
    with secure_connect(tls, service="exec", token_file=token, accept_new=True, timeout=5) as c:
        assert c.recv() == b"token|token"


def test_tls_client_at_a_plain_server_is_told_to_drop_tls(server: Any, tmp_path: Path) -> None:
    token = token_file(tmp_path / "tok")
    address = server(auth=ServerAuth(token=token.read_bytes(), failure_delay=0.05))
    tls = f"tls://{address.hostport()}"
    expected = (
        f"cannot connect to {address.hostport()}: the server does not speak TLS (if it is a "
        f"plain wirekit server, connect to {address.hostport()} without tls://)"
    )
    with pytest.raises(ConnectError) as info:
        secure_connect(tls, service="exec", token_file=token, accept_new=True, timeout=5)
    assert str(info.value) == expected

    async def over_tls() -> None:
        async with wirekit.aio.connect(tls, timeout=5):
            pass

    with pytest.raises(ConnectError) as info:
        wirekit.run(over_tls())
    assert str(info.value) == expected


def test_a_server_closing_before_its_hello_over_unix_gets_no_tls_hint(tmp_path: Path) -> None:
    path = tmp_path / "s.sock"
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(path))
    listener.listen()

    def close_at_once() -> None:
        conn, _ = listener.accept()
        conn.recv(64)  # the client's hello, read: closing then sends EOF, not a reset
        conn.close()

    closer = threading.Thread(target=close_at_once)
    closer.start()
    try:
        with pytest.raises(HelloMissing) as info:
            wirekit.sync.connect(f"unix:{path}", timeout=5)
    finally:
        closer.join(5)
        listener.close()
    assert str(info.value) == "the server closed the connection before its hello"
