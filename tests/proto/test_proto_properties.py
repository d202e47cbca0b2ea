"""Property tests: round trips under any chunking, and no input ever raises."""

from __future__ import annotations

import struct
from itertools import pairwise

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from wirekit.errors import ErrorCode, RemoteProtocolError
from wirekit.proto import (
    ChannelEOF,
    CloseReceived,
    DataReceived,
    ErrorReceived,
    Event,
    FrameConnection,
    HelloReceived,
    Message,
    MessageCodec,
    MessageReceived,
    Ping,
    Pong,
    ProtocolViolation,
    Role,
    State,
    WindowUpdate,
)
from wirekit.proto.frames import encode_hello

EVENT_TYPES = (
    bytes,
    HelloReceived,
    DataReceived,
    MessageReceived,
    ChannelEOF,
    WindowUpdate,
    ErrorReceived,
    CloseReceived,
    ProtocolViolation,
)
NONCES = st.integers(min_value=-(2**63), max_value=2**64 - 1)
CHANNELS = st.integers(min_value=0, max_value=0xFFFF)
SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


class Note(Message, tag="note"):
    text: str
    blob: bytes
    numbers: list[int]
    ratio: float | None = None
    labels: dict[str, str] = {}


NOTES = st.builds(
    Note,
    text=st.text(),
    blob=st.binary(),
    numbers=st.lists(NONCES, max_size=5),
    ratio=st.none() | st.floats(allow_nan=False),
    labels=st.dictionaries(st.text(max_size=5), st.text(max_size=5), max_size=3),
)
MESSAGES = st.builds(Ping, nonce=NONCES) | st.builds(Pong, nonce=NONCES) | NOTES


def _open(role: Role, codec: MessageCodec | None = None) -> FrameConnection:
    conn = FrameConnection(role, codec=codec)
    peer = Role.SERVER if role is Role.CLIENT else Role.CLIENT
    conn.receive_data(encode_hello(1 << 20, role=peer))
    conn.data_to_send()
    assert conn.state is State.OPEN
    return conn


def _frame(ftype: int, payload: bytes, channel: int = 0, flags: int = 0) -> bytes:
    """Any frame, including ones the encoder refuses to build."""
    return struct.pack(">IBBH", len(payload), ftype, flags, channel) + payload


def _chunks(data: bytes, cuts: list[int]) -> list[bytes]:
    """``data`` cut at the given offsets (taken modulo its length)."""
    points = sorted({0, len(data), *(c % (len(data) + 1) for c in cuts)})
    return [data[a:b] for a, b in pairwise(points)]


def _feed(conn: FrameConnection, chunks: list[bytes]) -> list[Event]:
    events: list[Event] = []
    for chunk in chunks:
        events += conn.receive_data(chunk)
    return events


def _assert_well_formed(conn: FrameConnection, events: list[Event]) -> None:
    """Events are of known types, nothing but WINDOW follows a channel's EOF, and a
    violation, if any, is the last event and leaves the connection FAILED for good."""
    assert all(isinstance(e, EVENT_TYPES) for e in events), events
    ended: set[int] = set()
    for event in events:
        channel = 0 if isinstance(event, bytes) else getattr(event, "channel", None)
        if isinstance(event, bytes | DataReceived | MessageReceived | ChannelEOF):
            assert channel not in ended, events
        if isinstance(event, ChannelEOF):
            ended.add(event.channel)
    violations = [i for i, e in enumerate(events) if isinstance(e, ProtocolViolation)]
    if violations:
        assert violations == [len(events) - 1]
        event = events[-1]
        assert isinstance(event, ProtocolViolation)
        assert isinstance(event.error, RemoteProtocolError)
        assert conn.state is State.FAILED
        assert conn.error is event.error
    if conn.state is State.FAILED:
        conn.data_to_send()
        assert conn.receive_data(b"\x00" * 16) == []
        assert conn.data_to_send() == b""


# -- round trips --------------------------------------------------------------


@SETTINGS
@given(
    frames=st.lists(st.tuples(CHANNELS, st.binary(max_size=3000)), max_size=20),
    cuts=st.lists(st.integers(min_value=0), max_size=30),
)
def test_data_round_trips_under_any_split(frames: list[tuple[int, bytes]], cuts: list[int]) -> None:
    client, server = _open(Role.CLIENT), _open(Role.SERVER)
    for channel, payload in frames:
        client.send_data(payload, channel=channel)
    events = _feed(server, _chunks(client.data_to_send(), cuts))
    expected = [p if c == 0 else DataReceived(c, p) for c, p in frames]
    assert events == expected


