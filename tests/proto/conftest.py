"""Helpers for the sans-I/O protocol tests: a client and a server wired back to back."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import pytest

from wirekit.proto import Event, FrameConnection, HelloReceived, Message, MessageCodec, Role, State

#: Builds a :class:`Pair`; keyword arguments as :func:`open_pair`.
PairFactory = Callable[..., "Pair"]


@dataclass
class Pair:
    """A client and a server whose outputs are piped into each other by hand."""

    client: FrameConnection
    server: FrameConnection
    client_events: list[Event] = field(default_factory=list)
    server_events: list[Event] = field(default_factory=list)

    def to_server(self, chunks: Iterable[int] | None = None) -> list[Event]:
        """Deliver what the client queued to the server, optionally in chunks of the given sizes."""
        events = _deliver(self.client.data_to_send(), self.server, chunks)
        self.server_events += events
        return events

    def to_client(self, chunks: Iterable[int] | None = None) -> list[Event]:
        """Deliver what the server queued to the client."""
        events = _deliver(self.server.data_to_send(), self.client, chunks)
        self.client_events += events
        return events

    def pump(self, rounds: int = 10) -> None:
        """Deliver in both directions until neither side has anything queued."""
        for _ in range(rounds):
            to_server, to_client = self.client.data_to_send(), self.server.data_to_send()
            if not (to_server or to_client):
                return
            self.server_events += self.server.receive_data(to_server)
            self.client_events += self.client.receive_data(to_client)
        raise AssertionError(f"the pair still talks after {rounds} rounds")


def _deliver(data: bytes, receiver: FrameConnection, chunks: Iterable[int] | None) -> list[Event]:
    if chunks is None:
        return receiver.receive_data(data)
    events: list[Event] = []
    pos = 0
    for size in chunks:
        events += receiver.receive_data(data[pos : pos + size])
        pos += size
    if pos < len(data):
        events += receiver.receive_data(data[pos:])
    return events


def open_pair(
    *,
    client_max: int = 1 << 20,
    server_max: int = 1 << 20,
    types: Iterable[type[Message]] = (),
    handshake: bool = True,
) -> Pair:
    """A client and a server sharing one codec.

    With ``handshake`` both hellos are exchanged, both sides are OPEN and the
    recorded event lists start empty.
    """
    codec = MessageCodec(types)
    pair = Pair(
        FrameConnection(Role.CLIENT, max_frame_size=client_max, codec=codec),
        FrameConnection(Role.SERVER, max_frame_size=server_max, codec=codec),
    )
    if handshake:
        assert pair.to_server() == [HelloReceived(1, client_max)]
        assert pair.to_client() == [HelloReceived(1, server_max)]
        assert pair.client.state is State.OPEN
        assert pair.server.state is State.OPEN
        pair.client_events.clear()
        pair.server_events.clear()
    return pair


@pytest.fixture
def pair() -> Pair:
    """An OPEN client/server pair with default limits."""
    return open_pair()


@pytest.fixture
def make_pair() -> PairFactory:
    """A factory of pairs with custom limits or message types."""
    return open_pair
