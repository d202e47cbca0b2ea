"""The terminal side of ``wirekit chat``: a line editor, raw mode, and the event loop glue.

On a terminal the input line stays intact while messages arrive: each batch
of incoming lines clears the prompt line (``\\r\\x1b[K``), prints the lines,
and redraws ``[#room] nick> `` plus what was being typed, cursor in place.
Keys are read in a raw-ish mode (no echo, no line buffering, no signals from
Ctrl-C) and handled by :class:`LineEditor`, which knows no terminal and is
tested alone. When stdin or stdout is not a terminal, input is taken line by
line (for scripts: ``printf '/join #x\\nhello\\n' | wirekit chat ADDR``) and
the client quits once the input ends and everything typed was sent.
"""

from __future__ import annotations

import asyncio
import codecs
import contextlib
import os
import signal
import ssl
import sys
import termios
import threading
import unicodedata
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from ...addr import Address
from ...errors import WirekitError
from ...neterrors import connect_error
from ...pacing import unpace_peer
from .client import ChatClient

__all__ = ["ChatOptions", "LineEditor", "run_chat", "text_width"]

#: After QUIT, how long to wait for the server to close before closing ourselves.
QUIT_WAIT = 2.0
#: A server that has not completed registration by then is not an IRC server.
REGISTER_TIMEOUT = 30.0
#: Signals that end the client on a terminal with its mode restored (exit 128+N).
STOP_SIGNALS = (signal.SIGTERM, signal.SIGHUP)


def _char_width(ch: str) -> int:
    if unicodedata.combining(ch):
        return 0
    return 2 if unicodedata.east_asian_width(ch) in "WF" else 1


def text_width(text: str) -> int:
    """Columns ``text`` takes on a terminal (wide CJK characters take two)."""
    return sum(_char_width(ch) for ch in text)


class LineEditor:
    """The input line: raw key bytes in, submitted lines out.

    Keys: printable characters (UTF-8, also split across reads), Backspace,
    Delete, Left/Right, Home/End (and Ctrl-A/Ctrl-E), Ctrl-U (erase to the
    start), Ctrl-K (erase to the end), Ctrl-W (erase the word before the
    cursor), Enter. Ctrl-C, and Ctrl-D on an empty line, ask to quit.
    Unknown escape sequences are swallowed whole, never inserted.
    """

    def __init__(self) -> None:
        self.chars: list[str] = []
        self.cursor = 0
        self.quit = False
        self._decoder = codecs.getincrementaldecoder("utf-8")("replace")
        self._escape = ""  # an escape sequence read so far, across reads
        self._offset = 0  # first character shown when the line is wider than the screen

    @property
    def text(self) -> str:
        return "".join(self.chars)

    def feed(self, data: bytes) -> list[str]:
        """Handle key bytes; returns the lines submitted with Enter."""
        lines: list[str] = []
        for ch in self._decoder.decode(data):
            if self._escape:
                self._escape_char(ch)
            elif ch in "\r\n":
                lines.append(self.text)
                self.chars, self.cursor, self._offset = [], 0, 0
            else:
                self._key(ch)
        return lines

    def _key(self, ch: str) -> None:
        if ch == "\x1b":
            self._escape = ch
        elif ch in "\x7f\x08":
            if self.cursor > 0:
                self.cursor -= 1
                del self.chars[self.cursor]
        elif ch == "\x03" or (ch == "\x04" and not self.chars):
            self.quit = True
        elif ch == "\x04":
            del self.chars[self.cursor : self.cursor + 1]
        elif ch == "\x15":  # Ctrl-U
            del self.chars[: self.cursor]
            self.cursor = 0
        elif ch == "\x0b":  # Ctrl-K
            del self.chars[self.cursor :]
        elif ch == "\x17":  # Ctrl-W
            self._erase_word()
        elif ch in "\x01\x05":  # Ctrl-A, Ctrl-E
            self.cursor = 0 if ch == "\x01" else len(self.chars)
        elif ch == "\t" or ch.isprintable():
            self.chars.insert(self.cursor, " " if ch == "\t" else ch)
            self.cursor += 1

    def _erase_word(self) -> None:
        start = self.cursor
        while start > 0 and self.chars[start - 1] == " ":
            start -= 1
        while start > 0 and self.chars[start - 1] != " ":
            start -= 1
        del self.chars[start : self.cursor]
        self.cursor = start

    def _escape_char(self, ch: str) -> None:
        seq = self._escape + ch
        if len(seq) == 2 and ch not in "[O":
            self._escape = ""  # ESC + one key (Alt-x): ignored
        elif len(seq) > 2 and "@" <= ch <= "~":
            self._escape = ""
            self._sequence(seq)
        elif len(seq) > 16:
            self._escape = ""  # not a sequence we know; drop it
        else:
            self._escape = seq

    def _sequence(self, seq: str) -> None:
        end = len(self.chars)
        moves = {
            "C": min(end, self.cursor + 1),
            "D": max(0, self.cursor - 1),
            "H": 0,
            "F": end,
            "1~": 0,
            "7~": 0,
            "4~": end,
            "8~": end,
        }
        key = seq[2:]
        if key in moves:
            self.cursor = moves[key]
        elif key == "3~":
            del self.chars[self.cursor : self.cursor + 1]

    def render(self, prompt: str, width: int) -> str:
        """The escape string that redraws the line: prompt, the visible part of
        the text (scrolled sideways when it is wider than the screen), cursor."""
        prompt_cols = text_width(prompt)
        room = max(1, width - prompt_cols - 1)  # the last column would wrap
        self._offset = min(self._offset, self.cursor)
        while text_width("".join(self.chars[self._offset : self.cursor])) > room:
            self._offset += 1
        shown, cols = [], 0
        for ch in self.chars[self._offset :]:
            cols += _char_width(ch)
            if cols > room:
                break
            shown.append(ch)
        column = prompt_cols + text_width("".join(self.chars[self._offset : self.cursor]))
        move = f"\r\x1b[{column}C" if column else "\r"
        return "\r\x1b[K" + prompt + "".join(shown) + move


