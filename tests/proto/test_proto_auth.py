"""The authentication handshake without sockets (wirekit.proto.auth, protocol.md §9):
golden transcripts checked against the document, the state machines driven back
to back, every refusal, schema limits at and past the limit, and hypothesis."""

from __future__ import annotations

import hashlib
import re
from functools import partial
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given, settings
from hypothesis import strategies as st

from wirekit.errors import (
    AuthenticationFailed,
    ErrorCode,
    LocalProtocolError,
    RemoteProtocolError,
)
from wirekit.proto import FrameConnection, MessageCodec, MessageReceived, Role
from wirekit.proto.auth import (
    AUTH_MESSAGES,
    Accepted,
    AuthAccept,
    AuthChallenge,
    AuthRequest,
    AuthState,
    ClientHandshake,
    KeyCredential,
    Refused,
    ServerHandshake,
    TokenCredential,
    encode_transcript,
    key_fingerprint,
    transcript,
)
from wirekit.proto.frames import encode_hello
from wirekit.proto.messages import Ping
from wirekit.security.keys import fingerprint, sign, verify
from wirekit.security.token import token_proof

PROTOCOL_MD = Path(__file__).resolve().parents[2] / "docs" / "protocol.md"
_BLOCK = re.compile(r"^```auth-hex ([a-z0-9-]+)\n(.*?)^```$", re.MULTILINE | re.DOTALL)

# The fixed inputs of the §9.6 vectors.
SERVER_NONCE = bytes(range(32))
CLIENT_NONCE = bytes(range(32, 64))
KEY = Ed25519PrivateKey.from_private_bytes(bytes([0x42]) * 32)
PUBLIC = KEY.public_key().public_bytes_raw()
TOKEN = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
BINDING = hashlib.sha256(b"certificate").digest()


class Verifier:
    """A verifier over one key and one token, as FileVerifier is over files."""

    def __init__(self, keys: tuple[bytes, ...] = (PUBLIC,), token: str | None = TOKEN) -> None:
        self.keys = keys
        self.token = token
        self.methods = tuple(m for m, on in (("key", keys), ("token", token)) if on)

    def find_key(self, public_key: bytes) -> str | None:
        return f"key {key_fingerprint(public_key)} test" if public_key in self.keys else None

    def verify(self, public_key: bytes, signature: bytes, message: bytes) -> bool:
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

        return verify(Ed25519PublicKey.from_public_bytes(public_key), signature, message)

    def token_mac(self, *items: bytes) -> bytes:
        assert self.token is not None
        return token_proof(self.token, *items)


def key_credential(key: Ed25519PrivateKey = KEY) -> KeyCredential:
    return KeyCredential(key.public_key().public_bytes_raw(), partial(sign, key))


def token_credential(token: str = TOKEN) -> TokenCredential:
    return TokenCredential(partial(token_proof, token))


def frame(message: AuthChallenge | AuthRequest | AuthAccept) -> bytes:
    """The MESSAGE frame carrying ``message`` on channel 0, as a connection sends it."""
    conn = FrameConnection(Role.CLIENT)
    conn.data_to_send()
    conn.receive_data(encode_hello(1 << 20, role=Role.SERVER))
    conn.send_message(message)
    return conn.data_to_send()


def run(
    credentials: list[KeyCredential | TokenCredential],
    verifier: Verifier | None = None,
    *,
    service: str = "exec",
    client_binding: bytes = b"",
    server_binding: bytes = b"",
) -> tuple[ClientHandshake, Accepted | Refused]:
    """Drive both state machines back to back, through the real message codec."""
    codec = MessageCodec(AUTH_MESSAGES)
    server = ServerHandshake("exec", verifier or Verifier(), SERVER_NONCE, server_binding)
    client = ClientHandshake(service, credentials, CLIENT_NONCE, client_binding)
    request = client.receive(codec.decode(codec.encode(server.challenge())))
    assert request is not None
    decision = server.receive(codec.decode(codec.encode(request)))
    if isinstance(decision, Accepted):
        assert client.receive(codec.decode(codec.encode(decision.reply))) is None
    return client, decision


# -- golden vectors ---------------------------------------------------------------


def vector_challenge() -> bytes:
    return frame(AuthChallenge(1, "exec", ["key", "token"], SERVER_NONCE))


