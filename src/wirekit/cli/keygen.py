"""``wirekit keygen`` (make a client key) and ``wirekit known-hosts`` (list or forget pins).

keygen writes an OpenSSH-format Ed25519 key, by default wirekit's own
(``<config dir>/id_ed25519``, used when ``~/.ssh/id_ed25519`` does not
exist), and prints the line to add to a server's ``authorized_keys``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from ..neterrors import printable

__all__ = ["add_known_hosts_parser", "add_parser", "run_keygen", "run_known_hosts"]


def add_parser(commands: Any) -> None:
    """``wirekit keygen [-f FILE] [-C COMMENT] [--force]``."""
    parser = commands.add_parser(
        "keygen",
        help="make an Ed25519 key for exec/files clients",
        description="Write a new OpenSSH-format Ed25519 private key (0600) and its .pub line "
        "(0644), and print the line to add to the server's ~/.ssh/authorized_keys. Default "
        "file: wirekit's own key in the config dir, which clients use when "
        "~/.ssh/id_ed25519 does not exist.",
    )
    parser.add_argument(
        "-f",
        "--file",
        type=Path,
        metavar="FILE",
        help="private key file (default: id_ed25519 in the config dir)",
    )
    parser.add_argument(
        "-C", "--comment", metavar="COMMENT", help="comment on the .pub line (default user@host)"
    )
    parser.add_argument(
        "--force", action="store_true", help="replace an existing key (servers trusting it lose it)"
    )
    parser.set_defaults(run=run_keygen)


def run_keygen(args: argparse.Namespace) -> int:
    # cryptography loads only for this command, not for every wirekit command line.
    from ..security.keys import fingerprint, generate_keypair, wirekit_key_path

    path = Path(args.file).expanduser() if args.file else wirekit_key_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    key = generate_keypair(path, comment=args.comment, overwrite=args.force)
    pub_path = path.with_name(path.name + ".pub")
    line = pub_path.read_text(encoding="utf-8").strip()  # exactly what generate_keypair wrote
    print(f"wirekit: wrote {printable(path)} (private, 0600) and {printable(pub_path)}")
    print(f"fingerprint {fingerprint(key.public_key())}")
    print("add this line to ~/.ssh/authorized_keys on the server:")
    print(line)
    return 0


def add_known_hosts_parser(commands: Any) -> None:
    """``wirekit known-hosts [--forget HOST:PORT] [--known-hosts FILE]``."""
    parser = commands.add_parser(
        "known-hosts",
        help="list pinned TLS fingerprints, or forget one",
        description="List the TLS certificate fingerprints clients have pinned, or forget the "
        "pin of one server (after it made a new certificate on purpose).",
    )
    parser.add_argument("--forget", metavar="HOST:PORT", help="remove the pin of this server")
    parser.add_argument(
        "--known-hosts",
        type=Path,
        metavar="FILE",
        help="the pin file (default known_hosts in the config dir)",
    )
    parser.set_defaults(run=run_known_hosts)


def run_known_hosts(args: argparse.Namespace) -> int:
    from ..security.known_hosts import KnownHosts, normalize_hostport

    store = KnownHosts(args.known_hosts)
    if args.forget is not None:
        host = normalize_hostport(args.forget)
        if not store.forget(host):
            print(f"wirekit: no pin for {printable(host)} in {store.path}", file=sys.stderr)
            return 1
        print(f"wirekit: forgot {printable(host)}; the next connection asks again")
        return 0
    if store.path.exists():
        for line in store.path.read_text(encoding="utf-8", errors="replace").splitlines():
            if line.strip() and not line.startswith("#"):
                print(printable(line))
    return 0
