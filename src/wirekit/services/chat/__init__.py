"""The chat service: ``nc``/``telnet`` users and IRC clients in the same rooms.

``await start_chat(addresses, config=ChatConfig(...), ssl=None)`` starts a
server and returns a :class:`ChatServer` (``.addresses``, ``await
.close()``); docs/chat.md describes the modes, formats, limits and defaults.
The server (and asyncio) is imported on first use, so the command line can
read :class:`ChatConfig` defaults without loading an event loop.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .config import DEFAULT_PORT, ChatConfig

if TYPE_CHECKING:
    from .server import ChatServer, start_chat

__all__ = ["DEFAULT_PORT", "ChatConfig", "ChatServer", "start_chat"]


def __getattr__(name: str) -> Any:
    if name in ("ChatServer", "start_chat"):
        from . import server

        return getattr(server, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