@dataclass(frozen=True)
class ChatOptions:
    nick: str
    room: str | None = None
    password: str | None = None
    cafile: str | None = None
    insecure: bool = False
    #: tls:// to a server whose certificate no CA vouches for (wirekit's
    #: ``--tls auto``): pin it on first use, as exec does (security.md).
    accept_new: bool = False
    known_hosts: Path | None = None
    register_timeout: float = REGISTER_TIMEOUT
    quit_wait: float = QUIT_WAIT


class _Screen(Protocol):
    def show(self, lines: list[str]) -> None: ...


class _LineScreen:
    """Not a terminal: every line as it comes, no prompt."""

    def __init__(self, write: Callable[[str], object]) -> None:
        self._write = write

    def show(self, lines: list[str]) -> None:
        if lines:
            self._write("".join(line + "\n" for line in lines))


class _TtyScreen:
    """A terminal: messages above, the prompt and the edit line below them."""

    def __init__(self, fd: int, editor: LineEditor, prompt: Callable[[], str]) -> None:
        self._fd = fd
        self.editor = editor
        self._prompt = prompt

    def _write(self, text: str) -> None:
        data = text.encode("utf-8", "replace")
        while data:
            data = data[os.write(self._fd, data) :]

    def show(self, lines: list[str]) -> None:
        body = "".join(line + "\r\n" for line in lines)
        self._write("\r\x1b[K" + body + self._render())

    def redraw(self) -> None:
        self._write(self._render())

    def _render(self) -> str:
        try:
            width = os.get_terminal_size(self._fd).columns
        except OSError:
            width = 80
        return self.editor.render(self._prompt(), width)


@contextlib.contextmanager
def raw_terminal(fd: int) -> Iterator[None]:
    """Keys one by one, unechoed, with Ctrl-C/Ctrl-S as keys; output processing
    stays on (so a newline still returns the carriage). Restored on exit."""
    saved = termios.tcgetattr(fd)
    mode = termios.tcgetattr(fd)
    mode[0] &= ~(termios.IXON | termios.ICRNL | termios.INLCR | termios.ISTRIP)
    mode[3] &= ~(termios.ICANON | termios.ECHO | termios.ISIG | termios.IEXTEN)
    mode[6][termios.VMIN] = 1
    mode[6][termios.VTIME] = 0
    termios.tcsetattr(fd, termios.TCSAFLUSH, mode)
    try:
        yield
    finally:
        termios.tcsetattr(fd, termios.TCSAFLUSH, saved)


