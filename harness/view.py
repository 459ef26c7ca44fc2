"""python -m harness.view PATH [--port N]: serve a run's page on 127.0.0.1 with the standard library.

    python -m harness.view artifacts/sweeps/<sweep>       # its index.html (written first if missing)
    python -m harness.view artifacts                      # a listing of every run and sweep with a page
    python -m harness.view artifacts/runs/<run> --rewrite --no-serve   # rewrite an older run's page, exit

The pages open from file:// too; a server is for a browser on another machine (an ssh tunnel to the
port) or one that refuses file:// videos. It binds 127.0.0.1 only: a run folder holds checkpoints
and the command lines of its owner, nothing to publish on a network by accident. For the same reason
it serves only regular files that really lie inside the folder (a symlink out of it is refused) and
lists no directories.
"""
from __future__ import annotations

import argparse
import errno
import json
import signal
import sys
from functools import partial
from http import HTTPStatus
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Sequence

from harness.errors import OneLineArgumentParser, UsageError, run_main
from harness.page import PAGE, run_folders, write_listing, write_page

HOST = '127.0.0.1'
HIGHEST_PORT = 65535


def port_number(text: str) -> int:
    """A TCP port, checked here because the socket layer reports a bad one as a traceback."""
    try:
        value = int(text)
    except ValueError:
        value = -1
    if not 0 <= value <= HIGHEST_PORT:
        raise argparse.ArgumentTypeError(f"a port is an integer from 0 to {HIGHEST_PORT} (0 picks a free one), "
                                         f"got '{text}'")
    return value


def parse_args(argv):
    p = OneLineArgumentParser(prog='python -m harness.view', description=__doc__.splitlines()[0])
    p.add_argument('path', help='a run or sweep folder, or a folder of them (e.g. artifacts)')
    p.add_argument('--port', type=port_number, default=8000, help='port on 127.0.0.1 (default 8000; 0 picks a free one)')
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
        if (path / PAGE).is_file() and not rewrite:
            return path / PAGE
        for name in ('summary.json', 'config.json'):
            problem = json_problem(path / name)
            if problem:
                raise damaged_file_error(path, name, problem)
        return write_page(path)
    if (path / 'config.json').is_file():
        raise UsageError(f'{path} has no summary.json yet (unfinished run?); continue it with '
                         f'python -m harness.run --resume {path}')
    with_page, without = run_folders(path)
    if not with_page and not without:
        raise UsageError(f'no run or sweep folder (with a summary.json) under {path}')
    if without:
        print(f'note: {len(without)} finished folder(s) have no {PAGE} and are not listed, e.g. {without[0]}; '
              f'write one with python -m harness.view {without[0]} --no-serve')
    damaged = [(folder, problem) for folder in with_page if (problem := json_problem(folder / 'summary.json'))]
    if damaged:
        folder, problem = damaged[0]
        print(f'note: {len(damaged)} folder(s) are not listed because their summary.json is damaged, e.g. '
              f'{damaged_file_error(folder, "summary.json", problem)}')
    return write_listing(path, [folder for folder in with_page if folder not in dict(damaged)])


def json_problem(path: Path) -> str | None:
    """Why `path` is not a JSON object (a write cut short by a full disk or a copy, a hand edit), or
    None when it is one."""
    try:
        read_json_object(path)
    except ValueError as error:
        return str(error)
    return None


def read_json_object(path: Path) -> dict:
    try:
        payload = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ValueError(str(error)) from None
    if not isinstance(payload, dict):
        raise ValueError(f'a JSON {type(payload).__name__}, not an object')
    return payload


def damaged_file_error(folder: Path, name: str, problem: str) -> UsageError:
    """The one line for a run or sweep folder whose `name` cannot be read, with how to write it again:
    a training run rewrites its summary when resumed without one, a sweep only by running it again."""
    try:
        config = read_json_object(folder / 'config.json')
    except ValueError:
        config = {}
    if name == 'summary.json' and config.get('mode') in ('train', 'resume'):
        fix = f'delete it and finish the run again with python -m harness.run --resume {folder}'
    elif config.get('command'):
        fix = f'run its command again into a new --out: {config["command"]}'
    else:
        fix = 'run the command that wrote this folder again into a new --out'
    return UsageError(f'{folder / name} is damaged ({problem}); {fix}')


class FolderHandler(SimpleHTTPRequestHandler):
    """Serves the regular files whose real path lies inside the folder, and nothing else: a symlink in
    a run folder (to a dataset, a home directory, /etc) must not publish what it points to, and a
    directory listing would show checkpoints and files that no page links to."""

    def send_head(self):
        path = Path(self.translate_path(self.path))
        served = path / PAGE if path.is_dir() else path   # a folder without a page gets no listing
        real, root = served.resolve(), Path(self.directory).resolve()
        if not (real.is_file() and real.is_relative_to(root)):
            self.send_error(HTTPStatus.NOT_FOUND, 'not a file of this folder')
            return None
        return super().send_head()


def make_server(folder: Path, port: int) -> ThreadingHTTPServer:
    handler = partial(FolderHandler, directory=str(folder))
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