def _items(role: str, method: str, public_key: bytes, binding: bytes) -> tuple[bytes, ...]:
    return transcript(
        role,
        service="exec",
        method=method,
        public_key=public_key,
        server_nonce=SERVER_NONCE,
        client_nonce=CLIENT_NONCE,
        channel_binding=binding,
    )


def vector_key_transcript() -> bytes:
    return encode_transcript(_items("client", "key", PUBLIC, b""))


def vector_key_request() -> bytes:
    signature = sign(KEY, vector_key_transcript())
    return frame(AuthRequest("exec", "key", CLIENT_NONCE, PUBLIC, signature))


def vector_token_client_proof() -> bytes:
    return token_proof(TOKEN, *_items("client", "token", b"", BINDING))


def vector_token_server_proof() -> bytes:
    return token_proof(TOKEN, *_items("server", "token", b"", BINDING))


def vector_token_accept() -> bytes:
    return frame(AuthAccept(vector_token_server_proof()))


BUILDERS = {
    "auth-challenge": vector_challenge,
    "auth-key-transcript": vector_key_transcript,
    "auth-key-request": vector_key_request,
    "auth-token-client-proof": vector_token_client_proof,
    "auth-token-server-proof": vector_token_server_proof,
    "auth-token-accept": vector_token_accept,
}


def doc_vectors() -> dict[str, bytes]:
    text = PROTOCOL_MD.read_text(encoding="utf-8")
    found: dict[str, bytes] = {}
    for name, body in _BLOCK.findall(text):
        assert name not in found, f"vector {name} appears twice"
        found[name] = bytes.fromhex("".join(body.split()))
    return found


def test_every_vector_is_documented_and_nothing_else() -> None:
    assert sorted(doc_vectors()) == sorted(BUILDERS)


@pytest.mark.parametrize("name", sorted(BUILDERS))
def test_vector_matches_the_document(name: str) -> None:
    assert BUILDERS[name]().hex() == doc_vectors()[name].hex()


def test_documented_key_fingerprint_matches_ssh_keygen_style() -> None:
    text = PROTOCOL_MD.read_text(encoding="utf-8")
    assert key_fingerprint(PUBLIC) == fingerprint(KEY.public_key())
    assert f"`{key_fingerprint(PUBLIC)}`" in text


def test_golden_key_request_is_what_the_client_machine_sends() -> None:
    client = ClientHandshake("exec", [key_credential()], CLIENT_NONCE)
    request = client.receive(AuthChallenge(1, "exec", ["key", "token"], SERVER_NONCE))
    assert request is not None and frame(request) == vector_key_request()
    assert client.state is AuthState.REQUESTED


# -- the state machines back to back ------------------------------------------------


def test_key_accepted() -> None:
    client, decision = run([key_credential()])
    assert isinstance(decision, Accepted)
    assert decision.method == "key" and decision.principal.startswith("key SHA256:")
    assert client.state is AuthState.DONE and client.method == "key"


def test_token_accepted_and_server_proved_it() -> None:
    client, decision = run([token_credential()], client_binding=BINDING, server_binding=BINDING)
    assert isinstance(decision, Accepted) and decision.principal == "token"
    assert decision.reply.proof == vector_token_server_proof()
    assert client.state is AuthState.DONE


def test_first_offered_credential_wins() -> None:
    _, decision = run([token_credential(), key_credential()], Verifier(token=None))
    assert isinstance(decision, Accepted) and decision.method == "key"


@pytest.mark.parametrize(
    ("credential", "verifier", "reason"),
    [
        (token_credential("f" * 64), Verifier(), "authentication failed: token refused"),
        (
            key_credential(Ed25519PrivateKey.generate()),
            Verifier(),
            r"authentication failed: key SHA256:\S+ is not authorized",
        ),
    ],
)
def test_wrong_credentials_refused(
    credential: KeyCredential | TokenCredential, verifier: Verifier, reason: str
) -> None:
    _, decision = run([credential], verifier)
    assert isinstance(decision, Refused)
    assert re.fullmatch(reason, decision.reason)
    assert decision.code == ErrorCode.AUTH_FAILED


@pytest.mark.parametrize("method", ["key", "token"])
def test_channel_binding_mismatch_refused(method: str) -> None:
    """A relay that shows the client another certificate cannot pass the proof on."""
    credential = key_credential() if method == "key" else token_credential()
    other = hashlib.sha256(b"the relay's certificate").digest()
    _, decision = run([credential], client_binding=other, server_binding=BINDING)
    assert isinstance(decision, Refused)


