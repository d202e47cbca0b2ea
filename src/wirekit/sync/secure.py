"""``secure_connect`` for blocking code: the same handshake (docs/protocol.md §9),
driven over a :class:`wirekit.sync.client.Connection`."""

from __future__ import annotations

import hashlib
import secrets
import time
from collections.abc import Callable, Iterable
from pathlib import Path

from ..addr import Address, parse_address
from ..limits import DEFAULT_LIMITS, Limits
from ..proto import Message
from ..proto.auth import AUTH_MESSAGES, ClientHandshake
from ..security.credentials import check_pin, client_credentials, client_error
from ..security.tlscert import client_context
from .client import Connection, connect

__all__ = ["secure_connect"]


def secure_connect(
    addr: str | Address,
    *,
    service: str,
    identity: Path | None = None,
    token_file: Path | None = None,
    accept_new: bool = False,
    confirm: Callable[[str], bool] | None = None,
    known_hosts: Path | None = None,
    timeout: float | None = None,
    limits: Limits = DEFAULT_LIMITS,
    tls: bool = False,
    message_types: Iterable[type[Message]] = (),
) -> Connection:
    """Connect and authenticate, blocking; see :func:`wirekit.aio.secure.secure_connect`.

    ``timeout`` is the connection's timeout for later calls (as in
    :func:`wirekit.sync.connect`); connecting plus the handshake are bounded
    by it, or by ``limits.handshake_timeout`` when it is None.
    """
    address = addr if isinstance(addr, Address) else parse_address(addr)
    use_tls = tls or address.scheme == "tls"
    credentials = client_credentials(service, identity=identity, token_file=token_file)
    wait = limits.handshake_timeout if timeout is None else timeout
    deadline = time.monotonic() + wait
    conn = connect(
        address,
        timeout=timeout,
        connect_timeout=wait,
        limits=limits,
        ssl=client_context() if use_tls else None,
        message_types=(*AUTH_MESSAGES, *message_types),
    )
    try:
        binding = b""
        if use_tls:
            der = conn._sock.getpeercert(binary_form=True)  # type: ignore[attr-defined]
            if check_pin(
                address.hostport(),
                der,
                accept_new=accept_new,
                confirm=confirm,
                known_hosts=known_hosts,
            ):
                # A person answered: the server may have given up on us meanwhile.
                conn._sock.close()
                return secure_connect(
                    address,
                    service=service,
                    identity=identity,
                    token_file=token_file,
                    known_hosts=known_hosts,
                    timeout=timeout,
                    limits=limits,
                    tls=True,
                    message_types=message_types,
                )
            binding = hashlib.sha256(der).digest()
        shake = ClientHandshake(service, credentials, secrets.token_bytes(32), binding)
        request = shake.receive(conn.recv(max(0.0, deadline - time.monotonic())))
        assert request is not None
        conn.send_message(request)
        shake.receive(conn.recv(max(0.0, deadline - time.monotonic())))
    except BaseException as exc:
        conn._sock.close()
        raise client_error(exc, str(address), service, wait) from None
    return conn
