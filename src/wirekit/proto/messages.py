"""Typed control messages carried in MESSAGE frames (docs/protocol.md §5).

A message is a frozen msgspec Struct encoded as a MessagePack map whose
``"type"`` key names the message. Decoding validates against the set of
types a connection accepts: unknown types and unknown or missing fields are
errors, reported as :class:`~wirekit.errors.RemoteProtocolError`.

Services define their own messages by subclassing :class:`Message`::

    class ExecRequest(Message, tag="exec-request"):
        argv: list[str]
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Union

import msgspec

from ..errors import ErrorCode, LocalProtocolError, RemoteProtocolError

__all__ = ["BUILTIN_MESSAGES", "Message", "MessageCodec", "Ping", "Pong"]


class Message(msgspec.Struct, frozen=True, forbid_unknown_fields=True, tag_field="type"):
    """Base class of every control message."""


class Ping(Message, frozen=True, tag="ping"):
    """Asks the peer to answer with a :class:`Pong` carrying the same nonce."""

    nonce: int


class Pong(Message, frozen=True, tag="pong"):
    """The answer to a :class:`Ping`; sent by the protocol layer itself."""

    nonce: int


BUILTIN_MESSAGES: tuple[type[Message], ...] = (Ping, Pong)


class MessageCodec:
    """Encodes any :class:`Message`; decodes only the types it was given."""

    __slots__ = ("_decoder", "_encoder", "types")

    def __init__(self, types: Iterable[type[Message]] = ()) -> None:
        merged: dict[str, type[Message]] = {}
        for cls in (*BUILTIN_MESSAGES, *types):
            if not (isinstance(cls, type) and issubclass(cls, Message)):
                raise LocalProtocolError(f"{cls!r} is not a wirekit Message subclass")
            merged[cls.__struct_config__.tag] = cls  # type: ignore[index]
        self.types = tuple(merged.values())
        union: Any = Union[self.types]  # noqa: UP007 - runtime union of a tuple
        self._decoder = msgspec.msgpack.Decoder(union)
        self._encoder = msgspec.msgpack.Encoder()

    def encode(self, message: Message) -> bytes:
        if not isinstance(message, Message):
            raise LocalProtocolError(f"cannot send {type(message).__name__}: not a Message")
        try:
            return self._encoder.encode(message)
        except (TypeError, ValueError, OverflowError, msgspec.EncodeError) as exc:
            raise LocalProtocolError(f"cannot encode {type(message).__name__}: {exc}") from None

    def decode(self, payload: bytes) -> Message:
        try:
            message: Message = self._decoder.decode(payload)
        except msgspec.ValidationError as exc:
            raise RemoteProtocolError(
                f"message does not match the schema: {exc}", ErrorCode.SCHEMA_MISMATCH
            ) from None
        except (msgspec.DecodeError, UnicodeDecodeError) as exc:
            raise RemoteProtocolError(
                f"message is not valid MessagePack: {exc}", ErrorCode.BAD_ENCODING
            ) from None
        except RecursionError:
            raise RemoteProtocolError(
                "message is not valid MessagePack: nested too deeply", ErrorCode.BAD_ENCODING
            ) from None
        return message
