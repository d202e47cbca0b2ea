"""Sans-I/O authentication handshake of the secure services (docs/protocol.md §9).

Right after the hello, before any service message::

    server -> client   AuthChallenge(version, service, methods, nonce)
    client -> server   AuthRequest(service, method, nonce, public_key, proof)
    server -> client   AuthAccept(proof)        or ERROR AUTH_FAILED "authentication failed: ..."

Both proofs cover a *transcript* (:func:`transcript`): a label, the role of
the prover, the frame protocol version, the service, the method, the public
key, both 32-byte nonces and, over TLS, the SHA-256 of the server's
certificate (channel binding). A proof therefore holds for one connection,
one service and one direction only: it cannot be replayed on another
connection (new server nonce), sent to another service, or relayed by a
man in the middle who shows the client a different certificate.

- key: the client signs the transcript with its Ed25519 key
  (:func:`wirekit.security.keys.sign` adds the ``wirekit-sig-v1`` prefix, so
  the signature is useless as an SSH login);
- token: the client sends HMAC(token, client transcript); the server answers
  with HMAC(token, server transcript), which the client checks before it
  sends anything else, so a fake server learns nothing it can use and gets
  no request.

The crypto is injected (:class:`KeyCredential`, :class:`TokenCredential`,
:class:`Verifier`), so this module does no I/O, reads no clock and no file.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import Enum
from typing import Annotated, Protocol

import msgspec

from ..errors import AuthenticationFailed, ErrorCode, LocalProtocolError, RemoteProtocolError
from ..neterrors import printable
from .frames import VERSION
from .messages import Message

__all__ = [
    "AUTH_LABEL",
    "AUTH_MESSAGES",
    "AUTH_VERSION",
    "NONCE_SIZE",
    "Accepted",
    "AuthAccept",
    "AuthChallenge",
    "AuthRequest",
    "AuthState",
    "ClientHandshake",
    "Credential",
    "KeyCredential",
    "Refused",
    "ServerHandshake",
    "TokenCredential",
    "Verifier",
    "encode_transcript",
    "key_fingerprint",
    "transcript",
]

#: Version of this handshake, carried in the challenge (§9.2).
AUTH_VERSION = 1
#: First item of every transcript: domain separation from any other use of the key or token.
AUTH_LABEL = b"wirekit-auth-v1"
#: Bytes in each side's nonce.
NONCE_SIZE = 32
KEY_SIZE = 32  # raw Ed25519 public key
SIGNATURE_SIZE = 64  # Ed25519
MAC_SIZE = 32  # HMAC-SHA256

Nonce = Annotated[bytes, msgspec.Meta(min_length=NONCE_SIZE, max_length=NONCE_SIZE)]
ServiceName = Annotated[str, msgspec.Meta(max_length=32, pattern="^[a-z][a-z0-9-]*$")]
MethodName = Annotated[str, msgspec.Meta(max_length=16)]


class AuthChallenge(Message, frozen=True, tag="auth-challenge"):
    """Server to client, first message after the hello (§9.2)."""

    version: int
    service: ServiceName
    methods: Annotated[list[MethodName], msgspec.Meta(max_length=8)]
    nonce: Nonce


class AuthRequest(Message, frozen=True, tag="auth-request"):
    """Client to server: the chosen method and its proof (§9.3)."""

    service: ServiceName
    method: MethodName
    nonce: Nonce
    public_key: Annotated[bytes, msgspec.Meta(max_length=KEY_SIZE)]
    proof: Annotated[bytes, msgspec.Meta(max_length=SIGNATURE_SIZE)]


class AuthAccept(Message, frozen=True, tag="auth-accept"):
    """Server to client: authenticated; for a token, the server's own proof (§9.4)."""

    proof: Annotated[bytes, msgspec.Meta(max_length=MAC_SIZE)]


#: The message types a secure connection must decode besides the service's own.
AUTH_MESSAGES: tuple[type[Message], ...] = (AuthChallenge, AuthRequest, AuthAccept)


def transcript(
    role: str,
    *,
    service: str,
    method: str,
    public_key: bytes,
    server_nonce: bytes,
    client_nonce: bytes,
    channel_binding: bytes,
) -> tuple[bytes, ...]:
    """The items a proof covers, in order (§9.1); ``role`` is ``"client"`` or ``"server"``."""
    return (
        AUTH_LABEL,
        role.encode("ascii"),
        str(VERSION).encode("ascii"),
        service.encode("utf-8"),
        method.encode("utf-8"),
        public_key,
        server_nonce,
        client_nonce,
        channel_binding,
    )


def encode_transcript(items: Sequence[bytes]) -> bytes:
    """Each item preceded by its length as 8 bytes big-endian (prefix-free, as token_proof)."""
    return b"".join(struct.pack(">Q", len(item)) + item for item in items)


