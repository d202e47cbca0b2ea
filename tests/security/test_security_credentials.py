"""Which credentials a client offers, in which order, and the server's file-backed
verifier (wirekit.security.credentials)."""

from __future__ import annotations

import os
import secrets
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from wirekit.errors import AuthenticationFailed
from wirekit.proto.auth import KeyCredential, TokenCredential
from wirekit.security import CredentialError, generate_keypair, public_key_line
from wirekit.security.credentials import (
    FileVerifier,
    check_pin,
    client_credentials,
    service_token_path,
)
from wirekit.security.known_hosts import ChangedFingerprint, KnownHosts, cert_fingerprint

if TYPE_CHECKING:
    from conftest import Dirs


def token_at(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    path.write_text(secrets.token_hex(32) + "\n")
    path.chmod(0o600)
    return path


def test_named_files_come_first_and_only_they(dirs: Dirs, work: Path) -> None:
    key = work / "id"
    generate_keypair(key)
    token = token_at(work / "tok")
    token_at(service_token_path("exec"))  # present, but not used when files are named
    got = client_credentials("exec", identity=key, token_file=token)
    assert [type(c) for c in got] == [KeyCredential, TokenCredential]
    assert [type(c) for c in client_credentials("exec", token_file=token)] == [TokenCredential]


def test_defaults_local_token_then_default_key(dirs: Dirs) -> None:
    with pytest.raises(CredentialError, match=r"^no credentials for exec: no key at "):
        client_credentials("exec")
    (dirs.home / ".ssh").mkdir(mode=0o700)
    generate_keypair(dirs.home / ".ssh" / "id_ed25519")
    assert [type(c) for c in client_credentials("exec")] == [KeyCredential]
    token_at(service_token_path("exec"))
    assert [type(c) for c in client_credentials("exec")] == [TokenCredential, KeyCredential]
    assert [type(c) for c in client_credentials("files")] == [KeyCredential]


def test_env_token_file_wins_over_defaults(
    dirs: Dirs, work: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    token_at(service_token_path("exec"))
    monkeypatch.setenv("WIREKIT_TOKEN_FILE", str(work / "missing"))
    with pytest.raises(CredentialError, match="no token file at"):
        client_credentials("exec")
    monkeypatch.setenv("WIREKIT_TOKEN_FILE", str(token_at(work / "env")))
    (credential,) = client_credentials("exec")
    assert isinstance(credential, TokenCredential)


def test_unsafe_default_token_is_an_error_not_skipped(dirs: Dirs) -> None:
    path = token_at(service_token_path("exec"))
    os.chmod(path, 0o644)
    with pytest.raises(CredentialError, match="too open"):
        client_credentials("exec")


def test_file_verifier_follows_the_file(work: Path) -> None:
    alice = generate_keypair(work / "alice").public_key()
    keys = work / "authorized_keys"
    keys.write_text(public_key_line(alice, "alice@a") + "\n")
    verifier = FileVerifier(keys, None)
    assert verifier.methods == ("key",)
    raw = alice.public_bytes_raw()
    principal = verifier.find_key(raw)
    assert principal is not None and principal.endswith(" alice@a")
    assert verifier.find_key(b"\x00" * 31) is None  # not a key at all
    keys.write_text("# nobody\n")
    assert verifier.find_key(raw) is None
    keys.unlink()
    assert verifier.find_key(raw) is None  # logged, refused, never raised
    with pytest.raises(CredentialError, match="no authentication configured"):
        FileVerifier(None, None)
    assert FileVerifier(None, "t" * 64).methods == ("token",)


def test_principal_escapes_the_key_comment(work: Path) -> None:
    """The principal names the peer in every log line and reaches the service
    (Peer.principal): a comment carrying terminal escapes arrives escaped."""
    key = generate_keypair(work / "bob").public_key()
    keys = work / "authorized_keys"
    keys.write_text(public_key_line(key, "bob\x1b[31m\x9b2J") + "\n")
    principal = FileVerifier(keys, None).find_key(key.public_bytes_raw())
    assert principal is not None and principal.isprintable()
    assert principal.endswith(" bob\\x1b[31m\\x9b2J")


def test_check_pin(dirs: Dirs) -> None:
    der = b"certificate one"
    with pytest.raises(AuthenticationFailed, match="is not a known host"):
        check_pin("h.example:7022", der)
    assert check_pin("h.example:7022", der, accept_new=True) is False
    assert check_pin("h.example:7022", der) is False  # known now
    assert KnownHosts().lookup("h.example:7022") == cert_fingerprint(der)
    assert check_pin("other.example:1", der, confirm=lambda q: True) is True  # asked
    with pytest.raises(ChangedFingerprint) as info:
        check_pin("h.example:7022", b"certificate two", accept_new=True)
    assert info.value.line == 2
