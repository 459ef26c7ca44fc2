"""python -m harness.view PATH [--port N]: serve a run's page on 127.0.0.1 with the standard library.

    python -m harness.view artifacts/sweeps/<sweep>       # its index.html (written first if missing)
    python -m harness.view artifacts                      # a listing of every run and sweep with a page
    python -m harness.view artifacts/runs/<run> --rewrite --no-serve   # rewrite an older run's page, exit

The pages open from file:// too; a server is for a browser on another machine (an ssh tunnel to the
port) or one that refuses file:// videos. It binds 127.0.0.1 only: a run folder holds checkpoints
and the command lines of its owner, nothing to publish on a network by accident.
"""
from __future__ import annotations

import errno
import signal
import sys
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Sequence

from harness.errors import OneLineArgumentParser, UsageError, run_main
from harness.page import PAGE, run_folders, write_listing, write_page

HOST = '127.0.0.1'


def parse_args(argv):
    p = OneLineArgumentParser(prog='python -m harness.view', description=__doc__.splitlines()[0])
    p.add_argument('path', help='a run or sweep folder, or a folder of them (e.g. artifacts)')
    p.add_argument('--port', type=int, default=8000, help='port on 127.0.0.1 (default 8000; 0 picks a free one)')
    p.add_argument('--rewrite', action='store_true', help="rewrite a run's index.html even if it has one")
    p.add_argument('--no-serve', action='store_true', help='write the page and exit')
    return p.parse_args(argv)


def prepare(path: Path, rewrite: bool = False) -> Path:
    """The page to serve for `path`: a run or sweep folder's own (written if missing or `rewrite`),
    or a listing of the runs below it that have one (always rewritten: runs come and go)."""
    if not path.exists():
        raise UsageError(f'{path} does not exist; pass a run or sweep folder, or a folder of them such as artifacts')
    if not path.is_dir():
        raise UsageError(f'{path} is not a folder; pass a run or sweep folder, or a folder of them such as artifacts')
    if (path / 'summary.json').is_file():
        return write_page(path) if rewrite or not (path / PAGE).is_file() else path / PAGE
    if (path / 'config.json').is_file():
        raise UsageError(f'{path} has no summary.json yet (unfinished run?); continue it with '
                         f'python -m harness.run --resume {path}')
    with_page, without = run_folders(path)
    if not with_page and not without:
        raise UsageError(f'no run or sweep folder (with a summary.json) under {path}')
    if without:
        print(f'note: {len(without)} finished folder(s) have no {PAGE} and are not listed, e.g. {without[0]}; '
              f'write one with python -m harness.view {without[0]} --no-serve')
    return write_listing(path, with_page)


def make_server(folder: Path, port: int) -> ThreadingHTTPServer:
    handler = partial(SimpleHTTPRequestHandler, directory=str(folder))
    try:
        return ThreadingHTTPServer((HOST, port), handler)
    except OSError as error:
        if error.errno == errno.EADDRINUSE:
            raise UsageError(f'port {port} is in use on {HOST}; pass another with --port (0 picks a free one)') from None
        raise


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    page = prepare(Path(args.path), args.rewrite)
    if args.no_serve:
        print(f'page: {page}')
        return 0
    server = make_server(page.parent, args.port)
    # Ctrl-C must stop it even when a shell started it with SIGINT ignored (a background job `... &`
    # inherits SIG_IGN, and Python then never raises KeyboardInterrupt).
    signal.signal(signal.SIGINT, signal.default_int_handler)
    print(f'serving {page.parent} at http://{HOST}:{server.server_address[1]}/{PAGE}  (Ctrl-C stops)', flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        print('stopped')
    finally:
        server.server_close()
    return 0


if __name__ == '__main__':
    sys.exit(run_main(main))
