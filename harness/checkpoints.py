"""Orbax checkpoints of a training run: atomic, self-describing, and checked against the task.

Layout: <run>/checkpoints/step_<NNNNNNNNN>/{state/ (orbax), meta.json}. A checkpoint directory only
appears under its final name once both parts are complete (written under a temporary name, then
os.replace), so an interrupted save never leaves a half checkpoint that --resume would pick up.
meta.json records the task, agent, config and every parameter's shape, so that restoring into an
agent built for another task fails with one clear line instead of an orbax traceback, and the size
and sha256 of every file of state/, so that a checkpoint damaged after it was written (a truncated or
overwritten file, a missing one) is recognised before orbax reads it: orbax notices only some damage,
and then prints tracebacks from its background threads. `restore_newest_intact` skips such a
checkpoint with one warning line. A save is not interrupted by Ctrl-C (it finishes, then the
interrupt is raised), and a full disk during one is an ENOSPC OSError, whichever layer hit it.

An exported checkpoint (`python -m harness.card`, shipped under artifacts/checkpoints/<name>/) is
the parameters that acting needs, without optimiser state: params.msgpack (flax serialisation of
the networks the agent's class names in `exported_names`, for its seeds) and card.json, whose
'meta' has the same fields as meta.json. It can be evaluated (--checkpoint), not resumed.
"""
from __future__ import annotations

import errno
import hashlib
import json
import logging
import os
import re
import shutil
import signal
import sys
import threading
import traceback
import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import jax
import numpy as np
import orbax.checkpoint as ocp
from flax import serialization

from agents import AGENTS, AgentConfig
from agents.training import create_agents
from harness.defaults import CARD_FILE
from harness.errors import UsageError, one_line
from harness.files import atomic_target, write_json_atomic

STEP_DIR = re.compile(r'^step_(\d+)$')
TEMPORARY_DIR = re.compile(r'^\.tmp-step_\d+-(\d+)$')      # a save in progress, or a killed one's leftover
META_FILE = 'meta.json'
STATE_DIR = 'state'
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


class CheckpointDamaged(UsageError):
    """A checkpoint whose files are not the ones it was written with: skipped on --resume. `reason`
    says what is wrong, for the warning that names the checkpoint."""

    def __init__(self, message: str, reason: str):
        super().__init__(message)
        self.reason = reason


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


def step_folders(root: Path) -> list[tuple[int, Path]]:
    """Every step_ folder under `root`, complete or not, oldest first. A step_ folder only appears once
    its save is complete, so one that lacks a part was damaged afterwards."""
    root = Path(root)
    if not root.is_dir():
        return []
    return sorted((int(match.group(1)), child) for child in root.iterdir() if (match := STEP_DIR.match(child.name)))


def save_checkpoint(root: Path, step: int, state: Any, meta: dict, keep: int | None = 3) -> Path:
    """Save `state` (a pytree of arrays) at `step`; keep only the `keep` newest checkpoints."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    final = checkpoint_dir(root, step)
    clear_abandoned_saves(root)
    tmp = root / f'.tmp-step_{step:09d}-{os.getpid()}'
    with interrupts_deferred():
        try:
            tmp.mkdir()
            _write_state(tmp / STATE_DIR, state)
            write_json_atomic(tmp / META_FILE, {**meta, 'step': int(step), 'shapes': leaf_shapes(state),
                                                'files': file_digests(tmp / STATE_DIR)})
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
    if keep is not None:
        for _, old in list_checkpoints(root)[:-keep]:
            shutil.rmtree(old, ignore_errors=True)
    return final


def clear_abandoned_saves(root: Path) -> None:
    """Remove the temporary folders of saves whose process is gone (killed, or failed on a full disk):
    they are never loaded and would keep a full disk full. Another live process's save is left alone."""
    for child in Path(root).iterdir():
        match = TEMPORARY_DIR.match(child.name)
        if match and not _is_other_live_process(int(match.group(1))):
            shutil.rmtree(child, ignore_errors=True)


