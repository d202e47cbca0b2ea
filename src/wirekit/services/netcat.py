"""netcat mode: ``wirekit connect`` and ``wirekit listen``.

Raw bytes between stdin/stdout and one socket (or many with ``keep_open``).
Each direction runs in its own thread doing blocking syscalls, so a peer that
writes while we write can never deadlock us, and bulk data takes the
cheapest path the kernel offers:

* stdin is a regular file   -> ``sendall`` of 1 MiB slices of an mmap of it
                               (twice ``sendfile``'s speed here, see _send_mapped_file)
* stdin / stdout is a pipe  -> ``os.splice`` between pipe and socket
* otherwise                 -> 1 MiB ``readinto``/``recv_into`` + ``sendall``/``write``

On stdin EOF the socket is half-closed (``shutdown(SHUT_WR)``) and we keep
reading until the peer closes, like ``nc -N``.

``listen --keep-open`` serves at most ``max_peers`` peers, a thread each that
reads 64 KiB at a time only once its peer has bytes (an idle peer holds no
buffer), closes a peer idle for -w seconds, and keeps accepting through EMFILE.
Errors of stdin and stdout are :class:`LocalIOError` ("cannot write to stdout"),
never blamed on the connection.

TLS is different: OpenSSL does not allow one connection to be read and written
from two threads at once, so a ``tls://`` connection is moved by one thread, a
``poll`` loop over stdin and a non-blocking socket (:func:`shuttle_tls`). Its
TLS layer is an ``ssl.SSLObject`` over two memory BIOs, not an ``ssl.SSLSocket``:
we alone feed it the bytes that arrive, so on stdin EOF ``unwrap()`` sends our
close_notify (TLS's half-close) while no record is left unread, and we go on
reading the peer's data. (An ``SSLSocket``'s ``unwrap()`` reads the socket
itself, waiting for the peer's close_notify, and fails with
APPLICATION_DATA_AFTER_CLOSE_NOTIFY when data is still arriving.) The
close_notify waits until the peer has been quiet for TLS_CLOSE_DELAY seconds,
then the TCP socket is half-closed too. ``ssl`` is imported only for ``tls://``.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import math
import mmap
import os
import select
import socket
import stat
import sys
import termios
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..addr import Address
from ..errors import ConnectError, WirekitError
from ..limits import NETCAT_MAX_PEERS
from ..neterrors import bind_error, connect_error, printable
from ..pacing import unpace_peer
from ..unixsock import prepare_unix_path

if TYPE_CHECKING:
    import ssl

__all__ = ["LocalIOError", "NetcatOptions", "PeerError", "run_connect", "run_listen"]

CHUNK = 1 << 20
#: After the peer's EOF, stop forwarding stdin once it has been quiet this long.
PEER_EOF_LINGER = 1.0
UDP_CHUNK = 65507
#: TLS: stdin is read only while less than this waits to go to the socket.
TLS_BACKLOG = 1 << 20
TLS_RECV = 256 * 1024
#: TLS: after stdin's EOF our close_notify waits until the peer is quiet this
#: long. A server that answers and closes without reading it would be reset by
#: its kernel (unread data), which drops what it had not sent yet.
TLS_CLOSE_DELAY = 0.5
#: --keep-open: peers served at once unless --max-peers says otherwise.
MAX_PEERS = NETCAT_MAX_PEERS
#: --keep-open: bytes read from one peer at a time; the buffer exists only while
#: bytes are there to read, so an idle peer costs its thread and socket only.
PEER_CHUNK = 64 * 1024
#: --keep-open: seconds between accept() attempts while the process (or the
#: system) is out of file descriptors or buffers, as trio does.
ACCEPT_RETRY = 0.1
_ACCEPT_STARVED = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})
#: accept() errors that concern one connection, not the listener (Linux passes
#: pending network errors of the new connection to accept()): skip it, go on.
_ACCEPT_SKIP = frozenset(
    getattr(errno, name)
    for name in (
        "EAGAIN",
        "ECONNABORTED",
        "ECONNRESET",
        "EPROTO",
        "EPERM",
        "ENETDOWN",
        "ENETUNREACH",
        "EHOSTDOWN",
        "EHOSTUNREACH",
        "ENONET",
        "ENOPROTOOPT",
        "EOPNOTSUPP",
        "ETIMEDOUT",
    )
    if hasattr(errno, name)
)


@dataclass(frozen=True, slots=True)
class NetcatOptions:
    timeout: float | None = None  # -w: connect timeout and idle timeout
    cafile: str | None = None
    insecure: bool = False
    keep_open: bool = False
    verbose: bool = False
    max_peers: int = MAX_PEERS  # --keep-open: peers at once; the next one is refused
    udp_linger: float = 1.0  # seconds to wait for replies after stdin EOF (udp)


class PeerError(WirekitError):
    """The connection failed after it was established (reset, timeout)."""


class LocalIOError(WirekitError):
    """stdin or stdout failed (a full disk, an I/O error): our side, not the peer's."""


