"""Waiting on worker processes from a test (the orphan checks of envs' worker pools)."""
import time

import psutil


def kill_and_wait_for_workers(parent, workers, seconds: float = 10.0) -> bool:
    """SIGKILL `parent` (a Popen) and wait up to `seconds` for every pid in `workers` to be gone;
    True when they all went (a parent killed this way cannot shut its workers down itself)."""
    parent.kill()
    parent.wait()
    deadline = time.time() + seconds
    while time.time() < deadline and any(psutil.pid_exists(pid) for pid in workers):
        time.sleep(0.2)
    return not any(psutil.pid_exists(pid) for pid in workers)
