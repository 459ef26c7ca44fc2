"""tools/diagnose.py: episode boundaries, steps to success and the collected return of a concatenated
dataset, against definitions written out by hand."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from harness.errors import run_main
from tests.cli import run_cli
from agents.chunks import chunk_starts, episode_ids
from tools.diagnose import NEVER, discounted_return, group_labels, group_of, ideal_q, main, steps_to_success

# Episodes of 1-6 transitions, each transition solved (mask 0) or not.
episodes_strategy = st.lists(st.lists(st.booleans(), min_size=1, max_size=6), min_size=1, max_size=5)


def concatenate(episodes):
    """A dataset laid out as OGBench's loader gives it: within an episode, each next observation is the
    following observation; across a boundary it is not."""
    observations, next_observations, masks, truth = [], [], [], []
    position = 0.0
    for index, solved in enumerate(episodes):
        position += 100.0
        for flag in solved:
            observations.append([position, index])
            position += 1.0
            next_observations.append([position, index])
            masks.append(0.0 if flag else 1.0)
            truth.append(index)
    return (np.asarray(observations), np.asarray(next_observations), np.asarray(masks), np.asarray(truth))


@settings(max_examples=60, deadline=None)
@given(episodes_strategy)
def test_episode_ids_recover_the_boundaries(episodes):
    observations, next_observations, _, truth = concatenate(episodes)
    assert episode_ids(observations, next_observations).tolist() == truth.tolist()


@settings(max_examples=60, deadline=None)
@given(episodes_strategy)
def test_steps_to_success_is_the_distance_to_the_next_solved_transition_of_the_same_episode(episodes):
    _, _, masks, ids = concatenate(episodes)
    expected = []
    for i in range(len(masks)):
        later = [j for j in range(i, len(masks)) if ids[j] == ids[i] and masks[j] == 0]
        expected.append(later[0] - i if later else NEVER)
    assert steps_to_success(masks, ids).tolist() == expected


@settings(max_examples=60, deadline=None)
@given(episodes_strategy, st.sampled_from([0.9, 0.99]))
def test_the_return_collected_before_a_success_is_the_ideal_q_of_a_minus_one_reward(episodes, discount):
    """Under the -1/0 single-task reward the data's own return to its next success is exactly
    -(1 - γ^d)/(1 - γ), so the two columns of the critic table agree wherever the data succeeds."""
    _, _, masks, ids = concatenate(episodes)
    rewards = np.where(masks == 0, 0.0, -1.0)
    steps = steps_to_success(masks, ids)
    collected = discounted_return(rewards, masks, ids, discount)
    reached = steps != NEVER
    np.testing.assert_allclose(collected[reached], ideal_q(steps, discount)[reached], rtol=1e-9)


def test_discounted_return_by_hand():
    rewards = np.array([-1.0, -2.0, 0.0, -1.0, -1.0, -3.0])
    masks = np.array([1.0, 1.0, 0.0, 1.0, 1.0, 1.0])
    ids = np.array([0, 0, 0, 0, 1, 1])
    # Episode 0: the solved third transition cuts the return; episode 1 ends at the last row.
    expected = [-1 + 0.5 * (-2 + 0.5 * 0.0), -2 + 0.5 * 0.0, 0.0, -1.0, -1 + 0.5 * -3, -3.0]
    np.testing.assert_allclose(discounted_return(rewards, masks, ids, 0.5), expected)


def test_groups_cover_every_count_once():
    steps = np.array([0, 1, 10, 11, 100, 101, 1000, NEVER])
    assert [group_labels()[g] for g in group_of(steps)] == ['0', '1-10', '1-10', '11-100', '11-100', '101-1000',
                                                            '101-1000', 'never']
    assert ideal_q(np.array([0, NEVER]), 0.99).tolist() == pytest.approx([0.0, -100.0])


def test_a_run_folder_and_a_task_are_refused_together_and_a_folder_without_a_config_names_what_it_needs(
        tmp_path, capsys):
    status, err = run_cli(main, [str(tmp_path), '--task', 'cube-single'], capsys)
    assert status == 2 and 'not both' in err
    status, err = run_cli(main, [str(tmp_path)], capsys)
    assert status == 2 and 'no config.json' in err and err.count('\n') == 1


@pytest.mark.slow
@pytest.mark.parametrize('horizon', [1, 3])
def test_the_diagnosis_of_a_trained_run_counts_the_data_and_probes_the_chosen_checkpoint(tmp_path, capsys, horizon):
    """A horizon-h critic is probed on the chunks the data took, one row per chunk start."""
    from envs.datasets import ensure_dataset, load_task_dataset
    from envs.tasks import resolve_task
    from harness.run import main as run

    task = resolve_task('pointmaze')
    data_dir = str(tmp_path / 'data')
    ensure_dataset(task, data_dir, episodes=4, seed=0)
    out = tmp_path / 'run'
    status, _ = run_cli(run, ['--task', 'pointmaze', '--preset', 'tiny', '--steps', '200', '--checkpoint-every', '100',
                              '--updates-per-call', '100', '--eval-episodes', '1', '--eval-envs', '1',
                              '--video-episodes', '0', '--data-dir', data_dir, '--horizon', str(horizon),
                              '--out', str(out)], capsys)
    assert status == 0
    assert run_main(main, [str(out), '--step', '100']) == 0
    printed = capsys.readouterr().out
    dataset = load_task_dataset(task, data_dir)
    episodes = episode_ids(dataset['observations'], dataset['next_observations'])
    solving = len(np.unique(episodes[dataset['masks'] == 0]))
    assert f'data: {solving}/4 episodes ever solve the task' in printed
    assert 'pointmaze-medium-navigate-v0 in' in printed and 'rewards 0 when solved, else -1' in printed
    assert 'checkpoint step 100' in printed and 'actor: held-out success at β = 0.3: ' in printed
    assert ('action chunks' in printed) == (horizon > 1)
    rows = [line for line in printed.splitlines() if line.startswith('| ') and not line.startswith('| steps')]
    assert [row.split(' | ')[0][2:] for row in rows] == group_labels()
    counted = sum(int(row.split(' | ')[1].replace(',', '')) for row in rows)
    assert counted == len(chunk_starts(dataset['observations'], dataset['next_observations'], horizon))
    assert (counted == len(dataset['masks'])) == (horizon == 1)
