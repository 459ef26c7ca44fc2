"""Faults around a run folder, through the command line: a second process on a folder in use, a
dataset changed under a run, damaged checkpoints and config.json, a full disk, a --data-dir that is a
file. Each ends in one line (or one warning and a completed run), never a traceback."""
import errno
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from envs.datasets import ensure_dataset
from envs.generate import main as generate_main
from envs.tasks import resolve_task
from harness.config import plan_run
from harness.errors import run_main
from harness.outputs import run_folder_lock
from harness.run import build_parser, main
from tests.cli import run_cli

pytestmark = pytest.mark.slow   # trains through the command line, kills and resumes runs

# The small run of the issue these faults were found with.
T = ['--task', 'pointmaze', '--preset', 'tiny', '--steps', '300', '--updates-per-call', '100', '--checkpoint-every',
     '100', '--eval-every', '0', '--eval-episodes', '2', '--eval-envs', '2', '--video-episodes', '0']


@pytest.fixture(scope='module')
def data_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp('data')
    ensure_dataset(resolve_task('pointmaze'), str(path), episodes=10, seed=0)
    return str(path)


@pytest.fixture(scope='module')
def finished(data_dir, tmp_path_factory):
    """A finished run; tests that resume work on copies of it without its summary.json."""
    run = tmp_path_factory.mktemp('finished') / 'run'
    assert run_main(main, T + ['--data-dir', data_dir, '--out', str(run)]) == 0
    return run


def _cut(finished, to):
    """A copy of the finished run as if stopped after its last checkpoint, before the summary."""
    shutil.copytree(finished, to)
    (to / 'summary.json').unlink()
    return to


