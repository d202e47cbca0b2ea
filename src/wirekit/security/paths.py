"""Where wirekit keeps credentials, and how it reads and writes them safely.

The config dir holds secrets (the token, wirekit's own key, the TLS key) and
trust decisions (the pinned fingerprints), so it is created 0700 and every
file in it is written 0600. Writes are atomic (temp file, fsync, rename,
fsync of the dir): a crash or a full disk leaves the old file or the new
one, never a truncated key or a half-written pin list.

Reads refuse files others could read or write, as OpenSSH does: a secret
that leaked is not a secret, and a trust file others can edit is not
trustworthy. The error is one line that says which ``chmod`` to run.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shlex
import stat
from collections.abc import Iterator
from pathlib import Path

from ..errors import WirekitError

__all__ = [
    "CredentialError",
    "atomic_write",
    "config_dir",
    "locked_dir",
    "read_secret_file",
    "read_trusted_file",
]

#: Environment variable that overrides the config dir (tests, several profiles).
CONFIG_DIR_ENV = "WIREKIT_CONFIG_DIR"


class CredentialError(WirekitError):
    """A local credential file is missing, unsafe or unusable; the user must fix a file.

    Distinct from :class:`~wirekit.errors.AuthenticationFailed` (the peer
    said no): here nothing was sent, because our own setup is wrong.
    """


def config_dir(*, create: bool = True) -> Path:
    """The user's wirekit config dir, created 0700 when ``create`` is true.

    ``$WIREKIT_CONFIG_DIR`` if set, else ``$XDG_CONFIG_HOME/wirekit``, else
    ``~/.config/wirekit``. Per the XDG spec an empty or relative
    ``$XDG_CONFIG_HOME`` is ignored. An existing dir keeps its mode: the
    user may have chosen it on purpose, and each secret file is 0600 anyway.
    """
    override = os.environ.get(CONFIG_DIR_ENV, "")
    if override:
        path = Path(override).expanduser().absolute()
    else:
        xdg = os.environ.get("XDG_CONFIG_HOME", "")
        base = Path(xdg) if xdg and os.path.isabs(xdg) else Path.home() / ".config"
        path = base / "wirekit"
    if create and not path.is_dir():
        path.parent.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(FileExistsError):
            path.mkdir(mode=0o700)
            os.chmod(path, 0o700)  # mkdir's mode is filtered by the umask
        if not path.is_dir():
            raise CredentialError(f"config dir {path} exists but is not a directory")
    return path


def atomic_write(path: Path, data: bytes, *, mode: int = 0o600, overwrite: bool = True) -> None:
    """Write ``data`` to ``path`` atomically, with exactly ``mode``.

    The temp file is made in the same dir (a rename is atomic only within one
    file system) with ``O_EXCL`` and the final mode from the start, so the
    secret is never readable by others, not even for a moment. With
    ``overwrite=False`` the file is linked into place, which fails if the
    name exists: two processes creating the same token cannot both win.
    Raises :class:`FileExistsError` in that case.
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{secrets.token_hex(6)}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        try:
            if hasattr(os, "fchmod"):
                os.fchmod(fd, mode)  # the umask may have removed bits we asked for
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        finally:
            os.close(fd)
        if overwrite:
            os.replace(tmp, path)
        else:
            _link_no_clobber(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
    _fsync_dir(path.parent)


def read_secret_file(path: Path) -> bytes:
    """Read a secret (key, token), refusing it if group or others have any access."""
    return _read_checked(path, 0o077, "600", "a secret file must be readable by its owner only")


def read_trusted_file(path: Path) -> bytes:
    """Read a trust file (authorized_keys), refusing it if group or others can write it."""
    return _read_checked(path, 0o022, "go-w", "others could add entries to it")


@contextlib.contextmanager
def locked_dir(path: Path) -> Iterator[None]:
    """Hold an exclusive lock on a directory while a read-modify-write runs.

    Atomic rename keeps a file whole, but two processes that each read, edit
    and rename would lose one edit. The lock is on the dir because the file
    itself is replaced. Where ``flock`` is missing this only serialises
    nothing, which is no worse than no lock.
    """
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX
        yield
        return
    fd = os.open(path, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the lock


def _read_checked(path: Path, forbidden: int, chmod: str, why: str) -> bytes:
    # Check the opened file, not the name, so a swap between check and read cannot fool us;
    # O_NONBLOCK so a FIFO planted under the name cannot hang us before the check.
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0))
    with os.fdopen(fd, "rb") as f:
        info = os.fstat(f.fileno())
        if os.name == "posix":
            if not stat.S_ISREG(info.st_mode):
                raise CredentialError(f"{path} is not a regular file")
            if info.st_mode & forbidden:
                perms = stat.S_IMODE(info.st_mode)
                raise CredentialError(
                    f"permissions {perms:04o} for {path} are too open ({why}); "
                    f"run: chmod {chmod} {shlex.quote(str(path))}"
                )
            if info.st_uid not in (os.getuid(), 0):
                raise CredentialError(
                    f"{path} is owned by uid {info.st_uid}, not by you (uid {os.getuid()}); "
                    "refusing to trust it"
                )
        return f.read()


def _link_no_clobber(tmp: Path, path: Path) -> None:
    try:
        os.link(tmp, path)
    except FileExistsError:
        raise
    except OSError:
        # No hard links on this file system: check, then rename (a tiny race, but no torn file).
        if os.path.lexists(path):
            raise FileExistsError(f"{path} already exists") from None
        os.replace(tmp, path)


def _fsync_dir(path: Path) -> None:
    # Makes the rename itself durable; not possible (nor needed) on Windows.
    if os.name != "posix":  # pragma: no cover
        return
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
