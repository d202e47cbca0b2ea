"""netcat mode: ``wirekit connect`` and ``wirekit listen``.

Raw bytes between stdin/stdout and one socket (or many with ``keep_open``).
Each direction runs in its own thread doing blocking syscalls, so a peer that
writes while we write can never deadlock us, and bulk data takes the
cheapest path the kernel offers:

* stdin is a regular file   -> ``socket.sendfile`` (no copy through Python)
* stdin / stdout is a pipe  -> ``os.splice`` between pipe and socket
* otherwise                 -> 1 MiB ``readinto``/``recv_into`` + ``sendall``/``write``

On stdin EOF the socket is half-closed (``shutdown(SHUT_WR)``) and we keep
reading until the peer closes, like ``nc -N``.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import select
import socket
import ssl as ssl_module
import stat
import sys
import termios
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from ..addr import Address
from ..errors import ConnectError, WirekitError
from ..neterrors import bind_error, connect_error
from ..unixsock import prepare_unix_path

__all__ = ["NetcatOptions", "run_connect", "run_listen"]

CHUNK = 1 << 20
#: After the peer's EOF, stop forwarding stdin once it has been quiet this long.
PEER_EOF_LINGER = 1.0
UDP_CHUNK = 65507


@dataclass(frozen=True, slots=True)
class NetcatOptions:
    timeout: float | None = None  # -w: connect timeout and idle timeout
    cafile: str | None = None
    insecure: bool = False
    keep_open: bool = False
    verbose: bool = False
    udp_linger: float = 1.0  # seconds to wait for replies after stdin EOF (udp)


class PeerError(WirekitError):
    """The connection failed after it was established (reset, timeout)."""


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


def pump_in(fd: int, sock: socket.socket, activity: Activity, *, plain: bool) -> None:
    """stdin -> socket until EOF. ``plain`` is False for TLS sockets."""
    kind = _kind(fd) if plain else "other"
    if kind == "file":
        with os.fdopen(os.dup(fd), "rb", buffering=0) as src:
            offset = src.seek(0, os.SEEK_CUR)
            # In chunks: -w must see a long transfer move, not one silent call.
            while sent := sock.sendfile(src, offset, CHUNK):  # type: ignore[arg-type]
                offset += sent
                activity.touch()
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
        n = os.readv(fd, [buf])
        if not n:
            return
        sock.sendall(view[:n])
        activity.touch()


def pump_out(sock: socket.socket, fd: int, activity: Activity, *, plain: bool) -> None:
    """socket -> stdout until the peer closes."""
    if plain and _kind(fd) == "pipe":
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
    while data:
        written = os.write(fd, data)
        data = data[written:]


# -- connect ---------------------------------------------------------------------


def open_stream(addr: Address, options: NetcatOptions) -> socket.socket:
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
        if addr.scheme == "tls":
            sock = tls_context(options).wrap_socket(sock, server_hostname=addr.host)
    except ssl_module.SSLCertVerificationError as exc:
        raise ConnectError(
            f"cannot connect to {addr.hostport()}: certificate not trusted "
            f"({exc.verify_message}); pass --cafile FILE, or --insecure to skip the check"
        ) from None
    except ssl_module.SSLError as exc:
        raise ConnectError(
            f"cannot connect to {addr.hostport()}: TLS failed ({exc.reason})"
        ) from None
    except OSError as exc:
        raise connect_error(addr, exc) from None
    sock.settimeout(None)
    return sock


def tls_context(options: NetcatOptions) -> ssl_module.SSLContext:
    ctx = ssl_module.create_default_context(cafile=options.cafile)
    if options.insecure:
        ctx.check_hostname = False
        ctx.verify_mode = ssl_module.CERT_NONE
    return ctx


def run_connect(addr: Address, options: NetcatOptions, stdin: int = 0, stdout: int = 1) -> None:
    if addr.scheme == "udp":
        run_udp(_udp_connected(addr), addr, options, stdin, stdout)
        return
    sock = open_stream(addr, options)
    with sock:
        shuttle(sock, options, stdin, stdout)


def shuttle(sock: socket.socket, options: NetcatOptions, stdin: int, stdout: int) -> None:
    """Move bytes both ways until the peer closes; raise PeerError on failure."""
    plain = not isinstance(sock, ssl_module.SSLSocket)
    activity = Activity()
    failure: list[BaseException] = []

    def inbound() -> None:
        try:
            pump_in(stdin, sock, activity, plain=plain)
            if plain:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_WR)
        except OSError as exc:
            if exc.errno != errno.EPIPE:
                failure.append(exc)
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    sender = threading.Thread(target=inbound, name="wirekit-stdin", daemon=True)
    sender.start()
    watchdog = _start_watchdog(sock, activity, options.timeout)
    try:
        pump_out(sock, stdout, activity, plain=plain)
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
        exc = failure[0]
        raise PeerError(f"sending failed: {getattr(exc, 'strerror', None) or exc}")


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


def run_udp(
    sock: socket.socket,
    addr: Address,
    options: NetcatOptions,
    stdin: int,
    stdout: int,
    *,
    first: bytes = b"",
) -> None:
    """Datagrams: each stdin read is one datagram; each datagram goes to stdout."""
    if first:
        _write_all(stdout, memoryview(first))
    stdin_open = True
    deadline: float | None = None
    with sock:
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
            readers = [sock, stdin] if stdin_open else [sock]
            ready, _, _ = select.select(readers, [], [], wait)
            if not ready:
                return
            if sock in ready:
                try:
                    data = sock.recv(UDP_CHUNK)
                except ConnectionRefusedError:
                    raise ConnectError(
                        f"cannot reach {addr.hostport()}: port unreachable (no udp server there)"
                    ) from None
                _write_all(stdout, memoryview(data))
                deadline = None
            if stdin in ready:
                chunk = os.read(stdin, UDP_CHUNK)
                if not chunk:
                    stdin_open = False
                    continue
                try:
                    sock.send(chunk)
                except ConnectionRefusedError:
                    raise ConnectError(
                        f"cannot reach {addr.hostport()}: port unreachable (no udp server there)"
                    ) from None


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
            _listen_udp(listener, bound, options, stdin, stdout)
        elif options.keep_open:
            _listen_many(listener, stdin, stdout)
        else:
            _listen_once(listener, options, stdin, stdout)
    finally:
        listener.close()
        if addr.is_unix:
            with contextlib.suppress(OSError):
                os.unlink(addr.path)


def _listen_once(listener: socket.socket, options: NetcatOptions, stdin: int, stdout: int) -> None:
    if options.timeout:
        listener.settimeout(options.timeout)
    try:
        peer, where = listener.accept()
    except TimeoutError:
        raise PeerError(f"no connection within {options.timeout:g} s") from None
    listener.close()  # one peer only: refuse the next ones at once
    peer.settimeout(None)
    if options.verbose:
        print(f"wirekit: connection from {where}", file=sys.stderr)
    with peer:
        if peer.family != socket.AF_UNIX:
            peer.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        shuttle(peer, options, stdin, stdout)


class _Broadcast:
    """--keep-open: every peer's bytes go to stdout, stdin goes to every peer."""

    def __init__(self, stdout: int) -> None:
        self.stdout = stdout
        self.peers: set[socket.socket] = set()
        self.lock = threading.Lock()

    def serve_peer(self, peer: socket.socket) -> None:
        with self.lock:
            self.peers.add(peer)
        buf = bytearray(CHUNK)
        try:
            while n := peer.recv_into(buf):
                with self.lock:  # a chunk is written whole, never interleaved
                    _write_all(self.stdout, memoryview(buf)[:n])
        except OSError:
            pass
        finally:
            with self.lock:
                self.peers.discard(peer)
            peer.close()

    def read_stdin(self, fd: int) -> None:
        while chunk := os.read(fd, CHUNK):
            with self.lock:
                peers = list(self.peers)
            for peer in peers:
                with contextlib.suppress(OSError):
                    peer.sendall(chunk)


