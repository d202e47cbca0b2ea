"""The hello phase (protocol.md §2)."""

from __future__ import annotations

import struct
from collections.abc import Sequence
from typing import TYPE_CHECKING

import pytest

from wirekit.errors import BadHello, ErrorCode, HelloMissing, LocalProtocolError
from wirekit.proto import FrameConnection, HelloReceived, Ping, ProtocolViolation, Role, State
from wirekit.proto.connection import NOT_WIREKIT_LINE
from wirekit.proto.frames import HEAD, HELLO, encode_error, encode_frame, encode_hello

if TYPE_CHECKING:
    from conftest import PairFactory

HTTP_400_HEAD = b"HTTP/1.0 400 Bad Request\r\n"


def _violation(events: Sequence[object]) -> BadHello:
    assert len(events) == 1
    event = events[0]
    assert isinstance(event, ProtocolViolation)
    assert isinstance(event.error, BadHello)
    return event.error


def _parse_frames(data: bytes) -> list[tuple[int, int, int, bytes]]:
    """(type, flags, channel, payload) of every frame in ``data``."""
    frames = []
    pos = 0
    while pos < len(data):
        length, ftype, flags, channel = struct.unpack_from(">IBBH", data, pos)
        frames.append((ftype, flags, channel, data[pos + 8 : pos + 8 + length]))
        pos += 8 + length
    return frames


# -- the happy path -----------------------------------------------------------


def test_client_queues_its_hello_at_construction() -> None:
    client = FrameConnection(Role.CLIENT, max_frame_size=4096)
    assert client.state is State.HELLO
    assert client.data_to_send() == b"WKIT\x01\x00\x00\x00\x00\x00\x10\x00"


def test_server_is_silent_until_the_client_hello() -> None:
    server = FrameConnection(Role.SERVER)
    assert server.data_to_send() == b""
    assert server.receive_data(b"WKIT\x01\x00\x00") == []
    assert server.data_to_send() == b""
    assert server.state is State.HELLO


def test_hello_exchange_opens_both_sides(make_pair: PairFactory) -> None:
    pair = make_pair(client_max=1000, server_max=2000)
    assert pair.client.peer_max_frame_size == 2000
    assert pair.server.peer_max_frame_size == 1000


def test_server_answers_hello_split_one_byte_at_a_time() -> None:
    server = FrameConnection(Role.SERVER)
    hello = encode_hello(1 << 20)
    events = []
    for i in range(len(hello)):
        events += server.receive_data(hello[i : i + 1])
    assert events == [HelloReceived(1, 1 << 20)]
    assert server.data_to_send() == encode_hello(1 << 20, role=Role.SERVER)


def test_client_may_pipeline_frames_behind_its_hello(make_pair: PairFactory) -> None:
    pair = make_pair(handshake=False)
    pair.client.send_data(b"early")
    pair.client.send_message(Ping(nonce=5))
    events = pair.to_server()
    assert events == [HelloReceived(1, 1 << 20), b"early"]
    # The server's hello comes first, then the pong to the pipelined ping.
    answer = pair.server.data_to_send()
    assert answer.startswith(encode_hello(1 << 20, role=Role.SERVER))
    assert [f[0] for f in _parse_frames(answer[12:])] == [1]


def test_server_hello_and_frames_in_one_read_reach_the_client(make_pair: PairFactory) -> None:
    pair = make_pair(handshake=False)
    pair.to_server()
    pair.server.send_data(b"welcome")
    assert pair.to_client() == [HelloReceived(1, 1 << 20), b"welcome"]


def test_server_cannot_send_before_the_client_hello() -> None:
    server = FrameConnection(Role.SERVER)
    with pytest.raises(LocalProtocolError, match="before the client's hello"):
        server.send_data(b"x")
    with pytest.raises(LocalProtocolError):
        server.send_message(Ping(nonce=1))
    with pytest.raises(LocalProtocolError):
        server.data_head(10)
    assert server.data_to_send() == b""


# -- peers that do not speak wirekit (§2.4) -----------------------------------


@pytest.mark.parametrize(
    "first_bytes",
    [b"hello\r\n", b"\x00" * 12, b"WKIX", b"W\x00", b"SSH-2.0-OpenSSH_9.6\r\n", b"\x16\x03\x01"],
)
def test_wrong_magic_gets_the_text_line(first_bytes: bytes) -> None:
    server = FrameConnection(Role.SERVER)
    error = _violation(server.receive_data(first_bytes))
    assert error.code is ErrorCode.BAD_MAGIC
    assert server.data_to_send() == NOT_WIREKIT_LINE
    assert server.state is State.FAILED


def test_wrong_magic_is_detected_before_twelve_bytes() -> None:
    server = FrameConnection(Role.SERVER)
    _violation(server.receive_data(b"X"))
    assert server.data_to_send() == NOT_WIREKIT_LINE


