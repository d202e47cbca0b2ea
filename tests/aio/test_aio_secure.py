"""secure_serve()/secure_connect() over real sockets on 127.0.0.1: key and token
authentication, refusals, replay, TLS pinning, throttling, timeouts, load."""

from __future__ import annotations

import asyncio
import logging
import os
import re
import secrets
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from wirekit import (
    AuthenticationFailed,
    ConnectError,
    ConnectionClosed,
    ErrorCode,
    Limits,
    ListenError,
    Message,
)
from wirekit.addr import parse_address
from wirekit.aio import Connection, connect, serve
from wirekit.aio.secure import (
    PREAUTH_MAX_FRAME,
    PREAUTH_READ_HIGH_WATER,
    FailureThrottle,
    Peer,
    ServerAuth,
    is_loopback,
    secure_connect,
    secure_serve,
)
from wirekit.limits import DEFAULT_LIMITS
from wirekit.proto.auth import (
    AUTH_MESSAGES,
    AuthAccept,
    AuthChallenge,
    AuthRequest,
    ClientHandshake,
)
from wirekit.security import ChangedFingerprint, KnownHosts, generate_keypair, public_key_line
from wirekit.security.credentials import key_credential, token_credential
from wirekit.security.tlscert import auto_certificate, load_certificate


class ServiceRequest(Message, frozen=True, tag="test-request"):
    """Stands for a service request (e.g. an exec request)."""

    argv: list[str]


