"""``wirekit serve exec`` and ``wirekit exec`` over real sockets with real processes.

One ``wirekit serve exec`` subprocess serves the whole module (with the
automatic token, found by the clients by themselves); clients run in
process through ``main(argv)`` or as subprocesses where stdin, signals or
the process itself matter. HOME and WIREKIT_CONFIG_DIR point into a temp dir
for both, so the user's own files are never read or written.
"""

from __future__ import annotations

import base64
import hashlib
import os
import re
import shlex
import signal
import socket
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from wirekit.cli import main

WAIT = 10.0


def remote_pids(argv: list[str]) -> list[int]:
    """Pids of processes whose command line is exactly ``argv`` (our remote commands)."""
    want = "\0".join(argv).encode() + b"\0"
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/cmdline", "rb") as f:
                    if f.read() == want:
                        found.append(int(entry))
            except OSError:
                continue
    return found


def wait_for(predicate: Callable[[], object], what: str, timeout: float = WAIT) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not reached within {timeout:g} s")
        time.sleep(0.01)


class Served:
    """A ``wirekit serve exec`` subprocess; its stdout and stderr are collected."""

    def __init__(self, args: list[str], env: dict[str, str]) -> None:
        self.proc = subprocess.Popen(
            ["wirekit", "serve", "exec", *args],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
            start_new_session=True,  # no controlling terminal to ask on
        )
        self.out = bytearray()
        self.err = bytearray()
        for pipe, buf in ((self.proc.stdout, self.out), (self.proc.stderr, self.err)):
            threading.Thread(target=self._drain, args=(pipe, buf), daemon=True).start()
        match = self.expect(r"exec server on (\S+);")
        self.address = match.group(1)

    @staticmethod
    def _drain(pipe: Any, buf: bytearray) -> None:
        while chunk := pipe.read1(65536):
            buf += chunk

    def expect(self, pattern: str, *, err: bool = False) -> re.Match[str]:
        found: list[re.Match[str]] = []

        def seen() -> bool:
            text = bytes(self.err if err else self.out).decode(errors="replace")
            match = re.search(pattern, text, re.MULTILINE)
            if match:
                found.append(match)
            return bool(match) or self.proc.poll() is not None

        wait_for(seen, f"serve exec printing {pattern!r}")
        assert found, f"serve exec exited: {bytes(self.out)!r} {bytes(self.err)!r}"
        return found[0]

    @property
    def stdout(self) -> str:
        return bytes(self.out).decode()

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(WAIT)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()


def isolated_env(root: Path) -> dict[str, str]:
    """The environment of a user whose home and config dir are under ``root``."""
    home = root / "home"
    home.mkdir(exist_ok=True)
    env = dict(os.environ)
    env.update(HOME=str(home), WIREKIT_CONFIG_DIR=str(root / "config"))
    env.pop("WIREKIT_TOKEN_FILE", None)
    return env


