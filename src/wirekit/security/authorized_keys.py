"""Read an OpenSSH ``authorized_keys`` file: the Ed25519 keys a server lets in.

The file is shared with sshd, so it holds things wirekit does not use: RSA
and ECDSA keys, security-key (``sk-``) keys, certificates. Those are counted
in :attr:`AuthorizedKeys.skipped`, not treated as errors: the same file must
keep working for ssh. A line that is not a key at all is skipped too, and
reported with its line number in :attr:`AuthorizedKeys.warnings`, so one
typo does not lock everybody out and is still visible in the server log.

A key line with leading options (``from="..."``, ``command="..."``,
``restrict``, ...) is refused: skipped with a warning naming the line.
wirekit cannot honour those options, and a key that sshd restricts to one
command must not get full remote exec through wirekit (docs/security.md,
"Keys"). Give wirekit its own line for the key, without options.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from .keys import fingerprint
from .paths import CredentialError, read_trusted_file

__all__ = [
    "AuthorizedKey",
    "AuthorizedKeys",
    "default_authorized_keys_path",
    "load_authorized_keys",
    "parse_authorized_keys",
]

# ssh-rsa, ssh-ed25519, ecdsa-sha2-nistp256, sk-ssh-ed25519@openssh.com, *-cert-v01@openssh.com
_KEY_TYPE = re.compile(r"(?:ssh|ecdsa|sk)-[A-Za-z0-9@.+-]+")


@dataclass(frozen=True, slots=True)
class AuthorizedKey:
    """One accepted Ed25519 key and where it came from."""

    public_key: Ed25519PublicKey
    comment: str
    line: int

    @property
    def fingerprint(self) -> str:
        """``SHA256:...`` as ``ssh-keygen -l`` prints it."""
        return fingerprint(self.public_key)


@dataclass(frozen=True, slots=True)
class AuthorizedKeys:
    """The result of reading a file: usable keys, skipped types, warnings."""

    keys: tuple[AuthorizedKey, ...] = ()
    #: Key type -> number of lines of that (unsupported) type.
    skipped: dict[str, int] = field(default_factory=dict)
    #: ``"<source> line N: ..."`` for each line that could not be read.
    warnings: tuple[str, ...] = ()

    def find(self, public_key: Ed25519PublicKey) -> AuthorizedKey | None:
        """The first entry for ``public_key``, or None if it is not authorized."""
        raw = public_key.public_bytes_raw()
        for entry in self.keys:
            if entry.public_key.public_bytes_raw() == raw:
                return entry
        return None


def default_authorized_keys_path() -> Path:
    """``~/.ssh/authorized_keys``, the file sshd reads too."""
    return Path.home() / ".ssh" / "authorized_keys"


def load_authorized_keys(path: Path | None = None) -> AuthorizedKeys:
    """Read ``path`` (default ``~/.ssh/authorized_keys``).

    Refuses (:class:`CredentialError`) a missing file, and one group or
    others can write, as sshd does: whoever can edit it can let themselves in.
    """
    path = default_authorized_keys_path() if path is None else Path(path)
    try:
        data = read_trusted_file(path)
    except FileNotFoundError:
        raise CredentialError(f"no authorized_keys file at {path}") from None
    return parse_authorized_keys(data.decode("utf-8", "replace"), source=str(path))


def parse_authorized_keys(text: str, source: str = "authorized_keys") -> AuthorizedKeys:
    """Parse the text of an ``authorized_keys`` file; never raises on a bad line."""
    keys: list[AuthorizedKey] = []
    skipped: Counter[str] = Counter()
    warnings: list[str] = []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        try:
            entry = _parse_line(line, number)
        except ValueError as exc:
            warnings.append(f"{source} line {number}: {exc}; line skipped")
            continue
        if isinstance(entry, str):
            skipped[entry] += 1
        else:
            keys.append(entry)
    return AuthorizedKeys(tuple(keys), dict(skipped), tuple(warnings))


def _parse_line(line: str, number: int) -> AuthorizedKey | str:
    """An accepted key, or the name of an unsupported key type; ValueError if malformed."""
    options: tuple[str, ...] = ()
    if not _KEY_TYPE.fullmatch(line.split(None, 1)[0]):
        text, line = _split_options(line)
        options = tuple(_split_unquoted(text, ","))
    fields = line.split(None, 2)
    if not fields or not _KEY_TYPE.fullmatch(fields[0]):
        raise ValueError("not a key line (expected 'ssh-ed25519 AAAA... [comment]')")
    key_type = fields[0]
    if key_type != "ssh-ed25519":
        return key_type
    if len(fields) < 2:
        raise ValueError("ssh-ed25519 without key data")
    if any(opt.split("=", 1)[0].lower() == "cert-authority" for opt in options):
        raise ValueError("cert-authority keys are not supported")
    if options:
        names = ", ".join(sorted({opt.split("=", 1)[0].lower() for opt in options}))
        raise ValueError(
            f"key with options ({names}) refused: wirekit cannot enforce sshd options, "
            "so a restricted key would get full access; add the key on a line of its own "
            "without options"
        )
    try:
        key = serialization.load_ssh_public_key(f"ssh-ed25519 {fields[1]}".encode("ascii"))
    except (ValueError, UnicodeEncodeError):
        raise ValueError("damaged ssh-ed25519 key data") from None
    if not isinstance(key, Ed25519PublicKey):  # pragma: no cover - the type was checked above
        raise ValueError("key data is not ssh-ed25519")
    comment = fields[2] if len(fields) > 2 else ""
    return AuthorizedKey(key, comment, number)


def _split_options(line: str) -> tuple[str, str]:
    """Split ``opt,opt="a b" rest`` at the first whitespace outside double quotes."""
    parts = _split_unquoted(line, None, maxsplit=1)
    if len(parts) < 2:
        raise ValueError("not a key line (expected 'ssh-ed25519 AAAA... [comment]')")
    return parts[0], parts[1].lstrip()


def _split_unquoted(text: str, sep: str | None, maxsplit: int = -1) -> list[str]:
    """Split at ``sep`` (None: any whitespace) outside ``"..."``; ``\\"`` escapes a quote."""
    parts: list[str] = []
    start, quoted, i = 0, False, 0
    while i < len(text):
        char = text[i]
        if quoted and char == "\\":
            i += 2
            continue
        if char == '"':
            quoted = not quoted
        elif (
            not quoted
            and (char == sep or (sep is None and char.isspace()))
            and (maxsplit < 0 or len(parts) < maxsplit)
        ):
            parts.append(text[start:i])
            start = i + 1
        i += 1
    if quoted:
        raise ValueError("unterminated quote in options")
    parts.append(text[start:])
    return parts
