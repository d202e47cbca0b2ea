"""Credentials for wirekit's authenticated services: keys, tokens, pinned certificates.

Primitives only; the exec protocol decides when each one is used:

- :mod:`.paths`: the user's config dir (0700), atomic 0600 writes, and reads
  that refuse secret files others can read;
- :mod:`.keys`: OpenSSH-format Ed25519 keys, fingerprints, domain-separated
  signatures;
- :mod:`.authorized_keys`: the keys a server accepts, from sshd's own file;
- :mod:`.token`: the shared-token file and its HMAC proofs;
- :mod:`.known_hosts`: TLS certificate pins, trust on first use;
- :mod:`.tlscert`: the server's certificate (``--tls auto`` or given files);
- :mod:`.credentials`: the above as the authentication handshake uses them
  (docs/protocol.md §9); imported on its own, not re-exported here.

Names are imported on first use (``wirekit._lazy``): a token client never
loads the ``cryptography`` package, which keys and certificates need.
"""

from typing import TYPE_CHECKING

from .._lazy import lazy_exports

if TYPE_CHECKING:
    from .authorized_keys import (
        AuthorizedKey,
        AuthorizedKeys,
        default_authorized_keys_path,
        load_authorized_keys,
        parse_authorized_keys,
    )
    from .keys import (
        SIGNATURE_CONTEXT,
        default_key_path,
        fingerprint,
        generate_keypair,
        load_private_key,
        public_key_line,
        sign,
        verify,
        wirekit_key_path,
    )
    from .known_hosts import (
        ChangedFingerprint,
        HostStatus,
        KnownHosts,
        cert_fingerprint,
        default_known_hosts_path,
        fingerprint_hex,
        normalize_hostport,
    )
    from .paths import (
        CredentialError,
        atomic_write,
        config_dir,
        locked_dir,
        read_secret_file,
        read_trusted_file,
    )
    from .token import (
        MIN_TOKEN_BITS,
        TOKEN_CONTEXT,
        check_token,
        check_token_proof,
        default_token_path,
        ensure_token,
        load_token,
        token_proof,
    )

__getattr__, __dir__ = lazy_exports(
    __name__,
    globals(),
    {
        ".authorized_keys": (
            "AuthorizedKey",
            "AuthorizedKeys",
            "default_authorized_keys_path",
            "load_authorized_keys",
            "parse_authorized_keys",
        ),
        ".keys": (
            "SIGNATURE_CONTEXT",
            "default_key_path",
            "fingerprint",
            "generate_keypair",
            "load_private_key",
            "public_key_line",
            "sign",
            "verify",
            "wirekit_key_path",
        ),
        ".known_hosts": (
            "ChangedFingerprint",
            "HostStatus",
            "KnownHosts",
            "cert_fingerprint",
            "default_known_hosts_path",
            "fingerprint_hex",
            "normalize_hostport",
        ),
        ".paths": (
            "CredentialError",
            "atomic_write",
            "config_dir",
            "locked_dir",
            "read_secret_file",
            "read_trusted_file",
        ),
        ".token": (
            "MIN_TOKEN_BITS",
            "TOKEN_CONTEXT",
            "check_token",
            "check_token_proof",
            "default_token_path",
            "ensure_token",
            "load_token",
            "token_proof",
        ),
    },
)

__all__ = [
    "MIN_TOKEN_BITS",
    "SIGNATURE_CONTEXT",
    "TOKEN_CONTEXT",
    "AuthorizedKey",
    "AuthorizedKeys",
    "ChangedFingerprint",
    "CredentialError",
    "HostStatus",
    "KnownHosts",
    "atomic_write",
    "cert_fingerprint",
    "check_token",
    "check_token_proof",
    "config_dir",
    "default_authorized_keys_path",
    "default_key_path",
    "default_known_hosts_path",
    "default_token_path",
    "ensure_token",
    "fingerprint",
    "fingerprint_hex",
    "generate_keypair",
    "load_authorized_keys",
    "load_private_key",
    "load_token",
    "locked_dir",
    "normalize_hostport",
    "parse_authorized_keys",
    "public_key_line",
    "read_secret_file",
    "read_trusted_file",
    "sign",
    "token_proof",
    "verify",
    "wirekit_key_path",
]
