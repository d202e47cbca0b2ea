"""The TLS pin store: unknown -> remember -> known -> changed, atomically and readably."""

from __future__ import annotations

import base64
import hashlib
import os
import shutil
import ssl
import stat
import subprocess
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from wirekit.errors import AddressError, AuthenticationFailed
from wirekit.security import (
    ChangedFingerprint,
    HostStatus,
    KnownHosts,
    cert_fingerprint,
    default_known_hosts_path,
    fingerprint_hex,
    normalize_hostport,
)

if TYPE_CHECKING:
    from conftest import Dirs


def fp(seed: str) -> str:
    return cert_fingerprint(seed.encode())


OLD, NEW, OTHER = fp("old"), fp("new"), fp("other")


@pytest.fixture
def store(dirs: Dirs) -> KnownHosts:
    return KnownHosts()


def test_unknown_remember_known_changed(store: KnownHosts, dirs: Dirs) -> None:
    assert store.path == dirs.config / "known_hosts" == default_known_hosts_path()
    assert store.lookup("example.org:7443") is None
    assert store.check("example.org:7443", OLD) is HostStatus.UNKNOWN
    store.remember("example.org:7443", OLD)
    assert store.lookup("example.org:7443") == OLD
    assert store.check("example.org:7443", OLD) is HostStatus.KNOWN
    assert store.check("example.org:7443", NEW) is HostStatus.CHANGED
    assert store.check("example.org:7444", NEW) is HostStatus.UNKNOWN
    assert str(HostStatus.CHANGED) == "changed"
    store.remember("example.org:7443", OLD)  # the same pin again: nothing to do
    assert store.path.read_text().count("example.org:7443") == 1


def test_file_format_mode_and_header(store: KnownHosts, dirs: Dirs) -> None:
    os.umask(0)
    store.remember("example.org:7443", OLD)
    store.remember("[::1]:7443", NEW)
    lines = store.path.read_text().splitlines()
    assert lines[0].startswith("# wirekit known hosts")
    assert lines[1:] == [f"example.org:7443 {OLD}", f"[::1]:7443 {NEW}"]
    assert stat.S_IMODE(store.path.stat().st_mode) == 0o600
    assert stat.S_IMODE(dirs.config.stat().st_mode) == 0o700


def test_changed_pin_refused_unless_replace(store: KnownHosts) -> None:
    store.remember("example.org:7443", OLD)
    with pytest.raises(ChangedFingerprint) as info:
        store.remember("example.org:7443", NEW)
    error = info.value
    assert isinstance(error, AuthenticationFailed)
    assert (error.hostport, error.old, error.new, error.path) == (
        "example.org:7443",
        OLD,
        NEW,
        store.path,
    )
    text = str(error)
    assert "\n" not in text
    for part in ("example.org:7443", OLD, NEW, str(store.path)):
        assert part in text
    assert "`wirekit known-hosts --forget example.org:7443`" in text
    assert store.lookup("example.org:7443") == OLD
    store.remember("example.org:7443", NEW, replace=True)
    assert store.lookup("example.org:7443") == NEW
    assert store.check("example.org:7443", OLD) is HostStatus.CHANGED


def test_pin_trusts_on_first_use_then_raises(store: KnownHosts) -> None:
    assert store.pin("host:1", OLD) is HostStatus.UNKNOWN
    assert store.pin("host:1", OLD) is HostStatus.KNOWN
    with pytest.raises(ChangedFingerprint, match=r"pinned .*, now "):
        store.pin("HOST:01", NEW)
    assert store.lookup("host:1") == OLD


def test_replace_keeps_comments_order_and_collapses_duplicates(store: KnownHosts) -> None:
    store.path.parent.mkdir(parents=True, mode=0o700, exist_ok=True)
    original = [
        "# my pins",
        "",
        f"a.example:1 {OLD}   # trailing note",
        "   # indented comment",
        f"b.example:2 {OLD}",
        f"a.example:1 {OTHER}",
        "not a valid line at all",
        f"c.example:3 {OLD}",
    ]
    store.path.write_text("\n".join(original) + "\n")
    os.chmod(store.path, 0o600)
    assert store.lookup("a.example:1") == OLD  # the first of several
    assert store.check("a.example:1", OTHER) is HostStatus.KNOWN  # any pin may match
    store.remember("b.example:2", NEW, replace=True)
    store.remember("a.example:1", NEW, replace=True)
    store.remember("d.example:4", NEW)
    assert store.path.read_text().splitlines() == [
        "# my pins",
        "",
        f"a.example:1 {NEW}",
        "   # indented comment",
        f"b.example:2 {NEW}",
        "not a valid line at all",
        f"c.example:3 {OLD}",
        f"d.example:4 {NEW}",
    ]


def test_forget(store: KnownHosts) -> None:
    assert store.forget("a.example:1") is False
    store.remember("a.example:1", OLD)
    store.remember("b.example:2", OLD)
    assert store.forget("A.EXAMPLE:1") is True
    assert store.lookup("a.example:1") is None
    assert store.lookup("b.example:2") == OLD
    assert store.forget("a.example:1") is False


