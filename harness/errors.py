"""One-line user errors for the command-line entry points.

Bad user input (unknown task, a negative β, a checkpoint of another task, ...) must end in one
actionable line on stderr and a non-zero exit, never a traceback: the command-line functions raise
`UsageError`, and `run_main` turns it -- and the one-line errors that `envs` raises for unknown tasks
and missing datasets -- into `error: ...` with exit status 2. Once the command is over, Ctrl-C is
ignored while the interpreter shuts down (`_ignore_interrupts_at_exit`).
"""
from __future__ import annotations

import atexit
import errno
import signal
import sys
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
    """Call main(argv); known user errors become one `error:` line and exit status 2."""
    try:
        return _run(main, argv)
    finally:
        _ignore_interrupts_at_exit()


def _ignore_interrupts_at_exit() -> None:
    """Exit handlers run last registered first, so this one runs before JAX's (registered when JAX was
    imported, before main ran), whose backend cleanup can take seconds: a Ctrl-C then, once the command
    has already said how it ended, would only add a KeyboardInterrupt traceback from that cleanup."""
    atexit.unregister(_ignore_sigint)
    atexit.register(_ignore_sigint)


def _ignore_sigint() -> None:
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
