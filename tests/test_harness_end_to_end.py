"""The command line end to end on a tiny pointmaze dataset: train -> video + plots -> β sweep; resume."""
import json
import shutil
import subprocess
import sys
import time

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest

from envs.datasets import ensure_dataset
from envs.tasks import resolve_task
from harness.card import main as card_main
from harness.checkpoints import CARD_FILE, PARAMS_FILE, find_checkpoint, list_checkpoints
from harness.errors import run_main
from harness.outputs import run_folder_lock
from harness.run import main
from tests.cli import run_cli

pytestmark = pytest.mark.slow   # trains through the command line, kills and resumes runs

COMMON = ['--task', 'pointmaze', '--preset', 'tiny', '--eval-episodes', '2', '--eval-envs', '2']
RESUMABLE = COMMON + ['--steps', '300', '--updates-per-call', '100', '--checkpoint-every', '100', '--eval-every', '100',
                      '--video-episodes', '0']


@pytest.fixture(scope='module')
def data_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp('data')
    ensure_dataset(resolve_task('pointmaze'), str(path), episodes=10, seed=0)
    return str(path)


def test_train_then_sweep_writes_the_documented_files(data_dir, tmp_path, capsys):
    run = tmp_path / 'run'
    assert run_main(main, COMMON + ['--steps', '300', '--video-episodes', '1', '--frame-skip', '200',
                                    '--data-dir', data_dir, '--out', str(run)]) == 0
    for name in ('config.json', 'metrics.jsonl', 'eval.jsonl', 'summary.json', 'plots/guidance_norms.png',
                 'plots/training.png', 'videos/beta0.3-seed0-ep0.mp4', 'eval/guidance-step300-beta0.3-seed0.npz'):
        assert (run / name).is_file(), name
    summary = json.loads((run / 'summary.json').read_text())
    assert [r['beta'] for r in summary['results']] == [0.3]
    episodes = [json.loads(line) for line in (run / 'eval.jsonl').read_text().splitlines()]
    assert len(episodes) == 2 and {'success', 'return', 'length', 'beta', 'seed'} <= set(episodes[0])
    assert summary['results'][0]['success_rate'] == np.mean([e['success'] for e in episodes])
    trace = np.load(run / 'eval' / 'guidance-step300-beta0.3-seed0.npz')
    assert trace['guidance_norm'].shape == (sum(e['length'] for e in episodes), 10)

    sweep = tmp_path / 'sweep'
    assert run_main(main, ['--checkpoint', str(run), '--betas', '0,1', '--eval-episodes', '2', '--eval-envs', '2',
                           '--video-episodes', '0', '--guidance-at', 'denoised', '--guidance-scale', 'relative',
                           '--grad-clip', '5', '--flow-steps', '4', '--out', str(sweep)]) == 0
    assert (sweep / 'sweep.md').read_text().count('\n') == 4
    assert (sweep / 'plots' / 'success_vs_beta.png').is_file()
    summary = json.loads((sweep / 'summary.json').read_text())
    assert [r['beta'] for r in summary['results']] == [0.0, 1.0]
    # Every sampler knob is recorded, and acting used the requested number of flow steps.
    sampler = {'guidance_at': 'denoised', 'guidance_scale': 'relative', 'grad_clip': 5.0, 'flow_steps': 4,
               'beta_schedule': 'constant', 'trust_ratio': None, 'guidance_q_agg': 'mean'}
    assert summary['sampler'] == sampler
    assert json.loads((sweep / 'config.json').read_text())['sampler'] == sampler
    assert np.load(sweep / 'eval' / 'guidance-step300-beta1-seed0.npz')['guidance_norm'].shape[1] == 4
    # β is chosen on selection episodes whose start states are disjoint from the held-out ones.
    rows = [json.loads(line) for line in (sweep / 'eval.jsonl').read_text().splitlines()]
    selection = [r for r in rows if r['phase'] == 'selection']
    held_out = [r for r in rows if r['phase'] == 'sweep']
    assert len(selection) == len(held_out) == 4
    assert not {r['env_seed'] for r in selection} & {r['env_seed'] for r in held_out}
    by_beta = {r['beta']: r for r in summary['results']}
    for beta in (0.0, 1.0):
        assert by_beta[beta]['selection_success_rate'] == np.mean([r['success'] for r in selection if r['beta'] == beta])
        assert by_beta[beta]['success_rate'] == np.mean([r['success'] for r in held_out if r['beta'] == beta])
    assert summary['best_beta'] == max((0.0, 1.0), key=lambda b: (by_beta[b]['selection_success_rate'], -b))
    # A second sweep into a folder that a sweep holds is refused in one line.
    capsys.readouterr()
    with run_folder_lock(tmp_path / 'busy', sweep=True):
        status, err = run_cli(main, ['--checkpoint', str(run), '--eval-episodes', '1', '--video-episodes', '0',
                                     '--out', str(tmp_path / 'busy')], capsys)
    assert status == 2 and 'in use by another β sweep' in err and err.count('\n') == 1
    # A sweep is no training run: --resume refuses it in one line and leaves its results as they are.
    before = (sweep / 'summary.json').read_bytes()
    status, err = run_cli(main, ['--resume', str(sweep)], capsys)
    assert status == 2 and 'a β sweep of' in err and err.count('\n') == 1
    assert (sweep / 'summary.json').read_bytes() == before

    # --held-out selected: every β on the selection episodes, then held-out ones at β = 0 and the choice only.
    chosen = tmp_path / 'chosen'
    assert run_main(main, ['--checkpoint', str(run), '--betas', '0,1,3', '--eval-episodes', '2', '--eval-envs', '2',
                           '--selection-episodes', '1', '--held-out', 'selected', '--video-episodes', '0',
                           '--out', str(chosen)]) == 0
    rows = [json.loads(line) for line in (chosen / 'eval.jsonl').read_text().splitlines()]
    selection = {r['beta']: r['success'] for r in rows if r['phase'] == 'selection'}
    best = min(selection, key=lambda b: (-selection[b], b))
    held = sorted({0.0, best})
    assert sorted(selection) == [0.0, 1.0, 3.0]
    assert sorted({r['beta'] for r in rows if r['phase'] == 'sweep'}) == held
    summary = json.loads((chosen / 'summary.json').read_text())
    assert [r['beta'] for r in summary['results']] == held and summary['best_beta'] == best
    # The βs only the selection episodes scored stay on record, in the summary and the table.
    others = sorted(set(selection) - set(held))
    assert [r['beta'] for r in summary['selection_only']] == others and '--held-out selected' in summary['best_beta_selection']
    assert (chosen / 'sweep.md').read_text().count('(selection only)') == len(others)
    assert json.loads((chosen / 'config.json').read_text())['held_out'] == 'selected'

    # Shipping: one seed's parameters and a card; the export evaluates exactly like the trained run.
    assert run_main(card_main, [str(run), '--seed', '0', '--name', 'tiny', '--betas', '0,1', '--eval-episodes', '2',
                                '--root', str(tmp_path / 'shipped')]) == 0
    shipped = tmp_path / 'shipped' / 'tiny'
    assert len(list((tmp_path / 'sweeps').glob('card-tiny-*/index.html'))) == 1, 'the evaluation page it names is kept'
    card = json.loads((shipped / CARD_FILE).read_text())
    assert (shipped / PARAMS_FILE).stat().st_size < 2**20
    assert card['seeds'] == [0] and card['updates'] == 300 and card['task'] == 'pointmaze'
    assert card['dataset']['episodes'] == 10 and card['dataset']['generator_seed'] == 0
    assert set(card['success']) == {'0', f"{card['best_beta']:g}"} and card['training_command']
    assert card['reward'] == 'dense' and card['success_timing'] == 'post'
    again = tmp_path / 'again'
    argv = card['evaluation']['argv'] + ['--video-episodes', '0', '--out', str(again)]
    assert run_main(main, argv) == 0
    for r in json.loads((again / 'summary.json').read_text())['results']:
        assert r['success_rate'] == card['success'][f"{r['beta']:g}"]['rate']
    # --refresh measures the card again with its own settings and rewrites only what it measures.
    stale = {**card, 'success': {k: {**v, 'rate': -1.0} for k, v in card['success'].items()}}
    (shipped / CARD_FILE).write_text(json.dumps(stale))
    assert run_main(card_main, [str(shipped), '--refresh']) == 0
    refreshed = json.loads((shipped / CARD_FILE).read_text())
    assert refreshed['success'] == card['success'] and refreshed['sweep'] == card['sweep']
    assert refreshed['evaluation']['argv'] == card['evaluation']['argv']
    assert refreshed['training_command'] == card['training_command']