@pytest.mark.parametrize(
    "request_line",
    [
        b"GET / HTTP/1.1\r\n",
        b"HEAD / HTTP/1.1\r\n",
        b"POST /x HTTP/1.1\r\n",
        b"PUT /x HTTP/1.1\r\n",
        b"DELETE /x HTTP/1.1\r\n",
        b"OPTIONS * HTTP/1.1\r\n",
        b"PATCH /x HTTP/1.1\r\n",
        b"CONNECT host:443 HTTP/1.1\r\n",
        b"TRACE / HTTP/1.1\r\n",
        b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
    ],
)
def test_http_request_gets_http_400(request_line: bytes) -> None:
    server = FrameConnection(Role.SERVER)
    error = _violation(server.receive_data(request_line))
    assert error.code is ErrorCode.BAD_MAGIC
    assert "HTTP" in str(error)
    reply = server.data_to_send()
    assert reply.startswith(HTTP_400_HEAD)
    assert reply.endswith(NOT_WIREKIT_LINE)


@pytest.mark.parametrize(
    "pieces",
    [
        [b"GE", b"T /"],
        [b"G", b"E", b"T", b" ", b"/"],
        [b"P", b"RI * HTTP/2.0"],
        [b"OPTIONS", b" * HTTP/1.1"],
    ],
)
def test_http_method_split_across_reads_gets_http_400(pieces: list[bytes]) -> None:
    server = FrameConnection(Role.SERVER)
    for piece in pieces[:-1]:
        assert server.receive_data(piece) == []
        assert server.data_to_send() == b""
        assert server.state is State.HELLO
    _violation(server.receive_data(pieces[-1]))
    assert server.data_to_send().startswith(HTTP_400_HEAD)


def test_method_prefix_that_turns_into_garbage_gets_the_text_line() -> None:
    server = FrameConnection(Role.SERVER)
    assert server.receive_data(b"GE") == []
    _violation(server.receive_data(b"X"))
    assert server.data_to_send() == NOT_WIREKIT_LINE


def test_method_without_its_space_is_not_http() -> None:
    server = FrameConnection(Role.SERVER)
    _violation(server.receive_data(b"GETTING STARTED\r\n"))
    assert server.data_to_send() == NOT_WIREKIT_LINE


def test_client_facing_a_non_wirekit_server_fails_silently() -> None:
    client = FrameConnection(Role.CLIENT)
    client.data_to_send()
    error = _violation(client.receive_data(b"220 smtp.example ESMTP\r\n"))
    assert error.code is ErrorCode.BAD_MAGIC
    assert "220 smtp" in str(error)
    assert client.data_to_send() == b""
    assert client.state is State.FAILED


# -- bad hellos from wirekit peers (§2.3, §2.5) -------------------------------


def test_wrong_version_gets_server_hello_then_bad_version_error() -> None:
    server = FrameConnection(Role.SERVER, max_frame_size=4096)
    error = _violation(server.receive_data(encode_hello(1 << 20, version=2)))
    assert error.code is ErrorCode.BAD_VERSION
    assert str(error) == "protocol version 2 is not supported (this side speaks 1)"
    out = server.data_to_send()
    assert out == encode_hello(4096, role=Role.SERVER) + encode_error(
        ErrorCode.BAD_VERSION, str(error)
    )
    assert server.state is State.FAILED


def test_client_answers_a_wrong_server_version_with_an_error_frame() -> None:
    client = FrameConnection(Role.CLIENT)
    client.data_to_send()
    error = _violation(client.receive_data(encode_hello(1 << 20, version=0)))
    assert error.code is ErrorCode.BAD_VERSION
    assert client.data_to_send() == encode_error(ErrorCode.BAD_VERSION, str(error))


def test_version_is_checked_before_the_reserved_fields() -> None:
    server = FrameConnection(Role.SERVER)
    hello = HELLO.pack(b"WKIT", 9, 0xFF, 0xFFFF, 0)
    assert _violation(server.receive_data(hello)).code is ErrorCode.BAD_VERSION


@pytest.mark.parametrize(
    ("flags", "reserved", "max_frame_size"),
    [(0x02, 0, 1024), (0x80, 0, 1024), (0x81, 0, 1024), (0, 1, 1024), (0, 0x8000, 1024), (0, 0, 0)],
)
def test_malformed_hello_is_a_protocol_error(
    flags: int, reserved: int, max_frame_size: int
) -> None:
    server = FrameConnection(Role.SERVER)
    hello = HELLO.pack(b"WKIT", 1, flags, reserved, max_frame_size)
    error = _violation(server.receive_data(hello))
    assert error.code is ErrorCode.PROTOCOL_ERROR
    assert server.data_to_send() == encode_hello(1 << 20, role=Role.SERVER) + encode_error(
        ErrorCode.PROTOCOL_ERROR, str(error)
    )


def test_only_the_server_hello_carries_the_server_flag(make_pair: PairFactory) -> None:
    pair = make_pair(handshake=False)
    client_hello = pair.client.data_to_send()
    assert client_hello[5] == 0x00
    pair.server.receive_data(client_hello)
    assert pair.server.data_to_send()[5] == 0x01