@pytest.fixture(autouse=True)
def private_dirs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """Every test gets its own HOME and config dir; the real user's files are never touched."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("WIREKIT_CONFIG_DIR", str(tmp_path / "config"))
    monkeypatch.delenv("XDG_CONFIG_HOME", raising=False)
    monkeypatch.delenv("WIREKIT_TOKEN_FILE", raising=False)
    yield tmp_path


FAST = dict(failure_delay=0.05, max_failure_delay=1.0)


def make_token(path: Path) -> Path:
    path.write_text(secrets.token_hex(32) + "\n")
    path.chmod(0o600)
    return path


def make_key(path: Path, comment: str = "alice@laptop") -> tuple[Path, str]:
    key = generate_keypair(path, comment=comment)
    return path, public_key_line(key.public_key(), comment)


def write_authorized(path: Path, *lines: str) -> Path:
    path.write_text("".join(line + "\n" for line in lines))
    return path


async def greet(conn: Connection, peer: Peer) -> None:
    """The service under test: says who it thinks the peer is, then echoes."""
    await conn.send(f"{peer.method}|{peer.principal}|{peer.ip}".encode())
    async for item in conn:
        if isinstance(item, bytes):
            await conn.send(item)


async def expect_refusal(conn: Connection) -> ConnectionClosed:
    with pytest.raises(ConnectionClosed) as info:
        while True:
            await conn.recv()
    return info.value


# -- success -----------------------------------------------------------------


def test_token_auth_ok(arun: Any, tmp_path: Path) -> None:
    token = make_token(tmp_path / "tok")
    auth = ServerAuth(token=token.read_text().strip().encode(), **FAST)

    async def main() -> None:
        async with await secure_serve(greet, "127.0.0.1:0", service="exec", auth=auth) as server:
            conn = await secure_connect(server.address, service="exec", token_file=token)
            assert await conn.recv() == b"token|token|127.0.0.1"
            await conn.send(b"ping")
            assert await conn.recv() == b"ping"
            await conn.close()

    arun(main())


def test_key_auth_ok_and_logged(
    arun: Any, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    key, line = make_key(tmp_path / "id")
    keys = write_authorized(tmp_path / "authorized_keys", "# comment", line)
    auth = ServerAuth(authorized_keys=keys, **FAST)

    async def main() -> bytes:
        async with await secure_serve(greet, "127.0.0.1:0", service="exec", auth=auth) as server:
            conn = await secure_connect(server.address, service="exec", identity=key)
            reply = await conn.recv()
            await conn.close()
            assert isinstance(reply, bytes)
            return reply

    with caplog.at_level(logging.INFO, logger="wirekit.auth"):
        reply = arun(main())
    method, principal, ip = reply.decode().split("|")
    assert (method, ip) == ("key", "127.0.0.1")
    assert re.fullmatch(r"key SHA256:[A-Za-z0-9+/]{43} alice@laptop", principal)
    logged = [r.getMessage() for r in caplog.records if r.levelno == logging.INFO]
    assert f"exec: 127.0.0.1 authenticated by {principal}" in logged


def test_default_key_and_local_token_are_found(arun: Any, private_dirs: Path) -> None:
    """No files named: the local service token (made by for_service) is used by itself."""
    auth, hint = ServerAuth.for_service(authorized_keys=None, token_file=None, service="exec")
    token = private_dirs / "config" / "exec.token"
    assert hint is not None and str(token) in hint
    assert token.stat().st_mode & 0o777 == 0o600
    assert auth.token is not None and auth.token.decode() == token.read_text().strip()

    async def main() -> bytes:
        async with await secure_serve(greet, "127.0.0.1:0", service="exec", auth=auth) as server:
            conn = await secure_connect(server.address, service="exec")
            reply = await conn.recv()
            await conn.close()
            assert isinstance(reply, bytes)
            return reply

    assert arun(main()).startswith(b"token|")
    # a second server start reuses the same token: local clients keep working
    again, _ = ServerAuth.for_service(authorized_keys=None, token_file=None, service="exec")
    assert again.token == auth.token


# -- refusals ------------------------------------------------------------------


async def refused(server_auth: ServerAuth, **client: Any) -> str:
    async with await secure_serve(greet, "127.0.0.1:0", service="exec", auth=server_auth) as s:
        with pytest.raises(AuthenticationFailed) as info:
            await secure_connect(s.address, service="exec", **client)
        assert s.connections <= 1
    return str(info.value)


def test_wrong_token_refused_with_one_line(
    arun: Any, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    good, bad = make_token(tmp_path / "good"), make_token(tmp_path / "bad")
    auth = ServerAuth(token=good.read_text().strip().encode(), **FAST)
    with caplog.at_level(logging.INFO, logger="wirekit.auth"):
        text = arun(refused(auth, token_file=bad))
    assert text == "authentication failed: token refused"
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert "exec: refused 127.0.0.1: wrong token proof" in warnings


def test_unknown_key_refused(arun: Any, tmp_path: Path) -> None:
    _, line = make_key(tmp_path / "alice")
    mallory, _ = make_key(tmp_path / "mallory", "mallory@x")
    keys = write_authorized(tmp_path / "authorized_keys", line)
    text = arun(refused(ServerAuth(authorized_keys=keys, **FAST), identity=mallory))
    assert re.fullmatch(
        r"authentication failed: key SHA256:[A-Za-z0-9+/]{43} is not authorized", text
    )


def test_key_with_options_refused_and_warned(
    arun: Any, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    key, line = make_key(tmp_path / "id")
    keys = write_authorized(tmp_path / "authorized_keys", f'command="/usr/bin/backup" {line}')
    with caplog.at_level(logging.WARNING, logger="wirekit.auth"):
        text = arun(refused(ServerAuth(authorized_keys=keys, **FAST), identity=key))
    assert "is not authorized" in text
    assert any(
        f"{keys} line 1: key with options (command) refused" in r.getMessage()
        for r in caplog.records
    )


def test_method_the_server_does_not_offer(arun: Any, tmp_path: Path) -> None:
    _, line = make_key(tmp_path / "id")
    token = make_token(tmp_path / "tok")
    keys = write_authorized(tmp_path / "authorized_keys", line)
    text = arun(refused(ServerAuth(authorized_keys=keys, **FAST), token_file=token))
    assert text == "authentication failed: the server accepts key; this client has: token"


def test_other_service_refused(arun: Any, tmp_path: Path) -> None:
    token = make_token(tmp_path / "tok")
    auth = ServerAuth(token=token.read_text().strip().encode(), **FAST)

    async def main() -> str:
        async with await secure_serve(greet, "127.0.0.1:0", service="files", auth=auth) as s:
            with pytest.raises(AuthenticationFailed) as info:
                await secure_connect(s.address, service="exec", token_file=token)
        return str(info.value)

    assert arun(main()) == "authentication failed: the server offers 'files', not 'exec'"


def test_request_before_authentication_refused(arun: Any, tmp_path: Path) -> None:
    token = make_token(tmp_path / "tok")
    auth = ServerAuth(token=token.read_text().strip().encode(), **FAST)
    handled: list[Peer] = []

    async def service(conn: Connection, peer: Peer) -> None:
        handled.append(peer)

    async def main() -> list[ConnectionClosed]:
        server = await secure_serve(
            service, "127.0.0.1:0", service="exec", auth=auth, message_types=[ServiceRequest]
        )
        errors = []
        async with server:
            for first in (ServiceRequest(["rm", "-rf", "/"]), b"raw bytes"):
                conn = await connect(server.address, message_types=[*AUTH_MESSAGES, ServiceRequest])
                assert isinstance(await conn.recv(), AuthChallenge)
                if isinstance(first, bytes):
                    await conn.send(first)
                else:
                    await conn.send_message(first)
                errors.append(await expect_refusal(conn))
        return errors

    message, data = arun(main())
    assert message.code == data.code == ErrorCode.AUTH_FAILED
    assert message.reason == "authentication required first, got a 'test-request' message"
    assert data.reason == "authentication required first, got 9 bytes of data"
    assert handled == []


def replay_request(credential: Any) -> Any:
    """Authenticate once with ``credential`` and return the request that was accepted."""

    async def run(address: Any) -> AuthRequest:
        conn = await connect(address, message_types=AUTH_MESSAGES)
        shake = ClientHandshake("exec", [credential], secrets.token_bytes(32))
        request = shake.receive(await conn.recv())
        assert request is not None
        await conn.send_message(request)
        assert isinstance(await conn.recv(), AuthAccept)
        await conn.close()
        return request

    return run


@pytest.mark.parametrize("method", ["key", "token"])
def test_replayed_auth_message_fails_on_a_second_connection(
    arun: Any, tmp_path: Path, method: str
) -> None:
    key, line = make_key(tmp_path / "id")
    token = make_token(tmp_path / "tok")
    keys = write_authorized(tmp_path / "authorized_keys", line)
    auth = ServerAuth(authorized_keys=keys, token=token.read_text().strip().encode(), **FAST)
    credential = key_credential(key) if method == "key" else token_credential(token)

    async def main() -> ConnectionClosed:
        async with await secure_serve(greet, "127.0.0.1:0", service="exec", auth=auth) as s:
            recorded = await replay_request(credential)(s.address)
            conn = await connect(s.address, message_types=AUTH_MESSAGES)
            challenge = await conn.recv()
            assert isinstance(challenge, AuthChallenge) and challenge.nonce != recorded.nonce
            await conn.send_message(recorded)  # the eavesdropped message, byte for byte
            return await expect_refusal(conn)

    error = arun(main())
    assert error.code == ErrorCode.AUTH_FAILED
    expected = {
        "key": "authentication failed: the key's signature does not match this connection",
        "token": "authentication failed: token refused",
    }
    assert error.reason == expected[method]


def test_fake_server_without_the_token_gets_no_request(arun: Any, tmp_path: Path) -> None:
    """Mutual token auth: a server that accepts anything must also prove the token."""
    token = make_token(tmp_path / "tok")
    received: list[object] = []

    async def impostor(conn: Connection) -> None:
        nonce = secrets.token_bytes(32)
        await conn.send_message(AuthChallenge(1, "exec", ["token"], nonce))
        received.append(await conn.recv())
        await conn.send_message(AuthAccept(secrets.token_bytes(32)))
        async for item in conn:
            received.append(item)

    async def main() -> str:
        async with serve(impostor, "127.0.0.1:0", message_types=AUTH_MESSAGES) as server:
            with pytest.raises(AuthenticationFailed) as info:
                await secure_connect(server.address, service="exec", token_file=token)
            await asyncio.sleep(0)
        return str(info.value)

    text = arun(main())
    assert text.startswith("authentication failed: the server did not prove it knows the token")
    assert len(received) == 1 and isinstance(received[0], AuthRequest)


def test_plain_server_is_not_mistaken_for_a_secure_one(arun: Any, tmp_path: Path) -> None:
    token = make_token(tmp_path / "tok")

    async def silent(conn: Connection) -> None:
        async for _ in conn:
            pass

    async def main() -> str:
        async with serve(silent, "127.0.0.1:0") as server:
            with pytest.raises(ConnectError) as info:
                await secure_connect(server.address, service="exec", token_file=token, timeout=0.3)
        return str(info.value)

    assert "no authentication from tcp://127.0.0.1:" in arun(main())


def test_no_credentials_is_a_local_error(arun: Any) -> None:
    from wirekit.security import CredentialError

    async def main() -> None:
        await secure_connect("127.0.0.1:9", service="exec")

    with pytest.raises(CredentialError, match=r"^no credentials for exec: .*wirekit keygen"):
        arun(main())


# -- limits and throttling ---------------------------------------------------


def test_handshake_timeout_covers_authentication(arun: Any, tmp_path: Path) -> None:
    token = make_token(tmp_path / "tok")
    auth = ServerAuth(token=token.read_text().strip().encode(), **FAST)
    limits = Limits(handshake_timeout=0.3)

    async def main() -> tuple[ConnectionClosed, float]:
        async with await secure_serve(
            greet, "127.0.0.1:0", service="exec", auth=auth, limits=limits
        ) as server:
            start = time.monotonic()
            conn = await connect(server.address, message_types=AUTH_MESSAGES)
            assert isinstance(await conn.recv(), AuthChallenge)
            error = await expect_refusal(conn)  # we never answer the challenge
            return error, time.monotonic() - start

    error, elapsed = arun(main())
    assert (error.code, error.reason) == (
        ErrorCode.HANDSHAKE_TIMEOUT,
        "no authentication within 0.3 s",
    )
    assert 0.3 <= elapsed < 2.0


def test_failures_are_slowed_down_per_ip(arun: Any, tmp_path: Path) -> None:
    good, bad = make_token(tmp_path / "good"), make_token(tmp_path / "bad")
    base = 0.15
    auth = ServerAuth(
        token=good.read_text().strip().encode(), failure_delay=base, max_failure_delay=5.0
    )

    async def attempt(address: Any, token: Path) -> float:
        start = time.monotonic()
        try:
            conn = await secure_connect(address, service="exec", token_file=token)
            await conn.close()
        except AuthenticationFailed:
            pass
        return time.monotonic() - start

    async def main() -> list[float]:
        async with await secure_serve(greet, "127.0.0.1:0", service="exec", auth=auth) as s:
            return [await attempt(s.address, t) for t in (bad, bad, bad, good)]

    first, second, third, success = arun(main())
    assert first >= base
    assert second >= 2 * base
    assert third >= 4 * base
    assert success < third  # the right token is not delayed once its turn has come


def test_throttle_serialises_attempts_and_bounds_memory() -> None:
    throttle = FailureThrottle(1.0, 8.0, forget_after=100.0, max_entries=3)
    assert throttle.reserve("10.0.0.1", 0.0) == 0.0  # clean IPs never wait
    assert throttle.failed("10.0.0.1", 0.0) == 1.0
    assert throttle.failed("10.0.0.1", 1.0) == 2.0
    # parallel attempts from that IP are taken one at a time, a penalty apart
    assert throttle.reserve("10.0.0.1", 1.0) == 2.0
    assert throttle.reserve("10.0.0.1", 1.0) == 4.0
    assert throttle.reserve("10.0.0.1", 1.0, deadline=6.0) is None
    assert [throttle.failed("10.0.0.1", t) for t in (2, 3, 4, 5)] == [4.0, 8.0, 8.0, 8.0]
    for ip in ("a", "b", "c", "d"):
        throttle.failed(ip, 10.0)
    assert len(throttle) == 3  # the oldest entry went
    assert throttle.reserve("10.0.0.1", 10.0) == 0.0
    assert throttle.reserve("d", 200.0) == 0.0  # forgotten after a quiet period


def test_200_clients_at_once_all_authenticate(arun: Any, tmp_path: Path) -> None:
    key, line = make_key(tmp_path / "id")
    token = make_token(tmp_path / "tok")
    keys = write_authorized(tmp_path / "authorized_keys", line)
    auth = ServerAuth(authorized_keys=keys, token=token.read_text().strip().encode(), **FAST)
    cert, cert_key, fingerprint = auto_certificate()
    context, _ = load_certificate(cert, cert_key)

    async def client(address: Any, i: int) -> bytes:
        conn = await secure_connect(
            address,
            service="exec",
            tls=True,
            accept_new=True,
            **({"identity": key} if i % 2 else {"token_file": token}),
        )
        reply = await conn.recv()
        await conn.close()
        assert isinstance(reply, bytes)
        return reply

    async def main() -> tuple[list[bytes], float]:
        async with await secure_serve(
            greet, "127.0.0.1:0", service="exec", auth=auth, ssl=context
        ) as server:
            KnownHosts().pin(server.address.hostport(), fingerprint)
            start = time.monotonic()
            replies = await asyncio.gather(*(client(server.address, i) for i in range(200)))
            return replies, time.monotonic() - start

    replies, elapsed = arun(main(), timeout=60)
    assert sorted(r.split(b"|")[0] for r in replies) == [b"key"] * 100 + [b"token"] * 100
    assert elapsed < 30


# -- TLS ---------------------------------------------------------------------


def test_tls_pins_on_accept_new_then_refuses_a_changed_fingerprint(
    arun: Any, tmp_path: Path
) -> None:
    token = make_token(tmp_path / "tok")
    auth = ServerAuth(token=token.read_text().strip().encode(), **FAST)
    cert, key, fingerprint = auto_certificate()
    context, _ = load_certificate(cert, key)
    store = KnownHosts()

    async def main() -> list[BaseException]:
        errors: list[BaseException] = []
        async with await secure_serve(
            greet, "127.0.0.1:0", service="exec", auth=auth, ssl=context
        ) as server:
            tls = f"tls://{server.address.hostport()}"
            hostport = server.address.hostport()
            for kwargs in ({}, {"confirm": lambda question: False}):
                with pytest.raises(AuthenticationFailed) as info:
                    await secure_connect(tls, service="exec", token_file=token, **kwargs)
                errors.append(info.value)
            assert store.lookup(hostport) is None
            asked: list[str] = []
            conn = await secure_connect(
                tls, service="exec", token_file=token, confirm=lambda q: asked.append(q) or True
            )
            await conn.close()
            assert fingerprint in asked[0] and store.lookup(hostport) == fingerprint
            conn = await secure_connect(tls, service="exec", token_file=token)  # known now
            await conn.close()
            store.remember(hostport, "SHA256:" + "A" * 43, replace=True)
            with pytest.raises(ChangedFingerprint) as changed:
                await secure_connect(tls, service="exec", token_file=token, accept_new=True)
            errors.append(changed.value)
        return errors

    unknown, declined, changed = arun(main())
    assert "is not a known host" in str(unknown) and "--accept-new" in str(unknown)
    assert str(declined) == str(unknown)
    text = str(changed)
    assert "\n" not in text
    assert f"now {fingerprint}" in text
    assert "`wirekit known-hosts --forget 127.0.0.1:" in text
    assert f"or delete line 2 of {store.path}" in text


def test_tls_key_auth_binds_to_the_certificate(arun: Any, tmp_path: Path) -> None:
    key, line = make_key(tmp_path / "id")
    keys = write_authorized(tmp_path / "authorized_keys", line)
    auth = ServerAuth(authorized_keys=keys, **FAST)
    cert, cert_key, _ = auto_certificate()
    context, _ = load_certificate(cert, cert_key)

    async def main() -> tuple[bytes, ConnectionClosed]:
        async with await secure_serve(
            greet, "127.0.0.1:0", service="exec", auth=auth, ssl=context
        ) as server:
            address = parse_address(f"tls://{server.address.hostport()}")
            conn = await secure_connect(address, service="exec", identity=key, accept_new=True)
            reply = await conn.recv()
            await conn.close()
            # A proof made for a connection without this certificate (a relay that
            # terminates TLS itself) does not verify here.
            from wirekit.security.tlscert import client_context

            raw = await connect(address, ssl=client_context(), message_types=AUTH_MESSAGES)
            shake = ClientHandshake("exec", [key_credential(key)], secrets.token_bytes(32))
            request = shake.receive(await raw.recv())
            assert request is not None
            await raw.send_message(request)
            return bytes(reply), await expect_refusal(raw)  # type: ignore[arg-type]

    reply, relayed = arun(main())
    assert reply.startswith(b"key|")
    assert relayed.reason == (
        "authentication failed: the key's signature does not match this connection"
    )


def test_non_loopback_without_tls_refused_unless_insecure(arun: Any, tmp_path: Path) -> None:
    auth = ServerAuth(token=b"x" * 64)

    async def main(addr: str, **kwargs: Any) -> str:
        with pytest.raises(ListenError) as info:
            await secure_serve(greet, addr, service="exec", auth=auth, **kwargs)
        return str(info.value)

    text = arun(main("0.0.0.0:0"))
    assert text.startswith("refusing to serve exec on tcp://0.0.0.0:0 without TLS")
    assert "--tls auto" in text and "--insecure" in text
    assert "without TLS" in arun(main("[::]:0"))
    # With insecure=True the policy lets it through: this test address (TEST-NET-1,
    # never local) then fails only at bind time, so nothing listens beyond loopback.
    assert "without TLS" not in arun(main("192.0.2.1:0", insecure=True))
    for local in ("127.0.0.1:1", "127.8.9.10:1", "[::1]:1", "localhost:1", "unix:/x"):
        assert is_loopback(parse_address(local))
    for remote in ("0.0.0.0:1", "10.0.0.1:1", "example.org:1", "[::]:1"):
        assert not is_loopback(parse_address(remote))


def test_foreign_ssl_context_needs_the_certificate(arun: Any, tls: Any) -> None:
    auth = ServerAuth(token=b"x" * 64)

    async def main() -> None:
        context = tls.server_context()
        await secure_serve(greet, "127.0.0.1:0", service="exec", auth=auth, ssl=context)

    with pytest.raises(ListenError, match="channel binding"):
        arun(main())


def test_nothing_configured_cannot_serve(arun: Any) -> None:
    async def main() -> None:
        await secure_serve(greet, "127.0.0.1:0", service="exec", auth=ServerAuth())

    with pytest.raises(ListenError, match="no authentication configured"):
        arun(main())


def test_env_token_file(arun: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    token = make_token(tmp_path / "shared.token")
    monkeypatch.setenv("WIREKIT_TOKEN_FILE", str(token))
    auth, hint = ServerAuth.for_service(authorized_keys=None, token_file=None, service="exec")
    assert auth.token == token.read_text().strip().encode()
    assert hint is not None and str(token) in hint

    async def main() -> bytes:
        async with await secure_serve(greet, "127.0.0.1:0", service="exec", auth=auth) as s:
            conn = await secure_connect(s.address, service="exec")
            reply = await conn.recv()
            await conn.close()
            assert isinstance(reply, bytes)
            return reply

    assert arun(main()).startswith(b"token|")
    assert not (tmp_path / "config" / "exec.token").exists()
    assert os.environ["WIREKIT_TOKEN_FILE"] == str(token)


def test_security_doc_states_the_real_defaults() -> None:
    doc = (Path(__file__).resolve().parents[2] / "docs" / "security.md").read_text()
    auth, throttle = ServerAuth(), FailureThrottle()
    assert f"{auth.failure_delay:g} s for a first failure" in doc
    assert f"up to {auth.max_failure_delay:g} s" in doc
    assert f"at most {throttle.max_entries} addresses" in doc
    assert f"forgotten after {throttle.forget_after / 60:g} quiet" in doc
    assert f"until {PREAUTH_READ_HIGH_WATER // 1024} KiB of messages" in doc
    assert "## Remote exec" in doc


def test_for_service_with_given_files(tmp_path: Path) -> None:
    from wirekit.security import CredentialError

    _, line = make_key(tmp_path / "id")
    keys = write_authorized(tmp_path / "authorized_keys", line)
    auth, hint = ServerAuth.for_service(authorized_keys=keys, token_file=None, service="exec")
    assert (auth.authorized_keys, auth.token, hint) == (keys, None, None)
    new = tmp_path / "new.token"
    auth, hint = ServerAuth.for_service(authorized_keys=None, token_file=new, service="exec")
    assert hint == f"created token file {new} (0600); give clients a copy"
    assert auth.token == new.read_text().strip().encode() and len(auth.token) == 64
    assert new.stat().st_mode & 0o777 == 0o600
    assert ServerAuth.for_service(authorized_keys=None, token_file=new, service="x")[1] is None
    new.chmod(0o644)
    with pytest.raises(CredentialError, match="too open"):
        ServerAuth.for_service(authorized_keys=None, token_file=new, service="exec")
    with pytest.raises(CredentialError, match="no authorized_keys file"):
        ServerAuth.for_service(authorized_keys=tmp_path / "none", token_file=None, service="exec")


def test_key_removed_from_the_file_is_refused_next_time(arun: Any, tmp_path: Path) -> None:
    key, line = make_key(tmp_path / "id")
    _, other = make_key(tmp_path / "other", "someone@else")
    keys = write_authorized(tmp_path / "authorized_keys", line)
    auth = ServerAuth(authorized_keys=keys, **FAST)

    async def main() -> str:
        async with await secure_serve(greet, "127.0.0.1:0", service="exec", auth=auth) as s:
            conn = await secure_connect(s.address, service="exec", identity=key)
            await conn.close()
            write_authorized(keys, other)  # revoke: only the other key is left
            with pytest.raises(AuthenticationFailed) as info:
                await secure_connect(s.address, service="exec", identity=key)
        return str(info.value)

    assert arun(main()).endswith("is not authorized")


def test_parallel_attempts_from_a_failing_ip_are_not_evaluated(
    arun: Any, tmp_path: Path, until: Any
) -> None:
    """While an IP serves its penalty, a new attempt that cannot get a turn before
    its handshake deadline is refused without looking at its credentials."""
    good, bad = make_token(tmp_path / "good"), make_token(tmp_path / "bad")
    auth = ServerAuth(token=good.read_bytes(), failure_delay=1.0, max_failure_delay=1.0)
    limits = Limits(handshake_timeout=0.3)

    async def main() -> tuple[str, float]:
        server = await secure_serve(greet, "127.0.0.1:0", service="exec", auth=auth, limits=limits)
        async with server:
            first = asyncio.ensure_future(
                secure_connect(server.address, service="exec", token_file=bad)
            )
            await until(lambda: len(server.throttle) == 1, what="first failure recorded")
            start = time.monotonic()
            with pytest.raises(AuthenticationFailed) as info:
                await secure_connect(server.address, service="exec", token_file=good)
            elapsed = time.monotonic() - start
            first.cancel()
            await asyncio.gather(first, return_exceptions=True)
        return str(info.value), elapsed

    text, elapsed = arun(main())
    assert text == (
        "authentication failed: too many failed attempts from your address; try again later"
    )
    assert elapsed < 0.8  # refused at once, not after the 1 s penalty


# -- peer text in the log ------------------------------------------------------


class ForeignMessage(Message, frozen=True, tag="x\x1b[2J\nwirekit: exec: forged line"):
    """A message type the server does not know, whose tag a hostile peer chose."""

    n: int


def test_peer_and_key_text_in_the_auth_log_is_escaped(
    arun: Any, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """An unauthenticated peer's bytes (echoed by a schema error) and a key
    comment (in "bad signature for ...") reach the log escaped: no forged
    lines, no terminal escapes in an operator's log viewer (DESIGN §4)."""
    key, line = make_key(tmp_path / "id", comment="bob\x1b[31m@host")
    keys = write_authorized(tmp_path / "authorized_keys", line)
    auth = ServerAuth(authorized_keys=keys, **FAST)

    async def main() -> None:
        async with await secure_serve(greet, "127.0.0.1:0", service="exec", auth=auth) as s:
            conn = await connect(s.address, message_types=[*AUTH_MESSAGES, ForeignMessage])
            assert isinstance(await conn.recv(), AuthChallenge)
            await conn.send_message(ForeignMessage(1))
            await expect_refusal(conn)
            recorded = await replay_request(key_credential(key))(s.address)
            conn = await connect(s.address, message_types=AUTH_MESSAGES)
            await conn.recv()
            await conn.send_message(recorded)  # a valid key, a signature for another nonce
            await expect_refusal(conn)

    with caplog.at_level(logging.INFO, logger="wirekit.auth"):
        arun(main())
    messages = [r.getMessage() for r in caplog.records if r.name == "wirekit.auth"]
    schema = [m for m in messages if "failed before authenticating" in m]
    signature = [m for m in messages if "bad signature for" in m]
    assert schema and signature
    assert all(m.isprintable() for m in messages), messages
    assert "x\\x1b[2J\\nwirekit: exec: forged line" in schema[0]
    assert "bob\\x1b[31m@host" in signature[0]


