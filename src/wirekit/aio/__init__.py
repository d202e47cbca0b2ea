"""The asyncio runtime: ``serve()``, ``connect()`` and ``Connection``."""

from .client import connect
from .connection import Connection, MessageHandler, Received
from .loop import new_event_loop, run
from .server import Handler, Server, serve

__all__ = [
    "Connection",
    "Handler",
    "MessageHandler",
    "Received",
    "Server",
    "connect",
    "new_event_loop",
    "run",
    "serve",
]