def _is_other_live_process(pid: int) -> bool:
    if pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _write_state(path: Path, state: Any) -> None:
    """orbax's save, with its error logs (tracebacks from its background threads) kept off the screen;
    the error itself is raised here, a full disk as ENOSPC however orbax or tensorstore put it."""
    with _orbax_quiet():
        checkpointer = ocp.StandardCheckpointer()
        try:
            checkpointer.save(path.resolve(), state)
            checkpointer.wait_until_finished()
        except Exception as error:
            if _is_out_of_space(error):
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path)) from None
            raise
        finally:
            checkpointer.close()


def _is_out_of_space(error: BaseException) -> bool:
    if isinstance(error, OSError) and error.errno in (errno.ENOSPC, errno.EDQUOT):
        return True
    text = str(error)
    return 'RESOURCE_EXHAUSTED' in text or os.strerror(errno.ENOSPC) in text or (
        error.__cause__ is not None and _is_out_of_space(error.__cause__))


@contextmanager
def _orbax_quiet() -> Iterator[None]:
    """Keep orbax's reports of a failed save or restore off the screen: the caller turns the failure into
    one line, and these would bury it under tracebacks. orbax logs each failure of its background
    threads (through absl) while it runs; afterwards, the reads and writes still in flight fail once
    more each, in tensorstore callbacks on orbax's closed event loop and in asyncio tasks nobody
    awaits any more, and the coroutines that loop never started warn, when collected, that they were
    never awaited; which is why those three filters stay installed (they let everything else through)."""
    _filter_orbax_aftermath()
    logger = logging.getLogger('absl')
    level = logger.level
    logger.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        logger.setLevel(level)


def _filter_orbax_aftermath() -> None:
    if getattr(sys.unraisablehook, 'filters_orbax_aftermath', False):
        return
    passed_on = sys.unraisablehook

    def unraisable_hook(unraisable):
        if not (unraisable.exc_type is RuntimeError and str(unraisable.exc_value) == 'Event loop is closed'):
            passed_on(unraisable)

    unraisable_hook.filters_orbax_aftermath = True
    sys.unraisablehook = unraisable_hook
    logging.getLogger('asyncio').addFilter(_drop_unretrieved_orbax_failures)
    _filter_unawaited_orbax_coroutines()


def _filter_unawaited_orbax_coroutines() -> None:
    """Drop the RuntimeWarning 'coroutine ... was never awaited' of an orbax coroutine (three lines, at
    whatever line of whichever thread happens to collect it, so no warnings filter can pick it out by
    place). The interpreter reports every such coroutine through warnings._warn_unawaited_coroutine,
    which it looks up anew each time."""
    passed_on = warnings._warn_unawaited_coroutine

    def warn_unawaited_coroutine(coro):
        if f'{os.sep}orbax{os.sep}' not in coro.cr_code.co_filename:
            passed_on(coro)

    warnings._warn_unawaited_coroutine = warn_unawaited_coroutine


def _drop_unretrieved_orbax_failures(record: logging.LogRecord) -> bool:
    """False for asyncio's 'exception was never retrieved' report of a task or future that failed inside
    orbax or tensorstore (a future's report has no frames; tensorstore's errors quote its spec)."""
    if 'never retrieved' not in record.getMessage() or not record.exc_info:
        return True
    frames = traceback.extract_tb(record.exc_info[2]) if record.exc_info[2] is not None else []
    in_orbax = any(f'{os.sep}orbax{os.sep}' in frame.filename for frame in frames)
    return not (in_orbax or 'tensorstore_spec' in str(record.exc_info[1]))


