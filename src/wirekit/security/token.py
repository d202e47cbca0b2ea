"""The shared token: a file both ends read, and an HMAC proof that never shows it.

With no auth configured, ``wirekit serve exec`` makes a token file in the
config dir (0600) and a client on the same machine, same user, finds it
there: local use stays one command, and the service is still closed to
everyone who cannot read the file.

The token itself never crosses the wire. Each side proves it knows the
token with :func:`token_proof`, an HMAC-SHA256 over a fixed context string
and the handshake's parts (nonces, roles, ...). Every item is length-prefixed,
so ``(b"ab", b"c")`` and ``(b"a", b"bc")`` give different proofs: a peer
cannot shift bytes from one field into the next to reuse a proof. The
HMAC key is the token text as UTF-8 (not its hex decoding), so any token a
user types works the same way on both ends.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import string
import struct
from pathlib import Path

from .paths import CredentialError, atomic_write, config_dir, read_secret_file

__all__ = [
    "MIN_TOKEN_BITS",
    "TOKEN_CONTEXT",
    "check_token",
    "check_token_proof",
    "default_token_path",
    "ensure_token",
    "load_token",
    "token_proof",
]

#: Domain separation: a proof made for this use can never pass for an HMAC made for another.
TOKEN_CONTEXT = b"wirekit-token-v1"
#: Least entropy a token must be able to carry: 128 bits, i.e. 32 hex digits.
MIN_TOKEN_BITS = 128
#: Bytes of randomness in a generated token (written as 64 hex digits).
TOKEN_BYTES = 32

_HEX = re.compile(r"[0-9a-fA-F]+")
_BASE64 = re.compile(r"[A-Za-z0-9+/_-]+={0,2}")
_PRINTABLE = set(string.printable) - set(string.whitespace) | {" "}


def default_token_path() -> Path:
    """``<config dir>/token``: where the server writes the token and a local client looks."""
    return config_dir() / "token"


def ensure_token(path: Path | None = None) -> str:
    """Return the token in ``path``, creating it (32 random bytes, hex, 0600) if absent.

    Creation cannot clobber a token another process made a moment earlier:
    the loser of that race reads the winner's token instead.
    """
    path = default_token_path() if path is None else Path(path)
    token = secrets.token_hex(TOKEN_BYTES)
    try:
        atomic_write(path, (token + "\n").encode("ascii"), overwrite=False)
    except FileExistsError:
        return load_token(path)
    return token


def load_token(path: Path | None = None) -> str:
    """Read and check the token in ``path`` (default: the config dir's ``token``).

    Refuses a group/other-readable file, an empty file and a token too short
    to be secret; surrounding whitespace (a trailing newline) is ignored.
    """
    path = default_token_path() if path is None else Path(path)
    try:
        data = read_secret_file(path)
    except FileNotFoundError:
        raise CredentialError(
            f"no token file at {path} (a local `wirekit serve exec` creates one)"
        ) from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise CredentialError(f"token file {path} is not UTF-8 text") from None
    return check_token(text, f"token file {path}")


def check_token(token: str, source: str = "token") -> str:
    """Return ``token`` stripped, or raise if it is empty or too weak to be a secret.

    True entropy cannot be measured; this bounds it by the alphabet in use
    (hex 4 bits, base64 6 bits, other printable text 6.5 bits a character)
    and asks for :data:`MIN_TOKEN_BITS`. It stops mistakes like a token of
    ``secret``; it cannot tell a random string from a dictionary word.
    """
    token = token.strip()
    if not token:
        raise CredentialError(f"{source} is empty")
    if not set(token) <= _PRINTABLE:
        raise CredentialError(f"{source} contains control or non-ASCII characters")
    if _HEX.fullmatch(token):
        bits = 4.0 * len(token)
    elif _BASE64.fullmatch(token):
        bits = 6.0 * len(token.rstrip("="))
    else:
        bits = 6.5 * len(token)
    if bits < MIN_TOKEN_BITS:
        need = MIN_TOKEN_BITS // 8
        raise CredentialError(
            f"{source} is too short: {len(token)} characters carry at most {int(bits)} bits, "
            f"a token needs {MIN_TOKEN_BITS} ({need} random bytes, e.g. {2 * need} hex digits)"
        )
    return token


def token_proof(token: str, *parts: bytes) -> bytes:
    """HMAC-SHA256 keyed by ``token`` of :data:`TOKEN_CONTEXT` and ``parts``, each length-prefixed.

    Each item is preceded by its length as 8 bytes big-endian; the encoding is
    prefix-free, so two different part lists never feed the HMAC the same bytes.
    """
    mac = hmac.new(token.encode("utf-8"), digestmod=hashlib.sha256)
    for item in (TOKEN_CONTEXT, *parts):
        mac.update(struct.pack(">Q", len(item)))
        mac.update(item)
    return mac.digest()


def check_token_proof(token: str, proof: bytes, *parts: bytes) -> bool:
    """True if ``proof`` is :func:`token_proof` of ``parts``; the compare is constant-time."""
    return hmac.compare_digest(token_proof(token, *parts), proof)