def test_proof_for_another_service_or_nonce_refused() -> None:
    server = ServerHandshake("exec", Verifier(), SERVER_NONCE)
    client = ClientHandshake("exec", [key_credential()], CLIENT_NONCE)
    request = client.receive(AuthChallenge(1, "exec", ["key"], bytes(32)))  # other nonce
    assert request is not None
    decision = server.receive(request)
    assert isinstance(decision, Refused)
    assert decision.reason.endswith("signature does not match this connection")
    files = ServerHandshake("files", Verifier(), SERVER_NONCE)
    decision = files.receive(AuthRequest("exec", "key", CLIENT_NONCE, PUBLIC, bytes(64)))
    assert isinstance(decision, Refused) and "offers 'files', not 'exec'" in decision.reason


@pytest.mark.parametrize(
    ("message", "reason"),
    [
        (Ping(1), "authentication required first, got a 'ping' message"),
        (b"ls -l", "authentication required first, got 5 bytes of data"),
        (
            AuthRequest("exec", "password", CLIENT_NONCE, b"", b""),
            "authentication failed: method 'password' is not accepted here (accepted: key, token)",
        ),
        (
            AuthRequest("exec", "key", CLIENT_NONCE, PUBLIC[:31], bytes(64)),
            "authentication failed: malformed key proof",
        ),
        (
            AuthRequest("exec", "token", CLIENT_NONCE, PUBLIC, bytes(32)),
            "authentication failed: token refused",
        ),
    ],
)
def test_server_refuses_anything_but_a_valid_request(message: object, reason: str) -> None:
    server = ServerHandshake("exec", Verifier(), SERVER_NONCE)
    decision = server.receive(message)
    assert isinstance(decision, Refused) and decision.reason == reason
    assert server.state is AuthState.FAILED
    with pytest.raises(LocalProtocolError):
        server.receive(message)


def test_client_refuses_a_server_that_did_not_prove_the_token() -> None:
    client = ClientHandshake("exec", [token_credential()], CLIENT_NONCE)
    client.receive(AuthChallenge(1, "exec", ["token"], SERVER_NONCE))
    with pytest.raises(AuthenticationFailed, match="did not prove it knows the token"):
        client.receive(AuthAccept(bytes(32)))
    assert client.state is AuthState.FAILED
    with pytest.raises(LocalProtocolError):
        client.receive(AuthAccept(bytes(32)))


@pytest.mark.parametrize(
    ("challenge", "error", "text"),
    [
        (b"hello", RemoteProtocolError, "expected an authentication challenge"),
        (AuthChallenge(2, "exec", ["key"], SERVER_NONCE), RemoteProtocolError, "version 2"),
        (AuthChallenge(1, "files", ["key"], SERVER_NONCE), AuthenticationFailed, "'files'"),
        (AuthChallenge(1, "exec", ["password"], SERVER_NONCE), AuthenticationFailed, "accepts"),
    ],
)
def test_client_refuses_bad_challenges(challenge: object, error: type, text: str) -> None:
    client = ClientHandshake("exec", [token_credential()], CLIENT_NONCE)
    with pytest.raises(error, match=text):
        client.receive(challenge)


def test_method_names_from_the_server_are_escaped_in_the_error() -> None:
    """A hostile server's method names reach the user's terminal through the
    error line: control characters must arrive escaped (DESIGN §4)."""
    client = ClientHandshake("exec", [token_credential()], CLIENT_NONCE)
    with pytest.raises(AuthenticationFailed) as info:
        client.receive(AuthChallenge(1, "exec", ["\x1b]0;pwned\x07", "x\ny"], SERVER_NONCE))
    text = str(info.value)
    assert text.isprintable()
    assert "\\x1b]0;pwned\\x07, x\\ny" in text


def test_client_refuses_a_proof_with_key_auth() -> None:
    client = ClientHandshake("exec", [key_credential()], CLIENT_NONCE)
    client.receive(AuthChallenge(1, "exec", ["key"], SERVER_NONCE))
    with pytest.raises(RemoteProtocolError):
        client.receive(AuthAccept(bytes(32)))


def test_nonces_must_be_32_bytes() -> None:
    with pytest.raises(LocalProtocolError):
        ServerHandshake("exec", Verifier(), bytes(31))
    with pytest.raises(LocalProtocolError):
        ClientHandshake("exec", [], bytes(33))


# -- schema limits: at the limit and one past it --------------------------------------


