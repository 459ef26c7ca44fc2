"""Orbax checkpoints: round trip, atomic naming, retention, the one-line task-mismatch error, and
faults: damaged files of every kind, a full disk, Ctrl-C during a save."""
import errno
import os
import shutil
import signal
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
import pytest

from harness.checkpoints import (find_checkpoint, list_checkpoints, restore_checkpoint, restore_newest_intact,
                                 save_checkpoint)
from harness.errors import UsageError, run_main


def _state(obs_dim=3, value=0.0):
    return {'actor': {'kernel': jnp.arange(obs_dim * 2, dtype=jnp.float32).reshape(obs_dim, 2) + value},
            'step': jnp.asarray(5, jnp.int32)}


def _dead_pid() -> int:
    """The id of a process that has exited (and been reaped)."""
    child = subprocess.Popen(['true'])
    child.wait()
    return child.pid


def test_round_trip_and_retention(tmp_path):
    root = tmp_path / 'run' / 'checkpoints'
    for step in (10, 20, 30, 40):
        save_checkpoint(root, step, _state(), {'task': {'env_id': 'a'}, 'agent': 'qfql'}, keep=2)
    assert [s for s, _ in list_checkpoints(root)] == [30, 40]
    assert not [p for p in root.iterdir() if p.name.startswith('.tmp')]
    latest = find_checkpoint(tmp_path / 'run')
    assert latest.name == 'step_000000040'
    restored = restore_checkpoint(latest, _state(), 'the same task')
    np.testing.assert_array_equal(restored['actor']['kernel'], _state()['actor']['kernel'])


def test_leftovers_of_killed_saves_are_cleared_by_the_next_save(tmp_path):
    root = tmp_path / 'checkpoints'
    leftover = root / f'.tmp-step_000000010-{_dead_pid()}'
    leftover.mkdir(parents=True)
    (leftover / 'junk').write_bytes(b'0' * 1000)
    save_checkpoint(root, 20, _state(), {'agent': 'qfql'})
    assert sorted(p.name for p in root.iterdir()) == ['step_000000020']


def test_a_save_in_progress_in_another_live_process_is_left_alone(tmp_path):
    """Two processes saving into one folder (refused by the run folder's lock, but not only by it): one
    must not delete the other's temporary folder mid-save."""
    root = tmp_path / 'checkpoints'
    other = root / f'.tmp-step_000000010-{os.getppid()}'
    other.mkdir(parents=True)
    save_checkpoint(root, 20, _state(), {'agent': 'qfql'})
    assert other.is_dir()


