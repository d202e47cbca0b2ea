"""Pinned TLS certificate fingerprints: trust on first use, then refuse a change.

``wirekit serve --tls auto`` uses a self-signed certificate, which no CA can
vouch for. So the client does what ssh does: the first time it meets a
server it records the certificate's fingerprint in ``<config dir>/known_hosts``;
afterwards a different fingerprint is refused with
:class:`ChangedFingerprint`, whose message says how to accept the new one on
purpose. The file is plain text, one pin a line, so a user can read and
edit it::

    # comments and blank lines are kept
    example.org:7443 SHA256:47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU
    [::1]:7443 SHA256:uQ0BzXOp2SdmN0BLLLw9ic3H3MK8Zm6qsZrxvkAmbtU

Hosts are compared in a canonical form: names lower-cased, IPv6 addresses
compressed and bracketed, so ``[0:0::1]:7443`` and ``[::1]:7443`` are one host.
A line for the host whose fingerprint is damaged still counts as a pin that
does not match: a corrupt entry must fail closed, not turn into "unknown"
and be silently re-pinned.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import ipaddress
import shlex
from enum import StrEnum
from pathlib import Path

from ..errors import AddressError, AuthenticationFailed
from .paths import atomic_write, config_dir, locked_dir, read_trusted_file

__all__ = [
    "ChangedFingerprint",
    "HostStatus",
    "KnownHosts",
    "cert_fingerprint",
    "default_known_hosts_path",
    "fingerprint_hex",
    "normalize_hostport",
]

_HEADER = "# wirekit known hosts: HOST:PORT and the SHA-256 fingerprint of its TLS certificate\n"


class HostStatus(StrEnum):
    """What the pin store says about a host and the fingerprint it showed."""

    KNOWN = "known"  # pinned, and the fingerprint matches
    UNKNOWN = "unknown"  # never seen: nothing to compare with
    CHANGED = "changed"  # pinned to a different fingerprint: refuse


class ChangedFingerprint(AuthenticationFailed):
    """A server showed a certificate other than the pinned one."""

    def __init__(
        self, hostport: str, old: str, new: str, path: Path, line: int | None = None
    ) -> None:
        self.hostport = hostport
        self.old = old
        self.new = new
        self.path = path
        self.line = line
        where = f"delete line {line} of" if line else "edit"
        store = (
            ""
            if path == default_known_hosts_path(create=False)
            else (f" --known-hosts {shlex.quote(str(path))}")
        )
        super().__init__(
            f"the TLS certificate of {hostport} has changed: pinned {old}, now {new}; "
            "someone may be intercepting the connection, or the server made a new "
            "certificate. If you trust the new one, run "
            f"`wirekit known-hosts --forget {shlex.quote(hostport)}{store}` "
            f"or {where} {shlex.quote(str(path))}"
        )


def default_known_hosts_path(*, create: bool = True) -> Path:
    """``<config dir>/known_hosts`` (``create``: make the config dir if missing)."""
    return config_dir(create=create) / "known_hosts"


def cert_fingerprint(der: bytes) -> str:
    """``SHA256:<base64, no padding>`` of a DER certificate, in OpenSSH's style."""
    digest = hashlib.sha256(der).digest()
    return "SHA256:" + base64.b64encode(digest).decode("ascii").rstrip("=")


def fingerprint_hex(fingerprint: str) -> str:
    """The colon-hex form of a ``SHA256:`` fingerprint (``AB:CD:...``), as openssl prints it."""
    return _decode_fingerprint(fingerprint).hex(":").upper()


def normalize_hostport(hostport: str) -> str:
    """The canonical ``HOST:PORT``: lower-case name, compressed ``[IPv6]``, plain port number."""
    text = hostport.strip()
    if text.startswith("["):
        host, sep, port = text[1:].partition("]:")
        if not sep:
            raise AddressError(f"bad host {hostport!r}: expected [IPv6]:PORT")
        address, _, zone = host.partition("%")
        try:
            host = ipaddress.IPv6Address(address).compressed + (f"%{zone}" if zone else "")
        except ValueError:
            raise AddressError(f"bad host {hostport!r}: {host!r} is not an IPv6 address") from None
        host = f"[{host}]"
    else:
        host, sep, port = text.rpartition(":")
        if ":" in host:
            raise AddressError(f"bad host {hostport!r}: write IPv6 addresses in brackets")
        if not sep or not host or any(c.isspace() or c in "[]/" for c in host):
            raise AddressError(f"bad host {hostport!r}: expected HOST:PORT")
        host = host.lower()
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise AddressError(f"bad host {hostport!r}: port must be 1-65535")
    return f"{host}:{int(port)}"