class _ChatSession(asyncio.Protocol):
    """Moves bytes between the socket and the :class:`ChatClient`, lines to the screen."""

    def __init__(self, client: ChatClient, screen: _Screen) -> None:
        self.client = client
        self.screen = screen
        self.transport: asyncio.Transport | None = None
        self.closed = asyncio.get_running_loop().create_future()
        self.we_quit = False
        self.quitting = asyncio.Event()
        self.registered = asyncio.Event()
        self._quit_when_idle = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        unpace_peer(transport.get_extra_info("socket"))  # wirekit.pacing
        self.client.start()
        self.flush()

    def data_received(self, data: bytes) -> None:
        self.screen.show(self.client.receive_data(data))
        if self.client.registered:
            self.registered.set()
        if self._quit_when_idle and self.client.idle:
            self.quit()
        self.flush()

    def connection_lost(self, exc: Exception | None) -> None:
        self.screen.show(self.client.receive_eof())
        if not self.closed.done():
            self.closed.set_result(None)

    def typed(self, text: str) -> None:
        self.screen.show(self.client.user_input(text))
        self.flush()

    def input_ended(self) -> None:
        """stdin ended: quit once registered and everything typed went out."""
        if self.client.idle:
            self.quit()
        else:
            self._quit_when_idle = True
        self.flush()

    def quit(self) -> None:
        if not self.we_quit:
            self.client.quit()
            self.flush()

    def _mark_quit(self) -> None:
        self.we_quit = True
        self.quitting.set()

    def flush(self) -> None:
        data = self.client.data_to_send()
        if self.transport is None or self.transport.is_closing():
            return
        if data:
            self.transport.write(data)
        if self.client.quitting:
            self._mark_quit()
        elif self.client.finished:
            self.transport.close()  # the server said ERROR: nothing more to say


async def _connect(addr: Address, options: ChatOptions, session: Callable[[], _ChatSession]) -> Any:
    loop = asyncio.get_running_loop()
    try:
        if addr.is_unix:
            return await loop.create_unix_connection(session, addr.path)
        if addr.scheme != "tls":
            return await loop.create_connection(session, addr.host, addr.port)
        context = ssl.create_default_context(cafile=options.cafile)
        if options.insecure:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        try:
            return await loop.create_connection(session, addr.host, addr.port, ssl=context)
        except ssl.SSLCertVerificationError:
            if options.cafile or options.insecure:
                raise
        # No CA vouches for it (a self-signed --tls auto server): trust by pin.
        return await _connect_pinned(addr, options, session)
    except (OSError, ssl.SSLError) as exc:
        raise connect_error(addr, exc) from exc


