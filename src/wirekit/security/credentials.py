"""Credentials as the authentication handshake uses them (docs/protocol.md §9).

The handshake in :mod:`wirekit.proto.auth` does no I/O; this module gives it
what it needs from files, for both ends and for the asyncio and blocking
clients alike:

- :class:`FileVerifier`: the server's side: an ``authorized_keys`` file,
  re-read when it changes (a key removed from the file is refused on the
  next connection, as sshd does), and a token;
- :func:`client_credentials`: the client's key and/or token, found as the
  docs say (given file, ``$WIREKIT_TOKEN_FILE``, the local service token,
  ``~/.ssh/id_ed25519``, wirekit's own key);
- :func:`check_pin`: trust on first use of the server's TLS certificate.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import (
    AuthenticationFailed,
    ConnectError,
    ConnectionClosed,
    ErrorCode,
    RemoteProtocolError,
)
from ..neterrors import printable
from ..proto.auth import Credential, KeyCredential, TokenCredential, key_fingerprint
from .keys import default_key_path, load_private_key, sign, verify
from .known_hosts import ChangedFingerprint, HostStatus, KnownHosts, cert_fingerprint
from .paths import CredentialError, config_dir
from .token import load_token, token_proof

if TYPE_CHECKING:
    from .authorized_keys import AuthorizedKey, AuthorizedKeys

# authorized_keys (and the cryptography package under it) is imported by the
# server-side code that reads the file: clients never load it.

__all__ = [
    "TOKEN_FILE_ENV",
    "FileVerifier",
    "check_pin",
    "client_credentials",
    "client_error",
    "service_token_path",
]

log = logging.getLogger("wirekit.auth")

#: Environment variable naming a token file (never the token itself: it would show in ps).
TOKEN_FILE_ENV = "WIREKIT_TOKEN_FILE"


def service_token_path(service: str) -> Path:
    """``<config dir>/<service>.token``: the token a local server makes and a local client finds."""
    return config_dir() / f"{service}.token"


def env_token_file() -> Path | None:
    value = os.environ.get(TOKEN_FILE_ENV, "")
    return Path(value).expanduser() if value else None


@dataclass(frozen=True, slots=True)
class _KeysSnapshot:
    stamp: tuple[int, int, int]
    keys: AuthorizedKeys
    #: Raw public key -> its first entry: a lookup per connection, not a scan.
    index: dict[bytes, AuthorizedKey]


class FileVerifier:
    """A :class:`~wirekit.proto.auth.Verifier` over an authorized_keys file and a token."""

    def __init__(self, authorized_keys: Path | None, token: str | None) -> None:
        self.authorized_keys = authorized_keys
        self._token = token
        self._snapshot: _KeysSnapshot | None = None
        methods = []
        if authorized_keys is not None:
            methods.append("key")
            self.keys()  # a file that cannot be read fails now, at start
        if token is not None:
            methods.append("token")
        if not methods:
            raise CredentialError("no authentication configured (no authorized_keys, no token)")
        self._methods = tuple(methods)

    @property
    def methods(self) -> tuple[str, ...]:
        return self._methods

    def keys(self) -> AuthorizedKeys:
        """The file's keys; re-read when its inode, size or mtime changed."""
        from .authorized_keys import AuthorizedKeys, load_authorized_keys

        path = self.authorized_keys
        if path is None:
            return AuthorizedKeys()
        try:
            info = path.stat()
        except FileNotFoundError:
            raise CredentialError(f"no authorized_keys file at {path}") from None
        except OSError as exc:
            raise CredentialError(f"cannot read {path}: {exc.strerror or exc}") from None
        stamp = (info.st_ino, info.st_size, info.st_mtime_ns)
        if self._snapshot is None or self._snapshot.stamp != stamp:
            keys = load_authorized_keys(path)
            for warning in keys.warnings:
                log.warning("%s", warning)
            index: dict[bytes, AuthorizedKey] = {}
            for entry in keys.keys:
                index.setdefault(entry.public_key.public_bytes_raw(), entry)
            self._snapshot = _KeysSnapshot(stamp, keys, index)
        return self._snapshot.keys

    def find_key(self, public_key: bytes) -> str | None:
        try:
            self.keys()
        except CredentialError as exc:
            log.error("key authentication unavailable: %s", exc)
            return None
        assert self._snapshot is not None
        entry = self._snapshot.index.get(bytes(public_key))
        if entry is None:
            return None
        # The principal names the peer in logs and to the service: a comment copied
        # from someone's .pub file must not carry terminal escapes there.
        comment = f" {printable(entry.comment)}" if entry.comment else ""
        return f"key {key_fingerprint(public_key)}{comment}"

    def verify(self, public_key: bytes, signature: bytes, message: bytes) -> bool:
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

        try:
            key = Ed25519PublicKey.from_public_bytes(public_key)
        except ValueError:
            return False
        return verify(key, signature, message)

    def token_mac(self, *items: bytes) -> bytes:
        if self._token is None:
            raise CredentialError("no token configured")
        return token_proof(self._token, *items)