def test_client_that_gets_its_own_hello_back_names_the_echo_service() -> None:
    client = FrameConnection(Role.CLIENT, max_frame_size=4096)
    own = client.data_to_send()
    error = _violation(client.receive_data(own))
    assert str(error) == "peer echoed our hello: is this an echo service?"
    assert error.code is ErrorCode.PROTOCOL_ERROR
    assert client.state is State.FAILED
    assert client.data_to_send() == encode_error(ErrorCode.PROTOCOL_ERROR, str(error))


def test_client_refuses_another_client_hello() -> None:
    client = FrameConnection(Role.CLIENT)
    client.data_to_send()
    error = _violation(client.receive_data(encode_hello(4096)))
    assert str(error) == "peer sent a client hello (flag 0x01 clear), not a server hello"
    assert client.state is State.FAILED


def test_server_refuses_a_hello_with_the_server_flag() -> None:
    server = FrameConnection(Role.SERVER)
    error = _violation(server.receive_data(encode_hello(1 << 20, role=Role.SERVER)))
    assert str(error) == "peer sent a server hello (flag 0x01 set), not a client hello"
    assert error.code is ErrorCode.PROTOCOL_ERROR
    assert server.data_to_send() == encode_hello(1 << 20, role=Role.SERVER) + encode_error(
        ErrorCode.PROTOCOL_ERROR, str(error)
    )


def test_largest_max_frame_size_in_a_hello_is_accepted() -> None:
    server = FrameConnection(Role.SERVER)
    assert server.receive_data(encode_hello(2**32 - 1)) == [HelloReceived(1, 2**32 - 1)]


def test_frames_pipelined_behind_a_bad_hello_are_ignored() -> None:
    server = FrameConnection(Role.SERVER)
    data = encode_hello(1 << 20, version=2) + encode_frame(0, b"ignored")
    events = server.receive_data(data)
    assert len(events) == 1
    assert server.receive_data(encode_frame(0, b"later")) == []


# -- timeout and end of stream during the hello (§2.6) ------------------------


def test_handshake_timeout_sends_a_text_line_not_a_frame() -> None:
    server = FrameConnection(Role.SERVER)
    server.receive_data(b"WKIT")
    server.handshake_timeout("no hello within 10 s")
    assert server.data_to_send() == b"wirekit: no hello within 10 s; closing\r\n"
    assert server.state is State.FAILED
    assert server.error is not None
    assert server.error.code is ErrorCode.HANDSHAKE_TIMEOUT
    assert server.close_code == ErrorCode.HANDSHAKE_TIMEOUT


def test_client_handshake_timeout_sends_nothing() -> None:
    client = FrameConnection(Role.CLIENT)
    client.data_to_send()
    client.handshake_timeout("no hello within 10 s")
    assert client.data_to_send() == b""
    assert client.state is State.FAILED


def test_handshake_timeout_after_the_hello_does_nothing(make_pair: PairFactory) -> None:
    pair = make_pair()
    pair.server.handshake_timeout("late")
    assert pair.server.state is State.OPEN
    assert pair.server.data_to_send() == b""


@pytest.mark.parametrize("received", [b"", b"W", b"WKIT\x01\x00\x00\x00\x00\x10"])
def test_end_of_stream_inside_the_hello_is_an_error(received: bytes) -> None:
    server = FrameConnection(Role.SERVER)
    server.receive_data(received)
    events = server.receive_eof()
    assert len(events) == 1
    assert isinstance(events[0], ProtocolViolation)
    assert str(events[0].error) == "connection ended inside a hello"
    assert server.state is State.FAILED
    out = server.data_to_send()
    assert out.startswith(encode_hello(1 << 20, role=Role.SERVER))
    assert HEAD.unpack_from(out, 12)[1] >> 24 == 4  # an ERROR frame follows


def test_a_client_given_no_hello_at_all_says_the_server_closed_first() -> None:
    """Nothing from the server before its EOF (what a TLS server does to a
    client that does not start TLS) is HelloMissing, a kind of BadHello; part
    of a hello then EOF stays "inside a hello"."""
    client = FrameConnection(Role.CLIENT)
    client.data_to_send()
    events = client.receive_eof()
    assert len(events) == 1 and isinstance(events[0], ProtocolViolation)
    assert isinstance(events[0].error, HelloMissing)
    assert isinstance(events[0].error, BadHello)
    assert str(events[0].error) == "the server closed the connection before its hello"
    assert client.state is State.FAILED

    partial = FrameConnection(Role.CLIENT)
    partial.receive_data(b"WKIT")
    events = partial.receive_eof()
    assert not isinstance(events[0].error, HelloMissing)  # type: ignore[union-attr]
    assert str(events[0].error) == "connection ended inside a hello"  # type: ignore[union-attr]
