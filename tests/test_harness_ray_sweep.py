"""python -m harness.sweep on a real local Ray instance with 2 CPUs: a tiny sweep end to end (training
jobs, a β sweep pinned to its checkpoint's node, the report), a job whose worker dies is run again and
resumes from its checkpoint, a rerun of the same command runs nothing, and --wandb reaches every job."""
import csv
import json
import os
import re
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import ray

from envs.datasets import ensure_dataset
from envs.tasks import resolve_task
from harness.report import iqm
from harness.sweep import Job, build_parser, connect, job_env, main, plan_jobs, run_job
from harness.sweep_report import Arm, combine_seed_groups, report_markdown
from tests.cli import run_cli

REPO = Path(__file__).resolve().parent.parent
FAKE_WANDB = REPO / 'tests' / 'fake_wandb'


def crash_once_after_a_checkpoint(job: Job) -> dict:
    """The first attempt of the QFQL training job loses its worker process as soon as a checkpoint is on
    disk, as a killed machine would; every other attempt and job runs as usual."""
    marker = Path(job.out).parent.parent / f'{job.name}.crashed'
    if job.kind == 'train' and job.agent == 'qfql' and not marker.exists():
        marker.parent.mkdir(parents=True, exist_ok=True)   # the job may start before anything made the folder
        marker.touch()

        def die_after_checkpoint():
            while not list((Path(job.out) / 'checkpoints').glob('step_*')):
                time.sleep(0.02)
            os._exit(1)
        threading.Thread(target=die_after_checkpoint, daemon=True).start()
    return run_job(job)


def must_not_run(job: Job) -> dict:
    raise AssertionError(f'{job.name} ran again')


@pytest.fixture(scope='module')
def local_ray():
    """Ray started as the sweep starts it, with 2 CPUs, its workers importing the fake wandb (and this
    module, for the job functions above); every sweep of the module runs on it."""
    with pytest.MonkeyPatch.context() as patch:
        path = os.pathsep.join(filter(None, [str(FAKE_WANDB), str(REPO), os.environ.get('PYTHONPATH')]))
        patch.setenv('PYTHONPATH', path)
        patch.setenv('WANDB_MODE', 'offline')
        patch.syspath_prepend(str(FAKE_WANDB))
        connect(ray, build_parser().parse_args(['--tasks', 'pointmaze', '--num-cpus', '2', '--out', 'unused']))
        yield
        ray.shutdown()


def _fake_wandb_calls(folder: Path) -> list[dict]:
    return [json.loads(line) for line in (folder / 'fake-wandb.jsonl').read_text().splitlines()]


@pytest.mark.slow
def test_sweep_end_to_end_retries_a_lost_worker_and_a_rerun_runs_nothing(local_ray, tmp_path, capsys):
    data = tmp_path / 'data'
    ensure_dataset(resolve_task('pointmaze'), str(data), episodes=10, seed=0)
    out = tmp_path / 'sweep'
    argv = ['--tasks', 'pointmaze', '--agents', 'qfql,fql', '--seeds', '0,1', '--preset', 'tiny', '--steps', '200',
            '--betas', '0,1', '--eval-episodes', '2', '--selection-episodes', '2', '--eval-envs', '1',
            '--data-dir', str(data), '--wandb', 'qfql-tests', '--out', str(out)]
    assert main(argv, job_fn=crash_once_after_a_checkpoint) == 0
    printed = capsys.readouterr().out
    assert 'failed  pointmaze-qfql-s0_1 after' in printed and 'retrying' in printed
    for name in ('pointmaze-qfql-s0_1', 'pointmaze-fql-s0_1', 'pointmaze-qfql-s0_1-betas'):
        assert f'done    {name} in' in printed

    # The lost worker's job ran twice; the second attempt resumed the run from its checkpoint.
    trained = json.loads((out / 'results' / 'pointmaze-qfql-s0_1.json').read_text())
    assert trained['attempts'] == 2
    assert json.loads((out / 'runs' / 'pointmaze-qfql-s0_1' / 'config.json').read_text())['resumed']

    # The report holds what the β sweep returned: both βs, one selected on the selection episodes.
    swept = json.loads((out / 'results' / 'pointmaze-qfql-s0_1-betas.json').read_text())['summary']
    rows = list(csv.DictReader((out / 'report.csv').open()))
    qfql = {float(r['beta']): r for r in rows if r['agent'] == 'qfql'}
    assert sorted(qfql) == [0.0, 1.0] and sum(int(r['selected']) for r in qfql.values()) == 1
    assert float(qfql[swept['best_beta']]['selected']) == 1
    for result in swept['results']:
        row = qfql[result['beta']]
        assert float(row['iqm']) == pytest.approx(iqm(np.array(result['per_seed_success'])), abs=1e-6)
        assert float(row['selection_success_rate']) == pytest.approx(result['selection_success_rate'], abs=1e-6)
        assert row['seeds'] == '2' and row['episodes_per_seed'] == '2'
    assert [r['agent'] for r in rows].count('fql') == 1
    report = (out / 'report.md').read_text()
    assert '(selected)' in report and "Beside the paper's Table 1" in report and 'not in Table 1' in report
    assert (out / 'success_vs_beta.png').stat().st_size > 0
    # Every job folder on this disk is linked to its own page, by a link that resolves from the report.
    links = re.findall(r'\]\(([^)]+index\.html)\)', report)
    assert len(links) == 3 and all((out / link).is_file() for link in links)

    # --wandb reached every job: training metrics, the evaluations and the summary, offline.
    calls = _fake_wandb_calls(out / 'runs' / 'pointmaze-qfql-s0_1')
    assert {c['mode'] for c in calls if c['call'] == 'init'} == {'offline'} and calls[-1]['call'] == 'finish'
    logged = {k for c in calls if c['call'] == 'log' for k in c['data']}
    assert {'train/critic/loss', 'final/success@beta0.3'} <= logged
    sweep_calls = _fake_wandb_calls(out / 'sweeps' / 'pointmaze-qfql-s0_1')
    assert {'sweep/success@beta0', 'sweep/success@beta1'} <= {k for c in sweep_calls if c['call'] == 'log'
                                                              for k in c['data']}

    # The same command again: every job has its result, so none is submitted; the report is the same.
    report_csv = (out / 'report.csv').read_text()
    assert main(argv, job_fn=must_not_run) == 0
    printed = capsys.readouterr().out
    assert '3 already done' in printed and 'start ' not in printed
    assert (out / 'report.csv').read_text() == report_csv


