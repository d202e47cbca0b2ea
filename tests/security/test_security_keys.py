"""Ed25519 keys: generate -> load -> sign -> verify, refusals, and OpenSSH interop."""

from __future__ import annotations

import base64
import os
import stat
import struct
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from wirekit.security import (
    SIGNATURE_CONTEXT,
    CredentialError,
    default_key_path,
    fingerprint,
    generate_keypair,
    load_private_key,
    public_key_line,
    sign,
    verify,
    wirekit_key_path,
)

if TYPE_CHECKING:
    from conftest import Dirs, SshKeygen

#: A fixed key, so a signature vector pins the signed bytes (context + message).
SEED = bytes(range(32))


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def openssh_pem(
    key: object, encryption: serialization.KeySerializationEncryption | None = None
) -> bytes:
    assert isinstance(key, Ed25519PrivateKey | ec.EllipticCurvePrivateKey)
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.OpenSSH,
        encryption or serialization.NoEncryption(),
    )


def write_secret(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    os.chmod(path, 0o600)
    return path


def fake_encrypted(pem: bytes) -> bytes:
    """An unencrypted OpenSSH key with its header saying aes256-ctr/bcrypt (no bcrypt needed)."""
    body = b"".join(pem.strip().splitlines()[1:-1])
    blob = base64.b64decode(body)
    magic = b"openssh-key-v1\x00"
    none = struct.pack(">I", 4) + b"none"
    assert blob.startswith(magic + none + none + struct.pack(">I", 0))
    rest = blob[len(magic) + 2 * len(none) + 4 :]
    kdf_options = struct.pack(">I", 16) + b"s" * 16 + struct.pack(">I", 16)

    def string(data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + data

    new = magic + string(b"aes256-ctr") + string(b"bcrypt") + string(kdf_options) + rest
    text = base64.b64encode(new)
    lines = [text[i : i + 70] for i in range(0, len(text), 70)]
    return b"\n".join([pem.splitlines()[0], *lines, pem.strip().splitlines()[-1]]) + b"\n"


def test_generate_load_sign_verify_round_trip(dirs: Dirs) -> None:
    key = generate_keypair(comment="dev@laptop")
    path = dirs.config / "id_ed25519"
    assert wirekit_key_path() == path
    loaded = load_private_key(path)
    assert loaded.private_bytes_raw() == key.private_bytes_raw()
    public = loaded.public_key()
    signature = sign(loaded, b"server nonce")
    assert len(signature) == 64
    assert verify(public, signature, b"server nonce")
    assert verify(key.public_key(), signature, b"server nonce")


def test_tampered_message_or_signature_fails_without_raising() -> None:
    key = Ed25519PrivateKey.generate()
    public = key.public_key()
    signature = sign(key, b"nonce")
    assert not verify(public, signature, b"nonce!")
    assert not verify(public, bytes([signature[0] ^ 1]) + signature[1:], b"nonce")
    assert not verify(public, signature[:-1], b"nonce")
    assert not verify(public, b"", b"nonce")
    assert not verify(public, signature + b"\x00", b"nonce")
    assert not verify(Ed25519PrivateKey.generate().public_key(), signature, b"nonce")


def test_signatures_are_domain_separated() -> None:
    # A wirekit signature must never be a plain signature of the peer's bytes (see keys.py).
    key = Ed25519PrivateKey.from_private_bytes(SEED)
    signature = sign(key, b"nonce")
    assert signature == key.sign(SIGNATURE_CONTEXT + b"nonce")
    assert signature != key.sign(b"nonce")
    # Pinned: changing SIGNATURE_CONTEXT breaks every deployed peer, so it must be on purpose.
    # (the same bytes as `openssl pkeyutl -sign -rawin` of "wirekit-sig-v1\0nonce")
    assert signature.hex() == (
        "590f39ec6540e8c5781b9a233493bab8d1e9b3832a7dd2d17a029c5a95ab2a6d"
        "b43e6fca811cdb168fabbc92da2f710f30fea2d7b1cd6db4bfd742c6e6465a07"
    )


def test_generated_files_modes_and_pub_line(dirs: Dirs) -> None:
    os.umask(0)
    key = generate_keypair(comment="ci runner\n#2")
    path = dirs.config / "id_ed25519"
    assert mode(dirs.config) == 0o700
    assert mode(path) == 0o600
    assert mode(path.with_name("id_ed25519.pub")) == 0o644
    assert path.read_bytes().startswith(b"-----BEGIN OPENSSH PRIVATE KEY-----\n")
    pub = path.with_name("id_ed25519.pub").read_text()
    assert pub.endswith("\n") and pub.count("\n") == 1
    kind, data, comment = pub.rstrip("\n").split(" ", 2)
    assert (kind, comment) == ("ssh-ed25519", "ci runner #2")
    assert data.startswith("AAAAC3NzaC1lZDI1NTE5")
    assert pub.rstrip("\n") == public_key_line(key.public_key(), "ci runner #2")
    assert [p.name for p in dirs.config.iterdir() if p.name.startswith(".")] == []


def test_default_comment_names_host(dirs: Dirs) -> None:
    generate_keypair()
    assert (dirs.config / "id_ed25519.pub").read_text().split()[2].startswith("wirekit@")


def test_generate_refuses_to_overwrite_unless_told(work: Path) -> None:
    path = work / "id"
    first = generate_keypair(path)
    with pytest.raises(CredentialError, match="already exists; refusing to overwrite"):
        generate_keypair(path)
    assert load_private_key(path).private_bytes_raw() == first.private_bytes_raw()
    (work / "id").unlink()  # only the .pub left: still refused, the pair would not match
    with pytest.raises(CredentialError, match=r"id\.pub already exists"):
        generate_keypair(path)
    second = generate_keypair(path, overwrite=True)
    assert load_private_key(path).private_bytes_raw() == second.private_bytes_raw()
    assert (work / "id.pub").read_text().split()[1] == public_key_line(second.public_key()).split()[
        1
    ]


def test_fingerprint_format() -> None:
    key = Ed25519PrivateKey.from_private_bytes(SEED).public_key()
    value = fingerprint(key)
    assert value.startswith("SHA256:")
    assert len(value) == len("SHA256:") + 43
    assert "=" not in value


def test_encrypted_key_refused_with_clear_message(work: Path) -> None:
    pem = openssh_pem(Ed25519PrivateKey.generate())
    path = write_secret(work / "id_ed25519", fake_encrypted(pem))
    with pytest.raises(CredentialError) as info:
        load_private_key(path)
    text = str(info.value)
    assert "protected by a passphrase" in text
    assert "unencrypted key" in text
    assert "ssh-agent is not supported yet" in text
    assert "wirekit keygen" in text
    assert "\n" not in text


def test_encrypted_key_from_cryptography_refused(work: Path) -> None:
    pytest.importorskip("bcrypt", reason="cryptography needs bcrypt to encrypt OpenSSH keys")
    pem = openssh_pem(Ed25519PrivateKey.generate(), serialization.BestAvailableEncryption(b"pw"))
    path = write_secret(work / "id_ed25519", pem)
    with pytest.raises(CredentialError, match="protected by a passphrase"):
        load_private_key(path)


def test_non_ed25519_key_refused_naming_its_type(work: Path) -> None:
    pem = openssh_pem(ec.generate_private_key(ec.SECP256R1()))
    path = write_secret(work / "id_ecdsa", pem)
    with pytest.raises(
        CredentialError, match="is an ecdsa-sha2-nistp256 key; wirekit needs ssh-ed25519"
    ):
        load_private_key(path)


def test_other_files_refused_clearly(work: Path) -> None:
    key = Ed25519PrivateKey.generate()
    pkcs8 = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    path = write_secret(work / "pkcs8", pkcs8)
    with pytest.raises(
        CredentialError, match=r"not an OpenSSH-format private key .*BEGIN PRIVATE KEY"
    ):
        load_private_key(path)
    path = write_secret(work / "id.pub", public_key_line(key.public_key()).encode())
    with pytest.raises(CredentialError, match=r"is a public key; give the private key file"):
        load_private_key(path)
    pem = openssh_pem(key)
    path = write_secret(work / "damaged", pem.replace(pem.splitlines()[2], b"!!!!"))
    with pytest.raises(CredentialError, match="damaged OpenSSH private key"):
        load_private_key(path)
    with pytest.raises(CredentialError, match=r"no private key at .*missing; make one"):
        load_private_key(work / "missing")


def test_key_readable_by_others_refused(dirs: Dirs) -> None:
    generate_keypair()
    path = dirs.config / "id_ed25519"
    os.chmod(path, 0o644)
    with pytest.raises(CredentialError, match=r"permissions 0644 .* run: chmod 600 "):
        load_private_key(path)


def test_default_key_path(dirs: Dirs) -> None:
    ssh_key = dirs.home / ".ssh" / "id_ed25519"
    own_key = dirs.config / "id_ed25519"
    assert default_key_path() == own_key  # no ~/.ssh key
    ssh_key.parent.mkdir(mode=0o700)
    generate_keypair(ssh_key)
    assert default_key_path() == ssh_key
    generate_keypair()
    assert default_key_path() == ssh_key  # an unencrypted ssh key is preferred
    ssh_key.write_bytes(fake_encrypted(ssh_key.read_bytes()))
    assert default_key_path() == own_key  # a passphrase key loses to wirekit's own key
    own_key.unlink()
    assert default_key_path() == ssh_key  # ...but is still named when it is all there is
    with pytest.raises(CredentialError, match="protected by a passphrase"):
        load_private_key()


# --- OpenSSH interop -------------------------------------------------------------------


def test_ssh_keygen_key_loads_and_fingerprints_match(work: Path, ssh_keygen: SshKeygen) -> None:
    path = work / "id_ed25519"
    ssh_keygen("-q", "-t", "ed25519", "-N", "", "-C", "made by ssh-keygen", "-f", str(path))
    key = load_private_key(path)
    expected = ssh_keygen("-lf", str(path.with_name("id_ed25519.pub"))).split()[1]
    assert fingerprint(key.public_key()) == expected
    pub = path.with_name("id_ed25519.pub").read_text().split()
    assert public_key_line(key.public_key()).split() == pub[:2]
    assert verify(key.public_key(), sign(key, b"m"), b"m")


def test_wirekit_key_accepted_by_ssh_keygen(work: Path, ssh_keygen: SshKeygen) -> None:
    path = work / "id_ed25519"
    key = generate_keypair(path, comment="made by wirekit")
    derived = ssh_keygen("-y", "-f", str(path)).split()
    assert derived[:2] == public_key_line(key.public_key()).split()
    listed = ssh_keygen("-lf", str(path.with_name("id_ed25519.pub"))).split()
    assert listed[1] == fingerprint(key.public_key())
    assert "made by wirekit" in " ".join(listed)


def test_ssh_keygen_encrypted_key_refused(work: Path, ssh_keygen: SshKeygen) -> None:
    path = work / "id_ed25519"
    ssh_keygen("-q", "-t", "ed25519", "-N", "correct horse", "-f", str(path))
    with pytest.raises(CredentialError, match="protected by a passphrase"):
        load_private_key(path)


def test_ssh_keygen_rsa_key_refused(work: Path, ssh_keygen: SshKeygen) -> None:
    path = work / "id_rsa"
    ssh_keygen("-q", "-t", "rsa", "-b", "2048", "-N", "", "-f", str(path))
    with pytest.raises(CredentialError, match="is an ssh-rsa key; wirekit needs ssh-ed25519"):
        load_private_key(path)
