"""The server's TLS certificate: made once for ``--tls auto``, or loaded from given files.

``--tls auto`` needs no CA: the server makes a self-signed ECDSA P-256
certificate the first time, keeps it in the config dir (key 0600) and
prints its SHA-256 fingerprint; clients pin that fingerprint on first use
(:mod:`.known_hosts`). The certificate must therefore stay the same across
restarts, so it is made once, under a lock on the config dir (two servers
starting together must not make two), and valid for 20 years: an expiry
would change the fingerprint and set off every client's changed-pin alarm.

Contexts are TLS 1.3 only: both ends are wirekit, so nothing older is
needed, and 1.3 encrypts the certificate itself. The client context checks
no CA and no host name on purpose: trust comes from the pin, which is
checked after the handshake (docs/security.md, "TLS and pinning").

The SHA-256 of the certificate is also the channel binding of the
authentication transcript (protocol.md §9): a server context made here
carries it as :attr:`ServerContext.certificate_der`.
"""

from __future__ import annotations

import datetime
import os
import socket
import ssl
import stat
from pathlib import Path

from .known_hosts import cert_fingerprint
from .paths import CredentialError, atomic_write, locked_dir
from .paths import config_dir as _config_dir

__all__ = [
    "CERT_NAME",
    "KEY_NAME",
    "ServerContext",
    "auto_certificate",
    "certificate_fingerprint",
    "client_context",
    "load_certificate",
    "read_certificate",
    "server_context",
]

#: File names of the ``--tls auto`` certificate and key in the config dir.
CERT_NAME = "tls-cert.pem"
KEY_NAME = "tls-key.pem"
#: How long an auto certificate is valid; see the module docstring for why so long.
VALIDITY = datetime.timedelta(days=20 * 365)


class ServerContext(ssl.SSLContext):
    """A server SSLContext that knows its own certificate (for channel binding)."""

    #: DER bytes of the leaf certificate this context presents.
    certificate_der: bytes = b""


def certificate_fingerprint(cert_der: bytes) -> str:
    """``SHA256:<base64, no padding>`` of a DER certificate, as known_hosts stores it."""
    return cert_fingerprint(cert_der)


def auto_certificate(config_dir: Path | None = None) -> tuple[Path, Path, str]:
    """Create once (key 0600, in the config dir) and return ``(cert, key, fingerprint)``."""
    directory = _config_dir() if config_dir is None else Path(config_dir)
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    cert_path, key_path = directory / CERT_NAME, directory / KEY_NAME
    with locked_dir(directory):
        if not (cert_path.exists() and key_path.exists()):
            cert_pem, key_pem = _make_self_signed()
            atomic_write(key_path, key_pem, mode=0o600)
            atomic_write(cert_path, cert_pem, mode=0o644)
    _check_key_mode(key_path)
    return cert_path, key_path, certificate_fingerprint(read_certificate(cert_path))


def load_certificate(cert: Path, key: Path) -> tuple[ssl.SSLContext, str]:
    """A server context for ``cert``/``key`` and the certificate's fingerprint.

    Bad files raise :class:`CredentialError` with one line naming the file.
    """
    context = server_context(cert, key)
    assert isinstance(context, ServerContext)
    return context, certificate_fingerprint(context.certificate_der)


def server_context(cert: Path, key: Path) -> ssl.SSLContext:
    """A TLS 1.3 server context for the given PEM files (a :class:`ServerContext`)."""
    cert, key = Path(cert), Path(key)
    der = read_certificate(cert)
    _check_key_mode(key)
    context = ServerContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_3
    try:
        context.load_cert_chain(cert, key)
    except ssl.SSLError as exc:
        raise CredentialError(
            f"cannot use {key} with {cert}: {exc.reason or exc} "
            "(is it the certificate's private key, in PEM?)"
        ) from None
    except OSError as exc:
        raise CredentialError(f"cannot read {key}: {exc.strerror or exc}") from None
    context.certificate_der = der
    return context


def client_context() -> ssl.SSLContext:
    """A TLS 1.3 client context without CA or host-name checks: trust is by pinning."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.minimum_version = ssl.TLSVersion.TLSv1_3
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


def read_certificate(path: Path) -> bytes:
    """The DER bytes of the first (leaf) certificate of a PEM file."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise CredentialError(f"cannot read certificate {path}: {exc.strerror or exc}") from None
    # cryptography is imported where certificates are read or made, so that a
    # client, which needs neither, does not load it.
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    try:
        certs = x509.load_pem_x509_certificates(data)
    except ValueError:
        raise CredentialError(f"{path} is not a PEM certificate") from None
    return certs[0].public_bytes(serialization.Encoding.DER)


def _check_key_mode(path: Path) -> None:
    """Refuse a private key others may read (group access is left to the admin, e.g. ssl-cert)."""
    try:
        info = os.stat(path)
    except OSError as exc:
        raise CredentialError(f"cannot read key {path}: {exc.strerror or exc}") from None
    if os.name == "posix" and info.st_mode & 0o007:
        raise CredentialError(
            f"permissions {stat.S_IMODE(info.st_mode):04o} for {path} are too open "
            f"(others can read the TLS key); run: chmod o-rwx {path}"
        )


def _make_self_signed() -> tuple[bytes, bytes]:
    """A fresh ECDSA P-256 key and a self-signed certificate for it, both PEM."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    host = socket.gethostname() or "localhost"
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"wirekit {host}"[:64])])
    now = datetime.datetime.now(datetime.UTC)
    names: list[x509.GeneralName] = [x509.DNSName("localhost")]
    if host != "localhost" and host.isascii():
        names.append(x509.DNSName(host))
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))  # clocks a little behind
        .not_valid_after(now + VALIDITY)
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return cert.public_bytes(serialization.Encoding.PEM), key_pem