def test_a_second_process_on_a_run_folder_in_use_is_refused(data_dir, tmp_path, capsys):
    """Two runs into one --out mixed their logs and overwrote each other's checkpoints, and two --resume
    crashed on each other's temporary files: now, while `python -m harness.run` trains into a folder,
    a new run and a --resume there are refused in one line; SIGKILLed, it leaves no stale lock."""
    run = tmp_path / 'run'
    first = subprocess.Popen([sys.executable, '-m', 'harness.run', *T, '--seed', '0', '--data-dir', data_dir,
                              '--out', str(run)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 120
        while first.poll() is None and time.time() < deadline and not (run / 'config.json').is_file():
            time.sleep(0.05)
        assert first.poll() is None, 'the first run ended before the test could start a second one'
        for argv in (T + ['--seed', '7', '--data-dir', data_dir, '--out', str(run)], ['--resume', str(run)]):
            status, err = run_cli(main, argv, capsys)
            assert status == 2 and err.count('\n') == 1, err
            assert f'{run} is in use by another run (process {first.pid} ' in err and f'--resume {run}' in err
    finally:
        first.kill()
        first.wait()
    assert run_main(main, ['--resume', str(run)]) == 0
    assert json.loads((run / 'config.json').read_text())['seeds'] == [0]
    assert {json.loads(line)['seed'] for line in (run / 'metrics.jsonl').read_text().splitlines()} == {0}


def test_a_run_that_starts_while_another_holds_the_folder_is_refused(data_dir, tmp_path, capsys):
    """Two runs started at once both pass the planning checks; the lock taken when training starts
    refuses the second before it writes anything."""
    run = tmp_path / 'run'
    plan_run(build_parser().parse_args(T + ['--data-dir', data_dir, '--out', str(run)]))
    with run_folder_lock(run):
        status, err = run_cli(main, T + ['--data-dir', data_dir, '--out', str(run)], capsys)
    assert status == 2 and err.count('\n') == 1 and 'is in use by another run' in err
    assert sorted(p.name for p in run.iterdir()) == ['.lock']


def test_resume_refuses_a_dataset_changed_under_the_run(finished, data_dir, tmp_path, capsys):
    """The dataset regenerated with another seed under a cut run: --resume trained on with `changed: []`;
    now config.json records the dataset's sha256 and --resume refuses another file in one line."""
    other_data = tmp_path / 'data'
    assert generate_main(['pointmaze-medium-navigate-v0', '--episodes', '10', '--seed', '1', '--data-dir',
                          str(other_data)]) == 0
    run = _cut(finished, tmp_path / 'run')
    config = json.loads((run / 'config.json').read_text())
    assert len(config['dataset_sha256']) == 64
    (run / 'config.json').write_text(json.dumps({**config, 'data_dir': str(other_data)}))
    capsys.readouterr()
    status, err = run_cli(main, ['--resume', str(run)], capsys)
    assert status == 2 and err.count('\n') == 1, err
    assert 'dataset pointmaze-medium-navigate-v0' in err and 'changed since the run started' in err
    assert not (run / 'summary.json').exists()


def test_a_damaged_newest_meta_json_is_skipped_with_one_warning(finished, tmp_path, capfd):
    """`truncate -s 100` or `{garbage` in the newest meta.json blocked --resume while the checkpoint
    before it was intact; now it is skipped with one warning and nothing else on stderr (no orbax or
    asyncio tracebacks), and the run completes from the checkpoint before."""
    run = _cut(finished, tmp_path / 'run')
    newest = run / 'checkpoints' / 'step_000000300'
    os.truncate(newest / 'meta.json', 100)
    (run / 'checkpoints' / 'step_000000200' / 'state' / 'manifest.ocdbt').write_bytes(b'{garbage')
    capfd.readouterr()
    assert run_main(main, ['--resume', str(run)]) == 0
    err = capfd.readouterr().err.splitlines()
    assert [line.split(' (')[0] for line in err if not line.startswith('measured')] == [
        f'warning: checkpoint {newest} is damaged', f'warning: checkpoint {run}/checkpoints/step_000000200 is damaged']
    assert json.loads((run / 'config.json').read_text())['resumed'][-1]['from_step'] == 100
    assert json.loads((run / 'summary.json').read_text())['results']


def test_with_every_checkpoint_damaged_the_line_says_what_to_do(finished, tmp_path, capfd):
    run = _cut(finished, tmp_path / 'run')
    for meta in (run / 'checkpoints').glob('step_*/meta.json'):
        meta.write_text('{garbage')
    capfd.readouterr()
    assert run_main(main, ['--resume', str(run)]) == 2
    lines = capfd.readouterr().err.splitlines()
    assert len([line for line in lines if line.startswith('warning: checkpoint')]) == 3
    assert lines[-1].startswith(f'error: --resume {run}: every checkpoint in {run}/checkpoints is damaged; remove')
    assert f'--resume {run}' in lines[-1].split('remove')[1] and 'new --out' in lines[-1]


def test_a_damaged_config_json_is_one_line(finished, tmp_path, capsys):
    run = _cut(finished, tmp_path / 'run')
    os.truncate(run / 'config.json', 100)
    status, err = run_cli(main, ['--resume', str(run)], capsys)
    assert status == 2 and err.count('\n') == 1 and f'{run}/config.json is damaged (JSONDecodeError' in err, err


def test_a_data_dir_that_is_a_file_is_one_line(tmp_path, capsys):
    blocker = tmp_path / 'file'
    blocker.write_text('x')
    status, err = run_cli(main, T + ['--data-dir', str(blocker), '--out', str(tmp_path / 'run')], capsys)
    assert status == 2 and err.count('\n') == 1 and f'--data-dir {blocker}: {blocker} is a file, not a folder' in err
    assert not (tmp_path / 'run').exists()


def test_a_full_disk_at_the_start_says_to_run_the_same_command_again(data_dir, tmp_path, monkeypatch, capsys):
    """The disk full when config.json is written: the line said --resume, which said 'not a run folder',
    while the original command said 'already holds files'. Now it names the same command, which works."""
    argv = T + ['--data-dir', data_dir, '--out', str(tmp_path / 'run')]
    write_text = Path.write_text

    def full_disk(path, text, *args, **kwargs):
        if path.name.startswith('.config.tmp-'):
            write_text(path, text[: len(text) // 2], *args, **kwargs)
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
        return write_text(path, text, *args, **kwargs)

    monkeypatch.setattr(Path, 'write_text', full_disk)
    status, err = run_cli(main, argv, capsys)
    assert status == 2 and err.count('\n') == 1, err
    assert err.startswith('error: No space left on device writing') and 'then run the same command again' in err
    assert not [p for p in (tmp_path / 'run').rglob('*') if p.is_file() and p.name != '.lock']
    monkeypatch.undo()
    assert plan_run(build_parser().parse_args(argv)).mode == 'train'


def test_a_full_disk_while_checkpointing_is_one_line_and_resume_finishes_the_run(finished, data_dir, tmp_path,
                                                                               monkeypatch, capfd):
    """orbax's RESOURCE_EXHAUSTED at the second checkpoint: 1-56 tracebacks and sometimes no error line
    before; now one line naming --resume, and --resume ends with the uninterrupted run's parameters."""
    import orbax.checkpoint as ocp

    run = tmp_path / 'run'
    save, wait = ocp.StandardCheckpointer.save, ocp.StandardCheckpointer.wait_until_finished
    saving = []
    failures = [ValueError('RESOURCE_EXHAUSTED: Error writing local file: [OS error 28: No space left on device]')]

    def remember_where(self, directory, *args, **kwargs):
        saving.append(str(directory))
        return save(self, directory, *args, **kwargs)

    def full_disk_at_the_second_save(self):
        wait(self)
        if saving and '.tmp-step_000000200-' in saving[-1] and failures:
            raise failures.pop()

    monkeypatch.setattr(ocp.StandardCheckpointer, 'save', remember_where)
    monkeypatch.setattr(ocp.StandardCheckpointer, 'wait_until_finished', full_disk_at_the_second_save)
    capfd.readouterr()
    assert run_main(main, T + ['--data-dir', data_dir, '--out', str(run)]) == 2
    err = capfd.readouterr().err.splitlines()
    assert [line for line in err if not line.startswith('measured')] == [
        f'error: No space left on device writing {run}/checkpoints/.tmp-step_000000200-{os.getpid()}/state; free some '
        f'space, then continue with --resume {run} (nothing half-written is ever loaded)']
    assert sorted(p.name for p in (run / 'checkpoints').iterdir()) == ['step_000000100']
    monkeypatch.undo()
    assert run_main(main, ['--resume', str(run)]) == 0
    assert (json.loads((run / 'summary.json').read_text())['results'] ==
            json.loads((finished / 'summary.json').read_text())['results'])


def test_ctrl_c_once_the_command_is_over_prints_nothing_more(tmp_path):
    """The interpreter's shutdown after a command (JAX's exit handler clears its caches) printed a
    KeyboardInterrupt traceback when Ctrl-C came then; once run_main, called as the program, has returned
    it is ignored."""
    script = ('import os, signal, atexit, jax.numpy as jnp\n'
              'from harness.errors import run_main\n'
              'atexit.register(lambda: os.kill(os.getpid(), signal.SIGINT))\n'   # runs after run_main's handler
              'run_main(lambda argv: int(jnp.zeros(1).sum()))\n')
    done = subprocess.run([sys.executable, '-c', script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and done.stderr == '', done.stderr
    interrupted = subprocess.run([sys.executable, '-c', script.replace('run_main(', 'print(')], capture_output=True,
                                 text=True, timeout=120)
    assert interrupted.returncode != 0 or 'KeyboardInterrupt' in interrupted.stderr
