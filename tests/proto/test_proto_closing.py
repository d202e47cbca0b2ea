"""Errors, CLOSE, end of stream and the states after them (protocol.md §6)."""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import TYPE_CHECKING

import pytest

from wirekit.errors import ConnectionClosed, ErrorCode
from wirekit.proto import (
    CloseReceived,
    ErrorReceived,
    FrameConnection,
    FrameType,
    HelloReceived,
    MessageReceived,
    Ping,
    Pong,
    ProtocolViolation,
    Role,
    State,
)
from wirekit.proto.frames import encode_close, encode_error, encode_frame, encode_hello

if TYPE_CHECKING:
    from conftest import Pair, PairFactory

SENDS: dict[str, Callable[[FrameConnection], object]] = {
    "send_data": lambda c: c.send_data(b"x"),
    "send_data_channel": lambda c: c.send_data(b"x", channel=3),
    "send_many": lambda c: c.send_many([b"x", b"y"]),
    "send_message": lambda c: c.send_message(Pong(nonce=1)),
    "send_eof": lambda c: c.send_eof(0),
    "send_window": lambda c: c.send_window(0, 10),
    "data_head": lambda c: c.data_head(10),
}


def _fail_server(pair: Pair) -> None:
    pair.server.receive_data(struct.pack(">IBBH", 0, 42, 0, 0))
    assert pair.server.state is State.FAILED


# -- CLOSE (§6.2) -------------------------------------------------------------


def test_close_is_echoed_and_both_sides_end_closed(pair: Pair) -> None:
    pair.client.send_close(ErrorCode.GOING_AWAY, "bye")
    assert pair.client.state is State.CLOSING
    assert pair.to_server() == [CloseReceived(ErrorCode.GOING_AWAY, "bye")]
    assert pair.server.state is State.CLOSED
    assert pair.server.data_to_send() == encode_close(ErrorCode.NORMAL, "")
    pair.server.receive_data(b"")  # nothing pending
    pair.client.receive_data(encode_close())
    assert pair.client.state is State.CLOSED
    assert pair.client.data_to_send() == b""  # no echo of the echo


def test_data_sent_before_close_is_delivered_before_it(pair: Pair) -> None:
    pair.client.send_data(b"last words")
    pair.client.send_close()
    assert pair.to_server() == [b"last words", CloseReceived(ErrorCode.NORMAL, "")]


def test_closing_side_still_receives_data_until_the_echo(pair: Pair) -> None:
    pair.client.send_close()
    pair.server.send_data(b"in flight")
    pair.server.send_message(Pong(nonce=2), channel=1)
    in_flight = pair.server.data_to_send()
    pair.to_server()
    events = pair.client.receive_data(in_flight + pair.server.data_to_send())
    assert events == [
        b"in flight",
        MessageReceived(1, Pong(nonce=2)),
        CloseReceived(ErrorCode.NORMAL, ""),
    ]
    assert pair.client.state is State.CLOSED


def test_simultaneous_close_is_not_echoed(pair: Pair) -> None:
    pair.client.send_close()
    pair.server.send_close()
    pair.pump()
    assert pair.client.state is State.CLOSED
    assert pair.server.state is State.CLOSED
    assert pair.client_events == [CloseReceived(ErrorCode.NORMAL, "")]
    assert pair.server_events == [CloseReceived(ErrorCode.NORMAL, "")]


def test_bytes_after_a_received_close_are_ignored(pair: Pair) -> None:
    data = encode_close() + encode_frame(FrameType.DATA, b"late") + b"\xff" * 20
    assert pair.server.receive_data(data) == [CloseReceived(ErrorCode.NORMAL, "")]
    assert pair.server.receive_data(b"more garbage") == []
    assert pair.server.state is State.CLOSED


def test_violation_while_closing_sends_no_error_frame(pair: Pair) -> None:
    pair.client.send_close()
    pair.client.data_to_send()
    events = pair.client.receive_data(struct.pack(">IBBH", 0, 42, 0, 0))
    assert isinstance(events[0], ProtocolViolation)
    assert pair.client.state is State.FAILED
    assert pair.client.data_to_send() == b""