def _listen_many(listener: socket.socket, stdin: int, stdout: int) -> None:
    hub = _Broadcast(stdout)
    threading.Thread(target=hub.read_stdin, args=(stdin,), daemon=True).start()
    while True:
        peer, _ = listener.accept()
        threading.Thread(target=hub.serve_peer, args=(peer,), daemon=True).start()


def _listen_udp(
    sock: socket.socket, bound: Address, options: NetcatOptions, stdin: int, stdout: int
) -> None:
    if options.timeout:
        sock.settimeout(options.timeout)
    try:
        data, peer = sock.recvfrom(UDP_CHUNK)
    except TimeoutError:
        raise PeerError(f"no datagram within {options.timeout:g} s") from None
    sock.settimeout(None)
    if not options.keep_open:
        sock.connect(peer)  # like nc -u -l: talk to the first peer only
        run_udp(
            sock,
            bound,
            NetcatOptions(timeout=options.timeout, udp_linger=float("inf")),
            stdin,
            stdout,
            first=data,
        )
        return
    _write_all(stdout, memoryview(data))
    last = [peer]

    def replies() -> None:
        while chunk := os.read(stdin, UDP_CHUNK):
            sock.sendto(chunk, last[0])

    threading.Thread(target=replies, daemon=True).start()
    while True:
        data, last[0] = sock.recvfrom(UDP_CHUNK)
        _write_all(stdout, memoryview(data))
