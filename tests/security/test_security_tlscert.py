"""The server's TLS certificate: made once for --tls auto (key 0600, fingerprint
stable), loaded from given files with one-line errors, and accepted by Python's
ssl for TLS 1.3 over a real loopback connection."""

from __future__ import annotations

import socket
import stat
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from wirekit.security import CredentialError, cert_fingerprint
from wirekit.security.tlscert import (
    CERT_NAME,
    KEY_NAME,
    ServerContext,
    auto_certificate,
    certificate_fingerprint,
    client_context,
    load_certificate,
    read_certificate,
)
from wirekit.security.tlscert import server_context as make_server_context

if TYPE_CHECKING:
    from conftest import Dirs


def test_auto_certificate_created_once_with_safe_modes(dirs: Dirs) -> None:
    cert, key, fingerprint = auto_certificate()
    assert (cert, key) == (dirs.config / CERT_NAME, dirs.config / KEY_NAME)
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert stat.S_IMODE(cert.stat().st_mode) == 0o644
    assert stat.S_IMODE(dirs.config.stat().st_mode) == 0o700
    assert fingerprint == cert_fingerprint(read_certificate(cert))
    before = (cert.read_bytes(), key.read_bytes())
    for _ in range(3):
        assert auto_certificate() == (cert, key, fingerprint)
    assert (cert.read_bytes(), key.read_bytes()) == before


def test_auto_certificate_under_a_race_makes_one(dirs: Dirs) -> None:
    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(lambda _: auto_certificate()[2], range(8)))
    assert len(set(results)) == 1
    assert sorted(p.name for p in dirs.config.iterdir()) == [CERT_NAME, KEY_NAME]


def test_auto_certificate_in_a_given_dir(tmp_path: Path) -> None:
    cert, key, _ = auto_certificate(tmp_path / "srv")
    assert cert.parent == key.parent == tmp_path / "srv"


def test_loaded_context_knows_its_certificate(dirs: Dirs) -> None:
    cert, key, fingerprint = auto_certificate()
    context, loaded = load_certificate(cert, key)
    assert loaded == fingerprint
    assert isinstance(context, ServerContext)
    assert certificate_fingerprint(context.certificate_der) == fingerprint


def test_python_ssl_speaks_tls13_with_it_over_loopback(dirs: Dirs) -> None:
    cert, key, fingerprint = auto_certificate()
    server_ctx = make_server_context(cert, key)
    seen: dict[str, object] = {}
    with socket.create_server(("127.0.0.1", 0)) as listener:
        port = listener.getsockname()[1]

        def accept() -> None:
            raw, _ = listener.accept()
            with server_ctx.wrap_socket(raw, server_side=True) as tls:
                tls.sendall(tls.recv(5).upper())

        thread = threading.Thread(target=accept, daemon=True)
        thread.start()
        raw = socket.create_connection(("127.0.0.1", port), timeout=5)
        with client_context().wrap_socket(raw, server_hostname="127.0.0.1") as tls:
            seen["version"] = tls.version()
            seen["der"] = tls.getpeercert(binary_form=True)
            tls.sendall(b"hello")
            seen["reply"] = tls.recv(5)
        thread.join(5)
    assert seen["version"] == "TLSv1.3"
    assert isinstance(seen["der"], bytes) and cert_fingerprint(seen["der"]) == fingerprint
    assert seen["reply"] == b"HELLO"


def test_bad_files_are_one_line_errors(dirs: Dirs, tmp_path: Path) -> None:
    cert, key, _ = auto_certificate()
    other_cert, other_key, _ = auto_certificate(tmp_path / "other")
    junk = tmp_path / "junk.pem"
    junk.write_text("not a certificate\n")
    junk.chmod(0o600)
    cases = [
        (junk, key, "is not a PEM certificate"),
        (tmp_path / "missing.pem", key, "cannot read certificate"),
        (cert, tmp_path / "missing.key", "cannot read key"),
        (cert, other_key, "cannot use"),
        (cert, junk, "cannot use"),
    ]
    for cert_path, key_path, text in cases:
        with pytest.raises(CredentialError, match=text) as info:
            load_certificate(cert_path, key_path)
        assert "\n" not in str(info.value)
    assert other_cert != cert


def test_key_readable_by_others_refused(dirs: Dirs) -> None:
    cert, key, _ = auto_certificate()
    key.chmod(0o640)  # group access is the admin's choice (e.g. ssl-cert)
    load_certificate(cert, key)
    key.chmod(0o644)
    with pytest.raises(CredentialError, match=r"permissions 0644 .* too open.*chmod o-rwx"):
        load_certificate(cert, key)
