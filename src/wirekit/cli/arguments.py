"""Argument checks shared by the commands: argparse ``type=`` functions, so a bad
number is a one-line usage error (exit 2) before anything starts, and
:class:`UsageError` for the combinations argparse cannot see."""

from __future__ import annotations

import argparse
import math

from ..errors import WirekitError

__all__ = [
    "UsageError",
    "non_negative_int",
    "non_negative_seconds",
    "positive_int",
    "positive_seconds",
]


class UsageError(WirekitError):
    """The command line asks for something that cannot be done (exit 2)."""


def positive_int(text: str) -> int:
    """A count of at least 1 (``--max-connections``, ``--max-per-ip``, ``--max-peers``)."""
    value = _whole(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def non_negative_int(text: str) -> int:
    """A count where 0 means none (``--history``)."""
    value = _whole(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must not be negative, got {value}")
    return value


def _whole(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds")
    return value


def positive_seconds(text: str) -> float:
    """A timeout that must be positive (``-w``)."""
    value = _seconds(text)
    if value <= 0:
        raise argparse.ArgumentTypeError("the timeout must be positive")
    return value


def non_negative_seconds(text: str) -> float:
    """A timeout where 0 means never (``--idle-timeout``)."""
    value = _seconds(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must not be negative, got {value:g}")
    return value