def _read_stdin(fd: int, size: int) -> bytes:
    try:
        return os.read(fd, size)
    except OSError as exc:
        raise LocalIOError(f"cannot read stdin: {exc.strerror or exc}") from None


class Activity:
    """Last time any byte moved, for the -w idle timeout."""

    __slots__ = ("last",)

    def __init__(self) -> None:
        self.last = time.monotonic()

    def touch(self) -> None:
        self.last = time.monotonic()


def _kind(fd: int) -> str:
    try:
        mode = os.fstat(fd).st_mode
    except OSError:
        return "other"
    if stat.S_ISREG(mode):
        return "file"
    if stat.S_ISFIFO(mode):
        return "pipe"
    return "other"


# -- one direction each --------------------------------------------------------


def pump_in(fd: int, sock: socket.socket, activity: Activity) -> None:
    """stdin -> socket until EOF."""
    kind = _kind(fd)
    if kind == "file" and _send_mapped_file(fd, sock, activity):
        return
    if kind == "pipe":
        try:
            while os.splice(fd, sock.fileno(), CHUNK):
                activity.touch()
            return
        except OSError as exc:
            if exc.errno not in (errno.EINVAL, errno.ENOSYS):
                raise
    buf = bytearray(CHUNK)
    view = memoryview(buf)
    while True:
        try:
            n = os.readv(fd, [buf])
        except OSError as exc:
            raise LocalIOError(f"cannot read stdin: {exc.strerror or exc}") from None
        if not n:
            return
        sock.sendall(view[:n])
        activity.touch()


def _send_mapped_file(fd: int, sock: socket.socket, activity: Activity) -> bool:
    """Send a regular file from its current offset to its end; False if it
    cannot be mapped (the caller then reads it).

    ``sendall`` of 1 MiB slices of an mmap ran about twice as fast as
    ``sendfile()`` on these machines (4.0 against 2.1 GB/s, benchmarks/
    section e). Only the kernel reads the mapping, so a file truncated
    meanwhile ends in an error (EFAULT), never a SIGBUS. In slices, so -w
    sees a long transfer move.
    """
    offset = os.lseek(fd, 0, os.SEEK_CUR)
    size = os.fstat(fd).st_size
    if size == 0:
        return False  # maybe a file whose size says nothing (/proc): read it instead
    if offset >= size:
        return True
    try:
        mapped = mmap.mmap(fd, size, access=mmap.ACCESS_READ)
    except (OSError, ValueError):
        return False
    with mapped, memoryview(mapped) as view:
        for start in range(offset, size, CHUNK):
            with view[start : start + CHUNK] as piece:
                sock.sendall(piece)
            activity.touch()
    os.lseek(fd, size, os.SEEK_SET)
    return True


def pump_out(sock: socket.socket, fd: int, activity: Activity) -> None:
    """socket -> stdout until the peer closes."""
    if _kind(fd) == "pipe":
        poller = select.poll()
        poller.register(sock, select.POLLIN)
        try:
            while True:
                # Wait for bytes before splicing: a splice that sleeps on the
                # socket holds the pipe's lock, so whoever reads stdout could
                # not read what the previous splice put there.
                poller.poll()
                if not os.splice(sock.fileno(), fd, CHUNK):
                    return
                activity.touch()
        except OSError as exc:
            if exc.errno not in (errno.EINVAL, errno.ENOSYS):
                raise
    buf = bytearray(CHUNK)
    view = memoryview(buf)
    while True:
        n = sock.recv_into(buf)
        if not n:
            return
        activity.touch()
        _write_all(fd, view[:n])


def _write_all(fd: int, data: memoryview) -> None:
    """Write ``data`` to stdout (``fd``). EPIPE stays a BrokenPipeError (a closed
    stdout, as ``| head`` leaves it, ends the command quietly); any other error
    is a :class:`LocalIOError` that blames stdout, not the connection."""
    try:
        while data:
            written = os.write(fd, data)
            data = data[written:]
    except BrokenPipeError:
        raise
    except OSError as exc:
        raise LocalIOError(f"cannot write to stdout: {exc.strerror or exc}") from None


# -- connect ---------------------------------------------------------------------


