"""Frame heads and frame types (protocol.md §3, §4)."""

from __future__ import annotations

import re
import struct
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from wirekit.errors import ErrorCode, FrameTooLarge, RemoteProtocolError
from wirekit.proto import (
    ChannelEOF,
    DataReceived,
    ErrorReceived,
    FrameConnection,
    FrameType,
    MessageReceived,
    Pong,
    ProtocolViolation,
    State,
    WindowUpdate,
)
from wirekit.proto import connection as connection_module
from wirekit.proto.frames import HEAD, encode_error, encode_frame, encode_window

if TYPE_CHECKING:
    from conftest import Pair, PairFactory

PROTOCOL_MD = Path(__file__).resolve().parents[2] / "docs" / "protocol.md"


def frame(ftype: int, payload: bytes = b"", channel: int = 0, flags: int = 0) -> bytes:
    """Any frame, including ones the encoder refuses to build."""
    return struct.pack(">IBBH", len(payload), ftype, flags, channel) + payload


def violation(events: Sequence[object]) -> RemoteProtocolError:
    """The error of the ProtocolViolation that must end ``events``."""
    assert events, "expected a ProtocolViolation, got no events"
    last = events[-1]
    assert isinstance(last, ProtocolViolation), events
    assert not any(isinstance(e, ProtocolViolation) for e in events[:-1])
    return last.error


def assert_failed_with(conn: FrameConnection, code: ErrorCode, events: Sequence[object]) -> None:
    """``conn`` reported ``code``, queued the ERROR frame and is FAILED."""
    error = violation(events)
    assert error.code is code, error
    assert conn.state is State.FAILED
    assert conn.error is error
    assert conn.data_to_send() == encode_error(code, str(error))


# -- frame head (§3) ----------------------------------------------------------


def test_frame_types_in_the_document_match_the_enum() -> None:
    text = PROTOCOL_MD.read_text(encoding="utf-8")
    section = text[text.index("## 4. Frame types") : text.index("### 4.1")]
    rows = re.findall(r"^\| (\d+) +\| ([A-Z]+) +\|", section, re.MULTILINE)
    assert {int(n): name for n, name in rows} == {t.value: t.name for t in FrameType}


def test_head_is_length_type_flags_channel_big_endian(pair: Pair) -> None:
    pair.client.send_data(b"abc", channel=0x0102)
    assert pair.client.data_to_send() == b"\x00\x00\x00\x03\x00\x00\x01\x02abc"


def test_empty_data_frame_is_delivered_as_empty_bytes(pair: Pair) -> None:
    pair.client.send_data(b"")
    pair.client.send_data(b"", channel=3)
    assert pair.to_server() == [b"", DataReceived(3, b"")]


def test_frame_of_exactly_max_frame_size_is_accepted(make_pair: PairFactory) -> None:
    pair = make_pair(server_max=1000)
    payload = bytes(range(250)) * 4
    events = pair.server.receive_data(frame(0, payload) + frame(0, payload, channel=4))
    assert events == [payload, DataReceived(4, payload)]
    assert pair.server.state is State.OPEN


def test_frame_one_past_max_frame_size_is_refused_on_its_head(make_pair: PairFactory) -> None:
    pair = make_pair(server_max=1000)
    events = pair.server.receive_data(frame(0, bytes(1001))[:8])  # the head alone
    error = violation(events)
    assert isinstance(error, FrameTooLarge)
    assert (error.size, error.limit) == (1001, 1000)
    assert str(error) == "frame of 1001 bytes exceeds limit of 1000 bytes"
    assert_failed_with(pair.server, ErrorCode.FRAME_TOO_LARGE, events)


def test_head_of_a_4_gib_frame_is_refused_before_any_payload(pair: Pair) -> None:
    events = pair.server.receive_data(struct.pack(">IBBH", 2**32 - 1, 0, 0, 0))
    error = violation(events)
    assert isinstance(error, FrameTooLarge)
    assert error.size == 2**32 - 1
    assert pair.server._buf == b""  # nothing kept for the announced payload
    assert_failed_with(pair.server, ErrorCode.FRAME_TOO_LARGE, events)


def test_oversize_head_split_across_reads_is_refused_once_complete(pair: Pair) -> None:
    head = struct.pack(">IBBH", 2**31, 1, 0, 0)
    assert pair.server.receive_data(head[:5]) == []
    events = pair.server.receive_data(head[5:] + b"x" * 100)
    assert isinstance(violation(events), FrameTooLarge)
    assert pair.server._buf == b""


def test_oversize_frame_after_valid_frames_keeps_the_earlier_events(pair: Pair) -> None:
    data = frame(0, b"one") + frame(0, b"two", channel=2) + struct.pack(">II", 2**31, 0)
    events = pair.server.receive_data(data)
    assert events[:2] == [b"one", DataReceived(2, b"two")]
    assert isinstance(violation(events), FrameTooLarge)