def _encode(fields: dict[str, object]) -> bytes:
    import msgspec

    return msgspec.msgpack.encode(fields)


@pytest.mark.parametrize(
    ("field", "ok", "too_big"),
    [
        ("nonce", bytes(32), bytes(33)),
        ("public_key", bytes(32), bytes(33)),
        ("proof", bytes(64), bytes(65)),
        ("service", "s" * 32, "s" * 33),
        ("method", "m" * 16, "m" * 17),
    ],
)
def test_request_field_limits(field: str, ok: object, too_big: object) -> None:
    codec = MessageCodec(AUTH_MESSAGES)
    base: dict[str, object] = {
        "type": "auth-request",
        "service": "exec",
        "method": "key",
        "nonce": bytes(32),
        "public_key": b"",
        "proof": b"",
    }
    assert isinstance(codec.decode(_encode({**base, field: ok})), AuthRequest)
    with pytest.raises(RemoteProtocolError) as info:
        codec.decode(_encode({**base, field: too_big}))
    assert info.value.code == ErrorCode.SCHEMA_MISMATCH


def test_short_nonce_and_too_many_methods_refused() -> None:
    codec = MessageCodec(AUTH_MESSAGES)
    base = {"type": "auth-challenge", "version": 1, "service": "exec", "nonce": bytes(32)}
    assert isinstance(codec.decode(_encode({**base, "methods": ["k"] * 8})), AuthChallenge)
    for bad in ({"methods": ["k"] * 9}, {"methods": [], "nonce": bytes(31)}):
        with pytest.raises(RemoteProtocolError):
            codec.decode(_encode({**base, **bad}))


def test_auth_messages_flow_through_a_frame_connection() -> None:
    server = FrameConnection(Role.SERVER, codec=MessageCodec(AUTH_MESSAGES))
    server.receive_data(encode_hello(1 << 20))
    server.data_to_send()
    events = server.receive_data(vector_key_request())
    assert len(events) == 1 and isinstance(events[0], MessageReceived)
    decision = ServerHandshake("exec", Verifier(), SERVER_NONCE).receive(events[0].message)
    assert isinstance(decision, Accepted)


# -- hypothesis -----------------------------------------------------------------------

nonces = st.binary(min_size=32, max_size=32)


@settings(max_examples=60, deadline=None)
@given(server_nonce=nonces, client_nonce=nonces, binding=st.sampled_from([b"", BINDING]))
def test_any_nonces_authenticate_both_methods(
    server_nonce: bytes, client_nonce: bytes, binding: bytes
) -> None:
    for credential in (key_credential(), token_credential()):
        server = ServerHandshake("exec", Verifier(), server_nonce, binding)
        client = ClientHandshake("exec", [credential], client_nonce, binding)
        request = client.receive(server.challenge())
        decision = server.receive(request)
        assert isinstance(decision, Accepted)
        client.receive(decision.reply)
        assert client.state is AuthState.DONE


@settings(max_examples=100, deadline=None)
@given(
    index=st.integers(min_value=0, max_value=4),
    flip=st.integers(min_value=0, max_value=255),
    method=st.sampled_from(["key", "token"]),
)
def test_any_changed_request_field_is_refused(index: int, flip: int, method: str) -> None:
    """Tampering with any bound field of a valid request makes it fail."""
    credential = key_credential() if method == "key" else token_credential()
    server = ServerHandshake("exec", Verifier(), SERVER_NONCE)
    client = ClientHandshake("exec", [credential], CLIENT_NONCE)
    request = client.receive(server.challenge())
    assert request is not None
    nonce, proof = bytearray(request.nonce), bytearray(request.proof)
    public_key = bytearray(request.public_key)
    targets = [nonce, proof, public_key or proof, nonce, proof]
    target = targets[index]
    target[flip % len(target)] ^= 1 + flip % 255
    tampered = AuthRequest("exec", method, bytes(nonce), bytes(public_key), bytes(proof))
    assert isinstance(server.receive(tampered), Refused)


@settings(max_examples=200, deadline=None)
@given(payload=st.binary(max_size=200))
def test_arbitrary_message_bytes_never_raise_out_of_the_decoder(payload: bytes) -> None:
    codec = MessageCodec(AUTH_MESSAGES)
    try:
        message = codec.decode(payload)
    except RemoteProtocolError:
        return
    decision = ServerHandshake("exec", Verifier(), SERVER_NONCE).receive(message)
    assert isinstance(decision, Accepted | Refused)
