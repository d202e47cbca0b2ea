"""MESSAGE frames and the message codec (protocol.md §5)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import msgspec
import pytest

from wirekit.errors import ErrorCode, LocalProtocolError, RemoteProtocolError
from wirekit.proto import (
    CloseReceived,
    FrameType,
    Message,
    MessageCodec,
    MessageReceived,
    Ping,
    Pong,
    ProtocolViolation,
    State,
)
from wirekit.proto.frames import encode_error, encode_frame

if TYPE_CHECKING:
    from conftest import Pair, PairFactory


class Greeting(Message, tag="greeting"):
    name: str
    times: int = 1
    tags: list[str] = []


def pack(obj: object) -> bytes:
    return msgspec.msgpack.encode(obj)


def _send_raw_message(pair: Pair, payload: bytes) -> list[object]:
    return list(pair.server.receive_data(encode_frame(FrameType.MESSAGE, payload)))


def _assert_refused(pair: Pair, payload: bytes, code: ErrorCode) -> RemoteProtocolError:
    events = _send_raw_message(pair, payload)
    assert len(events) == 1
    assert isinstance(events[0], ProtocolViolation)
    error = events[0].error
    assert error.code is code, error
    assert pair.server.state is State.FAILED
    assert pair.server.data_to_send() == encode_error(code, str(error))
    return error


# -- encoding (§5.1) ----------------------------------------------------------


def test_message_is_a_map_with_the_type_key_first() -> None:
    assert MessageCodec().encode(Ping(nonce=1)) == b"\x82\xa4type\xa4ping\xa5nonce\x01"
    assert msgspec.msgpack.decode(MessageCodec().encode(Pong(nonce=-3))) == {
        "type": "pong",
        "nonce": -3,
    }


def test_type_key_is_accepted_at_any_position(pair: Pair) -> None:
    events = _send_raw_message(pair, pack({"nonce": 9, "type": "pong"}))
    assert events == [MessageReceived(0, Pong(nonce=9))]


@pytest.mark.parametrize("nonce", [0, -1, -(2**63), 2**63, 2**64 - 1])
def test_nonce_covers_the_messagepack_integer_range(nonce: int) -> None:
    codec = MessageCodec()
    assert codec.decode(codec.encode(Pong(nonce=nonce))) == Pong(nonce=nonce)


@pytest.mark.parametrize("nonce", [2**64, -(2**63) - 1])
def test_nonce_outside_the_messagepack_range_cannot_be_sent(pair: Pair, nonce: int) -> None:
    with pytest.raises(LocalProtocolError, match="cannot encode Ping"):
        pair.client.send_message(Ping(nonce=nonce))
    assert pair.client.data_to_send() == b""


def test_sending_something_that_is_not_a_message_is_refused(pair: Pair) -> None:
    with pytest.raises(LocalProtocolError, match="not a Message"):
        pair.client.send_message({"type": "ping", "nonce": 1})  # type: ignore[arg-type]


def test_codec_refuses_a_type_that_is_not_a_message() -> None:
    with pytest.raises(LocalProtocolError, match="not a wirekit Message subclass"):
        MessageCodec([dict])  # type: ignore[list-item]


# -- ping and pong (§5.2) -----------------------------------------------------


@pytest.mark.parametrize("channel", [0, 7])
def test_ping_is_answered_with_pong_on_the_same_channel(pair: Pair, channel: int) -> None:
    pair.client.send_message(Ping(nonce=123), channel=channel)
    assert pair.to_server() == []  # the ping is not delivered
    assert pair.to_client() == [MessageReceived(channel, Pong(nonce=123))]


def test_pong_is_delivered_even_if_unsolicited(pair: Pair) -> None:
    pair.client.send_message(Pong(nonce=4))
    assert pair.to_server() == [MessageReceived(0, Pong(nonce=4))]
    assert pair.server.data_to_send() == b""


def test_many_pings_in_one_chunk_get_pongs_in_order(pair: Pair) -> None:
    for nonce in range(50):
        pair.client.send_message(Ping(nonce=nonce))
    pair.to_server()
    assert pair.to_client() == [MessageReceived(0, Pong(nonce=n)) for n in range(50)]


def test_ping_is_not_answered_after_our_close(pair: Pair) -> None:
    pair.server.send_close()
    close = pair.server.data_to_send()
    pair.client.send_message(Ping(nonce=1))
    assert pair.to_server() == []
    assert pair.server.data_to_send() == b""  # nothing follows our CLOSE
    assert pair.client.receive_data(close) == [CloseReceived(ErrorCode.NORMAL, "")]


# -- service messages (§5.1) --------------------------------------------------


def test_service_message_round_trips_through_a_pair(make_pair: PairFactory) -> None:
    pair = make_pair(types=[Greeting])
    greeting = Greeting(name="wörld", times=3, tags=["a", "b"])
    pair.client.send_message(greeting, channel=2)
    assert pair.to_server() == [MessageReceived(2, greeting)]


def test_field_with_a_default_may_be_omitted(make_pair: PairFactory) -> None:
    pair = make_pair(types=[Greeting])
    events = _send_raw_message(pair, pack({"type": "greeting", "name": "x"}))
    assert events == [MessageReceived(0, Greeting(name="x"))]


def test_service_message_unknown_to_the_receiver_is_schema_mismatch(pair: Pair) -> None:
    payload = MessageCodec([Greeting]).encode(Greeting(name="x"))
    _assert_refused(pair, payload, ErrorCode.SCHEMA_MISMATCH)


def test_struct_with_a_wrong_field_type_is_sent_and_refused_by_the_peer(pair: Pair) -> None:
    pair.client.send_message(Ping(nonce="seven"))  # type: ignore[arg-type]
    events = pair.to_server()
    assert isinstance(events[0], ProtocolViolation)
    assert events[0].error.code is ErrorCode.SCHEMA_MISMATCH


# -- invalid messages (§5.3) --------------------------------------------------


@pytest.mark.parametrize(
    "obj",
    [
        {"type": "pang", "nonce": 1},
        {"type": "", "nonce": 1},
        {"type": 1, "nonce": 1},
        {"nonce": 1},
        {},
    ],
    ids=["unknown-type", "empty-type", "integer-type", "no-type", "empty-map"],
)
def test_unknown_or_missing_type_is_schema_mismatch(pair: Pair, obj: object) -> None:
    _assert_refused(pair, pack(obj), ErrorCode.SCHEMA_MISMATCH)


def test_unknown_field_is_schema_mismatch(pair: Pair) -> None:
    error = _assert_refused(
        pair, pack({"type": "ping", "nonce": 1, "extra": True}), ErrorCode.SCHEMA_MISMATCH
    )
    assert "extra" in str(error)


def test_missing_field_is_schema_mismatch(pair: Pair) -> None:
    error = _assert_refused(pair, pack({"type": "ping"}), ErrorCode.SCHEMA_MISMATCH)
    assert "nonce" in str(error)


@pytest.mark.parametrize("nonce", ["1", 1.0, None, [1], {"n": 1}, b"\x01", True])
def test_wrong_field_type_is_schema_mismatch(pair: Pair, nonce: object) -> None:
    _assert_refused(pair, pack({"type": "ping", "nonce": nonce}), ErrorCode.SCHEMA_MISMATCH)


@pytest.mark.parametrize("obj", [5, "ping", [{"type": "ping", "nonce": 1}], None])
def test_top_level_that_is_not_a_map_is_schema_mismatch(pair: Pair, obj: object) -> None:
    _assert_refused(pair, pack(obj), ErrorCode.SCHEMA_MISMATCH)


@pytest.mark.parametrize(
    "payload",
    [
        b"",
        b"\xc1",
        b"\x82\xa4type",
        b"\x82\xa4type\xa4ping\xa5nonce\x01\x00",
        b"\x81\xa4type\xa2\xff\xfe",
        b"\x82\xa2\xff\xfe\x01\xa4type\xa4ping",
        b"\x81\xa1x" + b"\x91" * 100_000 + b"\xc0",
    ],
    ids=[
        "empty",
        "invalid-byte",
        "truncated",
        "trailing-byte",
        "non-utf8-type",
        "non-utf8-key",
        "nested-too-deep",
    ],
)
def test_bad_messagepack_is_bad_encoding(pair: Pair, payload: bytes) -> None:
    _assert_refused(pair, payload, ErrorCode.BAD_ENCODING)


def test_bad_utf8_in_a_service_string_field_is_bad_encoding(make_pair: PairFactory) -> None:
    pair = make_pair(types=[Greeting])
    payload = b"\x82\xa4type\xa8greeting\xa4name\xa2\xff\xfe"
    _assert_refused(pair, payload, ErrorCode.BAD_ENCODING)


def test_message_refused_mid_chunk_stops_the_parse(pair: Pair) -> None:
    data = (
        encode_frame(FrameType.DATA, b"before")
        + encode_frame(FrameType.MESSAGE, b"\xc1")
        + encode_frame(FrameType.DATA, b"after")
    )
    events = pair.server.receive_data(data)
    assert events[0] == b"before"
    assert isinstance(events[1], ProtocolViolation)
    assert len(events) == 2
