"""Orbax checkpoints of a training run: atomic, self-describing, and checked against the task.

Layout: <run>/checkpoints/step_<NNNNNNNNN>/{state/ (orbax), meta.json}. A checkpoint directory only
appears under its final name once both parts are complete (written under a temporary name, then
os.replace), so an interrupted save never leaves a half checkpoint that --resume would pick up.
meta.json records the task, agent, config and every parameter's shape, so that restoring into an
agent built for another task fails with one clear line instead of an orbax traceback.

An exported checkpoint (`python -m harness.card`, shipped under artifacts/checkpoints/<name>/) is
the parameters that acting needs, without optimiser state: params.msgpack (flax serialisation of
the networks the agent's class names in `exported_names`, for its seeds) and card.json, whose
'meta' has the same fields as meta.json. It can be evaluated (--checkpoint), not resumed.
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
import orbax.checkpoint as ocp
from flax import serialization

from harness.errors import UsageError

STEP_DIR = re.compile(r'^step_(\d+)$')
META_FILE = 'meta.json'
STATE_DIR = 'state'
CARD_FILE = 'card.json'
PARAMS_FILE = 'params.msgpack'


def is_exported(path: Path) -> bool:
    return (Path(path) / CARD_FILE).is_file() and (Path(path) / PARAMS_FILE).is_file()


def exported_params(agents: Any) -> dict:
    """The sub-trees of (stacked) agents' params that an exported checkpoint keeps: QFQL and FQL name
    their networks differently, so the agent's class says which ones acting needs."""
    names = type(agents).exported_names(agents.config)
    return {k: v for k, v in agents.params.items() if k in names}


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
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    final = checkpoint_dir(root, step)
    # Temporary folders left by a killed or failed save (any process) are never loaded; clear them so
    # that they do not keep a full disk full.
    for stale in root.glob('.tmp-step_*'):
        shutil.rmtree(stale, ignore_errors=True)
    tmp = root / f'.tmp-step_{step:09d}-{os.getpid()}'
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
    if (path / META_FILE).is_file() and (path / STATE_DIR).is_dir() or is_exported(path):
        return path
    for root in (path / 'checkpoints', path):
        found = list_checkpoints(root)
        if found:
            return found[-1][1]
    raise UsageError(f'no checkpoint in {path} (expected {path}/checkpoints/step_*/ with meta.json)')


def read_meta(checkpoint: Path) -> dict:
    name = CARD_FILE if is_exported(checkpoint) else META_FILE
    try:
        payload = json.loads((Path(checkpoint) / name).read_text())
        return payload['meta'] if name == CARD_FILE else payload
    except (OSError, json.JSONDecodeError, KeyError) as error:
        raise UsageError(f'unreadable checkpoint metadata {checkpoint}/{name}: {error!r}') from None


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
    checkpoint = Path(checkpoint)
    meta = {**read_meta(checkpoint), 'path': str(checkpoint)}
    if is_exported(checkpoint):
        wanted = exported_params(template)
        check_shapes(meta, wanted, expected_what)
        params = read_exported_params(checkpoint, wanted)
        return template.replace(params={**template.params, **params, 'target_critic': params['critic']})
    check_shapes(meta, template, expected_what)
    abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, template)
    checkpointer = ocp.StandardCheckpointer()
    state = checkpointer.restore((checkpoint / STATE_DIR).resolve(), abstract)
    checkpointer.close()
    return state


def read_exported_params(checkpoint: Path, wanted: dict) -> dict:
    """params.msgpack as arrays shaped like `wanted`; a file cut short, damaged or swapped for another
    export's is one line, since its card alone (checked before) cannot tell."""
    path = Path(checkpoint) / PARAMS_FILE
    try:
        params = serialization.from_bytes(wanted, path.read_bytes())
    except (ValueError, TypeError, AttributeError) as error:
        problem = str(error)
    else:
        if leaf_shapes(params) == leaf_shapes(wanted):
            return jax.tree.map(lambda like, x: np.asarray(x, like.dtype), wanted, params)
        problem = f'its parameter shapes are not the ones {CARD_FILE} lists'
    raise UsageError(f'{path} is damaged ({problem}); restore it (git checkout -- {path} for a shipped one) or '
                     'export it again with python -m harness.card')


def export_params(out: Path, agents: Any, meta: dict, card: dict) -> None:
    """Write an exported checkpoint: params.msgpack, then card.json (with meta + shapes) last, so a
    folder without its card is never taken for a complete export."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    params = exported_params(agents)
    with atomic_target(out / PARAMS_FILE) as tmp:
        tmp.write_bytes(serialization.to_bytes(jax.device_get(params)))
    write_json_atomic(out / CARD_FILE, {**card, 'meta': {**meta, 'shapes': leaf_shapes(params)}})