def open_stream(addr: Address, options: NetcatOptions) -> socket.socket | TLSStream:
    """Connect a TCP, TLS or Unix socket, with one-line errors."""
    try:
        if addr.is_unix:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.settimeout(options.timeout)
            try:
                sock.connect(addr.path)
            except BaseException:
                sock.close()
                raise
        else:
            sock = socket.create_connection((addr.host, addr.port), timeout=options.timeout)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            unpace_peer(sock)
    except OSError as exc:
        raise connect_error(addr, exc) from None
    if addr.scheme == "tls":
        try:
            return _tls_handshake(sock, addr, options)
        except BaseException:
            sock.close()
            raise
    sock.settimeout(None)
    return sock


class TLSStream:
    """A client TLS connection driven by hand: ``tls`` (an ``ssl.SSLObject``) reads
    ``incoming`` and writes ``outgoing`` (``ssl.MemoryBIO``); :func:`shuttle_tls`
    moves those bytes from and to ``sock``, a plain socket."""

    __slots__ = ("incoming", "outgoing", "sock", "tls")

    def __init__(
        self,
        sock: socket.socket,
        tls: ssl.SSLObject,
        incoming: ssl.MemoryBIO,
        outgoing: ssl.MemoryBIO,
    ) -> None:
        self.sock, self.tls, self.incoming, self.outgoing = sock, tls, incoming, outgoing

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> TLSStream:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def _tls_handshake(sock: socket.socket, addr: Address, options: NetcatOptions) -> TLSStream:
    """The TLS handshake over the connected ``sock`` (blocking, within -w)."""
    import ssl

    try:
        ctx = tls_context(options)
    except OSError as exc:  # no such file, or (ssl.SSLError) no certificate in it
        detail = getattr(exc, "reason", None) or exc.strerror or exc
        raise ConnectError(f"cannot use --cafile {options.cafile}: {detail}") from None
    try:
        incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
        tls = ctx.wrap_bio(incoming, outgoing, server_hostname=addr.host)
        while True:
            try:
                tls.do_handshake()
                break
            except ssl.SSLWantReadError:
                if outgoing.pending:
                    sock.sendall(outgoing.read())
                if data := sock.recv(TLS_RECV):
                    incoming.write(data)
                else:
                    incoming.write_eof()
        if outgoing.pending:
            sock.sendall(outgoing.read())
    except ssl.SSLCertVerificationError as exc:
        raise ConnectError(
            f"cannot connect to {addr.hostport()}: certificate not trusted "
            f"({exc.verify_message}); pass --cafile FILE, or --insecure to skip the check"
        ) from None
    except ssl.SSLError as exc:
        raise ConnectError(
            f"cannot connect to {addr.hostport()}: TLS failed ({exc.reason or exc})"
        ) from None
    except OSError as exc:
        raise connect_error(addr, exc) from None
    sock.settimeout(None)
    return TLSStream(sock, tls, incoming, outgoing)


def tls_context(options: NetcatOptions) -> ssl.SSLContext:
    import ssl

    ctx = ssl.create_default_context(cafile=options.cafile)
    if options.insecure:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    # A peer that closes TCP without a close_notify has ended its data, as nc
    # sees it (SSLSocket's suppress_ragged_eofs); and we may still send to it.
    ctx.options |= ssl.OP_IGNORE_UNEXPECTED_EOF
    return ctx


def run_connect(addr: Address, options: NetcatOptions, stdin: int = 0, stdout: int = 1) -> None:
    if addr.scheme == "udp":
        run_udp(_udp_connected(addr), addr.hostport(), options, stdin, stdout)
        return
    with open_stream(addr, options) as sock:
        if isinstance(sock, TLSStream):
            shuttle_tls(sock, options, stdin, stdout)
        else:
            shuttle(sock, options, stdin, stdout)