@pytest.mark.parametrize(
    ("given", "canonical"),
    [
        ("[::1]:7443", "[::1]:7443"),
        ("[0:0:0:0:0:0:0:1]:7443", "[::1]:7443"),
        ("[2001:DB8::0001]:443", "[2001:db8::1]:443"),
        ("[fe80::1%eth0]:22", "[fe80::1%eth0]:22"),
        ("Example.ORG:07443", "example.org:7443"),
        ("127.0.0.1:1", "127.0.0.1:1"),
        (" localhost:65535 ", "localhost:65535"),
    ],
)
def test_hostport_forms(given: str, canonical: str) -> None:
    assert normalize_hostport(given) == canonical


@pytest.mark.parametrize(
    "bad",
    [
        "::1:7443",
        "[::1]",
        "[::1]7443",
        "[nonsense]:1",
        "host",
        "host:",
        ":7443",
        "host:0",
        "host:65536",
        "host:x",
        "ho st:1",
        "[::1]:",
    ],
)
def test_bad_hostports(bad: str) -> None:
    with pytest.raises(AddressError):
        normalize_hostport(bad)


def test_ipv6_forms_are_one_host(store: KnownHosts) -> None:
    store.remember("[0:0::1]:7443", OLD)
    assert store.lookup("[::1]:7443") == OLD
    assert store.check("[0000::1]:7443", NEW) is HostStatus.CHANGED
    assert store.path.read_text().splitlines()[-1] == f"[::1]:7443 {OLD}"
    with pytest.raises(ChangedFingerprint) as info:
        store.pin("[::1]:7443", NEW)
    # brackets are shell glob characters: the hint must be safe to paste
    assert "`wirekit known-hosts --forget '[::1]:7443'`" in str(info.value)


def test_damaged_pin_fails_closed(store: KnownHosts) -> None:
    store.path.parent.mkdir(parents=True, mode=0o700, exist_ok=True)
    store.path.write_text(f"a.example:1 {OLD[:-3]}\nb.example:2\n")
    os.chmod(store.path, 0o600)
    assert store.check("a.example:1", OLD) is HostStatus.CHANGED
    assert store.check("b.example:2", OLD) is HostStatus.CHANGED
    with pytest.raises(ChangedFingerprint):
        store.pin("b.example:2", OLD)


def test_padded_fingerprint_is_the_same_pin(store: KnownHosts) -> None:
    store.remember("a.example:1", OLD + "=")
    assert store.lookup("a.example:1") == OLD
    assert store.check("a.example:1", OLD + "=") is HostStatus.KNOWN


def test_bad_fingerprint_refused(store: KnownHosts) -> None:
    for bad in (
        "",
        "SHA256:",
        "sha256:" + OLD[7:],
        OLD[:-1],
        OLD + "AA",
        "MD5:" + OLD[7:],
        OLD[7:],
    ):
        with pytest.raises(ValueError, match="bad fingerprint"):
            store.remember("a.example:1", bad)
    assert not store.path.exists()


def test_group_writable_store_refused(store: KnownHosts) -> None:
    store.remember("a.example:1", OLD)
    os.chmod(store.path, 0o620)
    with pytest.raises(Exception, match="run: chmod go-w"):
        store.lookup("a.example:1")


def test_no_temp_files_left_behind(store: KnownHosts, dirs: Dirs) -> None:
    for i in range(20):
        store.remember(f"h{i}.example:{i + 1}", OLD)
        store.remember(f"h{i}.example:{i + 1}", NEW, replace=True)
    for i in range(0, 20, 2):
        store.forget(f"h{i}.example:{i + 1}")
    assert sorted(p.name for p in dirs.config.iterdir()) == ["known_hosts"]
    assert len(store.path.read_text().splitlines()) == 1 + 10


def test_concurrent_remember_loses_nothing(store: KnownHosts, dirs: Dirs) -> None:
    errors: list[BaseException] = []

    def worker(n: int) -> None:
        try:
            for i in range(10):
                KnownHosts().remember(f"w{n}-{i}.example:1", OLD)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert all(store.lookup(f"w{n}-{i}.example:1") == OLD for n in range(8) for i in range(10))
    assert sorted(p.name for p in dirs.config.iterdir()) == ["known_hosts"]


def test_cert_fingerprint_and_hex(tls: Any) -> None:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes

    der = ssl.PEM_cert_to_DER_cert(Path(tls.cert).read_text())
    cert = x509.load_der_x509_certificate(der)
    digest = cert.fingerprint(hashes.SHA256())
    value = cert_fingerprint(der)
    assert value == "SHA256:" + base64.b64encode(digest).decode().rstrip("=")
    assert value == "SHA256:" + base64.b64encode(hashlib.sha256(der).digest()).decode()[:-1]
    assert fingerprint_hex(value) == digest.hex(":").upper()
    assert len(fingerprint_hex(value)) == 32 * 3 - 1
    openssl = shutil.which("openssl")
    if openssl:
        out = subprocess.run(
            [openssl, "x509", "-noout", "-fingerprint", "-sha256", "-in", str(tls.cert)],
            capture_output=True,
            text=True,
            check=True,
            timeout=30,
        ).stdout
        assert out.strip().split("=", 1)[1] == fingerprint_hex(value)
    with pytest.raises(ValueError, match="bad fingerprint"):
        fingerprint_hex("AB:CD")
