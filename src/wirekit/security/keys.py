"""Ed25519 keys in OpenSSH's formats: load, generate, fingerprint, sign, verify.

wirekit reuses the keys people already have (``~/.ssh/id_ed25519``) and the
files they already trust (``authorized_keys``, see
:mod:`wirekit.security.authorized_keys`), so the formats are OpenSSH's and
``ssh-keygen`` can read and check what wirekit writes.

Signatures are domain-separated: :func:`sign` never signs the caller's bytes
as they are, but :data:`SIGNATURE_CONTEXT` followed by them. The user's SSH
key also logs into SSH servers; if wirekit signed whatever a server sent, a
malicious wirekit server could pass SSH's login challenge through and get a
signature that logs it into the user's SSH account. With the prefix, no
wirekit signature is valid for SSH, and none is valid for another wirekit
protocol version either.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import socket
import struct
from pathlib import Path
from typing import TYPE_CHECKING

from .paths import CredentialError, atomic_write, config_dir, read_secret_file

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import (
        Ed25519PrivateKey,
        Ed25519PublicKey,
    )

# ``cryptography`` is imported by the functions that use it: finding the
# default key path, which a token client does, must not load it.

__all__ = [
    "SIGNATURE_CONTEXT",
    "default_key_path",
    "fingerprint",
    "generate_keypair",
    "load_private_key",
    "public_key_line",
    "sign",
    "verify",
    "wirekit_key_path",
]

#: Prefixed to every signed message; see the module docstring for why.
SIGNATURE_CONTEXT = b"wirekit-sig-v1\x00"

_BEGIN = b"-----BEGIN OPENSSH PRIVATE KEY-----"
_END = b"-----END OPENSSH PRIVATE KEY-----"
_MAGIC = b"openssh-key-v1\x00"
_MAKE_ONE = "make one for wirekit with `wirekit keygen` or `ssh-keygen -t ed25519`"


def wirekit_key_path() -> Path:
    """``<config dir>/id_ed25519``: where ``wirekit keygen`` writes wirekit's own key."""
    return config_dir() / "id_ed25519"


def default_key_path() -> Path:
    """The key a client uses when none is named.

    ``~/.ssh/id_ed25519`` if it exists, else wirekit's own key. One
    exception: an SSH key with a passphrase cannot be used (no agent support
    yet), so if wirekit's own key exists it wins over such a key; otherwise a
    user who ran ``wirekit keygen`` to get around the passphrase would still
    be stuck with the key that does not work.
    """
    ssh_key = Path.home() / ".ssh" / "id_ed25519"
    own_key = wirekit_key_path()
    if not ssh_key.exists():
        return own_key
    if own_key.exists() and _is_encrypted(ssh_key):
        return own_key
    return ssh_key


def load_private_key(path: Path | None = None) -> Ed25519PrivateKey:
    """Load an unencrypted OpenSSH-format Ed25519 private key (default: :func:`default_key_path`).

    Every refusal is one line that names the file and says what to do: no
    such file, group/other-readable, not OpenSSH format, not Ed25519 (names
    the type), or protected by a passphrase.
    """
    path = default_key_path() if path is None else Path(path)
    try:
        data = read_secret_file(path)
    except FileNotFoundError:
        raise CredentialError(f"no private key at {path}; {_MAKE_ONE}") from None
    cipher, key_type = _peek(path, data)
    if key_type != "ssh-ed25519":
        raise CredentialError(
            f"{path} is an {key_type} key; wirekit needs ssh-ed25519: {_MAKE_ONE}"
        )
    if cipher != "none":
        raise CredentialError(
            f"{path} is protected by a passphrase; wirekit needs an unencrypted key "
            "(ssh-agent is not supported yet): make a separate key with `wirekit keygen`"
        )
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    try:
        key = serialization.load_ssh_private_key(data, password=None)
    except (ValueError, TypeError) as exc:
        raise CredentialError(f"{path} is not a valid OpenSSH private key: {exc}") from None
    if not isinstance(key, Ed25519PrivateKey):  # the header said ed25519; the body did not
        raise CredentialError(f"{path} is not a valid ssh-ed25519 private key")
    return key


