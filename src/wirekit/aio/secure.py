"""Authenticated framed connections over asyncio: ``secure_serve`` and ``secure_connect``.

Every connection runs the handshake of docs/protocol.md §9 (driven by the
sans-I/O :mod:`wirekit.proto.auth`) before the service sees it: the server's
handler is called with the :class:`Peer` that proved who it is, and the
client gets its Connection only after the server accepted it (and, for a
token, proved that it knows the token too). docs/security.md explains the
threat model; this module implements its "Authentication" and "Failed
attempts" sections.
"""

from __future__ import annotations

import asyncio
import hashlib
import ipaddress
import logging
import math
import secrets
import ssl as ssl_module
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from ..addr import Address, parse_address
from ..errors import ConnectionClosed, ErrorCode, ListenError, RemoteProtocolError
from ..limits import DEFAULT_LIMITS, Limits
from ..neterrors import printable
from ..proto import Message
from ..proto.auth import AUTH_MESSAGES, Accepted, ClientHandshake, ServerHandshake
from ..security.credentials import (
    FileVerifier,
    check_pin,
    client_credentials,
    client_error,
    env_token_file,
    service_token_path,
)
from ..security.paths import CredentialError
from ..security.tlscert import ServerContext, client_context
from ..security.token import check_token, ensure_token
from .client import connect
from .connection import Connection
from .server import Server

__all__ = [
    "PREAUTH_MAX_FRAME",
    "PREAUTH_READ_HIGH_WATER",
    "FailureThrottle",
    "Peer",
    "SecureServer",
    "ServerAuth",
    "secure_connect",
    "secure_serve",
]

log = logging.getLogger("wirekit.auth")

#: Bytes queued from a peer that has not authenticated before reading pauses
#: (instead of ``Limits.read_high_water``); see ``SecureServer.preauth_limits``.
PREAUTH_READ_HIGH_WATER = 64 * 1024
#: The largest frame read from a peer that has not authenticated yet: an
#: auth-request is a few hundred bytes, so a half-sent frame head announcing
#: max_frame_size cannot make the server hold a 1 MiB buffer for nobody.
PREAUTH_MAX_FRAME = 4096