@SETTINGS
@given(
    payloads=st.lists(st.binary(max_size=2000), max_size=50),
    cuts=st.lists(st.integers(min_value=0), max_size=30),
)
def test_send_many_round_trips_under_any_split(payloads: list[bytes], cuts: list[int]) -> None:
    client, server = _open(Role.CLIENT), _open(Role.SERVER)
    client.send_many(payloads)
    assert _feed(server, _chunks(client.data_to_send(), cuts)) == payloads


@SETTINGS
@given(message=MESSAGES)
def test_codec_decode_inverts_encode(message: Message) -> None:
    codec = MessageCodec([Note])
    assert codec.decode(codec.encode(message)) == message


@SETTINGS
@given(
    messages=st.lists(st.tuples(CHANNELS, MESSAGES), max_size=10),
    cuts=st.lists(st.integers(min_value=0), max_size=20),
)
def test_messages_round_trip_and_pings_come_back_as_pongs(
    messages: list[tuple[int, Message]], cuts: list[int]
) -> None:
    codec = MessageCodec([Note])
    client, server = _open(Role.CLIENT, codec), _open(Role.SERVER, codec)
    for channel, message in messages:
        client.send_message(message, channel=channel)
    events = _feed(server, _chunks(client.data_to_send(), cuts))
    assert events == [MessageReceived(c, m) for c, m in messages if not isinstance(m, Ping)]
    answers = client.receive_data(server.data_to_send())
    pings = [(c, m) for c, m in messages if isinstance(m, Ping)]
    assert answers == [MessageReceived(c, Pong(nonce=m.nonce)) for c, m in pings]


@SETTINGS
@given(
    frames=st.lists(
        st.tuples(st.sampled_from(["data", "pong", "eof", "window"]), st.sampled_from([0, 1, 2])),
        max_size=15,
    ),
    cuts=st.lists(st.integers(min_value=0), max_size=10),
)
def test_frames_after_their_channels_eof_are_refused_exactly_there(
    frames: list[tuple[str, int]], cuts: list[int]
) -> None:
    client, server = _open(Role.CLIENT), _open(Role.SERVER)
    expected: list[Event] = []
    ended: set[int] = set()
    refused = False
    for kind, channel in frames:  # the sender does not refuse these; the receiver must
        if kind == "data":
            client.send_data(b"d", channel=channel)
            event: Event = b"d" if channel == 0 else DataReceived(channel, b"d")
        elif kind == "pong":
            client.send_message(Pong(nonce=channel), channel=channel)
            event = MessageReceived(channel, Pong(nonce=channel))
        elif kind == "eof":
            client.send_eof(channel)
            event = ChannelEOF(channel)
        else:
            client.send_window(channel, 1)
            event = WindowUpdate(channel, 1)
        if refused:
            continue
        if kind != "window" and channel in ended:
            refused = True
            continue
        expected.append(event)
        if kind == "eof":
            ended.add(channel)
    events = _feed(server, _chunks(client.data_to_send(), cuts))
    _assert_well_formed(server, events)
    if refused:
        last = events.pop()
        assert isinstance(last, ProtocolViolation)
        assert last.error.code is ErrorCode.WRONG_STATE
    assert events == expected


# -- hostile input never raises -----------------------------------------------

PONG_PAYLOAD = b"\x82\xa4type\xa4pong\xa5nonce\x01"
#: Frames of any type, flags and channel with random or typical payloads.
RAW_FRAMES = st.builds(
    lambda ftype, flags, channel, payload: _frame(ftype, payload, channel, flags),
    st.sampled_from([*range(6), 6, 255]),
    st.sampled_from([0, 0, 0, 0, 1, 0x80]),
    st.sampled_from([0, 0, 1, 7, 0xFFFF]),
    st.binary(max_size=40)
    | st.sampled_from(
        [
            b"\x00\x00\x00\x01",
            b"\x00\x00",
            b"\x00\x04too large",
            b"\x82\xa4type\xa4ping\xa5nonce\x01",
            b"\x82\xa4type\xa4pong\xa5nonce\xcf\xff\xff\xff\xff\xff\xff\xff\xff",
            b"\x81\xa4type\xa2\xff\xfe",
        ]
    ),
)
#: Pieces of MessagePack for building near-valid messages: keys and values of
#: the built-in and test messages, wrong types, reserved and truncated
#: opcodes, strings that are not UTF-8.
MAP_HEADS = (b"\x80", b"\x81", b"\x82", b"\x83", b"\xde\x00\x02", b"\xdf\xff\xff\xff\xff")
KEYS = (b"\xa4type", b"\xa5nonce", b"\xa4text", b"\xa4blob", b"\xa0", b"\xa2\xff\xfe", b"\x01")
VALUES = (
    *(b"\xa4ping", b"\xa4pong", b"\xa4note", b"\xa0", b"\xa2\xff\xfe", b"\xd9\x02\xc3\x28"),
    *(b"\x01", b"\xff", b"\xc0", b"\xc3", b"\xcb" + bytes(8), b"\xcf" + b"\xff" * 8, b"\xd3\x80"),
    *(b"\x91\x01", b"\x81\xa1k\xa1v", b"\xc4\x01x", b"\xc1", b"\xcb", b"\xdc\xff\xff"),
)
MSGPACKISH = st.builds(
    lambda head, pairs, tail: head + b"".join(k + v for k, v in pairs) + tail,
    st.sampled_from(MAP_HEADS) | st.binary(max_size=2),
    st.lists(
        st.tuples(
            st.sampled_from(KEYS) | st.binary(max_size=3),
            st.sampled_from(VALUES) | st.binary(max_size=3),
        ),
        max_size=4,
    ),
    st.just(b"") | st.binary(max_size=3),
)
MESSAGE_FRAMES = st.builds(
    lambda channel, payload: _frame(1, payload, channel), st.sampled_from([0, 3]), MSGPACKISH
)