# -- the throttle's unit of "one address" -----------------------------------------


def test_throttle_counts_an_ipv6_slash_64_as_one_address() -> None:
    """An IPv6 host picks any source address in its /64: counted per address, it
    would get a fresh, unthrottled attempt from each one, and 4096 of them flush
    every other entry out of the table. IPv4-mapped addresses are the IPv4 ones."""
    throttle = FailureThrottle(1.0, 8.0, max_entries=3)
    throttle.failed("2001:db8:1:2::1", 0.0)
    assert throttle.reserve("2001:db8:1:2:ffff:1:2:3", 0.0) == 1.0  # same /64: waits its turn
    assert throttle.reserve("2001:db8:1:3::1", 0.0) == 0.0  # another /64: a clean address
    throttle.failed("10.0.0.1", 0.0)
    assert throttle.reserve("::ffff:10.0.0.1", 0.0) == 1.0
    for i in range(10):  # rotating addresses inside one /64 cannot flush the table
        throttle.failed(f"2001:db8:1:2::{i + 2:x}", 0.0)
    assert len(throttle) == 2
    assert throttle.reserve("10.0.0.1", 0.0) == 2.0  # its entry survived
    assert throttle.reserve("fe80::1%eth0", 0.0) == 0.0  # zone ids and junk do not raise
    assert throttle.reserve("unix", 0.0) == 0.0