def test_a_chunked_agent_trains_acts_in_chunks_and_ships_with_its_horizon(data_dir, tmp_path):
    """--horizon 3 end to end: recorded in config.json, summary.json and the card, acted in chunks (one
    trace row per env step all the same), and the shipped export evaluates exactly as the run did."""
    run = tmp_path / 'run'
    assert run_main(main, COMMON + ['--steps', '200', '--horizon', '3', '--video-episodes', '0', '--data-dir', data_dir,
                                    '--out', str(run)]) == 0
    assert json.loads((run / 'config.json').read_text())['config']['horizon'] == 3
    assert json.loads((run / 'summary.json').read_text())['horizon'] == 3
    episodes = [json.loads(line) for line in (run / 'eval.jsonl').read_text().splitlines()]
    trace = np.load(run / 'eval' / 'guidance-step200-beta0.3-seed0.npz')
    assert len(trace['step']) == sum(e['length'] for e in episodes)
    # A chunk's norms are those of its one sample: equal on the rows of its h env steps.
    rows = np.lexsort((trace['step'], trace['episode']))
    norms, steps = trace['guidance_norm'][rows], trace['step'][rows]
    inside = steps % 3 != 0
    np.testing.assert_array_equal(norms[inside], norms[np.flatnonzero(inside) - 1])
    assert run_main(card_main, [str(run), '--seed', '0', '--name', 'chunked', '--betas', '0,1', '--eval-episodes', '2',
                                '--root', str(tmp_path / 'shipped')]) == 0
    card = json.loads((tmp_path / 'shipped' / 'chunked' / CARD_FILE).read_text())
    assert card['horizon'] == 3
    again = tmp_path / 'again'
    assert run_main(main, card['evaluation']['argv'] + ['--video-episodes', '0', '--out', str(again)]) == 0
    for r in json.loads((again / 'summary.json').read_text())['results']:
        assert r['success_rate'] == card['success'][f"{r['beta']:g}"]['rate']


