"""Section (f)'s table rows and notes."""

from __future__ import annotations

from .common import Config, Figure, Row, Target, compare, median
from .exec_runs import CONCURRENT_COMMAND, QUEUE_SESSIONS, Env, MiB


def sequential_rows(f: dict[str, Figure]) -> list[Row]:
    target = Target("<=", 1.0, absolute=True, unit=" ms")
    head = "100 sequential `true`, one connection"
    rows = [
        compare(f"{head}: Session.run vs {f[ref].tool}", f["wk-shell"], f[ref], target, True)
        for ref in ("asyncssh", "ssh-cm", "ssh")
    ]
    rows += [
        compare(
            f"{head}: {f[wk].tool.removeprefix('wirekit ')} vs asyncssh",
            f[wk],
            f["asyncssh"],
            lower_is_better=True,
        )
        for wk in ("wk-argv", "wk-async", "wk-tls")
    ]
    rows.append(
        compare(
            "one `true` per new connection: wirekit exec CLI vs ssh",
            f["wk-cli"],
            f["ssh"],
            lower_is_better=True,
        )
    )
    rows.append(
        compare(
            f"{head}: Session.run vs the program started locally",
            f["wk-shell"],
            f["true"],
            lower_is_better=True,
        )
    )
    return rows


def concurrent_rows(ok: dict[str, Figure], wall: dict[str, Figure]) -> list[Row]:
    n = 100
    target = Target(">=", n, absolute=True, unit=f" of {n} ok")
    head = f"{n} concurrent commands, one connection"
    return (
        [
            compare(f"{head}, successes: wirekit vs {ok[ref].tool}", ok["c-wk"], ok[ref], target)
            for ref in ("c-ssh-cm", "c-asyncssh")
        ]
        + [
            compare(
                f"{head}, successes: wirekit --max-sessions {QUEUE_SESSIONS} (queued) vs "
                "ssh via ControlMaster, MaxSessions 10",
                ok["c-wk-queue"],
                ok["c-ssh-cm"],
            ),
        ]
        + [
            compare(
                f"{head}, wall time: wirekit vs {wall[ref].tool}",
                wall["c-wk"],
                wall[ref],
                lower_is_better=True,
            )
            for ref in ("c-ssh-cm100", "c-asyncssh100")
        ]
    )


def output_rows(f: dict[str, Figure]) -> list[Row]:
    fast = Target(">=", 2000, absolute=True, unit=" MB/s")
    head = f["o-ceiling"].case.split(" of ")[0] + " of output"
    return [
        compare(
            f"{head}: wirekit exec CLI, no TLS, vs the generator alone",
            f["o-wk-cli"],
            f["o-ceiling"],
            fast,
        ),
        compare(
            f"{head}: wirekit exec CLI, TLS, vs ssh -c aes128-gcm",
            f["o-wk-tls-cli"],
            f["o-ssh-gcm"],
            Target(">=", 1.0),
        ),
        compare(
            f"{head}: wirekit exec CLI, TLS, vs ssh -c chacha20-poly1305",
            f["o-wk-tls-cli"],
            f["o-ssh-chacha"],
        ),
        compare(
            f"{head}: wirekit exec CLI, no TLS, vs ssh -c aes128-gcm", f["o-wk-cli"], f["o-ssh-gcm"]
        ),
        compare(
            f"{head}: wirekit API, no TLS, vs the generator alone",
            f["o-wk-api"],
            f["o-ceiling"],
            fast,
        ),
        compare(
            f"{head}: wirekit API, TLS, vs asyncssh aes128-gcm", f["o-wk-tls-api"], f["o-asyncssh"]
        ),
    ]


def _versions() -> str:
    import importlib.metadata
    import subprocess

    try:
        ssh = subprocess.run(["ssh", "-V"], capture_output=True, text=True, timeout=10)
        openssh = (ssh.stderr or ssh.stdout).strip().split(",")[0]
    except (OSError, subprocess.TimeoutExpired):
        openssh = "not installed"
    try:
        asyncssh = importlib.metadata.version("asyncssh")
    except importlib.metadata.PackageNotFoundError:
        asyncssh = "not installed"
    return f"OpenSSH: {openssh}; asyncssh {asyncssh}."