def shuttle(sock: socket.socket, options: NetcatOptions, stdin: int, stdout: int) -> None:
    """Move bytes both ways until the peer closes; raise PeerError on failure.

    ``sock`` is a plain socket (TLS goes through :func:`shuttle_tls`)."""
    activity = Activity()
    failure: list[BaseException] = []

    def inbound() -> None:
        try:
            pump_in(stdin, sock, activity)
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_WR)
        except (OSError, LocalIOError) as exc:
            if not isinstance(exc, OSError) or exc.errno != errno.EPIPE:
                failure.append(exc)
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    sender = threading.Thread(target=inbound, name="wirekit-stdin", daemon=True)
    sender.start()
    watchdog = _start_watchdog(sock, activity, options.timeout)
    try:
        pump_out(sock, stdout, activity)
        # The peer closed its side, but it may only have half-closed (as
        # ``wirekit listen < /dev/null`` does) and still read: send the rest of
        # stdin rather than drop it, while stdin keeps delivering. A terminal,
        # or a pipe quiet for PEER_EOF_LINGER seconds, may never deliver again:
        # stop then, as ncat does at once.
        while sender.is_alive() and not os.isatty(stdin):
            if watchdog is not None and watchdog.fired:
                break
            if time.monotonic() - activity.last > PEER_EOF_LINGER:
                break
            sender.join(0.1)
    except OSError as exc:
        if watchdog is not None and watchdog.fired:
            raise PeerError(f"idle for {options.timeout:g} s; closing") from None
        if exc.errno == errno.EPIPE:  # stdout closed (e.g. | head): a normal end
            return
        raise PeerError(f"connection failed: {exc.strerror or exc}") from None
    finally:
        if watchdog is not None:
            watchdog.stop()
    if watchdog is not None and watchdog.fired:
        raise PeerError(f"idle for {options.timeout:g} s; closing")
    if failure:
        cause = failure[0]
        if isinstance(cause, LocalIOError):
            raise cause
        raise PeerError(f"sending failed: {getattr(cause, 'strerror', None) or cause}")


class _Watchdog(threading.Thread):
    """Shuts the socket down after ``timeout`` seconds without traffic (-w)."""

    def __init__(self, sock: socket.socket, activity: Activity, timeout: float) -> None:
        super().__init__(name="wirekit-watchdog", daemon=True)
        self.sock, self.activity, self.timeout = sock, activity, timeout
        self.fired = False
        self._stop_event = threading.Event()

    def run(self) -> None:
        queued = _unsent(self.sock)
        while not self._stop_event.wait(min(self.timeout, 0.5)):
            # Bytes leaving the kernel's send queue are traffic too: a peer that
            # reads slowly what we sent is not idle.
            if (now_queued := _unsent(self.sock)) != queued:
                queued = now_queued
                self.activity.touch()
            if time.monotonic() - self.activity.last > self.timeout:
                self.fired = True
                with contextlib.suppress(OSError):
                    self.sock.shutdown(socket.SHUT_RDWR)
                return

    def stop(self) -> None:
        self._stop_event.set()


def _unsent(sock: socket.socket) -> int:
    """Bytes the kernel still holds for the peer (Linux SIOCOUTQ), or -1."""
    try:
        raw = fcntl.ioctl(sock.fileno(), termios.TIOCOUTQ, b"\0\0\0\0")
    except (OSError, ValueError):
        return -1
    return int.from_bytes(raw, sys.byteorder, signed=True)


def _start_watchdog(
    sock: socket.socket, activity: Activity, timeout: float | None
) -> _Watchdog | None:
    if not timeout:
        return None
    dog = _Watchdog(sock, activity, timeout)
    dog.start()
    return dog


# -- tls ---------------------------------------------------------------------------