def key_fingerprint(public_key: bytes) -> str:
    """``SHA256:...`` of a raw Ed25519 key, as ``ssh-keygen -l`` prints it."""
    blob = b"".join(struct.pack(">I", len(x)) + x for x in (b"ssh-ed25519", public_key))
    return "SHA256:" + base64.b64encode(hashlib.sha256(blob).digest()).decode().rstrip("=")


@dataclass(frozen=True, slots=True)
class KeyCredential:
    """A client key: its raw public key and a function that signs with it (prefix added)."""

    public_key: bytes
    sign: Callable[[bytes], bytes]
    method = "key"


@dataclass(frozen=True, slots=True)
class TokenCredential:
    """A client token: ``mac(*items)`` is HMAC-SHA256 keyed by it (``token_proof``)."""

    mac: Callable[..., bytes]
    method = "token"


Credential = KeyCredential | TokenCredential


class Verifier(Protocol):
    """What a server accepts; implemented over files in :mod:`wirekit.security.credentials`."""

    @property
    def methods(self) -> tuple[str, ...]: ...

    def find_key(self, public_key: bytes) -> str | None:
        """A description of the authorized key (``"key SHA256:... comment"``), or None."""

    def verify(self, public_key: bytes, signature: bytes, message: bytes) -> bool:
        """True if ``signature`` is the wirekit signature of ``message`` by ``public_key``."""

    def token_mac(self, *items: bytes) -> bytes:
        """HMAC-SHA256 of ``items`` keyed by the server's token."""


class AuthState(Enum):
    CHALLENGED = "challenged"  # server: challenge out, waiting for the request
    REQUESTED = "requested"  # client: request out, waiting for the answer
    WAITING = "waiting"  # client: waiting for the challenge
    DONE = "done"
    FAILED = "failed"


@dataclass(frozen=True, slots=True)
class Accepted:
    """The server's decision: let the client in; send ``reply``."""

    method: str
    principal: str
    reply: AuthAccept


@dataclass(frozen=True, slots=True)
class Refused:
    """The server's decision: send ERROR ``code`` with ``reason``, and log ``detail``."""

    reason: str
    detail: str
    code: ErrorCode = ErrorCode.AUTH_FAILED


class ServerHandshake:
    """The server side: :meth:`challenge`, then :meth:`receive` of the client's first message."""

    def __init__(
        self, service: str, verifier: Verifier, nonce: bytes, channel_binding: bytes = b""
    ) -> None:
        if len(nonce) != NONCE_SIZE:
            raise LocalProtocolError(f"server nonce must be {NONCE_SIZE} bytes")
        self.service = service
        self.verifier = verifier
        self.nonce = nonce
        self.channel_binding = channel_binding
        self.state = AuthState.CHALLENGED

    def challenge(self) -> AuthChallenge:
        methods = list(self.verifier.methods)
        return AuthChallenge(AUTH_VERSION, self.service, methods, self.nonce)

    def receive(self, message: object) -> Accepted | Refused:
        """Decide on the client's first message (anything other than a request is refused)."""
        if self.state is not AuthState.CHALLENGED:
            raise LocalProtocolError("the authentication is already decided")
        decision = self._decide(message)
        self.state = AuthState.DONE if isinstance(decision, Accepted) else AuthState.FAILED
        return decision

    def _decide(self, message: object) -> Accepted | Refused:
        if not isinstance(message, AuthRequest):
            what = _describe(message)
            return Refused(
                f"authentication required first, got {what}", f"{what} before authenticating"
            )
        if message.service != self.service:
            why = f"this server offers {self.service!r}, not {message.service!r}"
            return Refused(f"authentication failed: {why}", why)
        if message.method not in self.verifier.methods:
            accepted = ", ".join(self.verifier.methods)
            why = f"method {message.method!r} is not accepted here (accepted: {accepted})"
            return Refused(f"authentication failed: {why}", why)
        if message.method == "key":
            return self._check_key(message)
        return self._check_token(message)

    def _items(self, role: str, request: AuthRequest) -> tuple[bytes, ...]:
        return transcript(
            role,
            service=self.service,
            method=request.method,
            public_key=request.public_key,
            server_nonce=self.nonce,
            client_nonce=request.nonce,
            channel_binding=self.channel_binding,
        )

    def _check_key(self, request: AuthRequest) -> Accepted | Refused:
        if len(request.public_key) != KEY_SIZE or len(request.proof) != SIGNATURE_SIZE:
            return Refused("authentication failed: malformed key proof", "malformed key proof")
        fingerprint = key_fingerprint(request.public_key)
        principal = self.verifier.find_key(request.public_key)
        if principal is None:
            why = f"key {fingerprint} is not authorized"
            return Refused(f"authentication failed: {why}", f"unknown key {fingerprint}")
        message = encode_transcript(self._items("client", request))
        if not self.verifier.verify(request.public_key, request.proof, message):
            return Refused(
                "authentication failed: the key's signature does not match this connection",
                f"bad signature for {principal} (replayed or relayed?)",
            )
        return Accepted("key", principal, AuthAccept(b""))

    def _check_token(self, request: AuthRequest) -> Accepted | Refused:
        expected = self.verifier.token_mac(*self._items("client", request))
        if request.public_key or not hmac.compare_digest(expected, request.proof):
            return Refused("authentication failed: token refused", "wrong token proof")
        proof = self.verifier.token_mac(*self._items("server", request))
        return Accepted("token", "token", AuthAccept(proof))


