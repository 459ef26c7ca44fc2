"""agents/chunks.py: which starts a horizon-h agent samples, and the h-step batch, by hand."""
import jax
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agents.chunks import chunk_starts, episode_ids, sample_chunk_batch
from agents.training import sample_batch


def episodes_dataset(lengths, obs_dim=2, action_dim=2):
    """Episodes laid out as OGBench's loader gives them (within an episode each next observation is
    the following observation), with distinct values everywhere so a gather can be checked."""
    observations, next_observations, truth = [], [], []
    for index, length in enumerate(lengths):
        states = 1000.0 * (index + 1) + np.arange(length + 1, dtype=np.float32)
        observations.append(np.stack([states[:-1]] * obs_dim, axis=1))
        next_observations.append(np.stack([states[1:]] * obs_dim, axis=1))
        truth += [index] * length
    observations, next_observations = np.concatenate(observations), np.concatenate(next_observations)
    size = len(observations)
    return {'observations': observations, 'next_observations': next_observations,
            'actions': np.arange(size * action_dim, dtype=np.float32).reshape(size, action_dim),
            'rewards': -np.ones(size, np.float32), 'masks': np.ones(size, np.float32)}, np.asarray(truth)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(1, 8), min_size=1, max_size=5), st.sampled_from([1, 2, 3, 5]))
def test_chunks_never_cross_an_episode_end_and_every_chunk_inside_one_is_kept(lengths, horizon):
    dataset, truth = episodes_dataset(lengths)
    assert episode_ids(dataset['observations'], dataset['next_observations']).tolist() == truth.tolist()
    expected = [t for t in range(len(truth) - horizon + 1) if truth[t] == truth[t + horizon - 1]]
    assert chunk_starts(dataset['observations'], dataset['next_observations'], horizon).tolist() == expected


def test_the_h_step_batch_by_hand():
    """Two episodes of 4 transitions; the chunk starting at transition 1 (h = 3, γ = 0.5) covers
    transitions 1, 2, 3 of the first episode. A solved transition at 2 cuts its return and its bootstrap."""
    dataset, _ = episodes_dataset([4, 4])
    dataset['rewards'] = np.array([-1, -2, -3, -4, -5, -6, -7, -8], np.float32)
    one_start = {**dataset, 'chunk_starts': np.array([1], np.int32)}
    batch = sample_chunk_batch(one_start, jax.random.PRNGKey(0), 2, 3, 0.5)
    np.testing.assert_array_equal(batch['observations'][0], [1001.0, 1001.0])
    np.testing.assert_array_equal(batch['actions'][0], [2, 3, 4, 5, 6, 7])      # a_1, a_2, a_3 flattened
    assert float(batch['rewards'][0]) == -2 + 0.5 * -3 + 0.25 * -4
    assert float(batch['masks'][0]) == 1.0
    np.testing.assert_array_equal(batch['next_observations'][0], [1004.0, 1004.0])   # s_{t+h}
    dataset['masks'][2] = 0.0
    solved = sample_chunk_batch({**dataset, 'chunk_starts': np.array([1], np.int32)}, jax.random.PRNGKey(0), 2, 3, 0.5)
    assert float(solved['rewards'][0]) == -2 + 0.5 * -3 and float(solved['masks'][0]) == 0.0


def test_horizon_one_draws_the_one_step_batch_bit_for_bit():
    dataset, _ = episodes_dataset([5, 7, 3])
    dataset['rewards'] = np.linspace(-1, 0, 15).astype(np.float32)
    dataset['masks'][[3, 9]] = 0.0
    starts = chunk_starts(dataset['observations'], dataset['next_observations'], 1)
    key = jax.random.PRNGKey(7)
    chunked = sample_chunk_batch({**dataset, 'chunk_starts': starts}, key, 32, 1, 0.99)
    plain = sample_batch(dataset, key, 32)
    for name, values in plain.items():
        np.testing.assert_array_equal(np.asarray(chunked[name]), np.asarray(values), err_msg=name)


def test_a_horizon_below_one_is_refused():
    dataset, _ = episodes_dataset([3])
    with pytest.raises(ValueError, match='horizon must be >= 1'):
        chunk_starts(dataset['observations'], dataset['next_observations'], 0)


@pytest.mark.parametrize('agent_name', ['qfql', 'fql'])
def test_a_chunked_critic_backs_up_h_steps_with_gamma_to_the_h(agent_name):
    """y = R + γ^h m agg Q̄(s_{t+h}, ã) with ã the agent's own target chunk; the critic scores whole chunks."""
    from agents import AGENTS, AgentConfig

    horizon, action_dim = 3, 2
    config = AgentConfig(actor_hidden=(16,), critic_hidden=(16,), batch_size=8, flow_steps=2, discount=0.9,
                         horizon=horizon)
    dataset, _ = episodes_dataset([10, 12])
    dataset['rewards'] = -np.linspace(0, 1, 22).astype(np.float32)
    dataset['masks'][[5, 15]] = 0.0
    dataset['chunk_starts'] = chunk_starts(dataset['observations'], dataset['next_observations'], horizon)
    batch = sample_chunk_batch(dataset, jax.random.PRNGKey(1), 8, horizon, 0.9)
    agent = AGENTS[agent_name].create(0, dataset['observations'][:1], dataset['actions'][:1], config)
    assert agent.action_dim == horizon * action_dim
    key = jax.random.PRNGKey(2)
    next_actions = agent.target_actions(agent.params, batch['next_observations'], key)
    next_q = np.asarray(agent.critic_values(agent.params['target_critic'], batch['next_observations'],
                                            next_actions)).mean(0)
    target = np.asarray(batch['rewards']) + 0.9 ** horizon * np.asarray(batch['masks']) * next_q
    q = np.asarray(agent.critic_values(agent.params['critic'], batch['observations'], batch['actions']))
    loss, _ = agent.critic_loss(agent.params, batch, key)
    np.testing.assert_allclose(float(loss), np.mean((q - target) ** 2), rtol=1e-5)
    trained, info = agent.update_many({k: jax.numpy.asarray(v) for k, v in dataset.items()}, key, 4)
    assert int(trained.step) == 4 and np.isfinite(float(info['critic/loss']))


def test_update_many_of_a_chunked_agent_names_the_missing_chunk_starts():
    from agents import QFQLAgent, AgentConfig

    dataset, _ = episodes_dataset([6])
    config = AgentConfig(actor_hidden=(8,), critic_hidden=(8,), batch_size=4, flow_steps=2, horizon=2)
    agent = QFQLAgent.create(0, dataset['observations'][:1], dataset['actions'][:1], config)
    with pytest.raises(ValueError, match="chunk_starts"):
        agent.update_many(dataset, jax.random.PRNGKey(0), 2)