def key_credential(path: Path | None = None) -> KeyCredential:
    """The client key at ``path`` (default :func:`~wirekit.security.keys.default_key_path`)."""
    key = load_private_key(path)
    return KeyCredential(key.public_key().public_bytes_raw(), partial(sign, key))


def token_credential(path: Path) -> TokenCredential:
    return TokenCredential(partial(token_proof, load_token(path)))


def client_credentials(
    service: str, *, identity: Path | None = None, token_file: Path | None = None
) -> list[Credential]:
    """What a client may offer, in order of preference; raises CredentialError if nothing.

    Named files come first and must work. Otherwise: ``$WIREKIT_TOKEN_FILE``,
    then the local service token (a server on this machine made it), then
    the default key. A default that does not exist is skipped; one that
    exists but is unsafe or damaged is an error (it needs fixing).
    """
    credentials: list[Credential] = []
    if identity is not None:
        credentials.append(key_credential(Path(identity)))
    if token_file is not None:
        credentials.append(token_credential(Path(token_file)))
    if credentials:
        return credentials
    env_file = env_token_file()
    if env_file is not None:
        return [token_credential(env_file)]
    local = service_token_path(service)
    if local.exists():
        credentials.append(token_credential(local))
    key_path = default_key_path()
    if key_path.exists():
        credentials.append(key_credential(key_path))
    if not credentials:
        raise CredentialError(
            f"no credentials for {service}: no key at {key_path} and no token at {local}; "
            "run `wirekit keygen` and add the .pub line to the server's authorized_keys, "
            "or give a token file"
        )
    return credentials


def check_pin(
    hostport: str,
    cert_der: bytes,
    *,
    accept_new: bool = False,
    confirm: Callable[[str], bool] | None = None,
    known_hosts: Path | None = None,
) -> bool:
    """Check the server's certificate against the pin for ``hostport``.

    Known: returns False. Unknown: pinned with ``accept_new``, or if
    ``confirm(question)`` says yes, and returns True when a question was
    asked (the answer may have taken longer than the server waits: the
    caller reconnects); refused otherwise. Changed: always refused
    (:class:`ChangedFingerprint`).
    """
    store = KnownHosts(known_hosts)
    fingerprint = cert_fingerprint(cert_der)
    status = store.check(hostport, fingerprint)
    if status is HostStatus.KNOWN:
        return False
    if status is HostStatus.CHANGED:
        old = store.lookup(hostport) or ""
        raise ChangedFingerprint(hostport, old, fingerprint, store.path, store.line_of(hostport))
    question = (
        f"the TLS certificate of {hostport} is not known yet; its fingerprint is "
        f"{fingerprint}. Trust it and remember it?"
    )
    asked = not accept_new and confirm is not None
    if not accept_new and not (confirm is not None and confirm(question)):
        raise AuthenticationFailed(
            f"{hostport} is not a known host (certificate {fingerprint}); check the fingerprint "
            "the server printed and connect again with --accept-new to pin it"
        )
    store.remember(hostport, fingerprint)
    log.info("pinned %s %s in %s", hostport, fingerprint, store.path)
    return asked


def client_error(exc: BaseException, address: str, service: str, wait: float) -> BaseException:
    """The one-line error a client raises for a failed handshake (asyncio and blocking alike)."""
    if isinstance(exc, TimeoutError):
        return ConnectError(
            f"no authentication from {address} within {wait:g} s; is it a wirekit {service} "
            "service?"
        )
    if isinstance(exc, ConnectionClosed):
        # The reason is the server's text: escaped before it can reach a terminal.
        if exc.code == ErrorCode.AUTH_FAILED:
            return AuthenticationFailed(printable(exc.reason))
        return ConnectError(
            f"{address} closed the connection during authentication: {printable(exc)}"
        )
    if isinstance(exc, RemoteProtocolError):
        return ConnectError(f"{address} broke the authentication protocol: {printable(exc)}")
    return exc