class KnownHosts:
    """The pin store file. Every call reads the file, so edits made meanwhile count."""

    def __init__(self, path: Path | None = None) -> None:
        self.path = default_known_hosts_path() if path is None else Path(path)

    def lookup(self, hostport: str) -> str | None:
        """The fingerprint pinned for ``hostport`` (the first one if several), or None."""
        pins = self._pins(normalize_hostport(hostport))
        return pins[0] if pins else None

    def check(self, hostport: str, fingerprint: str) -> HostStatus:
        """Compare ``fingerprint`` with the pins; any matching pin makes it known.

        A malformed ``fingerprint`` raises ValueError: it is the caller's bug,
        and answering CHANGED or UNKNOWN to it would hide that.
        """
        fingerprint = _canonical(fingerprint)
        pins = self._pins(normalize_hostport(hostport))
        if not pins:
            return HostStatus.UNKNOWN
        return HostStatus.KNOWN if fingerprint in pins else HostStatus.CHANGED

    def pin(self, hostport: str, fingerprint: str) -> HostStatus:
        """Trust on first use: remember an unknown host, raise on a changed one.

        Returns KNOWN, or UNKNOWN when the pin was just written (so the caller
        can print the fingerprint it now trusts).
        """
        status = self.check(hostport, fingerprint)
        if status is HostStatus.UNKNOWN:
            self.remember(hostport, fingerprint)
        elif status is HostStatus.CHANGED:
            old = self.lookup(hostport) or ""
            host = normalize_hostport(hostport)
            raise ChangedFingerprint(host, old, fingerprint, self.path, self.line_of(host))
        return status

    def remember(self, hostport: str, fingerprint: str, *, replace: bool = False) -> None:
        """Pin ``fingerprint`` for ``hostport`` with an atomic rewrite.

        A different existing pin raises :class:`ChangedFingerprint` unless
        ``replace`` is true; then every older line for the host goes and the
        new one takes the first one's place. Other lines and comments stay.
        """
        fingerprint = _canonical(fingerprint)
        host = normalize_hostport(hostport)
        self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        with locked_dir(self.path.parent):
            lines = self._lines()
            found = [i for i, line in enumerate(lines) if _entry(line)[0] == host]
            pins = [_entry(lines[i])[1] for i in found]
            if fingerprint in pins and (not replace or pins == [fingerprint]):
                return
            if pins and not replace:
                raise ChangedFingerprint(host, pins[0], fingerprint, self.path, found[0] + 1)
            new = f"{host} {fingerprint}"
            if found:
                lines[found[0]] = new
                lines = [line for i, line in enumerate(lines) if i not in found[1:]]
            else:
                lines.append(new)
            self._write(lines)

    def forget(self, hostport: str) -> bool:
        """Remove every pin for ``hostport``; False if there was none."""
        host = normalize_hostport(hostport)
        if not self.path.exists():
            return False
        with locked_dir(self.path.parent):
            lines = self._lines()
            kept = [line for line in lines if _entry(line)[0] != host]
            if len(kept) == len(lines):
                return False
            self._write(kept)
            return True

    def line_of(self, hostport: str) -> int | None:
        """The line number (from 1) of the first pin for ``hostport``, or None."""
        host = normalize_hostport(hostport)
        for number, line in enumerate(self._lines(), start=1):
            if _entry(line)[0] == host:
                return number
        return None

    def _pins(self, host: str) -> list[str]:
        return [fp for line in self._lines() for name, fp in [_entry(line)] if name == host]

    def _lines(self) -> list[str]:
        try:
            return read_trusted_file(self.path).decode("utf-8", "replace").splitlines()
        except FileNotFoundError:
            return [_HEADER.rstrip("\n")]

    def _write(self, lines: list[str]) -> None:
        atomic_write(self.path, "".join(line + "\n" for line in lines).encode("utf-8"))


def _entry(line: str) -> tuple[str | None, str]:
    """``(canonical host, fingerprint)`` of a line, or ``(None, "")`` for comments and junk."""
    fields = line.split()
    if not fields or fields[0].startswith("#"):
        return None, ""
    try:
        host = normalize_hostport(fields[0])
    except AddressError:
        return None, ""
    return host, fields[1] if len(fields) > 1 else "(no fingerprint)"


def _canonical(fingerprint: str) -> str:
    """The fingerprint without base64 padding, as :func:`cert_fingerprint` makes it."""
    return "SHA256:" + base64.b64encode(_decode_fingerprint(fingerprint)).decode().rstrip("=")


def _decode_fingerprint(fingerprint: str) -> bytes:
    prefix, _, text = fingerprint.partition(":")
    try:
        if prefix != "SHA256":
            raise ValueError
        digest = base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
    except (ValueError, binascii.Error):
        digest = b""
    if len(digest) != 32:
        raise ValueError(f"bad fingerprint {fingerprint!r}: expected SHA256:<43 base64 characters>")
    return digest
