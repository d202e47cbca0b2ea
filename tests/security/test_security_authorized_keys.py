"""authorized_keys: Ed25519 keys in, other types counted, bad lines reported by number."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from wirekit.security import (
    CredentialError,
    fingerprint,
    generate_keypair,
    load_authorized_keys,
    parse_authorized_keys,
    public_key_line,
)

if TYPE_CHECKING:
    from conftest import Dirs, SshKeygen


def ssh_line(key: object) -> str:
    assert isinstance(key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey)
    return (
        key.public_key()
        .public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
        .decode()
    )


LAPTOP = Ed25519PrivateKey.generate().public_key()
BACKUP = Ed25519PrivateKey.generate().public_key()
RUNNER = Ed25519PrivateKey.generate().public_key()
RSA_LINE = ssh_line(rsa.generate_private_key(public_exponent=65537, key_size=2048))
ECDSA_LINE = ssh_line(ec.generate_private_key(ec.SECP256R1()))


def test_keys_options_comments_and_skipped_types() -> None:
    laptop = public_key_line(LAPTOP)
    text = "\n".join(
        [
            "# sshd and wirekit share this file",  # 1
            "",  # 2
            f"{laptop} dev@laptop  with  spaces",  # 3
            f"{RSA_LINE} old-rsa",  # 4
            f'from="10.0.0.1,10.0.0.2",command="echo a b" {public_key_line(BACKUP)} backup',  # 5
            f"   {ECDSA_LINE}",  # 6
            f"restrict,pty {public_key_line(RUNNER)}",  # 7
            f"{RSA_LINE}",  # 8
            "sk-ssh-ed25519@openssh.com AAAAGnNrLXNzaC1lZDI1NTE5QG9wZW5zc2guY29t x",  # 9
            "\t# indented comment",  # 10
        ]
    )
    result = parse_authorized_keys(text)
    assert [k.line for k in result.keys] == [3]
    (first,) = result.keys
    assert first.public_key.public_bytes_raw() == LAPTOP.public_bytes_raw()
    assert first.comment == "dev@laptop  with  spaces"
    assert first.fingerprint == fingerprint(LAPTOP)
    assert result.find(BACKUP) is None and result.find(RUNNER) is None
    assert result.skipped == {
        "ssh-rsa": 2,
        "ecdsa-sha2-nistp256": 1,
        "sk-ssh-ed25519@openssh.com": 1,
    }
    # keys with options are refused, each with a warning naming its line
    assert len(result.warnings) == 2
    assert result.warnings[0].startswith("authorized_keys line 5: key with options (command, from)")
    assert result.warnings[1].startswith("authorized_keys line 7: key with options (pty, restrict)")
    assert all("refused" in w and "\n" not in w for w in result.warnings)


def test_same_key_without_options_on_its_own_line_is_accepted() -> None:
    line = public_key_line(RUNNER, "ci")
    result = parse_authorized_keys(f'command="backup" {line}\n{line}\n')
    assert [k.line for k in result.keys] == [2]
    assert result.find(RUNNER) is not None
    assert len(result.warnings) == 1


def test_find() -> None:
    result = parse_authorized_keys(f"{public_key_line(LAPTOP)} a\n{public_key_line(BACKUP)} b\n")
    found = result.find(BACKUP)
    assert found is not None and found.comment == "b"
    assert result.find(RUNNER) is None


def test_malformed_lines_skipped_with_line_numbers() -> None:
    laptop = public_key_line(LAPTOP)
    rsa_blob = RSA_LINE.split()[1]
    lines = [
        "garbage",  # 1
        laptop,  # 2: fine
        "ssh-ed25519",  # 3: no key data
        "ssh-ed25519 not!base64 x",  # 4
        f"ssh-ed25519 {rsa_blob} liar",  # 5: an RSA blob under an ed25519 label
        f'command="unterminated {laptop}',  # 6
        f"cert-authority {public_key_line(BACKUP)}",  # 7: a CA, not a user key
        "hello world again",  # 8
        f"{laptop[:-8]} truncated",  # 9
        laptop + " last",  # 10: fine
    ]
    result = parse_authorized_keys("\r\n".join(lines), source="keys.txt")
    assert [k.line for k in result.keys] == [2, 10]
    assert [w.split(":")[0] for w in result.warnings] == [
        f"keys.txt line {n}" for n in (1, 3, 4, 5, 6, 7, 8, 9)
    ]
    assert all(w.endswith("; line skipped") for w in result.warnings)
    assert "not a key line" in result.warnings[0]
    assert "without key data" in result.warnings[1]
    assert "damaged ssh-ed25519 key data" in result.warnings[2]
    assert "damaged ssh-ed25519 key data" in result.warnings[3]
    assert "unterminated quote" in result.warnings[4]
    assert "cert-authority" in result.warnings[5]
    assert result.skipped == {}


def test_empty_and_comment_only() -> None:
    assert parse_authorized_keys("").keys == ()
    result = parse_authorized_keys("# nothing\n\n   \n")
    assert (result.keys, result.skipped, result.warnings) == ((), {}, ())


def test_load_default_path_and_permissions(dirs: Dirs) -> None:
    with pytest.raises(CredentialError, match=r"no authorized_keys file at .*authorized_keys"):
        load_authorized_keys()
    ssh = dirs.home / ".ssh"
    ssh.mkdir(mode=0o700)
    path = ssh / "authorized_keys"
    path.write_text(f"{public_key_line(LAPTOP)} laptop\n{RSA_LINE}\n")
    os.chmod(path, 0o644)  # readable by all is normal for this file
    result = load_authorized_keys()
    assert len(result.keys) == 1 and result.skipped == {"ssh-rsa": 1}
    assert load_authorized_keys(path).keys[0].comment == "laptop"
    os.chmod(path, 0o664)
    with pytest.raises(CredentialError, match=r"too open .* run: chmod go-w "):
        load_authorized_keys(path)


def test_ssh_keygen_pub_lines_accepted(work: Path, ssh_keygen: SshKeygen) -> None:
    keys = []
    for name in ("a", "b"):
        ssh_keygen("-q", "-t", "ed25519", "-N", "", "-C", f"{name}@host", "-f", str(work / name))
        keys.append(ssh_keygen("-lf", str(work / f"{name}.pub")).split()[1])
    ssh_keygen("-q", "-t", "ecdsa", "-N", "", "-f", str(work / "c"))
    ours = generate_keypair(work / "d", comment="d@wirekit")
    text = "".join((work / f"{n}.pub").read_text() for n in "abcd")
    result = parse_authorized_keys(text)
    assert [k.fingerprint for k in result.keys] == [*keys, fingerprint(ours.public_key())]
    assert [k.comment for k in result.keys] == ["a@host", "b@host", "d@wirekit"]
    assert result.skipped == {"ecdsa-sha2-nistp256": 1}
    # and ssh-keygen agrees the wirekit .pub line is a valid public key
    assert ssh_keygen("-lf", str(work / "d.pub")).split()[1] == fingerprint(ours.public_key())
