"""The argument parser every command line of the project uses (envs' tools and harness alike): a bad
flag is one `error: ...` line and exit status 2, not argparse's usage block. It lives in envs, the
lower layer, so that envs' own tools can use it without importing harness."""
from __future__ import annotations

import argparse

EXIT_USAGE = 2


class OneLineArgumentParser(argparse.ArgumentParser):
    """argparse that reports bad flags as a single `error: ...` line (no usage block)."""

    def error(self, message: str):  # noqa: D102 -- argparse hook
        self.exit(EXIT_USAGE, f'error: {message} (see {self.prog} --help)\n')