def _valid_frame(ftype: int, channel: int, data: bytes) -> bytes:
    payload = {0: data, 1: PONG_PAYLOAD, 2: b"", 3: b"\x00\x00\x00\x01"}[ftype]
    return _frame(ftype, payload, channel)


#: Valid frames on few channels, so that sequences such as EOF then DATA occur often.
VALID_FRAMES = st.builds(
    _valid_frame,
    st.sampled_from([0, 0, 1, 2, 2, 3]),
    st.sampled_from([0, 0, 1]),
    st.binary(max_size=6),
)
HOSTILE = st.lists(
    VALID_FRAMES | RAW_FRAMES | MESSAGE_FRAMES | st.binary(max_size=30), max_size=12
).map(b"".join)


@SETTINGS
@given(data=HOSTILE, cuts=st.lists(st.integers(min_value=0), max_size=10))
def test_any_bytes_after_a_valid_hello_never_raise(data: bytes, cuts: list[int]) -> None:
    for role in Role:
        conn = _open(role)
        events = _feed(conn, _chunks(data, cuts))
        _assert_well_formed(conn, events)
        _assert_well_formed(conn, conn.receive_eof())
        assert conn.state in (State.OPEN, State.CLOSED, State.FAILED)


@SETTINGS
@given(data=st.binary(max_size=200), cuts=st.lists(st.integers(min_value=0), max_size=10))
def test_any_bytes_after_a_valid_hello_never_raise_unstructured(
    data: bytes, cuts: list[int]
) -> None:
    conn = _open(Role.SERVER)
    _assert_well_formed(conn, _feed(conn, _chunks(data, cuts)))


HELLOISH = (
    st.binary(max_size=40)
    | st.builds(lambda tail: b"WKIT" + tail, st.binary(max_size=20))
    | st.builds(
        lambda v, f, r, m, tail: struct.pack(">4sBBHI", b"WKIT", v, f, r, m) + tail,
        st.integers(0, 255),
        st.integers(0, 255),
        st.integers(0, 0xFFFF),
        st.integers(0, 2**32 - 1),
        HOSTILE,
    )
    | st.builds(lambda m, tail: m + tail, st.sampled_from([b"GET ", b"GE", b"PRI "]), st.binary())
)


@SETTINGS
@given(data=HELLOISH, cuts=st.lists(st.integers(min_value=0), max_size=10))
def test_any_bytes_as_a_hello_never_raise(data: bytes, cuts: list[int]) -> None:
    for role in Role:
        conn = FrameConnection(role)
        conn.data_to_send()
        events = _feed(conn, _chunks(data, cuts))
        _assert_well_formed(conn, events)
        hellos = [e for e in events if isinstance(e, HelloReceived)]
        assert len(hellos) <= 1
        if conn.state is State.HELLO:
            assert not hellos
            _assert_well_formed(conn, conn.receive_eof())
            assert conn.state is State.FAILED


@settings(SETTINGS, max_examples=1000)
@given(payload=MSGPACKISH, channel=st.sampled_from([0, 9]))
def test_any_message_payload_is_delivered_answered_or_refused(payload: bytes, channel: int) -> None:
    conn = _open(Role.SERVER, MessageCodec([Note]))
    events = conn.receive_data(_frame(1, payload, channel))
    _assert_well_formed(conn, events)
    if not events:  # a ping: answered with a pong on the same channel
        answer = _open(Role.CLIENT).receive_data(conn.data_to_send())
        assert len(answer) == 1
        assert isinstance(answer[0], MessageReceived)
        assert answer[0].channel == channel
        assert isinstance(answer[0].message, Pong)
        return
    (event,) = events
    if isinstance(event, ProtocolViolation):
        assert event.error.code in (ErrorCode.BAD_ENCODING, ErrorCode.SCHEMA_MISMATCH)
    else:
        assert isinstance(event, MessageReceived)
        assert isinstance(event.message, Pong | Note)