@pytest.fixture(scope='module')
def straight(data_dir, tmp_path_factory):
    """The uninterrupted run that every interrupted one must reproduce, trained once for both resume
    tests (they work on copies): a checkpoint and a periodic evaluation after every chunk, so that
    there are several places to stop and resume at."""
    run = tmp_path_factory.mktemp('straight') / 'run'
    assert run_main(main, RESUMABLE + ['--data-dir', data_dir, '--out', str(run)]) == 0
    return run


def _state(checkpoint):
    """The training state saved in a checkpoint folder."""
    return ocp.StandardCheckpointer().restore((checkpoint / 'state').resolve())


def _same(a, b) -> bool:
    """Two saved training states are equal bit for bit (resuming must not change a single update)."""
    return all(jax.tree.leaves(jax.tree.map(np.array_equal, a, b)))


def test_resume_from_the_command_line_matches_an_uninterrupted_run(straight, tmp_path, capsys):
    final = _state(find_checkpoint(straight))
    at_step = dict(list_checkpoints(straight / 'checkpoints'))

    # Killed before its first checkpoint: --resume trains it from update 0 in the same folder (to 100
    # here). Resumed again with a larger --steps, it goes on to the uninterrupted run's parameters,
    # with one metrics row per chunk.
    resumed = tmp_path / 'resumed'
    resumed.mkdir()
    (resumed / 'config.json').write_text((straight / 'config.json').read_text())
    assert run_main(main, ['--resume', str(resumed), '--steps', '100']) == 0
    assert _same(_state(find_checkpoint(resumed)), _state(at_step[100]))
    assert run_main(main, ['--resume', str(resumed), '--steps', '300']) == 0
    assert _same(_state(find_checkpoint(resumed)), final)
    steps = [json.loads(line)['step'] for line in (resumed / 'metrics.jsonl').read_text().splitlines()]
    assert steps == [100, 200, 300]

    # Killed during the periodic evaluation after the checkpoint at 200, and the newest checkpoint
    # damaged too: the damaged one is skipped with one warning, the run continues from the one
    # before, --resume evaluates at 200 again, and the logs end up as the uninterrupted run's.
    killed = tmp_path / 'killed'
    shutil.copytree(straight, killed)
    newest = find_checkpoint(killed)
    biggest = max((p for p in (newest / 'state').rglob('*') if p.is_file()), key=lambda p: p.stat().st_size)
    biggest.write_bytes(biggest.read_bytes()[: biggest.stat().st_size // 2])
    (killed / 'summary.json').unlink()
    rows = (killed / 'eval.jsonl').read_text().splitlines()
    (killed / 'eval.jsonl').write_text(''.join(line + '\n' for line in rows if json.loads(line)['step'] < 200))
    assert run_main(main, ['--resume', str(killed)]) == 0
    assert f'checkpoint {newest} is damaged' in capsys.readouterr().err
    assert (killed / 'eval.jsonl').read_text() == (straight / 'eval.jsonl').read_text()
    assert (killed / 'metrics.jsonl').read_text().count('\n') == 3
    assert _same(_state(find_checkpoint(killed)), final)

    # Stopped after the last checkpoint, before the summary: --resume runs the final evaluation again.
    stopped = tmp_path / 'stopped'
    shutil.copytree(straight, stopped)
    (stopped / 'summary.json').unlink()
    assert run_main(main, ['--resume', str(stopped)]) == 0
    again = json.loads((stopped / 'summary.json').read_text())
    assert again['results'] == json.loads((straight / 'summary.json').read_text())['results']
    assert (stopped / 'eval.jsonl').read_text() == (straight / 'eval.jsonl').read_text(), \
        'the final evaluation is replaced, not appended to'
    status, err = run_cli(main, ['--resume', str(stopped)], capsys)
    assert status == 2 and 'already trained 300 of 300 updates and evaluated' in err


def _comparable(run):
    """What an interrupted-and-resumed run must share with an uninterrupted one (timings excluded)."""
    metrics = [{k: v for k, v in json.loads(line).items() if k != 'updates_per_s'}
               for line in (run / 'metrics.jsonl').read_text().splitlines()]
    summary = json.loads((run / 'summary.json').read_text())
    return metrics, (run / 'eval.jsonl').read_text(), summary['results']


def _kill_when(argv, moment) -> None:
    """Run `python -m harness.run argv` and SIGKILL it as soon as `moment()` holds (or it has ended)."""
    proc = subprocess.Popen([sys.executable, '-m', 'harness.run', *argv],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        while proc.poll() is None and not moment():
            time.sleep(0.01)
    finally:
        proc.kill()
        proc.wait()


def test_killed_twice_then_resumed_gives_the_uninterrupted_run(straight, data_dir, tmp_path):
    """Fault injection: SIGKILL a real `python -m harness.run` as it starts writing its first
    checkpoint, then SIGKILL the real `--resume` that follows once its last checkpoint is written
    (in the final evaluation), then --resume again; the run ends with the uninterrupted run's logs,
    results and parameters. These are states that only a real kill leaves (a checkpoint's temporary
    folder and a metrics row past the last checkpoint, a resumed run's own leftovers); the other
    moments to stop at are built file by file in the test above, which is cheaper than a process each."""
    run = tmp_path / 'killed'
    checkpoints = run / 'checkpoints'
    _kill_when(RESUMABLE + ['--data-dir', data_dir, '--out', str(run)],
               lambda: checkpoints.is_dir() and any(checkpoints.iterdir()))
    _kill_when(['--resume', str(run)], lambda: 300 in dict(list_checkpoints(checkpoints)))
    if not (run / 'summary.json').is_file():    # unless the kill came after the run had finished
        assert run_main(main, ['--resume', str(run)]) == 0
    assert _comparable(run) == _comparable(straight)
    assert _same(_state(find_checkpoint(run)), _state(find_checkpoint(straight)))