@pytest.fixture(scope="module")
def user(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    return isolated_env(tmp_path_factory.mktemp("user"))


@pytest.fixture(scope="module")
def server(user: dict[str, str]) -> Iterator[Served]:
    served = Served(["--listen", "127.0.0.1:0"], user)
    yield served
    assert served.stop() == 0


@pytest.fixture
def as_user(user: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """In-process clients see the module's temp HOME and config dir."""
    for name in ("HOME", "WIREKIT_CONFIG_DIR"):
        monkeypatch.setenv(name, user[name])
    monkeypatch.delenv("WIREKIT_TOKEN_FILE", raising=False)
    return user


def wirekit_exec(
    env: dict[str, str], *args: str, input: bytes | None = None, timeout: float = WAIT
) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        ["wirekit", "exec", *args],
        input=input,
        stdin=None if input is not None else subprocess.DEVNULL,
        capture_output=True,
        env=env,
        timeout=timeout,
        start_new_session=True,  # no controlling terminal to ask on
    )


# -- the server command --------------------------------------------------------


def test_serve_exec_prints_endpoint_token_and_a_command_that_works(
    server: Served, user: dict[str, str]
) -> None:
    token = Path(user["WIREKIT_CONFIG_DIR"]) / "exec.token"
    assert f"token in {token}" in server.stdout
    assert stat.S_IMODE(token.stat().st_mode) == 0o600
    try_line = server.expect(r"^try: (wirekit exec .*)$").group(1)
    assert try_line == f"wirekit exec {server.address} -- uname -a"
    done = subprocess.run(
        shlex.split(try_line),
        capture_output=True,
        env=user,
        timeout=WAIT,
        check=False,
        start_new_session=True,  # no controlling terminal to ask on
    )
    local = subprocess.run(["uname", "-a"], capture_output=True, check=True)
    assert (done.returncode, done.stdout, done.stderr) == (0, local.stdout, b"")


#: Modules a client running one command has no use for: the server's, netcat's,
#: and (token login, pinned certificate) the cryptography package.
CLIENT_NEEDS_NONE_OF = ("cryptography", "wirekit.services.exec.server", "wirekit.services.netcat")


@pytest.mark.parametrize("tls", [False, True], ids=["tcp", "tls"])
def test_exec_client_loads_neither_server_code_nor_cryptography(tls: bool, tmp_path: Path) -> None:
    """Start-up time is most of a short command's cost: the client imports what
    it uses only (wirekit._lazy), checked in the process that ran the command."""
    env = isolated_env(tmp_path)
    served = Served(["--listen", "127.0.0.1:0", *(["--tls", "auto"] if tls else [])], env)
    script = (
        "import sys\n"
        "from wirekit.cli import main\n"
        "code = main(sys.argv[1:])\n"
        f"loaded = sorted(m for m in sys.modules if m.startswith({CLIENT_NEEDS_NONE_OF!r}))\n"
        "print(code, loaded, file=sys.stderr)\n"
    )
    pin = ["--accept-new", "--known-hosts", str(tmp_path / "known")] if tls else []
    try:
        done = subprocess.run(
            [sys.executable, "-c", script, "exec", served.address, *pin, "--", "echo", "ran"],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            env=env,
            timeout=WAIT,
            start_new_session=True,
        )
    finally:
        assert served.stop() == 0
    assert (done.stdout, done.stderr.decode().splitlines()[-1]) == (b"ran\n", "0 []")


def test_serve_exec_refuses_a_public_address_without_tls(tmp_path: Path) -> None:
    env = isolated_env(tmp_path)
    done = subprocess.run(
        ["wirekit", "serve", "exec", "--listen", "0.0.0.0:0"],
        capture_output=True,
        env=env,
        timeout=WAIT,
        stdin=subprocess.DEVNULL,
        start_new_session=True,  # no controlling terminal to ask on
    )
    assert done.returncode == 3
    lines = done.stderr.decode().splitlines()
    assert len(lines) == 1 and "without TLS" in lines[0] and "--insecure" in lines[0]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--listen", "udp://127.0.0.1:0"], "stream"),
        (["--tls-cert", "c.pem"], "--tls-key"),
        (["--tls", "auto", "--tls-cert", "c.pem", "--tls-key", "k.pem"], "--tls auto"),
    ],
)
def test_serve_exec_usage_errors(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str], as_user: Any
) -> None:
    assert main(["serve", "exec", *argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith("wirekit: ") and message in err


@pytest.mark.parametrize("value", ["0", "-1", "x"])
def test_serve_exec_max_sessions_below_one_is_a_usage_error(
    value: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["serve", "exec", "--max-sessions", value])
    assert exc.value.code == 2
    assert "--max-sessions" in capsys.readouterr().err


# -- exit status ---------------------------------------------------------------


@pytest.mark.parametrize("code", [0, 3, 255])
def test_remote_exit_code_is_ours(
    code: int, server: Served, as_user: Any, capfd: pytest.CaptureFixture[str]
) -> None:
    assert (
        main(["exec", server.address, "-n", "--", f"echo out; echo err >&2; exit {code}"]) == code
    )
    out, err = capfd.readouterr()
    assert (out, err) == ("out\n", "err\n")


@pytest.mark.parametrize(("name", "number"), [("TERM", 15), ("KILL", 9), ("USR1", 10)])
def test_death_by_signal_is_128_plus_n_and_named(
    name: str, number: int, server: Served, as_user: Any, capfd: pytest.CaptureFixture[str]
) -> None:
    assert number == int(signal.Signals[f"SIG{name}"])
    code = main(["exec", server.address, "-n", "--", f"kill -{name} $$"])
    assert code == 128 + number
    assert capfd.readouterr().err == f"wirekit: remote command killed by SIG{name}\n"


def test_missing_program_is_127_with_the_reason(
    server: Served, as_user: Any, capfd: pytest.CaptureFixture[str]
) -> None:
    code = main(["exec", server.address, "-n", "--", "/nonexistent/prog", "arg"])
    assert code == 127
    err = capfd.readouterr().err
    assert err.startswith("wirekit: server refused the command: cannot run /nonexistent/prog")
    assert err.count("\n") == 1


# -- bytes, arguments, environment ----------------------------------------------


def test_output_that_is_not_utf8_arrives_byte_for_byte(
    server: Served, as_user: Any, capfdbinary: pytest.CaptureFixture[bytes], tmp_path: Path
) -> None:
    blob = bytes(range(256)) * 4096 + b"\xff\xfe\x00\x80 no newline at the end"
    path = tmp_path / "blob"
    path.write_bytes(blob)
    quoted = shlex.quote(str(path))
    assert main(["exec", server.address, "-n", "--", f"cat {quoted}; cat {quoted} >&2"]) == 0
    out, err = capfdbinary.readouterr()
    assert out == blob
    assert err == blob


def test_several_words_are_argv_exactly_one_word_is_a_shell_line(
    server: Served, as_user: Any, capfd: pytest.CaptureFixture[str]
) -> None:
    argv = ["printf", "[%s]", "a b", "$HOME", ";", "*", ""]
    assert main(["exec", server.address, "-n", "--", *argv]) == 0
    assert capfd.readouterr().out == "[a b][$HOME][;][*][]"
    assert main(["exec", server.address, "-n", "--", "echo $((6 * 7)) | tr 4 X"]) == 0
    assert capfd.readouterr().out == "X2\n"


def test_env_and_cwd(
    server: Served, as_user: Any, capfd: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    code = main(
        [
            "exec",
            server.address,
            "-n",
            "--env",
            "A=1",
            "-e",
            "B=x y=z",
            "--cwd",
            str(tmp_path),
            "--",
            'printf "%s|%s|%s\\n" "$A" "$B" "$(pwd -P)"',
        ]
    )
    assert code == 0
    assert capfd.readouterr().out == f"1|x y=z|{tmp_path.resolve()}\n"


def test_cwd_that_does_not_exist_is_refused(
    server: Served, as_user: Any, capfd: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    code = main(["exec", server.address, "-n", "--cwd", str(tmp_path / "nope"), "--", "pwd"])
    assert code == 1
    err = capfd.readouterr().err
    assert "nope" in err and err.count("\n") == 1


def test_timeout_ends_the_command_with_124(
    server: Served, as_user: Any, capfd: pytest.CaptureFixture[str]
) -> None:
    started = time.monotonic()
    code = main(["exec", server.address, "-n", "--timeout", "0.3", "--", "sleep", "30.25"])
    assert code == 124
    assert time.monotonic() - started < 5
    assert capfd.readouterr().err == "wirekit: remote command timed out\n"
    wait_for(lambda: not remote_pids(["sleep", "30.25"]), "the timed-out sleep gone")


def test_exec_usage_errors_exit_2(as_user: Any, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["exec", "127.0.0.1:1", "--env", "NOEQUALS", "--", "true"])
    assert exc.value.code == 2
    assert main(["exec", "tcp://[::1", "--", "true"]) == 2
    err = capsys.readouterr().err
    assert err.splitlines()[-1].startswith("wirekit: ")


# -- failures: one line, exit 1 ---------------------------------------------------


def test_connection_refused_is_one_line_and_exit_1(
    as_user: Any, capfd: pytest.CaptureFixture[str]
) -> None:
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    assert main(["exec", f"127.0.0.1:{port}", "-n", "--", "true"]) == 1
    err = capfd.readouterr().err
    assert err.startswith("wirekit: ") and err.count("\n") == 1 and "refused" in err


def test_wrong_token_is_one_line_and_exit_1(
    server: Served, as_user: Any, capfd: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    wrong = tmp_path / "wrong.token"
    wrong.write_text("0" * 64 + "\n")
    wrong.chmod(0o600)
    started = time.monotonic()
    assert main(["exec", server.address, "-n", "--token-file", str(wrong), "--", "true"]) == 1
    err = capfd.readouterr().err
    assert err.startswith("wirekit: ") and err.count("\n") == 1
    assert "authentication failed" in err
    assert time.monotonic() - started < WAIT


# -- stdin ----------------------------------------------------------------------


def test_stdin_is_streamed_and_closed(server: Served, user: dict[str, str]) -> None:
    data = os.urandom(3 * 1024 * 1024 + 17)
    done = wirekit_exec(user, server.address, "--", "sha256sum", input=data)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split()[0].decode() == hashlib.sha256(data).hexdigest()


def test_no_stdin_flag_sends_end_of_file_at_once(server: Served, user: dict[str, str]) -> None:
    # Our stdin stays open and silent: without -n, cat would wait for it forever.
    proc = subprocess.Popen(
        ["wirekit", "exec", server.address, "-n", "--", "cat"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=user,
        start_new_session=True,  # no controlling terminal to ask on
    )
    assert proc.stdin is not None and proc.stdout is not None
    try:
        assert proc.wait(WAIT) == 0
        assert proc.stdout.read() == b""
    finally:
        proc.kill()
        proc.wait()
        proc.stdin.close()


def test_tar_pipe_copies_a_tree(server: Served, user: dict[str, str], tmp_path: Path) -> None:
    src, dst = tmp_path / "src", tmp_path / "dst"
    (src / "sub" / "deeper").mkdir(parents=True)
    dst.mkdir()
    files = {
        "a.bin": os.urandom(2 * 1024 * 1024),
        "sub/b.txt": b"hello\n",
        "sub/deeper/c": bytes(range(256)) * 100,
        "empty": b"",
    }
    for name, content in files.items():
        (src / name).write_bytes(content)
    (src / "sub" / "deeper" / "c").chmod(0o751)
    pipeline = (
        f"tar c -C {shlex.quote(str(src))} . | "
        f"wirekit exec {server.address} -- tar x -C {shlex.quote(str(dst))}"
    )
    done = subprocess.run(
        pipeline,
        shell=True,
        env=user,
        capture_output=True,
        timeout=WAIT,
        start_new_session=True,
    )
    assert done.returncode == 0, done.stderr
    for name, content in files.items():
        assert (dst / name).read_bytes() == content
    assert stat.S_IMODE((dst / "sub" / "deeper" / "c").stat().st_mode) == 0o751


def test_closed_stdout_pipe_ends_the_command(server: Served, user: dict[str, str]) -> None:
    script = f"set -o pipefail; wirekit exec {server.address} -n -- yes wkpipe | head -c 10"
    done = subprocess.run(
        ["bash", "-c", script],
        env=user,
        capture_output=True,
        timeout=WAIT,
        check=False,
        start_new_session=True,  # no controlling terminal to ask on
    )
    assert done.stdout == b"wkpipe\nwkp"
    assert done.returncode == 141  # as if SIGPIPE had killed the client
    assert done.stderr == b""
    wait_for(lambda: not remote_pids(["yes", "wkpipe"]), "the remote yes gone")


# -- other credentials ----------------------------------------------------------


def test_tls_with_pinning_and_a_key(tmp_path: Path) -> None:
    env = isolated_env(tmp_path)
    key = tmp_path / "id_test"
    made = subprocess.run(
        ["wirekit", "keygen", "-f", str(key)],
        env=env,
        capture_output=True,
        timeout=WAIT,
        start_new_session=True,  # no controlling terminal to ask on
    )
    assert made.returncode == 0, made.stderr
    keys = tmp_path / "authorized_keys"
    keys.write_bytes((tmp_path / "id_test.pub").read_bytes())
    served = Served(
        ["--listen", "127.0.0.1:0", "--tls", "auto", "--authorized-keys", str(keys)], env
    )
    try:
        assert served.address.startswith("tls://127.0.0.1:")
        fingerprint = served.expect(r"^TLS fingerprint (SHA256:\S+)").group(1)
        assert "token in" not in served.stdout  # keys were given: no automatic token
        known = tmp_path / "known_hosts"
        args = [served.address, "-i", str(key), "--known-hosts", str(known), "-n"]
        # Not known yet, no terminal to ask on: refused, and nothing pinned.
        refused = wirekit_exec(env, *args, "--", "true")
        assert refused.returncode == 1
        assert refused.stderr.count(b"\n") == 1 and b"--accept-new" in refused.stderr
        assert not known.exists() or fingerprint not in known.read_text()
        first = wirekit_exec(env, *args, "--accept-new", "--", "echo", "first")
        assert (first.returncode, first.stdout) == (0, b"first\n"), first.stderr
        assert fingerprint in known.read_text()
        again = wirekit_exec(env, *args, "--", "echo", "again")
        assert (again.returncode, again.stdout) == (0, b"again\n"), again.stderr
        # The address without tls://: one line saying which address to use.
        plain = served.address.removeprefix("tls://")
        untold = wirekit_exec(env, plain, *args[1:], "--", "echo", "no")
        assert (untold.returncode, untold.stdout) == (1, b"")
        told = f"{plain} closed the connection before its hello (if it is a TLS server, "
        assert untold.stderr == f"wirekit: {told}connect to tls://{plain})\n".encode()
        # A pin that no longer matches: refused, even with --accept-new.
        other = "SHA256:" + base64.b64encode(bytes(32)).decode().rstrip("=")
        known.write_text(known.read_text().replace(fingerprint, other))
        changed = wirekit_exec(env, *args, "--accept-new", "--", "echo", "no")
        assert (changed.returncode, changed.stdout) == (1, b"")
        assert changed.stderr.count(b"\n") == 1
        assert b"has changed" in changed.stderr and b"known-hosts --forget" in changed.stderr
    finally:
        assert served.stop() == 0
    assert "key SHA256:" in bytes(served.err).decode()  # the server logs who connected


def test_python_m_wirekit_exec_smoke(server: Served, user: dict[str, str]) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "wirekit", "exec", server.address, "-n", "--", "echo", "ok"],
        capture_output=True,
        env=user,
        timeout=WAIT,
        start_new_session=True,  # no controlling terminal to ask on
    )
    assert (done.returncode, done.stdout, done.stderr) == (0, b"ok\n", b"")


# -- a command queued by --max-sessions ------------------------------------------


def test_a_queued_command_is_announced_on_a_terminal_only(tmp_path: Path) -> None:
    """With the server's one session taken, the next command waits: a user at a
    terminal is told why; a stderr that is a pipe gets the command's bytes only."""
    env = isolated_env(tmp_path)
    served = Served(["--listen", "127.0.0.1:0", "--max-sessions", "1"], env)
    holder = ["sleep", "3.4375"]
    busy = subprocess.Popen(
        ["wirekit", "exec", served.address, "--", *holder],
        stdin=subprocess.DEVNULL,
        env=env,
        start_new_session=True,
    )
    master, slave = os.openpty()
    try:
        wait_for(lambda: remote_pids(holder), "the command holding the only session")
        at_terminal = subprocess.Popen(
            ["wirekit", "exec", served.address, "--", "echo", "ran"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=slave,
            env=env,
            start_new_session=True,
        )
        piped = wirekit_exec(env, served.address, "--", "echo", "also ran", timeout=3 * WAIT)
        out, _ = at_terminal.communicate(timeout=3 * WAIT)
        assert (at_terminal.returncode, out) == (0, b"ran\n")
        assert (piped.returncode, piped.stdout, piped.stderr) == (0, b"also ran\n", b"")
        os.set_blocking(master, False)
        shown = os.read(master, 65536).decode()
        assert re.fullmatch(
            r"wirekit: queued: the server runs its maximum of commands \(--max-sessions\); "
            r"[01] ahead of this one\r+\n",
            shown,
        ), shown
        assert busy.wait(WAIT) == 0
    finally:
        os.close(master)
        os.close(slave)
        busy.kill()
        busy.wait()
        assert served.stop() == 0


@pytest.mark.parametrize("window", ["0", "0.002", "1"])
def test_busy_poll_from_off_to_its_limit(
    window: str, server: Served, as_user: Any, capfd: pytest.CaptureFixture[str]
) -> None:
    argv = ["exec", server.address, "--busy-poll", window, "-n", "--", "echo polled"]
    assert main(argv) == 0
    assert capfd.readouterr().out == "polled\n"


@pytest.mark.parametrize(("window", "why"), [("1.5", "at most 1 seconds"), ("-1", "negative")])
def test_busy_poll_past_its_limits_is_a_usage_error(
    window: str, why: str, server: Served, as_user: Any, capfd: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["exec", server.address, f"--busy-poll={window}", "--", "true"])
    assert exc.value.code == 2
    assert why in capfd.readouterr().err
