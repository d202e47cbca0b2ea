"""The zero-copy input path: get_buffer() / buffer_updated(), as an asyncio
BufferedProtocol or a recv_into loop drives it."""

from __future__ import annotations

import tracemalloc

import pytest
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


def test_a_large_frame_spanning_reads_arrives_with_the_frame_after_it() -> None:
    server = opened_server()
    payload = bytes(range(256)) * 1024  # 256 KiB
    wire = encode_frame(0, payload) + encode_frame(0, b"next")
    assert read_into(server, wire[:100_000], [100_000]) == []
    assert read_into(server, wire[100_000:200_000], [100_000]) == []
    # The rest of the frame and the whole next one in one read.
    assert read_into(server, wire[200_000:], [len(wire)]) == [payload, b"next"]
    assert server.state is State.OPEN


@pytest.mark.parametrize("via", ["buffered", "receive_data"])
def test_a_head_announcing_a_large_frame_costs_only_what_arrives(via: str) -> None:
    """protocol.md §3.1: 22 bytes (hello, head of a 1 MiB frame, two payload
    bytes) must not make the receiver allocate the megabyte."""
    server = FrameConnection(Role.SERVER)
    wire = encode_hello(1 << 20) + HEAD.pack(1 << 20, 0) + b"ab"
    server.get_buffer(-1)  # this thread's scratch buffer exists before we count
    tracemalloc.start()
    try:
        if via == "buffered":
            read_into(server, wire[:12], [12])
            read_into(server, wire[12:], [10])
        else:
            server.receive_data(wire)
        read_into(server, b"c", [1])  # the next read continues the frame
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 64 * 1024, f"{peak} bytes allocated for 3 bytes of payload"
    rest = b"d" * ((1 << 20) - 3)
    assert read_into(server, rest + encode_frame(0, b"after"), [300_000]) == [
        b"abc" + rest,
        b"after",
    ]


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
