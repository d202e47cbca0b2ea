"""Unix socket files: replace a stale one left by a dead server, refuse a live one."""

from __future__ import annotations

import os
import socket
import stat

from .errors import ListenError

__all__ = ["prepare_unix_path", "unlink_socket"]


def prepare_unix_path(path: str) -> None:
    """Remove a stale socket file left by a dead server; refuse a live one."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(st.st_mode):
        raise ListenError(f"cannot bind unix socket {path}: a non-socket file is in the way")
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.settimeout(1.0)
        probe.connect(path)
    except (ConnectionRefusedError, FileNotFoundError):
        unlink_socket(path)
    except OSError:
        pass
    else:
        raise ListenError(f"unix socket {path} is already in use (another server is listening)")
    finally:
        probe.close()


def unlink_socket(path: str) -> None:
    try:
        if stat.S_ISSOCK(os.lstat(path).st_mode):
            os.unlink(path)
    except OSError:
        pass
