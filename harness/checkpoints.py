"""Orbax checkpoints of a training run: atomic, self-describing, and checked against the task.

Layout: <run>/checkpoints/step_<NNNNNNNNN>/{state/ (orbax), meta.json}. A checkpoint directory only
appears under its final name once both parts are complete (written under a temporary name, then
os.replace), so an interrupted save never leaves a half checkpoint that --resume would pick up.
meta.json records the task, agent, config and every parameter's shape, so that restoring into an
agent built for another task fails with one clear line instead of an orbax traceback.
"""
from __future__ import annotations

import json
import os
import re
import shutil
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import jax
import numpy as np

from harness.errors import UsageError

STEP_DIR = re.compile(r'^step_(\d+)$')
META_FILE = 'meta.json'
STATE_DIR = 'state'


def leaf_shapes(tree: Any) -> dict[str, list[int]]:
    """Path string -> shape of every array leaf, the fingerprint compared on restore."""
    flat, _ = jax.tree_util.tree_flatten_with_path(tree)
    return {jax.tree_util.keystr(path): list(np.shape(leaf)) for path, leaf in flat}


@contextmanager
def atomic_target(path: Path) -> Iterator[Path]:
    """A temporary name beside `path` (same suffix, so writers that pick a format by it still do)
    to write to; renamed onto `path` when the block succeeds, so readers never see half a file."""
    path = Path(path)
    tmp = path.with_name(f'.{path.stem}.tmp-{os.getpid()}{path.suffix}')
    yield tmp
    os.replace(tmp, path)


def write_text_atomic(path: Path, text: str) -> None:
    with atomic_target(path) as tmp:
        tmp.write_text(text)


def write_json_atomic(path: Path, payload: Any) -> None:
    write_text_atomic(path, json.dumps(payload, indent=2, sort_keys=False) + '\n')


def checkpoint_dir(root: Path, step: int) -> Path:
    return Path(root) / f'step_{step:09d}'


def list_checkpoints(root: Path) -> list[tuple[int, Path]]:
    """Complete checkpoints under `root`, oldest first (temporary directories are ignored)."""
    root = Path(root)
    if not root.is_dir():
        return []
    found = []
    for child in root.iterdir():
        match = STEP_DIR.match(child.name)
        if match and (child / META_FILE).is_file() and (child / STATE_DIR).is_dir():
            found.append((int(match.group(1)), child))
    return sorted(found)


def save_checkpoint(root: Path, step: int, state: Any, meta: dict, keep: int | None = 3) -> Path:
    """Save `state` (a pytree of arrays) at `step`; keep only the `keep` newest checkpoints."""
    import orbax.checkpoint as ocp

    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    final = checkpoint_dir(root, step)
    tmp = root / f'.tmp-step_{step:09d}-{os.getpid()}'
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    checkpointer = ocp.StandardCheckpointer()
    checkpointer.save((tmp / STATE_DIR).resolve(), state)
    checkpointer.wait_until_finished()
    checkpointer.close()
    write_json_atomic(tmp / META_FILE, {**meta, 'step': int(step), 'shapes': leaf_shapes(state)})
    if final.exists():
        shutil.rmtree(final)
    os.replace(tmp, final)
    if keep is not None:
        for _, old in list_checkpoints(root)[:-keep]:
            shutil.rmtree(old, ignore_errors=True)
    return final


def find_checkpoint(path: str | Path) -> Path:
    """A run folder, its checkpoints/ folder, or one step_ folder -> the newest complete checkpoint."""
    path = Path(path)
    if not path.exists():
        raise UsageError(f'checkpoint path {path} does not exist')
    if (path / META_FILE).is_file() and (path / STATE_DIR).is_dir():
        return path
    for root in (path / 'checkpoints', path):
        found = list_checkpoints(root)
        if found:
            return found[-1][1]
    raise UsageError(f'no checkpoint in {path} (expected {path}/checkpoints/step_*/ with meta.json)')


def read_meta(checkpoint: Path) -> dict:
    try:
        return json.loads((Path(checkpoint) / META_FILE).read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise UsageError(f'unreadable checkpoint metadata {checkpoint}/{META_FILE}: {error}') from None


def check_shapes(meta: dict, template: Any, expected_what: str) -> None:
    """Raise a one-line UsageError when the saved parameter shapes differ from `template`'s."""
    saved, wanted = meta.get('shapes', {}), leaf_shapes(template)
    if saved == wanted:
        return
    differing = [k for k in wanted if k in saved and saved[k] != wanted[k]]
    if differing:
        key = differing[0]
        detail = f'{key} is {tuple(saved[key])} in the checkpoint but {tuple(wanted[key])} for {expected_what}'
    else:
        missing = sorted(set(wanted) ^ set(saved))
        detail = f'parameter trees differ ({len(missing)} entries, e.g. {missing[0]})'
    saved_task = meta.get('task', {}).get('env_id', '?')
    raise UsageError(f"checkpoint {meta.get('path', '')} (task {saved_task}, agent {meta.get('agent', '?')}, "
                     f"preset {meta.get('preset', '?')}) does not fit {expected_what}: {detail}")


def restore_checkpoint(checkpoint: Path, template: Any, expected_what: str) -> Any:
    """Restore into the structure of `template` after checking every shape (see check_shapes)."""
    import orbax.checkpoint as ocp

    checkpoint = Path(checkpoint)
    meta = {**read_meta(checkpoint), 'path': str(checkpoint)}
    check_shapes(meta, template, expected_what)
    abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, template)
    checkpointer = ocp.StandardCheckpointer()
    state = checkpointer.restore((checkpoint / STATE_DIR).resolve(), abstract)
    checkpointer.close()
    return state
