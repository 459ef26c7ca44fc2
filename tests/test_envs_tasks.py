"""Task registry: the paper's task table, full OGBench ids, one-line refusals with close matches."""

import pytest

from envs.tasks import TASKS, UnknownTaskError, dataset_name_of, env_name_of, resolve_task


def test_table_matches_design():
    expected = {
        'antmaze': ('antmaze-large-navigate-singletask-task1-v0', 1.0, 0.99, 'min'),
        'antsoccer': ('antsoccer-arena-navigate-singletask-task4-v0', 1.0, 0.995, 'mean'),
        'cube-double': ('cube-double-play-singletask-task2-v0', 0.3, 0.99, 'mean'),
        'scene': ('scene-play-singletask-task2-v0', 0.3, 0.99, 'mean'),
        'puzzle-3x3': ('puzzle-3x3-play-singletask-task4-v0', None, 0.99, 'mean'),
        'antmaze-umaze-diverse': ('antmaze-umaze-diverse-v2', 0.3, 0.99, 'min'),
        'antmaze-medium-diverse': ('antmaze-medium-diverse-v2', 0.3, 0.99, 'min'),
        'antmaze-large-diverse': ('antmaze-large-diverse-v2', 0.3, 0.99, 'min'),
        'cube-single': ('cube-single-play-singletask-task2-v0', None, 0.99, 'mean'),
        'pointmaze': ('pointmaze-medium-navigate-singletask-task1-v0', None, 0.99, 'mean'),
    }
    assert {k: (t.env_id, t.beta, t.discount, t.q_agg) for k, t in TASKS.items()} == expected
    assert {t.source for k, t in TASKS.items() if 'diverse' in k} == {'d4rl'}


def test_dataset_and_env_names_follow_ogbench():
    assert dataset_name_of('cube-double-play-singletask-task2-v0') == 'cube-double-play-v0'
    assert env_name_of('cube-double-play-singletask-task2-v0') == 'cube-double-singletask-task2-v0'
    assert resolve_task('scene').dataset_name == 'scene-play-v0'


def test_full_id_of_table_task_keeps_its_hyperparameters_and_name():
    task = resolve_task('antsoccer-arena-navigate-singletask-task4-v0')
    assert task.name == 'antsoccer-arena-navigate-singletask-task4-v0'
    assert (task.discount, task.q_agg, task.beta) == (0.995, 'mean', 1.0)


def test_any_single_task_id_is_accepted():
    task = resolve_task('cube-triple-noisy-singletask-task3-v0')
    assert task.dataset_name == 'cube-triple-noisy-v0'
    assert task.source == 'ogbench' and task.beta is None


@pytest.mark.parametrize(
    'name, suggestion',
    [('cube-dubble', 'cube-double'), ('pointmase', 'pointmaze'), ('cube-double-play-singletask-task9-v0', 'task2')],
)
def test_unknown_task_is_one_line_with_close_matches(name, suggestion):
    with pytest.raises(UnknownTaskError) as info:
        resolve_task(name)
    message = str(info.value)
    assert '\n' not in message and suggestion in message and name in message
    assert isinstance(info.value, ValueError)


def test_wrong_dataset_type_is_refused():
    with pytest.raises(UnknownTaskError):
        resolve_task('cube-double-navigate-singletask-task2-v0')