class _Holding(asyncio.Protocol):
    """Holds what a TLS server sends until its certificate is checked against the
    pin; nothing is sent to it before that (not even the password)."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.held: list[bytes] = []
        self.ended: Exception | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.held.append(data)

    def connection_lost(self, exc: Exception | None) -> None:
        self.ended = exc or ConnectionResetError("the server closed the connection")


async def _connect_pinned(
    addr: Address, options: ChatOptions, session: Callable[[], _ChatSession]
) -> Any:
    from ...security.credentials import check_pin
    from ...security.tlscert import client_context

    loop = asyncio.get_running_loop()
    transport, holding = await loop.create_connection(
        _Holding, addr.host, addr.port, ssl=client_context()
    )
    try:
        der = transport.get_extra_info("ssl_object").getpeercert(binary_form=True)
        check_pin(
            addr.hostport(), der, accept_new=options.accept_new, known_hosts=options.known_hosts
        )
    except BaseException:
        transport.close()
        raise
    chat = session()
    transport.set_protocol(chat)
    chat.connection_made(transport)
    for data in holding.held:
        chat.data_received(data)
    if holding.ended is not None:
        chat.connection_lost(holding.ended)
    return transport, chat


def _read_lines(loop: asyncio.AbstractEventLoop, session: _ChatSession, fd: int) -> None:
    """Thread body: stdin line by line into the loop (a thread, because stdin may
    be a regular file, which the event loop cannot watch). Plain ``os.read``: a
    daemon thread blocked inside ``sys.stdin.buffer`` holds its lock, and the
    interpreter aborts at exit when it cannot take that lock."""
    pending = b""
    with contextlib.suppress(RuntimeError):  # the loop closed first: nothing to do
        while chunk := _read_some(fd):
            *lines, pending = (pending + chunk).split(b"\n")
            for raw in lines:
                loop.call_soon_threadsafe(session.typed, raw.decode("utf-8", "replace"))
        if pending:
            loop.call_soon_threadsafe(session.typed, pending.decode("utf-8", "replace"))
        loop.call_soon_threadsafe(session.input_ended)


def _read_some(fd: int) -> bytes:
    try:
        return os.read(fd, 65536)
    except OSError:
        return b""


def _print(text: str) -> None:
    if sys.stdout is None:  # started with descriptor 1 closed (now /dev/null)
        os.write(1, text.encode("utf-8", "replace"))
        return
    sys.stdout.write(text)
    sys.stdout.flush()


async def run_chat(
    addr: Address,
    options: ChatOptions,
    *,
    input_fd: int | None = None,
    write: Callable[[str], object] = _print,
) -> int:
    """Run the client until the user quits (0) or the server closes (raises).

    With ``input_fd``, lines are read from that descriptor and shown with
    ``write`` (no terminal); otherwise from stdin, on a terminal when stdin and
    stdout are both one."""
    client = ChatClient(options.nick, options.room, password=options.password)
    # Descriptors, not sys.stdin: that is None when we started with 0 closed.
    if input_fd is not None or not (os.isatty(0) and os.isatty(1)):
        fd = 0 if input_fd is None else input_fd
        return await _run(addr, options, client, _LineScreen(write), input_fd=fd)
    editor = LineEditor()
    tty = _TtyScreen(sys.stdout.fileno(), editor, lambda: client.prompt)
    with _stop_on_signals() as stopped:
        try:
            with raw_terminal(sys.stdin.fileno()):
                try:
                    return await _run(addr, options, client, tty, input_fd=None)
                finally:
                    os.write(sys.stdout.fileno(), b"\r\x1b[K")  # the prompt goes with us
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if not stopped or task is None:
                raise
            task.uncancel()
            return 128 + stopped[0]  # as if the signal had killed us, as a shell reports it


@contextlib.contextmanager
def _stop_on_signals() -> Iterator[list[int]]:
    """SIGTERM and SIGHUP cancel the running task, which unwinds through the
    terminal restore; their default action would kill us with the terminal
    still raw (no echo, no line editing). Yields the signal caught, if any."""
    loop = asyncio.get_running_loop()
    task = asyncio.current_task()
    caught: list[int] = []

    def stop(signum: int) -> None:
        if not caught and task is not None:
            caught.append(signum)
            task.cancel()

    installed = []
    for signum in STOP_SIGNALS:
        try:
            loop.add_signal_handler(signum, stop, signum)
        except (ValueError, RuntimeError, NotImplementedError):
            continue  # not the main thread: nothing to install
        installed.append(signum)
    try:
        yield caught
    finally:
        for signum in installed:
            loop.remove_signal_handler(signum)


async def _run(
    addr: Address,
    options: ChatOptions,
    client: ChatClient,
    screen: _Screen,
    *,
    input_fd: int | None,
) -> int:
    """Connect and run; ``input_fd`` None means keys from the terminal."""
    loop = asyncio.get_running_loop()
    holder: list[_ChatSession] = []

    def make() -> _ChatSession:
        holder.append(_ChatSession(client, screen))
        return holder[0]

    transport, _ = await _connect(addr, options, make)
    session = holder[0]
    try:
        if isinstance(screen, _TtyScreen):
            _watch_keys(loop, session, screen)
        else:
            reader = threading.Thread(
                target=_read_lines, args=(loop, session, input_fd), daemon=True
            )
            reader.start()
        screen.show([])
        await _wait_registered(session, options.register_timeout)
        await _until_done(session, options.quit_wait)
    finally:
        if isinstance(screen, _TtyScreen):
            loop.remove_reader(sys.stdin.fileno())
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.remove_signal_handler(signal.SIGWINCH)
        transport.close()
    if not session.we_quit:
        raise WirekitError("the server closed the connection")
    return 0


def _watch_keys(loop: asyncio.AbstractEventLoop, session: _ChatSession, screen: _TtyScreen) -> None:
    fd = sys.stdin.fileno()

    def on_keys() -> None:
        try:
            data = os.read(fd, 4096)
        except OSError:
            data = b""
        if not data:  # the terminal went away
            loop.remove_reader(fd)
            session.quit()
            return
        for line in screen.editor.feed(data):
            session.typed(line)
        if screen.editor.quit:
            session.quit()
        screen.redraw()

    loop.add_reader(fd, on_keys)
    with contextlib.suppress(NotImplementedError, RuntimeError):
        loop.add_signal_handler(signal.SIGWINCH, screen.redraw)


async def _first(*events: asyncio.Event | asyncio.Future[None], timeout: float | None) -> None:
    """Wait until one of ``events`` is set (or done), or ``timeout`` passes."""
    waits = [asyncio.ensure_future(e.wait()) if isinstance(e, asyncio.Event) else e for e in events]
    try:
        await asyncio.wait(waits, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for w, e in zip(waits, events, strict=True):
            if isinstance(e, asyncio.Event):
                w.cancel()


async def _wait_registered(session: _ChatSession, timeout: float) -> None:
    await _first(session.registered, session.quitting, session.closed, timeout=timeout)
    if not (session.registered.is_set() or session.we_quit or session.closed.done()):
        raise WirekitError(f"no IRC welcome within {timeout:g} s (is this an IRC server?)")


async def _until_done(session: _ChatSession, quit_wait: float) -> None:
    await _first(session.quitting, session.closed, timeout=None)
    if not session.closed.done():
        # RFC 2812 §3.1.7: the server acknowledges QUIT with ERROR and closes.
        await _first(session.closed, timeout=quit_wait)
