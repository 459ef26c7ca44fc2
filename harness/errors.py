"""One-line user errors for the command-line entry points.

Bad user input (unknown task, a negative β, a checkpoint of another task, ...) must end in one
actionable line on stderr and a non-zero exit, never a traceback: the command-line functions raise
`UsageError`, and `run_main` turns it -- and the one-line errors that `envs` raises for unknown tasks
and missing datasets -- into `error: ...` with exit status 2.
"""
from __future__ import annotations

import errno
import signal
import sys
import threading
from typing import Callable, Sequence

from envs.cli import EXIT_USAGE, OneLineArgumentParser  # noqa: F401 (re-exported for harness' commands)
from envs.datasets import DatasetError
from envs.tasks import UnknownTaskError


class UsageError(Exception):
    """A mistake in what the user asked for; str(error) is one line that says how to fix it."""


# Filesystem failures the user fixes outside the program, and what to do about each.
_DISK_ERRORS = {
    errno.ENOSPC: 'free some space, then continue with --resume (nothing half-written is ever loaded)',
    errno.EDQUOT: 'free some space, then continue with --resume (nothing half-written is ever loaded)',
    errno.EACCES: 'choose a folder you can write to (--out, --data-dir)',
    errno.EPERM: 'choose a folder you can write to (--out, --data-dir)',
    errno.EROFS: 'choose a folder on a writable disk (--out, --data-dir)',
    errno.ENOTDIR: 'a part of that path is a file, not a folder: choose another (--out, --data-dir)',
}


# Errors that already carry one actionable line: UsageError and envs' unknown-task and dataset errors.
USER_ERRORS = (UsageError, UnknownTaskError, DatasetError)


def one_line(message: object) -> str:
    """The first line of an error message, so that nothing multi-line reaches the user."""
    text = str(message).strip()
    return text.splitlines()[0] if text else 'unknown error'


def run_main(main: Callable[[Sequence[str] | None], int], argv: Sequence[str] | None = None) -> int:
    """Call main(argv); known user errors become one `error:` line and exit status 2. Called as the
    program (argv None: main reads the command line), it then ignores Ctrl-C: all that is left is the
    interpreter's shutdown (joining threads, JAX's exit handler clearing its caches, seconds at times),
    where a Ctrl-C, after the command has already said how it ended, would only add a traceback."""
    try:
        return _run(main, argv)
    finally:
        if argv is None and threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGINT, signal.SIG_IGN)


def _run(main: Callable[[Sequence[str] | None], int], argv: Sequence[str] | None) -> int:
    try:
        return main(argv)
    except USER_ERRORS as error:
        print(f'error: {one_line(error)}', file=sys.stderr)
        return EXIT_USAGE
    except OSError as error:
        advice = _DISK_ERRORS.get(error.errno)
        if advice is None:
            raise
        where = f' writing {error.filename}' if error.filename else ''
        print(f'error: {error.strerror or error}{where}; {advice}', file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print('error: interrupted; continue later with --resume', file=sys.stderr)
        return 130
