"""Entry point of the Prefect server subprocess: `prefect server start`, tied to its parent.

Run as a script (`python server_entry.py PARENT_PID prefect server start ...`), standard library only
until Prefect starts. The server runs in its own session, so the terminal's Ctrl-C never
reaches it, and a SIGKILLed harness could not stop it: it would run on, orphaned. So a
daemon thread polls the parent's pid and, once the parent is gone, kills the server's whole
process group (uvicorn and anything it spawned). On Linux the harness also sets a
parent-death signal (harness/runtime/server.py); this thread is the portable fallback and
covers the gap between fork and that signal being set.
"""

import os
import signal
import sys
import threading
import time

# How often the watchdog looks for its parent: an orphaned server lives at most this long.
PARENT_POLL_INTERVAL_S = 0.5


def _watch_parent(parent_pid: int) -> None:
    while os.getppid() == parent_pid:
        time.sleep(PARENT_POLL_INTERVAL_S)
    if os.getpgrp() == os.getpid():  # our own group (the harness starts us in a new session)
        os.killpg(os.getpgrp(), signal.SIGKILL)
    os.kill(os.getpid(), signal.SIGKILL)


def main() -> None:
    del sys.path[0]  # this script's folder holds harness modules that must not shadow others
    parent_pid = int(sys.argv[1])
    threading.Thread(target=_watch_parent, args=(parent_pid,), name="parent-watchdog", daemon=True).start()
    sys.argv = sys.argv[2:]  # "prefect", "server", "start", ...
    import runpy

    runpy.run_module("prefect", run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
