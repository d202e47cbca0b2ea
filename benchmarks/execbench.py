"""(f) Remote exec: wirekit exec against OpenSSH and asyncssh.

Three figures, every tool in the same run (round-robin, median of the runs):

1. 100 sequential ``true`` over one connection: wirekit's ``Session.run`` (shell
   and argv mode), asyncssh's ``conn.run``, ``ssh`` through a ControlMaster, and
   plain ``ssh`` (a new connection per command, fewer repetitions, next to the
   ``wirekit exec`` command-line client doing the same); for scale, starting the
   shell locally with no network at all.
2. 100 concurrent ``sleep 0.2; echo ok`` on one connection: successes out of 100
   and wall time. sshd allows 10 sessions per connection by default
   (MaxSessions); extra rows repeat the references against an sshd allowing 100.
3. 1 GiB (256 MiB with --quick) of command output read and dropped by the client:
   the ``wirekit exec`` and ``ssh`` command-line clients (stdout on /dev/null, a
   new connection each, so connection set-up is inside the figure) and the Python
   APIs over an open connection; the generator alone into a pipe is the ceiling.

OpenSSH runs as a private sshd started here (see :mod:`.exec_ssh`); the wirekit
server is ``wirekit serve exec`` (see :mod:`.exec_wirekit`). Servers, and the
commands they start, run on the server CPU; clients on the client CPU.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Iterator
from typing import Any

from . import exec_ssh, exec_wirekit
from .common import (
    BenchError,
    Config,
    Figure,
    Placement,
    Runs,
    SectionResult,
    split_placement,
)
from .exec_report import concurrent_rows, notes, output_rows, sequential_rows
from .exec_runs import (
    CONCURRENT_COMMAND,
    EXPECT,
    QUEUE_SESSIONS,
    SEQ_COMMAND,
    Env,
    Metrics,
    MiB,
    Variant,
    cli_output_variant,
    concurrent_check,
    figure,
    generator,
    measure,
    output_check,
    seq_check,
    worker_variant,
)
from .exec_ssh import AES_GCM, CHACHA, ControlMaster, PrivateSshd
from .exec_wirekit import ExecServer

KEY = "f"
TITLE = "(f) Remote exec vs OpenSSH and asyncssh"


# -- the servers ---------------------------------------------------------------------------------


@contextlib.contextmanager
def servers(placement: Placement) -> Iterator[Env]:
    env = Env(placement)
    srv, cli = placement.server_cpu, placement.client_cpu
    with contextlib.ExitStack() as stack:
        env.ssh_note = exec_ssh.missing() or ""
        env.asyncssh_note = exec_ssh.asyncssh_missing() or ""
        if not env.ssh_note:
            try:
                env.ssh = stack.enter_context(PrivateSshd("f-sshd", srv))
                env.ssh100 = stack.enter_context(PrivateSshd("f-sshd100", srv, 100))
                env.master = stack.enter_context(ControlMaster("f-cm", env.ssh, cli))
                env.master100 = stack.enter_context(ControlMaster("f-cm100", env.ssh100, cli))
            except (BenchError, OSError) as exc:
                env.ssh_note = f"private sshd did not start: {exc}"
        env.wk_note = exec_wirekit.missing() or ""
        if not env.wk_note:
            try:
                tmp = stack.enter_context(exec_wirekit.config_dir())
                started = [
                    ExecServer("f-wk", srv, tmp, tls=False),
                    ExecServer("f-wk-tls", srv, tmp, tls=True),
                    ExecServer("f-wk-queue", srv, tmp, tls=False, max_sessions=QUEUE_SESSIONS),
                ]
                env.wk, env.wk_tls, env.wk_queue = (stack.enter_context(s) for s in started)
                env.wk_fallback = next((s.cli_error for s in started if s.cli_error), "")
            except (BenchError, OSError) as exc:
                env.wk_note = f"wirekit exec server did not start: {exc}"
        yield env


def _d(client: Any) -> dict[str, Any] | None:
    return dataclasses.asdict(client) if client is not None else None


def _why(client: Any, note: str) -> str:
    return note or ("" if client is not None else "server not started")


# -- figure 1: sequential --------------------------------------------------------------------------


def sequential_variants(env: Env, n: int, n_plain: int, warmup: int) -> list[Variant]:
    cli, srv = env.placement.client_cpu, env.placement.server_cpu
    case, case_plain = f"{n} x `{SEQ_COMMAND}`", f"{n_plain} x `{SEQ_COMMAND}`"
    common: dict[str, Any] = {"command": SEQ_COMMAND, "warmup": warmup}
    wk_seq = "exec_wirekit.wirekit_seq"
    asy_why = _why(env.ssh, env.ssh_note) or env.asyncssh_note
    wk_cli = env.wk.cli() if env.wk else []
    return [
        worker_variant(
            "wk-shell",
            "wirekit Session.run, shell",
            case,
            _why(env.wk, env.wk_note),
            cli,
            wk_seq,
            seq_check,
            client=_d(env.wk),
            n=n,
            argv=False,
            watch=env.wk.pid if env.wk else None,
            **common,
        ),
        worker_variant(
            "wk-argv",
            "wirekit Session.run, argv",
            case,
            _why(env.wk, env.wk_note),
            cli,
            wk_seq,
            seq_check,
            client=_d(env.wk),
            n=n,
            argv=True,
            watch=env.wk.pid if env.wk else None,
            **common,
        ),
        worker_variant(
            "wk-tls",
            "wirekit Session.run, shell, TLS",
            case,
            _why(env.wk_tls, env.wk_note),
            cli,
            wk_seq,
            seq_check,
            client=_d(env.wk_tls),
            n=n,
            argv=False,
            watch=env.wk_tls.pid if env.wk_tls else None,
            **common,
        ),
        worker_variant(
            "wk-async",
            "wirekit AsyncSession.run, shell",
            case,
            _why(env.wk, env.wk_note),
            cli,
            "exec_wirekit.wirekit_seq_async",
            seq_check,
            client=_d(env.wk),
            n=n,
            watch=env.wk.pid if env.wk else None,
            **common,
        ),
        worker_variant(
            "asyncssh",
            "asyncssh conn.run",
            case,
            asy_why,
            cli,
            "exec_ssh.asyncssh_seq",
            seq_check,
            client=_d(env.ssh),
            n=n,
            **common,
        ),
        worker_variant(
            "ssh-cm",
            "ssh via ControlMaster",
            case,
            _why(env.master, env.ssh_note),
            cli,
            "exec_ssh.cli_seq",
            seq_check,
            argv=env.ssh.argv(control=env.master) if env.ssh and env.master else [],
            n=n,
            **common,
        ),
        worker_variant(
            "wk-cli",
            "wirekit exec CLI, new connection each",
            case_plain,
            _why(env.wk, env.wk_note),
            cli,
            "exec_ssh.cli_seq",
            seq_check,
            argv=wk_cli,
            n=n_plain,
            command=SEQ_COMMAND,
            warmup=1,
        ),
        worker_variant(
            "ssh",
            "ssh, new connection each",
            case_plain,
            _why(env.ssh, env.ssh_note),
            cli,
            "exec_ssh.cli_seq",
            seq_check,
            argv=env.ssh.argv() if env.ssh else [],
            n=n_plain,
            command=SEQ_COMMAND,
            warmup=1,
        ),
        worker_variant(
            "true",
            "local true (the program), no network",
            case,
            "",
            srv,
            "exec_wirekit.spawn_floor",
            seq_check,
            shell=[],
            n=n,
            home="/nonexistent",
            where=f"CPU {srv} only (the server CPU)",
            **common,
        ),
        worker_variant(
            "sh",
            "local /bin/sh -c true, no network",
            case,
            "",
            srv,
            "exec_wirekit.spawn_floor",
            seq_check,
            shell=["/bin/sh", "-c"],
            n=n,
            home="/nonexistent",
            where=f"CPU {srv} only (the server CPU)",
            **common,
        ),
        worker_variant(
            "bash",
            "local bash -c true, no network",
            case,
            "",
            srv,
            "exec_wirekit.spawn_floor",
            seq_check,
            shell=["bash", "-c"],
            n=n,
            home="/nonexistent",
            where=f"CPU {srv} only (the server CPU)",
            **common,
        ),
    ]


# -- figure 2: concurrent -----------------------------------------------------------------------


def concurrent_variants(env: Env, n: int) -> list[Variant]:
    cli = env.placement.client_cpu
    case = f"{n} x `{CONCURRENT_COMMAND}` at once"
    common: dict[str, Any] = {"command": CONCURRENT_COMMAND, "n": n, "expect": EXPECT}
    wk_conc = "exec_wirekit.wirekit_concurrent"
    asy = "exec_ssh.asyncssh_concurrent"
    cm = "exec_ssh.ssh_concurrent"
    asy_why = env.ssh_note or env.asyncssh_note
    return [
        worker_variant(
            "c-wk",
            "wirekit AsyncSession.run, default --max-sessions",
            case,
            _why(env.wk, env.wk_note),
            cli,
            wk_conc,
            concurrent_check,
            client=_d(env.wk),
            **common,
        ),
        worker_variant(
            "c-wk-queue",
            f"wirekit AsyncSession.run, --max-sessions {QUEUE_SESSIONS}",
            case,
            _why(env.wk_queue, env.wk_note),
            cli,
            wk_conc,
            concurrent_check,
            client=_d(env.wk_queue),
            **common,
        ),
        worker_variant(
            "c-asyncssh",
            "asyncssh conn.run, sshd MaxSessions 10 (default)",
            case,
            _why(env.ssh, asy_why),
            cli,
            asy,
            concurrent_check,
            client=_d(env.ssh),
            **common,
        ),
        worker_variant(
            "c-ssh-cm",
            "ssh via ControlMaster, sshd MaxSessions 10 (default)",
            case,
            _why(env.master, env.ssh_note),
            cli,
            cm,
            concurrent_check,
            argv=env.ssh.argv(control=env.master) if env.ssh and env.master else [],
            **common,
        ),
        worker_variant(
            "c-asyncssh100",
            "asyncssh conn.run, sshd MaxSessions 100",
            case,
            _why(env.ssh100, asy_why),
            cli,
            asy,
            concurrent_check,
            client=_d(env.ssh100),
            **common,
        ),
        worker_variant(
            "c-ssh-cm100",
            "ssh via ControlMaster, sshd MaxSessions 100",
            case,
            _why(env.master100, env.ssh_note),
            cli,
            cm,
            concurrent_check,
            argv=env.ssh100.argv(control=env.master100) if env.ssh100 and env.master100 else [],
            **common,
        ),
    ]


# -- figure 3: output ----------------------------------------------------------------------------


def output_variants(env: Env, size: int) -> list[Variant]:
    cli, srv = env.placement.client_cpu, env.placement.server_cpu
    command = generator(size)
    case = f"{size // MiB} MiB of `head -c` output"
    check = output_check(size)
    ssh, wk, wk_tls = env.ssh, env.wk, env.wk_tls
    asy_why = _why(ssh, env.ssh_note) or env.asyncssh_note
    api = "exec_wirekit.wirekit_output"
    return [
        worker_variant(
            "o-ceiling",
            "generator into a pipe (ceiling)",
            case,
            "",
            cli,
            "exec_wirekit.generator_ceiling",
            check,
            command=command,
            size=size,
            gen_cpu=srv,
        ),
        cli_output_variant(
            "o-wk-cli",
            "wirekit exec CLI",
            case,
            _why(wk, env.wk_note),
            cli,
            wk.cli(command) if wk else [],
            size,
        ),
        cli_output_variant(
            "o-wk-tls-cli",
            "wirekit exec CLI, TLS",
            case,
            _why(wk_tls, env.wk_note),
            cli,
            wk_tls.cli(command) if wk_tls else [],
            size,
        ),
        cli_output_variant(
            "o-ssh-gcm",
            f"ssh -c {AES_GCM}",
            case,
            _why(ssh, env.ssh_note),
            cli,
            [*ssh.argv("-c", AES_GCM), command] if ssh else [],
            size,
        ),
        cli_output_variant(
            "o-ssh-chacha",
            f"ssh -c {CHACHA}",
            case,
            _why(ssh, env.ssh_note),
            cli,
            [*ssh.argv("-c", CHACHA), command] if ssh else [],
            size,
        ),
        worker_variant(
            "o-wk-api",
            "wirekit AsyncSession.start, open connection",
            case,
            _why(wk, env.wk_note),
            cli,
            api,
            check,
            client=_d(wk),
            command=command,
            size=size,
            watch=wk.pid if wk else None,
        ),
        worker_variant(
            "o-wk-tls-api",
            "wirekit AsyncSession.start, TLS, open connection",
            case,
            _why(wk_tls, env.wk_note),
            cli,
            api,
            check,
            client=_d(wk_tls),
            command=command,
            size=size,
            watch=wk_tls.pid if wk_tls else None,
        ),
        worker_variant(
            "o-asyncssh",
            f"asyncssh session, {AES_GCM}, open connection",
            case,
            asy_why,
            cli,
            "exec_ssh.asyncssh_output",
            check,
            client=_d(ssh),
            command=command,
            size=size,
            cipher=AES_GCM,
        ),
    ]


# -- the section ----------------------------------------------------------------------------------


def _figures(
    variants: list[Variant], runs: dict[str, Runs[Metrics]], metric: str, unit: str, env: Env
) -> dict[str, Figure]:
    return {v.slug: figure(v, runs[v.slug], metric, unit, env.placement) for v in variants}


def run(cfg: Config) -> SectionResult:
    result = SectionResult(KEY, TITLE)
    placement = split_placement()
    n, n_plain = 100, cfg.count(20, 10)
    size = cfg.count(1024, 256) * MiB
    with servers(placement) as env:
        seq_v = sequential_variants(env, n, n_plain, warmup=cfg.count(10, 3))
        seq = _figures(seq_v, measure(seq_v, cfg.repeats), "ms", "ms/command", env)
        conc_v = concurrent_variants(env, n)
        conc_runs = measure(conc_v, cfg.repeats)
        conc_ok = _figures(conc_v, conc_runs, "ok", f"of {n} ok", env)
        conc_s = _figures(conc_v, conc_runs, "s", "s", env)
        out_v = output_variants(env, size)
        out = _figures(out_v, measure(out_v, cfg.repeats), "MBps", "MB/s", env)
    for group in (seq, conc_ok, conc_s, out):
        result.figures += group.values()
    result.rows += sequential_rows(seq) + concurrent_rows(conc_ok, conc_s) + output_rows(out)
    result.notes += notes(cfg, env, n, n_plain, size, seq, conc_ok, out)
    return result
