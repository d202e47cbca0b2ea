"""A sans-I/O codec for IRC lines (RFC 1459 / RFC 2812), for a future chat bridge.

Bytes in, bytes out: :class:`LineSplitter` turns a byte stream into lines,
:func:`parse_line` turns one line into an :class:`IrcMessage` and
:func:`format_message` turns one back into ``CRLF``-terminated bytes. Plain
``nc`` users and real clients share a server, so text from one user must be
passed through :func:`sanitize_text` before it reaches another's terminal.

IRCv3 message tags (``@a=b ...``) are skipped on input and never emitted.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ..errors import WirekitError

__all__ = [
    "MAX_LINE",
    "MAX_PARAMS",
    "IrcMessage",
    "IrcParseError",
    "LineOverflow",
    "LineSplitter",
    "casefold_irc",
    "format_message",
    "parse_line",
    "sanitize_text",
    "valid_channel",
    "valid_nick",
]

#: RFC 1459 §2.3: a line is at most 512 bytes, counting the trailing CRLF.
MAX_LINE = 512
#: RFC 1459 §2.3.1: at most 15 parameters.
MAX_PARAMS = 15

_COMMAND = re.compile(r"[A-Za-z]+|[0-9]{3}")
_SPECIAL = r"\[\]\\^_`{|}"
_NICK = re.compile(rf"[A-Za-z{_SPECIAL}][A-Za-z0-9{_SPECIAL}-]{{0,29}}")
# RFC 2812 §1.3 forbids space, comma, BEL, NUL, CR, LF and colon; every other
# control character (ESC, C1, DEL) is refused too: a room name is shown to
# everyone, in plain text and in IRC lines alike.
_CHANNEL = re.compile(r"#[^ ,:\x00-\x1f\x7f-\x9f]{1,49}")
# Terminal escapes: CSI (ESC [ ... final), OSC/DCS/PM/APC strings up to BEL or
# ST (or the end of the text: a terminal would swallow the rest anyway), any
# other two-byte ESC sequence, and finally a lone ESC.
_ESCAPE = re.compile(
    r"\x1b\[[0-?]*[ -/]*[@-~]?"
    r"|\x1b[\]PX^_][^\x07\x1b]*(?:\x07|\x1b\\)?"
    r"|\x1b[ -~]?"
)
# mIRC colour: ^C, optionally foreground digits, optionally ",background".
_COLOR = re.compile(r"\x03(?:[0-9]{1,2}(?:,[0-9]{1,2})?)?")
# Every C0 control (tab is turned into a space first), DEL, every C1 control,
# and the Unicode bidirectional embeddings, overrides and
# isolates (U+202A-U+202E, U+2066-U+2069): with those a line can be shown in
# an order other than the one it was typed in (a "Trojan Source" display).
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")
_CASEFOLD = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ[]\\~", "abcdefghijklmnopqrstuvwxyz{}|^")


class IrcParseError(WirekitError, ValueError):
    """A line is not a valid IRC message; the text says why."""


@dataclass(frozen=True, slots=True)
class IrcMessage:
    """One IRC message. ``command`` is upper-case letters or a 3-digit numeric."""

    command: str
    params: tuple[str, ...] = ()
    prefix: str | None = None


@dataclass(frozen=True, slots=True)
class LineOverflow:
    """Stands in :meth:`LineSplitter.feed`'s output for a line over the limit.

    The line's bytes are gone; a server answers with an error (e.g. ``417
    ERR_INPUTTOOLONG``) and keeps reading, since the next line is intact.
    """

    limit: int


class LineSplitter:
    """Splits a byte stream into lines, holding at most ``max_line - 1`` bytes.

    ``feed`` returns complete lines without LF or trailing CR; empty lines are
    dropped (clients send bare CRLF as keepalives). A line whose length with
    its LF would exceed ``max_line`` is reported *in place* as one
    :class:`LineOverflow` as soon as the limit is crossed, and its remaining
    bytes are discarded up to the next LF. A marker in the list, rather than an
    exception, keeps the good lines that arrived in the same chunk and their
    order.
    """

    __slots__ = ("_buf", "_discarding", "max_line")

    def __init__(self, max_line: int = MAX_LINE) -> None:
        if max_line < 2:
            raise ValueError(f"max_line of {max_line} bytes is below 2")
        self.max_line = max_line
        self._buf = bytearray()
        self._discarding = False

    @property
    def buffered(self) -> int:
        """Bytes of the pending partial line held in memory."""
        return len(self._buf)

    def feed(self, data: bytes) -> list[bytes | LineOverflow]:
        out: list[bytes | LineOverflow] = []
        start, end = 0, len(data)
        while start < end:
            nl = data.find(b"\n", start)
            if self._discarding:
                if nl < 0:
                    break
                self._discarding = False
                start = nl + 1
                continue
            stop = end if nl < 0 else nl
            # +1 for the LF: a partial line still needs one, a complete one has it.
            if len(self._buf) + (stop - start) + 1 > self.max_line:
                out.append(LineOverflow(self.max_line))
                self._buf.clear()
                if nl < 0:
                    self._discarding = True
                    break
                start = nl + 1
                continue
            if nl < 0:
                self._buf += data[start:]
                break
            line = bytes(self._buf) + data[start:nl]
            self._buf.clear()
            if line.endswith(b"\r"):
                line = line[:-1]
            if line:
                out.append(line)
            start = nl + 1
        return out


def parse_line(line: bytes) -> IrcMessage:
    """Parses one line given without its line ending.

    Runs of spaces count as one separator (RFC 1459 grammar; RFC 2812 says one
    space, but clients are sloppy). Invalid UTF-8 becomes U+FFFD, because
    legacy clients still send Latin-1 and dropping their messages helps no one.
    """
    if b"\0" in line:
        raise IrcParseError("line contains a NUL byte")
    if b"\r" in line or b"\n" in line:
        raise IrcParseError("line contains CR or LF")
    text = line.decode("utf-8", "replace").lstrip(" ")
    if text.startswith("@"):
        _, _, text = text.partition(" ")
        text = text.lstrip(" ")
    if not text:
        raise IrcParseError("empty line")
    prefix: str | None = None
    if text.startswith(":"):
        prefix, _, text = text[1:].partition(" ")
        if not prefix:
            raise IrcParseError("empty prefix")
        text = text.lstrip(" ")
    command, _, text = text.partition(" ")
    if not _COMMAND.fullmatch(command):
        raise IrcParseError(f"bad command {command[:20]!r}" if command else "missing command")
    params: list[str] = []
    while text := text.lstrip(" "):
        if len(params) == MAX_PARAMS:
            raise IrcParseError(f"more than {MAX_PARAMS} parameters")
        if text.startswith(":"):
            params.append(text[1:])
            break
        param, _, text = text.partition(" ")
        params.append(param)
    return IrcMessage(command.upper(), tuple(params), prefix)


def _check_param(param: str, *, last: bool) -> None:
    if any(c in param for c in "\r\n\0"):
        raise ValueError(f"parameter {param[:20]!r} contains CR, LF or NUL")
    if not last and (not param or " " in param or param.startswith(":")):
        # Only the last parameter can carry a ":"; anything else would re-parse
        # as a different message.
        raise ValueError(f"non-final parameter {param[:20]!r} is empty or has a space or ':'")


def format_message(msg: IrcMessage) -> bytes:
    """Serializes ``msg`` with CRLF, truncated to 512 bytes on a UTF-8 boundary.

    Truncation is meant for long trailing text (a chat line); it does not
    know which parameter it cuts. Raises :class:`ValueError` for a message that
    could not be parsed back as itself (``UnicodeEncodeError`` for surrogates).
    """
    if not _COMMAND.fullmatch(msg.command):
        raise ValueError(f"bad command {msg.command[:20]!r}")
    if len(msg.params) > MAX_PARAMS:
        raise ValueError(f"{len(msg.params)} parameters exceed limit of {MAX_PARAMS}")
    parts: list[str] = []
    if msg.prefix is not None:
        if not msg.prefix or any(c in msg.prefix for c in " \r\n\0"):
            raise ValueError(f"bad prefix {msg.prefix[:20]!r}")
        parts.append(":" + msg.prefix)
    parts.append(msg.command.upper())
    head = len(" ".join(parts).encode("utf-8"))
    for i, param in enumerate(msg.params):
        last = i == len(msg.params) - 1
        _check_param(param, last=last)
        if last and (not param or " " in param or param.startswith(":")):
            param = ":" + param
        parts.append(param)
    body = " ".join(parts).encode("utf-8")
    limit = MAX_LINE - 2
    if head > limit:
        raise ValueError(f"prefix and command of {head} bytes exceed limit of {limit} bytes")
    if len(body) > limit:
        cut = limit
        while cut > 0 and (body[cut] & 0xC0) == 0x80:  # step back off a continuation byte
            cut -= 1
        body = body[:cut]
    return body + b"\r\n"


def sanitize_text(text: str) -> str:
    """Makes user text safe to show on someone else's terminal.

    Removes terminal escape sequences whole (CSI, OSC/DCS strings, others),
    every C0/C1 control and DEL, Unicode bidi overrides and isolates, and
    IRC formatting codes (bold ``^B``,
    colour ``^C`` with its digits, ``^O``, ``^V``, ``^]``, ``^_``): ``nc``
    users would see them as garbage and they can hide text from IRC users.
    Tabs become single spaces.
    """
    text = _ESCAPE.sub("", text)
    text = _COLOR.sub("", text)
    text = text.replace("\t", " ")
    return _CONTROL.sub("", text)


def valid_nick(nick: str) -> bool:
    """RFC 2812 nickname: letter or special first, then letters/digits/special/"-"; <= 30."""
    return _NICK.fullmatch(nick) is not None


def valid_channel(name: str) -> bool:
    """``#`` then 1-49 characters, none of space, comma, colon or a control
    character (C0, DEL, C1)."""
    return _CHANNEL.fullmatch(name) is not None


def casefold_irc(name: str) -> str:
    """Folds case under rfc1459 casemapping: A-Z and ``[]\\~`` map to a-z and ``{}|^``."""
    return name.translate(_CASEFOLD)
