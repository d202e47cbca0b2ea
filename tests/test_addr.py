"""Address parsing: every accepted form, and one AddressError line for each bad one."""

from __future__ import annotations

import socket

import pytest

from wirekit.addr import Address, parse_address
from wirekit.errors import AddressError, WirekitError


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("127.0.0.1:7007", Address("tcp", "127.0.0.1", 7007)),
        ("localhost:80", Address("tcp", "localhost", 80)),
        ("example.org:65535", Address("tcp", "example.org", 65535)),
        (":7007", Address("tcp", "127.0.0.1", 7007)),
        (":0", Address("tcp", "127.0.0.1", 0)),
        ("7007", Address("tcp", "127.0.0.1", 7007)),
        ("0", Address("tcp", "127.0.0.1", 0)),
        ("tcp://10.0.0.1:22", Address("tcp", "10.0.0.1", 22)),
        ("tcp://:9", Address("tcp", "127.0.0.1", 9)),
        ("tcp://9", Address("tcp", "127.0.0.1", 9)),
        ("udp://127.0.0.1:7", Address("udp", "127.0.0.1", 7)),
        ("udp://:13", Address("udp", "127.0.0.1", 13)),
        ("tls://example.org:443", Address("tls", "example.org", 443)),
        ("unix:/tmp/echo.sock", Address("unix", path="/tmp/echo.sock")),
        ("unix:///tmp/echo.sock", Address("unix", path="/tmp/echo.sock")),
        ("unix:relative/echo.sock", Address("unix", path="relative/echo.sock")),
        ("[::1]:7007", Address("tcp", "::1", 7007)),
        ("tcp://[::1]:7007", Address("tcp", "::1", 7007)),
        ("udp://[::1]:13", Address("udp", "::1", 13)),
        ("tls://[2001:db8::1]:443", Address("tls", "2001:db8::1", 443)),
        ("[fe80::1%lo]:5", Address("tcp", "fe80::1%lo", 5)),
        ("  127.0.0.1:7007\n", Address("tcp", "127.0.0.1", 7007)),
        ("127.0.0.1:007", Address("tcp", "127.0.0.1", 7)),
    ],
)
def test_accepted_forms(text: str, expected: Address) -> None:
    assert parse_address(text) == expected


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("127.0.0.1:7007", "tcp://127.0.0.1:7007"),
        ("7007", "tcp://127.0.0.1:7007"),
        ("udp://:13", "udp://127.0.0.1:13"),
        ("tls://example.org:443", "tls://example.org:443"),
        ("[::1]:7007", "tcp://[::1]:7007"),
        ("unix:///tmp/e.sock", "unix:/tmp/e.sock"),
    ],
)
def test_str_round_trips(text: str, shown: str) -> None:
    addr = parse_address(text)
    assert str(addr) == shown
    assert parse_address(str(addr)) == addr


def test_properties() -> None:
    assert parse_address("[::1]:1").family == socket.AF_INET6
    assert parse_address("127.0.0.1:1").family == socket.AF_INET
    assert parse_address("unix:/x").family == socket.AF_UNIX
    assert parse_address("unix:/x").is_unix and not parse_address(":1").is_unix
    assert parse_address("udp://:1").is_datagram and not parse_address("tls://h:1").is_datagram
    assert parse_address("[::1]:7").hostport() == "[::1]:7"
    assert parse_address(":0").with_port(4242) == Address("tcp", "127.0.0.1", 4242)


def test_defaults() -> None:
    assert parse_address("localhost", default_port=7) == Address("tcp", "localhost", 7)
    assert parse_address("udp://h", default_port=13) == Address("udp", "h", 13)
    assert parse_address("[::1]", default_port=37) == Address("tcp", "::1", 37)
    assert parse_address(":9", default_host="::1") == Address("tcp", "::1", 9)
    assert parse_address("h:9", default_scheme="udp") == Address("udp", "h", 9)
    assert parse_address("h:9", default_port=1) == Address("tcp", "h", 9)  # given wins


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("", "empty address"),
        ("   ", "empty address"),
        ("127.0.0.1:http", "port 'http' is not a number"),
        ("127.0.0.1:-1", "port '-1' is not a number"),
        ("127.0.0.1:", "missing port after ':'"),
        ("127.0.0.1", "missing port (write HOST:PORT)"),
        ("127.0.0.1:65536", "port 65536 is out of range 0-65535"),
        ("99999", "port 99999 is out of range 0-65535"),
        ("udp://:70000", "port 70000 is out of range 0-65535"),
        ("ftp://127.0.0.1:21", "unknown scheme 'ftp' (use tcp://, udp://, tls:// or unix:)"),
        ("http://example.org:80", "unknown scheme 'http'"),
        ("::1:7007", "write IPv6 addresses in brackets, e.g. [::1]:7007"),
        ("tcp://fe80::1:80", "write IPv6 addresses in brackets"),
        ("[::1:7007", "missing ']' after IPv6 address"),
        ("udp://[::1", "missing ']' after IPv6 address"),
        ("[::1]7007", "expected ':PORT' after ']'"),
        ("[not-v6]:80", "'not-v6' is not an IPv6 address"),
        ("unix:", "unix socket path is empty"),
        ("unix://", "unix socket path is empty"),
        ("unix:/tmp/a\0b", "unix socket path contains a NUL byte"),
        ("bad host:80", "'bad host' is not a valid host name"),
        ("host/path:80", "'host/path' is not a valid host name"),
        ("tcp://host:80/path", "port '80/path' is not a number"),
    ],
)
def test_bad_addresses_give_one_line_naming_the_problem(text: str, problem: str) -> None:
    with pytest.raises(AddressError) as info:
        parse_address(text)
    message = str(info.value)
    assert "\n" not in message
    assert problem in message
    if text.strip():
        assert message.startswith(f"bad address {text!r}: ")
    assert isinstance(info.value, WirekitError) and isinstance(info.value, ValueError)


@pytest.mark.parametrize("port", ["\u0663", "\u00b2", "\uff17", "7\u0660"])
def test_non_ascii_digits_are_not_a_port(port: str) -> None:
    """str.isdigit() accepts Arabic-Indic, superscript and full-width digits; a port may
    only be written with 0-9 (and never crash with a bare ValueError)."""
    for text in (f"127.0.0.1:{port}", port, f"udp://[::1]:{port}"):
        with pytest.raises(AddressError, match="is not a number"):
            parse_address(text)