def generate_keypair(
    path: Path | None = None, *, comment: str | None = None, overwrite: bool = False
) -> Ed25519PrivateKey:
    """Make a new key and write ``path`` (OpenSSH PEM, 0600) and ``path.pub`` (one line, 0644).

    Default path :func:`wirekit_key_path`; default comment ``wirekit@<host>``,
    so the line is recognisable in an ``authorized_keys`` file. Refuses to
    replace either file unless ``overwrite`` is true: losing a key can lock
    its owner out of every server that trusted it.
    """
    path = wirekit_key_path() if path is None else Path(path)
    pub_path = path.with_name(path.name + ".pub")
    if not overwrite:
        for existing in (path, pub_path):
            if existing.exists():
                raise CredentialError(
                    f"{existing} already exists; refusing to overwrite a key "
                    "(remove it first or choose another file)"
                )
    if comment is None:
        comment = f"wirekit@{socket.gethostname()}"
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    key = Ed25519PrivateKey.generate()
    private = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.OpenSSH,
        serialization.NoEncryption(),
    )
    try:
        atomic_write(path, private, mode=0o600, overwrite=overwrite)
    except FileExistsError:
        raise CredentialError(f"{path} already exists; refusing to overwrite a key") from None
    atomic_write(pub_path, (public_key_line(key.public_key(), comment) + "\n").encode(), mode=0o644)
    return key


def public_key_line(public_key: Ed25519PublicKey, comment: str = "") -> str:
    """The ``ssh-ed25519 AAAA... comment`` line of ``.pub`` and ``authorized_keys`` files."""
    from cryptography.hazmat.primitives import serialization

    line = public_key.public_bytes(
        serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
    ).decode("ascii")
    comment = " ".join(comment.split())  # a newline would start a second, bogus line
    return f"{line} {comment}" if comment else line


def fingerprint(public_key: Ed25519PublicKey) -> str:
    """``SHA256:<base64, no padding>`` of the key, as ``ssh-keygen -l`` prints it."""
    from cryptography.hazmat.primitives import serialization

    blob = public_key.public_bytes(
        serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
    )
    digest = hashlib.sha256(base64.b64decode(blob.split()[1])).digest()
    return "SHA256:" + base64.b64encode(digest).decode("ascii").rstrip("=")


def sign(private_key: Ed25519PrivateKey, message: bytes) -> bytes:
    """Sign :data:`SIGNATURE_CONTEXT` + ``message``; 64 bytes."""
    return private_key.sign(SIGNATURE_CONTEXT + message)


def verify(public_key: Ed25519PublicKey, signature: bytes, message: bytes) -> bool:
    """True if ``signature`` is :func:`sign` of ``message`` by ``public_key``.

    Never raises on a bad or malformed signature: a verifier that can be made
    to throw is one ``except`` clause away from letting a peer in.
    """
    from cryptography.exceptions import InvalidSignature

    try:
        public_key.verify(bytes(signature), SIGNATURE_CONTEXT + bytes(message))
    except (InvalidSignature, ValueError, TypeError):
        return False
    return True


def _is_encrypted(path: Path) -> bool:
    try:
        return _peek(path, path.read_bytes())[0] != "none"
    except (OSError, CredentialError):
        return False


def _peek(path: Path, data: bytes) -> tuple[str, str]:
    """Read the cipher name and key type from the unencrypted header of an OpenSSH key.

    cryptography reports an encrypted key and a wrong type only as generic
    errors, and needs the bcrypt module to even look at an encrypted one;
    the header says both plainly.
    """
    text = data.strip()
    if text.startswith(b"ssh-") or text.startswith(b"ecdsa-"):
        raise CredentialError(f"{path} is a public key; give the private key file (without .pub)")
    if not (text.startswith(_BEGIN) and text.endswith(_END)):
        first = text.split(b"\n", 1)[0].decode("ascii", "replace").strip("- ")
        kind = f" (it is a {first!r})" if first.startswith("BEGIN ") else ""
        raise CredentialError(f"{path} is not an OpenSSH-format private key{kind}; {_MAKE_ONE}")
    try:
        blob = base64.b64decode(b"".join(text[len(_BEGIN) : -len(_END)].split()), validate=True)
        if not blob.startswith(_MAGIC):
            raise ValueError("bad magic")
        fields, pos = [], len(_MAGIC)
        for _ in range(3):  # cipher name, kdf name, kdf options
            value, pos = _ssh_string(blob, pos)
            fields.append(value)
        pos += 4  # number of keys
        public, pos = _ssh_string(blob, pos)
        key_type, _ = _ssh_string(public, 0)
        return fields[0].decode("ascii"), key_type.decode("ascii")
    except (ValueError, binascii.Error, struct.error, UnicodeDecodeError):
        raise CredentialError(f"{path} is a damaged OpenSSH private key") from None


def _ssh_string(blob: bytes, pos: int) -> tuple[bytes, int]:
    (length,) = struct.unpack_from(">I", blob, pos)
    end = pos + 4 + length
    if end > len(blob):
        raise ValueError("truncated")
    return blob[pos + 4 : end], end