# What each kind of damage does to one file of a checkpoint; every file of a step folder gets each.
DAMAGE = {
    'cut short': lambda path: path.write_bytes(path.read_bytes()[: path.stat().st_size // 2]),
    'overwritten': lambda path: path.write_bytes(b'{garbage' + bytes(max(0, path.stat().st_size - 8))),
    'deleted': lambda path: path.unlink(),
}


def test_every_kind_of_damaged_file_is_skipped_with_one_warning(tmp_path, capfd):
    """Fault injection: each file of the newest checkpoint (meta.json and every orbax file of state/), in
    turn cut short, overwritten or deleted: restoring skips that checkpoint with one warning line naming
    it and returns the one before, exactly; never orbax's tracebacks, never the damaged values."""
    intact = tmp_path / 'intact'
    for step in (1, 2):
        save_checkpoint(intact, step, _state(value=float(step)), {'agent': 'qfql'})
    newest = intact / 'step_000000002'
    files = sorted(p.relative_to(newest) for p in newest.rglob('*') if p.is_file())
    assert {'meta.json', 'state/_METADATA', 'state/manifest.ocdbt'} <= {str(f) for f in files}
    capfd.readouterr()
    for relative in files:
        for kind, damage in DAMAGE.items():
            root = tmp_path / f'{kind}-{relative}'.replace('/', '_').replace(' ', '_')
            shutil.copytree(intact, root)
            damage(root / 'step_000000002' / relative)
            step, path, state = restore_newest_intact(root, _state(), 'the same task')
            assert (step, path.name) == (1, 'step_000000001'), (kind, relative)
            assert all(jax.tree.leaves(jax.tree.map(np.array_equal, state, _state(value=1.0)))), (kind, relative)
            err = capfd.readouterr().err
            assert err.count('\n') == 1 and err.startswith(f'warning: checkpoint {root}/step_000000002 is damaged'), \
                (kind, relative, err)


def test_a_damaged_checkpoint_from_before_file_digests_is_skipped_without_orbax_noise(tmp_path):
    """A checkpoint written before meta.json listed its files is found damaged by orbax itself, whose
    reads still in flight then fail on its closed event loop: about 170 lines of asyncio tracebacks
    followed the one warning, and now and then a coroutine it never started warned that it was never
    awaited. Only the warnings remain, also once those tasks are collected. Ten
    restores, as the noise comes with the timing of those reads, in a process of their own, since
    pytest would catch the noise before it reaches stderr."""
    script = f"""
import gc, json, shutil, time
from pathlib import Path
import jax.numpy as jnp, numpy as np
from harness.checkpoints import restore_newest_intact, save_checkpoint
base = Path({str(tmp_path)!r})
rng = np.random.default_rng(0)
state = {{f'layer{{i}}': jnp.asarray(rng.normal(size=(128, 128)), jnp.float32) for i in range(80)}}
for step in (1, 2):
    save_checkpoint(base / 'intact', step, state, {{'agent': 'qfql'}})
meta = base / 'intact' / 'step_000000002' / 'meta.json'
meta.write_text(json.dumps({{k: v for k, v in json.loads(meta.read_text()).items() if k != 'files'}}))
for attempt in range(10):
    root = base / f'damaged{{attempt}}'
    shutil.copytree(base / 'intact', root)
    (root / 'step_000000002' / 'state' / 'manifest.ocdbt').unlink()
    assert restore_newest_intact(root, state, 'the same task')[0] == 1
time.sleep(0.5)
gc.collect()
"""
    done = subprocess.run([sys.executable, '-c', script], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    lines = done.stderr.splitlines()
    noise = [line for line in lines if 'step_000000002 is damaged (ValueError' not in line]
    assert not noise, 'stderr had more than the warnings:\n' + '\n'.join(noise)
    assert len(lines) == 10, done.stderr


def test_damaged_checkpoints_that_leave_none_or_lack_a_part(tmp_path, capfd):
    """A step folder without one of its parts is damaged too (a save only names it once complete); with
    every checkpoint damaged there is nothing to restore, and each was named."""
    save_checkpoint(tmp_path, 1, _state(), {'agent': 'qfql'})
    shutil.rmtree(tmp_path / 'step_000000001' / 'state')
    save_checkpoint(tmp_path, 2, _state(), {'agent': 'qfql'})
    (tmp_path / 'step_000000002' / 'meta.json').write_text('{garbage')
    assert restore_newest_intact(tmp_path, _state(), 'the same task') is None
    warnings = capfd.readouterr().err.splitlines()
    assert [line.split(' is damaged')[0] for line in warnings] == [
        f'warning: checkpoint {tmp_path}/step_000000002', f'warning: checkpoint {tmp_path}/step_000000001']


def test_a_checkpoint_of_another_task_is_not_taken_for_a_damaged_one(tmp_path):
    save_checkpoint(tmp_path, 1, _state(obs_dim=3), {'agent': 'qfql'})
    with pytest.raises(UsageError, match='does not fit'):
        restore_newest_intact(tmp_path, _state(obs_dim=4), 'task pointmaze (obs 4)')


def test_a_full_disk_during_a_save_is_enospc_and_leaves_nothing(tmp_path, monkeypatch, capfd):
    """orbax reports a full disk as tensorstore's RESOURCE_EXHAUSTED (a ValueError) after its background
    threads logged tracebacks; the save raises ENOSPC, which the command line turns into one line, and
    removes its temporary folder, which would keep the disk full."""
    original = ocp.StandardCheckpointer.wait_until_finished
    failures = [ValueError('RESOURCE_EXHAUSTED: Error writing local file "x": [OS error 28: No space left on device]')]

    def full_disk(self):
        original(self)
        if failures:                          # orbax reports it once; close() waits again
            raise failures.pop()

    monkeypatch.setattr(ocp.StandardCheckpointer, 'wait_until_finished', full_disk)
    with pytest.raises(OSError) as error:
        save_checkpoint(tmp_path, 1, _state(), {'agent': 'qfql'})
    assert error.value.errno == errno.ENOSPC
    assert list(tmp_path.iterdir()) == []


def test_ctrl_c_during_a_save_lets_it_finish_then_interrupts(tmp_path, monkeypatch):
    """Interrupted inside orbax, a save would fail in orbax's background threads with tracebacks; the
    interrupt waits for the save, which is then complete."""
    original = ocp.StandardCheckpointer.wait_until_finished
    presses = [signal.SIGINT]

    def interrupted(self):
        if presses:                           # once: orbax waits again in close() and when collected
            os.kill(os.getpid(), presses.pop())
        original(self)

    monkeypatch.setattr(ocp.StandardCheckpointer, 'wait_until_finished', interrupted)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(tmp_path, 1, _state(), {'agent': 'qfql'})
    assert [step for step, _ in list_checkpoints(tmp_path)] == [1]
    restored = restore_checkpoint(tmp_path / 'step_000000001', _state(), 'the same task')
    np.testing.assert_array_equal(restored['actor']['kernel'], _state()['actor']['kernel'])


@pytest.mark.parametrize('code, advice', [(errno.ENOSPC, 'free some space, then continue with --resume'),
                                          (errno.EACCES, 'choose a folder you can write to')])
def test_disk_errors_are_one_line_with_the_fix(code, advice, capsys):
    def main(argv):
        raise OSError(code, os.strerror(code), '/data/run/metrics.jsonl')
    assert run_main(main, []) == 2
    err = capsys.readouterr().err
    assert err.count('\n') == 1 and err.startswith('error: ') and advice in err and '/data/run/metrics.jsonl' in err


def test_other_os_errors_are_not_hidden():
    def main(argv):
        raise OSError(errno.EIO, 'Input/output error')
    with pytest.raises(OSError):
        run_main(main, [])


def test_shape_mismatch_is_one_line_naming_both_tasks(tmp_path):
    save_checkpoint(tmp_path, 1, _state(obs_dim=3), {'task': {'env_id': 'cube-single-play-singletask-task2-v0'}})
    with pytest.raises(UsageError) as error:
        restore_checkpoint(find_checkpoint(tmp_path), _state(obs_dim=4), 'task pointmaze (obs 4)')
    message = str(error.value)
    assert '\n' not in message and 'cube-single' in message and 'pointmaze' in message


def test_missing_checkpoint_is_a_usage_error(tmp_path):
    with pytest.raises(UsageError):
        find_checkpoint(tmp_path)
    with pytest.raises(UsageError):
        find_checkpoint(tmp_path / 'nope')
