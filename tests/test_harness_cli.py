"""Bad input: one `error:` line, exit status 2, nothing written."""
import dataclasses
import json
import signal
import subprocess
import sys
from types import SimpleNamespace

import jax.numpy as jnp
import pytest

from agents import AGENTS, PRESETS, AgentConfig, QFQLAgent
from agents.flags import flag_fields, flag_name
from agents.training import create_agents
from envs.tasks import resolve_task
from harness.card import main as card_main
from harness.checkpoints import CARD_FILE, PARAMS_FILE, save_checkpoint
from harness.config import plan_run
from harness.errors import UsageError
from harness.files import write_json_atomic
from harness.outputs import read_jsonl
from harness.run import build_parser, execute, main
from harness.train import announce_eta
from tests.cli import run_cli


@pytest.mark.parametrize('argv, needle', [
    (['--task', 'pointmase'], 'pointmaze'),
    (['--task', 'pointmaze', '--beta', '-1'], 'β'),
    (['--task', 'pointmaze', '--beta', 'abc'], 'β'),
    (['--task', 'pointmaze', '--betas', '0,nan'], 'β'),
    (['--task', 'pointmaze', '--steps', '0'], 'positive integer'),
    (['--task', 'pointmaze', '--target-flow-steps', '0'], 'positive integer'),
    (['--task', 'pointmaze', '--agent', 'fql', '--target-flow-steps', '5'], 'QFQL options'),
    (['--task', 'pointmaze', '--agent', 'fql', '--betas', '0,1'], 'FQL acts with its one-step policy'),
    (['--task', 'pointmaze', '--agent', 'fql', '--critic', 'expectile'], 'QFQL options'),
    (['--task', 'pointmaze', '--expectile', '1.5'], 'expectile must be in (0, 1)'),
    (['--task', 'pointmaze', '--grad-clip', '0'], 'number > 0'),
    (['--task', 'pointmaze', '--seeds', '3-1'], "write it low-high, e.g. '1-3'"),
    (['--task', 'pointmaze', '--trust-ratio', 'inf'], 'finite number > 0'),
    (['--task', 'pointmaze', '--trust-ratio', '0'], 'for no guidance at all, pass --beta 0'),
    (['--task', 'pointmaze', '--betas', '0,,1'], "'0,,1' has an empty entry"),
    (['--task', 'pointmaze', '--betas', '0,1,'], "'0,1,' has an empty entry"),
    (['--task', 'pointmaze', '--seeds', '0,,1'], "'0,,1' has an empty entry"),
    (['--task', 'pointmaze', '--guidance-at', 'clean'], 'guidance-at'),
    (['--task', 'pointmaze', '--flow-steps', '0'], 'positive integer'),
    (['--task', 'pointmaze', '--selection-episodes', '-1'], 'integer >= 0'),
    ([], '--task is required'),
])
def test_bad_flags_are_one_line(argv, needle, capsys, tmp_path):
    status, err = run_cli(main, argv + ['--out', str(tmp_path / 'run')], capsys)
    assert status == 2
    assert err.startswith('error:') and err.count('\n') == 1 and needle in err
    assert not (tmp_path / 'run').exists()


def test_agent_flags_reach_the_config(tmp_path):
    args = build_parser().parse_args(['--task', 'pointmaze', '--preset', 'tiny', '--target-action', 'guided',
                                      '--target-flow-steps', '3', '--critic', 'expectile', '--expectile', '0.7',
                                      '--grad-clip', '2', '--out', str(tmp_path / 'run')])
    config = plan_run(args).agent_config
    assert (config.target_action, config.target_flow_steps, config.flow_steps) == ('guided', 3, 10)
    assert (config.critic, config.expectile, config.grad_clip) == ('expectile', 0.7, 2.0)


@pytest.mark.parametrize('task, alpha', [('cube-single', 300.0), ('cube-double-play-singletask-task1-v0', 300.0),
                                         ('scene', 300.0), ('puzzle-3x3-play-singletask-task1-v0', 1000.0),
                                         ('antsoccer', 10.0), ('antmaze-large-diverse', 3.0), ('pointmaze', 10.0)])
