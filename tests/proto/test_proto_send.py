"""Checks on the sending side: limits, channels, the direct-write head (protocol.md §3.1, §4)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import pytest

from wirekit.errors import LocalProtocolError
from wirekit.proto import DataReceived, FrameConnection, Pong, Role
from wirekit.proto.frames import HEAD, encode_hello

if TYPE_CHECKING:
    from conftest import Pair, PairFactory


def test_send_at_the_peer_limit_is_accepted(make_pair: PairFactory) -> None:
    pair = make_pair(server_max=100)
    pair.client.send_data(bytes(100))
    assert pair.to_server() == [bytes(100)]


SENDS_OF_101_BYTES: dict[str, Callable[[FrameConnection], object]] = {
    "send_data": lambda c: c.send_data(bytes(101)),
    "send_data_channel": lambda c: c.send_data(bytes(101), channel=2),
    "send_many": lambda c: c.send_many([b"ok", bytes(101)]),
    "data_head": lambda c: c.data_head(101),
    "data_head_channel": lambda c: c.data_head(101, channel=2),
}


@pytest.mark.parametrize("send", sorted(SENDS_OF_101_BYTES))
def test_oversize_send_is_refused_against_the_peer_limit(make_pair: PairFactory, send: str) -> None:
    pair = make_pair(client_max=1 << 20, server_max=100)
    with pytest.raises(LocalProtocolError, match="frame of 101 bytes exceeds limit of 100 bytes"):
        SENDS_OF_101_BYTES[send](pair.client)


def test_send_limit_is_the_peer_limit_even_above_our_own(make_pair: PairFactory) -> None:
    pair = make_pair(client_max=100, server_max=1000)
    pair.client.send_data(bytes(1000))
    assert pair.to_server() == [bytes(1000)]


def test_oversize_message_is_refused_and_nothing_is_queued(make_pair: PairFactory) -> None:
    pair = make_pair(server_max=17)
    with pytest.raises(LocalProtocolError, match="frame of 18 bytes exceeds limit of 17 bytes"):
        pair.client.send_message(Pong(nonce=1))
    assert pair.client.data_to_send() == b""


def test_pipelined_send_is_checked_against_our_own_limit() -> None:
    client = FrameConnection(Role.CLIENT, max_frame_size=100)
    client.send_data(bytes(100))
    with pytest.raises(LocalProtocolError, match="exceeds limit of 100 bytes"):
        client.send_data(bytes(101))


@pytest.mark.parametrize("channel", [-1, 0x10000])
def test_channel_out_of_range_is_refused(pair: Pair, channel: int) -> None:
    for send in (
        lambda: pair.client.send_data(b"x", channel=channel),
        lambda: pair.client.send_message(Pong(nonce=1), channel=channel),
        lambda: pair.client.send_eof(channel),
        lambda: pair.client.send_window(channel, 1),
        lambda: pair.client.data_head(1, channel=channel),
    ):
        with pytest.raises(LocalProtocolError, match="out of range 0-65535"):
            send()
    assert pair.client.data_to_send() == b""


@pytest.mark.parametrize("increment", [0, -1, 2**32])
def test_window_increment_out_of_range_is_refused(pair: Pair, increment: int) -> None:
    with pytest.raises(LocalProtocolError, match="window increment"):
        pair.client.send_window(1, increment)


def test_data_head_for_a_direct_write_matches_send_data(pair: Pair) -> None:
    head = pair.client.data_head(5000)
    assert head == HEAD.pack(5000, 0)
    assert pair.to_server() == []
    assert pair.server.receive_data(head + b"p" * 5000) == [b"p" * 5000]


def test_data_head_on_a_channel_frames_the_payload_for_that_channel(pair: Pair) -> None:
    head = pair.client.data_head(3, channel=6)
    assert pair.server.receive_data(head + b"abc") == [DataReceived(6, b"abc")]


@pytest.mark.parametrize("channel", [0, 6])
def test_data_head_refuses_while_output_is_queued(pair: Pair, channel: int) -> None:
    pair.client.send_data(b"queued")
    with pytest.raises(LocalProtocolError, match="flush data_to_send"):
        pair.client.data_head(3, channel=channel)


def test_client_data_head_waits_for_its_hello_to_be_flushed() -> None:
    client = FrameConnection(Role.CLIENT)
    with pytest.raises(LocalProtocolError, match="flush data_to_send"):
        client.data_head(3)
    assert client.data_to_send() == encode_hello(1 << 20)
    assert client.data_head(3) == HEAD.pack(3, 0)