#: A service's handler: called once per authenticated connection.
SecureHandler = Callable[[Connection, "Peer"], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class Peer:
    """Who authenticated: address, method ("key" or "token"), and a description."""

    ip: str
    method: str
    principal: str


@dataclass(frozen=True, slots=True)
class ServerAuth:
    """What a server accepts: keys from an authorized_keys file, a token, or both."""

    authorized_keys: Path | None = None
    token: bytes | None = None
    #: Seconds before the answer to a first failure; doubles per further failure from one IP.
    failure_delay: float = 0.5
    #: Upper bound of that delay.
    max_failure_delay: float = 10.0

    @classmethod
    def for_service(
        cls,
        *,
        authorized_keys: Path | None,
        token_file: Path | None,
        service: str,
    ) -> tuple[ServerAuth, str | None]:
        """The auth a server uses, and a hint line to print (or None).

        Given files must be usable (a token file that does not exist yet is
        created, 0600, and the hint says so). With neither given: keys from
        ``~/.ssh/authorized_keys`` if that file exists and is safe, and a token
        (``$WIREKIT_TOKEN_FILE`` or ``<config dir>/<service>.token``, created
        0600 if missing) that a client on this machine finds by itself.
        """
        if authorized_keys is not None or token_file is not None:
            token, hint = None, None
            if token_file is not None:
                path = Path(token_file)
                if not path.exists():
                    hint = f"created token file {path} (0600); give clients a copy"
                token = ensure_token(path).encode()
            if authorized_keys is not None:
                FileVerifier(Path(authorized_keys), None)  # fails now if the file is bad
            return cls(Path(authorized_keys) if authorized_keys else None, token), hint
        keys = Path.home() / ".ssh" / "authorized_keys"
        keys_path: Path | None = None
        if keys.exists():
            try:
                FileVerifier(keys, None)
                keys_path = keys
            except CredentialError as exc:
                log.warning("not accepting keys: %s", exc)
        path = env_token_file() or service_token_path(service)
        token = ensure_token(path).encode()
        hint = (
            f"token in {path}: clients on this machine (same user) use it by themselves; "
            "elsewhere copy it (mode 0600) and give it with --token-file"
        )
        if keys_path is not None:
            hint += f"; keys in {keys_path} are accepted too"
        return cls(keys_path, token), hint


class FailureThrottle:
    """Slows down repeated failures from one IP; memory bounded by ``max_entries``.

    "One IP" is one IPv6 /64 (:meth:`source`): counting each IPv6 address
    apart would give a host a fresh attempt from every address it can pick,
    and let it flush the table.

    An IP with failures on record gets its attempts evaluated one at a time,
    ``penalty`` seconds apart (:meth:`reserve`), so opening many connections
    at once does not multiply its guesses; the penalty doubles with each
    failure up to ``maximum`` and is forgotten after ``forget_after`` seconds
    without failures. IPs with no failures never wait.
    """

    def __init__(
        self,
        base: float = 0.5,
        maximum: float = 10.0,
        *,
        forget_after: float = 600.0,
        max_entries: int = 4096,
    ) -> None:
        self.base = base
        self.maximum = maximum
        self.forget_after = forget_after
        self.max_entries = max_entries
        # ip -> [failures, penalty, next free time, last failure time]
        self._table: OrderedDict[str, list[float]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._table)

    def _record(self, ip: str, now: float) -> list[float] | None:
        record = self._table.get(ip)
        if record is not None and now - record[3] > self.forget_after:
            del self._table[ip]
            return None
        return record

    @staticmethod
    def source(ip: str) -> str:
        """The unit counted as one address: an IPv6 /64 (one site picks any source
        address in it), an IPv4-mapped address as its IPv4 one, else ``ip``."""
        try:
            address = ipaddress.ip_address(ip.split("%", 1)[0])
        except ValueError:
            return ip  # "unix", or a name: counted as it is
        if isinstance(address, ipaddress.IPv6Address):
            if address.ipv4_mapped is not None:
                return str(address.ipv4_mapped)
            return str(ipaddress.IPv6Network((address, 64), strict=False))
        return ip

    def reserve(self, ip: str, now: float, deadline: float = math.inf) -> float | None:
        """Seconds to wait before evaluating an attempt; None if that would pass ``deadline``."""
        record = self._record(self.source(ip), now)
        if record is None:
            return 0.0
        slot = max(now, record[2])
        if slot > deadline:
            return None
        record[2] = slot + record[1]
        return slot - now

    def failed(self, ip: str, now: float) -> float:
        """Count a failure; returns the delay before answering it."""
        ip = self.source(ip)
        record = self._record(ip, now)
        if record is None:
            while len(self._table) >= self.max_entries:
                self._table.popitem(last=False)  # the least recently failed
            record = self._table[ip] = [0.0, 0.0, now, now]
        record[0] += 1
        record[1] = min(self.base * 2 ** min(record[0] - 1, 30), self.maximum)
        record[2] = max(record[2], now + record[1])
        record[3] = now
        self._table.move_to_end(ip)
        return record[1]


class SecureServer(Server):
    """A :class:`~wirekit.aio.server.Server` whose handler runs after authentication."""

    def __init__(
        self,
        handler: SecureHandler,
        address: Address,
        *,
        service: str,
        auth: ServerAuth,
        limits: Limits,
        ssl: ssl_module.SSLContext | None,
        certificate: bytes | None,
        message_types: Iterable[type[Message]],
    ) -> None:
        super().__init__(
            self._authenticated,
            address,
            limits=limits,
            ssl=ssl,
            message_types=(*AUTH_MESSAGES, *message_types),
        )
        self.service = service
        self.auth = auth
        self.secure_handler = handler
        try:
            token = None if auth.token is None else check_token(auth.token.decode(), "token")
            self.verifier = FileVerifier(auth.authorized_keys, token)
        except CredentialError as exc:
            raise ListenError(f"cannot serve {service}: {exc}") from None
        self.throttle = FailureThrottle(auth.failure_delay, auth.max_failure_delay)
        #: The limits while a peer is not authenticated yet: it is read only up to a small
        #: budget (an auth-request is a few hundred bytes), so a connection waiting for its
        #: turn or its refusal cannot make the server hold read_high_water for nobody.
        self.preauth_limits = limits.replace(
            read_high_water=min(limits.read_high_water, PREAUTH_READ_HIGH_WATER)
        )
        #: SHA-256 of the certificate (channel binding, §9.1); empty without TLS.
        self.channel_binding = hashlib.sha256(certificate).digest() if certificate else b""

    async def start(self) -> None:
        if self._server is None:  # secure_serve() started it; `async with` must not rebind
            await super().start()

    def _make_connection(self) -> Connection:
        # Set here, before the first byte is read, not in the handler task: frames
        # that arrive with the hello are parsed before that task runs.
        conn = super()._make_connection()
        conn.limits = self.preauth_limits
        conn.proto.receive_limit = min(PREAUTH_MAX_FRAME, self.limits.max_frame_size)
        return conn

    async def _authenticated(self, conn: Connection) -> None:
        peer = await self._authenticate(conn)
        if peer is not None:
            conn.limits = self.limits
            conn.proto.receive_limit = self.limits.max_frame_size
            await self.secure_handler(conn, peer)

    async def _authenticate(self, conn: Connection) -> Peer | None:
        """Run the server side of protocol.md §9; the Peer, or None after a refusal."""
        shake = ServerHandshake(
            self.service, self.verifier, secrets.token_bytes(32), self.channel_binding
        )
        message = await self._first_message(conn, shake)
        if message is None:
            return None
        decision = shake.receive(message)
        where = printable(conn.ip)
        if isinstance(decision, Accepted):
            await conn.send_message(decision.reply)
            who = printable(decision.principal)
            log.info("%s: %s authenticated by %s", self.service, where, who)
            return Peer(conn.ip, decision.method, decision.principal)
        delay = self.throttle.failed(conn.ip, asyncio.get_running_loop().time())
        # The detail may carry a key comment; peer-chosen text is escaped at its source too.
        log.warning("%s: refused %s: %s", self.service, where, printable(decision.detail))
        await asyncio.sleep(delay)  # protocol.md §9.5: a short delay, longer when repeated
        conn.abort(decision.code, decision.reason)
        return None

    async def _first_message(self, conn: Connection, shake: ServerHandshake) -> object | None:
        """Challenge, then the client's first message once its IP's turn has come
        (FailureThrottle); None if the connection ended or was refused meanwhile.
        All of it within the handshake timeout, counted from the accept (§9.5)."""
        loop = asyncio.get_running_loop()
        timeout = self.limits.handshake_timeout
        deadline = conn.opened_at + timeout if timeout > 0 else math.inf
        where = printable(conn.ip)
        try:
            async with asyncio.timeout_at(deadline if timeout > 0 else None):
                await conn.send_message(shake.challenge())
                message: object = await conn.recv()
                wait = self.throttle.reserve(conn.ip, loop.time(), deadline)
                if wait:
                    await asyncio.sleep(wait)
        except TimeoutError:
            log.warning("%s: %s did not authenticate within %g s", self.service, where, timeout)
            conn.abort(ErrorCode.HANDSHAKE_TIMEOUT, f"no authentication within {timeout:g} s")
            return None
        except RemoteProtocolError as exc:
            self.throttle.failed(conn.ip, loop.time())
            # The decoder's message can quote the peer's bytes (an unknown tag): escape them.
            log.warning(
                "%s: %s failed before authenticating: %s", self.service, where, printable(exc)
            )
            return None
        except ConnectionClosed:
            log.info("%s: %s left before authenticating", self.service, where)
            return None
        if wait is None:
            log.warning("%s: refused %s: too many failed attempts", self.service, where)
            conn.abort(
                ErrorCode.AUTH_FAILED,
                "authentication failed: too many failed attempts from your address; "
                "try again later",
            )
            return None
        return message


def is_loopback(address: Address) -> bool:
    """True for Unix sockets, ``localhost`` and loopback IP literals."""
    if address.is_unix or address.host == "localhost":
        return True
    try:
        return ipaddress.ip_address(address.host.split("%", 1)[0]).is_loopback
    except ValueError:
        return False


async def secure_serve(
    handler: SecureHandler,
    addr: str | Address,
    *,
    service: str,
    auth: ServerAuth,
    ssl: ssl_module.SSLContext | None = None,
    insecure: bool = False,
    limits: Limits = DEFAULT_LIMITS,
    message_types: Iterable[type[Message]] = (),
    certificate: bytes | None = None,
) -> SecureServer:
    """Start a server that authenticates every connection, then runs ``handler(conn, peer)``.

    Refuses (ListenError) a non-loopback address without TLS unless
    ``insecure``. ``message_types`` are the service's own messages.
    ``certificate`` (DER) is needed only for an ``ssl`` context not made by
    :mod:`wirekit.security.tlscert`: the handshake binds to it (§9.1).
    """
    address = addr if isinstance(addr, Address) else parse_address(addr)
    if ssl is None and not insecure and not is_loopback(address):
        raise ListenError(
            f"refusing to serve {service} on {address} without TLS: anyone on the network "
            "could read and change the session; use --tls auto (or --insecure to accept that)"
        )
    if ssl is not None and certificate is None:
        if not isinstance(ssl, ServerContext):
            raise ListenError(
                "secure_serve needs the server certificate for channel binding: make the "
                "context with wirekit.security.tlscert or pass certificate="
            )
        certificate = ssl.certificate_der
    server = SecureServer(
        handler,
        address,
        service=service,
        auth=auth,
        limits=limits,
        ssl=ssl,
        certificate=certificate,
        message_types=message_types,
    )
    await server.start()
    return server


async def secure_connect(
    addr: str | Address,
    *,
    service: str,
    identity: Path | None = None,
    token_file: Path | None = None,
    accept_new: bool = False,
    confirm: Callable[[str], bool] | None = None,
    known_hosts: Path | None = None,
    limits: Limits = DEFAULT_LIMITS,
    tls: bool = False,
    message_types: Iterable[type[Message]] = (),
    timeout: float | None = None,
) -> Connection:
    """Connect and authenticate; the Connection is then the service's.

    ``tls://`` (or ``tls=True``) checks the pinned fingerprint first
    (:func:`~wirekit.security.credentials.check_pin`). ``timeout`` bounds
    connecting plus the handshake (default ``limits.handshake_timeout``).
    Raises AuthenticationFailed, ConnectError or CredentialError, each with
    a one-line message.
    """
    address = addr if isinstance(addr, Address) else parse_address(addr)
    use_tls = tls or address.scheme == "tls"
    credentials = client_credentials(service, identity=identity, token_file=token_file)
    wait = limits.handshake_timeout if timeout is None else timeout
    loop = asyncio.get_running_loop()
    deadline = loop.time() + wait
    conn = await connect(
        address,
        limits=limits,
        ssl=client_context() if use_tls else None,
        timeout=wait,
        message_types=(*AUTH_MESSAGES, *message_types),
    )
    try:
        binding = b""
        if use_tls:
            der = conn.get_extra_info("ssl_object").getpeercert(binary_form=True)
            hostport = address.hostport()
            if check_pin(
                hostport, der, accept_new=accept_new, confirm=confirm, known_hosts=known_hosts
            ):
                # A person answered: the server may have given up on us meanwhile.
                conn.abort(ErrorCode.GOING_AWAY, "reconnecting after the pin question")
                return await secure_connect(
                    address,
                    service=service,
                    identity=identity,
                    token_file=token_file,
                    known_hosts=known_hosts,
                    limits=limits,
                    tls=True,
                    message_types=message_types,
                    timeout=timeout,
                )
            binding = hashlib.sha256(der).digest()
        shake = ClientHandshake(service, credentials, secrets.token_bytes(32), binding)
        async with asyncio.timeout_at(deadline):
            request = shake.receive(await conn.recv())
            assert request is not None
            await conn.send_message(request)
            shake.receive(await conn.recv())
    except BaseException as exc:
        conn.abort(ErrorCode.AUTH_FAILED, "authentication abandoned")
        raise client_error(exc, str(address), service, wait) from None
    return conn
