"""What every worker process of envs/ does first: leave Ctrl-C to its parent, and die with it.

Ctrl-C reaches the whole process group; the parent turns it into one line and shuts its workers
down, so a worker that also raised KeyboardInterrupt would only add tracebacks. A parent killed
with SIGKILL cannot shut anything down, so each worker watches for its parent to change (it is
re-parented when the parent dies) and exits then instead of running on as an orphan.
"""
from __future__ import annotations

import os
import signal
import threading
import time

PARENT_POLL_SECONDS = 1.0


def start_worker() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    parent = os.getppid()

    def exit_with_parent():
        while os.getppid() == parent:
            time.sleep(PARENT_POLL_SECONDS)
        os._exit(1)

    threading.Thread(target=exit_with_parent, daemon=True, name='exit-with-parent').start()
