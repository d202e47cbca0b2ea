"""The test vectors of docs/protocol.md §8, checked byte for byte against the code.

Every ```hex <name>``` block of the document is parsed; each name must have a
builder here that produces exactly those bytes with the real encoder, and
every builder must have a block in the document.
"""

from __future__ import annotations

import re
import struct
from collections.abc import Callable
from pathlib import Path

import pytest

from wirekit.errors import ErrorCode
from wirekit.proto import (
    ChannelEOF,
    CloseReceived,
    DataReceived,
    ErrorReceived,
    Event,
    FrameConnection,
    HelloReceived,
    MessageReceived,
    Ping,
    Pong,
    Role,
    WindowUpdate,
)
from wirekit.proto.connection import NOT_WIREKIT_LINE
from wirekit.proto.frames import encode_hello

PROTOCOL_MD = Path(__file__).resolve().parents[2] / "docs" / "protocol.md"
_BLOCK = re.compile(r"^```hex ([a-z0-9-]+)\n(.*?)^```$", re.MULTILINE | re.DOTALL)


def doc_vectors() -> dict[str, bytes]:
    text = PROTOCOL_MD.read_text(encoding="utf-8")
    vectors: dict[str, bytes] = {}
    for name, body in _BLOCK.findall(text):
        assert name not in vectors, f"vector {name} appears twice in protocol.md"
        vectors[name] = bytes.fromhex("".join(body.split()))
    return vectors


def _open_client(server_max: int = 1 << 20) -> FrameConnection:
    client = FrameConnection(Role.CLIENT)
    client.data_to_send()
    client.receive_data(encode_hello(server_max, role=Role.SERVER))
    return client


def _open_server() -> FrameConnection:
    server = FrameConnection(Role.SERVER)
    server.receive_data(encode_hello(1 << 20))
    server.data_to_send()
    return server


def client_hello() -> bytes:
    return FrameConnection(Role.CLIENT).data_to_send()


def server_hello() -> bytes:
    server = FrameConnection(Role.SERVER, max_frame_size=64 * 1024)
    server.receive_data(client_hello())
    return server.data_to_send()


def data_channel_0() -> bytes:
    client = _open_client()
    client.send_data(b"hello")
    return client.data_to_send()


def data_channel_7() -> bytes:
    client = _open_client()
    client.send_data(b"hello", channel=7)
    return client.data_to_send()


def message_ping() -> bytes:
    client = _open_client()
    client.send_message(Ping(nonce=1))
    return client.data_to_send()


def message_pong() -> bytes:
    server = _open_server()
    assert server.receive_data(message_ping()) == []
    return server.data_to_send()


def eof_channel_0() -> bytes:
    client = _open_client()
    client.send_eof(0)
    return client.data_to_send()


def window_channel_7() -> bytes:
    client = _open_client()
    client.send_window(7, 65536)
    return client.data_to_send()


def error_frame_too_large() -> bytes:
    server = _open_server()
    server.receive_data(struct.pack(">IBBH", 2_000_000, 0, 0, 0))
    return server.data_to_send()


def close_normal() -> bytes:
    client = _open_client()
    client.send_close()
    return client.data_to_send()


def bad_version_reply() -> bytes:
    server = FrameConnection(Role.SERVER)
    server.receive_data(encode_hello(1 << 20, version=2))
    return server.data_to_send()


def not_wirekit_line() -> bytes:
    server = FrameConnection(Role.SERVER)
    server.receive_data(b"hello?\r\n")
    return server.data_to_send()


def http_400() -> bytes:
    server = FrameConnection(Role.SERVER)
    server.receive_data(b"GET / HTTP/1.1\r\nHost: example\r\n\r\n")
    return server.data_to_send()


def handshake_timeout_line() -> bytes:
    server = FrameConnection(Role.SERVER)
    server.handshake_timeout("no hello within 10 s")
    return server.data_to_send()


BUILDERS: dict[str, Callable[[], bytes]] = {
    "client-hello": client_hello,
    "server-hello": server_hello,
    "data-channel-0": data_channel_0,
    "data-channel-7": data_channel_7,
    "message-ping": message_ping,
    "message-pong": message_pong,
    "eof-channel-0": eof_channel_0,
    "window-channel-7": window_channel_7,
    "error-frame-too-large": error_frame_too_large,
    "close-normal": close_normal,
    "bad-version-reply": bad_version_reply,
    "not-wirekit-line": not_wirekit_line,
    "http-400": http_400,
    "handshake-timeout-line": handshake_timeout_line,
}

#: What an OPEN receiver reports for each frame vector.
DECODED: dict[str, list[Event]] = {
    "data-channel-0": [b"hello"],
    "data-channel-7": [DataReceived(7, b"hello")],
    "message-pong": [MessageReceived(0, Pong(nonce=1))],
    "eof-channel-0": [ChannelEOF(0)],
    "window-channel-7": [WindowUpdate(7, 65536)],
    "error-frame-too-large": [
        ErrorReceived(
            ErrorCode.FRAME_TOO_LARGE, "frame of 2000000 bytes exceeds limit of 1048576 bytes"
        )
    ],
    "close-normal": [CloseReceived(ErrorCode.NORMAL, "")],
}


def test_every_documented_vector_has_a_builder_and_back() -> None:
    assert sorted(doc_vectors()) == sorted(BUILDERS)


@pytest.mark.parametrize("name", sorted(BUILDERS))
def test_documented_bytes_equal_the_encoder_output(name: str) -> None:
    assert BUILDERS[name]().hex() == doc_vectors()[name].hex()


@pytest.mark.parametrize("name", sorted(DECODED))
def test_documented_frame_decodes_to_its_event(name: str) -> None:
    assert _open_server().receive_data(doc_vectors()[name]) == DECODED[name]


def test_documented_ping_is_answered_not_delivered() -> None:
    server = _open_server()
    assert server.receive_data(doc_vectors()["message-ping"]) == []
    assert server.data_to_send() == doc_vectors()["message-pong"]


def test_documented_hellos_are_accepted_by_the_other_side() -> None:
    vectors = doc_vectors()
    server = FrameConnection(Role.SERVER)
    assert server.receive_data(vectors["client-hello"]) == [HelloReceived(1, 1 << 20)]
    client = FrameConnection(Role.CLIENT)
    assert client.receive_data(vectors["server-hello"]) == [HelloReceived(1, 64 * 1024)]


def test_documented_text_lines_are_readable_ascii() -> None:
    vectors = doc_vectors()
    assert vectors["not-wirekit-line"] == NOT_WIREKIT_LINE
    assert vectors["http-400"].startswith(b"HTTP/1.0 400 Bad Request\r\n")
    assert vectors["http-400"].endswith(b"\r\n\r\n" + NOT_WIREKIT_LINE)
    assert b"Content-Length: %d\r\n" % len(NOT_WIREKIT_LINE) in vectors["http-400"]
    assert vectors["handshake-timeout-line"] == b"wirekit: no hello within 10 s; closing\r\n"


def test_documented_error_codes_match_the_enum() -> None:
    text = PROTOCOL_MD.read_text(encoding="utf-8")
    section = text[text.index("### 6.1") : text.index("### 6.2")]
    rows = dict(re.findall(r"^\| (\d+) +\| ([A-Z_]+) +\|", section, re.MULTILINE))
    assert {int(code): name for code, name in rows.items()} == {
        code.value: code.name for code in ErrorCode
    }
