"""Whole-file atomic writes (standard library only): a temporary name beside the target, then
os.replace, so a reader never sees half a file and a kill leaves the old file or the new one.

A leaf, so that writing a plot, a video or a table imports no checkpoint library.
"""
from __future__ import annotations

import json
import os
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator


@contextmanager
def atomic_target(path: Path) -> Iterator[Path]:
    """A temporary name beside `path` (same suffix, so writers that pick a format by it still do)
    to write to; renamed onto `path` when the block succeeds, so readers never see half a file. A
    failed write (a full disk) removes its temporary file, which would keep the disk full."""
    path = Path(path)
    tmp = path.with_name(f'.{path.stem}.tmp-{os.getpid()}{path.suffix}')
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_text_atomic(path: Path, text: str) -> None:
    with atomic_target(path) as tmp:
        tmp.write_text(text)


def write_json_atomic(path: Path, payload: Any) -> None:
    write_text_atomic(path, json.dumps(payload, indent=2, sort_keys=False) + '\n')