def test_send_close_twice_queues_one_close(pair: Pair) -> None:
    pair.client.send_close(ErrorCode.GOING_AWAY, "first")
    pair.client.send_close(ErrorCode.NORMAL, "second")
    assert pair.client.data_to_send() == encode_close(ErrorCode.GOING_AWAY, "first")


def test_server_closing_before_the_client_hello_sends_its_hello_first(
    make_pair: PairFactory,
) -> None:
    pair = make_pair(handshake=False)
    pair.server.send_close(ErrorCode.GOING_AWAY, "shutting down")
    assert pair.server.data_to_send() == encode_hello(1 << 20, role=Role.SERVER) + encode_close(
        ErrorCode.GOING_AWAY, "shutting down"
    )


def test_close_before_the_peer_hello_still_reads_that_hello(make_pair: PairFactory) -> None:
    pair = make_pair(handshake=False)
    pair.server.send_close(ErrorCode.GOING_AWAY, "shutting down")
    pair.pump()
    assert pair.client_events == [
        HelloReceived(1, 1 << 20),
        CloseReceived(ErrorCode.GOING_AWAY, "shutting down"),
    ]
    assert pair.server_events == [HelloReceived(1, 1 << 20), CloseReceived(ErrorCode.NORMAL, "")]
    assert pair.server.state is State.CLOSED
    assert pair.client.state is State.CLOSED


def test_client_closing_before_the_server_hello_gets_a_clean_echo(
    make_pair: PairFactory,
) -> None:
    pair = make_pair(handshake=False)
    pair.client.send_data(b"pipelined")
    pair.client.send_close()
    pair.pump()
    assert pair.server_events == [
        HelloReceived(1, 1 << 20),
        b"pipelined",
        CloseReceived(ErrorCode.NORMAL, ""),
    ]
    assert pair.client_events == [HelloReceived(1, 1 << 20), CloseReceived(ErrorCode.NORMAL, "")]
    assert pair.client.state is State.CLOSED


def test_bad_hello_after_our_early_close_fails_without_sending(make_pair: PairFactory) -> None:
    pair = make_pair(handshake=False)
    pair.client.send_close()
    pair.client.data_to_send()
    events = pair.client.receive_data(encode_hello(1 << 20, version=3))
    assert isinstance(events[0], ProtocolViolation)
    assert events[0].error.code is ErrorCode.BAD_VERSION
    assert pair.client.data_to_send() == b""


# -- ERROR (§6.1) -------------------------------------------------------------


def test_received_error_fails_the_connection_without_an_answer(pair: Pair) -> None:
    events = pair.client.receive_data(encode_error(ErrorCode.IDLE_TIMEOUT, "idle for 300 s"))
    assert events == [ErrorReceived(ErrorCode.IDLE_TIMEOUT, "idle for 300 s")]
    assert pair.client.state is State.FAILED
    assert pair.client.data_to_send() == b""
    with pytest.raises(ConnectionClosed) as info:
        pair.client.send_data(b"x")
    assert info.value.code == ErrorCode.IDLE_TIMEOUT
    assert info.value.reason == "idle for 300 s"


def test_send_error_queues_an_error_frame_and_fails(pair: Pair) -> None:
    pair.server.send_error(ErrorCode.IDLE_TIMEOUT, "idle for 300 s")
    assert pair.server.state is State.FAILED
    assert pair.to_client() == [ErrorReceived(ErrorCode.IDLE_TIMEOUT, "idle for 300 s")]
    pair.server.send_error(ErrorCode.INTERNAL_ERROR, "again")
    pair.server.send_close()
    assert pair.server.data_to_send() == b""