@contextmanager
def interrupts_deferred() -> Iterator[None]:
    """Let a checkpoint save finish before Ctrl-C takes effect: interrupted, orbax's background threads
    fail one after the other with tracebacks, while the save itself takes a second or two."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    received = []
    previous = signal.signal(signal.SIGINT, lambda signum, frame: received.append(signum))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
        if received:
            signal.raise_signal(signal.SIGINT)


def file_digests(folder: Path) -> dict[str, list]:
    """Relative path -> [size, sha256] of every file under `folder`."""
    folder = Path(folder)
    digests = {}
    for path in sorted(p for p in folder.rglob('*') if p.is_file()):
        digests[path.relative_to(folder).as_posix()] = [path.stat().st_size, _sha256(path)]
    return digests


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, 'rb') as handle:
        for block in iter(lambda: handle.read(1 << 22), b''):
            digest.update(block)
    return digest.hexdigest()


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
        if name == CARD_FILE:
            return payload['meta']
        if not (isinstance(payload, dict) and isinstance(payload.get('shapes'), dict)
                and isinstance(payload.get('step'), int)):
            raise ValueError('it lacks the step or the parameter shapes')
        return payload
    except (OSError, ValueError, KeyError, TypeError) as error:
        reason = f'{name}: {type(error).__name__}: {one_line(error)[:100]}'
        raise CheckpointDamaged(f'unreadable checkpoint metadata {checkpoint}/{reason}', reason) from None


def check_files(checkpoint: Path, meta: dict) -> None:
    """Refuse a checkpoint whose state/ files differ from those its meta.json lists (checkpoints written
    before meta.json listed them are taken as they are)."""
    recorded = meta.get('files')
    if recorded is None:
        return
    found = file_digests(Path(checkpoint) / STATE_DIR)
    for name in sorted(set(recorded) | set(found)):
        if name not in found:
            reason = f'{STATE_DIR}/{name} is missing'
        elif name not in recorded:
            reason = f'{STATE_DIR}/{name} was not part of it when it was written'
        elif found[name] != list(recorded[name]):
            reason = (f'{STATE_DIR}/{name} is not the file it was written with (size {found[name][0]}, written '
                      f'{recorded[name][0]})')
        else:
            continue
        raise CheckpointDamaged(f'checkpoint {checkpoint} is damaged ({reason})', reason)


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
    check_files(checkpoint, meta)
    abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, template)
    with _orbax_quiet():
        checkpointer = ocp.StandardCheckpointer()
        try:
            return checkpointer.restore((checkpoint / STATE_DIR).resolve(), abstract)
        finally:
            checkpointer.close()


def restore_as_trained(checkpoint: Path, observation_dim: int, action_dim: int, expected_what: str) -> tuple[Any, dict]:
    """(stacked agents, meta) of a checkpoint, restored into a template built from its own meta (agent,
    seeds, training config): what exporting or probing a finished run needs. An evaluation that
    overrides sampler settings builds its own template instead."""
    meta = read_meta(checkpoint)
    template = create_agents(AGENTS[meta['agent']], meta['seeds'], np.zeros((1, observation_dim), np.float32),
                             np.zeros((1, action_dim), np.float32), AgentConfig(**meta['config']))
    return restore_checkpoint(checkpoint, template, expected_what), meta


def restore_newest_intact(root: Path, template: Any, expected_what: str) -> tuple[int, Path, Any] | None:
    """(step, folder, state) of the newest checkpoint under `root` that reads back, or None when every
    one is damaged. A damaged one (a part missing, a file cut short or overwritten, broken metadata) is
    skipped with one warning line naming it; one that is intact but of another task or preset is the
    user's to know about, so its UsageError goes through."""
    for step, path in reversed(step_folders(root)):
        if not ((path / META_FILE).is_file() and (path / STATE_DIR).is_dir()):
            reason = f'{META_FILE} or {STATE_DIR}/ is missing'
        else:
            try:
                return step, path, restore_checkpoint(path, template, expected_what)
            except CheckpointDamaged as error:
                reason = error.reason
            except UsageError:
                raise
            except Exception as error:          # noqa: BLE001 -- whatever orbax raises on a file it cannot read
                reason = f'{type(error).__name__}: {one_line(error)[:100]}'
        print(f'warning: checkpoint {path} is damaged ({reason}); skipping it', file=sys.stderr)
    return None


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
