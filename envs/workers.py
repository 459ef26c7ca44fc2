"""What every worker process of envs/ does first: leave Ctrl-C to its parent, and die with it.

Ctrl-C reaches the whole process group; the parent turns it into one line and shuts its workers
down, so a worker that also raised KeyboardInterrupt would only add tracebacks. A parent killed
with SIGKILL cannot shut anything down, so each worker waits on its parent's sentinel (a pipe that
the kernel closes when the parent dies) and exits then instead of running on as an orphan. The
sentinel, not os.getppid(), because a spawned worker spends seconds importing its parent's main
module before it gets here: a parent killed meanwhile has already re-parented it, and the parent
id read now would be the new one, which never dies. The worker's exit also closes its end of the
multiprocessing resource tracker's pipe, so the tracker goes with the last of them.
"""
from __future__ import annotations

import multiprocessing
import multiprocessing.connection
import os
import signal
import threading


def start_worker() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    parent = multiprocessing.parent_process()

    def exit_with_parent():
        multiprocessing.connection.wait([parent.sentinel])
        os._exit(1)

    threading.Thread(target=exit_with_parent, daemon=True, name='exit-with-parent').start()
