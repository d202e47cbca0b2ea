"""Blocking clients: ``wirekit.sync.connect(addr)``."""

from .client import Connection, connect

__all__ = ["Connection", "connect"]