def shuttle_tls(conn: TLSStream, options: NetcatOptions, stdin: int, stdout: int) -> None:
    """:func:`shuttle` for TLS, in one thread: a poll loop over stdin and the socket.

    stdin is read only while less than TLS_BACKLOG bytes wait to go out; what
    arrives is decrypted and written to stdout at once. After stdin's EOF, once
    the peer has been quiet for TLS_CLOSE_DELAY s (at once if it has closed), our
    close_notify goes out, then the TCP half-close. The end rules are the plain
    path's: the command ends when the peer closes, and what stdin still delivers
    after that is sent unless stdin is a terminal or quiet for PEER_EOF_LINGER s.
    """
    import ssl

    sock, tls, incoming, outgoing = conn.sock, conn.tls, conn.incoming, conn.outgoing
    sock.setblocking(False)
    activity = Activity()
    queued = _unsent(sock)
    terminal = os.isatty(stdin)
    close_delay = TLS_CLOSE_DELAY
    if options.timeout:  # end our data before -w calls a peer that waits for it idle
        close_delay = min(close_delay, options.timeout / 2)
    clear = bytearray(CHUNK)  # decrypted, on its way to stdout
    received = bytearray(TLS_RECV)  # from the socket, on its way to the TLS layer
    pending = bytearray()  # stdin bytes the TLS layer has not taken yet
    wire = bytearray()  # encrypted bytes the socket has not taken yet
    stdin_end: float | None = None  # when stdin's EOF came
    closing = write_shut = False
    poller = select.poll()
    masks: dict[int, int] = {}

    def watch(fd: int, mask: int) -> None:
        if masks.get(fd, 0) != mask:
            if mask:
                poller.register(fd, mask)
            else:
                poller.unregister(fd)
            masks[fd] = mask

    def decrypt() -> bool:
        """Everything the TLS layer can decrypt to stdout; True once the peer closed.

        Leaves ``incoming`` empty and nothing inside OpenSSL but part of a
        record: so ``unwrap()`` below finds no record to read (and reject)."""
        while True:
            try:
                n = int(tls.read(CHUNK, clear))  # with a buffer: a count (typeshed: bytes)
            except ssl.SSLWantReadError:
                return False
            except ssl.SSLZeroReturnError:  # close_notify after ours
                return True
            if not n:  # close_notify, or TCP EOF (OP_IGNORE_UNEXPECTED_EOF)
                return True
            activity.touch()
            _write_all(stdout, memoryview(clear)[:n])

    try:
        peer_closed = decrypt()  # the handshake may have brought data already
        while True:
            if pending:
                try:
                    del pending[: tls.write(pending)]
                except ssl.SSLWantReadError:
                    pass  # renegotiating: write again once the peer has answered
                except ssl.SSLError:
                    if peer_closed:
                        return
                    raise
            now = time.monotonic()
            close_at = None
            if stdin_end is not None and not (pending or wire or closing):
                close_at = now if peer_closed else max(stdin_end, activity.last) + close_delay
            if close_at is not None and now >= close_at:
                # A close_notify for our direction only. unwrap() would then wait
                # for the peer's close_notify, which decrypt() meets instead.
                closing = True
                try:
                    tls.unwrap()
                except ssl.SSLWantReadError:
                    pass
                except ssl.SSLError:
                    if not peer_closed:
                        raise
            if outgoing.pending:
                wire += outgoing.read()
            if closing and not wire and not write_shut:
                write_shut = True
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_WR)

            if options.timeout and now - activity.last > options.timeout:
                if (now_queued := _unsent(sock)) == queued:
                    raise PeerError(f"idle for {options.timeout:g} s; closing")
                queued = now_queued  # the kernel still hands our bytes to a slow peer
                activity.touch()
            if peer_closed and (terminal or write_shut or now - activity.last > PEER_EOF_LINGER):
                return

            deadline = float("inf") if close_at is None or closing else close_at
            if options.timeout:
                deadline = min(deadline, activity.last + options.timeout)
            if peer_closed:
                deadline = min(deadline, activity.last + PEER_EOF_LINGER)
            wait = None
            if deadline != float("inf"):
                wait = max(0, int((deadline - time.monotonic()) * 1000) + 1)
            sock_mask = 0 if peer_closed else select.POLLIN
            watch(sock.fileno(), sock_mask | (select.POLLOUT if wire else 0))
            wants_stdin = stdin_end is None and len(pending) + len(wire) < TLS_BACKLOG
            watch(stdin, select.POLLIN if wants_stdin else 0)

            for fd, events in poller.poll(wait):
                if fd == stdin:
                    try:
                        data = os.read(stdin, CHUNK)
                    except BlockingIOError:
                        continue
                    except OSError as exc:
                        raise LocalIOError(f"cannot read stdin: {exc.strerror or exc}") from None
                    if data:
                        pending += data
                        activity.touch()
                    else:
                        stdin_end = time.monotonic()
                    continue
                if wire and events & (select.POLLOUT | select.POLLERR | select.POLLHUP):
                    try:
                        sent = sock.send(wire)
                    except BlockingIOError:
                        sent = 0
                    except OSError as exc:
                        if exc.errno == errno.EPIPE:
                            return
                        raise PeerError(f"sending failed: {exc.strerror or exc}") from None
                    if sent:
                        del wire[:sent]
                        activity.touch()
                if not peer_closed and events & (select.POLLIN | select.POLLERR | select.POLLHUP):
                    try:
                        n = sock.recv_into(received)
                    except BlockingIOError:
                        continue
                    if n:
                        incoming.write(memoryview(received)[:n])
                        activity.touch()
                    else:
                        incoming.write_eof()
                    peer_closed = decrypt() or not n
    except BrokenPipeError:  # stdout closed (e.g. | head): a normal end
        return
    except ssl.SSLError as exc:
        raise PeerError(f"connection failed: TLS error ({exc.reason or exc})") from None
    except OSError as exc:
        raise PeerError(f"connection failed: {exc.strerror or exc}") from None


# -- udp ---------------------------------------------------------------------------


def _udp_connected(addr: Address) -> socket.socket:
    try:
        infos = socket.getaddrinfo(addr.host, addr.port, type=socket.SOCK_DGRAM)
        family, kind, proto, _, sockaddr = infos[0]
        sock = socket.socket(family, kind, proto)
        sock.connect(sockaddr)
    except OSError as exc:
        raise connect_error(addr, exc) from None
    return sock


