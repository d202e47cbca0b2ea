"""TLS options shared by the secure services' commands.

Server: ``--tls auto`` (a self-signed certificate made once in the config
dir) or ``--tls-cert FILE --tls-key FILE``. Client: ``--accept-new`` and
``--known-hosts FILE`` for pinning; :func:`terminal_confirm` asks yes/no on
a terminal when a server is not known yet (docs/security.md, "TLS and
pinning").
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import ListenError
from ..neterrors import printable
from .arguments import UsageError

if TYPE_CHECKING:  # ssl and cryptography load only when TLS is asked for
    import ssl

__all__ = [
    "add_client_tls_arguments",
    "add_server_tls_arguments",
    "server_tls",
    "terminal_confirm",
]


def add_server_tls_arguments(parser: argparse.ArgumentParser) -> None:
    """``--tls auto`` | ``--tls-cert FILE --tls-key FILE``."""
    parser.add_argument(
        "--tls",
        choices=["auto"],
        default=None,
        help="auto: serve TLS with a self-signed certificate made once in the config dir "
        "(its fingerprint is printed; clients pin it)",
    )
    parser.add_argument(
        "--tls-cert", type=Path, metavar="FILE", help="serve TLS with this PEM certificate"
    )
    parser.add_argument(
        "--tls-key", type=Path, metavar="FILE", help="the PEM private key of --tls-cert"
    )


def server_tls(args: argparse.Namespace) -> tuple[ssl.SSLContext | None, str | None]:
    """The server context and its fingerprint from the options, or ``(None, None)``.

    Prints nothing. Bad combinations are UsageError (exit 2); files that
    cannot be used are ListenError (exit 3: could not start).
    """
    from ..security.paths import CredentialError
    from ..security.tlscert import auto_certificate, load_certificate

    auto = getattr(args, "tls", None) == "auto"
    cert, key = getattr(args, "tls_cert", None), getattr(args, "tls_key", None)
    if auto and (cert or key):
        raise UsageError("--tls auto makes its own certificate: drop --tls-cert/--tls-key")
    if bool(cert) != bool(key):
        raise UsageError("--tls-cert and --tls-key go together")
    try:
        if auto:
            cert, key, _ = auto_certificate()
        if cert is None or key is None:
            return None, None
        context, fingerprint = load_certificate(Path(cert), Path(key))
    except CredentialError as exc:
        raise ListenError(str(exc)) from None
    return context, fingerprint


def add_client_tls_arguments(parser: argparse.ArgumentParser) -> None:
    """``--accept-new`` and ``--known-hosts FILE``."""
    parser.add_argument(
        "--accept-new",
        action="store_true",
        help="tls://: pin an unknown server's fingerprint without asking",
    )
    parser.add_argument(
        "--known-hosts",
        type=Path,
        metavar="FILE",
        help="tls://: pinned fingerprints (default known_hosts in the config dir)",
    )


def terminal_confirm() -> Callable[[str], bool] | None:
    """A yes/no question on the terminal, or None when stdin or stderr is not one."""
    if not (sys.stdin.isatty() and sys.stderr.isatty()):
        return None

    def ask(question: str) -> bool:
        sys.stderr.write(f"wirekit: {printable(question)} [yes/no] ")
        sys.stderr.flush()
        try:
            answer = sys.stdin.readline()
        except (OSError, KeyboardInterrupt):
            return False
        return answer.strip().lower() in ("yes", "y")

    return ask