def test_server_error_before_the_client_hello_sends_its_hello_first() -> None:
    server = FrameConnection(Role.SERVER)
    server.send_error(ErrorCode.TOO_MANY_CONNECTIONS, "full")
    assert server.data_to_send() == encode_hello(1 << 20, role=Role.SERVER) + encode_error(
        ErrorCode.TOO_MANY_CONNECTIONS, "full"
    )


def test_failure_is_sticky(pair: Pair) -> None:
    _fail_server(pair)
    pair.server.data_to_send()
    pair.client.send_data(b"after the failure")
    pair.client.send_message(Ping(nonce=1))
    assert pair.to_server() == []
    assert pair.server.receive_data(encode_close()) == []
    assert pair.server.receive_eof() == []
    assert pair.server.state is State.FAILED
    assert pair.server.data_to_send() == b""


# -- end of the byte stream (§6.3) --------------------------------------------


def test_end_of_stream_at_a_frame_boundary_is_a_normal_close(pair: Pair) -> None:
    pair.client.send_data(b"complete")
    pair.to_server()
    assert pair.server.receive_eof() == []
    assert pair.server.state is State.CLOSED
    assert pair.server.close_code == ErrorCode.NORMAL
    assert pair.server.data_to_send() == b""


def test_end_of_stream_while_closing_ends_closed(pair: Pair) -> None:
    pair.client.send_close()
    assert pair.client.receive_eof() == []
    assert pair.client.state is State.CLOSED


@pytest.mark.parametrize("cut", [1, 7, 8, 12])
def test_end_of_stream_inside_a_frame_is_an_error(pair: Pair, cut: int) -> None:
    pair.client.send_data(b"twelve bytes")
    data = pair.client.data_to_send()
    pair.server.receive_data(data[:cut])
    events = pair.server.receive_eof()
    assert len(events) == 1
    assert isinstance(events[0], ProtocolViolation)
    assert str(events[0].error) == "connection ended inside a frame"
    assert events[0].error.code is ErrorCode.PROTOCOL_ERROR
    assert pair.server.state is State.FAILED
    assert pair.server.data_to_send() == encode_error(
        ErrorCode.PROTOCOL_ERROR, "connection ended inside a frame"
    )


def test_end_of_stream_after_close_does_nothing(pair: Pair) -> None:
    pair.server.receive_data(encode_close(ErrorCode.GOING_AWAY, "bye"))
    assert pair.server.receive_eof() == []
    assert pair.server.close_code == ErrorCode.GOING_AWAY


# -- sending after the end (§6.4) ---------------------------------------------


@pytest.mark.parametrize("send", sorted(SENDS))
def test_sending_after_our_close_raises_connection_closed(pair: Pair, send: str) -> None:
    pair.client.send_close(ErrorCode.GOING_AWAY, "leaving")
    pair.client.data_to_send()
    with pytest.raises(ConnectionClosed) as info:
        SENDS[send](pair.client)
    assert (info.value.code, info.value.reason) == (ErrorCode.GOING_AWAY, "leaving")
    assert pair.client.data_to_send() == b""


@pytest.mark.parametrize("send", sorted(SENDS))
def test_sending_after_the_peer_closed_raises_connection_closed(pair: Pair, send: str) -> None:
    pair.client.send_close(ErrorCode.NORMAL, "done")
    pair.to_server()
    pair.server.data_to_send()
    with pytest.raises(ConnectionClosed, match="connection closed: done"):
        SENDS[send](pair.server)


@pytest.mark.parametrize("send", sorted(SENDS))
def test_sending_after_a_violation_raises_connection_closed(pair: Pair, send: str) -> None:
    _fail_server(pair)
    with pytest.raises(ConnectionClosed) as info:
        SENDS[send](pair.server)
    assert info.value.code == ErrorCode.UNKNOWN_TYPE


def test_sending_after_a_clean_end_of_stream_raises_connection_closed(pair: Pair) -> None:
    pair.server.receive_eof()
    with pytest.raises(ConnectionClosed, match="peer closed without CLOSE"):
        pair.server.send_data(b"x")