def _hostport(sockaddr: Any) -> str:
    """``HOST:PORT`` of a socket address tuple (IPv6 bracketed), escaped for printing."""
    if isinstance(sockaddr, tuple) and len(sockaddr) >= 2:
        host = str(sockaddr[0])
        host = f"[{host}]" if ":" in host else host
        return printable(f"{host}:{sockaddr[1]}")
    return printable(sockaddr)


def run_udp(
    sock: socket.socket,
    where: str,
    options: NetcatOptions,
    stdin: int,
    stdout: int,
    *,
    first: bytes = b"",
    gone: str = "port unreachable (no udp server there)",
) -> None:
    """Datagrams: each stdin read is one datagram; each datagram goes to stdout.

    ``sock`` is connected to the peer at ``where`` (``HOST:PORT``), which the
    errors name; ``gone`` says what an ICMP port unreachable from it means."""
    with sock:
        if first:
            _write_all(stdout, memoryview(first))
        stdin_open = True
        deadline: float | None = None
        while True:
            wait = None
            if not stdin_open:
                wait = options.timeout if options.timeout else options.udp_linger
                if wait == float("inf"):
                    wait = None
                else:
                    deadline = deadline or time.monotonic() + wait
                    wait = max(0.0, deadline - time.monotonic())
            elif options.timeout:
                wait = options.timeout
            readers: list[Any] = [sock, stdin] if stdin_open else [sock]
            ready, _, _ = select.select(readers, [], [], wait)
            if not ready:
                return
            if sock in ready:
                try:
                    data = sock.recv(UDP_CHUNK)
                except ConnectionRefusedError:
                    raise ConnectError(f"cannot reach {where}: {gone}") from None
                except OSError as exc:
                    raise PeerError(f"cannot receive from {where}: {exc.strerror or exc}") from None
                _write_all(stdout, memoryview(data))
                deadline = None
            if stdin in ready:
                chunk = _read_stdin(stdin, UDP_CHUNK)
                if not chunk:
                    stdin_open = False
                    continue
                try:
                    sock.send(chunk)
                except ConnectionRefusedError:
                    raise ConnectError(f"cannot reach {where}: {gone}") from None
                except OSError as exc:
                    raise PeerError(f"cannot send to {where}: {exc.strerror or exc}") from None


# -- listen ------------------------------------------------------------------------


def bind_listener(addr: Address) -> socket.socket:
    """A listening (or bound udp) socket with SO_REUSEADDR, with one-line errors."""
    try:
        if addr.is_unix:
            prepare_unix_path(addr.path)
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.bind(addr.path)
        else:
            infos = socket.getaddrinfo(
                addr.host,
                addr.port,
                type=socket.SOCK_DGRAM if addr.scheme == "udp" else socket.SOCK_STREAM,
                flags=socket.AI_PASSIVE,
            )
            family, kind, proto, _, sockaddr = infos[0]
            sock = socket.socket(family, kind, proto)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(sockaddr)
        if addr.scheme != "udp":
            sock.listen(128)
    except OSError as exc:
        raise bind_error(addr, exc) from None
    return sock


def run_listen(
    addr: Address,
    options: NetcatOptions,
    stdin: int = 0,
    stdout: int = 1,
    announce: Callable[[Address], None] | None = None,
) -> None:
    if addr.scheme == "tls":
        raise WirekitError("listen does not do TLS yet; put a TLS terminator in front")
    listener = bind_listener(addr)
    bound = addr if addr.is_unix else addr.with_port(listener.getsockname()[1])
    if announce is not None:
        announce(bound)
    try:
        if addr.scheme == "udp":
            _listen_udp(listener, options, stdin, stdout)
        elif options.keep_open:
            _listen_many(listener, options, stdin, stdout)
        else:
            _listen_once(listener, options, stdin, stdout)
    finally:
        listener.close()
        if addr.is_unix:
            with contextlib.suppress(OSError):
                os.unlink(addr.path)


def peer_name(where: Any) -> str:
    """A peer's address as ``accept()`` gives it, for a message: the (host, port)
    tuple as Python prints it, a Unix socket's path; escaped, since the peer
    chose it (a Unix client may bind its socket to any path)."""
    if where in ("", b"", None):
        return "an unnamed unix socket"
    return printable(where)


def _say(options: NetcatOptions, text: str) -> None:
    if options.verbose:
        print(f"wirekit: {text}", file=sys.stderr, flush=True)


