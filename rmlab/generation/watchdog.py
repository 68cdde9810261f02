"""The vLLM server's keeper: run as a script (standard library only), it starts the server in a process group of its
own and stops that whole group (the API server, its engine core and workers) as soon as the rmlab process that
started it is gone, however it went: it holds the read end of a pipe whose only write end is in that process, so
the kernel closing the process's files (an exit, an exception, SIGKILL) is what it waits for.

    python watchdog.py PIDFILE -- COMMAND...

PIDFILE receives the server's process id (its process group id too). Exits with the server's exit code when the
server stops by itself.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import subprocess
import sys
import time


def _stop_group(pgid: int, grace_s: float = 10.0) -> None:
    try:
        os.killpg(pgid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.1)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, signal.SIGKILL)


def main(argv: list[str]) -> int:
    pidfile, sep, *command = argv
    if sep != "--" or not command:
        print("usage: watchdog.py PIDFILE -- COMMAND...", file=sys.stderr)
        return 2
    server = subprocess.Popen(command, stdin=subprocess.DEVNULL, start_new_session=True)
    with open(pidfile + ".tmp", "w") as f:
        f.write(f"{server.pid}\n")
    os.replace(pidfile + ".tmp", pidfile)

    def stop_and_exit(signum, frame):
        _stop_group(server.pid)
        sys.exit(128 + signum)

    signal.signal(signal.SIGTERM, stop_and_exit)
    signal.signal(signal.SIGINT, stop_and_exit)
    watched = sys.stdin.fileno()
    while True:
        code = server.poll()
        if code is not None:
            _stop_group(server.pid, grace_s=2.0)  # what it left behind
            return code
        ready, _, _ = select.select([watched], [], [], 0.5)
        if ready and not os.read(watched, 4096):  # end of file: the rmlab process is gone
            _stop_group(server.pid)
            return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