# -- memory before authentication ----------------------------------------------

PREAUTH_SERVER = """
import asyncio, logging, sys
from wirekit import Limits
from wirekit.aio.secure import ServerAuth, secure_serve
logging.disable(logging.CRITICAL)
async def service(conn, peer): pass
async def main():
    auth = ServerAuth(token=b"ab" * 32, failure_delay=1.0, max_failure_delay=1.0)
    limits = Limits(handshake_timeout=30.0)
    server = secure_serve(service, "127.0.0.1:0", service="exec", auth=auth, limits=limits)
    async with await server as s:
        print(s.address.port, flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
asyncio.run(main())
"""


def _statm_rss(pid: int) -> int:
    with open(f"/proc/{pid}/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def test_unauthenticated_connections_hold_little_memory(arun: Any, until: Any) -> None:
    """Before it has authenticated, a peer is read only until a small pre-auth
    budget is queued, not up to read_high_water (4 MiB). Here every connection
    but the first waits its turn behind a failed attempt (the throttle), and
    would otherwise fill 4 MiB meanwhile, without any credential. The server
    runs in its own process so that its memory is measured alone."""
    import subprocess
    import sys

    from wirekit.proto import FrameConnection, Role

    if not os.path.exists("/proc/self/statm"):
        pytest.skip("needs /proc")
    frames = FrameConnection(Role.CLIENT)
    frames.send_data(b"not a request")
    opening = frames.data_to_send()  # hello + a first message, refused
    frames.send_data(os.urandom(256 * 1024))
    filler = frames.data_to_send()  # sent while the refusal waits
    count = 12
    proc = subprocess.Popen(
        [sys.executable, "-c", PREAUTH_SERVER], stdin=subprocess.PIPE, stdout=subprocess.PIPE
    )
    try:
        assert proc.stdout is not None
        port = int(proc.stdout.readline())

        async def flood(sent: list[int]) -> None:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(opening)
            for _ in range(24):  # 6 MiB, more than read_high_water
                writer.write(filler)
                await writer.drain()  # blocks for good once the server stops reading
                sent[0] += len(filler)

        async def main() -> int:
            base = _statm_rss(proc.pid)
            sent = [0]
            tasks = [asyncio.ensure_future(flood(sent)) for _ in range(count)]
            samples = [0]

            def settled() -> bool:  # nothing more accepted over the last 0.25 s
                samples.append(sent[0])
                return len(samples) > 50 and samples[-50] == sent[0] > 0

            await until(settled, timeout=4.0, what="the flood stalled")
            grown = _statm_rss(proc.pid) - base
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            return grown

        grown = arun(main())
    finally:
        proc.kill()
        proc.wait()
    per_connection = grown / count
    assert per_connection < 1024 * 1024, f"{per_connection / 2**20:.2f} MiB a connection"


@pytest.mark.parametrize(
    ("size", "refused_for"),
    [
        (PREAUTH_MAX_FRAME, "authentication required first, got 4096 bytes of data"),
        (PREAUTH_MAX_FRAME + 1, "frame of 4097 bytes exceeds limit of 4096 bytes"),
    ],
)
def test_frames_before_authentication_are_small(
    arun: Any, tmp_path: Path, size: int, refused_for: str
) -> None:
    """Before login a frame head may announce at most 4 KiB: a peer cannot make
    the server hold a max_frame_size buffer by sending all but the last byte."""
    token = make_token(tmp_path / "tok")
    auth = ServerAuth(token=token.read_text().strip().encode(), **FAST)

    async def main() -> ConnectionClosed:
        server = await secure_serve(greet, "127.0.0.1:0", service="exec", auth=auth)
        async with server:
            conn = await connect(server.address, message_types=AUTH_MESSAGES)
            assert isinstance(await conn.recv(), AuthChallenge)
            await conn.send(b"x" * size)
            return await expect_refusal(conn)

    error = arun(main())
    assert error.reason == refused_for


def test_after_authentication_frames_may_be_max_frame_size(arun: Any, tmp_path: Path) -> None:
    token = make_token(tmp_path / "tok")
    auth = ServerAuth(token=token.read_text().strip().encode(), **FAST)

    async def main() -> bytes:
        server = await secure_serve(greet, "127.0.0.1:0", service="exec", auth=auth)
        async with server:
            conn = await secure_connect(server.address, service="exec", token_file=token)
            await conn.recv()  # the greeting
            await conn.send(b"y" * DEFAULT_LIMITS.max_frame_size)
            echoed = await conn.recv()
            await conn.close()
            assert isinstance(echoed, bytes)
            return echoed

    assert arun(main()) == b"y" * DEFAULT_LIMITS.max_frame_size
