"""The shared token file and its HMAC proofs."""

from __future__ import annotations

import hashlib
import hmac
import os
import stat
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from wirekit.security import (
    TOKEN_CONTEXT,
    CredentialError,
    check_token,
    check_token_proof,
    default_token_path,
    ensure_token,
    load_token,
    token_proof,
)

if TYPE_CHECKING:
    from conftest import Dirs

TOKEN = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff"


def test_ensure_token_creates_0600_hex_then_reuses(dirs: Dirs) -> None:
    os.umask(0)
    token = ensure_token()
    path = dirs.config / "token"
    assert default_token_path() == path
    assert len(token) == 64 and int(token, 16) >= 0
    assert path.read_text() == token + "\n"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(dirs.config.stat().st_mode) == 0o700
    assert ensure_token() == token
    assert load_token() == token
    assert sorted(p.name for p in dirs.config.iterdir()) == ["token"]


def test_ensure_token_never_replaces_an_existing_one(work: Path) -> None:
    path = work / "token"
    path.write_text(f"  {TOKEN}  \n")
    os.chmod(path, 0o600)
    assert ensure_token(path) == TOKEN
    assert path.read_text() == f"  {TOKEN}  \n"


def test_two_new_tokens_differ(work: Path) -> None:
    assert ensure_token(work / "a") != ensure_token(work / "b")


def test_load_strips_whitespace(work: Path) -> None:
    path = work / "token"
    path.write_text(f"\n\t{TOKEN}\r\n\n")
    os.chmod(path, 0o400)
    assert load_token(path) == TOKEN


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "is empty"),
        (" \n\t\n", "is empty"),
        ("0123456789abcdef0123456789abcde", "too short: 31 characters carry at most 124 bits"),
        ("secret", "too short"),
        ("hunter2hunter2", "too short"),
        ("tab\tinside-the-token-tab-inside", "control or non-ASCII"),
        ("ünïcödé-ünïcödé-ünïcödé-ünïcödé", "control or non-ASCII"),
    ],
)
def test_weak_or_empty_tokens_refused(work: Path, text: str, message: str) -> None:
    path = work / "token"
    path.write_text(text)
    os.chmod(path, 0o600)
    with pytest.raises(CredentialError, match=message) as info:
        load_token(path)
    assert str(path) in str(info.value)
    assert "\n" not in str(info.value)


def test_entropy_bound_by_alphabet() -> None:
    assert check_token("0" * 32) == "0" * 32  # 32 hex digits = 128 bits
    assert check_token("A" * 21 + "/=") == "A" * 21 + "/="  # 22 base64 characters = 132 bits
    with pytest.raises(CredentialError):
        check_token("A" * 20 + "/=")  # 21 base64 characters = 126 bits
    assert check_token("correct horse battery") == "correct horse battery"  # 21 * 6.5 bits
    with pytest.raises(CredentialError, match=r"^--token is too short"):
        check_token("short", "--token")


def test_missing_token_file(work: Path) -> None:
    with pytest.raises(CredentialError, match=r"no token file at .*token .*wirekit serve exec"):
        load_token(work / "token")


def test_readable_token_refused_with_chmod_hint(work: Path) -> None:
    path = work / "token"
    path.write_text(TOKEN)
    os.chmod(path, 0o644)
    with pytest.raises(CredentialError, match=f"run: chmod 600 {path}$"):
        load_token(path)


def test_proof_verifies_and_rejects() -> None:
    proof = token_proof(TOKEN, b"server-nonce", b"client-nonce")
    assert len(proof) == 32
    assert check_token_proof(TOKEN, proof, b"server-nonce", b"client-nonce")
    assert not check_token_proof(TOKEN, proof, b"server-nonce", b"other-nonce")
    assert not check_token_proof(TOKEN, proof, b"client-nonce", b"server-nonce")
    assert not check_token_proof(TOKEN, proof, b"server-nonce")
    assert not check_token_proof("f" * 64, proof, b"server-nonce", b"client-nonce")
    assert not check_token_proof(TOKEN, proof[:-1], b"server-nonce", b"client-nonce")
    assert not check_token_proof(TOKEN, b"", b"server-nonce", b"client-nonce")
    tampered = bytes([proof[0] ^ 1]) + proof[1:]
    assert not check_token_proof(TOKEN, tampered, b"server-nonce", b"client-nonce")


def test_different_parts_give_different_proofs() -> None:
    proofs = {
        token_proof(TOKEN),
        token_proof(TOKEN, b""),
        token_proof(TOKEN, b"", b""),
        token_proof(TOKEN, b"a"),
        token_proof(TOKEN, b"b"),
        token_proof(TOKEN, b"client", b"n"),
        token_proof(TOKEN, b"server", b"n"),
    }
    assert len(proofs) == 7


def test_length_prefix_prevents_shifted_boundaries() -> None:
    assert token_proof(TOKEN, b"ab", b"c") != token_proof(TOKEN, b"a", b"bc")
    assert token_proof(TOKEN, b"abc") != token_proof(TOKEN, b"ab", b"c")
    assert not check_token_proof(TOKEN, token_proof(TOKEN, b"ab", b"c"), b"a", b"bc")
    # the context cannot be shifted into the first part either
    assert (
        token_proof(TOKEN, b"x")
        != hmac.new(TOKEN.encode(), TOKEN_CONTEXT + b"x", hashlib.sha256).digest()
    )


def test_proof_vector() -> None:
    # Pinned wire format: 8-byte big-endian length before the context and before each part.
    message = b"".join(len(p).to_bytes(8, "big") + p for p in (TOKEN_CONTEXT, b"ab", b"c"))
    expected = hmac.new(TOKEN.encode("utf-8"), message, hashlib.sha256).digest()
    assert token_proof(TOKEN, b"ab", b"c") == expected
    assert TOKEN_CONTEXT == b"wirekit-token-v1"
    # the same value from `openssl dgst -sha256 -hmac TOKEN` over those bytes:
    assert expected.hex() == "40d6f5539f4dc37fb926d11922a3fff237d56060946b814964462c58cce2eec2"