class ClientHandshake:
    """The client side: :meth:`receive` the challenge (returns the request), then the answer."""

    def __init__(
        self,
        service: str,
        credentials: Sequence[Credential],
        nonce: bytes,
        channel_binding: bytes = b"",
    ) -> None:
        if len(nonce) != NONCE_SIZE:
            raise LocalProtocolError(f"client nonce must be {NONCE_SIZE} bytes")
        self.service = service
        self.credentials = tuple(credentials)
        self.nonce = nonce
        self.channel_binding = channel_binding
        self.state = AuthState.WAITING
        self.method = ""
        self._server_items: tuple[bytes, ...] = ()
        self._credential: Credential | None = None

    def receive(self, message: object) -> AuthRequest | None:
        """Feed the server's next message; the request to send, or None once accepted.

        Raises :class:`AuthenticationFailed` (refused, or the server is not the
        one we want) or :class:`RemoteProtocolError` (not speaking this handshake).
        """
        try:
            if self.state is AuthState.WAITING:
                request = self._challenge(message)
                self.state = AuthState.REQUESTED
                return request
            if self.state is AuthState.REQUESTED:
                self._accept(message)
                self.state = AuthState.DONE
                return None
        except (AuthenticationFailed, RemoteProtocolError):
            self.state = AuthState.FAILED
            raise
        raise LocalProtocolError(f"the authentication is {self.state.value}")

    def _challenge(self, message: object) -> AuthRequest:
        if not isinstance(message, AuthChallenge):
            raise RemoteProtocolError(
                f"expected an authentication challenge, got {_describe(message)}"
            )
        if message.version != AUTH_VERSION:
            raise RemoteProtocolError(
                f"authentication version {message.version} is not supported "
                f"(this side speaks {AUTH_VERSION})",
                ErrorCode.BAD_VERSION,
            )
        if message.service != self.service:
            raise AuthenticationFailed(
                f"authentication failed: the server offers {message.service!r}, "
                f"not {self.service!r}"
            )
        credential = next((c for c in self.credentials if c.method in message.methods), None)
        if credential is None:
            have = ", ".join(c.method for c in self.credentials) or "none"
            # The names are the server's text and end up on the user's terminal (DESIGN §4).
            offered = printable(", ".join(message.methods)) or "nothing"
            raise AuthenticationFailed(
                f"authentication failed: the server accepts {offered}; this client has: {have}"
            )
        self._credential = credential
        self.method = credential.method
        public_key = credential.public_key if isinstance(credential, KeyCredential) else b""
        items = {
            "service": self.service,
            "method": credential.method,
            "public_key": public_key,
            "server_nonce": message.nonce,
            "client_nonce": self.nonce,
            "channel_binding": self.channel_binding,
        }
        client_items = transcript("client", **items)  # type: ignore[arg-type]
        self._server_items = transcript("server", **items)  # type: ignore[arg-type]
        if isinstance(credential, KeyCredential):
            proof = credential.sign(encode_transcript(client_items))
        else:
            proof = credential.mac(*client_items)
        return AuthRequest(self.service, credential.method, self.nonce, public_key, proof)

    def _accept(self, message: object) -> None:
        if not isinstance(message, AuthAccept):
            raise RemoteProtocolError(
                f"expected the authentication result, got {_describe(message)}"
            )
        credential = self._credential
        if isinstance(credential, TokenCredential):
            expected = credential.mac(*self._server_items)
            if not hmac.compare_digest(expected, message.proof):
                # Mutual: a server that does not know the token gets no request (§9.4).
                raise AuthenticationFailed(
                    "authentication failed: the server did not prove it knows the token "
                    "(a different token, "
                    "or not the server you meant); nothing was sent"
                )
        elif message.proof:
            raise RemoteProtocolError("key authentication accepted with a proof attached")


def _describe(message: object) -> str:
    if isinstance(message, Message):
        return f"a {message.__struct_config__.tag!r} message"
    if isinstance(message, bytes | bytearray | memoryview):
        return f"{len(message)} bytes of data"
    return f"a {type(message).__name__} event"