def notes(
    cfg: Config,
    env: Env,
    n: int,
    n_plain: int,
    size: int,
    seq: dict[str, Figure],
    conc: dict[str, Figure],
    out_figs: dict[str, Figure],
) -> list[str]:
    out = [
        f"Median of {cfg.repeats} run(s), tools taken round-robin. Servers (sshd, "
        "`wirekit serve exec`) and the commands they run are pinned to the server CPU; "
        "clients, the ssh ControlMaster and every client worker to the client CPU. " + _versions(),
        "OpenSSH: a private `sshd -D -e -f CONFIG` on a free 127.0.0.1 port with its own "
        "host key, client key, authorized_keys and known_hosts in a temporary directory "
        "(`UsePAM no`, `StrictModes no`, `PermitUserRC no`); clients use `-F /dev/null` "
        "and that key and known_hosts, nothing from ~/.ssh. sshd runs commands with the "
        "user's login shell (here bash, as `bash -c CMD`), which sources ~/.bashrc when "
        "started by sshd: `SetEnv HOME=<empty temp dir>` keeps rc files out of the "
        "figures. wirekit runs command lines with /bin/sh (its default --shell), except "
        "that a plain one such as `true` is exec'd directly, as the shell itself would "
        "run it. The `local ...` rows start the program (or the shell) locally with "
        "`subprocess.run` on the server CPU, no network: the floor every exec server "
        "pays per command.",
        f"(1) {n} commands one after another after a warm-up, on one connection per "
        "run; figure = wall time / commands. Plain ssh and the `wirekit exec` CLI open a "
        f"new connection (and process) per command, {n_plain} commands per run. "
        "ControlMaster: one `ssh -M -N` master; each command is `ssh -S PATH ... CMD` "
        "(clients point at port 1, so a client that cannot use the master fails "
        "instead of opening its own connection).",
        f"(2) {n} x `{CONCURRENT_COMMAND}` started at once on one connection: "
        "wirekit and asyncssh with asyncio.gather over one connection, OpenSSH as "
        f"{n} `ssh -S` clients of one ControlMaster; success = exit 0 and stdout "
        f"'ok'. wirekit --max-sessions {QUEUE_SESSIONS}: excess commands queue, so all "
        "succeed in about (n / 10) x 0.2 s. sshd refuses sessions past MaxSessions "
        "(default 10; more than 10 of the `ssh -S` clients can succeed because starting "
        "100 processes takes a while and the first sessions end, freeing slots); the "
        "errors clients reported: " + _refusals(conc),
        f"(3) {size // MiB} MiB from `head -c {size}` reading the zero device on the "
        "server, read and dropped "
        "by the client. CLI rows: `wirekit exec ADDR -n ... -- CMD` and `ssh -c CIPHER "
        "... CMD` with stdout on /dev/null, a new connection and process per run, timed "
        "from start to exit (so start-up, key exchange and authentication are inside); "
        "checked by the bytes the client wrote (/proc/PID/io wchar). API rows: over an "
        "already open connection, wirekit `AsyncSession.start()` reading stdout "
        "chunks, asyncssh `create_session` with a session whose data_received only "
        "counts bytes; checked by the count and exit status. Ceiling: the generator "
        "(server CPU) into a pipe read 1 MiB at a time by a process on the client CPU. "
        "wirekit TLS is TLS 1.3 with OpenSSL's default cipher choice (a self-signed "
        "`--tls auto` certificate, pinned with --accept-new).",
    ]
    out += _cpu_notes(seq, out_figs)
    out.append(_cipher_note(out_figs))
    if env.wk_fallback:
        out.append(
            "`wirekit serve exec` could not start a server in this run "
            f"({env.wk_fallback}); the wirekit servers were started from Python with "
            "`wirekit.exec.start_exec` and the same options instead."
        )
    for why, what in (
        (env.wk_note, "wirekit"),
        (env.ssh_note, "OpenSSH"),
        (env.asyncssh_note, "asyncssh"),
    ):
        if why:
            out.append(f"{what} rows skipped: {why}.")
    return out


def _refusals(figs: dict[str, Figure]) -> str:
    """The first error message each reference client saw, as it printed it."""
    seen = []
    for slug in ("c-ssh-cm", "c-asyncssh", "c-wk", "c-wk-queue"):
        errors = [e for run in figs[slug].extra.get("errors", []) for e in run]
        if errors:
            seen.append(f"{figs[slug].tool}: '{' / '.join(errors[0].splitlines())}'")
    return "; ".join(seen) + "." if seen else "no client reported an error."


def _cpu_parts(figs: dict[str, Figure]) -> str:
    """Median CPU per command or transfer of each figure that recorded it."""
    parts = []
    for fig in figs.values():
        fields = []
        for key, what in (
            ("client_cpu_ms", "client"),
            ("server_cpu_ms", "server"),
            ("commands_cpu_ms", "the commands"),
        ):
            value = median(fig.extra.get(key, []))
            if value is not None:
                fields.append(f"{what} {value:.2f} ms")
        if fields:
            parts.append(f"{fig.tool}: " + ", ".join(fields))
    return "; ".join(parts) + "."


CPU_HOW = (
    "client: the client process plus the processes it started and waited for; server "
    "and commands: the wirekit server's own CPU and its reaped children's, from "
    "/proc/PID/stat in 10 ms ticks"
)


def _cpu_notes(seq: dict[str, Figure], out: dict[str, Figure]) -> list[str]:
    return [
        f"(1) CPU time per command, median over runs ({CPU_HOW}; the local rows count "
        "the spawned process as the client's): " + _cpu_parts(seq),
        f"(3) CPU time per transfer, API rows, median over runs ({CPU_HOW}; the "
        "commands' CPU is the generator's): " + _cpu_parts(out),
    ]


def _cipher_note(out: dict[str, Figure]) -> str:
    """The ciphers the API rows negotiated, as the clients reported them."""
    seen = []
    for fig in out.values():
        ciphers = sorted(set(fig.extra.get("cipher", [])) - {""})
        if ciphers:
            seen.append(f"{fig.tool}: {', '.join(ciphers)}")
    return "(3) Ciphers in use (API rows, as the client reported): " + (
        "; ".join(seen) + "." if seen else "none reported."
    )
