"""Orbax checkpoints: round trip, atomic naming, retention, and the one-line task-mismatch error."""
import errno
import os

import jax.numpy as jnp
import numpy as np
import pytest

from harness.checkpoints import find_checkpoint, list_checkpoints, restore_checkpoint, save_checkpoint
from harness.errors import UsageError, run_main


def _state(obs_dim=3):
    return {'actor': {'kernel': jnp.arange(obs_dim * 2, dtype=jnp.float32).reshape(obs_dim, 2)},
            'step': jnp.asarray(5, jnp.int32)}


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
    (root / '.tmp-step_000000010-999').mkdir(parents=True)
    (root / '.tmp-step_000000010-999' / 'junk').write_bytes(b'0' * 1000)
    save_checkpoint(root, 20, _state(), {'agent': 'qfql'})
    assert sorted(p.name for p in root.iterdir()) == ['step_000000020']


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