def test_fql_alpha_follows_the_task_family(task, alpha, tmp_path):
    args = build_parser().parse_args(['--task', task, '--agent', 'fql', '--out', str(tmp_path / 'run')])
    assert plan_run(args).agent_config.alpha == alpha


def test_reward_labels_cannot_change_after_training(tmp_path, capsys):
    args = build_parser().parse_args(['--task', 'pointmaze', '--reward', 'sparse', '--out', str(tmp_path / 'run')])
    plan = plan_run(args)
    assert plan.reward == 'sparse' and plan.to_json()['reward'] == 'sparse'
    assert plan.success_timing == 'post' and plan.to_json()['success_timing'] == 'post'
    agents = create_agents(QFQLAgent, [0], jnp.zeros((1, 2)), jnp.zeros((1, 2)), PRESETS['tiny'])
    meta = {'task': dataclasses.asdict(resolve_task('pointmaze')), 'agent': 'qfql', 'preset': 'tiny',
            'config': dataclasses.asdict(PRESETS['tiny']), 'seeds': [0], 'beta': 0.3, 'reward': 'dense'}
    save_checkpoint(tmp_path / 'ck' / 'checkpoints', 7, agents, meta)
    status, err = run_cli(main, ['--checkpoint', str(tmp_path / 'ck'), '--reward', 'sparse',
                                 '--out', str(tmp_path / 'sweep')], capsys)
    assert status == 2 and 'trained with dense rewards' in err and err.count('\n') == 1


def test_resume_refuses_training_changes_and_takes_evaluation_changes(tmp_path, capsys):
    run = tmp_path / 'run'
    plan = plan_run(build_parser().parse_args(['--task', 'pointmaze', '--preset', 'tiny', '--steps', '400',
                                               '--out', str(run)]))
    run.mkdir()
    write_json_atomic(run / 'config.json', plan.to_json())
    agents = create_agents(QFQLAgent, [0], jnp.zeros((1, 2)), jnp.zeros((1, 2)), plan.agent_config)
    save_checkpoint(run / 'checkpoints', 250, agents, {'agent': 'qfql'})
    status, err = run_cli(main, ['--resume', str(run), '--preset', 'small', '--seed', '5', '--discount', '0.5',
                                 '--beta', '3'], capsys)
    assert status == 2 and err.count('\n') == 1
    assert '--preset small (trained with tiny)' in err and '--seed/--seeds [5]' in err and '--discount 0.5' in err
    resumed = plan_run(build_parser().parse_args(['--resume', str(run), '--beta', '3', '--eval-episodes', '2',
                                                  '--guidance-at', 'denoised', '--preset', 'tiny']))
    assert (resumed.beta, resumed.eval_episodes, resumed.sampler.guidance_at, resumed.start_step) == (3.0, 2, 'denoised', 250)
    assert resumed.agent_config == plan.agent_config and resumed.seeds == plan.seeds
    assert resumed.evaluation_settings()['eval_episodes'] == 2


def _another_value(field: dataclasses.Field) -> str:
    """Flag text of a valid value other than the field's default."""
    if field.metadata['choices']:
        return next(choice for choice in field.metadata['choices'] if choice != field.default)
    return '2' if field.default in (None, 1) else f'{field.default / 2:g}'


@pytest.mark.parametrize('field', flag_fields(AgentConfig), ids=lambda field: field.name)
def test_every_training_setting_is_a_flag_recorded_in_config_json_that_resume_keeps(field, tmp_path, capsys):
    """The fields of AgentConfig made with agents/flags.py `setting` are the training flags: each reaches
    config.json, and --resume takes the recorded value and refuses another, in one line."""
    agent = next((name for name, agent_class in AGENTS.items() if field.name in agent_class.CONFIG_FIELDS), 'qfql')
    flag, text = flag_name(field.name), _another_value(field)

    def plan_and_record(run, *argv):
        plan = plan_run(build_parser().parse_args(['--task', 'pointmaze', '--preset', 'tiny', '--agent', agent,
                                                   *argv, '--out', str(run)]))
        run.mkdir()
        write_json_atomic(run / 'config.json', plan.to_json())
        return getattr(plan.agent_config, field.name)

    given = plan_and_record(tmp_path / 'given', flag, text)
    default = plan_and_record(tmp_path / 'default')
    assert given != default and json.loads((tmp_path / 'given' / 'config.json').read_text())['config'][field.name] == given
    resumed = plan_run(build_parser().parse_args(['--resume', str(tmp_path / 'given'), flag, text]))
    assert getattr(resumed.agent_config, field.name) == given
    status, err = run_cli(main, ['--resume', str(tmp_path / 'default'), flag, text], capsys)
    assert status == 2 and err.count('\n') == 1
    assert f'would change its training: {flag} {given} (trained with {default}); drop these flags' in err