def test_frames_split_one_byte_at_a_time_are_reassembled(pair: Pair) -> None:
    pair.client.send_data(b"first")
    pair.client.send_data(b"", channel=9)
    pair.client.send_message(Pong(nonce=77), channel=3)
    pair.client.send_window(3, 5)
    pair.client.send_eof(3)
    pair.client.send_data(b"x" * 3000)
    data = pair.client.data_to_send()
    events = []
    for i in range(len(data)):
        events += pair.server.receive_data(data[i : i + 1])
    assert events == [
        b"first",
        DataReceived(9, b""),
        MessageReceived(3, Pong(nonce=77)),
        WindowUpdate(3, 5),
        ChannelEOF(3),
        b"x" * 3000,
    ]


def test_many_frames_in_one_chunk_are_all_delivered_in_order(pair: Pair) -> None:
    payloads = [str(i).encode() * (i % 7) for i in range(2000)]
    pair.client.send_many(payloads)
    assert pair.to_server() == payloads


def test_partial_frame_is_not_rescanned_until_complete(
    pair: Pair, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = 0
    real = HEAD

    class CountingHead:
        size = real.size

        @staticmethod
        def pack(*args: int) -> bytes:
            return real.pack(*args)

        @staticmethod
        def unpack_from(buffer: bytes, offset: int = 0) -> tuple[int, int]:
            nonlocal calls
            calls += 1
            return real.unpack_from(buffer, offset)

    monkeypatch.setattr(connection_module, "HEAD", CountingHead)
    data = frame(0, b"z" * 100_000)
    for i in range(0, len(data), 100):
        pair.server.receive_data(data[i : i + 100])
    # One parse when the head completes, one when the payload completes:
    # not one per 100-byte read.
    assert calls <= 4


# -- type, flags and channels (§3.3, §4) --------------------------------------


@pytest.mark.parametrize("ftype", [6, 7, 0x7F, 0xFF])
def test_unknown_frame_type_is_refused(pair: Pair, ftype: int) -> None:
    events = pair.server.receive_data(frame(ftype, b"payload"))
    assert "unknown frame type" in str(violation(events))
    assert_failed_with(pair.server, ErrorCode.UNKNOWN_TYPE, events)


@pytest.mark.parametrize("ftype", list(FrameType))
@pytest.mark.parametrize("flags", [0x01, 0x80, 0xFF])
def test_nonzero_flags_are_refused_on_every_type(pair: Pair, ftype: FrameType, flags: int) -> None:
    events = pair.server.receive_data(frame(ftype, b"", flags=flags))
    assert f"0x{flags:02x}" in str(violation(events))
    assert_failed_with(pair.server, ErrorCode.PROTOCOL_ERROR, events)


def test_flags_are_checked_before_the_type(pair: Pair) -> None:
    events = pair.server.receive_data(frame(99, b"", flags=1))
    assert violation(events).code is ErrorCode.PROTOCOL_ERROR


@pytest.mark.parametrize("channel", [0, 1, 7, 0xFFFF])
def test_data_is_accepted_on_any_channel(pair: Pair, channel: int) -> None:
    pair.client.send_data(b"hi", channel=channel)
    expected = b"hi" if channel == 0 else DataReceived(channel, b"hi")
    assert pair.to_server() == [expected]


@pytest.mark.parametrize("ftype", [FrameType.ERROR, FrameType.CLOSE])
@pytest.mark.parametrize("channel", [1, 0xFFFF])
def test_error_and_close_on_a_nonzero_channel_are_refused(
    pair: Pair, ftype: FrameType, channel: int
) -> None:
    events = pair.server.receive_data(frame(ftype, b"\x00\x00", channel=channel))
    assert f"must use channel 0, not {channel}" in str(violation(events))
    assert_failed_with(pair.server, ErrorCode.PROTOCOL_ERROR, events)


# -- EOF (§4.1) ---------------------------------------------------------------


def test_eof_frame_with_a_payload_is_refused(pair: Pair) -> None:
    events = pair.server.receive_data(frame(FrameType.EOF, b"x", channel=2))
    assert "EOF frame carries 1 bytes" in str(violation(events))
    assert_failed_with(pair.server, ErrorCode.PROTOCOL_ERROR, events)


@pytest.mark.parametrize("channel", [0, 5])
@pytest.mark.parametrize("after", [FrameType.DATA, FrameType.MESSAGE, FrameType.EOF])
def test_frame_after_eof_on_the_same_channel_is_wrong_state(
    pair: Pair, channel: int, after: FrameType
) -> None:
    pair.client.send_eof(channel)
    assert pair.to_server() == [ChannelEOF(channel)]
    payload = b"\x82\xa4type\xa4pong\xa5nonce\x01" if after is FrameType.MESSAGE else b""
    events = pair.server.receive_data(frame(after, payload, channel=channel))
    assert f"on channel {channel} after its EOF" in str(violation(events))
    assert_failed_with(pair.server, ErrorCode.WRONG_STATE, events)


def test_data_after_eof_on_channel_0_in_the_same_chunk_is_wrong_state(pair: Pair) -> None:
    events = pair.server.receive_data(frame(0, b"a") + frame(FrameType.EOF) + frame(0, b"b"))
    assert events[:2] == [b"a", ChannelEOF(0)]
    assert_failed_with(pair.server, ErrorCode.WRONG_STATE, events)


def test_eof_on_one_channel_leaves_the_others_open(pair: Pair) -> None:
    pair.client.send_eof(1)
    pair.client.send_data(b"zero")
    pair.client.send_data(b"two", channel=2)
    assert pair.to_server() == [ChannelEOF(1), b"zero", DataReceived(2, b"two")]


def test_window_after_eof_on_the_same_channel_is_allowed(pair: Pair) -> None:
    pair.client.send_eof(4)
    pair.client.send_window(4, 100)
    assert pair.to_server() == [ChannelEOF(4), WindowUpdate(4, 100)]


def test_eof_is_one_direction_only(pair: Pair) -> None:
    pair.client.send_eof(0)
    pair.to_server()
    pair.server.send_data(b"still talking")
    assert pair.to_client() == [b"still talking"]


# -- WINDOW (§4.2) -------------------------------------------------------------


@pytest.mark.parametrize("payload", [b"", b"\x00\x00\x01", b"\x00\x00\x00\x01\x00"])
def test_window_of_the_wrong_size_is_refused(pair: Pair, payload: bytes) -> None:
    events = pair.server.receive_data(frame(FrameType.WINDOW, payload, channel=1))
    assert f"WINDOW frame of {len(payload)} bytes, must be 4" == str(violation(events))
    assert_failed_with(pair.server, ErrorCode.PROTOCOL_ERROR, events)


def test_window_of_zero_increment_is_refused(pair: Pair) -> None:
    events = pair.server.receive_data(frame(FrameType.WINDOW, b"\x00" * 4))
    assert "must not be zero" in str(violation(events))
    assert_failed_with(pair.server, ErrorCode.PROTOCOL_ERROR, events)


def test_largest_window_increment_is_accepted(pair: Pair) -> None:
    assert pair.server.receive_data(encode_window(0xFFFF, 2**32 - 1)) == [
        WindowUpdate(0xFFFF, 2**32 - 1)
    ]


# -- ERROR and CLOSE payloads (§4.3) ------------------------------------------


@pytest.mark.parametrize("ftype", [FrameType.ERROR, FrameType.CLOSE])
@pytest.mark.parametrize(
    ("payload", "detail"),
    [
        (b"", "shorter than the 2-byte code"),
        (b"\x00", "shorter than the 2-byte code"),
        (b"\x00\x01" + b"r" * 257, "exceeds limit of 256 bytes"),
        (b"\x00\x01\xff\xfe", "utf-8"),
        (b"\x00\x01caf\xc3", "utf-8"),
    ],
)
def test_malformed_error_or_close_payload_is_bad_encoding(
    pair: Pair, ftype: FrameType, payload: bytes, detail: str
) -> None:
    events = pair.server.receive_data(frame(ftype, payload))
    assert detail in str(violation(events))
    assert_failed_with(pair.server, ErrorCode.BAD_ENCODING, events)


def test_reason_of_exactly_256_bytes_is_accepted(pair: Pair) -> None:
    reason = "é" * 128
    events = pair.server.receive_data(frame(FrameType.ERROR, b"\x00\x0e" + reason.encode()))
    assert events == [ErrorReceived(ErrorCode.SERVICE_ERROR, reason)]


def test_long_reason_is_cut_on_a_character_boundary_by_the_sender() -> None:
    encoded = encode_error(ErrorCode.SERVICE_ERROR, "€" * 100)  # 300 bytes of UTF-8
    reason = encoded[10:]
    assert len(reason) == 255
    assert reason.decode("utf-8") == "€" * 85


def test_unknown_error_code_is_accepted_and_reported(pair: Pair) -> None:
    events = pair.server.receive_data(encode_error(4242, "custom"))
    assert events == [ErrorReceived(4242, "custom")]
    assert pair.server.close_code == 4242


def test_frame_after_a_received_error_is_ignored(pair: Pair) -> None:
    data = encode_error(ErrorCode.INTERNAL_ERROR, "boom") + encode_frame(FrameType.DATA, b"late")
    assert pair.server.receive_data(data) == [ErrorReceived(ErrorCode.INTERNAL_ERROR, "boom")]
    assert pair.server.state is State.FAILED
    assert pair.server.data_to_send() == b""  # no answer to an ERROR frame
