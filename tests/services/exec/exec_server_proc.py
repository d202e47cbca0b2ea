"""An exec server in a process of its own: ``exec_server_proc.py TOKEN_FILE
[KILL_GRACE]``; prints ``listening ADDR`` and serves until SIGTERM."""

from __future__ import annotations

import sys
from pathlib import Path

import wirekit.aio
from wirekit.aio.secure import ServerAuth
from wirekit.aio.signals import stop_on_signal
from wirekit.services.exec import ExecOptions, start_exec


async def main(token_file: Path, kill_grace: float) -> None:
    auth, _ = ServerAuth.for_service(authorized_keys=None, token_file=token_file, service="exec")
    with stop_on_signal() as (stop, _hurry):
        server = await start_exec(
            "127.0.0.1:0", auth=auth, options=ExecOptions(kill_grace=kill_grace)
        )
        print(f"listening {server.address}", flush=True)
        await stop.wait()
        await server.shutdown(grace=1.0)


if __name__ == "__main__":
    grace = float(sys.argv[2]) if len(sys.argv) > 2 else 1.0
    wirekit.aio.run(main(Path(sys.argv[1]), grace))