def test_resume_without_checkpoint(capsys, tmp_path):
    run = tmp_path / 'run'
    run.mkdir()
    (run / 'config.json').write_text('{}')
    status, err = run_cli(main, ['--resume', str(run)], capsys)
    assert status == 2 and 'not a training run' in err and err.count('\n') == 1


def test_unwritable_data_dir(capsys, tmp_path):
    blocker = tmp_path / 'file'
    blocker.write_text('x')
    status, err = run_cli(main, ['--task', 'pointmaze', '--preset', 'tiny', '--data-dir', str(blocker / 'data'),
                                 '--out', str(tmp_path / 'run')], capsys)
    assert status == 2 and err.count('\n') == 1 and 'is a file, not a folder' in err
    assert not (tmp_path / 'run').exists()


def test_unwritable_out(capsys, tmp_path):
    blocker = tmp_path / 'file'
    blocker.write_text('x')
    status, err = run_cli(main, ['--task', 'pointmaze', '--out', str(blocker / 'run')], capsys)
    assert status == 2 and 'not writable' in err


@pytest.mark.slow
def test_checkpoint_of_another_task_fails_before_writing(tmp_path):
    """A checkpoint whose shapes belong to another task: one line from the real entry point, no output folder."""
    cube = resolve_task('cube-single')
    agents = create_agents(QFQLAgent, [0], jnp.zeros((1, 28)), jnp.zeros((1, 5)), PRESETS['tiny'])
    meta = {'task': dataclasses.asdict(cube), 'agent': 'qfql', 'preset': 'tiny',
            'config': dataclasses.asdict(PRESETS['tiny']), 'seeds': [0], 'beta': 0.3}
    save_checkpoint(tmp_path / 'ck' / 'checkpoints', 7, agents, meta)
    out = tmp_path / 'sweep'
    proc = subprocess.run([sys.executable, '-m', 'harness.run', '--checkpoint', str(tmp_path / 'ck'),
                           '--task', 'pointmaze', '--betas', '0,1', '--out', str(out)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2, proc.stderr[-2000:]
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith('error:') and 'does not fit' in lines[0], proc.stderr[-2000:]
    assert not out.exists()


def test_a_card_whose_task_and_env_id_disagree_is_refused(tmp_path):
    """cube-single's tasks share one env shape, so only the metadata can tell which one a card was
    trained on; when its parts disagree, evaluating any of them could be on the wrong task."""
    task2, task1 = resolve_task('cube-single'), resolve_task('cube-single-play-singletask-task1-v0')
    meta = {'agent': 'qfql', 'preset': 'tiny', 'config': dataclasses.asdict(PRESETS['tiny']), 'seeds': [0],
            'step': 7, 'beta': 0.3, 'shapes': {}}
    cases = [('intact', dataclasses.asdict(task2), task2.env_id),
             ('meta', {**dataclasses.asdict(task2), 'env_id': task1.env_id}, task2.env_id),
             ('card', dataclasses.asdict(task1), task2.env_id)]
    for name, saved_task, card_env_id in cases:
        card = tmp_path / name
        card.mkdir()
        (card / PARAMS_FILE).write_bytes(b'')
        write_json_atomic(card / CARD_FILE, {'env_id': card_env_id, 'meta': {**meta, 'task': saved_task}})
        args = build_parser().parse_args(['--checkpoint', str(card), '--out', str(tmp_path / f'sweep-{name}')])
        if name == 'intact':
            assert plan_run(args).task == task2
            continue
        with pytest.raises(UsageError, match='but env_id') as error:
            plan_run(args)
        assert task1.env_id in str(error.value) and task2.env_id in str(error.value) and '\n' not in str(error.value)


@pytest.mark.parametrize('name', ['../../x', 'a/b', '..', ''])
def test_a_card_name_with_a_path_in_it_is_refused(name, tmp_path, capsys):
    status, err = run_cli(card_main, [str(tmp_path / 'run'), '--seed', '0', '--name', name, '--betas', '0,1',
                                      '--root', str(tmp_path / 'a' / 'shipped')], capsys)
    assert status == 2 and err.startswith('error:') and '--name is a folder name' in err and err.count('\n') == 1
    assert not list(tmp_path.iterdir())


def test_long_cpu_run_names_the_small_preset():
    """The paper preset on a CPU: the measured ETA is printed with a pointer to --preset small."""
    lines = []
    bar = SimpleNamespace(write=lines.append)
    plan = SimpleNamespace(steps=1_000_000, eval_every=100_000, final_betas=[1.0], eval_episodes=50, seeds=[0],
                           preset='paper')
    report = SimpleNamespace(step=1000, compile_seconds=3.0)
    announce_eta(plan, bar, report, rate=20.0)
    assert lines[0].startswith('measured:') and 'ETA 13h52m' in lines[0]
    assert len(lines) == 2 and '--preset small' in lines[1]


def test_ctrl_c_is_one_line_naming_the_run_folder(monkeypatch, capsys, tmp_path):
    def interrupted(config):
        raise KeyboardInterrupt
    monkeypatch.setattr('harness.run.train', interrupted)
    assert execute(SimpleNamespace(mode='train', out=tmp_path / 'run')) == 130
    err = capsys.readouterr().err.strip()
    assert err.count('\n') == 0 and err == f"error: interrupted; continue with --resume {tmp_path / 'run'}"


def test_a_log_line_cut_short_by_a_kill_is_dropped_only_at_the_end(tmp_path):
    path = tmp_path / 'metrics.jsonl'
    path.write_text('{"step": 1}\n{"step": 2}\n{"step": 3, "los')
    assert read_jsonl(path) == [{'step': 1}, {'step': 2}]
    path.write_text('{"step": 1}\n{"st\n{"step": 3}\n')
    with pytest.raises(json.JSONDecodeError):
        read_jsonl(path)


@pytest.mark.slow
def test_bare_resume_picks_the_newest_unfinished_run_with_a_checkpoint(tmp_path, monkeypatch):
    """`--resume` without a folder: finished runs are skipped, and a run with a checkpoint wins over a newer one
    that was killed before its first checkpoint."""
    monkeypatch.chdir(tmp_path)
    folders = {}
    for name, checkpoint, finished in (('pointmaze-a', True, False), ('pointmaze-b', False, False),
                                       ('pointmaze-c', True, True)):
        config = plan_run(build_parser().parse_args(['--task', 'pointmaze', '--preset', 'tiny',
                                                     '--out', f'artifacts/runs/{name}']))
        folders[name] = config.out
        config.out.mkdir(parents=True)
        write_json_atomic(config.out / 'config.json', config.to_json())
        if checkpoint:
            agents = create_agents(QFQLAgent, [0], jnp.zeros((1, 2)), jnp.zeros((1, 2)), config.agent_config)
            save_checkpoint(config.out / 'checkpoints', 250, agents, {'agent': 'qfql'})
        if finished:
            (config.out / 'summary.json').write_text('{}')
    resumed = plan_run(build_parser().parse_args(['--resume']))
    assert resumed.out == folders['pointmaze-a'] and resumed.start_step == 250


def test_a_run_started_with_ctrl_c_ignored_takes_it_back(capsys):
    """A shell starts a background job with SIGINT ignored, which Python keeps: such a run never
    stopped on Ctrl-C. harness.run restores the handler that raises KeyboardInterrupt first thing."""
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        status, _ = run_cli(main, ['--task', 'no-such-task'], capsys)
        assert status == 2 and signal.getsignal(signal.SIGINT) is signal.default_int_handler
    finally:
        signal.signal(signal.SIGINT, previous)