def _listen_once(listener: socket.socket, options: NetcatOptions, stdin: int, stdout: int) -> None:
    if options.timeout:
        listener.settimeout(options.timeout)
    try:
        peer, where = listener.accept()
    except TimeoutError:
        raise PeerError(f"no connection within {options.timeout:g} s") from None
    listener.close()  # one peer only: refuse the next ones at once
    peer.settimeout(None)
    _say(options, f"connection from {peer_name(where)}")
    with peer:
        if peer.family != socket.AF_UNIX:
            peer.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            unpace_peer(peer)
        shuttle(peer, options, stdin, stdout)


class _Peer:
    """One --keep-open peer: its socket, its activity (-w) and a lock that keeps
    the socket from being closed while stdin's bytes are being sent to it."""

    __slots__ = ("activity", "closed", "send_lock", "sock", "where")

    def __init__(self, sock: socket.socket, where: Any) -> None:
        self.sock = sock
        self.where = peer_name(where)
        self.activity = Activity()
        self.send_lock = threading.Lock()
        self.closed = False


class _Hub:
    """--keep-open: every peer's bytes go to stdout, stdin goes to every peer.

    One thread per peer, at most ``options.max_peers`` of them, each reading
    into a PEER_CHUNK buffer only once its peer has bytes to read; with -w a
    peer idle that long (nothing read from it, nothing sent to it) is closed.
    A stdout or stdin failure ends the command: :meth:`fail` wakes the accept
    loop through a pipe, which raises it."""

    def __init__(self, options: NetcatOptions, stdout: int) -> None:
        self.options = options
        self.stdout = stdout
        self.peers: dict[int, _Peer] = {}  # by id(): the socket object may be closed
        self.lock = threading.Lock()  # guards peers, and keeps stdout writes whole
        self.failure: BaseException | None = None
        self.wake_read, self.wake_write = os.pipe()

    def close(self) -> None:
        os.close(self.wake_read)
        os.close(self.wake_write)

    def fail(self, exc: BaseException) -> None:
        with self.lock:
            if self.failure is None:
                self.failure = exc
        with contextlib.suppress(OSError):
            os.write(self.wake_write, b"!")

    def admit(self, sock: socket.socket, where: Any) -> None:
        peer = _Peer(sock, where)
        limit = self.options.max_peers
        with self.lock:
            full = len(self.peers) >= limit
            if not full:
                self.peers[id(peer)] = peer
        if full:
            _say(self.options, f"refused {peer.where}: {limit} peers, the limit")
            self._refuse(sock, f"wirekit: listener holds {limit} peers, its limit; closing\n")
            return
        _say(self.options, f"connection from {peer.where}")
        sock.settimeout(self.options.timeout)  # bounds a send to a peer that does not read
        if sock.family != socket.AF_UNIX:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            unpace_peer(sock)
        thread = threading.Thread(target=self.serve_peer, args=(peer,), daemon=True)
        try:
            thread.start()
        except RuntimeError:  # can't start new thread: out of memory or a ulimit
            with self.lock:
                self.peers.pop(id(peer), None)
            self._refuse(sock, "wirekit: listener cannot take more peers now; closing\n")

    @staticmethod
    def _refuse(sock: socket.socket, line: str) -> None:
        with sock:
            sock.setblocking(False)  # a fresh socket's buffer takes one line; never wait
            with contextlib.suppress(OSError):
                sock.send(line.encode())
                sock.shutdown(socket.SHUT_WR)

    def serve_peer(self, peer: _Peer) -> None:
        """The peer's bytes to stdout until it closes, fails or idles past -w."""
        timeout = self.options.timeout
        poller = select.poll()
        poller.register(peer.sock, select.POLLIN)
        try:
            while True:
                wait_ms = None
                if timeout:
                    wait_ms = max(
                        0, math.ceil((peer.activity.last + timeout - time.monotonic()) * 1000)
                    )
                if not poller.poll(wait_ms):
                    if peer.send_lock.locked():  # stdin's bytes are on their way to it:
                        peer.activity.touch()  # not idle (the send has its own -w bound)
                        continue
                    if timeout and time.monotonic() - peer.activity.last >= timeout:
                        _say(self.options, f"closing {peer.where}: idle for {timeout:g} s")
                        return
                    continue
                try:
                    data = peer.sock.recv(PEER_CHUNK)
                except (BlockingIOError, TimeoutError):
                    continue
                except OSError:
                    return  # reset: the peer is gone
                if not data:
                    return
                peer.activity.touch()
                with self.lock:  # a chunk is written whole, never interleaved
                    _write_all(self.stdout, memoryview(data))
        except (LocalIOError, OSError) as exc:  # stdout failed: the command ends
            self.fail(exc)
        finally:
            with self.lock:
                self.peers.pop(id(peer), None)
            with contextlib.suppress(OSError):
                peer.sock.shutdown(socket.SHUT_RDWR)  # ends a send to it in progress
            with peer.send_lock:
                peer.closed = True
                peer.sock.close()

    def send(self, peer: _Peer, chunk: bytes) -> None:
        with peer.send_lock:
            if peer.closed:
                return
            try:
                peer.sock.sendall(chunk)
            except TimeoutError:
                # It has not taken stdin's bytes for -w seconds: idle, and now
                # missing part of them; close it.
                _say(self.options, f"closing {peer.where}: idle for {self.options.timeout:g} s")
            except OSError:
                pass  # gone
            else:
                peer.activity.touch()
                return
            with contextlib.suppress(OSError):
                peer.sock.shutdown(socket.SHUT_RDWR)  # its reader thread closes it

    def read_stdin(self, fd: int) -> None:
        try:
            while chunk := _read_stdin(fd, PEER_CHUNK):
                with self.lock:
                    peers = list(self.peers.values())
                for peer in peers:
                    self.send(peer, chunk)
        except LocalIOError as exc:
            self.fail(exc)


