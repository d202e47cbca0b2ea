"""The zero-copy input path: get_buffer() / buffer_updated(), as an asyncio
BufferedProtocol or a recv_into loop drives it."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from wirekit.errors import ErrorCode
from wirekit.proto import FrameConnection, ProtocolViolation, Role, State
from wirekit.proto.frames import HEAD, encode_frame, encode_hello


def read_into(conn: FrameConnection, data: bytes, sizes: list[int]) -> list[object]:
    """Feed ``data`` as reads of the given sizes, each capped by the buffer offered."""
    events: list[object] = []
    pos = 0
    sizes = sizes or [len(data)]
    i = 0
    while pos < len(data):
        buf = conn.get_buffer(-1)
        n = min(len(buf), len(data) - pos, max(1, sizes[i % len(sizes)]))
        buf[:n] = data[pos : pos + n]
        events += conn.buffer_updated(n)
        pos += n
        i += 1
    return events


def opened_server() -> FrameConnection:
    server = FrameConnection(Role.SERVER)
    server.receive_data(encode_hello(1 << 20))
    server.data_to_send()
    return server


payloads = st.lists(
    st.one_of(st.binary(max_size=64), st.integers(16 * 1024, 300 * 1024).map(lambda n: b"p" * n)),
    max_size=12,
)


@settings(max_examples=60, deadline=None)
@given(payloads, st.lists(st.integers(1, 400 * 1024), max_size=8))
def test_any_mix_of_sizes_and_reads_arrives_exactly(items: list[bytes], sizes: list[int]) -> None:
    server = opened_server()
    wire = b"".join(encode_frame(0, p) for p in items)
    assert read_into(server, wire, sizes) == items
    assert server.state is State.OPEN


@settings(max_examples=40, deadline=None)
@given(payloads, st.lists(st.integers(1, 70 * 1024), min_size=1, max_size=8), st.data())
def test_receive_data_and_buffered_reads_can_alternate(
    items: list[bytes], sizes: list[int], data: st.DataObject
) -> None:
    server = opened_server()
    wire = b"".join(encode_frame(0, p) for p in items)
    events: list[object] = []
    pos = 0
    i = 0
    while pos < len(wire):
        n = min(sizes[i % len(sizes)], len(wire) - pos)
        if data.draw(st.booleans()):
            events += server.receive_data(wire[pos : pos + n])
        else:
            events += read_into(server, wire[pos : pos + n], [n])
        pos += n
        i += 1
    assert events == items


def test_a_large_frame_spanning_reads_is_read_into_its_own_buffer() -> None:
    server = opened_server()
    payload = bytes(range(256)) * 1024  # 256 KiB
    wire = encode_frame(0, payload)
    first = server.get_buffer(-1)
    first[:100_000] = wire[:100_000]
    assert server.buffer_updated(100_000) == []
    rest = server.get_buffer(-1)
    assert len(rest) == len(wire) - 100_000, "the next read fills exactly the frame's remainder"
    rest[:] = wire[100_000:]
    assert server.buffer_updated(len(rest)) == [payload]


def test_a_read_that_fails_after_get_buffer_loses_nothing() -> None:
    server = opened_server()
    wire = encode_frame(0, b"hello") + encode_frame(0, b"world")
    assert read_into(server, wire[:10], [10]) == []  # a head and 2 payload bytes carried
    server.get_buffer(-1)  # a read is set up, then fails (timeout): no buffer_updated
    assert read_into(server, wire[10:], [100]) == [b"hello", b"world"]


def test_a_four_gib_head_is_refused_before_any_payload() -> None:
    server = opened_server()
    events = read_into(server, HEAD.pack(2**32 - 1, 0) + b"x" * 100, [108])
    assert len(events) == 1 and isinstance(events[0], ProtocolViolation)
    assert events[0].error.code == ErrorCode.FRAME_TOO_LARGE
    assert server.state is State.FAILED


def test_the_hello_may_arrive_through_buffered_reads() -> None:
    server = FrameConnection(Role.SERVER)
    wire = encode_hello(1 << 20) + encode_frame(0, b"after the hello")
    events = read_into(server, wire, [5, 3, 100])
    assert events[-1] == b"after the hello"
    assert server.state is State.OPEN


def test_end_of_stream_inside_a_large_frame_is_an_error() -> None:
    server = opened_server()
    read_into(server, encode_frame(0, b"z" * 100_000)[:50_000], [50_000])
    events = server.receive_eof()
    assert len(events) == 1 and isinstance(events[0], ProtocolViolation)