def test_jobs_split_seeds_and_combine_them_back():
    args = build_parser().parse_args(['--tasks', 'scene', '--seeds', '0-3', '--seeds-per-job', '2', '--betas', '0,1',
                                      '--preset', 'small', '--horizon', '5', '--out', 'unused'])
    jobs = plan_jobs(args, Path('/sweep'))
    assert [j.name for j in jobs] == ['scene-qfql-s0_1', 'scene-qfql-s0_1-betas', 'scene-qfql-s2_3',
                                      'scene-qfql-s2_3-betas', 'scene-fql-s0_1', 'scene-fql-s2_3']
    sweep = jobs[1]
    assert sweep.needs == 'scene-qfql-s0_1' and sweep.argv[:4] == ('--checkpoint', '/sweep/runs/scene-qfql-s0_1',
                                                                   '--betas', '0,1')
    assert '--betas' not in jobs[4].argv and ('--preset', 'small', '--horizon', '5') == jobs[4].argv[6:10]
    assert '--horizon' not in sweep.argv  # a β sweep acts with the horizon its checkpoint was trained with
    # Two groups of two seeds: one result per β over all four seeds.
    groups = [{'results': [{'beta': 0.0, 'per_seed_success': [0.0, 0.5], 'seeds': [0, 1], 'episodes_per_seed': 4,
                            'selection_success_rate': 0.25}]},
              {'results': [{'beta': 0.0, 'per_seed_success': [1.0, 1.0], 'seeds': [2, 3], 'episodes_per_seed': 4,
                            'selection_success_rate': 1.0}]}]
    [combined] = combine_seed_groups(groups)
    assert combined['seeds'] == [0, 1, 2, 3] and combined['success_rate'] == 0.625
    assert combined['iqm'] == iqm(np.array([0.0, 0.5, 1.0, 1.0])) and combined['selection_success_rate'] == 0.625


def test_across_tasks_names_the_agents_it_cannot_pool():
    def arm(task, agent, per_seed):
        result = {'beta': 0.0, 'success_rate': float(np.mean(per_seed)), 'iqm': iqm(np.array(per_seed)),
                  'iqm_ci95': [0.0, 1.0], 'per_seed_success': per_seed, 'seeds': list(range(len(per_seed))),
                  'episodes_per_seed': 4}
        return Arm(task, task, agent, [result], 0.0)
    arms = [arm('cube', 'qfql', [0.5, 0.75]), arm('scene', 'qfql', [0.25, 0.5]),
            arm('cube', 'fql', [0.5, 0.75]), arm('scene', 'fql', [0.25, 0.5, 1.0])]
    rows = report_markdown(arms, 'header').split('## Across tasks')[1].splitlines()
    assert [r.split(' | ')[0] for r in rows if r.startswith('| fql') or r.startswith('| qfql')] == ['| fql', '| qfql']
    assert any(r.startswith('| fql') and 'unequal seed counts (cube 2, scene 3)' in r for r in rows)
    assert any(r.startswith('| qfql | 2 | 2 |') for r in rows)


def test_gpu_settings_reach_jax():
    assert job_env(0, cluster_gpus=0) == {}
    assert job_env(0, cluster_gpus=8) == {'JAX_PLATFORMS': 'cpu'}          # a CPU job must not take a GPU
    assert job_env(0.5, cluster_gpus=8) == {'XLA_PYTHON_CLIENT_MEM_FRACTION': '0.45'}
    assert job_env(1, cluster_gpus=8) == {}


def test_without_ray_one_line_names_the_extra(capsys, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, 'ray', None)        # `import ray` raises ImportError
    status, err = run_cli(main, ['--tasks', 'pointmaze', '--betas', '0,1', '--out', str(tmp_path / 'sweep')], capsys)
    assert status == 2 and err.count('\n') == 1 and "pip install -e '.[cluster]'" in err