def _listen_many(listener: socket.socket, options: NetcatOptions, stdin: int, stdout: int) -> None:
    """Accept peers until interrupted (or stdout fails). Out of file descriptors
    (EMFILE, ENFILE) or buffers, accept() is retried every ACCEPT_RETRY seconds
    with one line on stderr per episode, as trio does: the waiting peers stay in
    the kernel's queue until others leave."""
    hub = _Hub(options, stdout)
    listener.setblocking(False)
    poller = select.poll()
    poller.register(listener, select.POLLIN)
    poller.register(hub.wake_read, select.POLLIN)
    pause = select.poll()
    pause.register(hub.wake_read, select.POLLIN)
    threading.Thread(
        target=hub.read_stdin, args=(stdin,), name="wirekit-stdin", daemon=True
    ).start()
    starved = False
    try:
        while True:
            poller.poll()
            if hub.failure is not None:
                raise hub.failure
            try:
                sock, where = listener.accept()
            except BlockingIOError:
                continue
            except OSError as exc:
                if exc.errno in _ACCEPT_STARVED:
                    if not starved:
                        starved = True
                        print(
                            f"wirekit: cannot accept a connection: {exc.strerror}; "
                            f"retrying every {ACCEPT_RETRY:g} s",
                            file=sys.stderr,
                            flush=True,
                        )
                    pause.poll(int(ACCEPT_RETRY * 1000))
                    continue
                if exc.errno in _ACCEPT_SKIP:
                    continue
                raise PeerError(f"cannot accept connections: {exc.strerror or exc}") from None
            starved = False
            sock.setblocking(True)
            hub.admit(sock, where)
    finally:
        hub.close()


def _listen_udp(sock: socket.socket, options: NetcatOptions, stdin: int, stdout: int) -> None:
    if options.timeout:
        sock.settimeout(options.timeout)
    try:
        data, peer = sock.recvfrom(UDP_CHUNK)
    except TimeoutError:
        raise PeerError(f"no datagram within {options.timeout:g} s") from None
    sock.settimeout(None)
    _say(options, f"datagram from {_hostport(peer)}")
    if not options.keep_open:
        sock.connect(peer)  # like nc -u -l: talk to the first peer only
        run_udp(
            sock,
            _hostport(peer),
            NetcatOptions(timeout=options.timeout, udp_linger=float("inf")),
            stdin,
            stdout,
            first=data,
            gone="port unreachable (the peer has gone)",
        )
        return
    _write_all(stdout, memoryview(data))
    last = peer  # replies go to the latest peer
    stdin_open = True
    while True:
        readers: list[Any] = [sock, stdin] if stdin_open else [sock]
        ready, _, _ = select.select(readers, [], [])
        if sock in ready:
            try:
                data, sender = sock.recvfrom(UDP_CHUNK)
            except OSError:  # an error queued for an earlier peer: not this one's
                continue
            if sender != last:
                _say(options, f"datagram from {_hostport(sender)}")
            last = sender
            _write_all(stdout, memoryview(data))
        if stdin in ready:
            chunk = _read_stdin(stdin, UDP_CHUNK)
            if not chunk:
                stdin_open = False
                continue
            try:
                sock.sendto(chunk, last)
            except OSError as exc:  # the datagram is lost; the next peers may be reachable
                print(
                    f"wirekit: cannot send to {_hostport(last)}: {exc.strerror or exc}",
                    file=sys.stderr,
                    flush=True,
                )
